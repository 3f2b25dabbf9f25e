// `hello wallet login`: the Wallet Client signs in to hello-mesh as a native app
// (docs/wallet-server.md, "The Wallet Client signs in").
//
//   RFC 8252  the browser comes back to a loopback server this process runs: on 127.0.0.1
//             (or ::1), never "localhost" (§8.3), on a port the system picks (§7.3), for
//             exactly one answer; the server is closed whatever happens
//   RFC 7636  PKCE S256
//   OIDC      nonce; the ID Token is checked by openid-client (signature, iss, aud, exp,
//             nonce); its sub is the user
//   RFC 9207  the iss authorization response parameter, when present, must be the issuer
//   RFC 9449  dpop_jkt (§10) binds the code to the instance's DPoP key; the code is
//             redeemed with a proof by that key, and the answer must be token_type DPoP
//
// Then the server's wallet keys (GET <issuer>/wallet/jwks) are pinned: at the first
// sign-in to a server they are kept with the sign-in, and a later sign-in that finds
// others fails until the user runs `hello wallet logout`.
//
// `ca` works as in api-client.ts: openid-client's customFetch is given a fetch on
// node:https that trusts that CA besides the usual roots; discovery, the token request,
// the ID Token's JWKS and /wallet/jwks all go through it.

import { webcrypto } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { calculateJwkThumbprint, type JSONWebKeySet, type JWK } from "jose";
import * as oidc from "openid-client";
import { z } from "zod";
import { type DpopKey, jwkThumbprint } from "../protocol/dpop.js";
import { httpFetch, type HttpFetch } from "./api-client.js";
import { jwksSchema, type KeyStore, type StoredLogin } from "./key-store.js";

export interface LoginOptions {
  /** The hello-mesh issuer URL (OIDC discovery at /.well-known/openid-configuration). */
  server: string;
  /** Default "hello-wallet". */
  clientId?: string;
  store: KeyStore;
  /** Shows the authorization URL to the user: the CLI prints it and, when asked, opens a browser; tests drive a browser to it. */
  openUrl: (url: string) => Promise<void> | void;
  /** Default 127.0.0.1; never "localhost" (RFC 8252 §8.3). */
  loopbackHost?: "127.0.0.1" | "::1";
  /** How long to wait for the browser to come back; default 5 min. */
  timeoutMs?: number;
  /** Tests with an http issuer only. */
  allowInsecureHttp?: boolean;
  /** A CA (PEM) to trust for the server besides the usual roots: development certificates. */
  ca?: string;
}

