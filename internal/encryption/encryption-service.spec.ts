// Encryption's keyring rotation (DESIGN.md §3): new writes use the new key, old
// records stay readable, and an update re-encrypts under the current key. The real
// Encryption and Storage handlers, joined in memory, with a real PGlite store.

import { expect } from "chai";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { EncryptionService } from "../gen/hello/encryption/v1/encryption_service_pb.js";
import { StorageService } from "../gen/hello/storage/v1/storage_service_pb.js";
import { storageRoutes } from "../storage/service/storage-service.js";
import { openPGliteStore } from "../storage/backend/pglite-store.js";
import type { RecordStore } from "../storage/backend/record-store.js";
import { sha256, sign } from "../protocol/jws.js";
import { Keyring, generateRecordKey } from "../protocol/keyring.js";
import { VerificationKeys, generateSigningKey, publicJwk } from "../protocol/signing-keys.js";
import { storageKeyPair } from "../testing/storage-keys.js";
import { ACCESS_TOKEN, type Operation } from "../protocol/tokens.js";
import { encryptionRoutes } from "./encryption-service.js";

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
      createRouterTransport(storageRoutes({ store, tokenKeys: () => tokenKeys, errorKey: storageSigning.error, receiptKey: storageSigning.receipt })),
    );
    encryption = createClient(
      EncryptionService,
      createRouterTransport(encryptionRoutes({ keyring: () => keyring, tokenKeys: () => tokenKeys, storageKeys: () => storageSigning.keys, storage })),
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
    const error = await encryption
      .updateRecord({ accessToken: await token("update", "v-hash", "v2"), record: "v2", expectedVersion: 7n })
      .catch((e: unknown) => ConnectError.from(e));
    expect((error as ConnectError).code).to.equal(Code.Aborted);
    const read = await encryption.readRecord({ accessToken: await token("read", "v-hash") });
    expect(read.result.value).to.equal("v1");
  });

  it("a keyring that lost the key a record was sealed with answers DATA_LOSS, naming no record", async function () {
    await encryption.createRecord({ accessToken: await token("create", "lost-hash", "r"), record: "r" });
    const before = keyring;
    keyring = new Keyring(new Map([["k9", generateRecordKey()]]), "k9");
    try {
      const error = await encryption.readRecord({ accessToken: await token("read", "lost-hash") }).catch((e: unknown) => ConnectError.from(e));
      expect((error as ConnectError).code).to.equal(Code.DataLoss);
      expect((error as ConnectError).rawMessage).to.not.include("lost-hash");
    } finally {
      keyring = before;
    }
  });
});
