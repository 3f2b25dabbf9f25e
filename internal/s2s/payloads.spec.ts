// The S2S end-to-end payloads, attacked one by one: the HPKE-0 compact JWE (hpke-jwe.ts),
// the WSK-signed statements (statements.ts), the sign-then-encrypt client payloads, WEK
// statements and sealed credentials (client-payload.ts), and the message schemas
// (messages.ts). Each refusal has its honest twin, and asserts the exact reason or
// problem type, so that a test cannot pass because something else failed first.

import { expect } from "chai";
import { createHmac, generateKeyPairSync } from "node:crypto";
import { type CompactJWSHeaderParameters, type JWK, CompactSign, decodeProtectedHeader, importJWK } from "jose";
import { HPKE_ALG, HpkeJweError, decryptCompact, encryptCompact, generateHpkeKeyPair, jweHeader, thumbprint } from "./hpke-jwe.js";
import {
  CLOCK_SKEW_SECONDS,
  MAX_LIFETIME_SECONDS,
  STATEMENT_TYPES,
  type StatementContext,
  StatementError,
  type StatementKind,
  type VerifyOptions,
  memoryReplayGuard,
  signStatement,
  verifyStatement,
} from "./statements.js";
import {
  type PayloadContext,
  openClientPayload,
  openCredentials,
  sealClientPayload,
  sealCredentials,
  verifyWalletEncryptionKey,
  walletEncryptionKeyData,
} from "./client-payload.js";
import {
  ITEM_TYPES,
  KEY_TYPES,
  jweEncryptedPayloadSchema,
  keyDataSchema,
  provisionResponseSchema,
  verificationStatusSchema,
} from "./messages.js";
import { ProblemError, S2S_INVALID_CLIENT_AUTHENTICATION, S2S_INVALID_ENCRYPTION } from "./problem.js";
import { rejectionOf } from "../../test/support/refusal.js";
import { tamper } from "../../test/support/tamper.js";

const b64 = (text: string | Uint8Array) => Buffer.from(text).toString("base64url");
const json64 = (value: unknown) => b64(JSON.stringify(value));

/** A fresh ES256 key pair (a WSK, or a presentment key) as JWKs. */
function es256Pair(): { privateJwk: JWK; publicJwk: JWK } {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { privateJwk: privateKey.export({ format: "jwk" }) as JWK, publicJwk: publicKey.export({ format: "jwk" }) as JWK };
}

/** Why decryption (or encryption) refused: the HpkeJweError's reason; any other error fails the test. */
async function hpkeReason(call: Promise<unknown>, what?: string): Promise<string> {
  const error = await rejectionOf(call, what);
  expect(error).to.be.instanceOf(HpkeJweError);
  return (error as HpkeJweError).reason;
}

/** Why a statement of `kind` was refused: the StatementError's reason; any other error fails the test. */
async function statementReason(kind: StatementKind, call: Promise<unknown>, what?: string): Promise<string> {
  const error = await rejectionOf(call, what);
  expect(error).to.be.instanceOf(StatementError);
  expect((error as StatementError).kind).to.equal(kind);
  return (error as StatementError).reason;
}

/** The problem a call ended in (always HTTP 422 here); any other error fails the test. */
async function problemOf(call: Promise<unknown>, what?: string): Promise<ProblemError["problem"]> {
  const error = await rejectionOf(call, what);
  expect(error).to.be.instanceOf(ProblemError);
  const { problem } = error as ProblemError;
  expect(problem.status).to.equal(422);
  return problem;
}

/** `jwe` with its five parts changed by `change` (and nothing re-encrypted). */
function reshape(jwe: string, change: (parts: string[]) => string[]): string {
  return change(jwe.split(".")).join(".");
}
/** `jwe` with its protected header replaced by `header`, re-encoded; the rest as it was. */
const withHeader = (jwe: string, header: unknown) => reshape(jwe, ([, ...rest]) => [json64(header), ...rest]);
/** One bit of part `index` flipped. */
function flipBit(jwe: string, index: number, byte = 0): string {
  return reshape(jwe, (parts) => {
    const bytes = Buffer.from(parts[index]!, "base64url");
    bytes[byte] = bytes[byte]! ^ 0x01;
    parts[index] = bytes.toString("base64url");
    return parts;
  });
}

