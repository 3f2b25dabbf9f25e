// One in-process mesh: the four components' real routes (Token, Encryption, Storage),
// a real LoginDriver and the real front door, assembled from keys and configuration in
// one place. How the components reach each other is the caller's one choice (Joins):
// in memory (the benchmark's variant (a)) or each on its own mTLS mesh server (the
// bad-input rig, test/fuzz/rig.ts).

import { randomBytes } from "node:crypto";
import { type Client, type ConnectRouter, type Transport, createClient } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import type { Component } from "../../internal/protocol/identity.js";
import type { ErrorMapper } from "../../internal/protocol/errors.js";
import type { AllowedProvider, FrontDoorClient, RegisteredClient, UpstreamProvider } from "../../internal/config/component-config.js";
import { EncryptionService } from "../../internal/gen/hello/encryption/v1/encryption_service_pb.js";
import { StorageService } from "../../internal/gen/hello/storage/v1/storage_service_pb.js";
import { TokenService } from "../../internal/gen/hello/token/v1/token_service_pb.js";
import { encryptionRoutes } from "../../internal/components/encryption/encryption-service.js";
import { LoginDriver } from "../../internal/components/orchestration/login-driver.js";
import { type FrontDoorDeps, type FrontDoorListen, startFrontDoor } from "../../internal/components/orchestration/front-door/front-door.js";
import { MemoryStore } from "../../internal/components/orchestration/sealed.js";
import type { RecordStore } from "../../internal/components/storage/backend/record-store.js";
import { storageErrors, storageRoutes } from "../../internal/components/storage/storage-service.js";
import { tokenRoutes } from "../../internal/components/token/token-service.js";
import { UpstreamVerifier } from "../../internal/components/token/upstream.js";
import { STORAGE_KEYS, TOKEN_KEYS } from "../../internal/protocol/key-files.js";
import { Keyring, generateRecordKey } from "../../internal/protocol/keyring.js";
import { type SigningKey, VerificationKeys, generateSigningKey, publicJwk } from "../../internal/protocol/signing-keys.js";
import { inMemory } from "./in-memory.js";

/** Every key the four components hold. */
export interface MeshKeys {
  /** Token's signing keys, every purpose. */
  readonly token: readonly SigningKey[];
  /** Storage's signing keys: the newest of each purpose (error, receipt) signs. */
  readonly storage: readonly SigningKey[];
  /** The public halves, as the mesh's bundles publish them to peers. */
  readonly tokenPublished: VerificationKeys;
  readonly storagePublished: VerificationKeys;
  readonly keyring: Keyring;
  /** The lookup key Token and Orchestration share. */
  readonly lookup: Uint8Array;
  /** Orchestration's cookie key. */
  readonly cookie: Uint8Array;
}

/** Keys as each component's custodian makes them, fresh for one run. */
export function freshMeshKeys(): MeshKeys {
  const token = TOKEN_KEYS.map((spec) => generateSigningKey(spec.purpose, spec.alg));
  const storage = STORAGE_KEYS.map((spec) => generateSigningKey(spec.purpose, spec.alg));
  return {
    token,
    storage,
    tokenPublished: new VerificationKeys(token.map(publicJwk)),
    storagePublished: new VerificationKeys(storage.map(publicJwk)),
    keyring: new Keyring(new Map([["k1", generateRecordKey()]]), "k1"),
    lookup: randomBytes(32),
    cookie: randomBytes(32),
  };
}

/** How the components reach each other: the one thing the callers choose. */
export interface Joins {
  /** Serves `component`'s routes (none for Orchestration, which only calls). */
  serve(component: Component, routes: (router: ConnectRouter) => void, mapError?: ErrorMapper): Promise<void>;
  /** `caller`'s client of `service` on `server`, which is served already. */
  client<S extends DescService>(service: S, server: Component, caller: Component): Client<S>;
  close?(): Promise<void>;
}

/** Connect's in-memory transport, with the mesh server's error mapping: no sockets, no TLS. */
export function inMemoryJoins(): Joins {
  const transports = new Map<Component, Transport>();
  return {
    async serve(component, routes, mapError) {
      transports.set(component, inMemory(routes, mapError));
    },
    client: (service, server) => createClient(service, transports.get(server)!),
  };
}

export interface InProcessMeshOptions {
  readonly issuer: string;
  /** Where the front door listens (127.0.0.1). */
  readonly port: number;
  readonly keys: MeshKeys;
  /** Storage's database. */
  readonly store: RecordStore;
  /** Orchestration's and Token's configuration of the apps and upstream providers. */
  readonly orchestration: { readonly clients: readonly FrontDoorClient[]; readonly providers: readonly UpstreamProvider[] };
  readonly token: { readonly clients: readonly RegisteredClient[]; readonly providers: readonly AllowedProvider[] };
  /** The front door's transport: its own TLS (public.tls), the proxies it trusts. Default: plain HTTP, none. */
  readonly door?: Pick<FrontDoorListen, "tls" | "onTlsReload"> & Pick<FrontDoorDeps, "trustedProxies">;
}

export interface InProcessMesh {
  /** The front door's URL. */
  readonly url: string;
  /** Closes the front door and the joins; the store is the caller's. */
  close(): Promise<void>;
}

export async function startInProcessMesh(options: InProcessMeshOptions, joins: Joins): Promise<InProcessMesh> {
  const { keys, issuer } = options;
  const newest = (purpose: "error" | "receipt") => keys.storage.filter((k) => k.purpose === purpose).at(-1)!;

  await joins.serve("storage", storageRoutes({
    store: options.store,
    tokenKeys: () => keys.tokenPublished,
    errorKey: newest("error"),
    receiptKey: newest("receipt"),
  }), storageErrors);
  await joins.serve("encryption", encryptionRoutes({
    keyring: () => keys.keyring,
    tokenKeys: () => keys.tokenPublished,
    storageKeys: () => keys.storagePublished,
    storage: joins.client(StorageService, "storage", "encryption"),
  }));
  await joins.serve("token", tokenRoutes({
    issuer,
    keys: () => keys.token,
    storageKeys: () => keys.storagePublished,
    lookupKey: keys.lookup,
    clients: options.token.clients,
    providers: options.token.providers,
    upstream: new UpstreamVerifier(options.token.providers),
  }));
  await joins.serve("orchestration", () => {});

  const token = joins.client(TokenService, "token", "orchestration");
  const driver = new LoginDriver({
    issuer,
    token,
    encryption: joins.client(EncryptionService, "encryption", "orchestration"),
    lookupKey: keys.lookup,
    tokenKeys: () => keys.tokenPublished,
  });
  const door = await startFrontDoor({
    host: "127.0.0.1",
    port: options.port,
    issuer,
    clients: options.orchestration.clients,
    providers: options.orchestration.providers,
    driver,
    token,
    tokenKeys: () => keys.tokenPublished,
    cookieKey: keys.cookie,
    store: new MemoryStore(),
    ...options.door,
  });
  return {
    url: door.url,
    async close() {
      await door.close();
      await joins.close?.();
    },
  };
}
