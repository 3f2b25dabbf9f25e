// Storage's wiring: its Error Token and receipt keys (reloaded when the key file
// changes), the record store (PGlite or PostgreSQL), and Token's published keys.

import { openRecordStore } from "./backend/open-store.js";
import { STORAGE_SERVICES, storageErrors, storageRoutes } from "./storage-service.js";
import { STORAGE_KEYS, watchSigningKeys } from "../../protocol/key-files.js";
import { activeKey } from "../../protocol/signing-keys.js";
import { type ServiceFactory, peerKeys } from "../runtime/component-services.js";

export const storageService: ServiceFactory<"storage"> = async (config, deps) => {
  // Reloaded when the key file changes (`hello keys`, docs/key-rotation.md): each Error
  // Token and receipt is signed by the key active at that moment.
  const signing = watchSigningKeys("storage", config.keys.signing, STORAGE_KEYS, (error) =>
    error
      ? deps.log.error({ err: error }, "the signing key file changed but does not load; keeping the previous keys")
      : deps.log.info("reloaded the signing keys"),
  );
  // A store that cannot open ends the start: stop watching the key file, or its watcher
  // alone would keep a process that failed to start alive.
  const store = await openRecordStore(config.database).catch((error: unknown) => {
    signing.close();
    throw error;
  });
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
};
