// `hello wallet`'s first stage, against real parts: the key store on the real file
// system, the native-app sign-in against a real OpenID Provider (node-oidc-provider with
// DPoP, PKCE and a native loopback client, as Token's registry sets up hello-wallet),
// and the wallet API client against a server that checks its proofs with the verifier
// Token and Orchestration use (internal/protocol/dpop.ts).

import { loadOidcProvider, memoryAdapterFactory } from "../dev/devop/dev-op.js";
import { expect } from "chai";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { createServer as createHttpServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { type AddressInfo, connect, createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair, type JSONWebKeySet } from "jose";
import type { Configuration, Provider } from "oidc-provider";
import { z } from "zod";

import { createCertificateAuthority, issueLeafCertificate } from "../ops/pki/pki.js";
import { jwkThumbprint, memoryDpopReplayCache, verifyDpopProof } from "../protocol/dpop.js";
import { rejectionOf } from "../../test/support/refusal.js";
import { httpFetch, type HttpFetch, WalletApi, WalletApiError } from "./api-client.js";
import { KeyStore } from "./key-store.js";
import { login, type LoginOptions, WalletLoginError } from "./login.js";

const now = () => Math.floor(Date.now() / 1000);
const modeOf = async (path: string) => (await stat(path)).mode & 0o777;

let scratch: string;
let counter = 0;
/** A fresh, not yet existing store directory. */
const freshDir = () => join(scratch, `wallet-${++counter}`);

before(async function () {
  scratch = await mkdtemp(join(tmpdir(), "hello-wallet-spec-"));
});
after(async function () {
  await rm(scratch, { recursive: true, force: true });
});

// --- 1. the key store -----------------------------------------------------------------

describe("wallet KeyStore", function () {
  it("makes its directory 0700 and every file 0600, subdirectories 0700 too", async function () {
    const dir = freshDir();
    const store = await KeyStore.open(dir);
    expect(await modeOf(dir)).to.equal(0o700);
    await store.dpopKey();
    await store.saveLogin({ server: "https://hello.example", clientId: "hello-wallet", accessToken: "at", expiresAt: now() + 60, sub: "alice" });
    await store.putKey("wsk.session-1", { kty: "EC", crv: "P-256", x: "x", y: "y", d: "d" });
    await store.putData("session-1", { id: "session-1" });
    for (const file of ["dpop-key.json", "login.json", "keys/wsk.session-1.json", "data/session-1.json"]) {
      expect(await modeOf(join(dir, file)), file).to.equal(0o600);
    }
    for (const sub of ["keys", "data"]) expect(await modeOf(join(dir, sub)), sub).to.equal(0o700);
  });

  it("refuses a directory group or others can read, saying what to chmod", async function () {
    const dir = freshDir();
    await mkdir(dir);
    await chmod(dir, 0o755);
    const error = (await rejectionOf(KeyStore.open(dir))) as Error;
    expect(error.message).to.include(dir).and.include("chmod 700").and.include("0755");

    // A subdirectory too.
    const other = freshDir();
    await KeyStore.open(other);
    await mkdir(join(other, "keys"), { mode: 0o700 });
    await chmod(join(other, "keys"), 0o750);
    expect(((await rejectionOf(KeyStore.open(other))) as Error).message).to.include(join(other, "keys")).and.include("chmod 700");
  });

  it("refuses a file group or others can read, and a symbolic link", async function () {
    const dir = freshDir();
    const store = await KeyStore.open(dir);
    await store.saveLogin({ server: "https://hello.example", clientId: "hello-wallet", accessToken: "at", expiresAt: now() + 60, sub: "alice" });
    const file = join(dir, "login.json");
    await chmod(file, 0o644);
    const error = (await rejectionOf(store.login())) as Error;
    expect(error.message).to.include(file).and.include("chmod 600").and.include("0644");

    const elsewhere = join(scratch, `elsewhere-${++counter}.json`);
    await writeFile(elsewhere, "{}", { mode: 0o600 });
    await store.putData("real", {});
    await symlink(elsewhere, join(dir, "data", "linked.json"));
    expect(((await rejectionOf(store.getData("linked", z.object({})))) as Error).message).to.include("symbolic link");
  });

  it("makes the DPoP key once (ES256) and keeps it across open(), also when two stores ask at once", async function () {
    const dir = freshDir();
    const [a, b] = await Promise.all([KeyStore.open(dir), KeyStore.open(dir)]);
    const [keyA, keyB] = await Promise.all([a.dpopKey(), b.dpopKey()]);
    expect(keyA).to.deep.equal(keyB);
    expect(keyA.alg).to.equal("ES256");
    expect(keyA.publicJwk).to.not.have.property("d");
    const again = await (await KeyStore.open(dir)).dpopKey();
    expect(again).to.deep.equal(keyA);
    expect(await jwkThumbprint(again.publicJwk)).to.equal(await jwkThumbprint(keyA.publicJwk));
  });

  it("puts, gets and lists named keys and documents", async function () {
    const store = await KeyStore.open(freshDir());
    expect(await store.getKey("nothing")).to.equal(undefined);
    expect(await store.listKeys()).to.deep.equal([]);
    const jwk = { kty: "EC", crv: "P-256", x: "AAAA", y: "BBBB", d: "CCCC" };
    await store.putKey("wek.instance-2", jwk);
    await store.putKey("wek.instance-1", jwk);
    await store.putKey("wsk.session-1", jwk);
    expect(await store.getKey("wek.instance-1")).to.deep.equal(jwk);
    expect(await store.listKeys()).to.deep.equal(["wek.instance-1", "wek.instance-2", "wsk.session-1"]);
    expect(await store.listKeys("wek.")).to.deep.equal(["wek.instance-1", "wek.instance-2"]);

    const session = z.object({ id: z.string(), issuer: z.string() });
    await store.putData("session-1", { id: "s1", issuer: "https://issuer.example" });
    expect(await store.getData("session-1", session)).to.deep.equal({ id: "s1", issuer: "https://issuer.example" });
    expect(await store.getData("session-2", session)).to.equal(undefined);
    expect(await store.listData("session")).to.deep.equal(["session-1"]);

    await store.saveLogin({ server: "https://hello.example", clientId: "hello-wallet", accessToken: "at", expiresAt: 1, sub: "alice" });
    expect((await store.login())?.sub).to.equal("alice");
    await store.forgetLogin();
    expect(await store.login()).to.equal(undefined);
    await store.forgetLogin(); // nothing to forget: fine
  });

  it("refuses names outside [A-Za-z0-9._-]{1,128}", async function () {
    const store = await KeyStore.open(freshDir());
    for (const name of ["", "../escape", "a/b", "a\\b", "with space", "é", "x".repeat(129), "nul\u0000"]) {
      const error = (await rejectionOf(store.putKey(name, { kty: "EC" }), JSON.stringify(name))) as Error;
      expect(error.message).to.include("not a valid wallet store name");
      await rejectionOf(store.getData(name, z.unknown()), JSON.stringify(name));
    }
    await store.putKey("x".repeat(128), { kty: "EC" });
    await store.putData("a.b_c-9", 1);
  });

  it("reports a corrupt file by its name, never quoting it", async function () {
    const dir = freshDir();
    const store = await KeyStore.open(dir);
    await store.dpopKey();
    const secret = "s3cr3t-private-material";

    // Not JSON (JSON.parse's own message would quote it).
    await writeFile(join(dir, "login.json"), `{"accessToken": "${secret}`, { mode: 0o600 });
    let message = ((await rejectionOf(store.login())) as Error).message;
    expect(message).to.include(join(dir, "login.json")).and.include("corrupt").and.not.include(secret);

    // JSON, but not the schema (zod could quote values).
    await writeFile(join(dir, "login.json"), JSON.stringify({ server: secret, clientId: 7, accessToken: secret, expiresAt: secret, sub: "a" }), { mode: 0o600 });
    message = ((await rejectionOf(store.login())) as Error).message;
    expect(message).to.include(join(dir, "login.json")).and.include("server").and.not.include(secret);

    // A DPoP key whose halves do not match, in a store opened afresh.
    const key = JSON.parse(await readFile(join(dir, "dpop-key.json"), "utf8"));
    key.publicJwk.x = key.privateJwk.y;
    await writeFile(join(dir, "dpop-key.json"), JSON.stringify(key), { mode: 0o600 });
    message = ((await rejectionOf((await KeyStore.open(dir)).dpopKey())) as Error).message;
    expect(message).to.include(join(dir, "dpop-key.json")).and.not.include(key.privateJwk.d);

    await store.putData("doc", { n: 1 });
    await writeFile(join(dir, "data", "doc.json"), JSON.stringify({ n: secret }), { mode: 0o600 });
    message = ((await rejectionOf(store.getData("doc", z.object({ n: z.number() })))) as Error).message;
    expect(message).to.include(join(dir, "data", "doc.json")).and.include("n").and.not.include(secret);
  });
});

// --- a real OpenID Provider ------------------------------------------------------------

interface TestOp {
  issuer: string;
  provider: Provider;
  /** What /wallet/jwks serves; change it to play a server whose wallet keys changed. */
  walletJwks: JSONWebKeySet;
  /** The next interaction is denied (access_denied), as a user pressing Cancel. */
  denyNext: boolean;
  /** The token endpoint's answer is rewritten to token_type Bearer: a server that does not bind its tokens. */
  bearerTokens: boolean;
  /** dpop_jkt of every authorization code issued. */
  codeJkts: (string | undefined)[];
  /** Requests to the token endpoint (a redemption takes two: the first is told use_dpop_nonce). */
  tokenRequests: number;
  close(): Promise<void>;
}

async function walletKeySet(): Promise<JSONWebKeySet> {
  const { publicKey } = await generateKeyPair("ES256", { extractable: true });
  return { keys: [{ ...(await exportJWK(publicKey)), kid: `wallet-access-${randomBytes(4).toString("hex")}`, alg: "ES256", use: "sig" }] };
}

async function listen(server: Server, host = "127.0.0.1"): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** The provider, configured as docs/wallet-server.md registers hello-wallet; over https when given a certificate. */
async function startOp(tls?: { certPem: string; keyPem: string }): Promise<TestOp> {
  const { default: ProviderClass } = await loadOidcProvider();
  let handle: RequestListener = (_req, res) => res.writeHead(503).end();
  const server = tls
    ? createHttpsServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => handle(req, res))
    : createHttpServer((req, res) => handle(req, res));
  const port = await listen(server);
  const issuer = `${tls ? "https" : "http"}://127.0.0.1:${port}`;

  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const configuration: Configuration = {
    clients: [
      {
        client_id: "hello-wallet",
        application_type: "native",
        token_endpoint_auth_method: "none",
        redirect_uris: ["http://127.0.0.1/callback", "http://[::1]/callback"],
        response_types: ["code"],
        grant_types: ["authorization_code"],
        dpop_bound_access_tokens: true,
      },
    ],
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: "op-1", alg: "RS256", use: "sig" }] },
    cookies: { keys: [randomBytes(32).toString("base64url")] },
    adapter: memoryAdapterFactory(),
    findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
    responseTypes: ["code"],
    pkce: { required: () => true },
    ttl: { AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, Interaction: 600, Session: 3600, Grant: 3600 },
    features: {
      devInteractions: { enabled: false },
      // Nonces required at the token endpoint: openid-client must answer use_dpop_nonce.
      dPoP: { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true },
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    clientBasedCORS: () => false,
    renderError: (ctx, out) => {
      ctx.type = "text";
      ctx.body = `error: ${out.error}`;
    },
  };
  const provider = new ProviderClass(issuer, configuration);
  const op: TestOp = {
    issuer,
    provider,
    walletJwks: await walletKeySet(),
    denyNext: false,
    bearerTokens: false,
    codeJkts: [],
    tokenRequests: 0,
    close: () => closeServer(server),
  };
  provider.on("authorization_code.saved", (code: { dpopJkt?: string }) => op.codeJkts.push(code.dpopJkt));
  const callback = provider.callback();

  // The interaction: alice signs in at once and consents to what is asked; or, with
  // denyNext, cancels.
  const interaction = async (req: IncomingMessage, res: ServerResponse) => {
    const details = await provider.interactionDetails(req, res);
    if (op.denyNext) {
      op.denyNext = false;
      return provider.interactionFinished(req, res, { error: "access_denied", error_description: "End-User aborted interaction" }, { mergeWithLastSubmission: false });
    }
    if (details.prompt.name === "login") {
      return provider.interactionFinished(req, res, { login: { accountId: "alice" } }, { mergeWithLastSubmission: false });
    }
    const grant = new provider.Grant({ accountId: "alice", clientId: String(details.params.client_id) });
    const missing = details.prompt.details as { missingOIDCScope?: string[] };
    grant.addOIDCScope((missing.missingOIDCScope ?? ["openid"]).join(" "));
    return provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
  };

  handle = (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/wallet/jwks") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(op.walletJwks));
      return;
    }
    if (path?.startsWith("/interaction/")) {
      interaction(req, res).catch((error: unknown) => res.writeHead(500).end(String(error)));
      return;
    }
    if (path === "/token") op.tokenRequests++;
    if (path === "/token" && op.bearerTokens) {
      // A server that ignores DPoP: the same answer, as a Bearer token.
      const end = res.end.bind(res) as (chunk?: unknown) => ServerResponse;
      res.end = ((chunk?: unknown) => {
        if (typeof chunk === "string" || Buffer.isBuffer(chunk)) {
          const text = chunk.toString().replace(/"token_type":"DPoP"/, '"token_type":"Bearer"');
          res.removeHeader("content-length");
          return end(text);
        }
        return end(chunk);
      }) as typeof res.end;
    }
    void callback(req, res);
  };
  return op;
}

