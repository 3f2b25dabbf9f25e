// The server side of the S2S wire: JSON over HTTPS with mutual TLS (RFC 8705), as the
// OpenID4VCI server-to-server draft and our DESIGN profile it. Both the development
// Issuer Server and the Wallet Server answer their peers through it.
//
// A peer is known by the CA its client certificate chains to; the handshake accepts
// no other CA, and every handler is told which peer called, since each identifier is
// that peer's. Before a handler runs, a request passes, in this order: the peer, the
// method and path, Api-Version, x-request-id, the rate limit, Content-Type, size, JSON,
// the route's schema and the idempotency store. Whatever fails is answered with an
// RFC 9457 problem (problem.ts) and, up to the schema, not remembered: the same
// x-request-id may be sent again, fixed.

import { X509Certificate, createHash } from "node:crypto";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import type { DetailedPeerCertificate, TLSSocket } from "node:tls";
import type { z } from "zod";
import { type IdempotencyStore, type StoredReply, memoryIdempotencyStore } from "./idempotency.js";
import { type Problem, ProblemError, problem, validationErrors } from "./problem.js";

export const API_VERSION = "1.0.0";
export const SUPPORTED_API_VERSIONS = ["1.0.0"] as const;

/** A peer is known by the CA its client certificate chains to. */
export interface WirePeer {
  id: string;
  caPem: string;
}

export interface WireRequest<B> {
  /** The WirePeer id of the mTLS client. */
  peer: string;
  /** The x-request-id, in lower case. */
  requestId: string;
  body: B;
  path: string;
}

export interface WireReply {
  /** Default 200. */
  status?: number;
  body: unknown;
  headers?: Record<string, string>;
  /**
   * Instead of JSON: a text body of another media type, sent as is (e.g. a compact JWE
   * as application/jose, fetched by a content reference whose digest is over its bytes).
   */
  text?: { contentType: string; body: string };
}

export interface WireRoute<B = unknown> {
  path: string;
  schema: z.ZodType<B>;
  handle(request: WireRequest<B>): Promise<WireReply>;
}

/**
 * E.g. GET /.well-known/s2s-issuer: no x-request-id or body needed, but Api-Version still
 * required and still mTLS. A `prefix` route answers the paths under its own instead:
 * `path` + "/" + one segment of [A-Za-z0-9_-] (an opaque id, e.g. GET /evidence/<id>),
 * never `path` itself, an empty segment or a deeper path (404 not_found, like any other).
 */
export interface WireGetRoute {
  path: string;
  prefix?: true;
  /** `path`: the request's path (for a prefix route, `route.path` + "/" + its segment). */
  handle(peer: string, path: string): Promise<WireReply>;
}

export interface WireServerOptions {
  routes: WireRoute<any>[];
  getRoutes?: WireGetRoute[];
  peers: WirePeer[];
  /** Default memoryIdempotencyStore(). */
  idempotency?: IdempotencyStore;
  /** Seconds to Retry-After, or undefined to let it through; checked before idempotency. */
  rateLimit?: (peer: string, path: string) => number | undefined;
  /** Default 1 MiB; more is 413 body_too_large. */
  maxBodyBytes?: number;
  /** Unexpected handler errors (answered 500 internal_error with no details). */
  onError?: (error: unknown, path: string) => void;
}

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** The one segment a prefix GET route takes after its path: an opaque id, nothing to decode or traverse. */
const PREFIX_SEGMENT = /^[A-Za-z0-9_-]+$/;
const REQUEST_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const JSON_TYPE = "application/json; charset=utf-8";
const PROBLEM_TYPE = "application/problem+json";
const INTERNAL_ERROR_DETAIL = "the server failed; retry with the same x-request-id";
/** Headers the wire sets itself; a handler may not. */
const RESERVED_HEADERS = new Set([
  "api-version",
  "api-supported-versions",
  "cache-control",
  "connection",
  "content-length",
  "content-type",
  "transfer-encoding",
  "x-request-id",
]);

/** The CAs of the peers, checked once: distinct ids, distinct CAs, each a parsable certificate. */
function peerCas(peers: readonly WirePeer[]): Map<string, { id: string; ca: X509Certificate }> {
  const byFingerprint = new Map<string, { id: string; ca: X509Certificate }>();
  const ids = new Set<string>();
  for (const peer of peers) {
    if (ids.has(peer.id)) throw new Error(`two S2S peers are called ${peer.id}`);
    ids.add(peer.id);
    const ca = new X509Certificate(peer.caPem);
    if (byFingerprint.has(ca.fingerprint256)) throw new Error(`S2S peers ${byFingerprint.get(ca.fingerprint256)!.id} and ${peer.id} have the same CA`);
    byFingerprint.set(ca.fingerprint256, { id: peer.id, ca });
  }
  return byFingerprint;
}

