// The front door (DESIGN.md §6): a standard OpenID Provider to apps, on Orchestration.
// Every login goes to the user's own provider (hello-mesh keeps no login session of
// its own) and through the four components; the ID Token reaches the app only through
// the token endpoint.

import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { compactVerify, decodeJwt } from "jose";
import { type FrontDoorClient, type UpstreamProvider, UPSTREAM_CALLBACK_PATH } from "../../../config/component-config.js";
import type { TokenService } from "../../../gen/hello/token/v1/token_service_pb.js";
import { type VerificationKeys } from "../../../protocol/signing-keys.js";
import { JWKS_MAX_AGE } from "../../../protocol/tokens.js";
import {
  type AppRequest,
  type LoginDriver,
  LoginRequired,
  type LoginState,
  ProtocolViolation,
  isLostCreateRace,
  loginContext,
} from "../login-driver.js";
import { AuthorizationCodes, FlowSealer, SecretKeyedStore, type SharedStore } from "../sealed.js";
import { PAGE_CSP, hiddenInputs, page, pageCsp } from "../pages/layout.js";
import { html } from "../pages/html.js";
import { chooserPage } from "../pages/chooser.js";
import { consentPage } from "../pages/consent.js";
import { errorPage } from "../pages/error.js";
import { claimLabel } from "../pages/claim-labels.js";
import { type AuthorizationRequest, RedirectableError, UntrustedRedirectError, parseAuthorizationRequest } from "./authorization-request.js";
import { authenticateClient } from "./client-auth.js";
import { OAuthError } from "./oauth-error.js";
import { isUnavailable } from "../../../../mesh/transport-errors.js";
import { UpstreamRp } from "./upstream-rp.js";
import { WALLET_CLAIMS, requestedClaims } from "../../../protocol/claims.js";
import { type HttpObserver, OTHER_ROUTE, httpObserver } from "../../../observability/metrics/http-observer.js";

export interface FrontDoorDeps {
  readonly issuer: string;
  readonly clients: readonly FrontDoorClient[];
  readonly providers: readonly UpstreamProvider[];
  readonly driver: LoginDriver;
  readonly token: Client<typeof TokenService>;
  /** Token's published keys (its mesh bundle): the key set must be signed by its key-set key. */
  readonly tokenKeys: () => VerificationKeys;
  readonly cookieKey: Uint8Array;
  /** Shared by Orchestration's replicas: codes, access tokens, used client assertions. */
  readonly store: SharedStore;
  /** Counts, times and logs each request by route name. Default: this process's metrics and log. */
  readonly observer?: HttpObserver;
  /**
   * Whether the peers a login needs (Token, Encryption and, behind it, Storage) serve
   * (internal/components/runtime/peer-health.ts). Until they do, logins get the "unavailable" page
   * and /healthz/ready answers 503. Absent: always ready.
   */
  readonly readiness?: FrontDoorReadiness;
}

export interface FrontDoorReadiness {
  /** True at once while every peer served at the last look; otherwise from a look begun now. */
  settle(): Promise<boolean>;
  /** The peers that did not serve at the last look. */
  notServing(): readonly string[];
}

/**
 * The routes below: the only values the `route` label and log field take (others are
 * "other"). Every provider's callback, /upstream/callback/<id>, is CALLBACK_ROUTE.
 */
const ROUTES = new Set([
  "/.well-known/openid-configuration", "/jwks", "/authorize", "/authorize/provider",
  "/consent", "/token", "/userinfo", "/health", "/healthz/live", "/healthz/ready",
]);
const CALLBACK_ROUTE = "/upstream/callback";
/** How a provider's callback is named in the switch below; "{" is never in a URL's path. */
const CALLBACK_CASE = "/upstream/callback/{provider}";

const FLOW_TTL = 10 * 60;
/** How long past its exp a request object's jti stays claimed: our clock may be behind Token's. */
const REQUEST_OBJECT_SKEW_MS = 60_000;
const CODE_TTL = 60;
const ACCESS_TOKEN_TTL = 10 * 60;
const MAX_BODY = 64 * 1024;
/** Retry-After on the "unavailable" page: about how long a component takes to restart. */
const RETRY_AFTER_SECONDS = 5;

