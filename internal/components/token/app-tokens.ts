// What Token signs for apps, in the formats apps read (with jose): the ID Token, the
// signed userinfo answer, and the key set the front door publishes. Orchestration
// checks the first two against its own records before they leave (minted-check.ts).

import { CompactSign, SignJWT } from "jose";
import { type SigningKey, isAppFacing, publicJwk } from "../../protocol/signing-keys.js";
import { ID_TOKEN_LIFETIME_SECONDS, USERINFO_LIFETIME_SECONDS, USERINFO_TYP } from "../../protocol/tokens.js";
import type { WalletClaims } from "../../protocol/claims.js";

/** What one login's answers say: to whom, about whom, and what the user released. */
export interface AppAnswer {
  readonly issuer: string;
  readonly clientId: string;
  /** The app's nonce, from the session. */
  readonly nonce: string;
  /** The directed id: the `sub` this app sees. */
  readonly sub: string;
  /** Only the released claims, with the wallet's values. */
  readonly released: WalletClaims;
  /** The provider's auth_time, copied only when the provider sent it. */
  readonly authTime?: number | undefined;
  /** The app's `sub`s of wallets merged into this one (the release's merged_subs), sent as the `merged_subs` claim. */
  readonly mergedSubs?: readonly string[] | undefined;
}

/** The `merged_subs` claim (docs/transactions.md, "Merge"), when the release has any. */
function mergedSubsClaim(answer: AppAnswer): { merged_subs?: string[] } {
  return answer.mergedSubs && answer.mergedSubs.length > 0 ? { merged_subs: [...answer.mergedSubs] } : {};
}

/** The ID Token: typ JWT, signed by an id-token key (never one of another purpose). */
export function signIdToken(key: SigningKey, answer: AppAnswer, now: Date): Promise<string> {
  const t = Math.floor(now.getTime() / 1000);
  return new SignJWT({ ...answer.released, ...mergedSubsClaim(answer), nonce: answer.nonce, ...(answer.authTime === undefined ? {} : { auth_time: answer.authTime }) })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT" })
    .setIssuer(answer.issuer)
    .setSubject(answer.sub)
    .setAudience(answer.clientId)
    .setIssuedAt(t)
    .setExpirationTime(t + ID_TOKEN_LIFETIME_SECONDS)
    .sign(key.privateKey);
}

/** The userinfo answer as JSON: the sub and the released claims, nothing else. */
export function userinfoClaims(answer: AppAnswer): Record<string, string | boolean | string[]> & { sub: string } {
  return { sub: answer.sub, ...answer.released, ...mergedSubsClaim(answer) };
}

/** The signed userinfo answer: a typ and key purpose of its own, so it never passes for an ID Token. */
export function signUserinfo(key: SigningKey, answer: AppAnswer, now: Date): Promise<string> {
  const t = Math.floor(now.getTime() / 1000);
  return new SignJWT({ ...userinfoClaims(answer) })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: USERINFO_TYP })
    .setIssuer(answer.issuer)
    .setAudience(answer.clientId)
    .setIssuedAt(t)
    .setExpirationTime(t + USERINFO_LIFETIME_SECONDS)
    .sign(key.privateKey);
}

/**
 * The app-facing key set, signed with the key-set key (detached payload): every
 * app-facing key — next ones before they sign, retired ones while their tokens live —
 * and no internal key.
 */
export async function signKeySet(keys: readonly SigningKey[], key: SigningKey): Promise<{ jwks: Uint8Array; signature: string }> {
  const jwks = Buffer.from(JSON.stringify({ keys: keys.filter((k) => isAppFacing(k.purpose)).map(publicJwk) }));
  const [header, , signature] = (await new CompactSign(jwks).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "hello-key-set" }).sign(key.privateKey)).split(".");
  return { jwks, signature: `${header}..${signature}` };
}
