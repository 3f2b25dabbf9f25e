// Problems of the S2S wire (RFC 9457 application/problem+json), as the OpenID4VCI
// server-to-server draft and our DESIGN profile them.
//
// Two problem types belong to the draft, both HTTP 422: invalid_encryption (a JWE the
// receiver cannot open) and invalid_client_authentication (a client payload that does
// not authenticate). Every other problem is `about:blank` with an `errorCode` extension
// (snake_case) that says which one it is; `title` is then the HTTP status text.
//
// A problem's `detail` says what the caller should fix. It never repeats what the
// caller sent: a problem may be logged by either side.

import { STATUS_CODES } from "node:http";
import { z } from "zod";

export const S2S_INVALID_ENCRYPTION = "urn:openid:dcp:s2s:invalid_encryption";
export const S2S_INVALID_CLIENT_AUTHENTICATION = "urn:openid:dcp:s2s:invalid_client_authentication";

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  errorCode?: string;
  [extension: string]: unknown;
}

/** Thrown by handlers (and by the client when the peer answers with a problem). */
export class ProblemError extends Error {
  constructor(readonly problem: Problem) {
    super(`${problem.status} ${problem.errorCode ?? problem.type}: ${problem.detail}`);
    this.name = "ProblemError";
  }
}

const ERROR_CODE = /^[a-z][a-z0-9]*(_[a-z0-9]+)*$/;

/** The fields a problem's extensions may not replace. */
const MEMBERS = new Set(["type", "title", "status", "detail", "instance", "errorCode"]);

/** An `about:blank` problem: `errorCode` (snake_case) names it, the title is the status text. */
export function problem(status: number, errorCode: string, detail: string, extra?: Record<string, unknown>): ProblemError {
  if (!Number.isInteger(status) || status < 400 || status > 599) throw new RangeError(`a problem's status is 4xx or 5xx, not ${status}`);
  if (!ERROR_CODE.test(errorCode)) throw new TypeError(`a problem's errorCode is snake_case, not ${JSON.stringify(errorCode)}`);
  const extensions: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(extra ?? {})) {
    if (MEMBERS.has(name)) throw new TypeError(`a problem extension may not be called ${name}`);
    extensions[name] = value;
  }
  return new ProblemError({ type: "about:blank", title: statusText(status), status, detail, errorCode, ...extensions });
}

/** The draft's invalid_encryption: the receiver cannot decrypt or validate the JWE. */
export function invalidEncryption(detail: string): ProblemError {
  return new ProblemError({ type: S2S_INVALID_ENCRYPTION, title: "Invalid encryption", status: 422, detail });
}

/** The draft's invalid_client_authentication: the client payload does not authenticate the client. */
export function invalidClientAuthentication(detail: string): ProblemError {
  return new ProblemError({ type: S2S_INVALID_CLIENT_AUTHENTICATION, title: "Invalid client authentication", status: 422, detail });
}

/** The HTTP status text, e.g. "Unprocessable Entity"; "Error" for a code Node does not name. */
export function statusText(status: number): string {
  return STATUS_CODES[status] ?? "Error";
}

/** Validates an incoming problem document; unknown extensions are kept. */
export const problemSchema: z.ZodType<Problem> = z.looseObject({
  type: z.string().min(1),
  title: z.string(),
  status: z.number().int().min(100).max(599),
  detail: z.string(),
  instance: z.string().optional(),
  errorCode: z.string().optional(),
});

/**
 * Where a zod issue is, as a JSON Pointer (RFC 6901) into the document: "" for the
 * document itself, "/proofs/jwt/0" for an element. Names only the schema's path, never a value.
 */
export function issuePath(path: readonly PropertyKey[]): string {
  return path.map((key) => `/${String(key).replaceAll("~", "~0").replaceAll("/", "~1")}`).join("");
}

/** A schema failure as the `validationErrors` extension of an `invalid_request` problem. */
export function validationErrors(error: z.ZodError): { path: string; message: string }[] {
  return error.issues.map((issue) => ({ path: issuePath(issue.path), message: issue.message }));
}
