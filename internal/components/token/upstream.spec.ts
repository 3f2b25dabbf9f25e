// Token fetches an allow-listed provider's JWKS itself (docs/design.md §1, §4 step 3):
// no redirects, a size cap, a cache, and a rate-limited refetch on an unknown kid.

import http from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import { type JWK, SignJWT, exportJWK, generateKeyPair } from "jose";
import { MAX_JWKS_BYTES, UpstreamVerifier } from "./upstream.js";
import { invalidTokenReason } from "../../../test/support/refusal.js";

interface Op {
  url: string;
  hits: Record<string, number>;
  respond: Record<string, (res: http.ServerResponse) => void>;
  close(): Promise<void>;
}

async function startOp(): Promise<Op> {
  const hits: Record<string, number> = {};
  const respond: Op["respond"] = {};
  const server = http.createServer((req, res) => {
    hits[req.url!] = (hits[req.url!] ?? 0) + 1;
    const handler = respond[req.url!];
    if (handler) handler(res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hits,
    respond,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

async function signingKey(kid: string) {
  const { privateKey, publicKey } = await generateKeyPair("ES256");
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: "ES256" } as JWK };
}

describe("Token's upstream OP ID Token verification", function () {
  let op: Op;
  beforeEach(async () => (op = await startOp()));
  afterEach(async () => op.close());

  const provider = () => ({ id: "op", issuer: op.url, jwks_uri: `${op.url}/jwks`, client_id: "hello-mesh" });
  const serveJwks = (keys: JWK[]) => (op.respond["/jwks"] = (res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys })));
  const idToken = (key: { privateKey: Parameters<SignJWT["sign"]>[0]; jwk: JWK }, claims: Record<string, unknown> = {}, audience = "hello-mesh") =>
    new SignJWT({ nonce: "n-1", email: "a@example.com", email_verified: true, groups: ["admin"], ...claims })
      .setProtectedHeader({ alg: "ES256", kid: key.jwk.kid! })
      .setIssuer(op.url)
      .setSubject("sub-1")
      .setAudience(audience)
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(key.privateKey);
  const started = () => new Date(Date.now() - 1000);

  it("honest: verifies, keeps only wallet claims, and caches the JWKS", async function () {
    const key = await signingKey("k1");
    serveJwks([key.jwk]);
    const verifier = new UpstreamVerifier([provider()]);
    const first = await verifier.verify("op", await idToken(key), "n-1", started());
    expect(first).to.deep.equal({ iss: op.url, sub: "sub-1", claims: { email: "a@example.com", email_verified: true } });
    await verifier.verify("op", await idToken(key), "n-1", started());
    expect(op.hits["/jwks"]).to.equal(1);
  });

  it("refuses a JWKS behind a redirect", async function () {
    const key = await signingKey("k1");
    op.respond["/jwks"] = (res) => res.writeHead(302, { location: `${op.url}/real-jwks` }).end();
    op.respond["/real-jwks"] = (res) => res.writeHead(200).end(JSON.stringify({ keys: [key.jwk] }));
    const verifier = new UpstreamVerifier([provider()]);
    expect(await invalidTokenReason(verifier.verify("op", await idToken(key), "n-1", started()))).to.match(/could not be verified.*200 OK/);
    expect(op.hits["/real-jwks"]).to.equal(undefined);
  });

  it("refuses a JWKS larger than the cap", async function () {
    const key = await signingKey("k1");
    const padding = "x".repeat(MAX_JWKS_BYTES);
    op.respond["/jwks"] = (res) => res.writeHead(200).end(JSON.stringify({ keys: [key.jwk], padding }));
    const verifier = new UpstreamVerifier([provider()]);
    expect(await invalidTokenReason(verifier.verify("op", await idToken(key), "n-1", started()))).to.match(/larger than 65536 bytes/);
  });

  it("refetches once for an unknown kid, then not again within the cooldown", async function () {
    const old = await signingKey("k1");
    const rotated = await signingKey("k2");
    serveJwks([old.jwk]);
    const verifier = new UpstreamVerifier([provider()], { cooldownMs: 60_000 });
    await verifier.verify("op", await idToken(old), "n-1", started());
    serveJwks([old.jwk, rotated.jwk]);
    // The OP rotated, but a fetch just happened: within the cooldown there is no refetch.
    expect(await invalidTokenReason(verifier.verify("op", await idToken(rotated), "n-1", started()))).to.equal("no key of the provider's JWKS matches it");
    expect(op.hits["/jwks"]).to.equal(1);

    const patient = new UpstreamVerifier([provider()], { cooldownMs: 0 });
    serveJwks([old.jwk]);
    await patient.verify("op", await idToken(old), "n-1", started());
    serveJwks([old.jwk, rotated.jwk]);
    await patient.verify("op", await idToken(rotated), "n-1", started());
    expect(op.hits["/jwks"]).to.equal(3);
    // an attacker's stream of unknown kids costs the OP one fetch per cooldown, not one per token
    const stranger = await signingKey("k-unknown");
    const limited = new UpstreamVerifier([provider()], { cooldownMs: 60_000 });
    for (let i = 0; i < 5; i++) await invalidTokenReason(limited.verify("op", await idToken(stranger), "n-1", started()));
    expect(op.hits["/jwks"]).to.equal(4);
  });

  it("checks iss, aud, nonce, iat freshness and the allow-list", async function () {
    const key = await signingKey("k1");
    serveJwks([key.jwk]);
    const verifier = new UpstreamVerifier([provider()]);
    expect(await invalidTokenReason(verifier.verify("op", await idToken(key, {}, "someone-else"), "n-1", started()))).to.match(/aud claim/);
    expect(await invalidTokenReason(verifier.verify("op", await idToken(key), "n-2", started()))).to.equal("its nonce is not this session's upstream nonce");
    const before = await new SignJWT({ nonce: "n-1" })
      .setProtectedHeader({ alg: "ES256", kid: "k1" }).setIssuer(op.url).setSubject("s").setAudience("hello-mesh")
      .setIssuedAt(Math.floor(Date.now() / 1000) - 300).setExpirationTime("5m").sign(key.privateKey);
    expect(await invalidTokenReason(verifier.verify("op", before, "n-1", started()))).to.equal("it was issued before this login began");
    expect(await invalidTokenReason(verifier.verify("elsewhere", await idToken(key), "n-1", started()))).to.equal(
      "the session's provider is not on Token's allow-list",
    );
    const other = new UpstreamVerifier([{ ...provider(), issuer: "https://other.example" }]);
    expect(await invalidTokenReason(other.verify("op", await idToken(key), "n-1", started()))).to.match(/iss claim/);
  });
});
