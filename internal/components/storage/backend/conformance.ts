// The RecordStore contract as tests, run against every backend (pglite-store.spec.ts,
// postgres-store.spec.ts), so that the two cannot drift apart.
//
// All tests share one database: each uses fresh random hashes and jtis, and only
// assertions about its own rows. Error assertions check the exact class and `code`, and
// that the message names no hash (hashes are user-linked; messages reach logs).

import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";

import { expect } from "chai";

import { type StorageErrorCode, AlreadyExistsError, InvalidArgumentError, NotFoundError, StorageError } from "./errors.js";
import { TokenReusedError, UnavailableError, VersionConflictError } from "./errors.js";
import { RECORD_KINDS } from "./record-store.js";
import type { BatchWrite, KeyUsage, NewRow, RecordKindName, RecordStore, StoredRow } from "./record-store.js";
import { WALLET_RECORD_KINDS } from "../../../protocol/records.js";

const MiB = 1024 * 1024;
const DAY_MS = 86_400_000;

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

    /** Creates a row with a fresh hash, random bytes and digest, and key id "k1". */
    async function createRow(overrides: Partial<NewRow> = {}): Promise<StoredRow> {
      return store.create({ hash: randomHash(), kind: "subject", keyId: "k1", ciphertext: randomBytes(64), digest: randomDigest(), ...overrides });
    }

    describe("create and read", function () {
      it("round-trips a row exactly", async function () {
        const before = Date.now();
        const ciphertext = randomBytes(300);
        const hash = randomHash();
        const digest = randomDigest();
        const created = await store.create({ hash, kind: "release", keyId: "key-2024-01", ciphertext, digest });

        expect(created.hash).to.equal(hash);
        expect(created.kind).to.equal("release");
        expect(created.keyId).to.equal("key-2024-01");
        expect(created.version).to.equal(1);
        expect(created.digest).to.equal(digest);
        expectBytes(created.ciphertext, ciphertext);
        expect(created.createTime).to.be.instanceOf(Date);
        expect(created.updateTime.getTime()).to.equal(created.createTime.getTime());
        // The database clock, which here is this machine's: today (UTC), to the day.
        expectToday(created.createTime, before);

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

      const secondCreates = [
        ["a second create of one hash", { kind: "subject", keyId: "k2" }],
        ["a create of a hash that a row of another kind already has", { kind: "wallet", keyId: "k1" }],
      ] as const;
      for (const [what, second] of secondCreates) {
        it(`refuses ${what} and leaves the first row unchanged`, async function () {
          const first = await createRow({ kind: "subject" });
          const again = { hash: first.hash, ...second, ciphertext: randomBytes(10), digest: randomDigest() };
          await expectStorageError(store.create(again), AlreadyExistsError, "already_exists", first.hash);
          expectSameRow(await store.read(first.hash, "subject"), first);
        });
      }

      it("lets exactly one of 16 concurrent creates of one hash succeed", async function () {
        const hash = randomHash();
        const attempts = Array.from({ length: 16 }, (_, i) => ({
          hash,
          kind: "subject" as const,
          keyId: `k${i}`,
          ciphertext: randomBytes(32),
          digest: randomDigest(),
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
        expect(stored.digest).to.equal(winner.digest);
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
      it("replaces key id, bytes and digest at the expected version and bumps the version", async function () {
        const before = Date.now();
        const row = await createRow();
        const ciphertext = randomBytes(80);
        const digest = randomDigest();
        const updated = await store.update(row.hash, "subject", 1, { keyId: "k2", ciphertext, digest });

        expect(updated.version).to.equal(2);
        expect(updated.keyId).to.equal("k2");
        expect(updated.digest).to.equal(digest).and.not.equal(row.digest);
        expectBytes(updated.ciphertext, ciphertext);
        expect(updated.createTime.getTime()).to.equal(row.createTime.getTime());
        expectToday(updated.updateTime, before);
        expectSameRow(await store.read(row.hash, "subject"), updated);

        const again = await store.update(row.hash, "subject", 2, { keyId: "k3", ciphertext: randomBytes(5), digest: randomDigest() });
        expect(again.version).to.equal(3);
      });

      it("refuses a stale or future version with VersionConflictError and leaves the row unchanged", async function () {
        const row = await createRow();
        const updated = await store.update(row.hash, "subject", 1, { keyId: "k2", ciphertext: randomBytes(8), digest: randomDigest() });
        for (const version of [1, 3, 99]) {
          const next = { keyId: "k9", ciphertext: randomBytes(8), digest: randomDigest() };
          await expectStorageError(store.update(row.hash, "subject", version, next), VersionConflictError, "version_conflict", row.hash);
        }
        expectSameRow(await store.read(row.hash, "subject"), updated);
      });

      it("lets exactly one of 8 concurrent updates at the same version win", async function () {
        const row = await createRow();
        const nexts = Array.from({ length: 8 }, (_, i) => ({ keyId: `k${i}`, ciphertext: randomBytes(16), digest: randomDigest() }));
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
        expect(stored.digest).to.equal(nexts.find((n) => n.keyId === won[0]!.keyId)!.digest);
      });

      it("reports a missing row, or one of another kind, as NotFoundError", async function () {
        const hash = randomHash();
        const next = { keyId: "k2", ciphertext: randomBytes(8), digest: randomDigest() };
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
        await store.update(b.hash, "subject", 1, { keyId: "k2", ciphertext: randomBytes(8), digest: randomDigest() });
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

    describe("writeBatch: several writes, all or none", function () {
      const content = () => ({ keyId: "k2", ciphertext: randomBytes(32), digest: randomDigest() });
      const fresh = (kind: RecordKindName = "release"): NewRow => ({ hash: randomHash(), kind, keyId: "k1", ciphertext: randomBytes(48), digest: randomDigest() });

      it("does every write, in one transaction: creates, an update at its version, a delete; returns what each wrote", async function () {
        const wallet = await createRow({ kind: "wallet" });
        const gone = await createRow();
        const [release, reservation] = [fresh("release"), fresh("reservation")];
        const next = content();
        const written = await store.writeBatch([
          { op: "update", hash: wallet.hash, kind: "wallet", expectedVersion: 1, next },
          { op: "create", row: reservation },
          { op: "create", row: release },
          { op: "delete", hash: gone.hash, kind: "subject", expectedVersion: 1 },
        ]);
        expect(written.map((r) => r?.version)).to.deep.equal([2, 1, 1, undefined]);
        expect((await store.read(wallet.hash, "wallet")).digest).to.equal(next.digest);
        expectBytes((await store.read(release.hash, "release")).ciphertext, release.ciphertext);
        expect((await store.read(reservation.hash, "reservation")).version).to.equal(1);
        await expectStorageError(store.read(gone.hash, "subject"), NotFoundError, "not_found", gone.hash);
      });

      it("a write that fails undoes the writes before it: a version conflict, an existing row, a missing row; the error names the write's place, not its row", async function () {
        const wallet = await createRow({ kind: "wallet" });
        const taken = await createRow({ kind: "reservation" });
        const cases: Array<[string, () => Parameters<RecordStore["writeBatch"]>[0], new (message: string) => StorageError, StorageErrorCode, string]> = [
          ["a wallet update at a version it is no longer at", () => [
            { op: "create", row: fresh() },
            { op: "update", hash: wallet.hash, kind: "wallet", expectedVersion: 2, next: content() },
          ], VersionConflictError, "version_conflict", "write 2 of 2: "],
          ["a create of a row that exists", () => [
            { op: "update", hash: wallet.hash, kind: "wallet", expectedVersion: 1, next: content() },
            { op: "create", row: { ...fresh("reservation"), hash: taken.hash } },
            { op: "create", row: fresh() },
          ], AlreadyExistsError, "already_exists", "write 2 of 3: "],
          ["a delete of a missing row", () => [
            { op: "update", hash: wallet.hash, kind: "wallet", expectedVersion: 1, next: content() },
            { op: "delete", hash: randomHash(), kind: "subject" },
          ], NotFoundError, "not_found", "write 2 of 2: "],
        ];
        for (const [what, writes, errorClass, code, prefix] of cases) {
          const batch = writes();
          const error = await caught(store.writeBatch(batch));
          expectErrorValue(error, errorClass, code, wallet.hash);
          expect((error as Error).message, what).to.match(new RegExp(`^${prefix}`));
          // Nothing of the batch is left: the wallet as it was, no row created.
          expectSameRow(await store.read(wallet.hash, "wallet"), wallet);
          for (const w of batch) if (w.op === "create" && w.row.hash !== taken.hash) await expectStorageError(store.read(w.row.hash, w.row.kind), NotFoundError, "not_found", w.row.hash);
        }
        expectSameRow(await store.read(taken.hash, "reservation"), taken);
      });

      it("two batches that update one row at one version: one lands, the other is a version conflict and writes nothing", async function () {
        const wallet = await createRow({ kind: "wallet" });
        const [a, b] = [fresh(), fresh()];
        const results = await Promise.allSettled([a, b].map((row) => store.writeBatch([
          { op: "update", hash: wallet.hash, kind: "wallet", expectedVersion: 1, next: content() },
          { op: "create", row },
        ])));
        expect(results.map((r) => r.status).sort()).to.deep.equal(["fulfilled", "rejected"]);
        const lost = results.findIndex((r) => r.status === "rejected");
        expectErrorValue((results[lost] as PromiseRejectedResult).reason, VersionConflictError, "version_conflict", wallet.hash);
        await expectStorageError(store.read([a, b][lost]!.hash, "release"), NotFoundError, "not_found", [a, b][lost]!.hash);
        expect((await store.read([a, b][1 - lost]!.hash, "release")).version).to.equal(1);
        expect((await store.read(wallet.hash, "wallet")).version).to.equal(2);
      });

      it("refuses an empty batch, one too large, two writes of one row, and a bad write, before the database is touched", async function () {
        const row = fresh();
        await expectEachInvalid([
          ["empty", store.writeBatch([])],
          ["too many", store.writeBatch(Array.from({ length: 65 }, () => ({ op: "create" as const, row: fresh() })))],
          ["one row twice", store.writeBatch([{ op: "create", row }, { op: "delete", hash: row.hash, kind: "release" }])],
          ["a bad hash", store.writeBatch([{ op: "create", row: { ...row, hash: "not a hash!" } }])],
          ["a bad version", store.writeBatch([{ op: "update", hash: row.hash, kind: "release", expectedVersion: 0, next: content() }])],
        ], row.hash);
        await expectStorageError(store.read(row.hash, "release"), NotFoundError, "not_found", row.hash);
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

    describe("key maintenance (envelope encryption, docs/keyring-rotation.md)", function () {
      /** A row under a fresh key id, with a wrapped data key. */
      async function wrappedRow(overrides: Partial<NewRow> = {}): Promise<StoredRow> {
        return createRow({ keyId: randomKeyId(), wrappedKey: randomBytes(60), ...overrides });
      }
      const expectedOf = (row: StoredRow) => ({ version: row.version, keyId: row.keyId, wrappedKey: row.wrappedKey! });
      const usageOf = async (keyId: string): Promise<Omit<KeyUsage, "keyId">> => {
        const found = (await store.countKeys()).find((u) => u.keyId === keyId);
        return { records: found?.records ?? 0, legacyRecords: found?.legacyRecords ?? 0, previousWrappings: found?.previousWrappings ?? 0 };
      };

      it("round-trips a wrapped key on create and update; a row written without one is a legacy row", async function () {
        const wrappedKey = randomBytes(60);
        const row = await wrappedRow({ wrappedKey });
        expectBytes(row.wrappedKey!, wrappedKey);
        expect(row.previousKeyId).to.equal(undefined);
        expectSameRow(await store.read(row.hash, "subject"), row);

        const legacy = await createRow();
        expect(legacy.wrappedKey).to.equal(undefined);
        expectSameRow(await store.read(legacy.hash, "subject"), legacy);

        const next = randomBytes(60);
        const updated = await store.update(legacy.hash, "subject", 1, { keyId: "k2", wrappedKey: next, ciphertext: randomBytes(9), digest: randomDigest() });
        expectBytes(updated.wrappedKey!, next);
        expectSameRow(await store.read(legacy.hash, "subject"), updated);
      });

      it("lists the rows under one key id in hash order, page by page, without their ciphertext", async function () {
        const keyId = randomKeyId();
        const rows = await Promise.all(Array.from({ length: 25 }, (_, i) =>
          createRow({ keyId, kind: RECORD_KINDS[i % RECORD_KINDS.length]!, ...(i === 7 ? {} : { wrappedKey: randomBytes(60) }) }),
        ));
        await wrappedRow(); // under another key id: never listed
        const listed = [];
        let after: string | undefined;
        for (;;) {
          const page = await store.listKeys(keyId, { limit: 10, ...(after ? { after } : {}) });
          listed.push(...page);
          if (page.length < 10) break;
          after = page.at(-1)!.hash;
        }
        const sorted = [...rows].sort((a, b) => (a.hash < b.hash ? -1 : 1));
        expect(listed.map((r) => r.hash)).to.deep.equal(sorted.map((r) => r.hash));
        for (const [i, entry] of listed.entries()) {
          const row = sorted[i]!;
          expect(Object.keys(entry).sort()).to.deep.equal(
            row.wrappedKey ? ["hash", "keyId", "kind", "version", "wrappedKey"] : ["hash", "keyId", "kind", "version"],
          );
          expect(entry).to.include({ hash: row.hash, kind: row.kind, keyId, version: 1 });
          expectOptionalBytes(entry.wrappedKey, row.wrappedKey, "wrappedKey");
        }
        expect(await store.listKeys(randomKeyId(), { limit: 10 })).to.deep.equal([]);
      });

      it("re-wraps a row at the listed version, key id and wrapped key: new key, same version, ciphertext and update time, and an undo copy of the old wrapping", async function () {
        const row = await wrappedRow();
        const target = randomKeyId();
        const newKey = randomBytes(60);
        await store.rewrapKey(row.hash, "subject", expectedOf(row), { keyId: target, wrappedKey: newKey });
        const after = await store.read(row.hash, "subject");
        expectSameRow(after, { ...row, keyId: target, wrappedKey: newKey, previousKeyId: row.keyId, previousWrappedKey: row.wrappedKey! });
        expect(await usageOf(target)).to.deep.equal({ records: 1, legacyRecords: 0, previousWrappings: 0 });
        expect(await usageOf(row.keyId)).to.deep.equal({ records: 0, legacyRecords: 0, previousWrappings: 1 });

        // A second re-wrap cannot push the first one's starting point out of the undo copy.
        const third = randomKeyId();
        await store.rewrapKey(row.hash, "subject", expectedOf(after), { keyId: third, wrappedKey: randomBytes(60) });
        const again = await store.read(row.hash, "subject");
        expect(again.keyId).to.equal(third);
        expect(again.previousKeyId).to.equal(row.keyId);
        expectBytes(again.previousWrappedKey!, row.wrappedKey!);

        // A token-authorized update brings a new data key and discards the undo copy.
        const updated = await store.update(row.hash, "subject", 1, { keyId: third, wrappedKey: randomBytes(60), ciphertext: randomBytes(8), digest: randomDigest() });
        expect(updated.version).to.equal(2);
        expect(updated.previousKeyId).to.equal(undefined);
        expect(updated.previousWrappedKey).to.equal(undefined);
      });

      it("refuses a re-wrap of a row that changed since it was listed, and leaves the row as it is", async function () {
        const row = await wrappedRow();
        const next = { keyId: randomKeyId(), wrappedKey: randomBytes(60) };
        const stale: Array<[string, { version: number; keyId: string; wrappedKey: Uint8Array }]> = [
          ["another version", { ...expectedOf(row), version: 2 }],
          ["another key id", { ...expectedOf(row), keyId: randomKeyId() }],
          ["another wrapped key", { ...expectedOf(row), wrappedKey: randomBytes(60) }],
        ];
        for (const [what, expected] of stale) {
          await expectStorageError(store.rewrapKey(row.hash, "subject", expected, next), VersionConflictError, "version_conflict", row.hash)
            .catch((e: unknown) => expect.fail(`${what}: ${String(e)}`));
        }
        await expectStorageError(store.rewrapKey(row.hash, "wallet", expectedOf(row), next), NotFoundError, "not_found", row.hash);
        const missing = randomHash();
        await expectStorageError(store.rewrapKey(missing, "subject", expectedOf(row), next), NotFoundError, "not_found", missing);
        expectSameRow(await store.read(row.hash, "subject"), row);

        // A legacy row has no wrapped key to compare with: never re-wrapped.
        const legacy = await createRow({ keyId: row.keyId });
        const expected = { version: 1, keyId: row.keyId, wrappedKey: randomBytes(60) };
        await expectStorageError(store.rewrapKey(legacy.hash, "subject", expected, next), VersionConflictError, "version_conflict", legacy.hash);
        expectSameRow(await store.read(legacy.hash, "subject"), legacy);
      });

      it("refuses a re-wrap listed before the row was deleted and created again (version 1 again, another data key)", async function () {
        const first = await wrappedRow();
        await store.delete(first.hash, "subject");
        const second = await createRow({ hash: first.hash, keyId: first.keyId, wrappedKey: randomBytes(60) });
        expect(second.version).to.equal(1);
        await expectStorageError(
          store.rewrapKey(first.hash, "subject", expectedOf(first), { keyId: randomKeyId(), wrappedKey: randomBytes(60) }),
          VersionConflictError,
          "version_conflict",
          first.hash,
        );
        expectSameRow(await store.read(first.hash, "subject"), second);
      });

      it("lets a concurrent update win over a re-wrap: whichever comes first, the row ends with the update's key and ciphertext", async function () {
        const rows = await Promise.all(Array.from({ length: 12 }, () => wrappedRow()));
        const target = randomKeyId();
        const updates = rows.map(() => ({ keyId: "k-current", wrappedKey: randomBytes(60), ciphertext: randomBytes(20), digest: randomDigest() }));
        const results = await Promise.all(
          rows.map((row, i) =>
            Promise.allSettled([
              store.rewrapKey(row.hash, "subject", expectedOf(row), { keyId: target, wrappedKey: randomBytes(60) }),
              store.update(row.hash, "subject", 1, updates[i]!),
            ]),
          ),
        );
        for (const [i, [rewrap, update]] of results.entries()) {
          expect(update.status, "the update always succeeds").to.equal("fulfilled");
          if (rewrap.status === "rejected") expectErrorValue(rewrap.reason, VersionConflictError, "version_conflict", rows[i]!.hash);
          const stored = await store.read(rows[i]!.hash, "subject");
          expect(stored.version).to.equal(2);
          expect(stored.keyId).to.equal("k-current");
          expectBytes(stored.wrappedKey!, updates[i]!.wrappedKey);
          expectBytes(stored.ciphertext, updates[i]!.ciphertext);
          expect(stored.previousKeyId).to.equal(undefined);
        }
      });

      it("lets exactly one of 8 concurrent re-wraps of one listed row succeed", async function () {
        const row = await wrappedRow();
        const nexts = Array.from({ length: 8 }, () => ({ keyId: randomKeyId(), wrappedKey: randomBytes(60) }));
        const results = await Promise.allSettled(nexts.map((next) => store.rewrapKey(row.hash, "subject", expectedOf(row), next)));
        expect(results.filter((r) => r.status === "fulfilled")).to.have.length(1);
        const stored = await store.read(row.hash, "subject");
        const winner = nexts.find((n) => n.keyId === stored.keyId)!;
        expectBytes(stored.wrappedKey!, winner.wrappedKey);
        expect(stored.previousKeyId).to.equal(row.keyId);
      });

      it("counts rows, legacy rows and undo copies per key id", async function () {
        const keyId = randomKeyId();
        const rows = await Promise.all(Array.from({ length: 5 }, () => wrappedRow({ keyId })));
        await Promise.all(Array.from({ length: 2 }, () => createRow({ keyId })));
        expect(await usageOf(keyId)).to.deep.equal({ records: 7, legacyRecords: 2, previousWrappings: 0 });
        const target = randomKeyId();
        for (const row of rows.slice(0, 3)) {
          await store.rewrapKey(row.hash, "subject", expectedOf(row), { keyId: target, wrappedKey: randomBytes(60) });
        }
        expect(await usageOf(keyId)).to.deep.equal({ records: 4, legacyRecords: 2, previousWrappings: 3 });
        expect(await usageOf(target)).to.deep.equal({ records: 3, legacyRecords: 0, previousWrappings: 0 });
        const all = await store.countKeys();
        expect(all.map((u) => u.keyId)).to.deep.equal([...all.map((u) => u.keyId)].sort());
      });

      it("restores the undo copy of every row under a key id (Storage's custodian's undo), and only those", async function () {
        const source = randomKeyId();
        const bad = randomKeyId();
        const rows = await Promise.all(Array.from({ length: 4 }, () => wrappedRow({ keyId: source })));
        for (const row of rows.slice(0, 3)) {
          await store.rewrapKey(row.hash, "subject", expectedOf(row), { keyId: bad, wrappedKey: randomBytes(60) });
        }
        const bystander = await wrappedRow({ keyId: bad }); // under the same key id, written with a token: no undo copy
        expect(await store.restorePreviousWrappings(bad)).to.equal(3);
        for (const row of rows) expectSameRow(await store.read(row.hash, "subject"), row);
        expectSameRow(await store.read(bystander.hash, "subject"), bystander);
        expect(await store.restorePreviousWrappings(bad)).to.equal(0);
      });

      it("forgets the undo copies under a key id, more than one batch of them, after which nothing is restored", async function () {
        this.timeout(120_000);
        const source = randomKeyId();
        const target = randomKeyId();
        const count = 620;
        const rows: StoredRow[] = [];
        for (let i = 0; i < count; i += 62) rows.push(...(await Promise.all(Array.from({ length: 62 }, () => wrappedRow({ keyId: source })))));
        for (let i = 0; i < count; i += 62) {
          await Promise.all(rows.slice(i, i + 62).map((row) =>
            store.rewrapKey(row.hash, "subject", expectedOf(row), { keyId: target, wrappedKey: randomBytes(60) }),
          ));
        }
        expect(await usageOf(source)).to.deep.equal({ records: 0, legacyRecords: 0, previousWrappings: count });
        expect(await store.forgetPreviousWrappings(source)).to.equal(count);
        expect(await usageOf(source)).to.deep.equal({ records: 0, legacyRecords: 0, previousWrappings: 0 });
        expect(await store.restorePreviousWrappings(target)).to.equal(0);
        const sample = await store.read(rows[0]!.hash, "subject");
        expect(sample.keyId).to.equal(target);
        expect(sample.previousKeyId).to.equal(undefined);
      });

      it("refuses bad arguments to key maintenance, naming no hash", async function () {
        const row = await wrappedRow();
        const good = { keyId: randomKeyId(), wrappedKey: randomBytes(60) };
        const bad: Array<[string, Promise<unknown>]> = [
          ["a list with a bad key id", store.listKeys("", { limit: 10 })],
          ["a list with limit 0", store.listKeys(row.keyId, { limit: 0 })],
          ["a list with limit 1001", store.listKeys(row.keyId, { limit: 1001 })],
          ["a list after a bad hash", store.listKeys(row.keyId, { limit: 10, after: "a/b" })],
          ["a re-wrap to the same key id", store.rewrapKey(row.hash, "subject", expectedOf(row), { keyId: row.keyId, wrappedKey: randomBytes(60) })],
          ["a re-wrap to an empty wrapped key", store.rewrapKey(row.hash, "subject", expectedOf(row), { ...good, wrappedKey: new Uint8Array(0) })],
          ["a re-wrap to a wrapped key over 512 bytes", store.rewrapKey(row.hash, "subject", expectedOf(row), { ...good, wrappedKey: randomBytes(513) })],
          ["a re-wrap at version 0", store.rewrapKey(row.hash, "subject", { ...expectedOf(row), version: 0 }, good)],
          ["a re-wrap of an unknown kind", store.rewrapKey(row.hash, "user" as RecordKindName, expectedOf(row), good)],
          ["a create with a wrapped key over 512 bytes", store.create({ hash: randomHash(), kind: "subject", keyId: "k1", wrappedKey: randomBytes(513), ciphertext: randomBytes(8), digest: randomDigest() })],
          ["a restore with a bad key id", store.restorePreviousWrappings("k1\n")],
          ["a forget with a bad key id", store.forgetPreviousWrappings("")],
        ];
        await expectEachInvalid(bad, row.hash);
        expectSameRow(await store.read(row.hash, "subject"), row);
      });
    });

    describe("invalid arguments", function () {
      const good = (): NewRow => ({ hash: randomHash(), kind: "subject", keyId: "k1", ciphertext: randomBytes(8), digest: randomDigest() });
      const next = { keyId: "k1", ciphertext: randomBytes(8), digest: randomDigest() };
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
          await store.create({ hash, kind: "subject", keyId: "~".repeat(64), ciphertext: Uint8Array.from([1]), digest: randomDigest() });
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
        ["a digest of 42 characters", (row) => ({ ...row, digest: row.digest.slice(0, 42) })],
        ["a digest of 44 characters", (row) => ({ ...row, digest: `${row.digest}A` })],
        ["a digest with base64 padding", (row) => ({ ...row, digest: `${row.digest.slice(0, 42)}=` })],
        ["a digest in standard base64", (row) => ({ ...row, digest: `${row.digest.slice(0, 42)}+` })],
        ["a hex digest", (row) => ({ ...row, digest: "ab".repeat(32) })],
        ["no digest", (row) => ({ ...row, digest: undefined as unknown as string })],
        ["a digest that is not a string", (row) => ({ ...row, digest: 43 as unknown as string })],
      ];
      for (const [what, spoil] of badRows) {
        it(`refuses ${what} on create and update, writing nothing`, async function () {
          const bad = spoil(good());
          await expectInvalid(store.create(bad), bad.hash);
          await expectNothingWrittenUnder(bad.hash);

          const row = await createRow();
          await expectInvalid(store.update(row.hash, bad.kind, 1, { keyId: bad.keyId, ciphertext: bad.ciphertext, digest: bad.digest }), row.hash);
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
        for (const kind of RECORD_KINDS) {
          await expectStorageError(store.read(hash, kind), NotFoundError, "not_found", hash);
        }
      }
    });

    describe("close", function () {
      it("fails calls after close with UnavailableError, and closes idempotently", async function () {
        const other = await open();
        const row = await other.create({ hash: randomHash(), kind: "subject", keyId: "k1", ciphertext: randomBytes(8), digest: randomDigest() });
        await other.close();
        await other.close();
        await expectStorageError(other.read(row.hash, "subject"), UnavailableError, "unavailable", row.hash);
        await expectStorageError(other.spendTokenId(randomHash(), new Date()), UnavailableError, "unavailable", row.hash);
        await expectStorageError(other.listKeys("k1", { limit: 1 }), UnavailableError, "unavailable", row.hash);
        await expectStorageError(other.countKeys(), UnavailableError, "unavailable", row.hash);
        await expectStorageError(other.setLegacyDigest(row.hash, "subject", 1, randomDigest()), UnavailableError, "unavailable", row.hash);
      });
    });

    describe("storage format 3: the UTC day, digests, reservations (issue 11)", function () {
      it("writes create and update times as the UTC day, so the rows of one login share them with the whole day's", async function () {
        const before = Date.now();
        const a = await createRow({ kind: "subject" });
        const b = await createRow({ kind: "wallet" });
        expectToday(a.createTime, before);
        expectToday(b.createTime, before);
        if (new Date(before).getUTCDate() === new Date().getUTCDate()) {
          expect(b.createTime.getTime(), "one day, one timestamp").to.equal(a.createTime.getTime());
        }
        const updated = await store.update(a.hash, "subject", 1, { keyId: "k2", ciphertext: randomBytes(8), digest: randomDigest() });
        expectToday(updated.updateTime, before);
        expect(updated.createTime.getTime()).to.equal(a.createTime.getTime());
      });

      it("neither a re-wrap nor a digest changes a row's update time or version", async function () {
        const row = await createRow({ keyId: randomKeyId(), wrappedKey: randomBytes(60) });
        await store.rewrapKey(row.hash, "subject", { version: 1, keyId: row.keyId, wrappedKey: row.wrappedKey! }, { keyId: randomKeyId(), wrappedKey: randomBytes(60) });
        const after = await store.read(row.hash, "subject");
        expect(after.updateTime.getTime()).to.equal(row.updateTime.getTime());
        expect(after.version).to.equal(1);
        expect(after.digest).to.equal(row.digest);
      });

      it("returns the digest written by create and update from read and scan, and never from a key listing", async function () {
        const first = randomDigest();
        const row = await createRow({ digest: first, keyId: randomKeyId(), wrappedKey: randomBytes(60) });
        expect((await store.read(row.hash, "subject")).digest).to.equal(first);
        const second = randomDigest();
        await store.update(row.hash, "subject", 1, { keyId: row.keyId, wrappedKey: randomBytes(60), ciphertext: randomBytes(8), digest: second });
        expect((await store.read(row.hash, "subject")).digest).to.equal(second);
        let scanned: StoredRow | undefined;
        for await (const r of store.scan()) if (r.hash === row.hash) scanned = r;
        expect(scanned?.digest).to.equal(second);
        const [listed] = await store.listKeys(row.keyId, { limit: 1 });
        expect(listed).to.not.have.property("digest");
      });

      it("keeps a digest once set: setLegacyDigest refuses a row that has one, at its version or another", async function () {
        const row = await createRow();
        for (const version of [1, 2]) {
          await expectStorageError(store.setLegacyDigest(row.hash, "subject", version, randomDigest()), VersionConflictError, "version_conflict", row.hash);
        }
        // Not even the same digest again: the answer does not depend on the value.
        await expectStorageError(store.setLegacyDigest(row.hash, "subject", 1, row.digest!), VersionConflictError, "version_conflict", row.hash);
        expectSameRow(await store.read(row.hash, "subject"), row);
      });

      it("setLegacyDigest reports a missing row, or one of another kind, as NotFoundError, and checks its arguments", async function () {
        const missing = randomHash();
        await expectStorageError(store.setLegacyDigest(missing, "subject", 1, randomDigest()), NotFoundError, "not_found", missing);
        const row = await createRow({ kind: "release" });
        await expectStorageError(store.setLegacyDigest(row.hash, "wallet", 1, randomDigest()), NotFoundError, "not_found", row.hash);
        const bad: Array<[string, Promise<unknown>]> = [
          ["a bad hash", store.setLegacyDigest(`${row.hash}=`, "release", 1, randomDigest())],
          ["an unknown kind", store.setLegacyDigest(row.hash, "user" as RecordKindName, 1, randomDigest())],
          ["version 0", store.setLegacyDigest(row.hash, "release", 0, randomDigest())],
          ["a short digest", store.setLegacyDigest(row.hash, "release", 1, "abc")],
          ["a padded digest", store.setLegacyDigest(row.hash, "release", 1, `${randomDigest().slice(0, 42)}=`)],
        ];
        await expectEachInvalid(bad, row.hash);
        expectSameRow(await store.read(row.hash, "release"), row);
      });

      it("keeps reservations, a fourth kind, created only if absent and apart from the other kinds", async function () {
        expect(RECORD_KINDS.slice(0, 4)).to.deep.equal(["subject", "release", "wallet", "reservation"]);
        const row = await createRow({ kind: "reservation" });
        expectSameRow(await store.read(row.hash, "reservation"), row);
        await expectStorageError(createRow({ hash: row.hash, kind: "reservation" }), AlreadyExistsError, "already_exists", row.hash);
        await expectStorageError(createRow({ hash: row.hash, kind: "release" }), AlreadyExistsError, "already_exists", row.hash);
        await expectStorageError(store.read(row.hash, "release"), NotFoundError, "not_found", row.hash);
        const updated = await store.update(row.hash, "reservation", 1, { keyId: "k2", ciphertext: randomBytes(8), digest: randomDigest() });
        expect(updated.version).to.equal(2);
        await store.delete(row.hash, "reservation", 2);
        await expectStorageError(store.read(row.hash, "reservation"), NotFoundError, "not_found", row.hash);
      });
    });

    describe("storage format 4: the credential wallet's kinds (docs/wallet-server.md)", function () {
      it("knows seven kinds: the four of format 3, then the wallet's three", async function () {
        expect(RECORD_KINDS).to.deep.equal(["subject", "release", "wallet", "reservation", "s2s-session", "credential", "holdings"]);
        expect(WALLET_RECORD_KINDS).to.deep.equal(["s2s-session", "credential", "holdings"]);
      });

      for (const kind of WALLET_RECORD_KINDS) {
        it(`keeps ${kind} rows: create only if absent, read, update, list and re-wrap, delete; apart from every other kind`, async function () {
          const keyId = randomKeyId();
          const row = await createRow({ kind, keyId, wrappedKey: randomBytes(60) });
          expect(row).to.include({ kind, keyId, version: 1 });
          expectSameRow(await store.read(row.hash, kind), row);
          // One hash, one row: no kind can be created beside it, and no other kind reads it.
          for (const other of RECORD_KINDS) {
            await expectStorageError(createRow({ hash: row.hash, kind: other }), AlreadyExistsError, "already_exists", row.hash);
            if (other !== kind) {
              await expectStorageError(store.read(row.hash, other), NotFoundError, "not_found", row.hash);
              await expectStorageError(store.delete(row.hash, other), NotFoundError, "not_found", row.hash);
            }
          }
          expectSameRow(await store.read(row.hash, kind), row);

          const next = { keyId, wrappedKey: randomBytes(60), ciphertext: randomBytes(2048), digest: randomDigest() };
          const updated = await store.update(row.hash, kind, 1, next);
          expect(updated).to.include({ kind, version: 2, digest: next.digest });
          expectBytes(updated.ciphertext, next.ciphertext);
          await expectStorageError(store.update(row.hash, kind, 1, { ...next, digest: randomDigest() }), VersionConflictError, "version_conflict", row.hash);
          expectSameRow(await store.read(row.hash, kind), updated);

          // Key maintenance lists and re-wraps it as any other row.
          const listed = await store.listKeys(keyId, { limit: 10 });
          expect(listed.map((r) => ({ hash: r.hash, kind: r.kind, version: r.version }))).to.deep.equal([{ hash: row.hash, kind, version: 2 }]);
          const newKeyId = randomKeyId();
          await store.rewrapKey(row.hash, kind, { version: 2, keyId, wrappedKey: next.wrappedKey }, { keyId: newKeyId, wrappedKey: randomBytes(60) });
          const rewrapped = await store.read(row.hash, kind);
          expect(rewrapped).to.include({ keyId: newKeyId, previousKeyId: keyId, version: 2 });
          expect(await store.restorePreviousWrappings(newKeyId)).to.equal(1);
          expectSameRow(await store.read(row.hash, kind), updated);

          await expectStorageError(store.delete(row.hash, kind, 1), VersionConflictError, "version_conflict", row.hash);
          await store.delete(row.hash, kind, 2);
          await expectStorageError(store.read(row.hash, kind), NotFoundError, "not_found", row.hash);
          expect((await createRow({ hash: row.hash, kind })).version, "created afresh after its delete").to.equal(1);
        });
      }

      it("writes the wallet's kinds in one batch with the others, all or none", async function () {
        const wallet = await createRow({ kind: "wallet" });
        const holdings = await createRow({ kind: "holdings" });
        const [session, credential] = (["s2s-session", "credential"] as const).map((kind) => ({
          hash: randomHash(), kind, keyId: "k1", wrappedKey: randomBytes(60), ciphertext: randomBytes(64), digest: randomDigest(),
        }));
        const next = { keyId: "k1", wrappedKey: randomBytes(60), ciphertext: randomBytes(64), digest: randomDigest() };
        const batch = (walletVersion: number): BatchWrite[] => [
          { op: "create", row: session! },
          { op: "create", row: credential! },
          { op: "update", hash: holdings.hash, kind: "holdings", expectedVersion: 1, next },
          { op: "update", hash: wallet.hash, kind: "wallet", expectedVersion: walletVersion, next },
        ];
        // A conflict on the last write leaves none of the wallet's rows behind.
        await expectStorageError(store.writeBatch(batch(2)), VersionConflictError, "version_conflict", wallet.hash);
        for (const row of [session!, credential!]) await expectStorageError(store.read(row.hash, row.kind), NotFoundError, "not_found", row.hash);
        expectSameRow(await store.read(holdings.hash, "holdings"), holdings);

        const written = await store.writeBatch(batch(1));
        expect(written.map((r) => [r?.kind, r?.version])).to.deep.equal([["s2s-session", 1], ["credential", 1], ["holdings", 2], ["wallet", 2]]);
        expectBytes((await store.read(session!.hash, "s2s-session")).ciphertext, session!.ciphertext);
        expect((await store.read(credential!.hash, "credential")).digest).to.equal(credential!.digest);
        expect((await store.read(holdings.hash, "holdings")).digest).to.equal(next.digest);
      });

      it("still refuses a kind it does not know, near misses of the wallet's included, in every operation, writing nothing", async function () {
        const row = await createRow({ kind: "credential" });
        const content = { keyId: "k1", ciphertext: randomBytes(8), digest: randomDigest() };
        for (const unknown of ["user", "s2s_session", "S2S-SESSION", "session", "credentials", "holding", "credential ", ""]) {
          const kind = unknown as RecordKindName;
          const hash = randomHash();
          const calls: Array<[string, Promise<unknown>]> = [
            [`create ${unknown}`, store.create({ hash, kind, ...content })],
            [`read ${unknown}`, store.read(row.hash, kind)],
            [`update ${unknown}`, store.update(row.hash, kind, 1, content)],
            [`delete ${unknown}`, store.delete(row.hash, kind)],
            [`setLegacyDigest ${unknown}`, store.setLegacyDigest(row.hash, kind, 1, randomDigest())],
            [`rewrapKey ${unknown}`, store.rewrapKey(row.hash, kind, { version: 1, keyId: "k1", wrappedKey: randomBytes(60) }, { keyId: "k2", wrappedKey: randomBytes(60) })],
            [`writeBatch ${unknown}`, store.writeBatch([{ op: "create", row: { hash, kind, ...content } }])],
          ];
          for (const [what, call] of calls) {
            const error = await caught(call);
            expectErrorValue(error, InvalidArgumentError, "invalid_argument", row.hash);
            // The message lists what is accepted, the wallet's kinds included.
            for (const known of RECORD_KINDS) expect((error as Error).message, what).to.include(known);
          }
          await expectNothingWrittenUnder(hash);
        }
        expectSameRow(await store.read(row.hash, "credential"), row);
      });

      async function expectNothingWrittenUnder(hash: string): Promise<void> {
        for (const kind of RECORD_KINDS) await expectStorageError(store.read(hash, kind), NotFoundError, "not_found", hash);
      }
    });
  });
}

/**
 * The storage format before format 3 (schema.ts as hello-mesh applied it at every open
 * until then, word for word): what a database written by that release looks like.
 */
export const FORMAT_2_SQL = readFileSync(new URL("./testdata/format-2.sql", import.meta.url), "utf8");

/**
 * The storage format before format 4 (what the release of format 3 made of a new
 * database, statement for statement, its version recorded): the database of a Storage
 * that does not know the credential wallet's kinds.
 */
export const FORMAT_3_SQL = readFileSync(new URL("./testdata/format-3.sql", import.meta.url), "utf8");

/** A database a migration test may build in an old format, then open with the store. */
export interface FormatTestDatabase {
  /** Runs SQL on the database directly (several statements if no params), never while a store has it open. */
  sql(statement: string, params?: unknown[]): Promise<Array<Record<string, unknown>>>;
  /** Opens the record store on it. */
  open(): Promise<RecordStore>;
}

/**
 * Opening a database of format 2 migrates it to format 3 once: timestamps rounded down
 * to the UTC day (in batches), the kind CHECK replaced so that it allows reservations,
 * a digest column that old rows lack until setLegacyDigest, and the version recorded;
 * then on to format 4 (storageFormat4Migration) in the same open.
 */
export function storageFormatMigration(name: string, newDatabase: () => Promise<FormatTestDatabase>): void {
  describe(`storage format migration 2 -> 3 (-> 4): ${name}`, function () {
    this.timeout(120_000);
    const BULK_ROWS = 2345; // more than two batches of the migration
    const hashes = { subject: randomHash(), wallet: randomHash(), midnight: randomHash() };
    const ciphertext = randomBytes(40);
    const wrappedKey = randomBytes(60);
    let db: FormatTestDatabase;
    let store: RecordStore;

    before(async function () {
      db = await newDatabase();
      await db.sql(FORMAT_2_SQL);
      // Sessions in a zone whose day is not UTC's, so that only a UTC day passes. (PostgreSQL
      // takes the database's setting; PGlite runs every session in UTC whatever it says.)
      await db.sql("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET timezone TO %L', current_database(), 'Pacific/Auckland'); END $$");
      const insert = `INSERT INTO records (hash, kind, key_id, wrapped_key, ciphertext, version, create_time, update_time)
        VALUES ($1, $2, 'k1', $3, $4, $5, $6::timestamptz, $7::timestamptz)`;
      // 23:30 UTC is already the next day in Auckland.
      await db.sql(insert, [hashes.subject, "subject", null, ciphertext, 1, "2025-03-14T23:30:00.123Z", "2025-03-14T23:30:00.123Z"]);
      await db.sql(insert, [hashes.wallet, "wallet", wrappedKey, ciphertext, 3, "2024-12-31T23:59:59.999Z", "2025-06-01T00:00:00.001Z"]);
      await db.sql(insert, [hashes.midnight, "release", wrappedKey, ciphertext, 1, "2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z"]);
      await db.sql(`INSERT INTO records (hash, kind, key_id, ciphertext, version, create_time, update_time)
        SELECT 'bulk-' || lpad(i::text, 6, '0'), 'wallet', 'k-bulk', '\\x01'::bytea, 1,
          '2025-02-03T04:05:06.789Z'::timestamptz + i * interval '1 second', '2025-02-03T04:05:06.789Z'::timestamptz + i * interval '1 minute'
        FROM generate_series(1, ${BULK_ROWS}) AS i`);
      store = await db.open();
    });
    after(async () => store?.close());

    it("rounds every row's times down to their UTC day, more rows than one batch", async function () {
      const day = (iso: string) => new Date(iso).getTime();
      const subject = await store.read(hashes.subject, "subject");
      expect([subject.createTime.getTime(), subject.updateTime.getTime()]).to.deep.equal([day("2025-03-14"), day("2025-03-14")]);
      const wallet = await store.read(hashes.wallet, "wallet");
      expect([wallet.createTime.getTime(), wallet.updateTime.getTime()]).to.deep.equal([day("2024-12-31"), day("2025-06-01")]);
      const midnight = await store.read(hashes.midnight, "release");
      expect([midnight.createTime.getTime(), midnight.updateTime.getTime()]).to.deep.equal([day("2025-01-01"), day("2025-01-02")]);
      let rows = 0;
      for await (const row of store.scan()) {
        rows++;
        for (const time of [row.createTime, row.updateTime]) expect(time.getTime() % DAY_MS, `${row.hash} ${time.toISOString()}`).to.equal(0);
      }
      expect(rows).to.equal(BULK_ROWS + 3);
      const bulk = await store.read("bulk-002345", "wallet");
      expect(bulk.createTime.toISOString()).to.equal("2025-02-03T00:00:00.000Z");
      expect(bulk.updateTime.toISOString()).to.equal("2025-02-04T00:00:00.000Z"); // 04:05 + 2345 minutes
    });

    it("leaves everything else of the rows as it was, with no digest", async function () {
      const subject = await store.read(hashes.subject, "subject");
      expect(subject).to.include({ keyId: "k1", version: 1 });
      expect(subject.wrappedKey).to.equal(undefined);
      expect(subject.digest).to.equal(undefined);
      expectBytes(subject.ciphertext, ciphertext);
      const wallet = await store.read(hashes.wallet, "wallet");
      expect(wallet.version).to.equal(3);
      expectBytes(wallet.wrappedKey!, wrappedKey);
      expect(wallet.digest).to.equal(undefined);
    });

    it("gives a row written before its digest once, at its version only", async function () {
      const before = await store.read(hashes.subject, "subject");
      const digest = randomDigest();
      await expectStorageError(store.setLegacyDigest(hashes.subject, "subject", 2, digest), VersionConflictError, "version_conflict", hashes.subject);
      await expectStorageError(store.setLegacyDigest(hashes.subject, "wallet", 1, digest), NotFoundError, "not_found", hashes.subject);
      expect((await store.read(hashes.subject, "subject")).digest).to.equal(undefined);

      const set = await store.setLegacyDigest(hashes.subject, "subject", 1, digest);
      expectSameRow(set, { ...before, digest });
      expectSameRow(await store.read(hashes.subject, "subject"), { ...before, digest });
      await expectStorageError(store.setLegacyDigest(hashes.subject, "subject", 1, randomDigest()), VersionConflictError, "version_conflict", hashes.subject);
      await expectStorageError(store.setLegacyDigest(hashes.subject, "subject", 1, digest), VersionConflictError, "version_conflict", hashes.subject);

      // An update brings the digest of what it writes.
      const next = randomDigest();
      expect((await store.update(hashes.subject, "subject", 1, { keyId: "k2", ciphertext: randomBytes(8), digest: next })).digest).to.equal(next);
    });

    it("lets exactly one of 8 concurrent setLegacyDigest calls on one row win", async function () {
      const digests = Array.from({ length: 8 }, () => randomDigest());
      const results = await Promise.allSettled(digests.map((d) => store.setLegacyDigest(hashes.wallet, "wallet", 3, d)));
      const won = results.flatMap((r, i) => (r.status === "fulfilled" ? [digests[i]] : []));
      expect(won).to.have.length(1);
      for (const r of results) if (r.status === "rejected") expectErrorValue(r.reason, VersionConflictError, "version_conflict", hashes.wallet);
      expect((await store.read(hashes.wallet, "wallet")).digest).to.equal(won[0]);
    });

    it("accepts reservations, and writes new rows' times as the UTC day in a session of another zone", async function () {
      const started = Date.now();
      const row = await store.create({ hash: randomHash(), kind: "reservation", keyId: "k1", ciphertext: randomBytes(8), digest: randomDigest() });
      expectToday(row.createTime, started);
      expectSameRow(await store.read(row.hash, "reservation"), row);
    });

    it("records format 4 (through 3) and keeps a kind CHECK (now with reservations and the wallet's kinds); opening again migrates nothing", async function () {
      await store.close();
      expect(await db.sql("SELECT version FROM schema_version")).to.deep.equal([{ version: 4 }]);
      const checks = await db.sql(`SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
        WHERE conrelid = 'records'::regclass AND contype = 'c'`);
      expect(checks.map((c) => c["conname"])).to.deep.equal(["records_kind_check"]);
      for (const kind of RECORD_KINDS) expect(checks[0]!["def"]).to.include(`'${kind}'`);
      const refused = await db.sql("INSERT INTO records VALUES ('x', 'user', 'k1', '\\x01'::bytea, 1, now(), now())").then(
        () => undefined,
        (error: unknown) => (error as { code?: string }).code,
      );
      expect(refused, "a kind outside the list is still refused by the database").to.equal("23514");
      // A row written as format 2's release wrote them (a replica not yet upgraded): a
      // database at format 4 is not migrated again, so it keeps its finer time.
      const late = randomHash();
      await db.sql("INSERT INTO records VALUES ($1, 'wallet', 'k1', '\\x01'::bytea, 1, $2::timestamptz, $2::timestamptz)", [late, "2025-07-07T07:07:07.007Z"]);
      store = await db.open();
      expect((await store.read(late, "wallet")).createTime.toISOString()).to.equal("2025-07-07T07:07:07.007Z");
    });

    it("opens a new database at format 4, and refuses one of a newer format than it knows", async function () {
      const fresh = await newDatabase();
      const first = await fresh.open();
      await first.create({ hash: randomHash(), kind: "reservation", keyId: "k1", ciphertext: randomBytes(8), digest: randomDigest() });
      await first.create({ hash: randomHash(), kind: "holdings", keyId: "k1", ciphertext: randomBytes(8), digest: randomDigest() });
      await first.close();
      expect(await fresh.sql("SELECT version FROM schema_version")).to.deep.equal([{ version: 4 }]);
      await fresh.sql("UPDATE schema_version SET version = 5");
      const error = await fresh.open().then(
        async (opened) => {
          await opened.close();
          return expect.fail("opened a database of storage format 5");
        },
        (e: unknown) => e as Error,
      );
      // Behind the backend's "cannot open the embedded database (PGlite): " or "cannot open the PostgreSQL database: ".
      expect(error.message).to.match(/^cannot open the .+: the database is in storage format 5, newer than the 4 this Storage knows: run a release that knows it$/);
    });
  });
}

/**
 * Opening a database of format 3 migrates it to format 4 once: the kind CHECK replaced
 * so that it allows the credential wallet's three kinds, and the version recorded.
 * Nothing else changes: every row, and every spent token id, stays as it was.
 */
export function storageFormat4Migration(name: string, newDatabase: () => Promise<FormatTestDatabase>): void {
  describe(`storage format migration 3 -> 4: ${name}`, function () {
    this.timeout(120_000);
    const BULK_ROWS = 1500;
    const day = (iso: string) => new Date(`${iso}T00:00:00.000Z`);
    /** Rows as a Storage of format 3 left them: one of each kind it knew, in each of its forms. */
    const old: Record<"subject" | "release" | "wallet" | "reservation" | "late", StoredRow> = {
      // Updated since its create, under envelope encryption.
      subject: oldRow("subject", { version: 2, wrappedKey: randomBytes(60), digest: randomDigest(), createTime: day("2025-01-02"), updateTime: day("2025-03-04") }),
      // Sealed before envelope encryption and never read since format 3: no wrapped key, no digest.
      release: oldRow("release", { version: 1, createTime: day("2024-11-30"), updateTime: day("2024-11-30") }),
      // Re-wrapped, with its undo copy.
      wallet: oldRow("wallet", {
        version: 5, wrappedKey: randomBytes(60), previousKeyId: "k0", previousWrappedKey: randomBytes(60), digest: randomDigest(),
        createTime: day("2024-06-07"), updateTime: day("2025-08-09"),
      }),
      reservation: oldRow("reservation", { version: 1, wrappedKey: randomBytes(60), digest: randomDigest(), createTime: day("2025-05-05"), updateTime: day("2025-05-05") }),
      // Written by a replica of format 2 while format 3 rolled out: a finer time, which format 4 does not round.
      late: oldRow("wallet", { version: 1, wrappedKey: randomBytes(60), createTime: new Date("2025-07-07T07:07:07.007Z"), updateTime: new Date("2025-07-07T07:07:07.007Z") }),
    };
    const spentJti = randomHash();
    let db: FormatTestDatabase;
    let store: RecordStore;
    /** The version the database recorded before the migration. */
    let found: unknown;

    function oldRow(kind: RecordKindName, fields: Omit<StoredRow, "hash" | "kind" | "keyId" | "ciphertext">): StoredRow {
      return { hash: randomHash(), kind, keyId: "k1", ciphertext: randomBytes(100), ...fields };
    }

    before(async function () {
      db = await newDatabase();
      // One script (each call of db.sql may start a database engine): the format, its rows,
      // a spent token id, proof that its CHECK refuses each wallet kind, and its version.
      const literal = (value: string | number | Uint8Array | Date | undefined) =>
        value === undefined ? "NULL"
          : value instanceof Date ? `'${value.toISOString()}'::timestamptz`
          : value instanceof Uint8Array ? `'\\x${Buffer.from(value).toString("hex")}'::bytea`
          : typeof value === "number" ? String(value) : `'${value}'`;
      const rows = Object.values(old).map((r) =>
        `(${[r.hash, r.kind, r.keyId, r.wrappedKey, r.previousKeyId, r.previousWrappedKey, r.ciphertext, r.version, r.digest, r.createTime, r.updateTime].map(literal).join(", ")})`);
      [{ version: found }] = await db.sql(`${FORMAT_3_SQL}
        INSERT INTO records (hash, kind, key_id, wrapped_key, previous_key_id, previous_wrapped_key, ciphertext, version, digest, create_time, update_time)
          VALUES ${rows.join(",\n")};
        INSERT INTO records (hash, kind, key_id, wrapped_key, ciphertext, version, digest, create_time, update_time)
          SELECT 'bulk-' || lpad(i::text, 6, '0'), (ARRAY['subject', 'release', 'wallet', 'reservation'])[1 + i % 4], 'k-bulk',
            '\\x01'::bytea, '\\x02'::bytea, 1 + i % 3, NULL, '2025-02-03T00:00:00Z', '2025-02-04T00:00:00Z'
          FROM generate_series(1, ${BULK_ROWS}) AS i;
        INSERT INTO spent_token_ids (jti, expires_at) VALUES ('${spentJti}', now() + interval '1 hour');
        ${expectKindsRefused(WALLET_RECORD_KINDS)};
        SELECT version FROM schema_version`) as [{ version: unknown }];
      store = await db.open();
    });
    after(async () => store?.close());

    it("starts from a database of format 3, whose kind CHECK refused a row of each wallet kind (the setup script checks it)", function () {
      expect(found).to.equal(3);
    });

    it("keeps every row as it was: kind, key ids, wrapped keys, undo copies, ciphertexts, versions, digests, times", async function () {
      for (const row of Object.values(old)) expectSameRow(await store.read(row.hash, row.kind), row);
      const late = await store.read(old.late.hash, "wallet");
      expect(late.createTime.toISOString(), "format 3's rounding is not run again").to.equal("2025-07-07T07:07:07.007Z");
      let rows = 0;
      const byKind = new Map<string, number>();
      for await (const row of store.scan()) {
        rows++;
        byKind.set(row.kind, (byKind.get(row.kind) ?? 0) + 1);
      }
      expect(rows).to.equal(BULK_ROWS + Object.keys(old).length);
      expect(Object.fromEntries(byKind)).to.deep.equal({ subject: 376, release: 376, wallet: 377, reservation: 376 });
      const bulk = await store.read("bulk-001498", "wallet");
      expect(bulk).to.include({ keyId: "k-bulk", version: 2 });
      expect(bulk.digest).to.equal(undefined);
      expect([bulk.createTime.toISOString(), bulk.updateTime.toISOString()]).to.deep.equal(["2025-02-03T00:00:00.000Z", "2025-02-04T00:00:00.000Z"]);
      expect((await store.countKeys()).find((u) => u.keyId === "k-bulk")).to.deep.equal({ keyId: "k-bulk", records: BULK_ROWS, legacyRecords: 0, previousWrappings: 0 });
      await expectStorageError(store.spendTokenId(spentJti, new Date(Date.now() + 60_000)), TokenReusedError, "token_reused", spentJti);
    });

    it("accepts the wallet's three kinds, and the old rows keep working beside them", async function () {
      const started = Date.now();
      for (const kind of WALLET_RECORD_KINDS) {
        const row = await store.create({ hash: randomHash(), kind, keyId: "k2", wrappedKey: randomBytes(60), ciphertext: randomBytes(64), digest: randomDigest() });
        expectToday(row.createTime, started);
        expectSameRow(await store.read(row.hash, kind), row);
        const updated = await store.update(row.hash, kind, 1, { keyId: "k2", wrappedKey: randomBytes(60), ciphertext: randomBytes(64), digest: randomDigest() });
        expect(updated.version).to.equal(2);
        await store.delete(row.hash, kind, 2);
        await expectStorageError(store.read(row.hash, kind), NotFoundError, "not_found", row.hash);
      }
      // The release from before digests gets its digest; the re-wrapped wallet can be undone; the reservation is updated.
      const digest = randomDigest();
      expect((await store.setLegacyDigest(old.release.hash, "release", 1, digest)).digest).to.equal(digest);
      expect(await store.restorePreviousWrappings("k1")).to.equal(1);
      expect(await store.read(old.wallet.hash, "wallet")).to.include({ keyId: "k0", version: 5 });
      const reservation = await store.update(old.reservation.hash, "reservation", 1, { keyId: "k2", ciphertext: randomBytes(8), digest: randomDigest() });
      expect(reservation.version).to.equal(2);
      expect(reservation.createTime.getTime()).to.equal(old.reservation.createTime.getTime());
    });

    it("records format 4, with one kind CHECK of the seven kinds: the database itself still refuses any other", async function () {
      await store.close();
      expect(await db.sql("SELECT version FROM schema_version")).to.deep.equal([{ version: 4 }]);
      const checks = await db.sql(`SELECT conname, convalidated, pg_get_constraintdef(oid) AS def FROM pg_constraint
        WHERE conrelid = 'records'::regclass AND contype = 'c'`);
      expect(checks.map((c) => [c["conname"], c["convalidated"]])).to.deep.equal([["records_kind_check", true]]);
      const allowed = [...String(checks[0]!["def"]).matchAll(/'([^']*)'/g)].map((m) => m[1]);
      expect(allowed).to.deep.equal([...RECORD_KINDS]);
      await db.sql(expectKindsRefused(["user", "s2s_session", "credentials", "Holdings", ""]));
      store = await db.open();
    });

    it("runs format 4's step again, with the wallet's rows in place, when schema_version is set back to 3", async function () {
      const rows = await Promise.all(WALLET_RECORD_KINDS.map((kind) =>
        store.create({ hash: randomHash(), kind, keyId: "k3", wrappedKey: randomBytes(60), ciphertext: randomBytes(64), digest: randomDigest() })));
      await store.close();
      await db.sql("UPDATE schema_version SET version = 3");
      store = await db.open();
      await store.close();
      expect(await db.sql(`SELECT (SELECT version FROM schema_version), conname, convalidated FROM pg_constraint
        WHERE conrelid = 'records'::regclass AND contype = 'c'`)).to.deep.equal([{ version: 4, conname: "records_kind_check", convalidated: true }]);
      store = await db.open();
      for (const row of rows) expectSameRow(await store.read(row.hash, row.kind), row);
      expect((await store.read(old.late.hash, "wallet")).createTime.toISOString()).to.equal("2025-07-07T07:07:07.007Z");
    });
  });
}

/**
 * A statement that fails unless the database's kind CHECK refuses a row of each of
 * `kinds` (check_violation, SQLSTATE 23514): one statement, whatever the number of kinds.
 */
function expectKindsRefused(kinds: readonly string[]): string {
  return `DO $$ DECLARE k text; BEGIN
    FOREACH k IN ARRAY ARRAY[${kinds.map((k) => `'${k}'`).join(", ")}]::text[] LOOP
      BEGIN
        INSERT INTO records (hash, kind, key_id, ciphertext, version, create_time, update_time)
          VALUES ('refused-' || md5(k), k, 'k1', '\\x01'::bytea, 1, now(), now());
      EXCEPTION WHEN check_violation THEN CONTINUE;
      END;
      RAISE EXCEPTION 'the kind CHECK let a row of kind "%" in', k;
    END LOOP;
  END $$`;
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

/** Each call fails with InvalidArgumentError that names no `secret` and says what to fix. */
async function expectEachInvalid(calls: Array<[string, Promise<unknown>]>, secret: string): Promise<void> {
  for (const [what, call] of calls) {
    const error = await caught(call);
    try {
      expectErrorValue(error, InvalidArgumentError, "invalid_argument", secret);
    } catch (e) {
      throw new Error(`${what}: ${(e as Error).message}`);
    }
    expect((error as Error).message, what).to.match(/must/);
  }
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

function expectOptionalBytes(actual: Uint8Array | undefined, expected: Uint8Array | undefined, what: string): void {
  if (expected === undefined) expect(actual, `${what} absent`).to.equal(undefined);
  else expectBytes(actual!, expected);
}

/** A digest as Token puts it in an Access Token: base64url SHA-256 (here of random bytes). */
export function randomDigest(): string {
  return createHash("sha256").update(randomBytes(16)).digest("base64url");
}

/** A timestamp kept to the day: midnight UTC of the day `since` (a Date.now() taken before the write) or a later one up to now. */
export function expectToday(time: Date, since: number): void {
  expect(time.getTime() % DAY_MS, `${time.toISOString()} is midnight UTC`).to.equal(0);
  expect(time.getTime()).to.be.at.least(since - (since % DAY_MS)).and.at.most(Date.now());
}

export function randomKeyId(): string {
  return `k-${randomBytes(8).toString("hex")}`;
}

function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  // A plain Uint8Array, not a Buffer (whose equality and JSON forms differ).
  expect(Object.getPrototypeOf(actual)).to.equal(Uint8Array.prototype);
  expect(actual.byteLength).to.equal(expected.byteLength);
  expect(Buffer.compare(actual, expected), "bytes differ").to.equal(0);
}

export function expectSameRow(actual: StoredRow, expected: StoredRow): void {
  expect(actual.hash).to.equal(expected.hash);
  expect(actual.kind).to.equal(expected.kind);
  expect(actual.keyId).to.equal(expected.keyId);
  expect(actual.digest).to.equal(expected.digest);
  expectOptionalBytes(actual.wrappedKey, expected.wrappedKey, "wrappedKey");
  expect(actual.previousKeyId).to.equal(expected.previousKeyId);
  expectOptionalBytes(actual.previousWrappedKey, expected.previousWrappedKey, "previousWrappedKey");
  expect(actual.version).to.equal(expected.version);
  expectBytes(actual.ciphertext, expected.ciphertext);
  expect(actual.createTime.getTime()).to.equal(expected.createTime.getTime());
  expect(actual.updateTime.getTime()).to.equal(expected.updateTime.getTime());
}
