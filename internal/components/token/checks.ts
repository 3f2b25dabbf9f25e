// Token's checks (docs/design.md §4, docs/protocol.md), one rule each. Token trusts nothing
// Orchestration says that it can check itself: apps come from Token's own client
// registry, providers from its allow-list, OP ID Tokens are verified against keys Token
// fetched, and a record or Error Token enters a session only as Storage's signed answer
// to that session's own grant. The handlers in token-service.ts apply them in order.
//
// A check throws the refusal that goes on the wire (internal/protocol/errors.ts): the
// words name the rule, never a value.

import { redirectUriMatches } from "../../protocol/redirect-uri.js";
import { createLocalJWKSet, decodeJwt, jwtVerify } from "jose";
import { type AuthorizationParameters, TransactionKind } from "../../gen/hello/token/v1/token_service_pb.js";
import type { AllowedProvider, RegisteredClient } from "../../config/component-config.js";
import type { RecordKindName } from "../../protocol/records.js";
import { InvalidTokenError, sha256, verify } from "../../protocol/jws.js";
import type { VerificationKeys } from "../../protocol/signing-keys.js";
import { ERROR_TOKEN, type ErrorClaims, RECEIPT, type ReceiptClaims, type RecordClaims } from "../../protocol/tokens.js";
import { denied, invalidArgument, outOfOrder } from "../../protocol/errors.js";
import { WALLET_CLAIMS, requestedClaims } from "../../protocol/claims.js";
import { LOGIN_REQUIRED, authTimeProblem } from "../../protocol/auth-time.js";
import type { UpstreamVerifier, VerifiedSubject } from "./upstream.js";
import type { SessionClaims } from "./session.js";

/** Token's own client registry, by client_id. */
export type ClientRegistry = ReadonlyMap<string, RegisteredClient>;

// --- the app's request (CreateSession) ------------------------------------------------

/** The app's request, from its parameters or its signed request object, not yet checked. */
export interface AppRequest {
  client_id: string;
  redirect_uri: string;
  nonce: string;
  scope: string;
  claims?: string | undefined;
  code_challenge: string;
  prompt: string;
  max_age?: number | undefined;
  /** RFC 9449 §10: the DPoP key the login's wallet access token is bound to, or "". */
  dpop_jkt: string;
}

type RequestCase = { case: "requestObject"; value: string } | { case: "parameters"; value: AuthorizationParameters } | { case: undefined };

/** The request Orchestration passes on: the app's parameters, or its request object (then verified first). */
export async function readRequest(request: RequestCase, clients: ClientRegistry, issuer: string, now: Date): Promise<AppRequest> {
  if (request.case === "parameters") {
    const p = request.value;
    return {
      client_id: p.clientId, redirect_uri: p.redirectUri, nonce: p.nonce, scope: p.scope, claims: p.claims, code_challenge: p.codeChallenge,
      prompt: p.prompt, max_age: p.maxAge === undefined ? undefined : checkMaxAge(p.maxAge), dpop_jkt: p.dpopJkt,
    };
  }
  if (request.case === "requestObject") return checkRequestObject(request.value, clients, issuer, now);
  throw invalidArgument("request is required: the app's request object or its parameters");
}

/** The app is one Token registered itself: Orchestration cannot make up a client. */
export function checkClient(clients: ClientRegistry, clientId: string): RegisteredClient {
  const client = clients.get(clientId);
  if (!client) throw denied("client_id is not registered");
  return client;
}

/**
 * The code goes only where the app registered (exact match; a native app's loopback
 * redirect on any port, RFC 8252 §7.3): no open redirector.
 */
export function checkRedirectUri(client: RegisteredClient, redirectUri: string): void {
  if (!redirectUriMatches(client.redirect_uris, redirectUri, client.application_type === "native")) {
    throw denied("redirect_uri is not registered for this client");
  }
}

/**
 * RFC 9449 §10: a DPoP-bound client names its DPoP key's thumbprint in every
 * authorization request, and the login's wallet access token is bound to it; no other
 * client may, since it would get no DPoP-bound token.
 */