// --- a browser, for protocol tests -----------------------------------------------------

interface Visit {
  /** Every URL the browser loaded, in order. */
  urls: URL[];
  status: number;
  body: string;
}

/** Follows redirects from `start` until a page (the loopback's own, once the OP sends the browser back), with cookies per host. */
async function browse(start: string, fetcher: HttpFetch = httpFetch()): Promise<Visit> {
  const jars = new Map<string, Map<string, string>>();
  const urls: URL[] = [];
  let url = new URL(start);
  for (let hop = 0; hop < 20; hop++) {
    urls.push(url);
    const jar = jars.get(url.host) ?? new Map<string, string>();
    jars.set(url.host, jar);
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
    const response = await fetcher(url, { headers: cookie ? { cookie } : {}, redirect: "manual" });
    for (const line of response.headers.getSetCookie()) {
      const pair = line.split(";")[0]!;
      const name = pair.slice(0, pair.indexOf("="));
      const value = pair.slice(pair.indexOf("=") + 1);
      if (value === "" || /expires=Thu, 01 Jan 1970/i.test(line)) jar.delete(name);
      else jar.set(name, value);
    }
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      url = new URL(location, url);
      continue;
    }
    return { urls, status: response.status, body: await response.text() };
  }
  throw new Error("too many redirects");
}

