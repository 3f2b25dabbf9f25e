// The SQL of the record store, shared by the PGlite and the PostgreSQL backends.
//
// Kept portable to distributed PostgreSQL-compatible engines (CockroachDB, YugabyteDB),
// so the store can grow past one machine (docs/design.md §7): no SERIAL or sequences, no
// triggers, no explicit transactions; every statement touches one row, keyed by its
// primary key, so it is atomic on its own (the batched statements — the sweep, the undo
// of a re-wrap, the migration's rounding — touch a bounded number of rows each).
// Timestamps come from the database clock (now()), so replicas with skewed clocks still
// agree on one source, and are kept to the UTC day (docs/design.md §5): the rows one login
// writes are not tied together by the millisecond they were written.
//
// Storage format (SCHEMA_VERSION), recorded since format 3 in the one-row table
// schema_version. migrate.ts reads it at every open: at the current version it does
// nothing; below it, it applies BASE_SQL (format 2 as that release made it, all
// CREATE/ADD ... IF NOT EXISTS, which also brings a new or a format-1 database to 2)
// and then the steps of each later format, and records the version last. Every step is
// idempotent, so two Storage replicas opening an old database at once may both run
// them; a database of a newer format than this code knows is refused. A later format
// adds its steps to MIGRATIONS and bumps SCHEMA_VERSION. Rows that a replica of an
// older release writes after the migration (a rolling upgrade) keep that release's form;
// setting schema_version back once it has stopped makes the next open run the steps again.
//
//   1  records, spent_token_ids
//   2  envelope encryption (docs/keyring-rotation.md): records.wrapped_key (the record's
//      data key wrapped under keyring key key_id; NULL for a version-1 row, sealed
//      directly under key_id), records.previous_key_id and previous_wrapped_key (the
//      wrapping a row had before its first re-wrap, kept so that Storage's custodian
//      can undo a bad re-wrap; both NULL or both set), and an index to list rows by
//      key id.
//   3  privacy and receipts (issue 11): schema_version; records.digest (base64url
//      SHA-256 of the record as written, from the writer's Access Token; NULL for rows
//      written before, until setLegacyDigest gives them one); create_time and
//      update_time written as the UTC day, and existing rows rounded down to theirs;
//      a fourth kind, 'reservation' (the kind CHECK, which CREATE TABLE named
//      records_kind_check on PostgreSQL and YugabyteDB, is replaced; an engine that
//      generated another name for it, as CockroachDB may, needs that one dropped by
//      hand, or the old CHECK keeps refusing reservations).
//   4  the credential wallet (docs/wallet-server.md): three more kinds, 's2s-session',
//      'credential' and 'holdings' (the kind CHECK replaced as in format 3, with the
//      same caveat for an engine that named it otherwise). Nothing else changes: no
//      column is added, and no row is rewritten (VALIDATE only reads them).

export const SCHEMA_VERSION = 4;

/** The record kinds the kind CHECK allows (record-store.ts RECORD_KINDS). */
const KINDS_SQL = "'subject', 'release', 'wallet', 'reservation', 's2s-session', 'credential', 'holdings'";
/** The kinds of format 3, as its step wrote them: a database of format 2 passes through it on its way. */
const FORMAT_3_KINDS_SQL = "'subject', 'release', 'wallet', 'reservation'";

/**
 * Replaces the kind CHECK with one that allows `kinds`. One statement, so no moment
 * without a kind CHECK, and idempotent: a second replica drops the constraint the first
 * added and adds it again. NOT VALID then VALIDATE: the table is not locked against
 * writes while its rows are checked (a new list only adds kinds, so none can fail).
 */
const replaceKindCheck = (kinds: string): MigrationStep[] => [
  {
    ddl: `ALTER TABLE records DROP CONSTRAINT IF EXISTS records_kind_check,
          ADD CONSTRAINT records_kind_check CHECK (kind IN (${kinds})) NOT VALID`,
  },
  { ddl: "ALTER TABLE records VALIDATE CONSTRAINT records_kind_check" },
];

/**
 * Format 2 exactly as it was applied at every open, one statement per entry: what a
 * database of any older format (or none) is brought to before the later steps run.
 */
