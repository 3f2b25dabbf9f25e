// SD-JWT VC issuance, key-bound presentation and verification (sd-jwt-vc.ts): the honest
// round trip first, then each attack on it, each refused by the check it targets. Attacks
// that a holder could mount re-sign the KB-JWT correctly with the holder's own key, so the
// only thing wrong is the thing under test.

import { type KeyObject, createHash, createHmac, generateKeyPairSync, sign as cryptoSign } from "node:crypto";
import { expect } from "chai";
import { generateKeyPair, exportJWK, type JWK } from "jose";
import {
  SD_JWT_VC_TYP,
  SdJwtVcError,
  inspectSdJwtVc,
  issueSdJwtVc,
  presentSdJwtVc,
  verifySdJwtVc,
  type IssueSdJwtVcInput,
  type VerifySdJwtVcInput,
} from "./sd-jwt-vc.js";

const ISSUER = "https://issuer.hello-mesh.test";
const VCT = "urn:hello-mesh:dev:identity-card";
const AUDIENCE = "https://verifier.hello-mesh.test";
const NONCE = "n-0S6_WzA2Mj";
const KID = "issuer-2025-1";
const CLAIMS = {
  given_name: "Zorbaxia",
  family_name: "Quenthwillow",
  email: "wombat-7731@mail.example",
  birthdate: "1911-11-29",
};
const ALL_VALUES = Object.values(CLAIMS);

const p256 = () => generateKeyPairSync("ec", { namedCurve: "P-256" });
const publicJwk = (key: KeyObject): JWK => {
  const { kty, crv, x, y } = key.export({ format: "jwk" });
  return { kty, crv, x, y } as JWK;
};
const b64json = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString("base64url");
const unb64json = (part: string): unknown => JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
const sha256 = (s: string): string => createHash("sha256").update(s).digest("base64url");

/** A compact ES256 JWS (raw R||S) over exactly this header and payload. */
function signJws(header: object, payload: object, key: KeyObject): string {
  const input = `${b64json(header)}.${b64json(payload)}`;
  return `${input}.${cryptoSign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" }).toString("base64url")}`;
}

/** The parts of a presentation: issuer JWT, disclosures, KB-JWT ("" when none). */
function split(sdJwt: string): { jwt: string; disclosures: string[]; kb: string } {
  const parts = sdJwt.split("~");
  return { jwt: parts[0]!, disclosures: parts.slice(1, -1), kb: parts[parts.length - 1]! };
}
const join = (jwt: string, disclosures: string[]): string => `${[jwt, ...disclosures].join("~")}~`;

const now = () => Math.floor(Date.now() / 1000);

