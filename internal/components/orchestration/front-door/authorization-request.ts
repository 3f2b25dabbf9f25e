// The authorization endpoint's checks (RFC 6749 §4.1, OIDC Core §3.1.2, RFC 7636,
// RFC 9101), each small, applied in the order of the two lists below (the shape of
// node-oidc-provider's lib/actions/authorization/index.js). Until client_id and
// redirect_uri are known good, errors are shown to the user and never redirected
// (RFC 6749 §4.1.2.1); after that they go back to the app.

import { decodeJwt } from "jose";
import type { FrontDoorClient } from "../../../config/component-config.js";
import { redirectUriMatches } from "../../../protocol/redirect-uri.js";
import { repeatedParameter } from "./http-input.js";
import { OAuthError } from "./oauth-error.js";

export interface AuthorizationRequest {
  client_id: string;
  redirect_uri: string;
  state?: string;
  nonce: string;
  scope: string;
  response_mode: "query" | "form_post";
  code_challenge: string;
  claims?: string;
  prompt?: string;
  login_hint?: string;
  provider_hint?: string;
  max_age?: string;
  /** The app's signed request object, for Token to verify (JAR by value). */
  request_object?: string;
  /** RFC 9449 §10: a DPoP-bound client's DPoP key thumbprint. */
  dpop_jkt?: string;
}

/** An error that may not be redirected: the redirect_uri is not (yet) trusted. */
export class UntrustedRedirectError extends Error {
  override name = "UntrustedRedirectError";
}

/** An error to send back to the app's redirect_uri. */
export class RedirectableError extends OAuthError {
  constructor(
    readonly request: Pick<AuthorizationRequest, "redirect_uri" | "state" | "response_mode">,
    error: OAuthError["error"],
    description: string,
  ) {
    super(error, description);
  }
}

type ReplyTo = RedirectableError["request"];

/** One authorization request while it is checked: its parameters, and what the checks so far established. */
interface Checking {
  readonly params: URLSearchParams;
  readonly clients: ReadonlyMap<string, FrontDoorClient>;
  /** The signed request object (JAR by value) and its claims. */
  requestObject?: { jwt: string; claims: Record<string, unknown> };
  client?: FrontDoorClient;
  redirectUri?: string;
}

/** Past the checks before the redirect_uri is trusted: where an error goes is known. */
interface Trusted extends Checking {
  readonly client: FrontDoorClient;
  readonly replyTo: ReplyTo;
}

type Check<C> = (request: C) => void;

/** Before the redirect_uri is trusted: each throws UntrustedRedirectError, shown as a page. */
const UNTRUSTED_CHECKS: readonly Check<Checking>[] = [
  checkParameterLengths,
  rejectRepeatedParameters,
  rejectRequestUri,
  decodeRequestObject,
  checkClient,
  checkRedirectUri,
];

/** After: each throws a RedirectableError, which goes back to the app. */
const TRUSTED_CHECKS: readonly Check<Trusted>[] = [
  checkResponseMode,
  checkResponseType,
  checkScope,
  checkNonce,
  checkPkce,
  checkPrompt,
  checkMaxAge,
  checkClaims,
  checkDpopJkt,
];

export function parseAuthorizationRequest(params: URLSearchParams, clients: ReadonlyMap<string, FrontDoorClient>): AuthorizationRequest {
  const checking: Checking = { params, clients };
  for (const check of UNTRUSTED_CHECKS) check(checking);
  const trusted = trust(checking);
  for (const check of TRUSTED_CHECKS) check(trusted);
  return assemble(trusted);
}

/** A parameter: the request object's if it has it (RFC 9101: its parameters take precedence), else the request's own. */
function param(request: Checking, name: string): string | undefined {
  const value = request.requestObject?.claims[name] ?? request.params.get(name) ?? undefined;
  if (value === undefined) return undefined;
  return typeof value === "string" ? value : JSON.stringify(value);
}

const fail = (request: Trusted, error: OAuthError["error"], description: string) => new RedirectableError(request.replyTo, error, description);

// --- before the redirect_uri is trusted -------------------------------------------------

const MAX_PARAM = 4096;

function checkParameterLengths({ params }: Checking) {
  for (const [name, value] of params) {
    if (value.length > MAX_PARAM && name !== "request") throw new UntrustedRedirectError(`the ${name} parameter is too long`);
  }
}

function rejectRepeatedParameters({ params }: Checking) {
  const name = repeatedParameter(params);
  if (name) throw new UntrustedRedirectError(`the ${name} parameter is given more than once: each may appear once (RFC 6749 §3.1)`);
}

function rejectRequestUri({ params }: Checking) {
  if (params.has("request_uri")) throw new UntrustedRedirectError("request_uri is not supported: send the request object by value");
}

/** Only decoded here, for its parameters: Token verifies its signature when the login starts. */
function decodeRequestObject(request: Checking) {
  const jwt = request.params.get("request");
  if (!jwt) return;
  try {
    request.requestObject = { jwt, claims: decodeJwt(jwt) };
  } catch {
    throw new UntrustedRedirectError("the request object is not a JWT");
  }
}

function checkClient(request: Checking) {
  const clientId = param(request, "client_id");
  const client = clientId ? request.clients.get(clientId) : undefined;
  if (!client) throw new UntrustedRedirectError(clientId ? "this app (client_id) is not registered with hello-mesh" : "client_id is missing");
  const inQuery = request.params.get("client_id");
  if (request.requestObject && inQuery && inQuery !== clientId) {
    throw new UntrustedRedirectError("client_id differs between the request object and the query");
  }
  request.client = client;
}

