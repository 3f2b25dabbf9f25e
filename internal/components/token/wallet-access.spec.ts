// Token's side of the Wallet Client's sign-in (docs/wallet-server.md, "The Wallet Client
// signs in"; wallet-access.ts and the wallet parts of token-service.ts), each refusal
// exact and beside its honest twin, in memory as token-service.spec.ts does it: Token's
// real routes with the mesh's error mapping, keys made here, a clock the test holds, a
// real upstream provider (the development OP, in this process), and Storage's part
// played by the test with Storage's keys.
//
//   CreateSession        dpop_jkt from (and only from) a DPoP-bound client; a native
//                        client's loopback redirect on any port (RFC 8252 §7.3)
//   MintIdToken          the wallet access token of a DPoP-bound client's login
//   AuthorizeWalletCall  the token and its DPoP proof (RFC 9449 §4.3, §7.1)
//   GetWalletKeySet      the wallet keys' public halves, signed with the key-set key

import { createPublicKey, randomBytes } from "node:crypto";
import { expect } from "chai";
import { Code, type Client } from "@connectrpc/connect";
import { type JWTPayload, compactVerify, decodeJwt, decodeProtectedHeader } from "jose";
import type { AccessGrant, RecordWrite, TokenService } from "../../gen/hello/token/v1/token_service_pb.js";
import type { RegisteredClient } from "../../config/component-config.js";
import { type DpopKey, createDpopProof, generateDpopKey, jwkThumbprint } from "../../protocol/dpop.js";
import { sha256, sign, verify } from "../../protocol/jws.js";
import { WALLET_KEYS } from "../../protocol/key-files.js";
import { VerificationKeys, activeKey, generateSigningKey, publicJwk } from "../../protocol/signing-keys.js";
import {
  type AccessClaims,
  ERROR_TOKEN,
  type ErrorClaims,
  RECEIPT,
  type ReceiptClaims,
  type RecordClaims,
  SESSION_TOKEN,
  WALLET_ACCESS_TOKEN,
  type WalletAccessClaims,
} from "../../protocol/tokens.js";
import type { DevUser } from "../../dev/devop/dev-op.js";
import { storageKeyPair } from "../../../test/support/storage-keys.js";
import { refusal } from "../../../test/support/refusal.js";
import { APPS, Clock, ISSUER, USERS, type Upstream, appParameters, startUpstream, tokenInMemory, tokenSigningKeys } from "../../../test/support/token-harness.js";
import type { TokenServiceDeps } from "./token-service.js";
import type { SessionClaims } from "./session.js";

const session = (token: string) => decodeJwt(token) as SessionClaims & JWTPayload;
const grantOf = (grant: AccessGrant | undefined) => decodeJwt(grant!.accessToken) as AccessClaims & JWTPayload & { jti: string };
const record = <K extends keyof RecordClaims>(_kind: K, jws: string) => decodeJwt(jws) as RecordClaims[K] & JWTPayload;
const kidPurpose = (jws: string) => String(decodeProtectedHeader(jws).kid).split(".")[0];
const base64urlJson = (value: unknown) => Buffer.from(JSON.stringify(value), "utf8").toString("base64url");

/** The Wallet Client in Token's registry: public, native, DPoP-bound (docs/wallet-server.md). */
const WALLET = {
  client_id: "hello-wallet",
  redirect_uris: ["http://127.0.0.1/callback", "http://[::1]/callback"],
  id_token_signed_response_alg: "ES256",
  application_type: "native",
  dpop_bound_access_tokens: true,
} as const satisfies RegisteredClient;
/** The Wallet Client's loopback redirect, on the port its listener got this time. */
const LOOPBACK = "http://127.0.0.1:54321/callback";
/** A wallet API call's URL, as Orchestration receives it. */
const CALL_URL = `${ISSUER}/wallet/credentials`;
const NO_WALLET_KEYS = "Token holds no wallet keys: its custodian has not configured keys.wallet, so the credential wallet is not served";

