// An app's authorization request to the front door, as a strict client makes one: PKCE
// (S256), a nonce and a state of its own. For tests and scripts that log people in
// through the front door with the browserless stand-in (fault rig, `npm run ha`'s test,
// the multi-region script).

import { createHash, randomBytes } from "node:crypto";

export interface AuthorizationRequest {
  /** The front door's /authorize URL with every parameter. */
  readonly url: URL;
  readonly verifier: string;
  readonly nonce: string;
  /** Whether a URL is the app's redirect_uri: where the browser stops. */
  readonly atApp: (url: URL) => boolean;
}

export function authorizationRequest(issuer: string | URL, client: { readonly client_id: string; readonly redirect_uri: string }): AuthorizationRequest {
  const verifier = randomBytes(32).toString("base64url");
  const nonce = randomBytes(12).toString("base64url");
  const url = new URL("/authorize", issuer);
  url.search = new URLSearchParams({
    client_id: client.client_id,
    redirect_uri: client.redirect_uri,
    response_type: "code",
    scope: "openid email profile",
    code_challenge: createHash("sha256").update(verifier).digest("base64url"),
    code_challenge_method: "S256",
    nonce,
    state: randomBytes(8).toString("base64url"),
  }).toString();
  const callback = new URL(client.redirect_uri);
  const atApp = (u: URL) => u.origin === callback.origin && u.pathname === callback.pathname;
  return { url, verifier, nonce, atApp };
}
