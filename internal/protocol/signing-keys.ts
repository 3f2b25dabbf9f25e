// Signing keys bound to one purpose each (docs/design.md §3): a key that signs Session
// Tokens never verifies an Access Token. The purpose is the first part of the key id
// ("access.Xy3…"), so it shows in every token header, and verifiers look keys up in a
// set that holds only the purpose they expect: a key of another purpose is simply an
// unknown kid there.

import { type KeyObject, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import type { JWK } from "jose";

export const KEY_PURPOSES = ["session", "access", "record", "id-token", "userinfo", "key-set", "error", "receipt", "wallet-access", "wallet"] as const;
/**
 * The credential wallet's purposes (docs/wallet-server.md): `wallet-access` signs the
 * Wallet Client's DPoP-bound access tokens, `wallet` what Token vouches for to wallet
 * clients and issuers (WSK attestations, issuer statements). Token keeps them in a key
 * file of their own and never puts them in its mesh bundle, which a release that knows
 * no such purpose could not read.
 */
export const WALLET_PURPOSES: readonly KeyPurpose[] = ["wallet-access", "wallet"];
export type KeyPurpose = (typeof KEY_PURPOSES)[number];
/**
 * The purposes whose keys sign for apps (ID Tokens, signed userinfo answers): the only
 * keys Token's app-facing key set (the JWKS the front door serves) publishes.
 */
export const APP_FACING_PURPOSES: readonly KeyPurpose[] = ["id-token", "userinfo"];
export const isAppFacing = (purpose: KeyPurpose | undefined): boolean => purpose !== undefined && APP_FACING_PURPOSES.includes(purpose);
export type SigningAlg = "EdDSA" | "ES256" | "RS256";

/**
 * Where a key is in its rotation: `next` is published but signs nothing yet (so
 * verifiers and caches learn it first), `active` signs, `retired` signs nothing but
 * stays published so what it signed still verifies. A key without status is active.
 * (docs/key-rotation.md: the commands that move keys along, and when.)
 */
export type KeyStatus = "next" | "active" | "retired";

/**
 * How long after its retirement a key still verifies tokens issued "now": the signer
 * may take a moment to reload its key file (and replicas or peers may run a clock a
 * little apart). A token whose `iat` is later than retirement plus this is refused.
 */
export const RETIREMENT_GRACE_SECONDS = 60;

export interface SigningKey {
  readonly kid: string;
  readonly purpose: KeyPurpose;
  readonly alg: SigningAlg;
  readonly privateKey: KeyObject;
  readonly status?: KeyStatus;
  /** When the key was made (ISO 8601), if known. */
  readonly created?: string;
  /** When the key stopped signing (ISO 8601); only a retired key has one. */
  readonly retired?: string;
}

export interface PublicKey {
  readonly kid: string;
  readonly purpose: KeyPurpose;
  readonly alg: SigningAlg;
  readonly key: KeyObject;
  /** For a retired key: when it stopped signing (epoch seconds), from its published `retired`. */
  readonly retiredAt?: number;
}

export function purposeOfKid(kid: string): KeyPurpose | undefined {
  const prefix = kid.split(".", 1)[0];
  return (KEY_PURPOSES as readonly string[]).includes(prefix!) ? (prefix as KeyPurpose) : undefined;
}

export function generateSigningKey(purpose: KeyPurpose, alg: SigningAlg = "EdDSA"): SigningKey {
  const { privateKey } =
    alg === "EdDSA"
      ? generateKeyPairSync("ed25519")
      : alg === "ES256"
        ? generateKeyPairSync("ec", { namedCurve: "P-256" })
        : generateKeyPairSync("rsa", { modulusLength: 2048 });
  return { kid: `${purpose}.${randomBytes(9).toString("base64url")}`, purpose, alg, privateKey, created: new Date().toISOString() };
}

/**
 * The public JWK, as published in a mesh bundle or an app-facing JWKS. A retired key
 * carries `retired` (ISO 8601): verifiers then refuse what it signed after that (plus
 * RETIREMENT_GRACE_SECONDS), so a retired key's power ends even before it is pruned.
 * Apps ignore the member, as RFC 7517 §4 asks of members they do not understand.
 */
export function publicJwk(key: SigningKey | PublicKey): JWK {
  const source = "privateKey" in key ? createPublicKey(key.privateKey) : key.key;
  const { kty, crv, x, y, n, e } = source.export({ format: "jwk" });
  const material = Object.fromEntries(Object.entries({ kty, crv, x, y, n, e }).filter(([, v]) => v !== undefined));
  const retired = "privateKey" in key ? key.retired : key.retiredAt === undefined ? undefined : new Date(key.retiredAt * 1000).toISOString();
  return { ...material, kid: key.kid, alg: key.alg, use: "sig", ...(retired === undefined ? {} : { retired }) };
}

/** A private key as kept on the custodian's disk, with its rotation status and dates. */
export function privateJwk(key: SigningKey): JWK {
  return {
    ...key.privateKey.export({ format: "jwk" }),
    kid: key.kid,
    alg: key.alg,
    ...(key.status ? { status: key.status } : {}),
    ...(key.created ? { created: key.created } : {}),
    ...(key.retired ? { retired: key.retired } : {}),
  };
}

/** The key that signs for `purpose` (and `alg`): the newest active one. */
export function activeKey(keys: readonly SigningKey[], purpose: KeyPurpose, alg?: SigningAlg): SigningKey {
  const key = keys
    .filter((k) => k.purpose === purpose && (alg === undefined || k.alg === alg) && (k.status ?? "active") === "active")
    .at(-1);
  if (!key) throw new Error(`no active ${purpose} key${alg ? ` for ${alg}` : ""}`);
  return key;
}

export function signingKeyFromJwk(jwk: JWK): SigningKey {
  const purpose = jwk.kid ? purposeOfKid(jwk.kid) : undefined;
  if (!purpose || !isSigningAlg(jwk.alg)) throw new Error(`not a hello-mesh signing key (kid ${jwk.kid ?? "missing"})`);
  if (jwk.d === undefined) throw new Error(`key ${jwk.kid} has no private part`);
  const { status, created, retired, ...material } = jwk as JWK & { status?: unknown; created?: unknown; retired?: unknown };
  if (status !== undefined && status !== "next" && status !== "active" && status !== "retired") {
    throw new Error(`key ${jwk.kid} has an unknown status (next, active or retired)`);
  }
  if (created !== undefined) isoDate(created, `key ${jwk.kid}'s created date`);
  if (retired !== undefined) {
    isoDate(retired, `key ${jwk.kid}'s retired date`);
    if (status !== "retired") throw new Error(`key ${jwk.kid} has a retired date but its status is ${String(status ?? "active")}`);
  }
  return {
    kid: jwk.kid!,
    purpose,
    alg: jwk.alg,
    privateKey: createPrivateKey({ key: material as never, format: "jwk" }),
    ...(status ? { status } : {}),
    ...(typeof created === "string" ? { created } : {}),
    ...(typeof retired === "string" ? { retired } : {}),
  };
}

/** Epoch milliseconds of an ISO 8601 date-time, or an error naming `what`. */
function isoDate(value: unknown, what: string): number {
  const time = typeof value === "string" && /^\d{4}-\d{2}-\d{2}T/.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(time)) throw new Error(`${what} is not an ISO 8601 date-time`);
  return time;
}

