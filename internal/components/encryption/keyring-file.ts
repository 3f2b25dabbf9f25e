// Edits of Encryption's keyring file (internal/protocol/key-files.ts describes it), as
// `hello keyring` makes them: each one reads and validates the whole file, changes one
// thing, and replaces the file atomically (0600), so the running Encryption, which
// watches it, sees the old keyring or the new one and never half of either.

import { readFileSync } from "node:fs";
import { writeFileAtomic } from "../../fs/write-file-atomic.js";
import { loadKeyring } from "../../protocol/key-files.js";
import { generateRecordKey } from "../../protocol/keyring.js";

/** What a key id may be: what Storage accepts (1..64 printable ASCII), without spaces or quotes. */
export const KEY_ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;

interface KeyringJson {
  current: string;
  keys: Record<string, string>;
}

function read(file: string): KeyringJson {
  loadKeyring("encryption", file); // validates: every key 32 bytes, the current key present
  return JSON.parse(readFileSync(file, "utf8")) as KeyringJson;
}

async function write(file: string, keyring: KeyringJson): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(keyring, null, 2)}\n`, { secret: true });
}

/** A fresh key id: k<yyyymmdd>, with -2, -3… when that is taken. */
function newKeyId(taken: Record<string, string>, now: Date): string {
  const base = `k${now.toISOString().slice(0, 10).replaceAll("-", "")}`;
  if (!(base in taken)) return base;
  for (let n = 2; ; n++) if (!(`${base}-${n}` in taken)) return `${base}-${n}`;
}

/** Adds a new random key and makes it current; the previous keys stay (they still unwrap). */
export async function rotateKeyringFile(
  file: string,
  options: { keyId?: string; now?: Date } = {},
): Promise<{ keyId: string; previous: string }> {
  const keyring = read(file);
  const keyId = options.keyId ?? newKeyId(keyring.keys, options.now ?? new Date());
  if (!KEY_ID_PATTERN.test(keyId)) throw new Error("a key id must be 1 to 64 of A-Z a-z 0-9 . _ : -");
  if (keyId in keyring.keys) throw new Error(`the keyring already holds a key ${keyId}: a key id is never reused`);
  const previous = keyring.current;
  await write(file, { current: keyId, keys: { ...keyring.keys, [keyId]: generateRecordKey().toString("base64url") } });
  return { keyId, previous };
}

/** Removes a key that is not current. The caller has checked that no record depends on it. */
export async function dropFromKeyringFile(file: string, keyId: string): Promise<void> {
  const keyring = read(file);
  if (!(keyId in keyring.keys)) throw new Error(`the keyring holds no key ${keyId}`);
  if (keyring.current === keyId) throw new Error(`${keyId} is the current key; rotate to a new key first`);
  const keys = { ...keyring.keys };
  delete keys[keyId];
  await write(file, { current: keyring.current, keys });
}

/** The key ids in the file and the current one (no key material). */
export function describeKeyringFile(file: string): { current: string; keyIds: string[] } {
  const keyring = loadKeyring("encryption", file);
  return { current: keyring.currentKeyId, keyIds: keyring.keyIds() };
}
