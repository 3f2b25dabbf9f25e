// The wallet server's background work queue (wallet-work.ts) on both of Orchestration's
// stores, memory and PostgreSQL: work done once across two replicas (each entry's lease),
// tried again with backoff after a failure, taken up again after a replica died holding
// it, a poll queued once, given up at last, and nothing readable in the store. The races
// are ordered by the queue's pause point, never by timing; time is the test's clock.

import { randomBytes, randomUUID } from "node:crypto";
import { expect } from "chai";
import { type TestPostgres, startPostgres } from "../../../../test/support/postgres-server.js";
import { openPostgresSharedStore } from "../postgres-shared-store.js";
import { MemoryStore, type ScanningStore } from "../sealed.js";
import { LEASE_MS, MAX_ATTEMPTS, type WalletTask, WalletWork, type WalletWorkHandlers, type WorkOutcome, backoffMs } from "./wallet-work.js";

const ISSUER = "https://issuer.example";

/** A poll task with ids of its own. */
const poll = (): Extract<WalletTask, { kind: "poll" }> => ({ kind: "poll", issuer: ISSUER, session_id: randomUUID(), verification_id: randomUUID() });

for (const backend of ["memory", "postgres"] as const) {
  describe(`the wallet server's background work (s2s/wallet-work.ts), on ${backend === "memory" ? "one process's memory" : "PostgreSQL shared by two replicas"}`, function () {
    this.timeout(60_000);
    let server: TestPostgres | undefined;
    const opened: Array<{ close(): Promise<void> }> = [];
    let stores: [ScanningStore, ScanningStore];
    const cookieKey = randomBytes(32);
    let clock = 1_800_000_000_000;
    const now = () => clock;

    before(async function () {
      if (backend === "postgres") {
        server = await startPostgres();
        const [a, b] = [await openPostgresSharedStore(server.url), await openPostgresSharedStore(server.url)];
        opened.push(a, b);
        stores = [a, b];
      } else {
        const memory = new MemoryStore();
        stores = [memory, memory];
      }
    });
    after(async () => {
      for (const store of opened) await store.close();
      await server?.stop();
    });
    /** Empties the queue and its leases between tests. */
    beforeEach(async () => {
      for (const prefix of ["wallet-work:", "wallet-lease:"]) for (const { key } of await stores[0].scan(prefix, 10_000)) await stores[0].take(key);
    });

    /** A replica's queue whose handlers answer `outcome` for every task and count what they were given. */
    function replica(store: ScanningStore, outcome: (task: WalletTask) => Promise<WorkOutcome> | WorkOutcome = () => "done", pause?: (task: WalletTask) => Promise<void>) {
      const ran: WalletTask[] = [];
      const handle = async (task: WalletTask) => {
        ran.push(task);
        return outcome(task);
      };
      const handlers: WalletWorkHandlers = { unlink: handle, event: handle, poll: handle };
      const work = new WalletWork({ store, cookieKey, handlers, now, ...(pause ? { pause: (_point, task) => pause(task) } : {}) });
      return { work, ran };
    }

    it("works a due entry once and removes it; an entry not yet due waits", async function () {
      const { work, ran } = replica(stores[0]);
      const unlink: WalletTask = { kind: "unlink", issuer: ISSUER, session_id: randomUUID(), credential_instance_id: "i-1" };
      await work.enqueue(unlink);
      await work.enqueue(poll(), 10_000);
      expect(await work.tick()).to.equal(1);
      expect(ran).to.deep.equal([unlink]);
      expect((await work.pending()).map((p) => p.kind)).to.deep.equal(["poll"]);
      clock += 10_000;
      expect(await work.tick()).to.equal(1);
      expect(await work.pending()).to.deep.equal([]);
    });

    it("a failure (thrown, or again) is tried again after the backoff, with its attempts counted", async function () {
      let failing = true;
      const { work, ran } = replica(stores[0], () => {
        if (failing) throw new Error("the issuer is down");
        return "done";
      });
      await work.enqueue(poll());
      expect(await work.tick()).to.equal(0);
      expect(await work.pending()).to.deep.equal([{ kind: "poll", attempts: 1 }]);
      // Not before its backoff.
      expect(await work.tick()).to.equal(0);
      expect(ran).to.have.length(1);
      clock += backoffMs(1, () => 1);
      failing = false;
      expect(await work.tick()).to.equal(1);
      expect(ran).to.have.length(2);
      expect(await work.pending()).to.deep.equal([]);
    });

    it("two replicas ticking at once: an entry one replica holds is not worked by the other", async function () {
      let held!: () => void;
      let reached!: () => void;
      const inside = new Promise<void>((resolve) => (reached = resolve));
      const release = new Promise<void>((resolve) => (held = resolve));
      const a = replica(stores[0], () => "done", async () => {
        reached();
        await release;
      });
      const b = replica(stores[1]);
      await a.work.enqueue(poll());
      const first = a.work.tick();
      await inside;
      // B sees the entry, cannot claim its lease while A works it.
      expect(await b.work.tick()).to.equal(0);
      expect(b.ran).to.deep.equal([]);
      held();
      expect(await first).to.equal(1);
      expect(a.ran).to.have.length(1);
      expect(await b.work.tick()).to.equal(0);
      expect(b.ran).to.deep.equal([]);
    });

    it("a replica that dies holding an entry: once its lease lapses, another replica works it", async function () {
      const dying = replica(stores[0], () => "done", async () => {
        throw new Error("the replica died here");
      });
      const other = replica(stores[1]);
      await dying.work.enqueue(poll());
      await dying.work.tick().then(() => expect.fail("the replica went on"), () => undefined);
      expect(await other.work.tick(), "the lease is held").to.equal(0);
      // Its lease lapses (LEASE_MS): what the store's expiry does, done here by hand.
      expect(LEASE_MS).to.be.at.most(60_000);
      for (const { key } of await stores[0].scan("wallet-lease:", 10)) await stores[0].take(key);
      expect(await other.work.tick()).to.equal(1);
      expect(other.ran).to.have.length(1);
      expect(await other.work.pending()).to.deep.equal([]);
    });

    it("a poll of one verification is queued once, however often it is asked for", async function () {
      const { work } = replica(stores[0]);
      const task = poll();
      await work.enqueue(task, 5_000);
      await work.enqueue(task, 5_000);
      await work.enqueue({ ...task }, 0);
      expect(await work.pending()).to.have.length(1);
    });

    it("an entry that keeps failing is given up after its last try", async function () {
      const gaveUp: string[] = [];
      const work = new WalletWork({
        store: stores[0], cookieKey, now, onGiveUp: (kind) => gaveUp.push(kind),
        handlers: { unlink: async () => "again", event: async () => "again", poll: async () => "again" },
      });
      await work.enqueue({ kind: "event", issuer: ISSUER, body: { sessionId: randomUUID(), credentialInstanceId: "i", eventType: "PROVISIONING_SUCCESS", eventTimestamp: new Date(clock).toISOString() } });
      for (let i = 0; i < MAX_ATTEMPTS; i++) {
        await work.tick();
        clock += 10 * 60_000;
      }
      expect(gaveUp).to.deep.equal(["event"]);
      expect(await work.pending()).to.deep.equal([]);
    });

    it("holds nothing readable: no issuer, session or instance id in a key or a value; another cookie key opens nothing", async function () {
      const { work } = replica(stores[0]);
      const task: WalletTask = { kind: "unlink", issuer: ISSUER, session_id: randomUUID(), credential_instance_id: randomUUID() };
      await work.enqueue(task);
      const rows = await stores[0].scan("wallet-work:", 10);
      expect(rows).to.have.length(1);
      const raw = `${rows[0]!.key} ${rows[0]!.value.toString("latin1")}`;
      for (const secret of [ISSUER, "issuer.example", task.session_id, task.credential_instance_id]) expect(raw).to.not.include(secret);
      const strangers: WalletTask[] = [];
      const handle = async (t: WalletTask): Promise<WorkOutcome> => (strangers.push(t), "done");
      const stranger = new WalletWork({ store: stores[0], cookieKey: randomBytes(32), now, handlers: { unlink: handle, event: handle, poll: handle } });
      expect(await stranger.pending()).to.deep.equal([]);
      // …nor works, nor removes, what it cannot open.
      expect(await stranger.tick()).to.equal(0);
      expect(strangers).to.deep.equal([]);
      expect(await work.pending()).to.have.length(1);
    });
  });
}
