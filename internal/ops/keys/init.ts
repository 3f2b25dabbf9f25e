// A custodian's own key material for production (`hello keys init`, `hello keys lookup`):
// made once, where the component's configuration names it, never replacing a file.
//
//   orchestration  the cookie key (every replica needs the same one)
//   token          the signing keys, one active key per purpose and alg (TOKEN_KEYS)
//   encryption     the record keyring
//   storage        the signing keys for Error Tokens and receipts (STORAGE_KEYS)
//
// The lookup key is the one secret two custodians hold, Orchestration's and Token's.
// One of them makes it (`lookup new`): it is installed in that custodian's own key
// file and a copy is written to a transfer file of its choosing, never into the other
// custodian's directory. The copy travels out of band to the other custodian, who
// installs it (`lookup install`): its format is checked and it is written 0600 where
// that custodian's configuration names it. Both sides print the same fingerprint (the
// first 80 bits of its SHA-256), which they compare over the phone without revealing
// the key; then the transfer copy is destroyed.

import { createHash, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import type { ComponentConfig } from "../../config/component-config.js";
import { writeFileAtomic } from "../../fs/write-file-atomic.js";
import type { Component } from "../../protocol/identity.js";
import {
  STORAGE_KEYS,
  TOKEN_KEYS,
  newKeyringText,
  newSecretKeyText,
  newSigningKeysText,
  parseSecretKey,
} from "../../protocol/key-files.js";

/** A refusal: something is in the way, or not what it must be. The message names the file. */
export class KeyInitError extends Error {
  override name = "KeyInitError";
}

export interface MadeKey {
  /** What it is, in words ("signing keys"). */
  readonly what: string;
  readonly file: string;
}

/** The files a component's own custodian makes with `hello keys init`, and how. */
function ownKeys(config: ComponentConfig): Array<MadeKey & { text: () => string }> {
  switch (config.component) {
    case "orchestration":
      return [{ what: "browser cookie key", file: config.keys.cookie, text: newSecretKeyText }];
    case "token":
      return [{ what: "signing keys", file: config.keys.signing, text: () => newSigningKeysText(TOKEN_KEYS) }];
    case "encryption":
      return [{ what: "record keyring", file: config.keys.keyring, text: () => newKeyringText() }];
    case "storage":
      return [{ what: "signing keys", file: config.keys.signing, text: () => newSigningKeysText(STORAGE_KEYS) }];
  }
}

/**
 * Makes the component's own keys where `config` names them, 0600. Refuses, making
 * nothing, if any of them exists: a key already in use is replaced only by a rotation.
 */
export async function initKeys(config: ComponentConfig): Promise<MadeKey[]> {
  const keys = ownKeys(config);
  const existing = keys.filter((key) => existsSync(key.file));
  if (existing.length > 0) {
    throw new KeyInitError(
      existing.map((key) => `the ${config.component} ${key.what} ${key.file} already exists`).join("; ") +
        `: init never replaces a key (${rotationOf(config.component)})`,
    );
  }
  const made: MadeKey[] = [];
  for (const key of keys) {
    await writeExclusive(key.file, key.text());
    made.push({ what: key.what, file: key.file });
  }
  return made;
}

function rotationOf(component: Component): string {
  switch (component) {
    case "token":
    case "storage":
      return "rotate it with `hello keys rotate`, docs/key-rotation.md";
    case "encryption":
      return "rotate it with `hello keyring rotate`, docs/keyring-rotation.md";
    case "orchestration":
      return "replacing the cookie key ends the logins in flight: delete the file first if you mean it, docs/key-rotation.md";
  }
}

/** The custodians that hold the lookup key. */
export type LookupHolder = "orchestration" | "token";
export const LOOKUP_HOLDERS: readonly LookupHolder[] = ["orchestration", "token"];

/** The lookup key's file, as the configuration of one of its two holders names it. */
export function lookupKeyFile(config: ComponentConfig): string {
  if (config.component !== "orchestration" && config.component !== "token") {
    throw new KeyInitError(`the ${config.component} custodian holds no lookup key: only Orchestration's and Token's do`);
  }
  return config.keys.lookup;
}

/**
 * What two custodians compare to know they hold the same lookup key without revealing it:
 * the first 80 bits of its SHA-256, as five groups of four hex digits.
 */
export function lookupKeyFingerprint(key: Buffer): string {
  const hex = createHash("sha256").update(key).digest("hex").slice(0, 20);
  return hex.match(/.{4}/g)!.join(" ");
}

/**
 * Makes a lookup key: installs it in `ownFile` and writes the copy for the other holder
 * to `transferFile`. Refuses, making nothing, if either exists.
 */
export async function newLookupKey(ownFile: string, transferFile: string): Promise<{ fingerprint: string }> {
  if (path.resolve(ownFile) === path.resolve(transferFile)) {
    throw new KeyInitError(`--out ${transferFile} is the lookup key file itself: the copy to hand over goes to a file of its own`);
  }
  if (existsSync(ownFile)) {
    throw new KeyInitError(`the lookup key ${ownFile} already exists: it is made once, and changed only by a planned migration (docs/key-rotation.md)`);
  }
  if (existsSync(transferFile)) throw new KeyInitError(`${transferFile} already exists: choose another --out, or remove it first`);
  const text = newSecretKeyText();
  await writeExclusive(ownFile, text);
  await writeExclusive(transferFile, text);
  return { fingerprint: lookupKeyFingerprint(parseSecretKey(text, "lookup key")) };
}

/**
 * Installs the lookup key the other holder made (read from `transferFile`) in `ownFile`,
 * 0600. Installing the same key again changes nothing; another key is refused.
 */
export async function installLookupKey(
  transferFile: string,
  ownFile: string,
): Promise<{ fingerprint: string; alreadyInstalled: boolean; exposed: boolean }> {
  if (!existsSync(transferFile)) throw new KeyInitError(`no such file: ${transferFile}`);
  if (path.resolve(ownFile) === path.resolve(transferFile)) {
    throw new KeyInitError(`${transferFile} is the lookup key file itself: install the copy the other custodian handed over`);
  }
  const key = readLookupKey(transferFile);
  const fingerprint = lookupKeyFingerprint(key);
  // Readable by others than its owner: worth a warning, the copy should be destroyed anyway.
  const exposed = (statSync(transferFile).mode & 0o077) !== 0;
  if (existsSync(ownFile)) {
    let held: Buffer | undefined;
    try {
      held = readLookupKey(ownFile);
    } catch {
      // Not a key: refused below like any other.
    }
    if (held && timingSafeEqual(held, key)) return { fingerprint, alreadyInstalled: true, exposed };
    throw new KeyInitError(`the lookup key ${ownFile} already exists and is another key: it is never replaced by install (docs/key-rotation.md)`);
  }
  await writeExclusive(ownFile, `${key.toString("base64url")}\n`);
  return { fingerprint, alreadyInstalled: false, exposed };
}

/** The fingerprint of the lookup key in `file`. */
export function fingerprintOf(file: string): string {
  if (!existsSync(file)) throw new KeyInitError(`no lookup key at ${file}`);
  return lookupKeyFingerprint(readLookupKey(file));
}

/** The lookup key in `file`: 32 bytes of base64url on one line, or a KeyInitError naming the file. */
function readLookupKey(file: string): Buffer {
  try {
    return parseSecretKey(readFileSync(file, "utf8"), `lookup key in ${file}`);
  } catch (error) {
    throw new KeyInitError((error as Error).message);
  }
}

/** Writes a secret 0600, refusing (with the file's name) if something got there first. */
async function writeExclusive(file: string, text: string): Promise<void> {
  try {
    await writeFileAtomic(file, text, { secret: true, exclusive: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") throw new KeyInitError(`${file} already exists: never replaced`);
    throw error;
  }
}
