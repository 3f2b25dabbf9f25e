// Encryption's record keyring (DESIGN.md §3): AES-256-GCM under versioned keys. New
// writes use the current key; every key stays able to open what it sealed. The
// additional data binds a ciphertext to its storage key and kind, taken from the
// verified Access Token, so a ciphertext moved to another row does not open.

import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import type { RecordKindName } from "../storage/backend/record-store.js";
import { lengthPrefixed } from "./lookup-key.js";

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const RECORD_KEY_BYTES = 32;

export class DecryptionError extends Error {
  override name = "DecryptionError";
}

export function additionalData(kind: RecordKindName, hash: string): Buffer {
  return lengthPrefixed(["hello-record-v1", kind, hash]);
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

  /** nonce || ciphertext || tag, under the current key. */
  seal(plaintext: Uint8Array, aad: Uint8Array): { keyId: string; ciphertext: Uint8Array } {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.#keys.get(this.currentKeyId)!, nonce);
    cipher.setAAD(aad);
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return { keyId: this.currentKeyId, ciphertext: Buffer.concat([nonce, body, cipher.getAuthTag()]) };
  }

  open(keyId: string, sealed: Uint8Array, aad: Uint8Array): Buffer {
    const key = this.#keys.get(keyId);
    // The key id comes from Storage: it is not repeated back.
    if (!key) throw new DecryptionError("the record was sealed with a key this keyring does not hold");
    if (sealed.length < NONCE_BYTES + TAG_BYTES) throw new DecryptionError("the stored record is truncated");
    const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, NONCE_BYTES));
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
    } catch {
      throw new DecryptionError("the stored record does not authenticate under its key and storage key");
    }
  }
}

export function generateRecordKey(): Buffer {
  return randomBytes(RECORD_KEY_BYTES);
}
