// Orchestration must not publish a signing key of its own (DESIGN.md §5): the JWKS it
// serves must be Token's signed key set, every key in it one that Token's bundle —
// exchanged out of band by Token's custodian — holds. Any custodian can run this.

import { calculateJwkThumbprint, type JWK } from "jose";
import type { Bundle } from "../../mesh/bundle.js";

export interface ServedKeysReport {
  readonly jwksUri: string | undefined;
  readonly served: readonly string[];
  readonly problems: readonly string[];
}

/** Per request: a signal made once would stay aborted after its first 10 s. */
const options = () => ({ signal: AbortSignal.timeout(10_000), redirect: "error" }) as const;

export async function checkServedKeys(issuer: string, tokenBundle: Bundle): Promise<ServedKeysReport> {
  const problems: string[] = [];
  const base = issuer.replace(/\/$/, "");
  const discovery = (await (await fetch(`${base}/.well-known/openid-configuration`, options())).json()) as {
    issuer?: string;
    jwks_uri?: string;
  };
  if (discovery.issuer !== base) problems.push(`discovery names the issuer ${discovery.issuer}, not ${base}`);
  const jwksUri = discovery.jwks_uri;
  if (!jwksUri || !jwksUri.startsWith(`${base}/`)) {
    problems.push(`discovery's jwks_uri ${jwksUri ?? "(missing)"} is not served by the issuer`);
    return { jwksUri, served: [], problems };
  }
  const { keys = [] } = (await (await fetch(jwksUri, options())).json()) as { keys?: JWK[] };

  // Token's app-facing keys, by kid and by what they are (thumbprint).
  const published = new Map<string, string>();
  for (const jwk of tokenBundle.jwks.keys as JWK[]) {
    if (jwk.kid?.startsWith("id-token.")) published.set(jwk.kid, await calculateJwkThumbprint(jwk));
  }
  const served: string[] = [];
  for (const jwk of keys) {
    served.push(jwk.kid ?? "(no kid)");
    const expected = jwk.kid ? published.get(jwk.kid) : undefined;
    if (!expected) {
      problems.push(`the served JWKS names key ${jwk.kid ?? "(no kid)"}, which Token's bundle does not hold`);
    } else if ((await calculateJwkThumbprint(jwk)) !== expected) {
      problems.push(`the served key ${jwk.kid} differs from the key of that kid in Token's bundle`);
    }
    if (jwk.d !== undefined || jwk.p !== undefined || jwk.k !== undefined) problems.push(`the served key ${jwk.kid} carries private or secret material`);
  }
  if (keys.length === 0) problems.push("the served JWKS is empty");
  return { jwksUri, served, problems };
}
