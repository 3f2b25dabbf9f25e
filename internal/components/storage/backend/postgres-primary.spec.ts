// Storage reaches the primary only, and never answers "no record" nor acknowledges a write
// that the cluster's synchronous standby did not confirm (postgres-store.ts). The failover
// itself, on a real Patroni cluster, is in test/faults/availability.spec.ts; these run on
// one PostgreSQL server, fast enough for `npm test`.

import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:net";
import { expect } from "chai";
import pg from "pg";

import { startPostgres, type TestPostgres } from "../../../../test/support/postgres-server.js";
import { expectStorageError, randomDigest, randomHash } from "./conformance.js";
import { NotFoundError, UnavailableError } from "./errors.js";
import { databaseHosts } from "../../runtime/postgres-primary.js";
import { openPostgresStore } from "./postgres-store.js";
import type { NewRow } from "./record-store.js";

const row = (hash = randomHash()): NewRow => ({
  hash,
  kind: "subject",
  keyId: "k1",
  wrappedKey: randomBytes(60),
  ciphertext: randomBytes(64),
  digest: randomDigest(),
});

describe("database URLs naming several hosts", function () {
  it("splits a libpq multi-host URL into one URL per member, keeping credentials, database and parameters", function () {
    const hosts = databaseHosts("postgresql://storage:s3cret@10.0.1.1:5432,10.0.2.1:5433,[::1]:5434/records?target_session_attrs=read-write&sslmode=require");
    expect(hosts.map((h) => h.label)).to.deep.equal(["10.0.1.1:5432", "10.0.2.1:5433", "[::1]:5434"]);
    expect(hosts.map((h) => h.url)).to.deep.equal([
      "postgresql://storage:s3cret@10.0.1.1:5432/records?sslmode=require",
      "postgresql://storage:s3cret@10.0.2.1:5433/records?sslmode=require",
      "postgresql://storage:s3cret@[::1]:5434/records?sslmode=require",
    ]);
    // The label is what logs and errors show: never the credentials.
    for (const host of hosts) expect(host.label).not.to.include("s3cret");
  });

  it("keeps a one-host URL as it was", function () {
    expect(databaseHosts("postgres://u@db.example:5432/x")).to.deep.equal([{ label: "db.example:5432", url: "postgres://u@db.example:5432/x" }]);
  });

  it("refuses a target_session_attrs that would let Storage read from a standby, and says what to write", function () {
    for (const attrs of ["any", "read-only", "standby", "prefer-standby"]) {
      expect(() => databaseHosts(`postgresql://a:1,b:2/x?target_session_attrs=${attrs}`)).to.throw(/use read-write/);
    }
    expect(databaseHosts("postgresql://a:1,b:2/x?target_session_attrs=primary")).to.have.length(2);
  });

  it("refuses an empty or repeated host in the list", function () {
    expect(() => databaseHosts("postgresql://a:1,,b:2/x")).to.throw(/empty host/);
    expect(() => databaseHosts("postgresql://a:1,a:1/x")).to.throw(/twice/);
  });
});

describe("PostgreSQL record store on a URL naming several members", function () {
  let server: TestPostgres;
  /** A member that accepts TCP and closes at once, like a host whose PostgreSQL is down behind a proxy. */
  let closing: Server;
  let closingPort: number;
  let refusedPort: number;

  before(async function () {
    this.timeout(60_000);
    server = await startPostgres();
    closing = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => closing.listen(0, "127.0.0.1", resolve));
    closingPort = (closing.address() as { port: number }).port;
    const refused = createServer();
    await new Promise<void>((resolve) => refused.listen(0, "127.0.0.1", resolve));
    refusedPort = (refused.address() as { port: number }).port;
    await new Promise((resolve) => refused.close(resolve));
  });
  after(async function () {
    closing?.close();
    await server?.stop();
  });

  /** `server`'s URL with other members listed before it. */
  const withMembers = (...ports: number[]) => {
    const url = new URL(server.url);
    return server.url.replace(url.host, [...ports.map((p) => `127.0.0.1:${p}`), url.host].join(",")) + "?target_session_attrs=read-write";
  };

  it("finds the member that serves, whichever place it has in the list", async function () {
    const store = await openPostgresStore({ url: withMembers(refusedPort, closingPort), connectTimeoutMs: 1000 });
    try {
      const created = await store.create(row());
      expect((await store.read(created.hash, "subject")).version).to.equal(1);
      await expectStorageError(store.read(randomHash(), "subject"), NotFoundError, "not_found", "");
    } finally {
      await store.close();
    }
  });

  it("with no member serving, fails with UnavailableError naming each member and why, nothing more", async function () {
    const caught = await openPostgresStore({ url: `postgresql://postgres@127.0.0.1:${refusedPort},127.0.0.1:${closingPort}/postgres`, connectTimeoutMs: 1000 }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(caught).to.be.instanceOf(UnavailableError);
    const message = (caught as Error).message;
    expect(message).to.include(`127.0.0.1:${refusedPort}: unreachable (ECONNREFUSED)`);
    expect(message).to.include(`127.0.0.1:${closingPort}:`);
    expect(message).not.to.include("postgres@");
  });
});

