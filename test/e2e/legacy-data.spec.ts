// Data made before issue 11 keeps working (item 14). A database in the previous format
// — Storage's format 2 (no digest column, millisecond timestamps, three kinds), records
// sealed without padding, releases that predate directed-id reservations — is written
// here the way the previous code wrote it, with the deployment's own keys; then the four
// components start on it. Its users log in with the sub they always had; Storage has
// migrated the rows (timestamps to the day), learned each read row's digest from
// Encryption, and every directed id in use is now reserved. A release the previous
// protocol let a rogue Token make with another user's directed id cannot be used by
// both: the first login reserves the id, and the other is refused.

import { createCipheriv, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { expect } from "chai";
import { PGlite } from "@electric-sql/pglite";
import { APPS, type ProtocolMesh, USERS, startProtocolMesh } from "../support/protocol-mesh.js";
import { loginAtFrontDoor } from "../support/app-client.js";
import { DEFAULT_DEV_USERS, type DevUser } from "../../internal/dev/devop/dev-op.js";
import type { DevDeployment } from "../../internal/dev/dev-deployment.js";
import { FORMAT_2_SQL } from "../../internal/components/storage/backend/conformance.js";
import { SCHEMA_VERSION } from "../../internal/components/storage/backend/schema.js";
import type { RecordKindName } from "../../internal/protocol/records.js";
import { TOKEN_KEYS, loadLookupKey, loadSigningKeys } from "../../internal/protocol/key-files.js";
import { additionalData, wrappingData } from "../../internal/protocol/keyring.js";
import { sign } from "../../internal/protocol/jws.js";
import { releaseHash, reservationHash, subjectHash, walletHash } from "../../internal/protocol/lookup-key.js";
import { activeKey } from "../../internal/protocol/signing-keys.js";
import { RECORD_TYPES, type RecordClaims } from "../../internal/protocol/tokens.js";
import { walletClaimsOf } from "../../internal/protocol/claims.js";

const MALLORY: DevUser = { sub: "mallory-0004", email: "mallory@example.org", email_verified: true, name: "Mallory Example", password: "mallory" };

/** AES-256-GCM as the previous Encryption sealed: nonce || ciphertext || tag. */
function gcm(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  const nonce = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, nonce).setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]);
}

