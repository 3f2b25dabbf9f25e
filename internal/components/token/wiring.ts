// Token's wiring: its signing keys (reloaded when their file changes), the lookup key,
// Storage's published keys, and its own client registry and upstream allow-list.

import { TokenService } from "../../gen/hello/token/v1/token_service_pb.js";
import { tokenRoutes } from "./token-service.js";
import { UpstreamVerifier } from "./upstream.js";
import { TOKEN_KEYS, WALLET_KEYS, loadLookupKey } from "../../protocol/key-files.js";
import { type ServiceFactory, closingOnFailure, peerKeys, watchedSigningKeys } from "../runtime/component-services.js";

export const tokenService: ServiceFactory<"token"> = async (config, deps) => {
  const signing = watchedSigningKeys("token", config.keys.signing, TOKEN_KEYS, deps.log);
  // The credential wallet's keys: a file of their own, and optional (docs/wallet-server.md).
  const wallet = config.keys.wallet ? watchedSigningKeys("token", config.keys.wallet, WALLET_KEYS, deps.log) : undefined;
  return closingOnFailure(signing, async () => {
    const routes = tokenRoutes({
      issuer: config.issuer,
      keys: signing.keys,
      storageKeys: peerKeys(deps.bundles, "storage"),
      lookupKey: loadLookupKey("token", config.keys.lookup),
      clients: config.clients,
      providers: config.providers,
      upstream: new UpstreamVerifier(config.providers),
      ...(wallet ? { walletKeys: wallet.keys } : {}),
      ...(config.issuers ? { walletIssuers: config.issuers } : {}),
    });
    return {
      descriptors: [TokenService],
      routes,
      close: async () => {
        signing.close();
        wallet?.close();
      },
    };
  });
};
