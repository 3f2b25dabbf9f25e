// One log line per mesh call and per front-door request: what was called, how it
// ended and how long it took. Never a message field, header, query string, cookie,
// form body or redirect URL: those carry codes, state, login hints and tokens.
//
// Levels. A mesh call that succeeds is `debug` (a login makes a dozen of them). One
// that the caller got wrong (INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED,
// NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, CANCELED) is
// `info`: expected in a mesh of mutually distrusting parties, and a PERMISSION_DENIED
// is what a custodian watches for. A failure on the serving side or beyond it
// (INTERNAL, UNKNOWN, UNAVAILABLE, DEADLINE_EXCEEDED, DATA_LOSS, UNIMPLEMENTED,
// RESOURCE_EXHAUSTED) is `warn`. Front-door requests are the public edge's access log:
// `info`, `warn` for a 5xx that a failing peer caused, `error` for one from an
// unexpected exception of the front door's own.

import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { trace } from "@opentelemetry/api";
import { isSpanContextValid } from "@opentelemetry/api";
import type { Logger } from "./logger.js";
import { safeError } from "./safe-error.js";

const SERVING_SIDE_FAILURES = new Set<Code>([
  Code.Unknown, Code.Internal, Code.Unavailable, Code.DeadlineExceeded, Code.DataLoss, Code.Unimplemented, Code.ResourceExhausted,
]);

export type Level = "debug" | "info" | "warn" | "error";

export function rpcLevel(code: Code | undefined): Level {
  if (code === undefined) return "debug";
  return SERVING_SIDE_FAILURES.has(code) ? "warn" : "info";
}

/** "ok" or the gRPC code's name as the Connect protocol spells it ("permission_denied"). */
export function codeName(code: Code | undefined): string {
  return code === undefined ? "ok" : codeToString(code);
}

/** The active span's trace id, to find a call's lines in every component's log. */
export function activeTraceId(): string | undefined {
  const span = trace.getActiveSpan()?.spanContext();
  return span && isSpanContextValid(span) ? span.traceId : undefined;
}

export interface RpcLogEntry {
  /** "server" (this component served it) or "client" (this component called a peer). */
  readonly side: "server" | "client";
  /** "hello.token.v1.TokenService/CreateSession" */
  readonly method: string;
  /** The peer: the caller's identity on the server side ("orchestration", "token/operator"), the target on the client side. */
  readonly peer?: string;
  readonly code: Code | undefined;
  readonly durationMs: number;
  readonly traceId?: string;
  /** The error, for failures; it goes through the safe serializer. */
  readonly error?: unknown;
}

/** The safe serializer's type, code and message, without the stack. */
function reasonOf(error: unknown) {
  const { type, code, message } = safeError(error);
  return { type, ...(code ? { code } : {}), message };
}

export function logRpc(log: Logger, entry: RpcLogEntry): void {
  const level = rpcLevel(entry.code);
  if (!log.isLevelEnabled(level)) return;
  const fields = {
    rpc: {
      side: entry.side,
      method: entry.method,
      ...(entry.peer ? { peer: entry.peer } : {}),
      code: codeName(entry.code),
      duration_ms: Math.round(entry.durationMs * 1000) / 1000,
    },
    ...(entry.traceId ? { trace_id: entry.traceId } : {}),
    // A caller's mistake needs its words, not a stack; a server-side failure both.
    ...(entry.error !== undefined && entry.code !== undefined
      ? level === "warn" ? { err: entry.error } : { reason: reasonOf(entry.error) }
      : {}),
  };
  log[level](fields, `${entry.side === "server" ? "served" : "called"} ${entry.method}: ${codeName(entry.code)}`);
}

export interface HttpLogEntry {
  /** A fixed route name ("/authorize"), never the requested path. */
  readonly route: string;
  /** GET, POST, or "other". */
  readonly method: string;
  readonly status: number;
  readonly durationMs: number;
  /** The OAuth error code or gRPC code name that decided a 4xx/5xx ("invalid_grant"). */
  readonly outcome?: string;
  readonly traceId?: string;
  /** An unexpected exception behind a 5xx; it goes through the safe serializer. */
  readonly error?: unknown;
}

/**
 * A component that answered Orchestration with something that does not fit what
 * Orchestration verified (internal/components/orchestration/minted-check.ts): a 400 for the user,
 * and an error for the operators, since it means that peer is broken or compromised.
 */
export function isPeerViolation(error: unknown): boolean {
  return error instanceof Error && error.name === "ProtocolViolation";
}

/**
 * A 5xx from an exception of our own is an error; one because a peer failed (a gRPC
 * code) a warning; a peer that answered what does not fit, whatever the status, an error.
 */
export function httpLevel(status: number, error?: unknown): Level {
  if (isPeerViolation(error)) return "error";
  if (status < 500) return "info";
  return error !== undefined && !(error instanceof ConnectError) ? "error" : "warn";
}

export function logHttpRequest(log: Logger, entry: HttpLogEntry): void {
  const level = httpLevel(entry.status, entry.error);
  if (!log.isLevelEnabled(level)) return;
  log[level](
    {
      http: {
        method: entry.method,
        route: entry.route,
        status: entry.status,
        duration_ms: Math.round(entry.durationMs * 1000) / 1000,
        ...(entry.outcome ? { outcome: entry.outcome } : {}),
      },
      ...(entry.traceId ? { trace_id: entry.traceId } : {}),
      ...(entry.error !== undefined ? { err: entry.error } : {}),
    },
    `${entry.method} ${entry.route} ${entry.status}`,
  );
}