/** openUrl for login(): a browser run to the end; the visit and the URL it was given are kept. */
function browser(fetcher?: HttpFetch) {
  const seen: { authorizationUrl?: URL; visit?: Promise<Visit> } = {};
  return {
    seen,
    openUrl: (url: string) => {
      seen.authorizationUrl = new URL(url);
      seen.visit = browse(url, fetcher);
      seen.visit.catch(() => {}); // awaited by the tests that look at it
    },
  };
}

/** openUrl for login(): instead of the OP, a forged answer sent straight to the loopback. */
function forged(params: (authorization: URL) => Record<string, string>) {
  const seen: { authorizationUrl?: URL; visit?: Promise<Visit> } = {};
  return {
    seen,
    openUrl: (url: string) => {
      const authorization = new URL(url);
      seen.authorizationUrl = authorization;
      const callback = new URL(authorization.searchParams.get("redirect_uri")!);
      callback.search = new URLSearchParams(params(authorization)).toString();
      seen.visit = browse(callback.href);
      seen.visit.catch(() => {});
    },
  };
}

/** Connecting to the loopback redirect URI's port is refused: its server is closed. */
async function expectClosed(redirectUri: string): Promise<void> {
  const { hostname, port } = new URL(redirectUri);
  const host = hostname.replace(/^\[|\]$/g, "");
  const error = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    const socket = connect({ host, port: Number(port) });
    socket.once("connect", () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.once("error", (e) => resolve(e));
  });
  expect(error?.code, `the loopback server on ${redirectUri} still accepts connections`).to.equal("ECONNREFUSED");
}

