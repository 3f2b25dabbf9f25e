// docs/design.md §5, the attacks a compromised Orchestration (or anyone with a mesh
// certificate) can try against Token, Encryption and Storage. Each asserts the exact
// refusal and has an honest twin: the same call done rightly, which succeeds.

import { generateKeyPairSync } from "node:crypto";
import { expect } from "chai";
import { Code, createClient } from "@connectrpc/connect";
import { SignJWT, UnsecuredJWT } from "jose";
import { type ProtocolMesh, USERS, appRequest, startProtocolMesh } from "../support/protocol-mesh.js";
import type { AccessGrant } from "../../internal/gen/hello/token/v1/token_service_pb.js";
import { StorageService } from "../../internal/gen/hello/storage/v1/storage_service_pb.js";
import { storageErrors, storageRoutes } from "../../internal/components/storage/storage-service.js";
import { openPGliteStore } from "../../internal/components/storage/backend/pglite-store.js";
import { generateSigningKey } from "../../internal/protocol/signing-keys.js";
import { ACCESS_TOKEN, RECORD_TYPES } from "../../internal/protocol/tokens.js";
import type { DevUser } from "../../internal/dev/devop/dev-op.js";
import { loginContext } from "../../internal/components/orchestration/login-driver.js";
import { refusal } from "../support/refusal.js";
import { claimsOf, tamper } from "../support/tamper.js";
import { inMemory } from "../support/in-memory.js";


