// Signing-key rotation without downtime, for the custodians that sign: Token and
// Storage (docs/key-rotation.md). A key moves next -> active -> retired -> pruned:
//
//   rotate   adds a `next` key and publishes its public half (the component's mesh
//            bundle; for ID Token keys also the JWKS apps see): it signs nothing yet.
//   promote  once every verifier has had the key long enough, it signs: next -> active,
//            and the key it replaces -> retired (still published, stamped with the time).
//   prune    drops retired keys whose every token has expired. Record keys are
//            retired, never deleted: a record signed years ago still verifies.
//
// Each step rewrites the custodian's key file and the component's bundle, both
// atomically; running components reload both when they change on disk.

import { existsSync } from "node:fs";
import { calculateJwkThumbprint, type JWK } from "jose";
import { type Bundle, readBundle, writeBundle } from "../../../mesh/bundle.js";
import { writeFileAtomic } from "../../fs/write-file-atomic.js";
import { type KeySpec, STORAGE_KEYS, TOKEN_KEYS, loadSigningKeys } from "../../protocol/key-files.js";
import {
  type KeyPurpose,
  RETIREMENT_GRACE_SECONDS,
  isAppFacing,
  type SigningAlg,
  type SigningKey,
  generateSigningKey,
  privateJwk,
  publicJwk,
} from "../../protocol/signing-keys.js";
import {
  ACCESS_TOKEN,
  ERROR_TOKEN,
  ID_TOKEN_LIFETIME_SECONDS,
  JWKS_MAX_AGE,
  RECEIPT,
  SESSION_TOKEN,
  USERINFO_LIFETIME_SECONDS,
  WALLET_ACCESS_TOKEN,
} from "../../protocol/tokens.js";

export const SIGNING_COMPONENTS = ["token", "storage"] as const;
export type SigningComponent = (typeof SIGNING_COMPONENTS)[number];

export const COMPONENT_KEYS: Record<SigningComponent, readonly KeySpec[]> = { token: TOKEN_KEYS, storage: STORAGE_KEYS };

/** Where a custodian keeps its signing keys and writes its bundle. */
export interface KeyLocation {
  readonly component: SigningComponent;
  /** The private key file (`signing-keys.json`), 0600. */
  readonly keyFile: string;
  /**
   * The directory of mesh bundles where `<component>.json` is rewritten: in development
   * the one every component watches; in production the custodian's own copy, which it
   * then sends to the other custodians.
   */
  readonly bundles: string;
}

/**
 * The longest a token of each purpose lives after it is signed, so how long a retired
 * key must stay published; undefined for records, which never expire.
 */
export const SIGNED_LIFETIME_SECONDS: Record<KeyPurpose, number | undefined> = {
  session: SESSION_TOKEN.maxLifetimeSeconds,
  access: ACCESS_TOKEN.maxLifetimeSeconds,
  error: ERROR_TOKEN.maxLifetimeSeconds,
  receipt: RECEIPT.maxLifetimeSeconds,
  "id-token": ID_TOKEN_LIFETIME_SECONDS,
  userinfo: USERINFO_LIFETIME_SECONDS,
  // Orchestration checks the key set's signature at each /jwks request; nothing keeps it.
  "key-set": 0,
  record: undefined,
  "wallet-access": WALLET_ACCESS_TOKEN.maxLifetimeSeconds,
  // WSK attestations (600 s) and issuer statements (ISSUER_STATEMENT_LIFETIME_SECONDS).
  wallet: 60 * 60,
};

/**
 * How long a `next` key must have been published before `promote` lets it sign, unless
 * told otherwise. ID Token keys: as long as apps may cache the JWKS (its max-age), so
 * no app meets a kid it cannot find. Internal keys: peers reload a bundle within a
 * second of it changing on their disk; the minute covers a bundle copied by a script.
 * In production, promote only after every peer custodian has installed the bundle.
 */
export const DEFAULT_PUBLISHED_SECONDS: Record<KeyPurpose, number> = {
  session: 60,
  access: 60,
  error: 60,
  receipt: 60,
  record: 60,
  "key-set": 60,
  "id-token": JWKS_MAX_AGE,
  userinfo: JWKS_MAX_AGE,
  "wallet-access": 60,
  // Issuers and wallet clients fetch /wallet/jwks like apps fetch /jwks.
  wallet: JWKS_MAX_AGE,
};