const redirectUriOf = (seen: { authorizationUrl?: URL }) => seen.authorizationUrl!.searchParams.get("redirect_uri")!;

// --- 2. login ----------------------------------------------------------------------------

describe("hello wallet login (RFC 8252, PKCE, DPoP with dpop_jkt) against a real OpenID Provider", function () {
  let op: TestOp;
  before(async function () {
    op = await startOp();
  });
  after(async function () {
    await op?.close();
  });
  beforeEach(function () {
    op.denyNext = false;
    op.bearerTokens = false;
  });

  const signIn = (store: KeyStore, openUrl: LoginOptions["openUrl"], extra: Partial<LoginOptions> = {}) =>
    login({ server: op.issuer, store, openUrl, allowInsecureHttp: true, timeoutMs: 10_000, ...extra });

  it("signs in: a DPoP-bound access token, the ID Token's sub, the wallet keys pinned; the loopback closed after", async function () {
    const store = await KeyStore.open(freshDir());
    const jkt = await jwkThumbprint((await store.dpopKey()).publicJwk);
    const { seen, openUrl } = browser();
    const tokenRequestsBefore = op.tokenRequests;
    const stored = await signIn(store, openUrl);

    // The authorization request.
    const request = seen.authorizationUrl!.searchParams;
    expect(Object.fromEntries([...request].filter(([k]) => ["client_id", "response_type", "scope", "code_challenge_method", "dpop_jkt"].includes(k)))).to.deep.equal({
      client_id: "hello-wallet",
      response_type: "code",
      scope: "openid",
      code_challenge_method: "S256",
      dpop_jkt: jkt,
    });
    for (const param of ["code_challenge", "nonce", "state"]) expect(request.get(param), param).to.match(/^[A-Za-z0-9_-]{22,}$/);
    // A loopback redirect on 127.0.0.1, on a port the system picked.
    const redirectUri = new URL(redirectUriOf(seen));
    expect(redirectUri.protocol).to.equal("http:");
    expect(redirectUri.hostname).to.equal("127.0.0.1");
    expect(redirectUri.pathname).to.equal("/callback");
    expect(Number(redirectUri.port)).to.be.greaterThan(1023);

    // The browser ended on the loopback's page.
    const visit = await seen.visit!;
    expect(visit.urls.at(-1)!.origin).to.equal(redirectUri.origin);
    expect(visit.status).to.equal(200);
    expect(visit.body).to.include("You can close this window");

    // The code was bound to the key (dpop_jkt) and so is the access token (cnf.jkt).
    expect(op.codeJkts.at(-1)).to.equal(jkt);
    expect(op.tokenRequests - tokenRequestsBefore, "one redemption, after one use_dpop_nonce round").to.equal(2);
    const accessToken = await op.provider.AccessToken.find(stored.accessToken);
    expect(accessToken, "the provider knows the access token").to.not.equal(undefined);
    expect(accessToken!.jkt).to.equal(jkt);
    expect(accessToken!.clientId).to.equal("hello-wallet");

    expect(stored).to.deep.include({ server: op.issuer, clientId: "hello-wallet", sub: "alice", walletJwks: op.walletJwks });
    expect(stored.expiresAt).to.be.within(now() + 60, now() + 24 * 3600);
    expect(await store.login()).to.deep.equal(stored);
    await expectClosed(redirectUri.href);
  });

  it("keeps the pinned wallet keys: a later sign-in that finds others fails until hello wallet logout", async function () {
    const store = await KeyStore.open(freshDir());
    const first = await signIn(store, browser().openUrl);
    const pinned = first.walletJwks;

    // The same keys: signs in again, the pin unchanged.
    const second = await signIn(store, browser().openUrl);
    expect(second.walletJwks).to.deep.equal(pinned);
    expect(second.accessToken).to.not.equal(first.accessToken);

    // Other keys: refused, and the stored sign-in is the one before.
    const original = op.walletJwks;
    op.walletJwks = await walletKeySet();
    try {
      const { seen, openUrl } = browser();
      const error = (await rejectionOf(signIn(store, openUrl))) as Error;
      expect(error).to.be.instanceOf(WalletLoginError);
      expect(error.message).to.include("wallet keys changed").and.include("hello wallet logout");
      expect(await store.login()).to.deep.equal(second);
      const visit = await seen.visit!;
      expect(visit.status).to.equal(400);
      expect(visit.body).to.include("Sign-in failed");
      await expectClosed(redirectUriOf(seen));

      // After logout, the new keys are accepted and pinned.
      await store.forgetLogin();
      const third = await signIn(store, browser().openUrl);
      expect(third.walletJwks).to.deep.equal(op.walletJwks);
    } finally {
      op.walletJwks = original;
    }
  });

  it("fails on an answer with another state (a CSRF attempt), and stores nothing", async function () {
    const store = await KeyStore.open(freshDir());
    const { seen, openUrl } = forged(() => ({ code: "attacker-code", state: "attacker-state", iss: op.issuer }));
    const error = (await rejectionOf(signIn(store, openUrl))) as Error;
    expect(error).to.be.instanceOf(WalletLoginError);
    expect(error.message).to.include("state does not match");
    expect((await seen.visit!).status).to.equal(400);
    expect(await store.login()).to.equal(undefined);
    await expectClosed(redirectUriOf(seen));
  });

  it("fails with access_denied when the user cancels at the provider, and shows it", async function () {
    const store = await KeyStore.open(freshDir());
    op.denyNext = true;
    const { seen, openUrl } = browser();
    const error = (await rejectionOf(signIn(store, openUrl))) as WalletLoginError;
    expect(error).to.be.instanceOf(WalletLoginError);
    expect(error.error).to.equal("access_denied");
    expect(error.message).to.include("access_denied");
    const visit = await seen.visit!;
    expect(visit.status).to.equal(400);
    expect(visit.body).to.include("access_denied");
    expect(await store.login()).to.equal(undefined);
    await expectClosed(redirectUriOf(seen));
  });

  it("fails on an iss that is not the issuer (RFC 9207 mix-up)", async function () {
    const store = await KeyStore.open(freshDir());
    const { seen, openUrl } = forged((authorization) => ({ code: "x", state: authorization.searchParams.get("state")!, iss: "https://evil.example" }));
    const error = (await rejectionOf(signIn(store, openUrl))) as Error;
    expect(error.message).to.include("RFC 9207");
    await expectClosed(redirectUriOf(seen));
  });

  it("refuses a Bearer access token", async function () {
    const store = await KeyStore.open(freshDir());
    op.bearerTokens = true;
    const { seen, openUrl } = browser();
    const error = (await rejectionOf(signIn(store, openUrl))) as Error;
    expect(error.message).to.match(/bearer access token, not a DPoP-bound one/i);
    expect(await store.login()).to.equal(undefined);
    await expectClosed(redirectUriOf(seen));
  });

  it("times out when the browser never comes back, and closes the loopback", async function () {
    const store = await KeyStore.open(freshDir());
    let authorizationUrl: URL | undefined;
    const error = (await rejectionOf(signIn(store, (url) => void (authorizationUrl = new URL(url)), { timeoutMs: 300 }))) as Error;
    expect(error.message).to.include("no sign-in came back");
    await expectClosed(authorizationUrl!.searchParams.get("redirect_uri")!);
  });

  it("refuses localhost as the loopback host (RFC 8252 §8.3) and an http server unless allowed", async function () {
    const store = await KeyStore.open(freshDir());
    const open = () => {};
    expect(((await rejectionOf(signIn(store, open, { loopbackHost: "localhost" as "127.0.0.1" }))) as Error).message).to.include("8.3");
    expect(((await rejectionOf(login({ server: op.issuer, store, openUrl: open }))) as Error).message).to.include("https");
  });

  it("listens on [::1] when asked", async function () {
    const probe = createNetServer();
    try {
      await listen(probe as unknown as Server, "::1");
    } catch {
      this.skip(); // no IPv6 loopback here
    } finally {
      probe.close();
    }
    const store = await KeyStore.open(freshDir());
    const { seen, openUrl } = browser();
    const stored = await signIn(store, openUrl, { loopbackHost: "::1" });
    expect(new URL(redirectUriOf(seen)).hostname).to.equal("[::1]");
    expect(stored.sub).to.equal("alice");
    await expectClosed(redirectUriOf(seen));
  });
});

