// The default backend: PGlite, PostgreSQL compiled to WebAssembly, running in this
// process over a data directory on disk (or in memory, for tests).
//
// PGlite is one backend with one session. Its query() and exec() each take an internal
// mutex (see BasePGlite: query → _runExclusiveTransaction → _runExclusiveQuery), so
// concurrent calls from this process are queued and run one at a time, and a
// transaction() holds the session for all its statements; so no locking of our own is
// needed. Because there is one session, this backend is also trivially linearizable.
//
// A data directory must be used by one process at a time: PGlite does not take
// PostgreSQL's postmaster.pid lock against a second process, so we take our own.

import { mkdir } from "node:fs/promises";

import { PGlite } from "@electric-sql/pglite";

import type { RecordStore } from "./record-store.js";
import { timeLeftForStatement } from "./deadline.js";
import { lockDirectory } from "./directory-lock.js";
import { migrate } from "./migrate.js";
import { sanitizeDatabaseError, sqlRecordStore } from "./sql-record-store.js";
import type { SqlExecutor, SqlResult } from "./sql-record-store.js";

const BACKEND = "the embedded database (PGlite)";

/** Opens (creating if needed) a PGlite record store; `dataDir` undefined means in memory. */
export async function openPGliteStore(options: { dataDir?: string }): Promise<RecordStore> {
  let unlock = async () => {};
  if (options.dataDir !== undefined) {
    await mkdir(options.dataDir, { recursive: true });
    unlock = await lockDirectory(options.dataDir);
  }
  let db: PGlite;
  try {
    db = await openDatabase(options.dataDir);
  } catch (error) {
    await unlock();
    // Only the directory and the schema are in play yet, nothing user-linked, so the
    // driver's message is kept: it is what tells an operator what is wrong.
    throw new Error(`cannot open ${BACKEND}: ${error instanceof Error ? error.message : String(error)}`);
  }

  const executor: SqlExecutor = {
    async query<T>(sql: string, params: readonly unknown[]): Promise<SqlResult<T>> {
      try {
        // PGlite runs in this process and cannot be interrupted; a statement for a
        // request that has already given up is just not sent (deadline.ts).
        timeLeftForStatement(Number.POSITIVE_INFINITY);
        return await run<T>(db, sql, params);
      } catch (error) {
        throw sanitizeDatabaseError(error, BACKEND);
      }
    },
    async transaction<T>(work: (tx: { query<R>(sql: string, params: readonly unknown[]): Promise<SqlResult<R>> }) => Promise<T>): Promise<T> {
      timeLeftForStatement(Number.POSITIVE_INFINITY);
      let failed: unknown;
      try {
        return await db.transaction(async (tx) => {
          try {
            return await work({
              async query<R>(sql: string, params: readonly unknown[]) {
                timeLeftForStatement(Number.POSITIVE_INFINITY);
                try {
                  return toResult(await tx.query<R>(sql, [...params]));
                } catch (error) {
                  throw sanitizeDatabaseError(error, BACKEND);
                }
              },
            });
          } catch (error) {
            failed = error; // work's own error, which the rollback must not replace
            throw error;
          }
        });
      } catch (error) {
        throw failed ?? sanitizeDatabaseError(error, BACKEND);
      }
    },
    close: async () => {
      await db.close();
      await unlock();
    },
  };
  return sqlRecordStore(executor);
}

async function run<T>(db: PGlite, sql: string, params: readonly unknown[] = []): Promise<SqlResult<T>> {
  return toResult(await db.query<T>(sql, [...params]));
}

function toResult<T>(result: Awaited<ReturnType<PGlite["query"]>> & { rows: T[] }): SqlResult<T> {
  return { rows: result.rows, rowCount: (result as { rowCount?: number }).rowCount ?? result.affectedRows ?? 0 };
}

async function openDatabase(dataDir: string | undefined): Promise<PGlite> {
  const db = await PGlite.create(dataDir === undefined ? {} : { dataDir });
  try {
    await migrate((sql, params) => run(db, sql, params));
    return db;
  } catch (error) {
    await db.close().catch(() => {});
    throw error;
  }
}
