// The JWKS apps see (docs/design.md §5, §6): it is Token's signed key set, an ID Token
// validates against it before and after a key rotation, and a key Orchestration adds
// to what it serves is detected by `hello verify`.

import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { createRemoteJWKSet, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify } from "jose";
import { readBundle, writeBundle } from "../../../../mesh/bundle.js";
import { type ProtocolMesh, USERS, startProtocolMesh } from "../../../../test/support/protocol-mesh.js";
import { rejectionOf } from "../../../../test/support/refusal.js";
import { checkServedKeys } from "../../../ops/verify/served-keys.js";
import { generateSigningKey, privateJwk, publicJwk, signingKeyFromJwk } from "../../../protocol/signing-keys.js";
import type { JWK } from "jose";

const run = promisify(execFile);
const BIN = path.resolve(import.meta.dirname, "../../../../cmd/hello/bin.js");

describe("the published key set (docs/design.md §5, §6)", function () {
  this.timeout(120_000);
  let mesh: ProtocolMesh;
  before(async () => (mesh = await startProtocolMesh({ database: "pglite" })));
  after(async () => mesh?.close());

  const bundles = () => path.join(mesh.deployment.certs, "bundles");
  const keyFile = () => (mesh.deployment.configs.token as { keys: { signing: string } }).keys.signing;
  const served = () => createRemoteJWKSet(new URL(`${mesh.issuer}/jwks`), { cacheMaxAge: 0, cooldownDuration: 0 });
  const validates = async (idToken: string) => (await jwtVerify(idToken, served(), { issuer: mesh.issuer, audience: "app-a" })).payload;

  /** Token's custodian rewrites its key file, and hands the others a new bundle. */
  async function rewriteKeys(change: (keys: JWK[]) => JWK[]) {
    const file = JSON.parse(readFileSync(keyFile(), "utf8")) as { keys: JWK[] };
    const keys = change(file.keys);
    const { writeFile, rename } = await import("node:fs/promises");
    await writeFile(`${keyFile()}.tmp`, JSON.stringify({ keys }));
    await rename(`${keyFile()}.tmp`, keyFile());
    const bundle = readBundle(bundles(), "token");
    await writeBundle(bundles(), { ...bundle, jwks: { keys: keys.map((k) => publicJwk(signingKeyFromJwk(k))) as never } });
  }
  const until = async (what: string, check: () => Promise<boolean>) => {
    for (let i = 0; i < 50; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting until ${what}`);
  };

  it("the served JWKS holds exactly Token's app-facing keys; hello verify agrees", async function () {
    const report = await checkServedKeys(mesh.issuer, readBundle(bundles(), "token"));
    expect(report.problems).to.deep.equal([]);
    // RS256, ES256, EdDSA, for ID Tokens and for signed userinfo: no other purpose
    expect(report.served.map((kid) => kid.split(".")[0]).sort()).to.deep.equal(["id-token", "id-token", "id-token", "userinfo", "userinfo", "userinfo"]);
    const { stdout } = await run(process.execPath, [BIN, "verify", "--issuer", mesh.issuer, "--bundles", bundles()]);
    expect(stdout).to.include("verdict       ok");
  });

  it("an ID Token validates against the published JWKS before and after a key rotation", async function () {
    const before = await mesh.login(USERS.alice, "a");
    const oldKid = decodeProtectedHeader(before.idToken).kid!;
    await validates(before.idToken);

    // 1. publish the new key before it signs anything
    const next = privateJwk({ ...generateSigningKey("id-token", "RS256"), status: "next" });
    await rewriteKeys((keys) => [...keys, next]);
    await until("the new key is published", async () => (await (await fetch(`${mesh.issuer}/jwks`)).text()).includes(next.kid!));
    const during = await mesh.login(USERS.alice, "a");
    expect(decodeProtectedHeader(during.idToken).kid, "a next key signs nothing").to.equal(oldKid);

    // 2. the new key signs; the old one is retired, still published for its tokens
    await rewriteKeys((keys) =>
      keys.map((k) => (k.kid === next.kid ? { ...k, status: "active" } : k.kid === oldKid ? { ...k, status: "retired" } : k)),
    );
    let after = during;
    await until("the new key signs", async () => {
      after = await mesh.login(USERS.alice, "a");
      return decodeProtectedHeader(after.idToken).kid === next.kid;
    });
    await validates(after.idToken);
    await validates(before.idToken); // signed before the rotation, still valid until it expires
    expect((await validates(after.idToken)).sub).to.equal((await validates(before.idToken)).sub);
    expect((await checkServedKeys(mesh.issuer, readBundle(bundles(), "token"))).problems).to.deep.equal([]);
  });

  it("a key Orchestration adds to the JWKS it serves is detected, and hello verify fails naming it", async function () {
    // A compromised Orchestration: its front door serves Token's set plus a key of its own.
    const { publicKey } = await generateKeyPair("RS256", { extractable: true });
    const rogue = { ...(await exportJWK(publicKey)), kid: "id-token.orchestration-own", alg: "RS256", use: "sig" };
    const front = new URL(mesh.issuer);
    const proxy = http.createServer((req, res) => {
      const upstream = http.request({ host: "127.0.0.1", port: front.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
        const chunks: Buffer[] = [];
        answer.on("data", (c: Buffer) => chunks.push(c));
        answer.on("end", () => {
          let body = Buffer.concat(chunks).toString();
          if (req.url === "/jwks") {
            const set = JSON.parse(body) as { keys: object[] };
            body = JSON.stringify({ keys: [...set.keys, rogue] });
          }
          if (req.url === "/.well-known/openid-configuration") body = body.replaceAll(mesh.issuer, `http://localhost:${port}`);
          res.writeHead(answer.statusCode!, { "content-type": "application/json" }).end(body);
        });
      });
      req.pipe(upstream);
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    const port = (proxy.address() as AddressInfo).port;
    try {
      const report = await checkServedKeys(`http://localhost:${port}`, readBundle(bundles(), "token"));
      expect(report.problems).to.deep.equal([
        "the served JWKS names key id-token.orchestration-own, which Token's bundle does not hold",
      ]);
      const failed = (await rejectionOf(run(process.execPath, [BIN, "verify", "--issuer", `http://localhost:${port}`, "--bundles", bundles()]))) as { code: number; stdout: string };
      expect(failed.code).to.equal(1);
      expect(failed.stdout).to.include("FAIL          orchestration: the served JWKS names key id-token.orchestration-own");
    } finally {
      await new Promise((r) => proxy.close(r));
    }
  });
});