describe("s2s payloads", function () {
  describe("hpke-jwe: compact JWE, alg HPKE-0 Integrated Encryption (draft-ietf-jose-hpke-encrypt-20)", function () {
    // A public test vector from the IETF draft repository (draft-ietf-jose-hpke-encrypt):
    // the key is examples/jwks/HPKE-0.json and the JWE examples/jwe/HPKE-0-compact.txt.
    // Published test keys, not a secret of ours.
    const KAT_JWE =
      "eyJhbGciOiJIUEtFLTAiLCJraWQiOiJLZnZELWVZYXluVUtiYTBvdy12OXVvRVYtdHdWNm1ZRHlpQU9XTzZMb1BNIn0.BKqUaiyoPbH1jnjApcpjGqswg7npGSSXFcFv1nGaL6YYs3S27c8Yi5V5rsds91bV_UjdqzLlj2zuuAPWetLMab8..fO8VQt1DsdgtijGci90sO8sNvws6im8Yko4NnMWXVAM5GaHbHYRSGnjs6M7GnkcaTrEjy8cxDDLZFKTwMdYGOjYBsbTVVAoIImVd8tXZNjQswaPU8t8OP1jCwo6iw8t4-Hm6hCE61uzhEd_r9XkN4blHjrcAoCICcwqn_5lgJCTPQezJtiTAhrtHpC1quPA3aO2Pyhui5CzOtk967IC8v28jq6K7C3mbu-m10bo0aWqdybibCiiS5A89PXFWurW83HNnJFdoiqZRTtF4d_OAQ2Jq9FCrahrh43Xqp1z3HYjf73_rOHYWXzv8jGorDAKjsPgxYN_9TgGUstjiRIMLj9dJXxqrPkRLQ4VSAzVWCNe5MabAR1sFFB5tx_gA.";
    const KAT_KEY: JWK = {
      kty: "EC",
      crv: "P-256",
      x: "qy-BxXhaelX9Fqe8muRTu8HhseHYgMMGxyfAnIy0MC0",
      y: "ctfHN7Y4pkj7vZI-sgJ6BqsYwG-PDnB8j7TsfzHHJOI",
      d: "aAKxBMAkNm2AZDGv7LN5yodDwahJ5rKbrgiiz3dUIH4",
      alg: "HPKE-0",
      use: "enc",
      kid: "KfvD-eYaynUKba0ow-v9uoEV-twV6mYDyiAOWO6LoPM",
    };

    let alice: Awaited<ReturnType<typeof generateHpkeKeyPair>>;
    let bob: Awaited<ReturnType<typeof generateHpkeKeyPair>>;
    let toAlice: string;
    before(async function () {
      [alice, bob] = await Promise.all([generateHpkeKeyPair(), generateHpkeKeyPair()]);
      toAlice = await encryptCompact("for alice only", alice.publicJwk);
    });

    it("known answer: the draft's published HPKE-0 compact example decrypts to its text", async function () {
      const { plaintext, header } = await decryptCompact(KAT_JWE, KAT_KEY);
      const text = Buffer.from(plaintext).toString("utf8");
      expect(text.startsWith("You can trust us to stick with you through thick and thin")).to.equal(true);
      expect(text.endsWith("We are your friends, Frodo.")).to.equal(true);
      expect(header).to.deep.equal({ alg: "HPKE-0", kid: "KfvD-eYaynUKba0ow-v9uoEV-twV6mYDyiAOWO6LoPM" });
    });

    it("known answer: the example key's kid is its RFC 7638 thumbprint", async function () {
      expect(await thumbprint(KAT_KEY)).to.equal(KAT_KEY.kid);
      const { d: _d, ...publicOnly } = KAT_KEY;
      expect(await thumbprint(publicOnly)).to.equal(KAT_KEY.kid);
    });

    it("known answer, attacked: the example with one ciphertext bit flipped does not decrypt", async function () {
      expect(await hpkeReason(decryptCompact(flipBit(KAT_JWE, 3, 10), KAT_KEY))).to.equal("decryption failed (wrong key, or the JWE was altered)");
    });

    it("round trip: generateHpkeKeyPair keys, header {alg, kid} only, empty IV and tag, 65-byte encapsulated secret", async function () {
      expect(alice.publicJwk).to.include({ kty: "EC", crv: "P-256", alg: HPKE_ALG, use: "enc" });
      expect(alice.publicJwk).to.not.have.property("d");
      expect(alice.publicJwk.kid).to.equal(await thumbprint(alice.publicJwk));
      expect(alice.privateJwk.kid).to.equal(alice.publicJwk.kid);

      // 15 bytes of plaintext + 16 of tag = 31 bytes: 42 characters, 4 bits to spare.
      const parts = (await encryptCompact("for alice only!", alice.publicJwk)).split(".");
      expect(parts).to.have.length(5);
      expect(parts[2]).to.equal("");
      expect(parts[4]).to.equal("");
      const encapsulated = Buffer.from(parts[1]!, "base64url");
      expect(encapsulated).to.have.length(65);
      expect(encapsulated[0]).to.equal(0x04); // an uncompressed P-256 point
      const header = jweHeader(toAlice);
      expect(header).to.deep.equal({ alg: "HPKE-0", kid: alice.publicJwk.kid });
      expect(header).to.not.have.any.keys("enc", "ek", "zip");

      const { plaintext, header: opened } = await decryptCompact(toAlice, alice.privateJwk);
      expect(Buffer.from(plaintext).toString("utf8")).to.equal("for alice only");
      expect(opened).to.deep.equal(header);
    });

    it("round trip: binary plaintext, and typ/cty carried in the protected header", async function () {
      const bytes = new Uint8Array([0, 1, 2, 255, 254, 0]);
      const jwe = await encryptCompact(bytes, alice.publicJwk, { typ: "example+jwe", cty: "JWT" });
      const { plaintext, header } = await decryptCompact(jwe, alice.privateJwk);
      expect([...plaintext]).to.deep.equal([...bytes]);
      expect(header).to.deep.equal({ alg: "HPKE-0", kid: alice.publicJwk.kid, typ: "example+jwe", cty: "JWT" });
    });

    it("another recipient's key is refused, by kid and (with the kid forged) by the cryptography", async function () {
      expect(await hpkeReason(decryptCompact(toAlice, bob.privateJwk))).to.equal("the JWE is for another key (kid)");
      const bobPosingAsAlice = { ...bob.privateJwk, kid: alice.privateJwk.kid };
      expect(await hpkeReason(decryptCompact(toAlice, bobPosingAsAlice))).to.equal("decryption failed (wrong key, or the JWE was altered)");
    });

    it("the protected header is authenticated: an added typ, re-encoded whitespace or a swapped kid fails", async function () {
      const header = jweHeader(toAlice);
      const altered = "decryption failed (wrong key, or the JWE was altered)";
      expect(await hpkeReason(decryptCompact(withHeader(toAlice, { ...header, typ: "JWT" }), alice.privateJwk))).to.equal(altered);
      const respaced = reshape(toAlice, ([, ...rest]) => [b64(JSON.stringify(header, null, 1)), ...rest]);
      expect(await hpkeReason(decryptCompact(respaced, alice.privateJwk))).to.equal(altered);
      // kid swapped to bob's: bob's key passes the kid check and still cannot decrypt;
      const toBobByKid = withHeader(toAlice, { ...header, kid: bob.publicJwk.kid });
      expect(await hpkeReason(decryptCompact(toBobByKid, bob.privateJwk))).to.equal(altered);
      // and alice's key no longer matches the kid.
      expect(await hpkeReason(decryptCompact(toBobByKid, alice.privateJwk))).to.equal("the JWE is for another key (kid)");
    });

    for (const alg of ["HPKE-7", "none", "ECDH-ES", undefined]) {
      it(`alg ${String(alg)} is refused`, async function () {
        const header = { ...jweHeader(toAlice), alg };
        expect(await hpkeReason(decryptCompact(withHeader(toAlice, header), alice.privateJwk))).to.equal("alg must be HPKE-0");
      });
    }

    for (const [name, value] of [
      ["enc", "A128GCM"],
      ["ek", "BKqUaiyoPbH1jnjApcpjGqswg7npGSSXFcFv1nGaL6YY"],
      ["zip", "DEF"],
      ["crit", ["exp"]],
      ["jku", "https://attacker.example/jwks"],
    ] as const) {
      it(`a header with ${name} is refused`, async function () {
        const header = { ...jweHeader(toAlice), [name]: value };
        expect(await hpkeReason(decryptCompact(withHeader(toAlice, header), alice.privateJwk))).to.equal(
          `header parameters not allowed with HPKE-0 Integrated Encryption: ${name}`,
        );
      });
    }

    it("a non-empty IV or tag is refused", async function () {
      const reason = "the IV and tag must be empty for Integrated Encryption";
      const withIv = reshape(toAlice, (p) => [p[0]!, p[1]!, b64(new Uint8Array(12)), p[3]!, p[4]!]);
      const withTag = reshape(toAlice, (p) => [p[0]!, p[1]!, p[2]!, p[3]!, b64(new Uint8Array(16))]);
      expect(await hpkeReason(decryptCompact(withIv, alice.privateJwk))).to.equal(reason);
      expect(await hpkeReason(decryptCompact(withTag, alice.privateJwk))).to.equal(reason);
    });

    it("four or six parts are refused", async function () {
      const four = reshape(toAlice, (p) => p.slice(0, 4));
      const six = `${toAlice}.`;
      expect(await hpkeReason(decryptCompact(four, alice.privateJwk))).to.equal("a compact JWE has five parts");
      expect(await hpkeReason(decryptCompact(six, alice.privateJwk))).to.equal("a compact JWE has five parts");
    });

    it("a flipped bit in the ciphertext or the encapsulated secret is refused", async function () {
      const altered = "decryption failed (wrong key, or the JWE was altered)";
      const ciphertextLength = Buffer.from(toAlice.split(".")[3]!, "base64url").length;
      expect(await hpkeReason(decryptCompact(flipBit(toAlice, 3, 0), alice.privateJwk))).to.equal(altered);
      expect(await hpkeReason(decryptCompact(flipBit(toAlice, 3, ciphertextLength - 1), alice.privateJwk))).to.equal(altered); // in the AEAD tag
      expect(await hpkeReason(decryptCompact(flipBit(toAlice, 1, 40), alice.privateJwk))).to.equal(altered);
    });

    it("a truncated (or lengthened) encapsulated secret is refused", async function () {
      const resized = (length: number) =>
        reshape(toAlice, (p) => {
          const enc = Buffer.from(p[1]!, "base64url");
          p[1] = (length <= enc.length ? enc.subarray(0, length) : Buffer.concat([enc, Buffer.alloc(length - enc.length)])).toString("base64url");
          return p;
        });
      expect(await hpkeReason(decryptCompact(resized(64), alice.privateJwk))).to.equal("the encapsulated secret is not a P-256 point");
      expect(await hpkeReason(decryptCompact(resized(33), alice.privateJwk))).to.equal("the encapsulated secret is not a P-256 point");
      expect(await hpkeReason(decryptCompact(resized(66), alice.privateJwk))).to.equal("the encapsulated secret is not a P-256 point");
    });

    it("a part that is not base64url is refused", async function () {
      const bad = reshape(toAlice, (p) => [p[0]!, `${p[1]!.slice(1)}+`, p[2]!, p[3]!, p[4]!]);
      expect(await hpkeReason(decryptCompact(bad, alice.privateJwk))).to.equal("a part is not canonical base64url");
    });

    it("a part spelt with other unused trailing bits is refused: one payload, one spelling", async function () {
      // The ciphertext's last character carries bits base64url decoding drops; flip them.
      // 15 bytes of plaintext + 16 of tag = 31 bytes: 42 characters, 4 bits to spare.
      const parts = (await encryptCompact("for alice only!", alice.publicJwk)).split(".");
      const ciphertext = parts[3]!;
      const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
      const last = alphabet.indexOf(ciphertext.at(-1)!);
      const unusedBits = [0, 0, 4, 2][ciphertext.length % 4]!;
      expect(unusedBits, "the ciphertext length leaves spare bits").to.be.greaterThan(0);
      const respelt = `${ciphertext.slice(0, -1)}${alphabet[last ^ 1]}`;
      expect(Buffer.from(respelt, "base64url").equals(Buffer.from(ciphertext, "base64url"))).to.equal(true);
      const other = [parts[0], parts[1], parts[2], respelt, parts[4]].join(".");
      expect(await hpkeReason(decryptCompact(other, alice.privateJwk))).to.equal("a part is not canonical base64url");
    });

    it("encrypting to a private JWK is refused", async function () {
      expect(await hpkeReason(encryptCompact("x", alice.privateJwk))).to.equal("encrypt to a public key, not a private one");
    });

    it("encrypting to a key of another alg or curve is refused", async function () {
      expect(await hpkeReason(encryptCompact("x", { ...alice.publicJwk, alg: "ECDH-ES" }))).to.equal("the recipient key is for ECDH-ES, not HPKE-0");
      const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
      expect(await hpkeReason(encryptCompact("x", publicKey.export({ format: "jwk" }) as JWK))).to.equal("the recipient key is not an EC P-256 key");
    });

    it("decrypting with a public-only key is refused", async function () {
      expect(await hpkeReason(decryptCompact(toAlice, alice.publicJwk))).to.equal("decryption needs the private key");
    });
  });

  describe("statements: WSK-signed ES256 JWS with explicit typ", function () {
    const NOW = 1_900_000_000;
    const ISSUER = "https://issuer.example";
    const SESSION = "123e4567-e89b-12d3-a456-426614174000";
    /** Stands for the thumbprint of the issuer's encryption key (client payloads' aud). */
    const ISSUER_KEY_THUMBPRINT = "KfvD-eYaynUKba0ow-v9uoEV-twV6mYDyiAOWO6LoPM";
    const KINDS = Object.keys(STATEMENT_TYPES) as StatementKind[];

    const wsk = es256Pair();
    const otherWsk = es256Pair();
    const presentmentKey = es256Pair().publicJwk;

    const CONTEXTS: Record<StatementKind, StatementContext> = {
      nonce: { audience: ISSUER, sessionId: SESSION },
      wek: { audience: ISSUER, sessionId: SESSION },
      verificationData: { audience: ISSUER_KEY_THUMBPRINT, sessionId: SESSION, verificationId: "verification-A" },
      presentmentKeys: { audience: ISSUER_KEY_THUMBPRINT, sessionId: SESSION, credentialInstanceId: "instance-1" },
      action: { audience: ISSUER, sessionId: SESSION, credentialInstanceId: "instance-1" },
    };
    const CLAIMS: Record<StatementKind, Record<string, unknown>> = {
      nonce: {},
      wek: { jwk: { kty: "EC", crv: "P-256", x: presentmentKey.x, y: presentmentKey.y, alg: "HPKE-0", use: "enc" } },
      verificationData: { type: ITEM_TYPES.emailVerified, id: "item-1", email_verified: true },
      presentmentKeys: { presentmentKeys: [presentmentKey] },
      action: { action: "SUSPEND" },
    };

    /** Verification options at NOW with a fresh replay guard on the same clock. */
    const at = (now = NOW, scope = "issuer|wsk"): VerifyOptions => ({ now, replay: { guard: memoryReplayGuard(() => now), scope } });
    const sign = (kind: StatementKind, now = NOW, context = CONTEXTS[kind], key = wsk.privateJwk) =>
      signStatement(kind, context, CLAIMS[kind], key, { now });

    /** The payload signStatement would write for `kind` at NOW, for statements crafted by hand. */
    function payloadOf(kind: StatementKind, changes: Record<string, unknown> = {}): Record<string, unknown> {
      const { audience, ...rest } = CONTEXTS[kind];
      return { ...CLAIMS[kind], aud: audience, ...rest, iat: NOW, exp: NOW + MAX_LIFETIME_SECONDS[kind], jti: "crafted-jti-0123456789", ...changes };
    }
    /** A statement signed with jose by hand: any header, any payload (the WSK unless said otherwise). */
    async function craft(
      payload: Record<string, unknown>,
      header: CompactJWSHeaderParameters,
      options: { key?: JWK; crit?: Record<string, boolean> } = {},
    ): Promise<string> {
      return new CompactSign(Buffer.from(JSON.stringify(payload), "utf8"))
        .setProtectedHeader(header)
        .sign(await importJWK(options.key ?? wsk.privateJwk, "ES256"), options.crit ? { crit: options.crit } : undefined);
    }

    for (const kind of KINDS) {
      const typ = STATEMENT_TYPES[kind];
      const max = MAX_LIFETIME_SECONDS[kind];
      const verify = (jws: unknown, options: VerifyOptions = at(), context = CONTEXTS[kind], key = wsk.publicJwk) =>
        verifyStatement(kind, jws, key, context, options);
      const reason = (jws: unknown, options: VerifyOptions = at(), context = CONTEXTS[kind], key = wsk.publicJwk) =>
        statementReason(kind, verify(jws, options, context, key));

      describe(`${kind} (${typ})`, function () {
        it("honest: signed and verified with the right context, returns the payload with its claims", async function () {
          const jws = await sign(kind);
          expect(decodeProtectedHeader(jws)).to.deep.equal({ alg: "ES256", typ });
          const payload = await verify(jws);
          const { audience, ...rest } = CONTEXTS[kind];
          expect(payload).to.deep.include({ ...CLAIMS[kind], aud: audience, ...rest, iat: NOW, exp: NOW + max });
          expect(payload.jti).to.be.a("string").with.length.of.at.least(16);
        });

        it("honest twin of the crafted ones: a statement signed by hand like signStatement's verifies", async function () {
          expect(await verify(await craft(payloadOf(kind), { alg: "ES256", typ }))).to.deep.include(payloadOf(kind));
        });

        it("another WSK's signature is refused", async function () {
          expect(await reason(await sign(kind), at(), CONTEXTS[kind], otherWsk.publicJwk)).to.equal("the signature is not the session's wallet signing key's");
          expect(await reason(await sign(kind, NOW, CONTEXTS[kind], otherWsk.privateJwk))).to.equal("the signature is not the session's wallet signing key's");
        });

        it("the signature covers the claims: a changed session with the old signature is refused", async function () {
          const forged = tamper(await sign(kind), (claims) => (claims.sessionId = "another-session"));
          expect(await reason(forged, at(), { ...CONTEXTS[kind], sessionId: "another-session" })).to.equal("the signature is not the session's wallet signing key's");
        });

        const other = KINDS[(KINDS.indexOf(kind) + 1) % KINDS.length]!;
        it(`a ${other} statement presented as ${kind} is refused on typ`, async function () {
          const jws = await signStatement(other, CONTEXTS[kind], CLAIMS[kind], wsk.privateJwk, { now: NOW });
          expect(await reason(jws)).to.equal(`typ must be ${typ}`);
        });

        it("a typ in another spelling (JWT, application/…) is refused", async function () {
          expect(await reason(await craft(payloadOf(kind), { alg: "ES256", typ: "JWT" }))).to.equal(`typ must be ${typ}`);
          expect(await reason(await craft(payloadOf(kind), { alg: "ES256", typ: `application/${typ}` }))).to.equal(`typ must be ${typ}`);
          expect(await reason(await craft(payloadOf(kind), { alg: "ES256" }))).to.equal(`typ must be ${typ}`);
        });

        it("another audience is refused", async function () {
          expect(await reason(await sign(kind), at(), { ...CONTEXTS[kind], audience: "https://other-issuer.example" })).to.equal("aud is not this recipient");
          expect(await reason(await craft(payloadOf(kind, { aud: [CONTEXTS[kind].audience] }), { alg: "ES256", typ }))).to.equal("aud is not this recipient");
        });

        it("another session is refused", async function () {
          expect(await reason(await sign(kind), at(), { ...CONTEXTS[kind], sessionId: "223e4567-e89b-12d3-a456-426614174000" })).to.equal(
            "it is for another session",
          );
        });

        it(`expired is refused (exp ${CLOCK_SKEW_SECONDS} s or more ago); ${CLOCK_SKEW_SECONDS - 1} s ago passes`, async function () {
          const jws = await sign(kind, NOW - max - CLOCK_SKEW_SECONDS + 1); // exp = NOW - 29
          expect(await verify(jws)).to.include({ exp: NOW - CLOCK_SKEW_SECONDS + 1 });
          expect(await reason(jws, at(NOW + 1))).to.equal("it has expired");
          expect(await reason(await sign(kind, NOW - max - 3600))).to.equal("it has expired");
        });

        it(`iat more than ${CLOCK_SKEW_SECONDS} s in the future is refused; exactly ${CLOCK_SKEW_SECONDS} s passes`, async function () {
          expect(await verify(await sign(kind, NOW + CLOCK_SKEW_SECONDS))).to.include({ iat: NOW + CLOCK_SKEW_SECONDS });
          expect(await reason(await sign(kind, NOW + CLOCK_SKEW_SECONDS + 1))).to.equal("iat is in the future");
        });

        it(`a lifetime over ${max} s (crafted by hand) is refused; exactly ${max} s passes`, async function () {
          expect(await verify(await craft(payloadOf(kind, { exp: NOW + max }), { alg: "ES256", typ }))).to.include({ exp: NOW + max });
          expect(await reason(await craft(payloadOf(kind, { exp: NOW + max + 1 }), { alg: "ES256", typ }))).to.equal(`its lifetime must be at most ${max} s`);
          expect(await reason(await craft(payloadOf(kind, { exp: NOW }), { alg: "ES256", typ }))).to.equal(`its lifetime must be at most ${max} s`);
        });

        it("non-integer or missing iat/exp is refused", async function () {
          expect(await reason(await craft(payloadOf(kind, { iat: NOW + 0.5 }), { alg: "ES256", typ }))).to.equal("iat and exp must be integers");
          expect(await reason(await craft(payloadOf(kind, { exp: undefined }), { alg: "ES256", typ }))).to.equal("iat and exp must be integers");
        });

        it("alg none and an HS256 forgery keyed with the public WSK are refused", async function () {
          const unsigned = `${json64({ alg: "none", typ })}.${json64(payloadOf(kind))}.`;
          expect(await reason(unsigned)).to.equal("alg must be ES256");
          const input = `${json64({ alg: "HS256", typ })}.${json64(payloadOf(kind))}`;
          const mac = createHmac("sha256", JSON.stringify(wsk.publicJwk)).update(input).digest("base64url");
          expect(await reason(`${input}.${mac}`)).to.equal("alg must be ES256");
        });

        it("a crit header is refused (even one the signer marked as understood)", async function () {
          const jws = await craft(payloadOf(kind), { alg: "ES256", typ, crit: ["urn:example:policy"], "urn:example:policy": 1 }, { crit: { "urn:example:policy": true } });
          expect(await reason(jws)).to.equal("crit is not supported");
        });

        it("a missing or too short jti is refused", async function () {
          const reasonText = "jti must be a string of 16 to 128 characters";
          expect(await reason(await craft(payloadOf(kind, { jti: undefined }), { alg: "ES256", typ }))).to.equal(reasonText);
          expect(await reason(await craft(payloadOf(kind, { jti: "short" }), { alg: "ES256", typ }))).to.equal(reasonText);
          expect(await reason(await craft(payloadOf(kind, { jti: 1234567890123456789 }), { alg: "ES256", typ }))).to.equal(reasonText);
        });

        it("not a compact JWS is refused", async function () {
          expect(await reason(undefined)).to.equal("it is not a compact JWS");
          expect(await reason("a.b")).to.equal("it is not a compact JWS");
          expect(await reason(`${await sign(kind)}.x`)).to.equal("it is not a compact JWS");
        });

        if (kind === "wek") {
          it("wek+jwt is reusable while valid: verified twice, without a replay guard", async function () {
            const jws = await sign(kind);
            await verify(jws, { now: NOW });
            expect(await verify(jws, { now: NOW + 60 })).to.have.property("jwk");
          });
        } else {
          it("single use: a second verification in the same scope is refused; the same jti in another scope passes", async function () {
            const jws = await sign(kind);
            const guard = memoryReplayGuard(() => NOW);
            await verify(jws, { now: NOW, replay: { guard, scope: "issuer-1|wsk" } });
            expect(await reason(jws, { now: NOW, replay: { guard, scope: "issuer-1|wsk" } })).to.equal("it was used before (jti)");
            expect(await verify(jws, { now: NOW, replay: { guard, scope: "issuer-2|wsk" } })).to.have.property("jti");
          });

          it("a refused statement does not spend its jti", async function () {
            const jws = await sign(kind);
            const guard = memoryReplayGuard(() => NOW);
            const replay = { guard, scope: "s" };
            expect(await reason(jws, { now: NOW, replay }, { ...CONTEXTS[kind], sessionId: "other" })).to.equal("it is for another session");
            expect(await verify(jws, { now: NOW, replay })).to.have.property("jti");
          });

          it("a single-use statement without a replay guard is refused", async function () {
            expect(await reason(await sign(kind), { now: NOW })).to.equal("no replay guard was given for a single-use statement");
          });
        }
      });
    }

    it("a nonce presented as verification data fails on typ (not on audience)", async function () {
      const nonce = await signStatement("nonce", CONTEXTS.verificationData, {}, wsk.privateJwk, { now: NOW });
      expect(await statementReason("verificationData", verifyStatement("verificationData", nonce, wsk.publicJwk, CONTEXTS.verificationData, at()))).to.equal(
        "typ must be verification-data+jwt",
      );
    });

    it("verification data for another verification, or for none, is refused where a verificationId is expected", async function () {
      const jws = await sign("verificationData");
      const forB = { ...CONTEXTS.verificationData, verificationId: "verification-B" };
      expect(await statementReason("verificationData", verifyStatement("verificationData", jws, wsk.publicJwk, forB, at()))).to.equal("it is for another verification");
      const unbound = await sign("verificationData", NOW, { audience: ISSUER_KEY_THUMBPRINT, sessionId: SESSION });
      expect(
        await statementReason("verificationData", verifyStatement("verificationData", unbound, wsk.publicJwk, CONTEXTS.verificationData, at())),
      ).to.equal("it is for another verification");
    });

    it("presentment keys for another credential instance are refused", async function () {
      const jws = await sign("presentmentKeys");
      const other = { ...CONTEXTS.presentmentKeys, credentialInstanceId: "instance-2" };
      expect(await statementReason("presentmentKeys", verifyStatement("presentmentKeys", jws, wsk.publicJwk, other, at()))).to.equal(
        "it is for another credential instance",
      );
    });

    it("signStatement caps the lifetime at the kind's maximum", async function () {
      const jws = await signStatement("nonce", CONTEXTS.nonce, {}, wsk.privateJwk, { now: NOW, lifetime: 86_400 });
      expect(await verifyStatement("nonce", jws, wsk.publicJwk, CONTEXTS.nonce, at())).to.include({ exp: NOW + 600 });
    });

    it("claims cannot override the context, times or jti", async function () {
      const claims = { aud: "https://evil.example", sessionId: "evil", iat: 1, exp: 2, jti: "evil-jti-0123456789" };
      const jws = await signStatement("nonce", CONTEXTS.nonce, claims, wsk.privateJwk, { now: NOW });
      const payload = await verifyStatement("nonce", jws, wsk.publicJwk, CONTEXTS.nonce, at());
      expect(payload).to.include({ aud: ISSUER, sessionId: SESSION, iat: NOW, exp: NOW + 600 });
      expect(payload.jti).to.not.equal(claims.jti);
    });
  });

  describe("client payloads: sign-then-encrypt, WEK statements, sealed credentials", function () {
    // Taken when the tests run, not when mocha loads this file: in the full suite that is
    // minutes earlier, and the statements signed at it would have expired.
    let NOW = 0;
    before(() => {
      NOW = Math.floor(Date.now() / 1000);
    });
    const ISSUER = "https://issuer.example";
    const SESSION = "123e4567-e89b-12d3-a456-426614174000";
    const wsk = es256Pair();
    const otherWsk = es256Pair();
    const item = { type: ITEM_TYPES.emailVerified, id: "item-1", email_verified: true };
    const forA: PayloadContext = { sessionId: SESSION, verificationId: "verification-A" };
    const replay = () => ({ replay: { guard: memoryReplayGuard(), scope: `${ISSUER}|wsk` } });

    let issuer: Awaited<ReturnType<typeof generateHpkeKeyPair>>;
    let otherIssuer: Awaited<ReturnType<typeof generateHpkeKeyPair>>;
    let wek: Awaited<ReturnType<typeof generateHpkeKeyPair>>;
    let serverWek: Awaited<ReturnType<typeof generateHpkeKeyPair>>;
    before(async function () {
      [issuer, otherIssuer, wek, serverWek] = await Promise.all([generateHpkeKeyPair(), generateHpkeKeyPair(), generateHpkeKeyPair(), generateHpkeKeyPair()]);
    });

    const seal = (context = forA, key = wsk.privateJwk) => sealClientPayload("verificationData", item, context, key, issuer.publicJwk, { now: NOW });
    const open = (jwe: string, context = forA, options = replay(), kind: "verificationData" | "presentmentKeys" = "verificationData") =>
      openClientPayload(kind, "WALLET_CLIENT", jwe, issuer.privateJwk, wsk.publicJwk, context, options);

    it("honest: sealed by the client, opened by the issuer, the item comes back", async function () {
      const sealed = await sealClientPayload("verificationData", item, forA, wsk.privateJwk, issuer.publicJwk, { now: NOW, purpose: "email" });
      expect(sealed).to.include({ origin: "WALLET_CLIENT", purpose: "email" });
      expect(jweEncryptedPayloadSchema.safeParse(sealed).success).to.equal(true);
      expect(jweHeader(sealed.jwe!)).to.deep.equal({ alg: "HPKE-0", kid: issuer.publicJwk.kid, cty: "JWT" });
      const payload = await open(sealed.jwe!);
      expect(payload).to.include({ ...item, ...forA, aud: await thumbprint(issuer.publicJwk) });
    });

    it("another issuer key cannot open it: invalid_encryption", async function () {
      const { jwe } = await seal();
      const problem = await problemOf(openClientPayload("verificationData", "WALLET_CLIENT", jwe!, otherIssuer.privateJwk, wsk.publicJwk, forA, replay()));
      expect(problem.type).to.equal(S2S_INVALID_ENCRYPTION);
      expect(problem.detail).to.include("the JWE is for another key (kid)");
      const posing = { ...otherIssuer.privateJwk, kid: issuer.privateJwk.kid };
      const forged = await problemOf(openClientPayload("verificationData", "WALLET_CLIENT", jwe!, posing, wsk.publicJwk, forA, replay()));
      expect(forged.type).to.equal(S2S_INVALID_ENCRYPTION);
      expect(forged.detail).to.include("decryption failed");
    });

    it("an altered or malformed JWE: invalid_encryption", async function () {
      const { jwe } = await seal();
      expect((await problemOf(open(flipBit(jwe!, 3, 5)))).type).to.equal(S2S_INVALID_ENCRYPTION);
      expect((await problemOf(open("not a jwe"))).type).to.equal(S2S_INVALID_ENCRYPTION);
    });

    it("encrypted to the right key but signed for another key's thumbprint (aud): invalid_client_authentication", async function () {
      const jws = await signStatement("verificationData", { audience: await thumbprint(otherIssuer.publicJwk), ...forA }, item, wsk.privateJwk, { now: NOW });
      const jwe = await encryptCompact(jws, issuer.publicJwk, { cty: "JWT" });
      const problem = await problemOf(open(jwe));
      expect(problem.type).to.equal(S2S_INVALID_CLIENT_AUTHENTICATION);
      expect(problem.detail).to.include("aud is not this recipient");
      // honest twin: the same construction with the right thumbprint opens
      const right = await signStatement("verificationData", { audience: await thumbprint(issuer.publicJwk), ...forA }, item, wsk.privateJwk, { now: NOW });
      expect(await open(await encryptCompact(right, issuer.publicJwk, { cty: "JWT" }))).to.include(item);
    });

    it("an inner JWS signed by another WSK: invalid_client_authentication", async function () {
      const { jwe } = await seal(forA, otherWsk.privateJwk);
      const problem = await problemOf(open(jwe!));
      expect(problem.type).to.equal(S2S_INVALID_CLIENT_AUTHENTICATION);
      expect(problem.detail).to.include("the signature is not the session's wallet signing key's");
    });

    it("a plaintext that is not a JWS: invalid_client_authentication", async function () {
      const jwe = await encryptCompact(JSON.stringify(item), issuer.publicJwk, { cty: "JWT" });
      const problem = await problemOf(open(jwe));
      expect(problem.type).to.equal(S2S_INVALID_CLIENT_AUTHENTICATION);
      expect(problem.detail).to.include("it is not a compact JWS");
    });

    for (const origin of ["WALLET_SERVER", "ISSUER", "wallet_client"]) {
      it(`origin ${origin}: invalid_client_authentication`, async function () {
        const { jwe } = await seal();
        const problem = await problemOf(openClientPayload("verificationData", origin, jwe!, issuer.privateJwk, wsk.publicJwk, forA, replay()));
        expect(problem.type).to.equal(S2S_INVALID_CLIENT_AUTHENTICATION);
        expect(problem.detail).to.equal("a client payload must have origin WALLET_CLIENT");
      });
    }

    it("the same payload replayed (same guard and scope): invalid_client_authentication", async function () {
      const { jwe } = await seal();
      const options = replay();
      await open(jwe!, forA, options);
      const problem = await problemOf(open(jwe!, forA, options));
      expect(problem.type).to.equal(S2S_INVALID_CLIENT_AUTHENTICATION);
      expect(problem.detail).to.include("it was used before (jti)");
    });

    it("a payload for verification A presented for verification B: invalid_client_authentication", async function () {
      const { jwe } = await seal();
      const problem = await problemOf(open(jwe!, { sessionId: SESSION, verificationId: "verification-B" }));
      expect(problem.type).to.equal(S2S_INVALID_CLIENT_AUTHENTICATION);
      expect(problem.detail).to.include("it is for another verification");
    });

    // A payload the client bound to verification A (a supplement) must not be accepted
    // where no verification exists yet (an initiate, which starts a new one): a Wallet
    // Server that withholds it from A could otherwise spend it on a new verification.
    // The same holds for credentialInstanceId on presentment keys.
    it("a payload bound to verification A is refused where no verification exists yet (initiate)", async function () {
      const { jwe } = await seal(); // bound to verification-A
      const initiate: PayloadContext = { sessionId: SESSION };
      const honest = await sealClientPayload("verificationData", item, initiate, wsk.privateJwk, issuer.publicJwk, { now: NOW });
      expect(await open(honest.jwe!, initiate)).to.include(item); // honest twin: an unbound payload opens at initiate
      const problem = await problemOf(open(jwe!, initiate), "verification A's payload opened at initiate");
      expect(problem.type).to.equal(S2S_INVALID_CLIENT_AUTHENTICATION);
    });

    it("a verificationData payload presented as presentmentKeys: invalid_client_authentication on typ", async function () {
      const { jwe } = await seal({ sessionId: SESSION, credentialInstanceId: "instance-1" });
      const problem = await problemOf(open(jwe!, { sessionId: SESSION, credentialInstanceId: "instance-1" }, replay(), "presentmentKeys"));
      expect(problem.type).to.equal(S2S_INVALID_CLIENT_AUTHENTICATION);
      expect(problem.detail).to.include("typ must be presentment-keys+jwt");
    });

    it("presentment keys: honest twin opens; another credential instance is refused", async function () {
      const keys = { presentmentKeys: [es256Pair().publicJwk] };
      const context = { sessionId: SESSION, credentialInstanceId: "instance-1" };
      const { jwe } = await sealClientPayload("presentmentKeys", keys, context, wsk.privateJwk, issuer.publicJwk, { now: NOW });
      expect(await open(jwe!, context, replay(), "presentmentKeys")).to.deep.include(keys);
      const problem = await problemOf(open(jwe!, { ...context, credentialInstanceId: "instance-2" }, replay(), "presentmentKeys"));
      expect(problem.type).to.equal(S2S_INVALID_CLIENT_AUTHENTICATION);
      expect(problem.detail).to.include("it is for another credential instance");
    });

    describe("wallet encryption key (wek+jwt)", function () {
      const keyData = () => walletEncryptionKeyData(wek.publicJwk, ISSUER, SESSION, wsk.privateJwk, { now: NOW });
      const problemOfWek = async (data: Parameters<typeof verifyWalletEncryptionKey>[0], what?: string) => {
        const problem = await problemOf(verifyWalletEncryptionKey(data, wsk.publicJwk, ISSUER, SESSION, { now: NOW }), what);
        expect(problem.type).to.equal(S2S_INVALID_CLIENT_AUTHENTICATION);
        return problem.detail;
      };

      it("honest: the issuer gets back exactly the client's WEK", async function () {
        const data = await keyData();
        expect(keyDataSchema.safeParse(data).success).to.equal(true);
        expect(data.keyType).to.equal(KEY_TYPES.encryption);
        const verified = await verifyWalletEncryptionKey(data, wsk.publicJwk, ISSUER, SESSION, { now: NOW });
        expect(verified).to.deep.equal({ kty: "EC", crv: "P-256", x: wek.publicJwk.x, y: wek.publicJwk.y, kid: wek.publicJwk.kid, alg: "HPKE-0", use: "enc" });
        expect(await verifyWalletEncryptionKey(data, wsk.publicJwk, ISSUER, SESSION, { now: NOW + 60 })).to.deep.equal(verified); // reusable
      });

      it("a Wallet Server swapping client_public_key for its own key, keeping the statement, is refused", async function () {
        const data = { ...(await keyData()), client_public_key: { ...serverWek.publicJwk } };
        expect(await problemOfWek(data)).to.equal("walletEncryptionKey is not the key its wek+jwt statement signs");
      });

      it("a statement for another issuer or another session is refused", async function () {
        const forOther = await walletEncryptionKeyData(wek.publicJwk, "https://other-issuer.example", SESSION, wsk.privateJwk, { now: NOW });
        expect(await problemOfWek(forOther)).to.include("aud is not this recipient");
        const otherSession = await walletEncryptionKeyData(wek.publicJwk, ISSUER, "223e4567-e89b-12d3-a456-426614174000", wsk.privateJwk, { now: NOW });
        expect(await problemOfWek(otherSession)).to.include("it is for another session");
      });

      it("a statement signed by a WSK the Wallet Server invented is refused", async function () {
        const invented = es256Pair();
        const data = await walletEncryptionKeyData(serverWek.publicJwk, ISSUER, SESSION, invented.privateJwk, { now: NOW });
        expect(await problemOfWek(data)).to.include("the signature is not the session's wallet signing key's");
      });

      it("a statement of another typ (a nonce naming the key) is refused", async function () {
        const data = await keyData();
        const jwt = await signStatement("nonce", { audience: ISSUER, sessionId: SESSION }, { jwk: data.client_public_key }, wsk.privateJwk, { now: NOW });
        expect(await problemOfWek({ ...data, attestation: { proof_type: "jwt", jwt } })).to.include("typ must be wek+jwt");
      });

      it("an expired statement is refused", async function () {
        const data = await walletEncryptionKeyData(wek.publicJwk, ISSUER, SESSION, wsk.privateJwk, { now: NOW - 3600 - CLOCK_SKEW_SECONDS });
        expect(await problemOfWek(data)).to.include("it has expired");
      });

      it("a missing or malformed attestation is refused", async function () {
        const data = await keyData();
        const { attestation, ...bare } = data;
        const needs = "walletEncryptionKey needs a wek+jwt statement signed by the wallet signing key in attestation {proof_type: jwt, jwt}";
        expect(await problemOfWek(bare)).to.equal(needs);
        expect(await problemOfWek({ ...data, attestation: { ...(attestation as object), proof_type: "attestation" } })).to.equal(needs);
        expect(await problemOfWek({ ...data, attestation: { proof_type: "jwt" } })).to.equal(needs);
      });

      it("a wrong keyType is refused", async function () {
        const data = { ...(await keyData()), keyType: KEY_TYPES.signing };
        expect(await problemOfWek(data)).to.equal("walletEncryptionKey.keyType must be WALLET_ENCRYPTION_KEY");
      });

      it("credentials sealed to the verified WEK open with the WEK's private key, and with no other", async function () {
        const verified = await verifyWalletEncryptionKey(await keyData(), wsk.publicJwk, ISSUER, SESSION, { now: NOW });
        const credentials = ["eyJ.sd-jwt.vc~disclosure~", "second~"];
        const sealed = await sealCredentials(credentials, verified);
        expect(sealed.origin).to.equal("ISSUER");
        expect(jweHeader(sealed.jwe!)).to.include({ alg: "HPKE-0", kid: wek.publicJwk.kid, cty: "json" });
        expect(await openCredentials(sealed, wek.privateJwk)).to.deep.equal(credentials);
        expect(await hpkeReason(openCredentials(sealed, serverWek.privateJwk))).to.equal("the JWE is for another key (kid)");
        const posing = { ...serverWek.privateJwk, kid: wek.privateJwk.kid };
        expect(await hpkeReason(openCredentials(sealed, posing))).to.equal("decryption failed (wrong key, or the JWE was altered)");
      });

      it("credentials claimed to come from the Wallet Server, or without a jwe, are refused", async function () {
        const sealed = await sealCredentials(["c"], wek.publicJwk);
        const error = await rejectionOf(openCredentials({ ...sealed, origin: "WALLET_SERVER" }, wek.privateJwk));
        expect((error as Error).message).to.equal("credentials must have origin ISSUER");
        const bare = await rejectionOf(openCredentials({ origin: "ISSUER" }, wek.privateJwk));
        expect((bare as Error).message).to.equal("credentials carry no jwe");
      });
    });
  });

  describe("messages: zod schemas", function () {
    const SESSION = "123e4567-e89b-12d3-a456-426614174000";
    const DIGEST = "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg";
    const issuePaths = (result: { success: boolean; error?: { issues: { path: PropertyKey[] }[] } }) =>
      (result.error?.issues ?? []).map((issue) => issue.path.join("/"));

    it("verificationStatusSchema: APPROVED needs credentialConfigurationIds (non-empty)", function () {
      const approved = { sessionId: SESSION, verificationId: "v", status: "APPROVED" };
      expect(verificationStatusSchema.safeParse({ ...approved, credentialConfigurationIds: ["email"] }).success).to.equal(true);
      expect(issuePaths(verificationStatusSchema.safeParse(approved))).to.deep.equal(["credentialConfigurationIds"]);
      expect(issuePaths(verificationStatusSchema.safeParse({ ...approved, credentialConfigurationIds: [] }))).to.deep.equal(["credentialConfigurationIds"]);
    });

    it("verificationStatusSchema: DENIED needs deniedMessage", function () {
      const denied = { sessionId: SESSION, verificationId: "v", status: "DENIED", reasonCode: "policy" };
      expect(verificationStatusSchema.safeParse({ ...denied, deniedMessage: "Sorry." }).success).to.equal(true);
      expect(issuePaths(verificationStatusSchema.safeParse(denied))).to.deep.equal(["deniedMessage"]);
    });

    it("jweEncryptedPayloadSchema: jwe alone, or downloadUrl with contentDigest", function () {
      expect(jweEncryptedPayloadSchema.safeParse({ jwe: "a.b..c.", origin: "ISSUER" }).success).to.equal(true);
      expect(jweEncryptedPayloadSchema.safeParse({ downloadUrl: "https://cdn.example/p", contentDigest: DIGEST, origin: "ISSUER" }).success).to.equal(true);
    });

    it("jweEncryptedPayloadSchema refuses neither, both, and a reference over http", function () {
      expect(jweEncryptedPayloadSchema.safeParse({ origin: "ISSUER" }).success).to.equal(false);
      expect(jweEncryptedPayloadSchema.safeParse({ downloadUrl: "https://cdn.example/p", origin: "ISSUER" }).success).to.equal(false);
      expect(jweEncryptedPayloadSchema.safeParse({ jwe: "a.b..c.", downloadUrl: "https://cdn.example/p", contentDigest: DIGEST, origin: "ISSUER" }).success).to.equal(false);
      expect(jweEncryptedPayloadSchema.safeParse({ downloadUrl: "http://cdn.example/p", contentDigest: DIGEST, origin: "ISSUER" }).success).to.equal(false);
    });

    // A payload carries a jwe or a reference, never both: a receiver that preferred the
    // downloadUrl would otherwise fetch without a digest to check.
    it("jweEncryptedPayloadSchema refuses a jwe together with a downloadUrl (without contentDigest)", function () {
      const both = { jwe: "a.b..c.", downloadUrl: "https://cdn.example/p", origin: "ISSUER" };
      expect(jweEncryptedPayloadSchema.safeParse(both).success, "jwe and downloadUrl were both accepted").to.equal(false);
    });

    it("provisionResponseSchema reads credentialInstances and the draft's CredentialInstances", function () {
      const instances = [{ credentialConfigurationId: "email", credentialInstanceIds: ["i-1", "i-2"] }];
      expect(provisionResponseSchema.parse({ credentialInstances: instances }).credentialInstances).to.deep.equal(instances);
      expect(provisionResponseSchema.parse({ CredentialInstances: instances }).credentialInstances).to.deep.equal(instances);
      expect(issuePaths(provisionResponseSchema.safeParse({}))).to.deep.equal(["credentialInstances"]);
    });

    it("unknown members and extensions survive parsing", function () {
      const status = verificationStatusSchema.parse({
        sessionId: SESSION,
        verificationId: "v",
        status: "PENDING",
        futureMember: { a: 1 },
        extensions: { "urn:example:x": [1, 2] },
      });
      expect(status).to.deep.include({ futureMember: { a: 1 }, extensions: { "urn:example:x": [1, 2] } });
      const payload = jweEncryptedPayloadSchema.parse({ jwe: "a.b..c.", origin: "WALLET_CLIENT", unknown: true, extensions: { e: "x" } });
      expect(payload).to.deep.include({ unknown: true, extensions: { e: "x" } });
      const key = keyDataSchema.parse({ keyType: KEY_TYPES.signing, client_public_key: { kty: "EC", crv: "P-256", x: "x", y: "y" }, other: 1, extensions: { n: 2 } });
      expect(key).to.deep.include({ other: 1, extensions: { n: 2 } });
      expect(key.client_public_key).to.include({ crv: "P-256", x: "x", y: "y" });
    });

    // Unknown members are kept (messages.ts), also through the provision answer's transform.
    it("provisionResponseSchema keeps unknown members too", function () {
      const instances = [{ credentialConfigurationId: "email", credentialInstanceIds: ["i-1"] }];
      const parsed = provisionResponseSchema.parse({ credentialInstances: instances, futureMember: 1, extensions: { e: 1 } });
      expect(parsed).to.deep.include({ extensions: { e: 1 } });
      expect(parsed, "provisionResponseSchema dropped an unknown member").to.have.property("futureMember", 1);
    });
  });
});
