import { createServer } from "node:net";
import type { Socket } from "node:net";

import { expect } from "chai";
import pg from "pg";

import { startPostgres } from "../../../../test/support/postgres-server.js";
import type { TestPostgres } from "../../../../test/support/postgres-server.js";
import { randomBytes } from "node:crypto";

import {
  FORMAT_2_SQL,
  FORMAT_3_SQL,
  type FormatTestDatabase,
  expectStorageError,
  randomDigest,
  randomHash,
  recordStoreConformance,
  storageFormat4Migration,
  storageFormatMigration,
} from "./conformance.js";
import { WALLET_RECORD_KINDS } from "../../../protocol/records.js";
import { NotFoundError, UnavailableError } from "./errors.js";
import { openRecordStore } from "./open-store.js";
import { openPostgresStore } from "./postgres-store.js";

describe("PostgreSQL record store", function () {
  let server: TestPostgres;

  before(async function () {
    this.timeout(60_000); // initdb
    server = await startPostgres();
  });

  /** Databases made by scratchDatabase(), dropped before the server stops. */
  const scratch: string[] = [];
  after(async function () {
    for (const name of scratch) await withClient(server.url, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    await server?.stop();
  });

  recordStoreConformance("PostgreSQL", () => openPostgresStore({ url: server.url, poolSize: 8 }));

  /** Another database on the test server, dropped after the suite. */
  async function scratchDatabase(): Promise<FormatTestDatabase> {
    const name = `hello_format_${randomBytes(6).toString("hex")}`;
    await withClient(server.url, (c) => c.query(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'`));
    scratch.push(name);
    const url = new URL(server.url);
    url.pathname = `/${name}`;
    return {
      sql: (statement, params) => withClient(url.toString(), async (c) => {
        const result = await c.query(statement, params);
        return (Array.isArray(result) ? (result.at(-1)?.rows ?? []) : result.rows) as Array<Record<string, unknown>>;
      }),
      open: () => openPostgresStore({ url: url.toString(), poolSize: 4 }),
    };
  }
  storageFormatMigration("PostgreSQL", scratchDatabase);
  storageFormat4Migration("PostgreSQL", scratchDatabase);

  it("migrates a format-2 database once when three replicas open it at the same time", async function () {
    this.timeout(60_000);
    const db = await scratchDatabase();
    await db.sql(FORMAT_2_SQL);
    await db.sql(`INSERT INTO records (hash, kind, key_id, ciphertext, version, create_time, update_time)
      SELECT 'row-' || lpad(i::text, 5, '0'), 'subject', 'k1', '\\x01'::bytea, 1, '2025-05-05T05:05:05.555Z', '2025-05-06T06:06:06.666Z'
      FROM generate_series(1, 2500) AS i`);
    const stores = await Promise.all([db.open(), db.open(), db.open()]);
    try {
      const row = await stores[2]!.create({ hash: randomHash(), kind: "reservation", keyId: "k1", ciphertext: Uint8Array.from([1]), digest: randomDigest() });
      expect((await stores[0]!.read(row.hash, "reservation")).version).to.equal(1);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
    expect(await db.sql("SELECT version FROM schema_version")).to.deep.equal([{ version: 4 }]);
    expect(await db.sql(`SELECT count(*)::int AS n FROM records
      WHERE create_time <> '2025-05-05T00:00:00Z' OR update_time <> '2025-05-06T00:00:00Z'`)).to.deep.equal([{ n: 1 }]); // the new reservation
    const checks = await db.sql("SELECT conname FROM pg_constraint WHERE conrelid = 'records'::regclass AND contype = 'c'");
    expect(checks).to.deep.equal([{ conname: "records_kind_check" }]);
  });

  it("migrates a format-3 database once when three replicas open it at the same time", async function () {
    this.timeout(60_000);
    const db = await scratchDatabase();
    await db.sql(FORMAT_3_SQL);
    await db.sql(`INSERT INTO records (hash, kind, key_id, wrapped_key, ciphertext, version, digest, create_time, update_time)
      SELECT 'row-' || lpad(i::text, 5, '0'), (ARRAY['subject', 'release', 'wallet', 'reservation'])[1 + i % 4], 'k1', '\\x02'::bytea, '\\x01'::bytea, 1,
        NULL, '2025-05-05T00:00:00Z', '2025-05-06T00:00:00Z'
      FROM generate_series(1, 2500) AS i`);
    const stores = await Promise.all([db.open(), db.open(), db.open()]);
    try {
      // Each replica writes one of the wallet's kinds, and another reads it.
      const rows = await Promise.all(WALLET_RECORD_KINDS.map((kind, i) =>
        stores[i]!.create({ hash: randomHash(), kind, keyId: "k1", ciphertext: Uint8Array.from([1]), digest: randomDigest() })));
      for (const [i, row] of rows.entries()) expect((await stores[(i + 1) % 3]!.read(row.hash, row.kind)).version).to.equal(1);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
    expect(await db.sql("SELECT version FROM schema_version")).to.deep.equal([{ version: 4 }]);
    expect(await db.sql(`SELECT kind, count(*)::int AS n FROM records
      WHERE create_time = '2025-05-05T00:00:00Z' AND update_time = '2025-05-06T00:00:00Z' GROUP BY kind ORDER BY kind`)).to.deep.equal([
      { kind: "release", n: 625 }, { kind: "reservation", n: 625 }, { kind: "subject", n: 625 }, { kind: "wallet", n: 625 },
    ]);
    expect(await db.sql("SELECT count(*)::int AS n FROM records")).to.deep.equal([{ n: 2503 }]);
    const checks = await db.sql("SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 'records'::regclass AND contype = 'c'");
    expect(checks).to.deep.equal([{ conname: "records_kind_check", convalidated: true }]);
  });

  it("is what openRecordStore opens for a postgresql:// URL, and applies the schema idempotently", async function () {
    const hash = randomHash();
    const a = await openRecordStore({ url: server.url });
    const b = await openRecordStore({ url: server.url.replace(/^postgresql:/, "postgres:") });
    try {
      await a.create({ hash, kind: "release", keyId: "k1", ciphertext: Uint8Array.from([7]), digest: randomDigest() });
      expect((await b.read(hash, "release")).keyId).to.equal("k1");
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("says what is wrong when the database named in the URL does not exist", async function () {
    const missing = new URL(server.url);
    missing.pathname = "/no_such_database";
    const error = await openPostgresStore({ url: missing.toString() }).then(
      () => expect.fail("opened a store on a database that does not exist"),
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(Error).and.not.instanceOf(UnavailableError);
    expect((error as Error).message).to.include('database "no_such_database" does not exist');
  });

  it("reports an unreachable server as UnavailableError at open", async function () {
    const unused = new URL(server.url);
    unused.port = "1"; // nothing listens on port 1
    const started = Date.now();
    const error = await openPostgresStore({ url: unused.toString(), connectTimeoutMs: 1000 }).then(
      () => expect.fail("opened a store on a port where no server listens"),
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(UnavailableError);
    expect(Date.now() - started).to.be.below(5000);
  });
});

// The next tests stop or freeze the server, so they always start one of their own,
// even when HELLO_TEST_DATABASE_URL offers a shared server.

describe("PostgreSQL record store, server stopped under it", function () {
  it("fails a call with UnavailableError quickly rather than hanging", async function () {
    this.timeout(60_000);
    const server = await startPostgres({ ownServer: true });
    let stopped = false;
    const store = await openPostgresStore({ url: server.url, connectTimeoutMs: 1000, statementTimeoutMs: 1000 });
    try {
      const hash = randomHash();
      // Warm the pool, so that idle connections are cut when the server goes away.
      await Promise.all(
        Array.from({ length: 4 }, () => store.spendTokenId(randomHash(), new Date(Date.now() + 60_000))),
      );
      await server.stop();
      stopped = true;

      for (const attempt of [1, 2]) {
        const started = Date.now();
        await expectStorageError(store.read(hash, "subject"), UnavailableError, "unavailable", hash);
        expect(Date.now() - started, `attempt ${attempt}`).to.be.below(3000);
      }
    } finally {
      await store.close();
      if (!stopped) await server.stop();
    }
  });
});

describe("PostgreSQL record store, server unresponsive", function () {
  it("gives up on a connection that never answers after connectTimeoutMs", async function () {
    // Accepts TCP connections and never says a word, like a host behind a dead route.
    const sockets: Socket[] = [];
    const blackhole = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => blackhole.listen(0, "127.0.0.1", resolve));
    const { port } = blackhole.address() as { port: number };
    try {
      const started = Date.now();
      const error = await openPostgresStore({ url: `postgresql://postgres@127.0.0.1:${port}/x`, connectTimeoutMs: 500 }).then(
        () => expect.fail("opened a store on a server that never answered"),
        (e: unknown) => e,
      );
      expect(error).to.be.instanceOf(UnavailableError);
      expect(Date.now() - started).to.be.below(3000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => blackhole.close(resolve));
    }
  });

  it("gives up on a statement whose server froze mid-way, then recovers", async function () {
    this.timeout(60_000);
    const server = await startPostgres({ ownServer: true });
    const store = await openPostgresStore({ url: server.url, poolSize: 1, statementTimeoutMs: 500 });
    const admin = new pg.Client({ connectionString: server.url });
    let frozen: number | undefined;
    try {
      await store.spendTokenId(randomHash(), new Date(Date.now() + 60_000)); // opens the pool's one connection
      await admin.connect();
      const { rows } = await admin.query<{ pid: number }>(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'hello-storage'",
      );
      expect(rows).to.have.length(1);
      // A stopped process cannot enforce its own statement_timeout: only the client's
      // read timeout can end the wait.
      frozen = rows[0]!.pid;
      process.kill(frozen, "SIGSTOP");

      const hash = randomHash();
      const started = Date.now();
      await expectStorageError(store.read(hash, "subject"), UnavailableError, "unavailable", hash);
      expect(Date.now() - started).to.be.below(5000);

      process.kill(frozen, "SIGCONT");
      frozen = undefined;
      // The pool dropped the frozen connection; the next call gets a fresh one.
      await expectStorageError(store.read(hash, "subject"), NotFoundError, "not_found", hash);
    } finally {
      if (frozen !== undefined) process.kill(frozen, "SIGCONT");
      await admin.end().catch(() => {});
      await store.close();
      await server.stop();
    }
  });
});

async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}