/**
 * The peer whose CA is the root of the client's verified chain, or undefined. Reads the
 * chain Node built (leaf, then issuers up to the self-signed root from our `ca` list),
 * matches the root by fingerprint, and checks that the certificate below it carries
 * the root's signature. Never throws, whatever the certificate.
 */
function identifyPeer(socket: TLSSocket, cas: Map<string, { id: string; ca: X509Certificate }>): string | undefined {
  try {
    if (!socket.authorized) return undefined;
    const leaf = socket.getPeerCertificate(true);
    if (!leaf || !leaf.raw) return undefined;
    let below: DetailedPeerCertificate | undefined;
    let cert: DetailedPeerCertificate = leaf;
    for (let depth = 0; depth < 10; depth++) {
      const issuer = cert.issuerCertificate;
      if (!issuer) return undefined; // the chain stops short of a self-signed root
      if (issuer === cert || issuer.fingerprint256 === cert.fingerprint256) {
        const match = cas.get(cert.fingerprint256);
        if (!match) return undefined;
        if (below && !new X509Certificate(below.raw).verify(match.ca.publicKey)) return undefined;
        return match.id;
      }
      below = cert;
      cert = issuer;
    }
    return undefined;
  } catch {
    return undefined;
  }
}

function statusOk(status: unknown): status is number {
  return typeof status === "number" && Number.isInteger(status) && status >= 200 && status <= 599;
}

/** The handler's reply as it will be sent (and stored). Throws on a reply the wire cannot send. */
function serializeReply(reply: WireReply): StoredReply {
  const status = reply.status ?? 200;
  if (!statusOk(status)) throw new Error(`an S2S handler answered with status ${String(status)}`);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(reply.headers ?? {})) {
    const lower = name.toLowerCase();
    if (RESERVED_HEADERS.has(lower)) throw new Error(`an S2S handler may not set the ${name} header`);
    http.validateHeaderName(name);
    http.validateHeaderValue(name, value);
    headers[lower] = value;
  }
  if (status === 204) return { status, headers, body: "" };
  if (reply.text) {
    http.validateHeaderValue("content-type", reply.text.contentType);
    return { status, headers: { ...headers, "content-type": reply.text.contentType }, body: reply.text.body };
  }
  const body = JSON.stringify(reply.body);
  if (body === undefined) throw new Error("an S2S handler answered with a body that is not JSON");
  headers["content-type"] = JSON_TYPE;
  return { status, headers, body };
}

function problemReply(problem: Problem, requestId: string | undefined, headers: Record<string, string> = {}): StoredReply {
  const document: Problem = { ...problem };
  if (requestId) document.instance = `urn:uuid:${requestId}`;
  else delete document.instance;
  return { status: problem.status, headers: { ...headers, "content-type": PROBLEM_TYPE }, body: JSON.stringify(document) };
}

function mediaType(header: string | undefined): { type: string; charset?: string } | undefined {
  if (header === undefined) return undefined;
  const [type, ...parameters] = header.split(";");
  let charset: string | undefined;
  for (const parameter of parameters) {
    const [name, value] = parameter.split("=", 2);
    if (name?.trim().toLowerCase() === "charset") charset = value?.trim().replace(/^"(.*)"$/, "$1").toLowerCase();
  }
  return { type: type!.trim().toLowerCase(), charset };
}

type Body = { ok: true; bytes: Buffer } | { ok: false; tooLarge: boolean };

function readBody(req: http.IncomingMessage, limit: number): Promise<Body> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (body: Body) => {
      if (done) return;
      done = true;
      resolve(body);
    };
    req.on("data", (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > limit) finish({ ok: false, tooLarge: true });
      else chunks.push(chunk);
    });
    req.on("end", () => finish({ ok: true, bytes: Buffer.concat(chunks, size) }));
    req.on("error", () => finish({ ok: false, tooLarge: false }));
    req.on("close", () => finish({ ok: false, tooLarge: false }));
  });
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function parseJson(bytes: Buffer): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(UTF8.decode(bytes)) };
  } catch {
    return { ok: false };
  }
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? (value.length === 1 ? value[0] : undefined) : value;
}