describe("Token: the Wallet Client's sign-in and calls (internal/components/token/wallet-access.ts)", function () {
  this.timeout(20_000); // the development OP's first login warms it up
  const clock = new Clock();
  const keys = tokenSigningKeys();
  const walletKeys = WALLET_KEYS.map((s) => generateSigningKey(s.purpose, s.alg));
  const storageKeys = storageKeyPair();
  const lookupKey = randomBytes(32);
  let upstream: Upstream;
  let clients: RegisteredClient[];
  /** Token with its wallet keys (keys.wallet configured). */
  let token: Client<typeof TokenService>;
  /** The same Token (same keys, registry, clock) without keys.wallet. */
  let bare: Client<typeof TokenService>;
  /** The Wallet Client instance's DPoP key and its thumbprint. */
  let dpopKey: DpopKey;
  let jkt: string;
  /** Alice's login at the Wallet Client, up to MintIdToken's request, and what it minted. */
  let walletLogin: Awaited<ReturnType<typeof released>>;
  let accessToken: string;

  const deps = (over: Partial<TokenServiceDeps> = {}): TokenServiceDeps => ({
    issuer: ISSUER,
    keys: () => keys,
    storageKeys: () => storageKeys.keys,
    lookupKey,
    clients,
    upstream: upstream.verifier,
    providers: [upstream.provider],
    walletKeys: () => walletKeys,
    now: clock.now,
    ...over,
  });
  /** deps() without walletKeys: a Token whose configuration names no keys.wallet. */
  const depsWithoutWallet = (over: Partial<TokenServiceDeps> = {}): TokenServiceDeps => {
    const { walletKeys: _none, ...rest } = deps(over);
    return rest;
  };
  const seconds = () => Math.floor(clock.now().getTime() / 1000);
  const walletAccessKey = () => activeKey(walletKeys, "wallet-access");

  // --- Storage's part, played with Storage's keys ------------------------------------

  const rows = new Map<string, string>();
  const absent = (grant: AccessGrant | undefined, over: Partial<ErrorClaims> = {}) => {
    const g = grantOf(grant);
    return sign(ERROR_TOKEN, storageKeys.error, { op: "read", kind: g.kind, hash: g.hash, ajti: g.jti, ...over }, { now: clock.now() });
  };
  const receipt = (grant: AccessGrant | undefined, jws: string, over: Partial<ReceiptClaims> = {}) => {
    const g = grantOf(grant);
    const claims = { op: g.op, kind: g.kind, hash: g.hash, digest: sha256(jws), version: 1, ajti: g.jti, ...over };
    return sign(RECEIPT, storageKeys.receipt, claims, { now: clock.now() });
  };
  const store = (write: RecordWrite | undefined) => {
    rows.set(write!.grant!.hash, write!.record);
    return receipt(write!.grant, write!.record);
  };

  // --- a login, step by step ------------------------------------------------------------

  type App = "a" | "wallet";
  type Over = Partial<ReturnType<typeof appParameters>> & { dpopJkt?: string };
  /** The app's authorization request: app-a's as the harness makes it, or the Wallet Client's (loopback redirect, dpop_jkt). */
  const params = (app: App, over: Over = {}) => ({
    ...(app === "wallet"
      ? { ...appParameters("a"), clientId: WALLET.client_id, redirectUri: LOOPBACK, dpopJkt: jkt }
      : appParameters(app)),
    ...over,
  });
  const start = (app: App = "a", over: Over = {}) => token.createSession({ request: { case: "parameters", value: params(app, over) }, providerId: "dev" });

  async function atSubject(user: DevUser, app: App = "a") {
    const started = await start(app);
    const up = await upstream.login(user, started.upstreamNonce);
    const authorized = await token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: up.idToken });
    return { started, upstream: up, sessionToken: authorized.sessionToken, subjectRead: authorized.subjectRead! };
  }

  /** A new user, all the way: CreateUser on Storage's "no record", both writes, CommitUser. */
  async function newUser(user: DevUser) {
    const at = await atSubject(user);
    const made = await token.createUser({ sessionToken: at.sessionToken, errorToken: await absent(at.subjectRead) });
    const walletReceipt = await store(made.wallet);
    const subjectReceipt = await store(made.subject);
    await token.commitUser({ sessionToken: made.sessionToken, walletReceipt, subjectReceipt });
  }

  /** A user Storage holds, at step "user". */
  async function returning(user: DevUser, app: App) {
    const at = await atSubject(user, app);
    const subjectRecord = rows.get(at.subjectRead.hash)!;
    const authorized = await token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord, subjectReceipt: await receipt(at.subjectRead, subjectRecord) });
    const walletRecord = rows.get(authorized.walletRead!.hash)!;
    const walletReceipt = await receipt(authorized.walletRead, walletRecord);
    return { ...at, subjectRecord, user: authorized, walletRecord, walletReceipt };
  }

  /** A returning user's first release at `app`, and MintIdToken's request for it. */
  async function released(user: DevUser, app: App) {
    const login = await returning(user, app);
    const made = await token.createRelease({
      sessionToken: login.user.sessionToken, errorToken: await absent(login.user.releaseRead),
      walletRecord: login.walletRecord, walletReceipt: login.walletReceipt, consentedClaims: ["email"],
    });
    await store(made.reservation);
    const releaseReceipt = await store(made.release);
    const mint = {
      sessionToken: made.sessionToken, subjectRecord: login.subjectRecord, walletRecord: login.walletRecord, walletReceipt: "",
      releaseRecord: made.release!.record, releaseReceipt,
    };
    return { ...login, mint };
  }

  /** A wallet API call: `token` with a proof of `key` (Alice's instance's, unless another), for `proof`'s method and URL. */
  async function call(
    client: Client<typeof TokenService>,
    options: { token?: string; key?: DpopKey; proof?: { method?: string; url?: string; accessToken?: string | null }; method?: string; url?: string } = {},
  ) {
    const presented = options.token ?? accessToken;
    const ath = options.proof?.accessToken === null ? {} : { accessToken: options.proof?.accessToken ?? presented };
    const dpopProof = await createDpopProof(options.key ?? dpopKey, {
      method: options.proof?.method ?? "GET", url: options.proof?.url ?? CALL_URL, ...ath, now: seconds(),
    });
    return client.authorizeWalletCall({ accessToken: presented, dpopProof, method: options.method ?? "GET", url: options.url ?? CALL_URL });
  }
  const caller = (res: { clientId: string; jkt: string; expiresAt: bigint }) => ({ clientId: res.clientId, jkt: res.jkt, expiresAt: res.expiresAt });

  before(async function () {
    clock.sync();
    upstream = await startUpstream();
    dpopKey = await generateDpopKey();
    jkt = await jwkThumbprint(dpopKey.publicJwk);
    clients = [APPS.a, WALLET];
    token = tokenInMemory(deps());
    bare = tokenInMemory(depsWithoutWallet());
    // Alice exists (she signed in at app-a first), then signs in at the Wallet Client.
    await newUser(USERS.alice);
    walletLogin = await released(USERS.alice, "wallet");
    accessToken = (await token.mintIdToken(walletLogin.mint)).walletAccessToken;
  });
  after(async () => upstream?.close());

  describe("CreateSession: dpop_jkt and the native client's loopback redirect", function () {
    it("honest: the Wallet Client with its key's thumbprint, on a loopback port of the moment (IPv4 and IPv6), gets a session that keeps dpop_jkt", async function () {
      for (const redirectUri of [LOOPBACK, "http://[::1]:8080/callback", "http://127.0.0.1/callback"]) {
        const res = await start("wallet", { redirectUri });
        expect(session(res.sessionToken)).to.include({ step: "started", client_id: "hello-wallet", redirect_uri: redirectUri, dpop_jkt: jkt });
        expect(decodeProtectedHeader(res.sessionToken).typ).to.equal(SESSION_TOKEN.typ);
      }
    });

    it("checkDpopJkt: the DPoP-bound client without dpop_jkt, or with one that is no SHA-256 thumbprint, is INVALID_ARGUMENT", async function () {
      const message = "dpop_jkt is required from this client: the base64url SHA-256 thumbprint of its DPoP key (RFC 9449 §10)";
      for (const dpopJkt of ["", jkt.slice(1), `${jkt}A`, `${jkt}=`, `${jkt.slice(1)}+`, `${jkt.slice(1)}.`, `${jkt.slice(1)}\n`, JSON.stringify(dpopKey.publicJwk)]) {
        expect(await refusal(start("wallet", { dpopJkt }), JSON.stringify(dpopJkt))).to.deep.equal({ code: Code.InvalidArgument, message });
      }
      // twin: another real thumbprint is as good (the key is the client instance's to choose)
      const other = await jwkThumbprint((await generateDpopKey("EdDSA")).publicJwk);
      expect(session((await start("wallet", { dpopJkt: other })).sessionToken).dpop_jkt).to.equal(other);
    });

    it("checkDpopJkt: app-a (bearer tokens) with a dpop_jkt is INVALID_ARGUMENT (twin: without, no dpop_jkt in its session)", async function () {
      expect(await refusal(start("a", { dpopJkt: jkt }))).to.deep.equal({
        code: Code.InvalidArgument, message: "dpop_jkt is for DPoP-bound clients only; this client's access tokens are bearer tokens",
      });
      expect(session((await start("a")).sessionToken)).to.not.have.property("dpop_jkt");
    });

    it("checkRedirectUri: localhost, another path, https, a userinfo part, another loopback address, a query or fragment is PERMISSION_DENIED", async function () {
      for (const redirectUri of [
        "http://localhost:54321/callback",
        "http://localhost/callback",
        "http://127.0.0.1:54321/cb",
        "http://127.0.0.1:54321/callback/",
        "https://127.0.0.1:54321/callback",
        "http://x@127.0.0.1:1/callback",
        "http://x:y@[::1]:1/callback",
        "http://127.0.0.2:54321/callback",
        "http://127.0.0.1:54321/callback?x=1",
        "http://127.0.0.1:54321/callback#x",
        "https://evil.example/callback",
        APPS.a.redirect_uris[0],
      ]) {
        expect(await refusal(start("wallet", { redirectUri }), redirectUri)).to.deep.equal({
          code: Code.PermissionDenied, message: "redirect_uri is not registered for this client",
        });
      }
      // twin: the registered one on another port
      expect(session((await start("wallet", { redirectUri: "http://127.0.0.1:1/callback" })).sessionToken).redirect_uri).to.equal("http://127.0.0.1:1/callback");
    });

    it("checkRedirectUri: a web client may not change its port, even for a loopback URI it registered (twin: exact)", async function () {
      const denied = { code: Code.PermissionDenied, message: "redirect_uri is not registered for this client" };
      expect(await refusal(start("a", { redirectUri: "https://a.example:8443/callback" }))).to.deep.equal(denied);
      expect(await refusal(start("a", { redirectUri: "https://a.example:443/callback" }))).to.deep.equal(denied);
      expect(session((await start("a")).sessionToken).redirect_uri).to.equal(APPS.a.redirect_uris[0]);

      const loopWeb: RegisteredClient = { client_id: "app-loop", redirect_uris: ["http://127.0.0.1/callback"], id_token_signed_response_alg: "RS256" };
      const withLoopWeb = tokenInMemory(deps({ clients: [...clients, loopWeb] }));
      const startLoop = (redirectUri: string) =>
        withLoopWeb.createSession({ request: { case: "parameters", value: { ...appParameters("a"), clientId: "app-loop", redirectUri } }, providerId: "dev" });
      expect(await refusal(startLoop(LOOPBACK))).to.deep.equal(denied);
      expect(session((await startLoop("http://127.0.0.1/callback")).sessionToken).client_id).to.equal("app-loop");
    });

    // BUG (redirect-uri.ts): "every other part must still match exactly" (and RFC 8252
    // §7.3 / RFC 9700 §4.1.3: exact string matching, the loopback port excepted), but the
    // match compares the WHATWG parser's normalised host and path, so other spellings of
    // the registered URI pass, and the raw string is what the Session Token keeps as the
    // redirect_uri: a shortened or numeric IPv4 host, dot segments, and characters the
    // parser strips (an embedded newline or tab, leading spaces).
    it("BUG: a loopback redirect may differ from the registered one in its port only, not in other spellings of its host or path", async function () {
      const accepted: string[] = [];
      for (const redirectUri of [
        "http://127.1:54321/callback",
        "http://2130706433:54321/callback",
        "http://127.0.0.1:54321/x/../callback",
        "http://127.0.0.1:54321/call\nback",
        "http://127.0.0.1:54321/call\tback",
        " http://127.0.0.1:54321/callback",
      ]) {
        const outcome = await start("wallet", { redirectUri }).then(
          (res) => session(res.sessionToken).redirect_uri,
          () => undefined,
        );
        if (outcome !== undefined) accepted.push(JSON.stringify(outcome));
      }
      expect(accepted, "redirect URIs Token accepted and kept as written").to.deep.equal([]);
    });
  });

  describe("MintIdToken: a DPoP-bound client's login also gets the wallet access token", function () {
    it("honest: typ hello-wallet-access+jwt, a wallet-access key, cnf.jkt the session's dpop_jkt, sub the user id, client_id, 1 h", async function () {
      const minted = await token.mintIdToken(walletLogin.mint);
      const wat = minted.walletAccessToken;
      expect(decodeProtectedHeader(wat)).to.deep.equal({ alg: walletAccessKey().alg, kid: walletAccessKey().kid, typ: "hello-wallet-access+jwt" });
      expect(kidPurpose(wat)).to.equal("wallet-access");
      const { claims } = await verify<WalletAccessClaims>(WALLET_ACCESS_TOKEN, new VerificationKeys(walletKeys.map(publicJwk)), wat, "wallet access token", clock.now());
      const uid = record("subject", walletLogin.subjectRecord).uid;
      expect(session(walletLogin.mint.sessionToken).dpop_jkt).to.equal(jkt);
      expect(claims).to.include({ sub: uid, client_id: "hello-wallet", iat: seconds() });
      expect(claims.cnf).to.deep.equal({ jkt });
      expect(claims.exp! - claims.iat!).to.equal(3600);
      expect(claims.jti).to.be.a("string").and.not.equal(decodeJwt(accessToken).jti);
      // the app's answers as for any client, the ID Token for the Wallet Client
      expect(decodeJwt(minted.idToken)).to.include({ aud: "hello-wallet", iss: ISSUER });
    });

    it("app-a's login (not DPoP-bound) gets no wallet access token", async function () {
      const login = await released(USERS.alice, "a");
      const minted = await token.mintIdToken(login.mint);
      expect(minted.walletAccessToken).to.equal("");
      expect(minted.idToken).to.not.equal("");
      // twin of the next test: the same login through a Token without keys.wallet
      expect((await bare.mintIdToken(login.mint)).walletAccessToken).to.equal("");
    });

    it("a Token without keys.wallet refuses the Wallet Client's MintIdToken with FAILED_PRECONDITION naming keys.wallet", async function () {
      expect(await refusal(bare.mintIdToken(walletLogin.mint))).to.deep.equal({ code: Code.FailedPrecondition, message: NO_WALLET_KEYS });
    });
  });

  describe("AuthorizeWalletCall: the wallet access token and its DPoP proof", function () {
    const unauthenticated = (message: string) => ({ code: Code.Unauthenticated, message });
    const proofInvalid = (reason: string) => unauthenticated(`the DPoP proof is not valid: ${reason}`);
    const tokenInvalid = (reason: string) => unauthenticated(`the wallet access token is not valid: ${reason}`);
    const expiresAt = () => BigInt(decodeJwt(accessToken).exp!);

    it("honest: a proof of the bound key for this method and URL, with ath, says whose call it is", async function () {
      expect(caller(await call(token))).to.deep.equal({ clientId: "hello-wallet", jkt, expiresAt: expiresAt() });
      expect(caller(await call(token, { method: "POST", proof: { method: "POST" } }))).to.deep.equal({ clientId: "hello-wallet", jkt, expiresAt: expiresAt() });
      // the URL as RFC 9449 §4.3 compares it: without query, normalised
      expect(caller(await call(token, { url: `${CALL_URL}?page=2`, proof: { url: "HTTPS://HELLO.TEST:443/wallet/credentials" } })).jkt).to.equal(jkt);
    });

    it("a proof by another key (a stolen token with the thief's own proof) is UNAUTHENTICATED", async function () {
      const thief = await generateDpopKey();
      expect(await refusal(call(token, { key: thief }))).to.deep.equal(proofInvalid("its key is not the key the access token is bound to"));
      expect(await refusal(call(token, { key: await generateDpopKey("EdDSA") }))).to.deep.equal(proofInvalid("its key is not the key the access token is bound to"));
    });

    it("the same proof twice is UNAUTHENTICATED: replayed (twin: its first use)", async function () {
      const dpopProof = await createDpopProof(dpopKey, { method: "GET", url: CALL_URL, accessToken, now: seconds() });
      const once = { accessToken, dpopProof, method: "GET", url: CALL_URL };
      expect(caller(await token.authorizeWalletCall(once)).jkt).to.equal(jkt);
      expect(await refusal(token.authorizeWalletCall(once))).to.deep.equal(proofInvalid("replayed"));
    });

    it("a proof for another method or URL is UNAUTHENTICATED", async function () {
      expect(await refusal(call(token, { proof: { method: "POST" } }))).to.deep.equal(proofInvalid("its htm claim is not the request's method"));
      expect(await refusal(call(token, { proof: { method: "get" } }))).to.deep.equal(proofInvalid("its htm claim is not the request's method"));
      expect(await refusal(call(token, { proof: { url: `${ISSUER}/wallet/other` } }))).to.deep.equal(proofInvalid("its htu claim is not the request's URL"));
      expect(await refusal(call(token, { proof: { url: "https://evil.example/wallet/credentials" } }))).to.deep.equal(proofInvalid("its htu claim is not the request's URL"));
    });

    it("a proof without ath, or with the ath of another token, is UNAUTHENTICATED (twin: that other token with its own proof)", async function () {
      expect(await refusal(call(token, { proof: { accessToken: null } }))).to.deep.equal(proofInvalid("its ath claim is missing"));
      const other = (await token.mintIdToken(walletLogin.mint)).walletAccessToken;
      expect(other).to.not.equal(accessToken);
      expect(await refusal(call(token, { proof: { accessToken: other } }))).to.deep.equal(proofInvalid("its ath claim is not the hash of the access token"));
      expect(caller(await call(token, { token: other })).jkt).to.equal(jkt);
    });

    it("an access token past its exp is UNAUTHENTICATED (twin: at its exp, within the clock tolerance)", async function () {
      expect(caller(await clock.ahead(3600_000, () => call(token))).jkt).to.equal(jkt);
      expect(await clock.ahead(3606_000, () => refusal(call(token)))).to.deep.equal(tokenInvalid("it has expired"));
    });

    it("an access token signed by another purpose's key, by a key Token does not hold, re-typed, or altered is UNAUTHENTICATED", async function () {
      const claims = decodeJwt(accessToken) as WalletAccessClaims & JWTPayload;
      const body = { sub: claims.sub, client_id: claims.client_id, cnf: claims.cnf };
      const now = clock.now();
      // Token's own access key, its wallet key, and a wallet-access key of nobody's
      const byAccessKey = await sign({ ...WALLET_ACCESS_TOKEN, purpose: "access" }, activeKey(keys, "access"), body, { now });
      const byWalletKey = await sign({ ...WALLET_ACCESS_TOKEN, purpose: "wallet" }, activeKey(walletKeys, "wallet"), body, { now });
      const byStranger = await sign(WALLET_ACCESS_TOKEN, generateSigningKey("wallet-access"), body, { now });
      for (const forged of [byAccessKey, byWalletKey, byStranger]) {
        expect(await refusal(call(token, { token: forged }), kidPurpose(forged))).to.deep.equal(tokenInvalid("its key (kid) is not a known wallet-access key"));
      }
      // the right key, another typ: Token's access token's, or none
      for (const typ of ["hello-access+jwt", "JWT", SESSION_TOKEN.typ]) {
        const retyped = await sign({ ...WALLET_ACCESS_TOKEN, typ }, walletAccessKey(), body, { now });
        expect(await refusal(call(token, { token: retyped }), typ)).to.deep.equal(tokenInvalid("its typ header is wrong"));
      }
      // the real token re-bound to the thief's key: its signature no longer holds
      const thief = await generateDpopKey();
      const [header, , signature] = accessToken.split(".");
      const rebound = `${header}.${base64urlJson({ ...claims, cnf: { jkt: await jwkThumbprint(thief.publicJwk) } })}.${signature}`;
      expect(await refusal(call(token, { token: rebound, key: thief }))).to.deep.equal(tokenInvalid("its signature does not verify"));
      // twin: the same claims, signed by Token's wallet-access key
      const honest = await sign(WALLET_ACCESS_TOKEN, walletAccessKey(), body, { now });
      expect(caller(await call(token, { token: honest })).jkt).to.equal(jkt);
    });

    it("an unsecured (alg none) access token, or an empty one, is UNAUTHENTICATED", async function () {
      const [, payload] = accessToken.split(".");
      const withKid = `${base64urlJson({ alg: "none", kid: walletAccessKey().kid, typ: WALLET_ACCESS_TOKEN.typ })}.${payload}.`;
      expect(await refusal(call(token, { token: withKid }))).to.deep.equal(tokenInvalid("its alg is not the alg of its key"));
      const withoutKid = `${base64urlJson({ alg: "none", typ: WALLET_ACCESS_TOKEN.typ })}.${payload}.`;
      expect(await refusal(call(token, { token: withoutKid }))).to.deep.equal(tokenInvalid("its key (kid) is not a known wallet-access key"));
      const dpopProof = await createDpopProof(dpopKey, { method: "GET", url: CALL_URL, accessToken: "", now: seconds() });
      expect(await refusal(token.authorizeWalletCall({ accessToken: "", dpopProof, method: "GET", url: CALL_URL }))).to.deep.equal(
        unauthenticated("the wallet access token is missing"),
      );
      expect(await refusal(call(token, { token: "not.a.token!" }))).to.deep.equal(tokenInvalid("it is malformed"));
    });

    it("a client no longer DPoP-bound, or no longer registered, is UNAUTHENTICATED (twin: another Token with the same registry and wallet keys)", async function () {
      const { dpop_bound_access_tokens: _flag, ...unbound } = WALLET;
      const message = unauthenticated("the wallet access token's client is no longer a registered DPoP-bound client");
      expect(await refusal(call(tokenInMemory(deps({ clients: [APPS.a, unbound] }))))).to.deep.equal(message);
      expect(await refusal(call(tokenInMemory(deps({ clients: [APPS.a, { ...WALLET, dpop_bound_access_tokens: false }] }))))).to.deep.equal(message);
      expect(await refusal(call(tokenInMemory(deps({ clients: [APPS.a] }))))).to.deep.equal(message);
      expect(caller(await call(tokenInMemory(deps())))).to.deep.equal({ clientId: "hello-wallet", jkt, expiresAt: expiresAt() });
    });

    it("a Token without keys.wallet refuses every call with FAILED_PRECONDITION", async function () {
      expect(await refusal(call(bare))).to.deep.equal({ code: Code.FailedPrecondition, message: NO_WALLET_KEYS });
    });
  });

  describe("GetWalletKeySet: the wallet keys' public halves, signed with the key-set key", function () {
    it("the detached signature verifies with Token's key-set key; the JWKS holds exactly the wallet keys, public, and verifies the access token", async function () {
      const res = await token.getWalletKeySet({});
      const keySet = activeKey(keys, "key-set");
      const [header, , signature] = res.signature.split(".");
      expect(res.signature.split(".")[1]).to.equal("");
      const verified = await compactVerify(`${header}.${Buffer.from(res.jwks).toString("base64url")}.${signature}`, createPublicKey(keySet.privateKey));
      expect(verified.protectedHeader).to.deep.equal({ alg: keySet.alg, kid: keySet.kid, typ: "hello-wallet-key-set" });

      const published = (JSON.parse(Buffer.from(res.jwks).toString()) as { keys: Array<Record<string, unknown>> }).keys;
      expect(published).to.deep.equal(walletKeys.map(publicJwk));
      expect(published.map((k) => String(k.kid).split(".")[0])).to.have.members(["wallet-access", "wallet"]);
      expect(published.some((k) => ["d", "p", "q", "dp", "dq", "qi", "k"].some((member) => member in k))).to.equal(false);
      const tokenKids = new Set(keys.map((k) => k.kid));
      expect(published.filter((k) => tokenKids.has(String(k.kid)))).to.deep.equal([]);
      // what a Wallet Client pins verifies the access token it was given
      const pinned = new VerificationKeys(published);
      expect((await verify<WalletAccessClaims>(WALLET_ACCESS_TOKEN, pinned, accessToken, "wallet access token", clock.now())).claims.cnf).to.deep.equal({ jkt });
    });

    it("a Token without keys.wallet serves no wallet key set: FAILED_PRECONDITION (twin: its app key set)", async function () {
      expect(await refusal(bare.getWalletKeySet({}))).to.deep.equal({ code: Code.FailedPrecondition, message: NO_WALLET_KEYS });
      expect((await bare.getKeySet({})).signature).to.not.equal("");
    });
  });
});
