// The SQL of the record store, shared by the PGlite and the PostgreSQL backends.
//
// Kept portable to distributed PostgreSQL-compatible engines (CockroachDB, YugabyteDB),
// so the store can grow past one machine (DESIGN.md §7): no SERIAL or sequences, no
// triggers, no explicit transactions; every statement touches one row, keyed by its
// primary key, so it is atomic on its own. Timestamps come from the database clock
// (now()), so replicas with skewed clocks still agree on one source.
//
// schema_version 1. The schema is applied with CREATE ... IF NOT EXISTS at every open;
// a later version must add its changes the same way (ADD COLUMN IF NOT EXISTS …) and
// bump this note, since there is no migration table to consult.

export const SCHEMA_VERSION = 1;

export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS records (
  hash        TEXT        PRIMARY KEY,
  kind        TEXT        NOT NULL CHECK (kind IN ('subject', 'release', 'wallet')),
  key_id      TEXT        NOT NULL,
  ciphertext  BYTEA       NOT NULL,
  version     BIGINT      NOT NULL,
  create_time TIMESTAMPTZ NOT NULL,
  update_time TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS spent_token_ids (
  jti        TEXT        PRIMARY KEY,
  expires_at TIMESTAMPTZ NOT NULL
);
`;

/** The columns every row-returning statement returns, in the shape of DbRecordRow. */
const COLUMNS = "hash, kind, key_id, ciphertext, version, create_time, update_time";

/** A `records` row as the drivers return it (pg returns BIGINT as a string, PGlite as a number). */
export interface DbRecordRow {
  hash: string;
  kind: string;
  key_id: string;
  ciphertext: Uint8Array;
  version: number | string | bigint;
  create_time: Date;
  update_time: Date;
}

export const SQL = {
  // ON CONFLICT DO NOTHING rather than catching a unique violation: no error to parse,
  // and an empty RETURNING is the whole answer to "did someone else create it first".
  create: `INSERT INTO records (${COLUMNS})
    VALUES ($1, $2, $3, $4, 1, now(), now())
    ON CONFLICT (hash) DO NOTHING
    RETURNING ${COLUMNS}`,

  read: `SELECT ${COLUMNS} FROM records WHERE hash = $1 AND kind = $2`,

  /** After an update or delete matched nothing: does the row exist at all (→ version conflict)? */
  exists: `SELECT version FROM records WHERE hash = $1 AND kind = $2`,

  // Compare-and-set on version in one statement: the check and the write cannot be split
  // by a concurrent writer, on one server or many.
  update: `UPDATE records
    SET key_id = $4, ciphertext = $5, version = version + 1, update_time = now()
    WHERE hash = $1 AND kind = $2 AND version = $3
    RETURNING ${COLUMNS}`,

  delete: `DELETE FROM records WHERE hash = $1 AND kind = $2`,
  deleteAtVersion: `DELETE FROM records WHERE hash = $1 AND kind = $2 AND version = $3`,

  // Keyset pagination: each page is one short statement that uses the primary key index,
  // rather than one long-running cursor (which would pin a snapshot and a connection).
  scanFirst: `SELECT ${COLUMNS} FROM records ORDER BY hash LIMIT $1`,
  scanAfter: `SELECT ${COLUMNS} FROM records WHERE hash > $1 ORDER BY hash LIMIT $2`,

  // Atomic across replicas: of concurrent spenders of one jti, exactly one inserts a row.
  spendTokenId: `INSERT INTO spent_token_ids (jti, expires_at) VALUES ($1, $2)
    ON CONFLICT (jti) DO NOTHING`,
  // In batches, so one sweep after a long outage is not one huge statement (CockroachDB
  // limits a transaction's size); DELETE ... LIMIT is not PostgreSQL, the subquery is.
  sweepSpentTokenIds: `DELETE FROM spent_token_ids WHERE jti IN (
    SELECT jti FROM spent_token_ids WHERE expires_at < $1 LIMIT $2)`,
} as const;
