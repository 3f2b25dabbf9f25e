// The RecordStore logic common to both backends: argument checks, the statements of
// schema.ts, and the mapping of "no row matched" onto typed errors. A backend only
// supplies a SqlExecutor that runs one statement.

import {
  AlreadyExistsError,
  InvalidArgumentError,
  NotFoundError,
  StorageError,
  TokenReusedError,
  UnavailableError,
  VersionConflictError,
} from "./errors.js";
import { RECORD_KINDS } from "./record-store.js";
import { MAX_BATCH_WRITES } from "./record-store.js";
import type { BatchWrite, KeyUsage, NewRow, RecordKindName, RecordStore, RowKey, StoredRow } from "./record-store.js";
import { SQL } from "./schema.js";
import type { DbKeyCountRow, DbPreviousCountRow, DbRecordKeyRow, DbRecordRow } from "./schema.js";

export const MAX_CIPHERTEXT_BYTES = 1024 * 1024;
/** A wrapped data key is 60 bytes today; the bound leaves room for another wrapping scheme. */
export const MAX_WRAPPED_KEY_BYTES = 512;
export const MAX_LIST_KEYS_ROWS = 1000;
// Rows per batch of the undo and forget statements.
const PREVIOUS_BATCH_ROWS = 500;
const HASH_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;
const KEY_ID_PATTERN = /^[\x20-\x7e]{1,64}$/;
/** base64url SHA-256, unpadded. */
const DIGEST_PATTERN = /^[A-Za-z0-9_-]{43}$/;
// A jti is minted by Token (random base64url); anything printable is tolerated.
const JTI_PATTERN = /^[\x21-\x7e]{1,256}$/;
// Rows per scan page: small enough that a page of 1 MiB ciphertexts stays bounded.
const SCAN_PAGE_ROWS = 50;
const SWEEP_BATCH_ROWS = 1000;

export interface SqlResult<T> {
  rows: T[];
  /** Rows inserted, updated, deleted or returned by the statement. */
  rowCount: number;
}

/**
 * Runs one SQL statement. Implementations must throw only StorageErrors (UnavailableError
 * for a database that cannot answer) or plain Errors of their own making: never a driver
 * error, since those carry the query parameters (hashes, ciphertext) in their fields.
 */
export interface SqlExecutor extends SqlSession {
  /**
   * Runs `work` in one transaction, on one session: its statements commit together, or,
   * when `work` throws, not at all (and `work`'s error is what this throws).
   */
  transaction<T>(work: (tx: SqlSession) => Promise<T>): Promise<T>;
  /**
   * Like query, for a read whose empty answer mints an Error Token ("no record"): an
   * empty answer is returned only once confirmed current (postgres-store.ts: the server
   * was still the primary its synchronous standby follows). Absent: query, for a backend
   * with no replicas (PGlite).
   */
  readConfirmingAbsence?<T>(sql: string, params: readonly unknown[]): Promise<SqlResult<T>>;
  close(): Promise<void>;
}

/** Where a statement runs: the executor itself, or one transaction of it. */
export interface SqlSession {
  query<T>(sql: string, params: readonly unknown[]): Promise<SqlResult<T>>;
}