/** A sign-in that failed. `error` is the OAuth error code when the server answered with one (access_denied, …). */
export class WalletLoginError extends Error {
  override name = "WalletLoginError";
  constructor(
    message: string,
    readonly error?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const DEFAULT_CLIENT_ID = "hello-wallet";
const DEFAULT_TIMEOUT_MS = 5 * 60 * 1000;
/** The longest a token or JWKS request may take. */
const REQUEST_TIMEOUT_SECONDS = 30;
/** Used only if the server gives neither expires_in nor a JWT exp: Token's wallet access tokens live 1 h. */
const FALLBACK_LIFETIME_SECONDS = 60 * 60;

export async function login(options: LoginOptions): Promise<StoredLogin> {
  const clientId = options.clientId ?? DEFAULT_CLIENT_ID;
  const host = options.loopbackHost ?? "127.0.0.1";
  if (host !== "127.0.0.1" && host !== "::1") throw new WalletLoginError(`the loopback host must be 127.0.0.1 or ::1, not ${String(host)} (RFC 8252 §8.3)`);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const serverUrl = parseServer(options.server, options.allowInsecureHttp === true);
  const fetcher = httpFetch(options.ca !== undefined ? { ca: options.ca } : {});

  // Discovery: openid-client checks that the document's issuer is the server asked for.
  let config: oidc.Configuration;
  try {
    config = await oidc.discovery(serverUrl, clientId, undefined, oidc.None(), {
      [oidc.customFetch]: fetcher as oidc.CustomFetch,
      execute: options.allowInsecureHttp ? [oidc.allowInsecureRequests] : [],
      timeout: REQUEST_TIMEOUT_SECONDS,
    });
  } catch (error) {
    throw new WalletLoginError(`cannot read ${serverUrl.origin}'s OpenID configuration: ${messageOf(error)}`, undefined, { cause: error });
  }
  const issuer = config.serverMetadata().issuer;

  // The instance's DPoP key, as openid-client wants it, and its thumbprint for dpop_jkt.
  const key = await options.store.dpopKey();
  const dpop = oidc.getDPoPHandle(config, await cryptoKeyPair(key), {
    // oauth4webapi names an Ed25519 key's alg "Ed25519"; DPoP servers (and ours) take "EdDSA".
    [oidc.modifyAssertion]: (header) => {
      if (header.alg === "Ed25519") header.alg = "EdDSA";
    },
  });
  const jkt = await jwkThumbprint(key.publicJwk);
  if ((await dpop.calculateThumbprint()) !== jkt) throw new WalletLoginError("the DPoP key's thumbprint is not the one openid-client computes");

  const codeVerifier = oidc.randomPKCECodeVerifier();
  const nonce = oidc.randomNonce();
  const state = oidc.randomState();
  const loopback = await startLoopback(host);
  try {
    const redirectUri = `http://${host === "::1" ? "[::1]" : host}:${loopback.port}/callback`;
    const authorizationUrl = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      response_type: "code",
      scope: "openid",
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: "S256",
      nonce,
      state,
      dpop_jkt: jkt,
    });

    // The browser comes back while openUrl may still be running (a test's browser, say, is
    // only done once the callback page is answered), so wait for the callback, not for it.
    const opened = Promise.resolve().then(() => options.openUrl(authorizationUrl.href));
    const callback = await raceWithTimeout(
      [loopback.callback, opened.then(() => new Promise<never>(() => {}))],
      timeoutMs,
      () => new WalletLoginError(`no sign-in came back from the browser within ${timeoutMs >= 1000 ? `${Math.round(timeoutMs / 1000)} s` : `${timeoutMs} ms`}; run hello wallet login again`),
    );
    try {
      const stored = await finish({ options, config, issuer, clientId, callback, state, nonce, codeVerifier, dpop, fetcher });
      callback.answer(200, "Signed in", "<h1>Signed in</h1><p>The wallet is signed in. You can close this window and return to the terminal.</p>");
      return stored;
    } catch (error) {
      callback.answer(400, "Sign-in failed", `<h1>Sign-in failed</h1><p>${escapeHtml(messageOf(error))}</p><p>You can close this window.</p>`);
      throw error;
    }
  } finally {
    await loopback.close();
  }
}

interface FinishInput {
  options: LoginOptions;
  config: oidc.Configuration;
  issuer: string;
  clientId: string;
  callback: Callback;
  state: string;
  nonce: string;
  codeVerifier: string;
  dpop: oidc.DPoPHandle;
  fetcher: HttpFetch;
}

