// Signing and verifying the protocol's own compact JWS (docs/design.md §3): Session and
// Access Tokens, Error Tokens, receipts and records. Verification is strict and checks
// everything in one place: the signature with a key of the expected purpose (an
// unknown kid, or one of another purpose, fails), the algorithm that key was made
// for (so never `none`), no `crit` extensions, `typ`, issuer, audience, expiry and the
// longest lifetime the type allows. Callers then check the identifiers their step says
// must match.
//
// These tokens are only made and read by hello-mesh's components, with the few
// algorithms of signing-keys.ts, so this is written on node:crypto directly rather than
// through jose: jose goes through WebCrypto, which on Node 20 costs more than twice the
// CPU per Ed25519 check (docs/performance.md), and a login makes some twenty of these.
// ID Tokens for apps and upstream OP ID Tokens, which other software reads or writes,
// stay with jose.

import { type KeyObject, createHash, randomBytes, sign as cryptoSign, verify as cryptoVerify } from "node:crypto";
import { type JWTPayload, errors } from "jose";
import {
  type KeyPurpose,
  type PublicKey,
  RETIREMENT_GRACE_SECONDS,
  type SigningAlg,
  type SigningKey,
  type VerificationKeys,
} from "./signing-keys.js";
import type { TokenType } from "./tokens.js";

/** A token or record that failed verification. `reason` is safe to show: no content. */
export class InvalidTokenError extends Error {
  override name = "InvalidTokenError";
  constructor(
    readonly what: string,
    readonly reason: string,
  ) {
    super(`the ${what} is not valid: ${reason}`);
  }
}

export function newJti(): string {
  return randomBytes(16).toString("base64url");
}

export function sha256(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("base64url");
}

const nowSeconds = (now: Date) => Math.floor(now.getTime() / 1000);

/** How far apart two components' clocks may be when exp and nbf are checked. */
const CLOCK_TOLERANCE_SECONDS = 5;

/**
 * What node:crypto needs for each alg (RFC 7518 §3.1, RFC 8037): the digest (Ed25519
 * hashes internally), the key type the alg requires, and for ECDSA the signature as
 * R || S rather than DER (RFC 7518 §3.4).
 */
const ALGS: Record<SigningAlg, { digest: string | null; keyType: string; curve?: string; minBits?: number; dsaEncoding?: "ieee-p1363" }> = {
  EdDSA: { digest: null, keyType: "ed25519" },
  ES256: { digest: "sha256", keyType: "ec", curve: "prime256v1", dsaEncoding: "ieee-p1363" },
  RS256: { digest: "sha256", keyType: "rsa", minBits: 2048 },
};

/** The key in the form node:crypto signs or verifies `alg` with; an error if it is not a key for `alg`. */
function keyFor(alg: SigningAlg, key: KeyObject) {
  const spec = ALGS[alg];
  const details = key.asymmetricKeyDetails;
  if (
    key.asymmetricKeyType !== spec.keyType ||
    (spec.curve !== undefined && details?.namedCurve !== spec.curve) ||
    (spec.minBits !== undefined && (details?.modulusLength ?? 0) < spec.minBits)
  ) {
    throw new Error(`this ${key.asymmetricKeyType ?? "secret"} key cannot be used for ${alg}`);
  }
  return spec.dsaEncoding ? { key, dsaEncoding: spec.dsaEncoding } : key;
}

const base64urlJson = (value: unknown) => Buffer.from(JSON.stringify(value), "utf8").toString("base64url");

export async function sign(
  type: TokenType,
  key: SigningKey,
  claims: Record<string, unknown>,
  options: { lifetimeSeconds?: number; jti?: string; now?: Date } = {},
): Promise<string> {
  if (key.purpose !== type.purpose) throw new Error(`a ${key.purpose} key cannot sign a ${type.typ}`);
  const iat = nowSeconds(options.now ?? new Date());
  const payload: JWTPayload = { ...claims, iss: type.issuer, aud: type.audience, iat };
  if (type.maxLifetimeSeconds !== undefined) {
    const lifetime = options.lifetimeSeconds ?? type.maxLifetimeSeconds;
    if (lifetime > type.maxLifetimeSeconds) throw new Error(`a ${type.typ} lives at most ${type.maxLifetimeSeconds} s`);
    payload.exp = iat + lifetime;
    payload.jti = options.jti ?? newJti();
  }
  const input = `${base64urlJson({ alg: key.alg, kid: key.kid, typ: type.typ })}.${base64urlJson(payload)}`;
  const signature = cryptoSign(ALGS[key.alg].digest, Buffer.from(input, "ascii"), keyFor(key.alg, key.privateKey));
  return `${input}.${signature.toString("base64url")}`;
}

export interface Verified<T> {
  readonly claims: T & JWTPayload;
  readonly kid: string;
}

