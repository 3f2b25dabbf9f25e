// The protocol's primitives, attacked one by one (docs/design.md §3, §5).

import { expect } from "chai";
import fc from "fast-check";
import { sign as cryptoSign } from "node:crypto";
import { SignJWT, UnsecuredJWT, createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { sign, verify } from "./jws.js";
import { VerificationKeys, generateSigningKey, publicJwk, privateJwk, signingKeyFromJwk } from "./signing-keys.js";
import { ACCESS_TOKEN, ERROR_TOKEN, RECORD_TYPES, SESSION_TOKEN } from "./tokens.js";
import { lengthPrefixed, lookupHash, subjectHash } from "./lookup-key.js";
import { DecryptionError, Keyring, additionalData, generateRecordKey } from "./keyring.js";
import { invalidTokenReason, rejectionOf } from "../../test/support/refusal.js";
import { tamper } from "../../test/support/tamper.js";

describe("protocol primitives", function () {
  const access = generateSigningKey("access");
  const session = generateSigningKey("session");
  const keys = new VerificationKeys([publicJwk(access), publicJwk(session)]);
  const claims = { op: "read", kind: "subject", hash: "h" };
  /** Why `token` does not verify as an Access Token. */
  const reason = (token: string) => invalidTokenReason(verify(ACCESS_TOKEN, keys, token, "access token"));
  /** An Access Token signed by jose, not by sign(): with a key, typ, aud or lifetime sign() would never give it. */
  const byHand = ({ key = access, typ = ACCESS_TOKEN.typ, aud = ACCESS_TOKEN.audience, lifetime = "60s" } = {}) =>
    new SignJWT({ ...claims, iss: ACCESS_TOKEN.issuer, aud, jti: "j" })
      .setProtectedHeader({ alg: "EdDSA", kid: key.kid, typ })
      .setIssuedAt()
      .setExpirationTime(lifetime)
      .sign(key.privateKey);

  describe("JWS (docs/design.md §3: typ, aud, exp, purpose-bound keys, no alg none)", function () {
    it("honest: an Access Token verifies as an Access Token", async function () {
      const token = await sign(ACCESS_TOKEN, access, claims);
      const { claims: got } = await verify(ACCESS_TOKEN, keys, token, "access token");
      expect(got).to.include({ op: "read", kind: "subject", hash: "h", aud: "spiffe://hello.mesh/storage" });
      expect(got.exp! - got.iat!).to.equal(60);
      expect(decodeProtectedHeader(token)).to.include({ typ: "hello-access+jwt", alg: "EdDSA" });
    });

    it("a key of another purpose: a session-key-signed token with an access typ is refused", async function () {
      const forged = await byHand({ key: session });
      expect(await reason(forged)).to.equal(
        "its key (kid) is not a known access key",
      );
    });

    it("refuses to sign a type with a key of another purpose", async function () {
      await rejectionOf(sign(ACCESS_TOKEN, session, claims), "signing an Access Token with a session key");
    });

    it("a re-typed token: a Session Token presented as an Access Token is refused", async function () {
      const token = await sign(SESSION_TOKEN, session, { sid: "s" });
      await verify(SESSION_TOKEN, keys, token, "session token"); // honest twin
      expect(await reason(token)).to.equal(
        "its key (kid) is not a known access key",
      );
    });

    it("alg none is refused", async function () {
      const unsigned = new UnsecuredJWT({ ...claims, iss: ACCESS_TOKEN.issuer, aud: ACCESS_TOKEN.audience, jti: "j" })
        .setIssuedAt()
        .setExpirationTime("60s")
        .encode();
      expect(await reason(unsigned)).to.match(/key \(kid\)|alg|malformed/);
    });

    it("an unknown kid is refused", async function () {
      const stranger = generateSigningKey("access");
      const token = await sign(ACCESS_TOKEN, stranger, claims);
      expect(await reason(token)).to.equal(
        "its key (kid) is not a known access key",
      );
    });

    it("an expired token is refused; a fresh one is not", async function () {
      const old = await sign(ACCESS_TOKEN, access, claims, { now: new Date(Date.now() - 120_000) });
      expect(await reason(old)).to.equal("it has expired");
      await verify(ACCESS_TOKEN, keys, await sign(ACCESS_TOKEN, access, claims), "access token");
    });

    it("a tampered payload fails the signature", async function () {
      const tampered = tamper(await sign(ACCESS_TOKEN, access, claims), (c) => void (c.hash = "another-users-hash"));
      expect(await reason(tampered)).to.equal("its signature does not verify");
    });

    it("a wrong typ header is refused even with the right key", async function () {
      const token = await byHand({ typ: "JWT" });
      expect(await reason(token)).to.match(/typ/);
    });

    it("a wrong audience is refused", async function () {
      const token = await byHand({ aud: "spiffe://hello.mesh/token" });
      expect(await reason(token)).to.match(/aud claim/);
    });

    it("a lifetime beyond the type's limit is refused", async function () {
      const token = await byHand({ lifetime: "1h" });
      expect(await reason(token)).to.equal("it claims a lifetime over 60 s");
    });

    it("an alg header that differs from the key's alg is refused", async function () {
      const token = await sign(ACCESS_TOKEN, access, claims);
      const [, p, s] = token.split(".");
      const header = Buffer.from(JSON.stringify({ alg: "ES256", kid: access.kid, typ: ACCESS_TOKEN.typ })).toString("base64url");
      expect(await reason([header, p, s].join("."))).to.equal(
        "its alg is not the alg of its key",
      );
    });

    it("records carry no exp and verify under their own typ only", async function () {
      const recordKey = generateSigningKey("record");
      const recordKeys = new VerificationKeys([publicJwk(recordKey)]);
      const record = await sign(RECORD_TYPES.subject, recordKey, { op_iss: "i", op_sub: "s", uid: "u" });
      await verify(RECORD_TYPES.subject, recordKeys, record, "subject record");
      expect(await invalidTokenReason(verify(RECORD_TYPES.wallet, recordKeys, record, "wallet record"))).to.match(/typ/);
    });

    it("a private key round-trips through its JWK; a published JWK may not carry the private part", function () {
      const again = signingKeyFromJwk(privateJwk(access));
      expect(again.kid).to.equal(access.kid);
      expect(() => new VerificationKeys([privateJwk(access)])).to.throw(/private part/);
      expect(() => new VerificationKeys([{ ...publicJwk(access), kid: "nopurpose" }])).to.throw(/no hello-mesh purpose/);
    });

    it("ES256 and RS256 keys sign and verify too", async function () {
      for (const alg of ["ES256", "RS256"] as const) {
        const errorKey = generateSigningKey("error", alg);
        const token = await sign(ERROR_TOKEN, errorKey, { op: "read", kind: "subject", hash: "h", ajti: "a" });
        await verify(ERROR_TOKEN, new VerificationKeys([publicJwk(errorKey)]), token, "error token");
      }
    });

    it("what it signs is a standard JWS: jose verifies it with the published key, for every alg", async function () {
      for (const alg of ["EdDSA", "ES256", "RS256"] as const) {
        const key = generateSigningKey("access", alg);
        const token = await sign(ACCESS_TOKEN, key, claims);
        const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet({ keys: [publicJwk(key)] }), {
          typ: ACCESS_TOKEN.typ, issuer: ACCESS_TOKEN.issuer, audience: ACCESS_TOKEN.audience, algorithms: [alg],
        });
        expect(protectedHeader).to.deep.equal({ alg, kid: key.kid, typ: ACCESS_TOKEN.typ });
        expect(payload).to.include(claims);
      }
    });

    describe("tokens signed with the right key that still say something wrong", function () {
      // Stamped when each test runs, not when mocha loads the file: the whole suite takes minutes, and a
      // token made at load time would have expired by the time this describe is reached.
      let now = 0;
      let fine: Record<string, unknown> = {};
      beforeEach(function () {
        now = Math.floor(Date.now() / 1000);
        fine = { ...claims, iss: ACCESS_TOKEN.issuer, aud: ACCESS_TOKEN.audience, iat: now, exp: now + 60, jti: "j" };
      });
      const header = { alg: "EdDSA", kid: access.kid, typ: ACCESS_TOKEN.typ };
      /** A compact JWS of exactly these parts, really signed with the access key. */
      const forge = (h: unknown, p: unknown) => {
        const input = `${Buffer.from(JSON.stringify(h)).toString("base64url")}.${Buffer.from(JSON.stringify(p)).toString("base64url")}`;
        return `${input}.${cryptoSign(null, Buffer.from(input), access.privateKey).toString("base64url")}`;
      };

      it("honest twin: the forged-by-hand token with the right contents verifies", async function () {
        expect((await verify(ACCESS_TOKEN, keys, forge(header, fine), "access token")).claims).to.include(claims);
      });

      it("a critical header extension is refused, since none is understood", async function () {
        expect(await reason(forge({ ...header, crit: ["b64"], b64: false }, fine))).to.match(/critical/);
      });

      it("a payload that is not a JSON object is malformed", async function () {
        for (const payload of [[fine], "text", 42, null]) expect(await reason(forge(header, payload))).to.equal("it is malformed");
      });

      it("claims of the wrong type or missing are refused, each by name", async function () {
        const { jti: _jti, ...noJti } = fine;
        const { iat: _iat, ...noIat } = fine;
        const { exp: _exp, ...noExp } = fine;
        const { iss: _iss, ...noIss } = fine;
        expect(await reason(forge(header, noJti))).to.equal("its jti claim is wrong (missing)");
        expect(await reason(forge(header, { ...fine, jti: 7 }))).to.equal("its jti claim is wrong (invalid)");
        expect(await reason(forge(header, noIat))).to.equal("its iat claim is wrong (missing)");
        expect(await reason(forge(header, { ...fine, iat: String(now) }))).to.equal("its iat claim is wrong (invalid)");
        expect(await reason(forge(header, noExp))).to.equal("its exp claim is wrong (missing)");
        expect(await reason(forge(header, { ...fine, exp: String(now + 60) }))).to.equal("its exp claim is wrong (invalid)");
        expect(await reason(forge(header, noIss))).to.equal("its iss claim is wrong (missing)");
        expect(await reason(forge(header, { ...fine, iss: ERROR_TOKEN.issuer }))).to.equal("its iss claim is wrong (check_failed)");
        expect(await reason(forge(header, { ...fine, aud: [ERROR_TOKEN.audience] }))).to.equal("its aud claim is wrong (check_failed)");
        expect(await reason(forge(header, { ...fine, nbf: now + 30 }))).to.equal("its nbf claim is wrong (check_failed)");
      });

      it("an audience list that names the consumer is accepted, as RFC 7519 §4.1.3 allows", async function () {
        await verify(ACCESS_TOKEN, keys, forge(header, { ...fine, aud: ["someone-else", ACCESS_TOKEN.audience] }), "access token");
      });

      it("a part with padding or a stray character is malformed, not decoded leniently; an empty signature does not verify", async function () {
        const [h, p, sig] = forge(header, fine).split(".");
        for (const token of [`${h}.${p}.${sig}=`, `${h}=.${p}.${sig}`, `${h}.${p}+.${sig}`, `${h}..${sig}`, `${h}.${p}.${sig}.x`, ` ${h}.${p}.${sig}`, `${h}.${p}.${sig}\n`]) {
          expect(await reason(token), token.slice(-4)).to.equal("it is malformed");
        }
        expect(await reason(`${h}.${p}.`)).to.equal("its signature does not verify");
      });
    });
  });

  describe("lookup hash (docs/design.md §3)", function () {
    const key = new Uint8Array(32).fill(7);

    it("is unambiguous: different field lists never encode alike (property)", function () {
      fc.assert(
        fc.property(fc.array(fc.string()), fc.array(fc.string()), (a, b) => {
          fc.pre(JSON.stringify(a) !== JSON.stringify(b));
          return !lengthPrefixed(a).equals(lengthPrefixed(b));
        }),
      );
      expect(lookupHash(key, "subject", ["ab", "c"])).not.to.equal(lookupHash(key, "subject", ["a", "bc"]));
    });

    it("depends on the kind and on the key", function () {
      expect(lookupHash(key, "subject", ["u"])).not.to.equal(lookupHash(key, "wallet", ["u"]));
      expect(subjectHash(key, "i", "s")).not.to.equal(subjectHash(new Uint8Array(32).fill(8), "i", "s"));
      expect(subjectHash(key, "i", "s")).to.match(/^[A-Za-z0-9_-]{43}$/);
    });
  });

  describe("record keyring (docs/design.md §3: AES-256-GCM, AAD from the verified token)", function () {
    // Envelope encryption in detail: keyring.spec.ts.
    it("honest: seals and opens", function () {
      const ring = new Keyring(new Map([["k1", generateRecordKey()]]), "k1");
      const sealed = ring.seal(Buffer.from("record"), "subject", "hash-a");
      expect(ring.open(sealed, "subject", "hash-a").toString()).to.equal("record");
    });

    it("a ciphertext moved to another storage key or kind does not open", function () {
      const ring = new Keyring(new Map([["k1", generateRecordKey()]]), "k1");
      const sealed = ring.seal(Buffer.from("record"), "subject", "hash-a");
      expect(() => ring.open(sealed, "subject", "hash-b")).to.throw(DecryptionError);
      expect(() => ring.open(sealed, "wallet", "hash-a")).to.throw(DecryptionError);
    });

    it("after rotation new writes use the new key and old records still open", function () {
      const k1 = generateRecordKey();
      const before = new Keyring(new Map([["k1", k1]]), "k1").seal(Buffer.from("old"), "subject", "hash-a");
      const rotated = new Keyring(new Map([["k1", k1], ["k2", generateRecordKey()]]), "k2");
      expect(rotated.seal(Buffer.from("new"), "subject", "hash-a").keyId).to.equal("k2");
      expect(rotated.open(before, "subject", "hash-a").toString()).to.equal("old");
    });

    it("a flipped bit, a truncation, or an unknown key id is refused", function () {
      const ring = new Keyring(new Map([["k1", generateRecordKey()]]), "k1");
      const sealed = ring.seal(Buffer.from("record"), "subject", "hash-a");
      const flipped = Buffer.from(sealed.ciphertext);
      flipped[14]! ^= 1;
      expect(() => ring.open({ ...sealed, ciphertext: flipped }, "subject", "hash-a")).to.throw(DecryptionError);
      expect(() => ring.open({ ...sealed, ciphertext: sealed.ciphertext.subarray(0, 20) }, "subject", "hash-a")).to.throw(DecryptionError);
      expect(() => ring.open({ ...sealed, keyId: "k9" }, "subject", "hash-a")).to.throw("the record was sealed with a key this keyring does not hold");
      // The additional data is the token's storage key and kind.
      expect(additionalData("subject", "hash-a")).to.not.deep.equal(additionalData("subject", "hash-b"));
    });
  });
});