/** From the callback to the stored sign-in. */
async function finish(input: FinishInput): Promise<StoredLogin> {
  const { config, issuer, callback } = input;
  const params = callback.url.searchParams;
  // state first: an answer that is not to this sign-in is refused whatever else it says
  // (it is a cross-site request forgery or a stale tab), and the sign-in fails.
  if (params.get("state") !== input.state) {
    throw new WalletLoginError("the browser came back with an answer to another sign-in (its state does not match), which could be an attack; nothing was signed in");
  }
  // RFC 9207: an iss that is not the issuer is a mix-up attack; openid-client also
  // requires one when the server says it sends it.
  const iss = params.get("iss");
  if (iss !== null && iss !== issuer) throw new WalletLoginError(`the answer came from ${iss}, not from ${issuer} (RFC 9207); nothing was signed in`);
  const error = params.get("error");
  if (error !== null) {
    const description = params.get("error_description");
    throw new WalletLoginError(`the server refused the sign-in: ${error}${description ? ` (${description})` : ""}`, error);
  }
  if (!params.get("code")) throw new WalletLoginError("the browser came back without an authorization code");

  let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
  try {
    tokens = await oidc.authorizationCodeGrant(
      config,
      callback.url,
      { pkceCodeVerifier: input.codeVerifier, expectedNonce: input.nonce, expectedState: input.state, idTokenExpected: true },
      undefined,
      { DPoP: input.dpop },
    );
  } catch (error) {
    throw new WalletLoginError(`the server did not redeem the sign-in: ${messageOf(error)}`, oauthErrorOf(error), { cause: error });
  }
  // A Bearer token would work for whoever copies it: the wallet takes DPoP-bound ones only.
  if (tokens.token_type.toLowerCase() !== "dpop") {
    throw new WalletLoginError(`the server issued a ${tokens.token_type} access token, not a DPoP-bound one; the wallet refuses it`);
  }
  const claims = tokens.claims();
  if (claims === undefined) throw new WalletLoginError("the server sent no ID Token");

  const walletJwks = await fetchWalletJwks(issuer, input.fetcher);
  const previous = await input.options.store.login();
  let pinned = walletJwks;
  if (previous !== undefined && previous.server === issuer && previous.walletJwks !== undefined) {
    if (!(await sameKeySet(previous.walletJwks, walletJwks))) {
      throw new WalletLoginError(
        `${issuer}'s wallet keys changed since this wallet first signed in to it: the keys it serves at /wallet/jwks are not the ones pinned then. ` +
          "The pinned keys are kept and nothing was signed in. If the server's operator confirms a key change, run hello wallet logout, then hello wallet login, to accept the new keys.",
      );
    }
    pinned = previous.walletJwks;
  }

  const stored: StoredLogin = {
    server: issuer,
    clientId: input.clientId,
    accessToken: tokens.access_token,
    expiresAt: expiryOf(tokens),
    sub: claims.sub,
    walletJwks: pinned,
  };
  await input.options.store.saveLogin(stored);
  return stored;
}

// --- the loopback server ------------------------------------------------------------

interface Callback {
  /** The callback URL as the browser requested it (on the redirect URI). */
  url: URL;
  /** Answers the browser's request with a small page (once). */
  answer(status: number, title: string, body: string): void;
}

interface Loopback {
  port: number;
  /** The first request to /callback; any later one is told the sign-in is over. */
  callback: Promise<Callback>;
  close(): Promise<void>;
}

async function startLoopback(host: "127.0.0.1" | "::1"): Promise<Loopback> {
  let deliver!: (callback: Callback) => void;
  const callback = new Promise<Callback>((resolve) => (deliver = resolve));
  let taken = false;
  let port = 0;
  const hostHeader = () => (host === "::1" ? `[::1]:${port}` : `${host}:${port}`);

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", `http://${hostHeader()}`);
    // A page on another name (a DNS-rebinding site) or another path is no callback.
    if (req.headers.host !== hostHeader()) return sendPage(res, 400, "Wrong address", "<h1>Wrong address</h1>");
    if (url.pathname !== "/callback") return sendPage(res, 404, "Not found", "<h1>Not found</h1>");
    if (req.method !== "GET") return sendPage(res, 405, "Not allowed", "<h1>Not allowed</h1>");
    if (taken) return sendPage(res, 400, "Sign-in over", "<h1>This sign-in is over</h1><p>Return to the terminal.</p>");
    taken = true;
    let answered = false;
    deliver({
      url,
      answer(status, title, body) {
        if (answered) return;
        answered = true;
        sendPage(res, status, title, body);
      },
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    port,
    callback,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // a browser's kept-alive connection would hold it open
      })),
  };
}

