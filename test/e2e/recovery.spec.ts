// Recovering a wallet with its recovery accounts (issue 13, docs/transactions.md
// "Recovery") through the four processes: recovery accounts are linked from the account
// page; none of them signs in alone; a threshold of them, at distinct providers, each
// with a forced fresh login of its own, recovers the wallet; and the recovered user links
// a new account that then signs in to the apps as the same person.

import { expect } from "chai";
import { Code } from "@connectrpc/connect";
import { TransactionKind } from "../../internal/gen/hello/token/v1/token_service_pb.js";
import {
  type LoginDriver, LoginRequired, RecoveryAccountOnly, RecoveryRefused,
} from "../../internal/components/orchestration/login-driver.js";
import { type ProtocolMesh, USERS, startProtocolMesh } from "../support/protocol-mesh.js";
import { FORCED, type Provider, accountSteps } from "../support/account-steps.js";
import type { DevUser } from "../../internal/dev/devop/dev-op.js";
import { refusal, rejectionOf } from "../support/refusal.js";

describe("recovering a wallet with its recovery accounts, through the four processes (docs/transactions.md)", function () {
  this.timeout(60_000);
  let mesh: ProtocolMesh;
  let driver: LoginDriver;

  before(async function () {
    this.timeout(120_000);
    mesh = await startProtocolMesh({ database: "pglite", secondProvider: true });
    driver = mesh.driver;
  });
  after(async () => mesh?.close());

  const { upstream, login: loginAt, openAccount } = accountSteps(() => mesh, () => driver);
  const issuerOf = (provider: Provider) => (provider === "dev" ? mesh.devOp.issuer : mesh.otherOp!.issuer);
  /** A login at `app` through `provider`: the sub the app gets. */
  const login = async (provider: Provider, user: DevUser, app: "a" | "b") => (await loginAt(provider, user, app)).sub;

  /** From a session the page holds (an account session, or a recovered one), a link of `linked`'s account at `at`. */
  async function link(sessionToken: string, uid: string, at: Provider, linked: DevUser, recovery: boolean) {
    const began = Date.now();
    const tx = await driver.beginTransaction(sessionToken, TransactionKind.LINK, at, { recovery });
    await driver.linkSubject(tx.sessionToken, began, await upstream(at, linked, tx.upstreamNonce, FORCED), uid, recovery);
  }

  /** One round of a recovery at `at` with `user`'s account, the first (no state) or a next one. */
  async function round(at: Provider, user: DevUser, state?: Parameters<LoginDriver["nextRecovery"]>[0]) {
    const began = Date.now();
    const session = state ? await driver.nextRecovery(state, at) : await driver.startRecovery(at);
    return driver.recover(session.sessionToken, began, await upstream(at, user, session.upstreamNonce, FORCED), state);
  }

  // Alice signs in with her Dev OP account. Her recovery accounts: Bob's Dev OP account
  // (a second account she holds there) and her Other OP account.
  let sub: string;
  let uid: string;

  it("Alice links two recovery accounts, at two providers: the wallet marks them, with a threshold of 2, which the next test shows sign in nowhere", async function () {
    sub = await login("dev", USERS.alice, "a");
    const view = (await openAccount("dev", USERS.alice))!;
    uid = view.uid;
    await link(view.sessionToken, uid, "dev", USERS.bob, true);
    const again = (await openAccount("dev", USERS.alice))!;
    await link(again.sessionToken, uid, "other", USERS.alice, true);

    const after = (await openAccount("dev", USERS.alice))!;
    expect(after.wallet.subjects).to.deep.equal([
      { iss: mesh.devOp.issuer, sub: USERS.alice.sub },
      { iss: mesh.devOp.issuer, sub: USERS.bob.sub, recovery: true },
      { iss: issuerOf("other"), sub: USERS.alice.sub, recovery: true },
    ]);
    expect(after.wallet.recovery).to.deep.equal({ threshold: 2 });
    expect(after.wallet.history!.map((h) => [h.kind, h.iss, h.recovery])).to.deep.equal([["link", mesh.devOp.issuer, true], ["link", issuerOf("other"), true]]);
  });

  it("the threshold is set with a sign-in account's fresh login, from 2 up to the providers of the recovery accounts; above that, nothing changes", async function () {
    const set = async (threshold: number) => {
      const view = (await openAccount("dev", USERS.alice))!;
      const began = Date.now();
      const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.RECOVERY_THRESHOLD, "dev", { threshold });
      return driver.setRecoveryThreshold(tx.sessionToken, began, await upstream("dev", USERS.alice, tx.upstreamNonce, FORCED), uid, threshold);
    };
    expect(await refusal(set(3))).to.deep.equal({
      code: Code.PermissionDenied, message: "a threshold of 3 needs recovery accounts at 3 distinct providers, and this wallet has them at 2: link more first",
    });
    await set(2);
    const after = (await openAccount("dev", USERS.alice))!;
    expect(after.wallet.recovery).to.deep.equal({ threshold: 2 });
    expect(after.wallet.history!.map((h) => h.kind)).to.deep.equal(["link", "link", "threshold"]);
  });

  it("a recovery account signs in nowhere alone: not to an app, not to the account page", async function () {
    expect(await rejectionOf(login("other", USERS.alice, "a"))).to.be.instanceOf(RecoveryAccountOnly);
    expect(await rejectionOf(login("dev", USERS.bob, "b"))).to.be.instanceOf(RecoveryAccountOnly);
    expect(await rejectionOf(openAccount("dev", USERS.bob))).to.be.instanceOf(RecoveryAccountOnly);
  });

  it("a recovery is refused: at a sign-in account, twice at one provider, and with a login the provider did not force", async function () {
    expect(await rejectionOf(round("dev", USERS.alice))).to.be.instanceOf(RecoveryRefused);
    const first = await round("dev", USERS.bob);
    expect(first.kind).to.equal("more");
    if (first.kind !== "more") return;
    expect(first.state).to.include({ uid, needed: 1 });
    expect(first.state.proven).to.deep.equal([mesh.devOp.issuer]);
    // Token refuses a next round at the provider that proved this one (two accounts at one provider count once).
    expect(await refusal(driver.nextRecovery(first.state, "dev"))).to.deep.equal({
      code: Code.PermissionDenied, message: "this provider proved this recovery already: the next round is at another provider",
    });
    const began = Date.now();
    const next = await driver.nextRecovery(first.state, "other");
    // The provider remembered Alice and did not ask: not a fresh login, so not a recovery.
    expect(await rejectionOf(driver.recover(next.sessionToken, began, await upstream("other", USERS.alice, next.upstreamNonce), first.state))).to.be.instanceOf(LoginRequired);
  });

  it("two recovery accounts at two providers recover the wallet; the history names both; a new account linked then signs in to the app as Alice", async function () {
    const first = await round("dev", USERS.bob);
    if (first.kind !== "more") throw new Error("one recovery account recovered the wallet alone");
    const before = Date.now();
    const done = await round("other", USERS.alice, first.state);
    if (done.kind !== "done") throw new Error("two recovery accounts did not recover the wallet");
    expect(done.view.uid).to.equal(uid);
    const entry = done.view.wallet.history!.at(-1)!;
    expect(entry).to.include({ kind: "recovery", iss: issuerOf("other") });
    expect(entry.issuers).to.deep.equal([mesh.devOp.issuer, issuerOf("other")]);
    expect(entry.at * 1000).to.be.within(before - 2000, Date.now() + 1000);

    // The recovered session begins a link only: any other transaction needs a sign-in account's fresh login.
    expect(await refusal(driver.beginTransaction(done.view.sessionToken, TransactionKind.DELETE, "dev"))).to.deep.equal({
      code: Code.PermissionDenied, message: "a recovered wallet's transaction is a link: link an account to sign in with, then sign in with it for the others",
    });
    // Alice lost her Dev OP account; she links Carol's Other OP account (a new one she holds) to sign in with.
    await link(done.view.sessionToken, uid, "other", USERS.carol, false);
    expect(await login("other", USERS.carol, "a"), "the same person at the app").to.equal(sub);
  });
});
