// The wallet API (docs/wallet-server.md): what the Wallet Client (`hello wallet`) calls,
// JSON in and out, errors as RFC 9457 problems. Every call carries Token's wallet access
// token (`Authorization: DPoP <token>`) and a DPoP proof of its key for this method and
// URL (RFC 9449 §7); Token checks both before it grants any record access, and the
// front door keeps the shared memory of spent proofs and of revoked tokens.
//
//   GET /wallet/jwks      Token's wallet key set, signed by its key-set key and served
//                         byte for byte (clients pin it; issuers check attestations)
//   GET /wallet/api/me    whose call this is: the client and when its token expires
//   the rest of /wallet/api/*: docs/wallet-server.md, "The wallet API" (wallet-driver.ts)

import { createHash } from "node:crypto";
import type http from "node:http";
import { Code, ConnectError } from "@connectrpc/connect";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { jwkThumbprint } from "../../../protocol/dpop.js";
import { JWKS_MAX_AGE } from "../../../protocol/tokens.js";
import { z } from "zod";
import { MANAGE_ACTIONS, jweEncryptedPayloadSchema, keyDataSchema, sessionIdSchema } from "../../../s2s/messages.js";
import { ProblemError } from "../../../s2s/problem.js";
import { WireError } from "../../../s2s/wire-client.js";
import { ProtocolViolation } from "../minted-check.js";
import { IssuerRefusal } from "../wallet-driver.js";
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
  /** Token's whole answer: the call token and the reads it granted. */
  answer: Awaited<ReturnType<DoorContext["token"]["authorizeWalletCall"]>>;
}

/** The S2S session (and instance) a call concerns, for Token to grant reads of. */
export interface SessionRef {
  issuer: string;
  sessionId: string;
  credentialInstanceId?: string;
  /** A device transfer's unlink: the caller's own session that transferred from sessionId. */
  viaSessionId?: string;
}

/**
 * A wallet API handler. Its routes answer errors as problems (`errors: "problem"`): the
 * front door logs what a handler threw with the request, then answers it with
 * answerWalletProblem.
 */
function walletHandler(handle: (door: DoorContext, exchange: Exchange) => Promise<void>) {
  return handle;
}

/** What a wallet API handler threw, as the RFC 9457 problem it answers (front-door.ts). */
export function answerWalletProblem(res: http.ServerResponse, error: unknown): void {
  sendProblem(res, problemOf(error));
}

function problemOf(error: unknown): WalletApiProblem {
  if (error instanceof WalletApiProblem) return error;
  if (error instanceof ConnectError) {
    if (error.code === Code.Unauthenticated) return unauthorized("invalid_token", "the wallet access token or its DPoP proof was refused: sign in again with hello wallet login");
    if (error.code === Code.Unimplemented || (error.code === Code.FailedPrecondition && error.rawMessage.startsWith("Token holds no wallet keys"))) {
      return new WalletApiProblem(503, "wallet_not_served", "this hello-mesh does not serve the credential wallet now (its Token has no wallet keys, or runs an earlier release)");
    }
    // Any other FAILED_PRECONDITION is a rule of the wallet's records refusing the change
    // (wallet-records.ts): its words name the rule, never a value, and say what to do.
    if (error.code === Code.FailedPrecondition) return new WalletApiProblem(409, "conflict", `hello-mesh refused: ${error.rawMessage}`);
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
export async function walletCaller(door: DoorContext, req: http.IncomingMessage, url: URL, ref?: SessionRef): Promise<WalletCaller> {
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
    ...(ref ? { session: { issuer: ref.issuer, sessionId: ref.sessionId, credentialInstanceId: ref.credentialInstanceId ?? "", viaSessionId: ref.viaSessionId ?? "" } } : {}),
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
  return { clientId: answer.clientId, jkt: answer.jkt, expiresAt: Number(answer.expiresAt), answer };
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

// --- the Wallet Server's calls (wallet-driver.ts) -----------------------------------------

/** The largest wallet API body: an evidence upload (8 MiB of JWE) with its JSON around it. */
const MAX_WALLET_BODY = 9 * 1024 * 1024;

/** A JSON body of at most `max` bytes, checked against `schema`: a 400 problem that says what to fix otherwise. */
async function jsonBody<T>(req: http.IncomingMessage, schema: z.ZodType<T>, max = 1024 * 1024): Promise<T> {
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json") throw new WalletApiProblem(415, "unsupported_media_type", "send the body as Content-Type: application/json");
  if (Number(req.headers["content-length"] ?? 0) > max) throw new WalletApiProblem(413, "body_too_large", `the body is larger than ${max} bytes`, { connection: "close" });
  const body = await new Promise<Buffer>((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= max) return void chunks.push(chunk);
      req.off("data", onData);
      req.pause();
      reject(new WalletApiProblem(413, "body_too_large", `the body is larger than ${max} bytes`, { connection: "close" }));
    };
    req.on("data", onData);
    req.once("end", () => resolve(Buffer.concat(chunks)));
    req.once("error", () => reject(new WalletApiProblem(400, "invalid_request", "the body did not arrive whole")));
  });
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8"));
  } catch {
    throw new WalletApiProblem(400, "invalid_json", "the body is not JSON");
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const where = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; ");
    throw new WalletApiProblem(400, "invalid_request", `the body is not what this call takes (docs/wallet-server.md, "The wallet API"): ${where}`);
  }
  return parsed.data;
}

