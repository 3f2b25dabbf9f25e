// Token's wiring: its signing keys (reloaded when their file changes), the lookup key,
// Storage's published keys, and its own client registry and upstream allow-list.

import { TokenService } from "../../gen/hello/token/v1/token_service_pb.js";
import { tokenRoutes } from "./token-service.js";
import { UpstreamVerifier } from "./upstream.js";
import { TOKEN_KEYS, loadLookupKey, watchSigningKeys } from "../../protocol/key-files.js";
import { type ServiceFactory, peerKeys } from "../runtime/component-services.js";

export const tokenService: ServiceFactory<"token"> = async (config, deps) => {
  const signing = watchSigningKeys("token", config.keys.signing, TOKEN_KEYS, (error) =>
    error
      ? deps.log.error({ err: error }, "the signing key file changed but does not load; keeping the previous keys")
      : deps.log.info("reloaded the signing keys"),
  );
  let lookupKey;
  try {
    lookupKey = loadLookupKey("token", config.keys.lookup);
  } catch (error) {
    signing.close(); // or its watcher alone keeps a process that failed to start alive
    throw error;
  }
  const routes = tokenRoutes({
    issuer: config.issuer,
    keys: signing.keys,
    storageKeys: peerKeys(deps.bundles, "storage"),
    lookupKey,
    clients: config.clients,
    providers: config.providers,
    upstream: new UpstreamVerifier(config.providers),
  });
  return { descriptors: [TokenService], routes, close: async () => signing.close() };
};
