// Issue 5 acceptance for Encryption's keyring (docs/keyring-rotation.md): the four
// components as processes on PostgreSQL, a real upstream OP, and a continuous stream of
// logins (three loops: returning users, returning users at a new app, brand-new users)
// while the custodians run the real `hello keyring` commands: rotate, re-wrap to
// completion, drop the old key, and (Storage's custodian) forget the undo copies. No
// login may fail; records written before the rotation still read (returning users get
// the same `sub`); nothing stays under the old key; only each custodian's operator
// reaches its own keyring administration.

import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import pg from "pg";
import type { Component } from "../../internal/protocol/identity.js";
import { createMeshTransport } from "../../mesh/client.js";
import type { DevUser } from "../../internal/dev/devop/dev-op.js";
import { KeyringAdminService } from "../../internal/gen/hello/encryption/v1/keyring_admin_service_pb.js";
import { KeyWrappingAdminService } from "../../internal/gen/hello/storage/v1/key_wrapping_admin_service_pb.js";
import { KeyMaintenanceService } from "../../internal/gen/hello/storage/v1/key_maintenance_service_pb.js";
import { pkiPaths } from "../../internal/ops/pki/layout.js";
import { subjectHash } from "../../internal/protocol/lookup-key.js";
import { type ProtocolMesh, startProtocolMesh } from "../support/protocol-mesh.js";
import { refusedWith } from "../support/refusal.js";

const execFileAsync = promisify(execFile);
const BIN = path.resolve(import.meta.dirname, "../../cmd/hello/bin.js");

const USERS: DevUser[] = Array.from({ length: 24 }, (_, i) => {
  const name = `user${String(i).padStart(2, "0")}`;
  return { sub: `${name}-sub`, email: `${name}@example.com`, email_verified: true, name: `User ${i}`, password: name };
});
const RETURNING = USERS.slice(0, 12);
const NEWCOMERS = USERS.slice(12);

