// Orchestration's transient state holds nothing readable (docs/design.md §8). Flow state
// travels in the browser sealed under Orchestration's cookie key; an authorization
// code's entry is sealed under a key derived from the code itself and kept under the
// code's SHA-256, so whoever reads the shared store learns nothing and cannot redeem.

import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from "node:crypto";
import type { StateHeld } from "../../observability/metrics/registry.js";

const NONCE = 12;
const TAG = 16;

function deriveKey(secret: Uint8Array, info: string): Buffer {
  return Buffer.from(hkdfSync("sha256", secret, Buffer.alloc(0), info, 32));
}

function seal(key: Buffer, plaintext: Buffer, aad: string): Buffer {
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv("aes-256-gcm", key, nonce).setAAD(Buffer.from(aad));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]);
}

function open(key: Buffer, sealed: Buffer, aad: string): Buffer | undefined {
  if (sealed.length < NONCE + TAG) return undefined;
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, NONCE)).setAAD(Buffer.from(aad));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG));
    return Buffer.concat([decipher.update(sealed.subarray(NONCE, sealed.length - TAG)), decipher.final()]);
  } catch {
    return undefined;
  }
}

/**
 * Seals small JSON values for the browser to carry (a cookie, a hidden form field).
 * `purpose` is authenticated, so a sealed consent state cannot pose as a login state.
 */
export class FlowSealer {
  readonly #key: Buffer;
  constructor(cookieKey: Uint8Array) {
    if (cookieKey.length !== 32) throw new Error("the cookie key must be 32 bytes");
    this.#key = deriveKey(cookieKey, "hello-mesh flow state v1");
  }

