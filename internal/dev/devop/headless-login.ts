// Completes a real authorization-code login at the dev OP with plain HTTP requests, no
// browser: discovery, authorization request (PKCE S256, state, nonce), the OP's redirects
// and login form with a cookie jar, then the code redeemed at the token endpoint. Tests
// and benchmarks use it to obtain genuine OP ID Tokens.
//
// The redirect_uri itself is never fetched: the login stops at the OP's redirect to it and
// reads `code` (or `error`) from that Location.

import { createHash, randomBytes } from "node:crypto";
import { decodeJwt } from "jose";

export interface DevOpClientOptions {
  issuer: string;
  clientId: string;
  redirectUri: string;
  nonce: string;
  /** Default "openid email profile". */
  scope?: string;
}

export interface LoginOptions extends DevOpClientOptions {
  clientSecret: string;
  user: { email: string; password: string };
  prompt?: string;
}

export interface LoginResult {
  idToken: string;
  accessToken: string;
  /** The ID Token's payload, decoded but NOT verified: callers verify what they test. */
  claims: Record<string, unknown>;
}

/** The OP answered the login form with something other than a redirect (e.g. a wrong password). */
export class DevOpLoginError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly page: string,
  ) {
    super(message);
    this.name = "DevOpLoginError";
  }
}

/** The OP redirected to the client with an OAuth error instead of a code. */
export class DevOpAuthorizationError extends Error {
  constructor(
    readonly error: string,
    readonly errorDescription: string | undefined,
  ) {
    super(`authorization error: ${error}${errorDescription ? ` (${errorDescription})` : ""}`);
    this.name = "DevOpAuthorizationError";
  }
}

export async function loginAtDevOp(options: LoginOptions): Promise<LoginResult> {
  const metadata = await discover(options.issuer);
  const verifier = randomBytes(32).toString("base64url");
  const callback = await authorize(metadata, options, new CookieJar(), {
    codeChallenge: createHash("sha256").update(verifier).digest("base64url"),
    prompt: options.prompt,
    user: options.user,
  });
  const error = callback.get("error");
  if (error) throw new DevOpAuthorizationError(error, callback.get("error_description") ?? undefined);
  const code = callback.get("code");
  if (!code) throw new Error("authorization response carries neither code nor error");

  const response = await fetch(metadata.token_endpoint, {
    method: "POST",
    headers: {
      // RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
      authorization: `Basic ${Buffer.from(`${formEncode(options.clientId)}:${formEncode(options.clientSecret)}`).toString("base64")}`,
      "content-type": "application/x-www-form-urlencoded",
      accept: "application/json",
    },
    body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: options.redirectUri, code_verifier: verifier }),
  });
  const body: unknown = await response.json();
  if (!response.ok || !isRecord(body)) throw new Error(`token endpoint answered ${response.status}: ${JSON.stringify(body)}`);
  const { id_token: idToken, access_token: accessToken } = body;
  if (typeof idToken !== "string" || typeof accessToken !== "string") throw new Error("token response lacks id_token or access_token");
  return { idToken, accessToken, claims: decodeJwt(idToken) };
}

/**
 * Sends prompt=none with a fresh cookie jar (so no OP session) and returns the `error`
 * parameter of the redirect to the client; OIDC says it must be "login_required".
 * Throws if the OP issues a code or does not redirect to the client.
 */
export async function promptNoneAtDevOp(options: DevOpClientOptions): Promise<string> {
  const metadata = await discover(options.issuer);
  const challenge = createHash("sha256").update(randomBytes(32)).digest("base64url");
  const callback = await authorize(metadata, options, new CookieJar(), { codeChallenge: challenge, prompt: "none" });
  const error = callback.get("error");
  if (!error) throw new Error("prompt=none without a session was answered without an error");
  return error;
}

// --- the authorization request -------------------------------------------------------

interface Metadata {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
}

