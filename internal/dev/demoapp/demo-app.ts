// The demo app that `hello start` runs beside hello-mesh, so that a new user can click
// "Log in" and see hello-mesh work. Read it to learn how an app uses hello-mesh: it is an
// ordinary OpenID Connect relying party, with nothing specific to hello-mesh, and works
// against any OpenID Provider.
//
// The flow (authorization code with PKCE, OpenID Connect Core §3.1), using openid-client:
//   GET /login     discovery (once), then a fresh PKCE verifier, nonce and state kept on
//                  the server, and a redirect to the provider's authorization endpoint.
//   GET|POST /callback
//                  the provider sends the browser back with a code (in the query, or in a
//                  form POST with response_mode=form_post). openid-client checks state and
//                  the RFC 9207 `iss` parameter, redeems the code with the PKCE verifier,
//                  and validates the ID Token (iss, aud, exp, nonce, and its signature
//                  against the provider's JWKS). The claims become the local session.
//   GET /          the claims, or a "Log in" button.
//
// State lives in memory (a demo); it logs nothing.

import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { decodeProtectedHeader } from "jose";
import * as client from "openid-client";
import { esc, pageKit, readBody } from "../html-kit.js";

export interface DemoAppOptions {
  /** The OpenID Provider's issuer identifier (discovery is at <issuer>/.well-known/openid-configuration). */
  issuer: string;
  clientId: string;
  /** Sent with client_secret_basic. */
  clientSecret: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Interface to listen on; default 127.0.0.1. */
  host?: string;
  /** The origin browsers use to reach the app; default http://localhost:<port>. The redirect_uri is <publicUrl>/callback. */
  publicUrl?: string;
  /** Default "openid email profile". */
  scope?: string;
  /** Default "query" (the provider's default for the code flow). */
  responseMode?: "query" | "form_post";
}

export interface DemoApp {
  /** Where the app is reached: publicUrl. */
  url: string;
  /** The redirect_uri to register at the provider. */
  redirectUri: string;
  close(): Promise<void>;
}

const LOGIN_TTL_SECONDS = 10 * 60;
const SESSION_TTL_SECONDS = 8 * 60 * 60;
const LOGIN_COOKIE = "demo_login";
const SESSION_COOKIE = "demo_session";

/** What /login remembers for /callback, keyed by a random id in the demo_login cookie. */
interface PendingLogin {
  codeVerifier: string;
  nonce: string;
  state: string;
  expiresAt: number;
}

interface Session {
  claims: client.IDToken;
  /** The `alg` in the ID Token's JOSE header. */
  alg: string;
  expiresAt: number;
}