describe("SD-JWT VC (sd-jwt-vc.ts)", function () {
  const issuer = p256();
  const holder = p256();
  const attacker = p256();
  const issuerKeys = { keys: [{ ...publicJwk(issuer.publicKey), kid: KID, alg: "ES256" as const, use: "sig" }] };

  /** The honest holder's KB-JWT over `withoutKb` (or a twisted one, field by field). */
  function keyBind(withoutKb: string, over: { key?: KeyObject; header?: object; aud?: string; nonce?: string; iat?: number; sd_hash?: string } = {}): string {
    const header = over.header ?? { typ: "kb+jwt", alg: "ES256" };
    const payload = { iat: over.iat ?? now(), aud: over.aud ?? AUDIENCE, nonce: over.nonce ?? NONCE, sd_hash: over.sd_hash ?? sha256(withoutKb) };
    return withoutKb + signJws(header, payload, over.key ?? holder.privateKey);
  }

  const issue = (over: Partial<IssueSdJwtVcInput> = {}) =>
    issueSdJwtVc({
      issuer: ISSUER,
      vct: VCT,
      claims: CLAIMS,
      holderKey: publicJwk(holder.publicKey),
      signingKey: { privateKey: issuer.privateKey, kid: KID },
      ...over,
    });

  const verify = (presentation: string, over: Partial<VerifySdJwtVcInput> = {}) =>
    verifySdJwtVc({ presentation, issuerKeys, expectedIssuer: ISSUER, expectedVct: VCT, audience: AUDIENCE, nonce: NONCE, ...over });

  /** Refused with an SdJwtVcError whose message matches `reason` and quotes no claim value. */
  async function expectRefused(attempt: Promise<unknown>, reason: RegExp): Promise<void> {
    let error: unknown;
    try {
      await attempt;
    } catch (err) {
      error = err;
    }
    expect(error, `expected a refusal matching ${reason}`).to.be.instanceOf(SdJwtVcError);
    const message = (error as Error).message;
    expect(message).to.match(reason);
    for (const value of [...ALL_VALUES, "admin"]) expect(message).to.not.include(value);
  }

  let credential: string;
  let presentation: string;
  before(async function () {
    credential = await issue();
    presentation = await presentSdJwtVc({ credential, holderPrivateKey: holder.privateKey, disclose: ["given_name", "email"], audience: AUDIENCE, nonce: NONCE });
  });

  describe("honest round trip", function () {
    it("issues dc+sd-jwt with ES256 and the kid, every claim a disclosure, the holder key in cnf", function () {
      expect(credential.endsWith("~")).to.equal(true);
      const { jwt, disclosures, kb } = split(credential);
      expect(kb).to.equal("");
      expect(unb64json(jwt.split(".")[0]!)).to.deep.equal({ typ: SD_JWT_VC_TYP, alg: "ES256", kid: KID });
      const payload = unb64json(jwt.split(".")[1]!) as Record<string, unknown>;
      expect(payload).to.include({ iss: ISSUER, vct: VCT, _sd_alg: "sha-256" });
      expect(payload.cnf).to.deep.equal({ jwk: publicJwk(holder.publicKey) });
      expect(payload.exp).to.equal((payload.iat as number) + 365 * 24 * 3600);
      expect(payload._sd).to.have.length(4);
      for (const name of Object.keys(CLAIMS)) expect(payload).to.not.have.property(name);
      expect(disclosures.map((d) => (unb64json(d) as unknown[])[1]).sort()).to.deep.equal(Object.keys(CLAIMS).sort());
    });

    it("presents 2 of 4 claims; verify returns exactly those and the holder key; the other values appear nowhere, decoded or not", async function () {
      const verified = await verify(presentation);
      expect(verified.claims).to.deep.equal({ given_name: CLAIMS.given_name, email: CLAIMS.email });
      expect(verified.holderKey).to.deep.equal(publicJwk(holder.publicKey));
      expect(verified).to.include({ issuer: ISSUER, vct: VCT });
      expect(verified.expiresAt! - verified.issuedAt!).to.equal(365 * 24 * 3600);
      expect(verified).to.not.have.property("status");

      const { jwt, disclosures, kb } = split(presentation);
      expect(disclosures).to.have.length(2);
      const texts = [presentation];
      for (const part of [...jwt.split("."), ...disclosures, ...kb.split(".")]) texts.push(Buffer.from(part, "base64url").toString("latin1"));
      const all = texts.join("\n");
      for (const hidden of [CLAIMS.family_name, CLAIMS.birthdate]) expect(all).to.not.include(hidden);
      // The search can find what is there: the disclosed values are in the decoded parts.
      for (const shown of [CLAIMS.given_name, CLAIMS.email]) expect(all).to.include(shown);
    });

    it("also verifies with a kid → JWK lookup function, a list of expected vcts, and holder keys given as CryptoKey or private JWK", async function () {
      const lookup = async (kid: string) => issuerKeys.keys.find((k) => k.kid === kid);
      expect((await verify(presentation, { issuerKeys: lookup, expectedVct: ["urn:other", VCT] })).claims).to.have.keys("given_name", "email");

      const web = await generateKeyPair("ES256", { extractable: true });
      const webJwk = await exportJWK(web.publicKey);
      const cred = await issue({ holderKey: webJwk });
      const viaCryptoKey = await presentSdJwtVc({ credential: cred, holderPrivateKey: web.privateKey, disclose: ["birthdate"], audience: AUDIENCE, nonce: NONCE });
      expect((await verify(viaCryptoKey)).claims).to.deep.equal({ birthdate: CLAIMS.birthdate });
      const viaJwk = await presentSdJwtVc({ credential: cred, holderPrivateKey: await exportJWK(web.privateKey), disclose: [], audience: AUDIENCE, nonce: NONCE });
      expect((await verify(viaJwk)).claims).to.deep.equal({});
    });

    it("carries a Token Status List reference through to the verifier without fetching it", async function () {
      const originalFetch = globalThis.fetch;
      let fetched = 0;
      globalThis.fetch = (async () => {
        fetched++;
        throw new Error("no network in this test");
      }) as typeof fetch;
      try {
        const cred = await issue({ status: { idx: 42, uri: "https://status.hello-mesh.test/lists/1" } });
        expect((unb64json(split(cred).jwt.split(".")[1]!) as { status: unknown }).status).to.deep.equal({ status_list: { idx: 42, uri: "https://status.hello-mesh.test/lists/1" } });
        const p = await presentSdJwtVc({ credential: cred, holderPrivateKey: holder.privateKey, disclose: ["email"], audience: AUDIENCE, nonce: NONCE });
        expect((await verify(p)).status).to.deep.equal({ idx: 42, uri: "https://status.hello-mesh.test/lists/1" });
      } finally {
        globalThis.fetch = originalFetch;
      }
      expect(fetched).to.equal(0);
    });
  });

  describe("tampering with the credential", function () {
    it("a disclosure's value altered (KB-JWT re-signed by the holder) is refused: its digest is not in _sd", async function () {
      const { jwt, disclosures } = split(presentation);
      const [salt, name] = unb64json(disclosures[0]!) as [string, string, unknown];
      const forged = b64json([salt, name, "admin"]);
      await expectRefused(verify(keyBind(join(jwt, [forged, disclosures[1]!]))), /disclosure 1 is not referenced by the issuer JWT's _sd/);
    });

    it("a disclosure from another credential of the same holder and issuer, appended, is refused", async function () {
      const other = await issue({ claims: { role: "admin" } });
      const { jwt, disclosures } = split(presentation);
      const stolen = split(other).disclosures[0]!;
      await expectRefused(verify(keyBind(join(jwt, [...disclosures, stolen]))), /disclosure 3 is not referenced/);
    });

    it("the same disclosure given twice is refused", async function () {
      const { jwt, disclosures } = split(presentation);
      await expectRefused(verify(keyBind(join(jwt, [disclosures[0]!, disclosures[0]!]))), /disclosure 2 is given twice/);
    });

    it("the issuer JWT's payload altered, signature kept, is refused by the signature", async function () {
      const { jwt, disclosures } = split(presentation);
      const [h, p, s] = jwt.split(".") as [string, string, string];
      const payload = unb64json(p) as Record<string, unknown>;
      const altered = `${h}.${b64json({ ...payload, exp: (payload.exp as number) + 10 * 365 * 24 * 3600 })}.${s}`;
      await expectRefused(verify(keyBind(join(altered, disclosures))), /the issuer JWT's signature does not verify/);
    });

    it("alg none (and HS256 keyed with the issuer's public key) over the same payload is refused by alg", async function () {
      const { jwt, disclosures } = split(presentation);
      const [, p] = jwt.split(".") as [string, string, string];
      const none = `${b64json({ typ: SD_JWT_VC_TYP, alg: "none", kid: KID })}.${p}.`;
      await expectRefused(verify(keyBind(join(none, disclosures))), /the issuer JWT's alg must be ES256/);
      const hsInput = `${b64json({ typ: SD_JWT_VC_TYP, alg: "HS256", kid: KID })}.${p}`;
      const hs = `${hsInput}.${createHmac("sha256", JSON.stringify(issuerKeys.keys[0])).update(hsInput).digest("base64url")}`;
      await expectRefused(verify(keyBind(join(hs, disclosures))), /the issuer JWT's alg must be ES256/);
    });

    it("the same payload signed by another key under the issuer's kid is refused by the signature", async function () {
      const { jwt, disclosures } = split(presentation);
      const payload = unb64json(jwt.split(".")[1]!) as object;
      const forged = signJws({ typ: SD_JWT_VC_TYP, alg: "ES256", kid: KID }, payload, attacker.privateKey);
      await expectRefused(verify(keyBind(join(forged, disclosures))), /the issuer JWT's signature does not verify/);
    });

    it("an unknown kid is refused, by a JWK set and by a lookup function alike", async function () {
      const { jwt, disclosures } = split(presentation);
      const payload = unb64json(jwt.split(".")[1]!) as object;
      const forged = keyBind(join(signJws({ typ: SD_JWT_VC_TYP, alg: "ES256", kid: "attacker-1" }, payload, attacker.privateKey), disclosures));
      await expectRefused(verify(forged), /unknown issuer kid "attacker-1"/);
      await expectRefused(verify(forged, { issuerKeys: async () => undefined }), /unknown issuer kid/);
    });

    it("a typ other than dc+sd-jwt is refused", async function () {
      const { jwt, disclosures } = split(presentation);
      const payload = unb64json(jwt.split(".")[1]!) as object;
      const forged = signJws({ typ: "JWT", alg: "ES256", kid: KID }, payload, issuer.privateKey);
      await expectRefused(verify(keyBind(join(forged, disclosures))), /typ must be dc\+sd-jwt/);
    });

    it("another iss is refused", async function () {
      const cred = await issue({ issuer: "https://other-issuer.example" });
      const p = await presentSdJwtVc({ credential: cred, holderPrivateKey: holder.privateKey, disclose: ["email"], audience: AUDIENCE, nonce: NONCE });
      await expectRefused(verify(p), /iss is not the expected issuer/);
    });

    it("another vct is refused", async function () {
      await expectRefused(verify(presentation, { expectedVct: "urn:hello-mesh:dev:other-card" }), /vct is not an expected credential type/);
      await expectRefused(verify(presentation, { expectedVct: ["urn:a", "urn:b"] }), /vct is not an expected credential type/);
    });

    it("an expired credential is refused, and one from the future too", async function () {
      const t = now();
      const expired = await issue({ issuedAt: t - 1000, expiresAt: t - 10 });
      const p = await presentSdJwtVc({ credential: expired, holderPrivateKey: holder.privateKey, disclose: ["email"], audience: AUDIENCE, nonce: NONCE });
      await expectRefused(verify(p), /the credential has expired/);
      // The same, seen from a clock that says it is still valid, passes (the check is the time).
      expect((await verify(p, { now: t - 20 })).claims).to.have.keys("email");
      await expectRefused(verify(presentation, { now: t + 366 * 24 * 3600 }), /the credential has expired/);
      const future = await issue({ issuedAt: t + 3600 });
      const f = await presentSdJwtVc({ credential: future, holderPrivateKey: holder.privateKey, disclose: ["email"], audience: AUDIENCE, nonce: NONCE });
      await expectRefused(verify(f), /iat is in the future/);
    });
  });

  describe("key binding", function () {
    const withoutKb = () => presentation.slice(0, presentation.lastIndexOf("~") + 1);

    it("a presentation without a KB-JWT is refused", async function () {
      await expectRefused(verify(withoutKb()), /a KB-JWT is required/);
      await expectRefused(verify(credential), /a KB-JWT is required/);
    });

    it("a KB-JWT signed by another key is refused", async function () {
      await expectRefused(verify(keyBind(withoutKb(), { key: attacker.privateKey })), /the KB-JWT is not signed by cnf.jwk/);
    });

    it("another aud is refused", async function () {
      await expectRefused(verify(presentation, { audience: "https://other-verifier.example" }), /aud is not this verifier/);
      await expectRefused(verify(keyBind(withoutKb(), { aud: "https://other-verifier.example" })), /aud is not this verifier/);
    });

    it("another nonce is refused", async function () {
      await expectRefused(verify(presentation, { nonce: "another-nonce" }), /nonce is not this verifier's/);
    });

    it("a KB-JWT older than maxKeyBindingAgeSeconds, or from the future, is refused", async function () {
      const t = now();
      await expectRefused(verify(presentation, { now: t + 301 }), /the KB-JWT is too old/);
      expect((await verify(presentation, { now: t + 250 })).claims).to.have.keys("given_name", "email");
      await expectRefused(verify(presentation, { now: t + 100, maxKeyBindingAgeSeconds: 60 }), /the KB-JWT is too old/);
      const ahead = await presentSdJwtVc({ credential, holderPrivateKey: holder.privateKey, disclose: ["email"], audience: AUDIENCE, nonce: NONCE, now: t + 120 });
      await expectRefused(verify(ahead, { now: t }), /the KB-JWT's iat is in the future/);
    });

    it("a KB-JWT taken from one presentation and attached to another disclosure set is refused by sd_hash", async function () {
      const narrow = await presentSdJwtVc({ credential, holderPrivateKey: holder.privateKey, disclose: ["given_name"], audience: AUDIENCE, nonce: NONCE });
      expect((await verify(narrow)).claims).to.have.keys("given_name");
      const wide = await presentSdJwtVc({ credential, holderPrivateKey: holder.privateKey, disclose: ["given_name", "birthdate"], audience: AUDIENCE, nonce: NONCE });
      const spliced = wide.slice(0, wide.lastIndexOf("~") + 1) + split(narrow).kb;
      await expectRefused(verify(spliced), /sd_hash does not match/);
      // And a hand-made KB-JWT, correctly signed, with another set's sd_hash.
      await expectRefused(verify(keyBind(withoutKb(), { sd_hash: sha256(credential) })), /sd_hash does not match/);
    });

    it("a KB-JWT whose typ is not kb+jwt (or whose alg is not ES256) is refused", async function () {
      await expectRefused(verify(keyBind(withoutKb(), { header: { typ: "JWT", alg: "ES256" } })), /the KB-JWT's typ must be kb\+jwt/);
      await expectRefused(verify(keyBind(withoutKb(), { header: { alg: "ES256" } })), /the KB-JWT's typ must be kb\+jwt/);
      await expectRefused(verify(keyBind(withoutKb(), { header: { typ: "kb+jwt", alg: "ES384" } })), /the KB-JWT's alg must be ES256/);
    });
  });

  describe("refusals before signing", function () {
    it("presentSdJwtVc refuses a holder key that is not cnf.jwk's", async function () {
      await expectRefused(
        presentSdJwtVc({ credential, holderPrivateKey: attacker.privateKey, disclose: ["email"], audience: AUDIENCE, nonce: NONCE }),
        /holderPrivateKey does not match the credential's cnf.jwk/,
      );
      await expectRefused(
        presentSdJwtVc({ credential, holderPrivateKey: holder.publicKey, disclose: ["email"], audience: AUDIENCE, nonce: NONCE }),
        /must be a private key/,
      );
    });

    it("presentSdJwtVc refuses unknown claim names, naming them", async function () {
      await expectRefused(
        presentSdJwtVc({ credential, holderPrivateKey: holder.privateKey, disclose: ["email", "nickname", "ssn"], audience: AUDIENCE, nonce: NONCE }),
        /no disclosable claims "nickname", "ssn"$/,
      );
    });

    it("issueSdJwtVc refuses a private JWK, an RSA key or an Ed25519 key as holderKey", async function () {
      await expectRefused(issue({ holderKey: holder.privateKey.export({ format: "jwk" }) as JWK }), /holderKey must be a public key/);
      const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ format: "jwk" }) as JWK;
      await expectRefused(issue({ holderKey: rsa }), /holderKey must be an EC P-256 key/);
      const ed = generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" }) as JWK;
      await expectRefused(issue({ holderKey: ed }), /holderKey must be an EC P-256 key/);
      const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ format: "jwk" }) as JWK;
      await expectRefused(issue({ holderKey: p384 }), /holderKey must be an EC P-256 key/);
    });

    it("issueSdJwtVc refuses claims named like the credential's own members", async function () {
      await expectRefused(issue({ claims: { ...CLAIMS, cnf: { jwk: publicJwk(attacker.publicKey) } } }), /reserved names "cnf"/);
      await expectRefused(issue({ claims: { iss: "https://evil.example", vct: "urn:x" } }), /reserved names "iss", "vct"/);
    });
  });

  describe("inspect", function () {
    it("reads iss, vct, holder key and claim names of an issued credential without verifying", function () {
      const seen = inspectSdJwtVc(credential);
      expect(seen.issuer).to.equal(ISSUER);
      expect(seen.vct).to.equal(VCT);
      expect(seen.holderKey).to.deep.equal(publicJwk(holder.publicKey));
      expect([...seen.claimNames].sort()).to.deep.equal(Object.keys(CLAIMS).sort());
      expect(seen.expiresAt! - seen.issuedAt!).to.equal(365 * 24 * 3600);
      expect(inspectSdJwtVc(presentation).claimNames.sort()).to.deep.equal(["email", "given_name"]);
      expect(() => inspectSdJwtVc("not-an-sd-jwt")).to.throw(SdJwtVcError);
    });
  });
});
