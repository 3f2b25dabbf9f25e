// The RecordStore contract as tests, run against every backend (pglite-store.spec.ts,
// postgres-store.spec.ts), so that the two cannot drift apart.
//
// All tests share one database: each uses fresh random hashes and jtis, and only
// assertions about its own rows. Error assertions check the exact class and `code`, and
// that the message names no hash (hashes are user-linked; messages reach logs).

import { randomBytes } from "node:crypto";

import { expect } from "chai";

import {
  AlreadyExistsError,
  InvalidArgumentError,
  NotFoundError,
  StorageError,
  TokenReusedError,
  UnavailableError,
  VersionConflictError,
} from "./errors.js";
import type { StorageErrorCode } from "./errors.js";
import type { NewRow, RecordKindName, RecordStore, StoredRow } from "./record-store.js";

const MiB = 1024 * 1024;

export function recordStoreConformance(
  name: string,
  open: () => Promise<RecordStore>,
  cleanup?: () => Promise<void>,
): void {
  describe(`RecordStore conformance: ${name}`, function () {
    let store: RecordStore;

    before(async function () {
      store = await open();
    });

    after(async function () {
      await store?.close();
      await cleanup?.();
    });

    /** Creates a row with a fresh hash, random bytes and key id "k1". */
    async function createRow(overrides: Partial<NewRow> = {}): Promise<StoredRow> {
      return store.create({ hash: randomHash(), kind: "subject", keyId: "k1", ciphertext: randomBytes(64), ...overrides });
    }

    describe("create and read", function () {
      it("round-trips a row exactly", async function () {
        const before = Date.now();
        const ciphertext = randomBytes(300);
        const hash = randomHash();
        const created = await store.create({ hash, kind: "release", keyId: "key-2024-01", ciphertext });

        expect(created.hash).to.equal(hash);
        expect(created.kind).to.equal("release");
        expect(created.keyId).to.equal("key-2024-01");
        expect(created.version).to.equal(1);
        expectBytes(created.ciphertext, ciphertext);
        expect(created.createTime).to.be.instanceOf(Date);
        expect(created.updateTime.getTime()).to.equal(created.createTime.getTime());
        // The database clock, which here is this machine's: within a minute of ours.
        expect(Math.abs(created.createTime.getTime() - before)).to.be.below(60_000);

        const read = await store.read(hash, "release");
        expectSameRow(read, created);
      });

      it("round-trips a 1 MiB ciphertext (the maximum)", async function () {
        const ciphertext = randomBytes(MiB);
        const created = await createRow({ kind: "wallet", ciphertext });
        expectBytes((await store.read(created.hash, "wallet")).ciphertext, ciphertext);
      });

      it("round-trips bytes that contain zeros", async function () {
        const ciphertext = Uint8Array.from([0, 0, 1, 0, 255, 0, 92, 120, 0]); // NUL, and "\x" of bytea's hex form
        const created = await createRow({ ciphertext });
        expectBytes((await store.read(created.hash, "subject")).ciphertext, ciphertext);
        expectBytes(Uint8Array.from([0]), (await createRow({ ciphertext: Uint8Array.from([0]) })).ciphertext);
      });

      it("accepts a ciphertext given as a view into a larger buffer, storing only the view", async function () {
        const backing = randomBytes(100);
        const view = new Uint8Array(backing.buffer, backing.byteOffset + 10, 20);
        const created = await createRow({ ciphertext: view });
        expectBytes((await store.read(created.hash, "subject")).ciphertext, backing.subarray(10, 30));
      });

      it("refuses a second create of one hash and leaves the first row unchanged", async function () {
        const first = await createRow();
        await expectStorageError(
          store.create({ hash: first.hash, kind: "subject", keyId: "k2", ciphertext: randomBytes(10) }),
          AlreadyExistsError,
          "already_exists",
          first.hash,
        );
        expectSameRow(await store.read(first.hash, "subject"), first);
      });

      it("refuses a create of a hash that a row of another kind already has", async function () {
        const first = await createRow({ kind: "subject" });
        await expectStorageError(
          store.create({ hash: first.hash, kind: "wallet", keyId: "k1", ciphertext: randomBytes(10) }),
          AlreadyExistsError,
          "already_exists",
          first.hash,
        );
        expectSameRow(await store.read(first.hash, "subject"), first);
      });

      it("lets exactly one of 16 concurrent creates of one hash succeed", async function () {
        const hash = randomHash();
        const attempts = Array.from({ length: 16 }, (_, i) => ({
          hash,
          kind: "subject" as const,
          keyId: `k${i}`,
          ciphertext: randomBytes(32),
        }));
        const results = await Promise.allSettled(attempts.map((row) => store.create(row)));

        const won = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
        expect(won).to.have.length(1);
        for (const r of results) {
          if (r.status === "rejected") expectErrorValue(r.reason, AlreadyExistsError, "already_exists", hash);
        }
        const winner = attempts.find((a) => a.keyId === won[0]!.keyId)!;
        const stored = await store.read(hash, "subject");
        expect(stored.keyId).to.equal(winner.keyId);
        expectBytes(stored.ciphertext, winner.ciphertext);
      });

      it("reports a missing row as NotFoundError", async function () {
        const hash = randomHash();
        await expectStorageError(store.read(hash, "subject"), NotFoundError, "not_found", hash);
      });

      it("reports a row of another kind as not found, exactly as a missing row", async function () {
        const row = await createRow({ kind: "subject" });
        const wrongKind = await caught(store.read(row.hash, "release"));
        const missing = await caught(store.read(randomHash(), "release"));
        expectErrorValue(wrongKind, NotFoundError, "not_found", row.hash);
        // The same message, so an error cannot tell a caller that the hash is in use.
        expect((wrongKind as Error).message).to.equal((missing as Error).message);
      });
    });

    describe("update", function () {
      it("replaces key id and bytes at the expected version and bumps the version", async function () {
        const row = await createRow();
        const ciphertext = randomBytes(80);
        const updated = await store.update(row.hash, "subject", 1, { keyId: "k2", ciphertext });

        expect(updated.version).to.equal(2);
        expect(updated.keyId).to.equal("k2");
        expectBytes(updated.ciphertext, ciphertext);
        expect(updated.createTime.getTime()).to.equal(row.createTime.getTime());
        expect(updated.updateTime.getTime()).to.be.at.least(updated.createTime.getTime());
        expectSameRow(await store.read(row.hash, "subject"), updated);

        const again = await store.update(row.hash, "subject", 2, { keyId: "k3", ciphertext: randomBytes(5) });
        expect(again.version).to.equal(3);
      });

      it("refuses a stale or future version with VersionConflictError and leaves the row unchanged", async function () {
        const row = await createRow();
        const updated = await store.update(row.hash, "subject", 1, { keyId: "k2", ciphertext: randomBytes(8) });
        for (const version of [1, 3, 99]) {
          await expectStorageError(
            store.update(row.hash, "subject", version, { keyId: "k9", ciphertext: randomBytes(8) }),
            VersionConflictError,
            "version_conflict",
            row.hash,
          );
        }
        expectSameRow(await store.read(row.hash, "subject"), updated);
      });

      it("lets exactly one of 8 concurrent updates at the same version win", async function () {
        const row = await createRow();
        const nexts = Array.from({ length: 8 }, (_, i) => ({ keyId: `k${i}`, ciphertext: randomBytes(16) }));
        const results = await Promise.allSettled(nexts.map((next) => store.update(row.hash, "subject", 1, next)));

        const won = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
        expect(won).to.have.length(1);
        for (const r of results) {
          if (r.status === "rejected") expectErrorValue(r.reason, VersionConflictError, "version_conflict", row.hash);
        }
        const stored = await store.read(row.hash, "subject");
        expect(stored.version).to.equal(2);
        expect(stored.keyId).to.equal(won[0]!.keyId);
        expectBytes(stored.ciphertext, nexts.find((n) => n.keyId === won[0]!.keyId)!.ciphertext);
      });

      it("reports a missing row, or one of another kind, as NotFoundError", async function () {
        const hash = randomHash();
        const next = { keyId: "k2", ciphertext: randomBytes(8) };
        await expectStorageError(store.update(hash, "subject", 1, next), NotFoundError, "not_found", hash);

        const row = await createRow({ kind: "wallet" });
        await expectStorageError(store.update(row.hash, "release", 1, next), NotFoundError, "not_found", row.hash);
        expectSameRow(await store.read(row.hash, "wallet"), row);
      });
    });

    describe("delete", function () {
      it("deletes a row, with or without an expected version", async function () {
        const a = await createRow();
        await store.delete(a.hash, "subject");
        await expectStorageError(store.read(a.hash, "subject"), NotFoundError, "not_found", a.hash);

        const b = await createRow();
        await store.update(b.hash, "subject", 1, { keyId: "k2", ciphertext: randomBytes(8) });
        await store.delete(b.hash, "subject", 2);
        await expectStorageError(store.read(b.hash, "subject"), NotFoundError, "not_found", b.hash);

        // A deleted hash can be created afresh, at version 1.
        expect((await createRow({ hash: a.hash })).version).to.equal(1);
      });

      it("refuses a wrong version with VersionConflictError and keeps the row", async function () {
        const row = await createRow();
        await expectStorageError(store.delete(row.hash, "subject", 2), VersionConflictError, "version_conflict", row.hash);
        expectSameRow(await store.read(row.hash, "subject"), row);
      });

      it("reports a missing row, or one of another kind, as NotFoundError", async function () {
        const hash = randomHash();
        await expectStorageError(store.delete(hash, "subject"), NotFoundError, "not_found", hash);
        await expectStorageError(store.delete(hash, "subject", 1), NotFoundError, "not_found", hash);

        const row = await createRow({ kind: "release" });
        await expectStorageError(store.delete(row.hash, "wallet"), NotFoundError, "not_found", row.hash);
        expectSameRow(await store.read(row.hash, "release"), row);
      });
    });

    describe("spent token ids", function () {
      const inAnHour = () => new Date(Date.now() + 3600_000);

      it("refuses to spend a jti twice", async function () {
        const jti = randomHash();
        await store.spendTokenId(jti, inAnHour());
        await expectStorageError(store.spendTokenId(jti, inAnHour()), TokenReusedError, "token_reused", jti);
      });

      it("lets exactly one of 16 concurrent spends of one jti succeed", async function () {
        const jti = randomHash();
        const results = await Promise.allSettled(Array.from({ length: 16 }, () => store.spendTokenId(jti, inAnHour())));
        expect(results.filter((r) => r.status === "fulfilled")).to.have.length(1);
        for (const r of results) {
          if (r.status === "rejected") expectErrorValue(r.reason, TokenReusedError, "token_reused", jti);
        }
      });

      // These two use expiry times long past, so that the other tests' ids (expiring an
      // hour from now) are never swept, and the counts are exact.
      it("sweeps only ids that expired before `now`", async function () {
        const now = new Date("2001-01-01T12:00:00Z");
        const expired = randomHash();
        const atNow = randomHash();
        const later = randomHash();
        await store.spendTokenId(expired, new Date(now.getTime() - 1000));
        await store.spendTokenId(atNow, now);
        await store.spendTokenId(later, new Date(now.getTime() + 1000));

        expect(await store.sweepSpentTokenIds(now)).to.equal(1);
        expect(await store.sweepSpentTokenIds(now)).to.equal(0);
        // Swept, so spendable again; the others are still spent.
        await store.spendTokenId(expired, new Date(now.getTime() - 1000));
        await expectStorageError(store.spendTokenId(atNow, now), TokenReusedError, "token_reused", atNow);
        await expectStorageError(store.spendTokenId(later, now), TokenReusedError, "token_reused", later);

        expect(await store.sweepSpentTokenIds(new Date(now.getTime() + 2000))).to.equal(3);
      });

      it("sweeps more expired ids than fit in one batch", async function () {
        const expiresAt = new Date("1990-01-01T00:00:00Z");
        const count = 2345;
        for (let i = 0; i < count; i += 100) {
          await Promise.all(
            Array.from({ length: Math.min(100, count - i) }, () => store.spendTokenId(randomHash(), expiresAt)),
          );
        }
        expect(await store.sweepSpentTokenIds(new Date("1990-01-02T00:00:00Z"))).to.equal(count);
      });

      it("sweeps up to the current time by default", async function () {
        const jti = randomHash();
        await store.spendTokenId(jti, new Date(Date.now() - 1000));
        expect(await store.sweepSpentTokenIds()).to.be.at.least(1);
        await store.spendTokenId(jti, inAnHour()); // swept, so spendable again
      });
    });

    describe("scan", function () {
      it("returns every row once, in hash order, across pages", async function () {
        const created = new Map<string, StoredRow>();
        for (let i = 0; i < 120; i += 20) {
          const rows = await Promise.all(Array.from({ length: 20 }, () => createRow({ ciphertext: randomBytes(16) })));
          for (const row of rows) created.set(row.hash, row);
        }

        const scanned: StoredRow[] = [];
        for await (const row of store.scan()) scanned.push(row);

        // Byte order (the C collation of PGlite and of the test servers), strictly
        // increasing, which also rules out duplicates.
        for (let i = 1; i < scanned.length; i++) {
          expect(scanned[i - 1]!.hash < scanned[i]!.hash, `row ${i} out of order`).to.equal(true);
        }
        const byHash = new Map(scanned.map((row) => [row.hash, row]));
        for (const row of created.values()) {
          expect(byHash.has(row.hash), "a created row is missing from the scan").to.equal(true);
          expectSameRow(byHash.get(row.hash)!, row);
        }
      });
    });

    describe("invalid arguments", function () {
      const good = (): NewRow => ({ hash: randomHash(), kind: "subject", keyId: "k1", ciphertext: randomBytes(8) });
      const next = { keyId: "k1", ciphertext: randomBytes(8) };
      const badHashes: Array<[string, string]> = [
        ["empty", ""],
        ["with a slash", `${randomHash()}/x`],
        ["with padding", `${randomHash()}=`],
        ["of 129 characters", "A".repeat(129)],
        ["with a space", `${randomHash()} `],
      ];

      it("accepts the extremes: a 1-character and a 128-character hash, a 64-character key id", async function () {
        // One character leaves 64 hashes to choose from: take one that no row has.
        const existing = await scannedHashes();
        const short = [..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"].find(
          (c) => !existing.has(c),
        )!;
        for (const hash of [short, randomBytes(96).toString("base64url")]) {
          expect(hash).to.match(/^[A-Za-z0-9_-]{1,128}$/);
          await store.create({ hash, kind: "subject", keyId: "~".repeat(64), ciphertext: Uint8Array.from([1]) });
          expect((await store.read(hash, "subject")).keyId).to.equal("~".repeat(64));
        }
      });

      for (const [what, hash] of badHashes) {
        it(`refuses a hash ${what} in every operation`, async function () {
          await expectInvalid(store.create({ ...good(), hash }), hash);
          await expectInvalid(store.read(hash, "subject"), hash);
          await expectInvalid(store.update(hash, "subject", 1, next), hash);
          await expectInvalid(store.delete(hash, "subject"), hash);
          // The database itself would take any of these; only the checks keep them out.
          expect((await scannedHashes()).has(hash), "a row was written under the bad hash").to.equal(false);
        });
      }

      const badRows: Array<[string, (row: NewRow) => NewRow]> = [
        ["an empty ciphertext", (row) => ({ ...row, ciphertext: new Uint8Array(0) })],
        ["a ciphertext over 1 MiB", (row) => ({ ...row, ciphertext: new Uint8Array(MiB + 1) })],
        ["a ciphertext that is not a Uint8Array", (row) => ({ ...row, ciphertext: "abc" as unknown as Uint8Array })],
        ["an unknown kind", (row) => ({ ...row, kind: "user" as RecordKindName })],
        ["an empty key id", (row) => ({ ...row, keyId: "" })],
        ["a key id of 65 characters", (row) => ({ ...row, keyId: "k".repeat(65) })],
        ["a key id with a newline", (row) => ({ ...row, keyId: "k1\n" })],
        ["a key id with non-ASCII", (row) => ({ ...row, keyId: "clé" })],
      ];
      for (const [what, spoil] of badRows) {
        it(`refuses ${what} on create and update, writing nothing`, async function () {
          const bad = spoil(good());
          await expectInvalid(store.create(bad), bad.hash);
          await expectNothingWrittenUnder(bad.hash);

          const row = await createRow();
          await expectInvalid(store.update(row.hash, bad.kind, 1, { keyId: bad.keyId, ciphertext: bad.ciphertext }), row.hash);
          expectSameRow(await store.read(row.hash, "subject"), row);
        });
      }

      it("refuses an unknown kind on read and delete", async function () {
        const row = await createRow();
        await expectInvalid(store.read(row.hash, "user" as RecordKindName), row.hash);
        await expectInvalid(store.delete(row.hash, "user" as RecordKindName), row.hash);
        expectSameRow(await store.read(row.hash, "subject"), row);
      });

      it("refuses a version that is not a positive integer", async function () {
        const row = await createRow();
        for (const version of [0, -1, 1.5, Number.NaN]) {
          await expectInvalid(store.update(row.hash, "subject", version, next), row.hash);
          await expectInvalid(store.delete(row.hash, "subject", version), row.hash);
        }
        expectSameRow(await store.read(row.hash, "subject"), row);
      });

      it("refuses a bad jti or date", async function () {
        await expectInvalid(store.spendTokenId("", new Date()), "");
        await expectInvalid(store.spendTokenId("a b", new Date()), "a b");
        await expectInvalid(store.spendTokenId("x".repeat(257), new Date()), "x".repeat(257));
        const jti = randomHash();
        await expectInvalid(store.spendTokenId(jti, new Date(Number.NaN)), jti);
        await store.spendTokenId(jti, new Date()); // the refused call spent nothing
        await expectInvalid(store.sweepSpentTokenIds(new Date(Number.NaN)), "");
      });

      async function expectInvalid(call: Promise<unknown>, secret: string): Promise<void> {
        const error = await caught(call);
        expectErrorValue(error, InvalidArgumentError, "invalid_argument", secret);
        // The message says what to fix.
        expect((error as Error).message).to.match(/must/);
      }

      async function scannedHashes(): Promise<Set<string>> {
        const hashes = new Set<string>();
        for await (const row of store.scan()) hashes.add(row.hash);
        return hashes;
      }

      async function expectNothingWrittenUnder(hash: string): Promise<void> {
        for (const kind of ["subject", "release", "wallet"] as const) {
          await expectStorageError(store.read(hash, kind), NotFoundError, "not_found", hash);
        }
      }
    });

    describe("close", function () {
      it("fails calls after close with UnavailableError, and closes idempotently", async function () {
        const other = await open();
        const row = await other.create({ hash: randomHash(), kind: "subject", keyId: "k1", ciphertext: randomBytes(8) });
        await other.close();
        await other.close();
        await expectStorageError(other.read(row.hash, "subject"), UnavailableError, "unavailable", row.hash);
        await expectStorageError(other.spendTokenId(randomHash(), new Date()), UnavailableError, "unavailable", row.hash);
      });
    });
  });
}

