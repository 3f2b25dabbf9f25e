// Issue 15: the credential wallet's background work under faults, through the four
// processes on PostgreSQL with the development issuer (docs/faults.md):
// - the issuer down while a deleted wallet's UNLINK is due: queued, delivered once it is
//   back, nothing lost;
// - Orchestration killed while it polls a PENDING verification whose notification was
//   lost: restarted, it takes the poll up again from its store (PostgreSQL, as replicas
//   have it) and records the decision before the user's client asks;
// - Storage killed in the middle of a device transfer (the new credentials issued, the
//   old ones not yet unlinked): restarted, the transfer is finished by a resume, and the
//   end state is whole: the old instances unlinked at the issuer and in the records, the
//   new ones active.

import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import pg from "pg";
import type { OrchestrationConfig } from "../../internal/config/component-config.js";
import type { DevUser } from "../../internal/dev/devop/dev-op.js";
import { s2sSessionHash } from "../../internal/protocol/lookup-key.js";
import { type HttpFetch, WalletApi } from "../../internal/wallet/api-client.js";
import { KeyStore } from "../../internal/wallet/key-store.js";
import { login } from "../../internal/wallet/login.js";
import { addCredentials, listCredentials, resumeCredentials, transferCredentials } from "../../internal/wallet/wallet-client.js";
import { Browserless } from "../support/browserless.js";
import { browseToAccount } from "../support/protocol-mesh.js";
import { ADA, ALAN } from "../support/s2s-fixtures.js";
import { browserlessWalletStep } from "../support/wallet-browser.js";
import type { FaultRig } from "./fault-rig.js";
import { sharedFaultRig } from "./scenario.js";

const noWait = async () => {};
/** How often Orchestration looks at its work queue here (docs/wallet-server.md, "Background work"). */
const WORK_INTERVAL_MS = 200;