function sendPage(res: ServerResponse, status: number, title: string, body: string): void {
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${escapeHtml(title)} · hello wallet</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}</style></head><body>${body}</body></html>`;
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    connection: "close",
  });
  res.end(html);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// --- helpers ------------------------------------------------------------------------

function parseServer(server: string, allowInsecureHttp: boolean): URL {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new WalletLoginError(`the server ${server} is not a URL`);
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && allowInsecureHttp)) {
    throw new WalletLoginError(`the server must be an https URL, not ${url.protocol}`);
  }
  if (url.search !== "" || url.hash !== "" || url.username !== "" || url.password !== "") {
    throw new WalletLoginError("the server URL is an issuer: no query, fragment or credentials");
  }
  return url;
}

/** The key pair as WebCrypto keys: the private one unextractable, the public one exportable (openid-client puts it in each proof). */
async function cryptoKeyPair(key: DpopKey): Promise<oidc.CryptoKeyPair> {
  const algorithm = key.alg === "ES256" ? { name: "ECDSA", namedCurve: "P-256" } : { name: "Ed25519" };
  const { d: _d, ...publicJwk } = key.privateJwk as JWK & { d?: string };
  const [privateKey, publicKey] = await Promise.all([
    webcrypto.subtle.importKey("jwk", key.privateJwk as webcrypto.JsonWebKey, algorithm, false, ["sign"]),
    webcrypto.subtle.importKey("jwk", publicJwk as webcrypto.JsonWebKey, algorithm, true, ["verify"]),
  ]);
  return { privateKey, publicKey } as oidc.CryptoKeyPair;
}

/** The server's wallet keys, served at <issuer>/wallet/jwks. */
async function fetchWalletJwks(issuer: string, fetcher: HttpFetch): Promise<JSONWebKeySet> {
  const url = new URL(`${new URL(issuer).pathname.replace(/\/$/, "")}/wallet/jwks`, issuer);
  let response: Response;
  try {
    response = await fetcher(url, { headers: { accept: "application/json" }, redirect: "manual", signal: AbortSignal.timeout(REQUEST_TIMEOUT_SECONDS * 1000) });
  } catch (error) {
    throw new WalletLoginError(`cannot fetch the server's wallet keys from ${url.href}: ${messageOf(error)}`, undefined, { cause: error });
  }
  if (response.status !== 200) {
    await response.body?.cancel();
    throw new WalletLoginError(`the server's wallet keys at ${url.href} answered ${response.status}, not a key set`);
  }
  let json: unknown;
  try {
    json = await response.json();
  } catch {
    throw new WalletLoginError(`the server's wallet keys at ${url.href} are not JSON`);
  }
  const parsed = jwksSchema.safeParse(json);
  if (!parsed.success) throw new WalletLoginError(`the server's wallet keys at ${url.href} are not a public JWK set: ${z.prettifyError(parsed.error)}`);
  return parsed.data as JSONWebKeySet;
}

/**
 * Whether two key sets hold the same keys: each key by its RFC 7638 thumbprint together
 * with the members that say how it is used (kid, alg, use), in any order.
 */
async function sameKeySet(a: JSONWebKeySet, b: JSONWebKeySet): Promise<boolean> {
  const canonical = async (set: JSONWebKeySet) =>
    JSON.stringify(
      (
        await Promise.all(
          set.keys.map(async (jwk) => {
            let thumbprint: string;
            try {
              thumbprint = await calculateJwkThumbprint(jwk);
            } catch {
              thumbprint = JSON.stringify(jwk); // a key jose cannot hash is compared whole
            }
            return JSON.stringify([thumbprint, jwk.kid ?? null, jwk.alg ?? null, jwk.use ?? null]);
          }),
        )
      ).sort(),
    );
  return (await canonical(a)) === (await canonical(b));
}

/** When the access token expires: expires_in, else the token's own exp if it is a JWT, else Token's 1 h. */
function expiryOf(tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers): number {
  const now = Math.floor(Date.now() / 1000);
  const expiresIn = tokens.expiresIn();
  if (expiresIn !== undefined) return now + expiresIn;
  const parts = tokens.access_token.split(".");
  if (parts.length === 3) {
    try {
      const exp: unknown = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8")).exp;
      if (typeof exp === "number" && Number.isSafeInteger(exp)) return exp;
    } catch {
      // not a JWT: fall through
    }
  }
  return now + FALLBACK_LIFETIME_SECONDS;
}

/** Resolves with the first of `promises`, or rejects with `onTimeout()` after `ms`. */
async function raceWithTimeout<T>(promises: Promise<T>[], ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  try {
    return await Promise.race([...promises, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function messageOf(error: unknown): string {
  if (error instanceof oidc.ResponseBodyError) return `${error.error}${error.error_description ? ` (${error.error_description})` : ""}`;
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    return cause instanceof Error && cause.message !== error.message ? `${error.message}: ${cause.message}` : error.message;
  }
  return String(error);
}

function oauthErrorOf(error: unknown): string | undefined {
  return error instanceof oidc.ResponseBodyError ? error.error : undefined;
}