function driverOf(door: DoorContext) {
  if (!door.walletDriver) throw new WalletApiProblem(503, "wallet_not_served", "this hello-mesh serves no credential wallet: its Orchestration has no wallet configuration");
  return door.walletDriver;
}

/** A wallet call about `ref`, checked by Token and the front door, and Token's call token checked by the driver. */
async function call(door: DoorContext, exchange: Exchange, ref?: SessionRef) {
  const driver = driverOf(door);
  const caller = await walletCaller(door, exchange.req, exchange.url, ref);
  return { driver, call: await driver.checkCall(caller.answer, caller.jkt) };
}

const session = { issuer: z.string().min(1).max(2048), sessionId: sessionIdSchema };
const payloads = z.array(jweEncryptedPayloadSchema).max(32);

/**
 * What the driver or an issuer refused, as the wallet API's problem: the wallet
 * server's own (a ProblemError: unknown session, unknown issuer) as it is; an issuer's
 * (IssuerRefusal) with its words, which are the issuer's and name no user; an issuer
 * that did not answer as the S2S profile says (WireError) as 502.
 */
function refusalOf(error: unknown): never {
  if (error instanceof IssuerRefusal) {
    const p = error.problem;
    const code = p.errorCode ?? (p.type.startsWith("urn:openid:dcp:s2s:") ? p.type.slice("urn:openid:dcp:s2s:".length) : "issuer_refused");
    throw new WalletApiProblem(p.status >= 500 ? 502 : p.status, code, `the issuer refused: ${p.detail}`);
  }
  if (error instanceof ProblemError) throw new WalletApiProblem(error.problem.status, error.problem.errorCode ?? "invalid_request", error.problem.detail);
  if (error instanceof WireError) throw new WalletApiProblem(502, "issuer_unreachable", "the issuer did not answer as the S2S profile says: try again later");
  throw error;
}

const postJson = <T>(schema: z.ZodType<T>, run: (door: DoorContext, exchange: Exchange, body: T) => Promise<unknown>) =>
  walletHandler(async (door, exchange) => {
    const body = await jsonBody(exchange.req, schema, schema === (evidenceBody as unknown) ? MAX_WALLET_BODY : undefined);
    try {
      sendJson(exchange.res, 200, await run(door, exchange, body));
    } catch (error) {
      refusalOf(error);
    }
  });

const evidenceBody = z.strictObject({ ...session, jwe: z.string().min(1).max(8 * 1024 * 1024) });

/** GET /wallet/api/issuers: Token's countersigned issuers this wallet server reaches. */
export const walletIssuers = walletHandler(async (door, exchange) => {
  const { driver, call: c } = await call(door, exchange);
  sendJson(exchange.res, 200, await driver.listIssuers(c).catch(refusalOf));
});

/**
 * POST /wallet/api/sessions: a new S2S session with the client's WSK; with
 * `transferFrom`, a device transfer's session, taking over that session of the same user
 * at the issuer (docs/wallet-server.md, "Device transfer").
 */
export const walletSessions = postJson(
  z.strictObject({
    issuer: session.issuer,
    wsk: z.looseObject({ kty: z.literal("EC"), crv: z.literal("P-256"), x: z.string(), y: z.string() }),
    transferFrom: session.sessionId.optional(),
  }),
  async (door, exchange, body) => {
    const { driver, call: c } = await call(door, exchange);
    return driver.beginSession(c, body.issuer, body.wsk, body.transferFrom);
  },
);

/** POST /wallet/api/initiate */
export const walletInitiate = postJson(
  z.strictObject({ ...session, credentialConfigurationIds: z.array(z.string().min(1).max(256)).min(1).max(16), verificationNonce: z.string().min(1).max(8192), clientEncryptedPayload: payloads.optional(), locale: z.string().max(35).optional() }),
  async (door, exchange, body) => {
    const { driver, call: c } = await call(door, exchange, body);
    return driver.initiate(c, body);
  },
);

const verificationBody = z.strictObject({ ...session, verificationId: z.string().min(1).max(256), clientEncryptedPayload: payloads.optional(), reason: z.string().min(1).max(256).optional() });
const verificationOp = (op: "supplement" | "status" | "cancel") =>
  postJson(verificationBody, async (door, exchange, body) => {
    if (op === "supplement" && !body.clientEncryptedPayload?.length) throw new WalletApiProblem(400, "invalid_request", "a supplement carries clientEncryptedPayload");
    const { driver, call: c } = await call(door, exchange, body);
    return driver.verification(c, op, body);
  });
/** POST /wallet/api/supplement, /wallet/api/status, /wallet/api/cancel */
export const walletSupplement = verificationOp("supplement");
export const walletStatus = verificationOp("status");
export const walletCancel = verificationOp("cancel");

