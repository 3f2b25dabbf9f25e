// The bad-input rig: the in-process mesh (test/support/in-process-mesh.ts: the real
// handlers, Storage on an in-memory PGlite, the real front door and LoginDriver) joined
// over real mutual TLS, each component on its own mesh server (the test PKI) with
// health, reflection and BuildInfo as `hello serve` assembles them; and the development
// OP (oidc-provider) as the upstream provider. Starting it costs about a second, against
// tens of seconds for the four-process protocol mesh, so the bad-input properties can
// afford thousands of requests.

import { type Client, createClient } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { type JWK, exportJWK, generateKeyPair } from "jose";
import { COMPONENTS, type Component } from "../../internal/protocol/identity.js";
import { type MeshCredentials, type MeshServer, startMeshServer } from "../../mesh/server.js";
import { createMeshTransport } from "../../mesh/client.js";
import { TrustStore } from "../../mesh/trust.js";
import { buildInfoRoutes, currentBuildInfo } from "../../internal/components/runtime/buildinfo/build-info.js";
import { type FrontDoorClient, type RegisteredClient, type UpstreamProvider, type AllowedProvider, upstreamRedirectUri } from "../../internal/config/component-config.js";
import { type DevOp, startDevOp } from "../../internal/dev/devop/dev-op.js";
import { BuildInfoService } from "../../internal/gen/hello/common/v1/build_info_pb.js";
import { EncryptionService } from "../../internal/gen/hello/encryption/v1/encryption_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../internal/gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../../internal/gen/grpc/reflection/v1/reflection_pb.js";
import { StorageService } from "../../internal/gen/hello/storage/v1/storage_service_pb.js";
import { KeyMaintenanceService } from "../../internal/gen/hello/storage/v1/key_maintenance_service_pb.js";
import { TokenService } from "../../internal/gen/hello/token/v1/token_service_pb.js";
import { HealthStatus, healthRoutes } from "../../mesh/grpc/health.js";
import { reflectionRoutes } from "../../mesh/grpc/reflection.js";
import { openPGliteStore } from "../../internal/components/storage/backend/pglite-store.js";
import type { RecordStore } from "../../internal/components/storage/backend/record-store.js";
import { freePort } from "../support/free-port.js";
import { type TestPki, makeTestPki } from "../support/test-pki.js";
import { type Joins, type MeshKeys, freshMeshKeys, startInProcessMesh } from "../support/in-process-mesh.js";

/** The apps registered with the rig, one per token endpoint authentication method. */
export const RIG_APPS = {
  basic: { client_id: "app-basic", redirect_uri: "https://basic.example/callback", auth: "client_secret_basic" },
  post: { client_id: "app-post", redirect_uri: "https://post.example/callback", auth: "client_secret_post" },
  public: { client_id: "app-public", redirect_uri: "https://public.example/callback", auth: "none" },
  jwt: { client_id: "app-jwt", redirect_uri: "https://jwt.example/callback", auth: "private_key_jwt" },
} as const;
export type RigApp = keyof typeof RIG_APPS;
export const rigSecret = (clientId: string) => `${clientId}-secret-0123456789`;
const UPSTREAM = { client_id: "hello-mesh", client_secret: "upstream-secret-0123456789" };

/** What a server offers beyond its protocol service: the operator services of every component. */
export const OPERATOR_SERVICES: readonly DescService[] = [BuildInfoService, Health, ServerReflection];
export const PROTOCOL_SERVICE: Record<Component, DescService | undefined> = {
  orchestration: undefined,
  token: TokenService,
  encryption: EncryptionService,
  storage: StorageService,
};
/** Every service a component serves to its peer: the protocol service, and Storage's key maintenance (Encryption's too). */
export const PEER_SERVICES: Record<Component, readonly DescService[]> = {
  orchestration: [],
  token: [TokenService],
  encryption: [EncryptionService],
  storage: [StorageService, KeyMaintenanceService],
};

export interface Rig {
  readonly pki: TestPki;
  readonly trust: TrustStore;
  readonly servers: Record<Component, MeshServer>;
  readonly health: Record<Component, HealthStatus>;
  /** Every component's keys: tests mint with Token's and Storage's. */
  readonly keys: MeshKeys;
  readonly store: RecordStore;
  readonly devOp: DevOp;
  /** The front door's public URL. */
  readonly issuer: string;
  /** app-jwt's private key (ES256), for client assertions and request objects. */
  readonly appKey: { privateKey: Awaited<ReturnType<typeof generateKeyPair>>["privateKey"]; kid: string };
  /** A client of `service` on `server`, presenting `as`'s certificate (an honest caller by default). */
  client<S extends DescService>(service: S, server: Component, as?: MeshCredentials): Client<S>;
  /** The credentials the policy lets call `service` on `server`. */
  callerFor(service: DescService, server: Component): MeshCredentials;
  close(): Promise<void>;
}

