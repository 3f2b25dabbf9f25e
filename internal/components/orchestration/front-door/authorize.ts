// GET or POST /authorize (RFC 6749 §4.1.1, OIDC Core §3.1.2.1), and the chooser's
// POST /authorize/provider: the app's request, checked, starts a login at Token and
// sends the browser to the user's provider, after the chooser if more than one could be.

import { createHash } from "node:crypto";
import { ConnectError } from "@connectrpc/connect";
import { decodeJwt } from "jose";
import type { UpstreamProvider } from "../../../config/component-config.js";
import { chooserPage } from "../pages/chooser.js";
import { pageCsp } from "../pages/layout.js";
import { type AuthorizationRequest, RedirectableError, parseAuthorizationRequest } from "./authorization-request.js";
import type { DoorContext, Exchange } from "./context.js";
import { FLOW_TTL, LOGIN_FLOW, type ProviderLeg, type UpstreamFlow, appRequestOf, goToProvider } from "./flows.js";
import { form } from "./http-input.js";
import { sendError, sendHtml } from "./responses.js";

/** How long past its exp a request object's jti stays claimed: our clock may be behind Token's. */
const REQUEST_OBJECT_SKEW_MS = 60_000;

/** GET /authorize: the request in the query. */
export async function authorizeGet(door: DoorContext, { res, url }: Exchange) {
  await authorize(door, res, url.searchParams);
}

/** POST /authorize: the request in a form body (OIDC Core §3.1.2.1). */
export async function authorizePost(door: DoorContext, { req, res }: Exchange) {
  await authorize(door, res, await form(req));
}

async function authorize(door: DoorContext, res: Exchange["res"], params: URLSearchParams) {
  const request = parseAuthorizationRequest(params, door.clients);
  const hinted = request.provider_hint ? door.rp.provider(request.provider_hint) : undefined;
  if (request.provider_hint && !hinted) throw new RedirectableError(request, "invalid_request", "provider_hint names no provider hello-mesh knows");
  const provider = hinted ?? (door.providers.length === 1 ? door.providers[0] : undefined);
  if (provider) return toProvider(door, res, request, provider);
  if (request.prompt === "none") throw new RedirectableError(request, "interaction_required", "choosing a provider needs the user: pass provider_hint");
  const client = door.clients.get(request.client_id)!;
  // The chooser's form leads (by redirect) to a provider, and, when the user is signed in
  // there already, on through the provider's answer straight to the app, in one chain
  // of redirects that CSP form-action governs to its end: it must name them all.
  sendHtml(res, 200, chooserPage({
    appName: client.client_name ?? client.client_id,
    providers: door.providers.map((p) => ({ id: p.id, name: p.name })),
    action: "/authorize/provider",
    hidden: { flow: door.sealer.seal("chooser", request, FLOW_TTL) },
    ...(request.login_hint ? { loginHint: request.login_hint } : {}),
  }), pageCsp([...door.providers.map((p) => p.issuer), request.redirect_uri]));
}

/** POST /authorize/provider: the provider the user chose for the request the chooser carried. */
export async function chosenProvider(door: DoorContext, { req, res }: Exchange) {
  const body = await form(req);
  const request = door.sealer.open<AuthorizationRequest>("chooser", body.get("flow") ?? undefined);
  if (!request) return sendError(res, 400, "This sign-in has expired", "The sign-in took too long or was already used.", "Go back to the app and sign in again.");
  const provider = door.rp.provider(body.get("provider") ?? "");
  if (!provider) return sendError(res, 400, "Unknown provider", "Choose one of the providers listed.");
  return toProvider(door, res, request, provider);
}

/** Creates the session at Token and sends the browser to the provider. */
async function toProvider(door: DoorContext, res: Exchange["res"], request: AuthorizationRequest, provider: UpstreamProvider) {
  const started = Date.now();
  const session = await startSession(door, request, provider);
  // Every login goes upstream: prompt and max_age are the provider's to honour. A
  // provider must then say when the user authenticated (OIDC Core §2: auth_time is
  // required when max_age was asked), so prompt=login goes with max_age=0.
  const promptLogin = request.prompt?.split(" ").includes("login") ?? false;
  const prompt = request.prompt === "none" ? "none" : promptLogin ? "login" : undefined;
  const maxAge = request.max_age ?? (promptLogin ? "0" : undefined);
  const params = {
    ...(prompt ? { prompt } : {}),
    ...(request.login_hint ? { login_hint: request.login_hint } : {}),
    ...(maxAge !== undefined ? { max_age: maxAge } : {}),
  };
  await goToProvider(door, res, provider, started, session, params, LOGIN_FLOW, { request } satisfies Omit<UpstreamFlow, keyof ProviderLeg>);
}

async function startSession(door: DoorContext, request: AuthorizationRequest, provider: UpstreamProvider) {
  const session = await door.driver
    .start(appRequestOf(request), provider.id)
    .catch((error: unknown) => {
      // Token refused the app's signed request object (signature, audience, expiry,
      // jti): the redirect_uri is a registered one, so the app hears why (RFC 9101 §6.2).
      if (request.request_object && error instanceof ConnectError && error.rawMessage.startsWith("the request object")) {
        throw new RedirectableError(request, "invalid_request_object", "the request object did not verify (signature, audience, expiry or jti)");
      }
      throw error;
    });
  if (request.request_object) await spendRequestObject(door, request);
  return session;
}

/**
 * A signed request object serves one login (RFC 9101 §10.8, RFC 7519 jti): Token has
 * verified it (and requires jti and exp, at most 10 minutes ahead); its jti is claimed
 * here, in the store Orchestration's replicas share, until it expires.
 */
async function spendRequestObject(door: DoorContext, request: AuthorizationRequest) {
  const { jti, exp } = decodeJwt(request.request_object!);
  const ttlMs = typeof exp === "number" ? exp * 1000 - Date.now() + REQUEST_OBJECT_SKEW_MS : 0;
  if (typeof jti !== "string" || ttlMs <= 0) throw new RedirectableError(request, "invalid_request_object", "the request object has no jti, or has expired");
  const claimed = await door.store.claim(`request-object:${createHash("sha256").update(`${request.client_id}\0${jti}`).digest("base64url")}`, ttlMs);
  if (!claimed) throw new RedirectableError(request, "invalid_request_object", "the request object was already used (its jti was seen before)");
}
