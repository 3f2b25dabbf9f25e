// The credential wallet's record rules (wallet-records.ts), pure: what Token mints and
// Orchestration re-applies. Each rule beside its honest twin.
//
//   applyStatus          monotonic: a terminal status never moves; a new verification
//                        only with mayAdd; the same status again is no change
//   addInstances         only for an APPROVED verification, of its approved
//                        configurations, 1..MAX distinct and never twice
//   holdingsWithSession  at most MAX_SESSIONS
//   delivered/confirmed  the issuer's JWE only; confirmed only once delivered
//   statusReported       the issuer's status; UNLINKED/CANCELLED terminal, without ciphertext
//   sameRecord           key order and the JWS's iss/aud/iat aside

import { expect } from "chai";
import type { CredentialRecord, HoldingsRecord, S2sSessionRecord } from "./tokens.js";
import {
  MAX_INSTANCES_PER_VERIFICATION,
  MAX_SESSIONS,
  TERMINAL_CREDENTIAL_STATUSES,
  TERMINAL_VERIFICATION_STATUSES,
  WalletRecordError,
  addInstances,
  applyStatus,
  confirmed,
  delivered,
  holdingsWithInstances,
  holdingsWithSession,
  holdingsWithoutInstance,
  metadataRefreshed,
  newCredential,
  sameRecord,
  statusReported, rejected } from "./wallet-records.js";

const SID = "0b5e2c4e-9f4a-4f0e-8a57-6a0c8f1b2d3e";
const ISSUER = "https://issuer.example";
const WSK = { kty: "EC", crv: "P-256", x: "x", y: "y" } as S2sSessionRecord["wsk"];

const session = (over: Partial<S2sSessionRecord> = {}): S2sSessionRecord => ({
  issuer: ISSUER, session_id: SID, uid: "u1", jkt: "j1", wsk: WSK, created: 100, verifications: [], instances: [], ...over,
});
const status = (verificationId: string, s: string, extra: { credentialConfigurationIds?: string[]; reasonCode?: string } = {}) => ({
  sessionId: SID, verificationId, status: s, ...extra,
});
/** The rule's refusal: a WalletRecordError and its words. */
function refused(apply: () => unknown): string {
  try {
    apply();
  } catch (error) {
    expect(error).to.be.instanceOf(WalletRecordError);
    return (error as Error).message;
  }
  return expect.fail("the rule accepted the change");
}

