// Typed errors of the record store. Callers branch on `code` (stable, and what the
// Storage service maps to its own status codes), never on message text.
//
// Messages must never carry a hash, a jti, a key id or any row content: hashes are
// linked to users, and error messages end up in logs and in responses. Driver errors
// are therefore never attached as `cause` either (PGlite's errors carry the query
// parameters, pg's carry the conflicting key in `detail`).

export type StorageErrorCode =
  | "not_found"
  | "already_exists"
  | "version_conflict"
  | "token_reused"
  | "invalid_argument"
  | "unavailable";

export class StorageError extends Error {
  override name = "StorageError";
  constructor(
    readonly code: StorageErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** No row has this hash, or the row is of another kind (the two are not told apart). */
export class NotFoundError extends StorageError {
  override name = "NotFoundError";
  constructor(message: string) {
    super("not_found", message);
  }
}

export class AlreadyExistsError extends StorageError {
  override name = "AlreadyExistsError";
  constructor(message: string) {
    super("already_exists", message);
  }
}

/** The row exists but is not at the version the caller expected: re-read and retry. */
export class VersionConflictError extends StorageError {
  override name = "VersionConflictError";
  constructor(message: string) {
    super("version_conflict", message);
  }
}

export class TokenReusedError extends StorageError {
  override name = "TokenReusedError";
  constructor(message: string) {
    super("token_reused", message);
  }
}

/** A caller bug (bad hash, key id, size…), found before the database was touched. */
export class InvalidArgumentError extends StorageError {
  override name = "InvalidArgumentError";
  constructor(message: string) {
    super("invalid_argument", message);
  }
}

/** The database cannot be reached or gave up on the statement; worth retrying later. */
export class UnavailableError extends StorageError {
  override name = "UnavailableError";
  constructor(message: string) {
    super("unavailable", message);
  }
}
