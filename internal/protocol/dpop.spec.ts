// DPoP proofs (RFC 9449), attacked one by one: each attack beside its honest twin, and
// each refusal asserted by the check that made it.

import { expect } from "chai";
import { createHash, createHmac, createPrivateKey, createPublicKey, randomBytes, sign as cryptoSign } from "node:crypto";
import { calculateJwkThumbprint, decodeProtectedHeader, decodeJwt } from "jose";
import {
  DPOP_ALGS,
  DPOP_REASONS,
  DPOP_TYP,
  DpopError,
  type DpopKey,
  type DpopReplayCache,
  createDpopProof,
  generateDpopKey,
  jwkThumbprint,
  memoryDpopReplayCache,
  verifyDpopProof,
} from "./dpop.js";
import { rejectionOf } from "../../test/support/refusal.js";

const METHOD = "POST";
const URL_ = "https://wallet.hello.example/api/records";

const b64json = (value: unknown) => Buffer.from(JSON.stringify(value), "utf8").toString("base64url");
const nowSeconds = () => Math.floor(Date.now() / 1000);
/** base64url(SHA-256(text)), computed here rather than trusted from dpop.ts. */
const createHashB64 = (text: string) => createHash("sha256").update(text, "utf8").digest("base64url");

/** Signs `input` as `key` would for its alg (ECDSA as R || S). */
function signAs(key: DpopKey): (input: Buffer) => Buffer {
  const privateKey = createPrivateKey({ key: key.privateJwk as never, format: "jwk" });
  return (input) => cryptoSign(key.alg === "ES256" ? "sha256" : null, input, key.alg === "ES256" ? { key: privateKey, dsaEncoding: "ieee-p1363" } : privateKey);
}

/**
 * A proof made by hand, not by createDpopProof: honest by default (so its twin verifies),
 * with any header member or claim replaced, or removed by giving it as undefined.
 */
function craft(
  key: DpopKey,
  { header = {}, claims = {}, signer = signAs(key) }: { header?: Record<string, unknown>; claims?: Record<string, unknown>; signer?: (input: Buffer) => Buffer } = {},
): string {
  const input = `${b64json({ typ: DPOP_TYP, alg: key.alg, jwk: key.publicJwk, ...header })}.${b64json({
    jti: randomBytes(16).toString("base64url"),
    htm: METHOD,
    htu: URL_,
    iat: nowSeconds(),
    ...claims,
  })}`;
  return `${input}.${signer(Buffer.from(input, "ascii")).toString("base64url")}`;
}

/** Why verifyDpopProof refused: the DpopError's reason (any other error, or success, fails the test). */
async function reasonOf(call: Promise<unknown>): Promise<string> {
  const error = await rejectionOf(call, "verifying the proof");
  expect(error).to.be.instanceOf(DpopError);
  return (error as DpopError).reason;
}