export async function startDemoApp(options: DemoAppOptions): Promise<DemoApp> {
  const issuer = new URL(options.issuer);
  const scope = options.scope ?? "openid email profile";
  const responseMode = options.responseMode ?? "query";
  const logins = new Map<string, PendingLogin>();
  const sessions = new Map<string, Session>();

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      // Nothing is logged (errors may carry user data); the browser gets a generic page.
      if (!res.headersSent) send(res, 500, page("Something went wrong", `<h1>Something went wrong</h1>${BACK}`));
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const publicUrl = new URL(options.publicUrl ?? `http://localhost:${port}`);
  if (publicUrl.pathname !== "/" || publicUrl.search || publicUrl.hash) {
    await closeServer(server);
    throw new Error("demo app: publicUrl must be an origin (the app is served at the root)");
  }
  const redirectUri = new URL("/callback", publicUrl).href;
  const https = publicUrl.protocol === "https:";
  // A form_post response is a cross-site POST from the provider's page, on which browsers do
  // not send SameSite=Lax cookies; it needs SameSite=None, which browsers accept only with
  // Secure (https). Over http the provider must be same-site (e.g. both on localhost).
  const loginSameSite = responseMode === "form_post" && https ? "None" : "Lax";

  // Discovery once, at start; if the provider is not up yet, the next /login tries again.
  let discovered: Promise<client.Configuration> | undefined;
  const configuration = (): Promise<client.Configuration> =>
    (discovered ??= client
      .discovery(issuer, options.clientId, undefined, client.ClientSecretBasic(options.clientSecret), {
        execute: [
          // openid-client refuses plain http unless told otherwise: allow it for an http
          // issuer, which only a development provider (like `hello start`'s) has.
          ...(issuer.protocol === "http:" ? [client.allowInsecureRequests] : []),
          // Without this, openid-client trusts the ID Token because it came straight from the
          // token endpoint over TLS and does not check its signature; we want it checked.
          client.enableNonRepudiationChecks,
        ],
      })
      .catch((error: unknown) => {
        discovered = undefined;
        throw error;
      }));
  configuration().catch(() => {});

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", publicUrl);
    switch (`${req.method} ${url.pathname}`) {
      case "GET /":
        return home(req, res);
      case "GET /health":
        res.writeHead(200, { "content-type": "text/plain; charset=utf-8" }).end("ok");
        return;
      case "GET /login":
        return login(req, res);
      case "GET /callback":
      case "POST /callback":
        return callback(req, res, url);
      case "POST /logout": {
        const id = cookies(req).get(SESSION_COOKIE);
        if (id) sessions.delete(id);
        res.writeHead(303, { location: "/", "set-cookie": cookie(SESSION_COOKIE, "", 0, "Lax") }).end();
        return;
      }
      default:
        return send(res, 404, page("Not found", `<h1>Not found</h1>${BACK}`));
    }
  }

  function home(req: IncomingMessage, res: ServerResponse): void {
    const session = live(sessions, cookies(req).get(SESSION_COOKIE));
    const title = "hello-mesh demo app";
    send(res, 200, page(title, `<h1>${title}</h1>\n${session ? loggedIn(session) : LOGGED_OUT}`));
  }

  function loggedIn({ claims, alg }: Session): string {
    const who = [claims.name, claims.email, claims.sub].find((v) => typeof v === "string" && v !== "") as string;
    const list = orderedClaims(claims).map(([name, value]) => `<dt>${esc(name)}</dt><dd>${esc(showClaim(name, value))}</dd>`);
    return `<p>You are logged in as <strong>${esc(who)}</strong>.</p>
<h2>ID Token claims</h2>
<dl>${list.join("\n")}</dl>
<p>The ID Token was signed with <code>${esc(alg)}</code> (its header <code>alg</code>); its signature,
issuer, audience, expiry and nonce were checked before this session began.</p>
<form method="post" action="/logout"><button type="submit">Log out</button></form>
<p class="note">Logging out ends this app's session only; you stay signed in at the provider.</p>`;
  }


  async function login(_req: IncomingMessage, res: ServerResponse): Promise<void> {
    let config: client.Configuration;
    try {
      config = await configuration();
    } catch (error) {
      return send(
        res,
        502,
        page(
          "Provider unreachable",
          `<h1>The OpenID Provider cannot be reached</h1>
<p>Discovery at <code>${esc(options.issuer)}</code> failed: ${esc(describe(error))}.</p>
<p>Is it running? <a href="/login">Try again</a> or go <a href="/">back</a>.</p>`,
        ),
      );
    }
    const pending: PendingLogin = {
      codeVerifier: client.randomPKCECodeVerifier(),
      nonce: client.randomNonce(),
      state: client.randomState(),
      expiresAt: Date.now() + LOGIN_TTL_SECONDS * 1000,
    };
    const id = randomId();
    remember(logins, id, pending);
    const parameters: Record<string, string> = {
      redirect_uri: redirectUri,
      scope,
      code_challenge: await client.calculatePKCECodeChallenge(pending.codeVerifier),
      code_challenge_method: "S256",
      nonce: pending.nonce,
      state: pending.state,
    };
    if (responseMode === "form_post") parameters.response_mode = "form_post";
    res
      .writeHead(302, {
        location: client.buildAuthorizationUrl(config, parameters).href,
        "set-cookie": cookie(LOGIN_COOKIE, id, LOGIN_TTL_SECONDS, loginSameSite),
        "cache-control": "no-store",
      })
      .end();
  }

  async function callback(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    // Single use: the pending login is gone after this request, whatever its outcome.
    const loginId = cookies(req).get(LOGIN_COOKIE);
    const pending = live(logins, loginId);
    if (loginId) logins.delete(loginId);
    const clearLogin = cookie(LOGIN_COOKIE, "", 0, loginSameSite);
    if (!pending) {
      return send(
        res,
        400,
        page(
          "Sign-in not recognised",
          `<h1>Sign-in not recognised</h1>
<p>This app has no sign-in in progress for this browser: it was started elsewhere, already finished, or took longer than ten minutes.</p>${BACK}`,
        ),
        clearLogin,
      );
    }

    // What the provider sent, as openid-client wants it: the URL the browser was sent to
    // (the registered redirect_uri plus the response in the query), or for form_post a
    // Request with the form body.
    let response: URL | Request;
    if (req.method === "POST") {
      response = new Request(redirectUri, {
        method: "POST",
        headers: { "content-type": req.headers["content-type"] ?? "" },
        body: await readBody(req, 64 * 1024, "request body"),
      });
    } else {
      response = new URL(redirectUri);
      response.search = url.search;
    }

    let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
    try {
      tokens = await client.authorizationCodeGrant(await configuration(), response, {
        pkceCodeVerifier: pending.codeVerifier,
        expectedState: pending.state,
        expectedNonce: pending.nonce,
        idTokenExpected: true,
      });
    } catch (error) {
      if (error instanceof client.AuthorizationResponseError) {
        // The provider answered with an error (state and iss were checked first).
        return send(res, error.error === "access_denied" ? 403 : 400, providerErrorPage(error), clearLogin);
      }
      return send(
        res,
        400,
        page(
          "Sign-in failed",
          `<h1>Sign-in failed</h1>
<p>The response from the OpenID Provider was refused: ${esc(describe(error))}.</p>
<p>You are not logged in.</p>${BACK}`,
        ),
        clearLogin,
      );
    }

    const claims = tokens.claims();
    const idToken = tokens.id_token;
    if (!claims || !idToken) throw new Error("no ID Token"); // idTokenExpected makes this unreachable
    const previous = cookies(req).get(SESSION_COOKIE);
    if (previous) sessions.delete(previous);
    const sessionId = randomId(); // a new id at every login (no session fixation)
    remember(sessions, sessionId, {
      claims,
      alg: decodeProtectedHeader(idToken).alg ?? "unknown",
      expiresAt: Date.now() + SESSION_TTL_SECONDS * 1000,
    });
    res
      .writeHead(303, {
        location: "/",
        "set-cookie": [clearLogin, cookie(SESSION_COOKIE, sessionId, SESSION_TTL_SECONDS, "Lax")],
        "cache-control": "no-store",
      })
      .end();
  }

  function cookie(name: string, value: string, maxAge: number, sameSite: "Lax" | "None"): string {
    return `${name}=${value}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=${sameSite}${https ? "; Secure" : ""}`;
  }

  return { url: publicUrl.origin, redirectUri, close: () => closeServer(server) };
}