export async function startRig(): Promise<Rig> {
  const pki = await makeTestPki();
  const trust = new TrustStore(new Map(COMPONENTS.map((c) => [c, pki.ca(c).certPem])));
  const keys = freshMeshKeys();
  const store = await openPGliteStore({});

  const frontPort = await freePort();
  const issuer = `http://127.0.0.1:${frontPort}`;
  const devOp = await startDevOp({
    clients: [{ ...UPSTREAM, redirect_uris: ["dev", "dev2"].map((id) => upstreamRedirectUri(issuer, id)) }],
  });
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const appKey = { privateKey, kid: "app-jwt-1" };
  const appJwk: JWK = { ...(await exportJWK(publicKey)), kid: appKey.kid, alg: "ES256", use: "sig" };

  const apps = Object.values(RIG_APPS);
  const frontDoorClients: FrontDoorClient[] = apps.map((app) => ({
    client_id: app.client_id,
    redirect_uris: [app.redirect_uri],
    token_endpoint_auth_method: app.auth,
    ...(app.auth === "client_secret_basic" || app.auth === "client_secret_post" ? { client_secret: rigSecret(app.client_id) } : {}),
    ...(app.auth === "private_key_jwt" ? { jwks: { keys: [appJwk as { kty: string }] } } : {}),
  }));
  const tokenClients: RegisteredClient[] = apps.map((app) => ({
    client_id: app.client_id,
    redirect_uris: [app.redirect_uri],
    id_token_signed_response_alg: "RS256",
    ...(app.auth === "private_key_jwt" ? { jwks: { keys: [appJwk as { kty: string }] } } : {}),
  }));
  // Two providers (both the dev OP) so that the chooser page is reachable too.
  const providers: UpstreamProvider[] = ["dev", "dev2"].map((id) => ({
    id, name: `Dev OP (${id})`, issuer: devOp.issuer, ...UPSTREAM, scopes: ["openid", "email", "profile"],
  }));
  const allowed: AllowedProvider[] = providers.map((p) => ({ id: p.id, issuer: p.issuer, jwks_uri: devOp.jwksUri, client_id: p.client_id }));

  // The in-process mesh's joins: each component on its own mesh server, as `hello serve` assembles it.
  const health = {} as Record<Component, HealthStatus>;
  const servers = {} as Record<Component, MeshServer>;
  const credentials = (c: Component): MeshCredentials => pki.leaf(c);
  const clientOf = <S extends DescService>(service: S, server: Component, as: MeshCredentials): Client<S> =>
    createClient(service, createMeshTransport({ target: server, baseUrl: servers[server].url, credentials: as, trust }));
  const joins: Joins = {
    async serve(component, routes, mapError) {
      const status = new HealthStatus();
      const protocol = PROTOCOL_SERVICE[component];
      const served = [...PEER_SERVICES[component], ...OPERATOR_SERVICES];
      servers[component] = await startMeshServer({
        component,
        credentials: credentials(component),
        trust,
        routes: (router) => {
          routes(router);
          buildInfoRoutes(currentBuildInfo(component))(router);
          healthRoutes(status)(router);
          reflectionRoutes(served)(router);
        },
        ...(mapError ? { mapError } : {}),
      });
      if (protocol) status.set(protocol.typeName, ServingStatus.SERVING);
      status.set("", ServingStatus.SERVING);
      health[component] = status;
    },
    client: (service, server, caller) => clientOf(service, server, credentials(caller)),
    async close() {
      await Promise.all(Object.values(servers).map((s) => s.close()));
    },
  };
  const mesh = await startInProcessMesh({
    issuer,
    port: frontPort,
    keys,
    store,
    orchestration: { clients: frontDoorClients, providers },
    token: { clients: tokenClients, providers: allowed },
  }, joins);

  const callerFor = (service: DescService, server: Component): MeshCredentials => {
    if (service.typeName === BuildInfoService.typeName) return pki.operator("storage"); // any custodian's operator
    if (OPERATOR_SERVICES.some((s) => s.typeName === service.typeName)) return pki.operator(server);
    return server === "storage" ? credentials("encryption") : credentials("orchestration");
  };

  return {
    pki,
    trust,
    servers,
    health,
    keys,
    store,
    devOp,
    issuer,
    appKey,
    client: (service, server, as) => clientOf(service, server, as ?? callerFor(service, server)),
    callerFor,
    async close() {
      await mesh.close();
      await devOp.close();
      await store.close();
    },
  };
}
