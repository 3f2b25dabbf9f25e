// docs/design.md §5, "Orchestration forks a user", played by a compromised Orchestration (the
// test, with Orchestration's certificate and lookup key) against two Token replicas,
// alternating between them: Token keeps no state, so neither replica can remember that
// an Error Token was used, or which of two users it made was stored. What stops the fork
// is Storage: the create that relies on an Error Token spends it, and Token takes a
// record into a session only with Storage's receipt for this session's own grant.
// Each refusal is exact, and has an honest twin that succeeds.

import { expect } from "chai";
import { Code } from "@connectrpc/connect";
import { type ProtocolMesh, USERS, appRequest, startProtocolMesh } from "../support/protocol-mesh.js";
import { DEFAULT_DEV_USERS, type DevUser } from "../../internal/dev/devop/dev-op.js";
import type { CreateUserResponse } from "../../internal/gen/hello/token/v1/token_service_pb.js";
import { verify } from "../../internal/protocol/jws.js";
import { RECORD_TYPES, type SubjectRecord } from "../../internal/protocol/tokens.js";
import { refusal } from "../support/refusal.js";

const ERIN: DevUser = { sub: "erin-0006", email: "erin@example.org", email_verified: true, name: "Erin Example", password: "erin" };

describe("a rogue Orchestration cannot fork a user, even across Token replicas (docs/design.md §5; issue 11, item 3)", function () {
  this.timeout(180_000);
  let mesh: ProtocolMesh;
  /** Token replica 0 or 1, as Orchestration. */
  const token = (replica: number) => mesh.token("orchestration", replica);

  before(async () => {
    mesh = await startProtocolMesh({ database: "pglite", tokenReplicas: 2, users: [...DEFAULT_DEV_USERS, ERIN] });
  });
  after(async () => mesh?.close());

  /** A session at `replica` that has read `user`'s subject: the read's answer and the session. */
  async function subjectRead(user: DevUser, replica: number, app: "a" | "b" = "a") {
    const session = await token(replica).createSession({
      request: { case: "parameters", value: { ...parameters(app) } },
      providerId: "dev",
    });
    const upstream = await mesh.upstreamLogin(user, session.upstreamNonce);
    const authorized = await token(1 - replica).authorizeSubject({ sessionToken: session.sessionToken, opIdToken: upstream.idToken });
    const read = await mesh.encryption().readRecord({ accessToken: authorized.subjectRead!.accessToken });
    return { sessionToken: authorized.sessionToken, read };
  }

  function parameters(app: "a" | "b") {
    const r = appRequest(app);
    return { clientId: r.clientId, redirectUri: r.redirectUri, nonce: r.nonce, scope: r.scope, codeChallenge: r.codeChallenge, claims: "", prompt: "" };
  }

  const subjectOf = async (record: string) => (await verify<SubjectRecord>(RECORD_TYPES.subject, mesh.tokenKeys(), record, "subject record")).claims;

  async function write(made: CreateUserResponse) {
    const wallet = await mesh.encryption().createRecord({ accessToken: made.wallet!.grant!.accessToken, record: made.wallet!.record });
    const subject = await mesh.encryption().createRecord({ accessToken: made.subject!.grant!.accessToken, record: made.subject!.record });
    return { wallet: wallet.receipt, subject: subject.receipt };
  }

  it("one Error Token at both replicas makes two users' records, but only one can be written: Storage spends the Error Token", async function () {
    const erin = await subjectRead(ERIN, 0);
    expect(erin.read.result.case).to.equal("errorToken");
    const errorToken = erin.read.result.value as string;
    // Both replicas accept the same Error Token for the same session: neither can know.
    const first = await token(0).createUser({ sessionToken: erin.sessionToken, errorToken });
    const second = await token(1).createUser({ sessionToken: erin.sessionToken, errorToken });
    const [uid1, uid2] = [(await subjectOf(first.subject!.record)).uid, (await subjectOf(second.subject!.record)).uid];
    expect(uid1).to.not.equal(uid2);

    // The second user's wallet can be written (an unreachable orphan), its subject not:
    // the subject's create relies on the Error Token, which the first create spent.
    const receipts = await write(first);
    await mesh.encryption().createRecord({ accessToken: second.wallet!.grant!.accessToken, record: second.wallet!.record });
    expect(await refusal(mesh.encryption().createRecord({ accessToken: second.subject!.grant!.accessToken, record: second.subject!.record })))
      .to.deep.equal({ code: Code.PermissionDenied, message: "storage: the error token this create relies on was already used" });

    // The second session cannot commit with the first's receipts, at either replica.
    for (const replica of [0, 1]) {
      expect(await refusal(token(replica).commitUser({ sessionToken: second.sessionToken, walletReceipt: receipts.wallet, subjectReceipt: receipts.subject })))
        .to.deep.equal({ code: Code.PermissionDenied, message: "the wallet receipt does not answer this session's wallet create" });
    }
    // Honest twin: the first commits, at the other replica.
    const committed = await token(1).commitUser({ sessionToken: first.sessionToken, walletReceipt: receipts.wallet, subjectReceipt: receipts.subject });
    expect(committed.sessionToken).to.be.a("string");
  });

  it("the unwritten user's Subject Record is worth nothing later: AuthorizeUser takes only the stored one, with Storage's receipt for this session's read", async function () {
    // Another Error Token replay, this time keeping the loser's Subject Record for later.
    const login = await subjectRead(USERS.carol, 1);
    expect(login.read.result.case).to.equal("errorToken");
    const winner = await token(1).createUser({ sessionToken: login.sessionToken, errorToken: login.read.result.value as string });
    const kept = await token(0).createUser({ sessionToken: login.sessionToken, errorToken: login.read.result.value as string });
    await write(winner);

    // Later, a new login of Carol: the rogue hides the stored record and presents the kept one.
    for (const replica of [0, 1]) {
      const later = await subjectRead(USERS.carol, replica);
      expect(later.read.result.case).to.equal("record");
      expect(await refusal(token(replica).authorizeUser({ sessionToken: later.sessionToken, subjectRecord: kept.subject!.record, subjectReceipt: later.read.receipt })))
        .to.deep.equal({ code: Code.PermissionDenied, message: "the subject receipt does not show this subject record stored for this session" });
      expect(await refusal(token(replica).authorizeUser({ sessionToken: later.sessionToken, subjectRecord: kept.subject!.record, subjectReceipt: "" })))
        .to.deep.equal({ code: Code.InvalidArgument, message: "the subject receipt is required: Storage's receipt for this session's subject read" });
      // A receipt for another session's read of the same record does not serve either.
      const other = await subjectRead(USERS.carol, 1 - replica);
      expect(await refusal(token(replica).authorizeUser({ sessionToken: later.sessionToken, subjectRecord: later.read.result.value as string, subjectReceipt: other.read.receipt })))
        .to.deep.equal({ code: Code.PermissionDenied, message: "the subject receipt does not show this subject record stored for this session" });
      // Honest twin: the stored record with this session's receipt.
      const user = await token(replica).authorizeUser({ sessionToken: later.sessionToken, subjectRecord: later.read.result.value as string, subjectReceipt: later.read.receipt });
      expect(user.walletRead!.hash).to.be.a("string");
      expect((await subjectOf(later.read.result.value as string)).uid).to.equal((await subjectOf(winner.subject!.record)).uid);
    }
  });

  it("a release Error Token replayed at both replicas makes one release: the second create is refused, whichever comes first", async function () {
    await mesh.login(USERS.alice, "a"); // Alice exists, and has no release at b
    const login = await subjectRead(USERS.alice, 0, "b");
    const user = await token(1).authorizeUser({
      sessionToken: login.sessionToken, subjectRecord: login.read.result.value as string, subjectReceipt: login.read.receipt,
    });
    const [wallet, release] = await Promise.all([
      mesh.encryption().readRecord({ accessToken: user.walletRead!.accessToken }),
      mesh.encryption().readRecord({ accessToken: user.releaseRead!.accessToken }),
    ]);
    expect(release.result.case).to.equal("errorToken");
    const ask = (replica: number) => token(replica).createRelease({
      sessionToken: user.sessionToken, errorToken: release.result.value as string, walletRecord: wallet.result.value as string,
      walletReceipt: wallet.receipt, consentedClaims: ["email"],
    });
    const [one, two] = [await ask(0), await ask(1)];
    for (const made of [one, two]) {
      await mesh.encryption().createRecord({ accessToken: made.reservation!.grant!.accessToken, record: made.reservation!.record });
    }
    await mesh.encryption().createRecord({ accessToken: two.release!.grant!.accessToken, record: two.release!.record });
    expect(await refusal(mesh.encryption().createRecord({ accessToken: one.release!.grant!.accessToken, record: one.release!.record })))
      .to.deep.equal({ code: Code.PermissionDenied, message: "storage: the error token this create relies on was already used" });
  });
});
