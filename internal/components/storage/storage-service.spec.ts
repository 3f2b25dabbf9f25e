// Storage's service, every rule alone, in memory (docs/design.md §3, §5; docs/protocol.md):
// storageRoutes joined to its clients without sockets (test/support/in-memory.ts, with
// Storage's error mapping), a real PGlite store in memory, and a fixed clock. The test
// plays Token: it holds the access key and signs the grants. Each rule has its honest
// twin beside it. Through the mesh and the real processes: test/e2e/storage-attacks.spec.ts;
// the re-wrap job against these services: internal/components/encryption/rewrap-job.spec.ts.

import { randomBytes } from "node:crypto";
import { expect } from "chai";
import { PGlite } from "@electric-sql/pglite";
import { type DescMessage, ScalarType, toBinary } from "@bufbuild/protobuf";
import { Code, type Client, ConnectError, createClient } from "@connectrpc/connect";
import { RecordKind } from "../../gen/hello/common/v1/record_pb.js";
import { StorageService } from "../../gen/hello/storage/v1/storage_service_pb.js";
import { KeyMaintenanceService } from "../../gen/hello/storage/v1/key_maintenance_service_pb.js";
import { KeyWrappingAdminService } from "../../gen/hello/storage/v1/key_wrapping_admin_service_pb.js";
import { sha256, sign, verify } from "../../protocol/jws.js";
import { VerificationKeys, generateSigningKey, publicJwk } from "../../protocol/signing-keys.js";
import { ACCESS_TOKEN, type AccessClaims, ERROR_TOKEN, type ErrorClaims, type Operation, RECEIPT, type ReceiptClaims, STORAGE, TOKEN } from "../../protocol/tokens.js";
import {
  AlreadyExistsError,
  InvalidArgumentError,
  NotFoundError,
  type StorageError,
  type StorageErrorCode,
  TokenReusedError,
  UnavailableError,
  VersionConflictError,
} from "./backend/errors.js";
import { migrate } from "./backend/migrate.js";
import type { RecordKindName, RecordStore } from "./backend/record-store.js";
import { sqlRecordStore } from "./backend/sql-record-store.js";
import { STORAGE_SERVICES, storageErrors, storageRoutes } from "./storage-service.js";
import { inMemory } from "../../../test/support/in-memory.js";
import { refusal } from "../../../test/support/refusal.js";
import { storageKeyPair } from "../../../test/support/storage-keys.js";

/** Storage's clock, and the time the test (as Token) signs at: far from the machine's. */
const NOW = new Date("2031-05-06T07:08:09Z");
const SECONDS = Math.floor(NOW.getTime() / 1000);

/**
 * The record store's own statements and migrations (sql-record-store.ts, migrate.ts) on
 * a PGlite in memory, as openPGliteStore runs them, on a database this spec can also
 * reach with SQL: only to leave a row as a release before digests did.
 */
async function storeWithSql() {
  const db = await PGlite.create();
  const query = async <T>(sql: string, params: readonly unknown[] = []) => {
    const result = await db.query<T>(sql, [...params]);
    return { rows: result.rows, rowCount: result.affectedRows ?? 0 };
  };
  await migrate(query);
  const transaction = <T>(work: (tx: { query: typeof query }) => Promise<T>) => db.transaction((tx) => work({
    query: async <R>(sql: string, params: readonly unknown[] = []) => {
      const result = await tx.query<R>(sql, [...params]);
      return { rows: result.rows, rowCount: result.affectedRows ?? 0 };
    },
  }));
  return { store: sqlRecordStore({ query, transaction, close: () => db.close() }), sql: query, transaction };
}

