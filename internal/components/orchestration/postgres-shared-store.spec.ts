// Two Orchestration replicas sharing codes through PostgreSQL: a code issued by one is
// redeemed by the other, once, even when both try at the same moment; and a second
// redemption at either revokes what the first issued, whichever order they run in.

import { expect } from "chai";
import { type TestPostgres, startPostgres } from "../../../test/support/postgres-server.js";
import { type PostgresSharedStore, openPostgresSharedStore } from "./postgres-shared-store.js";
import { SecretKeyedStore } from "./sealed.js";
import { codeReuseRaces } from "../../../test/support/code-reuse.js";

describe("Orchestration's shared store on PostgreSQL (docs/design.md §8)", function () {
  this.timeout(60_000);
  let server: TestPostgres;
  let replicaA: PostgresSharedStore;
  let replicaB: PostgresSharedStore;
  before(async function () {
    server = await startPostgres();
    replicaA = await openPostgresSharedStore(server.url);
    replicaB = await openPostgresSharedStore(server.url);
  });
  after(async function () {
    await replicaA?.close();
    await replicaB?.close();
    await server?.stop();
  });

  it("a code issued at one replica is redeemed at the other, and only once", async function () {
    const a = new SecretKeyedStore<{ idToken: string }>(replicaA, "code");
    const b = new SecretKeyedStore<{ idToken: string }>(replicaB, "code");
    const code = await a.issue({ idToken: "t" }, 60);
    expect(await b.redeem(code)).to.deep.equal({ idToken: "t" });
    expect(await a.redeem(code)).to.equal(undefined);
  });

  it("two replicas redeeming one code at the same moment: exactly one gets it", async function () {
    const a = new SecretKeyedStore<{ idToken: string }>(replicaA, "code");
    const b = new SecretKeyedStore<{ idToken: string }>(replicaB, "code");
    for (let round = 0; round < 20; round++) {
      const code = await a.issue({ idToken: `t${round}` }, 60);
      const results = await Promise.all([a.redeem(code), b.redeem(code), a.redeem(code), b.redeem(code)]);
      expect(results.filter((r) => r !== undefined)).to.have.length(1);
    }
  });

  it("a claim (a client assertion's jti) succeeds at one replica only, even at the same moment", async function () {
    for (let round = 0; round < 20; round++) {
      const key = `assertion:app:${round}-${Date.now()}`;
      const results = await Promise.all([replicaA.claim(key, 60_000), replicaB.claim(key, 60_000), replicaA.claim(key, 60_000), replicaB.claim(key, 60_000)]);
      expect(results.filter(Boolean)).to.have.length(1);
    }
  });

  it("an expired claim can be claimed again; a live one cannot", async function () {
    const key = `assertion:app:expiring-${Date.now()}`;
    expect(await replicaA.claim(key, 50)).to.equal(true);
    expect(await replicaB.claim(key, 60_000)).to.equal(false);
    await new Promise((r) => setTimeout(r, 120));
    expect(await replicaB.claim(key, 60_000)).to.equal(true);
    expect(await replicaA.claim(key, 60_000)).to.equal(false);
  });

  it("an expired entry is neither read nor redeemed", async function () {
    const a = new SecretKeyedStore<{ idToken: string }>(replicaA, "access-token");
    const token = await a.issue({ idToken: "t" }, 0.05);
    await new Promise((r) => setTimeout(r, 120));
    expect(await a.read(token)).to.equal(undefined);
    expect(await a.redeem(token)).to.equal(undefined);
  });

  describe("a code used twice, at two replicas, revokes what its first redemption issued (RFC 6749 §4.1.2)", function () {
    codeReuseRaces(() => ({ a: replicaA, b: replicaB }));
  });
});
