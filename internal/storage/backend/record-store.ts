// The Storage component's database layer: one narrow interface, implemented by PGlite
// (embedded, the default) and by PostgreSQL through `pg` (DESIGN.md §7). Storage holds
// only opaque rows; it never sees plaintext, and it cannot tell whose row is whose.

export type RecordKindName = "subject" | "release" | "wallet";

export const RECORD_KINDS: readonly RecordKindName[] = ["subject", "release", "wallet"];

export interface StoredRow {
  /** base64url keyed hash, the primary key (43 chars for HMAC-SHA256; 1..128 of [A-Za-z0-9_-] accepted). */
  hash: string;
  kind: RecordKindName;
  /** Encryption keyring key id, 1..64 printable ASCII. */
  keyId: string;
  /** 1 byte .. 1 MiB. */
  ciphertext: Uint8Array;
  /** 1 on create, +1 per update. */
  version: number;
  createTime: Date;
  updateTime: Date;
}

export interface NewRow {
  hash: string;
  kind: RecordKindName;
  keyId: string;
  ciphertext: Uint8Array;
}

export interface RecordStore {
  /** Insert only if no row has this hash. Throws AlreadyExistsError otherwise. Linearizable. */
  create(row: NewRow): Promise<StoredRow>;
  /** Linearizable read (primary). Throws NotFoundError if no row has this hash, or if the row's kind differs from `kind`. */
  read(hash: string, kind: RecordKindName): Promise<StoredRow>;
  /** Replace keyId+ciphertext iff current version === expectedVersion; version+1, updateTime=now. NotFoundError if absent (or kind differs), VersionConflictError if version differs. */
  update(
    hash: string,
    kind: RecordKindName,
    expectedVersion: number,
    next: { keyId: string; ciphertext: Uint8Array },
  ): Promise<StoredRow>;
  /** Delete; if expectedVersion given, only at that version. NotFoundError / VersionConflictError. */
  delete(hash: string, kind: RecordKindName, expectedVersion?: number): Promise<void>;
  /** Record that a single-use token id (jti) was spent, until expiresAt. Throws TokenReusedError if it was already spent. Atomic across replicas. */
  spendTokenId(jti: string, expiresAt: Date): Promise<void>;
  /** Delete spent token ids whose expiresAt < now; returns how many. */
  sweepSpentTokenIds(now?: Date): Promise<number>;
  /** Every row, for operator tooling and for the tests that dump the database. Async iterable in hash order (the primary key's order). */
  scan(): AsyncIterable<StoredRow>;
  close(): Promise<void>;
}