/**
 * After its retirement, a key stays until the last token it could have signed has
 * expired: the purpose's lifetime, plus the grace in which verifiers still accept its
 * freshly signed tokens (the signer's reload), plus as much again for clocks.
 */
export function prunableAt(key: SigningKey): Date | undefined {
  const lifetime = SIGNED_LIFETIME_SECONDS[key.purpose];
  if (key.status !== "retired" || lifetime === undefined || key.retired === undefined) return undefined;
  return new Date(Date.parse(key.retired) + (lifetime + 2 * RETIREMENT_GRACE_SECONDS) * 1000);
}

/** A refused rotation step; the message says what to do instead. */
export class RotationError extends Error {
  override name = "RotationError";
}

export interface KeyReport {
  readonly kid: string;
  readonly purpose: KeyPurpose;
  readonly alg: SigningAlg;
  readonly status: "next" | "active" | "retired";
  readonly created?: string;
  readonly retired?: string;
  /** Whether the component's bundle publishes this key (the same public key). */
  readonly published: boolean;
  /** next: from when `promote` lets it sign (default wait); retired: from when `prune` drops it. */
  readonly from?: Date;
  /** retired record keys: never pruned. */
  readonly keptForever: boolean;
}

export interface Selection {
  /** Only these purposes (default: every purpose of the component). */
  readonly purposes?: readonly KeyPurpose[];
  /** Only these algorithms (ID Token keys come in three). */
  readonly algs?: readonly SigningAlg[];
}

const statusOf = (key: SigningKey) => key.status ?? "active";

function readKeys(location: KeyLocation): SigningKey[] {
  if (!existsSync(location.keyFile)) {
    throw new RotationError(`there is no ${location.component} signing key file at ${location.keyFile} (is --config or --keys right?)`);
  }
  return loadSigningKeys(location.component, location.keyFile, COMPONENT_KEYS[location.component]);
}

function selectedSpecs(location: KeyLocation, selection: Selection): KeySpec[] {
  const specs = COMPONENT_KEYS[location.component];
  const held = new Set(specs.map((s) => s.purpose));
  for (const purpose of selection.purposes ?? []) {
    if (!held.has(purpose)) {
      throw new RotationError(`${location.component} has no ${purpose} keys (its purposes: ${[...held].join(", ")})`);
    }
  }
  const chosen = specs.filter(
    (s) => (selection.purposes?.includes(s.purpose) ?? true) && (selection.algs?.includes(s.alg) ?? true),
  );
  if (chosen.length === 0) throw new RotationError(`no ${location.component} key matches that purpose and alg`);
  return chosen;
}

const matches = (spec: KeySpec) => (key: SigningKey) => key.purpose === spec.purpose && key.alg === spec.alg;

function readOwnBundle(location: KeyLocation): Bundle {
  try {
    return readBundle(location.bundles, location.component);
  } catch (error) {
    throw new RotationError(
      `${error instanceof Error ? error.message : String(error)}; rotation rewrites the bundle's keys and keeps its CA, so make it first (hello pki bundle ${location.component} --keys ${location.keyFile})`,
    );
  }
}

async function writeKeyFile(location: KeyLocation, keys: readonly SigningKey[]): Promise<void> {
  await writeFileAtomic(location.keyFile, `${JSON.stringify({ keys: keys.map(privateJwk) }, null, 2)}\n`, { secret: true });
}

/** Rewrites the component's bundle: the same CA, the public half of exactly these keys. */
async function writePublicKeys(location: KeyLocation, keys: readonly SigningKey[]): Promise<string> {
  const bundle = readOwnBundle(location);
  return writeBundle(location.bundles, { ...bundle, jwks: { keys: keys.map(publicJwk) as Bundle["jwks"]["keys"] } });
}

async function thumbprints(jwks: readonly JWK[]): Promise<Map<string, string>> {
  return new Map(await Promise.all(jwks.map(async (jwk) => [jwk.kid ?? "", await calculateJwkThumbprint(jwk)] as const)));
}

