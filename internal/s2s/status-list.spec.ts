import { generateKeyPairSync } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { StatusList } from "@sd-jwt/jwt-status-list";
import { expect } from "chai";
import { type JWK, SignJWT, UnsecuredJWT } from "jose";
import { STATUS_LIST_MEDIA_TYPE, StatusListError, checkStatusListUri, fetchCredentialStatus, readStatusList, signStatusList } from "./status-list.js";

const URI = "https://issuer.example/status-lists/1";
const ISSUER = "https://issuer.example";

function issuerKey(kid: string) {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = { ...(publicKey.export({ format: "jwk" }) as JWK), kid, alg: "ES256", use: "sig" };
  return { signing: { privateKey, kid }, jwk };
}

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(StatusListError);
    return (error as Error).message;
  }
  throw new Error("expected a refusal");
}

describe("Token Status List (status-list.ts)", function () {
  const key = issuerKey("k1");
  const other = issuerKey("k1");
  const issuerKeys = { keys: [key.jwk] };
  const now = 1_800_000_000;
  const values = [0, 1, 2, 0, 0];
  const sign = (extra: Partial<Parameters<typeof signStatusList>[0]> = {}) =>
    signStatusList({ uri: URI, issuer: ISSUER, values, signingKey: key.signing, issuedAt: now, validitySeconds: 300, ...extra });
  const expected = { issuer: ISSUER, issuerKeys, now };

  it("reads each entry of a list its issuer signed: VALID, REVOKED (INVALID), SUSPENDED", async function () {
    const token = await sign();
    const read = await Promise.all([0, 1, 2, 3].map((idx) => readStatusList(token, { idx, uri: URI }, expected)));
    expect(read).to.deep.equal(["VALID", "REVOKED", "SUSPENDED", "VALID"]);
  });

  it("refuses a list signed by another key under the same kid, or a kid the issuer does not have", async function () {
    const forged = await signStatusList({ uri: URI, issuer: ISSUER, values: [0, 0], signingKey: other.signing, issuedAt: now, validitySeconds: 300 });
    expect(await refusal(readStatusList(forged, { idx: 1, uri: URI }, expected))).to.match(/refused/);
    const stranger = issuerKey("k2");
    const unknown = await signStatusList({ uri: URI, issuer: ISSUER, values: [0, 0], signingKey: stranger.signing, issuedAt: now, validitySeconds: 300 });
    expect(await refusal(readStatusList(unknown, { idx: 1, uri: URI }, expected))).to.match(/not signed by a key of the credential's issuer/);
  });

  it("refuses a list for another uri (sub), of another issuer (iss), expired, or issued in the future", async function () {
    expect(await refusal(readStatusList(await sign({ uri: `${URI}x` }), { idx: 0, uri: URI }, expected))).to.match(/sub/);
    expect(await refusal(readStatusList(await sign({ issuer: "https://other.example" }), { idx: 0, uri: URI }, expected))).to.match(/iss/);
    expect(await refusal(readStatusList(await sign({ issuedAt: now - 1000 }), { idx: 0, uri: URI }, expected))).to.match(/exp/);
    expect(await refusal(readStatusList(await sign({ issuedAt: now + 120 }), { idx: 0, uri: URI }, expected))).to.match(/iat/);
  });

  it("refuses another typ, alg none, an index outside the list and a value it does not know", async function () {
    const list = new StatusList([0, 3], 2);
    const body = { sub: URI, iat: now, exp: now + 300, status_list: { bits: 2, lst: list.compressStatusList() } };
    const wrongTyp = await new SignJWT(body).setProtectedHeader({ alg: "ES256", typ: "JWT", kid: "k1" }).sign(key.signing.privateKey);
    expect(await refusal(readStatusList(wrongTyp, { idx: 0, uri: URI }, expected))).to.match(/typ must be statuslist\+jwt/);
    const unsigned = new UnsecuredJWT(body).encode().replace(/^[^.]+/, Buffer.from(JSON.stringify({ alg: "none", typ: "statuslist+jwt", kid: "k1" })).toString("base64url"));
    expect(await refusal(readStatusList(unsigned, { idx: 0, uri: URI }, expected))).to.match(/ES256/);
    const odd = await new SignJWT(body).setProtectedHeader({ alg: "ES256", typ: "statuslist+jwt", kid: "k1" }).sign(key.signing.privateKey);
    expect(await refusal(readStatusList(odd, { idx: 1, uri: URI }, expected))).to.match(/status 3/);
    expect(await refusal(readStatusList(await sign(), { idx: values.length + 10, uri: URI }, expected))).to.match(/outside the status list/);
    expect(await refusal(readStatusList("not a jwt", { idx: 0, uri: URI }, expected))).to.match(/not a JWT/);
  });

  it("fetches https, or http only on a loopback address", function () {
    expect(checkStatusListUri("https://issuer.example/l").href).to.equal("https://issuer.example/l");
    expect(checkStatusListUri("http://127.0.0.1:9/l").protocol).to.equal("http:");
    expect(checkStatusListUri("http://localhost:9/l").protocol).to.equal("http:");
    for (const uri of ["http://issuer.example/l", "file:///etc/passwd", "nope"]) {
      expect(() => checkStatusListUri(uri), uri).to.throw(StatusListError);
    }
  });

  it("fetches the list with its media type, and refuses another type or status", async function () {
    let answer: { status: number; type: string; body: string } = { status: 200, type: STATUS_LIST_MEDIA_TYPE, body: "" };
    const accepted: string[] = [];
    const server = createServer((req, res) => {
      accepted.push(String(req.headers.accept));
      res.writeHead(answer.status, { "content-type": answer.type }).end(answer.body);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const uri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/lists/1`;
      answer = { ...answer, body: await sign({ uri }) };
      expect(await fetchCredentialStatus({ idx: 2, uri }, expected)).to.equal("SUSPENDED");
      expect(accepted[0]).to.equal(STATUS_LIST_MEDIA_TYPE);
      answer = { ...answer, type: "application/jwt" };
      expect(await refusal(fetchCredentialStatus({ idx: 2, uri }, expected))).to.match(/is not application\/statuslist\+jwt/);
      answer = { ...answer, status: 404, type: STATUS_LIST_MEDIA_TYPE };
      expect(await refusal(fetchCredentialStatus({ idx: 2, uri }, expected))).to.match(/answered 404/);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
