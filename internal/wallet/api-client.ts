// The Wallet Client's calls to hello-mesh's wallet API (docs/wallet-server.md, "Wallet
// API calls"): each carries `Authorization: DPoP <access token>` and a fresh DPoP proof
// (RFC 9449 §7) with htm, htu and ath, signed with the instance's DPoP key, the key the
// access token is bound to (cnf.jkt). Token verifies both before it grants any record
// access.
//
// Also here: the fetch the wallet uses to reach its server, for login.ts as well. With
// `ca` it trusts that CA in addition to the usual roots (what NODE_EXTRA_CA_CERTS does
// for a whole process, for this server only). Node's own fetch takes no CA and the
// undici package that could is not a dependency, so that fetch is a small one on
// node:https, enough for JSON and form bodies.

import { request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { rootCertificates } from "node:tls";
import { z } from "zod";
import { createDpopProof, type DpopKey } from "../protocol/dpop.js";
import type { KeyStore, StoredLogin } from "./key-store.js";

/** How long before its expiry a stored access token is no longer used (clocks differ). */
const EXPIRY_MARGIN_SECONDS = 30;
/** One call's time limit. */
const CALL_TIMEOUT_MS = 30_000;
/** The largest answer read. */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

export class WalletApiError extends Error {
  override name = "WalletApiError";
  constructor(
    message: string,
    readonly status: number,
    /** The RFC 9457 problem the server answered with, if it answered with one. */
    readonly problem?: unknown,
  ) {
    super(message);
  }
}

/** The sign-in to use, or an error telling the user to sign in (again). */
export function usableLogin(login: StoredLogin | undefined, now = Math.floor(Date.now() / 1000)): StoredLogin {
  if (login === undefined) throw new Error("the wallet is not signed in: run hello wallet login");
  if (login.expiresAt - EXPIRY_MARGIN_SECONDS <= now) {
    throw new Error(`the wallet's sign-in to ${login.server} expired at ${new Date(login.expiresAt * 1000).toISOString()}: run hello wallet login to sign in again`);
  }
  return login;
}

const problemSchema = z.looseObject({
  type: z.string().optional(),
  title: z.string().optional(),
  status: z.number().optional(),
  detail: z.string().optional(),
  errorCode: z.string().optional(),
});

export class WalletApi {
  /** The latest DPoP-Nonce the server gave (RFC 9449 §8.2), sent with every later proof. */
  #nonce: string | undefined;

  readonly #login: StoredLogin;
  readonly #key: DpopKey;
  readonly #fetch: HttpFetch;

  private constructor(login: StoredLogin, key: DpopKey, fetcher: HttpFetch) {
    this.#login = login;
    this.#key = key;
    this.#fetch = fetcher;
  }

  /** The server the calls go to (the stored sign-in's issuer). */
  get server(): string {
    return this.#login.server;
  }

  /**
   * Needs a saved, unexpired sign-in. `ca`: a CA (PEM) to trust for the server, besides
   * the usual roots. `fetch`: the calls go through it instead (tests cut the network there).
   */
  static async fromStore(store: KeyStore, options: { ca?: string; fetch?: HttpFetch } = {}): Promise<WalletApi> {
    const login = usableLogin(await store.login());
    return new WalletApi(login, await store.dpopKey(), options.fetch ?? httpFetch(options));
  }

  /**
   * One call to `path` (absolute on the server, e.g. "/wallet/sessions"): JSON in, JSON out,
   * parsed by `schema`. A 401 asking for a DPoP nonce is retried once, with that nonce.
   */
  async call<T>(method: "GET" | "POST", path: string, schema: z.ZodType<T>, body?: unknown): Promise<T> {
    const login = usableLogin(this.#login);
    const url = this.#urlOf(path);
    const label = `${method} ${url.pathname}`;
    let response = await this.#send(method, url, body);
    if (response.status === 401 && askedForNonce(response)) {
      await response.body?.cancel();
      response = await this.#send(method, url, body);
    }
    const text = await response.text();
    if (response.status < 200 || response.status > 299) throw errorOf(response, text, label, login);
    let json: unknown = undefined;
    if (text.length > 0) {
      try {
        json = JSON.parse(text);
      } catch {
        throw new WalletApiError(`the wallet API's answer to ${label} is not JSON`, response.status);
      }
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new WalletApiError(`the wallet API's answer to ${label} is not what the wallet expects: ${z.prettifyError(parsed.error)}`, response.status);
    }
    return parsed.data;
  }

  /** The URL of `path` on the server: always on the server's origin, so the token goes nowhere else. */
  #urlOf(path: string): URL {
    if (!path.startsWith("/") || path.startsWith("//") || path.includes("\\")) throw new Error(`the wallet API path must start with one "/": ${path}`);
    const base = new URL(this.#login.server);
    const url = new URL(`${base.pathname.replace(/\/$/, "")}${path}`, base);
    if (url.origin !== base.origin) throw new Error(`the wallet API path leaves the server: ${path}`);
    return url;
  }

  async #send(method: "GET" | "POST", url: URL, body: unknown): Promise<Response> {
    const proof = await createDpopProof(this.#key, {
      method,
      url: url.href, // createDpopProof drops query and fragment for htu
      accessToken: this.#login.accessToken,
      ...(this.#nonce !== undefined ? { nonce: this.#nonce } : {}),
    });
    const headers: Record<string, string> = {
      accept: "application/json, application/problem+json",
      authorization: `DPoP ${this.#login.accessToken}`,
      dpop: proof,
    };
    let payload: string | undefined;
    if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["content-type"] = "application/json";
    }
    const response = await this.#fetch(url, { method, headers, body: payload, redirect: "manual", signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
    const nonce = response.headers.get("dpop-nonce");
    if (nonce) this.#nonce = nonce;
    return response;
  }
}

