// The error contract of docs/bad-input.md as assertions shared by the bad-input specs.

import { expect } from "chai";
import { Code, ConnectError } from "@connectrpc/connect";

/** What a stack trace, an internal error name or a file path looks like in a response. */
const INTERNALS: ReadonlyArray<[string, RegExp]> = [
  ["a stack frame", /\n\s*at [^\n]*[(:]/],
  ["a stack frame", /\bat (?:async )?[\w.<>$]+ \(/],
  ["a file path", /(?:\/[\w.-]+){2,}\.(?:ts|js|mjs|cjs)\b/],
  ["a file path", /node_modules/],
  ["an internal error name", /\b(?:TypeError|ReferenceError|RangeError|SyntaxError|EvalError|URIError|AggregateError)\b/],
  ["an error dump", /\bError: |\[object Object\]|\bundefined is not\b|\bCannot read propert/],
];

/** Fails if `text` shows a stack trace, file path or internal error (`what` names the place). */
export function expectNoInternals(text: string, what: string): void {
  for (const [name, pattern] of INTERNALS) {
    const match = pattern.exec(text);
    if (match) expect.fail(`${what} shows ${name}: …${text.slice(Math.max(0, match.index - 80), match.index + 120)}…`);
  }
}

/** The codes a call with bad input may end in (docs/bad-input.md); never INTERNAL or UNKNOWN. */
export const CLIENT_ERROR_CODES: ReadonlySet<Code> = new Set([
  Code.InvalidArgument,
  Code.Unauthenticated,
  Code.PermissionDenied,
  Code.FailedPrecondition,
  Code.NotFound,
  Code.AlreadyExists,
  Code.ResourceExhausted,
  // A stale expected_version: the answer Storage gives an honest update that lost a race.
  Code.Aborted,
]);

/** Every string of at least `min` characters inside a message (or any value), deeply. */
export function stringsIn(value: unknown, min = 16, out: string[] = []): string[] {
  if (typeof value === "string") {
    if (value.length >= min) out.push(value);
  } else if (Array.isArray(value)) {
    for (const item of value) stringsIn(item, min, out);
  } else if (value !== null && typeof value === "object" && !(value instanceof Uint8Array)) {
    for (const item of Object.values(value)) stringsIn(item, min, out);
  }
  return out;
}

/**
 * A refusal that keeps the contract: a client-error code, a short message that says
 * something, no internals, and none of the caller's (possibly secret) input echoed.
 */
export function expectClearRefusal(error: unknown, input: unknown, what: string, codes: ReadonlySet<Code> = CLIENT_ERROR_CODES): ConnectError {
  const e = ConnectError.from(error);
  if (!codes.has(e.code)) expect.fail(`${what}: ${Code[e.code]} (${e.rawMessage.slice(0, 300)})`);
  expect(e.rawMessage.length, `${what}: the message says what is wrong`).to.be.within(8, 600);
  const everything = [e.rawMessage, ...[...e.metadata.entries()].map(([k, v]) => `${k}: ${v}`)].join("\n");
  expectNoInternals(everything, what);
  for (const secret of stringsIn(input)) {
    if (everything.includes(secret)) expect.fail(`${what}: the refusal echoes the caller's input (${secret.slice(0, 40)}…)`);
  }
  return e;
}

/** Resolves with `promise`, or fails after `ms` (a hang is a failure, not a slow pass). */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
