// One fault in the middle of a stream of logins, and what must hold around it
// (docs/faults.md): logins caught by the fault fail fast with the "unavailable" page and
// nothing else, logins after recovery succeed, and the record store holds no half-made
// user — checked by reading all of it, and by the people involved logging in again.

import { expect } from "chai";
import type { DevUser } from "../../internal/dev/devop/dev-op.js";
import { APPS } from "../support/protocol-mesh.js";
import { type App, type Audit, type FaultRig, type FrontDoorAnswer, type LoginAttempt, LoginStream, startFaultRig } from "./fault-rig.js";

/**
 * One rig for all the tests of the calling describe: started in its `before` (given to
 * `started`), closed in its `after`. Starting one takes minutes, so no test starts its own.
 */
export function sharedFaultRig(options: Parameters<typeof startFaultRig>[0], started: (rig: FaultRig) => void): void {
  let rig: FaultRig | undefined;
  before(async function () {
    this.timeout(300_000);
    rig = await startFaultRig(options);
    started(rig);
  });
  after(async function () {
    this.timeout(60_000);
    await rig?.close();
  });
}

export interface FaultRun {
  readonly attempts: readonly LoginAttempt[];
  /** When the fault began (ms since the epoch), and when the component served again. */
  readonly faultAt: number;
  readonly recoveredAt: number;
  /** From recovery to the end of the first login that started after it and succeeded. */
  readonly recoveryMs: number;
  readonly stream: LoginStream;
}

export const LOOPS = 4;

/**
 * Runs a stream of logins; once `warmUp` of them have succeeded, `fault()`; after
 * `downMs`, `recover()`; then waits until `after` logins that started after recovery
 * have ended.
 */
export async function faultDuringLogins(
  rig: FaultRig,
  options: { fault: () => Promise<void> | void; recover: () => Promise<void> | void; downMs: number; warmUp?: number; after?: number },
): Promise<FaultRun> {
  const stream = new LoginStream(rig, rig.takeUsers(150));
  stream.start(LOOPS);
  try {
    const warmUp = options.warmUp ?? LOOPS;
    await stream.until((a) => a.filter((x) => x.ok).length >= warmUp, 90_000, `${warmUp} logins before the fault`);
    const faultAt = Date.now();
    await options.fault();
    await new Promise((r) => setTimeout(r, options.downMs));
    await options.recover();
    const recoveredAt = Date.now();
    const after = options.after ?? LOOPS;
    await stream.until((a) => a.filter((x) => x.startedAt >= recoveredAt).length >= after, 90_000, `${after} logins after recovery`);
    const attempts = await stream.stop();
    const firstOk = attempts.filter((a) => a.ok && a.startedAt >= recoveredAt).sort((x, y) => x.endedAt - y.endedAt)[0];
    return { attempts, faultAt, recoveredAt, recoveryMs: firstOk ? firstOk.endedAt - recoveredAt : Number.NaN, stream };
  } finally {
    await stream.stop();
  }
}

