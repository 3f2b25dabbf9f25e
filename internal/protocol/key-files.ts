// Each custodian's secret key material on disk. Production components only load
// these files and refuse to start without them; each custodian makes its own with
// `hello keys init` (and the lookup key with `hello keys lookup`), and `hello start`
// (development) makes the missing ones first. Files are written 0600 through a temporary file and a rename.
//
//   signing keys   { "keys": [ <private JWK with kid "<purpose>.<id>" and alg>, … ] }
//                  Token: session, access, record, id-token and userinfo (RS256, ES256,
//                  EdDSA each), key-set
//                  Storage: error, receipt
//   lookup key     base64url of 32 random bytes (Token and Orchestration hold the same)
//   cookie key     base64url of 32 random bytes (Orchestration: sealed browser flow state)
//   keyring        { "current": "<id>", "keys": { "<id>": "<base64url 32 bytes>", … } }

import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, watch } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { writeFileAtomic } from "../fs/write-file-atomic.js";
import { readJsonFile } from "../fs/read-json-file.js";
import { Keyring, RECORD_KEY_BYTES, generateRecordKey } from "./keyring.js";
import { LOOKUP_KEY_BYTES } from "./lookup-key.js";
import { fileFormatMember } from "./versions.js";
import {
  type KeyPurpose,
  type SigningAlg,
  type SigningKey,
  generateSigningKey,
  privateJwk,
  signingKeyFromJwk,
} from "./signing-keys.js";

export interface KeySpec {
  readonly purpose: KeyPurpose;
  readonly alg: SigningAlg;
}

export const TOKEN_KEYS: readonly KeySpec[] = [
  { purpose: "session", alg: "EdDSA" },
  { purpose: "access", alg: "EdDSA" },
  { purpose: "record", alg: "EdDSA" },
  { purpose: "key-set", alg: "EdDSA" },
  { purpose: "id-token", alg: "RS256" },
  { purpose: "id-token", alg: "ES256" },
  { purpose: "id-token", alg: "EdDSA" },
  // Signed userinfo answers (OIDC Core §5.3.2): a purpose of their own, so that no
  // userinfo JWT can pass for an ID Token at a relying party that selects keys by kid.
  { purpose: "userinfo", alg: "RS256" },
  { purpose: "userinfo", alg: "ES256" },
  { purpose: "userinfo", alg: "EdDSA" },
];
/**
 * Token's credential-wallet keys, in a file of their own (`keys.wallet`): optional, so a
 * Token without them still serves logins, and never in the file or bundle an earlier
 * release reads. ES256 for what issuers and wallet clients verify.
 */
export const WALLET_KEYS: readonly KeySpec[] = [
  { purpose: "wallet-access", alg: "EdDSA" },
  { purpose: "wallet", alg: "ES256" },
];
export const STORAGE_KEYS: readonly KeySpec[] = [
  { purpose: "error", alg: "EdDSA" },
  { purpose: "receipt", alg: "EdDSA" },
];

/**
 * Production keys are never generated silently (docs/design.md §2): a component whose keys,
 * certificate or key file is missing refuses to start and says how its custodian makes them.
 */
export class MissingKeyMaterialError extends Error {
  override name = "MissingKeyMaterialError";
}

const SigningKeysFile = z.strictObject({
  format: fileFormatMember("signing key file"),
  keys: z.array(z.looseObject({ kid: z.string(), alg: z.string(), d: z.string() })),
});
const KeyringFile = z.strictObject({ format: fileFormatMember("keyring file"), current: z.string().min(1), keys: z.record(z.string(), z.string()) });

function missing(component: string, file: string, what: string): MissingKeyMaterialError {
  const maker = what === "lookup key" ? "`hello keys lookup new` or `hello keys lookup install`" : `\`hello keys init ${component}\``;
  return new MissingKeyMaterialError(
    `the ${component} component cannot start: its ${what} ${file} is missing. Its custodian makes it with ${maker} --config <its configuration> (hello start makes development keys); production keys are never generated on start.`,
  );
}

function decode32(text: string, what: string): Buffer {
  const bytes = Buffer.from(text.trim(), "base64url");
  if (bytes.length !== 32) throw new Error(`the ${what} must be 32 bytes of base64url`);
  return bytes;
}

/** The signing keys in `file`; every spec must have at least one key. */
export function loadSigningKeys(component: string, file: string, required: readonly KeySpec[]): SigningKey[] {
  if (!existsSync(file)) throw missing(component, file, "signing key file");
  const parsed = readJsonFile(SigningKeysFile, file, "signing key file");
  const keys = parsed.keys.map((jwk) => signingKeyFromJwk(jwk));
  for (const spec of required) {
    if (!keys.some((k) => k.purpose === spec.purpose && k.alg === spec.alg && (k.status ?? "active") === "active")) {
      throw new MissingKeyMaterialError(`${file} holds no active ${spec.purpose} key for ${spec.alg}`);
    }
  }
  return keys;
}

/** A 32-byte secret (the lookup key, Orchestration's cookie key). */
export function loadSecretKey(component: string, file: string, what: string): Buffer {
  if (!existsSync(file)) throw missing(component, file, what);
  return decode32(readFileSync(file, "utf8"), `${what} in ${file}`);
}

export const loadLookupKey = (component: string, file: string) => loadSecretKey(component, file, "lookup key");

/**
 * The signing keys in `file`, reloaded when the file changes (a rotation needs no
 * restart). A file that no longer loads is reported and the previous keys stay in force.
 */
