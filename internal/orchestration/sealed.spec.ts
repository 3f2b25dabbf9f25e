import { createHash, randomBytes } from "node:crypto";
import { expect } from "chai";
import { FlowSealer, MemoryStore, SecretKeyedStore } from "./sealed.js";

describe("Orchestration's sealed transient state (DESIGN.md §8)", function () {
  it("flow state opens only with the key, for its purpose, before it expires, untampered", function () {
    const sealer = new FlowSealer(randomBytes(32));
    const sealed = sealer.seal("login", { session: "s" }, 60);
    expect(sealer.open("login", sealed)).to.deep.equal({ session: "s" });
    expect(sealer.open("consent", sealed)).to.equal(undefined);
    expect(new FlowSealer(randomBytes(32)).open("login", sealed)).to.equal(undefined);
    expect(sealer.open("login", sealed, Date.now() + 61_000)).to.equal(undefined);
    const bytes = Buffer.from(sealed, "base64url");
    bytes[20]! ^= 1;
    expect(sealer.open("login", bytes.toString("base64url"))).to.equal(undefined);
    expect(Buffer.from(sealed, "base64url").toString("latin1")).to.not.include("session");
  });

  it("a code's entry is stored under its hash, holds nothing readable, and is redeemed once", async function () {
    const shared = new MemoryStore();
    const written: Array<{ key: string; value: Buffer }> = [];
    const recording = { ...shared, get: shared.get.bind(shared), take: shared.take.bind(shared), claim: shared.claim.bind(shared),
      put: async (key: string, value: Buffer, ttl: number) => { written.push({ key, value }); await shared.put(key, value, ttl); } };
    const codes = new SecretKeyedStore<{ idToken: string }>(recording, "code");
    const code = await codes.issue({ idToken: "the-id-token" }, 60);
    expect(written).to.have.length(1);
    expect(written[0]!.key).to.equal(`code:${createHash("sha256").update(code).digest("base64url")}`);
    expect(written[0]!.key).to.not.include(code);
    expect(written[0]!.value.toString("latin1")).to.not.include("the-id-token");
    expect(await codes.redeem(code)).to.deep.equal({ idToken: "the-id-token" });
    expect(await codes.redeem(code)).to.equal(undefined);
  });

  it("a wrong code opens nothing, even with the right storage key", async function () {
    const shared = new MemoryStore();
    const codes = new SecretKeyedStore<{ idToken: string }>(shared, "code");
    const code = await codes.issue({ idToken: "t" }, 60);
    expect(await codes.read(`${code}x`)).to.equal(undefined);
    expect(await codes.read(code)).to.deep.equal({ idToken: "t" });
  });

  it("a claim holds until it expires; a second claim of a live key fails", async function () {
    const shared = new MemoryStore();
    expect(await shared.claim("assertion:app:1", 50)).to.equal(true);
    expect(await shared.claim("assertion:app:1", 60_000)).to.equal(false);
    await new Promise((r) => setTimeout(r, 80));
    expect(await shared.claim("assertion:app:1", 60_000)).to.equal(true);
  });
});