/** POST /wallet/api/evidence: a sealed client payload kept for its issuer to fetch, by reference. */
export const walletEvidence = postJson(evidenceBody, async (door, exchange, body) => {
  if (!door.wallet) throw new WalletApiProblem(503, "wallet_not_served", "this hello-mesh serves no credential wallet");
  const { call: c, driver } = await call(door, exchange, body);
  await driver.ownSession(c, body.issuer, body.sessionId);
  try {
    return await door.wallet.evidence.put(body.issuer, body.sessionId, body.jwe);
  } catch (error) {
    throw new WalletApiProblem(400, "invalid_evidence", error instanceof Error ? error.message : "the evidence is not a compact JWE");
  }
});

/** POST /wallet/api/provision */
export const walletProvision = postJson(z.strictObject({ ...session, verificationId: z.string().min(1).max(256) }), async (door, exchange, body) => {
  const { driver, call: c } = await call(door, exchange, body);
  return driver.provision(c, body);
});

/** POST /wallet/api/credential/get */
export const walletCredentialGet = postJson(
  z.strictObject({ ...session, credentialInstanceId: z.string().min(1).max(256), walletEncryptionKey: keyDataSchema, clientEncryptedData: jweEncryptedPayloadSchema.optional() }),
  async (door, exchange, body) => {
    const { driver, call: c } = await call(door, exchange, body);
    return driver.credentialGet(c, body);
  },
);

/** POST /wallet/api/credential/metadata: the issuer's display data, refreshed in the record. */
export const walletCredentialMetadata = postJson(
  z.strictObject({ ...session, credentialInstanceId: z.string().min(1).max(256), walletEncryptionKey: keyDataSchema }),
  async (door, exchange, body) => {
    const { driver, call: c } = await call(door, exchange, body);
    return driver.credentialMetadata(c, body);
  },
);

/** POST /wallet/api/credential/confirm */
/**
 * POST /wallet/api/credential/confirm: the client has its credentials; the issuer is told
 * PROVISIONING_SUCCESS (a first delivery), KEY_ROTATED (`keysRotated`: bound to new
 * presentment keys) or UPDATE_SUCCESS.
 */
export const walletCredentialConfirm = postJson(z.strictObject({ ...session, credentialInstanceId: z.string().min(1).max(256), keysRotated: z.boolean().optional() }), async (door, exchange, body) => {
  const { driver, call: c } = await call(door, exchange, body);
  return driver.confirm(c, body);
});

/**
 * POST /wallet/api/credential/manage: the user's suspend, resume or unlink, with the
 * client's `credential-action+jwt` as `authority` (carried to the issuer, which checks it).
 */
export const walletCredentialManage = postJson(
  z.strictObject({
    ...session,
    credentialInstanceId: z.string().min(1).max(256),
    action: z.enum(MANAGE_ACTIONS),
    reason: z.string().max(256).optional(),
    authority: z.string().min(1).max(4096),
    /** A device transfer's unlink of the old session's instance: the caller's own session that transferred from it. */
    viaSessionId: session.sessionId.optional(),
  }),
  async (door, exchange, body) => {
    const { driver, call: c } = await call(door, exchange, body);
    return driver.manage(c, body);
  },
);

/** POST /wallet/api/credential/status: the issuer's view of the instance, taken into its record. */
/**
 * POST /wallet/api/credential/status: the issuer's view, reconciled into the record.
 * `expiringAt` (epoch seconds): the client found its credentials expire then, soon; the
 * issuer is told CREDENTIAL_EXPIRING (the wallet server cannot read an expiry itself).
 */
export const walletCredentialStatus = postJson(z.strictObject({ ...session, credentialInstanceId: z.string().min(1).max(256), expiringAt: z.number().int().positive().optional() }), async (door, exchange, body) => {
  const { driver, call: c } = await call(door, exchange, body);
  return driver.credentialStatus(c, body);
});

/**
 * POST /wallet/api/credential/reject: the client refused the credentials it was given
 * (they did not pass its checks); the issuer is told PROVISIONING_FAILURE (a first
 * delivery) or UPDATE_FAILURE. The record is not changed: the client may get them again.
 */
export const walletCredentialReject = postJson(z.strictObject({ ...session, credentialInstanceId: z.string().min(1).max(256), reason: z.string().min(1).max(256) }), async (door, exchange, body) => {
  const { driver, call: c } = await call(door, exchange, body);
  return driver.reject(c, body);
});

/** POST /wallet/api/credential/delete: an ended credential's record deleted, and the holdings without it. */
export const walletCredentialDelete = postJson(z.strictObject({ ...session, credentialInstanceId: z.string().min(1).max(256) }), async (door, exchange, body) => {
  const { driver, call: c } = await call(door, exchange, body);
  return driver.deleteCredential(c, body);
});

/** GET /wallet/api/credentials: the user's credentials from their records (the JWEs only the client opens). */
export const walletCredentials = walletHandler(async (door, exchange) => {
  const { driver, call: c } = await call(door, exchange);
  sendJson(exchange.res, 200, await driver.list(c).catch(refusalOf));
});
