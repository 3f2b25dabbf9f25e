// Storage keys (docs/design.md §3): base64url(HMAC-SHA256(lookup key, kind, fields…)),
// each part length-prefixed so that no two different (kind, fields) encode alike:
// ("ab", "c") and ("a", "bc") hash differently. The lookup key is held by Token and
// Orchestration only; without it, Storage cannot tell whose row a hash is.

import { createHmac } from "node:crypto";
import type { RecordKindName } from "./records.js";

export const LOOKUP_KEY_BYTES = 32;

/** Concatenates length-prefixed UTF-8 parts (4-byte big-endian length, then bytes). */
export function lengthPrefixed(parts: readonly string[]): Buffer {
  return Buffer.concat(
    parts.flatMap((part) => {
      const bytes = Buffer.from(part, "utf8");
      const length = Buffer.alloc(4);
      length.writeUInt32BE(bytes.length);
      return [length, bytes];
    }),
  );
}

export function lookupHash(lookupKey: Uint8Array, kind: RecordKindName, fields: readonly string[]): string {
  if (lookupKey.length !== LOOKUP_KEY_BYTES) throw new Error(`the lookup key must be ${LOOKUP_KEY_BYTES} bytes`);
  return createHmac("sha256", lookupKey).update(lengthPrefixed([kind, ...fields])).digest("base64url");
}

export const subjectHash = (key: Uint8Array, iss: string, sub: string) => lookupHash(key, "subject", [iss, sub]);
export const releaseHash = (key: Uint8Array, uid: string, clientId: string) => lookupHash(key, "release", [uid, clientId]);
export const walletHash = (key: Uint8Array, uid: string) => lookupHash(key, "wallet", [uid]);
export const reservationHash = (key: Uint8Array, clientId: string, directedId: string) =>
  lookupHash(key, "reservation", [clientId, directedId]);
/** The credential wallet's records (docs/wallet-server.md). */
export const s2sSessionHash = (key: Uint8Array, issuer: string, sessionId: string) => lookupHash(key, "s2s-session", [issuer, sessionId]);
export const credentialHash = (key: Uint8Array, issuer: string, sessionId: string, instanceId: string) =>
  lookupHash(key, "credential", [issuer, sessionId, instanceId]);
export const holdingsHash = (key: Uint8Array, uid: string) => lookupHash(key, "holdings", [uid]);
