// Encryption's wiring: its record keyring (watched, with the re-wrap job for its own
// operator), Token's and Storage's published keys, and a client of Storage — assembled by
// internal/components/encryption/encryption-component.ts.

import { encryptionComponent } from "./encryption-component.js";
import { type ServiceFactory, peerKeys } from "../runtime/component-services.js";

export const encryptionService: ServiceFactory<"encryption"> = async (config, deps) =>
  encryptionComponent(config, { ...deps, tokenKeys: peerKeys(deps.bundles, "token"), storageKeys: peerKeys(deps.bundles, "storage") });
