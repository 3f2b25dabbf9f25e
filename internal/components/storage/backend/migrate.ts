// Brings a database to this code's storage format (schema.ts) when a store opens it: at
// the current format it only reads the recorded version; below it, it runs the steps of
// every later format once and records each format when its steps are done. Each step
// is idempotent and each statement its own transaction, so replicas may open an old
// database together and a step interrupted by a crash is simply run again next time.

import { BASE_SQL, MIGRATIONS, MIGRATION_SQL, type MigrationStep, SCHEMA_VERSION } from "./schema.js";
import { type SqlResult, sqlStateOf } from "./sql-record-store.js";

/** Runs one statement and returns the driver's error as it is (its SQLSTATE is needed here). */
export type StatementRunner = <T>(sql: string, params?: readonly unknown[]) => Promise<SqlResult<T>>;

/** Rows per batch of a step that can touch many (as the sweep of spent token ids). */
export const MIGRATION_BATCH_ROWS = 1000;

/**
 * SQLSTATEs with which PostgreSQL fails the loser of two concurrent idempotent DDL
 * statements (CREATE ... IF NOT EXISTS checks the catalog before its insert into it
 * commits): unique_violation on the catalog's index, duplicate_table, duplicate_object,
 * duplicate_column. By the time it has failed, the winner has made the object.
 */
const LOST_DDL_RACE = new Set(["23505", "42P07", "42710", "42701"]);

/** The storage format a migration found and the one it left. */
export interface Migrated {
  from: number;
  to: number;
}

export async function migrate(run: StatementRunner): Promise<Migrated> {
  const from = await recordedVersion(run);
  if (from > SCHEMA_VERSION) {
    throw new Error(`the database is in storage format ${from}, newer than the ${SCHEMA_VERSION} this Storage knows: run a release that knows it`);
  }
  if (from === SCHEMA_VERSION) return { from, to: from };
  // Unrecorded: formats 1 and 2 kept no version, and a new database has none yet.
  if (from === 0) for (const statement of BASE_SQL) await ddl(run, statement);
  for (const { version, steps } of MIGRATIONS) {
    if (version <= from) continue;
    for (const step of steps) await runStep(run, step);
    await run(MIGRATION_SQL.recordVersion, [version]);
  }
  return { from, to: SCHEMA_VERSION };
}

/**
 * The recorded storage format; 0 when none is (a database of format 2 or older, or a new
 * one), after making the table to record it in. A database at the current format is
 * only read, so a role without the right to create tables can open it.
 */
async function recordedVersion(run: StatementRunner): Promise<number> {
  let rows: Array<{ version: number | string }>;
  try {
    ({ rows } = await run<{ version: number | string }>(MIGRATION_SQL.readVersion));
  } catch (error) {
    if (sqlStateOf(error) !== "42P01") throw error; // undefined_table
    await ddl(run, MIGRATION_SQL.createVersionTable);
    return 0;
  }
  if (rows[0] === undefined) return 0;
  const version = Number(rows[0].version);
  if (!Number.isSafeInteger(version) || version < 1) throw new Error("the database records a malformed storage format");
  return version;
}

async function runStep(run: StatementRunner, step: MigrationStep): Promise<void> {
  if ("ddl" in step) return ddl(run, step.ddl);
  // Rounding timestamps: one bounded range of the primary key per statement.
  let after = "";
  for (;;) {
    const { rows } = await run<{ last_hash: string | null; page_rows: number | string }>(MIGRATION_SQL.timestampPage, [after, MIGRATION_BATCH_ROWS]);
    const last = rows[0]?.last_hash;
    if (last === null || last === undefined) return;
    await run(MIGRATION_SQL.roundTimestamps, [after, last]);
    if (Number(rows[0]!.page_rows) < MIGRATION_BATCH_ROWS) return;
    after = last;
  }
}

async function ddl(run: StatementRunner, statement: string): Promise<void> {
  try {
    await run(statement);
  } catch (error) {
    const state = sqlStateOf(error);
    if (state === undefined || !LOST_DDL_RACE.has(state)) throw error;
    await run(statement);
  }
}
