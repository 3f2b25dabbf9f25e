// The client side of the S2S wire (wire-server.ts is the other): JSON over HTTPS with
// our client certificate, trusting exactly one CA for the server.
//
// Every call states Api-Version 1.0.0 and carries an x-request-id. What is worth
// another try (429, a 5xx, a connection that failed or timed out) is tried again up to
// three times with the same x-request-id, so the server's idempotency makes the retry
// safe, after the draft's backoff: at least Retry-After, and at least a random delay in
// the window of the attempt (0-1 s, 1.1-5 s, 5.1-30 s). A problem the peer answers
// with is thrown as a ProblemError; anything else that is wrong is a WireError, whose
// message never repeats what the peer sent.

import { randomUUID } from "node:crypto";
import https from "node:https";
import type { z } from "zod";
import { ProblemError, issuePath, problemSchema } from "./problem.js";
import { API_VERSION } from "./wire-server.js";

export interface WireClientOptions {
  /** https://127.0.0.1:port (a path prefix allowed). */
  baseUrl: string;
  /** The ONLY CA trusted for the server (pinned). */
  caPem: string;
  /** Our client certificate and its key. */
  certPem: string;
  keyPem: string;
  /** For SNI and the hostname check when baseUrl has an IP. */
  servername?: string;
  /** Default 3. */
  maxRetries?: number;
  /** Injectable; tests must not really sleep. */
  sleep?: (ms: number) => Promise<void>;
  /** Injectable, [0,1). */
  random?: () => number;
  /** Per attempt, default 10 000. */
  timeoutMs?: number;
}

/** Non-problem failures: transport, malformed answer, missing Api-Version. */
export class WireError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "WireError";
  }
}

/** The draft's backoff windows, in ms, for retries 1, 2 and 3. */
const WINDOWS: readonly (readonly [number, number])[] = [
  [0, 1_000],
  [1_100, 5_000],
  [5_100, 30_000],
];

/** A Retry-After beyond this is not waited for: the call gives up with the 429. */
export const MAX_RETRY_AFTER_SECONDS = 300;
/** An answer larger than this is not read. */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

/** How long to wait before retry `retry` (1..3): at least Retry-After, at least a random delay in the retry's window. */
export function backoffDelayMs(retry: number, retryAfterSeconds: number | undefined, random: () => number): number {
  if (!Number.isInteger(retry) || retry < 1) throw new RangeError(`retries count from 1, not ${retry}`);
  const [low, high] = WINDOWS[Math.min(retry, WINDOWS.length) - 1]!;
  const r = Math.min(Math.max(random(), 0), 1);
  const jitter = Math.floor(low + r * (high - low));
  const floor = retryAfterSeconds !== undefined && Number.isFinite(retryAfterSeconds) && retryAfterSeconds > 0 ? Math.ceil(retryAfterSeconds * 1000) : 0;
  return Math.max(jitter, floor);
}

