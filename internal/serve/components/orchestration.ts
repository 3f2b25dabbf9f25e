// Orchestration's wiring. It serves no mesh API of its own: it is the front door
// (HTTP) and a client of Token and Encryption. Its mesh server carries only operator
// services.

import { createClient } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { trustOfBundles } from "../../../mesh/bundle.js";
import { createMeshTransport } from "../../../mesh/client.js";
import { TokenService } from "../../gen/hello/token/v1/token_service_pb.js";
import { EncryptionService } from "../../gen/hello/encryption/v1/encryption_service_pb.js";
import { loadLookupKey, loadSecretKey } from "../../protocol/key-files.js";
import { LoginDriver } from "../../orchestration/login-driver.js";
import { startFrontDoor } from "../../orchestration/front-door/front-door.js";
import { MemoryStore } from "../../orchestration/sealed.js";
import { openPostgresSharedStore } from "../../orchestration/postgres-shared-store.js";
import { processMeshMetrics } from "../../metrics/registry.js";
import { type ServiceFactory, peerKeys } from "../component-services.js";

export const orchestrationService: ServiceFactory<"orchestration"> = async (config, deps) => {
  // Token's and Encryption's CAs as last reloaded: a rotated CA reaches the clients too.
  const trust = trustOfBundles(deps.bundles);
  const peer = <S extends DescService>(service: S, target: "token" | "encryption") =>
    createClient(service, createMeshTransport({ target, baseUrl: config.peers[target], credentials: deps.credentials, trust }));
  const token = peer(TokenService, "token");
  const tokenKeys = peerKeys(deps.bundles, "token");
  const driver = new LoginDriver({
    issuer: config.issuer,
    token,
    encryption: peer(EncryptionService, "encryption"),
    lookupKey: loadLookupKey("orchestration", config.keys.lookup),
    tokenKeys,
  });
  let store;
  if (config.state) store = await openPostgresSharedStore(config.state.url);
  else {
    const memory = new MemoryStore();
    processMeshMetrics().observeState("orchestration", () => memory.stats());
    store = memory;
  }
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
};