/** The SQLSTATE of a database error, if it has one. */
export function sqlStateOf(error: unknown): string | undefined {
  const code = error instanceof Error ? (error as { code?: unknown }).code : undefined;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * SQLSTATEs that say "the database cannot serve this now; try again", as opposed to a
 * bug in a statement: connection exceptions (08), shutdown and statement timeout (57P0x,
 * 57014), out of resources (53), serialization failures that a distributed engine
 * reports under contention (40001, 40P01), and a read-only server (a replica or a
 * failover in progress: 25006).
 */
export function isUnavailableSqlState(state: string): boolean {
  return (
    state.startsWith("08") ||
    state.startsWith("53") ||
    state.startsWith("57P") ||
    state === "57014" ||
    state === "40001" ||
    state === "40P01" ||
    state === "25006"
  );
}

/** A database error made safe to log and return: its SQLSTATE, nothing of the query. */
export function sanitizeDatabaseError(error: unknown, backend: string): Error {
  if (error instanceof StorageError) return error;
  const state = sqlStateOf(error);
  if (state !== undefined && isUnavailableSqlState(state)) {
    return new UnavailableError(`${backend} is unavailable (SQLSTATE ${state})`);
  }
  return new Error(`${backend} failed the statement (SQLSTATE ${state ?? "unknown"})`);
}

export function sqlRecordStore(db: SqlExecutor): RecordStore {
  let closed = false;

  // Every operation checks its arguments, then that the store is open, then runs.
  function checkOpen(): void {
    if (closed) throw new UnavailableError("the record store is closed");
  }

  async function readRow(hash: string, kind: RecordKindName): Promise<StoredRow | undefined> {
    const read = db.readConfirmingAbsence ?? db.query;
    const { rows } = await read.call(db, SQL.read, [hash, kind]) as SqlResult<DbRecordRow>;
    return rows[0] === undefined ? undefined : toStoredRow(rows[0]);
  }

  /** After a compare-and-set matched no row: was it absent, or at another version (or, `orWhat`, in another state)? */
  async function missOrConflict(hash: string, kind: RecordKindName, orWhat = "", q: SqlSession = db): Promise<StorageError> {
    const { rows } = await q.query<{ version: unknown }>(SQL.exists, [hash, kind]);
    return rows.length === 0
      ? notFound(kind)
      : new VersionConflictError(`the ${kind} record for this key is not at the expected version${orWhat}`);
  }

  /** Runs a batched statement ($1 = key id, $2 = batch size) until a batch falls short. */
  async function batched(sql: string, keyId: string): Promise<number> {
    let total = 0;
    for (;;) {
      const { rowCount } = await db.query(sql, [keyId, PREVIOUS_BATCH_ROWS]);
      total += rowCount;
      if (rowCount < PREVIOUS_BATCH_ROWS) return total;
    }
  }

  async function createRow(q: SqlSession, row: NewRow): Promise<StoredRow> {
    const { rows } = await q.query<DbRecordRow>(SQL.create, [row.hash, row.kind, row.keyId, row.wrappedKey ?? null, row.ciphertext, row.digest]);
    // Not naming the kind: the existing row may be of another kind.
    if (rows[0] === undefined) throw new AlreadyExistsError("a record already exists for this key");
    return toStoredRow(rows[0]);
  }

  async function updateRow(q: SqlSession, hash: string, kind: RecordKindName, expectedVersion: number, next: UpdateContent): Promise<StoredRow> {
    const { rows } = await q.query<DbRecordRow>(SQL.update, [hash, kind, expectedVersion, next.keyId, next.wrappedKey ?? null, next.ciphertext, next.digest]);
    if (rows[0] === undefined) throw await missOrConflict(hash, kind, "", q);
    return toStoredRow(rows[0]);
  }

  async function deleteRow(q: SqlSession, hash: string, kind: RecordKindName, expectedVersion: number | undefined): Promise<void> {
    const { rowCount } =
      expectedVersion === undefined
        ? await q.query(SQL.delete, [hash, kind])
        : await q.query(SQL.deleteAtVersion, [hash, kind, expectedVersion]);
    if (rowCount === 0) throw await missOrConflict(hash, kind, "", q);
  }

  return {
    async create(row: NewRow): Promise<StoredRow> {
      checkCreate(row);
      checkOpen();
      return createRow(db, row);
    },

    async read(hash: string, kind: RecordKindName): Promise<StoredRow> {
      checkHash(hash);
      checkKind(kind);
      checkOpen();
      const row = await readRow(hash, kind);
      if (row === undefined) throw notFound(kind);
      return row;
    },

    async update(hash, kind, expectedVersion, next): Promise<StoredRow> {
      checkUpdate(hash, kind, expectedVersion, next);
      checkOpen();
      return updateRow(db, hash, kind, expectedVersion, next);
    },

    async setLegacyDigest(hash, kind, expectedVersion, digest): Promise<StoredRow> {
      checkHash(hash);
      checkKind(kind);
      checkVersion(expectedVersion);
      checkDigest(digest);
      checkOpen();
      const { rows } = await db.query<DbRecordRow>(SQL.setLegacyDigest, [hash, kind, expectedVersion, digest]);
      if (rows[0] === undefined) throw await missOrConflict(hash, kind, ", or it already has a digest");
      return toStoredRow(rows[0]);
    },

    async delete(hash, kind, expectedVersion): Promise<void> {
      checkDelete(hash, kind, expectedVersion);
      checkOpen();
      await deleteRow(db, hash, kind, expectedVersion);
    },

    async writeBatch(writes: readonly BatchWrite[]): Promise<Array<StoredRow | undefined>> {
      if (!Array.isArray(writes) || writes.length < 1 || writes.length > MAX_BATCH_WRITES) {
        throw new InvalidArgumentError(`a batch must hold 1 to ${MAX_BATCH_WRITES} writes`);
      }
      const hashes = new Set<string>();
      for (const [i, w] of writes.entries()) {
        at(i, writes.length, () => {
          if (w.op === "create") checkCreate(w.row);
          else if (w.op === "update") checkUpdate(w.hash, w.kind, w.expectedVersion, w.next);
          else if (w.op === "delete") checkDelete(w.hash, w.kind, w.expectedVersion);
          else throw new InvalidArgumentError("op must be create, update or delete");
        });
        const hash = w.op === "create" ? w.row.hash : w.hash;
        if (hashes.has(hash)) throw new InvalidArgumentError("each write of a batch must name another record");
        hashes.add(hash);
      }
      checkOpen();
      return db.transaction(async (tx) => {
        const written: Array<StoredRow | undefined> = [];
        for (const [i, w] of writes.entries()) {
          written.push(await atAsync(i, writes.length, () =>
            w.op === "create" ? createRow(tx, w.row)
              : w.op === "update" ? updateRow(tx, w.hash, w.kind, w.expectedVersion, w.next)
              : deleteRow(tx, w.hash, w.kind, w.expectedVersion).then(() => undefined)));
        }
        return written;
      });
    },

    async spendTokenId(jti: string, expiresAt: Date): Promise<void> {
      if (typeof jti !== "string" || !JTI_PATTERN.test(jti)) {
        throw new InvalidArgumentError("jti must be 1 to 256 printable ASCII characters without spaces");
      }
      checkDate(expiresAt, "expiresAt");
      checkOpen();
      const { rowCount } = await db.query(SQL.spendTokenId, [jti, expiresAt]);
      if (rowCount === 0) throw new TokenReusedError("this token was already used");
    },

    async sweepSpentTokenIds(now: Date = new Date()): Promise<number> {
      checkDate(now, "now");
      checkOpen();
      let total = 0;
      for (;;) {
        const { rowCount } = await db.query(SQL.sweepSpentTokenIds, [now, SWEEP_BATCH_ROWS]);
        total += rowCount;
        if (rowCount < SWEEP_BATCH_ROWS) return total;
      }
    },

    async listKeys(keyId: string, options: { after?: string; limit: number }): Promise<RowKey[]> {
      checkKeyId(keyId);
      if (options.after !== undefined) checkHash(options.after);
      if (!Number.isSafeInteger(options.limit) || options.limit < 1 || options.limit > MAX_LIST_KEYS_ROWS) {
        throw new InvalidArgumentError(`limit must be an integer from 1 to ${MAX_LIST_KEYS_ROWS}`);
      }
      checkOpen();
      const { rows } =
        options.after === undefined
          ? await db.query<DbRecordKeyRow>(SQL.listKeysFirst, [keyId, options.limit])
          : await db.query<DbRecordKeyRow>(SQL.listKeysAfter, [keyId, options.after, options.limit]);
      return rows.map(toRowKey);
    },

    async rewrapKey(hash, kind, expected, next): Promise<void> {
      checkHash(hash);
      checkKind(kind);
      checkVersion(expected.version);
      checkKeyId(expected.keyId);
      checkWrappedKey(expected.wrappedKey);
      checkKeyId(next.keyId);
      checkWrappedKey(next.wrappedKey);
      if (next.keyId === expected.keyId) {
        throw new InvalidArgumentError("a re-wrap must move the data key to another key id than the one it is under");
      }
      checkOpen();
      const { rows } = await db.query<{ hash: string }>(SQL.rewrapKey, [
        hash,
        kind,
        expected.version,
        expected.keyId,
        expected.wrappedKey,
        next.keyId,
        next.wrappedKey,
      ]);
      if (rows.length === 0) throw await missOrConflict(hash, kind);
    },

    async countKeys(): Promise<KeyUsage[]> {
      checkOpen();
      const usage = new Map<string, KeyUsage>();
      const entry = (keyId: string) => {
        let found = usage.get(keyId);
        if (!found) usage.set(keyId, (found = { keyId, records: 0, legacyRecords: 0, previousWrappings: 0 }));
        return found;
      };
      for (const row of (await db.query<DbKeyCountRow>(SQL.countKeys, [])).rows) {
        Object.assign(entry(row.key_id), { records: toCount(row.records), legacyRecords: toCount(row.legacy_records) });
      }
      for (const row of (await db.query<DbPreviousCountRow>(SQL.countPreviousKeys, [])).rows) {
        entry(row.key_id).previousWrappings = toCount(row.previous_wrappings);
      }
      return [...usage.values()].sort((a, b) => (a.keyId < b.keyId ? -1 : a.keyId > b.keyId ? 1 : 0));
    },

    async restorePreviousWrappings(keyId: string): Promise<number> {
      checkKeyId(keyId);
      checkOpen();
      return batched(SQL.restorePrevious, keyId);
    },

    async forgetPreviousWrappings(keyId: string): Promise<number> {
      checkKeyId(keyId);
      checkOpen();
      return batched(SQL.forgetPrevious, keyId);
    },

    async *scan(): AsyncIterable<StoredRow> {
      checkOpen();
      let after: string | undefined;
      for (;;) {
        const { rows } =
          after === undefined
            ? await db.query<DbRecordRow>(SQL.scanFirst, [SCAN_PAGE_ROWS])
            : await db.query<DbRecordRow>(SQL.scanAfter, [after, SCAN_PAGE_ROWS]);
        for (const row of rows) yield toStoredRow(row);
        const last = rows.at(-1);
        if (last === undefined || rows.length < SCAN_PAGE_ROWS) return;
        after = last.hash;
      }
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await db.close();
    },
  };
}

type UpdateContent = { keyId: string; wrappedKey?: Uint8Array; ciphertext: Uint8Array; digest: string };

function checkCreate(row: NewRow): void {
  checkHash(row.hash);
  checkKind(row.kind);
  checkContent(row);
}

function checkUpdate(hash: string, kind: RecordKindName, expectedVersion: number, next: UpdateContent): void {
  checkHash(hash);
  checkKind(kind);
  checkVersion(expectedVersion);
  checkContent(next);
}

function checkDelete(hash: string, kind: RecordKindName, expectedVersion: number | undefined): void {
  checkHash(hash);
  checkKind(kind);
  if (expectedVersion !== undefined) checkVersion(expectedVersion);
}

/** A StorageError of write `i` of a batch of `n`, saying which: the same error, its message prefixed with the write's position. */
function positioned(i: number, n: number, error: unknown): unknown {
  if (!(error instanceof StorageError) || error.code === "unavailable") return error;
  const ErrorClass = error.constructor as new (message: string) => StorageError;
  return new ErrorClass(`write ${i + 1} of ${n}: ${error.message}`);
}

function at(i: number, n: number, check: () => void): void {
  try {
    check();
  } catch (error) {
    throw positioned(i, n, error);
  }
}

async function atAsync<T>(i: number, n: number, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    throw positioned(i, n, error);
  }
}