/** Retry-After as seconds from `now`: delta-seconds or an HTTP-date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

/** Errors of the connection (not of TLS verification) that a retry may cure. */
const TRANSIENT = new Set(["ECONNRESET", "ECONNREFUSED", "ECONNABORTED", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN"]);
/** Statuses worth another try with the same x-request-id: the server stored no answer. */
const RETRYABLE_STATUS = new Set([429, 500, 502, 503, 504]);

interface Answer {
  status: number;
  headers: Record<string, string | undefined>;
  body: Buffer;
}

type Attempt = { answer: Answer } | { error: WireError; transient: boolean };

function flatten(headers: Record<string, string | string[] | undefined>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(headers)) out[name] = Array.isArray(value) ? value.join(", ") : value;
  return out;
}

function mediaType(header: string | undefined): string | undefined {
  return header?.split(";", 1)[0]!.trim().toLowerCase();
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

export class WireClient {
  readonly #base: URL;
  /** The base URL's path, without a trailing slash: what every call's path goes under. */
  readonly #prefix: string;
  readonly #agent: https.Agent;
  readonly #maxRetries: number;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #random: () => number;
  readonly #timeoutMs: number;

  constructor(options: WireClientOptions) {
    const base = new URL(options.baseUrl);
    if (base.protocol !== "https:") throw new Error("an S2S peer is reached over https");
    this.#prefix = base.pathname.replace(/\/+$/, "");
    this.#base = base;
    this.#agent = new https.Agent({
      keepAlive: true,
      ca: options.caPem,
      cert: options.certPem,
      key: options.keyPem,
      minVersion: "TLSv1.2",
      rejectUnauthorized: true,
      ...(options.servername !== undefined ? { servername: options.servername } : {}),
    });
    this.#maxRetries = options.maxRetries ?? 3;
    this.#sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.#random = options.random ?? Math.random;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  async post<T>(
    path: string,
    body: unknown,
    schema: z.ZodType<T>,
    options: { requestId?: string } = {},
  ): Promise<{ status: number; body: T; requestId: string; headers: Record<string, string | undefined> }> {
    const requestId = options.requestId ?? randomUUID();
    const payload = JSON.stringify(body);
    if (payload === undefined) throw new TypeError("an S2S request body must be JSON");
    const answer = await this.#call("POST", path, requestId, Buffer.from(payload, "utf8"));
    return { status: answer.status, body: this.#parse(path, answer, schema), requestId, headers: answer.headers };
  }

  async get<T>(path: string, schema: z.ZodType<T>): Promise<{ status: number; body: T }> {
    const answer = await this.#call("GET", path, randomUUID(), undefined);
    return { status: answer.status, body: this.#parse(path, answer, schema) };
  }

  /** Destroys the keep-alive agent and its connections. */
  close(): void {
    this.#agent.destroy();
  }

  /** Tries until an answer that is a success, or one (or a failure) not worth another try. */
  async #call(method: "GET" | "POST", path: string, requestId: string, body: Buffer | undefined): Promise<Answer> {
    for (let retry = 0; ; retry++) {
      const attempt = await this.#attempt(method, path, requestId, body);
      let retryAfter: number | undefined;
      let failure: Error;
      if ("error" in attempt) {
        failure = attempt.error;
        if (!attempt.transient) throw failure;
      } else {
        const { answer } = attempt;
        if (answer.status >= 200 && answer.status < 300) return answer;
        failure = this.#failure(path, answer);
        if (!RETRYABLE_STATUS.has(answer.status)) throw failure;
        retryAfter = parseRetryAfter(answer.headers["retry-after"]);
        if (retryAfter !== undefined && retryAfter > MAX_RETRY_AFTER_SECONDS) throw failure;
      }
      if (retry >= this.#maxRetries) throw failure;
      await this.#sleep(backoffDelayMs(retry + 1, retryAfter, this.#random));
    }
  }

  #attempt(method: string, path: string, requestId: string, body: Buffer | undefined): Promise<Attempt> {
    const url = new URL(this.#base.href);
    url.pathname = `${this.#prefix}${path.startsWith("/") ? path : `/${path}`}`;
    const headers: Record<string, string> = {
      "Api-Version": API_VERSION,
      "x-request-id": requestId,
      Accept: "application/json, application/problem+json",
    };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      headers["Content-Length"] = String(body.length);
    }
    return new Promise<Attempt>((resolve) => {
      let settled = false;
      const settle = (attempt: Attempt) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(attempt);
      };
      const request = https.request(url, { method, headers, agent: this.#agent }, (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) {
            settle({ error: new WireError(`the answer from ${path} is larger than ${MAX_RESPONSE_BYTES} bytes`, response.statusCode), transient: false });
            request.destroy();
          } else chunks.push(chunk);
        });
        response.on("end", () =>
          settle({ answer: { status: response.statusCode ?? 0, headers: flatten(response.headers), body: Buffer.concat(chunks, size) } }),
        );
        response.on("error", (error) => settle(transportFailure(path, error)));
      });
      const timer = setTimeout(() => {
        const error = Object.assign(new Error(`no answer within ${this.#timeoutMs} ms`), { code: "ETIMEDOUT" });
        request.destroy(error);
        settle(transportFailure(path, error));
      }, this.#timeoutMs);
      request.on("error", (error) => settle(transportFailure(path, error)));
      request.end(body);
    });
  }

  /** What a non-2xx answer throws: its problem, or a WireError with its status. */
  #failure(path: string, answer: Answer): Error {
    if (mediaType(answer.headers["content-type"]) === "application/problem+json") {
      const document = parseJson(answer.body);
      const parsed = document.ok ? problemSchema.safeParse(document.value) : undefined;
      if (parsed?.success) return new ProblemError(parsed.data);
      return new WireError(`${path} answered ${answer.status} with a malformed problem document`, answer.status);
    }
    return new WireError(`${path} answered ${answer.status} without a problem document`, answer.status);
  }

  #parse<T>(path: string, answer: Answer, schema: z.ZodType<T>): T {
    if (answer.headers["api-version"]?.trim() !== API_VERSION) {
      throw new WireError(`the peer answered without Api-Version ${API_VERSION}`, answer.status);
    }
    let value: unknown;
    if (answer.body.length > 0) {
      if (mediaType(answer.headers["content-type"]) !== "application/json") {
        throw new WireError(`malformed answer from ${path}: not application/json`, answer.status);
      }
      const document = parseJson(answer.body);
      if (!document.ok) throw new WireError(`malformed answer from ${path}: not JSON`, answer.status);
      value = document.value;
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      const where = [...new Set(parsed.error.issues.map((issue) => issuePath(issue.path) || "/"))].join(", ");
      throw new WireError(`malformed answer from ${path}: ${where}`, answer.status);
    }
    return parsed.data;
  }
}

function parseJson(bytes: Buffer): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(UTF8.decode(bytes)) };
  } catch {
    return { ok: false };
  }
}

function transportFailure(path: string, error: Error): Attempt {
  const code = (error as NodeJS.ErrnoException).code;
  const transient = code !== undefined && TRANSIENT.has(code);
  return { error: new WireError(`calling ${path} failed: ${code ?? error.message}`, undefined, { cause: error }), transient };
}
