// A request body that does not decode — not a protobuf message of the method's input
// type, a compressed flag without a compression, a gzip stream cut short — is the
// caller's mistake: INVALID_ARGUMENT (docs/bad-input.md). connect-es answers these with
// INTERNAL, although it answers malformed JSON with INVALID_ARGUMENT, and it decodes the
// body before any interceptor runs, so no interceptor can relabel them. This relabels
// them on the way out, in each protocol's own framing, and touches nothing else: only
// an INTERNAL carrying one of connect's own decoding messages changes.
//
//   gRPC             the grpc-status trailer (set once the body has been sent)
//   gRPC-web         the trailer frame at the end of the body (flag 0x80)
//   Connect unary    the HTTP status and the JSON error body
//   Connect stream   the end-stream frame (flag 0x02)

import { Code, type ConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";

/** connect-es's words for a request it could not decode (protocol/serialization, envelope; connect-node/compression). */
const DECODING_FAILURES = ["parse binary: ", "received compressed envelope, but do not know how to decompress", "decompression failed"];
const INTERNAL = String(Code.Internal);
const INVALID_ARGUMENT = String(Code.InvalidArgument);

/** Wraps every handler registered on `router` (call after the routes are added). */
export function relabelParseFailures(router: ConnectRouter): void {
  const handlers = router.handlers;
  for (let i = 0; i < handlers.length; i++) handlers[i] = relabel(handlers[i]!);
}

function relabel(handler: UniversalHandler): UniversalHandler {
  const wrapped = async (request: Parameters<UniversalHandler>[0]): Promise<UniversalServerResponse> => {
    const response = await handler(request);
    const type = response.header?.get("content-type") ?? "";
    if (type.startsWith("application/grpc-web")) return { ...response, ...mapBody(response, grpcWebFrame) };
    if (type.startsWith("application/grpc")) return { ...response, ...grpcTrailer(response) };
    if (type.startsWith("application/connect+")) return { ...response, ...mapBody(response, connectEndStream) };
    if (response.status === 500 && type.startsWith("application/json") && !response.header?.has("content-encoding")) {
      return connectUnary(response);
    }
    return response;
  };
  return Object.assign(wrapped, {
    protocolNames: handler.protocolNames,
    service: handler.service,
    method: handler.method,
    requestPath: handler.requestPath,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
  });
}

const isParseFailure = (message: string | null | undefined) =>
  message !== null && message !== undefined && DECODING_FAILURES.some((prefix) => message.startsWith(prefix));

/** gRPC: the status is in the trailers, which are complete once the body has been read. */
function grpcTrailer(response: UniversalServerResponse): Partial<UniversalServerResponse> {
  const trailer = response.trailer;
  if (!trailer) return {};
  const fix = () => {
    const message = trailer.get("grpc-message");
    if (trailer.get("grpc-status") === INTERNAL && isParseFailure(message && decodeURIComponent(message))) {
      trailer.set("grpc-status", INVALID_ARGUMENT);
    }
  };
  fix();
  const body = response.body;
  if (!body) return {};
  return {
    body: (async function* () {
      try {
        yield* body;
      } finally {
        fix();
      }
    })(),
  };
}

function mapBody(response: UniversalServerResponse, map: (chunk: Uint8Array) => Uint8Array): Partial<UniversalServerResponse> {
  const body = response.body;
  if (!body) return {};
  return {
    body: (async function* () {
      for await (const chunk of body) yield map(chunk);
    })(),
  };
}

/** Splits a chunk into envelopes and rewrites those that carry a status; leaves a partial one as is. */
function mapEnvelopes(chunk: Uint8Array, flag: number, rewrite: (data: string) => string | undefined): Uint8Array {
  const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  const out: Buffer[] = [];
  let at = 0;
  while (at + 5 <= bytes.length) {
    const flags = bytes.readUInt8(at);
    const length = bytes.readUInt32BE(at + 1);
    if (at + 5 + length > bytes.length) break;
    const data = bytes.subarray(at + 5, at + 5 + length);
    const rewritten = flags === flag ? rewrite(data.toString("utf8")) : undefined;
    if (rewritten === undefined) {
      out.push(bytes.subarray(at, at + 5 + length));
    } else {
      const next = Buffer.from(rewritten, "utf8");
      const head = Buffer.alloc(5);
      head.writeUInt8(flags, 0);
      head.writeUInt32BE(next.length, 1);
      out.push(head, next);
    }
    at += 5 + length;
  }
  if (out.length === 0) return chunk;
  out.push(bytes.subarray(at));
  return Buffer.concat(out);
}

/** gRPC-web: "grpc-status: 13\r\ngrpc-message: parse%20binary…\r\n" in an uncompressed trailer frame. */
function grpcWebFrame(chunk: Uint8Array): Uint8Array {
  return mapEnvelopes(chunk, 0x80, (text) => {
    const lines = text.split("\r\n");
    const value = (name: string) => lines.find((l) => l.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim();
    const message = value("grpc-message");
    if (value("grpc-status") !== INTERNAL || !isParseFailure(message && decodeURIComponent(message))) return undefined;
    return lines.map((l) => (l.toLowerCase().startsWith("grpc-status:") ? `grpc-status: ${INVALID_ARGUMENT}` : l)).join("\r\n");
  });
}

/** Connect streaming: {"error":{"code":"internal","message":"parse binary: …"}} in the end-stream frame. */
function connectEndStream(chunk: Uint8Array): Uint8Array {
  return mapEnvelopes(chunk, 0x02, (text) => {
    try {
      const end = JSON.parse(text) as { error?: { code?: string; message?: string } };
      if (end.error?.code !== "internal" || !isParseFailure(end.error.message)) return undefined;
      return JSON.stringify({ ...end, error: { ...end.error, code: "invalid_argument" } });
    } catch {
      return undefined;
    }
  });
}

/** Connect unary: HTTP 500 with a JSON error; INVALID_ARGUMENT is HTTP 400. */
async function connectUnary(response: UniversalServerResponse): Promise<UniversalServerResponse> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of response.body ?? []) chunks.push(chunk);
  const bytes = Buffer.concat(chunks);
  let error: { code?: string; message?: string } | undefined;
  try {
    error = JSON.parse(bytes.toString("utf8")) as typeof error;
  } catch {
    error = undefined;
  }
  if (error?.code !== "internal" || !isParseFailure(error.message)) return { ...response, body: once(bytes) };
  const body = Buffer.from(JSON.stringify({ ...error, code: "invalid_argument" }));
  const header = new Headers(response.header);
  header.set("content-length", String(body.length));
  return { ...response, status: 400, header, body: once(body) };
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}
