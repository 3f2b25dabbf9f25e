// The store Orchestration's replicas share (docs/design.md §8) on PostgreSQL: a database of
// Orchestration's custodian's own, never the user-records database (which Orchestration
// cannot reach). It holds only sealed entries under hashed keys (sealed.ts); `take` is
// one DELETE … RETURNING, so a code is redeemed once across every replica.
//
// Its URL may name every member of a replicated database (docs/availability.md), as
// Storage's may: statements go to the primary only, and one that fails in the transport
// or on a server that has become a standby makes the next look for the primary again.

import pg from "pg";
import { Code, ConnectError } from "@connectrpc/connect";
import { PrimaryPools } from "../runtime/postgres-primary.js";
import type { ScanningStore } from "./sealed.js";

const SCHEMA = `CREATE TABLE IF NOT EXISTS orchestration_state (
  key TEXT PRIMARY KEY,
  value BYTEA NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL
)`;

export interface PostgresSharedStore extends ScanningStore {
  close(): Promise<void>;
}

export async function openPostgresSharedStore(url: string, options: { sweepEveryMs?: number } = {}): Promise<PostgresSharedStore> {
  const members = new PrimaryPools(url, { max: 4, connectionTimeoutMillis: 5_000, statement_timeout: 5_000 });
  // A database that cannot answer is, to the front door, like a peer that cannot: the
  // request gets the "unavailable" page (docs/faults.md), not "something went wrong".
  const unavailable = (error: unknown) =>
    new ConnectError("Orchestration's state database is unavailable", Code.Unavailable, undefined, undefined, sanitized(error));
  /** One statement on the primary; a failure that may mean it is no longer the primary makes the next look again. */
  const query = async <R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> => {
    let primary;
    try {
      primary = await members.primary();
    } catch (error) {
      throw unavailable(error);
    }
    try {
      return await primary.pool.query<R>(sql, params);
    } catch (error) {
      if (!lostPrimary(error)) throw error;
      members.suspect(primary.pool);
      throw unavailable(error);
    }
  };
  try {
    await query(SCHEMA);
  } catch (error) {
    await members.close();
    throw error;
  }
  const sweep = setInterval(() => {
    query("DELETE FROM orchestration_state WHERE expires_at < now()").catch(() => {});
  }, options.sweepEveryMs ?? 60_000);
  sweep.unref();
  return {
    async put(key, value, ttlMs) {
      await query(
        `INSERT INTO orchestration_state (key, value, expires_at) VALUES ($1, $2, now() + $3 * interval '1 millisecond')
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at`,
        [key, value, ttlMs],
      );
    },
    async get(key) {
      const { rows } = await query<{ value: Buffer }>(
        "SELECT value FROM orchestration_state WHERE key = $1 AND expires_at > now()",
        [key],
      );
      return rows[0]?.value;
    },
    async take(key) {
      const { rows } = await query<{ value: Buffer; live: boolean }>(
        "DELETE FROM orchestration_state WHERE key = $1 RETURNING value, expires_at > now() AS live",
        [key],
      );
      return rows[0]?.live ? rows[0].value : undefined;
    },
    async claim(key, ttlMs) {
      // One statement: inserts, or replaces an expired entry; a live one wins and no row
      // comes back. ON CONFLICT takes the row lock, so concurrent claims serialise.
      const { rowCount } = await query(
        `INSERT INTO orchestration_state (key, value, expires_at) VALUES ($1, ''::bytea, now() + $2 * interval '1 millisecond')
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
         WHERE orchestration_state.expires_at <= now()
         RETURNING key`,
        [key, ttlMs],
      );
      return rowCount === 1;
    },
    async scan(prefix, limit) {
      // The prefix as a LIKE pattern with its own wildcards escaped.
      const pattern = `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      const { rows } = await query<{ key: string; value: Buffer }>(
        "SELECT key, value FROM orchestration_state WHERE key LIKE $1 AND expires_at > now() LIMIT $2",
        [pattern, limit],
      );
      return rows;
    },
    async close() {
      clearInterval(sweep);
      await members.close();
    },
  };
}

/**
 * Whether a failed statement says the primary may be gone: no SQLSTATE (the connection
 * failed or was lost), a read-only server (25006: a standby), one shutting down or
 * refusing connections (57P, 08), or a statement that ran out of time (57014: a primary
 * waiting for a standby that no longer follows it).
 */
function lostPrimary(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "string" || !/^[0-9A-Z]{5}$/.test(code)) return true;
  return code === "25006" || code === "57014" || code.startsWith("57P") || code.startsWith("08");
}

/** The cause kept for the log: the error's code and pg's own words for a lost connection, never a statement's parameters. */
function sanitized(error: unknown): Error {
  const code = (error as { code?: unknown }).code;
  return new Error(typeof code === "string" ? `database error ${code}` : error instanceof Error && !("severity" in error) ? error.message : "database error");
}
