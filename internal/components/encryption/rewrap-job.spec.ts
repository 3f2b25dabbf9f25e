// The re-wrap job and what it must not make possible (docs/keyring-rotation.md): the
// real Encryption (EncryptionService, KeyringAdminService, the job) and Storage
// (StorageService, KeyMaintenanceService, KeyWrappingAdminService) handlers joined in
// memory, on a real PGlite store. Over the real mesh and processes: test/e2e/keyring-rotation.spec.ts.

import { expect } from "chai";
import { randomBytes } from "node:crypto";
import { toBinary } from "@bufbuild/protobuf";
import { Code, type Client, ConnectError, createClient } from "@connectrpc/connect";
import { RecordKind } from "../../gen/hello/common/v1/record_pb.js";
import { EncryptionService } from "../../gen/hello/encryption/v1/encryption_service_pb.js";
import { KeyringAdminService, RewrapJobState } from "../../gen/hello/encryption/v1/keyring_admin_service_pb.js";
import { KeyWrappingAdminService } from "../../gen/hello/storage/v1/key_wrapping_admin_service_pb.js";
import {
  CountRecordKeysResponseSchema,
  KeyMaintenanceService,
  ListRecordKeysResponseSchema,
} from "../../gen/hello/storage/v1/key_maintenance_service_pb.js";
import { StorageService } from "../../gen/hello/storage/v1/storage_service_pb.js";
import { sha256, sign } from "../../protocol/jws.js";
import { Keyring, generateRecordKey, sealLegacy } from "../../protocol/keyring.js";
import { VerificationKeys, generateSigningKey, publicJwk } from "../../protocol/signing-keys.js";
import { storageKeyPair } from "../../../test/support/storage-keys.js";
import { ACCESS_TOKEN, type Operation } from "../../protocol/tokens.js";
import { openPGliteStore } from "../storage/backend/pglite-store.js";
import { RECORD_KINDS, type RecordKindName, type RecordStore } from "../storage/backend/record-store.js";
import { storageErrors, storageRoutes } from "../storage/storage-service.js";
import { encryptionRoutes } from "./encryption-service.js";
import { keyringAdminRoutes } from "./keyring-admin.js";
import { RewrapJob } from "./rewrap-job.js";
import { inMemory } from "../../../test/support/in-memory.js";
import { refusedWith } from "../../../test/support/refusal.js";
import { tamper } from "../../../test/support/tamper.js";

const KINDS: readonly RecordKindName[] = ["subject", "release", "wallet"];

