// Orchestration's check of what Token mints for apps, in-process with keys made here.
// The end-to-end attacks (a rogue Token in the four-process mesh) are
// test/e2e/rogue-token.spec.ts; these are the rules one by one, each with
// the honest answer beside it.

import { expect } from "chai";
import { type JWK, type JWTPayload, SignJWT } from "jose";
import { type SigningKey, VerificationKeys, generateSigningKey, publicJwk } from "../../protocol/signing-keys.js";
import { ProtocolViolation, checkIdToken, checkMinted, checkUserinfoJson, checkUserinfoJwt, type MintExpectation } from "./minted-check.js";

describe("Orchestration's check of what Token mints (minted-check.ts)", function () {
  const idKey = generateSigningKey("id-token", "ES256");
  const userinfoKey = generateSigningKey("userinfo", "ES256");
  const keys = (...extra: SigningKey[]) => new VerificationKeys([idKey, userinfoKey, ...extra].map(publicJwk));
  const now = new Date();
  const t = Math.floor(now.getTime() / 1000);
  const expected: MintExpectation = {
    issuer: "https://hello.example",
    clientId: "app-a",
    nonce: "the-apps-nonce",
    sub: "directed-0001",
    claims: { email: "alice@example.com", email_verified: true },
    authTime: t - 20,
  };
  const sign = (payload: JWTPayload, key: SigningKey, typ: string) =>
    new SignJWT(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, typ }).sign(key.privateKey);
  const idClaims = (): JWTPayload => ({
    iss: expected.issuer, sub: expected.sub, aud: expected.clientId, iat: t, exp: t + 600, nonce: expected.nonce,
    auth_time: expected.authTime, ...expected.claims,
  });
  const userinfoClaims = (): JWTPayload => ({ iss: expected.issuer, sub: expected.sub, aud: expected.clientId, iat: t, exp: t + 660, ...expected.claims });
  const refused = (check: () => unknown, reason: RegExp) => expect(check).to.throw(ProtocolViolation, reason);
  let idToken: string;
  before(async () => (idToken = await sign(idClaims(), idKey, "JWT")));

  it("the honest answers pass, together and one by one", async function () {
    const minted = {
      idToken: await sign(idClaims(), idKey, "JWT"),
      userinfoJwt: await sign(userinfoClaims(), userinfoKey, "userinfo+jwt"),
      userinfoJson: JSON.stringify({ sub: expected.sub, ...expected.claims }),
    };
    checkMinted(minted, expected, keys(), now);
    // aud as a one-element array, and azp naming the app, are the same statement
    checkIdToken(await sign({ ...idClaims(), aud: [expected.clientId], azp: expected.clientId }, idKey, "JWT"), expected, keys(), now);
  });

  it("auth_time is the provider's: absent when the provider sent none, and then it may not appear", async function () {
    const without = { ...expected, authTime: undefined };
    const { auth_time: _dropped, ...noAuthTime } = idClaims();
    checkIdToken(await sign(noAuthTime, idKey, "JWT"), without, keys(), now);
    refused(() => checkIdToken("", without, keys(), now), /not valid/);
    const stamped = await sign({ ...noAuthTime, auth_time: t }, idKey, "JWT");
    refused(() => checkIdToken(stamped, without, keys(), now), /carries a claim the release does not list \(auth_time\)/);
    refused(() => checkIdToken(stamped, expected, keys(), now), /its auth_time is not the provider's/);
  });

  it("a token signed by a key that was retired before it was signed is refused (honest twin: signed before)", async function () {
    // A published key carries `retired` once it stops signing (signing-keys.ts, publicJwk).
    const retiredAt = (when: number): JWK => ({ ...publicJwk(idKey), retired: new Date(when * 1000).toISOString() }) as JWK;
    const afterRetirement = new VerificationKeys([retiredAt(t - 3600), publicJwk(userinfoKey)]);
    refused(() => checkIdToken(idToken, expected, afterRetirement, now), /signed after its key was retired/);
    const stillActive = new VerificationKeys([retiredAt(t + 10), publicJwk(userinfoKey)]);
    checkIdToken(idToken, expected, stillActive, now);
  });
  it("each purpose's key for its own answer only: an ID Token by the userinfo key, or a userinfo JWT by the ID Token key, is refused", async function () {
    refused(() => checkIdToken(idToken, expected, new VerificationKeys([publicJwk(userinfoKey)]), now), /not a known id-token key/);
    const crossed = await sign(userinfoClaims(), idKey, "userinfo+jwt");
    refused(() => checkUserinfoJwt(crossed, expected, keys(), now), /not a known userinfo key/);
    const asIdToken = await sign(idClaims(), userinfoKey, "JWT");
    refused(() => checkIdToken(asIdToken, expected, keys(), now), /not a known id-token key/);
  });

  it("userinfo as JSON: exactly the sub and the released claims", function () {
    checkUserinfoJson(JSON.stringify({ sub: expected.sub, ...expected.claims }), expected);
    refused(() => checkUserinfoJson(JSON.stringify({ sub: expected.sub, email: expected.claims.email }), expected), /lacks the released claim email_verified/);
    refused(() => checkUserinfoJson(JSON.stringify({ sub: expected.sub, ...expected.claims, name: "x" }), expected), /carries a claim the release does not list \(name\)/);
    refused(() => checkUserinfoJson(JSON.stringify({ sub: expected.sub, ...expected.claims, email_verified: "true" }), expected), /its email_verified is not the wallet's/);
    refused(() => checkUserinfoJson("[]", expected), /not a JSON object/);
    refused(() => checkUserinfoJson("{", expected), /not JSON/);
    // a claim name that is no claim name is not repeated back
    refused(() => checkUserinfoJson(JSON.stringify({ sub: expected.sub, ...expected.claims, "<script>": 1 }), expected), /\(an unknown claim\)/);
  });
});
