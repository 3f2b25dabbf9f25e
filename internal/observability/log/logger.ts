// Structured JSON logs (pino), one logger per component. What is logged is chosen at
// each call site: identifiers, claims, tokens and records never are (docs/design.md §2).
// Errors go through a serializer that keeps a fixed set of fields and scrubs token-,
// email- and key-shaped text (safe-error.ts); a few field names that only ever hold
// secrets are censored wherever a call site passes them by mistake.
//
// HELLO_LOG_LEVEL sets the level (default info): debug adds one line per successful
// mesh call, which is the most a component ever writes.

import { pino, type Logger } from "pino";
import { safeError } from "./safe-error.js";

export type { Logger };

/** Field names that only ever hold credentials or user data: censored at any depth we know. */
const SECRET_FIELDS = [
  "authorization", "cookie", "set-cookie", "password", "client_secret", "code_verifier",
  "id_token", "access_token", "refresh_token", "session_token", "sessionToken", "accessToken",
  "email", "headers", "body",
];
const REDACT_PATHS = SECRET_FIELDS.flatMap((f) => [`["${f}"]`, `*["${f}"]`]);

export function createLogger(component: string, options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.HELLO_LOG_LEVEL ?? "info",
      base: { component },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: (e: unknown) => safeError(e), error: (e: unknown) => safeError(e) },
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    },
    options.destination ?? process.stdout,
  );
}

// The logger of the component this process runs, for code that is shared by every
// component and has no logger handed to it (the mesh server and client, the front
// door). Silent until a component sets it: a library or a test that embeds mesh
// servers does not write to stdout unasked.
let processLog: Logger = pino({ level: "silent" });

export function setProcessLogger(log: Logger): void {
  processLog = log;
}

export function processLogger(): Logger {
  return processLog;
}
