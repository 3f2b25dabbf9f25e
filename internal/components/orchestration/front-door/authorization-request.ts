// The authorization endpoint's checks (RFC 6749 §4.1, OIDC Core §3.1.2, RFC 7636,
// RFC 9101), each small and in order. Until client_id and redirect_uri are known good,
// errors are shown to the user and never redirected (RFC 6749 §4.1.2.1); after that
// they go back to the app.

import { decodeJwt } from "jose";
import type { FrontDoorClient } from "../../../config/component-config.js";
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

const MAX_PARAM = 4096;

export function parseAuthorizationRequest(params: URLSearchParams, clients: ReadonlyMap<string, FrontDoorClient>): AuthorizationRequest {
  for (const [name, value] of params) {
    if (value.length > MAX_PARAM && name !== "request") throw new UntrustedRedirectError(`the ${name} parameter is too long`);
  }
  // RFC 9101: the request object's parameters take precedence; Token verifies its signature.
  let fromObject: Record<string, unknown> = {};
  const requestObject = params.get("request") ?? undefined;
  if (params.has("request_uri")) throw new UntrustedRedirectError("request_uri is not supported: send the request object by value");
  if (requestObject) {
    try {
      fromObject = decodeJwt(requestObject);
    } catch {
      throw new UntrustedRedirectError("the request object is not a JWT");
    }
  }
  const get = (name: string): string | undefined => {
    const value = fromObject[name] ?? params.get(name) ?? undefined;
    if (value === undefined) return undefined;
    return typeof value === "string" ? value : JSON.stringify(value);
  };

  const clientId = get("client_id");
  const client = clientId ? clients.get(clientId) : undefined;
  if (!client) throw new UntrustedRedirectError(clientId ? "this app (client_id) is not registered with hello-mesh" : "client_id is missing");
  if (requestObject && params.get("client_id") && params.get("client_id") !== clientId) {
    throw new UntrustedRedirectError("client_id differs between the request object and the query");
  }
  const redirectUri = get("redirect_uri");
  if (!redirectUri || !client.redirect_uris.includes(redirectUri)) {
    throw new UntrustedRedirectError("redirect_uri is missing or not registered for this app");
  }

  const responseMode = get("response_mode") ?? "query";
  const state = get("state");
  const back = { redirect_uri: redirectUri, ...(state ? { state } : {}), response_mode: responseMode === "form_post" ? "form_post" as const : "query" as const };
  const fail = (error: OAuthError["error"], description: string) => new RedirectableError(back, error, description);

  if (responseMode !== "query" && responseMode !== "form_post") throw fail("invalid_request", "response_mode must be query or form_post");
  // ID Tokens reach apps only through the token endpoint: no implicit or hybrid flows.
  if (get("response_type") !== "code") throw fail("unsupported_response_type", "only response_type=code is supported");
  const scope = get("scope") ?? "";
  if (!scope.split(" ").includes("openid")) throw fail("invalid_scope", 'scope must include "openid"');
  const nonce = get("nonce");
  if (!nonce) throw fail("invalid_request", "nonce is required");
  const challenge = get("code_challenge");
  if (!challenge || !/^[A-Za-z0-9_-]{43,128}$/.test(challenge)) throw fail("invalid_request", "code_challenge is required (PKCE)");
  if (get("code_challenge_method") !== "S256") throw fail("invalid_request", "code_challenge_method must be S256");
  const prompt = get("prompt");
  const prompts = new Set(prompt?.split(" ") ?? []);
  for (const p of prompts) if (!["none", "login", "consent", "select_account"].includes(p)) throw fail("invalid_request", `unknown prompt value "${p}"`);
  if (prompts.has("none") && prompts.size > 1) throw fail("invalid_request", "prompt=none cannot be combined with other values");
  const maxAge = get("max_age");
  if (maxAge !== undefined && !/^\d{1,9}$/.test(maxAge)) throw fail("invalid_request", "max_age must be a whole number of seconds");
  const claims = get("claims");
  if (claims !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(claims);
    } catch {
      throw fail("invalid_request", "claims must be JSON");
    }
    // OIDC Core §5.5: an object whose id_token and userinfo members are objects (or null).
    const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
    if (!isObject(parsed) || [parsed.id_token, parsed.userinfo].some((m) => m !== undefined && m !== null && !isObject(m))) {
      throw fail("invalid_request", "claims must be a JSON object whose id_token and userinfo members are objects");
    }
  }

  return {
    client_id: client.client_id,
    redirect_uri: redirectUri,
    ...(state ? { state } : {}),
    nonce,
    scope,
    response_mode: back.response_mode,
    code_challenge: challenge,
    ...(claims ? { claims } : {}),
    ...(prompt ? { prompt } : {}),
    ...(get("login_hint") ? { login_hint: get("login_hint")! } : {}),
    ...(get("provider_hint") ? { provider_hint: get("provider_hint")! } : {}),
    ...(maxAge ? { max_age: maxAge } : {}),
    ...(requestObject ? { request_object: requestObject } : {}),
  };
}
