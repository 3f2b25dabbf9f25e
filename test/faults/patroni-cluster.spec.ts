// The high-availability PostgreSQL harness (internal/dev/ha/patroni-cluster.ts) against
// the real thing: etcd, Patroni and PostgreSQL processes, killed and stopped for real.
// What it pins down is what the service may rely on when it runs on such a cluster:
// an acknowledged write survives the loss of the primary; a lost primary is replaced in
// seconds; a lost etcd member changes nothing; and a primary cut off from etcd is
// replaced, while a write sent to it there does not come back as a plain success.
//
// One cluster for the whole file (it takes ~10 s to make); each test leaves it healthy
// for the next. Needs Debian's patroni, etcd-server and postgresql packages.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import pg from "pg";
import { type PatroniCluster, startPatroniCluster } from "../../internal/dev/ha/patroni-cluster.js";

/** A client of one member: node-postgres does not understand multi-host URLs. */
async function connect(cluster: PatroniCluster, name: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: cluster.memberUrl(name), connectionTimeoutMillis: 5_000 });
  // A member killed under an idle client would otherwise end the test process.
  client.on("error", () => {});
  await client.connect();
  return client;
}

async function query<R extends pg.QueryResultRow>(cluster: PatroniCluster, name: string, sql: string, values: unknown[] = []): Promise<R[]> {
  const client = await connect(cluster, name);
  try {
    return (await client.query<R>(sql, values)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

const inRecovery = async (cluster: PatroniCluster, name: string) =>
  (await query<{ r: boolean }>(cluster, name, "SELECT pg_is_in_recovery() AS r"))[0]!.r;

/** Polls until `name` has the row (a replica applies what it received a moment later). */
async function waitForRow(cluster: PatroniCluster, name: string, id: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await query(cluster, name, "SELECT 1 FROM ha_probe WHERE id = $1", [id]).catch(() => []);
    if (rows.length === 1) return;
    if (Date.now() > deadline) throw new Error(`row ${id} not on ${name} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** INSERTs a row and returns once COMMIT is acknowledged, with whatever notices came with it. */
async function writeAcknowledged(cluster: PatroniCluster, name: string, id: number): Promise<{ notices: string[] }> {
  const client = await connect(cluster, name);
  const notices: string[] = [];
  client.on("notice", (n) => notices.push(`${n.severity}: ${n.message}`));
  try {
    await client.query("SET statement_timeout = 30000");
    await client.query("INSERT INTO ha_probe VALUES ($1, 'acknowledged')", [id]);
    return { notices };
  } finally {
    await client.end().catch(() => {});
  }
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

describe("faults: a Patroni + etcd PostgreSQL cluster on one machine (internal/dev/ha)", function () {
  let cluster: PatroniCluster;
  let nextId = 1;
  // From the loss of the leader's key holder to a new primary: the key's ttl, a loop, and
  // promotion; the margin is for a busy CI machine.
  let failoverBoundMs: number;

  before(async function () {
    this.timeout(150_000);
    const started = Date.now();
    cluster = await startPatroniCluster({ dir: mkdtempSync(join(tmpdir(), "hello-ha-")) });
    failoverBoundMs = (cluster.timing.ttl + 2 * cluster.timing.loopWait + 10) * 1000;
    console.log(`      cluster up in ${seconds(Date.now() - started)} (ttl ${cluster.timing.ttl} s, loop_wait ${cluster.timing.loopWait} s, retry_timeout ${cluster.timing.retryTimeout} s)`);
  });

  after(async function () {
    this.timeout(60_000);
    await cluster?.stop();
  });

  it("comes up healthy: one leader, two streaming replicas, one of them the sync standby; url names every member", async function () {
    this.timeout(60_000);
    const state = await cluster.waitHealthy();
    expect(state.leader).to.be.a("string");
    const replicas = state.members.filter((m) => m.name !== state.leader);
    expect(replicas).to.have.length(2);
    expect(replicas.map((m) => m.role).sort()).to.deep.equal(["replica", "sync_standby"]);
    expect(state.syncStandbys).to.have.length(1);
    expect([...(state.streaming ?? [])].sort()).to.deep.equal(replicas.map((m) => m.name).sort());
    for (const m of cluster.members) expect(cluster.url).to.include(`${m.host}:${m.pgPort}`);
    expect(cluster.url).to.match(/^postgresql:\/\/postgres@[^/]+\/postgres\?target_session_attrs=read-write$/);
    expect(await inRecovery(cluster, state.leader!)).to.equal(false);
    for (const r of replicas) expect(await inRecovery(cluster, r.name)).to.equal(true);
  });

  it("a row written through the leader is on both replicas", async function () {
    this.timeout(60_000);
    const leader = await cluster.waitForLeader();
    await query(cluster, leader, "CREATE TABLE ha_probe (id int PRIMARY KEY, note text NOT NULL)");
    const id = nextId++;
    await query(cluster, leader, "INSERT INTO ha_probe VALUES ($1, 'first')", [id]);
    for (const m of cluster.members.filter((m) => m.name !== leader)) await waitForRow(cluster, m.name, id);
  });

  it("killMember(leader): the sync standby takes over within the ttl, with the acknowledged row; the old leader rejoins as a replica", async function () {
    this.timeout(120_000);
    const before = await cluster.waitHealthy();
    const old = before.leader!;
    const id = nextId++;
    // Acknowledged = COMMIT returned: with strict synchronous replication the sync standby has it.
    await query(cluster, old, "INSERT INTO ha_probe VALUES ($1, 'acknowledged before the kill')", [id]);

    const killedAt = Date.now();
    await cluster.killMember(old);
    const next = await cluster.waitForLeader({ not: old, timeoutMs: failoverBoundMs + 20_000 });
    const failoverMs = Date.now() - killedAt;
    console.log(`      ${old} killed: ${next} is a writable primary after ${seconds(failoverMs)}`);
    expect(failoverMs).to.be.below(failoverBoundMs);
    expect(before.syncStandbys, "only the sync standby may be promoted").to.include(next);
    expect(await query(cluster, next, "SELECT note FROM ha_probe WHERE id = $1", [id])).to.deep.equal([{ note: "acknowledged before the kill" }]);
    expect(await inRecovery(cluster, next)).to.equal(false);
    // Strict synchronous replication: the new primary's first commit waits until the
    // remaining replica follows it and is named its sync standby.
    const written = await writeAcknowledged(cluster, next, nextId++);
    console.log(`      first write on ${next} acknowledged ${seconds(Date.now() - killedAt)} after the kill`);
    expect(written.notices, "a plain acknowledgement").to.deep.equal([]);

    const restartedAt = Date.now();
    await cluster.startMember(old);
    const after = await cluster.waitHealthy(90_000);
    console.log(`      ${old} started again: back as a ${after.members.find((m) => m.name === old)?.role} in ${seconds(Date.now() - restartedAt)}`);
    expect(after.leader).to.equal(next);
    expect(await inRecovery(cluster, old)).to.equal(true);
    await waitForRow(cluster, old, id);
  });

  it("killEtcd(the Raft leader): Patroni keeps its leader, and writes go on throughout", async function () {
    this.timeout(90_000);
    const { leader } = await cluster.waitHealthy();
    const etcdLeader = (await cluster.etcdLeader()) ?? 0;
    await cluster.killEtcd(etcdLeader);
    const killedAt = Date.now();
    // Longer than a ttl: a leader that could not renew its key would have lost it by then.
    const client = await connect(cluster, leader!);
    let writes = 0;
    try {
      await client.query("SET statement_timeout = 5000");
      while (Date.now() - killedAt < (cluster.timing.ttl + 3) * 1000) {
        await client.query("INSERT INTO ha_probe VALUES ($1, 'etcd member down')", [nextId++]);
        writes++;
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      await client.end();
    }
    const state = await cluster.state();
    console.log(`      etcd${etcdLeader + 1} (Raft leader) killed: ${writes} writes in ${seconds(Date.now() - killedAt)}, all acknowledged; Patroni leader still ${state.leader}`);
    expect(state.leader).to.equal(leader);
    await cluster.startEtcd(etcdLeader);
    await cluster.waitHealthy();
  });

  it("freezePatroni(leader): another member leads within the ttl while the old primary still runs as one; a commit there waits for a standby that is gone, and comes back only with a WARNING; after thawPatroni it is rewound into a replica and its lone write is gone", async function () {
    this.timeout(150_000);
    const before = await cluster.waitHealthy();
    const old = before.leader!;
    cluster.freezePatroni(old);
    const frozenAt = Date.now();
    const next = await cluster.waitForLeader({ not: old, timeoutMs: failoverBoundMs + 20_000 });
    const replacedMs = Date.now() - frozenAt;
    console.log(`      ${old}'s Patroni frozen: ${next} is a writable primary after ${seconds(replacedMs)}`);
    expect(replacedMs).to.be.below(failoverBoundMs);

    // Split brain, as PostgreSQL sees it: two servers that say they are primary.
    expect(await inRecovery(cluster, old), `${old}'s PostgreSQL still believes it is primary`).to.equal(false);
    expect(await inRecovery(cluster, next)).to.equal(false);

    // A client that still writes to the old primary: its COMMIT waits for the sync standby
    // named in synchronous_standby_names, which now leads and follows no one. Nothing ends
    // that wait on its own, not even statement_timeout (PostgreSQL disables it before it
    // commits); a cancel does, and then the transaction has committed locally: the server
    // says so in a WARNING, not an error.
    const client = await connect(cluster, old);
    const notices: Array<{ severity?: string; code?: string; message?: string; detail?: string }> = [];
    client.on("notice", (n) => notices.push(n));
    const id = nextId++;
    let waitedMs: number;
    try {
      const backend = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
      await client.query("SET statement_timeout = 1000");
      const sentAt = Date.now();
      let returned = false;
      const insert = client.query(`INSERT INTO ha_probe VALUES (${id}, 'written on the cut-off primary')`).finally(() => (returned = true));
      await new Promise((r) => setTimeout(r, 3_000));
      expect(returned, "the COMMIT still waits, 3 times the statement timeout later").to.equal(false);
      await query(cluster, old, "SELECT pg_cancel_backend($1)", [backend]);
      const result = await insert;
      waitedMs = Date.now() - sentAt;
      expect(result.rowCount, "the INSERT is reported done").to.equal(1);
    } finally {
      await client.end();
    }
    const warning = notices.find((n) => /synchronous replication/.test(n.message ?? ""));
    console.log(
      `      COMMIT on the cut-off ${old} came back after ${seconds(waitedMs)} with ${warning?.severity} ${warning?.code}: "${warning?.message}" / "${warning?.detail}"`,
    );
    expect(waitedMs).to.be.at.least(3_000);
    expect(warning, `notices: ${JSON.stringify(notices.map((n) => n.message))}`).to.not.equal(undefined);
    expect(warning!.severity).to.equal("WARNING");
    expect(warning!.code).to.equal("01000");
    expect(warning!.message).to.equal("canceling wait for synchronous replication due to user request");
    expect(warning!.detail).to.equal("The transaction has already committed locally, but might not have been replicated to the standby.");
    // It is there, on the old primary only: no acknowledged-and-replicated write was lost,
    // and this one was never acknowledged plainly.
    expect(await query(cluster, old, "SELECT 1 FROM ha_probe WHERE id = $1", [id])).to.have.length(1);
    expect(await query(cluster, next, "SELECT 1 FROM ha_probe WHERE id = $1", [id])).to.have.length(0);

    // A write the new leader acknowledged while the old one was cut off: it must survive
    // the old leader's return (with Patroni 3.0.2's etcd3 client it did not: see etcdApi).
    const keptId = nextId++;
    expect((await writeAcknowledged(cluster, next, keptId)).notices).to.deep.equal([]);

    const thawedAt = Date.now();
    cluster.thawPatroni(old);
    const after = await cluster.waitHealthy(90_000);
    console.log(`      ${old}'s Patroni thawed: demoted and rejoined as a ${after.members.find((m) => m.name === old)?.role} in ${seconds(Date.now() - thawedAt)}`);
    expect(after.leader).to.equal(next);
    expect(await inRecovery(cluster, old)).to.equal(true);
    // Rewound to the new leader's history: the lone write is gone everywhere.
    expect(await query(cluster, old, "SELECT 1 FROM ha_probe WHERE id = $1", [id])).to.have.length(0);
    expect(await query(cluster, next, "SELECT 1 FROM ha_probe WHERE id = $1", [keptId])).to.have.length(1);
    await waitForRow(cluster, old, keptId);
    const rewound = await cluster.logTails(400).then((t) => /pg_rewind|rewind/i.test(t));
    expect(rewound, "Patroni's log tells of a rewind").to.equal(true);
  });
});