function notFound(kind: RecordKindName): NotFoundError {
  return new NotFoundError(`no ${kind} record for this key`);
}

function toStoredRow(row: DbRecordRow): StoredRow {
  const version = Number(row.version);
  if (!isKind(row.kind) || !Number.isSafeInteger(version) || (row.previous_key_id === null) !== (row.previous_wrapped_key === null)) {
    throw new Error("the database returned a malformed record row");
  }
  return {
    hash: row.hash,
    kind: row.kind,
    keyId: row.key_id,
    ...(row.wrapped_key === null ? {} : { wrappedKey: new Uint8Array(row.wrapped_key) }),
    ...(row.previous_key_id === null
      ? {}
      : { previousKeyId: row.previous_key_id, previousWrappedKey: new Uint8Array(row.previous_wrapped_key!) }),
    // A copy, so callers get a plain Uint8Array that owns its memory: pg returns a Buffer,
    // often a view into Node's shared allocation pool.
    ciphertext: new Uint8Array(row.ciphertext),
    version,
    ...(row.digest === null ? {} : { digest: row.digest }),
    createTime: row.create_time,
    updateTime: row.update_time,
  };
}

function toRowKey(row: DbRecordKeyRow): RowKey {
  const version = Number(row.version);
  if (!isKind(row.kind) || !Number.isSafeInteger(version)) {
    throw new Error("the database returned a malformed record row");
  }
  return {
    hash: row.hash,
    kind: row.kind,
    version,
    keyId: row.key_id,
    ...(row.wrapped_key === null ? {} : { wrappedKey: new Uint8Array(row.wrapped_key) }),
  };
}

