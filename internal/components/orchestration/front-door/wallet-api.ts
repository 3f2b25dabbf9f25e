// The wallet API (docs/wallet-server.md): what the Wallet Client (`hello wallet`) calls,
// JSON in and out, errors as RFC 9457 problems. Every call carries Token's wallet access
// token (`Authorization: DPoP <token>`) and a DPoP proof of its key for this method and
// URL (RFC 9449 §7); Token checks both before it grants any record access, and the
// front door keeps the shared memory of spent proofs and of revoked tokens.
//
//   GET /wallet/jwks      Token's wallet key set, signed by its key-set key and served
//                         byte for byte (clients pin it; issuers check attestations)
//   GET /wallet/api/me    whose call this is: the client and when its token expires

import { createHash } from "node:crypto";
import type http from "node:http";
import { Code, ConnectError } from "@connectrpc/connect";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { jwkThumbprint } from "../../../protocol/dpop.js";
import { JWKS_MAX_AGE } from "../../../protocol/tokens.js";
import { ProtocolViolation } from "../minted-check.js";
import type { DoorContext, Exchange } from "./context.js";
import { sendJson } from "./responses.js";

/** A refusal of the wallet API, answered as an RFC 9457 problem. */
export class WalletApiProblem extends Error {
  override name = "WalletApiProblem";
  constructor(
    readonly status: number,
    readonly errorCode: string,
    readonly detail: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
}

/** RFC 9449 §7.1: a refused token or proof names its error in a DPoP challenge. */
const unauthorized = (error: "invalid_token" | "invalid_dpop_proof", detail: string) =>
  new WalletApiProblem(401, error, detail, {
    "www-authenticate": `DPoP error="${error}", error_description="${detail.replace(/[^\x20-\x7e]|["\\]/g, "")}", algs="ES256 EdDSA"`,
  });

/** How long a proof's jti is remembered: its iat window (60 s) and clock skew. */
const DPOP_REPLAY_MS = 70_000;

export interface WalletCaller {
  clientId: string;
  jkt: string;
  expiresAt: number;
}

/** Runs a wallet API handler, answering every refusal or failure as a problem document. */
function walletHandler(handle: (door: DoorContext, exchange: Exchange) => Promise<void>) {
  return async (door: DoorContext, exchange: Exchange) => {
    try {
      await handle(door, exchange);
    } catch (error) {
      sendProblem(exchange.res, problemOf(error));
    }
  };
}

function problemOf(error: unknown): WalletApiProblem {
  if (error instanceof WalletApiProblem) return error;
  if (error instanceof ConnectError) {
    if (error.code === Code.Unauthenticated) return unauthorized("invalid_token", "the wallet access token or its DPoP proof was refused: sign in again with hello wallet login");
    if (error.code === Code.FailedPrecondition || error.code === Code.Unimplemented) {
      return new WalletApiProblem(503, "wallet_not_served", "this hello-mesh does not serve the credential wallet now (its Token has no wallet keys, or runs an earlier release)");
    }
    if (error.code === Code.Unavailable || error.code === Code.DeadlineExceeded) {
      return new WalletApiProblem(503, "unavailable", "a part of hello-mesh did not answer in time: try again in a moment", { "retry-after": "5" });
    }
  }
  if (error instanceof ProtocolViolation) return new WalletApiProblem(502, "protocol_violation", "hello-mesh could not complete this call safely: its operators can see why in its logs");
  return new WalletApiProblem(500, "internal_error", "hello-mesh could not complete this call");
}

function sendProblem(res: http.ServerResponse, problem: WalletApiProblem) {
  if (res.headersSent) return void res.destroy();
  res.writeHead(problem.status, { "content-type": "application/problem+json", "cache-control": "no-store", ...problem.headers });
  res.end(JSON.stringify({ type: "about:blank", title: problem.errorCode.replace(/_/g, " "), status: problem.status, detail: problem.detail, errorCode: problem.errorCode }));
}

/**
 * Whose call this is: the DPoP-bound access token and proof, checked by Token
 * (AuthorizeWalletCall), then Token's answer checked here against what the front door
 * can see itself: a DPoP-bound client of its own, the proof's key, a token not revoked,
 * and a proof not used before.
 */
export async function walletCaller(door: DoorContext, req: http.IncomingMessage, url: URL): Promise<WalletCaller> {
  const authorization = req.headers.authorization ?? "";
  const match = /^DPoP\s+([A-Za-z0-9._~+/-]+=*)$/i.exec(authorization);
  if (!match) throw unauthorized("invalid_token", "send the wallet access token as Authorization: DPoP <token> (RFC 9449 §7.1)");
  const accessToken = match[1]!;
  const proof = req.headers.dpop;
  if (typeof proof !== "string") throw unauthorized("invalid_dpop_proof", "send one DPoP header with a proof for this request (RFC 9449 §4)");
  let jti: unknown;
  let proofKey: unknown;
  let tokenJti: unknown;
  try {
    jti = decodeJwt(proof).jti;
    proofKey = decodeProtectedHeader(proof).jwk;
    tokenJti = decodeJwt(accessToken).jti;
  } catch {
    throw unauthorized("invalid_dpop_proof", "the DPoP proof or the access token is not a JWT");
  }
  // A second use of the code that delivered this token revoked it (token-endpoint.ts).
  if (typeof tokenJti !== "string" || !(await door.store.get(`wallet-access:${tokenJti}`))) {
    throw unauthorized("invalid_token", "this wallet access token was revoked or has expired: sign in again with hello wallet login");
  }
  const answer = await door.token.authorizeWalletCall({
    accessToken,
    dpopProof: proof,
    method: req.method ?? "GET",
    url: door.endpoint(url.pathname),
  });
  const client = door.clients.get(answer.clientId);
  if (!client?.dpop_bound_access_tokens) throw new ProtocolViolation("Token authorized a wallet call for a client that is not a DPoP-bound client of the front door");
  let jkt: string;
  try {
    jkt = await jwkThumbprint(proofKey as never);
  } catch {
    throw unauthorized("invalid_dpop_proof", "the DPoP proof's key cannot be read");
  }
  if (jkt !== answer.jkt) throw new ProtocolViolation("Token authorized a wallet call for another key than the proof's");
  if (typeof jti !== "string") throw unauthorized("invalid_dpop_proof", "the DPoP proof has no jti");
  if (!(await door.store.claim(`dpop:${createHash("sha256").update(`${jkt}.${jti}`).digest("base64url")}`, DPOP_REPLAY_MS))) {
    throw unauthorized("invalid_dpop_proof", "this DPoP proof was used before: make a new one for each request");
  }
  return { clientId: answer.clientId, jkt: answer.jkt, expiresAt: Number(answer.expiresAt) };
}

/** GET /wallet/jwks: Token's wallet key set, once its signature by Token's key-set key checks out. */
export const walletJwks = walletHandler(async (door, { res }) => {
  const { jwks } = await door.walletKeys.get();
  res.writeHead(200, { "content-type": "application/json", "cache-control": `public, max-age=${JWKS_MAX_AGE}` });
  res.end(Buffer.from(jwks));
});

/** GET /wallet/api/me: whose call this is. */
export const walletMe = walletHandler(async (door, { req, res, url }) => {
  const caller = await walletCaller(door, req, url);
  sendJson(res, 200, { client_id: caller.clientId, expires_at: caller.expiresAt });
});
