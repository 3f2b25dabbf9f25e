// The Wallet Client's local key store (docs/wallet-server.md, "Roles"): one directory
// that holds the instance's DPoP key, its sign-in, and later the WSK of each session and
// the WEK and presentment keys of each credential instance. Nothing in it ever leaves the
// machine; the wallet server cannot read a credential because only this directory holds
// the keys that open them.
//
// Layout, under the directory the caller names (the CLI: $HELLO_WALLET_HOME or
// ~/.hello-wallet):
//
//   dpop-key.json      the instance's DPoP key pair (made once, ES256)
//   login.json         the current sign-in (StoredLogin)
//   keys/<name>.json   named private JWKs
//   data/<name>.json   small JSON documents (sessions, credentials)
//
// Rules: directories are 0700 and files 0600, written atomically (temp file + rename);
// a directory or file that group or others can reach, or that another user owns, is
// refused with an error that says what to chmod, as ssh does with ~/.ssh. Every JSON file
// is checked against its schema when read, and a bad one is reported by name only: the
// error never quotes its contents, which may be key material.

import { constants } from "node:fs";
import { type FileHandle, mkdir, open, readdir, rm, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { JSONWebKeySet, JWK } from "jose";
import { z } from "zod";
import { writeFileAtomic } from "../fs/write-file-atomic.js";
import { type DpopKey, generateDpopKey, jwkThumbprint } from "../protocol/dpop.js";

export interface StoredLogin {
  /** The hello-mesh issuer URL, as its discovery document names it. */
  server: string;
  clientId: string;
  /** The DPoP-bound wallet access token. */
  accessToken: string;
  /** When the access token expires, in seconds since the epoch. */
  expiresAt: number;
  /** The ID Token's sub. */
  sub: string;
  /** The server's wallet keys (/wallet/jwks), pinned at the first sign-in to this server. */
  walletJwks?: JSONWebKeySet;
}

/** Names of keys and data documents: they become file names, so nothing that could name a path. */
export const STORE_NAME = /^[A-Za-z0-9._-]{1,128}$/;

/** The largest file the store reads: its documents are small, and a huge one is not ours. */
const MAX_FILE_BYTES = 1024 * 1024;

const DPOP_KEY_FILE = "dpop-key.json";
const LOGIN_FILE = "login.json";
const KEYS_DIR = "keys";
const DATA_DIR = "data";

// --- schemas ------------------------------------------------------------------------

const base64url = z.string().regex(/^[A-Za-z0-9_-]+$/);

/** A JWK: loose (any members), but with a key type. */
const jwkSchema = z.looseObject({ kty: z.string().min(1) });

/** A public JWK: a JWK with no private or secret member. */
const publicJwkSchema = jwkSchema.refine(
  (jwk) => !["d", "p", "q", "dp", "dq", "qi", "oth", "k"].some((member) => Object.hasOwn(jwk, member)),
  "a public key set holds private key material",
);

export const jwksSchema = z.object({ keys: z.array(publicJwkSchema).min(1) });

const dpopKeySchema = z.object({
  alg: z.enum(["ES256", "EdDSA"]),
  privateJwk: z.looseObject({ kty: z.enum(["EC", "OKP"]), crv: z.string(), x: base64url, y: base64url.optional(), d: base64url }),
  publicJwk: z.looseObject({ kty: z.enum(["EC", "OKP"]), crv: z.string(), x: base64url, y: base64url.optional() }),
});

const storedLoginSchema = z.object({
  server: z.url(),
  clientId: z.string().min(1),
  accessToken: z.string().min(1),
  expiresAt: z.number().int(),
  sub: z.string().min(1),
  walletJwks: jwksSchema.optional(),
});

// --- permission checks --------------------------------------------------------------

/** The current user's uid, or undefined where there is none (Windows: no POSIX modes to check). */
const currentUid = (): number | undefined => (typeof process.getuid === "function" ? process.getuid() : undefined);

/** Refuses a file or directory that another user owns or that group or others can reach at all. */
function checkPrivate(path: string, info: { mode: number; uid: number }, kind: "directory" | "file"): void {
  const uid = currentUid();
  if (uid === undefined) return;
  const mode = (info.mode & 0o777).toString(8).padStart(4, "0");
  if (info.uid !== uid) {
    throw new Error(`the wallet ${kind} ${path} is owned by uid ${info.uid}, not by you (uid ${uid}): the wallet uses only its owner's files; run: chown ${uid} ${path}`);
  }
  if ((info.mode & 0o077) !== 0) {
    const fix = kind === "directory" ? "700" : "600";
    throw new Error(`the wallet ${kind} ${path} is accessible by group or others (mode ${mode}); its keys must be yours alone: run: chmod ${fix} ${path}`);
  }
}

function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === "ENOENT";
}

