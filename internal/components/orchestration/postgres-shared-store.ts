// The store Orchestration's replicas share (docs/design.md §8) on PostgreSQL: a database of
// Orchestration's custodian's own, never the user-records database (which Orchestration
// cannot reach). It holds only sealed entries under hashed keys (sealed.ts); `take` is
// one DELETE … RETURNING, so a code is redeemed once across every replica.

import pg from "pg";
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
  const pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 5_000, statement_timeout: 5_000 });
  pool.on("error", () => {}); // an idle client's failure surfaces on the next query instead
  await pool.query(SCHEMA);
  const sweep = setInterval(() => {
    pool.query("DELETE FROM orchestration_state WHERE expires_at < now()").catch(() => {});
  }, options.sweepEveryMs ?? 60_000);
  sweep.unref();
  return {
    async put(key, value, ttlMs) {
      await pool.query(
        `INSERT INTO orchestration_state (key, value, expires_at) VALUES ($1, $2, now() + $3 * interval '1 millisecond')
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at`,
        [key, value, ttlMs],
      );
    },
    async get(key) {
      const { rows } = await pool.query<{ value: Buffer }>(
        "SELECT value FROM orchestration_state WHERE key = $1 AND expires_at > now()",
        [key],
      );
      return rows[0]?.value;
    },
    async take(key) {
      const { rows } = await pool.query<{ value: Buffer; live: boolean }>(
        "DELETE FROM orchestration_state WHERE key = $1 RETURNING value, expires_at > now() AS live",
        [key],
      );
      return rows[0]?.live ? rows[0].value : undefined;
    },
    async claim(key, ttlMs) {
      // One statement: inserts, or replaces an expired entry; a live one wins and no row
      // comes back. ON CONFLICT takes the row lock, so concurrent claims serialise.
      const { rowCount } = await pool.query(
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
      const { rows } = await pool.query<{ key: string; value: Buffer }>(
        "SELECT key, value FROM orchestration_state WHERE key LIKE $1 AND expires_at > now() LIMIT $2",
        [pattern, limit],
      );
      return rows;
    },
    async close() {
      clearInterval(sweep);
      await pool.end();
    },
  };
}
