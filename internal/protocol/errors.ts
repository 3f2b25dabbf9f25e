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

import { Code, ConnectError } from "@connectrpc/connect";
import { StorageError } from "../storage/backend/errors.js";
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

const STORAGE_CODES: Record<StorageError["code"], Code> = {
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  version_conflict: Code.Aborted,
  token_reused: Code.PermissionDenied,
  invalid_argument: Code.InvalidArgument,
  unavailable: Code.Unavailable,
};

/** Maps what a handler threw to the code that goes on the wire. */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof InvalidTokenError) {
    const code = error.reason === "it is missing" || error.reason === "it is malformed" ? Code.InvalidArgument : Code.Unauthenticated;
    return new ConnectError(error.message, code);
  }
  if (error instanceof StorageError) return new ConnectError(error.message, STORAGE_CODES[error.code]);
  // Encryption found a ciphertext that does not open under its storage key: data loss
  // or tampering at Storage, never the caller's fault.
  if (error instanceof DecryptionError) return new ConnectError(error.message, Code.DataLoss);
  return new ConnectError("internal error", Code.Internal);
}

/** Wraps a handler so every failure leaves as a mapped ConnectError. */
export function mapped<A extends unknown[], R>(handler: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args) => {
    try {
      return await handler(...args);
    } catch (error) {
      throw toConnectError(error);
    }
  };
}