describe("data made by the previous format keeps working (issue 11, item 14)", function () {
  this.timeout(180_000);
  let mesh: ProtocolMesh;
  let dataDir: string;
  /** The directed ids the previous code gave, by user. */
  const directed = { alice: "legacy-alice-directed-0001", bob: "legacy-bob-directed-0002" };

  /** Writes the previous format's database under Storage's data directory. */
  async function writeLegacyDatabase(deployment: DevDeployment, issuer: string) {
    const storage = deployment.configs.storage;
    if (storage.component !== "storage" || !storage.database.dataDir) throw new Error("the legacy test runs on PGlite");
    dataDir = storage.database.dataDir;
    const token = deployment.configs.token;
    if (token.component !== "token") throw new Error("no token configuration");
    const recordKey = activeKey(loadSigningKeys("token", token.keys.signing, TOKEN_KEYS), "record");
    const lookupKey = loadLookupKey("token", token.keys.lookup);
    const encryption = deployment.configs.encryption;
    if (encryption.component !== "encryption") throw new Error("no encryption configuration");
    const keyring = JSON.parse(readFileSync(encryption.keys.keyring, "utf8")) as { current: string; keys: Record<string, string> };
    const kek = Buffer.from(keyring.keys[keyring.current]!, "base64url");

    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const db = await PGlite.create(dataDir);
    await db.exec(FORMAT_2_SQL);
    let row = 0;
    /** One record as the previous code wrote it: envelope encryption, no padding, millisecond timestamps. */
    async function insert<K extends RecordKindName>(kind: K, hash: string, claims: RecordClaims[K]) {
      const record = await sign(RECORD_TYPES[kind], recordKey, { ...claims });
      const dataKey = randomBytes(32);
      const ciphertext = gcm(dataKey, Buffer.from(record, "utf8"), additionalData(kind, hash, 1));
      const wrapped = gcm(kek, dataKey, wrappingData(kind, hash, keyring.current));
      const at = new Date(Date.now() - 86_400_000 * 3 + (row += 1234)).toISOString();
      await db.query(
        `INSERT INTO records (hash, kind, key_id, wrapped_key, ciphertext, version, create_time, update_time)
         VALUES ($1, $2, $3, $4, $5, 1, $6::timestamptz, $6::timestamptz)`,
        [hash, kind, keyring.current, wrapped, ciphertext, at],
      );
    }
    const users: Array<[DevUser, string]> = [[USERS.alice, directed.alice], [USERS.bob, directed.bob], [MALLORY, directed.bob]];
    for (const [user, directedId] of users) {
      const uid = `legacy-uid-${user.sub}`;
      const claims = walletClaimsOf(user as unknown as Record<string, unknown>);
      await insert("wallet", walletHash(lookupKey, uid), { uid, claims, subjects: [{ iss: issuer, sub: user.sub }] });
      await insert("subject", subjectHash(lookupKey, issuer, user.sub), { op_iss: issuer, op_sub: user.sub, uid });
      // Mallory's release at app a carries Bob's directed id: what a rogue Token could make before reservations.
      await insert("release", releaseHash(lookupKey, uid, APPS.a!.client_id), {
        uid, client_id: APPS.a!.client_id, directed_id: directedId, claims: ["email", "name"],
      });
    }
    await db.close();
  }

  before(async function () {
    mesh = await startProtocolMesh({
      database: "pglite",
      users: [...DEFAULT_DEV_USERS, MALLORY],
      prepare: (deployment, devOp) => writeLegacyDatabase(deployment, devOp.issuer),
    });
  });
  after(async () => mesh?.close());

  const login = (user: DevUser) => loginAtFrontDoor(mesh.issuer, "a", user);

  it("a previous user logs in with the sub and claims they always had, without a consent page", async function () {
    const alice = await login(USERS.alice);
    expect(alice.consented, "the release they made before still serves").to.equal(false);
    expect(alice.tokens!.claims()!.sub).to.equal(directed.alice);
    expect(alice.tokens!.claims()!.email).to.equal(USERS.alice.email);
    // and again, now that the id is reserved for her
    expect((await login(USERS.alice)).tokens!.claims()!.sub).to.equal(directed.alice);
  });

  it("a directed id two previous releases share serves only the first user to log in; the other is refused", async function () {
    const bob = await login(USERS.bob);
    expect(bob.tokens!.claims()!.sub).to.equal(directed.bob);
    const mallory = await login(MALLORY);
    expect(mallory.tokens, "Mallory never gets Bob's sub").to.equal(undefined);
    // Data only a past fork could have made: hello-mesh's side to fix, not Mallory's.
    expect(mallory.page.status).to.equal(502);
    expect(mallory.page.body).to.include("Sign-in failed");
    expect((await login(USERS.bob)).tokens!.claims()!.sub).to.equal(directed.bob);
  });

  it("a new user beside them signs up as usual", async function () {
    const carol = await login(USERS.carol);
    expect(carol.consented).to.equal(true);
    expect(carol.tokens!.claims()!.sub).to.not.be.oneOf([directed.alice, directed.bob]);
  });

  it("Storage migrated the rows: format 4 (the latest), timestamps to the day, the digests of the rows read, and reservations for the ids in use", async function () {
    await mesh.processes.stop(); // PGlite is one process's: Storage lets go of it first
    const db = await PGlite.create(dataDir);
    try {
      const version = await db.query<{ version: number }>("SELECT version FROM schema_version");
      expect(version.rows[0]!.version).to.equal(SCHEMA_VERSION);
      const rows = await db.query<{ kind: string; create_time: Date; update_time: Date; digest: string | null; hash: string }>(
        "SELECT kind, create_time, update_time, digest, hash FROM records",
      );
      for (const r of rows.rows) {
        for (const t of [r.create_time, r.update_time]) expect(t.getTime() % 86_400_000, `${r.kind} time of day`).to.equal(0);
      }
      const lookupKey = loadLookupKey("token", mesh.deployment.configs.token.component === "token" ? mesh.deployment.configs.token.keys.lookup : "");
      const reserved = new Set(rows.rows.filter((r) => r.kind === "reservation").map((r) => r.hash));
      expect(reserved.has(reservationHash(lookupKey, APPS.a!.client_id, directed.alice))).to.equal(true);
      expect(reserved.has(reservationHash(lookupKey, APPS.a!.client_id, directed.bob))).to.equal(true);
      const read = [subjectHash(lookupKey, mesh.devOp.issuer, USERS.alice.sub), walletHash(lookupKey, `legacy-uid-${USERS.alice.sub}`)];
      for (const hash of read) expect(rows.rows.find((r) => r.hash === hash)!.digest, "a read legacy row has its digest").to.match(/^[A-Za-z0-9_-]{43}$/);
    } finally {
      await db.close();
    }
  });
});