// --- pages ---------------------------------------------------------------------------

const BACK = `<p><a href="/">Back to the demo app</a></p>`;
const LOGGED_OUT = `<p>An ordinary OpenID Connect app. Log in, and it shows what the OpenID Provider told it about you.</p>
<p><a class="button" href="/login">Log in with hello-mesh</a></p>`;

function providerErrorPage(error: client.AuthorizationResponseError): string {
  const description = error.error_description ? `<dt>Description</dt><dd>${esc(error.error_description)}</dd>` : "";
  const details = `<dl><dt>Error</dt><dd><code>${esc(error.error)}</code></dd>${description}</dl>`;
  if (error.error === "access_denied") {
    return page(
      "Sign-in declined",
      `<h1>You declined to sign in</h1>
<p>The OpenID Provider reports that access was denied: you cancelled, or did not allow this app to see your details. You are not logged in.</p>
${details}${BACK}`,
    );
  }
  return page(
    "Sign-in failed",
    `<h1>Sign-in failed</h1><p>The OpenID Provider answered with an error. You are not logged in.</p>${details}${BACK}`,
  );
}

// The person's claims first, then the token's own.
const CLAIM_ORDER = ["sub", "name", "given_name", "family_name", "email", "email_verified", "picture"];
const TIMESTAMPS = new Set(["exp", "iat", "auth_time", "nbf"]);

function orderedClaims(claims: client.IDToken): Array<[string, unknown]> {
  const rank = (name: string) => (CLAIM_ORDER.includes(name) ? CLAIM_ORDER.indexOf(name) : CLAIM_ORDER.length);
  return Object.entries(claims).sort(([a], [b]) => rank(a) - rank(b));
}

function showClaim(name: string, value: unknown): string {
  if (TIMESTAMPS.has(name) && typeof value === "number") return `${value} (${new Date(value * 1000).toISOString()})`;
  return typeof value === "string" ? value : JSON.stringify(value);
}

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#111}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}
.button,button{display:inline-block;padding:.5rem 1rem;font:inherit;border-radius:.25rem;border:1px solid #0b57d0;background:#0b57d0;color:#fff;text-decoration:none;cursor:pointer}
.note{color:#555}`;
const { page, send } = pageKit(STYLE, { formAction: "'self'" });

// --- small helpers -------------------------------------------------------------------

function randomId(): string {
  return randomBytes(32).toString("base64url");
}

/** Adds an entry, dropping expired ones (both maps only grow by logins). */
function remember<T extends { expiresAt: number }>(map: Map<string, T>, id: string, value: T): void {
  const now = Date.now();
  for (const [key, entry] of map) if (entry.expiresAt <= now) map.delete(key);
  map.set(id, value);
}

function live<T extends { expiresAt: number }>(map: Map<string, T>, id: string | undefined): T | undefined {
  const entry = id === undefined ? undefined : map.get(id);
  return entry && entry.expiresAt > Date.now() ? entry : undefined;
}

function cookies(req: IncomingMessage): Map<string, string> {
  const jar = new Map<string, string>();
  for (const pair of (req.headers.cookie ?? "").split(";")) {
    const eq = pair.indexOf("=");
    if (eq > 0) jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
  }
  return jar;
}

/** An error's message, with its cause's (fetch's "fetch failed" hides the reason there). */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? error.cause : undefined;
  return cause ? `${error.message} (${cause.message})` : error.message;
}

function closeServer(server: ReturnType<typeof createServer>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.close((err) => (err ? reject(err) : resolve()));
    server.closeAllConnections(); // fetch keeps connections alive; close() alone would wait for them
  });
}
