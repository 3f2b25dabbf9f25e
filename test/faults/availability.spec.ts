// Issue 16: every part replicated, and losing any one of them loses no acknowledged data
// and needs no operator (docs/availability.md). The records database is a PostgreSQL
// cluster under Patroni (a primary and two standbys, strict synchronous replication,
// three etcd members), and every component runs two processes, each replica with its own
// certificate (Orchestration's behind a load balancer, test/support/load-balancer.ts);
// people keep logging in through the front door while a part is killed. Figures are printed, bounds are generous: the machine is shared.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import pg from "pg";

import { type PatroniCluster, startPatroniCluster } from "../../internal/dev/ha/patroni-cluster.js";
import { STEP_BUDGET_MS } from "../../internal/components/orchestration/login-driver.js";
import { openPostgresStore } from "../../internal/components/storage/backend/postgres-store.js";
import { NotFoundError, UnavailableError } from "../../internal/components/storage/backend/errors.js";
import { randomDigest, randomHash } from "../../internal/components/storage/backend/conformance.js";
import type { RecordStore } from "../../internal/components/storage/backend/record-store.js";
import type { Component } from "../../internal/protocol/identity.js";
import { type Audit, type FaultRig, type LoginAttempt } from "./fault-rig.js";
import { type FaultRun, LOOPS, expectFaultHandled, expectNoHalfMadeUser, expectNoUserDataInLogs, expectUnavailablePage, faultDuringLogins, sharedFaultRig } from "./scenario.js";

/**
 * While the cluster has no writable primary a write waits for one until its deadline:
 * the page comes within a login step's budget, plus a margin for a busy machine.
 */
const FAILOVER_PAGE_MS = STEP_BUDGET_MS + 3_000;
/** A dead replica answers nothing (connection refused): its callers move on at once. */
const REPLICA_DOWN_PAGE_MS = 3_000;
/** From a replica's kill until every new login must succeed: the callers' sessions to it must notice it is gone. */
const REPLICA_GRACE_MS = 2_000;