/** The page a person gets while a component is down: 503, plain words, nothing internal, nothing of theirs. */
export function expectUnavailablePage(answer: FrontDoorAnswer, user: DevUser): void {
  const summary = `${answer.step}: ${answer.status} ${answer.body.match(/<h1>(.*?)<\/h1>/)?.[1] ?? answer.body.slice(0, 200)}`;
  expect(answer.status, summary).to.equal(503);
  expect(answer.contentType).to.match(/^text\/html/);
  expect(answer.retryAfter, "Retry-After").to.match(/^\d+$/);
  expect(answer.body).to.include("<h1>hello-mesh is unavailable right now</h1>");
  expect(answer.body).to.include("sign in again");
  // Nothing internal: no error names, codes, addresses, stacks or component messages.
  expect(answer.body).to.not.match(/ConnectError|\[unavailable\]|\[deadline_exceeded\]|ECONN|E[A-Z]{4,}|127\.0\.0\.1|https:\/\/|\.ts:\d+|at [\w.<>]+ \(|storage:|token:|SQLSTATE/);
  // Nothing of the user's.
  for (const value of [user.email, user.sub, user.name]) expect(answer.body).to.not.include(value);
}

/**
 * What must hold around a fault: before it every login succeeded; every login it
 * caught either succeeded or got the unavailable page within `failWithinMs`; every
 * login started after recovery succeeded; it was felt (some login failed).
 */
export function expectFaultHandled(run: FaultRun, failWithinMs: number): { failures: number; slowestFailureMs: number; inFlight: number } {
  const { attempts, faultAt, recoveredAt } = run;
  const thrown = attempts.filter((a) => "thrown" in a);
  expect(thrown.map((a) => ("thrown" in a ? a.thrown : "")), "logins that ended in something other than a page").to.deep.equal([]);
  const failures = attempts.flatMap((a) => ("failure" in a ? [{ ...a, failure: a.failure }] : []));
  for (const a of attempts) {
    if (a.endedAt < faultAt) expect(a.ok, "a login that ended before the fault").to.equal(true);
    if (a.startedAt >= recoveredAt) {
      expect(a.ok, `a login that started ${a.startedAt - recoveredAt} ms after recovery: ${"failure" in a ? a.failure.body.match(/<h1>(.*?)<\/h1>/)?.[1] : ""}`).to.equal(true);
    }
  }
  for (const f of failures) {
    expectUnavailablePage(f.failure, f.user);
    expect(f.failure.ms, `the ${f.failure.step} page took ${Math.round(f.failure.ms)} ms`).to.be.below(failWithinMs);
  }
  expect(failures.length, "logins the fault caught").to.be.greaterThan(0);
  const inFlight = attempts.filter((a) => a.startedAt < faultAt && a.endedAt > faultAt).length;
  expect(inFlight, "logins in flight when the fault began").to.be.greaterThan(0);
  expect(run.recoveryMs, "a login succeeded after recovery").to.be.a("number").and.not.NaN;
  return { failures: failures.length, slowestFailureMs: Math.max(...failures.map((f) => f.failure.ms)), inFlight };
}

/**
 * No half-made user: the store's audit finds nothing wrong, every `sub` an app saw is
 * the directed id in that user's Release Record, and everyone whose login the fault
 * caught logs in again and gets the same `sub` as before (or, if they never had one, a
 * working account).
 */
export async function expectNoHalfMadeUser(rig: FaultRig, run: FaultRun, audit: Audit): Promise<void> {
  expect(audit.problems).to.deep.equal([]);
  expect(run.stream.conflicts, "an app saw two subs for one user").to.deep.equal([]);
  for (const [key, sub] of run.stream.subs) {
    const [userSub, app] = key.split(" ") as [string, App];
    const user = audit.users.get(userSub);
    expect(user, `${userSub} logged in but has no Subject Record`).to.not.equal(undefined);
    expect(user!.subs.get(appClientId(app)), `${userSub} at ${app}`).to.equal(sub);
  }
  // Everyone the fault caught, once more (in parallel, as people would).
  const caught = new Map<string, { user: DevUser; app: App }>();
  for (const a of run.attempts) if (!a.ok) caught.set(`${a.user.sub} ${a.app}`, { user: a.user, app: a.app });
  const again = [...caught.values()].slice(0, 16);
  const results: LoginAttempt[] = [];
  for (let i = 0; i < again.length; i += LOOPS) {
    results.push(...(await Promise.all(again.slice(i, i + LOOPS).map(({ user, app }) => rig.login(user, app)))));
  }
  for (const r of results) {
    expect(r.ok, `${r.user.sub} logging in again at ${r.app}: ${"failure" in r ? r.failure.status : "thrown" in r ? r.thrown : ""}`).to.equal(true);
    if (!r.ok) continue;
    const before = run.stream.subs.get(`${r.user.sub} ${r.app}`) ?? audit.users.get(r.user.sub)?.subs.get(appClientId(r.app));
    if (before !== undefined) expect(r.sub, `${r.user.sub} at ${r.app} got another sub`).to.equal(before);
  }
}

/** No component wrote a test user's identifier, email or name to its logs. */
export function expectNoUserDataInLogs(rig: FaultRig): void {
  for (const component of ["orchestration", "token", "encryption", "storage"] as const) {
    const output = rig.output(component);
    expect(output, `${component}'s logs`).to.not.match(/fault-user-\d+|@faults\.example|Fault User/);
  }
}

const appClientId = (app: App) => APPS[app]!.client_id;