export function checkDpopJkt(client: RegisteredClient, jkt: string): void {
  if (client.dpop_bound_access_tokens) {
    if (!/^[A-Za-z0-9_-]{43}$/.test(jkt)) throw invalidArgument("dpop_jkt is required from this client: the base64url SHA-256 thumbprint of its DPoP key (RFC 9449 §10)");
  } else if (jkt !== "") {
    throw invalidArgument("dpop_jkt is for DPoP-bound clients only; this client's access tokens are bearer tokens");
  }
}

/** A nonce for every login: the app's ID Token is bound to the app's own request. */
export function checkNonce(nonce: string): void {
  if (!nonce || nonce.length > 255) throw invalidArgument("nonce is required (at most 255 characters)");
}

/** This is OpenID Connect: a request without "openid" is no login. */
export function checkScope(scope: string): void {
  if (!scope.split(" ").includes("openid")) throw invalidArgument('scope must include "openid"');
}

/** PKCE with S256 for every client: a code is worth nothing without the app's verifier. */
export function checkPkce(codeChallenge: string): void {
  if (!/^[A-Za-z0-9_-]{43,128}$/.test(codeChallenge)) throw invalidArgument("code_challenge is required: PKCE with S256 for every client");
}

/** prompt is a short list of words; the session carries it, so it is bounded. */
export function checkPrompt(prompt: string): void {
  if (prompt.length > 64) throw invalidArgument("prompt is too long");
}

/** The claims request must parse: consent and release are judged against it later. */
export function checkClaimsRequest(scope: string, claims: string | undefined): void {
  if (!claims) return;
  try {
    requestedClaims(scope, claims);
  } catch {
    throw invalidArgument("claims is not valid JSON");
  }
}

/** max_age as the app sent it: 0 to 999 999 999 seconds. */
export function checkMaxAge(value: bigint | number | string): number {
  const seconds = typeof value === "string" && /^\d{1,9}$/.test(value) ? Number(value) : typeof value === "string" ? Number.NaN : Number(value);
  if (!Number.isSafeInteger(seconds) || seconds < 0 || seconds > 999_999_999) throw invalidArgument("max_age must be a whole number of seconds");
  return seconds;
}

/**
 * A signed request object (RFC 9101), verified with the client's own registered keys:
 * issued by the client to Token's issuer, with exp, jti and aud, and at most ten minutes
 * old. Orchestration then claims its jti, so that it serves one login.
 */
export async function checkRequestObject(jwt: string, clients: ClientRegistry, issuer: string, now: Date): Promise<AppRequest> {
  let clientId: unknown;
  try {
    clientId = decodeJwt(jwt).client_id;
  } catch {
    throw invalidArgument("the request object is malformed");
  }
  const client = typeof clientId === "string" ? clients.get(clientId) : undefined;
  if (!client) throw denied("the request object's client_id is not registered");
  if (!client.jwks) throw denied("this client registered no keys for signed request objects");
  let payload;
  try {
    ({ payload } = await jwtVerify(jwt, createLocalJWKSet(client.jwks as never), {
      issuer: client.client_id,
      audience: issuer,
      algorithms: ["RS256", "PS256", "ES256", "EdDSA"],
      requiredClaims: ["exp", "jti", "aud"],
      maxTokenAge: "10m",
      currentDate: now,
    }));
  } catch (error) {
    throw new InvalidTokenError("request object", error instanceof Error ? error.message.slice(0, 120) : "invalid");
  }
  const text = (name: string) => (typeof payload[name] === "string" ? (payload[name] as string) : "");
  const age = payload.max_age;
  return {
    client_id: client.client_id,
    redirect_uri: text("redirect_uri"),
    nonce: text("nonce"),
    scope: text("scope"),
    claims: payload.claims === undefined ? undefined : JSON.stringify(payload.claims),
    code_challenge: text("code_challenge"),
    prompt: text("prompt"),
    max_age: age === undefined ? undefined : typeof age === "number" || typeof age === "string" ? checkMaxAge(age) : checkMaxAge(Number.NaN),
    dpop_jkt: text("dpop_jkt"),
  };
}

/** The provider is on Token's own allow-list: Orchestration cannot bring an issuer of its own. */
export function checkProvider(providers: readonly AllowedProvider[], providerId: string): AllowedProvider {
  const provider = providers.find((p) => p.id === providerId);
  if (!provider) throw invalidArgument("provider_id is not on Token's allow-list");
  return provider;
}