/** Every key of the component, as its key file holds it, and whether its bundle publishes it. */
export async function keyStatus(location: KeyLocation): Promise<KeyReport[]> {
  const keys = readKeys(location);
  const published = await thumbprints(readOwnBundle(location).jwks.keys as JWK[]);
  return Promise.all(
    keys.map(async (key): Promise<KeyReport> => {
      const status = statusOf(key);
      const from =
        status === "next" && key.created
          ? new Date(Date.parse(key.created) + DEFAULT_PUBLISHED_SECONDS[key.purpose] * 1000)
          : prunableAt(key);
      return {
        kid: key.kid,
        purpose: key.purpose,
        alg: key.alg,
        status,
        ...(key.created ? { created: key.created } : {}),
        ...(key.retired ? { retired: key.retired } : {}),
        published: published.get(key.kid) === (await calculateJwkThumbprint(publicJwk(key))),
        ...(from ? { from } : {}),
        keptForever: status === "retired" && SIGNED_LIFETIME_SECONDS[key.purpose] === undefined,
      };
    }),
  );
}

/** Rewrites the bundle from the key file (after a failed write, or to hand it out again). */
export async function publishKeys(location: KeyLocation): Promise<string> {
  return writePublicKeys(location, readKeys(location));
}

/**
 * Adds a `next` key for each selected purpose and alg and publishes it. The bundle is
 * written first: a key is public before its private half is anywhere a signer looks.
 */
export async function rotateKeys(location: KeyLocation, selection: Selection = {}, now = new Date()): Promise<SigningKey[]> {
  const keys = readKeys(location);
  const specs = selectedSpecs(location, selection);
  for (const spec of specs) {
    const waiting = keys.find((k) => matches(spec)(k) && statusOf(k) === "next");
    if (waiting) {
      throw new RotationError(`the ${spec.purpose} ${spec.alg} key ${waiting.kid} is already next: promote it before rotating again`);
    }
  }
  const added = specs.map((spec) => ({ ...generateSigningKey(spec.purpose, spec.alg), status: "next" as const, created: now.toISOString() }));
  const updated = [...keys, ...added];
  await writePublicKeys(location, updated);
  await writeKeyFile(location, updated);
  return added;
}

export interface PromoteOptions extends Selection {
  /** How long the next key must have been published (default DEFAULT_PUBLISHED_SECONDS). */
  readonly minPublishedSeconds?: number;
  /** For ID Token keys: also check that the front door at this issuer serves the key. */
  readonly issuer?: string;
  readonly now?: Date;
}

export interface Promotion {
  readonly promoted: SigningKey[];
  readonly retired: SigningKey[];
}

/**
 * Lets each selected `next` key sign, once it has been published long enough and the
 * bundle holds it; the active key it replaces is retired. The key file is written
 * first (the signer switches; every verifier already has the key), then the bundle,
 * which now carries the retired key's retirement time.
 */
export async function promoteKeys(location: KeyLocation, options: PromoteOptions = {}): Promise<Promotion> {
  const now = options.now ?? new Date();
  const keys = readKeys(location);
  const specs = selectedSpecs(location, options);
  const waiting = keys.filter((k) => statusOf(k) === "next" && specs.some((spec) => matches(spec)(k)));
  if (waiting.length === 0) {
    const which = options.purposes?.join(", ") ?? "any purpose";
    throw new RotationError(`${location.component} has no next key for ${which}: run hello keys rotate ${location.component} first`);
  }
  const published = await thumbprints(readOwnBundle(location).jwks.keys as JWK[]);
  const served = options.issuer && waiting.some((k) => isAppFacing(k.purpose)) ? await servedKids(options.issuer) : undefined;
  for (const key of waiting) {
    if (!key.created) throw new RotationError(`the next key ${key.kid} has no created date, so how long it has been published is unknown`);
    const minimum = options.minPublishedSeconds ?? DEFAULT_PUBLISHED_SECONDS[key.purpose];
    const age = (now.getTime() - Date.parse(key.created)) / 1000;
    if (age < minimum) {
      const at = new Date(Date.parse(key.created) + minimum * 1000).toISOString();
      throw new RotationError(
        `the ${key.purpose} key ${key.kid} was published ${Math.max(0, Math.floor(age))} s ago; it may sign from ${at} (${minimum} s after publication${
          isAppFacing(key.purpose) ? ", the JWKS max-age apps may cache it for" : ", once every peer has the bundle"
        })`,
      );
    }
    if (published.get(key.kid) !== (await calculateJwkThumbprint(publicJwk(key)))) {
      throw new RotationError(
        `the ${location.component} bundle in ${location.bundles} does not publish the next key ${key.kid}: run hello keys publish ${location.component} and give the bundle to the other custodians first`,
      );
    }
    if (served && isAppFacing(key.purpose) && !served.has(key.kid)) {
      throw new RotationError(`${options.issuer} does not serve the next key ${key.kid} in its JWKS yet: is Token running with the new key file?`);
    }
  }
  const promoted: SigningKey[] = [];
  const retired: SigningKey[] = [];
  const updated = keys.map((key): SigningKey => {
    if (waiting.includes(key)) {
      const active: SigningKey = { ...key, status: "active" };
      promoted.push(active);
      return active;
    }
    if (statusOf(key) === "active" && waiting.some((next) => next.purpose === key.purpose && next.alg === key.alg)) {
      const old: SigningKey = { ...key, status: "retired", retired: now.toISOString() };
      retired.push(old);
      return old;
    }
    return key;
  });
  await writeKeyFile(location, updated);
  await writePublicKeys(location, updated);
  return { promoted, retired };
}