export function randomHash(): string {
  return randomBytes(32).toString("base64url");
}

/** The error a call rejects with; fails the test if it resolves. */
export async function caught(call: Promise<unknown>): Promise<unknown> {
  try {
    await call;
  } catch (error) {
    return error;
  }
  return expect.fail("expected the call to fail, but it succeeded");
}

export async function expectStorageError(
  call: Promise<unknown>,
  errorClass: new (message: string) => StorageError,
  code: StorageErrorCode,
  secret: string,
): Promise<void> {
  expectErrorValue(await caught(call), errorClass, code, secret);
}

/** Exactly `errorClass` (not a subclass or sibling), with `code`, and no trace of `secret`. */
function expectErrorValue(
  error: unknown,
  errorClass: new (message: string) => StorageError,
  code: StorageErrorCode,
  secret: string,
): void {
  expect(error).to.be.instanceOf(StorageError);
  expect(Object.getPrototypeOf(error), `expected ${errorClass.name}, got ${String(error)}`).to.equal(
    errorClass.prototype,
  );
  const storageError = error as StorageError;
  expect(storageError.code).to.equal(code);
  expect(storageError.name).to.equal(errorClass.name);
  expect(storageError.message).to.be.a("string").and.not.equal("");
  if (secret !== "") expect(storageError.message).not.to.include(secret);
  expect(storageError.cause).to.equal(undefined);
}

function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  // A plain Uint8Array, not a Buffer (whose equality and JSON forms differ).
  expect(Object.getPrototypeOf(actual)).to.equal(Uint8Array.prototype);
  expect(actual.byteLength).to.equal(expected.byteLength);
  expect(Buffer.compare(actual, expected), "bytes differ").to.equal(0);
}

function expectSameRow(actual: StoredRow, expected: StoredRow): void {
  expect(actual.hash).to.equal(expected.hash);
  expect(actual.kind).to.equal(expected.kind);
  expect(actual.keyId).to.equal(expected.keyId);
  expect(actual.version).to.equal(expected.version);
  expectBytes(actual.ciphertext, expected.ciphertext);
  expect(actual.createTime.getTime()).to.equal(expected.createTime.getTime());
  expect(actual.updateTime.getTime()).to.equal(expected.updateTime.getTime());
}
