// A statement serves a request with a deadline (deadline.ts, docs/faults.md): it is not
// sent once the request has given up, and on PostgreSQL it is not waited for past the
// deadline. And the pool outlives its server: a restart costs UNAVAILABLE while the
// server is down, not the Storage process.

import { expect } from "chai";
import pg from "pg";

import { startPostgres } from "../../../../test/support/postgres-server.js";
import { expectStorageError, randomDigest, randomHash } from "./conformance.js";
import { withDeadline } from "./deadline.js";
import { NotFoundError, UnavailableError } from "./errors.js";
import { openPGliteStore } from "./pglite-store.js";
import { openPostgresStore } from "./postgres-store.js";
import type { RecordStore } from "./record-store.js";

const row = (hash: string) => ({ hash, kind: "wallet" as const, keyId: "k1", ciphertext: Uint8Array.from([1, 2, 3]), digest: randomDigest() });

function deadlineCases(open: () => Promise<RecordStore>) {
  let store: RecordStore;
  before(async () => (store = await open()));
  after(async () => store?.close());

  it("a statement for a request whose deadline has passed is not sent: UNAVAILABLE, and nothing is written", async function () {
    const hash = randomHash();
    await expectStorageError(withDeadline(0, () => store.create(row(hash))), UnavailableError, "unavailable", hash);
    await expectStorageError(store.read(hash, "wallet"), NotFoundError, "not_found", hash);
  });

  it("nor is one for a request whose caller has gone (its signal aborted)", async function () {
    const hash = randomHash();
    const gone = new AbortController();
    gone.abort();
    await expectStorageError(withDeadline(5_000, () => store.create(row(hash)), gone.signal), UnavailableError, "unavailable", hash);
    await expectStorageError(store.read(hash, "wallet"), NotFoundError, "not_found", hash);
  });

  it("within its deadline, and without one, a request is served as usual", async function () {
    const hash = randomHash();
    await withDeadline(5_000, () => store.create(row(hash)), new AbortController().signal);
    expect((await store.read(hash, "wallet")).keyId).to.equal("k1");
  });
}

describe("statements under a request's deadline: PGlite", function () {
  deadlineCases(() => openPGliteStore({}));
});

describe("statements under a request's deadline: PostgreSQL", function () {
  this.timeout(60_000);
  let server: Awaited<ReturnType<typeof startPostgres>>;
  before(async () => (server = await startPostgres({ ownServer: true })));
  after(async () => server?.stop());

  deadlineCases(() => openPostgresStore({ url: server.url }));

  it("a statement stuck behind a lock gives up at its request's deadline, well before statement_timeout, and the store goes on", async function () {
    const store = await openPostgresStore({ url: server.url, statementTimeoutMs: 10_000 });
    const locker = new pg.Client({ connectionString: server.url });
    await locker.connect();
    try {
      const hash = randomHash();
      await store.create(row(hash));
      await locker.query("BEGIN");
      await locker.query("LOCK TABLE records IN ACCESS EXCLUSIVE MODE");
      const started = performance.now();
      await expectStorageError(withDeadline(300, () => store.read(hash, "wallet")), UnavailableError, "unavailable", hash);
      const waited = performance.now() - started;
      expect(waited, "gave up at the deadline").to.be.at.least(250);
      expect(waited, "not at statement_timeout (10 s)").to.be.below(5_000);
      await locker.query("COMMIT");
      expect((await store.read(hash, "wallet")).keyId).to.equal("k1");
    } finally {
      await locker.end();
      await store.close();
    }
  });

  for (const mode of ["fast", "immediate"] as const) {
    it(`the pool outlives a server restart (pg_ctl stop -m ${mode}): UNAVAILABLE while it is down, served again once it is up`, async function () {
      const store = await openPostgresStore({ url: server.url, connectTimeoutMs: 1_000 });
      try {
        const hash = randomHash();
        // Several connections in the pool, idle when the server goes: each one's death
        // is an 'error' event that must not take the process down.
        await Promise.all([store.create(row(hash)), ...Array.from({ length: 4 }, () => store.read(hash, "wallet").catch(() => {}))]);
        await server.server!.stop(mode);
        for (const attempt of [1, 2]) {
          const started = performance.now();
          await expectStorageError(store.read(hash, "wallet"), UnavailableError, "unavailable", hash);
          expect(performance.now() - started, `attempt ${attempt} while down`).to.be.below(3_000);
        }
        await server.server!.start();
        expect((await store.read(hash, "wallet")).keyId).to.equal("k1");
      } finally {
        await store.close();
      }
    });
  }
});
