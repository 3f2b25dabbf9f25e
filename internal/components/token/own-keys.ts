// Token's own keys: the active one of each purpose signs, and every one of them (next,
// active and retired alike) verifies what Token signed before — its sessions and its
// records, which it reads back from Orchestration.

import { type KeyPurpose, type SigningAlg, type SigningKey, VerificationKeys, activeKey, publicJwk } from "../../protocol/signing-keys.js";

export interface OwnKeys {
  /** The key that signs for `purpose` now (and `alg`, for app-facing keys). */
  active(purpose: KeyPurpose, alg?: SigningAlg): SigningKey;
  /** The public keys of every key Token holds, for verifying what it signed. */
  verification(): VerificationKeys;
}

/** `keys` as last loaded (the key file is reloaded when it changes). */
export function ownKeys(keys: () => readonly SigningKey[]): OwnKeys {
  // Rebuilt only when the key set changes: turning JWKs into key objects costs.
  let cached: { from: readonly SigningKey[]; keys: VerificationKeys } | undefined;
  return {
    active: (purpose, alg) => activeKey(keys(), purpose, alg),
    verification() {
      const current = keys();
      if (cached?.from !== current) cached = { from: current, keys: new VerificationKeys(current.map(publicJwk)) };
      return cached.keys;
    },
  };
}
