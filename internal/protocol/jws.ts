// Signing and verifying the protocol's compact JWS. Verification is strict and checks
// everything in one place: the signature with a key of the expected purpose (an
// unknown kid, or one of another purpose, fails), the algorithm that key was made
// for (so never `none`), `typ`, issuer, audience, expiry and the longest lifetime the
// type allows. Callers then check the identifiers their step says must match.

import { createHash, randomBytes } from "node:crypto";
import { type JWTPayload, SignJWT, errors, jwtVerify } from "jose";
import { type PublicKey, RETIREMENT_GRACE_SECONDS, type SigningKey, type VerificationKeys } from "./signing-keys.js";
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
  return new SignJWT(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: type.typ }).sign(key.privateKey);
}

export interface Verified<T> {
  readonly claims: T & JWTPayload;
  readonly kid: string;
}

export async function verify<T>(
  type: TokenType,
  keys: VerificationKeys,
  jws: string,
  what: string,
  now: Date = new Date(),
): Promise<Verified<T>> {
  if (typeof jws !== "string" || jws.length === 0) throw new InvalidTokenError(what, "it is missing");
  let used: PublicKey | undefined;
  try {
    const { payload } = await jwtVerify(
      jws,
      (header) => {
        const key = keys.find(type.purpose, header.kid);
        if (!key) throw new InvalidTokenError(what, `its key (kid) is not a known ${type.purpose} key`);
        if (header.alg !== key.alg) throw new InvalidTokenError(what, `its alg is not the alg of its key`);
        used = key;
        return key.key;
      },
      {
        typ: type.typ,
        issuer: type.issuer,
        audience: type.audience,
        currentDate: now,
        clockTolerance: 5,
        requiredClaims: type.maxLifetimeSeconds === undefined ? ["iat"] : ["iat", "exp", "jti"],
      },
    );
    if (type.maxLifetimeSeconds !== undefined && payload.exp! - payload.iat! > type.maxLifetimeSeconds) {
      throw new InvalidTokenError(what, `it claims a lifetime over ${type.maxLifetimeSeconds} s`);
    }
    // A retired key signs nothing new: whoever still holds it cannot mint fresh tokens.
    if (used!.retiredAt !== undefined && payload.iat! > used!.retiredAt + RETIREMENT_GRACE_SECONDS) {
      throw new InvalidTokenError(what, "it was signed after its key was retired");
    }
    return { claims: payload as T & JWTPayload, kid: used!.kid };
  } catch (error) {
    throw error instanceof InvalidTokenError ? error : new InvalidTokenError(what, describeJoseError(error) ?? "it could not be verified");
  }
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
