import { createHash, randomBytes } from "node:crypto";
import { expect } from "chai";
import { MeshMetrics } from "../../observability/metrics/registry.js";
import { seriesValue } from "../../observability/metrics/exposition.js";
import { FlowSealer, MemoryStore, SecretKeyedStore } from "./sealed.js";
import { codeReuseRaces } from "../../../test/support/code-reuse.js";

describe("Orchestration's sealed transient state (docs/design.md §8)", function () {
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

  it("what the store holds is published by kind at each scrape, expired entries until swept, with no key or value in it", async function () {
    const store = new MemoryStore();
    const metrics = new MeshMetrics({ processMetrics: false });
    metrics.observeState("orchestration", () => store.stats());
    const codes = new SecretKeyedStore<{ idToken: string }>(store, "code");
    const tokens = new SecretKeyedStore<{ scope: string }>(store, "access-token");
    const first = await codes.issue({ idToken: "the-id-token" }, 60); // the first put sweeps; the next sweep is a second away
    await codes.issue({ idToken: "another" }, 60);
    const token = await tokens.issue({ scope: "openid email" }, 600);
    await store.claim("assertion:app-jwt:jti-0123456789", 360_000);
    await store.put("alice@example.com:unexpected", Buffer.from("x"), 60_000); // a prefix nobody chose: "other"
    await store.put("code:gone", Buffer.from("y"), -1); // expired, but in memory until the sweep
    await store.put("code:gone", Buffer.from("yy"), -1); // a second put replaces it, counted once

    const read = async () => (await metrics.exposition()).text;
    const series = (text: string, name: string, kind: string) => seriesValue(text, name, { component: "orchestration", kind });
    let text = await read();
    expect(series(text, "hello_state_entries", "code")).to.equal(3);
    expect(series(text, "hello_state_entries", "access-token")).to.equal(1);
    expect(series(text, "hello_state_entries", "assertion")).to.equal(1);
    expect(series(text, "hello_state_entries", "other")).to.equal(1);
    const tokenKey = `access-token:${createHash("sha256").update(token).digest("base64url")}`;
    const sealed = (await store.get(tokenKey))!;
    expect(series(text, "hello_state_bytes", "access-token")).to.equal(tokenKey.length + sealed.length + 470); // key, sealed value, the entry's overhead
    for (const secret of [first, token, "the-id-token", "alice", "jti-0123456789", "app-jwt"]) expect(text).to.not.include(secret);

    await codes.redeem(first);
    expect(series(await read(), "hello_state_entries", "code")).to.equal(2);
    await new Promise((r) => setTimeout(r, 1_010));
    await store.put("assertion:app-jwt:another", Buffer.alloc(0), 60_000); // the next put sweeps
    text = await read();
    expect(series(text, "hello_state_entries", "code")).to.equal(1);
    expect(series(text, "hello_state_entries", "assertion")).to.equal(2);
  });

  describe("a code used twice revokes what its first redemption issued (RFC 6749 §4.1.2), in one process's store", function () {
    const shared = new MemoryStore();
    codeReuseRaces(() => ({ a: shared, b: shared }));
  });
});