/** The kids of the JWKS the front door at `issuer` serves (found by discovery). */
async function servedKids(issuer: string): Promise<Set<string>> {
  const get = async (url: string) => {
    const response = await fetch(url, { signal: AbortSignal.timeout(10_000), redirect: "error" });
    if (!response.ok) throw new RotationError(`${url} answered HTTP ${response.status}`);
    return response.json() as Promise<Record<string, unknown>>;
  };
  const discovery = await get(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
  if (typeof discovery.jwks_uri !== "string") throw new RotationError(`${issuer}'s discovery document names no jwks_uri`);
  const jwks = (await get(discovery.jwks_uri)) as { keys?: Array<{ kid?: unknown }> };
  return new Set((jwks.keys ?? []).map((k) => String(k.kid)));
}

export interface Pruning {
  readonly pruned: SigningKey[];
  /** Retired keys kept, each with why. */
  readonly kept: Array<{ key: SigningKey; reason: string }>;
}

/**
 * Drops the selected retired keys once every token they signed has expired. Record
 * keys are never dropped, nor a retired key without a retirement date. The bundle is
 * written first: verifiers stop accepting the key before the signer forgets it.
 *
 * `compromised` names retired keys to drop now, whatever their tokens' lifetime: the
 * tokens they signed are refused from then on (logins in flight with them fail). A
 * record key cannot be dropped so: every record it signed would stop verifying.
 */
export async function pruneKeys(
  location: KeyLocation,
  selection: Selection & { readonly compromised?: readonly string[] } = {},
  now = new Date(),
): Promise<Pruning> {
  const keys = readKeys(location);
  const specs = selectedSpecs(location, selection);
  for (const kid of selection.compromised ?? []) {
    const key = keys.find((k) => k.kid === kid);
    if (!key) throw new RotationError(`${location.component} holds no key ${kid}`);
    if (statusOf(key) !== "retired") throw new RotationError(`${kid} is ${statusOf(key)}: rotate and promote first, so that it is retired before it is dropped`);
    if (SIGNED_LIFETIME_SECONDS[key.purpose] === undefined) {
      throw new RotationError(`${kid} is a record key: dropping it would make every record it signed unverifiable (docs/key-rotation.md, a compromised record key)`);
    }
  }
  const pruned: SigningKey[] = [];
  const kept: Pruning["kept"] = [];
  for (const key of keys) {
    if (statusOf(key) !== "retired" || !specs.some((spec) => matches(spec)(key))) continue;
    const at = prunableAt(key);
    if (selection.compromised?.includes(key.kid)) pruned.push(key);
    else if (SIGNED_LIFETIME_SECONDS[key.purpose] === undefined) kept.push({ key, reason: "record keys are retired, never deleted: stored records still verify" });
    else if (!at) kept.push({ key, reason: "it has no retired date, so when its last token expires is unknown" });
    else if (now < at) kept.push({ key, reason: `its tokens may still be live until ${at.toISOString()}` });
    else pruned.push(key);
  }
  if (pruned.length > 0) {
    const remaining = keys.filter((k) => !pruned.includes(k));
    await writePublicKeys(location, remaining);
    await writeKeyFile(location, remaining);
  }
  return { pruned, kept };
}