// --- the upstream login (AuthorizeSubject) --------------------------------------------

/**
 * Token verifies the OP ID Token itself (upstream.ts): the provider's signature by keys
 * Token fetched, aud, exp, issued after the login began, and the session's upstream
 * nonce — so an old OP ID Token, or another session's, is refused.
 */
export function checkOpIdToken(
  upstream: UpstreamVerifier,
  session: Pick<SessionClaims, "provider" | "upstream_nonce" | "started">,
  opIdToken: string,
  now: Date,
): Promise<VerifiedSubject> {
  return upstream.verify(session.provider, opIdToken, session.upstream_nonce, new Date(session.started), now);
}

/** The OP ID Token's issuer is the provider this session was started with. */
export function checkSessionProvider(subject: VerifiedSubject, session: Pick<SessionClaims, "provider_iss">): void {
  if (subject.iss !== session.provider_iss) throw denied("the OP ID Token is not from the session's provider");
}

/**
 * The app's demand for a recent or fresh login (max_age, prompt=login), by the rule
 * Orchestration applies too (internal/protocol/auth-time.ts); its refusal starts with
 * LOGIN_REQUIRED, so that the app gets login_required.
 */
export function checkFreshness(authTime: number | undefined, session: Pick<SessionClaims, "max_age" | "prompt_login" | "started" | "purpose">, now: Date): void {
  const demandedBy = session.purpose === undefined ? "app" as const : session.purpose === "account" ? "account" as const : "transaction" as const;
  const demand = { maxAge: session.max_age, promptLogin: session.prompt_login, started: session.started, demandedBy };
  const stale = authTimeProblem(authTime, demand, now);
  if (stale) throw denied(`${LOGIN_REQUIRED}${stale}`);
}

// --- Storage's word: Error Tokens and receipts ------------------------------------------

/** What Token reads Storage's signed word with: Storage's published keys, at Token's clock. */
export interface StorageWord {
  readonly keys: () => VerificationKeys;
  readonly now: () => Date;
}

/** The grants of one record a session was given, by jti: its read and, for its own writes, its create. */
export interface SessionGrants {
  readonly read?: string | undefined;
  readonly create?: string | undefined;
  readonly update?: string | undefined;
}

/**
 * Storage's Error Token answers exactly this session's read of this hash: another
 * session's, another hash's or another kind's "no record" makes no user and no release.
 * Returns its jti, which the create relying on it carries (and Storage spends).
 */
export async function checkAbsence(storage: StorageWord, errorToken: string, kind: RecordKindName, hash: string, readJti: string | undefined): Promise<string> {
  const { claims } = await verify<ErrorClaims>(ERROR_TOKEN, storage.keys(), errorToken, "error token", storage.now());
  if (claims.op !== "read" || claims.kind !== kind || claims.hash !== hash || readJti === undefined || claims.ajti !== readJti) {
    throw denied(`the error token does not answer this session's ${kind} read`);
  }
  return claims.jti!;
}

/**
 * A record enters a session only as the stored one: Storage's receipt must answer one
 * of this session's own grants for it (its read, or its create) at this hash, with this
 * record's digest. Without that, a record Token minted but that was never stored (a
 * forked user's subject, say) is worth nothing. Returns the digest.
 */
export async function checkReceipt(
  storage: StorageWord,
  kind: RecordKindName,
  record: string,
  receipt: string,
  hash: string | undefined,
  grants: SessionGrants,
): Promise<string> {
  return (await checkReceiptOf(storage, kind, record, receipt, hash, grants)).digest;
}

/** checkReceipt's rule, returning the receipt: its digest, and the version the record was stored at. */
export async function checkReceiptOf(
  storage: StorageWord,
  kind: RecordKindName,
  record: string,
  receipt: string,
  hash: string | undefined,
  grants: SessionGrants,
): Promise<ReceiptClaims> {
  if (!receipt) throw invalidArgument(`the ${kind} receipt is required: Storage's receipt for this session's ${kind} read`);
  const { claims } = await verify<ReceiptClaims>(RECEIPT, storage.keys(), receipt, `${kind} receipt`, storage.now());
  const digest = sha256(record);
  const answers =
    (claims.op === "read" && grants.read !== undefined && claims.ajti === grants.read) ||
    (claims.op === "create" && grants.create !== undefined && claims.ajti === grants.create) ||
    (claims.op === "update" && grants.update !== undefined && claims.ajti === grants.update);
  if (!answers || claims.kind !== kind || hash === undefined || claims.hash !== hash || claims.digest !== digest) {
    throw denied(`the ${kind} receipt does not show this ${kind} record stored for this session`);
  }
  return claims;
}