describe("DPoP proofs (RFC 9449)", function () {
  const keys = {} as Record<"ES256" | "EdDSA", DpopKey>;
  let other: DpopKey;
  let replay: DpopReplayCache;
  /** Verifies `proof` for the honest request, with `expected` changed. */
  const verify = (proof: unknown, expected: Partial<Parameters<typeof verifyDpopProof>[1]> = {}) =>
    verifyDpopProof(proof, { method: METHOD, url: URL_, replay, ...expected });

  before(async function () {
    [keys.ES256, keys.EdDSA, other] = await Promise.all([generateDpopKey(), generateDpopKey("EdDSA"), generateDpopKey("ES256")]);
  });
  beforeEach(function () {
    replay = memoryDpopReplayCache();
  });

  for (const alg of DPOP_ALGS) {
    describe(`honest ${alg} proofs`, function () {
      it("a proof verifies and names its key's RFC 7638 thumbprint", async function () {
        const key = keys[alg];
        expect(key.alg).to.equal(alg);
        expect(key.privateJwk).to.have.property("d");
        expect(key.publicJwk).not.to.have.property("d");
        const proof = await createDpopProof(key, { method: METHOD, url: URL_ });
        expect(decodeProtectedHeader(proof)).to.deep.equal({ typ: "dpop+jwt", alg, jwk: key.publicJwk });
        const claims = decodeJwt(proof);
        expect(claims).to.include({ htm: METHOD, htu: URL_ });
        expect(claims).not.to.have.property("ath");

        const got = await verify(proof);
        expect(got.jkt).to.equal(await calculateJwkThumbprint(key.publicJwk, "sha256"));
        expect(got.jti).to.equal(claims.jti);
        expect(got.publicJwk).to.deep.equal(key.publicJwk);
      });

      it("a proof with an access token carries its ath and verifies with that token", async function () {
        const key = keys[alg];
        const accessToken = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln";
        const proof = await createDpopProof(key, { method: METHOD, url: URL_, accessToken });
        expect(decodeJwt(proof).ath).to.equal(createHashB64(accessToken));
        const got = await verify(proof, { accessToken });
        expect(got.jkt).to.equal(await calculateJwkThumbprint(key.publicJwk, "sha256"));
      });

      it("htu ignores the query and fragment and is compared normalised", async function () {
        const key = keys[alg];
        const proof = await createDpopProof(key, { method: "GET", url: "HTTPS://Wallet.Hello.Example:443/api/./records?mine=1#top" });
        expect(decodeJwt(proof).htu).to.equal(URL_);
        const got = await verify(proof, { method: "GET", url: `${URL_}?page=2&size=10` });
        expect(got.jkt).to.equal(await calculateJwkThumbprint(key.publicJwk, "sha256"));
      });
    });
  }

  describe("jwkThumbprint", function () {
    it("is jose's RFC 7638 SHA-256 thumbprint, of the public members only", async function () {
      for (const key of [keys.ES256, keys.EdDSA]) {
        const expected = await calculateJwkThumbprint(key.publicJwk, "sha256");
        expect(await jwkThumbprint(key.publicJwk)).to.equal(expected);
        expect(await jwkThumbprint(key.privateJwk)).to.equal(expected); // d is not hashed
        expect(await jwkThumbprint({ ...key.publicJwk, kid: "k", use: "sig" })).to.equal(expected);
      }
      expect(await jwkThumbprint(keys.ES256.publicJwk)).not.to.equal(await jwkThumbprint(other.publicJwk));
    });

    it("refuses a secret (oct) key: it has no public members", async function () {
      await rejectionOf(jwkThumbprint({ kty: "oct", k: "c2VjcmV0" }), "a thumbprint of an oct key");
    });
  });

  describe("refusals", function () {
    const es = () => keys.ES256;
    const ed = () => keys.EdDSA;

    it("the hand-made honest twin verifies (so each crafted attack fails for its change alone)", async function () {
      for (const key of [es(), ed()]) expect((await verify(craft(key))).jkt).to.equal(await jwkThumbprint(key.publicJwk));
    });

    it("a typ other than dpop+jwt", async function () {
      expect(await reasonOf(verify(craft(es(), { header: { typ: "JWT" } })))).to.equal("its typ header is not dpop+jwt");
      expect(await reasonOf(verify(craft(es(), { header: { typ: undefined } })))).to.equal(DPOP_REASONS.typ);
    });

    it("alg none (an unsecured JWS)", async function () {
      const unsigned = craft(es(), { header: { alg: "none" }, signer: () => Buffer.alloc(0) });
      expect(unsigned.endsWith(".")).to.equal(true);
      expect(await reasonOf(verify(unsigned))).to.equal("its alg is not allowed");
    });

    it("HS256 keyed with the public key's bytes (the key-confusion attack)", async function () {
      const publicBytes = createPublicKey({ key: es().publicJwk as never, format: "jwk" }).export({ format: "der", type: "spki" });
      for (const secret of [publicBytes, Buffer.from(JSON.stringify(es().publicJwk))]) {
        const forged = craft(es(), { header: { alg: "HS256" }, signer: (input) => createHmac("sha256", secret).update(input).digest() });
        expect(await reasonOf(verify(forged))).to.equal("its alg is not allowed");
      }
    });

    it("an alg that does not match its jwk's key type", async function () {
      // ES256 claimed over an Ed25519 key, signed by that key: the signature would verify as EdDSA
      expect(await reasonOf(verify(craft(ed(), { header: { alg: "ES256" } })))).to.equal("its alg does not match its jwk's key type");
      expect(await reasonOf(verify(craft(es(), { header: { alg: "EdDSA" } })))).to.equal(DPOP_REASONS.algKeyMismatch);
      expect(await reasonOf(verify(craft(es(), { header: { jwk: { ...es().publicJwk, crv: "P-384" } } })))).to.equal(DPOP_REASONS.algKeyMismatch);
      expect(await reasonOf(verify(craft(es(), { header: { jwk: { ...es().publicJwk, alg: "ES384" } } })))).to.equal(DPOP_REASONS.algKeyMismatch);
    });

    it("a private key in the header", async function () {
      expect(await reasonOf(verify(craft(es(), { header: { jwk: es().privateJwk } })))).to.equal("its jwk holds private key material");
      expect(await reasonOf(verify(craft(ed(), { header: { jwk: ed().privateJwk } })))).to.equal(DPOP_REASONS.privateJwk);
      for (const member of ["p", "q", "dp", "dq", "qi", "k"]) {
        expect(await reasonOf(verify(craft(es(), { header: { jwk: { ...es().publicJwk, [member]: "AQAB" } } })))).to.equal(DPOP_REASONS.privateJwk);
      }
    });

    it("no jwk, or a key named some other way", async function () {
      expect(await reasonOf(verify(craft(es(), { header: { jwk: undefined } })))).to.equal("its header has no jwk");
      expect(await reasonOf(verify(craft(es(), { header: { jwk: undefined, kid: "my-key" } })))).to.equal(DPOP_REASONS.noJwk);
      expect(await reasonOf(verify(craft(es(), { header: { jwk: undefined, x5c: ["MIIB"] } })))).to.equal(DPOP_REASONS.noJwk);
      expect(await reasonOf(verify(craft(es(), { header: { jku: "https://attacker.example/jwks" } })))).to.equal(
        "its header names a key other than by jwk (jku, x5u, x5c or x5t)",
      );
      expect(await reasonOf(verify(craft(es(), { header: { jwk: "not a jwk" } })))).to.equal("its jwk is not a valid public key");
      // a point off the curve
      const y = Buffer.from(es().publicJwk.y!, "base64url");
      y[0]! ^= 1;
      expect(await reasonOf(verify(craft(es(), { header: { jwk: { ...es().publicJwk, y: y.toString("base64url") } } })))).to.equal(DPOP_REASONS.invalidJwk);
    });

    it("a critical header parameter", async function () {
      expect(await reasonOf(verify(craft(es(), { header: { crit: ["b64"], b64: false } })))).to.equal(DPOP_REASONS.crit);
    });

    it("a signature by another key than the header's jwk", async function () {
      expect(await reasonOf(verify(craft(es(), { signer: signAs(other) })))).to.equal("its signature does not verify");
      // and a proof whose header was swapped after signing
      const honest = await createDpopProof(other, { method: METHOD, url: URL_ });
      const swapped = `${b64json({ typ: DPOP_TYP, alg: "ES256", jwk: es().publicJwk })}.${honest.split(".").slice(1).join(".")}`;
      expect(await reasonOf(verify(swapped))).to.equal(DPOP_REASONS.signature);
      expect(await reasonOf(verify(`${honest.slice(0, honest.lastIndexOf("."))}.`))).to.equal(DPOP_REASONS.signature);
    });

    it("htm of another method (compared exactly)", async function () {
      expect(await reasonOf(verify(await createDpopProof(es(), { method: "GET", url: URL_ })))).to.equal("its htm claim is not the request's method");
      expect(await reasonOf(verify(await createDpopProof(es(), { method: "post", url: URL_ })))).to.equal(DPOP_REASONS.htm);
    });

    it("htu of another path, host, scheme or port", async function () {
      for (const url of [
        "https://wallet.hello.example/api/records/other",
        "https://wallet.hello.example/api",
        "https://attacker.example/api/records",
        "http://wallet.hello.example/api/records",
        "https://wallet.hello.example:8443/api/records",
      ]) {
        expect(await reasonOf(verify(await createDpopProof(es(), { method: METHOD, url })))).to.equal("its htu claim is not the request's URL");
      }
      expect(await reasonOf(verify(craft(es(), { claims: { htu: "/api/records" } })))).to.equal(DPOP_REASONS.htu);
      expect(await reasonOf(verify(craft(es(), { claims: { htu: undefined } })))).to.equal(DPOP_REASONS.htu);
    });

    it("iat too old or in the future (with the bounds themselves accepted)", async function () {
      const now = nowSeconds();
      const at = (iat: number) => createDpopProof(es(), { method: METHOD, url: URL_, now: iat });
      await verify(await at(now - 60), { now });
      await verify(await at(now + 5), { now });
      expect(await reasonOf(verify(await at(now - 61), { now }))).to.equal("it was issued too long ago");
      expect(await reasonOf(verify(await at(now + 6), { now }))).to.equal("it was issued in the future");
      expect(await reasonOf(verify(await at(now - 20), { now, maxAgeSeconds: 10 }))).to.equal(DPOP_REASONS.tooOld);
      expect(await reasonOf(verify(craft(es(), { claims: { iat: now + 0.5 } }), { now }))).to.equal(DPOP_REASONS.iat);
      expect(await reasonOf(verify(craft(es(), { claims: { iat: String(now) } }), { now }))).to.equal(DPOP_REASONS.iat);
      expect(await reasonOf(verify(craft(es(), { claims: { iat: undefined } }), { now }))).to.equal(DPOP_REASONS.iat);
    });

    it("a missing, short or long jti", async function () {
      expect(await reasonOf(verify(craft(es(), { claims: { jti: undefined } })))).to.equal("its jti claim is missing or not 16 to 256 characters");
      expect(await reasonOf(verify(craft(es(), { claims: { jti: "x".repeat(15) } })))).to.equal(DPOP_REASONS.jti);
      expect(await reasonOf(verify(craft(es(), { claims: { jti: "x".repeat(257) } })))).to.equal(DPOP_REASONS.jti);
      expect(await reasonOf(verify(craft(es(), { claims: { jti: 1234567890123456789 } })))).to.equal(DPOP_REASONS.jti);
      await verify(craft(es(), { claims: { jti: "x".repeat(16) } }));
    });

    it("ath missing when an access token is given, for another token, or present with none", async function () {
      const accessToken = "access-token-of-this-client";
      const bare = await createDpopProof(es(), { method: METHOD, url: URL_ });
      expect(await reasonOf(verify(bare, { accessToken }))).to.equal("its ath claim is missing");
      const forAnother = await createDpopProof(es(), { method: METHOD, url: URL_, accessToken: "another-token" });
      expect(await reasonOf(verify(forAnother, { accessToken }))).to.equal("its ath claim is not the hash of the access token");
      const withAth = await createDpopProof(es(), { method: METHOD, url: URL_, accessToken });
      expect(await reasonOf(verify(withAth))).to.equal("it has an ath claim but no access token came with it");
      await verify(withAth, { accessToken }); // its honest twin
    });

    it("a proof for another key than the one the access token is bound to", async function () {
      const proof = await createDpopProof(es(), { method: METHOD, url: URL_ });
      expect(await reasonOf(verify(proof, { boundJkt: await jwkThumbprint(other.publicJwk) }))).to.equal(
        "its key is not the key the access token is bound to",
      );
      const got = await verify(proof, { boundJkt: await jwkThumbprint(es().publicJwk) });
      expect(got.jkt).to.equal(await calculateJwkThumbprint(es().publicJwk, "sha256"));
    });

    it("a nonce missing or wrong when the server requires one", async function () {
      const nonce = "server-nonce-0001";
      expect(await reasonOf(verify(await createDpopProof(es(), { method: METHOD, url: URL_ }), { nonce }))).to.equal("its nonce claim is missing");
      expect(await reasonOf(verify(await createDpopProof(es(), { method: METHOD, url: URL_, nonce: "server-nonce-0002" }), { nonce }))).to.equal(
        "its nonce claim is not the server's nonce",
      );
      await verify(await createDpopProof(es(), { method: METHOD, url: URL_, nonce }), { nonce });
    });

    it("the same proof twice: the second is a replay, while a fresh proof with the same key passes", async function () {
      const proof = await createDpopProof(es(), { method: METHOD, url: URL_ });
      const first = await verify(proof);
      expect(await reasonOf(verify(proof))).to.equal("replayed");
      const fresh = await verify(await createDpopProof(es(), { method: METHOD, url: URL_ }));
      expect(fresh.jkt).to.equal(first.jkt);
      expect(fresh.jti).not.to.equal(first.jti);
    });

    it("a proof refused for another check is not spent: once the request is right, it verifies", async function () {
      const proof = await createDpopProof(es(), { method: METHOD, url: URL_ });
      expect(await reasonOf(verify(proof, { method: "PUT" }))).to.equal(DPOP_REASONS.htm);
      await verify(proof);
    });

    it("a proof that is not one compact JWS string", async function () {
      const proof = await createDpopProof(es(), { method: METHOD, url: URL_ });
      for (const notString of [undefined, null, 42, [proof], [proof, proof], { protected: "e30", payload: "e30", signature: "" }]) {
        expect(await reasonOf(verify(notString))).to.equal("it is not a string");
      }
      const [h, p, s] = proof.split(".");
      for (const malformed of ["", `${h}.${p}`, `${h}.${p}.${s}.${s}`, `${proof},${proof}`, ` ${proof}`, `${h}.${p}.${s}=`]) {
        expect(await reasonOf(verify(malformed))).to.equal("it is not a compact JWS");
      }
      expect(await reasonOf(verify(`${b64json(["typ", DPOP_TYP])}.${p}.${s}`))).to.equal(DPOP_REASONS.malformed);
      const huge = craft(es(), { claims: { pad: "x".repeat(8 * 1024) } });
      expect(await reasonOf(verify(huge))).to.equal("it is larger than 8192 bytes");
    });

    it("the error's message names the check and carries none of the proof", async function () {
      const accessToken = "secret-access-token";
      const proof = await createDpopProof(es(), { method: METHOD, url: URL_, accessToken: "another", nonce: "n" });
      const error = (await rejectionOf(verify(proof, { accessToken }))) as DpopError;
      expect(error).to.be.instanceOf(DpopError);
      expect(error.name).to.equal("DpopError");
      expect(error.message).to.equal(`the DPoP proof is not valid: ${DPOP_REASONS.athWrong}`);
      for (const secret of [accessToken, String(decodeJwt(proof).jti), String(decodeJwt(proof).ath), es().publicJwk.x!]) {
        expect(error.message).not.to.include(secret);
      }
    });
  });

  describe("createDpopProof", function () {
    it("refuses a key whose halves do not match, or a URL that is not absolute http(s)", async function () {
      const mismatched: DpopKey = { ...keys.ES256, publicJwk: other.publicJwk };
      await rejectionOf(createDpopProof(mismatched, { method: METHOD, url: URL_ }), "a proof with mismatched key halves");
      const wrongAlg: DpopKey = { ...keys.EdDSA, alg: "ES256" };
      await rejectionOf(createDpopProof(wrongAlg, { method: METHOD, url: URL_ }), "an Ed25519 key used as ES256");
      await rejectionOf(createDpopProof(keys.ES256, { method: METHOD, url: "/api/records" }), "a relative URL");
      await createDpopProof(keys.ES256, { method: METHOD, url: URL_ }); // the honest twin
    });

    it("gives every proof a fresh jti", async function () {
      const jtis = new Set<unknown>();
      for (let i = 0; i < 20; i++) jtis.add(decodeJwt(await createDpopProof(keys.ES256, { method: METHOD, url: URL_ })).jti);
      expect(jtis.size).to.equal(20);
    });
  });

  describe("memoryDpopReplayCache", function () {
    it("refuses a pair seen before until it expires, then forgets it", function () {
      let t = 1_000;
      const cache = memoryDpopReplayCache({ now: () => t });
      expect(cache.spend("jkt", "jti-1", t + 10)).to.equal(true);
      expect(cache.spend("jkt", "jti-1", t + 10)).to.equal(false);
      expect(cache.spend("jkt", "jti-2", t + 10)).to.equal(true); // another jti
      expect(cache.spend("jkt2", "jti-1", t + 10)).to.equal(true); // another key
      expect(cache.spend("jk", "tjti-1", t + 10)).to.equal(true); // not confused with ("jkt", "jti-1")
      t = 1_010;
      expect(cache.spend("jkt", "jti-1", t + 10)).to.equal(false); // still live at its expiry
      t = 1_011;
      expect(cache.spend("jkt", "jti-1", t + 10)).to.equal(true); // forgotten, spent again
      expect(cache.spend("jkt", "jti-1", t + 10)).to.equal(false);
    });

    it("stays bounded by maxEntries, forgetting expired entries before live ones", function () {
      let t = 1_000;
      const cache = memoryDpopReplayCache({ maxEntries: 3, now: () => t });
      expect(cache.spend("k", "live", t + 100)).to.equal(true); // the oldest entry, but live
      expect(cache.spend("k", "a", t + 5)).to.equal(true);
      expect(cache.spend("k", "b", t + 5)).to.equal(true);
      t = 1_010; // a and b have expired; live has not
      expect(cache.spend("k", "c", t + 100)).to.equal(true);
      expect(cache.spend("k", "d", t + 100)).to.equal(true);
      expect(cache.size).to.equal(3);
      expect(cache.spend("k", "live", t + 100)).to.equal(false); // kept over the expired ones
      // full of live entries: the oldest goes, the bound holds
      for (let i = 0; i < 50; i++) expect(cache.spend("k", `flood-${i}`, t + 100)).to.equal(true);
      expect(cache.size).to.equal(3);
      expect(cache.spend("k", "flood-49", t + 100)).to.equal(false);
    });

    it("verifyDpopProof spends with the proof's lifetime: it is forgotten once the proof could no longer verify", async function () {
      let t = nowSeconds();
      const cache = memoryDpopReplayCache({ now: () => t });
      const key = keys.ES256;
      const proof = await createDpopProof(key, { method: METHOD, url: URL_, now: t });
      const { jkt, jti } = await verifyDpopProof(proof, { method: METHOD, url: URL_, replay: cache, now: t });
      t += 65; // iat + maxAge + skew
      expect(cache.spend(jkt, jti, t)).to.equal(false);
      t += 1;
      expect(cache.spend(jkt, jti, t)).to.equal(true);
    });
  });
});