/** Commits a row on `name`'s server directly: true once it is the primary and a synchronous standby confirms. */
async function writable(cluster: PatroniCluster, name: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new pg.Client({ connectionString: cluster.memberUrl(name), connectionTimeoutMillis: 2_000, query_timeout: 3_000 });
    client.on("error", () => {});
    try {
      await client.connect();
      await client.query("CREATE TABLE IF NOT EXISTS ha_probe (at timestamptz)");
      let unconfirmed = false;
      client.on("notice", (n: { code?: string }) => void (unconfirmed ||= n.code === "01000"));
      await client.query("INSERT INTO ha_probe VALUES (now())");
      if (!unconfirmed) return;
    } catch {
      // Not yet: still a standby, restarting, or no synchronous standby to confirm.
    } finally {
      await client.end().catch(() => {});
    }
    if (Date.now() > deadline) throw new Error(`${name} did not take a confirmed write within ${timeoutMs} ms\n${await cluster.logTails(20)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** No component died of the fault (the killed replica aside); if one did, what it said last. */
function expectAlive(rig: FaultRig, component: Component): void {
  expect(rig.alive(component), `${component} died; its last words:\n${rig.alive(component) ? "" : rig.output(component).slice(-4_000)}`).to.equal(true);
}

/** The counts the issue asks for: records by kind, half-made users (problems), orphaned wallets apart. */
function describeAudit(audit: Audit): string {
  return `${audit.subjects} subject, ${audit.wallets} wallet, ${audit.releases} release records; ` +
    `${audit.problems.length} problems; ${audit.unreachableWallets} orphaned wallets (a creation cut between its wallet and subject writes)`;
}

/** Some who had logged in before the fault log in again: the same `sub` at the same app. */
async function expectSameSubsAgain(rig: FaultRig, run: FaultRun, count = 8): Promise<void> {
  const before = run.attempts.filter((a): a is Extract<LoginAttempt, { ok: true }> => a.ok && a.endedAt < run.faultAt).slice(0, count);
  expect(before.length, "logins that ended before the fault").to.be.greaterThan(0);
  for (let i = 0; i < before.length; i += LOOPS) {
    const again = await Promise.all(before.slice(i, i + LOOPS).map((a) => rig.login(a.user, a.app)));
    for (const [j, r] of again.entries()) {
      expect(r.ok, `${r.user.sub} again at ${r.app}`).to.equal(true);
      if (r.ok) expect(r.sub, `${r.user.sub} at ${r.app}`).to.equal(before[i + j]!.sub);
    }
  }
}

describe("faults: availability — PostgreSQL under Patroni, two of each component (docs/availability.md)", function () {
  let cluster: PatroniCluster;
  let clusterDir: string;
  let rig: FaultRig;

  before(async function () {
    this.timeout(180_000);
    clusterDir = await mkdtemp(path.join(tmpdir(), "hello-ha-"));
    const started = performance.now();
    cluster = await startPatroniCluster({ dir: clusterDir });
    await cluster.waitHealthy();
    // Orchestration's shared state, in a database of its own on the same cluster (in
    // production, a cluster of Orchestration's custodian's own): its replicas follow the
    // primary through a failover too.
    const admin = new pg.Client({ connectionString: cluster.memberUrl((await cluster.leader())!) });
    await admin.connect();
    await admin.query("CREATE DATABASE orchestration_state");
    await admin.end();
    console.log(`      the cluster (3 etcd, 3 PostgreSQL members) served after ${Math.round(performance.now() - started)} ms`);
  });
  sharedFaultRig(
    {
      database: { get url() { return cluster.url; } },
      orchestrationState: { get url() { return cluster.url.replace("/postgres?", "/orchestration_state?"); } },
      users: 1_400,
      replicas: { orchestration: 2, token: 2, encryption: 2, storage: 2 },
    },
    (started) => (rig = started),
  );
  after(async function () {
    this.timeout(60_000);
    await cluster?.stop();
    if (clusterDir) await rm(clusterDir, { recursive: true, force: true });
  });

  it("the PostgreSQL primary lost (its Patroni and server killed): a standby is promoted, logins resume with no operator, every acknowledged user is there with the same sub, and no user is half made", async function () {
    this.timeout(300_000);
    const old = (await cluster.leader())!;
    let promoted = "";
    let writableAfterMs = 0;
    try {
      const run = await faultDuringLogins(rig, {
        warmUp: 12,
        fault: () => cluster.killMember(old),
        // Nobody acts: the fault is over when the cluster has, by itself, a primary whose
        // commits a standby confirms.
        recover: async () => {
          const began = Date.now();
          promoted = await cluster.waitForLeader({ not: old, timeoutMs: 90_000 });
          await writable(cluster, promoted);
          writableAfterMs = Date.now() - began;
        },
        downMs: 0,
        after: 2 * LOOPS,
      });
      const seen = expectFaultHandled(run, FAILOVER_PAGE_MS);
      const resumed = run.attempts.filter((a) => a.ok && a.startedAt >= run.faultAt).sort((x, y) => x.endedAt - y.endedAt)[0];
      const audit = await rig.audit();
      await expectNoHalfMadeUser(rig, run, audit);
      await expectSameSubsAgain(rig, run);
      expectNoUserDataInLogs(rig);
      for (const c of ["orchestration", "token", "encryption", "storage"] as const) expectAlive(rig, c);
      console.log(
        `      primary ${old} killed; ${promoted} promoted and writable ${writableAfterMs} ms later; ` +
          `first login begun after the kill succeeded ${resumed ? resumed.endedAt - run.faultAt : "—"} ms after it; ` +
          `${run.attempts.length} logins, ${seen.inFlight} in flight, ${seen.failures} unavailable pages (slowest ${Math.round(seen.slowestFailureMs)} ms)`,
      );
      console.log(`      records: ${describeAudit(audit)}`);
    } finally {
      // The lost machine comes back, and its member rejoins on its own as a standby
      // (pg_rewind), for the tests after this one, whatever this one found.
      await cluster.startMember(old);
      await cluster.waitHealthy(120_000);
    }
  });

  for (const component of ["orchestration", "token", "encryption", "storage"] as const satisfies readonly Component[]) {
    it(`one replica of ${component} killed (SIGKILL) and started again: its callers move to the other, logins go on, none started after the kill fails`, async function () {
      this.timeout(240_000);
      const replica = rig.replica(component, 2);
      let killedAt = 0;
      const run = await faultDuringLogins(rig, {
        fault: async () => {
          killedAt = Date.now();
          await replica.kill("SIGKILL");
        },
        recover: () => replica.restart(),
        // Long enough for several logins to run on the one replica left.
        downMs: 4_000,
      });
      const thrown = run.attempts.filter((a) => "thrown" in a);
      expect(thrown.map((a) => ("thrown" in a ? a.thrown : "")), "logins that ended in something other than a page").to.deep.equal([]);
      const failures = run.attempts.flatMap((a) => ("failure" in a ? [a] : []));
      for (const f of failures) {
        // A front-door replica killed under a request: the load balancer's own answer, as any balancer's.
        if (component === "orchestration" && f.failure.status === 502) expect(f.failure.body).to.match(/front door's replica failed under this request/);
        else expectUnavailablePage(f.failure, f.user);
        expect(f.failure.ms).to.be.below(REPLICA_DOWN_PAGE_MS);
        expect(f.startedAt, "a login that failed had begun before the kill (a call in flight to the replica)").to.be.below(killedAt + REPLICA_GRACE_MS);
      }
      const during = run.attempts.filter((a) => a.startedAt >= killedAt + REPLICA_GRACE_MS && a.endedAt <= run.recoveredAt);
      expect(during.length, "logins served by the remaining replica alone").to.be.greaterThan(0);
      for (const a of run.attempts.filter((x) => x.startedAt >= killedAt + REPLICA_GRACE_MS)) expect(a.ok, `a login begun ${a.startedAt - killedAt} ms after the kill`).to.equal(true);
      const audit = await rig.audit();
      expect(audit.problems).to.deep.equal([]);
      if (failures.length > 0) await expectNoHalfMadeUser(rig, run, audit);
      for (const c of ["orchestration", "token", "encryption", "storage"] as const) expectAlive(rig, c);
      expect(replica.alive()).to.equal(true);
      expectNoUserDataInLogs(rig);
      console.log(
        `      ${component}-2 killed: ${run.attempts.length} logins, ${during.length} while it was down, ${failures.length} unavailable pages ` +
          `(all begun before the kill); started again and serving after ${run.recoveredAt - killedAt - 4_000} ms`,
      );
      console.log(`      records: ${describeAudit(audit)}`);
    });
  }

  it("an etcd member killed, then started again: the cluster keeps its primary and logins go on without a failure", async function () {
    this.timeout(240_000);
    const leaderBefore = await cluster.leader();
    // The Raft leader, the member whose loss matters most (an election follows).
    const victim = (await cluster.etcdLeader()) ?? 0;
    const run = await faultDuringLogins(rig, {
      fault: () => cluster.killEtcd(victim),
      recover: () => cluster.startEtcd(victim),
      // Longer than Patroni's ttl: the leader key must be renewed through the other two.
      downMs: cluster.timing.ttl * 1000 + 2_000,
    });
    const failed = run.attempts.filter((a) => !a.ok);
    expect(failed.map((a) => ("failure" in a ? a.failure.status : "thrown" in a ? a.thrown : "")), "logins that failed").to.deep.equal([]);
    expect(await cluster.leader(), "the same primary").to.equal(leaderBefore);
    await cluster.waitHealthy(60_000);
    const audit = await rig.audit();
    expect(audit.problems).to.deep.equal([]);
    console.log(`      etcd member ${victim} (the Raft leader) down ${cluster.timing.ttl + 2} s: ${run.attempts.length} logins, none failed; records: ${describeAudit(audit)}`);
  });

  describe("stale members never answer 'no record' and never take a write", function () {
    const row = (hash = randomHash()) => ({
      hash, kind: "subject" as const, keyId: "k1", wrappedKey: new Uint8Array(60).fill(1), ciphertext: new Uint8Array(32).fill(2), digest: randomDigest(),
    });
    const errorOf = (call: Promise<unknown>) => call.then(() => undefined, (error: unknown) => error);

    it("a standby lagging (its replay paused) or cut off (frozen) is never read from: it would say 'no record', and Storage never asks it", async function () {
      this.timeout(120_000);
      const leader = (await cluster.leader())!;
      const standbys = cluster.members.filter((m) => m.name !== leader);
      const primaryMember = cluster.members.find((m) => m.name === leader)!;
      const hostsOf = (members: typeof standbys) => cluster.url.replace(/@[^/]+\//, `@${members.map((m) => `${m.host}:${m.pgPort}`).join(",")}/`);
      const lagging = standbys[0]!;
      const direct = new pg.Client({ connectionString: cluster.memberUrl(lagging.name) });
      await direct.connect();
      await direct.query("SELECT pg_wal_replay_pause()");
      let store: RecordStore | undefined;
      const written = row();
      try {
        // The lagging standby first in the URL, the order a custodian might well write.
        store = await openPostgresStore({ url: hostsOf([lagging, primaryMember, standbys[1]!]) });
        await store.create(written);
        // It lags: asked directly, it has no such record, which is what a false "no record" is made of.
        const { rows } = await direct.query("SELECT 1 FROM records WHERE hash = $1", [written.hash]);
        expect(rows, "the paused standby has not replayed the write").to.have.length(0);
        // Storage reads at the primary, whatever the URL's order.
        expect((await store.read(written.hash, "subject")).version).to.equal(1);
        // A URL naming only the lagging standby: unavailable, never "no record".
        const opened = await errorOf(openPostgresStore({ url: hostsOf([lagging]), connectTimeoutMs: 1_000 }));
        expect(opened, "a store on the lagging standby alone").to.be.instanceOf(UnavailableError);
        expect((opened as Error).message).to.match(/standby/);
      } finally {
        await direct.query("SELECT pg_wal_replay_resume()").catch(() => {});
        await direct.end().catch(() => {});
        await store?.close();
      }
      // A standby cut off (frozen): a URL naming only standbys is unavailable; the whole
      // cluster's URL still reaches the primary. "No record" needs a commit the synchronous
      // standby confirms: with that one frozen, the answer is "unavailable" instead, until
      // Patroni names another.
      const frozen = standbys[1]!;
      const wasSync = (await cluster.state()).syncStandbys.includes(frozen.name);
      cluster.freezePostgres(frozen.name);
      try {
        const opened = await errorOf(openPostgresStore({ url: hostsOf(standbys), connectTimeoutMs: 1_000 }));
        expect(opened, "opening a store on standbys only").to.be.instanceOf(UnavailableError);
        store = await openPostgresStore({ url: cluster.url, connectTimeoutMs: 1_000, statementTimeoutMs: 1_000 });
        expect((await store.read(written.hash, "subject")).version).to.equal(1);
        expect(await errorOf(store.read(randomHash(), "subject")), `'no record' with ${frozen.name} frozen (the synchronous standby: ${wasSync})`)
          .to.be.instanceOf(wasSync ? UnavailableError : NotFoundError);
      } finally {
        cluster.thawPostgres(standbys[1]!.name);
        await store?.close();
      }
      await cluster.waitHealthy(60_000);
    });

    it("an old primary cut off from etcd (its Patroni frozen) while a standby is promoted: a record written at the new primary is never 'no record' there, and no write there is acknowledged", async function () {
      this.timeout(240_000);
      const old = (await cluster.leader())!;
      // A store on the old primary alone, as a Storage would be that found it before the cut.
      const stale = await openPostgresStore({ url: cluster.memberUrl(old).replace(/\?.*$/, ""), statementTimeoutMs: 1_000 });
      const followed = await openPostgresStore({ url: cluster.url, statementTimeoutMs: 1_000 });
      let fresh: RecordStore | undefined;
      try {
        await stale.read(randomHash(), "subject").catch(() => {}); // its pool is warm, on the old primary
        cluster.freezePatroni(old);
        const promoted = await cluster.waitForLeader({ not: old, timeoutMs: 90_000 });
        await writable(cluster, promoted);
        // The old primary's server still says it is the primary: nothing but the fence tells.
        const direct = new pg.Client({ connectionString: cluster.memberUrl(old) });
        await direct.connect();
        const { rows } = await direct.query<{ standby: boolean }>("SELECT pg_is_in_recovery() AS standby");
        await direct.end();
        expect(rows[0]!.standby, "the cut-off server still runs as a primary").to.equal(false);

        // A new user's record, written at the new primary, which the old one never sees.
        fresh = await openPostgresStore({ url: cluster.memberUrl(promoted) });
        const written = row();
        await fresh.create(written);
        const atOld = await errorOf(stale.read(written.hash, "subject"));
        expect(atOld, "the old primary's answer for a record it does not have").to.be.instanceOf(UnavailableError);
        expect(atOld).not.to.be.instanceOf(NotFoundError);
        // Nor does it acknowledge a write.
        expect(await errorOf(stale.create(row())), "a write at the old primary").to.be.instanceOf(UnavailableError);
        expect(await errorOf(stale.spendTokenId(randomHash(), new Date(Date.now() + 60_000)))).to.be.instanceOf(UnavailableError);
        // A store following the cluster finds the new primary and the record.
        let found: unknown;
        for (let i = 0; i < 10 && !(found && !(found instanceof Error)); i++) found = await followed.read(written.hash, "subject").catch((e: unknown) => e);
        expect(found, "read through the whole cluster's URL").not.to.be.instanceOf(Error);
      } finally {
        cluster.thawPatroni(old);
        await Promise.all([stale.close(), followed.close(), fresh?.close()]);
      }
      // Thawed, its Patroni sees another leader and demotes it; it rejoins as a standby.
      await cluster.waitHealthy(120_000);
      const state = await cluster.state();
      expect(state.leader).to.not.equal(old);
      console.log(`      the cut-off primary ${old} rejoined as a ${state.members.find((m) => m.name === old)?.role}`);
    });
  });
});
