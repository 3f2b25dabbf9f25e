// The Storage component's database layer: one narrow interface, implemented by PGlite
// (embedded, the default) and by PostgreSQL through `pg` (docs/design.md §7). Storage holds
// only opaque rows; it never sees plaintext, and it cannot tell whose row is whose.
// Timestamps are kept to the UTC day, so rows written in one login are not tied together
// by the millisecond they were written (docs/design.md §5).

import type { RecordKindName } from "../../../protocol/records.js";

// The kinds are the protocol's (a reservation: a directed identifier reserved for one
// app, docs/design.md §5); Storage keeps each in the same way.
export { type RecordKindName, RECORD_KINDS } from "../../../protocol/records.js";

export interface StoredRow {
  /** base64url keyed hash, the primary key (43 chars for HMAC-SHA256; 1..128 of [A-Za-z0-9_-] accepted). */
  hash: string;
  kind: RecordKindName;
  /** Encryption keyring key id, 1..64 printable ASCII: the key that wrapped the data key. */
  keyId: string;
  /**
   * The record's data key wrapped under `keyId` (opaque to Storage), 1..512 bytes; absent
   * for a row written before envelope encryption (sealed directly under `keyId`).
   */
  wrappedKey?: Uint8Array;
  /** The undo copy: the key id and wrapped key the row had before its first re-wrap (both or neither). */
  previousKeyId?: string;
  previousWrappedKey?: Uint8Array;
  /** 1 byte .. 1 MiB. */
  ciphertext: Uint8Array;
  /** 1 on create, +1 per update. */
  version: number;
  /**
   * base64url SHA-256 of the record as written (43 characters of [A-Za-z0-9_-]), as the
   * writer's Access Token carried it; absent only for a row written before storage format
   * 3 that has not been given one (setLegacyDigest).
   */
  digest?: string;
  /** The UTC day (midnight) the row was created: never a finer time. */
  createTime: Date;
  /** The UTC day (midnight) of the row's last create or update; a re-wrap or a digest does not change it. */
  updateTime: Date;
}

export interface NewRow {
  hash: string;
  kind: RecordKindName;
  keyId: string;
  /** Absent only from a writer that predates envelope encryption (a legacy row). */
  wrappedKey?: Uint8Array;
  ciphertext: Uint8Array;
  /** base64url SHA-256 of the record as written: 43 characters of [A-Za-z0-9_-]. */
  digest: string;
}

/** What key maintenance sees of a row: never its ciphertext. */
export interface RowKey {
  hash: string;
  kind: RecordKindName;
  version: number;
  keyId: string;
  /** Absent for a legacy row. */
  wrappedKey?: Uint8Array;
}

/** How many rows depend on one keyring key id. */
export interface KeyUsage {
  keyId: string;
  /** Rows whose data key is wrapped under this key id (legacy rows included). */
  records: number;
  /** Of those, rows sealed directly under it (no wrapped key). */
  legacyRecords: number;
  /** Rows whose undo copy of a pre-re-wrap wrapping is under this key id. */
  previousWrappings: number;
}

/** One write of a batch (RecordStore.writeBatch), as the single-row calls take it. */
export type BatchWrite =
  | { op: "create"; row: NewRow }
  | { op: "update"; hash: string; kind: RecordKindName; expectedVersion: number; next: { keyId: string; wrappedKey?: Uint8Array; ciphertext: Uint8Array; digest: string } }
  | { op: "delete"; hash: string; kind: RecordKindName; expectedVersion?: number };

/** The most writes one batch may hold. */
export const MAX_BATCH_WRITES = 64;

export interface RecordStore {
  /** Insert only if no row has this hash. Throws AlreadyExistsError otherwise. Linearizable. */
  create(row: NewRow): Promise<StoredRow>;
  /** Linearizable read (primary). Throws NotFoundError if no row has this hash, or if the row's kind differs from `kind`. */
  read(hash: string, kind: RecordKindName): Promise<StoredRow>;
  /** Replace keyId+wrappedKey+ciphertext+digest iff current version === expectedVersion; version+1, updateTime=today; any undo copy of an earlier wrapping is dropped. NotFoundError if absent (or kind differs), VersionConflictError if version differs. */
  update(
    hash: string,
    kind: RecordKindName,
    expectedVersion: number,
    next: { keyId: string; wrappedKey?: Uint8Array; ciphertext: Uint8Array; digest: string },
  ): Promise<StoredRow>;
  /**
   * Give a row written before storage format 3 its digest: only if it has none and is at
   * `expectedVersion`, in one compare-and-set statement. Version and updateTime stay. A
   * digest once set changes only with an update. NotFoundError if absent (or kind
   * differs), VersionConflictError if the version differs or the row already has a digest.
   */
  setLegacyDigest(hash: string, kind: RecordKindName, expectedVersion: number, digest: string): Promise<StoredRow>;
  /** Delete; if expectedVersion given, only at that version. NotFoundError / VersionConflictError. */
  delete(hash: string, kind: RecordKindName, expectedVersion?: number): Promise<void>;
  /**
   * Several creates, updates and deletes, each with the single-row call's rules, in one
   * database transaction: all are done, or (when one fails) none. Each names another row;
   * 1 to MAX_BATCH_WRITES of them. Returns the row each create or update wrote (undefined
   * for a delete). A failure is the failed write's own error, its message prefixed with
   * its position ("write 2 of 3: ...").
   */
  writeBatch(writes: readonly BatchWrite[]): Promise<Array<StoredRow | undefined>>;
  /** Record that a single-use token id (jti) was spent, until expiresAt. Throws TokenReusedError if it was already spent. Atomic across replicas. */
  spendTokenId(jti: string, expiresAt: Date): Promise<void>;
  /** Delete spent token ids whose expiresAt < now; returns how many. */
  sweepSpentTokenIds(now?: Date): Promise<number>;
  /** Up to `limit` (1..1000) rows wrapped under `keyId`, in hash order, after `after` if given. Never the ciphertext. */
  listKeys(keyId: string, options: { after?: string; limit: number }): Promise<RowKey[]>;
  /**
   * Replace a row's wrapped key with `next` iff the row is still exactly `expected`
   * (version, key id, wrapped key). Version and updateTime stay. The wrapping the row had
   * before its first re-wrap is kept as its undo copy. NotFoundError if absent (or kind
   * differs), VersionConflictError if anything differs.
   */
  rewrapKey(
    hash: string,
    kind: RecordKindName,
    expected: { version: number; keyId: string; wrappedKey: Uint8Array },
    next: { keyId: string; wrappedKey: Uint8Array },
  ): Promise<void>;
  /** Rows per key id, ordered by key id (a full pass over the table: for operators). */
  countKeys(): Promise<KeyUsage[]>;
  /** Put back the undo copy of every row wrapped under `keyId` that keeps one; returns how many. */
  restorePreviousWrappings(keyId: string): Promise<number>;
  /** Discard the undo copies under `keyId`; returns how many. */
  forgetPreviousWrappings(keyId: string): Promise<number>;
  /** Every row, for operator tooling and for the tests that dump the database. Async iterable in hash order (the primary key's order). */
  scan(): AsyncIterable<StoredRow>;
  close(): Promise<void>;
}
