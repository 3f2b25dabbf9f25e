// Encryption's keyring rotation (docs/design.md §3): new writes use the new key, old
// records stay readable, and an update re-encrypts under the current key. The real
// Encryption and Storage handlers, joined in memory, with a real PGlite store.

import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { PGlite } from "@electric-sql/pglite";
import { Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { EncryptionService } from "../../gen/hello/encryption/v1/encryption_service_pb.js";
import { StorageService } from "../../gen/hello/storage/v1/storage_service_pb.js";
import { storageErrors, storageRoutes } from "../storage/storage-service.js";
import { openPGliteStore } from "../storage/backend/pglite-store.js";
import type { RecordKindName, RecordStore } from "../storage/backend/record-store.js";
import { WALLET_RECORD_KINDS } from "../../protocol/records.js";
import { FORMAT_2_SQL } from "../storage/backend/conformance.js";
import { sha256, sign } from "../../protocol/jws.js";
import { Keyring, generateRecordKey } from "../../protocol/keyring.js";
import { VerificationKeys, generateSigningKey, publicJwk } from "../../protocol/signing-keys.js";
import { storageKeyPair } from "../../../test/support/storage-keys.js";
import { ACCESS_TOKEN, type Operation } from "../../protocol/tokens.js";
import { encryptionRoutes } from "./encryption-service.js";
import { inMemory } from "../../../test/support/in-memory.js";
import { refusedWith } from "../../../test/support/refusal.js";
import { PROTOCOL_VERSION, THIS_RELEASE } from "../../protocol/versions.js";
import { clientVersionCheck, isVersionRefusal, serverVersionCheck } from "../../../mesh/versions.js";

describe("Encryption: keyring rotation and re-encryption on write", function () {
  const accessKey = generateSigningKey("access");
  const tokenKeys = new VerificationKeys([publicJwk(accessKey)]);
  const storageSigning = storageKeyPair();
  const k1 = generateRecordKey();
  let keyring = new Keyring(new Map([["k1", k1]]), "k1");
  let store: RecordStore;
  let encryption: ReturnType<typeof createClient<typeof EncryptionService>>;

  before(async function () {
    store = await openPGliteStore({});
    const storage = createClient(
      StorageService,
      inMemory(storageRoutes({ store, tokenKeys: () => tokenKeys, errorKey: storageSigning.error, receiptKey: storageSigning.receipt }), storageErrors),
    );
    encryption = createClient(
      EncryptionService,
      inMemory(encryptionRoutes({ keyring: () => keyring, tokenKeys: () => tokenKeys, storageKeys: () => storageSigning.keys, storage })),
    );
  });
  after(async () => store.close());

  const token = (op: Operation, hash: string, record?: string) =>
    sign(ACCESS_TOKEN, accessKey, { op, kind: "wallet", hash, ...(record ? { digest: sha256(record) } : {}) });
  const keyIdOf = async (hash: string) => (await store.read(hash, "wallet")).keyId;

  it("reads records sealed before a rotation, seals new ones and updates under the new key", async function () {
    await encryption.createRecord({ accessToken: await token("create", "old-hash", "old record"), record: "old record" });
    keyring = new Keyring(new Map([["k1", k1], ["k2", generateRecordKey()]]), "k2");

    const old = await encryption.readRecord({ accessToken: await token("read", "old-hash") });
    expect(old.result).to.deep.equal({ case: "record", value: "old record" });
    expect(await keyIdOf("old-hash")).to.equal("k1");

    await encryption.createRecord({ accessToken: await token("create", "new-hash", "new record"), record: "new record" });
    expect(await keyIdOf("new-hash")).to.equal("k2");

    const updated = await encryption.updateRecord({
      accessToken: await token("update", "old-hash", "old record, updated"),
      record: "old record, updated",
      expectedVersion: old.version,
    });
    expect(updated.version).to.equal(2n);
    expect(await keyIdOf("old-hash")).to.equal("k2");
    const reread = await encryption.readRecord({ accessToken: await token("read", "old-hash") });
    expect(reread.result.value).to.equal("old record, updated");
  });

  it("an update at a stale version is ABORTED and changes nothing", async function () {
    await encryption.createRecord({ accessToken: await token("create", "v-hash", "v1"), record: "v1" });
    const error = await refusedWith(encryption.updateRecord({ accessToken: await token("update", "v-hash", "v2"), record: "v2", expectedVersion: 7n }));
    expect(error.code).to.equal(Code.Aborted);
    const read = await encryption.readRecord({ accessToken: await token("read", "v-hash") });
    expect(read.result.value).to.equal("v1");
  });

  it("seals, stores, reads, updates and deletes records of the credential wallet's kinds, each under its own kind only", async function () {
    const tokenOf = (op: Operation, kind: RecordKindName, hash: string, record?: string) =>
      sign(ACCESS_TOKEN, accessKey, { op, kind, hash, ...(record ? { digest: sha256(record) } : {}) });
    for (const kind of WALLET_RECORD_KINDS) {
      const hash = `${kind}-hash`;
      const record = `a ${kind} record`;
      const created = await encryption.createRecord({ accessToken: await tokenOf("create", kind, hash, record), record });
      expect(created.version).to.equal(1n);
      const row = await store.read(hash, kind);
      expect(Buffer.from(row.ciphertext).includes(Buffer.from(record)), "sealed").to.equal(false);
      expect(row.ciphertext.byteLength, "padded to a size bucket").to.equal(1024);
      expect((await encryption.readRecord({ accessToken: await tokenOf("read", kind, hash) })).result).to.deep.equal({ case: "record", value: record });
      // A token for another kind at this hash finds nothing: Storage keys rows by kind too.
      const other = WALLET_RECORD_KINDS.find((k) => k !== kind)!;
      expect((await encryption.readRecord({ accessToken: await tokenOf("read", other, hash) })).result.case).to.equal("errorToken");

      const next = `${record}, updated`;
      const updated = await encryption.updateRecord({ accessToken: await tokenOf("update", kind, hash, next), record: next, expectedVersion: 1n });
      expect(updated.version).to.equal(2n);
      expect((await encryption.readRecord({ accessToken: await tokenOf("read", kind, hash) })).result.value).to.equal(next);
      await encryption.deleteRecord({ accessToken: await tokenOf("delete", kind, hash) });
      expect((await encryption.readRecord({ accessToken: await tokenOf("read", kind, hash) })).result.case).to.equal("errorToken");
    }
  });

  it("a keyring that lost the key a record was sealed with answers DATA_LOSS, naming no record", async function () {
    await encryption.createRecord({ accessToken: await token("create", "lost-hash", "r"), record: "r" });
    const before = keyring;
    keyring = new Keyring(new Map([["k9", generateRecordKey()]]), "k9");
    try {
      const error = await refusedWith(encryption.readRecord({ accessToken: await token("read", "lost-hash") }));
      expect(error.code).to.equal(Code.DataLoss);
      expect(error.rawMessage).to.not.include("lost-hash");
    } finally {
      keyring = before;
    }
  });

  it("two first reads of a row from before Storage kept digests both succeed: one gives Storage the digest, the other reads again and gets its receipt", async function () {
    // A database in the previous format (no digest column) with one row in it.
    const dir = await mkdtemp(path.join(os.tmpdir(), "hello-legacy-"));
    const raw = await PGlite.create(dir);
    await raw.exec(FORMAT_2_SQL);
    const record = "a wallet record written before digests";
    const sealed = keyring.seal(Buffer.from(record), "wallet", "legacy-hash");
    await raw.query("INSERT INTO records (hash, kind, key_id, wrapped_key, ciphertext, version, create_time, update_time) VALUES ($1, 'wallet', $2, $3, $4, 1, now(), now())",
      ["legacy-hash", sealed.keyId, sealed.wrappedKey, sealed.ciphertext]);
    await raw.close();
    const legacy = await openPGliteStore({ dataDir: dir });
    try {
      const real = createClient(StorageService, inMemory(storageRoutes({ store: legacy, tokenKeys: () => tokenKeys, errorKey: storageSigning.error, receiptKey: storageSigning.receipt }), storageErrors));
      // A pause point: each backfill waits until both reads have asked for one, so both race.
      let arrived = 0;
      let release!: () => void;
      const both = new Promise<void>((resolve) => (release = resolve));
      const calls: string[] = [];
      const storage = new Proxy(real, {
        get(target, name: keyof typeof real) {
          if (name === "backfillRecordDigest") {
            return async (...args: Parameters<typeof real.backfillRecordDigest>) => {
              calls.push("backfill");
              if (++arrived === 2) release();
              await both;
              return target.backfillRecordDigest(...args);
            };
          }
          if (name === "readRecord") return (...args: Parameters<typeof real.readRecord>) => (calls.push("read"), target.readRecord(...args));
          return target[name];
        },
      });
      const reader = createClient(EncryptionService, inMemory(encryptionRoutes({ keyring: () => keyring, tokenKeys: () => tokenKeys, storageKeys: () => storageSigning.keys, storage })));
      const reads = await Promise.all([1, 2].map(async () => reader.readRecord({ accessToken: await token("read", "legacy-hash") })));
      for (const read of reads) {
        expect(read.result).to.deep.equal({ case: "record", value: record });
        expect(read.receipt).to.match(/^ey/);
      }
      expect(calls.sort()).to.deep.equal(["backfill", "backfill", "read", "read", "read"]);
      expect((await legacy.read("legacy-hash", "wallet")).digest).to.equal(sha256(record));
    } finally {
      await legacy.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("Encryption when Storage's release does not fit", function () {
  it("passes Storage's refusal of its protocol version on as a version refusal, with Storage's words, and reads nothing", async function () {
    const accessKey = generateSigningKey("access");
    const tokenKeys = new VerificationKeys([publicJwk(accessKey)]);
    const storageSigning = storageKeyPair();
    const store = await openPGliteStore({});
    let handled = 0;
    try {
      // A Storage of the next release, which no longer takes this one's protocol.
      const later = { speaks: PROTOCOL_VERSION + 1, oldest: PROTOCOL_VERSION + 1 };
      const routes = storageRoutes({ store, tokenKeys: () => tokenKeys, errorKey: storageSigning.error, receiptKey: storageSigning.receipt });
      const storage = createClient(
        StorageService,
        createRouterTransport(routes, {
          router: { interceptors: [serverVersionCheck("storage", later, () => "encryption"), (next) => (req) => (handled++, next(req))] },
          transport: { interceptors: [clientVersionCheck("encryption", "storage", THIS_RELEASE)] },
        }),
      );
      const encryption = createClient(
        EncryptionService,
        inMemory(encryptionRoutes({ keyring: () => new Keyring(new Map([["k1", generateRecordKey()]]), "k1"), tokenKeys: () => tokenKeys, storageKeys: () => storageSigning.keys, storage })),
      );
      const error = await refusedWith(encryption.readRecord({ accessToken: await sign(ACCESS_TOKEN, accessKey, { op: "read", kind: "wallet", hash: "h" }) }));
      expect(error.code).to.equal(Code.FailedPrecondition);
      expect(error.rawMessage).to.match(/^storage: the caller encryption speaks protocol \d+, and storage accepts only protocol \d+: upgrade encryption/);
      expect(isVersionRefusal(error), "Orchestration can tell it from a step out of order").to.equal(true);
      expect(handled, "Storage's handler never ran").to.equal(0);
    } finally {
      await store.close();
    }
  });
});