export function wireRequestHandler(options: WireServerOptions): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  const cas = peerCas(options.peers);
  const routes = new Map<string, WireRoute<any>>();
  for (const route of options.routes) {
    if (routes.has(route.path)) throw new Error(`two S2S routes for POST ${route.path}`);
    routes.set(route.path, route);
  }
  const getRoutes = new Map<string, WireGetRoute>();
  const prefixRoutes = new Map<string, WireGetRoute>();
  for (const route of options.getRoutes ?? []) {
    const table = route.prefix ? prefixRoutes : getRoutes;
    if (route.prefix && (!route.path.startsWith("/") || route.path.endsWith("/"))) {
      throw new Error(`the S2S prefix route GET ${route.path} must start with / and not end with one`);
    }
    if (table.has(route.path)) throw new Error(`two S2S routes for GET ${route.path}${route.prefix ? "/*" : ""}`);
    table.set(route.path, route);
  }
  /** The prefix route `path` is one segment under, if any. */
  const prefixRouteOf = (path: string): WireGetRoute | undefined => {
    const slash = path.lastIndexOf("/");
    if (slash <= 0 || !PREFIX_SEGMENT.test(path.slice(slash + 1))) return undefined;
    return prefixRoutes.get(path.slice(0, slash));
  };
  const idempotency = options.idempotency ?? memoryIdempotencyStore();
  // Peers identified per TLS connection (renegotiation is turned off, so a connection keeps its certificate).
  const identified = new WeakMap<TLSSocket, string | null>();
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const onError = (error: unknown, path: string) => {
    try {
      options.onError?.(error, path);
    } catch {
      // A failing reporter must not take the answer with it.
    }
  };

  function peerOf(req: http.IncomingMessage): string | undefined {
    const socket = req.socket as TLSSocket;
    if (typeof socket.getPeerCertificate !== "function") return undefined; // not TLS at all
    let peer = identified.get(socket);
    if (peer === undefined) {
      peer = identifyPeer(socket, cas) ?? null;
      identified.set(socket, peer);
      try {
        socket.disableRenegotiation();
      } catch {
        // Already closing.
      }
    }
    return peer ?? undefined;
  }

  async function serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const given = firstHeader(req.headers["x-request-id"])?.trim();
    const requestId = given !== undefined && REQUEST_ID.test(given) ? given.toLowerCase() : undefined;

    const send = (reply: StoredReply, extra: Record<string, string> = {}) => {
      if (res.headersSent || res.destroyed) return;
      res.statusCode = reply.status;
      for (const [name, value] of Object.entries({ ...reply.headers, ...extra })) res.setHeader(name, value);
      res.setHeader("Api-Version", API_VERSION);
      res.setHeader("Api-Supported-Versions", SUPPORTED_API_VERSIONS.join(", "));
      res.setHeader("Cache-Control", "no-store");
      res.setHeader("X-Content-Type-Options", "nosniff");
      if (given !== undefined && requestId !== undefined) res.setHeader("x-request-id", given);
      res.setHeader("Content-Length", Buffer.byteLength(reply.body));
      res.end(reply.body);
    };
    const refuse = (error: ProblemError, extra: Record<string, string> = {}) => send(problemReply(error.problem, requestId), extra);

    const peer = peerOf(req);
    if (peer === undefined) {
      return refuse(problem(403, "unknown_peer", "present a client certificate issued by the CA this server knows you by"));
    }

    const path = pathOf(req.url);
    const route = path === undefined ? undefined : routes.get(path);
    const getRoute = path === undefined ? undefined : (getRoutes.get(path) ?? prefixRouteOf(path));
    const method = req.method ?? "";
    if (!route && !getRoute) return refuse(problem(404, "not_found", "no S2S endpoint at this path; check the path against the server's metadata"));
    if (!(route && method === "POST") && !(getRoute && method === "GET")) {
      const allow = [...(getRoute ? ["GET"] : []), ...(route ? ["POST"] : [])].join(", ");
      return refuse(problem(405, "method_not_allowed", `this endpoint takes ${allow}`), { Allow: allow });
    }

    if (firstHeader(req.headers["api-version"])?.trim() !== API_VERSION) {
      return refuse(
        problem(400, "unsupported_api_version", `send the Api-Version header with a supported version: ${SUPPORTED_API_VERSIONS.join(", ")}`),
      );
    }
    if (route && requestId === undefined) {
      return refuse(problem(400, "invalid_request_id", "send an x-request-id header holding a UUID (8-4-4-4-12 hexadecimal digits)"));
    }

    const retryAfter = options.rateLimit?.(peer, path!);
    if (retryAfter !== undefined) {
      const seconds = String(Number.isFinite(retryAfter) ? Math.max(0, Math.ceil(retryAfter)) : 1);
      return refuse(problem(429, "rate_limited", `too many requests; retry after ${seconds} seconds with the same x-request-id`), {
        "Retry-After": seconds,
      });
    }

    if (getRoute) {
      try {
        return send(serializeReply(await getRoute.handle(peer, path!)));
      } catch (error) {
        return send(failure(error, path!, requestId));
      }
    }

    const type = mediaType(firstHeader(req.headers["content-type"]));
    if (type?.type !== "application/json" || (type.charset !== undefined && type.charset !== "utf-8")) {
      return refuse(problem(415, "unsupported_media_type", "send the body as Content-Type: application/json (UTF-8)"));
    }
    const tooLarge = () =>
      refuse(problem(413, "body_too_large", `send a body of at most ${maxBodyBytes} bytes`), { Connection: "close" });
    const declared = firstHeader(req.headers["content-length"]);
    if (declared !== undefined && Number(declared) > maxBodyBytes) return tooLarge();
    const body = await readBody(req, maxBodyBytes);
    if (!body.ok) return body.tooLarge ? tooLarge() : undefined; // a client that went away gets no answer
    const json = parseJson(body.bytes);
    if (!json.ok) return refuse(problem(400, "invalid_json", "send a body that is one JSON value in UTF-8"));
    const parsed = route!.schema.safeParse(json.value);
    if (!parsed.success) {
      return refuse(
        problem(400, "invalid_request", "the body does not match this endpoint's schema; fix the members listed in validationErrors", {
          validationErrors: validationErrors(parsed.error),
        }),
      );
    }

    const bodyHash = createHash("sha256").update(body.bytes).digest("base64url");
    const outcome = await idempotency.run(peer, requestId!, bodyHash, async () => {
      try {
        return serializeReply(await route!.handle({ peer, requestId: requestId!, body: parsed.data, path: path! }));
      } catch (error) {
        return failure(error, path!, requestId);
      }
    });
    if ("conflict" in outcome) {
      return refuse(problem(422, "request_id_reused", "this x-request-id was already used for another body; send a new request with a new x-request-id"));
    }
    return send(outcome.reply);
  }

  /** A handler's ProblemError becomes its problem; anything else an opaque 500. */
  function failure(error: unknown, path: string, requestId: string | undefined): StoredReply {
    if (error instanceof ProblemError && statusOk(error.problem.status) && error.problem.status >= 400) {
      return problemReply(error.problem, requestId);
    }
    onError(error, path);
    return problemReply(problem(500, "internal_error", INTERNAL_ERROR_DETAIL).problem, requestId);
  }

  return (req, res) => {
    serve(req, res).catch((error: unknown) => {
      onError(error, pathOf(req.url) ?? "");
      if (!res.headersSent && !res.destroyed) {
        const body = JSON.stringify(problem(500, "internal_error", INTERNAL_ERROR_DETAIL).problem);
        res.writeHead(500, { "Content-Type": PROBLEM_TYPE, "Cache-Control": "no-store", "Api-Version": API_VERSION, "Api-Supported-Versions": SUPPORTED_API_VERSIONS.join(", ") });
        res.end(body);
      } else {
        res.destroy();
      }
    });
  };
}

function pathOf(url: string | undefined): string | undefined {
  if (url === undefined || !url.startsWith("/")) return undefined;
  const end = url.search(/[?#]/);
  return end === -1 ? url : url.slice(0, end);
}

export interface WireServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** An HTTPS server requiring client certificates from the peers' CAs, TLS 1.2 or later. */
export async function startWireServer(
  options: WireServerOptions & { certPem: string; keyPem: string; host?: string; port?: number },
): Promise<WireServer> {
  if (options.peers.length === 0) throw new Error("an S2S server needs at least one peer");
  const handler = wireRequestHandler(options);
  const server = https.createServer(
    {
      cert: options.certPem,
      key: options.keyPem,
      ca: options.peers.map((peer) => peer.caPem),
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
    },
    handler,
  );
  server.on("secureConnection", (socket: TLSSocket) => {
    try {
      socket.disableRenegotiation();
    } catch {
      // Already closing.
    }
  });
  const host = options.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