describe("hello wallet login and WalletApi over https with a development CA (ca option)", function () {
  let ca: { certPem: string; keyPem: string };
  let leaf: { certPem: string; keyPem: string };
  before(function () {
    ca = createCertificateAuthority("orchestration", { keyType: "p256", commonName: "hello-wallet spec CA", validityDays: 1 });
    leaf = issueLeafCertificate(ca, { uris: [], ipAddresses: ["127.0.0.1"], server: true, keyType: "p256", validityDays: 1 });
  });

  it("signs in to an https provider whose certificate only the given CA vouches for", async function () {
    const op = await startOp(leaf);
    try {
      const store = await KeyStore.open(freshDir());
      // Without the CA: discovery fails on the certificate.
      const refused = (await rejectionOf(login({ server: op.issuer, store, openUrl: () => {}, timeoutMs: 5000 }))) as Error;
      expect(refused.message).to.include("OpenID configuration");
      // With it: discovery, the token request with its DPoP nonce round, the ID Token's
      // keys and /wallet/jwks all go through the CA fetch.
      const { seen, openUrl } = browser(httpFetch({ ca: ca.certPem }));
      const stored = await login({ server: op.issuer, store, openUrl, ca: ca.certPem, timeoutMs: 10_000 });
      expect(stored.server).to.equal(op.issuer);
      expect(stored.walletJwks).to.deep.equal(op.walletJwks);
      expect((await op.provider.AccessToken.find(stored.accessToken))?.jkt).to.equal(await jwkThumbprint((await store.dpopKey()).publicJwk));
      await expectClosed(redirectUriOf(seen));
    } finally {
      await op.close();
    }
  });

  it("calls an https wallet API with the CA, and fails without it", async function () {
    const server = createHttpsServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
    });
    const port = await listen(server as unknown as Server);
    try {
      const store = await KeyStore.open(freshDir());
      await store.saveLogin({ server: `https://127.0.0.1:${port}`, clientId: "hello-wallet", accessToken: "at", expiresAt: now() + 600, sub: "alice" });
      const withCa = await WalletApi.fromStore(store, { ca: ca.certPem });
      expect(await withCa.call("GET", "/wallet/x", z.object({ ok: z.boolean() }))).to.deep.equal({ ok: true });
      const without = await WalletApi.fromStore(store);
      await rejectionOf(without.call("GET", "/wallet/x", z.unknown()));
    } finally {
      await closeServer(server as unknown as Server);
    }
  });
});