describe("Encryption's keyring rotates without downtime (issue 5), on PostgreSQL", function () {
  this.timeout(300_000);
  let mesh: ProtocolMesh;
  let db: pg.Client;
  /** sub seen by each user at each app: a later login must see the same. */
  const subs = new Map<string, string>();
  const failures: string[] = [];
  let logins = 0;
  let stopping = false;
  let newcomersAllowed = 0;
  const newcomers = [...NEWCOMERS];

  async function hello(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await execFileAsync(process.execPath, [BIN, "keyring", ...args], { timeout: 120_000 });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
    }
  }
  const encryptionConfig = () => mesh.deployment.configFiles.encryption;
  const storageConfig = () => mesh.deployment.configFiles.storage;

  /** A client of `service` on `server`, presenting `as`'s certificate (a component's, or an operator's). */
  function client<S extends DescService>(service: S, server: Component, as: { component: Component; operator: boolean }) {
    const p = pkiPaths(mesh.deployment.certs, as.component);
    const { host, port } = mesh.deployment.configs[server].listen;
    return createClient(
      service,
      createMeshTransport({
        target: server,
        baseUrl: `https://${host}:${port}`,
        credentials: {
          certPem: readFileSync(as.operator ? p.operatorCert : p.cert, "utf8"),
          keyPem: readFileSync(as.operator ? p.operatorKey : p.key, "utf8"),
        },
        trust: mesh.trust,
      }),
    );
  }
  const keyringAdmin = () => client(KeyringAdminService, "encryption", { component: "encryption", operator: true });

  async function login(user: DevUser, app: "a" | "b", phase: string): Promise<void> {
    try {
      const outcome = await mesh.login(user, app);
      const key = `${user.sub} at ${app}`;
      const sub = outcome.claims.sub as string;
      const before = subs.get(key);
      if (before === undefined) subs.set(key, sub);
      else if (before !== sub) failures.push(`${phase}: ${key} got another sub`);
      if (outcome.claims.email !== user.email) failures.push(`${phase}: ${key} got another email`);
    } catch (error) {
      const e = ConnectError.from(error);
      failures.push(`${phase}: ${user.sub} at ${app}: ${Code[e.code]}: ${e.rawMessage}`);
    }
    logins++;
  }

  let phase = "before the rotation";
  async function loginLoop(index: number): Promise<void> {
    for (let n = 0; !stopping; n++) {
      if (newcomersAllowed > 0 && newcomers.length > 0 && n % 3 === 0) {
        newcomersAllowed--;
        await login(newcomers.shift()!, "a", phase); // a new user: subject, wallet and release created
      } else {
        // A returning user, at app a or (a first time, then again) at app b. Each loop has
        // its own users: two loops consenting for one user at one app at the same moment
        // is a lost create race (the front door's "try again" page), not a rotation failure.
        const mine = RETURNING.filter((_, k) => k % 3 === index);
        await login(mine[n % mine.length]!, n % 2 === 0 ? "a" : "b", phase);
      }
    }
  }
  async function untilLogins(count: number): Promise<void> {
    const target = logins + count;
    while (logins < target) await new Promise((r) => setTimeout(r, 50));
  }
  async function keyIdsInDatabase(): Promise<Record<string, number>> {
    const { rows } = await db.query<{ key_id: string; n: string }>("SELECT key_id, count(*) AS n FROM records GROUP BY key_id");
    return Object.fromEntries(rows.map((r) => [r.key_id, Number(r.n)]));
  }

  before(async function () {
    mesh = await startProtocolMesh({ database: "postgres", users: USERS });
    db = new pg.Client({ connectionString: mesh.postgres!.url });
    await db.connect();
  });
  after(async function () {
    stopping = true;
    await db?.end();
    await mesh?.close();
  });

  it("rotates, re-wraps and drops the old key during continuous logins: no login fails, and every record written before still reads", async function () {
    // Records written before the rotation: twelve users at app a.
    await Promise.all([0, 1, 2].map(async (lane) => {
      for (const user of RETURNING.filter((_, i) => i % 3 === lane)) await login(user, "a", phase);
    }));
    expect(failures).to.deep.equal([]);
    const before = (await keyringAdmin().getKeyringStatus({})).status!;
    const oldKey = before.currentKeyId;
    expect(await keyIdsInDatabase()).to.deep.equal({ [oldKey]: 48 }); // 12 × (subject, wallet, release, reservation)

    const loops = [0, 1, 2].map((i) => loginLoop(i));
    try {
      newcomersAllowed = 3;
      await untilLogins(6);

      // 1. Rotate: the running Encryption loads the new key without a restart.
      phase = "during the rotation";
      const rotated = await hello("rotate", "--config", encryptionConfig());
      expect(rotated.stderr).to.equal("");
      expect(rotated.code, rotated.stdout).to.equal(0);
      const newKey = (await keyringAdmin().getKeyringStatus({})).status!.currentKeyId;
      expect(newKey).to.not.equal(oldKey);
      expect(rotated.stdout).to.include(`rotated: ${newKey} is the current key`).and.include(`wraps new records under ${newKey}`);
      phase = "after the rotation";
      newcomersAllowed += 3;
      await untilLogins(9);
      const mixed = await keyIdsInDatabase();
      expect(mixed[newKey], "new writes use the new key").to.be.above(0);

      // 2. The old key cannot go while records depend on it (honest refusal).
      const early = await hello("drop", oldKey, "--config", encryptionConfig());
      expect(early.code).to.equal(1);
      expect(early.stderr).to.match(new RegExp(`refusing to drop ${oldKey}: \\d+ records depend on it`));
      expect(early.stdout).to.equal("");

      // 3. Re-wrap to completion, with logins running.
      phase = "during the re-wrap";
      newcomersAllowed += 3;
      const rewrapped = await hello("rewrap", "--config", encryptionConfig(), "--concurrency", "2");
      expect(rewrapped.code, `${rewrapped.stdout}\n${rewrapped.stderr}`).to.equal(0);
      expect(rewrapped.stdout).to.include(`done: every record the job can move is under ${newKey}`);
      const progress = (await keyringAdmin().getKeyringStatus({})).status!;
      const old = progress.keys.find((k) => k.keyId === oldKey)!;
      expect(old).to.include({ held: true, records: 0n, legacyRecords: 0n });
      expect(Number(old.previousWrappings), "Storage keeps undo copies under the old key").to.be.above(0);
      const moved = progress.job!.progress.find((p) => p.keyId === oldKey)!;
      expect(Number(moved.moved)).to.be.above(0);
      expect(moved.failed).to.equal(0n);
      expect(await keyIdsInDatabase()).to.not.have.property(oldKey);

      // 4. Drop the old key: the running Encryption lets go of it.
      phase = "after the re-wrap";
      const dropped = await hello("drop", oldKey, "--config", encryptionConfig());
      expect(dropped.code, dropped.stderr).to.equal(0);
      expect(dropped.stdout).to.include(`dropped ${oldKey}`).and.include(`no longer holds ${oldKey}`);
      expect((await keyringAdmin().getKeyringStatus({})).status!.keyIds).to.deep.equal([newKey]);
      phase = "after the old key was dropped";
      newcomersAllowed += 3;
      await untilLogins(9);
    } finally {
      stopping = true;
      await Promise.all(loops);
    }
    expect(failures, "logins that failed").to.deep.equal([]);
    expect(logins).to.be.at.least(12 + 6 + 9 + 9);
    expect(newcomers.length, "brand-new users logged in before, during and after").to.be.below(NEWCOMERS.length - 6);

    // Everyone, before and after, logs in again with the old key gone: same sub at every app.
    phase = "everyone again";
    const seen = [...subs.keys()];
    for (const key of seen) {
      const [sub, , app] = key.split(" ");
      await login(USERS.find((u) => u.sub === sub)!, app as "a" | "b", phase);
    }
    expect(failures).to.deep.equal([]);
    expect(seen.length).to.be.at.least(12 + 6);
    expect(Object.keys(await keyIdsInDatabase())).to.have.length(1);

    // Storage's custodian forgets the undo copies once the re-wrap has proven good.
    const usage = await hello("storage", "usage", "--config", storageConfig());
    expect(usage.code, usage.stderr).to.equal(0);
    expect(usage.stdout).to.match(new RegExp(`${oldKey}: 0 records \\(0 legacy\\), [1-9]\\d* undo copies`));
    const forgotten = await hello("storage", "forget", oldKey, "--config", storageConfig());
    expect(forgotten.code, forgotten.stderr).to.equal(0);
    expect(forgotten.stdout).to.match(new RegExp(`discarded [1-9]\\d* undo copies wrapped under ${oldKey}`));
    const { rows } = await db.query<{ n: string }>("SELECT count(*) AS n FROM records WHERE previous_key_id IS NOT NULL OR previous_wrapped_key IS NOT NULL");
    expect(Number(rows[0]!.n)).to.equal(0);
    await login(RETURNING[0]!, "a", phase);
    expect(failures).to.deep.equal([]);
  });

  it("only each custodian's own operator reaches its keyring administration; Storage's key maintenance only Encryption", async function () {
    const refusals: Array<[string, () => Promise<unknown>]> = [
      ["Orchestration calling Encryption's keyring admin", () => client(KeyringAdminService, "encryption", { component: "orchestration", operator: false }).getKeyringStatus({})],
      ["Encryption's component certificate calling its own keyring admin", () => client(KeyringAdminService, "encryption", { component: "encryption", operator: false }).runRewrap({})],
      ["Storage's operator calling Encryption's keyring admin", () => client(KeyringAdminService, "encryption", { component: "storage", operator: true }).runRewrap({})],
      ["Encryption calling Storage's key-wrapping admin", () => client(KeyWrappingAdminService, "storage", { component: "encryption", operator: false }).restorePreviousWrappings({ keyId: "k" })],
      ["Encryption's operator calling Storage's key-wrapping admin", () => client(KeyWrappingAdminService, "storage", { component: "encryption", operator: true }).forgetPreviousWrappings({ keyId: "k" })],
      ["Orchestration listing Storage's wrapped keys", () => client(KeyMaintenanceService, "storage", { component: "orchestration", operator: false }).listRecordKeys({ keyId: "k" })],
      ["Token counting Storage's wrapped keys", () => client(KeyMaintenanceService, "storage", { component: "token", operator: false }).countRecordKeys({})],
      ["Storage's operator listing wrapped keys", () => client(KeyMaintenanceService, "storage", { component: "storage", operator: true }).listRecordKeys({ keyId: "k" })],
      ["Encryption's operator counting Storage's wrapped keys", () => client(KeyMaintenanceService, "storage", { component: "encryption", operator: true }).countRecordKeys({})],
    ];
    for (const [what, call] of refusals) {
      const error = await refusedWith(call(), what);
      expect(error.code, `${what}: ${error.rawMessage}`).to.equal(Code.PermissionDenied);
    }
    // Honest twins.
    expect((await keyringAdmin().getKeyringStatus({})).status!.usageError).to.equal("");
    expect((await client(KeyWrappingAdminService, "storage", { component: "storage", operator: true }).getKeyUsage({})).keys).to.have.length(1);
    expect((await client(KeyMaintenanceService, "storage", { component: "encryption", operator: false }).countRecordKeys({})).keys).to.have.length(1);
  });

  it("Storage moving a whole row (ciphertext, key id and wrapped key) to another user's storage key gets DATA_LOSS, never the other user (honest twin: restored, both log in)", async function () {
    const [u0, u1] = [RETURNING[0]!, RETURNING[1]!];
    const hashes = [u0, u1].map((u) => subjectHash(mesh.lookupKey, mesh.devOp.issuer, u.sub));
    const rowOf = async (hash: string) =>
      (await db.query<{ key_id: string; wrapped_key: Buffer; ciphertext: Buffer }>("SELECT key_id, wrapped_key, ciphertext FROM records WHERE hash = $1", [hash])).rows[0]!;
    const put = (hash: string, r: { key_id: string; wrapped_key: Buffer; ciphertext: Buffer }) =>
      db.query("UPDATE records SET key_id = $2, wrapped_key = $3, ciphertext = $4 WHERE hash = $1", [hash, r.key_id, r.wrapped_key, r.ciphertext]);
    const [r0, r1] = [await rowOf(hashes[0]!), await rowOf(hashes[1]!)];
    expect(r0.wrapped_key).to.have.length(60);
    const attempts: Array<[string, () => Promise<unknown>]> = [
      ["the whole rows swapped", async () => { await put(hashes[0]!, r1); await put(hashes[1]!, r0); }],
      ["only the wrapped keys swapped", async () => { await put(hashes[0]!, { ...r0, wrapped_key: r1.wrapped_key }); await put(hashes[1]!, { ...r1, wrapped_key: r0.wrapped_key }); }],
    ];
    try {
      for (const [what, attack] of attempts) {
        await attack();
        for (const user of [u0, u1]) {
          const error = await refusedWith(mesh.login(user, "a"), `${what}: ${user.sub}'s login`);
          expect(error.code, what).to.equal(Code.DataLoss);
          expect(error.rawMessage, what).to.equal("the stored record key does not authenticate under its key and storage key");
        }
      }
    } finally {
      await put(hashes[0]!, r0);
      await put(hashes[1]!, r1);
    }
    for (const user of [u0, u1]) await login(user, "a", "after the rows were restored");
    expect(failures).to.deep.equal([]);
  });

  it("the CLI says what is wrong: the current key cannot be dropped, an unknown key is not there, a missing --config is a usage error", async function () {
    const { currentKeyId } = (await keyringAdmin().getKeyringStatus({})).status!;
    const current = await hello("drop", currentKeyId, "--config", encryptionConfig());
    expect(current).to.include({ code: 1, stdout: "" });
    expect(current.stderr).to.include(`${currentKeyId} is the current key; rotate first`);
    const unknown = await hello("drop", "k-nope", "--config", encryptionConfig());
    expect(unknown.code).to.equal(1);
    expect(unknown.stderr).to.include("holds no key k-nope");
    const usage = await hello("status");
    expect(usage.code).to.equal(2);
    expect(usage.stderr).to.include("--config <file>").and.include("usage: hello keyring");
    const status = await hello("status", "--config", encryptionConfig());
    expect(status.code, status.stderr).to.equal(0);
    expect(status.stdout).to.include(`keyring: current ${currentKeyId}; holds ${currentKeyId}`).and.include("re-wrap job: succeeded");
  });
});