describe("wallet-records: the credential wallet's record rules (internal/protocol/wallet-records.ts)", function () {
  describe("applyStatus", function () {
    it("honest: a user's call adds a verification; the issuer moves a non-terminal one on", function () {
      const added = applyStatus(session(), status("v1", "PENDING"), 200, true)!;
      expect(added.verifications).to.deep.equal([{ verification_id: "v1", status: "PENDING", credential_configuration_ids: [], updated: 200 }]);
      const approved = applyStatus(added, status("v1", "APPROVED", { credentialConfigurationIds: ["pid"] }), 300, false)!;
      expect(approved.verifications).to.deep.equal([{ verification_id: "v1", status: "APPROVED", credential_configuration_ids: ["pid"], updated: 300 }]);
      // REJECTED is not terminal (supplement may follow); its reason code is kept
      const rejected = applyStatus(added, status("v1", "REJECTED", { reasonCode: "BLURRY" }), 250, false)!;
      expect(rejected.verifications[0]).to.deep.equal({ verification_id: "v1", status: "REJECTED", credential_configuration_ids: [], reason_code: "BLURRY", updated: 250 });
      expect(applyStatus(rejected, status("v1", "PENDING"), 260, false)!.verifications[0]!.status).to.equal("PENDING");
    });

    it("a terminal status (APPROVED, DENIED, EXPIRED) never moves: no change, whatever follows", function () {
      expect([...TERMINAL_VERIFICATION_STATUSES].sort()).to.deep.equal(["APPROVED", "DENIED", "EXPIRED"]);
      for (const terminal of TERMINAL_VERIFICATION_STATUSES) {
        const s = session({ verifications: [{ verification_id: "v1", status: terminal, credential_configuration_ids: terminal === "APPROVED" ? ["pid"] : [], updated: 1 }] });
        for (const later of ["PENDING", "ADDITIONAL_INFO_REQUIRED", "REJECTED", "APPROVED", "DENIED", "EXPIRED"]) {
          const update = status("v1", later, { credentialConfigurationIds: ["other"], reasonCode: "LATE" });
          expect(applyStatus(s, update, 999, true), `${terminal} → ${later}`).to.equal(undefined);
          expect(applyStatus(s, update, 999, false), `${terminal} → ${later} (notice)`).to.equal(undefined);
        }
      }
    });

    it("a new verification only with mayAdd (the user's call), never from an issuer's notice", function () {
      expect(refused(() => applyStatus(session(), status("v9", "APPROVED", { credentialConfigurationIds: ["pid"] }), 1, false))).to.equal(
        "the status names a verification this session does not have",
      );
      expect(applyStatus(session(), status("v9", "APPROVED", { credentialConfigurationIds: ["pid"] }), 1, true)!.verifications).to.have.length(1);
    });

    it("the same status again is no change (undefined); another reason code is one", function () {
      const s = applyStatus(session(), status("v1", "REJECTED", { reasonCode: "A" }), 1, true)!;
      expect(applyStatus(s, status("v1", "REJECTED", { reasonCode: "A" }), 2, false)).to.equal(undefined);
      expect(applyStatus(s, status("v1", "REJECTED", { reasonCode: "B" }), 2, false)!.verifications[0]!.reason_code).to.equal("B");
      const pending = applyStatus(session(), status("v1", "PENDING"), 1, true)!;
      expect(applyStatus(pending, status("v1", "PENDING"), 2, true)).to.equal(undefined);
      // configuration ids count only for APPROVED: PENDING with some is still the same PENDING
      expect(applyStatus(pending, status("v1", "PENDING", { credentialConfigurationIds: ["pid"] }), 2, true)).to.equal(undefined);
    });

    it("a status for another session is refused; the record's JWS claims are dropped; other verifications are kept", function () {
      expect(refused(() => applyStatus(session(), { ...status("v1", "PENDING"), sessionId: "other" }, 1, true))).to.equal("the status is for another session");
      const signed = { ...session({ verifications: [{ verification_id: "v0", status: "DENIED", credential_configuration_ids: [], updated: 1 }] }), iss: "t", aud: "t", iat: 5 };
      const next = applyStatus(signed, status("v1", "PENDING"), 2, true)!;
      expect(next).to.not.have.any.keys("iss", "aud", "iat");
      expect(next.verifications.map((v) => v.verification_id)).to.deep.equal(["v0", "v1"]);
      expect(signed.verifications).to.have.length(1); // the input is not changed
    });
  });

  describe("addInstances", function () {
    const approved = (ids = ["pid", "mdl"]) =>
      session({ verifications: [{ verification_id: "v1", status: "APPROVED", credential_configuration_ids: ids, updated: 1 }] });

    it("honest: an APPROVED verification's instances of approved configurations", function () {
      const { session: next, added } = addInstances(approved(), "v1", [
        { credentialConfigurationId: "pid", credentialInstanceIds: ["i1", "i2"] },
        { credentialConfigurationId: "mdl", credentialInstanceIds: ["i3"] },
      ]);
      expect(added).to.deep.equal([
        { credential_instance_id: "i1", credential_configuration_id: "pid" },
        { credential_instance_id: "i2", credential_configuration_id: "pid" },
        { credential_instance_id: "i3", credential_configuration_id: "mdl" },
      ]);
      expect(next.instances).to.deep.equal(added.map((i) => ({ ...i, verification_id: "v1" })));
    });

    it("only for an APPROVED verification of the session", function () {
      const message = "instances are recorded only for an APPROVED verification of the session";
      const group = [{ credentialConfigurationId: "pid", credentialInstanceIds: ["i1"] }];
      expect(refused(() => addInstances(approved(), "v2", group))).to.equal(message);
      for (const s of ["PENDING", "ADDITIONAL_INFO_REQUIRED", "REJECTED", "DENIED", "EXPIRED"]) {
        const other = session({ verifications: [{ verification_id: "v1", status: s, credential_configuration_ids: ["pid"], updated: 1 }] });
        expect(refused(() => addInstances(other, "v1", group)), s).to.equal(message);
      }
    });

    it("only of a configuration the verification approved", function () {
      expect(refused(() => addInstances(approved(["pid"]), "v1", [
        { credentialConfigurationId: "pid", credentialInstanceIds: ["i1"] },
        { credentialConfigurationId: "mdl", credentialInstanceIds: ["i2"] },
      ]))).to.equal("an instance is of a configuration its verification did not approve");
    });

    it(`1 to ${MAX_INSTANCES_PER_VERIFICATION} distinct instances (twin: exactly ${MAX_INSTANCES_PER_VERIFICATION})`, function () {
      const message = `a provision makes 1 to ${MAX_INSTANCES_PER_VERIFICATION} distinct instances`;
      const ids = (n: number) => Array.from({ length: n }, (_, i) => `i${i}`);
      expect(refused(() => addInstances(approved(), "v1", []))).to.equal(message);
      expect(refused(() => addInstances(approved(), "v1", [{ credentialConfigurationId: "pid", credentialInstanceIds: [] }]))).to.equal(message);
      expect(refused(() => addInstances(approved(), "v1", [{ credentialConfigurationId: "pid", credentialInstanceIds: ids(MAX_INSTANCES_PER_VERIFICATION + 1) }]))).to.equal(message);
      expect(refused(() => addInstances(approved(), "v1", [{ credentialConfigurationId: "pid", credentialInstanceIds: ["i1", "i1"] }]))).to.equal(message);
      expect(refused(() => addInstances(approved(), "v1", [
        { credentialConfigurationId: "pid", credentialInstanceIds: ["i1"] },
        { credentialConfigurationId: "mdl", credentialInstanceIds: ["i1"] },
      ]))).to.equal(message);
      expect(addInstances(approved(), "v1", [{ credentialConfigurationId: "pid", credentialInstanceIds: ids(MAX_INSTANCES_PER_VERIFICATION) }]).added).to.have.length(MAX_INSTANCES_PER_VERIFICATION);
    });

    it("an instance is recorded once: the same id again (by this or another verification) is refused", function () {
      const once = addInstances(approved(), "v1", [{ credentialConfigurationId: "pid", credentialInstanceIds: ["i1"] }]).session;
      expect(refused(() => addInstances(once, "v1", [{ credentialConfigurationId: "pid", credentialInstanceIds: ["i1"] }]))).to.equal("an instance is recorded already");
      const two = { ...once, verifications: [...once.verifications, { verification_id: "v2", status: "APPROVED", credential_configuration_ids: ["pid"], updated: 2 }] };
      expect(refused(() => addInstances(two, "v2", [{ credentialConfigurationId: "pid", credentialInstanceIds: ["i1"] }]))).to.equal("an instance is recorded already");
      expect(addInstances(two, "v2", [{ credentialConfigurationId: "pid", credentialInstanceIds: ["i2"] }]).session.instances.map((i) => i.credential_instance_id)).to.deep.equal(["i1", "i2"]);
    });
  });

  describe("holdings", function () {
    it("holdingsWithSession: the first makes the holdings, later ones append; at most MAX_SESSIONS", function () {
      const first = holdingsWithSession(undefined, "u1", ISSUER, "s1");
      expect(first).to.deep.equal({ uid: "u1", sessions: [{ issuer: ISSUER, session_id: "s1" }] });
      const signed = { ...first, iss: "t", aud: "t", iat: 1 } as HoldingsRecord;
      const second = holdingsWithSession(signed, "u1", ISSUER, "s2");
      expect(second).to.deep.equal({ uid: "u1", sessions: [{ issuer: ISSUER, session_id: "s1" }, { issuer: ISSUER, session_id: "s2" }] });

      const sessions = (n: number) => Array.from({ length: n }, (_, i) => ({ issuer: ISSUER, session_id: `s${i}` }));
      expect(holdingsWithSession({ uid: "u1", sessions: sessions(MAX_SESSIONS - 1) }, "u1", ISSUER, "last").sessions).to.have.length(MAX_SESSIONS);
      expect(refused(() => holdingsWithSession({ uid: "u1", sessions: sessions(MAX_SESSIONS) }, "u1", ISSUER, "one-more"))).to.equal(
        `a wallet holds at most ${MAX_SESSIONS} S2S sessions`,
      );
    });

    it("holdingsWithoutInstance: only a credential that ended, of the holdings' user, that they list", function () {
      const credential = (status: string): CredentialRecord => ({ ...newCredential(session(), { credential_instance_id: "i1", credential_configuration_id: "pid" }, 10), status });
      const held = holdingsWithInstances(holdingsWithSession(undefined, "u1", ISSUER, SID), ISSUER, SID, ["i1", "i2"]);
      expect(holdingsWithoutInstance(held, credential("UNLINKED"))).to.deep.equal({ uid: "u1", sessions: [{ issuer: ISSUER, session_id: SID, instances: ["i2"] }] });
      expect(holdingsWithoutInstance(held, credential("CANCELLED")).sessions[0]!.instances).to.deep.equal(["i2"]);
      for (const status of ["ACTIVE", "IN_PROCESS", "SUSPENDED_WALLET", "SUSPENDED_ISSUER"]) {
        expect(refused(() => holdingsWithoutInstance(held, credential(status))), status).to.equal("only a credential that ended (UNLINKED or CANCELLED) is deleted: unlink it first");
      }
      expect(refused(() => holdingsWithoutInstance({ ...held, uid: "u2" }, credential("UNLINKED")))).to.equal("the holdings are another user's");
      const gone = holdingsWithoutInstance(held, credential("UNLINKED"));
      expect(refused(() => holdingsWithoutInstance(gone, credential("UNLINKED")))).to.equal("the holdings do not list this credential");
    });

    it("holdingsWithInstances: only a session the holdings list", function () {
      const h: HoldingsRecord = { uid: "u1", sessions: [{ issuer: ISSUER, session_id: "s1" }, { issuer: "https://other.example", session_id: "s1" }] };
      expect(holdingsWithInstances(h, ISSUER, "s1", ["i1"]).sessions).to.deep.equal([
        { issuer: ISSUER, session_id: "s1", instances: ["i1"] },
        { issuer: "https://other.example", session_id: "s1" },
      ]);
      expect(refused(() => holdingsWithInstances(h, ISSUER, "s2", ["i1"]))).to.equal("the holdings do not list this session");
    });
  });

  describe("credentials", function () {
    const credential = (): CredentialRecord =>
      newCredential(session(), { credential_instance_id: "i1", credential_configuration_id: "pid" }, 10);
    const answer = (credentials: { jwe?: string; origin: string; downloadUrl?: string }) => ({ credentialVersion: "1", credentials, credentialMetadata: { name: "PID" } });

    it("honest: IN_PROCESS, delivered with the issuer's JWE, then confirmed ACTIVE", function () {
      const made = credential();
      expect(made).to.deep.equal({ issuer: ISSUER, session_id: SID, credential_instance_id: "i1", credential_configuration_id: "pid", uid: "u1", jkt: "j1", status: "IN_PROCESS", updated: 10 });
      const got = delivered(made, answer({ jwe: "a.b.c.d.e", origin: "ISSUER" }), 20);
      expect(got).to.deep.equal({ ...made, version: "1", metadata: { name: "PID" }, credentials: { jwe: "a.b.c.d.e", origin: "ISSUER" }, updated: 20 });
      const active = confirmed(got, 30);
      expect(active).to.deep.equal({ ...got, status: "ACTIVE", updated: 30 });
      // confirmed again (after a refresh): no change of status (anything but IN_PROCESS stays), dated
      expect(confirmed({ ...active, status: "SUSPENDED_ISSUER" }, 40)).to.deep.equal({ ...active, status: "SUSPENDED_ISSUER", updated: 40 });
    });

    it("delivered refuses a content reference, or credentials of another origin", function () {
      const message = "the credentials must be the issuer's JWE (origin ISSUER), not a reference";
      expect(refused(() => delivered(credential(), answer({ origin: "ISSUER", downloadUrl: "https://issuer.example/x" }), 1))).to.equal(message);
      for (const origin of ["WALLET_SERVER", "WALLET_CLIENT", "issuer", ""]) {
        expect(refused(() => delivered(credential(), answer({ jwe: "a.b.c.d.e", origin }), 1)), origin).to.equal(message);
      }
    });

    it("a refresh's delivery is pending beside the good credentials: confirmed makes it the record's, rejected drops it; a first delivery rejected is undone; an end drops both", function () {
      const active = confirmed(delivered(credential(), answer({ jwe: "a.b.c.d.e", origin: "ISSUER" }), 20), 30);
      const refreshed = delivered(active, { credentialVersion: "2", credentials: { jwe: "f.g.h.i.j", origin: "ISSUER" }, credentialMetadata: { name: "PID v2" } }, 40);
      expect(refreshed).to.deep.equal({ ...active, pending: { version: "2", metadata: { name: "PID v2" }, credentials: { jwe: "f.g.h.i.j", origin: "ISSUER" } }, updated: 40 });
      expect(confirmed(refreshed, 50)).to.deep.equal({ ...active, version: "2", metadata: { name: "PID v2" }, credentials: { jwe: "f.g.h.i.j", origin: "ISSUER" }, updated: 50 });
      expect(rejected(refreshed, 50)).to.deep.equal({ ...active, updated: 50 });
      // A first delivery refused: as before it, IN_PROCESS with nothing delivered (the display data stays).
      const first = delivered(credential(), answer({ jwe: "a.b.c.d.e", origin: "ISSUER" }), 20);
      expect(rejected(first, 25)).to.deep.equal({ ...credential(), metadata: { name: "PID" }, updated: 25 });
      expect(refused(() => rejected(active, 60))).to.equal("only delivered credentials the client has not confirmed are refused");
      expect(refused(() => rejected(credential(), 60))).to.equal("only delivered credentials the client has not confirmed are refused");
      const ended = statusReported(refreshed, "UNLINKED", 70);
      expect(ended).to.not.have.property("credentials");
      expect(ended).to.not.have.property("pending");
    });

    it("confirmed only once delivered", function () {
      expect(refused(() => confirmed(credential(), 1))).to.equal("a credential is confirmed only once it was delivered");
    });

    it("metadataRefreshed: the display data only, once delivered; the credentials and their version stay", function () {
      expect(refused(() => metadataRefreshed(credential(), { credentialMetadata: { display: [] } }, 1))).to.equal(
        "display data is refreshed only once the credential was delivered",
      );
      const got = delivered(credential(), answer({ jwe: "a.b.c.d.e", origin: "ISSUER" }), 20);
      const refreshed = metadataRefreshed(got, { credentialMetadata: { display: [{ name: "New name" }] } }, 50);
      expect(refreshed).to.deep.equal({ ...got, metadata: { display: [{ name: "New name" }] }, updated: 50 });
      // No display data in the answer: only the time moves.
      expect(metadataRefreshed(got, {}, 60)).to.deep.equal({ ...got, updated: 60 });
    });

    it("statusReported: the issuer's status, dated; UNLINKED and CANCELLED end it for good and drop the ciphertext; UNKNOWN changes nothing", function () {
      const got = confirmed(delivered(credential(), answer({ jwe: "a.b.c.d.e", origin: "ISSUER" }), 20), 30);
      const suspended = statusReported(got, "SUSPENDED_WALLET", 40);
      expect(suspended).to.deep.equal({ ...got, status: "SUSPENDED_WALLET", updated: 40 });
      expect(statusReported(suspended, "ACTIVE", 50)).to.deep.equal({ ...got, status: "ACTIVE", updated: 50 });
      expect(statusReported(suspended, "UNKNOWN", 50), "UNKNOWN").to.deep.equal({ ...suspended, updated: 50 });
      for (const end of TERMINAL_CREDENTIAL_STATUSES) {
        const ended = statusReported(suspended, end, 60);
        const { credentials: _gone, ...kept } = suspended;
        expect(ended, end).to.deep.equal({ ...kept, status: end, updated: 60 });
        // A late or replayed answer never moves it back, whatever it says.
        for (const late of ["ACTIVE", "SUSPENDED_ISSUER", "IN_PROCESS", "UNLINKED", "CANCELLED"]) {
          expect(statusReported(ended, late, 70), `${end} then ${late}`).to.deep.equal({ ...ended, updated: 70 });
        }
      }
      expect(refused(() => statusReported(got, "REVOKED", 1))).to.equal("the status is not a credential status");
      // The record's JWS claims are not the record's.
      expect(statusReported({ ...got, iss: "t", aud: "o", iat: 1 } as CredentialRecord, "ACTIVE", 80)).to.deep.equal({ ...got, updated: 80 });
    });
  });

  describe("sameRecord", function () {
    it("ignores key order (nested too) and the JWS's iss, aud and iat; sees every other difference", function () {
      const a = { uid: "u1", sessions: [{ issuer: ISSUER, session_id: "s1", instances: ["i1"] }] };
      const b = { sessions: [{ instances: ["i1"], session_id: "s1", issuer: ISSUER }], uid: "u1", iss: "x", aud: "y", iat: 7 };
      expect(sameRecord(a, b)).to.equal(true);
      expect(sameRecord(b, a)).to.equal(true);
      expect(sameRecord(a, { ...a, uid: "u2" })).to.equal(false);
      expect(sameRecord(a, { ...a, exp: 1 })).to.equal(false);
      expect(sameRecord(a, { ...a, sessions: [{ issuer: ISSUER, session_id: "s1", instances: ["i1", "i2"] }] })).to.equal(false);
      // array order matters
      expect(sameRecord({ l: [1, 2] }, { l: [2, 1] })).to.equal(false);
      expect(sameRecord({ n: 1 }, { n: "1" })).to.equal(false);
    });
  });
});
