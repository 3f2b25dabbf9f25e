// The PostgreSQL backend (or a PostgreSQL-compatible engine), through `pg` connection
// pools, used when a database URL is configured.
//
// Linearizability (docs/design.md §7) relies on every statement reaching the primary.
// The URL may name one server or, libpq's way, every member of a replicated cluster
// (postgres-hosts.ts; docs/availability.md): Storage keeps one pool per member and sends
// everything to the one that is the primary now. Every new connection is checked
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
import { type DatabaseHost, databaseHosts } from "./postgres-hosts.js";
import { sanitizeDatabaseError, sqlRecordStore, sqlStateOf } from "./sql-record-store.js";
import type { SqlExecutor, SqlResult, SqlSession } from "./sql-record-store.js";

const BACKEND = "the PostgreSQL database";

export interface PostgresStoreOptions {
  /** postgres:// or postgresql:// URL of the primary, or of every member of a cluster (postgres-hosts.ts). */
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

class NotPrimaryError extends Error {}

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
  const hosts = databaseHosts(options.url);
  const primary = new PrimaryFinder(hosts, (host) => {
    const pool = new pg.Pool({
      connectionString: host.url,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
      statement_timeout: statementTimeoutMs,
      // statement_timeout is enforced by the server, so it cannot fire when the server or
      // the network has silently gone away; this client-side limit can. pg-pool then
      // discards the connection, since the reply to the abandoned query may still come.
      query_timeout: statementTimeoutMs + 1000,
      keepAlive: true,
      application_name: "hello-storage",
      // Before a new connection's first use: it must be to the primary, and its server's
      // warnings are watched for unconfirmed commits.
      onConnect: async (client: pg.ClientBase) => {
        client.on("notice", (notice: { code?: string }) => {
          if (notice.code === UNCONFIRMED_COMMIT_WARNING) unconfirmed.add(client);
        });
        const { rows } = await client.query<{ standby: boolean }>("SELECT pg_is_in_recovery() AS standby");
        if (rows[0]?.standby !== false) throw new NotPrimaryError(`${host.label} is a standby, not the primary`);
      },
    });
    // An idle pooled connection that dies (server restart, failover, network) emits
    // 'error' on the pool, and an EventEmitter 'error' with no listener crashes the
    // process. The pool has already dropped that connection; the next statement opens a
    // new one, or fails with UnavailableError, so there is nothing more to do here.
    pool.on("error", () => {});
    return pool;
  });

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
      pool = await primary.pool();
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
    await applySchema(options, await primary.url());
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

/**
 * Which member is the primary. Asked for the primary's pool, it answers the last one
 * found, or, after `suspect`, asks the members at once for a connection (each checked by
 * onConnect) and takes the first that is the primary. The member that was just suspected
 * is asked only if no other is the primary: an old primary cut off from its cluster still
 * says it is one, and the new primary is the one to find (docs/availability.md). Pools of
 * other members are kept, idle: a member that is not the primary may be after the next
 * failover.
 */
class PrimaryFinder {
  readonly #pools: ReadonlyMap<DatabaseHost, pg.Pool>;
  #current: { host: DatabaseHost; pool: pg.Pool } | undefined;
  #suspected: pg.Pool | undefined;
  #finding: Promise<{ host: DatabaseHost; pool: pg.Pool }> | undefined;

  constructor(hosts: readonly DatabaseHost[], makePool: (host: DatabaseHost) => pg.Pool) {
    this.#pools = new Map(hosts.map((host) => [host, makePool(host)]));
  }

  async pool(): Promise<pg.Pool> {
    return (this.#current ?? (await this.#find())).pool;
  }

  /** The single-host URL of the primary (for the migration's own connection). */
  async url(): Promise<string> {
    return (this.#current ?? (await this.#find())).host.url;
  }

  /** A statement on `pool` failed as unavailable: look for the primary before the next one. */
  suspect(pool: pg.Pool): void {
    if (this.#current?.pool !== pool) return;
    this.#current = undefined;
    this.#suspected = pool;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((pool) => pool.end().catch(() => {})));
  }

  #find(): Promise<{ host: DatabaseHost; pool: pg.Pool }> {
    this.#finding ??= this.#ask().finally(() => (this.#finding = undefined));
    return this.#finding;
  }

  async #ask(): Promise<{ host: DatabaseHost; pool: pg.Pool }> {
    const members = [...this.#pools.entries()].map(([host, pool]) => ({ host, pool }));
    if (members.length === 1) {
      // One host: its pool checks each connection itself; a first statement finds out.
      return (this.#current = members[0]!);
    }
    const others = members.filter((m) => m.pool !== this.#suspected);
    const last = members.filter((m) => m.pool === this.#suspected);
    const refusals: string[] = [];
    for (const round of [others, last]) {
      if (round.length === 0) continue;
      try {
        const found = await Promise.any(round.map(async (member) => {
          try {
            (await member.pool.connect()).release();
            return member;
          } catch (error) {
            refusals.push(`${member.host.label}: ${reason(error)}`);
            throw error;
          }
        }));
        this.#suspected = undefined;
        return (this.#current = found);
      } catch {
        // None of this round is the primary; the next round, or the error below.
      }
    }
    throw new UnavailableError(`no member of ${BACKEND} is a primary that answers (${refusals.join("; ")})`);
  }
}

/** Why a member did not serve as the primary, in words safe to log (no parameters). */
function reason(error: unknown): string {
  if (error instanceof NotPrimaryError) return "a standby";
  const translated = translate(error);
  return translated.message.replace(`${BACKEND} `, "");
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
