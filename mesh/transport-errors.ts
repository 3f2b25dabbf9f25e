// Telling "the peer could not be reached or gave up" apart from "the peer answered no".
//
// A peer that dies in the middle of a call does not answer with UNAVAILABLE: connect-node
// reports what the socket saw — a reset connection is ABORTED ("read ECONNRESET"), a reset
// HTTP/2 stream INTERNAL or CANCELED — and ABORTED, INTERNAL and CANCELED mean other
// things when a peer says them (a version conflict, a bug, a cancelled call). So callers
// that must tell a user "try again" look at where the error came from: an error the
// transport made carries the Node error it came from as its cause (or names the HTTP/2
// reset), an error the peer sent carries neither.

import { Code, ConnectError } from "@connectrpc/connect";

/** Node's codes for a connection or stream that failed under the call (system errors, HTTP/2, TLS). */
const TRANSPORT_ERROR_CODE = /^(E[A-Z]+|ERR_HTTP2_[A-Z_]+|ERR_STREAM_[A-Z_]+|ERR_SOCKET_[A-Z_]+)$/;

/** True if the call failed in the transport (refused, reset, closed), not with the peer's answer. */
export function failedInTransport(error: ConnectError): boolean {
  if (/^http\/2 stream closed with error code /.test(error.rawMessage)) return true;
  for (let cause: unknown = error.cause, depth = 0; cause instanceof Error && depth < 8; cause = cause.cause, depth++) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === "string" && TRANSPORT_ERROR_CODE.test(code)) return true;
  }
  return false;
}

/**
 * True if the error says a peer is unavailable for now: it answered UNAVAILABLE, the
 * deadline passed, or the call failed in the transport. Worth trying again later.
 */
export function isUnavailable(error: unknown): boolean {
  if (!(error instanceof ConnectError)) return false;
  return error.code === Code.Unavailable || error.code === Code.DeadlineExceeded || failedInTransport(error);
}
