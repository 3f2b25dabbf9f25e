// Orchestration's check of everything Token mints for an app, before it leaves
// (docs/design.md §5: "the Token custodian alone delivers an ID Token to an app"). ID Tokens
// reach apps only through Orchestration's token endpoint; this is what makes that rule
// worth something. Each answer must be signed by a Token key of its own purpose from
// Token's mesh bundle, and say exactly what Orchestration expects from the records it
// verified itself: the issuer, the app, the app's nonce from Orchestration's own flow
// state, `sub` = the directed id of the verified Release Record, and each released
// claim equal to the verified wallet's value — no claim more, none different.
//
// Failures are ProtocolViolations whose words name the rule, never a value.

import { InvalidTokenError, verifySignature } from "../../protocol/jws.js";
import { type KeyPurpose, type PublicKey, RETIREMENT_GRACE_SECONDS, type VerificationKeys } from "../../protocol/signing-keys.js";
import { ID_TOKEN_LIFETIME_SECONDS, USERINFO_LIFETIME_SECONDS, USERINFO_TYP } from "../../protocol/tokens.js";
import type { WalletClaims } from "../../protocol/claims.js";
import { equalsConstantTime } from "../../protocol/constant-time.js";

/** Token misbehaved: what it returned does not fit what Orchestration verified. */
export class ProtocolViolation extends Error {
  override name = "ProtocolViolation";
}

/** How far Token's clock may be from ours when it stamps iat. */
export const MINT_CLOCK_SKEW_SECONDS = 60;

/** What Orchestration expects of every answer minted for one login. */
export interface MintExpectation {
  readonly issuer: string;
  readonly clientId: string;
  /** The app's nonce, from Orchestration's own flow state. */
  readonly nonce: string;
  /** The verified Release Record's directed id. */
  readonly sub: string;
  /** The verified release's claims with the verified wallet's values. */
  readonly claims: WalletClaims;
  /** The provider's auth_time from the OP ID Token Orchestration verified, if it sent one. */
  readonly authTime?: number | undefined;
  /** The verified release's merged_subs (a merge's), which the answers carry as the `merged_subs` claim; none when absent or empty. */
  readonly mergedSubs?: readonly string[] | undefined;
}

export interface Minted {
  readonly idToken: string;
  readonly userinfoJwt: string;
  readonly userinfoJson: string;
}

/** Refuses anything but exactly the expected ID Token and userinfo answers. */
export function checkMinted(minted: Minted, expected: MintExpectation, tokenKeys: VerificationKeys, now = new Date()): void {
  checkIdToken(minted.idToken, expected, tokenKeys, now);
  checkUserinfoJwt(minted.userinfoJwt, expected, tokenKeys, now);
  checkUserinfoJson(minted.userinfoJson, expected);
}

export function checkIdToken(jwt: string, expected: MintExpectation, tokenKeys: VerificationKeys, now = new Date()): void {
  const what = "ID Token";
  const { header, payload, key } = signed(jwt, "id-token", tokenKeys, what);
  if (header.typ !== "JWT") violation(what, "its typ header is not JWT");
  const fixed = ["iss", "sub", "aud", "exp", "iat", "nonce", "azp", ...(expected.authTime === undefined ? [] : ["auth_time"])];
  onlyClaims(what, payload, [...fixed, "merged_subs"], expected.claims);
  checkMergedSubs(what, payload, expected);
  common(what, payload, expected, now, ID_TOKEN_LIFETIME_SECONDS, key);
  if (typeof payload.nonce !== "string" || !equalsConstantTime(payload.nonce, expected.nonce)) violation(what, "its nonce is not the app's");
  if (Object.hasOwn(payload, "azp") && payload.azp !== expected.clientId) violation(what, "its azp is not the app");
  if (payload.auth_time !== expected.authTime) violation(what, "its auth_time is not the provider's");
}

export function checkUserinfoJwt(jwt: string, expected: MintExpectation, tokenKeys: VerificationKeys, now = new Date()): void {
  const what = "signed userinfo";
  const { header, payload, key } = signed(jwt, "userinfo", tokenKeys, what);
  if (header.typ !== USERINFO_TYP) violation(what, `its typ header is not ${USERINFO_TYP}`);
  onlyClaims(what, payload, ["iss", "sub", "aud", "exp", "iat", "merged_subs"], expected.claims);
  checkMergedSubs(what, payload, expected);
  common(what, payload, expected, now, USERINFO_LIFETIME_SECONDS, key);
}

