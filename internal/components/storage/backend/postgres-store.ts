// The PostgreSQL backend (or a PostgreSQL-compatible engine), through `pg` connection
// pools, used when a database URL is configured.
//
// Linearizability (docs/design.md §7) relies on every statement reaching the primary.
// The URL may name one server or, libpq's way, every member of a replicated cluster
// (runtime/postgres-primary.ts; docs/availability.md): Storage keeps one pool per member
// and sends everything to the one that is the primary now. Every new connection is checked
// (`pg_is_in_recovery()`) before its first use, so a standby is never read from, and a
// statement that fails as unavailable makes Storage look for the primary again: after a
// failover the next statement reaches the new primary, with no restart.
//
// Two more guards for a primary that has lost its place without knowing it (cut off from
// the cluster's consensus while a standby is promoted, docs/availability.md):
// - An answer "no record" is the one that mints an Error Token, the licence to create a
//   record, so a stale one could make a second user. It is given only after the same
//   connection has committed a transaction that a synchronous standby confirmed (FENCE):
//   under synchronous replication an old primary cannot, so the read is refused as
//   unavailable instead (its commit waits until the client's own time limit).
// - A commit waits for its synchronous standby past statement_timeout (PostgreSQL stops
//   that timer before committing), so the client's query_timeout, or the request's
//   deadline, is what ends the wait: the connection is dropped and the write reported
//   unavailable. A wait cancelled on the server (an operator's pg_cancel_backend) is
//   worse: PostgreSQL reports it as a success with a WARNING, committed locally, perhaps
//   never replicated, and undone if this server is rewound after a failover. Storage
//   takes any such warning as a failed write (UnavailableError).

import pg from "pg";

import { timeLeftForStatement } from "./deadline.js";
import { UnavailableError } from "./errors.js";
import type { RecordStore } from "./record-store.js";
import { migrate } from "./migrate.js";
import { NoPrimaryError, NotPrimaryError, PrimaryPools } from "../../runtime/postgres-primary.js";
import { sanitizeDatabaseError, sqlRecordStore, sqlStateOf } from "./sql-record-store.js";
import type { SqlExecutor, SqlResult, SqlSession } from "./sql-record-store.js";

const BACKEND = "the PostgreSQL database";

export interface PostgresStoreOptions {
  /** postgres:// or postgresql:// URL of the primary, or of every member of a cluster (runtime/postgres-primary.ts). */
  url: string;
  /** Connections in each member's pool; default 10. */
  poolSize?: number;
  /** Server-side statement_timeout; default 5000 ms. */
  statementTimeoutMs?: number;
  /** Time allowed to establish a connection (or wait for a free one); default 5000 ms. */
  connectTimeoutMs?: number;
}

/**
 * SQLSTATE 01000, the class of a WARNING raised without a code of its own, which is how
 * PostgreSQL reports "canceling wait for synchronous replication … The transaction has
 * already committed locally, but might not have been replicated to the standby". The
 * text is translated by the server's lc_messages, the code is not. None of Storage's
 * statements raises another warning of this code, so any is taken as that one.
 */
const UNCONFIRMED_COMMIT_WARNING = "01000";

/** A connection whose server warned that a commit was not confirmed by a standby. */
const unconfirmed = new WeakSet<pg.ClientBase>();

/**
 * The smallest commit that waits for the synchronous standby: a transactional message in
 * the WAL (it takes a transaction id and writes a record, which a commit must replicate;
 * `txid_current()` alone writes nothing, so its commit does not wait). Any role may call
 * it, at wal_level replica; a standby refuses it (read-only), which is also the answer
 * wanted there. Nothing reads the message.
 */
const FENCE = "SELECT pg_logical_emit_message(true, 'hello-mesh-storage-fence', '')";