interface CodeEntry {
  client_id: string;
  redirect_uri: string;
  code_challenge: string;
  scope: string;
  id_token: string;
  userinfo_json: string;
  userinfo_jwt: string;
}
interface AccessEntry {
  client_id: string;
  userinfo_json: string;
  userinfo_jwt: string;
}
interface UpstreamFlow {
  request: AuthorizationRequest;
  /** When the login began (epoch ms): a prompt=login authentication must follow it. */
  started: number;
  provider: string;
  session: string;
  upstream_nonce: string;
  state: string;
  verifier: string;
}
interface ConsentFlow {
  request: AuthorizationRequest;
  /** A login waiting for a release (the user chooses claims)... */
  login?: LoginState;
  newUser?: boolean;
  offered: string[];
  /** ...or, for prompt=consent, an ID Token already minted from the existing release. */
  minted?: { idToken: string; userinfoJson: string; userinfoJwt: string };
}

export function frontDoor(deps: FrontDoorDeps): http.RequestListener {
  const issuer = deps.issuer.replace(/\/$/, "");
  const endpoint = (path: string) => `${issuer}${path}`;
  const clients = new Map(deps.clients.map((c) => [c.client_id, c]));
  const sealer = new FlowSealer(deps.cookieKey);
  const codes = new AuthorizationCodes<CodeEntry>(deps.store, CODE_TTL);
  const accessTokens = new SecretKeyedStore<AccessEntry>(deps.store, "access-token");
  const rp = new UpstreamRp(deps.providers, issuer);
  const secure = issuer.startsWith("https:");
  const observer = deps.observer ?? httpObserver("orchestration");

  const discovery = JSON.stringify({
    issuer,
    authorization_endpoint: endpoint("/authorize"),
    token_endpoint: endpoint("/token"),
    userinfo_endpoint: endpoint("/userinfo"),
    jwks_uri: endpoint("/jwks"),
    response_types_supported: ["code"],
    response_modes_supported: ["query", "form_post"],
    grant_types_supported: ["authorization_code"],
    subject_types_supported: ["pairwise"],
    id_token_signing_alg_values_supported: ["RS256", "ES256", "EdDSA"],
    userinfo_signing_alg_values_supported: ["RS256", "ES256", "EdDSA"],
    token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
    token_endpoint_auth_signing_alg_values_supported: ["RS256", "PS256", "ES256", "EdDSA"],
    request_object_signing_alg_values_supported: ["RS256", "PS256", "ES256", "EdDSA"],
    code_challenge_methods_supported: ["S256"],
    scopes_supported: ["openid", "email", "profile"],
    claims_supported: ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", ...WALLET_CLAIMS],
    claims_parameter_supported: true,
    request_parameter_supported: true,
    request_uri_parameter_supported: false,
    authorization_response_iss_parameter_supported: true,
    prompt_values_supported: ["none", "login", "consent"],
  });

  // --- responses --------------------------------------------------------------------

  const sendHtml = (res: http.ServerResponse, status: number, html: string, csp = PAGE_CSP) => {
    res.writeHead(status, {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": csp,
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
    });
    res.end(html);
  };
  const sendJson = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", pragma: "no-cache", ...headers });
    res.end(typeof body === "string" ? body : JSON.stringify(body));
  };
  const sendError = (res: http.ServerResponse, status: number, title: string, message: string, hint?: string) =>
    sendHtml(res, status, errorPage({ title, message, ...(hint ? { hint } : {}) }));

  /** Back to the app: the code or the error, with state and iss (RFC 9207). */
  const respond = (res: http.ServerResponse, to: Pick<AuthorizationRequest, "redirect_uri" | "state" | "response_mode">, params: Record<string, string>) => {
    const all: Record<string, string> = { ...params, ...(to.state ? { state: to.state } : {}), iss: issuer };
    if (to.response_mode === "form_post") {
      // No character here is one the template escapes, so the hash matches what is sent.
      const script = "document.forms[0].submit()";
      const hash = createHash("sha256").update(script).digest("base64");
      const body = html`<form method="post" action="${to.redirect_uri}">${hiddenInputs(all)}<p>Returning you to the app…</p><button type="submit">Continue</button></form><script>${script}</script>`;
      sendHtml(res, 200, page({ title: "Returning to the app", body }), `${pageCsp([to.redirect_uri])}; script-src 'sha256-${hash}'`);
      return;
    }
    const url = new URL(to.redirect_uri);
    for (const [k, v] of Object.entries(all)) url.searchParams.set(k, v);
    res.writeHead(303, { location: url.toString(), "cache-control": "no-store" });
    res.end();
  };

  const flowCookie = (state: string) => `hello_flow_${state.slice(0, 16)}`;
  const setCookie = (res: http.ServerResponse, name: string, value: string, maxAge: number) =>
    res.appendHeader("set-cookie", `${name}=${value}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${maxAge}${secure ? "; Secure" : ""}`);

  // --- readiness ------------------------------------------------------------------------

  /** No login starts or goes on while a peer it needs does not serve: the "unavailable" page instead. */
  async function whenReady() {
    if (deps.readiness && !(await deps.readiness.settle())) throw new ConnectError("a component a login needs is not serving", Code.Unavailable);
  }

  /** For load balancers: 200 while a login can succeed, else 503 naming the peers that do not serve. */
  async function ready(res: http.ServerResponse) {
    if (!deps.readiness || (await deps.readiness.settle())) return sendJson(res, 200, { status: "ready" });
    sendJson(res, 503, { status: "not ready", not_serving: deps.readiness.notServing() }, { "retry-after": String(RETRY_AFTER_SECONDS) });
  }

  // --- the login --------------------------------------------------------------------

  /** Creates the session at Token and sends the browser to the provider. */
  async function toProvider(res: http.ServerResponse, request: AuthorizationRequest, provider: UpstreamProvider) {
    const started = Date.now();
    const session = await startSession(request, provider);
    // Every login goes upstream: prompt and max_age are the provider's to honour. A
    // provider must then say when the user authenticated (OIDC Core §2: auth_time is
    // required when max_age was asked), so prompt=login goes with max_age=0.
    const promptLogin = request.prompt?.split(" ").includes("login") ?? false;
    const prompt = request.prompt === "none" ? "none" : promptLogin ? "login" : undefined;
    const maxAge = request.max_age ?? (promptLogin ? "0" : undefined);
    const redirect = await rp.authorizationUrl(provider, session.upstreamNonce, {
      ...(prompt ? { prompt } : {}),
      ...(request.login_hint ? { login_hint: request.login_hint } : {}),
      ...(maxAge !== undefined ? { max_age: maxAge } : {}),
    });
    const flow: UpstreamFlow = {
      request, started, provider: provider.id, session: session.sessionToken, upstream_nonce: session.upstreamNonce,
      state: redirect.state, verifier: redirect.codeVerifier,
    };
    setCookie(res, flowCookie(redirect.state), sealer.seal("upstream", flow, FLOW_TTL), FLOW_TTL);
    res.writeHead(303, { location: redirect.url.toString(), "cache-control": "no-store" });
    res.end();
  }

  async function startSession(request: AuthorizationRequest, provider: UpstreamProvider) {
    const session = await deps.driver
      .start(appRequestOf(request), provider.id)
      .catch((error: unknown) => {
        // Token refused the app's signed request object (signature, audience, expiry,
        // jti): the redirect_uri is a registered one, so the app hears why (RFC 9101 §6.2).
        if (request.request_object && error instanceof ConnectError && error.rawMessage.startsWith("the request object")) {
          throw new RedirectableError(request, "invalid_request_object", "the request object did not verify (signature, audience, expiry or jti)");
        }
        throw error;
      });
    if (request.request_object) await spendRequestObject(request);
    return session;
  }

  /**
   * A signed request object serves one login (RFC 9101 §10.8, RFC 7519 jti): Token has
   * verified it (and requires jti and exp, at most 10 minutes ahead); its jti is claimed
   * here, in the store Orchestration's replicas share, until it expires.
   */
  async function spendRequestObject(request: AuthorizationRequest) {
    const { jti, exp } = decodeJwt(request.request_object!);
    const ttlMs = typeof exp === "number" ? exp * 1000 - Date.now() + REQUEST_OBJECT_SKEW_MS : 0;
    if (typeof jti !== "string" || ttlMs <= 0) throw new RedirectableError(request, "invalid_request_object", "the request object has no jti, or has expired");
    const claimed = await deps.store.claim(`request-object:${createHash("sha256").update(`${request.client_id}\0${jti}`).digest("base64url")}`, ttlMs);
    if (!claimed) throw new RedirectableError(request, "invalid_request_object", "the request object was already used (its jti was seen before)");
  }

  async function authorize(res: http.ServerResponse, params: URLSearchParams) {
    const request = parseAuthorizationRequest(params, clients);
    const hinted = request.provider_hint ? rp.provider(request.provider_hint) : undefined;
    if (request.provider_hint && !hinted) throw new RedirectableError(request, "invalid_request", "provider_hint names no provider hello-mesh knows");
    const provider = hinted ?? (deps.providers.length === 1 ? deps.providers[0] : undefined);
    if (provider) return toProvider(res, request, provider);
    if (request.prompt === "none") throw new RedirectableError(request, "interaction_required", "choosing a provider needs the user: pass provider_hint");
    const client = clients.get(request.client_id)!;
    // The chooser's form leads (by redirect) to a provider: CSP form-action must name them.
    sendHtml(res, 200, chooserPage({
      appName: client.client_name ?? client.client_id,
      providers: deps.providers.map((p) => ({ id: p.id, name: p.name })),
      action: "/authorize/provider",
      hidden: { flow: sealer.seal("chooser", request, FLOW_TTL) },
      ...(request.login_hint ? { loginHint: request.login_hint } : {}),
    }), pageCsp(deps.providers.map((p) => p.issuer)));
  }

  async function chosen(res: http.ServerResponse, body: URLSearchParams) {
    const request = sealer.open<AuthorizationRequest>("chooser", body.get("flow") ?? undefined);
    if (!request) return sendError(res, 400, "This sign-in has expired", "The sign-in took too long or was already used.", "Go back to the app and sign in again.");
    const provider = rp.provider(body.get("provider") ?? "");
    if (!provider) return sendError(res, 400, "Unknown provider", "Choose one of the providers listed.");
    return toProvider(res, request, provider);
  }

  /** The answer of `provider` (the one whose callback path it came to). */
  async function upstreamCallback(req: http.IncomingMessage, res: http.ServerResponse, url: URL, provider: UpstreamProvider) {
    const state = url.searchParams.get("state") ?? "";
    const name = flowCookie(state);
    const flow = sealer.open<UpstreamFlow>("upstream", cookies(req)[name]);
    if (!flow || flow.state !== state) {
      return sendError(res, 400, "This sign-in has expired", "We could not find the sign-in this answer belongs to (it took too long, was already completed, or cookies are blocked).", "Go back to the app and sign in again.");
    }
    if (flow.provider !== provider.id) {
      // A mix-up (RFC 9700 §4.4): an answer for a login started with another provider.
      // Refused before anything is redeemed, and the flow is left as it was.
      return sendError(res, 400, "Sign-in failed", `This answer did not come from the provider this sign-in was started with.`, "Go back to the app and sign in again.");
    }
    setCookie(res, name, "", 0); // one use
    const upstreamError = url.searchParams.get("error");
    if (upstreamError) {
      if (!(await rp.errorAnswerIsFrom(provider, url))) {
        return sendError(res, 400, "Sign-in failed", `The answer from ${provider.name} could not be verified.`, "Go back to the app and sign in again.");
      }
      // With prompt=none the provider's login_required / consent_required goes to the app as is.
      const passThrough = ["login_required", "consent_required", "interaction_required", "account_selection_required"];
      const error = passThrough.includes(upstreamError) ? upstreamError : "access_denied";
      return respond(res, flow.request, { error, error_description: "the sign-in at your provider did not complete" });
    }
    let upstream;
    try {
      upstream = await rp.redeem(provider, url, { state: flow.state, nonce: flow.upstream_nonce, codeVerifier: flow.verifier });
    } catch {
      // The provider's answer did not verify (its ID Token, state, iss or PKCE): say so,
      // without the details, which are for the operator's logs.
      return sendError(res, 400, "Sign-in failed", `The answer from ${provider.name} could not be verified.`, "Go back to the app and sign in again.");
    }
    let outcome;
    try {
      outcome = await deps.driver.continue(flow.session, loginContext(appRequestOf(flow.request), flow.started), upstream);
    } catch (error) {
      // The app asked for a recent or fresh login (max_age, prompt=login) and the provider's was not.
      if (error instanceof LoginRequired) return respond(res, flow.request, { error: "login_required", error_description: error.message });
      throw error;
    }
    if (outcome.kind === "done" && flow.request.prompt?.split(" ").includes("consent")) {
      // OIDC Core §3.1.2.1: ask again, showing what this app already receives.
      const released = JSON.parse(outcome.userinfoJson) as Record<string, string | boolean>;
      const minted = { idToken: outcome.idToken, userinfoJson: outcome.userinfoJson, userinfoJwt: outcome.userinfoJwt };
      return showConsent(res, { request: flow.request, offered: Object.keys(released).filter((c) => c !== "sub"), minted }, released);
    }
    if (outcome.kind === "done") return issueCode(res, flow.request, outcome);
    if (flow.request.prompt === "none") {
      return respond(res, flow.request, { error: "consent_required", error_description: "this app needs the user's consent first" });
    }
    return showConsent(res, { request: flow.request, login: outcome.state, newUser: outcome.newUser, offered: offeredClaims(flow.request, outcome.wallet.claims) }, outcome.wallet.claims);
  }

  /** What the app asked for and the user's wallet holds: Token's own rule (claims.ts). */
  function offeredClaims(request: AuthorizationRequest, wallet: Record<string, unknown>): string[] {
    return [...requestedClaims(request.scope, request.claims)].filter((c) => Object.hasOwn(wallet, c));
  }


  function showConsent(res: http.ServerResponse, flow: ConsentFlow, wallet: Record<string, string | boolean>) {
    const client = clients.get(flow.request.client_id)!;
    sendHtml(res, 200, consentPage({
      appName: client.client_name ?? client.client_id,
      clientId: client.client_id,
      claims: flow.offered.map((name) => ({ name, label: claimLabel(name), value: String(wallet[name]) })),
      action: "/consent",
      hidden: { flow: sealer.seal("consent", flow, FLOW_TTL) },
      alreadyReleased: flow.minted !== undefined,
    }), pageCsp([flow.request.redirect_uri]));
  }

  async function consent(res: http.ServerResponse, body: URLSearchParams) {
    const flow = sealer.open<ConsentFlow>("consent", body.get("flow") ?? undefined);
    if (!flow) return sendError(res, 400, "This sign-in has expired", "The consent page was open too long.", "Go back to the app and sign in again.");
    if (body.get("decision") !== "allow") {
      return respond(res, flow.request, { error: "access_denied", error_description: "the user declined" });
    }
    if (flow.minted) return issueCode(res, flow.request, flow.minted);
    const chosenClaims = body.getAll("claims").filter((c) => flow.offered.includes(c));
    const outcome = await deps.driver.consent(flow.login!, chosenClaims, flow.newUser ?? false);
    return issueCode(res, flow.request, outcome);
  }

  async function issueCode(res: http.ServerResponse, request: AuthorizationRequest, outcome: { idToken: string; userinfoJson: string; userinfoJwt: string }) {
    const code = await codes.issue({
      client_id: request.client_id, redirect_uri: request.redirect_uri, code_challenge: request.code_challenge, scope: request.scope,
      id_token: outcome.idToken, userinfo_json: outcome.userinfoJson, userinfo_jwt: outcome.userinfoJwt,
    });
    respond(res, request, { code });
  }

  // --- back channel -------------------------------------------------------------------

  async function tokenEndpoint(req: http.IncomingMessage, res: http.ServerResponse, body: URLSearchParams) {
    const client = await authenticateClient(clients, { authorization: req.headers.authorization, body }, {
      issuer, tokenEndpoint: endpoint("/token"), replay: deps.store,
    });
    if (body.get("grant_type") !== "authorization_code") throw new OAuthError("unsupported_grant_type", "only authorization_code is supported");
    const code = body.get("code");
    if (!code) throw new OAuthError("invalid_request", "code is required");
    // Taken now: a second use finds nothing, and revokes what this one issues (RFC 6749 §4.1.2).
    const redemption = await codes.redeem(code);
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
    const accessToken = await accessTokens.issue({ client_id: client.client_id, userinfo_json: entry.userinfo_json, userinfo_jwt: entry.userinfo_jwt }, lifetime);
    if (!(await redemption.issued(accessTokens.keyOf(accessToken)))) throw new OAuthError("invalid_grant", "the code was used more than once");
    sendJson(res, 200, { access_token: accessToken, token_type: "Bearer", expires_in: lifetime, id_token: entry.id_token, scope: entry.scope });
  }

  /** OIDC Core §5.3.1: GET or POST, with the access token as RFC 6750 §2 sends it. */
  async function userinfo(req: http.IncomingMessage, res: http.ServerResponse, url: URL) {
    const token = await bearerToken(req, url);
    const entry = token ? await accessTokens.read(token) : undefined;
    if (!entry) throw new OAuthError("invalid_token", "the access token is invalid or expired");
    if ((req.headers.accept ?? "").includes("application/jwt")) {
      res.writeHead(200, { "content-type": "application/jwt", "cache-control": "no-store" });
      res.end(entry.userinfo_jwt);
      return;
    }
    sendJson(res, 200, entry.userinfo_json);
  }

  /**
   * Token's key set, byte for byte, once its signature by Token's key-set key checks
   * out. Fetched per request (it is small), so a key Token publishes shows at once;
   * apps may cache it for max-age, which is why a new key stays `next` for longer.
   */
  async function jwks(res: http.ServerResponse) {
    const { jwks, signature } = await deps.token.getKeySet({});
    const [header, , sig] = signature.split(".");
    const attached = `${header}.${Buffer.from(jwks).toString("base64url")}.${sig}`;
    await compactVerify(attached, async (h) => {
      const key = deps.tokenKeys().find("key-set", h.kid);
      if (!key || h.alg !== key.alg || h.typ !== "hello-key-set") throw new Error("the key set is not signed by Token's key-set key");
      return key.key;
    });
    res.writeHead(200, { "content-type": "application/json", "cache-control": `public, max-age=${JWKS_MAX_AGE}` });
    res.end(Buffer.from(jwks));
  }

  // --- routing --------------------------------------------------------------------------

  return (req, res) => {
    const observation = observer.begin(req, res);
    void observation.run(async () => {
      let url: URL;
      try {
        url = new URL(req.url ?? "/", issuer);
      } catch {
        // A request target that is no URL at all ("//", "http://[").
        observation.route(OTHER_ROUTE);
        return sendError(res, 400, "Bad request", "The address of this request is not valid.");
      }
      // A configured provider's callback path; any other under it is unknown.
      const callback = url.pathname.startsWith(UPSTREAM_CALLBACK_PATH) ? rp.provider(url.pathname.slice(UPSTREAM_CALLBACK_PATH.length)) : undefined;
      const route = `${req.method} ${callback ? CALLBACK_CASE : url.pathname}`;
      observation.route(callback ? CALLBACK_ROUTE : ROUTES.has(url.pathname) ? url.pathname : OTHER_ROUTE);
      try {
        switch (route) {
          case "GET /.well-known/openid-configuration":
            return sendJson(res, 200, discovery, { "cache-control": "public, max-age=300" });
          case "GET /jwks":
            return await jwks(res);
          case "GET /authorize":
            await whenReady();
            return await authorize(res, url.searchParams);
          case "POST /authorize":
            await whenReady();
            return await authorize(res, await form(req));
          case "POST /authorize/provider":
            await whenReady();
            return await chosen(res, await form(req));
          case `GET ${CALLBACK_CASE}`:
            await whenReady();
            return await upstreamCallback(req, res, url, callback!);
          case "POST /consent":
            await whenReady();
            return await consent(res, await form(req));
          case "POST /token":
            return await tokenEndpoint(req, res, await form(req));
          case "GET /userinfo":
          case "POST /userinfo":
            return await userinfo(req, res, url);
          case "GET /healthz/live":
          case "GET /health": // the name before /healthz/live, kept for whoever probes it
            return sendJson(res, 200, { status: "ok" });
          case "GET /healthz/ready":
            return await ready(res);
          default: {
            const allowed = callback ? "GET" : ALLOWED_METHODS[url.pathname];
            if (!allowed) return sendError(res, 404, "Not found", "There is no page at this address.");
            const said = `this endpoint answers ${allowed} only`;
            if (url.pathname === "/token" || url.pathname === "/userinfo") return sendJson(res, 405, { error: "invalid_request", error_description: said }, { allow: allowed });
            res.setHeader("allow", allowed);
            return sendError(res, 405, "Method not allowed", `This address answers ${allowed} only.`);
          }
        }
      } catch (error) {
        observation.failed(error);
        handleError(res, url.pathname, error);
      }
    }).catch(() => {
      // Only if answering failed itself: never an unhandled rejection, which would end the process.
      if (res.headersSent) res.destroy();
      else res.writeHead(500).end();
    });
  };

  function handleError(res: http.ServerResponse, path: string, error: unknown) {
    if (res.headersSent) return void res.destroy();
    // The rest of an oversized body is not read: the connection ends with the answer.
    if (error instanceof OAuthError && error.status === 413) res.setHeader("connection", "close");
    if (error instanceof RedirectableError) return respond(res, error.request, { error: error.error, error_description: error.description });
    if (error instanceof UntrustedRedirectError) {
      return sendError(res, 400, "This sign-in request is not valid", `${error.message}.`, "Tell the app's developers; hello-mesh will not send you back to an address it does not know.");
    }
    if (error instanceof OAuthError) {
      const headers: Record<string, string> = {};
      if (error.error === "invalid_client") headers["www-authenticate"] = 'Basic realm="hello-mesh"';
      // RFC 6750 §3: a protected resource names the error in its challenge too.
      if (path === "/userinfo") headers["www-authenticate"] = `Bearer error="${error.error}", error_description="${error.description.replace(/[^\x20-\x7e]|["\\]/g, "")}"`;
      if (path === "/token" || path === "/userinfo") return sendJson(res, error.status, { error: error.error, error_description: error.description }, headers);
      return sendError(res, error.status, "Sign-in failed", error.description);
    }
    const connect = error instanceof ConnectError ? error : undefined;
    if (isUnavailable(error)) {
      // A component is down, restarting or too slow (docs/faults.md): nothing the user
      // did, and nothing to show but that. A new sign-in works once it is back.
      res.setHeader("retry-after", String(RETRY_AFTER_SECONDS));
      return sendError(res, 503, "hello-mesh is unavailable right now", "A part of hello-mesh did not answer in time, so this sign-in could not finish.", "Wait a moment, then go back to the app and sign in again.");
    }
    if (isLostCreateRace(error)) return sendError(res, 409, "Please try again", "Another sign-in for your account was completing at the same moment.", "Go back to the app and sign in again.");
    if (error instanceof ProtocolViolation || connect) {
      return sendError(res, 400, "Sign-in failed", "hello-mesh could not complete this sign-in safely.", "Go back to the app and sign in again.");
    }
    return sendError(res, 500, "Something went wrong", "hello-mesh could not complete this request.", "Try again; if it keeps happening, tell the operators.");
  }
}