describe("Storage's service, rule by rule, in memory", function () {
  const accessKey = generateSigningKey("access");
  const tokenKeys = new VerificationKeys([publicJwk(accessKey)]);
  const signing = storageKeyPair();
  let store: RecordStore;
  let sql: Awaited<ReturnType<typeof storeWithSql>>["sql"];
  let storage: Client<typeof StorageService>;
  let maintenance: Client<typeof KeyMaintenanceService>;
  let admin: Client<typeof KeyWrappingAdminService>;

  before(async function () {
    ({ store, sql } = await storeWithSql());
    const transport = inMemory(
      storageRoutes({ store, tokenKeys: () => tokenKeys, errorKey: signing.error, receiptKey: signing.receipt, now: () => NOW }),
      storageErrors,
    );
    storage = createClient(StorageService, transport);
    maintenance = createClient(KeyMaintenanceService, transport);
    admin = createClient(KeyWrappingAdminService, transport);
  });
  after(async () => store?.close());

  const newHash = () => randomBytes(32).toString("base64url");
  const sealed = () => ({ keyId: "k1", wrappedKey: randomBytes(60), ciphertext: randomBytes(1024) });

  /** Token's grant: an Access Token signed now (Storage's now), with its jti. */
  async function grant(op: Operation, kind: RecordKindName, hash: string, extra: Partial<AccessClaims> = {}, now = NOW) {
    const jti = randomBytes(16).toString("base64url");
    return { jti, accessToken: await sign(ACCESS_TOKEN, accessKey, { op, kind, hash, ...extra }, { jti, now }) };
  }
  /** A create or update grant for `record`, carrying its digest as Token's does. */
  const writeGrant = (op: "create" | "update", kind: RecordKindName, hash: string, record: string, extra: Partial<AccessClaims> = {}) =>
    grant(op, kind, hash, { digest: sha256(record), ...extra });

  const receiptClaims = async (receipt: string) => {
    const { claims } = await verify<ReceiptClaims>(RECEIPT, signing.keys, receipt, "receipt", NOW);
    return claims;
  };
  /** Whether a jti is still unspent at Storage: spending it now succeeds (and uses it up). */
  const unspent = (jti: string) =>
    store.spendTokenId(jti, new Date(NOW.getTime() + 120_000)).then(() => true, (e: unknown) => (e instanceof TokenReusedError ? false : Promise.reject(e)));
  /** Storage's word that nothing is at `hash`: a read that returns an Error Token. */
  async function absent(kind: RecordKindName, hash: string) {
    const res = await storage.readRecord({ accessToken: (await grant("read", kind, hash)).accessToken });
    return res.result.case === "errorToken";
  }

  it("a read returns the stored record with a read receipt {op read, kind, hash, digest, version, ajti}, signed at Storage's now", async function () {
    const hash = newHash();
    const row = sealed();
    const digest = sha256("the release as Token signed it");
    await store.create({ hash, kind: "release", digest, ...row });
    const read = await grant("read", "release", hash);
    const res = await storage.readRecord({ accessToken: read.accessToken });
    expect(res.result.case).to.equal("record");
    if (res.result.case !== "record") return expect.fail("no record");
    const record = res.result.value;
    expect(Buffer.from(record.ciphertext).equals(row.ciphertext)).to.equal(true);
    expect(Buffer.from(record.wrappedKey).equals(row.wrappedKey)).to.equal(true);
    expect([record.keyId, record.version]).to.deep.equal(["k1", 1n]);
    const claims = await receiptClaims(res.receipt);
    expect(claims).to.deep.include({ op: "read", kind: "release", hash, digest, version: 1, ajti: read.jti, iss: STORAGE, aud: TOKEN, iat: SECONDS });
    // Read tokens are not spent: the same one reads again, with a receipt answering it again.
    const again = await storage.readRecord({ accessToken: read.accessToken });
    expect((await receiptClaims(again.receipt)).ajti).to.equal(read.jti);
    expect(await unspent(read.jti)).to.equal(true);
  });

  it("a read of an absent record returns an Error Token answering that read, and no receipt; honest twin: once written, the same read returns it", async function () {
    const hash = newHash();
    const read = await grant("read", "subject", hash);
    const res = await storage.readRecord({ accessToken: read.accessToken });
    expect(res.result.case).to.equal("errorToken");
    expect(res.receipt).to.equal("");
    const { claims } = await verify<ErrorClaims>(ERROR_TOKEN, signing.keys, res.result.value as string, "error token", NOW);
    expect(claims).to.deep.include({ op: "read", kind: "subject", hash, ajti: read.jti, iss: STORAGE, aud: TOKEN, iat: SECONDS, exp: SECONDS + 60 });
    // A row of another kind at that hash is not the record asked for: still "none".
    await store.create({ hash, kind: "wallet", digest: sha256("w"), ...sealed() });
    expect(await absent("subject", hash)).to.equal(true);
    expect(await absent("wallet", hash)).to.equal(false);
  });

  it("Storage takes the hash, kind and op from a token it verified: another op is PERMISSION_DENIED, an expired or foreign-signed token UNAUTHENTICATED", async function () {
    const hash = newHash();
    await store.create({ hash, kind: "wallet", digest: sha256("w"), ...sealed() });
    const foreign = await sign(ACCESS_TOKEN, generateSigningKey("access"), { op: "read", kind: "wallet", hash }, { now: NOW });
    const expired = await grant("read", "wallet", hash, {}, new Date(NOW.getTime() - 120_000));
    expect(await refusal(storage.readRecord({ accessToken: (await grant("delete", "wallet", hash)).accessToken }))).to.deep.equal({
      code: Code.PermissionDenied, message: "the access token grants delete, not read",
    });
    expect(await refusal(storage.readRecord({ accessToken: expired.accessToken }))).to.deep.equal({
      code: Code.Unauthenticated, message: "the access token is not valid: it has expired",
    });
    expect((await refusal(storage.readRecord({ accessToken: foreign }))).code).to.equal(Code.Unauthenticated);
    // Honest twin: Token's read token for the same record, at the same moment.
    expect((await storage.readRecord({ accessToken: (await grant("read", "wallet", hash)).accessToken })).result.case).to.equal("record");
  });

  it("create, update and delete tokens are spent on first use: a second use is PERMISSION_DENIED and changes nothing", async function () {
    const hash = newHash();
    const create = await writeGrant("create", "wallet", hash, "v1");
    const created = await storage.createRecord({ accessToken: create.accessToken, ...sealed() });
    expect(await receiptClaims(created.receipt)).to.deep.include({ op: "create", kind: "wallet", hash, digest: sha256("v1"), version: 1, ajti: create.jti });
    // Refused as spent, not as ALREADY_EXISTS: the token is checked before the row.
    const used = { code: Code.PermissionDenied, message: "this token was already used" };
    expect(await refusal(storage.createRecord({ accessToken: create.accessToken, ...sealed() }))).to.deep.equal(used);

    const update = await writeGrant("update", "wallet", hash, "v2");
    const updated = await storage.updateRecord({ accessToken: update.accessToken, expectedVersion: 1n, ...sealed() });
    expect(await receiptClaims(updated.receipt)).to.deep.include({ op: "update", kind: "wallet", hash, digest: sha256("v2"), version: 2, ajti: update.jti });
    expect(await refusal(storage.updateRecord({ accessToken: update.accessToken, expectedVersion: 2n, ...sealed() }))).to.deep.equal(used);
    expect((await store.read(hash, "wallet")).version).to.equal(2);

    const remove = await grant("delete", "wallet", hash);
    await storage.deleteRecord({ accessToken: remove.accessToken });
    await store.create({ hash, kind: "wallet", digest: sha256("v1 again"), ...sealed() });
    expect(await refusal(storage.deleteRecord({ accessToken: remove.accessToken }))).to.deep.equal(used);
    expect(await absent("wallet", hash)).to.equal(false);
    // Honest twin: a fresh grant for each does what the spent one no longer can.
    await storage.deleteRecord({ accessToken: (await grant("delete", "wallet", hash)).accessToken });
    expect(await absent("wallet", hash)).to.equal(true);
  });

  it("an update Token bound to a version (a wallet's, as read) is refused at any other expected_version; honest twin: at that version it lands", async function () {
    const hash = newHash();
    await storage.createRecord({ accessToken: (await writeGrant("create", "wallet", hash, "v1")).accessToken, ...sealed() });
    await storage.updateRecord({ accessToken: (await writeGrant("update", "wallet", hash, "v2")).accessToken, expectedVersion: 1n, ...sealed() });
    // Token read version 1 and bound its update to it: the row moved on meanwhile, so no caller may write over it.
    const stale = await writeGrant("update", "wallet", hash, "v3", { version: 1 });
    expect(await refusal(storage.updateRecord({ accessToken: stale.accessToken, expectedVersion: 2n, ...sealed() }))).to.deep.equal({
      code: Code.PermissionDenied, message: "the access token grants this update at another version than expected_version",
    });
    expect((await store.read(hash, "wallet")).version).to.equal(2);
    const current = await writeGrant("update", "wallet", hash, "v3", { version: 2 });
    expect((await storage.updateRecord({ accessToken: current.accessToken, expectedVersion: 2n, ...sealed() })).version).to.equal(3n);
  });

  it("WriteRecords makes every write of the batch with its own token, signs each create's and update's receipt, and spends every token", async function () {
    const wallet = newHash();
    await storage.createRecord({ accessToken: (await writeGrant("create", "wallet", wallet, "w1")).accessToken, ...sealed() });
    const [release, gone] = [newHash(), newHash()];
    await storage.createRecord({ accessToken: (await writeGrant("create", "subject", gone, "s")).accessToken, ...sealed() });
    const grants = [
      await writeGrant("update", "wallet", wallet, "w2", { version: 1 }),
      await writeGrant("create", "release", release, "r"),
      await grant("delete", "subject", gone),
    ];
    const res = await storage.writeRecords({ writes: [
      { accessToken: grants[0]!.accessToken, expectedVersion: 1n, ...sealed() },
      { accessToken: grants[1]!.accessToken, ...sealed() },
      { accessToken: grants[2]!.accessToken },
    ] });
    expect(res.results.map((r) => r.version)).to.deep.equal([2n, 1n, 0n]);
    expect(await receiptClaims(res.results[0]!.receipt)).to.deep.include({ op: "update", kind: "wallet", hash: wallet, digest: sha256("w2"), version: 2, ajti: grants[0]!.jti });
    expect(await receiptClaims(res.results[1]!.receipt)).to.deep.include({ op: "create", kind: "release", hash: release, digest: sha256("r"), version: 1, ajti: grants[1]!.jti });
    expect(res.results[2]!.receipt).to.equal("");
    expect(await absent("subject", gone)).to.equal(true);
    for (const g of grants) expect(await unspent(g.jti), "each token is spent").to.equal(false);
  });

  it("WriteRecords writes nothing when one write fails (a version moved on, a read token, a bound version not met), and says which", async function () {
    const wallet = newHash();
    await storage.createRecord({ accessToken: (await writeGrant("create", "wallet", wallet, "w1")).accessToken, ...sealed() });
    const release = newHash();
    const batch = async (update: { version?: number; expected: bigint }) => [
      { accessToken: (await writeGrant("create", "release", release, "r")).accessToken, ...sealed() },
      { accessToken: (await writeGrant("update", "wallet", wallet, "w2", update.version === undefined ? {} : { version: update.version })).accessToken, expectedVersion: update.expected, ...sealed() },
    ];
    expect(await refusal(storage.writeRecords({ writes: await batch({ expected: 2n }) }))).to.deep.equal({
      code: Code.Aborted, message: "write 2 of 2: the wallet record for this key is not at the expected version",
    });
    expect(await refusal(storage.writeRecords({ writes: await batch({ version: 1, expected: 2n }) }))).to.deep.equal({
      code: Code.PermissionDenied, message: "the access token grants this update at another version than expected_version",
    });
    const read = await grant("read", "release", release);
    expect(await refusal(storage.writeRecords({ writes: [{ accessToken: read.accessToken }] }))).to.deep.equal({
      code: Code.PermissionDenied, message: "write 1 of 1: the access token grants no create, update or delete",
    });
    expect(await refusal(storage.writeRecords({ writes: [] }))).to.deep.equal({ code: Code.InvalidArgument, message: "writes must hold 1 to 64 writes" });
    expect(await absent("release", release), "the release of a failed batch is not there").to.equal(true);
    expect((await store.read(wallet, "wallet")).version).to.equal(1);
    // Honest twin: the same batch at the wallet's version lands.
    await storage.writeRecords({ writes: await batch({ version: 1, expected: 1n }) });
    expect(await absent("release", release)).to.equal(false);
  });

  it("a create or update token without a digest of the record is refused before anything is spent or written", async function () {
    const hash = newHash();
    const errorToken = (await storage.readRecord({ accessToken: (await grant("read", "subject", hash)).accessToken })).result.value as string;
    const ejti = (await verify<ErrorClaims>(ERROR_TOKEN, signing.keys, errorToken, "error token", NOW)).claims.jti!;
    const target = newHash();
    await store.create({ hash: target, kind: "subject", digest: sha256("old"), ...sealed() });
    const cases: Array<[string, () => Promise<unknown>, string, Operation]> = [];
    const noDigest = await grant("create", "subject", hash, { ejti });
    const shortDigest = await grant("create", "subject", hash, { ejti, digest: "abc" });
    const updateNoDigest = await grant("update", "subject", target);
    cases.push(
      ["a create with no digest", () => storage.createRecord({ accessToken: noDigest.accessToken, ...sealed() }), noDigest.jti, "create"],
      ["a create whose digest is no SHA-256", () => storage.createRecord({ accessToken: shortDigest.accessToken, ...sealed() }), shortDigest.jti, "create"],
      ["an update with no digest", () => storage.updateRecord({ accessToken: updateNoDigest.accessToken, expectedVersion: 1n, ...sealed() }), updateNoDigest.jti, "update"],
    );
    for (const [what, call, jti, op] of cases) {
      expect(await refusal(call()), what).to.deep.equal({ code: Code.PermissionDenied, message: `the access token carries no digest of the record to ${op}` });
      expect(await unspent(jti), `${what}: its jti`).to.equal(true);
    }
    expect(await absent("subject", hash)).to.equal(true);
    expect((await store.read(target, "subject")).version).to.equal(1);
    // Honest twin: the Error Token those refusals named is unspent, and founds the record.
    const create = await writeGrant("create", "subject", hash, "new", { ejti });
    expect((await storage.createRecord({ accessToken: create.accessToken, ...sealed() })).version).to.equal(1n);
  });

  it("the Error Token a create relies on (ejti) is spent by that create: a second create on it is PERMISSION_DENIED, even at another hash", async function () {
    const [first, second] = [newHash(), newHash()];
    const errorTokenJti = async (hash: string) => {
      const res = await storage.readRecord({ accessToken: (await grant("read", "subject", hash)).accessToken });
      return (await verify<ErrorClaims>(ERROR_TOKEN, signing.keys, res.result.value as string, "error token", NOW)).claims.jti!;
    };
    const ejti = await errorTokenJti(first);
    const one = await writeGrant("create", "subject", first, "first user", { ejti });
    await storage.createRecord({ accessToken: one.accessToken, ...sealed() });
    // A second, fresh create grant (as a second Token replica would mint) on the same Error Token.
    const two = await writeGrant("create", "subject", second, "second user", { ejti });
    expect(await refusal(storage.createRecord({ accessToken: two.accessToken, ...sealed() }))).to.deep.equal({
      code: Code.PermissionDenied, message: "the error token this create relies on was already used",
    });
    expect(await absent("subject", second)).to.equal(true);
    const blank = await writeGrant("create", "subject", second, "second user", { ejti: "" });
    expect(await refusal(storage.createRecord({ accessToken: blank.accessToken, ...sealed() }))).to.deep.equal({
      code: Code.PermissionDenied, message: "the access token names no valid error token",
    });
    // Honest twin: the second hash's own Error Token founds its record.
    const own = await writeGrant("create", "subject", second, "second user", { ejti: await errorTokenJti(second) });
    expect((await storage.createRecord({ accessToken: own.accessToken, ...sealed() })).version).to.equal(1n);
  });

  it("BackfillRecordDigest gives a digest-less row its digest once, at its version, and answers with the receipt ReadRecord could not sign", async function () {
    const hash = newHash();
    await store.create({ hash, kind: "wallet", digest: sha256("placeholder"), ...sealed() });
    await store.update(hash, "wallet", 1, { digest: sha256("placeholder 2"), ...sealed() });
    // As a release before digests (storage format 3) left it.
    await sql("UPDATE records SET digest = NULL WHERE hash = $1", [hash]);
    const read = await grant("read", "wallet", hash);
    const res = await storage.readRecord({ accessToken: read.accessToken });
    expect([res.result.case, res.receipt]).to.deep.equal(["record", ""]);
    const digest = sha256("the wallet Encryption decrypted");

    const conflict = { code: Code.Aborted, message: "the wallet record for this key is not at the expected version, or it already has a digest" };
    expect(await refusal(storage.backfillRecordDigest({ accessToken: read.accessToken, version: 1n, digest })), "at another version").to.deep.equal(conflict);
    expect((await refusal(storage.backfillRecordDigest({ accessToken: read.accessToken, version: 2n, digest: "short" }))).code).to.equal(Code.InvalidArgument);
    const backfilled = await storage.backfillRecordDigest({ accessToken: read.accessToken, version: 2n, digest });
    expect(await receiptClaims(backfilled.receipt)).to.deep.include({ op: "read", kind: "wallet", hash, digest, version: 2, ajti: read.jti });
    expect(await refusal(storage.backfillRecordDigest({ accessToken: read.accessToken, version: 2n, digest: sha256("another") })), "once").to.deep.equal(conflict);
    expect((await store.read(hash, "wallet")).digest).to.equal(digest);
    // Honest twin: the row now reads with its receipt; and a row that always had a digest never takes another.
    expect((await receiptClaims((await storage.readRecord({ accessToken: read.accessToken })).receipt)).digest).to.equal(digest);
    const kept = newHash();
    await store.create({ hash: kept, kind: "wallet", digest: sha256("as written"), ...sealed() });
    const keptRead = await grant("read", "wallet", kept);
    expect((await refusal(storage.backfillRecordDigest({ accessToken: keptRead.accessToken, version: 1n, digest }))).code).to.equal(Code.Aborted);
    // A backfill wants a read token like any read.
    expect((await refusal(storage.backfillRecordDigest({ accessToken: (await grant("update", "wallet", hash)).accessToken, version: 2n, digest }))).code).to.equal(Code.PermissionDenied);
  });

  it("the key-maintenance calls never return a ciphertext, by their messages' shape and in what they answer; honest twin: a read with a token does", async function () {
    // No message any of them answers with (to any depth) has a field that could hold one.
    const bytesFields = (message: DescMessage, seen = new Set<string>()): string[] => {
      if (seen.has(message.typeName)) return [];
      seen.add(message.typeName);
      return message.fields.flatMap((f) =>
        f.message ? bytesFields(f.message, seen) : f.scalar === ScalarType.BYTES ? [`${message.typeName}.${f.name}`] : []);
    };
    const answers = [...KeyMaintenanceService.methods, ...KeyWrappingAdminService.methods].flatMap((m) => bytesFields(m.output));
    expect(answers).to.deep.equal(["hello.storage.v1.RecordKey.wrapped_key"]);

    const keyId = `k-${randomBytes(4).toString("hex")}`;
    const rows = await Promise.all(Array.from({ length: 5 }, async () => {
      const row = { hash: newHash(), kind: "release" as const, digest: sha256("r"), keyId, wrappedKey: randomBytes(60), ciphertext: randomBytes(1024) };
      await store.create(row);
      return row;
    }));
    const said: Uint8Array[] = [];
    let pageToken = "";
    do {
      const page = await maintenance.listRecordKeys({ keyId, pageSize: 2, pageToken });
      said.push(toBinary(KeyMaintenanceService.method.listRecordKeys.output, page));
      pageToken = page.nextPageToken;
    } while (pageToken);
    said.push(toBinary(KeyMaintenanceService.method.countRecordKeys.output, await maintenance.countRecordKeys({})));
    said.push(toBinary(KeyWrappingAdminService.method.getKeyUsage.output, await admin.getKeyUsage({})));
    const [row] = rows;
    said.push(toBinary(KeyMaintenanceService.method.rewrapRecordKey.output, await maintenance.rewrapRecordKey({
      hash: row!.hash, kind: RecordKind.RELEASE, version: 1n, keyId, wrappedKey: row!.wrappedKey, newKeyId: `${keyId}-next`, newWrappedKey: randomBytes(60),
    })));
    const all = Buffer.concat(said);
    for (const { hash, ciphertext } of rows) {
      expect(all.includes(Buffer.from(hash)), "the listing names every row").to.equal(true);
      for (let i = 0; i + 16 <= ciphertext.length; i += 16) expect(all.includes(ciphertext.subarray(i, i + 16))).to.equal(false);
    }
    // Both counts are the same answer, whoever asks.
    expect((await maintenance.countRecordKeys({})).keys).to.deep.equal((await admin.getKeyUsage({})).keys);
    // Honest twin: with Token's read token, the same row's ciphertext comes back whole.
    const read = await storage.readRecord({ accessToken: (await grant("read", "release", row!.hash)).accessToken });
    expect(Buffer.from((read.result.value as { ciphertext: Uint8Array }).ciphertext).equals(row!.ciphertext)).to.equal(true);
  });

  it("serves, for health and reflection, exactly the services it routes", function () {
    expect(STORAGE_SERVICES.map((s) => s.typeName)).to.deep.equal([
      "hello.storage.v1.StorageService", "hello.storage.v1.KeyMaintenanceService", "hello.storage.v1.KeyWrappingAdminService",
    ]);
  });

  it("each StorageError is its code on the wire (storageErrors), from a real call, with words that name no row", async function () {
    const hash = newHash();
    const taken = newHash();
    await store.create({ hash: taken, kind: "release", digest: sha256("r"), ...sealed() });
    // A store closed under Storage (its database gone): the same statements, refused.
    const closed = sqlRecordStore({ query: sql, transaction: async () => expect.fail("no transaction on a closed store"), close: async () => {} });
    await closed.close();
    const dead = createClient(StorageService, inMemory(storageRoutes({ store: closed, tokenKeys: () => tokenKeys, errorKey: signing.error, receiptKey: signing.receipt, now: () => NOW }), storageErrors));
    const reused = await grant("delete", "release", taken);
    await storage.deleteRecord({ accessToken: reused.accessToken });
    await store.create({ hash: taken, kind: "release", digest: sha256("r"), ...sealed() });
    // Keyed by StorageErrorCode, so a code added to the store's errors fails to compile here.
    const cases: Record<StorageErrorCode, { error: StorageError; wire: Code; call: () => Promise<unknown> }> = {
      not_found: { error: new NotFoundError("m"), wire: Code.NotFound,
        call: async () => storage.deleteRecord({ accessToken: (await grant("delete", "release", hash)).accessToken }) },
      already_exists: { error: new AlreadyExistsError("m"), wire: Code.AlreadyExists,
        call: async () => storage.createRecord({ accessToken: (await writeGrant("create", "release", taken, "r")).accessToken, ...sealed() }) },
      version_conflict: { error: new VersionConflictError("m"), wire: Code.Aborted,
        call: async () => storage.updateRecord({ accessToken: (await writeGrant("update", "release", taken, "r")).accessToken, expectedVersion: 7n, ...sealed() }) },
      token_reused: { error: new TokenReusedError("m"), wire: Code.PermissionDenied,
        call: () => storage.deleteRecord({ accessToken: reused.accessToken }) },
      invalid_argument: { error: new InvalidArgumentError("m"), wire: Code.InvalidArgument,
        call: async () => storage.createRecord({ accessToken: (await writeGrant("create", "release", hash, "r")).accessToken, ...sealed(), keyId: "" }) },
      unavailable: { error: new UnavailableError("m"), wire: Code.Unavailable,
        call: async () => dead.readRecord({ accessToken: (await grant("read", "release", hash)).accessToken }) },
    };
    for (const [name, { error, wire, call }] of Object.entries(cases)) {
      expect(error.code).to.equal(name);
      const mapped = storageErrors(error)!;
      expect([mapped.code, mapped.rawMessage], name).to.deep.equal([wire, "m"]);
      const { code, message } = await refusal(call());
      expect(code, name).to.equal(wire);
      expect(message, name).to.not.include(hash).and.not.include(taken);
    }
    // Anything that is not Storage's own is left to the mesh (INTERNAL, no words of its own).
    expect(storageErrors(new Error("a driver's words"))).to.equal(undefined);
    // Honest twin: the row all of that was about is as the one create left it.
    expect((await store.read(taken, "release")).version).to.equal(1);
  });
});
