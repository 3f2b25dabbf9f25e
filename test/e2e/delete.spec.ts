// Deleting a wallet (issue 13, docs/transactions.md "Delete") through the four processes
// on a real PostgreSQL: what is left in the database afterwards, counted by hash; a new
// sign-in of the same subject as a new user; a delete that stops after its commit point,
// finished by the next sign-in; and sign-ins racing a delete at injected pause points.

import { expect } from "chai";
import pg from "pg";
import { TransactionKind } from "../../internal/gen/hello/token/v1/token_service_pb.js";
import { type LoginDriver, WalletChanged, WalletDeleted, loginContext } from "../../internal/components/orchestration/login-driver.js";
import { releaseHash, reservationHash, subjectHash, walletHash } from "../../internal/protocol/lookup-key.js";
import { APPS, type ProtocolMesh, USERS, appRequest, startProtocolMesh } from "../support/protocol-mesh.js";
import type { DevUser } from "../../internal/dev/devop/dev-op.js";
import { rejectionOf } from "../support/refusal.js";
import { PausePoints, pausableDriver } from "../support/pause-points.js";

/** The provider made to ask again, as the account page and every transaction have it. */
const FORCED = { prompt: "login" };

describe("deleting a wallet, through the four processes (docs/transactions.md)", function () {
  this.timeout(60_000);
  let mesh: ProtocolMesh;
  let db: pg.Client;
  const points = new PausePoints();
  let driver: LoginDriver;

  before(async function () {
    this.timeout(120_000);
    mesh = await startProtocolMesh({ database: "postgres" });
    db = new pg.Client({ connectionString: mesh.postgres!.url });
    await db.connect();
    driver = pausableDriver(mesh, points);
  });
  afterEach(() => points.clear());
  after(async () => {
    await db?.end();
    await mesh?.close();
  });

  /** The account page's sign-in, through the driver: the wallet as stored, or undefined. */
  async function openAccount(user: DevUser) {
    const began = Date.now();
    const account = await driver.startAccount("dev");
    return driver.openAccount(account.sessionToken, began, await mesh.upstreamLogin(user, account.upstreamNonce, FORCED));
  }

  /** The delete, confirmed with `confirmer`'s fresh sign-in (the wallet's own user, unless an attack says otherwise). */
  async function deleteWallet(user: DevUser, confirmer = user) {
    const view = (await openAccount(user))!;
    const began = Date.now();
    const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.DELETE, "dev");
    await driver.deleteWallet(tx.sessionToken, began, await mesh.upstreamLogin(confirmer, tx.upstreamNonce, FORCED), view.uid);
    return view;
  }

  /** A login of `user` at `app`, through this spec's driver (so that its pause points apply). */
  async function login(user: DevUser, app: keyof typeof APPS) {
    const request = appRequest(app);
    const began = Date.now();
    const started = await driver.start(request, "dev");
    const first = await driver.continue(started.sessionToken, loginContext(request, began), await mesh.upstreamLogin(user, started.upstreamNonce));
    return first.kind === "consent" ? driver.consent(first.state, Object.keys(first.wallet.claims), first.newUser) : first;
  }

  /** The rows Storage holds, by hash: kind and version. */
  async function rows(): Promise<Map<string, { kind: string; version: number }>> {
    const { rows } = await db.query<{ hash: string; kind: string; version: string }>("SELECT hash, kind, version FROM records");
    return new Map(rows.map((r) => [r.hash, { kind: r.kind, version: Number(r.version) }]));
  }

  /** Every hash a wallet's records are kept under: its subject, wallet and releases, and the reservations of its directed ids. */
  function hashesOf(uid: string, user: DevUser, subs: Record<string, string>) {
    const k = mesh.lookupKey;
    return {
      owned: [
        subjectHash(k, mesh.devOp.issuer, user.sub),
        walletHash(k, uid),
        ...Object.values(APPS).map((a) => releaseHash(k, uid, a.client_id)),
      ],
      reservations: Object.entries(subs).map(([clientId, sub]) => reservationHash(k, clientId, sub)),
    };
  }

  it("removes every Subject, Wallet and Release Record of the wallet; its reservations stay as tombstones; a new sign-in is a new user", async function () {
    const a = await mesh.login(USERS.alice, "a");
    const b = await mesh.login(USERS.alice, "b");
    const bob = await mesh.login(USERS.bob, "a");
    const view = (await openAccount(USERS.alice))!;
    expect(view.releases.map((r) => r.clientId).sort()).to.deep.equal([APPS.a!.client_id, APPS.b!.client_id]);
    const hashes = hashesOf(view.uid, USERS.alice, { [APPS.a!.client_id]: String(a.claims.sub), [APPS.b!.client_id]: String(b.claims.sub) });
    const before = await rows();
    // Alice's subject, wallet and her two releases (the third app never saw her), and two reservations.
    expect(hashes.owned.filter((h) => before.has(h))).to.have.length(4);
    for (const h of hashes.reservations) expect(before.get(h)).to.deep.equal({ kind: "reservation", version: 1 });

    await deleteWallet(USERS.alice);

    const after = await rows();
    expect(hashes.owned.filter((h) => after.has(h)), "no record of the wallet is left").to.deep.equal([]);
    // Each reservation is still there, written over once: a tombstone, so no one is ever given that id again.
    for (const h of hashes.reservations) expect(after.get(h)).to.deep.equal({ kind: "reservation", version: 2 });
    expect(after.size, "nothing else went, and nothing came").to.equal(before.size - 4);

    // The account page finds no wallet, and the next sign-in at an app starts a new one, with a new sub.
    expect(await openAccount(USERS.alice)).to.equal(undefined);
    const again = await mesh.login(USERS.alice, "a");
    expect(again.newUser).to.equal(true);
    expect(again.claims.sub).to.not.equal(a.claims.sub);
    // Bob is untouched: the same sub at the same app.
    expect((await mesh.login(USERS.bob, "a")).claims.sub).to.equal(bob.claims.sub);
  });

  it("a delete confirmed at an account of another wallet deletes nothing (NotLinked, before Token is asked)", async function () {
    await mesh.login(USERS.bob, "a");
    await mesh.login(USERS.alice, "a");
    const before = await rows();
    expect(await rejectionOf(deleteWallet(USERS.alice, USERS.bob))).to.have.property("name", "NotLinked");
    expect(await rows()).to.deep.equal(before);
    expect(await openAccount(USERS.alice)).to.not.equal(undefined);
  });

  it("a delete that stops after its commit point is finished by the next sign-in of the wallet, which then starts afresh", async function () {
    const first = await mesh.login(USERS.alice, "a");
    const view = (await openAccount(USERS.alice))!;
    const hashes = hashesOf(view.uid, USERS.alice, { [APPS.a!.client_id]: String(first.claims.sub) });
    // The delete's Orchestration stops right after the deletion record is stored, as a crash would.
    points.on("deletion-stored", async () => {
      throw new Error("crashed");
    });
    expect(await rejectionOf(deleteWallet(USERS.alice))).to.have.property("message", "crashed");
    expect((await rows()).has(hashes.owned[0]!), "the subject is still there").to.equal(true);

    // No sign-in gets into a wallet being deleted: the first one finishes the delete and says so.
    expect(await rejectionOf(login(USERS.alice, "a"))).to.be.instanceOf(WalletDeleted);
    const after = await rows();
    expect(hashes.owned.filter((h) => after.has(h))).to.deep.equal([]);
    expect(after.get(hashes.reservations[0]!)).to.deep.equal({ kind: "reservation", version: 2 });
    const again = await login(USERS.alice, "a");
    expect(again.newUser).to.equal(true);
  });

  describe("a sign-in racing a delete ends in a consistent state", function () {
    it("a sign-in that read its Subject Record before the delete ran ends with WalletDeleted, and leaves nothing behind", async function () {
      await mesh.login(USERS.alice, "a");
      const view = (await openAccount(USERS.alice))!;
      const pause = points.hold("subject-read");
      const racing = login(USERS.alice, "a");
      await pause.reached;
      // The delete runs to its end while the sign-in waits between its subject read and AuthorizeUser.
      const began = Date.now();
      const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.DELETE, "dev");
      await driver.deleteWallet(tx.sessionToken, began, await mesh.upstreamLogin(USERS.alice, tx.upstreamNonce, FORCED), view.uid);
      pause.go();
      expect(await rejectionOf(racing)).to.be.instanceOf(WalletDeleted);
      const after = await rows();
      expect(hashesOf(view.uid, USERS.alice, {}).owned.filter((h) => after.has(h))).to.deep.equal([]);
    });

    it("a sign-in during a delete paused after its commit point finishes that delete; the delete then ends without error", async function () {
      await mesh.login(USERS.alice, "a");
      points.on("deletion-stored", async () => {
        // The racing sign-in meets the deletion record, and finishes the delete itself.
        expect(await rejectionOf(login(USERS.alice, "a"))).to.be.instanceOf(WalletDeleted);
      });
      const view = await deleteWallet(USERS.alice);
      const after = await rows();
      expect(hashesOf(view.uid, USERS.alice, {}).owned.filter((h) => after.has(h))).to.deep.equal([]);
      expect((await login(USERS.alice, "a")).newUser).to.equal(true);
    });

    it("a consent about to write its release when a delete runs to its end writes nothing: its release and reservation land with the wallet or not at all", async function () {
      await mesh.login(USERS.alice, "a");
      const view = (await openAccount(USERS.alice))!;
      const reservations = async () => [...(await rows()).values()].filter((r) => r.kind === "reservation").length;
      const reservedBefore = await reservations();
      const pause = points.hold("release-writing");
      // Alice consents at app b (a new release) and stops just before writing it.
      const consenting = login(USERS.alice, "b");
      await pause.reached;
      const began = Date.now();
      const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.DELETE, "dev");
      await driver.deleteWallet(tx.sessionToken, began, await mesh.upstreamLogin(USERS.alice, tx.upstreamNonce, FORCED), view.uid);
      pause.go();
      expect(await rejectionOf(consenting)).to.be.instanceOf(WalletChanged);
      // Nothing of Alice is left, not even the release at app b the consent had ready.
      const after = await rows();
      expect(hashesOf(view.uid, USERS.alice, {}).owned.filter((h) => after.has(h))).to.deep.equal([]);
      expect(await reservations(), "no reservation of the consent's new directed id: app a's stays, as a tombstone").to.equal(reservedBefore);
    });

    it("a delete about to write its commit point when a consent lands deletes nothing; the next delete removes the new release too", async function () {
      const first = await mesh.login(USERS.alice, "a");
      const view = (await openAccount(USERS.alice))!;
      const pause = points.hold("deletion-writing");
      const began = Date.now();
      const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.DELETE, "dev");
      const deleting = driver.deleteWallet(tx.sessionToken, began, await mesh.upstreamLogin(USERS.alice, tx.upstreamNonce, FORCED), view.uid);
      await pause.reached;
      // Meanwhile Alice consents at app b: her release there lands, with the wallet rewritten.
      const atB = await login(USERS.alice, "b");
      pause.go();
      expect(await rejectionOf(deleting)).to.be.instanceOf(WalletChanged);
      const hashes = hashesOf(view.uid, USERS.alice, { [APPS.a!.client_id]: String(first.claims.sub) });
      const kept = await rows();
      expect(hashes.owned.filter((h) => kept.has(h)), "subject, wallet, and both releases").to.have.length(4);
      expect((await login(USERS.alice, "b")).idToken, "the user signs in at b as before").to.be.a("string");

      await deleteWallet(USERS.alice);
      const after = await rows();
      expect(hashes.owned.filter((h) => after.has(h))).to.deep.equal([]);
      expect(atB.newUser).to.equal(false);
    });
  });

  it("an app that forgets the user: its release is gone, its directed id a tombstone, and its next login asks again and sees a new user (other apps unchanged)", async function () {
    const atA = await mesh.login(USERS.bob, "a");
    const atB = await mesh.login(USERS.bob, "b");
    const view = (await openAccount(USERS.bob))!;
    const k = mesh.lookupKey;
    const before = await rows();
    const reservation = reservationHash(k, APPS.a!.client_id, String(atA.claims.sub));
    expect(before.get(reservation)).to.deep.equal({ kind: "reservation", version: 1 });
    const began = Date.now();
    const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.RELEASE, "dev", { clientId: APPS.a!.client_id });
    await driver.changeRelease(tx.sessionToken, began, await mesh.upstreamLogin(USERS.bob, tx.upstreamNonce, FORCED), view.uid, APPS.a!.client_id, { forget: true });
    const after = await rows();
    expect(after.has(releaseHash(k, view.uid, APPS.a!.client_id)), "app a's release").to.equal(false);
    expect(after.get(reservation), "its directed id, a tombstone").to.deep.equal({ kind: "reservation", version: 2 });
    const again = await login(USERS.bob, "a");
    expect(again.newUser).to.equal(false);
    expect(JSON.parse(again.userinfoJson).sub).to.not.equal(atA.claims.sub);
    expect((await mesh.login(USERS.bob, "b")).claims.sub).to.equal(atB.claims.sub);
    expect((await openAccount(USERS.bob))!.wallet.history!.map((h) => [h.kind, h.client_id])).to.deep.equal([["release", APPS.a!.client_id]]);
  });
});
