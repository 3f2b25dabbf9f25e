import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { expect } from "chai";
import { PGlite } from "@electric-sql/pglite";

import {
  type FormatTestDatabase,
  expectToday,
  randomDigest,
  randomHash,
  recordStoreConformance,
  storageFormat4Migration,
  storageFormatMigration,
} from "./conformance.js";
import { openRecordStore } from "./open-store.js";
import { openPGliteStore } from "./pglite-store.js";

recordStoreConformance("PGlite in memory", () => openPGliteStore({}));

describe("PGlite record store: storage formats", function () {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });
  const onDisk = async (): Promise<FormatTestDatabase> => {
    const dataDir = await mkdtemp(join(tmpdir(), "hello-pglite-format-"));
    dirs.push(dataDir);
    return {
      // A PGlite of its own each time: one process may hold a data directory at a time.
      async sql(statement, params) {
        const db = await PGlite.create({ dataDir });
        try {
          if (params === undefined) return (await db.exec(statement)).at(-1)?.rows ?? [];
          return (await db.query<Record<string, unknown>>(statement, params)).rows;
        } finally {
          await db.close();
        }
      },
      open: () => openPGliteStore({ dataDir }),
    };
  };
  storageFormatMigration("PGlite on disk", onDisk);
  storageFormat4Migration("PGlite on disk", onDisk);
});

describe("PGlite record store on disk", function () {
  let parent: string;

  before(async function () {
    parent = await mkdtemp(join(tmpdir(), "hello-pglite-"));
  });

  after(async function () {
    await rm(parent, { recursive: true, force: true });
  });

  it("creates a missing data directory and keeps rows and spent ids across close and reopen", async function () {
    const dataDir = join(parent, "not", "yet", "there");
    const hash = randomHash();
    const jti = randomHash();
    const ciphertext = randomBytes(1000);

    const first = await openRecordStore({ dataDir });
    const created = await first.create({ hash, kind: "wallet", keyId: "k1", ciphertext, digest: randomDigest() });
    const updated = await first.update(hash, "wallet", 1, { keyId: "k2", ciphertext, digest: randomDigest() });
    await first.spendTokenId(jti, new Date(Date.now() + 3600_000));
    await first.close();

    const second = await openRecordStore({ dataDir });
    try {
      const read = await second.read(hash, "wallet");
      expect(read.version).to.equal(2);
      expect(read.keyId).to.equal("k2");
      expect(Buffer.compare(read.ciphertext, ciphertext)).to.equal(0);
      expect(read.createTime.getTime()).to.equal(created.createTime.getTime());
      expect(read.updateTime.getTime()).to.equal(updated.updateTime.getTime());
      expect(read.digest).to.equal(updated.digest);
      // The schema is applied again at open without disturbing what is there.
      await second.spendTokenId(jti, new Date()).then(
        () => expect.fail("the spent jti was forgotten"),
        (error: unknown) => expect((error as { code?: unknown }).code).to.equal("token_reused"),
      );
    } finally {
      await second.close();
    }
  });

  it("upgrades a schema-1 database in place: its rows read as legacy rows, and new rows carry wrapped keys", async function () {
    const dataDir = join(parent, "schema-1");
    // The schema as version 1 of hello-mesh made it, with one row written then.
    const old = await PGlite.create({ dataDir });
    await old.exec(`
      CREATE TABLE records (hash TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('subject', 'release', 'wallet')),
        key_id TEXT NOT NULL, ciphertext BYTEA NOT NULL, version BIGINT NOT NULL,
        create_time TIMESTAMPTZ NOT NULL, update_time TIMESTAMPTZ NOT NULL);
      CREATE TABLE spent_token_ids (jti TEXT PRIMARY KEY, expires_at TIMESTAMPTZ NOT NULL);`);
    const hash = randomHash();
    const ciphertext = randomBytes(40);
    const started = Date.now();
    await old.query("INSERT INTO records VALUES ($1, 'wallet', 'k1', $2, 3, now(), now())", [hash, ciphertext]);
    await old.close();

    const store = await openRecordStore({ dataDir });
    try {
      const row = await store.read(hash, "wallet");
      expect(row).to.include({ keyId: "k1", version: 3 });
      expect(row.wrappedKey).to.equal(undefined);
      expect(row.digest).to.equal(undefined);
      expectToday(row.createTime, started);
      expect(Buffer.compare(row.ciphertext, ciphertext)).to.equal(0);
      expect((await store.countKeys()).find((u) => u.keyId === "k1")).to.deep.equal({
        keyId: "k1", records: 1, legacyRecords: 1, previousWrappings: 0,
      });
      const wrappedKey = randomBytes(60);
      const updated = await store.update(hash, "wallet", 3, { keyId: "k2", wrappedKey, ciphertext, digest: randomDigest() });
      expect(Buffer.compare(updated.wrappedKey!, wrappedKey)).to.equal(0);
      expect((await store.listKeys("k2", { limit: 5 })).map((r) => r.hash)).to.deep.equal([hash]);
    } finally {
      await store.close();
    }
  });

  it("says what is wrong when the data directory cannot be created", async function () {
    const file = join(parent, "a-file");
    await writeFile(file, "not a directory");
    const error = await openPGliteStore({ dataDir: join(file, "data") }).then(
      () => expect.fail("opened a store under a regular file"),
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(Error);
    expect((error as Error).message).to.match(/ENOTDIR|EEXIST/);
  });

  it("lets one process at a time open a data directory, and takes over a dead holder's lock", async function () {
    const dataDir = join(parent, "locked");
    const first = await openPGliteStore({ dataDir });
    const second = await openPGliteStore({ dataDir }).then(
      () => expect.fail("a second store opened the same data directory"),
      (e: unknown) => e as Error,
    );
    expect(second.message).to.include(`another process (pid ${process.pid}) has the embedded database`);
    await first.close();

    // A lock left by a process that has exited does not block the next start.
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]).stdout.toString();
    await writeFile(join(dataDir, "hello-storage.pid"), `${dead}\n`);
    const third = await openPGliteStore({ dataDir });
    await third.close();
  });
});


describe("openRecordStore", function () {
  it("refuses a URL that is not postgres:// or postgresql://", async function () {
    const error = await openRecordStore({ url: "mysql://localhost/db" }).then(
      () => expect.fail("opened a store for a mysql URL"),
      (e: unknown) => e,
    );
    expect((error as { code?: unknown }).code).to.equal("invalid_argument");
  });
});