export async function openPostgresStore(options: PostgresStoreOptions): Promise<RecordStore> {
  const statementTimeoutMs = options.statementTimeoutMs ?? 5000;
  const primary = new PrimaryPools(
    options.url,
    {
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
      statement_timeout: statementTimeoutMs,
      // statement_timeout is enforced by the server, so it cannot fire when the server or
      // the network has silently gone away; this client-side limit can. pg-pool then
      // discards the connection, since the reply to the abandoned query may still come.
      query_timeout: statementTimeoutMs + 1000,
      keepAlive: true,
      application_name: "hello-storage",
    },
    // Each new connection's warnings are watched for unconfirmed commits.
    async (client) => {
      client.on("notice", (notice: { code?: string }) => {
        if (notice.code === UNCONFIRMED_COMMIT_WARNING) unconfirmed.add(client);
      });
    },
  );

  /**
   * One statement on a connection of the primary's, no longer than the request it serves
   * has left (deadline.ts): when the client gives up, pg-pool drops the connection and the
   * server's statement_timeout ends the statement.
   */
  const statement = async <T>(client: pg.PoolClient, sql: string, params: readonly unknown[] = []): Promise<SqlResult<T>> => {
    const query_timeout = timeLeftForStatement(statementTimeoutMs + 1000);
    const result = await client.query({ text: sql, values: [...params], query_timeout } as pg.QueryConfig);
    if (unconfirmed.has(client)) {
      throw new UnavailableError(`${BACKEND} committed a write that no synchronous standby confirmed; it may be lost in a failover`);
    }
    return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
  };

  /**
   * Runs `work` on one connection of the primary. A connection that failed is not reused,
   * and a failure that says the database is unavailable (this member died, became a
   * standby, or could not confirm a commit) makes the next statement look for the primary
   * again. Errors come out translated: never a driver error, which carries parameters.
   */
  const onPrimary = async <T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> => {
    let pool: pg.Pool | undefined;
    let client: pg.PoolClient | undefined;
    try {
      timeLeftForStatement(statementTimeoutMs + 1000);
      pool = (await primary.primary()).pool;
      client = await pool.connect();
      const result = await work(client);
      client.release();
      return result;
    } catch (error) {
      const translated = translate(error);
      if (client) client.release(await brokenAfter(client, translated));
      if (pool && translated instanceof UnavailableError) primary.suspect(pool);
      throw translated;
    }
  };

  const executor: SqlExecutor = {
    query: <T>(sql: string, params: readonly unknown[]) => onPrimary((client) => statement<T>(client, sql, params)),
    // A read that finds nothing is confirmed on the same connection, by a commit that a
    // synchronous standby acknowledges: a primary that has been replaced cannot get one.
    readConfirmingAbsence: <T>(sql: string, params: readonly unknown[]) =>
      onPrimary(async (client) => {
        const result = await statement<T>(client, sql, params);
        if (result.rows.length === 0) await statement(client, FENCE);
        return result;
      }),
    transaction: <T>(work: (tx: SqlSession) => Promise<T>): Promise<T> =>
      onPrimary(async (client) => {
        await statement(client, "BEGIN");
        // A failure leaves the transaction open: onPrimary rolls it back, or drops the connection.
        const result = await work({ query: (sql, params) => statement(client, sql, params) });
        await statement(client, "COMMIT");
        return result;
      }),
    close: () => primary.close(),
  };

  try {
    await applySchema(options, (await primary.primary()).host.url);
  } catch (error) {
    await primary.close().catch(() => {});
    const translated = translate(error);
    if (translated instanceof UnavailableError) throw translated;
    // Bad credentials, a missing database, no rights to create tables: configuration
    // problems, whose driver messages name nothing user-linked and say what to fix.
    throw new Error(`cannot open ${BACKEND}: ${error instanceof Error ? error.message : String(error)}`);
  }
  return sqlRecordStore(executor);
}

/**
 * Whether a connection that failed with `error` must be dropped rather than pooled again:
 * one whose commit was unconfirmed, or that failed in the transport, may be in any state.
 * A statement the server refused (a constraint, say) leaves it usable once any
 * transaction is rolled back, which ROLLBACK outside one also confirms.
 */
async function brokenAfter(client: pg.PoolClient, error: Error): Promise<boolean> {
  if (unconfirmed.has(client) || error instanceof UnavailableError) return true;
  return client.query("ROLLBACK").then(() => false, () => true);
}

/** Longest a statement of a migration may take: validating a constraint reads the whole table. */
const MIGRATION_STATEMENT_TIMEOUT_MS = 15 * 60_000;

/**
 * Brings the database to this code's storage format (migrate.ts), on a connection of
 * its own whose statements may take longer than a request's. Replicas starting
 * together may both migrate: every step is idempotent, and migrate() retries a DDL
 * statement that lost a race to create the same object.
 */
async function applySchema(options: PostgresStoreOptions, primaryUrl: string): Promise<void> {
  const client = new pg.Client({
    connectionString: primaryUrl,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    statement_timeout: MIGRATION_STATEMENT_TIMEOUT_MS,
    keepAlive: true,
    application_name: "hello-storage-migration",
  });
  // A connection that dies under us is reported by the statement that fails with it.
  client.on("error", () => {});
  await client.connect();
  try {
    // Not on a standby, even when the URL names only one (where there is no choosing): a
    // database already at this format would need no write, and the store would open on
    // a server it must never read from.
    const { rows } = await client.query<{ standby: boolean }>("SELECT pg_is_in_recovery() AS standby");
    if (rows[0]?.standby !== false) throw new NotPrimaryError("the database URL names a standby, not the primary");
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
  if (error instanceof NotPrimaryError) return new UnavailableError(`${BACKEND} answered from a standby: ${error.message}`);
  if (error instanceof NoPrimaryError) return new UnavailableError(`${BACKEND}: ${error.message}`);
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