/** A 401 whose WWW-Authenticate DPoP challenge says error="use_dpop_nonce" and that brings a DPoP-Nonce (RFC 9449 §9). */
function askedForNonce(response: Response): boolean {
  const challenge = response.headers.get("www-authenticate") ?? "";
  return /(^|,)\s*DPoP\b/i.test(challenge) && /\berror\s*=\s*"?use_dpop_nonce"?/i.test(challenge) && !!response.headers.get("dpop-nonce");
}

function errorOf(response: Response, text: string, label: string, login: StoredLogin): WalletApiError {
  const type = (response.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (type === "application/problem+json") {
    let problem: unknown;
    try {
      problem = JSON.parse(text);
    } catch {
      problem = undefined;
    }
    const parsed = problemSchema.safeParse(problem);
    if (parsed.success) {
      const what = parsed.data.detail ?? parsed.data.title ?? parsed.data.errorCode ?? `HTTP ${response.status}`;
      return new WalletApiError(`${label}: ${what}`, response.status, problem);
    }
  }
  if (response.status === 401) {
    const challenge = response.headers.get("www-authenticate") ?? "";
    const error = /\berror\s*=\s*"([^"]*)"/i.exec(challenge)?.[1];
    if (error === "invalid_token") {
      return new WalletApiError(`${label}: ${login.server} no longer accepts the wallet's sign-in: run hello wallet login to sign in again`, 401);
    }
    return new WalletApiError(`${label}: the wallet API refused the call (401${error ? ` ${error}` : ""})`, 401);
  }
  return new WalletApiError(`${label}: the wallet API answered ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`, response.status);
}

// --- the fetch ----------------------------------------------------------------------

/** The request options the wallet's fetch takes: a subset of fetch's, and what openid-client passes to a customFetch. */
export interface HttpRequestInit {
  method?: string;
  headers?: Record<string, string> | Headers;
  body?: string | URLSearchParams | Uint8Array | ArrayBuffer | ReadableStream | null;
  signal?: AbortSignal | null;
  /** Redirects are never followed by the CA fetch; "manual" is what the wallet always asks for. */
  redirect?: "manual";
}

export type HttpFetch = (url: string | URL, init?: HttpRequestInit) => Promise<Response>;

/**
 * The fetch for the wallet's server. Without `ca`: Node's fetch. With `ca` (PEM, one or
 * more certificates): a fetch on node:http/node:https that trusts those CAs in addition
 * to Node's bundled roots, for this fetch only. It sends string, form, and byte bodies,
 * never follows redirects, and reads at most 4 MiB of an answer.
 */
export function httpFetch(options: { ca?: string } = {}): HttpFetch {
  if (options.ca === undefined) return (url, init) => fetch(url, { redirect: "manual", ...init } as RequestInit);
  if (!/-----BEGIN CERTIFICATE-----/.test(options.ca)) throw new Error("the CA to trust is not a PEM certificate");
  // The given CA with, not instead of, the usual roots: `ca` alone would replace them.
  const agent = new HttpsAgent({ ca: [...rootCertificates, options.ca], keepAlive: false });
  return (url, init = {}) => requestWithNode(new URL(url), init, agent);
}

async function requestWithNode(url: URL, init: HttpRequestInit, agent: HttpsAgent): Promise<Response> {
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new TypeError(`cannot fetch ${url.protocol} URLs`);
  const headers = new Headers(init.headers);
  let body: Buffer | undefined;
  const given = init.body;
  if (given === undefined || given === null) body = undefined;
  else if (typeof given === "string") body = Buffer.from(given, "utf8");
  else if (given instanceof URLSearchParams) {
    body = Buffer.from(given.toString(), "utf8");
    if (!headers.has("content-type")) headers.set("content-type", "application/x-www-form-urlencoded;charset=UTF-8");
  } else if (given instanceof ArrayBuffer) body = Buffer.from(given);
  else if (given instanceof Uint8Array) body = Buffer.from(given.buffer, given.byteOffset, given.byteLength);
  else throw new TypeError("this fetch sends string, form and byte bodies only");
  if (body !== undefined) headers.set("content-length", String(body.length));
  const signal = init.signal ?? undefined;
  signal?.throwIfAborted();

  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise<Response>((resolvePromise, reject) => {
    const req = send(
      url,
      {
        method: init.method ?? "GET",
        headers: Object.fromEntries(headers),
        ...(url.protocol === "https:" ? { agent } : {}),
        ...(signal ? { signal } : {}),
      },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) {
            res.destroy(new Error(`the answer from ${url.origin} is larger than ${MAX_RESPONSE_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on("error", reject);
        res.on("end", () => {
          const status = res.statusCode ?? 0;
          const responseHeaders = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (value === undefined) continue;
            for (const one of Array.isArray(value) ? value : [value]) responseHeaders.append(name, one);
          }
          const nullBody = status === 101 || status === 204 || status === 205 || status === 304;
          try {
            resolvePromise(new Response(nullBody ? null : Buffer.concat(chunks), { status, statusText: res.statusMessage ?? "", headers: responseHeaders }));
          } catch (error) {
            reject(error);
          }
        });
      },
    );
    req.on("error", (error) => reject(signal?.aborted ? (signal.reason ?? error) : error));
    req.end(body);
  });
}
