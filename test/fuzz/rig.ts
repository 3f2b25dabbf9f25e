// The bad-input rig: all four components in this process, each on its own mesh server
// over real mutual TLS (the test PKI), with the real handlers (Token, Encryption,
// Storage on an in-memory PGlite), health, reflection and BuildInfo as `hello serve`
// assembles them; the real front door with a real LoginDriver over those servers; and
// the development OP (oidc-provider) as the upstream provider. Starting it costs about
// a second, against tens of seconds for the four-process protocol mesh, so the bad-input
// properties can afford thousands of requests.

import { randomBytes } from "node:crypto";
import { type ConnectRouter, type Client, createClient } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { type JWK, exportJWK, generateKeyPair } from "jose";
import { COMPONENTS, type Component } from "../../internal/protocol/identity.js";
import { type MeshCredentials, type MeshServer, startMeshServer } from "../../mesh/server.js";
import { createMeshTransport } from "../../mesh/client.js";
import { TrustStore } from "../../mesh/trust.js";
import { buildInfoRoutes, currentBuildInfo } from "../../internal/components/runtime/buildinfo/build-info.js";
import { type FrontDoorClient, type RegisteredClient, type UpstreamProvider, type AllowedProvider, upstreamRedirectUri } from "../../internal/config/component-config.js";
import { type DevOp, startDevOp } from "../../internal/dev/devop/dev-op.js";
import { encryptionRoutes } from "../../internal/components/encryption/encryption-service.js";
import { BuildInfoService } from "../../internal/gen/hello/common/v1/build_info_pb.js";
import { EncryptionService } from "../../internal/gen/hello/encryption/v1/encryption_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../internal/gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../../internal/gen/grpc/reflection/v1/reflection_pb.js";
import { StorageService } from "../../internal/gen/hello/storage/v1/storage_service_pb.js";
import { KeyMaintenanceService } from "../../internal/gen/hello/storage/v1/key_maintenance_service_pb.js";
import { TokenService } from "../../internal/gen/hello/token/v1/token_service_pb.js";
import { HealthStatus, healthRoutes } from "../../mesh/grpc/health.js";
import { reflectionRoutes } from "../../mesh/grpc/reflection.js";
import { startFrontDoor } from "../../internal/components/orchestration/front-door/front-door.js";
import { LoginDriver } from "../../internal/components/orchestration/login-driver.js";
import { MemoryStore } from "../../internal/components/orchestration/sealed.js";
import { STORAGE_KEYS, TOKEN_KEYS } from "../../internal/protocol/key-files.js";
import { Keyring, generateRecordKey } from "../../internal/protocol/keyring.js";
import { type SigningKey, VerificationKeys, generateSigningKey, publicJwk } from "../../internal/protocol/signing-keys.js";
import { openPGliteStore } from "../../internal/components/storage/backend/pglite-store.js";
import type { RecordStore } from "../../internal/components/storage/backend/record-store.js";
import { storageErrors, storageRoutes } from "../../internal/components/storage/storage-service.js";
import { freePort } from "../support/free-port.js";
import { type TestPki, makeTestPki } from "../support/test-pki.js";
import { tokenRoutes } from "../../internal/components/token/token-service.js";
import { UpstreamVerifier } from "../../internal/components/token/upstream.js";
import type { ErrorMapper } from "../../internal/protocol/errors.js";

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
  /** Token's signing keys (every purpose) and Storage's (error, receipt): tests mint with them. */
  readonly tokenKeys: readonly SigningKey[];
  readonly storageKeys: readonly SigningKey[];
  readonly tokenVerification: VerificationKeys;
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
  const tokenKeys = TOKEN_KEYS.map((spec) => generateSigningKey(spec.purpose, spec.alg));
  const storageKeys = STORAGE_KEYS.map((spec) => generateSigningKey(spec.purpose, spec.alg));
  const tokenVerification = new VerificationKeys(tokenKeys.map(publicJwk));
  const storageVerification = new VerificationKeys(storageKeys.map(publicJwk));
  const lookupKey = randomBytes(32);
  const keyring = new Keyring(new Map([["k1", generateRecordKey()]]), "k1");
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

  const health = {} as Record<Component, HealthStatus>;
  const servers = {} as Record<Component, MeshServer>;
  const credentials = (c: Component): MeshCredentials => pki.leaf(c);
  const clientOf = <S extends DescService>(service: S, server: Component, as: MeshCredentials): Client<S> =>
    createClient(service, createMeshTransport({ target: server, baseUrl: servers[server].url, credentials: as, trust }));

  async function serve(component: Component, routes: (router: ConnectRouter) => void, mapError?: ErrorMapper) {
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
  }

  await serve("storage", storageRoutes({
    store,
    tokenKeys: () => tokenVerification,
    errorKey: storageKeys.find((k) => k.purpose === "error")!,
    receiptKey: storageKeys.find((k) => k.purpose === "receipt")!,
  }), storageErrors);
  await serve("encryption", encryptionRoutes({
    keyring: () => keyring,
    tokenKeys: () => tokenVerification,
    storageKeys: () => storageVerification,
    storage: clientOf(StorageService, "storage", credentials("encryption")),
  }));
  await serve("token", tokenRoutes({
    issuer,
    keys: () => tokenKeys,
    storageKeys: () => storageVerification,
    lookupKey,
    clients: tokenClients,
    providers: allowed,
    upstream: new UpstreamVerifier(allowed),
  }));
  await serve("orchestration", () => {});

  const token = clientOf(TokenService, "token", credentials("orchestration"));
  const driver = new LoginDriver({
    issuer,
    token,
    encryption: clientOf(EncryptionService, "encryption", credentials("orchestration")),
    lookupKey,
    tokenKeys: () => tokenVerification,
  });
  const door = await startFrontDoor({
    host: "127.0.0.1",
    port: frontPort,
    issuer,
    clients: frontDoorClients,
    providers,
    driver,
    token,
    tokenKeys: () => tokenVerification,
    cookieKey: randomBytes(32),
    store: new MemoryStore(),
  });

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
    tokenKeys,
    storageKeys,
    tokenVerification,
    store,
    devOp,
    issuer,
    appKey,
    client: (service, server, as) => clientOf(service, server, as ?? callerFor(service, server)),
    callerFor,
    async close() {
      await door.close();
      await Promise.all(Object.values(servers).map((s) => s.close()));
      await devOp.close();
      await store.close();
    },
  };
}