export function checkUserinfoJson(json: string, expected: Pick<MintExpectation, "sub" | "claims" | "mergedSubs">): void {
  const what = "userinfo";
  let payload: unknown;
  try {
    payload = JSON.parse(json);
  } catch {
    return violation(what, "it is not JSON");
  }
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) return violation(what, "it is not a JSON object");
  const claims = payload as Record<string, unknown>;
  onlyClaims(what, claims, ["sub", "merged_subs"], expected.claims);
  checkMergedSubs(what, claims, expected);
  if (claims.sub !== expected.sub) violation(what, "its sub is not the verified release's directed id");
}

// --- the parts ----------------------------------------------------------------------

function violation(what: string, reason: string): never {
  throw new ProtocolViolation(`Token's ${what} does not match what Orchestration verified: ${reason}`);
}

function signed(jwt: string, purpose: KeyPurpose, keys: VerificationKeys, what: string) {
  try {
    return verifySignature(keys, purpose, jwt, what);
  } catch (error) {
    throw new ProtocolViolation(`Token's ${what} is not valid: ${error instanceof InvalidTokenError ? error.reason : "it could not be read"}`);
  }
}

/**
 * Every released claim present with the wallet's value, and nothing but them and the
 * `fixed` protocol claims (those may be absent here; each is checked where it matters).
 */
function onlyClaims(what: string, payload: Record<string, unknown>, fixed: readonly string[], claims: WalletClaims): void {
  for (const name of Object.keys(payload)) {
    if (!fixed.includes(name) && !Object.hasOwn(claims, name)) violation(what, `it carries a claim the release does not list (${claimName(name)})`);
  }
  for (const [name, value] of Object.entries(claims)) {
    if (fixed.includes(name)) violation(what, `the release lists a protocol claim (${claimName(name)})`);
    if (!Object.hasOwn(payload, name)) violation(what, `it lacks the released claim ${claimName(name)}`);
    if (payload[name] !== value) violation(what, `its ${claimName(name)} is not the wallet's`);
  }
}

/** `merged_subs` exactly the verified release's, in order, or absent when it has none. */
function checkMergedSubs(what: string, payload: Record<string, unknown>, expected: Pick<MintExpectation, "mergedSubs">): void {
  const want = expected.mergedSubs ?? [];
  if (want.length === 0) {
    if (Object.hasOwn(payload, "merged_subs")) violation(what, "it carries merged_subs the release does not list");
    return;
  }
  const got = payload.merged_subs;
  if (!Array.isArray(got) || got.length !== want.length || got.some((v, i) => v !== want[i])) violation(what, "its merged_subs are not the release's");
}

/** A claim's name as safe to say: a known name, or not at all. */
function claimName(name: string): string {
  return /^[a-z_]{1,32}$/.test(name) ? name : "an unknown claim";
}

function common(what: string, payload: Record<string, unknown>, expected: MintExpectation, now: Date, maxLifetime: number, key: PublicKey): void {
  if (payload.iss !== expected.issuer) violation(what, "its iss is not hello-mesh's issuer");
  const aud = payload.aud;
  if (!(aud === expected.clientId || (Array.isArray(aud) && aud.length === 1 && aud[0] === expected.clientId))) {
    violation(what, "its aud is not the app");
  }
  if (payload.sub !== expected.sub) violation(what, "its sub is not the verified release's directed id");
  const { iat, exp } = payload;
  if (typeof iat !== "number" || !Number.isSafeInteger(iat) || typeof exp !== "number" || !Number.isSafeInteger(exp)) {
    violation(what, "its iat and exp are not whole seconds");
  }
  const t = Math.floor(now.getTime() / 1000);
  if (Math.abs((iat as number) - t) > MINT_CLOCK_SKEW_SECONDS) violation(what, "its iat is not now");
  if ((exp as number) <= t || (exp as number) - (iat as number) > maxLifetime) violation(what, `its exp is not within ${maxLifetime} s of its iat`);
  // A retired key signs nothing new (docs/key-rotation.md).
  if (key.retiredAt !== undefined && (iat as number) > key.retiredAt + RETIREMENT_GRACE_SECONDS) violation(what, "it was signed after its key was retired");
}
