// Each component's own service on the mesh, built from its own configuration.
// The protocol handlers arrive with the protocol issue; until then a method answers
// UNIMPLEMENTED, after the mesh has authenticated and authorized the caller.

import type { ConnectRouter } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import type { ComponentConfig } from "../config/component-config.js";
import type { MeshCredentials } from "../../mesh/server.js";
import type { TrustStore } from "../../mesh/trust.js";
import { TokenService } from "../gen/hello/token/v1/token_service_pb.js";
import { EncryptionService } from "../gen/hello/encryption/v1/encryption_service_pb.js";
import { StorageService } from "../gen/hello/storage/v1/storage_service_pb.js";
import { openRecordStore } from "../storage/backend/open-store.js";
import type { Logger } from "../log/logger.js";

export interface ComponentService {
  /** The services this component serves on the mesh (beyond health/reflection/BuildInfo). */
  readonly descriptors: readonly DescService[];
  routes(router: ConnectRouter): void;
  /** Peers' bundles changed: clients must trust the new CAs. */
  updateTrust?(trust: TrustStore): void;
  close(): Promise<void>;
}

export interface ServiceDeps {
  readonly credentials: MeshCredentials;
  readonly trust: TrustStore;
  readonly log: Logger;
}

export async function componentService(config: ComponentConfig, deps: ServiceDeps): Promise<ComponentService> {
  switch (config.component) {
    case "orchestration":
      // Orchestration serves no mesh API of its own: it is the front door (HTTP) and a
      // client of Token and Encryption. Its mesh server carries only operator services.
      return { descriptors: [], routes: () => {}, close: async () => {} };
    case "token":
      return { descriptors: [TokenService], routes: (r) => r.service(TokenService, {}), close: async () => {} };
    case "encryption":
      return {
        descriptors: [EncryptionService],
        routes: (r) => r.service(EncryptionService, {}),
        close: async () => {},
      };
    case "storage": {
      const store = await openRecordStore(config.database);
      deps.log.info({ backend: config.database.url ? "postgresql" : "pglite" }, "opened the record store");
      return {
        descriptors: [StorageService],
        routes: (r) => r.service(StorageService, {}),
        close: () => store.close(),
      };
    }
  }
}