function toCount(value: number | string | bigint | null): number {
  const count = Number(value ?? 0);
  if (!Number.isSafeInteger(count) || count < 0) throw new Error("the database returned a malformed count");
  return count;
}

function isKind(kind: unknown): kind is RecordKindName {
  return (RECORD_KINDS as readonly unknown[]).includes(kind);
}

// The checks below run before the database is touched, so a bad argument never becomes
// a half-understood SQL error, and their messages say what to fix without echoing the
// value (which may be a user-linked hash).

function checkHash(hash: unknown): void {
  if (typeof hash !== "string" || !HASH_PATTERN.test(hash)) {
    throw new InvalidArgumentError("hash must be 1 to 128 base64url characters (A-Z a-z 0-9 - _)");
  }
}

function checkKind(kind: unknown): asserts kind is RecordKindName {
  if (!isKind(kind)) throw new InvalidArgumentError(`kind must be one of ${RECORD_KINDS.join(", ")}`);
}

function checkKeyId(keyId: unknown): void {
  if (typeof keyId !== "string" || !KEY_ID_PATTERN.test(keyId)) {
    throw new InvalidArgumentError("keyId must be 1 to 64 printable ASCII characters");
  }
}

function checkCiphertext(ciphertext: unknown): void {
  if (!(ciphertext instanceof Uint8Array)) throw new InvalidArgumentError("ciphertext must be a Uint8Array");
  if (ciphertext.byteLength < 1 || ciphertext.byteLength > MAX_CIPHERTEXT_BYTES) {
    throw new InvalidArgumentError(
      `ciphertext must be 1 to ${MAX_CIPHERTEXT_BYTES} bytes, not ${ciphertext.byteLength}`,
    );
  }
}

