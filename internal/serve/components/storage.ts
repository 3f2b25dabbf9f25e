// Storage's wiring: its Error Token key, the record store (PGlite or PostgreSQL), and
// Token's published keys.

import { StorageService } from "../../gen/hello/storage/v1/storage_service_pb.js";
import { openRecordStore } from "../../storage/backend/open-store.js";
import { storageRoutes } from "../../storage/service/storage-service.js";
import { STORAGE_KEYS, loadSigningKeys } from "../../protocol/key-files.js";
import { type ServiceFactory, peerKeys } from "../component-services.js";

export const storageService: ServiceFactory<"storage"> = async (config, deps) => {
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
  return { descriptors: [StorageService], routes, close: () => store.close() };
};
