// POST /token (RFC 6749 §4.1.3, OIDC Core §3.1.3): an authenticated client trades its
// code, once, for an access token and the ID Token Token minted.

import { createHash } from "node:crypto";
import { decodeJwt } from "jose";
import { DpopError, verifyDpopProof } from "../../../protocol/dpop.js";
import { authenticateClient } from "./client-auth.js";
import type { CodeEntry, DoorContext, Exchange } from "./context.js";
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
  if (entry.dpop_jkt !== undefined) return walletTokens(door, { req, res }, entry, redemption);
  // The access token serves the signed userinfo, so it lives no longer than that does.
  const userinfoExp = decodeJwt(entry.userinfo_jwt).exp ?? 0;
  const lifetime = Math.min(ACCESS_TOKEN_TTL, userinfoExp - Math.floor(Date.now() / 1000));
  if (lifetime <= 0) throw new OAuthError("invalid_grant", "the code is invalid, expired or already used");
  const accessToken = await door.accessTokens.issue({ client_id: client.client_id, userinfo_json: entry.userinfo_json, userinfo_jwt: entry.userinfo_jwt }, lifetime);
  if (!(await redemption.issued(door.accessTokens.keyOf(accessToken)))) throw new OAuthError("invalid_grant", "the code was used more than once");
  sendJson(res, 200, { access_token: accessToken, token_type: "Bearer", expires_in: lifetime, id_token: entry.id_token, scope: entry.scope });
}

/** How long a DPoP proof's jti is remembered: its iat window (60 s) and the clock skew allowed. */
const DPOP_REPLAY_MS = 70_000;

/**
 * The answer to a DPoP-bound client (docs/wallet-server.md; RFC 9449 §5): its code is
 * redeemed only with a proof of the key its authorization request named (dpop_jkt),
 * and the access token is Token's wallet access token, bound to that key. A second use
 * of the code revokes it: the wallet API serves a wallet access token only while its
 * mark is in the shared store.
 */
async function walletTokens(
  door: DoorContext,
  { req, res }: Pick<Exchange, "req" | "res">,
  entry: CodeEntry,
  redemption: { issued(key: string): Promise<boolean> },
) {
  const proof = req.headers.dpop;
  if (typeof proof !== "string") throw new OAuthError("invalid_dpop_proof", "this client redeems its code with a DPoP proof of the key it named in dpop_jkt (RFC 9449 §5): send one DPoP header");
  try {
    const { jkt, jti } = await verifyDpopProof(proof, {
      method: "POST",
      url: door.endpoint("/token"),
      boundJkt: entry.dpop_jkt,
      replay: { spend: () => true },
    });
    // Replicas share one memory of spent proofs.
    if (!(await door.store.claim(`dpop:${createHash("sha256").update(`${jkt}.${jti}`).digest("base64url")}`, DPOP_REPLAY_MS))) {
      throw new OAuthError("invalid_dpop_proof", "this DPoP proof was used before: make a new one for each request");
    }
  } catch (error) {
    if (error instanceof DpopError) throw new OAuthError("invalid_dpop_proof", error.message);
    throw error;
  }
  const accessToken = entry.wallet_access_token;
  const { exp, jti } = decodeJwt(accessToken ?? "");
  const lifetime = (exp ?? 0) - Math.floor(Date.now() / 1000);
  if (!accessToken || typeof jti !== "string" || lifetime <= 0) throw new OAuthError("invalid_grant", "the code is invalid, expired or already used");
  const mark = `wallet-access:${jti}`;
  await door.store.put(mark, Buffer.from("1"), lifetime * 1000);
  if (!(await redemption.issued(mark))) throw new OAuthError("invalid_grant", "the code was used more than once");
  sendJson(res, 200, { access_token: accessToken, token_type: "DPoP", expires_in: lifetime, id_token: entry.id_token, scope: entry.scope });
}