export const BASE_SQL: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS records (
    hash        TEXT        PRIMARY KEY,
    kind        TEXT        NOT NULL CHECK (kind IN ('subject', 'release', 'wallet')),
    key_id      TEXT        NOT NULL,
    ciphertext  BYTEA       NOT NULL,
    version     BIGINT      NOT NULL,
    create_time TIMESTAMPTZ NOT NULL,
    update_time TIMESTAMPTZ NOT NULL
  )`,
  `CREATE TABLE IF NOT EXISTS spent_token_ids (
    jti        TEXT        PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
  )`,
  "ALTER TABLE records ADD COLUMN IF NOT EXISTS wrapped_key BYTEA",
  "ALTER TABLE records ADD COLUMN IF NOT EXISTS previous_key_id TEXT",
  "ALTER TABLE records ADD COLUMN IF NOT EXISTS previous_wrapped_key BYTEA",
  "CREATE INDEX IF NOT EXISTS records_by_key_id ON records (key_id, hash)",
  "CREATE INDEX IF NOT EXISTS records_by_previous_key_id ON records (previous_key_id)",
];

/** A step of a format: a statement run once, or a batched statement run until it touches nothing more. */
export type MigrationStep = { readonly ddl: string } | { readonly batched: "roundTimestamps" };

/** The steps that bring a database of format `version - 1` to `version`. */
export const MIGRATIONS: ReadonlyArray<{ readonly version: number; readonly steps: readonly MigrationStep[] }> = [
  {
    version: 3,
    steps: [
      { ddl: "ALTER TABLE records ADD COLUMN IF NOT EXISTS digest TEXT" },
      ...replaceKindCheck(FORMAT_3_KINDS_SQL),
      { batched: "roundTimestamps" },
    ],
  },
  { version: 4, steps: replaceKindCheck(KINDS_SQL) },
];

/** The UTC day of a timestamptz expression, as a timestamptz (midnight UTC), whatever the session's time zone. */
const utcDay = (expression: string) => `(date_trunc('day', ${expression} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')`;
const TODAY = utcDay("now()");

/** The columns every row-returning statement returns, in the shape of DbRecordRow. */
const COLUMNS =
  "hash, kind, key_id, wrapped_key, previous_key_id, previous_wrapped_key, ciphertext, version, digest, create_time, update_time";
/** What key maintenance sees of a row: never the ciphertext. */
const KEY_COLUMNS = "hash, kind, key_id, wrapped_key, version";

/** A `records` row as the drivers return it (pg returns BIGINT as a string, PGlite as a number). */
export interface DbRecordRow {
  hash: string;
  kind: string;
  key_id: string;
  wrapped_key: Uint8Array | null;
  previous_key_id: string | null;
  previous_wrapped_key: Uint8Array | null;
  ciphertext: Uint8Array;
  version: number | string | bigint;
  digest: string | null;
  create_time: Date;
  update_time: Date;
}

/** A row as key maintenance lists it (no ciphertext column is even selected). */
export interface DbRecordKeyRow {
  hash: string;
  kind: string;
  key_id: string;
  wrapped_key: Uint8Array | null;
  version: number | string | bigint;
}

/** Rows per key id (counts come back as strings from pg, numbers from PGlite). */
export interface DbKeyCountRow {
  key_id: string;
  records: number | string | bigint;
  legacy_records: number | string | bigint;
}
export interface DbPreviousCountRow {
  key_id: string;
  previous_wrappings: number | string | bigint;
}

export const SQL = {
  // ON CONFLICT DO NOTHING rather than catching a unique violation: no error to parse,
  // and an empty RETURNING is the whole answer to "did someone else create it first".
  create: `INSERT INTO records (hash, kind, key_id, wrapped_key, ciphertext, digest, version, create_time, update_time)
    VALUES ($1, $2, $3, $4, $5, $6, 1, ${TODAY}, ${TODAY})
    ON CONFLICT (hash) DO NOTHING
    RETURNING ${COLUMNS}`,

  read: `SELECT ${COLUMNS} FROM records WHERE hash = $1 AND kind = $2`,

  /** After an update or delete matched nothing: does the row exist at all (→ version conflict)? */
  exists: `SELECT version FROM records WHERE hash = $1 AND kind = $2`,

  // Compare-and-set on version in one statement: the check and the write cannot be split
  // by a concurrent writer, on one server or many. A new ciphertext comes with a new
  // data key, so any undo copy of the old wrapping goes with the old ciphertext.
  update: `UPDATE records
    SET key_id = $4, wrapped_key = $5, ciphertext = $6, digest = $7, version = version + 1, update_time = ${TODAY},
      previous_key_id = NULL, previous_wrapped_key = NULL
    WHERE hash = $1 AND kind = $2 AND version = $3
    RETURNING ${COLUMNS}`,

  // Compare-and-set on the version and on there being no digest yet: a digest, once
  // there, changes only with the record it describes (update). Nothing else changes.
  setLegacyDigest: `UPDATE records SET digest = $4
    WHERE hash = $1 AND kind = $2 AND version = $3 AND digest IS NULL
    RETURNING ${COLUMNS}`,

  delete: `DELETE FROM records WHERE hash = $1 AND kind = $2`,
  deleteAtVersion: `DELETE FROM records WHERE hash = $1 AND kind = $2 AND version = $3`,

  // Keyset pagination: each page is one short statement that uses the primary key index,
  // rather than one long-running cursor (which would pin a snapshot and a connection).
  scanFirst: `SELECT ${COLUMNS} FROM records ORDER BY hash LIMIT $1`,
  scanAfter: `SELECT ${COLUMNS} FROM records WHERE hash > $1 ORDER BY hash LIMIT $2`,

  // Key maintenance (docs/keyring-rotation.md). Listing pages through the (key_id, hash)
  // index and never selects the ciphertext.
  listKeysFirst: `SELECT ${KEY_COLUMNS} FROM records WHERE key_id = $1 ORDER BY hash LIMIT $2`,
  listKeysAfter: `SELECT ${KEY_COLUMNS} FROM records WHERE key_id = $1 AND hash > $2 ORDER BY hash LIMIT $3`,

  // Compare-and-set on everything the re-wrap was computed from: the version (a
  // concurrent update wins), and the key id and wrapped key themselves, since a row
  // deleted and created again restarts at version 1 with another data key. The version
  // and update time stay: the record has not changed, and a writer holding the version
  // it read must still succeed. The first re-wrap's starting point is kept (COALESCE):
  // later re-wraps cannot push it out, so only a token-authorized write or Storage's
  // custodian ever discards it. (Right-hand sides of SET read the row before the update.)
  rewrapKey: `UPDATE records
    SET previous_key_id = COALESCE(previous_key_id, key_id),
      previous_wrapped_key = CASE WHEN previous_key_id IS NULL THEN wrapped_key ELSE previous_wrapped_key END,
      key_id = $6, wrapped_key = $7
    WHERE hash = $1 AND kind = $2 AND version = $3 AND key_id = $4 AND wrapped_key = $5
    RETURNING hash`,

  // Operator statistics: a full pass over the table, so for status, not for logins.
  // (CASE rather than FILTER, which not every PostgreSQL-compatible engine has.)
  countKeys: `SELECT key_id, count(*) AS records,
      sum(CASE WHEN wrapped_key IS NULL THEN 1 ELSE 0 END) AS legacy_records
    FROM records GROUP BY key_id`,
  countPreviousKeys: `SELECT previous_key_id AS key_id, count(*) AS previous_wrappings
    FROM records WHERE previous_key_id IS NOT NULL GROUP BY previous_key_id`,

  // Storage's custodian's undo and forget, in batches like the sweep below. The
  // conditions are repeated outside the subquery: an UPDATE re-checks its own WHERE on
  // a row that changed meanwhile (a concurrent update clears the undo copy), not the
  // subquery's.
  restorePrevious: `UPDATE records
    SET key_id = previous_key_id, wrapped_key = previous_wrapped_key,
      previous_key_id = NULL, previous_wrapped_key = NULL
    WHERE hash IN (SELECT hash FROM records WHERE key_id = $1 AND previous_key_id IS NOT NULL LIMIT $2)
      AND key_id = $1 AND previous_key_id IS NOT NULL`,
  forgetPrevious: `UPDATE records
    SET previous_key_id = NULL, previous_wrapped_key = NULL
    WHERE hash IN (SELECT hash FROM records WHERE previous_key_id = $1 LIMIT $2)
      AND previous_key_id = $1`,

  // Atomic across replicas: of concurrent spenders of one jti, exactly one inserts a row.
  spendTokenId: `INSERT INTO spent_token_ids (jti, expires_at) VALUES ($1, $2)
    ON CONFLICT (jti) DO NOTHING`,
  // In batches, so one sweep after a long outage is not one huge statement (CockroachDB
  // limits a transaction's size); DELETE ... LIMIT is not PostgreSQL, the subquery is.
  sweepSpentTokenIds: `DELETE FROM spent_token_ids WHERE jti IN (
    SELECT jti FROM spent_token_ids WHERE expires_at < $1 LIMIT $2)`,
} as const;

/** The statements of migrate.ts. */
export const MIGRATION_SQL = {
  createVersionTable: `CREATE TABLE IF NOT EXISTS schema_version (
    id      INT PRIMARY KEY CHECK (id = 1),
    version INT NOT NULL
  )`,
  readVersion: "SELECT version FROM schema_version WHERE id = 1",
  // Never lowers it: an older replica finishing late cannot undo a newer one's record.
  recordVersion: `INSERT INTO schema_version (id, version) VALUES (1, $1)
    ON CONFLICT (id) DO UPDATE SET version = GREATEST(schema_version.version, excluded.version)`,

  // Rounding existing rows down to their UTC day, a range of the primary key at a time
  // (CockroachDB limits a transaction's size; each statement here is its own): the
  // page's last hash, then the rows of that range not yet rounded. Idempotent, and a
  // row written meanwhile is already rounded. ('' sorts before every hash, which is never empty.)
  timestampPage: `SELECT max(hash) AS last_hash, count(*) AS page_rows FROM (
    SELECT hash FROM records WHERE hash > $1 ORDER BY hash LIMIT $2) AS page`,
  roundTimestamps: `UPDATE records
    SET create_time = ${utcDay("create_time")}, update_time = ${utcDay("update_time")}
    WHERE hash > $1 AND hash <= $2
      AND (create_time <> ${utcDay("create_time")} OR update_time <> ${utcDay("update_time")})`,
} as const;