async function discover(issuer: string): Promise<Metadata> {
  const url = `${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
  const response = await fetch(url, { headers: { accept: "application/json" } });
  const body: unknown = await response.json();
  if (!response.ok || !isRecord(body)) throw new Error(`discovery answered ${response.status}`);
  const { issuer: iss, authorization_endpoint: authorization, token_endpoint: token } = body;
  if (iss !== issuer) throw new Error("discovery issuer differs from the issuer asked for");
  if (typeof authorization !== "string" || typeof token !== "string") throw new Error("discovery lacks endpoints");
  return { issuer: iss, authorization_endpoint: authorization, token_endpoint: token };
}

const MAX_STEPS = 20;

/**
 * Runs the front channel: follows the OP's redirects, submits the login form when it is
 * shown (if a user is given), and returns the query parameters of the redirect to the
 * client's redirect_uri, after checking state and (RFC 9207) iss.
 */
async function authorize(
  metadata: Metadata,
  options: DevOpClientOptions,
  jar: CookieJar,
  request: { codeChallenge: string; prompt?: string | undefined; user?: { email: string; password: string } | undefined },
): Promise<URLSearchParams> {
  const state = randomBytes(16).toString("base64url");
  const url = new URL(metadata.authorization_endpoint);
  const params: Record<string, string> = {
    response_type: "code",
    client_id: options.clientId,
    redirect_uri: options.redirectUri,
    scope: options.scope ?? "openid email profile",
    state,
    nonce: options.nonce,
    code_challenge: request.codeChallenge,
    code_challenge_method: "S256",
  };
  if (request.prompt !== undefined) params.prompt = request.prompt;
  url.search = new URLSearchParams(params).toString();

  let next: { url: URL; init: RequestInit } = { url, init: {} };
  let loginSubmitted = false;
  for (let step = 0; step < MAX_STEPS; step++) {
    const response = await jar.fetch(next.url, next.init);
    const location = response.headers.get("location");

    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      const target = new URL(location, next.url);
      if (isRedirectUri(target, options.redirectUri)) {
        const result = target.searchParams;
        if (result.get("state") !== state) throw new Error("state in the authorization response does not match");
        const iss = result.get("iss");
        if (iss !== null && iss !== metadata.issuer) throw new Error("iss in the authorization response does not match");
        return result;
      }
      if (target.origin !== url.origin) throw new Error("the OP redirected to an unexpected origin");
      next = { url: target, init: {} }; // every redirect the OP uses (302/303) turns into a GET
      continue;
    }

    const page = await response.text();
    const action = response.status === 200 && request.user && !loginSubmitted ? loginFormAction(page) : undefined;
    if (!action || !request.user) {
      throw new DevOpLoginError(
        loginSubmitted ? "the OP did not accept the login" : `the OP answered ${response.status} instead of a redirect`,
        response.status,
        page,
      );
    }
    loginSubmitted = true;
    next = {
      url: new URL(action, next.url),
      init: {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ email: request.user.email, password: request.user.password }).toString(),
      },
    };
  }
  throw new Error(`no redirect to the client after ${MAX_STEPS} requests`);
}

/** The action of the dev OP's login form (`<form id="login" ... action="...">`). */
function loginFormAction(page: string): string | undefined {
  const form = /<form\b[^>]*\bid="login"[^>]*>/.exec(page)?.[0];
  const action = form && /\baction="([^"]*)"/.exec(form)?.[1];
  return action?.replace(/&#(\d+);/g, (_m, code: string) => String.fromCharCode(Number(code)));
}

function isRedirectUri(target: URL, redirectUri: string): boolean {
  const expected = new URL(redirectUri);
  return target.origin === expected.origin && target.pathname === expected.pathname;
}

// --- a minimal cookie jar ----------------------------------------------------------------

interface Cookie {
  value: string;
  path: string;
  expiresAt: number;
}

/**
 * Enough of RFC 6265 for one origin's flow: name/path keyed cookies, Path matching,
 * Max-Age/Expires (including deletion by an expiry in the past). Domain, Secure and
 * SameSite are ignored: every request goes to the OP's own origin over http.
 */
class CookieJar {
  readonly #cookies = new Map<string, Cookie & { name: string }>(); // key: name + "\0" + path

  async fetch(url: URL, init: RequestInit): Promise<Response> {
    const headers = new Headers(init.headers);
    const cookie = this.#header(url);
    if (cookie) headers.set("cookie", cookie);
    const response = await fetch(url, { ...init, headers, redirect: "manual" });
    for (const line of response.headers.getSetCookie()) this.#store(line, url);
    return response;
  }

  #header(url: URL): string {
    const now = Date.now();
    return [...this.#cookies.values()]
      .filter((c) => c.expiresAt > now && pathMatches(url.pathname, c.path))
      .sort((a, b) => b.path.length - a.path.length) // longer paths first, as RFC 6265 §5.4 asks
      .map((c) => `${c.name}=${c.value}`)
      .join("; ");
  }

  #store(line: string, url: URL): void {
    const [pair = "", ...attributes] = line.split(";");
    const eq = pair.indexOf("=");
    if (eq <= 0) return;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    let path = defaultPath(url.pathname);
    let expiresAt = Infinity;
    for (const attribute of attributes) {
      const [key = "", ...rest] = attribute.split("=");
      const v = rest.join("=").trim();
      switch (key.trim().toLowerCase()) {
        case "path":
          if (v.startsWith("/")) path = v;
          break;
        case "max-age":
          expiresAt = Date.now() + Number(v) * 1000; // Max-Age takes precedence over Expires
          break;
        case "expires":
          if (expiresAt === Infinity) expiresAt = Date.parse(v);
          break;
      }
    }
    const key = `${name}\0${path}`;
    if (!(expiresAt > Date.now())) this.#cookies.delete(key);
    else this.#cookies.set(key, { name, value, path, expiresAt });
  }
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith("/") || requestPath[cookiePath.length] === "/";
}

function defaultPath(requestPath: string): string {
  const slash = requestPath.lastIndexOf("/");
  return slash <= 0 ? "/" : requestPath.slice(0, slash);
}

function formEncode(s: string): string {
  return new URLSearchParams({ s }).toString().slice(2);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