function checkWrappedKey(wrappedKey: unknown): void {
  if (!(wrappedKey instanceof Uint8Array)) throw new InvalidArgumentError("wrappedKey must be a Uint8Array");
  if (wrappedKey.byteLength < 1 || wrappedKey.byteLength > MAX_WRAPPED_KEY_BYTES) {
    throw new InvalidArgumentError(`wrappedKey must be 1 to ${MAX_WRAPPED_KEY_BYTES} bytes, not ${wrappedKey.byteLength}`);
  }
}

function checkDigest(digest: unknown): void {
  if (typeof digest !== "string" || !DIGEST_PATTERN.test(digest)) {
    throw new InvalidArgumentError("digest must be a base64url SHA-256: 43 characters of A-Z a-z 0-9 - _");
  }
}

/** What a create and an update both write: the key ids, the ciphertext and its digest. */
function checkContent(row: Pick<NewRow, "keyId" | "wrappedKey" | "ciphertext" | "digest">): void {
  checkKeyId(row.keyId);
  if (row.wrappedKey !== undefined) checkWrappedKey(row.wrappedKey);
  checkCiphertext(row.ciphertext);
  checkDigest(row.digest);
}

function checkVersion(version: unknown): void {
  if (typeof version !== "number" || !Number.isSafeInteger(version) || version < 1) {
    throw new InvalidArgumentError("expectedVersion must be an integer of at least 1");
  }
}

function checkDate(date: unknown, name: string): void {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
    throw new InvalidArgumentError(`${name} must be a valid Date`);
  }
}
