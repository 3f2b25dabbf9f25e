// The Wallet Client's signed statements (docs/wallet-server.md "Wire profile"): compact
// JWS, ES256, signed with the client instance's Wallet Signing Key (WSK), each with an
// explicit `typ` so that one can never be taken for another (RFC 8725 §3.11):
//
//   verification-nonce+jwt  sessionId, aud = the issuer id                 ≤ 600 s, single use
//   wek+jwt                 jwk = a WEK, aud = the issuer id, sessionId    ≤ 3600 s, reusable while valid
//   verification-data+jwt   aud = thumbprint of the issuer's encryption key, sessionId,
//                           verificationId once there is one, the item     ≤ 600 s, single use
//   presentment-keys+jwt    aud = that thumbprint, sessionId, credentialInstanceId,
//                           presentmentKeys (1-10 ES256 JWKs)              ≤ 600 s, single use
//   credential-action+jwt   aud = the issuer id, sessionId, credentialInstanceId,
//                           action (SUSPEND, RESUME, UNLINK): the user's own
//                           authority for a lifecycle action               ≤ 600 s, single use
//
// Every one carries iat, exp and jti; 30 s of clock skew is allowed. Verification
// checks, in one place and in this order: the header (alg exactly ES256, this typ, no
// crit), the signature with the WSK the caller already holds for the session (never a
// key named in the statement), then audience, session, the verification or instance,
// times, lifetime and — for single-use kinds — that the jti was not spent before.

import { randomBytes } from "node:crypto";
import { type JWK, type JWTPayload, CompactSign, compactVerify, decodeProtectedHeader, importJWK } from "jose";
import { equalsConstantTime } from "../protocol/constant-time.js";

export const STATEMENT_TYPES = {
  nonce: "verification-nonce+jwt",
  wek: "wek+jwt",
  verificationData: "verification-data+jwt",
  presentmentKeys: "presentment-keys+jwt",
  action: "credential-action+jwt",
} as const;
export type StatementKind = keyof typeof STATEMENT_TYPES;

/** The longest lifetime (exp - iat) each kind may have, in seconds. */
export const MAX_LIFETIME_SECONDS: Record<StatementKind, number> = { nonce: 600, wek: 3600, verificationData: 600, presentmentKeys: 600, action: 600 };
const SINGLE_USE: Record<StatementKind, boolean> = { nonce: true, wek: false, verificationData: true, presentmentKeys: true, action: true };
export const CLOCK_SKEW_SECONDS = 30;

/** A refused statement. `reason` names the check that failed and never a claim value. */
export class StatementError extends Error {
  override name = "StatementError";
  constructor(
    readonly kind: StatementKind,
    readonly reason: string,
  ) {
    super(`the ${STATEMENT_TYPES[kind]} is not valid: ${reason}`);
  }
}

/** Remembers spent jtis until they expire. Scoped by the caller (e.g. per issuer and WSK). */
export interface ReplayGuard {
  /** True the first time (scope, jti) is spent; false ever after, until `expiresAt` (seconds). */
  spend(scope: string, jti: string, expiresAt: number): boolean;
}

export function memoryReplayGuard(now: () => number = () => Date.now() / 1000): ReplayGuard {
  const spent = new Map<string, number>();
  return {
    spend(scope, jti, expiresAt) {
      const t = now();
      if (spent.size > 10_000) for (const [key, until] of spent) if (until < t) spent.delete(key);
      const key = `${scope}\u0000${jti}`;
      const until = spent.get(key);
      if (until !== undefined && until >= t) return false;
      spent.set(key, expiresAt + CLOCK_SKEW_SECONDS);
      return true;
    },
  };
}

/** The ES256 key pair checks shared by WSKs and presentment keys: public, EC P-256, nothing else. */
export function assertEs256PublicJwk(jwk: unknown, what: string): asserts jwk is JWK {
  const key = jwk as JWK | undefined;
  if (typeof key !== "object" || key === null || key.kty !== "EC" || key.crv !== "P-256" || typeof key.x !== "string" || typeof key.y !== "string") {
    throw new Error(`${what} must be an EC P-256 JWK`);
  }
  if (key.d !== undefined) throw new Error(`${what} must be a public key (it has "d")`);
  if (key.alg !== undefined && key.alg !== "ES256") throw new Error(`${what} is for ${key.alg}, not ES256`);
}

export interface StatementContext {
  /** The issuer id (nonce, wek) or the thumbprint of the issuer's encryption key (client payloads). */
  audience: string;
  sessionId: string;
  verificationId?: string;
  credentialInstanceId?: string;
}

export interface SignOptions {
  now?: number;
  /** Seconds; default and maximum MAX_LIFETIME_SECONDS[kind]. */
  lifetime?: number;
}