// --- 3. WalletApi ---------------------------------------------------------------------------

describe("WalletApi: DPoP-signed calls to the wallet API", function () {
  const ACCESS_TOKEN = `wallet-at-${randomBytes(16).toString("base64url")}`;
  let server: Server;
  let base: string;
  let store: KeyStore;
  let jkt: string;
  const requests: { method: string; path: string; nonce?: unknown }[] = [];
  const replay = memoryDpopReplayCache();
  /** The nonce /nonce requires, and whether /stubborn keeps asking for another. */
  const NONCE = "server-nonce-1";

  const json = (res: ServerResponse, status: number, body: unknown, type = "application/json", headers: Record<string, string> = {}) =>
    res.writeHead(status, { "content-type": type, ...headers }).end(JSON.stringify(body));

  before(async function () {
    store = await KeyStore.open(freshDir());
    jkt = await jwkThumbprint((await store.dpopKey()).publicJwk);
    server = createHttpServer((req, res) => {
      void (async () => {
        const chunks: Buffer[] = [];
        for await (const chunk of req) chunks.push(chunk as Buffer);
        const path = (req.url ?? "/").split("?")[0]!;
        const proof = req.headers.dpop;
        const payload = typeof proof === "string" ? JSON.parse(Buffer.from(proof.split(".")[1] ?? "", "base64url").toString() || "{}") : {};
        requests.push({ method: req.method!, path, nonce: payload.nonce });
        const authorization = req.headers.authorization ?? "";
        if (authorization !== `DPoP ${ACCESS_TOKEN}`) return json(res, 401, {}, "application/json", { "www-authenticate": 'DPoP error="invalid_token"' });
        const needsNonce = path === "/wallet/nonce" || path === "/wallet/stubborn";
        const nonce = path === "/wallet/stubborn" ? `fresh-${requests.length}` : NONCE;
        if (needsNonce && payload.nonce !== nonce) {
          return json(res, 401, { error: "use_dpop_nonce" }, "application/json", { "www-authenticate": 'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"', "dpop-nonce": nonce });
        }
        try {
          await verifyDpopProof(proof, {
            method: req.method!,
            url: `${base}${req.url}`,
            accessToken: ACCESS_TOKEN,
            boundJkt: jkt,
            ...(needsNonce ? { nonce } : {}),
            replay,
          });
        } catch (error) {
          return json(res, 401, { error: "invalid_dpop_proof", reason: (error as Error).message }, "application/json", { "www-authenticate": 'DPoP error="invalid_dpop_proof"' });
        }
        if (path === "/wallet/me") return json(res, 200, { sub: "alice" });
        if (path === "/wallet/echo") return json(res, 200, { got: JSON.parse(Buffer.concat(chunks).toString() || "null") });
        if (path === "/wallet/nonce") return json(res, 200, { ok: true });
        if (path === "/wallet/missing") {
          return json(res, 404, { type: "about:blank", title: "Not Found", status: 404, detail: "no such wallet session", errorCode: "session_not_found" }, "application/problem+json");
        }
        return res.writeHead(500, { "content-type": "text/plain" }).end("boom");
      })();
    });
    base = `http://127.0.0.1:${await listen(server)}`;
    await store.saveLogin({ server: base, clientId: "hello-wallet", accessToken: ACCESS_TOKEN, expiresAt: now() + 3600, sub: "alice" });
  });
  after(async function () {
    await closeServer(server);
  });
  beforeEach(function () {
    requests.length = 0;
  });

  it("makes a call the server's DPoP check accepts (htm, htu without the query, ath, the bound key)", async function () {
    const api = await WalletApi.fromStore(store);
    expect(await api.call("GET", "/wallet/me", z.object({ sub: z.string() }))).to.deep.equal({ sub: "alice" });
    expect(await api.call("POST", "/wallet/echo?x=1#f", z.object({ got: z.unknown() }), { hello: "world" })).to.deep.equal({ got: { hello: "world" } });
    expect(requests.map((r) => `${r.method} ${r.path}`)).to.deep.equal(["GET /wallet/me", "POST /wallet/echo"]);
  });

  it("retries a use_dpop_nonce 401 once with the nonce, and keeps the nonce for the next call", async function () {
    const api = await WalletApi.fromStore(store);
    expect(await api.call("GET", "/wallet/nonce", z.object({ ok: z.literal(true) }))).to.deep.equal({ ok: true });
    expect(requests.map((r) => r.nonce)).to.deep.equal([undefined, NONCE]);
    await api.call("GET", "/wallet/nonce", z.unknown());
    expect(requests.map((r) => r.nonce)).to.deep.equal([undefined, NONCE, NONCE]);
  });

  it("retries only once: a server that keeps asking for another nonce gets a WalletApiError", async function () {
    const api = await WalletApi.fromStore(store);
    const error = (await rejectionOf(api.call("GET", "/wallet/stubborn", z.unknown()))) as WalletApiError;
    expect(error).to.be.instanceOf(WalletApiError);
    expect(error.status).to.equal(401);
    expect(requests).to.have.length(2);
  });

  it("turns a problem+json answer into a WalletApiError with its detail, and other failures into one with the status", async function () {
    const api = await WalletApi.fromStore(store);
    const problem = (await rejectionOf(api.call("GET", "/wallet/missing", z.unknown()))) as WalletApiError;
    expect(problem).to.be.instanceOf(WalletApiError);
    expect(problem.status).to.equal(404);
    expect(problem.message).to.include("no such wallet session");
    expect(problem.problem).to.deep.include({ errorCode: "session_not_found" });

    const plain = (await rejectionOf(api.call("GET", "/wallet/boom", z.unknown()))) as WalletApiError;
    expect(plain).to.be.instanceOf(WalletApiError);
    expect(plain.status).to.equal(500);
    expect(plain.problem).to.equal(undefined);

    const wrongShape = (await rejectionOf(api.call("GET", "/wallet/me", z.object({ sub: z.number() })))) as WalletApiError;
    expect(wrongShape.message).to.include("not what the wallet expects");
  });

  it("keeps the token on the server: a path that leaves it is refused before anything is sent", async function () {
    const api = await WalletApi.fromStore(store);
    for (const path of ["//evil.example/x", "https://evil.example/x", "wallet/me", "/\\evil.example"]) {
      await rejectionOf(api.call("GET", path, z.unknown()), path);
    }
    expect(requests).to.have.length(0);
  });

  it("tells the user to sign in (again) when there is no sign-in or it expired", async function () {
    const empty = await KeyStore.open(freshDir());
    expect(((await rejectionOf(WalletApi.fromStore(empty))) as Error).message).to.include("run hello wallet login");
    const expired = await KeyStore.open(freshDir());
    await expired.saveLogin({ server: base, clientId: "hello-wallet", accessToken: ACCESS_TOKEN, expiresAt: now() - 10, sub: "alice" });
    const error = (await rejectionOf(WalletApi.fromStore(expired))) as Error;
    expect(error.message).to.include("expired").and.include("hello wallet login");
  });

  it("says to sign in again when the server no longer takes the token", async function () {
    const other = await KeyStore.open(freshDir());
    await other.saveLogin({ server: base, clientId: "hello-wallet", accessToken: "revoked", expiresAt: now() + 600, sub: "alice" });
    const error = (await rejectionOf((await WalletApi.fromStore(other)).call("GET", "/wallet/me", z.unknown()))) as WalletApiError;
    expect(error.status).to.equal(401);
    expect(error.message).to.include("hello wallet login");
  });
});

