// Each component's own service on the mesh, built from its own configuration and keys.

import { type ConnectRouter, createClient } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import type { Component } from "../../mesh/identity.js";
import type { Bundle } from "../../mesh/bundle.js";
import { trustFromBundles } from "../../mesh/bundle.js";
import { createMeshTransport } from "../../mesh/client.js";
import type { ComponentConfig } from "../config/component-config.js";
import type { MeshCredentials } from "../../mesh/server.js";
import { TokenService } from "../gen/hello/token/v1/token_service_pb.js";
import { EncryptionService } from "../gen/hello/encryption/v1/encryption_service_pb.js";
import { openRecordStore } from "../storage/backend/open-store.js";
import { STORAGE_SERVICES, storageRoutes } from "../storage/service/storage-service.js";
import { encryptionComponent } from "../encryption/encryption-component.js";
import { tokenRoutes } from "../token/token-service.js";
import { UpstreamVerifier } from "../token/upstream.js";
import {
  STORAGE_KEYS,
  TOKEN_KEYS,
  loadLookupKey,
  loadSecretKey,
  loadSigningKeys,
  watchSigningKeys,
} from "../protocol/key-files.js";
import { VerificationKeys } from "../protocol/signing-keys.js";
import type { Logger } from "../log/logger.js";
import { LoginDriver } from "../orchestration/login-driver.js";
import { startFrontDoor } from "../orchestration/front-door/front-door.js";
import { MemoryStore } from "../orchestration/sealed.js";
import { openPostgresSharedStore } from "../orchestration/postgres-shared-store.js";

export interface ComponentService {
  /** The services this component serves on the mesh (beyond health/reflection/BuildInfo). */
  readonly descriptors: readonly DescService[];
  routes(router: ConnectRouter): void;
  close(): Promise<void>;
}

export interface ServiceDeps {
  readonly credentials: MeshCredentials;
  /** The peers' bundles as last loaded from disk. */
  readonly bundles: () => ReadonlyMap<Component, Bundle>;
  readonly log: Logger;
}

/** A peer's published public keys, rebuilt only when its bundle changes. */
function peerKeys(bundles: () => ReadonlyMap<Component, Bundle>, peer: Component): () => VerificationKeys {
  const cache = new WeakMap<Bundle, VerificationKeys>();
  return () => {
    const bundle = bundles().get(peer)!;
    let keys = cache.get(bundle);
    if (!keys) cache.set(bundle, (keys = new VerificationKeys(bundle.jwks.keys)));
    return keys;
  };
}

export async function componentService(config: ComponentConfig, deps: ServiceDeps): Promise<ComponentService> {
  switch (config.component) {
    case "orchestration": {
      // Orchestration serves no mesh API of its own: it is the front door (HTTP) and a
      // client of Token and Encryption. Its mesh server carries only operator services.
      const trust = trustFromBundles(deps.bundles());
      const peer = <S extends DescService>(service: S, target: "token" | "encryption") =>
        createClient(service, createMeshTransport({ target, baseUrl: config.peers[target], credentials: deps.credentials, trust }));
      const token = peer(TokenService, "token");
      const tokenKeys = peerKeys(deps.bundles, "token");
      const driver = new LoginDriver({
        token,
        encryption: peer(EncryptionService, "encryption"),
        lookupKey: loadLookupKey("orchestration", config.keys.lookup),
        tokenKeys,
      });
      const store = config.state ? await openPostgresSharedStore(config.state.url) : new MemoryStore();
      const door = await startFrontDoor({
        host: config.public.host,
        port: config.public.port,
        issuer: config.issuer,
        clients: config.clients,
        providers: config.providers,
        driver,
        token,
        tokenKeys,
        cookieKey: loadSecretKey("orchestration", config.keys.cookie, "cookie key"),
        store,
      });
      deps.log.info({ url: door.url }, `the front door is open at ${config.issuer} (listening on ${door.url})`);
      return {
        descriptors: [],
        routes: () => {},
        close: async () => {
          await door.close();
          if ("close" in store) await store.close();
        },
      };
    }
    case "token": {
      const signing = watchSigningKeys("token", config.keys.signing, TOKEN_KEYS, (error) =>
        error
          ? deps.log.error({ err: error }, "the signing key file changed but does not load; keeping the previous keys")
          : deps.log.info("reloaded the signing keys"),
      );
      const routes = tokenRoutes({
        issuer: config.issuer,
        keys: signing.keys,
        storageKeys: peerKeys(deps.bundles, "storage"),
        lookupKey: loadLookupKey("token", config.keys.lookup),
        clients: config.clients,
        providers: config.providers,
        upstream: new UpstreamVerifier(config.providers),
      });
      return { descriptors: [TokenService], routes, close: async () => signing.close() };
    }
    case "encryption":
      return encryptionComponent(config, { ...deps, tokenKeys: peerKeys(deps.bundles, "token") });
    case "storage": {
      const storageKeys = loadSigningKeys("storage", config.keys.signing, STORAGE_KEYS);
      const newest = (purpose: "error" | "receipt") => storageKeys.filter((k) => k.purpose === purpose).at(-1)!;
      const store = await openRecordStore(config.database);
      deps.log.info({ backend: config.database.url ? "postgresql" : "pglite" }, "opened the record store");
      const routes = storageRoutes({
        store,
        tokenKeys: peerKeys(deps.bundles, "token"),
        errorKey: newest("error"),
        receiptKey: newest("receipt"),
      });
      return { descriptors: STORAGE_SERVICES, routes, close: () => store.close() };
    }
  }
}