function cookies(req: http.IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0) out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}

/** The methods each endpoint answers; another method on these paths is 405 (docs/bad-input.md). */
const ALLOWED_METHODS: Record<string, string> = {
  "/.well-known/openid-configuration": "GET",
  "/jwks": "GET",
  "/authorize": "GET, POST",
  "/authorize/provider": "POST",
  "/consent": "POST",
  "/token": "POST",
  "/userinfo": "GET, POST",
  "/health": "GET",
  "/healthz/live": "GET",
  "/healthz/ready": "GET",
};

/**
 * The access token of a userinfo request, from exactly one of the places RFC 6750 §2
 * allows: the Authorization header (Bearer, any method), or the `access_token` field of
 * a POST's application/x-www-form-urlencoded body. A POST with the header may have an
 * empty body or a body of another type, which is not read. A token in two places, or
 * in the URL (§2.3, which hello-mesh does not take: URLs end up in logs), is
 * invalid_request. Undefined when there is none.
 */
async function bearerToken(req: http.IncomingMessage, url: URL): Promise<string | undefined> {
  if (url.searchParams.has("access_token")) throw new OAuthError("invalid_request", "send the access token in the Authorization header or a form body, not in the URL");
  const scheme = /^Bearer(?: +(.*))?$/i.exec(req.headers.authorization ?? "");
  const inHeader = scheme ? (scheme[1] ?? "").trim() : undefined;
  const isForm = (req.headers["content-type"] ?? "").startsWith("application/x-www-form-urlencoded");
  if (req.method !== "POST" || !isForm) return inHeader;
  const inBody = (await form(req)).getAll("access_token");
  if (inBody.length > 1) throw new OAuthError("invalid_request", "access_token appears more than once");
  if (inBody.length === 1 && inHeader !== undefined) throw new OAuthError("invalid_request", "the access token was sent in more than one place");
  return inHeader ?? inBody[0];
}