  seal(purpose: string, value: unknown, ttlSeconds: number, now = Date.now()): string {
    const payload = Buffer.from(JSON.stringify({ exp: now + ttlSeconds * 1000, value }));
    return seal(this.#key, payload, purpose).toString("base64url");
  }

  /** The value, or undefined when it was tampered with, sealed for another purpose, or expired. */
  open<T>(purpose: string, sealed: string | undefined, now = Date.now()): T | undefined {
    if (!sealed || sealed.length > 64 * 1024) return undefined;
    const plain = open(this.#key, Buffer.from(sealed, "base64url"), purpose);
    if (!plain) return undefined;
    const { exp, value } = JSON.parse(plain.toString("utf8")) as { exp: number; value: T };
    return now <= exp ? value : undefined;
  }
}

/** A store that Orchestration's replicas share. `take` must be atomic: get and delete. */
export interface SharedStore {
  put(key: string, value: Buffer, ttlMs: number): Promise<void>;
  get(key: string): Promise<Buffer | undefined>;
  take(key: string): Promise<Buffer | undefined>;
  /**
   * Puts `key` only if no live entry holds it, atomically across replicas: true when
   * this call claimed it. (A get-then-put would let two replicas both see "absent".)
   */
  claim(key: string, ttlMs: number): Promise<boolean>;
}

/** A shared store that can also list its live entries under a prefix (the wallet server's work queue, s2s/wallet-work.ts). */
export interface ScanningStore extends SharedStore {
  /** Up to `limit` live entries whose key starts with `prefix`, in no set order. */
  scan(prefix: string, limit: number): Promise<Array<{ key: string; value: Buffer }>>;
}

/**
 * What an entry costs beyond its key's and value's bytes: the Map slot, the entry
 * object, and the Buffer with its own ArrayBuffer and backing store (measured on Node
 * 20; how: docs/performance.md).
 */
const ENTRY_OVERHEAD_BYTES = 470;

/** The key prefixes the front door and the wallet server use (SecretKeyedStore kinds, client-assertion and request-object ids, evidence, the work queue and its leases). */
const STATE_KINDS = new Set(["code", "access-token", "assertion", "request-object", "dpop", "wallet-access", "evidence", "wallet-work", "wallet-lease"]);

/** The label for a key: its prefix if the front door chose it, else "other" (never the rest). */
function kindOf(key: string): string {
  const prefix = key.slice(0, Math.max(0, key.indexOf(":")));
  return STATE_KINDS.has(prefix) ? prefix : "other";
}

/** One process's store; replicas need a shared one behind the same interface. */
export class MemoryStore implements ScanningStore {
  readonly #entries = new Map<string, { value: Buffer; expires: number }>();
  /** Entries and bytes by kind, kept as entries come and go, so a scrape costs nothing. */
  readonly #held = new Map<string, { kind: string; entries: number; bytes: number }>();
  #nextSweep = 0;
  async put(key: string, value: Buffer, ttlMs: number) {
    // A sweep visits every entry (access tokens live 10 minutes, so at 100 logins/s
    // there are 60 000): once a second, not on every put.
    const now = Date.now();
    if (now >= this.#nextSweep) {
      this.#nextSweep = now + 1000;
      this.#sweep();
    }
    // A copy in memory of its own: `value` is usually a slice of Node's shared 8 KiB
    // buffer pool, and one kept slice keeps its whole slab alive (docs/performance.md).
    const own = Buffer.allocUnsafeSlow(value.length);
    value.copy(own);
    this.#delete(key);
    this.#entries.set(key, { value: own, expires: now + ttlMs });
    this.#account(key, own, 1);
  }
  async get(key: string) {
    const entry = this.#entries.get(key);
    return entry && entry.expires >= Date.now() ? entry.value : undefined;
  }
  async take(key: string) {
    const value = await this.get(key);
    this.#delete(key);
    return value;
  }
  async claim(key: string, ttlMs: number) {
    if (await this.get(key)) return false;
    await this.put(key, Buffer.alloc(0), ttlMs);
    return true;
  }
  async scan(prefix: string, limit: number) {
    const now = Date.now();
    const found: Array<{ key: string; value: Buffer }> = [];
    for (const [key, entry] of this.#entries) {
      if (found.length >= limit) break;
      if (key.startsWith(prefix) && entry.expires >= now) found.push({ key, value: entry.value });
    }
    return found;
  }
  /**
   * What the store holds in memory now, by kind: the fixed prefix of each key
   * ("code", "access-token", "assertion", else "other"), never the rest of it, with the
   * memory its entries take (their bytes and each one's overhead). An expired entry
   * counts until the sweep drops it (at most a second after the next put), since until
   * then it still takes its memory. Read at each metrics scrape (hello_state_entries,
   * hello_state_bytes).
   */
  stats(): StateHeld[] {
    return [...this.#held.values()].filter((h) => h.entries > 0).map((h) => ({ ...h }));
  }
  #account(key: string, value: Buffer, sign: 1 | -1) {
    const kind = kindOf(key);
    let held = this.#held.get(kind);
    if (!held) this.#held.set(kind, (held = { kind, entries: 0, bytes: 0 }));
    held.entries += sign;
    held.bytes += sign * (key.length + value.length + ENTRY_OVERHEAD_BYTES);
  }
  #delete(key: string) {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
    this.#account(key, entry.value, -1);
  }
  #sweep() {
    const now = Date.now();
    for (const [key, entry] of this.#entries) if (entry.expires < now) this.#delete(key);
  }
}

/**
 * Bearer secrets (authorization codes, access tokens) whose entries only the secret
 * opens: stored under SHA-256(secret), sealed under HKDF(secret).
 */
export class SecretKeyedStore<T> {
  constructor(
    private readonly store: SharedStore,
    private readonly kind: string,
  ) {}

  async issue(value: T, ttlSeconds: number): Promise<string> {
    const secret = randomBytes(32).toString("base64url");
    await this.put(secret, value, ttlSeconds);
    return secret;
  }

