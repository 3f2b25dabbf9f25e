// The served-keys check of `hello verify` (docs/design.md §5) against a front door that
// tells the truth and against the ways one can lie: a jwks_uri pointing elsewhere, a
// key of its own named in discovery or in the JWKS, one of Token's keys withheld. The
// front door here is a real HTTP server serving what a compromised Orchestration could.

import http from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import type { JWK } from "jose";
import type { Bundle } from "../../../mesh/bundle.js";
import { generateSigningKey, privateJwk, publicJwk } from "../../protocol/signing-keys.js";
import { checkServedKeys } from "./served-keys.js";

describe("hello verify: the keys the front door publishes", function () {
  const idKeys = [generateSigningKey("id-token", "RS256"), generateSigningKey("id-token", "ES256"), generateSigningKey("id-token", "EdDSA")];
  const tokenBundle: Bundle = {
    component: "token",
    ca: "-----BEGIN CERTIFICATE-----\n(not used here)\n-----END CERTIFICATE-----\n",
    jwks: { keys: [...idKeys, generateSigningKey("session"), generateSigningKey("key-set")].map(publicJwk) as Bundle["jwks"]["keys"] },
  };
  const tokens = idKeys.map(publicJwk);
  const own = { ...publicJwk(generateSigningKey("id-token", "RS256")), kid: "id-token.orchestration-own" };

  let server: http.Server;
  let issuer: string;
  /** What the front door serves next: discovery (given the issuer) and the JWKS. */
  let serve: { discovery: (issuer: string) => Record<string, unknown>; jwks: { keys: JWK[] } };
  const honest = (base: string) => ({ issuer: base, jwks_uri: `${base}/jwks`, response_types_supported: ["code"] });

  before(async function () {
    server = http.createServer((req, res) => {
      const body = req.url === "/.well-known/openid-configuration" ? serve.discovery(issuer) : req.url === "/jwks" || req.url === "/other-jwks" ? serve.jwks : undefined;
      res.writeHead(body ? 200 : 404, { "content-type": "application/json" }).end(JSON.stringify(body ?? { error: "not found" }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise((r) => server.close(r)));
  beforeEach(() => (serve = { discovery: honest, jwks: { keys: tokens } }));

  it("passes when the JWKS is exactly Token's app-facing keys and discovery points at it", async function () {
    const report = await checkServedKeys(issuer, tokenBundle);
    expect(report.problems).to.deep.equal([]);
    expect(report.jwksUri).to.equal(`${issuer}/jwks`);
    expect(report.served).to.deep.equal(tokens.map((k) => k.kid));
  });

  it("fails when discovery's jwks_uri points anywhere but the front door's JWKS endpoint, even at Token's keys", async function () {
    for (const elsewhere of [`${issuer}/other-jwks`, "https://keys.example/jwks", `${issuer}/jwks/../other-jwks`]) {
      serve.discovery = (base) => ({ ...honest(base), jwks_uri: elsewhere });
      expect((await checkServedKeys(issuer, tokenBundle)).problems).to.deep.equal([
        `discovery's jwks_uri ${elsewhere} is not the front door's JWKS endpoint ${issuer}/jwks`,
      ]);
    }
  });

  it("fails when discovery names a key Token's bundle does not hold", async function () {
    serve.discovery = (base) => ({ ...honest(base), jwks: { keys: [...tokens, own] } });
    expect((await checkServedKeys(issuer, tokenBundle)).problems).to.deep.equal([
      "discovery names key id-token.orchestration-own, which Token's bundle does not hold",
    ]);
    serve.discovery = (base) => ({ ...honest(base), signed_metadata: "eyJhbGciOiJSUzI1NiIsImtpZCI6Im9yY2gifQ.e30.c2ln" });
    expect((await checkServedKeys(issuer, tokenBundle)).problems).to.deep.equal([
      "discovery's signed_metadata is signed by key orch, which Token's bundle does not hold",
    ]);
  });

  it("fails when the JWKS adds a key, swaps one under Token's kid, withholds one, or carries private material", async function () {
    serve.jwks = { keys: [...tokens, own] };
    expect((await checkServedKeys(issuer, tokenBundle)).problems).to.deep.equal([
      "the served JWKS names key id-token.orchestration-own, which Token's bundle does not hold",
    ]);

    serve.jwks = { keys: [{ ...own, kid: tokens[0]!.kid }, ...tokens.slice(1)] };
    expect((await checkServedKeys(issuer, tokenBundle)).problems).to.deep.equal([
      `the served JWKS names key ${tokens[0]!.kid}, which differs from the key of that kid in Token's bundle`,
    ]);

    serve.jwks = { keys: tokens.slice(1) };
    expect((await checkServedKeys(issuer, tokenBundle)).problems).to.deep.equal([`the served JWKS lacks Token's key ${tokens[0]!.kid}`]);

    serve.jwks = { keys: [privateJwk(idKeys[0]!), ...tokens.slice(1)] };
    expect((await checkServedKeys(issuer, tokenBundle)).problems).to.include(`the served key ${tokens[0]!.kid} carries private or secret material`);
  });

  it("fails when Token's own keys of another purpose are served to apps", async function () {
    const session = tokenBundle.jwks.keys.find((k) => k.kid.startsWith("session."))! as JWK;
    serve.jwks = { keys: [...tokens, session] };
    expect((await checkServedKeys(issuer, tokenBundle)).problems).to.deep.equal([
      `the served JWKS names key ${session.kid}, a key of Token's for another purpose, never one that signs for apps`,
    ]);
  });
});