/** A record the session already holds (shown stored in an earlier step): the same bytes, by digest. */
export function checkHeld(kind: RecordKindName, record: string, digest: string | undefined): string {
  if (digest === undefined || sha256(record) !== digest) throw denied(`the ${kind} record is not the one this session holds`);
  return digest;
}

/** The session's record: held already, or shown stored now by its receipt. Returns its digest. */
export async function checkStored(
  storage: StorageWord,
  kind: RecordKindName,
  record: string,
  receipt: string,
  held: string | undefined,
  hash: string | undefined,
  grants: SessionGrants,
): Promise<string> {
  return held !== undefined ? checkHeld(kind, record, held) : checkReceipt(storage, kind, record, receipt, hash, grants);
}

/** Storage's create receipt answers this session's create of the record it minted: the new user is stored. */
export async function checkCreated(
  storage: StorageWord,
  receipt: string,
  kind: RecordKindName,
  hash: string | undefined,
  createJti: string | undefined,
  digest: string | undefined,
): Promise<void> {
  const { claims } = await verify<ReceiptClaims>(RECEIPT, storage.keys(), receipt, `${kind} receipt`, storage.now());
  if (claims.op !== "create" || claims.kind !== kind || claims.hash !== hash || createJti === undefined || claims.ajti !== createJti || claims.digest !== digest) {
    throw denied(`the ${kind} receipt does not answer this session's ${kind} create`);
  }
}

// --- the records against the session ---------------------------------------------------

/** The Subject Record names the upstream subject this session verified, and, once the session knows its user, that user. */
export function checkSubject(subject: RecordClaims["subject"], session: Pick<SessionClaims, "step" | "provider_iss" | "op_sub" | "uid">): void {
  if (subject.op_iss !== session.provider_iss || subject.op_sub !== session.op_sub || (session.step === "user" && subject.uid !== session.uid)) {
    throw denied("the subject record is not this session's subject");
  }
}

/**
 * A transaction's fresh login is at a subject of the wallet it began from: a subject of
 * another wallet (or of none) signs for nothing here.
 */
export function checkTransactionUser(subject: RecordClaims["subject"], session: Pick<SessionClaims, "uid">): void {
  if (session.uid !== undefined && subject.uid !== session.uid) {
    throw denied("the fresh sign-in is at an account linked to another wallet: a transaction is confirmed at a provider linked to this wallet");
  }
}

/**
 * A recovery account signs for a recovery only, and only a recovery account does: a
 * login, an account session or a transaction refuses it (a recovery account alone never
 * signs in), and a recovery refuses a sign-in account (the recovery is what the user
 * does without one).
 */
export function checkAccountRole(recovery: boolean, session: Pick<SessionClaims, "purpose">): void {
  if (session.purpose === "recovery" && !recovery) throw denied("the fresh sign-in is at an account that is not a recovery account: a recovery is proven by recovery accounts only");
  if (session.purpose !== "recovery" && recovery) {
    throw denied("the account is a recovery account, which cannot sign in alone: sign in with another account of the wallet, or recover the wallet");
  }
}

/** The session purpose of a transaction kind. */
export type TransactionPurpose = "delete" | "link" | "unlink" | "claims" | "release" | "merge" | "threshold";

export function transactionPurpose(kind: TransactionKind): TransactionPurpose {
  if (kind === TransactionKind.DELETE) return "delete";
  if (kind === TransactionKind.LINK) return "link";
  if (kind === TransactionKind.UNLINK) return "unlink";
  if (kind === TransactionKind.CLAIMS) return "claims";
  if (kind === TransactionKind.RELEASE) return "release";
  if (kind === TransactionKind.MERGE) return "merge";
  if (kind === TransactionKind.RECOVERY_THRESHOLD) return "threshold";
  throw invalidArgument("kind must name a transaction (TRANSACTION_KIND_DELETE, _LINK, _UNLINK, _CLAIMS, _RELEASE, _MERGE or _RECOVERY_THRESHOLD)");
}