describe("attacks on the protocol (docs/design.md §5)", function () {
  this.timeout(120_000);
  let mesh: ProtocolMesh;

  /** A returning user's login, step by step, keeping every token and record. */
  async function returningUser(user: DevUser, app: "a" | "b") {
    const request = appRequest(app);
    const started = await mesh.token().createSession({
      request: { case: "parameters", value: { clientId: request.clientId, redirectUri: request.redirectUri, nonce: request.nonce, scope: request.scope, codeChallenge: request.codeChallenge } },
      providerId: "dev",
    });
    const upstream = await mesh.upstreamLogin(user, started.upstreamNonce);
    const authorized = await mesh.token().authorizeSubject({ sessionToken: started.sessionToken, opIdToken: upstream.idToken });
    const subjectRead = await mesh.encryption().readRecord({ accessToken: authorized.subjectRead!.accessToken });
    const subjectRecord = subjectRead.result.value as string;
    const authorizedUser = await mesh.token().authorizeUser({ sessionToken: authorized.sessionToken, subjectRecord, subjectReceipt: subjectRead.receipt });
    const read = async (grant: AccessGrant | undefined) => mesh.encryption().readRecord({ accessToken: grant!.accessToken });
    const wallet = await read(authorizedUser.walletRead);
    const release = await read(authorizedUser.releaseRead);
    return {
      request, started, upstream, authorized, subjectRecord, subjectReceipt: subjectRead.receipt, authorizedUser,
      walletRecord: wallet.result.value as string,
      walletReceipt: wallet.receipt,
      release: release.result,
      releaseReceipt: release.receipt,
    };
  }

  /** What MintIdToken takes of a returning user's login: the records and Storage's receipts for them. */
  const mintRecords = (login: Awaited<ReturnType<typeof returningUser>>) => ({
    subjectRecord: login.subjectRecord,
    releaseRecord: login.release.value as string,
    walletRecord: login.walletRecord,
    walletReceipt: login.walletReceipt,
    releaseReceipt: login.releaseReceipt,
  });

  before(async function () {
    mesh = await startProtocolMesh({ database: "pglite" });
    // Alice and Bob both exist and use app a.
    await mesh.login(USERS.alice, "a");
    await mesh.login(USERS.bob, "a");
  });
  after(async () => mesh?.close());

  describe("no ID Token without a fresh OP ID Token bound to the session's upstream nonce", function () {
    it("replaying an old OP ID Token in a new session is UNAUTHENTICATED (honest twin: a fresh one)", async function () {
      const old = await returningUser(USERS.alice, "a");
      const request = appRequest("a");
      const session = await mesh.driver.start(request, "dev");
      const replay = await refusal(mesh.token().authorizeSubject({ sessionToken: session.sessionToken, opIdToken: old.upstream.idToken }));
      expect(replay).to.deep.equal({ code: Code.Unauthenticated, message: "the OP ID Token is not valid: its nonce is not this session's upstream nonce" });
      const fresh = await mesh.upstreamLogin(USERS.alice, session.upstreamNonce);
      await mesh.token().authorizeSubject({ sessionToken: session.sessionToken, opIdToken: fresh.idToken });
    });

    it("an OP ID Token for another session's nonce is UNAUTHENTICATED (honest twin: its own session)", async function () {
      const first = await mesh.driver.start(appRequest("a"), "dev");
      const second = await mesh.driver.start(appRequest("a"), "dev");
      const forFirst = await mesh.upstreamLogin(USERS.alice, first.upstreamNonce);
      const crossed = await refusal(mesh.token().authorizeSubject({ sessionToken: second.sessionToken, opIdToken: forFirst.idToken }));
      expect(crossed.code).to.equal(Code.Unauthenticated);
      await mesh.token().authorizeSubject({ sessionToken: first.sessionToken, opIdToken: forFirst.idToken });
    });

    it("minting with a session that never saw an OP ID Token is FAILED_PRECONDITION; re-typing its step breaks its signature", async function () {
      const honest = await returningUser(USERS.alice, "a");
      const records = mintRecords(honest);
      const fresh = await mesh.driver.start(appRequest("a"), "dev");
      const early = await refusal(mesh.token().mintIdToken({ sessionToken: fresh.sessionToken, ...records }));
      expect(early).to.deep.equal({ code: Code.FailedPrecondition, message: 'this step needs a session at step "user", not "started"' });
      const promoted = tamper(fresh.sessionToken, (c) => { c.step = "user"; c.uid = "x"; });
      expect((await refusal(mesh.token().mintIdToken({ sessionToken: promoted, ...records }))).code).to.equal(Code.Unauthenticated);
      const minted = await mesh.token().mintIdToken({ sessionToken: honest.authorizedUser.sessionToken, ...records });
      expect(minted.idToken).to.be.a("string").and.not.equal("");
    });

    it("an OP ID Token from a provider Token does not allow is refused", async function () {
      const outsider = generateKeyPairSync("ed25519");
      const session = await mesh.driver.start(appRequest("a"), "dev");
      const forged = await new SignJWT({ nonce: session.upstreamNonce, email: "mallory@example.com" })
        .setProtectedHeader({ alg: "EdDSA", kid: "whatever" })
        .setIssuer(mesh.devOp.issuer).setSubject(USERS.alice.sub).setAudience("hello-mesh").setIssuedAt().setExpirationTime("5m")
        .sign(outsider.privateKey);
      const refused = await refusal(mesh.token().authorizeSubject({ sessionToken: session.sessionToken, opIdToken: forged }));
      expect(refused.code).to.equal(Code.Unauthenticated);
      expect(refused.message).to.match(/^the OP ID Token is not valid: /);
    });
  });

  describe("no other user's records, and no other session's Error Token, in a session", function () {
    it("another user's Subject Record in AuthorizeUser is PERMISSION_DENIED (honest twin: one's own)", async function () {
      const alice = await returningUser(USERS.alice, "a");
      const request = appRequest("a");
      const started = await mesh.driver.start(request, "dev");
      const bobUpstream = await mesh.upstreamLogin(USERS.bob, started.upstreamNonce);
      const bob = await mesh.token().authorizeSubject({ sessionToken: started.sessionToken, opIdToken: bobUpstream.idToken });
      const own = await mesh.encryption().readRecord({ accessToken: bob.subjectRead!.accessToken });
      // Alice's record, with her receipt or with Bob's: neither answers Bob's session's read of his subject.
      for (const subjectReceipt of [alice.subjectReceipt, own.receipt]) {
        expect(await refusal(mesh.token().authorizeUser({ sessionToken: bob.sessionToken, subjectRecord: alice.subjectRecord, subjectReceipt }))).to.deep.equal({
          code: Code.PermissionDenied,
          message: "the subject receipt does not show this subject record stored for this session",
        });
      }
      await mesh.token().authorizeUser({ sessionToken: bob.sessionToken, subjectRecord: own.result.value as string, subjectReceipt: own.receipt });
    });

    it("another user's Release or Wallet Record in MintIdToken is PERMISSION_DENIED", async function () {
      const alice = await returningUser(USERS.alice, "a");
      const bob = await returningUser(USERS.bob, "a");
      const bobRecords = mintRecords(bob);
      for (const releaseReceipt of [alice.releaseReceipt, bob.releaseReceipt]) {
        const withAlicesRelease = await refusal(mesh.token().mintIdToken({
          sessionToken: bob.authorizedUser.sessionToken, ...bobRecords, releaseRecord: alice.release.value as string, releaseReceipt,
        }));
        expect(withAlicesRelease).to.deep.equal({ code: Code.PermissionDenied, message: "the release receipt does not show this release record stored for this session" });
      }
      for (const walletReceipt of [alice.walletReceipt, bob.walletReceipt]) {
        const withAlicesWallet = await refusal(mesh.token().mintIdToken({
          sessionToken: bob.authorizedUser.sessionToken, ...bobRecords, walletRecord: alice.walletRecord, walletReceipt,
        }));
        expect(withAlicesWallet).to.deep.equal({ code: Code.PermissionDenied, message: "the wallet receipt does not show this wallet record stored for this session" });
      }
      const withAlicesSubject = await refusal(mesh.token().mintIdToken({
        sessionToken: bob.authorizedUser.sessionToken, ...bobRecords, subjectRecord: alice.subjectRecord,
      }));
      expect(withAlicesSubject.code).to.equal(Code.PermissionDenied);
      await mesh.token().mintIdToken({ sessionToken: bob.authorizedUser.sessionToken, ...bobRecords });
    });

    it("another session's Error Token in CreateRelease is PERMISSION_DENIED (honest twin: its own)", async function () {
      // Both alice and bob are new to app b: each read of their release yields an Error Token.
      const alice = await returningUser(USERS.alice, "b");
      const bob = await returningUser(USERS.bob, "b");
      expect(alice.release.case).to.equal("errorToken");
      const crossed = await refusal(mesh.token().createRelease({
        sessionToken: bob.authorizedUser.sessionToken, errorToken: alice.release.value as string, walletRecord: bob.walletRecord,
        walletReceipt: bob.walletReceipt, consentedClaims: ["email"],
      }));
      expect(crossed).to.deep.equal({ code: Code.PermissionDenied, message: "the error token does not answer this session's release read" });
      // and a subject-read Error Token is no CreateUser ticket for a user who exists
      const fakeAbsence = await refusal(mesh.token().createUser({ sessionToken: bob.authorized.sessionToken, errorToken: alice.release.value as string }));
      expect(fakeAbsence).to.deep.equal({ code: Code.PermissionDenied, message: "the error token does not answer this session's subject read" });
      // nor is a claim that is only a name on every object ("constructor") one the wallet holds
      for (const name of ["constructor", "toString", "__proto__"]) {
        const inherited = await refusal(mesh.token().createRelease({
          sessionToken: bob.authorizedUser.sessionToken, errorToken: bob.release.value as string, walletRecord: bob.walletRecord,
          walletReceipt: bob.walletReceipt, consentedClaims: ["email", name],
        }));
        expect(inherited.code, name).to.equal(Code.PermissionDenied);
      }
      const own = await mesh.token().createRelease({
        sessionToken: bob.authorizedUser.sessionToken, errorToken: bob.release.value as string, walletRecord: bob.walletRecord,
        walletReceipt: bob.walletReceipt, consentedClaims: ["email"],
      });
      expect(own.release?.record).to.be.a("string");
    });
  });

  describe("no claims of Orchestration's choosing", function () {
    it("a Wallet Record Orchestration signed itself is UNAUTHENTICATED", async function () {
      const bob = await returningUser(USERS.bob, "a");
      const own = generateSigningKey("record");
      const forgedWallet = await new SignJWT({ uid: claimsOf(bob.walletRecord).uid, claims: { email: "ceo@bank.example", email_verified: true }, subjects: [] })
        .setProtectedHeader({ alg: "EdDSA", kid: own.kid, typ: RECORD_TYPES.wallet.typ })
        .setIssuer(RECORD_TYPES.wallet.issuer).setAudience(RECORD_TYPES.wallet.audience).setIssuedAt()
        .sign(own.privateKey);
      const refused = await refusal(mesh.token().mintIdToken({ sessionToken: bob.authorizedUser.sessionToken, ...mintRecords(bob), walletRecord: forgedWallet }));
      expect(refused).to.deep.equal({ code: Code.Unauthenticated, message: "the wallet record is not valid: its key (kid) is not a known record key" });
    });

    it("claims slipped into the session are UNAUTHENTICATED: the session is Token-signed", async function () {
      const session = await mesh.driver.start(appRequest("a"), "dev");
      const upstream = await mesh.upstreamLogin(USERS.bob, session.upstreamNonce);
      const authorized = await mesh.token().authorizeSubject({ sessionToken: session.sessionToken, opIdToken: upstream.idToken });
      const padded = tamper(authorized.sessionToken, (c) => { (c.op_claims as Record<string, unknown>).email = "ceo@bank.example"; });
      const read = await mesh.encryption().readRecord({ accessToken: authorized.subjectRead!.accessToken });
      const refused = await refusal(mesh.token().authorizeUser({ sessionToken: padded, subjectRecord: read.result.value as string }));
      expect(refused).to.deep.equal({ code: Code.Unauthenticated, message: "the session token is not valid: its signature does not verify" });
    });

    it("releasing a claim the app did not ask for is PERMISSION_DENIED", async function () {
      const request = appRequest("b", "openid email");
      const started = await mesh.driver.start(request, "dev");
      const upstream = await mesh.upstreamLogin(USERS.alice, started.upstreamNonce);
      const outcome = await mesh.driver.continue(started.sessionToken, loginContext(request, Date.now()), upstream);
      if (outcome.kind !== "consent") return expect.fail("alice has no release at b yet, so consent comes first");
      const again = await mesh.token().grantReleaseRead({ sessionToken: outcome.state.sessionToken });
      const absent = await mesh.encryption().readRecord({ accessToken: again.releaseRead!.accessToken });
      const refused = await refusal(mesh.token().createRelease({
        sessionToken: again.sessionToken, errorToken: absent.result.value as string, walletRecord: outcome.state.walletRecord,
        walletReceipt: outcome.state.walletReceipt, consentedClaims: ["email", "name"],
      }));
      expect(refused).to.deep.equal({ code: Code.PermissionDenied, message: 'the app did not ask for the claim "name"' });
      const done = await mesh.driver.consent(outcome.state, ["email"]);
      expect(done.idToken).to.be.a("string");
    });
  });

  describe("no read or write without the right Access Token", function () {
    async function subjectReadGrant(user: DevUser) {
      const session = await mesh.driver.start(appRequest("a"), "dev");
      const upstream = await mesh.upstreamLogin(user, session.upstreamNonce);
      return (await mesh.token().authorizeSubject({ sessionToken: session.sessionToken, opIdToken: upstream.idToken })).subjectRead!;
    }

    it("no token at all is INVALID_ARGUMENT; Orchestration calling Storage directly is PERMISSION_DENIED", async function () {
      expect(await refusal(mesh.encryption().readRecord({ accessToken: "" }))).to.deep.equal({
        code: Code.InvalidArgument, message: "the access token is not valid: it is missing",
      });
      const grant = await subjectReadGrant(USERS.alice);
      expect((await refusal(mesh.storage("orchestration").readRecord({ accessToken: grant.accessToken }))).code).to.equal(Code.PermissionDenied);
      expect((await refusal(mesh.storage("token").readRecord({ accessToken: grant.accessToken }))).code).to.equal(Code.PermissionDenied);
      await mesh.storage("encryption").readRecord({ accessToken: grant.accessToken });
    });

    it("a read token used to create, update or delete is PERMISSION_DENIED", async function () {
      const grant = await subjectReadGrant(USERS.alice);
      expect(await refusal(mesh.encryption().createRecord({ accessToken: grant.accessToken, record: "x" }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the access token grants read, not create",
      });
      expect((await refusal(mesh.encryption().deleteRecord({ accessToken: grant.accessToken }))).code).to.equal(Code.PermissionDenied);
      expect((await refusal(mesh.storage().updateRecord({ accessToken: grant.accessToken, keyId: "k", ciphertext: new Uint8Array(30), expectedVersion: 1n }))).code).to.equal(Code.PermissionDenied);
      const read = await mesh.encryption().readRecord({ accessToken: grant.accessToken });
      expect(read.result.case).to.equal("record");
    });

    it("an Access Token re-aimed at another hash or kind fails its signature", async function () {
      const alice = await subjectReadGrant(USERS.alice);
      const bob = await subjectReadGrant(USERS.bob);
      for (const change of [(c: Record<string, unknown>) => void (c.hash = bob.hash), (c: Record<string, unknown>) => void (c.kind = "wallet")]) {
        const reaimed = tamper(alice.accessToken, change);
        expect(await refusal(mesh.encryption().readRecord({ accessToken: reaimed }))).to.deep.equal({
          code: Code.Unauthenticated, message: "the access token is not valid: its signature does not verify",
        });
        expect((await refusal(mesh.storage().readRecord({ accessToken: reaimed }))).code).to.equal(Code.Unauthenticated);
      }
    });

    it("alg none, a re-typed Session Token and an unknown kid are UNAUTHENTICATED at Storage and Encryption", async function () {
      const grant = await subjectReadGrant(USERS.alice);
      const claims = claimsOf(grant.accessToken);
      const none = new UnsecuredJWT(claims).encode();
      const session = (await mesh.driver.start(appRequest("a"), "dev")).sessionToken;
      const stranger = generateSigningKey("access");
      const unknownKid = await new SignJWT(claims).setProtectedHeader({ alg: "EdDSA", kid: stranger.kid, typ: ACCESS_TOKEN.typ }).sign(stranger.privateKey);
      for (const forged of [none, session, unknownKid]) {
        expect((await refusal(mesh.storage().readRecord({ accessToken: forged }))).code).to.equal(Code.Unauthenticated);
        expect((await refusal(mesh.encryption().readRecord({ accessToken: forged }))).code).to.equal(Code.Unauthenticated);
      }
    });

    it("an expired Access Token is UNAUTHENTICATED at Storage (honest twin: the same token while fresh)", async function () {
      // The real Storage handler with its clock 2 minutes ahead, given a real Token-minted token.
      const grant = await subjectReadGrant(USERS.alice);
      const store = await openPGliteStore({});
      const tokenBundleKeys = mesh.tokenKeys;
      const errorKey = generateSigningKey("error");
      const at = (offsetMs: number) =>
        createClient(StorageService, inMemory(storageRoutes({ store, tokenKeys: tokenBundleKeys, errorKey, receiptKey: generateSigningKey("receipt"), now: () => new Date(Date.now() + offsetMs) }), storageErrors));
      try {
        const fresh = await at(0).readRecord({ accessToken: grant.accessToken });
        expect(fresh.result.case).to.equal("errorToken"); // this empty store has no record
        expect(await refusal(at(120_000).readRecord({ accessToken: grant.accessToken }))).to.deep.equal({
          code: Code.Unauthenticated, message: "the access token is not valid: it has expired",
        });
      } finally {
        await store.close();
      }
    });

    it("a record that is not the one its create token was minted for is PERMISSION_DENIED at Encryption", async function () {
      // Carol is new here: CreateUser grants the creation of her wallet and subject records.
      const session = await mesh.driver.start(appRequest("a"), "dev");
      const upstream = await mesh.upstreamLogin(USERS.carol, session.upstreamNonce);
      const authorized = await mesh.token().authorizeSubject({ sessionToken: session.sessionToken, opIdToken: upstream.idToken });
      const absent = await mesh.encryption().readRecord({ accessToken: authorized.subjectRead!.accessToken });
      expect(absent.result.case).to.equal("errorToken");
      const made = await mesh.token().createUser({ sessionToken: authorized.sessionToken, errorToken: absent.result.value as string });
      const swapped = await refusal(mesh.encryption().createRecord({ accessToken: made.wallet!.grant!.accessToken, record: made.subject!.record }));
      expect(swapped).to.deep.equal({ code: Code.PermissionDenied, message: "the record is not the one the access token was issued for" });
      // honest twin: each record with its own grant, wallet first, subject last
      await mesh.encryption().createRecord({ accessToken: made.wallet!.grant!.accessToken, record: made.wallet!.record });
      await mesh.encryption().createRecord({ accessToken: made.subject!.grant!.accessToken, record: made.subject!.record });
      // and a create token is single use: replaying it at Storage is refused
      const replay = await refusal(mesh.storage().createRecord({ accessToken: made.subject!.grant!.accessToken, keyId: "k", ciphertext: new Uint8Array(40) }));
      expect(replay.code).to.equal(Code.PermissionDenied);
    });
  });
});
