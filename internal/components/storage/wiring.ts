// Storage's wiring: its Error Token and receipt keys (reloaded when the key file
// changes), the record store (PGlite or PostgreSQL), and Token's published keys.

import { openRecordStore } from "./backend/open-store.js";
import { STORAGE_SERVICES, storageErrors, storageRoutes } from "./storage-service.js";
import { STORAGE_KEYS } from "../../protocol/key-files.js";
import { activeKey } from "../../protocol/signing-keys.js";
import { type ServiceFactory, closingOnFailure, peerKeys, watchedSigningKeys } from "../runtime/component-services.js";

export const storageService: ServiceFactory<"storage"> = async (config, deps) => {
  // Each Error Token and receipt is signed by the key active at that moment.
  const signing = watchedSigningKeys("storage", config.keys.signing, STORAGE_KEYS, deps.log);
  return closingOnFailure(signing, async () => {
    const store = await openRecordStore(config.database);
    deps.log.info({ backend: config.database.url ? "postgresql" : "pglite" }, "opened the record store");
    const routes = storageRoutes({
      store,
      tokenKeys: peerKeys(deps.bundles, "token"),
      get errorKey() {
        return activeKey(signing.keys(), "error");
      },
      get receiptKey() {
        return activeKey(signing.keys(), "receipt");
      },
    });
    return {
      descriptors: STORAGE_SERVICES,
      routes,
      mapError: storageErrors,
      close: async () => {
        signing.close();
        await store.close();
      },
    };
  });
};
