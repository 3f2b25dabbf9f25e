// Storage's signing keys for tests that assemble Storage in-process: its Error Token
// and receipt keys, and the public keys its callers verify them with.

import { VerificationKeys, generateSigningKey, publicJwk } from "../../internal/protocol/signing-keys.js";

export function storageKeyPair() {
  const error = generateSigningKey("error");
  const receipt = generateSigningKey("receipt");
  return { error, receipt, keys: new VerificationKeys([publicJwk(error), publicJwk(receipt)]) };
}
