// How protocol failures cross the mesh: the closed gRPC code set, with messages that
// say what failed and never carry a token, record or identifier.
//
//   INVALID_ARGUMENT     a required field is missing or is not a token at all
//   UNAUTHENTICATED      a presented token fails verification (signature, kid, purpose,
//                        typ, iss, aud, expiry, lifetime)
//   PERMISSION_DENIED    a valid token that does not grant this (another op, kind or
//                        hash; already used), or identifiers that do not match the session
//   FAILED_PRECONDITION  a step out of order for this session
//   NOT_FOUND / ALREADY_EXISTS / ABORTED (version conflict) / UNAVAILABLE: from Storage
//                        (its own mapping, storage-service.ts)
//
// Handlers throw; one interceptor in the mesh server (mesh/errors.ts) maps what they
// threw, so no handler wraps itself.

import { Code, ConnectError } from "@connectrpc/connect";
import { InvalidTokenError } from "./jws.js";
import { DecryptionError } from "./keyring.js";

export function denied(message: string): ConnectError {
  return new ConnectError(message, Code.PermissionDenied);
}

export function invalidArgument(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

export function outOfOrder(message: string): ConnectError {
  return new ConnectError(message, Code.FailedPrecondition);
}

/** A component's own mapping of its errors to the wire (Storage's record-store errors, say). */
export type ErrorMapper = (error: unknown) => ConnectError | undefined;

/**
 * What a handler threw, as the code that goes on the wire: a ConnectError as it is, the
 * protocol's own verdicts by kind, a component's errors by its `mapError`, and anything
 * else as INTERNAL with no words of its own (they may carry what must not leave).
 */
export function toConnectError(error: unknown, mapError?: ErrorMapper): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof InvalidTokenError) {
    const code = error.reason === "it is missing" || error.reason === "it is malformed" ? Code.InvalidArgument : Code.Unauthenticated;
    return new ConnectError(error.message, code);
  }
  // Encryption found a ciphertext that does not open under its storage key: data loss
  // or tampering at Storage, never the caller's fault.
  if (error instanceof DecryptionError) return new ConnectError(error.message, Code.DataLoss);
  return mapError?.(error) ?? new ConnectError("internal error", Code.Internal);
}
