// What the front door reads from a request besides its URL: a form body, bounded, and
// its cookies.

import type http from "node:http";
import { OAuthError } from "./oauth-error.js";

const MAX_BODY = 64 * 1024;

const tooLarge = () => new OAuthError("invalid_request", `the request body is larger than ${MAX_BODY} bytes`, 413);

/**
 * A form body of at most MAX_BODY bytes (docs/bad-input.md). A larger one is refused
 * with 413 as soon as it is known to be larger (from Content-Length, or while reading),
 * without reading the rest: the answer goes out and the connection closes.
 */
export async function form(req: http.IncomingMessage): Promise<URLSearchParams> {
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

/**
 * The first parameter given more than once: RFC 6749 §3.1 and §3.2 say a request's
 * parameters MUST NOT repeat, and a repeated one would leave which value counts to chance.
 */
export function repeatedParameter(params: URLSearchParams): string | undefined {
  const seen = new Set<string>();
  for (const name of params.keys()) {
    if (seen.has(name)) return name;
    seen.add(name);
  }
  return undefined;
}

export function cookies(req: http.IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0) out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}
