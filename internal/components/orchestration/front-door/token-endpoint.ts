// POST /token (RFC 6749 §4.1.3, OIDC Core §3.1.3): an authenticated client trades its
// code, once, for an access token and the ID Token Token minted.

import { createHash } from "node:crypto";
import { decodeJwt } from "jose";
import { authenticateClient } from "./client-auth.js";
import type { DoorContext, Exchange } from "./context.js";
import { form, repeatedParameter } from "./http-input.js";
import { OAuthError } from "./oauth-error.js";
import { sendJson } from "./responses.js";

const ACCESS_TOKEN_TTL = 10 * 60;

export async function tokenEndpoint(door: DoorContext, { req, res }: Exchange) {
  const body = await form(req);
  const repeated = repeatedParameter(body);
  if (repeated) throw new OAuthError("invalid_request", `the ${repeated} parameter is given more than once: each may appear once (RFC 6749 §3.2)`);
  const client = await authenticateClient(door.clients, { authorization: req.headers.authorization, body }, {
    issuer: door.issuer, tokenEndpoint: door.endpoint("/token"), replay: door.store,
  });
  if (body.get("grant_type") !== "authorization_code") throw new OAuthError("unsupported_grant_type", "only authorization_code is supported");
  const code = body.get("code");
  if (!code) throw new OAuthError("invalid_request", "code is required");
  // Taken now: a second use finds nothing, and revokes what this one issues (RFC 6749 §4.1.2).
  const redemption = await door.codes.redeem(code);
  if (!redemption) throw new OAuthError("invalid_grant", "the code is invalid, expired or already used");
  const { entry } = redemption;
  if (entry.client_id !== client.client_id) throw new OAuthError("invalid_grant", "the code was issued to another client");
  if (body.get("redirect_uri") !== entry.redirect_uri) throw new OAuthError("invalid_grant", "redirect_uri does not match the authorization request");
  const verifier = body.get("code_verifier") ?? "";
  if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier) || createHash("sha256").update(verifier).digest("base64url") !== entry.code_challenge) {
    throw new OAuthError("invalid_grant", "code_verifier does not match the code_challenge (PKCE)");
  }
  // The access token serves the signed userinfo, so it lives no longer than that does.
  const userinfoExp = decodeJwt(entry.userinfo_jwt).exp ?? 0;
  const lifetime = Math.min(ACCESS_TOKEN_TTL, userinfoExp - Math.floor(Date.now() / 1000));
  if (lifetime <= 0) throw new OAuthError("invalid_grant", "the code is invalid, expired or already used");
  const accessToken = await door.accessTokens.issue({ client_id: client.client_id, userinfo_json: entry.userinfo_json, userinfo_jwt: entry.userinfo_jwt }, lifetime);
  if (!(await redemption.issued(door.accessTokens.keyOf(accessToken)))) throw new OAuthError("invalid_grant", "the code was used more than once");
  sendJson(res, 200, { access_token: accessToken, token_type: "Bearer", expires_in: lifetime, id_token: entry.id_token, scope: entry.scope });
}