  /** Stores `value` under a secret the caller holds (a marker kept under a code). */
  async put(secret: string, value: T, ttlSeconds: number): Promise<void> {
    const sealed = seal(deriveKey(Buffer.from(secret), `hello-mesh ${this.kind} v1`), Buffer.from(JSON.stringify(value)), this.kind);
    await this.store.put(this.keyOf(secret), sealed, ttlSeconds * 1000);
  }

  /** Reads and deletes: a second redemption finds nothing. */
  async redeem(secret: string): Promise<T | undefined> {
    return this.#open(secret, await this.store.take(this.keyOf(secret)));
  }

  async read(secret: string): Promise<T | undefined> {
    return this.#open(secret, await this.store.get(this.keyOf(secret)));
  }

  /** Where the secret's entry is kept: its kind and SHA-256, which open nothing. */
  keyOf(secret: string): string {
    return `${this.kind}:${createHash("sha256").update(secret).digest("base64url")}`;
  }

  #open(secret: string, sealed: Buffer | undefined): T | undefined {
    if (!sealed) return undefined;
    const plain = open(deriveKey(Buffer.from(secret), `hello-mesh ${this.kind} v1`), sealed, this.kind);
    return plain ? (JSON.parse(plain.toString("utf8")) as T) : undefined;
  }
}

/** What a redemption that took a code's entry does next. */
export interface Redemption<T> {
  readonly entry: T;
  /**
   * Records the store key of what this redemption issued (the access token's, from
   * SecretKeyedStore.keyOf) and checks for a second redemption that came meanwhile.
   * False when one did: what was issued is revoked already, and the answer must be
   * invalid_grant.
   */
  issued(key: string): Promise<boolean>;
}

/** Codes are 32 random bytes, base64url: anything else was never issued, and costs no write. */
const CODE_FORMAT = /^[A-Za-z0-9_-]{43}$/;

/**
 * Authorization codes, single use across replicas (RFC 6749 §4.1.2): the entry is taken
 * atomically, and a second redemption revokes the access token the first one issued.
 *
 * Two markers, both kept under the code's hash and sealed under a key derived from the
 * code (the store learns nothing, and nothing in it redeems or revokes anything without
 * the code): the winner, once it has issued an access token, leaves "redeemed" naming
 * that token's store key; a later redemption, finding the entry gone, leaves "burned".
 * Each writes its own marker before it reads the other's, so whichever order two
 * concurrent redemptions run in, at least one of them sees the other's: a loser that
 * finds "redeemed" deletes the access token; a winner that finds "burned" deletes its
 * own and answers invalid_grant. The markers live as long as a code (a code presented
 * after that is an expired one); their keys start with "code:", so the store's metrics
 * count them as codes.
 */
export class AuthorizationCodes<T> {
  readonly #entries: SecretKeyedStore<T>;
  readonly #redeemed: SecretKeyedStore<{ issued: string }>;
  readonly #burned: SecretKeyedStore<true>;

  constructor(
    private readonly store: SharedStore,
    private readonly ttlSeconds: number,
  ) {
    this.#entries = new SecretKeyedStore<T>(store, "code");
    this.#redeemed = new SecretKeyedStore<{ issued: string }>(store, "code:redeemed");
    this.#burned = new SecretKeyedStore<true>(store, "code:burned");
  }

  issue(value: T): Promise<string> {
    return this.#entries.issue(value, this.ttlSeconds);
  }

  /** The entry, for the first redemption only; a later one revokes what the first issued. */
  async redeem(code: string): Promise<Redemption<T> | undefined> {
    if (!CODE_FORMAT.test(code)) return undefined;
    const entry = await this.#entries.redeem(code);
    if (entry === undefined) {
      await this.#burned.put(code, true, this.ttlSeconds);
      const first = await this.#redeemed.read(code);
      if (first) await this.store.take(first.issued);
      return undefined;
    }
    return {
      entry,
      issued: async (key) => {
        await this.#redeemed.put(code, { issued: key }, this.ttlSeconds);
        if ((await this.#burned.read(code)) === undefined) return true;
        await this.store.take(key);
        return false;
      },
    };
  }
}
