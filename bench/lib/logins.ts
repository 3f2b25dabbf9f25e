// One complete login, as an app and a browser do it, against hello-mesh's front door
// or against node-oidc-provider: the authorization request (PKCE S256, state, nonce),
// the redirects, the consent form when there is one, the code at the token endpoint
// with the app's client_secret_basic, and the ID Token verified as the app verifies it
// (signature, iss, aud, nonce).

import { createHash, randomBytes } from "node:crypto";
import { type JSONWebKeySet, type JWTVerifyGetKey, createLocalJWKSet, jwtVerify } from "jose";
import { CookieJar, StepError, browse, redirected, request } from "./http.js";

export interface App {
  /** The OP's issuer (what the ID Token's iss says). */
  readonly issuer: string;
  /** Where the browser reaches the OP (its host keys the cookie jar, as a browser's does). */
  readonly base: string;
  readonly authorizationPath: string;
  readonly tokenPath: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly redirectUri: string;
  keys?: JWTVerifyGetKey;
}

/** The app fetches the OP's JWKS once, as apps cache it. */
export async function loadKeys(app: App, jwksPath: string): Promise<void> {
  const reply = await request(new URL(jwksPath, app.base));
  if (reply.status !== 200) throw new Error(`${app.base}${jwksPath} answered ${reply.status}`);
  app.keys = createLocalJWKSet(JSON.parse(reply.body) as JSONWebKeySet);
}

const random = (n: number) => randomBytes(n).toString("base64url");

function authorizationUrl(app: App, loginHint: string) {
  const verifier = random(32);
  const state = random(12);
  const nonce = random(12);
  const url = new URL(app.authorizationPath, app.base);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: app.clientId,
    redirect_uri: app.redirectUri,
    scope: "openid email profile",
    state,
    nonce,
    code_challenge: createHash("sha256").update(verifier).digest("base64url"),
    code_challenge_method: "S256",
    login_hint: loginHint,
  }).toString();
  return { url, verifier, state, nonce };
}

/** The redirect back to the app: its code, after checking state (and iss, RFC 9207). */
function codeFrom(app: App, to: URL, state: string): string {
  const expected = new URL(app.redirectUri);
  if (to.origin !== expected.origin || to.pathname !== expected.pathname) throw new StepError("return to app", "redirected elsewhere");
  const error = to.searchParams.get("error");
  if (error) throw new StepError("return to app", `error=${error}`);
  if (to.searchParams.get("state") !== state) throw new StepError("return to app", "state does not match");
  const iss = to.searchParams.get("iss");
  if (iss !== null && iss !== app.issuer) throw new StepError("return to app", "iss does not match");
  const code = to.searchParams.get("code");
  if (!code) throw new StepError("return to app", "no code");
  return code;
}

/** The back channel: the code for tokens, and the ID Token checked. */
async function redeem(app: App, code: string, verifier: string, nonce: string): Promise<void> {
  const reply = await request(new URL(app.tokenPath, app.base), {
    method: "POST",
    headers: {
      authorization: `Basic ${Buffer.from(`${app.clientId}:${app.clientSecret}`).toString("base64")}`,
      "content-type": "application/x-www-form-urlencoded",
    },
    body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: app.redirectUri, code_verifier: verifier }).toString(),
  });
  if (reply.status !== 200) throw new StepError("token endpoint", `status ${reply.status}`);
  const idToken = (JSON.parse(reply.body) as { id_token?: string }).id_token;
  if (!idToken) throw new StepError("token endpoint", "no id_token");
  try {
    const { payload } = await jwtVerify(idToken, app.keys!, { issuer: app.issuer, audience: app.clientId });
    if (payload.nonce !== nonce) throw new Error("nonce does not match");
  } catch (error) {
    throw new StepError("ID Token", (error as Error).message);
  }
}

/**
 * A login at hello-mesh's front door for the upstream subject `sub`: /authorize, the
 * upstream provider (node-oidc-provider, whose interaction logs `sub` in and consents at
 * once), /upstream/callback/bench, the consent page for a new user, then the code.
 * `expect` says which the user must be.
 */
export async function frontDoorLogin(app: App, sub: string, expect: "new" | "returning"): Promise<void> {
  const jar = new CookieJar();
  const { url, verifier, state, nonce } = authorizationUrl(app, sub);
  const toProvider = redirected(await browse(jar, url), url, "authorize");
  const frontDoor = new URL(app.base).origin;
  const toCallback = await followRedirects(jar, toProvider, (to) => to.origin === frontDoor, "upstream provider");
  const page = await browse(jar, toCallback);
  let toApp: URL;
  if (page.status === 200 && page.body.includes('action="/consent"')) {
    if (expect !== "new") throw new StepError("upstream callback", "a returning user was shown the consent page");
    const flow = /name="flow" value="([^"]*)"/.exec(page.body)?.[1];
    if (!flow) throw new StepError("consent page", "no flow field");
    const form = new URLSearchParams({ flow, decision: "allow" });
    for (const m of page.body.matchAll(/name="claims" value="([^"]*)"/g)) form.append("claims", m[1]!);
    const consent = new URL("/consent", toCallback);
    toApp = redirected(
      await browse(jar, consent, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: form.toString() }),
      consent,
      "consent",
    );
  } else {
    if (expect !== "returning" && page.status < 400) throw new StepError("upstream callback", "a new user was not asked to consent");
    toApp = redirected(page, toCallback, "upstream callback");
  }
  await redeem(app, codeFrom(app, toApp, state), verifier, nonce);
}

/**
 * A complete login at node-oidc-provider with a fresh browser: /auth, the interaction
 * (login and consent at once), the resumed /auth, then the code.
 */
export async function oidcProviderLogin(app: App, sub: string): Promise<void> {
  const jar = new CookieJar();
  const { url, verifier, state, nonce } = authorizationUrl(app, sub);
  const toApp = await followRedirects(jar, url, (to) => to.href.startsWith(app.redirectUri), "auth");
  return redeem(app, codeFrom(app, toApp, state), verifier, nonce);
}

/** Follows node-oidc-provider's redirects (/auth, the interaction, /auth resumed) as a browser does, to where `done` says. */
async function followRedirects(jar: CookieJar, from: URL, done: (to: URL) => boolean, step: string): Promise<URL> {
  let at = from;
  for (let hop = 0; hop < 5; hop++) {
    const next = redirected(await browse(jar, at), at, step);
    if (done(next)) return next;
    at = next;
  }
  throw new StepError(step, "no redirect back");
}
