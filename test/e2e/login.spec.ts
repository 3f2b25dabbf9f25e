// The login of docs/design.md §4 across the real mesh: four processes on mutual TLS, a real
// upstream OP, and the database behind Storage — on PGlite and on PostgreSQL.

import { expect } from "chai";
import { type ProtocolMesh, USERS, appRequest, startProtocolMesh } from "../support/protocol-mesh.js";
import { claimsOf } from "../support/tamper.js";

for (const database of ["pglite", "postgres"] as const) {
  describe(`the login across four components (docs/design.md §4) on ${database}`, function () {
    this.timeout(120_000);
    let mesh: ProtocolMesh;
    before(async () => (mesh = await startProtocolMesh({ database })));
    after(async () => mesh?.close());

    it("a new user's first login returns an ID Token whose sub is a directed identifier", async function () {
      const first = await mesh.login(USERS.alice, "a");
      expect(first.newUser).to.equal(true);
      expect(first.claims).to.include({ email: USERS.alice.email, name: USERS.alice.name, email_verified: true });
      expect(first.claims.sub).to.be.a("string").and.not.equal(USERS.alice.sub);
    });

    it("the same upstream subject at the same app gets the same sub; a second app gets another", async function () {
      const again = await mesh.login(USERS.alice, "a");
      const other = await mesh.login(USERS.alice, "b");
      const third = await mesh.login(USERS.alice, "a");
      expect(again.newUser).to.equal(false);
      expect(other.newUser).to.equal(false);
      expect(third.claims.sub).to.equal(again.claims.sub);
      expect(other.claims.sub).to.not.equal(again.claims.sub);
      // Nor is any sub the internal user id (read from alice's Subject Record).
      const session = await mesh.driver.start(appRequest("a"), "dev");
      const upstream = await mesh.upstreamLogin(USERS.alice, session.upstreamNonce);
      const authorized = await mesh.token().authorizeSubject({ sessionToken: session.sessionToken, opIdToken: upstream.idToken });
      const read = await mesh.encryption().readRecord({ accessToken: authorized.subjectRead!.accessToken });
      const uid = claimsOf(read.result.value as string).uid as string;
      for (const sub of [again.claims.sub, other.claims.sub]) {
        expect(sub).to.not.equal(USERS.alice.sub);
        expect(sub).to.not.equal(uid);
      }
    });

    it("ID Tokens are RS256 by default, ES256 or EdDSA for clients that registered them", async function () {
      expect((await mesh.login(USERS.alice, "a")).alg).to.equal("RS256");
      expect((await mesh.login(USERS.alice, "es")).alg).to.equal("ES256");
      expect((await mesh.login(USERS.alice, "ed")).alg).to.equal("EdDSA");
    });

    it("another upstream subject is another user", async function () {
      const alice = await mesh.login(USERS.alice, "a");
      const bob = await mesh.login(USERS.bob, "a");
      expect(bob.claims.sub).to.not.equal(alice.claims.sub);
      expect(bob.claims.email).to.equal(USERS.bob.email);
    });

    it("the Subject Record is the commit point: a crash after the wallet write leaves no user, and the next login makes one", async function () {
      // Carol's first login dies between its two writes (wallet done, subject not).
      const request = appRequest("a");
      const started = await mesh.driver.start(request, "dev");
      const upstream = await mesh.upstreamLogin(USERS.carol, started.upstreamNonce);
      const authorized = await mesh.token().authorizeSubject({ sessionToken: started.sessionToken, opIdToken: upstream.idToken });
      const absent = await mesh.encryption().readRecord({ accessToken: authorized.subjectRead!.accessToken });
      const made = await mesh.token().createUser({ sessionToken: authorized.sessionToken, errorToken: absent.result.value as string });
      await mesh.encryption().createRecord({ accessToken: made.wallet!.grant!.accessToken, record: made.wallet!.record });
      // ...crash. The orphaned wallet is unreachable: nothing maps carol's subject to it.
      const retry = await mesh.login(USERS.carol, "a");
      expect(retry.newUser).to.equal(true);
      const returning = await mesh.login(USERS.carol, "a");
      expect(returning.newUser).to.equal(false);
      expect(returning.claims.sub).to.equal(retry.claims.sub);
    });

    it("an app gets only the claims the user released to it", async function () {
      const bobAtB = await mesh.login(USERS.bob, "b", ["email"]);
      expect(bobAtB.claims.email).to.equal(USERS.bob.email);
      expect(bobAtB.claims).to.not.have.property("name");
      expect(JSON.parse(bobAtB.userinfoJson)).to.deep.equal({ sub: bobAtB.claims.sub, email: USERS.bob.email });
      // and the release is remembered: the next login shows no consent and releases the same
      const again = await mesh.login(USERS.bob, "b");
      expect(again.claims).to.not.have.property("name");
      expect(again.claims.sub).to.equal(bobAtB.claims.sub);
    });
  });
}
