// The PostgreSQL backend (or a PostgreSQL-compatible engine), through a `pg` connection
// pool, used when a database URL is configured.
//
// Linearizability (docs/design.md §7) relies on the URL naming the primary: every statement
// here goes to that one endpoint; there is no read-replica routing. A URL that names a
// hot standby fails writes with SQLSTATE 25006, reported as UnavailableError.

import pg from "pg";

import { timeLeftForStatement } from "./deadline.js";
import { UnavailableError } from "./errors.js";
import type { RecordStore } from "./record-store.js";
import { migrate } from "./migrate.js";
import { sanitizeDatabaseError, sqlRecordStore, sqlStateOf } from "./sql-record-store.js";
import type { SqlExecutor, SqlResult } from "./sql-record-store.js";

const BACKEND = "the PostgreSQL database";

export interface PostgresStoreOptions {
  /** postgres:// or postgresql:// URL of the primary. */
  url: string;
  /** Connections in the pool; default 10. */
  poolSize?: number;
  /** Server-side statement_timeout; default 5000 ms. */
  statementTimeoutMs?: number;
  /** Time allowed to establish a connection (or wait for a free one); default 5000 ms. */
  connectTimeoutMs?: number;
}

export async function openPostgresStore(options: PostgresStoreOptions): Promise<RecordStore> {
  const statementTimeoutMs = options.statementTimeoutMs ?? 5000;
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    statement_timeout: statementTimeoutMs,
    // statement_timeout is enforced by the server, so it cannot fire when the server or
    // the network has silently gone away; this client-side limit can. pg-pool then
    // discards the connection, since the reply to the abandoned query may still come.
    query_timeout: statementTimeoutMs + 1000,
    keepAlive: true,
    application_name: "hello-storage",
  });
  // An idle pooled connection that dies (server restart, failover, network) emits
  // 'error' on the pool, and an EventEmitter 'error' with no listener crashes the
  // process. The pool has already dropped that connection; the next statement opens a
  // new one, or fails with UnavailableError, so there is nothing more to do here.
  pool.on("error", () => {});

  /**
   * One statement on `on` (the pool, or a transaction's connection), no longer than the
   * request it serves has left (deadline.ts): when the client gives up, pg-pool drops
   * the connection and the server's statement_timeout ends the statement.
   */
  const statement = async <T>(on: pg.Pool | pg.PoolClient, sql: string, params: readonly unknown[] = []): Promise<SqlResult<T>> => {
    try {
      const query_timeout = timeLeftForStatement(statementTimeoutMs + 1000);
      const result = await on.query({ text: sql, values: [...params], query_timeout } as pg.QueryConfig);
      return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
    } catch (error) {
      throw translate(error);
    }
  };

  const executor: SqlExecutor = {
    query: <T>(sql: string, params: readonly unknown[]) => statement<T>(pool, sql, params),
    async transaction<T>(work: (tx: { query<R>(sql: string, params: readonly unknown[]): Promise<SqlResult<R>> }) => Promise<T>): Promise<T> {
      let client: pg.PoolClient;
      try {
        timeLeftForStatement(statementTimeoutMs + 1000);
        client = await pool.connect();
      } catch (error) {
        throw translate(error);
      }
      let broken = false;
      try {
        await statement(client, "BEGIN");
        const result = await work({ query: (sql, params) => statement(client, sql, params) });
        await statement(client, "COMMIT");
        return result;
      } catch (error) {
        // A connection that failed mid-transaction may be in any state: it is not reused.
        broken = await client.query("ROLLBACK").then(() => false, () => true);
        throw error;
      } finally {
        client.release(broken);
      }
    },
    close: () => pool.end(),
  };

  try {
    await applySchema(options);
  } catch (error) {
    await pool.end().catch(() => {});
    const translated = translate(error);
    if (translated instanceof UnavailableError) throw translated;
    // Bad credentials, a missing database, no rights to create tables: configuration
    // problems, whose driver messages name nothing user-linked and say what to fix.
    throw new Error(`cannot open ${BACKEND}: ${error instanceof Error ? error.message : String(error)}`);
  }
  return sqlRecordStore(executor);
}

/** Longest a statement of a migration may take: validating a constraint reads the whole table. */
const MIGRATION_STATEMENT_TIMEOUT_MS = 15 * 60_000;

/**
 * Brings the database to this code's storage format (migrate.ts), on a connection of
 * its own whose statements may take longer than a request's. Replicas starting
 * together may both migrate: every step is idempotent, and migrate() retries a DDL
 * statement that lost a race to create the same object.
 */
async function applySchema(options: PostgresStoreOptions): Promise<void> {
  const client = new pg.Client({
    connectionString: options.url,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    statement_timeout: MIGRATION_STATEMENT_TIMEOUT_MS,
    keepAlive: true,
    application_name: "hello-storage-migration",
  });
  // A connection that dies under us is reported by the statement that fails with it.
  client.on("error", () => {});
  await client.connect();
  try {
    await migrate(async (sql, params = []) => {
      const result = await client.query(sql, [...params]);
      return { rows: result.rows, rowCount: result.rowCount ?? 0 };
    });
  } finally {
    await client.end().catch(() => {});
  }
}

// Errors that pg raises without a SQLSTATE when the connection cannot be made or is lost.
const NETWORK_ERROR_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);
const CONNECTION_LOST_MESSAGES = [
  /^Connection terminated/, // "… unexpectedly", "… due to connection timeout"
  /^timeout exceeded when trying to connect/, // pg-pool: no connection within connectionTimeoutMillis
  /^timeout expired/, // pg: connect timeout
  /^Query read timeout/, // query_timeout
  /is not queryable$/, // a client whose connection already failed or was closed
  /^Cannot use a pool after calling end/,
];

function translate(error: unknown): Error {
  if (error instanceof Error && sqlStateOf(error) === undefined) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === "string" && NETWORK_ERROR_CODES.has(code)) {
      return new UnavailableError(`${BACKEND} is unreachable (${code})`);
    }
    if (CONNECTION_LOST_MESSAGES.some((pattern) => pattern.test(error.message))) {
      // pg's own messages, which name no parameter, so they are safe to repeat.
      return new UnavailableError(`${BACKEND} is unreachable (${error.message})`);
    }
  }
  return sanitizeDatabaseError(error, BACKEND);
}
