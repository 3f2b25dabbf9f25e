// Merging two wallets of one person (issue 13, docs/transactions.md "Merge") through the
// four processes: in one account session the user proves both wallets (the page's
// sign-in, then a forced fresh login at an account of the other), and the later wallet
// merges into the earlier one. Apps keep the `sub` they knew; where both wallets released
// to one app, the earlier `sub` stays and the app is told the other in `merged_subs`; the
// merged wallet is gone and no account points at it.

import { expect } from "chai";
import { TransactionKind } from "../../internal/gen/hello/token/v1/token_service_pb.js";
import { type LoginDriver, MergeRefused, RecoveryAccountOnly, WalletChanged } from "../../internal/components/orchestration/login-driver.js";
import { earlierWallet } from "../../internal/protocol/tokens.js";
import { APPS, type ProtocolMesh, USERS, startProtocolMesh } from "../support/protocol-mesh.js";
import { FORCED, type Provider, accountSteps } from "../support/account-steps.js";
import type { DevUser } from "../../internal/dev/devop/dev-op.js";
import { rejectionOf } from "../support/refusal.js";
import { PausePoints, pausableDriver } from "../support/pause-points.js";

describe("merging two wallets of one person, through the four processes (docs/transactions.md)", function () {
  this.timeout(60_000);
  let mesh: ProtocolMesh;
  let driver: LoginDriver;
  const points = new PausePoints();

  before(async function () {
    this.timeout(120_000);
    mesh = await startProtocolMesh({ database: "pglite", secondProvider: true });
    driver = pausableDriver(mesh, points);
  });
  afterEach(() => points.clear());
  after(async () => mesh?.close());

  const { upstream, login, openAccount: open } = accountSteps(() => mesh, () => driver);
  const openAccount = async (provider: Provider, user: DevUser) => (await open(provider, user))!;

  /** From `user`'s account page at `provider`, a merge confirmed at `other`'s account at `at`. */
  async function merge(provider: Provider, user: DevUser, at: Provider, other: DevUser) {
    const view = await openAccount(provider, user);
    const began = Date.now();
    const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.MERGE, at);
    return driver.mergeWallets(tx.sessionToken, began, await upstream(at, other, tx.upstreamNonce, FORCED), view.uid);
  }

  it("a merge needs an account of another wallet: one in no wallet, or of this one, is refused and nothing changes", async function () {
    await login("dev", USERS.alice, "a");
    const refusedFree = await rejectionOf(merge("dev", USERS.alice, "other", USERS.carol));
    expect(refusedFree).to.be.instanceOf(MergeRefused).and.have.property("message", "the account signed in with is in no wallet: link it instead");
    const refusedOwn = await rejectionOf(merge("dev", USERS.alice, "dev", USERS.alice));
    expect(refusedOwn).to.be.instanceOf(MergeRefused).and.have.property("message", "the account signed in with is this wallet's already");
    expect((await openAccount("dev", USERS.alice)).wallet.history ?? []).to.deep.equal([]);
  });

  it("Alice's two wallets merge into the earlier: apps keep the sub they knew, one app is told the other sub in merged_subs, and the later wallet is gone; forgetting and deleting retire every id", async function () {
    // Alice's second wallet: her Other OP account, at app a and at app b.
    const aliceAtA = await login("dev", USERS.alice, "a");
    const otherAtA = await login("other", USERS.alice, "a");
    const otherAtB = await login("other", USERS.alice, "b");
    const first = await openAccount("dev", USERS.alice);
    const second = await openAccount("other", USERS.alice);
    expect(first.uid).to.not.equal(second.uid);
    const keptFirst = earlierWallet(first.wallet, second.wallet) === first.wallet;

    const { survivor, merged } = await merge("dev", USERS.alice, "other", USERS.alice);
    expect(survivor).to.equal(keptFirst ? first.uid : second.uid);
    expect(merged).to.equal(keptFirst ? second.uid : first.uid);

    // Both accounts open the surviving wallet, which lists both, and the merge.
    const viaDev = await openAccount("dev", USERS.alice);
    const viaOther = await openAccount("other", USERS.alice);
    expect(viaDev.uid).to.equal(survivor);
    expect(viaOther.uid).to.equal(survivor);
    expect(viaDev.wallet.subjects.map((s) => s.iss).sort()).to.deep.equal([mesh.devOp.issuer, mesh.otherOp!.issuer].sort());
    expect(viaDev.wallet.history!.at(-1)).to.include({ kind: "merge", iss: mesh.otherOp!.issuer });

    // App a knew both: the survivor's sub stays, and the other comes as merged_subs, whichever account signs in.
    const [keptAtA, mergedAtA] = keptFirst ? [aliceAtA.sub, otherAtA.sub] : [otherAtA.sub, aliceAtA.sub];
    expect(await login("dev", USERS.alice, "a")).to.include({ sub: keptAtA }).and.have.deep.property("merged_subs", [mergedAtA]);
    expect(await login("other", USERS.alice, "a")).to.include({ sub: keptAtA }).and.have.deep.property("merged_subs", [mergedAtA]);
    // App b knew only the second wallet: its sub, whichever account signs in, with nothing merged.
    const atB = await login("dev", USERS.alice, "b");
    expect(atB.sub).to.equal(otherAtB.sub);
    expect(atB).to.not.have.property("merged_subs");

    // App a made to forget her: both ids it knew are retired (tombstones), and it sees a new user.
    const page = await openAccount("dev", USERS.alice);
    const forgetBegan = Date.now();
    const forget = await driver.beginTransaction(page.sessionToken, TransactionKind.RELEASE, "dev", { clientId: APPS.a!.client_id });
    await driver.changeRelease(forget.sessionToken, forgetBegan, await upstream("dev", USERS.alice, forget.upstreamNonce, FORCED), page.uid, APPS.a!.client_id, { forget: true });
    const forgotten = await login("dev", USERS.alice, "a");
    expect([keptAtA, mergedAtA]).to.not.include(forgotten.sub);
    expect(forgotten).to.not.have.property("merged_subs");

    // A delete of the merged wallet then lists the merged id too (Orchestration checks the
    // deletion record names every id reserved for her at each app, merged_subs included),
    // and turns its reservation into a tombstone with the others: a new wallet gets new subs.
    const view = await openAccount("dev", USERS.alice);
    const began = Date.now();
    const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.DELETE, "dev");
    await driver.deleteWallet(tx.sessionToken, began, await upstream("dev", USERS.alice, tx.upstreamNonce, FORCED), view.uid);
    const fresh = await login("other", USERS.alice, "a");
    expect(fresh.newUser).to.equal(true);
    expect([keptAtA, mergedAtA]).to.not.include(fresh.sub);
  });

  it("a merge racing a consent in the wallet it reads writes nothing: the wallet moved on, so the user merges again", async function () {
    await login("dev", USERS.bob, "a");
    await login("other", USERS.bob, "a");
    // The merge pauses before its writes; meanwhile Bob's Other OP wallet consents at app b (its wallet rewritten).
    points.on("merge-writing", async () => {
      await login("other", USERS.bob, "b");
    });
    expect(await rejectionOf(merge("dev", USERS.bob, "other", USERS.bob))).to.be.instanceOf(WalletChanged);
    expect((await openAccount("dev", USERS.bob)).uid, "nothing merged").to.not.equal((await openAccount("other", USERS.bob)).uid);
    // Again: the merge finds the new release too.
    const { survivor } = await merge("dev", USERS.bob, "other", USERS.bob);
    expect((await openAccount("other", USERS.bob)).uid).to.equal(survivor);
    expect((await openAccount("dev", USERS.bob)).releases.map((r) => r.clientId).sort()).to.deep.equal([APPS.a!.client_id, APPS.b!.client_id].sort());
  });

  it("a recovery account proves no wallet for a merge", async function () {
    const view = await openAccount("dev", USERS.bob);
    const began = Date.now();
    const link = await driver.beginTransaction(view.sessionToken, TransactionKind.LINK, "other", { recovery: true });
    await driver.linkSubject(link.sessionToken, began, await upstream("other", USERS.carol, link.upstreamNonce, FORCED), view.uid, true);
    // Carol's own wallet, at the development provider; her Other OP account is Bob's recovery account.
    await login("dev", USERS.carol, "a");
    expect(await rejectionOf(merge("dev", USERS.carol, "other", USERS.carol))).to.be.instanceOf(RecoveryAccountOnly);
  });
});
