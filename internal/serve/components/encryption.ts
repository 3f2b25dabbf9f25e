// Encryption's wiring: its record keyring, Token's published keys, and a client of
// Storage.

import { createClient } from "@connectrpc/connect";
import { trustFromBundles } from "../../../mesh/bundle.js";
import { createMeshTransport } from "../../../mesh/client.js";
import { EncryptionService } from "../../gen/hello/encryption/v1/encryption_service_pb.js";
import { StorageService } from "../../gen/hello/storage/v1/storage_service_pb.js";
import { encryptionRoutes } from "../../encryption/encryption-service.js";
import { loadKeyring } from "../../protocol/key-files.js";
import { type ServiceFactory, peerKeys } from "../component-services.js";

export const encryptionService: ServiceFactory<"encryption"> = async (config, deps) => {
  const keyring = loadKeyring("encryption", config.keys.keyring);
  const storage = createClient(
    StorageService,
    createMeshTransport({
      target: "storage",
      baseUrl: config.peers.storage,
      credentials: deps.credentials,
      trust: trustFromBundles(deps.bundles()),
    }),
  );
  const routes = encryptionRoutes({ keyring: () => keyring, tokenKeys: peerKeys(deps.bundles, "token"), storage });
  return { descriptors: [EncryptionService], routes, close: async () => {} };
};
