// Issue 6 on PostgreSQL: the database restarts under a running Storage (which must stay
// up and answer UNAVAILABLE meanwhile), and Storage hangs (SIGSTOP) while logins keep
// arriving: deadlines make Orchestration give up in time instead of piling up
// (docs/faults.md).

import { expect } from "chai";
import { Code } from "@connectrpc/connect";
import { RPC_TIMEOUT_MS } from "../../internal/components/orchestration/login-driver.js";
import { appRequest } from "../support/protocol-mesh.js";
import { refusedWith } from "../support/refusal.js";
import { type FaultRig, type FrontDoorAnswer, FAULT_APPS } from "./fault-rig.js";
import { expectFaultHandled, expectNoHalfMadeUser, expectNoUserDataInLogs, expectUnavailablePage, faultDuringLogins, sharedFaultRig } from "./scenario.js";

/** Storage refuses nothing while the database is down: it answers UNAVAILABLE at once. */
const DATABASE_DOWN_PAGE_MS = 3_000;
/** A hung Storage: the page comes at the per-call deadline; the margin is for a busy machine. */
const HUNG_STORAGE_PAGE_MS = RPC_TIMEOUT_MS + 2_000;

describe("faults: PostgreSQL restarts and Storage hangs in the middle of a stream of logins (docs/faults.md)", function () {
  let rig: FaultRig;
  sharedFaultRig({ database: "postgres", users: 1_000 }, (started) => (rig = started));

  for (const mode of ["fast", "immediate"] as const) {
    it(`PostgreSQL stopped (pg_ctl stop -m ${mode}) and started: Storage stays up and answers UNAVAILABLE, caught logins get the page fast, later ones succeed, no half-made user`, async function () {
      this.timeout(240_000);
      const storage = rig.pid("storage");
      const run = await faultDuringLogins(rig, {
        fault: () => rig.mesh.postgres!.server!.stop(mode),
        recover: () => rig.mesh.postgres!.server!.start(),
        downMs: 2_000,
      });
      expect(rig.pid("storage"), "the same Storage process throughout").to.equal(storage);
      expect(rig.alive("storage")).to.equal(true);
      const seen = expectFaultHandled(run, DATABASE_DOWN_PAGE_MS);
      const audit = await rig.audit();
      await expectNoHalfMadeUser(rig, run, audit);
      expectNoUserDataInLogs(rig);
      console.log(
        `      PostgreSQL -m ${mode}: ${run.attempts.length} logins, ${seen.inFlight} in flight, ${seen.failures} unavailable pages ` +
          `(slowest ${Math.round(seen.slowestFailureMs)} ms); first login after the database was back done in ${run.recoveryMs} ms`,
      );
    });
  }

  it("a hung Storage (SIGSTOP): every front-door request is answered with the unavailable page by the deadline, Orchestration does not pile up, and after SIGCONT logins succeed", async function () {
    this.timeout(180_000);
    // People who have signed in at their provider and are on their way back to the
    // front door: while Storage hangs they arrive at a steady rate, whatever happens
    // to those before them (an open stream, unlike the loops, which wait for answers).
    // Arriving for longer than a deadline, so that without one they would pile up
    // past the bound checked below.
    const ARRIVALS = 48;
    const INTERVAL_MS = 200;
    const people = rig.takeUsers(ARRIVALS);
    const prepared: Array<{ callback(): Promise<FrontDoorAnswer> }> = [];
    for (let i = 0; i < ARRIVALS; i += 4) {
      prepared.push(...(await Promise.all(people.slice(i, i + 4).map((u, j) => rig.prepareCallback(u, FAULT_APPS[(i + j) % 2]!)))));
    }

    const rssBefore = rig.rss("orchestration");
    let rssPeak = rssBefore;
    let outstanding = 0;
    let peakOutstanding = 0;
    let arrivals: Promise<FrontDoorAnswer[]> = Promise.resolve([]);
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rig.rss("orchestration"))), 200);
    try {
      const run = await faultDuringLogins(rig, {
        fault: () => {
          rig.freeze("storage");
          arrivals = Promise.all(
            prepared.map(async (person, i) => {
              await new Promise((r) => setTimeout(r, i * INTERVAL_MS));
              outstanding++;
              peakOutstanding = Math.max(peakOutstanding, outstanding);
              try {
                return await person.callback();
              } finally {
                outstanding--;
              }
            }),
          );
        },
        recover: async () => {
          await arrivals; // Storage stays hung until every arrival has been answered
          rig.thaw("storage");
        },
        downMs: 0,
      });
      clearInterval(sampler);

      const answers = await arrivals;
      answers.forEach((answer, i) => expectUnavailablePage(answer, people[i]!));
      const slowest = Math.max(...answers.map((a) => a.ms));
      expect(slowest, "every arrival answered by the deadline plus a margin").to.be.below(HUNG_STORAGE_PAGE_MS);
      // Each request ends at its deadline, so no more can be waiting than arrive in one
      // deadline (plus the loops' own logins): Orchestration holds nothing beyond that.
      const bound = Math.ceil(HUNG_STORAGE_PAGE_MS / INTERVAL_MS) + 1;
      expect(bound, "the test can tell a pile-up").to.be.below(ARRIVALS);
      expect(peakOutstanding, "requests waiting at once").to.be.at.most(bound);
      expect(rssPeak - rssBefore, "Orchestration's memory growth while Storage hung").to.be.below(64 * 1024 * 1024);

      const seen = expectFaultHandled(run, HUNG_STORAGE_PAGE_MS);
      const audit = await rig.audit();
      await expectNoHalfMadeUser(rig, run, audit);
      expectNoUserDataInLogs(rig);
      console.log(
        `      Storage hung ${Math.round((run.recoveredAt - run.faultAt) / 1000)} s: ${ARRIVALS} arrivals every ${INTERVAL_MS} ms answered 503 in ` +
          `${Math.round(Math.min(...answers.map((a) => a.ms)))}–${Math.round(slowest)} ms, at most ${peakOutstanding} waiting at once; ` +
          `Orchestration RSS ${mib(rssBefore)} → peak ${mib(rssPeak)} MiB; loops: ${seen.failures} unavailable pages; ` +
          `first login after SIGCONT done in ${run.recoveryMs} ms`,
      );
    } finally {
      clearInterval(sampler);
      rig.thaw("storage");
    }
  });

  it("Encryption passes its caller's deadline on to Storage: with Storage hung, a call with a 1.5 s deadline is answered by Encryption itself, in time", async function () {
    this.timeout(60_000);
    const [person] = rig.takeUsers(1);
    const started = await rig.mesh.driver.start(appRequest("a"), "dev");
    const upstream = await rig.mesh.upstreamLogin(person!, started.upstreamNonce);
    const authorized = await rig.mesh.token().authorizeSubject({ sessionToken: started.sessionToken, opIdToken: upstream.idToken });
    const read = { accessToken: authorized.subjectRead!.accessToken };
    // The honest twin: with Storage running, the same read is answered (no record yet).
    expect((await rig.mesh.encryption().readRecord(read)).result.case).to.equal("errorToken");

    rig.freeze("storage");
    try {
      // The deadline goes in the protocol's timeout header only (the mesh speaks Connect
      // by default; the gRPC header is set too, in case a test picks gRPC), and this
      // client does not enforce it: whatever answer comes is Encryption's, and says when
      // it gave up.
      const sent = performance.now();
      const error = await refusedWith(
        rig.mesh.encryption().readRecord(read, { timeoutMs: 0, headers: { "connect-timeout-ms": "1500", "grpc-timeout": "1500m" } }),
        "Encryption's answer to a read while Storage was hung",
      );
      const waited = performance.now() - sent;
      expect(error.code).to.equal(Code.DeadlineExceeded);
      expect(error.rawMessage, "Encryption's own answer about its call to Storage").to.match(/^storage: /);
      // Encryption's own default for a call without a deadline is 5 s: it used ours.
      expect(waited).to.be.below(4_000);
    } finally {
      rig.thaw("storage");
    }
    expect((await rig.mesh.encryption().readRecord(read)).result.case).to.equal("errorToken");
  });
});

const mib = (bytes: number) => Math.round(bytes / (1024 * 1024));
