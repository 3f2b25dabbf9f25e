// The code-reuse races (RFC 6749 §4.1.2: a second redemption revokes what the first
// issued), run against any SharedStore: two replicas' views of one store, each able to
// stop one of its own store operations at a gate until the test opens it. The races
// are ordered by these gates, never by timing.

import { expect } from "chai";
import { AuthorizationCodes, SecretKeyedStore, type SharedStore } from "../../internal/components/orchestration/sealed.js";

type Op = "put" | "get" | "take" | "claim";

/** `store`, whose next operation matching a pause waits until the test releases it. */
export class GatedStore implements SharedStore {
  #pause: { op: Op; match: (key: string) => boolean; reached: () => void; released: Promise<void> } | undefined;

  constructor(private readonly store: SharedStore) {}

  /** Stops the next `op` on a key that `match`es; `reached` resolves once it is waiting. */
  pauseAt(op: Op, match: (key: string) => boolean): { reached: Promise<void>; release(): void } {
    let reached!: () => void;
    let release!: () => void;
    const arrived = new Promise<void>((resolve) => (reached = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    this.#pause = { op, match, reached, released };
    return { reached: arrived, release };
  }

  async #gate(op: Op, key: string) {
    const pause = this.#pause;
    if (!pause || pause.op !== op || !pause.match(key)) return;
    this.#pause = undefined;
    pause.reached();
    await pause.released;
  }

  async put(key: string, value: Buffer, ttlMs: number) {
    await this.#gate("put", key);
    return this.store.put(key, value, ttlMs);
  }
  async get(key: string) {
    await this.#gate("get", key);
    return this.store.get(key);
  }
  async take(key: string) {
    await this.#gate("take", key);
    return this.store.take(key);
  }
  async claim(key: string, ttlMs: number) {
    await this.#gate("claim", key);
    return this.store.claim(key, ttlMs);
  }
}

/**
 * Registers the races as tests. `replicas()` gives two views of one shared store (two
 * connections to one database, or the same memory store twice).
 */
export function codeReuseRaces(replicas: () => { a: SharedStore; b: SharedStore }): void {
  function setup() {
    const { a, b } = replicas();
    const gatedA = new GatedStore(a);
    const gatedB = new GatedStore(b);
    /** Replica A's and B's code stores, and B's access tokens. */
    const codesA = new AuthorizationCodes<{ id_token: string }>(gatedA, 60);
    const codesB = new AuthorizationCodes<{ id_token: string }>(gatedB, 60);
    const tokens = new SecretKeyedStore<{ scope: string }>(b, "access-token");
    return {
      gatedA,
      gatedB,
      codesA,
      tokens,
      /** A code issued at A and redeemed at B, which has issued an access token (not yet said). */
      async firstRedemption() {
        const code = await codesA.issue({ id_token: "t" });
        const won = await codesB.redeem(code);
        expect(won?.entry).to.deep.equal({ id_token: "t" });
        return { code, won: won!, token: await tokens.issue({ scope: "openid" }, 600) };
      },
    };
  }
  const isMarker = (name: string) => (key: string) => key.startsWith(`code:${name}:`);

  it("honest twin: a code redeemed once keeps its access token", async function () {
    const { tokens, firstRedemption } = setup();
    const { won, token } = await firstRedemption();
    expect(await won.issued(tokens.keyOf(token))).to.equal(true);
    expect(await tokens.read(token)).to.deep.equal({ scope: "openid" });
  });

  it("a second redemption, later, finds nothing and revokes the first one's access token", async function () {
    const { codesA, tokens, firstRedemption } = setup();
    const { code, won, token } = await firstRedemption();
    expect(await won.issued(tokens.keyOf(token))).to.equal(true);
    expect(await codesA.redeem(code)).to.equal(undefined);
    expect(await tokens.read(token), "the first redemption's access token").to.equal(undefined);
  });

  it("race: the second redemption ends before the first has said what it issued; the first sees it and revokes its own token", async function () {
    const { gatedB, codesA, tokens, firstRedemption } = setup();
    const { code, won, token } = await firstRedemption();
    // The winner stops just before it leaves its "redeemed" marker...
    const pause = gatedB.pauseAt("put", isMarker("redeemed"));
    const winner = won.issued(tokens.keyOf(token));
    await pause.reached;
    // ...while the second redemption runs to its end: it finds no marker to act on.
    expect(await codesA.redeem(code)).to.equal(undefined);
    expect(await tokens.read(token), "nothing named the token yet").to.deep.equal({ scope: "openid" });
    pause.release();
    expect(await winner, "the winner's answer: the code was used twice").to.equal(false);
    expect(await tokens.read(token)).to.equal(undefined);
  });

  it("race: the first redemption ends while the second is under way; the second sees it and revokes the token", async function () {
    const { gatedA, codesA, tokens, firstRedemption } = setup();
    const { code, won, token } = await firstRedemption();
    // The second redemption has found the entry gone and stops before its "burned" marker...
    const pause = gatedA.pauseAt("put", isMarker("burned"));
    const loser = codesA.redeem(code);
    await pause.reached;
    // ...while the winner finishes: no marker yet, so it hands the token out.
    expect(await won.issued(tokens.keyOf(token))).to.equal(true);
    expect(await tokens.read(token)).to.deep.equal({ scope: "openid" });
    pause.release();
    expect(await loser).to.equal(undefined);
    expect(await tokens.read(token), "revoked by the second redemption").to.equal(undefined);
  });

  /** Replica A's store, recording what is written to it. */
  function recorded() {
    const { a } = replicas();
    const writes: Array<{ key: string; value: Buffer }> = [];
    const store: SharedStore = {
      get: (key) => a.get(key),
      take: (key) => a.take(key),
      claim: (key, ttlMs) => a.claim(key, ttlMs),
      put: async (key, value, ttlMs) => {
        writes.push({ key, value });
        await a.put(key, value, ttlMs);
      },
    };
    return { store, writes };
  }

  it("the markers hold nothing readable: not the code, and not which access token it gave", async function () {
    const { store, writes } = recorded();
    const codes = new AuthorizationCodes<{ id_token: string }>(store, 60);
    const tokens = new SecretKeyedStore<{ scope: string }>(store, "access-token");
    const code = await codes.issue({ id_token: "the-id-token" });
    const won = (await codes.redeem(code))!;
    const token = await tokens.issue({ scope: "openid" }, 600);
    await won.issued(tokens.keyOf(token));
    expect(await codes.redeem(code)).to.equal(undefined);
    expect(writes.map((w) => w.key.replace(/:[^:]+$/, ""))).to.deep.equal(["code", "access-token", "code:redeemed", "code:burned"]);
    const tokenHash = tokens.keyOf(token).split(":")[1]!;
    for (const { key, value } of writes) {
      // The access token's own entry is stored under its hash; nothing else names it.
      for (const secret of [code, token, "the-id-token", ...(key.startsWith("access-token:") ? [] : [tokenHash])]) {
        expect(key).to.not.include(secret);
        expect(value.toString("latin1")).to.not.include(secret);
      }
    }
  });

  it("a malformed code is refused without writing anything", async function () {
    const { store, writes } = recorded();
    const codes = new AuthorizationCodes<{ id_token: string }>(store, 60);
    for (const junk of ["", "x", "a".repeat(44), `${"a".repeat(42)}!`]) expect(await codes.redeem(junk)).to.equal(undefined);
    expect(writes).to.deep.equal([]);
  });
}
