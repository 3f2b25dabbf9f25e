// Encryption's record keyring (DESIGN.md §3), with envelope encryption
// (docs/keyring-rotation.md).
//
// Each record is sealed (AES-256-GCM) under a fresh random data key, with additional
// data that binds it to its storage key and kind, taken from the verified Access Token,
// so a ciphertext moved to another row does not open. The data key is wrapped
// (AES-256-GCM) under the keyring's current key-encryption key, with additional data
// binding it to the same storage key and kind and to that key's id, so a wrapped key
// moved to another row, or relabelled with another key id, does not open either.
//
// Rotation adds a key and makes it current: new writes wrap under it, and every key the
// keyring holds still unwraps what it wrapped. Re-wrapping moves a record's data key to
// the current key without touching (or seeing) the record's ciphertext.
//
// Records written before envelope encryption ("legacy") have no wrapped key: they were
// sealed directly under a keyring key, and still open.

import { createCipheriv, createDecipheriv, randomBytes, timingSafeEqual } from "node:crypto";
import type { RecordKindName } from "../storage/backend/record-store.js";
import { lengthPrefixed } from "./lookup-key.js";

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const RECORD_KEY_BYTES = 32;
const DATA_KEY_BYTES = 32;
/** nonce || wrapped data key || tag. */
export const WRAPPED_KEY_BYTES = NONCE_BYTES + DATA_KEY_BYTES + TAG_BYTES;

export class DecryptionError extends Error {
  override name = "DecryptionError";
}

/** The additional data of a record's ciphertext: its storage key and kind. */
export function additionalData(kind: RecordKindName, hash: string): Buffer {
  return lengthPrefixed(["hello-record-v1", kind, hash]);
}

/**
 * The additional data of a wrapped data key: its record's storage key and kind, and the
 * id of the key that wrapped it. Its label differs from the record's, so neither kind of
 * blob can be passed off as the other.
 */
export function wrappingData(kind: RecordKindName, hash: string, keyId: string): Buffer {
  return lengthPrefixed(["hello-record-key-v1", kind, hash, keyId]);
}

/** A record as Storage keeps it: `wrappedKey` empty for a legacy record. */
export interface SealedRecord {
  readonly keyId: string;
  readonly wrappedKey: Uint8Array;
  readonly ciphertext: Uint8Array;
}

export class Keyring {
  readonly #keys: ReadonlyMap<string, Buffer>;

  constructor(
    keys: ReadonlyMap<string, Uint8Array>,
    readonly currentKeyId: string,
  ) {
    for (const [id, key] of keys) {
      if (key.length !== RECORD_KEY_BYTES) throw new Error(`record key ${id} must be ${RECORD_KEY_BYTES} bytes`);
    }
    if (!keys.has(currentKeyId)) throw new Error(`the current record key ${currentKeyId} is not in the keyring`);
    this.#keys = new Map([...keys].map(([id, key]) => [id, Buffer.from(key)]));
  }

  keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  has(keyId: string): boolean {
    return this.#keys.has(keyId);
  }

  /** Key ids that both keyrings hold with different key bytes (a reload must never do that). */
  changedKeys(next: Keyring): string[] {
    return [...this.#keys].flatMap(([id, key]) => {
      const other = next.#keys.get(id);
      return other !== undefined && !timingSafeEqual(key, other) ? [id] : [];
    });
  }

  /** Seals under a fresh data key, wrapped under the current key. */
  seal(plaintext: Uint8Array, kind: RecordKindName, hash: string): SealedRecord {
    const dataKey = randomBytes(DATA_KEY_BYTES);
    try {
      return {
        keyId: this.currentKeyId,
        wrappedKey: this.#wrap(dataKey, kind, hash),
        ciphertext: gcmSeal(dataKey, plaintext, additionalData(kind, hash)),
      };
    } finally {
      dataKey.fill(0);
    }
  }

  open(sealed: SealedRecord, kind: RecordKindName, hash: string): Buffer {
    const aad = additionalData(kind, hash);
    if (sealed.wrappedKey.length === 0) {
      // Legacy: sealed directly under the keyring key.
      return gcmOpen(this.#key(sealed.keyId), sealed.ciphertext, aad, "the stored record does not authenticate under its key and storage key");
    }
    const dataKey = this.#unwrap(sealed.keyId, sealed.wrappedKey, kind, hash);
    try {
      return gcmOpen(dataKey, sealed.ciphertext, aad, "the stored record does not authenticate under its key and storage key");
    } finally {
      dataKey.fill(0);
    }
  }

  /**
   * The same data key, wrapped under the current key instead of `keyId`. Never sees the
   * record: a wrapped key Storage moved to another row, or relabelled, does not unwrap.
   */
  rewrap(kind: RecordKindName, hash: string, keyId: string, wrappedKey: Uint8Array): { keyId: string; wrappedKey: Buffer } {
    if (wrappedKey.length === 0) throw new DecryptionError("a record sealed before envelope encryption has no data key to re-wrap");
    const dataKey = this.#unwrap(keyId, wrappedKey, kind, hash);
    try {
      return { keyId: this.currentKeyId, wrappedKey: this.#wrap(dataKey, kind, hash) };
    } finally {
      dataKey.fill(0);
    }
  }

  #key(keyId: string): Buffer {
    const key = this.#keys.get(keyId);
    // The key id comes from Storage: it is not repeated back.
    if (!key) throw new DecryptionError("the record was sealed with a key this keyring does not hold");
    return key;
  }

  #wrap(dataKey: Buffer, kind: RecordKindName, hash: string): Buffer {
    return gcmSeal(this.#key(this.currentKeyId), dataKey, wrappingData(kind, hash, this.currentKeyId));
  }

  #unwrap(keyId: string, wrappedKey: Uint8Array, kind: RecordKindName, hash: string): Buffer {
    const dataKey = gcmOpen(
      this.#key(keyId),
      wrappedKey,
      wrappingData(kind, hash, keyId),
      "the stored record key does not authenticate under its key and storage key",
    );
    if (dataKey.length !== DATA_KEY_BYTES) {
      dataKey.fill(0);
      throw new DecryptionError("the stored record key is not a data key");
    }
    return dataKey;
  }
}

/** nonce || ciphertext || tag. */
function gcmSeal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]);
}

function gcmOpen(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array, failure: string): Buffer {
  if (sealed.length < NONCE_BYTES + TAG_BYTES) throw new DecryptionError("the stored record is truncated");
  const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, NONCE_BYTES));
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
  } catch {
    throw new DecryptionError(failure);
  }
}

export function generateRecordKey(): Buffer {
  return randomBytes(RECORD_KEY_BYTES);
}

/** Seals the way records were sealed before envelope encryption; for tests of legacy reads. */
export function sealLegacy(key: Uint8Array, plaintext: Uint8Array, kind: RecordKindName, hash: string): Buffer {
  return gcmSeal(key, plaintext, additionalData(kind, hash));
}