/** O_NOFOLLOW where the platform has it: a symbolic link in the store is never followed to a file elsewhere. */
const NOFOLLOW = constants.O_NOFOLLOW ?? 0;

// --- the store ----------------------------------------------------------------------

export class KeyStore {
  readonly #dir: string;
  #dpopKey: Promise<DpopKey> | undefined;

  private constructor(dir: string) {
    this.#dir = dir;
  }

  /** The store's directory, made (0700) if it is not there; refused if it is not private. */
  static async open(dir: string): Promise<KeyStore> {
    const path = resolve(dir);
    await mkdir(path, { recursive: true, mode: 0o700 });
    const info = await stat(path);
    if (!info.isDirectory()) throw new Error(`the wallet directory ${path} is not a directory`);
    checkPrivate(path, info, "directory");
    for (const sub of [KEYS_DIR, DATA_DIR]) await checkDirectoryIfPresent(join(path, sub));
    return new KeyStore(path);
  }

  /** The directory the store lives in. */
  get directory(): string {
    return this.#dir;
  }

  /** The instance's DPoP key: made once (ES256), kept in dpop-key.json. */
  dpopKey(): Promise<DpopKey> {
    this.#dpopKey ??= this.#loadOrMakeDpopKey();
    // A failure is not cached: the next call tries again (and reports its own error).
    this.#dpopKey.catch(() => (this.#dpopKey = undefined));
    return this.#dpopKey;
  }

  async #loadOrMakeDpopKey(): Promise<DpopKey> {
    const file = join(this.#dir, DPOP_KEY_FILE);
    const existing = await this.#read(file, dpopKeySchema, "DPoP key file");
    if (existing !== undefined) return checkedDpopKey(file, existing as DpopKey);
    const key = await generateDpopKey("ES256");
    try {
      // Exclusive: two processes making the key at once keep the first, never swap it
      // under a sign-in that is already bound to it.
      await writeFileAtomic(file, `${JSON.stringify(key, null, 2)}\n`, { secret: true, exclusive: true });
      return key;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const other = await this.#read(file, dpopKeySchema, "DPoP key file");
      if (other === undefined) throw error;
      return checkedDpopKey(file, other as DpopKey);
    }
  }

  async saveLogin(login: StoredLogin): Promise<void> {
    const parsed = storedLoginSchema.safeParse(login);
    if (!parsed.success) throw new Error(`this sign-in cannot be stored: ${issuePaths(parsed.error)}`);
    await this.#write(join(this.#dir, LOGIN_FILE), parsed.data);
  }