const tooLarge = () => new OAuthError("invalid_request", `the request body is larger than ${MAX_BODY} bytes`, 413);

/**
 * A form body of at most MAX_BODY bytes (docs/bad-input.md). A larger one is refused
 * with 413 as soon as it is known to be larger (from Content-Length, or while reading),
 * without reading the rest: the answer goes out and the connection closes.
 */
async function form(req: http.IncomingMessage): Promise<URLSearchParams> {
  const type = req.headers["content-type"] ?? "";
  if (!type.startsWith("application/x-www-form-urlencoded")) throw new OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded");
  if (Number(req.headers["content-length"] ?? 0) > MAX_BODY) throw tooLarge();
  const body = await new Promise<Buffer>((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY) return void chunks.push(chunk);
      req.off("data", onData);
      req.pause();
      reject(tooLarge());
    };
    req.on("data", onData);
    req.once("end", () => resolve(Buffer.concat(chunks)));
    req.once("error", () => reject(new OAuthError("invalid_request", "the request body did not arrive whole")));
  });
  return new URLSearchParams(body.toString("utf8"));
}

export async function startFrontDoor(deps: FrontDoorDeps & { host: string; port: number }) {
  const server = http.createServer(frontDoor(deps));
  // No proxying here: without this, Node would drop a CONNECT request's connection unanswered.
  server.on("connect", (_req: http.IncomingMessage, socket: Duplex) => {
    socket.end("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, POST\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(deps.port, deps.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${deps.host}:${port}`,
    port,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

/** The app's request as the login driver takes it. */
function appRequestOf(request: AuthorizationRequest): AppRequest {
  return {
    clientId: request.client_id,
    redirectUri: request.redirect_uri,
    nonce: request.nonce,
    scope: request.scope,
    codeChallenge: request.code_challenge,
    ...(request.claims ? { claims: request.claims } : {}),
    ...(request.prompt ? { prompt: request.prompt } : {}),
    ...(request.max_age !== undefined ? { maxAge: Number(request.max_age) } : {}),
    ...(request.request_object ? { requestObject: request.request_object } : {}),
  };
}