export function watchSigningKeys(
  component: string,
  file: string,
  required: readonly KeySpec[],
  onReload: (error?: unknown) => void,
): { keys: () => readonly SigningKey[]; close(): void } {
  let keys: readonly SigningKey[] = loadSigningKeys(component, file, required);
  const stop = onFileChange(file, () => {
    try {
      keys = loadSigningKeys(component, file, required);
      onReload();
    } catch (error) {
      onReload(error);
    }
  });
  return { keys: () => keys, close: stop };
}

/**
 * Calls `changed` (debounced by 100 ms) when `file` is written or replaced; returns the
 * stop function. It watches the directory, because a careful writer (writeFileAtomic)
 * replaces the file by renaming over it.
 */
function onFileChange(file: string, changed: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  const watcher = watch(path.dirname(file), (_event, name) => {
    if (name !== path.basename(file)) return;
    clearTimeout(timer);
    timer = setTimeout(changed, 100);
  });
  return () => {
    clearTimeout(timer);
    watcher.close();
  };
}

export function loadKeyring(component: string, file: string): Keyring {
  if (!existsSync(file)) throw missing(component, file, "record keyring");
  const parsed = readJsonFile(KeyringFile, file, "record keyring");
  return new Keyring(
    new Map(Object.entries(parsed.keys).map(([id, key]) => [id, decode32(key, `record key ${id}`)])),
    parsed.current,
  );
}

export type KeyringReload = { readonly keyring: Keyring; readonly previous: Keyring } | { readonly error: unknown };

/**
 * Encryption's keyring in `file`, reloaded when the file changes: a rotation needs no
 * restart (docs/keyring-rotation.md). A file that no longer loads, or that gives a key
 * id it already had other key bytes (which would make every record under that id
 * unreadable), is reported and the previous keyring stays in force. Dropping a key is
 * accepted here; `hello keyring drop` checks first that no record depends on it.
 */
export function watchKeyring(
  component: string,
  file: string,
  onReload: (reload: KeyringReload) => void,
): { keyring: () => Keyring; close(): void } {
  let keyring = loadKeyring(component, file);
  const stop = onFileChange(file, () => {
    try {
      const next = loadKeyring(component, file);
      const changed = keyring.changedKeys(next);
      if (changed.length > 0) {
        throw new Error(`the keyring file gives key ${changed.join(", ")} other key bytes; a key id must never change its key`);
      }
      const previous = keyring;
      keyring = next;
      onReload({ keyring, previous });
    } catch (error) {
      onReload({ error });
    }
  });
  return { keyring: () => keyring, close: stop };
}

// New key material, as the files hold it: for a custodian's `hello keys init` (which
// never replaces a file) and for development (below).

/** A new signing key file: one active key for each spec. */
export function newSigningKeysText(required: readonly KeySpec[]): string {
  return `${JSON.stringify({ keys: required.map((spec) => privateJwk(generateSigningKey(spec.purpose, spec.alg))) }, null, 2)}\n`;
}

/** A new 32-byte secret (the lookup key, the cookie key), as its file holds it. */
export function newSecretKeyText(): string {
  return `${randomBytes(LOOKUP_KEY_BYTES).toString("base64url")}\n`;
}

/** A new record keyring of one key, with the id `k<yyyymmdd>`. */
export function newKeyringText(now = new Date()): string {
  const id = `k${now.toISOString().slice(0, 10).replaceAll("-", "")}`;
  return `${JSON.stringify({ current: id, keys: { [id]: generateRecordKey().toString("base64url") } }, null, 2)}\n`;
}

/** A 32-byte secret as its file holds it (base64url on one line); throws naming `what` otherwise. */
export function parseSecretKey(text: string, what: string): Buffer {
  if (!/^[A-Za-z0-9_-]{43}\r?\n?$/.test(text)) throw new Error(`the ${what} must be 32 bytes of base64url (43 characters) on one line`);
  return decode32(text, what);
}

// Development only: make what is missing, never overwrite.

/** Makes the file, or adds the keys a newer version needs to an existing one; never replaces a key. */
export async function ensureSigningKeys(file: string, required: readonly KeySpec[]): Promise<boolean> {
  const existing = existsSync(file) ? readJsonFile(SigningKeysFile, file, "signing key file").keys : [];
  const held = existing.map((jwk) => signingKeyFromJwk(jwk));
  const missing = required.filter((spec) => !held.some((k) => k.purpose === spec.purpose && k.alg === spec.alg));
  if (missing.length === 0) return false;
  const keys = [...existing, ...missing.map((spec) => privateJwk(generateSigningKey(spec.purpose, spec.alg)))];
  await writeFileAtomic(file, `${JSON.stringify({ keys }, null, 2)}\n`, { secret: true });
  return true;
}

/** Makes a 32-byte secret if missing, and copies it to the other custodians that share it. */
export async function ensureSecretKey(file: string, copyTo: readonly string[] = []): Promise<boolean> {
  const created = !existsSync(file);
  if (created) await writeFileAtomic(file, newSecretKeyText(), { secret: true });
  const key = readFileSync(file, "utf8");
  for (const other of copyTo) if (!existsSync(other)) await writeFileAtomic(other, key, { secret: true });
  return created;
}

export async function ensureKeyring(file: string): Promise<boolean> {
  if (existsSync(file)) return false;
  await writeFileAtomic(file, newKeyringText(), { secret: true });
  return true;
}

export { RECORD_KEY_BYTES };