/**
 * A compact JWS: three parts of base64url without padding, nothing else (Node's decoder
 * would skip stray characters). The signature may be empty, as an unsecured JWS's is
 * (RFC 7515 §A.5): that is then refused as a forgery (no key, wrong alg, or a signature
 * that does not verify), not as garbage.
 */
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** A part decoded as a JSON object, or undefined if it is not one. */
function jsonObject(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The `typ` a compact JWS's header claims, unverified: only to choose which type to
 * verify it as (verify then checks the typ with the signature), never to trust it.
 */
export function typOf(jws: string): string | undefined {
  if (typeof jws !== "string" || !COMPACT.test(jws)) return undefined;
  const typ = jsonObject(jws.slice(0, jws.indexOf(".")))?.typ;
  return typeof typ === "string" ? typ : undefined;
}

export async function verify<T>(
  type: TokenType,
  keys: VerificationKeys,
  jws: string,
  what: string,
  now: Date = new Date(),
): Promise<Verified<T>> {
  return verifySync<T>(type, keys, jws, what, now);
}

/**
 * A compact JWS signed by a key of `purpose` in `keys`, with the alg that key was made
 * for and no critical extension: its header and payload, not yet checked for what they
 * say. Every verifier of hello-mesh's own signatures starts here.
 */
export function verifySignature(
  keys: VerificationKeys,
  purpose: KeyPurpose,
  jws: string,
  what: string,
): { header: Record<string, unknown>; payload: Record<string, unknown>; key: PublicKey } {
  const refuse = (reason: string): never => {
    throw new InvalidTokenError(what, reason);
  };
  if (typeof jws !== "string" || jws.length === 0) refuse("it is missing");
  if (!COMPACT.test(jws)) refuse("it is malformed");
  const [encodedHeader, encodedPayload, encodedSignature] = jws.split(".") as [string, string, string];

  const header = jsonObject(encodedHeader) ?? refuse("it is malformed");
  const key: PublicKey = keys.find(purpose, typeof header.kid === "string" ? header.kid : undefined)
    ?? refuse(`its key (kid) is not a known ${purpose} key`);
  if (header.alg !== key.alg) refuse("its alg is not the alg of its key");
  // No extension is understood here, so none may be critical (RFC 7515 §4.1.11).
  if (Object.hasOwn(header, "crit")) refuse("it names critical header parameters this verifier does not support");

  const publicKey = keyFor(key.alg, key.key); // a published key unfit for its alg is the custodian's error, not the token's
  let valid = false;
  try {
    valid = cryptoVerify(ALGS[key.alg].digest, Buffer.from(`${encodedHeader}.${encodedPayload}`, "ascii"), publicKey, Buffer.from(encodedSignature, "base64url"));
  } catch {
    valid = false; // a signature of the wrong length for the key, say
  }
  if (!valid) refuse("its signature does not verify");
  const payload = jsonObject(encodedPayload) ?? refuse("it is malformed");
  return { header, payload, key };
}

function verifySync<T>(type: TokenType, keys: VerificationKeys, jws: string, what: string, now: Date): Verified<T> {
  const refuse = (reason: string): never => {
    throw new InvalidTokenError(what, reason);
  };
  const { header, payload, key } = verifySignature(keys, type.purpose, jws, what);

  // Signed by the key we trust for this purpose; now what it says.
  if (header.typ !== type.typ) refuse("its typ header is wrong");
  const claimWrong = (claim: string, reason: "missing" | "invalid" | "check_failed") => refuse(`its ${claim} claim is wrong (${reason})`);
  const t = nowSeconds(now);

  if (payload.iss === undefined) claimWrong("iss", "missing");
  if (payload.iss !== type.issuer) claimWrong("iss", "check_failed");
  const aud = payload.aud;
  if (aud === undefined) claimWrong("aud", "missing");
  if (!(aud === type.audience || (Array.isArray(aud) && aud.includes(type.audience)))) claimWrong("aud", "check_failed");
  for (const claim of ["iat", "exp", "nbf"] as const) {
    if (payload[claim] !== undefined && (typeof payload[claim] !== "number" || !Number.isFinite(payload[claim]))) claimWrong(claim, "invalid");
  }
  if (payload.iat === undefined) claimWrong("iat", "missing");
  if (typeof payload.nbf === "number" && payload.nbf > t + CLOCK_TOLERANCE_SECONDS) claimWrong("nbf", "check_failed");
  if (type.maxLifetimeSeconds !== undefined) {
    if (payload.exp === undefined) claimWrong("exp", "missing");
    if (typeof payload.jti !== "string" || payload.jti.length === 0) claimWrong("jti", payload.jti === undefined ? "missing" : "invalid");
  }
  if (typeof payload.exp === "number" && payload.exp <= t - CLOCK_TOLERANCE_SECONDS) refuse("it has expired");
  const iat = payload.iat as number;
  if (type.maxLifetimeSeconds !== undefined && (payload.exp as number) - iat > type.maxLifetimeSeconds) {
    refuse(`it claims a lifetime over ${type.maxLifetimeSeconds} s`);
  }
  // A retired key signs nothing new: whoever still holds it cannot mint fresh tokens.
  if (key.retiredAt !== undefined && iat > key.retiredAt + RETIREMENT_GRACE_SECONDS) refuse("it was signed after its key was retired");
  return { claims: payload as T & JWTPayload, kid: key.kid };
}

/**
 * jose's verdict in words that carry no token content, or undefined for an error that
 * is not one of jose's verdicts (each caller words that case itself).
 */
export function describeJoseError(error: unknown): string | undefined {
  // JWTExpired is a JWTClaimValidationFailed: it is asked first.
  if (error instanceof errors.JWTExpired) return "it has expired";
  if (error instanceof errors.JWSSignatureVerificationFailed) return "its signature does not verify";
  if (error instanceof errors.JWTClaimValidationFailed) return `its ${error.claim} claim is wrong (${error.reason})`;
  if (error instanceof errors.JOSEAlgNotAllowed) return "its alg is not allowed";
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) return "it is malformed";
  if (error instanceof errors.JOSENotSupported) return "it uses an unsupported algorithm";
  if (error instanceof errors.JWKSNoMatchingKey) return "no key of the provider's JWKS matches it";
  if (error instanceof errors.JWKSTimeout) return "the provider's JWKS did not arrive in time";
  return undefined;
}
