// Linking another provider's account to a wallet (issue 13, docs/transactions.md "Link a
// provider") through the four processes: the account then signs in as the same user,
// with the same sub at each app; an account of another wallet is never moved; and a
// link racing that account's first sign-in at an app ends with one of them.

import { expect } from "chai";
import { TransactionKind } from "../../internal/gen/hello/token/v1/token_service_pb.js";
import { AlreadyLinked, type LoginDriver, UnlinkRefused } from "../../internal/components/orchestration/login-driver.js";
import { type ProtocolMesh, USERS, startProtocolMesh } from "../support/protocol-mesh.js";
import { FORCED, type Provider, accountSteps } from "../support/account-steps.js";
import type { DevUser } from "../../internal/dev/devop/dev-op.js";
import { rejectionOf } from "../support/refusal.js";
import { PausePoints, pausableDriver } from "../support/pause-points.js";

describe("linking another account to a wallet, through the four processes (docs/transactions.md)", function () {
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

  const { upstream, login, openAccount } = accountSteps(() => mesh, () => driver);

  /** From `user`'s account page (signed in at `provider`), a link of `linked`'s account at `at`. */
  async function link(provider: Provider, user: DevUser, at: Provider, linked: DevUser) {
    const view = (await openAccount(provider, user))!;
    const began = Date.now();
    const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.LINK, at);
    await driver.linkSubject(tx.sessionToken, began, await upstream(at, linked, tx.upstreamNonce, FORCED), view.uid);
    return view;
  }

  it("Alice links her account at the other provider: it signs in as her, with her sub at each app; the page lists it, and when", async function () {
    const atA = await login("dev", USERS.alice, "a");
    const before = Date.now();
    const view = await link("dev", USERS.alice, "other", USERS.alice);
    const after = (await openAccount("other", USERS.alice))!;
    expect(after.uid, "the other account opens her wallet").to.equal(view.uid);
    const other = mesh.otherOp!.issuer;
    expect(after.wallet.subjects).to.deep.equal([{ iss: mesh.devOp.issuer, sub: USERS.alice.sub }, { iss: other, sub: USERS.alice.sub }]);
    expect(after.wallet.history).to.have.length(1);
    expect(after.wallet.history![0]).to.include({ kind: "link", iss: other });
    expect(after.wallet.history![0]!.at * 1000).to.be.within(before - 2000, Date.now() + 1000);
    // The claims are the wallet's, unchanged by the link.
    expect(after.wallet.claims).to.deep.equal(view.wallet.claims);
    // At app a, the other account is the same person: the same sub, no consent page.
    const viaOther = await login("other", USERS.alice, "a");
    expect(viaOther).to.deep.equal({ sub: atA.sub, newUser: false });
  });

  it("an account linked already, to this wallet or to another, is refused, and nothing changes (a subject is never moved)", async function () {
    await login("dev", USERS.bob, "a");
    const aliceBefore = (await openAccount("dev", USERS.alice))!;
    // Her other account again: linked already, to her.
    const mine = await rejectionOf(link("dev", USERS.alice, "other", USERS.alice));
    expect(mine).to.be.instanceOf(AlreadyLinked).and.have.property("mine", true);
    // Bob's account at the dev provider, which is Bob's wallet's: not moved to Alice.
    const theirs = await rejectionOf(link("dev", USERS.alice, "dev", USERS.bob));
    expect(theirs).to.be.instanceOf(AlreadyLinked).and.have.property("mine", false);
    const aliceAfter = (await openAccount("dev", USERS.alice))!;
    expect(aliceAfter.wallet).to.deep.equal(aliceBefore.wallet);
    expect((await openAccount("dev", USERS.bob))!.wallet.subjects).to.deep.equal([{ iss: mesh.devOp.issuer, sub: USERS.bob.sub }]);
  });

  it("a link racing the account's own first sign-in at an app: whichever writes the Subject Record first wins, and the link moves nothing after", async function () {
    await login("dev", USERS.carol, "a");
    const view = (await openAccount("dev", USERS.carol))!;
    const pause = points.hold("link-writing");
    // Carol's link of her other account has read that subject (no wallet holds it) and has Token's writes ready...
    const began = Date.now();
    const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.LINK, "other");
    const linking = driver.linkSubject(tx.sessionToken, began, await mesh.otherLogin(USERS.carol, tx.upstreamNonce, FORCED), view.uid);
    await pause.reached;
    // ...when the other account signs in at app b for the first time: a wallet of its own.
    const own = await login("other", USERS.carol, "b");
    expect(own.newUser).to.equal(true);
    pause.go();
    expect(await rejectionOf(linking)).to.be.instanceOf(AlreadyLinked).and.have.property("mine", false);
    // The link's wallet update went with its failed subject create: Carol's wallet is as it was.
    const after = (await openAccount("dev", USERS.carol))!;
    expect(after.wallet.subjects).to.deep.equal(view.wallet.subjects);
    expect(after.wallet.history ?? []).to.deep.equal([]);
    // And the other account keeps its own wallet, and its own sub at app b.
    expect((await login("other", USERS.carol, "b"))).to.deep.equal({ sub: own.sub, newUser: false });
  });

  it("deleting a wallet with a linked account removes both Subject Records: each account's next sign-in starts a new user", async function () {
    // Alice's wallet holds her accounts at both providers (the first test linked them).
    const atA = await login("other", USERS.alice, "a");
    const view = (await openAccount("other", USERS.alice))!;
    expect(view.wallet.subjects).to.have.length(2);
    const began = Date.now();
    const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.DELETE, "other");
    await driver.deleteWallet(tx.sessionToken, began, await mesh.otherLogin(USERS.alice, tx.upstreamNonce, FORCED), view.uid);
    expect(await openAccount("dev", USERS.alice)).to.equal(undefined);
    expect(await openAccount("other", USERS.alice)).to.equal(undefined);
    const again = await login("dev", USERS.alice, "a");
    expect(again.newUser).to.equal(true);
    expect(again.sub).to.not.equal(atA.sub);
  });

  it("Bob unlinks an account, confirming with another: it then signs in to a wallet of its own; his last account cannot be unlinked", async function () {
    const atA = await login("dev", USERS.bob, "a");
    await link("dev", USERS.bob, "other", USERS.bob);
    expect((await login("other", USERS.bob, "a")).sub, "linked: the same person").to.equal(atA.sub);
    const other = { iss: mesh.otherOp!.issuer, sub: USERS.bob.sub };
    const unlink = async (confirmAt: Provider, target: { iss: string; sub: string }) => {
      const view = (await openAccount("dev", USERS.bob))!;
      const began = Date.now();
      const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.UNLINK, confirmAt, { unlink: target });
      await driver.unlinkSubject(tx.sessionToken, began, await upstream(confirmAt, USERS.bob, tx.upstreamNonce, FORCED), view.uid, target);
      return view;
    };
    // Confirming with the account to unlink itself is refused, before Token is asked.
    expect(await rejectionOf(unlink("other", other))).to.be.instanceOf(UnlinkRefused);
    const view = await unlink("dev", other);
    const after = (await openAccount("dev", USERS.bob))!;
    expect(after.wallet.subjects).to.deep.equal([{ iss: mesh.devOp.issuer, sub: USERS.bob.sub }]);
    expect(after.wallet.history!.map((h) => [h.kind, h.iss])).to.deep.equal([["link", other.iss], ["unlink", other.iss]]);
    expect(after.uid).to.equal(view.uid);
    // The other account is nobody's now: its next sign-in at the app is a new user, with another sub.
    const alone = await login("other", USERS.bob, "a");
    expect(alone.newUser).to.equal(true);
    expect(alone.sub).to.not.equal(atA.sub);
    // Bob's dev account is his wallet's last: unlinking it is refused (deleting the wallet is the way).
    const mine = { iss: mesh.devOp.issuer, sub: USERS.bob.sub };
    expect(await rejectionOf(unlink("other", mine)), "the other account is no longer Bob's wallet's").to.have.property("name", "NotLinked");
    expect((await login("dev", USERS.bob, "a")).sub).to.equal(atA.sub);
  });

  it("Alice takes details from one of her accounts: the chosen claims, with email's verification, their source and a history entry", async function () {
    await login("dev", USERS.alice, "a");
    const view = (await openAccount("dev", USERS.alice))!;
    const began = Date.now();
    const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.CLAIMS, "dev");
    const { state, wallet } = await driver.openClaims(tx.sessionToken, began, await mesh.upstreamLogin(USERS.alice, tx.upstreamNonce, FORCED), view.uid);
    expect(wallet.claims).to.deep.equal(view.wallet.claims);
    await driver.updateClaims(state, ["email"]);
    const after = (await openAccount("dev", USERS.alice))!;
    expect(after.wallet.claims).to.deep.equal(view.wallet.claims);
    expect(after.wallet.sources).to.deep.equal({ email: mesh.devOp.issuer, email_verified: mesh.devOp.issuer });
    expect(after.wallet.history!.map((h) => h.kind)).to.deep.equal(["claims"]);
    // A stale choice (the wallet moved on since it was read) writes nothing.
    expect(await rejectionOf(driver.updateClaims(state, ["name"]))).to.have.property("name", "WalletChanged");
  });
});