describe("the re-wrap job (envelope encryption, docs/keyring-rotation.md)", function () {
  this.timeout(60_000);
  const accessKey = generateSigningKey("access");
  const tokenKeys = new VerificationKeys([publicJwk(accessKey)]);
  const storageSigning = storageKeyPair();
  let store: RecordStore;
  let storage: Client<typeof StorageService>;
  let maintenance: Client<typeof KeyMaintenanceService>;
  let storageAdmin: Client<typeof KeyWrappingAdminService>;

  before(async function () {
    store = await openPGliteStore({});
    const transport = inMemory(
      storageRoutes({ store, tokenKeys: () => tokenKeys, errorKey: storageSigning.error, receiptKey: storageSigning.receipt }), storageErrors,
    );
    storage = createClient(StorageService, transport);
    maintenance = createClient(KeyMaintenanceService, transport);
    storageAdmin = createClient(KeyWrappingAdminService, transport);
  });
  after(async () => store?.close());

  const token = (op: Operation, kind: RecordKindName, hash: string, record?: string) =>
    sign(ACCESS_TOKEN, accessKey, { op, kind, hash, ...(record ? { digest: sha256(record) } : {}) });

  /** One Encryption: its services and job, with `keyMaintenance` as its key-maintenance client (default: the honest Storage). */
  function encryptionWith(keyring: () => Keyring, keyMaintenance: Client<typeof KeyMaintenanceService> = maintenance) {
    const job = new RewrapJob({ keyring, keyMaintenance });
    const transport = inMemory((router) => {
      encryptionRoutes({ keyring, tokenKeys: () => tokenKeys, storageKeys: () => storageSigning.keys, storage })(router);
      keyringAdminRoutes({ keyring, keyMaintenance, job })(router);
    });
    return { job, encryption: createClient(EncryptionService, transport), admin: createClient(KeyringAdminService, transport) };
  }

  /** A fresh keyring id space per test, so that tests sharing the store do not see each other's keys. */
  function keyrings() {
    const tag = randomBytes(4).toString("hex");
    const ids = { k1: `${tag}-k1`, k2: `${tag}-k2`, k3: `${tag}-k3` };
    const bytes = { k1: generateRecordKey(), k2: generateRecordKey(), k3: generateRecordKey() };
    const ring = (current: keyof typeof ids, ...held: Array<keyof typeof ids>) =>
      new Keyring(new Map(held.map((k) => [ids[k], bytes[k]])), ids[current]);
    return { ids, bytes, ring };
  }

  /** Writes `count` records through Encryption, of `kinds` in turn; returns hash -> (kind, record). */
  async function writeRecords(encryption: Client<typeof EncryptionService>, count: number, kinds: readonly RecordKindName[] = KINDS) {
    const written = new Map<string, { kind: RecordKindName; record: string }>();
    await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const hash = randomBytes(32).toString("base64url");
        const kind = kinds[i % kinds.length]!;
        const record = `record ${i} ${randomBytes(8).toString("hex")}`;
        await encryption.createRecord({ accessToken: await token("create", kind, hash, record), record });
        written.set(hash, { kind, record });
      }),
    );
    return written;
  }

  async function expectAllRead(encryption: Client<typeof EncryptionService>, written: Map<string, { kind: RecordKindName; record: string }>) {
    for (const [hash, { kind, record }] of written) {
      const read = await encryption.readRecord({ accessToken: await token("read", kind, hash) });
      expect(read.result, "a record reads back").to.deep.equal({ case: "record", value: record });
    }
  }

  async function status(admin: Client<typeof KeyringAdminService>) {
    const { status } = await admin.getKeyringStatus({});
    return status!;
  }
  const recordsUnder = async (admin: Client<typeof KeyringAdminService>, keyId: string) =>
    Number((await status(admin)).keys.find((k) => k.keyId === keyId)?.records ?? 0n);

  /**
   * Where a re-wrap starts: `count` records written under k1, then the keyring rotated to
   * k2 with k1 still held. `hold` changes the keyring `honest` (and every Encryption made by
   * `withMaintenance`, on another key-maintenance client) holds from then on.
   */
  async function rotated(count: number, kinds?: readonly RecordKindName[]) {
    const { ids, bytes, ring } = keyrings();
    let keyring = ring("k1", "k1");
    const honest = encryptionWith(() => keyring);
    const written = await writeRecords(honest.encryption, count, kinds);
    keyring = ring("k2", "k1", "k2");
    return {
      ids, bytes, ring, honest, written,
      hold: (...[current, ...held]: Parameters<typeof ring>) => void (keyring = ring(current, ...held)),
      withMaintenance: (keyMaintenance: Client<typeof KeyMaintenanceService>) => encryptionWith(() => keyring, keyMaintenance),
    };
  }

  /** One run of the job, to its end. */
  async function rewrap({ admin, job }: ReturnType<typeof encryptionWith>) {
    await admin.runRewrap({});
    await job.settled();
  }

  it("after a rotation moves every record to the new key, reports progress, and the old key can go: every record still reads", async function () {
    const { ids, honest, written, hold } = await rotated(45);
    const { job, encryption, admin } = honest;
    expect(await recordsUnder(admin, ids.k1)).to.equal(45);

    const started = (await admin.runRewrap({ concurrency: 3 })).status!;
    expect(started.currentKeyId).to.equal(ids.k2);
    expect([RewrapJobState.RUNNING, RewrapJobState.SUCCEEDED]).to.include(started.job!.state);
    await job.settled();

    const done = await status(admin);
    expect(done.job!.state).to.equal(RewrapJobState.SUCCEEDED);
    expect(done.job!.targetKeyId).to.equal(ids.k2);
    expect(done.job!.progress.map((p) => ({ keyId: p.keyId, moved: p.moved, skipped: p.skipped, failed: p.failed, legacy: p.legacy })))
      .to.deep.equal([{ keyId: ids.k1, moved: 45n, skipped: 0n, failed: 0n, legacy: 0n }]);
    const byId = new Map(done.keys.map((k) => [k.keyId, k]));
    expect(byId.get(ids.k1)).to.include({ held: true, current: false, records: 0n, previousWrappings: 45n });
    expect(byId.get(ids.k2)).to.include({ held: true, current: true, records: 45n, previousWrappings: 0n });

    // The old key leaves the keyring: everything still reads.
    hold("k2", "k2");
    await expectAllRead(encryption, written);
    // A second run has nothing to do.
    await rewrap(honest);
    expect((await status(admin)).job!.progress).to.deep.equal([]);
  });

  it("moves records of every kind, the credential wallet's three included, and each still reads under its kind alone", async function () {
    const { ids, honest, written, hold } = await rotated(RECORD_KINDS.length * 3, RECORD_KINDS);
    expect(new Set([...written.values()].map((w) => w.kind))).to.deep.equal(new Set(RECORD_KINDS));
    await rewrap(honest);
    const done = await status(honest.admin);
    expect(done.job!.state).to.equal(RewrapJobState.SUCCEEDED);
    expect(done.job!.progress.map((p) => ({ keyId: p.keyId, moved: p.moved, skipped: p.skipped, failed: p.failed })))
      .to.deep.equal([{ keyId: ids.k1, moved: 21n, skipped: 0n, failed: 0n }]);
    for (const [hash, { kind }] of written) expect((await store.read(hash, kind)).keyId, kind).to.equal(ids.k2);
    hold("k2", "k2");
    await expectAllRead(honest.encryption, written);
    // Storage's key maintenance keeps the kinds apart: a credential's row is no holdings row,
    // and a kind outside the enum's is refused, with the kinds it may be.
    const [hash, { kind }] = [...written].find(([, w]) => w.kind === "credential")!;
    const row = await store.read(hash, kind);
    const request = { hash, version: BigInt(row.version), keyId: row.keyId, wrappedKey: row.wrappedKey!, newKeyId: `${row.keyId}-x`, newWrappedKey: randomBytes(60) };
    expect((await refusedWith(maintenance.rewrapRecordKey({ ...request, kind: RecordKind.HOLDINGS }))).code).to.equal(Code.NotFound);
    for (const unknown of [RecordKind.UNSPECIFIED, 8 as RecordKind]) {
      const refused = await refusedWith(maintenance.rewrapRecordKey({ ...request, kind: unknown }));
      expect(refused.code).to.equal(Code.InvalidArgument);
      expect(refused.rawMessage).to.equal("kind must be one of RECORD_KIND_SUBJECT, RECORD_KIND_RELEASE, RECORD_KIND_WALLET, "
        + "RECORD_KIND_RESERVATION, RECORD_KIND_S2S_SESSION, RECORD_KIND_CREDENTIAL, RECORD_KIND_HOLDINGS");
    }
    expect((await store.read(hash, kind)).keyId).to.equal(row.keyId);
  });

  it("a rotation while records wait, then another: the job follows to the newest key, and the undo copy stays the first", async function () {
    const { ids, honest, written, hold } = await rotated(10);
    await rewrap(honest);
    hold("k3", "k1", "k2", "k3");
    await rewrap(honest);
    const keys = new Map((await status(honest.admin)).keys.map((k) => [k.keyId, k]));
    expect(keys.get(ids.k3)).to.include({ records: 10n });
    expect(keys.get(ids.k2)).to.include({ records: 0n, previousWrappings: 0n });
    expect(keys.get(ids.k1)).to.include({ records: 0n, previousWrappings: 10n });
    hold("k3", "k3");
    await expectAllRead(honest.encryption, written);
  });

  it("lets a concurrent update win: the job skips the record, which the update already put under the current key", async function () {
    const { ids, honest, written, hold, withMaintenance } = await rotated(6);
    // Just before the job re-wraps a record, a login updates it (through Encryption, with a token).
    const updated = new Map<string, string>();
    const racing: Client<typeof KeyMaintenanceService> = {
      ...maintenance,
      rewrapRecordKey: async (req, options) => {
        const hash = req.hash!;
        const { kind } = written.get(hash)!;
        const record = `updated ${randomBytes(4).toString("hex")}`;
        await honest.encryption.updateRecord({ accessToken: await token("update", kind, hash, record), record, expectedVersion: req.version! });
        updated.set(hash, record);
        return maintenance.rewrapRecordKey(req, options);
      },
    };
    const raced = withMaintenance(racing);
    await rewrap(raced);
    const done = await status(raced.admin);
    expect(done.job!.progress[0]).to.include({ keyId: ids.k1, moved: 0n, skipped: 6n, failed: 0n });
    expect(done.keys.find((k) => k.keyId === ids.k2)).to.include({ records: 6n, previousWrappings: 0n });
    hold("k2", "k2");
    for (const [hash, { kind }] of written) {
      const read = await honest.encryption.readRecord({ accessToken: await token("read", kind, hash) });
      expect(read.result.value).to.equal(updated.get(hash));
      expect(read.version).to.equal(2n);
    }
  });

  it("picks up, in a later pass, a record that a writer still on the old keyring wrote behind the job's cursor", async function () {
    const { ids, ring, honest, written, hold, withMaintenance } = await rotated(4);
    const stale = encryptionWith(() => ring("k1", "k1")); // a replica that has not reloaded yet
    let late: Map<string, { kind: RecordKindName; record: string }> | undefined;
    const listing: Client<typeof KeyMaintenanceService> = {
      ...maintenance,
      listRecordKeys: async (req, options) => {
        const page = await maintenance.listRecordKeys(req, options);
        late ??= await writeRecords(stale.encryption, 3); // after the first page was read
        return page;
      },
    };
    const paged = withMaintenance(listing);
    await rewrap(paged);
    expect(await recordsUnder(paged.admin, ids.k1)).to.equal(0);
    expect((await status(paged.admin)).job!.progress[0]).to.include({ moved: 7n });
    hold("k2", "k2");
    await expectAllRead(honest.encryption, new Map([...written, ...late!]));
  });

  it("a Storage that swaps wrapped keys between rows, or relabels a kind, gets nothing written: the job counts them as failed", async function () {
    const { ids, honest, written, withMaintenance } = await rotated(6);
    const rewrapped: string[] = [];
    const lying: Client<typeof KeyMaintenanceService> = {
      ...maintenance,
      listRecordKeys: async (req, options) => {
        const page = await maintenance.listRecordKeys(req, options);
        const [a, b, c] = page.records;
        if (a && b) [a.wrappedKey, b.wrappedKey] = [b.wrappedKey, a.wrappedKey];
        if (c) c.kind = c.kind === RecordKind.WALLET ? RecordKind.SUBJECT : RecordKind.WALLET;
        return page;
      },
      rewrapRecordKey: async (req, options) => {
        rewrapped.push(req.hash!);
        return maintenance.rewrapRecordKey(req, options);
      },
    };
    const lied = withMaintenance(lying);
    await rewrap(lied);
    const progress = (await status(lied.admin)).job!.progress[0]!;
    expect(progress).to.include({ keyId: ids.k1, moved: 3n, failed: 3n });
    expect(rewrapped).to.have.length(3);
    // The three it refused are untouched and still read under k1; the others under k2.
    await expectAllRead(honest.encryption, written);
    expect(await recordsUnder(lied.admin, ids.k1)).to.equal(3);
  });

  it("a re-wrap listing never carries a record's ciphertext or plaintext, and neither does anything else Storage answers without an Access Token", async function () {
    const { ids, ring } = keyrings();
    const honest = encryptionWith(() => ring("k1", "k1"));
    const written = await writeRecords(honest.encryption, 12);
    const ciphertexts: Buffer[] = [];
    for await (const row of store.scan()) if (written.has(row.hash)) ciphertexts.push(Buffer.from(row.ciphertext));
    expect(ciphertexts).to.have.length(12);

    const answers: Buffer[] = [];
    let pageToken = "";
    do {
      const page = await maintenance.listRecordKeys({ keyId: ids.k1, pageSize: 5, pageToken });
      expect(page.records.length).to.be.at.most(5);
      answers.push(Buffer.from(toBinary(ListRecordKeysResponseSchema, page)));
      pageToken = page.nextPageToken;
    } while (pageToken);
    answers.push(Buffer.from(toBinary(CountRecordKeysResponseSchema, await maintenance.countRecordKeys({}))));
    const all = Buffer.concat(answers);
    // Honest twin: the listing is complete (every hash is there).
    for (const hash of written.keys()) expect(all.includes(Buffer.from(hash)), "the listing names each record").to.equal(true);
    for (const ciphertext of ciphertexts) {
      // Any 16-byte window of a ciphertext: not even a fragment.
      for (let i = 0; i + 16 <= ciphertext.length; i += 16) expect(all.includes(ciphertext.subarray(i, i + 16))).to.equal(false);
    }
    for (const { record } of written.values()) expect(all.includes(Buffer.from(record))).to.equal(false);
    // The listing's shape: no field could carry one.
    expect(ListRecordKeysResponseSchema.fields.map((f) => f.name)).to.deep.equal(["records", "next_page_token"]);
  });

  it("Encryption, holding its keyring and running the job, still cannot read a record without an Access Token for it", async function () {
    const { ids, ring } = keyrings();
    const keyring = ring("k2", "k1", "k2");
    const honest = encryptionWith(() => ring("k1", "k1"));
    const written = await writeRecords(honest.encryption, 3);
    const [hash, { kind }] = [...written][0]!;
    // What the job can learn: every hash, kind, version and wrapped key, and so the data keys.
    const { records } = await maintenance.listRecordKeys({ keyId: ids.k1 });
    const listed = records.find((r) => r.hash === hash)!;
    expect(keyring.rewrap(kind, hash, ids.k1, listed.wrappedKey).keyId).to.equal(ids.k2);

    // Every StorageService method that hands out a ciphertext wants a Token-signed Access Token for that record.
    const otherHash = [...written.keys()][1]!;
    const forged = await sign(ACCESS_TOKEN, generateSigningKey("access"), { op: "read", kind, hash });
    const notOurs = await sign(ACCESS_TOKEN, generateSigningKey("access"), { op: "read", kind, hash: otherHash });
    const relabelled = tamper(await token("read", kind, otherHash), (c) => void (c.hash = hash));
    const deleteToken = await token("delete", kind, hash);
    const refusals: Array<[string, () => Promise<unknown>, Code]> = [
      ["no token", () => storage.readRecord({ accessToken: "" }), Code.InvalidArgument],
      ["a token Encryption signed itself", () => storage.readRecord({ accessToken: forged }), Code.Unauthenticated],
      ["a forged token for another record", () => storage.readRecord({ accessToken: notOurs }), Code.Unauthenticated],
      ["a real token for another record, re-labelled", () => storage.readRecord({ accessToken: relabelled }), Code.Unauthenticated],
      ["a delete token to read", () => storage.readRecord({ accessToken: deleteToken }), Code.PermissionDenied],
      // The one other call that takes a read token returns a receipt, never a ciphertext, and wants the token too.
      ["no token, to backfill a digest", () => storage.backfillRecordDigest({ accessToken: "", version: 1n, digest: "A".repeat(43) }), Code.InvalidArgument],
      ["a forged token, to backfill a digest", () => storage.backfillRecordDigest({ accessToken: forged, version: 1n, digest: "A".repeat(43) }), Code.Unauthenticated],
    ];
    for (const [what, call, code] of refusals) {
      const error = await refusedWith(call(), what);
      expect(error.code, what).to.equal(code);
    }
    // Everything Storage offers Encryption: the record calls, each taking an Access Token...
    expect(StorageService.methods.map((m) => m.name).sort()).to.deep.equal(["BackfillRecordDigest", "CreateRecord", "DeleteRecord", "ReadRecord", "UpdateRecord", "WriteRecords"]);
    // (a batch's writes each take one)
    const takesToken = (fields: ReadonlyArray<{ name: string; message?: { fields: ReadonlyArray<{ name: string }> } | undefined }>) =>
      fields.some((f) => f.name === "access_token") || fields.some((f) => f.message?.fields.some((g) => g.name === "access_token"));
    expect(StorageService.methods.filter((m) => !takesToken(m.input.fields))).to.deep.equal([]);
    // ...and key maintenance, which takes none and answers with wrapped keys and counts only.
    expect(KeyMaintenanceService.methods.map((m) => m.name).sort()).to.deep.equal(["CountRecordKeys", "ListRecordKeys", "RewrapRecordKey"]);
    // Honest twin: with Token's read token, Storage hands over the ciphertext, and Encryption opens it.
    const read = await honest.encryption.readRecord({ accessToken: await token("read", kind, hash) });
    expect(read.result.value).to.equal(written.get(hash)!.record);
  });

  it("a compromised Encryption can destroy records through the re-wrap RPC, and Storage's custodian can undo it; a second bad re-wrap cannot push out the undo copy", async function () {
    const { ids, ring } = keyrings();
    const keyring = ring("k1", "k1");
    const honest = encryptionWith(() => keyring);
    const written = await writeRecords(honest.encryption, 5);
    const garbage = async (from: string, to: string) => {
      const { records } = await maintenance.listRecordKeys({ keyId: from });
      for (const r of records) {
        const { hash, kind, version, keyId, wrappedKey } = r;
        await maintenance.rewrapRecordKey({ hash, kind, version, keyId, wrappedKey, newKeyId: to, newWrappedKey: randomBytes(60) });
      }
    };
    await garbage(ids.k1, "bad-1");
    await garbage("bad-1", "bad-2");
    const [hash, { kind }] = [...written][0]!;
    const lost = await refusedWith(honest.encryption.readRecord({ accessToken: await token("read", kind, hash) }));
    expect(lost.code).to.equal(Code.DataLoss);

    // The undo copies are under k1, whatever happened after.
    const usage = new Map((await storageAdmin.getKeyUsage({})).keys.map((k) => [k.keyId, k]));
    expect(usage.get(ids.k1)).to.include({ records: 0n, previousWrappings: 5n });
    expect(usage.get("bad-2")).to.include({ records: 5n });
    expect((await storageAdmin.restorePreviousWrappings({ keyId: "bad-2" })).restored).to.equal(5n);
    await expectAllRead(honest.encryption, written);
    expect((await storageAdmin.getKeyUsage({})).keys.find((k) => k.keyId === ids.k1)).to.include({ records: 5n, previousWrappings: 0n });
  });

  it("after the re-wrap proves good, Storage's custodian forgets the undo copies: then a restore has nothing to put back", async function () {
    const { ids, honest, written, hold } = await rotated(4);
    await rewrap(honest);
    expect((await storageAdmin.forgetPreviousWrappings({ keyId: ids.k1 })).forgotten).to.equal(4n);
    expect((await storageAdmin.restorePreviousWrappings({ keyId: ids.k2 })).restored).to.equal(0n);
    hold("k2", "k2");
    await expectAllRead(honest.encryption, written);
  });

  it("leaves legacy records (sealed before envelope encryption) and records under a key it does not hold, and says so", async function () {
    const { ids, bytes, ring, honest, written, hold } = await rotated(2);
    const { encryption, admin } = honest;
    const legacyHash = randomBytes(32).toString("base64url");
    await store.create({ hash: legacyHash, kind: "wallet", keyId: ids.k1, ciphertext: sealLegacy(bytes.k1, Buffer.from("legacy"), "wallet", legacyHash), digest: sha256("legacy") });
    const foreign = await writeRecords(encryptionWith(() => ring("k3", "k3")).encryption, 1);
    await rewrap(honest);
    const done = await status(admin);
    expect(done.job!.progress.find((p) => p.keyId === ids.k1)).to.include({ moved: 2n, legacy: 1n, failed: 0n });
    const keys = new Map(done.keys.map((k) => [k.keyId, k]));
    expect(keys.get(ids.k1)).to.include({ held: true, records: 1n, legacyRecords: 1n });
    expect(keys.get(ids.k3)).to.include({ held: false, current: false, records: 1n });
    expect(done.job!.progress.find((p) => p.keyId === ids.k3)).to.equal(undefined);
    // The legacy record reads, and its next update moves it.
    const read = await encryption.readRecord({ accessToken: await token("read", "wallet", legacyHash) });
    expect(read.result.value).to.equal("legacy");
    await encryption.updateRecord({ accessToken: await token("update", "wallet", legacyHash, "now wrapped"), record: "now wrapped", expectedVersion: 1n });
    expect(await recordsUnder(admin, ids.k1)).to.equal(0);
    hold("k2", "k2");
    await expectAllRead(encryption, written);
    expect(foreign.size).to.equal(1);
  });

  it("stops on a Storage error with its code and resumes on the next run", async function () {
    const { ids, honest, written, hold, withMaintenance } = await rotated(8);
    let calls = 0;
    const failing: Client<typeof KeyMaintenanceService> = {
      ...maintenance,
      rewrapRecordKey: async (req, options) => {
        if (++calls > 3) throw new ConnectError("the database failed the statement (SQLSTATE XX000)", Code.Internal);
        return maintenance.rewrapRecordKey(req, options);
      },
    };
    const broken = withMaintenance(failing);
    await broken.admin.runRewrap({ concurrency: 1 });
    await broken.job.settled();
    const failed = (await status(broken.admin)).job!;
    expect(failed.state).to.equal(RewrapJobState.FAILED);
    expect(failed.error).to.equal("Internal: storage: the database failed the statement (SQLSTATE XX000)");
    expect(failed.progress[0]).to.include({ moved: 3n });
    expect(await recordsUnder(broken.admin, ids.k1)).to.equal(5);

    await rewrap(honest);
    expect((await status(honest.admin)).job!.progress[0]).to.include({ moved: 5n });
    hold("k2", "k2");
    await expectAllRead(honest.encryption, written);
  });

  it("Storage refuses malformed key-maintenance requests with INVALID_ARGUMENT, saying what to fix", async function () {
    const { ids, ring } = keyrings();
    const written = await writeRecords(encryptionWith(() => ring("k1", "k1")).encryption, 1);
    const [row] = (await maintenance.listRecordKeys({ keyId: ids.k1 })).records;
    const { hash, kind, version, keyId, wrappedKey } = row!;
    const good = { hash, kind, version, keyId, wrappedKey, newKeyId: ids.k2, newWrappedKey: randomBytes(60) };
    const bad: Array<[string, () => Promise<unknown>, RegExp]> = [
      ["page size 1001", () => maintenance.listRecordKeys({ keyId: ids.k1, pageSize: 1001 }), /page_size must be/],
      ["a negative page size", () => maintenance.listRecordKeys({ keyId: ids.k1, pageSize: -1 }), /page_size must be/],
      ["no key id", () => maintenance.listRecordKeys({}), /keyId must be/],
      ["a page token that is not a hash", () => maintenance.listRecordKeys({ keyId: ids.k1, pageToken: "x y" }), /hash must be/],
      ["no kind", () => maintenance.rewrapRecordKey({ ...good, kind: RecordKind.UNSPECIFIED }), /kind must be/],
      ["no wrapped key", () => maintenance.rewrapRecordKey({ ...good, wrappedKey: new Uint8Array(0) }), /wrapped_key is required/],
      ["version 0", () => maintenance.rewrapRecordKey({ ...good, version: 0n }), /version must be/],
      ["the same key id", () => maintenance.rewrapRecordKey({ ...good, newKeyId: keyId }), /another key id/],
      ["no new wrapped key", () => maintenance.rewrapRecordKey({ ...good, newWrappedKey: new Uint8Array(0) }), /wrappedKey must be/],
    ];
    for (const [what, call, message] of bad) {
      const error = await refusedWith(call(), what);
      expect(error.code, what).to.equal(Code.InvalidArgument);
      expect(error.rawMessage, what).to.match(message).and.not.include(hash);
    }
    // Honest twin.
    await maintenance.rewrapRecordKey(good);
    expect(written.size).to.equal(1);
  });

  it("refuses a concurrency it will not run with, and joins a run in progress rather than starting a second", async function () {
    const { ring } = keyrings();
    const { job, admin } = encryptionWith(() => ring("k1", "k1"));
    for (const concurrency of [-1, 17, 1000]) {
      const error = await refusedWith(admin.runRewrap({ concurrency }));
      expect(error.code).to.equal(Code.InvalidArgument);
      expect(error.rawMessage).to.match(/concurrency must be/);
    }
    const a = job.start({});
    const b = job.start({});
    expect(b.startTime).to.equal(a.startTime);
    await job.settled();
  });
});