describe("faults: the credential wallet's background work (issue 15, docs/faults.md)", function () {
  this.timeout(180_000);
  let rig: FaultRig;
  const dirs: string[] = [];
  sharedFaultRig(
    {
      database: "postgres",
      users: 8,
      credentialWallet: true,
      // Orchestration's queue in PostgreSQL (a database of its own), so that it outlives the process.
      async prepare(deployment) {
        const storage = deployment.configs.storage as { database: { url: string } };
        const admin = new pg.Client({ connectionString: storage.database.url });
        await admin.connect();
        try {
          await admin.query("CREATE DATABASE orchestration_state");
        } finally {
          await admin.end();
        }
        const url = new URL(storage.database.url);
        url.pathname = "/orchestration_state";
        const file = deployment.configFiles.orchestration;
        const config = JSON.parse(await readFile(file, "utf8")) as OrchestrationConfig;
        const changed = { ...config, state: { url: url.href }, wallet: { ...config.wallet!, work_interval_ms: WORK_INTERVAL_MS } };
        await writeFile(file, `${JSON.stringify(changed, null, 2)}\n`);
        Object.assign(deployment.configs.orchestration, changed);
      },
    },
    (started) => (rig = started),
  );
  after(async () => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

  const issuer = () => rig.mesh.devIssuer!;
  const issuerId = () => issuer().metadata.issuer;

  async function signedIn(user: DevUser, fetch?: HttpFetch) {
    const dir = await mkdtemp(path.join(os.tmpdir(), "hello-wallet-fault-"));
    dirs.push(dir);
    const store = await KeyStore.open(path.join(dir, "wallet"));
    await login({ server: rig.mesh.issuer, store, openUrl: browserlessWalletStep(user), allowInsecureHttp: true });
    return { store, api: await WalletApi.fromStore(store, fetch ? { fetch } : {}) };
  }

  /** Waits for the background work (a timer in the Orchestration process) to have done `what`. */
  async function until(done: () => Promise<boolean> | boolean, what: string, withinMs = 60_000): Promise<void> {
    const end = Date.now() + withinMs;
    while (!(await done())) {
      if (Date.now() > end) expect.fail(`not within ${withinMs} ms: ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async function records<T>(query: (db: pg.Client) => Promise<T>): Promise<T> {
    const db = new pg.Client({ connectionString: (rig.mesh.deployment.configs.storage as { database: { url: string } }).database.url });
    await db.connect();
    try {
      return await query(db);
    } finally {
      await db.end();
    }
  }

  it("the issuer down while a deleted wallet's UNLINK is due: the delete goes on, the UNLINK is queued, and the issuer gets it once it is back", async function () {
    const [user] = rig.takeUsers(1);
    const wallet = await signedIn(user!);
    const added = await addCredentials(wallet.api, wallet.store, { issuer: issuerId(), configurations: ["identity_card"], person: ADA, sleep: noWait });
    if (added.state !== "ISSUED") expect.fail(`not issued: ${added.state}`);
    const id = added.instances[0]!.id;
    expect(issuer().instanceStatus(added.sessionId, id).status).to.equal("ACTIVE");

    const outage = await issuer().outage();
    try {
      const browser = new Browserless();
      const { page } = await browseToAccount(rig.mesh.issuer, user!, browser);
      let done = await browser.submit(browser.form(page, /^\/account\/delete$/), [["provider", "dev"]]);
      done = await browser.submit(browser.form(done, /\/login$/), [["email", user!.email], ["password", user!.password]]);
      expect(done.body).to.include("Your wallet is deleted");
      expect(issuer().instanceStatus(added.sessionId, id).status, "the issuer is down: not told yet").to.equal("ACTIVE");
    } finally {
      await outage.end();
    }
    await until(() => issuer().instanceStatus(added.sessionId, id).status === "UNLINKED", "the queued UNLINK reached the issuer");
    expect(issuer().instanceStatus(added.sessionId, id).reason).to.match(/wallet server's own UNLINK/);
  });

  it("Orchestration killed while it polls a verification whose notification was lost: restarted, it takes the poll up from its store and records the decision before the client asks", async function () {
    const [user] = rig.takeUsers(1);
    const wallet = await signedIn(user!);
    const pending = await addCredentials(wallet.api, wallet.store, { issuer: issuerId(), configurations: ["identity_card"], person: ALAN, wait: false, sleep: noWait });
    if (pending.state !== "PENDING") expect.fail(`not pending: ${pending.state}`);
    const at = s2sSessionHash(rig.mesh.lookupKey, issuerId(), pending.sessionId);
    const version = () => records(async (db) => Number((await db.query<{ version: string }>("SELECT version FROM records WHERE hash = $1", [at])).rows[0]!.version));
    const before = await version();

    await rig.kill("orchestration", "SIGKILL");
    // The issuer decides while no wallet server listens: its notification is lost.
    await issuer().decide(pending.sessionId, pending.verificationId, "APPROVED");
    expect(issuer().notices.filter((n) => n.sessionId === pending.sessionId).at(-1)).to.deep.include({ delivered: false });
    expect(await version(), "nothing recorded while Orchestration is down").to.equal(before);
    const asked = issuer().statusAsked;
    await rig.restart("orchestration");
    await until(async () => (await version()) > before, "the restarted Orchestration's poll recorded the decision");
    expect(issuer().statusAsked).to.be.greaterThan(asked);
    const done = await resumeCredentials(wallet.api, wallet.store, pending.sessionId, { sleep: noWait });
    expect(done.state).to.equal("ISSUED");
  });

  it("Storage killed in the middle of a device transfer: restarted, a resume finishes it, and the end state is whole", async function () {
    const [user] = rig.takeUsers(1);
    const first = await signedIn(user!);
    const before = await addCredentials(first.api, first.store, { issuer: issuerId(), configurations: ["identity_card", "driving_licence"], person: ADA, sleep: noWait });
    if (before.state !== "ISSUED") expect.fail(`not issued: ${before.state}`);

    // The second device's client: Storage is killed just as it asks for the first unlink,
    // once the new credentials are on the device.
    let cut = false;
    const cutting: HttpFetch = async (url, init) => {
      if (!cut && new URL(String(url)).pathname === "/wallet/api/credential/manage") {
        cut = true;
        await rig.kill("storage", "SIGKILL");
      }
      return fetch(url, { redirect: "manual", ...init } as RequestInit);
    };
    const second = await signedIn(user!, cutting);
    const interrupted = await transferCredentials(second.api, second.store, before.sessionId, { sleep: noWait }).then(
      () => expect.fail("the transfer went through with Storage down"),
      (error: unknown) => error as Error,
    );
    expect(interrupted.message).to.not.match(/Lovelace|1990-12-10/);
    expect(cut).to.equal(true);
    // Meanwhile nothing is half done at the issuer: the old instances are still live.
    for (const i of before.instances) expect(issuer().instanceStatus(before.sessionId, i.id).status).to.equal("ACTIVE");

    await rig.restart("storage");
    const [newSession] = (await second.store.listData("session.")).map((name) => name.slice("session.".length));
    const finished = await resumeCredentials(second.api, second.store, newSession!, { sleep: noWait });
    expect(finished.state).to.equal("ISSUED");
    expect(finished.unlinked?.map((u) => u.status)).to.deep.equal(["UNLINKED", "UNLINKED"]);
    for (const i of before.instances) expect(issuer().instanceStatus(before.sessionId, i.id)).to.deep.equal({ status: "UNLINKED", reason: "transferred to another device" });
    const listed = await listCredentials(second.api, second.store);
    expect(listed.filter((c) => c.sessionId === before.sessionId).map((c) => c.status)).to.deep.equal(["UNLINKED", "UNLINKED"]);
    expect(listed.filter((c) => c.sessionId === newSession).map((c) => [c.status, c.onThisDevice])).to.deep.equal([["ACTIVE", true], ["ACTIVE", true]]);
    // One transfer session, not two.
    expect(new Set(listed.map((c) => c.sessionId)).size).to.equal(2);
  });
});