describe("PostgreSQL record store, a commit no synchronous standby confirms", function () {
  // A server told that its commits need a standby which never comes: what an old primary
  // cut off from its cluster sees. It commits locally, waits, and when statement_timeout
  // cancels the wait it answers success with a WARNING.
  let server: TestPostgres;
  let admin: pg.Client;

  before(async function () {
    this.timeout(60_000);
    server = await startPostgres({ ownServer: true });
    admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
  });
  after(async function () {
    await admin?.end().catch(() => {});
    await server?.stop();
  });

  const requireStandby = async (names: string) => {
    await admin.query(`ALTER SYSTEM SET synchronous_standby_names = '${names}'`);
    await admin.query("SELECT pg_reload_conf()");
    // pg_reload_conf() only signals; the setting is in force once a new session sees it.
    for (let i = 0; i < 100; i++) {
      const probe = new pg.Client({ connectionString: server.url });
      await probe.connect();
      const { rows } = await probe.query<{ synchronous_standby_names: string }>("SHOW synchronous_standby_names");
      await probe.end();
      if (rows[0]!.synchronous_standby_names === names) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error("the server did not take the new synchronous_standby_names");
  };

  it("refuses the write as unavailable, never acknowledges it, and answers no 'no record' it cannot confirm", async function () {
    this.timeout(30_000);
    // The server's statement_timeout does not cover a commit's wait for its standby
    // (PostgreSQL stops the timer before committing): the client's own limit,
    // statementTimeoutMs + 1 s, is what ends it.
    const store = await openPostgresStore({ url: server.url, statementTimeoutMs: 100 });
    try {
      const existing = await store.create(row());
      await requireStandby("hello_no_such_standby");
      try {
        await expectStorageError(store.create(row()), UnavailableError, "unavailable", "");
        // A read that finds nothing is not believed: no Error Token could be minted from it.
        await expectStorageError(store.read(randomHash(), "subject"), UnavailableError, "unavailable", "");
        // A record that is there is read as usual (reads need no commit).
        expect((await store.read(existing.hash, "subject")).version).to.equal(1);
        // Single-use ids are writes too.
        await expectStorageError(store.spendTokenId(randomHash(), new Date(Date.now() + 60_000)), UnavailableError, "unavailable", "");
      } finally {
        await requireStandby("");
      }
      // With the standby requirement gone, the same store goes on: "no record" is answered again.
      await expectStorageError(store.read(randomHash(), "subject"), NotFoundError, "not_found", "");
      expect((await store.create(row())).version).to.equal(1);
    } finally {
      await store.close();
    }
  });

  it("takes a cancelled wait, which PostgreSQL reports as a success with a WARNING, as a failed write", async function () {
    this.timeout(30_000);
    const store = await openPostgresStore({ url: server.url, statementTimeoutMs: 5_000 });
    const hash = randomHash();
    try {
      await requireStandby("hello_no_such_standby");
      try {
        const write = store.create(row(hash)).then(() => undefined, (error: unknown) => error);
        // The moment the commit waits for its standby, an operator (or a failover tool) cancels the wait.
        let cancelled = false;
        for (let i = 0; i < 500 && !cancelled; i++) {
          const { rows } = await admin.query<{ cancelled: boolean }>(
            "SELECT pg_cancel_backend(pid) AS cancelled FROM pg_stat_activity WHERE application_name = 'hello-storage' AND wait_event = 'SyncRep'",
          );
          cancelled = rows.some((r) => r.cancelled);
          if (!cancelled) await new Promise((resolve) => setTimeout(resolve, 10));
        }
        expect(cancelled, "the commit was seen waiting for its standby").to.equal(true);
        const refused = await write;
        expect(refused).to.be.instanceOf(UnavailableError);
        expect((refused as Error).message).to.match(/no synchronous standby confirmed/);
      } finally {
        await requireStandby("");
      }
      // PostgreSQL kept the row (committed locally): the point is that the caller was not told it was written.
      const { rows } = await admin.query("SELECT 1 FROM records WHERE hash = $1", [hash]);
      expect(rows).to.have.length(1);
    } finally {
      await store.close();
    }
  });
});