  async login(): Promise<StoredLogin | undefined> {
    return (await this.#read(join(this.#dir, LOGIN_FILE), storedLoginSchema, "sign-in file")) as StoredLogin | undefined;
  }

  async forgetLogin(): Promise<void> {
    await rm(join(this.#dir, LOGIN_FILE), { force: true });
  }

  /** A named private key under keys/<name>.json. */
  async putKey(name: string, jwk: JWK): Promise<void> {
    const parsed = jwkSchema.safeParse(jwk);
    if (!parsed.success) throw new Error(`the key ${checkName(name)} is not a JWK: ${issuePaths(parsed.error)}`);
    await this.#write(this.#named(KEYS_DIR, name), parsed.data);
  }

  async getKey(name: string): Promise<JWK | undefined> {
    return (await this.#read(this.#named(KEYS_DIR, name), jwkSchema, "key file")) as JWK | undefined;
  }

  /** Removes a named key (nothing when there is none): a key whose credential ended is not kept. */
  async deleteKey(name: string): Promise<void> {
    await rm(this.#named(KEYS_DIR, name), { force: true });
  }

  /** The names of the stored keys (those starting with `prefix`), sorted. */
  listKeys(prefix = ""): Promise<string[]> {
    return this.#list(KEYS_DIR, prefix);
  }

  /** A small JSON document under data/<name>.json. */
  async putData(name: string, value: unknown): Promise<void> {
    const text = JSON.stringify(value);
    if (text === undefined) throw new Error(`the document ${checkName(name)} is not JSON`);
    await this.#write(this.#named(DATA_DIR, name), value);
  }

  async getData<T>(name: string, schema: z.ZodType<T>): Promise<T | undefined> {
    return this.#read(this.#named(DATA_DIR, name), schema, "document");
  }

  /** The names of the stored documents (those starting with `prefix`), sorted. */
  listData(prefix = ""): Promise<string[]> {
    return this.#list(DATA_DIR, prefix);
  }

  // --- files ---

  #named(sub: string, name: string): string {
    return join(this.#dir, sub, `${checkName(name)}.json`);
  }

  async #write(file: string, value: unknown): Promise<void> {
    const text = `${JSON.stringify(value, null, 2)}\n`;
    if (Buffer.byteLength(text) > MAX_FILE_BYTES) throw new Error(`${file} would be larger than ${MAX_FILE_BYTES} bytes`);
    await writeFileAtomic(file, text, { secret: true, directoryMode: 0o700 });
  }

  /** The file parsed by `schema`, or undefined if there is none. Opened first and checked through the open handle, so the checked file is the one read. */
  async #read<T>(file: string, schema: z.ZodType<T>, what: string): Promise<T | undefined> {
    let handle: FileHandle;
    try {
      handle = await open(file, constants.O_RDONLY | NOFOLLOW);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      if ((error as NodeJS.ErrnoException).code === "ELOOP") throw new Error(`the wallet ${what} ${file} is a symbolic link; the wallet reads only its own files`);
      throw error;
    }
    let text: string;
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw new Error(`the wallet ${what} ${file} is not a file`);
      checkPrivate(file, info, "file");
      if (info.size > MAX_FILE_BYTES) throw new Error(`the wallet ${what} ${file} is larger than ${MAX_FILE_BYTES} bytes`);
      text = await handle.readFile("utf8");
    } finally {
      await handle.close();
    }
    // Neither JSON.parse's message (which quotes the text) nor zod's values go into the
    // error: the file may hold a private key.
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new Error(`the wallet ${what} ${file} is corrupt: it is not JSON (move it away, or remove it, to start afresh)`);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) throw new Error(`the wallet ${what} ${file} is corrupt: ${issuePaths(parsed.error)}`);
    return parsed.data;
  }

  async #list(sub: string, prefix: string): Promise<string[]> {
    if (prefix !== "" && !/^[A-Za-z0-9._-]{0,128}$/.test(prefix)) throw new Error(`"${prefix.slice(0, 40)}" is not a valid name prefix`);
    const dir = join(this.#dir, sub);
    if (!(await checkDirectoryIfPresent(dir))) return [];
    const names: string[] = [];
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      // Temporary files of writeFileAtomic end in .tmp, so .json skips them.
      if (!entry.isFile() || !entry.name.endsWith(".json")) continue;
      const name = entry.name.slice(0, -".json".length);
      if (STORE_NAME.test(name) && name.startsWith(prefix)) names.push(name);
    }
    return names.sort();
  }
}

/** The name if it is one the store takes; an error otherwise. */
function checkName(name: string): string {
  if (typeof name !== "string" || !STORE_NAME.test(name)) {
    throw new Error(`"${String(name).slice(0, 40)}" is not a valid wallet store name: 1 to 128 of A-Z a-z 0-9 . _ -`);
  }
  return name;
}

/** False if the directory is not there; an error if it is there but not a private directory. */
async function checkDirectoryIfPresent(dir: string): Promise<boolean> {
  let info;
  try {
    info = await stat(dir);
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
  if (!info.isDirectory()) throw new Error(`the wallet directory ${dir} is not a directory`);
  checkPrivate(dir, info, "directory");
  return true;
}

/** Where the schema failed, by member path only: never a value. */
function issuePaths(error: z.ZodError): string {
  const paths = [...new Set(error.issues.map((issue) => (issue.path.length > 0 ? issue.path.join(".") : "(the whole document)")))];
  return `${paths.length === 1 ? "member" : "members"} ${paths.join(", ")} ${paths.length === 1 ? "is" : "are"} missing or invalid`;
}

/** A stored DPoP key whose halves match (what createDpopProof would refuse later, refused now with the file's name). */
async function checkedDpopKey(file: string, key: DpopKey): Promise<DpopKey> {
  let same = false;
  try {
    // A thumbprint hashes the public members only, so the private JWK's is its public key's.
    same = (await jwkThumbprint(key.privateJwk)) === (await jwkThumbprint(key.publicJwk));
  } catch {
    same = false;
  }
  if (!same) throw new Error(`the wallet DPoP key file ${file} is corrupt: its public key is not its private key's`);
  return key;
}