/** Signs a statement of `kind` with the WSK (a private ES256 JWK). `claims` are the kind's own fields. */
export async function signStatement(
  kind: StatementKind,
  context: StatementContext,
  claims: Record<string, unknown>,
  wskPrivate: JWK,
  options: SignOptions = {},
): Promise<string> {
  const iat = Math.floor(options.now ?? Date.now() / 1000);
  const lifetime = Math.min(options.lifetime ?? MAX_LIFETIME_SECONDS[kind], MAX_LIFETIME_SECONDS[kind]);
  const payload: JWTPayload & Record<string, unknown> = {
    ...claims,
    aud: context.audience,
    sessionId: context.sessionId,
    ...(context.verificationId !== undefined ? { verificationId: context.verificationId } : {}),
    ...(context.credentialInstanceId !== undefined ? { credentialInstanceId: context.credentialInstanceId } : {}),
    iat,
    exp: iat + lifetime,
    jti: randomBytes(16).toString("base64url"),
  };
  const key = await importJWK({ ...wskPrivate, alg: "ES256" }, "ES256");
  return new CompactSign(Buffer.from(JSON.stringify(payload), "utf8"))
    .setProtectedHeader({ alg: "ES256", typ: STATEMENT_TYPES[kind] })
    .sign(key);
}

export interface VerifyOptions {
  now?: number;
  /** Required for single-use kinds; `scope` keeps one issuer's or session's jtis apart from another's. */
  replay?: { guard: ReplayGuard; scope: string };
}

const sameString = (given: unknown, expected: string) => typeof given === "string" && equalsConstantTime(given, expected);

/** Verifies a statement of `kind` against the session's WSK (public JWK) and context; returns its payload. */
export async function verifyStatement(
  kind: StatementKind,
  jws: unknown,
  wskPublic: JWK,
  context: StatementContext,
  options: VerifyOptions = {},
): Promise<Record<string, unknown>> {
  const fail = (reason: string): never => {
    throw new StatementError(kind, reason);
  };
  if (typeof jws !== "string" || jws.split(".").length !== 3) fail("it is not a compact JWS");
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(jws as string);
  } catch {
    return fail("its header cannot be read");
  }
  if (header.alg !== "ES256") fail("alg must be ES256");
  if (header.typ !== STATEMENT_TYPES[kind]) fail(`typ must be ${STATEMENT_TYPES[kind]}`);
  if (header.crit !== undefined) fail("crit is not supported");
  let payload: Record<string, unknown>;
  try {
    const key = await importJWK({ kty: wskPublic.kty, crv: wskPublic.crv, x: wskPublic.x, y: wskPublic.y }, "ES256");
    const result = await compactVerify(jws as string, key, { algorithms: ["ES256"] });
    payload = JSON.parse(Buffer.from(result.payload).toString("utf8")) as Record<string, unknown>;
  } catch {
    return fail("the signature is not the session's wallet signing key's");
  }
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) fail("the payload is not a JSON object");
  if (!sameString(payload.aud, context.audience)) fail("aud is not this recipient");
  if (!sameString(payload.sessionId, context.sessionId)) fail("it is for another session");
  // Where the recipient has no verification or instance yet (an initiate), a statement
  // naming one was made for another and is refused: a carrier cannot move it there.
  if (context.verificationId !== undefined ? !sameString(payload.verificationId, context.verificationId) : payload.verificationId !== undefined) {
    fail("it is for another verification");
  }
  if (
    context.credentialInstanceId !== undefined
      ? !sameString(payload.credentialInstanceId, context.credentialInstanceId)
      : payload.credentialInstanceId !== undefined
  ) {
    fail("it is for another credential instance");
  }
  const now = Math.floor(options.now ?? Date.now() / 1000);
  const { iat, exp, jti } = payload;
  if (typeof iat !== "number" || typeof exp !== "number" || !Number.isInteger(iat) || !Number.isInteger(exp)) fail("iat and exp must be integers");
  if ((iat as number) > now + CLOCK_SKEW_SECONDS) fail("iat is in the future");
  if ((exp as number) <= now - CLOCK_SKEW_SECONDS) fail("it has expired");
  if ((exp as number) - (iat as number) > MAX_LIFETIME_SECONDS[kind] || (exp as number) <= (iat as number)) {
    fail(`its lifetime must be at most ${MAX_LIFETIME_SECONDS[kind]} s`);
  }
  if (typeof jti !== "string" || jti.length < 16 || jti.length > 128) fail("jti must be a string of 16 to 128 characters");
  if (SINGLE_USE[kind]) {
    if (!options.replay) fail("no replay guard was given for a single-use statement");
    if (!options.replay!.guard.spend(`${kind}\u0000${options.replay!.scope}`, jti as string, exp as number)) fail("it was used before (jti)");
  }
  return payload;
}
