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

/** The error class of one code: `new NotFoundError(message)`, `instanceof NotFoundError`. */
function storageError<C extends StorageErrorCode>(code: C, name: string) {
  const errorClass = class extends StorageError {
    override name = name;
    declare readonly code: C;
    constructor(message: string) {
      super(code, message);
    }
  };
  // The class is named as its errors are, so a stack trace or a `.name` reads the same.
  return Object.defineProperty(errorClass, "name", { value: name });
}

/** No row has this hash, or the row is of another kind (the two are not told apart). */
export const NotFoundError = storageError("not_found", "NotFoundError");
export type NotFoundError = InstanceType<typeof NotFoundError>;
export const AlreadyExistsError = storageError("already_exists", "AlreadyExistsError");
/** The row exists but is not at the version the caller expected: re-read and retry. */
export const VersionConflictError = storageError("version_conflict", "VersionConflictError");
export const TokenReusedError = storageError("token_reused", "TokenReusedError");
/** A caller bug (bad hash, key id, size…), found before the database was touched. */
export const InvalidArgumentError = storageError("invalid_argument", "InvalidArgumentError");
/** The database cannot be reached or gave up on the statement; worth retrying later. */
export const UnavailableError = storageError("unavailable", "UnavailableError");
