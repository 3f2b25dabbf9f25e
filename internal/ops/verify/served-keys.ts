// Orchestration must not publish a signing key of its own (docs/design.md §5): the JWKS it
// serves must be exactly Token's signed key set, the app-facing (`id-token.*` and
// `userinfo.*`) keys of Token's bundle — exchanged out of band by Token's custodian —
// no more, no fewer, and discovery must point apps at that JWKS and name no other key.
// Any custodian can run this.

import { calculateJwkThumbprint, decodeProtectedHeader, type JWK } from "jose";
import type { Bundle } from "../../../mesh/bundle.js";
import { isAppFacing, purposeOfKid } from "../../protocol/signing-keys.js";

export interface ServedKeysReport {
  readonly jwksUri: string | undefined;
  readonly served: readonly string[];
  readonly problems: readonly string[];
}

/** Per request: a signal made once would stay aborted after its first 10 s. */
const options = () => ({ signal: AbortSignal.timeout(10_000), redirect: "error" }) as const;

/** Where the front door serves Token's key set (internal/components/orchestration/front-door). */
export const JWKS_PATH = "/jwks";

const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] as const;

async function fetchJson(url: string, what: string): Promise<unknown> {
  const response = await fetch(url, options());
  if (!response.ok) throw new Error(`${what} at ${url} answered HTTP ${response.status}`);
  return response.json();
}

/** Every JWK-shaped object anywhere in `value` (an inline `jwks`, or one tucked elsewhere). */
function jwksWithin(value: unknown, found: JWK[] = []): JWK[] {
  if (Array.isArray(value)) for (const item of value) jwksWithin(item, found);
  else if (value && typeof value === "object") {
    if (typeof (value as { kty?: unknown }).kty === "string") found.push(value as JWK);
    else for (const item of Object.values(value)) jwksWithin(item, found);
  }
  return found;
}

export async function checkServedKeys(issuer: string, tokenBundle: Bundle): Promise<ServedKeysReport> {
  const problems: string[] = [];
  const base = issuer.replace(/\/$/, "");

  // Token's app-facing keys, by kid: what they are (thumbprint) and how apps may use them.
  const published = new Map<string, { thumbprint: string; alg: unknown; use: unknown }>();
  for (const jwk of tokenBundle.jwks.keys as JWK[]) {
    if (jwk.kid && isAppFacing(purposeOfKid(jwk.kid))) published.set(jwk.kid, { thumbprint: await calculateJwkThumbprint(jwk), alg: jwk.alg, use: jwk.use });
  }
  const otherPurposes = new Set((tokenBundle.jwks.keys as JWK[]).map((k) => k.kid).filter((kid) => kid && !published.has(kid)));
  const kidOf = (jwk: JWK) => jwk.kid ?? "(no kid)";
  const notTokens = async (jwk: JWK): Promise<string | undefined> => {
    const expected = jwk.kid ? published.get(jwk.kid) : undefined;
    if (!expected && jwk.kid && otherPurposes.has(jwk.kid)) return "a key of Token's for another purpose, never one that signs for apps";
    if (!expected) return "which Token's bundle does not hold";
    if (jwk.alg !== expected.alg || jwk.use !== expected.use) return "whose alg or use differs from that kid's in Token's bundle";
    try {
      if ((await calculateJwkThumbprint(jwk)) !== expected.thumbprint) return "which differs from the key of that kid in Token's bundle";
    } catch {
      return "which is not a valid public key";
    }
    return undefined;
  };

  const discovery = (await fetchJson(`${base}/.well-known/openid-configuration`, "discovery")) as Record<string, unknown>;
  if (discovery.issuer !== base) problems.push(`discovery names the issuer ${String(discovery.issuer)}, not ${base}`);
  // Discovery itself may name no key but Token's: not inline, not anywhere.
  for (const jwk of jwksWithin(discovery)) {
    const wrong = await notTokens(jwk);
    if (wrong) problems.push(`discovery names key ${kidOf(jwk)}, ${wrong}`);
  }
  if (typeof discovery.signed_metadata === "string") {
    let kid: string | undefined;
    try {
      kid = decodeProtectedHeader(discovery.signed_metadata).kid;
    } catch {
      // reported below as a key Token does not hold
    }
    if (!kid || !published.has(kid)) problems.push(`discovery's signed_metadata is signed by key ${kid ?? "(no kid)"}, which Token's bundle does not hold`);
  }

  const jwksUri = typeof discovery.jwks_uri === "string" ? discovery.jwks_uri : undefined;
  if (jwksUri !== `${base}${JWKS_PATH}`) {
    // Apps fetch keys from wherever discovery says: anywhere but the front door's JWKS
    // endpoint is a key set nobody here checked.
    problems.push(`discovery's jwks_uri ${jwksUri ?? "(missing)"} is not the front door's JWKS endpoint ${base}${JWKS_PATH}`);
    return { jwksUri, served: [], problems };
  }
  const { keys = [] } = (await fetchJson(jwksUri, "the JWKS")) as { keys?: JWK[] };

  const served: string[] = [];
  for (const jwk of keys) {
    served.push(kidOf(jwk));
    const wrong = await notTokens(jwk);
    if (wrong) problems.push(`the served JWKS names key ${kidOf(jwk)}, ${wrong}`);
    if (PRIVATE_MEMBERS.some((m) => (jwk as Record<string, unknown>)[m] !== undefined)) {
      problems.push(`the served key ${kidOf(jwk)} carries private or secret material`);
    }
  }
  if (new Set(served).size !== served.length) problems.push("the served JWKS names one kid more than once");
  for (const kid of published.keys()) {
    if (!served.includes(kid)) problems.push(`the served JWKS lacks Token's key ${kid}`);
  }
  if (keys.length === 0) problems.push("the served JWKS is empty");
  return { jwksUri, served, problems };
}