function checkRedirectUri(request: Checking) {
  const redirectUri = param(request, "redirect_uri");
  // Exact, or a native app's loopback redirect on any port (RFC 8252 §7.3).
  if (!redirectUri || !request.client || !redirectUriMatches(request.client.redirect_uris, redirectUri, request.client.application_type === "native")) {
    throw new UntrustedRedirectError("redirect_uri is missing or not registered for this app");
  }
  request.redirectUri = redirectUri;
}

/** The boundary: from here on errors go to the app, by form_post if it asked for that, else in the query. */
function trust(request: Checking): Trusted {
  const { client, redirectUri } = request;
  if (!client || !redirectUri) throw new Error("the untrusted checks establish the client and redirect_uri");
  const state = param(request, "state");
  const responseMode = param(request, "response_mode") === "form_post" ? "form_post" as const : "query" as const;
  return { ...request, client, replyTo: { redirect_uri: redirectUri, ...(state ? { state } : {}), response_mode: responseMode } };
}

// --- after: errors go back to the app ---------------------------------------------------

function checkResponseMode(request: Trusted) {
  const mode = param(request, "response_mode") ?? "query";
  if (mode !== "query" && mode !== "form_post") throw fail(request, "invalid_request", "response_mode must be query or form_post");
}

/** ID Tokens reach apps only through the token endpoint: no implicit or hybrid flows. */
function checkResponseType(request: Trusted) {
  if (param(request, "response_type") !== "code") throw fail(request, "unsupported_response_type", "only response_type=code is supported");
}

function checkScope(request: Trusted) {
  if (!(param(request, "scope") ?? "").split(" ").includes("openid")) throw fail(request, "invalid_scope", 'scope must include "openid"');
}

function checkNonce(request: Trusted) {
  if (!param(request, "nonce")) throw fail(request, "invalid_request", "nonce is required");
}

/** RFC 7636, S256 only, for every client. */
function checkPkce(request: Trusted) {
  const challenge = param(request, "code_challenge");
  if (!challenge || !/^[A-Za-z0-9_-]{43,128}$/.test(challenge)) throw fail(request, "invalid_request", "code_challenge is required (PKCE)");
  if (param(request, "code_challenge_method") !== "S256") throw fail(request, "invalid_request", "code_challenge_method must be S256");
}

function checkPrompt(request: Trusted) {
  const prompts = new Set(param(request, "prompt")?.split(" ") ?? []);
  for (const p of prompts) if (!["none", "login", "consent", "select_account"].includes(p)) throw fail(request, "invalid_request", `unknown prompt value "${p}"`);
  if (prompts.has("none") && prompts.size > 1) throw fail(request, "invalid_request", "prompt=none cannot be combined with other values");
}

function checkMaxAge(request: Trusted) {
  const maxAge = param(request, "max_age");
  if (maxAge !== undefined && !/^\d{1,9}$/.test(maxAge)) throw fail(request, "invalid_request", "max_age must be a whole number of seconds");
}

/**
 * RFC 9449 §10: a DPoP-bound client names its DPoP key in every request, since its
 * access token will be bound to it; any other client gets bearer tokens and may not.
 */
function checkDpopJkt(request: Trusted) {
  const jkt = param(request, "dpop_jkt");
  if (request.client.dpop_bound_access_tokens) {
    if (!jkt || !/^[A-Za-z0-9_-]{43}$/.test(jkt)) throw fail(request, "invalid_request", "dpop_jkt is required from this client: the base64url SHA-256 thumbprint of its DPoP key (RFC 9449 §10)");
  } else if (jkt !== undefined) {
    throw fail(request, "invalid_request", "dpop_jkt is for DPoP-bound clients only: this client's access tokens are bearer tokens");
  }
}

/** OIDC Core §5.5: an object whose id_token and userinfo members are objects (or null). */
function checkClaims(request: Trusted) {
  const claims = param(request, "claims");
  if (claims === undefined) return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(claims);
  } catch {
    throw fail(request, "invalid_request", "claims must be JSON");
  }
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
  if (!isObject(parsed) || [parsed.id_token, parsed.userinfo].some((m) => m !== undefined && m !== null && !isObject(m))) {
    throw fail(request, "invalid_request", "claims must be a JSON object whose id_token and userinfo members are objects");
  }
}

/** The request as the login carries it, from parameters the checks above have passed. */
function assemble(request: Trusted): AuthorizationRequest {
  const optional = (name: "state" | "claims" | "prompt" | "login_hint" | "provider_hint" | "max_age"): Partial<AuthorizationRequest> => {
    const value = param(request, name);
    return value ? { [name]: value } : {};
  };
  return {
    client_id: request.client.client_id,
    redirect_uri: request.replyTo.redirect_uri,
    ...optional("state"),
    nonce: param(request, "nonce")!,
    scope: param(request, "scope")!,
    response_mode: request.replyTo.response_mode,
    code_challenge: param(request, "code_challenge")!,
    ...optional("claims"),
    ...optional("prompt"),
    ...optional("login_hint"),
    ...optional("provider_hint"),
    ...optional("max_age"),
    ...(request.requestObject ? { request_object: request.requestObject.jwt } : {}),
    ...(param(request, "dpop_jkt") ? { dpop_jkt: param(request, "dpop_jkt")! } : {}),
  };
}
