// The Wallet Client signs in (issue 14, docs/wallet-server.md "The Wallet Client signs
// in") through the four processes: `hello wallet login`'s own code (internal/wallet)
// against the front door, headless Chromium at the development OP and the consent page,
// then a DPoP-bound call of the wallet API. The attacks: a code redeemed without the
// proof, or with another key's; a token used without its proof, with another key's
// proof, or with a replayed proof; a code used twice revokes the token it gave.

import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { type BrowserContext, chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS } from "../support/chromium.js";
import { chromiumWalletStep } from "../support/wallet-browser.js";
import { createDpopProof, generateDpopKey, jwkThumbprint } from "../../internal/protocol/dpop.js";
import { WalletApi } from "../../internal/wallet/api-client.js";
import { KeyStore } from "../../internal/wallet/key-store.js";
import { login } from "../../internal/wallet/login.js";
import { z } from "zod";
import { Browserless } from "../support/browserless.js";
import { type ProtocolMesh, USERS, WALLET_CLIENT, startProtocolMesh } from "../support/protocol-mesh.js";
import type { DevUser } from "../../internal/dev/devop/dev-op.js";

describe("the Wallet Client signs in with a DPoP-bound access token, through the four processes (docs/wallet-server.md)", function () {
  this.timeout(120_000);
  let mesh: ProtocolMesh;
  let browser: BrowserContext;
  const dirs: string[] = [];

  before(async function () {
    this.timeout(180_000);
    mesh = await startProtocolMesh({ database: "pglite", walletClient: true });
    const profile = await mkdtemp(path.join(os.tmpdir(), "hello-chromium-"));
    dirs.push(profile);
    browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close();
    await mesh?.close();
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  async function store(): Promise<KeyStore> {
    const dir = await mkdtemp(path.join(os.tmpdir(), "hello-wallet-"));
    dirs.push(dir);
    return KeyStore.open(path.join(dir, "wallet"));
  }

  /** Chromium at the URL `hello wallet login` prints: the provider's form, the consent page, then the loopback. */
  const inChromium = async (user: DevUser) => chromiumWalletStep(browser, mesh.issuer, user);

  it("login: Chromium signs in at the provider and consents; the token is Token's, DPoP-bound, and the wallet API takes it with a proof", async function () {
    const keys = await store();
    const saved = await login({ server: mesh.issuer, store: keys, openUrl: await inChromium(USERS.alice), allowInsecureHttp: true });
    const dpop = await keys.dpopKey();
    expect(decodeProtectedHeader(saved.accessToken).typ).to.equal("hello-wallet-access+jwt");
    const claims = decodeJwt(saved.accessToken);
    expect(claims).to.deep.include({ client_id: WALLET_CLIENT.client_id, cnf: { jkt: await jwkThumbprint(dpop.publicJwk) } });
    expect(claims.exp! - claims.iat!).to.equal(3600);
    // The wallet key set is pinned, and it is what the front door serves.
    const served = (await (await fetch(`${mesh.issuer}/wallet/jwks`)).json()) as { keys: Array<{ kid: string }> };
    expect(saved.walletJwks!.keys.map((k) => k.kid).sort()).to.deep.equal(served.keys.map((k) => k.kid).sort());
    expect(served.keys.map((k) => k.kid.split(".")[0]).sort()).to.deep.equal(["wallet", "wallet-access"]);

    const api = await WalletApi.fromStore(keys, {});
    const me = await api.call("GET", "/wallet/api/me", z.object({ client_id: z.string(), expires_at: z.number() }));
    expect(me).to.deep.equal({ client_id: WALLET_CLIENT.client_id, expires_at: claims.exp });
  });

  /** A wallet login by the browserless stand-in, up to the code at the loopback redirect (not redeemed). */
  async function codeFor(user: DevUser, jkt: string) {
    const verifier = randomBytes(32).toString("base64url");
    const redirectUri = "http://127.0.0.1:61234/callback";
    const authorize = new URL(`${mesh.issuer}/authorize`);
    for (const [k, v] of Object.entries({
      client_id: WALLET_CLIENT.client_id, redirect_uri: redirectUri, response_type: "code", scope: "openid", nonce: randomBytes(12).toString("base64url"),
      state: "s", code_challenge: createHash("sha256").update(verifier).digest("base64url"), code_challenge_method: "S256", dpop_jkt: jkt,
    })) authorize.searchParams.set(k, v);
    const b = new Browserless();
    const stop = (u: URL) => u.hostname === "127.0.0.1";
    let page = await b.go(authorize, {}, stop);
    if (page.url.hostname !== "127.0.0.1") page = await b.submit(b.form(page, /\/login$/), [["email", user.email], ["password", user.password]], stop);
    if (page.url.hostname !== "127.0.0.1") page = await b.submit(b.form(page, /\/consent$/), [["decision", "allow"]], stop);
    const code = page.url.searchParams.get("code");
    expect(code, `a code at the loopback redirect (got ${page.url})`).to.be.a("string");
    return { code: code!, verifier, redirectUri };
  }

  const redeem = (grant: { code: string; verifier: string; redirectUri: string }, headers: Record<string, string> = {}) =>
    fetch(`${mesh.issuer}/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
      body: new URLSearchParams({ grant_type: "authorization_code", code: grant.code, code_verifier: grant.verifier, redirect_uri: grant.redirectUri, client_id: WALLET_CLIENT.client_id }),
    });

  it("the code is redeemed only with a proof of the key the request named, and a second use revokes the token", async function () {
    const key = await generateDpopKey();
    const other = await generateDpopKey();
    const jkt = await jwkThumbprint(key.publicJwk);
    const tokenUrl = `${mesh.issuer}/token`;

    // Without a proof, and with another key's: 401 invalid_dpop_proof (the code is spent either way).
    for (const headers of [{}, { dpop: await createDpopProof(other, { method: "POST", url: tokenUrl }) }] as Record<string, string>[]) {
      const answer = await redeem(await codeFor(USERS.bob, jkt), headers);
      expect(answer.status).to.equal(401);
      expect(((await answer.json()) as { error: string }).error).to.equal("invalid_dpop_proof");
    }
    // The honest twin.
    const grant = await codeFor(USERS.bob, jkt);
    const answer = await redeem(grant, { dpop: await createDpopProof(key, { method: "POST", url: tokenUrl }) });
    expect(answer.status).to.equal(200);
    const tokens = (await answer.json()) as { access_token: string; token_type: string; expires_in: number };
    expect(tokens.token_type).to.equal("DPoP");

    const me = `${mesh.issuer}/wallet/api/me`;
    const call = async (headers: Record<string, string>) => fetch(me, { headers });
    const proof = () => createDpopProof(key, { method: "GET", url: me, accessToken: tokens.access_token });
    // A token without a proof, as a bearer token, with another key's proof: 401 with a DPoP challenge.
    const refusals: Record<string, string>[] = [
      { authorization: `DPoP ${tokens.access_token}` },
      { authorization: `Bearer ${tokens.access_token}`, dpop: await proof() },
      { authorization: `DPoP ${tokens.access_token}`, dpop: await createDpopProof(other, { method: "GET", url: me, accessToken: tokens.access_token }) },
    ];
    for (const headers of refusals) {
      const refused = await call(headers);
      expect(refused.status, JSON.stringify(Object.keys(headers))).to.equal(401);
      expect(refused.headers.get("www-authenticate")).to.match(/^DPoP error="invalid_(token|dpop_proof)"/);
      expect(refused.headers.get("content-type")).to.match(/^application\/problem\+json/);
    }
    // The honest call; then its proof replayed.
    const once = await proof();
    expect((await call({ authorization: `DPoP ${tokens.access_token}`, dpop: once })).status).to.equal(200);
    const replayed = await call({ authorization: `DPoP ${tokens.access_token}`, dpop: once });
    expect(replayed.status).to.equal(401);
    expect(((await replayed.json()) as { detail: string }).detail).to.match(/used before|refused/);

    // The code again: refused, and the token it gave is revoked.
    const again = await redeem(grant, { dpop: await createDpopProof(key, { method: "POST", url: tokenUrl }) });
    expect(again.status).to.equal(400);
    const revoked = await call({ authorization: `DPoP ${tokens.access_token}`, dpop: await proof() });
    expect(revoked.status).to.equal(401);
    expect(((await revoked.json()) as { detail: string }).detail).to.match(/revoked/);
  });

  it("an app that is not DPoP-bound may not send dpop_jkt, and the wallet client may not leave it out", async function () {
    const key = await generateDpopKey();
    const jkt = await jwkThumbprint(key.publicJwk);
    const withoutJkt = new URL(`${mesh.issuer}/authorize`);
    for (const [k, v] of Object.entries({
      client_id: WALLET_CLIENT.client_id, redirect_uri: "http://127.0.0.1:5000/callback", response_type: "code", scope: "openid", nonce: "n",
      code_challenge: createHash("sha256").update("v".repeat(43)).digest("base64url"), code_challenge_method: "S256",
    })) withoutJkt.searchParams.set(k, v);
    const refused = await fetch(withoutJkt, { redirect: "manual" });
    expect(refused.status).to.equal(303);
    const location = new URL(refused.headers.get("location")!);
    expect(location.origin + location.pathname).to.equal("http://127.0.0.1:5000/callback");
    expect(location.searchParams.get("error")).to.equal("invalid_request");
    expect(location.searchParams.get("error_description")).to.match(/dpop_jkt is required/);
    // localhost is no loopback redirect (RFC 8252 §8.3): shown to the user, never redirected.
    withoutJkt.searchParams.set("redirect_uri", "http://localhost:5000/callback");
    withoutJkt.searchParams.set("dpop_jkt", jkt);
    const page = await fetch(withoutJkt, { redirect: "manual" });
    expect(page.status).to.equal(400);
    expect(page.headers.get("location")).to.equal(null);
  });
});