function isSigningAlg(alg: unknown): alg is SigningAlg {
  return alg === "EdDSA" || alg === "ES256" || alg === "RS256";
}

/**
 * Public keys for verification, grouped by purpose. Built from a peer's bundle (or
 * from our own keys); a JWK whose kid names no purpose, or that carries a private part,
 * is refused rather than ignored, since a bundle like that is a custodian's mistake.
 */
export class VerificationKeys {
  readonly #byPurpose = new Map<KeyPurpose, Map<string, PublicKey>>();

  constructor(jwks: readonly JWK[]) {
    for (const jwk of jwks) {
      const purpose = jwk.kid ? purposeOfKid(jwk.kid) : undefined;
      if (!purpose || !isSigningAlg(jwk.alg)) throw new Error(`a published key has no hello-mesh purpose or alg (kid ${jwk.kid ?? "missing"})`);
      if (jwk.d !== undefined) throw new Error(`the published key ${jwk.kid} includes its private part`);
      const { retired, ...material } = jwk as JWK & { retired?: unknown };
      const key = createPublicKey({ key: material as never, format: "jwk" });
      const retiredAt = retired === undefined ? undefined : Math.floor(isoDate(retired, `the published key ${jwk.kid}'s retired date`) / 1000);
      const set = this.#byPurpose.get(purpose) ?? new Map<string, PublicKey>();
      set.set(jwk.kid!, { kid: jwk.kid!, purpose, alg: jwk.alg, key, ...(retiredAt === undefined ? {} : { retiredAt }) });
      this.#byPurpose.set(purpose, set);
    }
  }

  /** The key for `kid`, only if it is a key of `purpose`. */
  find(purpose: KeyPurpose, kid: string | undefined): PublicKey | undefined {
    return kid === undefined ? undefined : this.#byPurpose.get(purpose)?.get(kid);
  }

  purposes(): KeyPurpose[] {
    return [...this.#byPurpose.keys()];
  }
}
