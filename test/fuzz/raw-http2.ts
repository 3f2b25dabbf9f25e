// A raw HTTP/2 client over mutual TLS, for bytes no Connect client would send:
// truncated or bit-flipped protobuf, broken envelopes, wrong content types, lying
// lengths, compression bombs, oversized bodies.

import http2 from "node:http2";
import type { MeshCredentials } from "../../mesh/server.js";
import type { TrustStore } from "../../mesh/trust.js";
import { COMPONENTS } from "../../internal/protocol/identity.js";

export interface RawResponse {
  /** The HTTP status, or 0 when the server reset the stream before answering. */
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly trailers: Record<string, string>;
  readonly body: Buffer;
  /** The RST_STREAM code when the stream was reset. */
  readonly resetCode?: number;
}

const flatten = (headers: http2.IncomingHttpHeaders): Record<string, string> =>
  Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : String(v ?? "")]));

/** One HTTP/2 connection presenting `credentials`; requests are raw. */
export class RawHttp2 {
  readonly #session: http2.ClientHttp2Session;

  constructor(url: string, credentials: MeshCredentials, trust: TrustStore) {
    this.#session = http2.connect(url, {
      cert: credentials.certPem,
      key: credentials.keyPem,
      ca: trust.pems(COMPONENTS),
      // The server's identity is not what is under test here.
      checkServerIdentity: () => undefined,
      minVersion: "TLSv1.3",
    });
    this.#session.on("error", () => {});
  }

  request(path: string, headers: Record<string, string>, body: Uint8Array, method = "POST"): Promise<RawResponse> {
    return new Promise((resolve) => {
      const stream = this.#session.request({ ":method": method, ":path": path, ...headers });
      let status = 0;
      let responseHeaders: Record<string, string> = {};
      let trailers: Record<string, string> = {};
      const chunks: Buffer[] = [];
      stream.on("response", (h) => {
        status = Number(h[":status"]);
        responseHeaders = flatten(h);
      });
      stream.on("trailers", (t) => (trailers = flatten(t)));
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      // A write into a stream the server already answered (and closed) is not an error of the answer.
      stream.on("error", () => {});
      const done = () => {
        resolve({
          status,
          headers: responseHeaders,
          trailers,
          body: Buffer.concat(chunks),
          ...(stream.rstCode ? { resetCode: stream.rstCode } : {}),
        });
        // The answer is complete: stop sending whatever of the body the server did not read.
        // (Only then: a client that resets every stream is cut off by Node's defence
        // against rapid resets, as it should be.)
        if (!stream.destroyed && !stream.writableFinished) stream.close(http2.constants.NGHTTP2_CANCEL);
      };
      // The answer ends when the server's side does ("end"), even if the server never read
      // all of the body; or when the stream is reset or closed before that.
      stream.on("end", done);
      stream.on("close", done);
      stream.end(body);
    });
  }

  close(): void {
    this.#session.destroy();
  }
}

/** A gRPC / gRPC-web / Connect-streaming envelope: flags, 4-byte length, data. */
export function envelope(data: Uint8Array, flags = 0, declaredLength = data.length): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(declaredLength >>> 0, 1);
  return Buffer.concat([head, data]);
}

/** The status a gRPC-web response carries in its trailer frame (flag 0x80). */
export function grpcWebTrailers(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let at = 0;
  while (at + 5 <= body.length) {
    const flags = body.readUInt8(at);
    const length = body.readUInt32BE(at + 1);
    const data = body.subarray(at + 5, at + 5 + length);
    if (flags & 0x80) {
      for (const line of data.toString("utf8").split("\r\n")) {
        const colon = line.indexOf(":");
        if (colon > 0) out[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
    }
    at += 5 + length;
  }
  return out;
}
