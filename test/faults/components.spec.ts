// Issue 6: Token, Encryption or Storage stops in the middle of a stream of logins, killed
// outright (SIGKILL) or stopped as an operator would (SIGTERM), and is started again with
// the same configuration. Logins it catches fail fast with the "unavailable" page, new
// logins succeed once it is back, and no user is left half made (docs/faults.md). On
// the default backend, PGlite, so a Storage killed mid-write must also recover its own
// data directory.

import { expect } from "chai";
import type { Component } from "../../internal/protocol/identity.js";
import type { FaultRig } from "./fault-rig.js";
import { expectFaultHandled, expectNoHalfMadeUser, expectNoUserDataInLogs, faultDuringLogins, sharedFaultRig } from "./scenario.js";

/**
 * A dead component refuses connections: the page comes at once. The bound leaves room
 * for a machine busy with other tests; unloaded, it is tens of milliseconds.
 */
const DEAD_COMPONENT_PAGE_MS = 3_000;
const DOWN_MS = 2_000;

describe("faults: a component stops in the middle of a stream of logins (docs/faults.md)", function () {
  let rig: FaultRig;
  sharedFaultRig({ database: "pglite", users: 1_000 }, (started) => (rig = started));

  const cases: Array<[Component, "SIGKILL" | "SIGTERM"]> = [
    ["token", "SIGKILL"],
    ["encryption", "SIGKILL"],
    ["storage", "SIGKILL"],
    ["token", "SIGTERM"],
    ["encryption", "SIGTERM"],
    ["storage", "SIGTERM"],
  ];
  for (const [component, signal] of cases) {
    it(`${component} ${signal === "SIGKILL" ? "killed (SIGKILL)" : "stopped (SIGTERM)"} and restarted: caught logins get the unavailable page fast, later ones succeed, no half-made user`, async function () {
      this.timeout(240_000);
      const before = rig.pid(component);
      const run = await faultDuringLogins(rig, {
        fault: () => rig.kill(component, signal),
        recover: () => rig.restart(component),
        downMs: DOWN_MS,
      });
      expect(rig.pid(component)).to.not.equal(before);
      let seen;
      try {
        // A peer's stop or restart must not take any other component down with it.
        for (const c of ["orchestration", "token", "encryption", "storage"] as const) expect(rig.alive(c), `${c} is running`).to.equal(true);
        seen = expectFaultHandled(run, DEAD_COMPONENT_PAGE_MS);
      } catch (error) {
        // What the components said outside their JSON logs: a crash's stack, a start-up error.
        for (const c of ["orchestration", "token", "encryption", "storage"] as const) {
          const said = rig.output(c).split("\n").filter((line) => line.trim() !== "" && !line.startsWith("{"));
          if (said.length > 0) console.log(`      ${c} wrote:\n${said.map((line) => `        ${line}`).join("\n")}`);
        }
        throw error;
      }
      const audit = await rig.audit();
      await expectNoHalfMadeUser(rig, run, audit);
      expectNoUserDataInLogs(rig);
      console.log(
        `      ${component} ${signal}: ${run.attempts.length} logins, ${seen.inFlight} in flight, ${seen.failures} unavailable pages ` +
          `(slowest ${Math.round(seen.slowestFailureMs)} ms); first login after restart done in ${run.recoveryMs} ms; ` +
          `store: ${audit.subjects} users, ${audit.unreachableWallets} unreachable wallets`,
      );
    });
  }
});
