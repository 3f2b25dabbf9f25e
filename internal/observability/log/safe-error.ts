// What an error may put in a log line (docs/design.md §2: no identifier, claim, token or
// record in any log line). pino's standard `err` serializer copies every enumerable
// property of an error, and libraries hang request content there: jose's claim
// errors carry the whole JWT payload (`payload`), pg's errors the failing row
// (`detail`), fetch errors the request. So errors are serialized from a short list of
// fields only, and their messages and stacks are scrubbed of anything shaped like a
// token, an email address or a long opaque value, in case a message quotes one.

import { ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";

export interface SafeError {
  readonly type: string;
  readonly message: string;
  /** A gRPC code name ("permission_denied"), or a library's short error code ("ECONNREFUSED"). */
  readonly code?: string;
  readonly stack?: string;
  readonly cause?: SafeError;
}

const JWS = /eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)*/g;
const EMAIL = /[^\s@"'<>(),;:[\]]+@[^\s@"'<>(),;:[\]]+\.[A-Za-z]{2,}/g;
/** base64url or hex runs this long are keys, hashes, ids or tokens, never words. */
const OPAQUE = /[A-Za-z0-9_-]{32,}/g;
/** Standard base64 (a file path is also a run of letters and slashes, but has no + or =). */
const BASE64 = /[A-Za-z0-9+/]{32,}={0,2}/g;
/** Short, machine-made codes only ("ECONNREFUSED", "ERR_JWT_EXPIRED", "23505"). */
const LIBRARY_CODE = /^[A-Za-z0-9_.-]{1,48}$/;
const MAX_MESSAGE = 500;
const MAX_CAUSES = 3;

/** Replaces token-, email- and key-shaped substrings; what remains is prose and paths. */
export function scrub(text: string): string {
  const cleaned = text
    .replace(JWS, "[jws]")
    .replace(EMAIL, "[email]")
    .replace(BASE64, (run) => (/[+=]/.test(run) ? "[redacted]" : run))
    .replace(OPAQUE, "[redacted]");
  return cleaned.length > MAX_MESSAGE ? `${cleaned.slice(0, MAX_MESSAGE)}…` : cleaned;
}

function codeOf(error: Error): string | undefined {
  if (error instanceof ConnectError) return codeToString(error.code);
  const code = (error as { code?: unknown }).code;
  if ((typeof code === "string" && LIBRARY_CODE.test(code)) || typeof code === "number") return String(code);
  return undefined;
}

/** The pino serializer for `err` (and `error`): a fixed set of fields, scrubbed. */
export function safeError(error: unknown, depth = 0): SafeError {
  if (!(error instanceof Error)) {
    return { type: typeof error, message: "a value that is not an Error was thrown (not logged)" };
  }
  const type = error.name && error.name !== "Error" ? error.name : error.constructor?.name || "Error";
  // ConnectError's message repeats the code ("[permission_denied] …"): keep the words.
  const message = scrub(error instanceof ConnectError ? error.rawMessage : error.message);
  const code = codeOf(error);
  // The first stack line repeats the message; the frames are file positions.
  const frames = error.stack?.split("\n").filter((line) => /^\s+at /.test(line));
  const cause = error.cause !== undefined && depth < MAX_CAUSES ? safeError(error.cause, depth + 1) : undefined;
  return {
    type,
    message,
    ...(code !== undefined ? { code } : {}),
    ...(frames && frames.length > 0 ? { stack: scrub(frames.join("\n")) } : {}),
    ...(cause ? { cause } : {}),
  };
}