/**
 * A transaction begins from an account session, or from a recovery that is complete,
 * and that only for a link: the recovered user links an account to sign in with; every
 * other transaction is confirmed by a sign-in account's fresh login, which a user who
 * had to recover has not got until then.
 */
export function checkBeginsFrom(session: Pick<SessionClaims, "purpose" | "recovery_done">, purpose: TransactionPurpose): void {
  if (session.purpose === "account") return;
  if (session.purpose === "recovery" && session.recovery_done) {
    if (purpose !== "link") throw denied("a recovered wallet's transaction is a link: link an account to sign in with, then sign in with it for the others");
    return;
  }
  if (session.purpose === "recovery") throw outOfOrder("a transaction begins from an account session, or a completed recovery, and this recovery is not complete yet");
  throw outOfOrder(`a transaction begins from an account session, or a completed recovery, and this is ${session.purpose === undefined ? "a login" : `a ${session.purpose}`} session`);
}

/** A threshold change names its threshold (at least 2: one recovery account alone never recovers a wallet), and only a threshold change names one. */
export function checkThresholdTarget(purpose: TransactionPurpose, threshold: number): number | undefined {
  if (purpose !== "threshold") {
    if (threshold !== 0) throw invalidArgument("threshold is for a recovery threshold change only");
    return undefined;
  }
  if (!Number.isSafeInteger(threshold) || threshold < 2 || threshold > 64) throw invalidArgument("threshold must be a whole number from 2 to 64");
  return threshold;
}

/** Only a link may link a recovery account. */
export function checkLinkRole(purpose: TransactionPurpose, recovery: boolean): boolean {
  if (recovery && purpose !== "link") throw invalidArgument("recovery is for a link only");
  return recovery;
}

/** A release change names a registered app, and only a release change names one. */
export function checkReleaseTarget(purpose: TransactionPurpose, clients: ClientRegistry, clientId: string): string | undefined {
  if (purpose !== "release") {
    if (clientId) throw invalidArgument("client_id is for a release change only");
    return undefined;
  }
  return checkClient(clients, clientId).client_id;
}

/** An unlink names the account to unlink, and only an unlink does. */
export function checkUnlinkTarget(purpose: TransactionPurpose, target: { iss: string; sub: string } | undefined): { iss: string; sub: string } | undefined {
  if (purpose !== "unlink") {
    if (target !== undefined) throw invalidArgument("unlink is for an unlink only");
    return undefined;
  }
  if (!target || !target.iss || !target.sub || target.iss.length > 512 || target.sub.length > 255) {
    throw invalidArgument("unlink must name the account to unlink (iss and sub)");
  }
  return { iss: target.iss, sub: target.sub };
}

/** The Release Record is this user's at this app: no other user's directed id or claims. */
export function checkRelease(release: RecordClaims["release"], session: Pick<SessionClaims, "uid" | "client_id">): void {
  if (release.uid !== session.uid || release.client_id !== session.client_id) throw denied("the release record is not this session's user and client");
}

/** The Wallet Record is this user's: no other user's claims. */
export function checkWallet(wallet: RecordClaims["wallet"], session: Pick<SessionClaims, "uid">): void {
  if (wallet.uid !== session.uid) throw denied("the wallet record is not this session's user's");
}

/**
 * The user releases only what the app asked for and the wallet holds (a wallet claim
 * Token verified; a name every object has, like "constructor", is none).
 */
export function checkConsent(consented: readonly string[], session: { readonly scope: string; readonly claims_request?: string | undefined }, wallet: RecordClaims["wallet"]): void {
  const asked = requestedClaims(session.scope, session.claims_request);
  for (const name of consented) {
    if (!asked.has(name)) throw denied(`the app did not ask for the claim "${name}"`);
    if (!(WALLET_CLAIMS as readonly string[]).includes(name) || !Object.hasOwn(wallet.claims, name)) {
      throw denied(`the user's wallet holds no "${name}" claim`);
    }
  }
}

/** An app removed from the registry during a login gets no ID Token. */
export function checkStillRegistered(clients: ClientRegistry, clientId: string): RegisteredClient {
  const client = clients.get(clientId);
  if (!client) throw denied("the session's client is no longer registered");
  return client;
}
