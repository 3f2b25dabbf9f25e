// Signing keys bound to one purpose each (DESIGN.md §3): a key that signs Session
// Tokens never verifies an Access Token. The purpose is the first part of the key id
// ("access.Xy3…"), so it shows in every token header, and verifiers look keys up in a
// set that holds only the purpose they expect: a key of another purpose is simply an
// unknown kid there.

import { type KeyObject, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import type { JWK } from "jose";

export const KEY_PURPOSES = ["session", "access", "record", "id-token", "key-set", "error", "receipt"] as const;
export type KeyPurpose = (typeof KEY_PURPOSES)[number];
export type SigningAlg = "EdDSA" | "ES256" | "RS256";

/**
 * Where a key is in its rotation: `next` is published but signs nothing yet (so
 * verifiers and caches learn it first), `active` signs, `retired` signs nothing but
 * stays published so what it signed still verifies. A key without status is active.
 */
export type KeyStatus = "next" | "active" | "retired";

export interface SigningKey {
  readonly kid: string;
  readonly purpose: KeyPurpose;
  readonly alg: SigningAlg;
  readonly privateKey: KeyObject;
  readonly status?: KeyStatus;
}

export interface PublicKey {
  readonly kid: string;
  readonly purpose: KeyPurpose;
  readonly alg: SigningAlg;
  readonly key: KeyObject;
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
  return { kid: `${purpose}.${randomBytes(9).toString("base64url")}`, purpose, alg, privateKey };
}

/** The public JWK, as published in a mesh bundle or an app-facing JWKS. */
export function publicJwk(key: SigningKey | PublicKey): JWK {
  const source = "privateKey" in key ? createPublicKey(key.privateKey) : key.key;
  const { kty, crv, x, y, n, e } = source.export({ format: "jwk" });
  const material = Object.fromEntries(Object.entries({ kty, crv, x, y, n, e }).filter(([, v]) => v !== undefined));
  return { ...material, kid: key.kid, alg: key.alg, use: "sig" };
}

/** A private key as kept on the custodian's disk. */
export function privateJwk(key: SigningKey): JWK {
  return { ...key.privateKey.export({ format: "jwk" }), kid: key.kid, alg: key.alg, ...(key.status ? { status: key.status } : {}) };
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
  const status = (jwk as { status?: unknown }).status;
  if (status !== undefined && status !== "next" && status !== "active" && status !== "retired") {
    throw new Error(`key ${jwk.kid} has an unknown status (next, active or retired)`);
  }
  const { status: _status, ...material } = jwk as JWK & { status?: string };
  return {
    kid: jwk.kid!,
    purpose,
    alg: jwk.alg,
    privateKey: createPrivateKey({ key: material as never, format: "jwk" }),
    ...(status ? { status } : {}),
  };
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
      const key = createPublicKey({ key: jwk as never, format: "jwk" });
      const set = this.#byPurpose.get(purpose) ?? new Map<string, PublicKey>();
      set.set(jwk.kid!, { kid: jwk.kid!, purpose, alg: jwk.alg, key });
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
