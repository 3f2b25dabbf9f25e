// Token's checks one by one (checks.ts, applied in order by token-service.ts), each
// refusal exact and beside its honest twin, in memory: Token's real routes with the
// mesh's error mapping, keys made here, a clock the test holds, and a real upstream
// provider (the development OP, in this process) for the OP ID Tokens. Storage's part —
// its Error Tokens and receipts, answering Token's grants — is played by the test with
// Storage's keys, so each of Storage's words can be bent one way at a time.
// The same attacks through the four processes: test/e2e/token-attacks.spec.ts,
// fork-attacks.spec.ts, storage-attacks.spec.ts.

import { createPublicKey, randomBytes } from "node:crypto";
import { expect } from "chai";
import { Code, type Client } from "@connectrpc/connect";
import { type JWTPayload, SignJWT, compactVerify, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify } from "jose";
import { type AccessGrant, type ReadRecord, type RecordAnswer, type RecordWrite, type ReleaseAnswer, TokenService, TransactionKind } from "../../gen/hello/token/v1/token_service_pb.js";
import { RecordKind, RecordOperation } from "../../gen/hello/common/v1/record_pb.js";
import type { AllowedProvider, RegisteredClient } from "../../config/component-config.js";
import { sha256, sign } from "../../protocol/jws.js";
import { credentialHash, holdingsHash, releaseHash, reservationHash, s2sSessionHash, subjectHash, walletHash } from "../../protocol/lookup-key.js";
import { type KeyPurpose, type SigningAlg, activeKey, generateSigningKey, publicJwk } from "../../protocol/signing-keys.js";
import { walletClaimsOf } from "../../protocol/claims.js";
import {
  type AccessClaims,
  ERROR_TOKEN,
  type ErrorClaims,
  RECEIPT,
  RECORD_TYPES,
  RECOVERY_SUBJECT_RECORD,
  type ReceiptClaims,
  type RecordClaims,
  SESSION_TOKEN,
  WALLET_DELETION_RECORD,
  type WalletDeletionRecord,
  earlierWallet,
  mergedWallet,
} from "../../protocol/tokens.js";
import { DEFAULT_DEV_USERS, type DevUser } from "../../dev/devop/dev-op.js";
import { storageKeyPair } from "../../../test/support/storage-keys.js";
import { refusal } from "../../../test/support/refusal.js";
import { tamper } from "../../../test/support/tamper.js";
import {
  APPS,
  Clock,
  ISSUER,
  USERS,
  type Upstream,
  appParameters,
  startUpstream,
  tokenInMemory,
  tokenSigningKeys,
} from "../../../test/support/token-harness.js";
import type { TokenServiceDeps } from "./token-service.js";
import { UpstreamVerifier } from "./upstream.js";
import type { SessionClaims } from "./session.js";


const session = (token: string) => decodeJwt(token) as SessionClaims & JWTPayload;
const grantOf = (grant: AccessGrant | undefined) => decodeJwt(grant!.accessToken) as AccessClaims & JWTPayload & { jti: string };
const record = <K extends keyof RecordClaims>(_kind: K, jws: string) => decodeJwt(jws) as RecordClaims[K] & JWTPayload;
type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];
const kidPurpose = (jws: string) => String(decodeProtectedHeader(jws).kid).split(".")[0];
/** Bob's second account, at the providers "north" and "south": two accounts of one person at one provider. */
const BOB_AT_WORK: DevUser = { sub: "bob-work-0004", email: "bob@work.example", email_verified: true, name: "Bob at Work", password: "bob-work" };

describe("Token, check by check (internal/components/token)", function () {
  this.timeout(20_000); // the development OP's first login warms it up
  const clock = new Clock();
  const keys = tokenSigningKeys();
  const storageKeys = storageKeyPair();
  const lookupKey = randomBytes(32);
  let upstream: Upstream;
  /**
   * Two more providers on Token's allow-list, each a development OP of its own (its own
   * issuer and keys, the same users and Bob's work account): a recovery's rounds are at
   * distinct providers (docs/transactions.md, "Recovery"). Alice at "north" is an account
   * of her own, not her account at "dev".
   */
  let north: Upstream;
  let south: Upstream;
  /** Token's allow-list, "dev", "north" and "south", and its verifier of their OP ID Tokens. */
  let providers: AllowedProvider[];
  let verifier: UpstreamVerifier;
  let clients: RegisteredClient[];
  let token: Client<typeof TokenService>;
  /** app-jar's own key: it signs request objects (RFC 9101). */
  let jar: { privateKey: PrivateKey; kid: string };

  const deps = (over: Partial<TokenServiceDeps> = {}): TokenServiceDeps => ({
    issuer: ISSUER,
    keys: () => keys,
    storageKeys: () => storageKeys.keys,
    lookupKey,
    clients,
    upstream: verifier,
    providers,
    now: clock.now,
    ...over,
  });

  // --- Storage's part, played with Storage's keys ------------------------------------

  /** Storage's rows, as far as this spec needs them: hash -> the record written there. */
  const rows = new Map<string, string>();

  /** Storage's Error Token answering `grant` (a read that found nothing), bent by `over`. */
  const absent = (grant: AccessGrant | undefined, over: Partial<ErrorClaims> = {}, at = clock.now()) => {
    const g = grantOf(grant);
    return sign(ERROR_TOKEN, storageKeys.error, { op: "read", kind: g.kind, hash: g.hash, ajti: g.jti, ...over }, { now: at });
  };
  /** Storage's receipt answering `grant` for `record`, bent by `over`. */
  const receipt = (grant: AccessGrant | undefined, jws: string, over: Partial<ReceiptClaims> = {}) => {
    const g = grantOf(grant);
    const claims = { op: g.op, kind: g.kind, hash: g.hash, digest: sha256(jws), version: 1, ajti: g.jti, ...over };
    return sign(RECEIPT, storageKeys.receipt, claims, { now: clock.now() });
  };
  /** Storage's create: the row kept, and its create receipt. */
  const store = (write: RecordWrite | undefined) => {
    rows.set(write!.grant!.hash, write!.record);
    return receipt(write!.grant, write!.record);
  };

  // --- a login, step by step ------------------------------------------------------------

  type App = keyof typeof APPS | "jar";
  const params = (app: App, over: Partial<ReturnType<typeof appParameters>> = {}) => ({
    ...(app === "jar" ? { ...appParameters("a"), clientId: "app-jar", redirectUri: "https://jar.example/callback" } : appParameters(app)),
    ...over,
  });
  const start = (app: App = "a", over: Partial<ReturnType<typeof appParameters>> & { maxAge?: bigint } = {}) =>
    token.createSession({ request: { case: "parameters", value: params(app, over) }, providerId: "dev" });

  /** Step 3 done: a session at "subject", its subject read, and the real OP ID Token behind it. */
  async function atSubject(user: DevUser, options: { app?: App; over?: Parameters<typeof start>[1]; prompt?: string } = {}) {
    const started = await start(options.app, options.over);
    const up = await upstream.login(user, started.upstreamNonce, options.prompt === undefined ? {} : { prompt: options.prompt });
    const authorized = await token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: up.idToken });
    return { started, upstream: up, sessionToken: authorized.sessionToken, subjectRead: authorized.subjectRead! };
  }

  /** A new user, all the way: CreateUser on Storage's "no record", both writes, CommitUser. */
  async function newUser(user: DevUser) {
    const at = await atSubject(user);
    const made = await token.createUser({ sessionToken: at.sessionToken, errorToken: await absent(at.subjectRead) });
    const walletReceipt = await store(made.wallet);
    const subjectReceipt = await store(made.subject);
    const committed = await token.commitUser({ sessionToken: made.sessionToken, walletReceipt, subjectReceipt });
    return { ...at, made, committed: committed.sessionToken };
  }

  /** A user Storage holds, at step "user": the stored subject with the receipt for this session's read. */
  async function returning(user: DevUser, options: Parameters<typeof atSubject>[1] = {}) {
    const at = await atSubject(user, options);
    const subjectRecord = rows.get(at.subjectRead.hash)!;
    const subjectReceipt = await receipt(at.subjectRead, subjectRecord);
    const authorized = await token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord, subjectReceipt });
    const walletRecord = rows.get(authorized.walletRead!.hash)!;
    const walletReceipt = await receipt(authorized.walletRead, walletRecord);
    return { ...at, subjectRecord, subjectReceipt, user: authorized, walletRecord, walletReceipt };
  }

  /** A returning user's first release at an app: CreateRelease on Storage's "no release", both writes. */
  async function released(user: DevUser, consented: string[], options: Parameters<typeof atSubject>[1] = {}) {
    const login = await returning(user, options);
    const made = await token.createRelease({
      sessionToken: login.user.sessionToken, errorToken: await absent(login.user.releaseRead),
      walletRecord: login.walletRecord, walletReceipt: login.walletReceipt, consentedClaims: consented,
    });
    await store(made.reservation);
    const releaseReceipt = await store(made.release);
    const mint = {
      sessionToken: made.sessionToken, subjectRecord: login.subjectRecord, walletRecord: login.walletRecord, walletReceipt: "",
      releaseRecord: made.release!.record, releaseReceipt,
    };
    return { ...login, made, mint };
  }

  // --- the account page's sign-in (docs/transactions.md) ----------------------------------

  const startAccount = (providerId = "dev") => token.createAccountSession({ providerId });

  /** An account session of `user` at "subject": its forced fresh login (prompt=login) verified by Token. */
  async function accountAtSubject(user: DevUser) {
    const started = await startAccount();
    const up = await upstream.login(user, started.upstreamNonce, { prompt: "login" });
    const authorized = await token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: up.idToken });
    return { started, upstream: up, sessionToken: authorized.sessionToken, subjectRead: authorized.subjectRead! };
  }

  /** An account session of a user Storage holds, at "user". */
  async function accountUser(user: DevUser) {
    const at = await accountAtSubject(user);
    const subjectRecord = rows.get(at.subjectRead.hash)!;
    const authorized = await token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord, subjectReceipt: await receipt(at.subjectRead, subjectRecord) });
    return { ...at, subjectRecord, authorized };
  }

  before(async function () {
    clock.sync();
    upstream = await startUpstream();
    [north, south] = await Promise.all([startUpstream([...DEFAULT_DEV_USERS, BOB_AT_WORK]), startUpstream([...DEFAULT_DEV_USERS, BOB_AT_WORK])]);
    providers = [upstream.provider, { ...north.provider, id: "north" }, { ...south.provider, id: "south" }];
    verifier = new UpstreamVerifier(providers);
    const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
    jar = { privateKey, kid: "app-jar-1" };
    clients = [
      APPS.a,
      APPS.b,
      {
        client_id: "app-jar", redirect_uris: ["https://jar.example/callback"], id_token_signed_response_alg: "EdDSA",
        jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: jar.kid, alg: "ES256", use: "sig" } as { kty: string }] },
      },
      { client_id: "app-nokeys", redirect_uris: ["https://nokeys.example/callback"], id_token_signed_response_alg: "RS256" },
    ];
    token = tokenInMemory(deps());
    // Alice and Bob exist; each has a wallet and no release yet.
    await newUser(USERS.alice);
    await newUser(USERS.bob);
  });
  after(async () => Promise.all([upstream, north, south].map((up) => up?.close())));

  describe("CreateSession: the app's request against Token's own registry", function () {
    it("honest: a session at step started, bound to the request, the provider and a fresh upstream nonce", async function () {
      const request = params("a", { claims: JSON.stringify({ id_token: { email: null } }), prompt: "login consent" });
      const res = await token.createSession({ request: { case: "parameters", value: { ...request, maxAge: 300n } }, providerId: "dev" });
      expect(res.providerIssuer).to.equal(upstream.devOp.issuer);
      expect(res.upstreamNonce).to.match(/^[\w-]{22}$/);
      expect(decodeProtectedHeader(res.sessionToken).typ).to.equal(SESSION_TOKEN.typ);
      const claims = session(res.sessionToken);
      expect(claims).to.include({
        step: "started", client_id: "app-a", redirect_uri: request.redirectUri, nonce: request.nonce, scope: request.scope,
        claims_request: request.claims, code_challenge: request.codeChallenge, prompt_login: true, max_age: 300,
        provider: "dev", provider_iss: upstream.devOp.issuer, upstream_nonce: res.upstreamNonce, started: clock.now().getTime(),
      });
      expect(claims.exp! - claims.iat!).to.equal(SESSION_TOKEN.maxLifetimeSeconds);
    });

    it("checkClient: an unregistered client_id is PERMISSION_DENIED", async function () {
      expect(await refusal(start("a", { clientId: "app-unknown" }))).to.deep.equal({ code: Code.PermissionDenied, message: "client_id is not registered" });
    });

    it("checkRedirectUri: a redirect_uri the client did not register (another app's, or a near miss) is PERMISSION_DENIED", async function () {
      for (const redirectUri of [APPS.b.redirect_uris[0], `${APPS.a.redirect_uris[0]}/`, "https://evil.example/callback"]) {
        expect(await refusal(start("a", { redirectUri }))).to.deep.equal({ code: Code.PermissionDenied, message: "redirect_uri is not registered for this client" });
      }
    });

    it("checkNonce: no nonce, or one over 255 characters, is INVALID_ARGUMENT (twin: 255 characters)", async function () {
      for (const nonce of ["", "n".repeat(256)]) {
        expect(await refusal(start("a", { nonce }))).to.deep.equal({ code: Code.InvalidArgument, message: "nonce is required (at most 255 characters)" });
      }
      expect(session((await start("a", { nonce: "n".repeat(255) })).sessionToken).nonce).to.have.length(255);
    });

    it("checkScope: a scope without openid is INVALID_ARGUMENT", async function () {
      for (const scope of ["email profile", "openidx email", ""]) {
        expect(await refusal(start("a", { scope }))).to.deep.equal({ code: Code.InvalidArgument, message: 'scope must include "openid"' });
      }
    });

    it("checkPkce: no code_challenge, or one that is no S256 challenge, is INVALID_ARGUMENT", async function () {
      for (const codeChallenge of ["", "plain-verifier", "x".repeat(42), `${"x".repeat(42)}=`, "x".repeat(129)]) {
        expect(await refusal(start("a", { codeChallenge }))).to.deep.equal({
          code: Code.InvalidArgument, message: "code_challenge is required: PKCE with S256 for every client",
        });
      }
    });

    it("checkPrompt and checkMaxAge: an over-long prompt, a max_age out of range, are INVALID_ARGUMENT", async function () {
      expect(await refusal(start("a", { prompt: "login ".repeat(11) }))).to.deep.equal({ code: Code.InvalidArgument, message: "prompt is too long" });
      for (const maxAge of [-1n, 1_000_000_000n]) {
        expect(await refusal(start("a", { maxAge }))).to.deep.equal({ code: Code.InvalidArgument, message: "max_age must be a whole number of seconds" });
      }
      expect(session((await start("a", { maxAge: 0n })).sessionToken).max_age).to.equal(0);
    });

    it("checkClaimsRequest: a claims parameter that is not JSON (or JSON null) is INVALID_ARGUMENT", async function () {
      for (const claims of ["{", "null", "{'id_token':{}}"]) {
        expect(await refusal(start("a", { claims }))).to.deep.equal({ code: Code.InvalidArgument, message: "claims is not valid JSON" });
      }
    });

    it("no request at all is INVALID_ARGUMENT", async function () {
      expect(await refusal(token.createSession({ providerId: "dev" }))).to.deep.equal({
        code: Code.InvalidArgument, message: "request is required: the app's request object or its parameters",
      });
    });

    it("checkProvider: a provider not on Token's allow-list is INVALID_ARGUMENT, however Orchestration names it", async function () {
      for (const providerId of ["google", "", upstream.devOp.issuer]) {
        expect(await refusal(token.createSession({ request: { case: "parameters", value: params("a") }, providerId }))).to.deep.equal({
          code: Code.InvalidArgument, message: "provider_id is not on Token's allow-list",
        });
      }
    });

    describe("checkRequestObject: a signed request object, verified with the client's own registered keys", function () {
      const requestObject = async (over: { claims?: Record<string, unknown>; aud?: string; iat?: number; exp?: number; jti?: string | null; key?: PrivateKey } = {}) => {
        const t = Math.floor(clock.now().getTime() / 1000);
        const p = params("jar");
        const jwt = new SignJWT({
          client_id: "app-jar", redirect_uri: p.redirectUri, nonce: p.nonce, scope: p.scope, code_challenge: p.codeChallenge, response_type: "code",
          ...over.claims,
        })
          .setProtectedHeader({ alg: "ES256", kid: jar.kid })
          .setIssuer("app-jar")
          .setAudience(over.aud ?? ISSUER)
          .setIssuedAt(over.iat ?? t)
          .setExpirationTime(over.exp ?? t + 300);
        if (over.jti !== null) jwt.setJti(over.jti ?? randomBytes(8).toString("hex"));
        return jwt.sign(over.key ?? jar.privateKey);
      };
      const withObject = async (value: string) => token.createSession({ request: { case: "requestObject", value }, providerId: "dev" });

      it("honest: the session is bound to what the request object says, its max_age included", async function () {
        const object = await requestObject({ claims: { max_age: 120, prompt: "login", claims: { userinfo: { name: null } } } });
        const claims = session((await withObject(object)).sessionToken);
        const said = decodeJwt(object);
        expect(claims).to.include({
          client_id: "app-jar", redirect_uri: said.redirect_uri, nonce: said.nonce, code_challenge: said.code_challenge, max_age: 120, prompt_login: true,
          claims_request: JSON.stringify({ userinfo: { name: null } }),
        });
      });

      it("one for another audience, expired, without a jti, or older than ten minutes is UNAUTHENTICATED", async function () {
        const t = Math.floor(clock.now().getTime() / 1000);
        const cases: Array<[string, Promise<string>]> = [
          ['unexpected "aud" claim value', requestObject({ aud: "https://another-op.example" })],
          ['"exp" claim timestamp check failed', requestObject({ iat: t - 120, exp: t - 60 })],
          ['missing required "jti" claim', requestObject({ jti: null })],
          ['"iat" claim timestamp check failed (too far in the past)', requestObject({ iat: t - 601, exp: t + 60 })],
        ];
        for (const [reason, object] of cases) {
          expect(await refusal(withObject(await object))).to.deep.equal({ code: Code.Unauthenticated, message: `the request object is not valid: ${reason}` });
        }
      });

      it("one signed by a key the client did not register is UNAUTHENTICATED; the registry's checks still apply to what it says", async function () {
        const stranger = await generateKeyPair("ES256");
        expect(await refusal(withObject(await requestObject({ key: stranger.privateKey })))).to.deep.equal({
          code: Code.Unauthenticated, message: "the request object is not valid: signature verification failed",
        });
        expect(await refusal(withObject(await requestObject({ claims: { redirect_uri: "https://evil.example/callback" } })))).to.deep.equal({
          code: Code.PermissionDenied, message: "redirect_uri is not registered for this client",
        });
        expect(await refusal(withObject(await requestObject({ claims: { nonce: undefined } })))).to.deep.equal({
          code: Code.InvalidArgument, message: "nonce is required (at most 255 characters)",
        });
      });

      it("an unregistered client, a client without keys, and a malformed object are refused before any signature is tried", async function () {
        expect(await refusal(withObject(await requestObject({ claims: { client_id: "app-unknown" } })))).to.deep.equal({
          code: Code.PermissionDenied, message: "the request object's client_id is not registered",
        });
        expect(await refusal(withObject(await requestObject({ claims: { client_id: "app-nokeys" } })))).to.deep.equal({
          code: Code.PermissionDenied, message: "this client registered no keys for signed request objects",
        });
        expect(await refusal(withObject("not.a.jwt"))).to.deep.equal({ code: Code.InvalidArgument, message: "the request object is malformed" });
      });
    });
  });

  describe("the session step machine (session.ts)", function () {
    it("steps out of order are FAILED_PRECONDITION, naming both steps", async function () {
      const started = await start();
      const at = await atSubject(USERS.alice);
      const cases: Array<[Promise<unknown>, string, string]> = [
        [token.createUser({ sessionToken: started.sessionToken, errorToken: "x" }), "subject", "started"],
        [token.authorizeUser({ sessionToken: started.sessionToken }), "subject", "started"],
        [token.authorizeSubject({ sessionToken: at.sessionToken, opIdToken: at.upstream.idToken }), "started", "subject"],
        [token.commitUser({ sessionToken: at.sessionToken }), "created", "subject"],
        [token.mintIdToken({ sessionToken: at.sessionToken }), "user", "subject"],
        [token.grantReleaseRead({ sessionToken: at.sessionToken }), "user", "subject"],
        [token.reserveDirectedId({ sessionToken: started.sessionToken }), "user", "started"],
        [token.createRelease({ sessionToken: at.sessionToken }), "user", "subject"],
      ];
      for (const [call, needed, was] of cases) {
        expect(await refusal(call)).to.deep.equal({ code: Code.FailedPrecondition, message: `this step needs a session at step "${needed}", not "${was}"` });
      }
    });

    it("a session re-issued at the next step keeps its expiry: a login never gains time", async function () {
      const started = await start();
      const up = await upstream.login(USERS.alice, started.upstreamNonce);
      const next = await clock.ahead(30_000, () => token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: up.idToken }));
      const [before, after] = [session(started.sessionToken), session(next.sessionToken)];
      expect(after.exp).to.equal(before.exp);
      expect(after.iat).to.equal(before.iat! + 30);
      expect(after).to.include({ step: "subject", sid: before.sid, upstream_nonce: before.upstream_nonce });
      expect(after.jti).to.not.equal(before.jti);
    });

    it("a tampered, expired, or other-purpose session is UNAUTHENTICATED (twin: the session as Token signed it)", async function () {
      const at = await atSubject(USERS.bob);
      const promoted = tamper(at.sessionToken, (c) => { c.step = "user"; c.uid = "someone"; });
      expect(await refusal(token.mintIdToken({ sessionToken: promoted }))).to.deep.equal({
        code: Code.Unauthenticated, message: "the session token is not valid: its signature does not verify",
      });
      const padded = tamper(at.sessionToken, (c) => { c.op_claims = { email: "ceo@bank.example", email_verified: true }; });
      expect(await refusal(token.createUser({ sessionToken: padded, errorToken: await absent(at.subjectRead) }))).to.deep.equal({
        code: Code.Unauthenticated, message: "the session token is not valid: its signature does not verify",
      });
      // An Access Token (Token-signed, another purpose) presented as a session.
      expect(await refusal(token.createUser({ sessionToken: at.subjectRead.accessToken }))).to.deep.equal({
        code: Code.Unauthenticated, message: "the session token is not valid: its key (kid) is not a known session key",
      });
      expect(await refusal(clock.ahead(16 * 60_000, () => token.createUser({ sessionToken: at.sessionToken, errorToken: "x" })))).to.deep.equal({
        code: Code.Unauthenticated, message: "the session token is not valid: it has expired",
      });
      expect(await refusal(token.createUser({ sessionToken: "" }))).to.deep.equal({ code: Code.InvalidArgument, message: "the session token is not valid: it is missing" });
      // honest twin: the same session, untouched, goes on
      await token.createUser({ sessionToken: at.sessionToken, errorToken: await absent(at.subjectRead) });
    });
  });

  describe("AuthorizeSubject: Token's own verification of a real OP ID Token", function () {
    it("honest: a read of hash(iss, sub) only, and the session at step subject with what the provider said", async function () {
      const at = await atSubject(USERS.alice);
      const hash = subjectHash(lookupKey, upstream.devOp.issuer, USERS.alice.sub);
      expect(at.subjectRead).to.include({ hash, kind: RecordKind.SUBJECT, operation: RecordOperation.READ });
      const grant = grantOf(at.subjectRead);
      expect(grant).to.include({ op: "read", kind: "subject", hash });
      expect(grant).to.not.have.any.keys("digest", "ejti", "sid", "uid");
      expect(grant.exp! - grant.iat!).to.equal(60);
      expect(session(at.sessionToken)).to.deep.include({
        step: "subject", op_sub: USERS.alice.sub, subject_hash: hash, subject_read: grant.jti, op_claims: walletClaimsOf(at.upstream.claims),
      });
      expect(session(at.sessionToken)).to.not.have.property("auth_time"); // the provider sent none
    });

    it("checkOpIdToken: another session's OP ID Token (its upstream nonce), or a replayed one, is UNAUTHENTICATED", async function () {
      const first = await start();
      const second = await start();
      const forFirst = await upstream.login(USERS.alice, first.upstreamNonce);
      expect(await refusal(token.authorizeSubject({ sessionToken: second.sessionToken, opIdToken: forFirst.idToken }))).to.deep.equal({
        code: Code.Unauthenticated, message: "the OP ID Token is not valid: its nonce is not this session's upstream nonce",
      });
      await token.authorizeSubject({ sessionToken: first.sessionToken, opIdToken: forFirst.idToken });
    });

    it("checkOpIdToken: an OP ID Token signed by anyone but the provider is UNAUTHENTICATED", async function () {
      const started = await start();
      const attacker = await generateKeyPair("RS256");
      const forged = await new SignJWT({ nonce: started.upstreamNonce, email: "mallory@example.com", email_verified: true })
        .setProtectedHeader({ alg: "RS256", kid: "dev-op-key" })
        .setIssuer(upstream.devOp.issuer).setSubject(USERS.alice.sub).setAudience("hello-mesh").setIssuedAt().setExpirationTime("5m")
        .sign(attacker.privateKey);
      const refused = await refusal(token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: forged }));
      expect(refused.code).to.equal(Code.Unauthenticated);
      expect(refused.message).to.match(/^the OP ID Token is not valid: (no key of the provider's JWKS matches it|its signature does not verify)$/);
    });

    it("checkSessionProvider: an OP ID Token whose issuer is not the session's provider is PERMISSION_DENIED", async function () {
      // A Token whose allow-list entry names another issuer than the verifier it was given (a misconfiguration).
      const confused = tokenInMemory(deps({ providers: [{ ...upstream.provider, issuer: "https://accounts.example" }] }));
      const started = await confused.createSession({ request: { case: "parameters", value: params("a") }, providerId: "dev" });
      const up = await upstream.login(USERS.alice, started.upstreamNonce);
      expect(await refusal(confused.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: up.idToken }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the OP ID Token is not from the session's provider",
      });
    });

    describe("checkFreshness: the app's max_age and prompt=login against the provider's auth_time", function () {
      it("honest: prompt=login with a fresh authentication passes, and the session keeps the provider's auth_time", async function () {
        const at = await atSubject(USERS.alice, { over: { prompt: "login" }, prompt: "login" });
        expect(at.upstream.claims.auth_time).to.be.a("number");
        expect(session(at.sessionToken).auth_time).to.equal(at.upstream.claims.auth_time);
      });

      it("a provider that does not say auth_time, when the app asked for max_age, is login required", async function () {
        const started = await start("a", { maxAge: 60n });
        const up = await upstream.login(USERS.alice, started.upstreamNonce);
        expect(await refusal(token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: up.idToken }))).to.deep.equal({
          code: Code.PermissionDenied,
          message: "login required: the provider did not say when the user authenticated (auth_time), and the app asked for a recent or fresh login",
        });
      });

      it("an authentication older than max_age (Token's clock two minutes on) is login required; twin: at once", async function () {
        const started = await start("a", { maxAge: 60n });
        const up = await upstream.login(USERS.alice, started.upstreamNonce, { prompt: "login" });
        expect(await refusal(clock.ahead(120_000, () => token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: up.idToken })))).to.deep.equal({
          code: Code.PermissionDenied, message: "login required: the user authenticated at the provider longer ago than the app's max_age allows",
        });
        await token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: up.idToken });
      });

      it("prompt=login with an authentication from before the login began is login required", async function () {
        // The login began 45 s after the provider's authentication: within the OP ID Token's minute of skew, past auth_time's 30 s.
        const started = await clock.ahead(45_000, () => start("a", { prompt: "login" }));
        const up = await upstream.login(USERS.alice, started.upstreamNonce, { prompt: "login" });
        expect(await refusal(token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: up.idToken }))).to.deep.equal({
          code: Code.PermissionDenied, message: "login required: the user did not authenticate at the provider after this login began, as prompt=login asks",
        });
      });
    });
  });

  describe("CreateUser: Storage's \"no record\" for this session's own read", function () {
    it("honest: a wallet of what the provider said, and a subject whose create carries the Error Token's jti", async function () {
      const at = await atSubject(USERS.carol);
      const errorToken = await absent(at.subjectRead);
      const made = await token.createUser({ sessionToken: at.sessionToken, errorToken });
      const wallet = record("wallet", made.wallet!.record);
      const subject = record("subject", made.subject!.record);
      expect(decodeProtectedHeader(made.wallet!.record).typ).to.equal(RECORD_TYPES.wallet.typ);
      expect(kidPurpose(made.subject!.record)).to.equal("record");
      expect(wallet.claims).to.deep.equal(walletClaimsOf(at.upstream.claims));
      expect(wallet.claims).to.include({ email: USERS.carol.email, email_verified: false });
      expect(wallet.subjects).to.deep.equal([{ iss: upstream.devOp.issuer, sub: USERS.carol.sub }]);
      expect(subject).to.include({ op_iss: upstream.devOp.issuer, op_sub: USERS.carol.sub, uid: wallet.uid });

      expect(made.wallet!.grant).to.include({ hash: walletHash(lookupKey, wallet.uid), kind: RecordKind.WALLET, operation: RecordOperation.CREATE });
      expect(grantOf(made.wallet!.grant)).to.include({ op: "create", kind: "wallet", digest: sha256(made.wallet!.record) }).and.not.have.property("ejti");
      expect(made.subject!.grant).to.include({ hash: at.subjectRead.hash, kind: RecordKind.SUBJECT, operation: RecordOperation.CREATE });
      expect(grantOf(made.subject!.grant)).to.include({ op: "create", kind: "subject", digest: sha256(made.subject!.record), ejti: decodeJwt(errorToken).jti });
      expect(session(made.sessionToken)).to.include({ step: "created", uid: wallet.uid, wallet_digest: sha256(made.wallet!.record), subject_digest: sha256(made.subject!.record) });
    });

    it("checkAbsence: an Error Token of another session, hash, kind or operation is PERMISSION_DENIED", async function () {
      const at = await atSubject(USERS.carol);
      const other = await atSubject(USERS.carol);
      const notAnswered = { code: Code.PermissionDenied, message: "the error token does not answer this session's subject read" };
      const bent = [
        await absent(other.subjectRead), // the same hash, another session's read
        await absent(at.subjectRead, { hash: subjectHash(lookupKey, upstream.devOp.issuer, USERS.alice.sub) }),
        await absent(at.subjectRead, { kind: "release" }),
        await absent(at.subjectRead, { op: "create" as "read" }),
      ];
      for (const errorToken of bent) expect(await refusal(token.createUser({ sessionToken: at.sessionToken, errorToken }))).to.deep.equal(notAnswered);
      await token.createUser({ sessionToken: at.sessionToken, errorToken: await absent(at.subjectRead) });
    });

    it("checkAbsence: an expired Error Token, one re-addressed after signing, or one not signed by Storage's error key is UNAUTHENTICATED", async function () {
      const at = await atSubject(USERS.carol);
      const invalid = (reason: string) => ({ code: Code.Unauthenticated, message: `the error token is not valid: ${reason}` });
      const expired = await absent(at.subjectRead, {}, new Date(clock.now().getTime() - 120_000));
      expect(await refusal(token.createUser({ sessionToken: at.sessionToken, errorToken: expired }))).to.deep.equal(invalid("it has expired"));
      const readdressed = tamper(await absent(at.subjectRead), (c) => { c.hash = "another-hash"; });
      expect(await refusal(token.createUser({ sessionToken: at.sessionToken, errorToken: readdressed }))).to.deep.equal(invalid("its signature does not verify"));
      const byReceiptKey = await sign({ ...ERROR_TOKEN, purpose: "receipt" }, storageKeys.receipt, { op: "read", kind: "subject", hash: at.subjectRead.hash, ajti: grantOf(at.subjectRead).jti });
      expect(await refusal(token.createUser({ sessionToken: at.sessionToken, errorToken: byReceiptKey }))).to.deep.equal(invalid("its key (kid) is not a known error key"));
    });
  });

  describe("CommitUser: Storage's create receipts for this session's own creates", function () {
    async function created(user: DevUser) {
      const at = await atSubject(user);
      const errorToken = await absent(at.subjectRead);
      return { made: await token.createUser({ sessionToken: at.sessionToken, errorToken }), at, errorToken };
    }

    it("honest: both receipts answer the creates; the session is at step user", async function () {
      const { made } = await created(USERS.carol);
      const [walletReceipt, subjectReceipt] = [await receipt(made.wallet!.grant, made.wallet!.record), await receipt(made.subject!.grant, made.subject!.record)];
      const committed = await token.commitUser({ sessionToken: made.sessionToken, walletReceipt, subjectReceipt });
      expect(session(committed.sessionToken)).to.include({ step: "user", uid: record("wallet", made.wallet!.record).uid });
    });

    it("checkCreated: receipts of the other record, of a fork of this session, with another digest, of a read, or of another grant are PERMISSION_DENIED", async function () {
      const { made, at, errorToken } = await created(USERS.carol);
      // A second CreateUser on the same Error Token: another user, whose creates Storage would refuse.
      const fork = await token.createUser({ sessionToken: at.sessionToken, errorToken });
      const good = { wallet: await receipt(made.wallet!.grant, made.wallet!.record), subject: await receipt(made.subject!.grant, made.subject!.record) };
      const walletWrong = { code: Code.PermissionDenied, message: "the wallet receipt does not answer this session's wallet create" };
      const cases: Array<[{ walletReceipt: string; subjectReceipt: string }, typeof walletWrong]> = [
        [{ walletReceipt: good.subject, subjectReceipt: good.wallet }, walletWrong],
        [{ walletReceipt: await receipt(fork.wallet!.grant, fork.wallet!.record), subjectReceipt: good.subject }, walletWrong],
        [{ walletReceipt: await receipt(made.wallet!.grant, made.wallet!.record, { digest: sha256("another record") }), subjectReceipt: good.subject }, walletWrong],
        [{ walletReceipt: await receipt(made.wallet!.grant, made.wallet!.record, { op: "read" }), subjectReceipt: good.subject }, walletWrong],
        // the right record at the right hash, but answering a grant that is not this session's create
        [{ walletReceipt: await receipt(made.wallet!.grant, made.wallet!.record, { ajti: "another-create" }), subjectReceipt: good.subject }, walletWrong],
        [{ walletReceipt: good.wallet, subjectReceipt: await receipt(fork.subject!.grant, fork.subject!.record) },
          { code: Code.PermissionDenied, message: "the subject receipt does not answer this session's subject create" }],
      ];
      for (const [receipts, refused] of cases) expect(await refusal(token.commitUser({ sessionToken: made.sessionToken, ...receipts }))).to.deep.equal(refused);
      // The fork's own session cannot commit with the first's receipts either.
      expect(await refusal(token.commitUser({ sessionToken: fork.sessionToken, walletReceipt: good.wallet, subjectReceipt: good.subject }))).to.deep.equal(walletWrong);
      expect(await refusal(token.commitUser({ sessionToken: made.sessionToken, walletReceipt: "", subjectReceipt: good.subject }))).to.deep.equal({
        code: Code.InvalidArgument, message: "the wallet receipt is not valid: it is missing",
      });
      await token.commitUser({ sessionToken: made.sessionToken, walletReceipt: good.wallet, subjectReceipt: good.subject });
    });
  });

  describe("AuthorizeUser: the stored Subject Record of this session's subject", function () {
    it("honest: reads of this user's wallet and of this app's release, and the session knows its user", async function () {
      const login = await returning(USERS.alice, { app: "b" });
      const uid = record("subject", login.subjectRecord).uid;
      expect(login.user.walletRead).to.include({ hash: walletHash(lookupKey, uid), kind: RecordKind.WALLET, operation: RecordOperation.READ });
      expect(login.user.releaseRead).to.include({ hash: releaseHash(lookupKey, uid, "app-b"), kind: RecordKind.RELEASE, operation: RecordOperation.READ });
      expect(session(login.user.sessionToken)).to.include({
        step: "user", uid, subject_digest: sha256(login.subjectRecord),
        wallet_read: grantOf(login.user.walletRead).jti, release_read: grantOf(login.user.releaseRead).jti,
      });
    });

    it("checkReceipt: no receipt is INVALID_ARGUMENT; another session's, another digest's, another kind's, or a create's is PERMISSION_DENIED", async function () {
      const at = await atSubject(USERS.alice);
      const other = await atSubject(USERS.alice);
      const subjectRecord = rows.get(at.subjectRead.hash)!;
      const authorize = (subjectReceipt: string, jws = subjectRecord) => token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord: jws, subjectReceipt });
      expect(await refusal(authorize(""))).to.deep.equal({
        code: Code.InvalidArgument, message: "the subject receipt is required: Storage's receipt for this session's subject read",
      });
      const notStored = { code: Code.PermissionDenied, message: "the subject receipt does not show this subject record stored for this session" };
      for (const bent of [
        await receipt(other.subjectRead, subjectRecord),
        await receipt(at.subjectRead, subjectRecord, { digest: sha256("a record never stored") }),
        await receipt(at.subjectRead, subjectRecord, { kind: "wallet" }),
        await receipt(at.subjectRead, subjectRecord, { op: "create" }),
        await receipt(at.subjectRead, subjectRecord, { hash: "another-hash" }),
      ]) expect(await refusal(authorize(bent))).to.deep.equal(notStored);
      await authorize(await receipt(at.subjectRead, subjectRecord));
    });

    it("a forked user's Subject Record (minted by Token, never stored) is worth nothing, receipt or not", async function () {
      const at = await atSubject(USERS.alice);
      // What a rogue Orchestration keeps: a Subject Record Token made for Alice's hash in a fork it never wrote.
      const forked = await token.createUser({ sessionToken: at.sessionToken, errorToken: await absent(at.subjectRead) });
      const stored = await receipt(at.subjectRead, rows.get(at.subjectRead.hash)!);
      expect(await refusal(token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord: forked.subject!.record, subjectReceipt: stored }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the subject receipt does not show this subject record stored for this session",
      });
    });

    it("checkSubject: another user's Subject Record is refused even with Storage's word that it is stored at this session's hash", async function () {
      const at = await atSubject(USERS.alice);
      const bobs = rows.get(subjectHash(lookupKey, upstream.devOp.issuer, USERS.bob.sub))!;
      // A rogue Storage's receipt for Bob's record at Alice's hash, answering Alice's read.
      expect(await refusal(token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord: bobs, subjectReceipt: await receipt(at.subjectRead, bobs) }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the subject record is not this session's subject",
      });
    });

    it("a Subject Record not signed by Token's record keys is UNAUTHENTICATED", async function () {
      const at = await atSubject(USERS.alice);
      const own = generateSigningKey("record");
      const forged = await sign(RECORD_TYPES.subject, own, { op_iss: upstream.devOp.issuer, op_sub: USERS.alice.sub, uid: "mallory" });
      expect(await refusal(token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord: forged, subjectReceipt: await receipt(at.subjectRead, forged) }))).to.deep.equal({
        code: Code.Unauthenticated, message: "the subject record is not valid: its key (kid) is not a known record key",
      });
    });
  });

  describe("GrantReleaseRead and CreateRelease: a release of what the user consented to, reserved", function () {
    it("honest: a release and its reservation, each create at its own hash; the release's carries the Error Token's jti", async function () {
      const login = await returning(USERS.bob, { app: "b" });
      const again = await token.grantReleaseRead({ sessionToken: login.user.sessionToken });
      expect(again.releaseRead).to.include({ hash: login.user.releaseRead!.hash, kind: RecordKind.RELEASE, operation: RecordOperation.READ });
      expect(grantOf(again.releaseRead).jti).to.not.equal(grantOf(login.user.releaseRead).jti);
      const errorToken = await absent(again.releaseRead);
      const made = await token.createRelease({
        sessionToken: again.sessionToken, errorToken, walletRecord: login.walletRecord, walletReceipt: login.walletReceipt,
        consentedClaims: ["email", "name", "email"],
      });
      const uid = record("wallet", login.walletRecord).uid;
      const release = record("release", made.release!.record);
      expect(release).to.deep.include({ uid, client_id: "app-b", claims: ["email", "name"], reserved: true });
      expect(release.directed_id).to.match(/^[\w-]{22}$/).and.not.equal(uid);
      expect(made.release!.grant).to.include({ hash: releaseHash(lookupKey, uid, "app-b"), kind: RecordKind.RELEASE, operation: RecordOperation.CREATE });
      expect(grantOf(made.release!.grant)).to.include({ digest: sha256(made.release!.record), ejti: decodeJwt(errorToken).jti });
      expect(record("reservation", made.reservation!.record)).to.include({ client_id: "app-b", directed_id: release.directed_id, uid });
      expect(made.reservation!.grant).to.include({ hash: reservationHash(lookupKey, "app-b", release.directed_id), kind: RecordKind.RESERVATION, operation: RecordOperation.CREATE });
      expect(grantOf(made.reservation!.grant)).to.include({ digest: sha256(made.reservation!.record) }).and.not.have.property("ejti");
      expect(session(made.sessionToken)).to.include({ wallet_digest: sha256(login.walletRecord), release_create: grantOf(made.release!.grant).jti });
      // The wallet unchanged, with an update bound to the version read: the release lands with it or not at all.
      const { iat: _a, ...rewritten } = record("wallet", made.wallet!.record);
      const { iat: _b, ...held } = record("wallet", login.walletRecord);
      expect(rewritten).to.deep.equal(held);
      expect(grantOf(made.wallet!.grant)).to.include({ op: "update", kind: "wallet", hash: walletHash(lookupKey, uid), version: 1, digest: sha256(made.wallet!.record) });
    });

    it("a new user's CreateRelease binds the wallet's rewrite to version 1, the version CommitUser's receipt showed it created at", async function () {
      const made = await newUser(USERS.carol);
      const uid = record("wallet", made.made.wallet!.record).uid;
      const again = await token.grantReleaseRead({ sessionToken: made.committed });
      const res = await token.createRelease({
        sessionToken: again.sessionToken, errorToken: await absent(again.releaseRead), walletRecord: made.made.wallet!.record, walletReceipt: "", consentedClaims: ["email"],
      });
      expect(grantOf(res.wallet!.grant)).to.include({ op: "update", kind: "wallet", hash: walletHash(lookupKey, uid), version: 1 });
    });

    it("checkAbsence: the Error Token of an earlier read (GrantReleaseRead replaced it), of another session, or of the subject is PERMISSION_DENIED", async function () {
      const login = await returning(USERS.bob, { app: "b" });
      const other = await returning(USERS.bob, { app: "b" });
      const again = await token.grantReleaseRead({ sessionToken: login.user.sessionToken });
      const create = (errorToken: string) => token.createRelease({
        sessionToken: again.sessionToken, errorToken, walletRecord: login.walletRecord, walletReceipt: login.walletReceipt, consentedClaims: ["email"],
      });
      for (const errorToken of [await absent(login.user.releaseRead), await absent(other.user.releaseRead), await absent(login.subjectRead)]) {
        expect(await refusal(create(errorToken))).to.deep.equal({ code: Code.PermissionDenied, message: "the error token does not answer this session's release read" });
      }
      await create(await absent(again.releaseRead));
    });

    it("checkConsent: a claim the app did not ask for, or the wallet does not hold, or that only every object has, is PERMISSION_DENIED", async function () {
      const claimsRequest = JSON.stringify({ id_token: { picture: null, constructor: null, toString: null, __proto__: null } });
      const login = await returning(USERS.bob, { app: "b", over: { scope: "openid email", claims: claimsRequest } });
      const withAbsence = async (consentedClaims: string[]) => token.createRelease({
        sessionToken: login.user.sessionToken, errorToken: await absent(login.user.releaseRead), walletRecord: login.walletRecord,
        walletReceipt: login.walletReceipt, consentedClaims,
      });
      expect(await refusal(withAbsence(["email", "name"]))).to.deep.equal({ code: Code.PermissionDenied, message: 'the app did not ask for the claim "name"' });
      // Bob's provider says no picture: asked for, and not in his wallet.
      expect(await refusal(withAbsence(["picture"]))).to.deep.equal({ code: Code.PermissionDenied, message: 'the user\'s wallet holds no "picture" claim' });
      for (const name of ["constructor", "toString"]) {
        expect(await refusal(withAbsence(["email", name]))).to.deep.equal({ code: Code.PermissionDenied, message: `the user's wallet holds no "${name}" claim` });
      }
      expect(await refusal(withAbsence(["__proto__"]))).to.deep.equal({ code: Code.PermissionDenied, message: 'the app did not ask for the claim "__proto__"' });
      const made = await withAbsence(["email", "email_verified"]);
      expect(record("release", made.release!.record).claims).to.deep.equal(["email", "email_verified"]);
    });

    it("checkStored and checkWallet: another user's wallet, with its own receipt or with Storage's word for this session's read, is PERMISSION_DENIED", async function () {
      const bob = await returning(USERS.bob, { app: "b" });
      const alice = await returning(USERS.alice, { app: "b" });
      const create = async (walletRecord: string, walletReceipt: string) => token.createRelease({
        sessionToken: bob.user.sessionToken, errorToken: await absent(bob.user.releaseRead), walletRecord, walletReceipt, consentedClaims: ["email"],
      });
      expect(await refusal(create(alice.walletRecord, alice.walletReceipt))).to.deep.equal({
        code: Code.PermissionDenied, message: "the wallet receipt does not show this wallet record stored for this session",
      });
      // A rogue Storage's receipt for Alice's wallet at Bob's wallet hash, answering Bob's read.
      const rogue = await receipt(bob.user.walletRead, alice.walletRecord);
      expect(await refusal(create(alice.walletRecord, rogue))).to.deep.equal({ code: Code.PermissionDenied, message: "the wallet record is not this session's user's" });
      await create(bob.walletRecord, bob.walletReceipt);
    });

    it("checkHeld: a new user's wallet is the one the session made, by digest, with no receipt (twin: another wallet is refused)", async function () {
      const at = await atSubject(USERS.carol);
      const made = await token.createUser({ sessionToken: at.sessionToken, errorToken: await absent(at.subjectRead) });
      const walletReceipt = await store(made.wallet);
      const committed = await token.commitUser({ sessionToken: made.sessionToken, walletReceipt, subjectReceipt: await store(made.subject) });
      const again = await token.grantReleaseRead({ sessionToken: committed.sessionToken });
      const create = async (walletRecord: string) => token.createRelease({
        sessionToken: again.sessionToken, errorToken: await absent(again.releaseRead), walletRecord, walletReceipt: "", consentedClaims: ["email"],
      });
      const bobsWallet = rows.get(walletHash(lookupKey, record("subject", rows.get(subjectHash(lookupKey, upstream.devOp.issuer, USERS.bob.sub))!).uid))!;
      expect(await refusal(create(bobsWallet))).to.deep.equal({ code: Code.PermissionDenied, message: "the wallet record is not the one this session holds" });
      await create(made.wallet!.record);
    });
  });

  describe("UpdateRelease: prompt=consent changes what the app receives (OIDC Core §3.1.2.1)", function () {
    /** Alice's release at app-b (email only), then a prompt=consent login there at step "user", with the release as read. */
    async function reconsenting(over: Parameters<typeof atSubject>[1] = {}) {
      const first = await released(USERS.alice, ["email"], { app: "b" });
      const login = await returning(USERS.alice, { app: "b", ...over });
      const releaseRecord = rows.get(login.user.releaseRead!.hash)!;
      const releaseReceipt = await receipt(login.user.releaseRead, releaseRecord);
      const update = (claims: string[], bent: Partial<{ releaseRecord: string; releaseReceipt: string; walletReceipt: string; sessionToken: string }> = {}) => token.updateRelease({
        sessionToken: login.user.sessionToken, releaseRecord, releaseReceipt, walletRecord: login.walletRecord, walletReceipt: login.walletReceipt, claims, ...bent,
      });
      return { first, login, releaseRecord, releaseReceipt, update };
    }

    it("honest: the release with the claims chosen (one added, asked for and held), the same directed id, and the wallet unchanged, each at the version read; MintIdToken takes it by the update's receipt", async function () {
      const { login, releaseRecord, update } = await reconsenting();
      const res = await update(["email", "name"]);
      const before = record("release", releaseRecord);
      const { iat: _a, ...changed } = record("release", res.release!.record);
      const { iat: _b, ...held } = before;
      expect(changed).to.deep.equal({ ...held, claims: ["email", "name"] });
      expect(grantOf(res.release!.grant)).to.include({ op: "update", kind: "release", hash: login.user.releaseRead!.hash, version: 1, digest: sha256(res.release!.record) });
      const { iat: _c, ...rewritten } = record("wallet", res.wallet!.record);
      const { iat: _d, ...wallet } = record("wallet", login.walletRecord);
      expect(rewritten).to.deep.equal(wallet);
      expect(grantOf(res.wallet!.grant)).to.include({ op: "update", kind: "wallet", version: 1 });
      const updateReceipt = await receipt(res.release!.grant, res.release!.record);
      const minted = await token.mintIdToken({
        sessionToken: res.sessionToken, subjectRecord: login.subjectRecord, walletRecord: login.walletRecord, walletReceipt: "",
        releaseRecord: res.release!.record, releaseReceipt: updateReceipt,
      });
      expect(decodeJwt(minted.idToken)).to.include({ sub: before.directed_id, email: USERS.alice.email, name: USERS.alice.name });
      // The release as it was is no longer what this session mints from.
      expect(await refusal(token.mintIdToken({
        sessionToken: res.sessionToken, subjectRecord: login.subjectRecord, walletRecord: login.walletRecord, walletReceipt: "",
        releaseRecord, releaseReceipt: await receipt(login.user.releaseRead, releaseRecord),
      }))).to.have.property("code", Code.PermissionDenied);
    });

    it("checkConsent for what is added (asked for, held), an unchanged set, another session's release read, and a login's step are refused", async function () {
      const narrow = await reconsenting({ over: { scope: "openid email" } });
      expect(await refusal(narrow.update(["email", "name"]))).to.deep.equal({ code: Code.PermissionDenied, message: 'the app did not ask for the claim "name"' });
      expect(await refusal(narrow.update(["email", "phone_number"]))).to.deep.equal({ code: Code.PermissionDenied, message: 'the app did not ask for the claim "phone_number"' });
      // Withdrawing needs nothing asked for: the app may receive less.
      await narrow.update([]);
      const { login, releaseRecord, update } = await reconsenting();
      expect(await refusal(update(["email"]))).to.deep.equal({ code: Code.InvalidArgument, message: "claims are the release's already: nothing to update (MintIdToken takes the release as read)" });
      const other = await returning(USERS.alice, { app: "b" });
      expect(await refusal(update(["email", "name"], { releaseReceipt: await receipt(other.user.releaseRead, releaseRecord) }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the release receipt does not show this release record stored for this session",
      });
      expect(await refusal(update(["email", "name"], { walletReceipt: await receipt(other.user.walletRead, login.walletRecord) }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the wallet receipt does not show this wallet record stored for this session",
      });
      expect((await refusal(update(["email", "name"], { sessionToken: login.sessionToken }))).code).to.equal(Code.FailedPrecondition);
    });
  });

  describe("ReserveDirectedId: a release made before reservations gets its id reserved for its user", function () {
    /** A release as the previous version of Token signed it: no `reserved` mark. */
    async function legacyRelease(user: DevUser, app: "a" | "b") {
      const uid = record("subject", rows.get(subjectHash(lookupKey, upstream.devOp.issuer, user.sub))!).uid;
      const jws = await sign(RECORD_TYPES.release, activeKey(keys, "record"), { uid, client_id: APPS[app].client_id, directed_id: `legacy-${user.sub}`, claims: ["email"] });
      rows.set(releaseHash(lookupKey, uid, APPS[app].client_id), jws);
      return jws;
    }

    it("honest: a reservation of exactly that id for this user, and a read of it; the session then holds the release", async function () {
      const releaseRecord = await legacyRelease(USERS.alice, "a");
      const login = await returning(USERS.alice, { app: "a" });
      const res = await token.reserveDirectedId({ sessionToken: login.user.sessionToken, releaseRecord, releaseReceipt: await receipt(login.user.releaseRead, releaseRecord) });
      const key = reservationHash(lookupKey, "app-a", `legacy-${USERS.alice.sub}`);
      expect(record("reservation", res.reservation!.record)).to.include({ client_id: "app-a", directed_id: `legacy-${USERS.alice.sub}`, uid: session(login.user.sessionToken).uid });
      expect(res.reservation!.grant).to.include({ hash: key, kind: RecordKind.RESERVATION, operation: RecordOperation.CREATE });
      expect(grantOf(res.reservation!.grant)).to.include({ digest: sha256(res.reservation!.record) });
      expect(res.reservationRead).to.include({ hash: key, kind: RecordKind.RESERVATION, operation: RecordOperation.READ });
      expect(session(res.sessionToken).release_digest).to.equal(sha256(releaseRecord));
      // and MintIdToken then takes the release as held, with no receipt
      const minted = await token.mintIdToken({
        sessionToken: res.sessionToken, subjectRecord: login.subjectRecord, walletRecord: login.walletRecord, walletReceipt: login.walletReceipt, releaseRecord, releaseReceipt: "",
      });
      expect(decodeJwt(minted.idToken).sub).to.equal(`legacy-${USERS.alice.sub}`);
    });

    it("another user's release, with its own receipt or with Storage's word for this session's read, is refused; no receipt is INVALID_ARGUMENT", async function () {
      const bobs = await legacyRelease(USERS.bob, "a");
      const login = await returning(USERS.alice, { app: "a" });
      const reserve = (releaseRecord: string, releaseReceipt: string) => token.reserveDirectedId({ sessionToken: login.user.sessionToken, releaseRecord, releaseReceipt });
      const bob = await returning(USERS.bob, { app: "a" });
      expect(await refusal(reserve(bobs, await receipt(bob.user.releaseRead, bobs)))).to.deep.equal({
        code: Code.PermissionDenied, message: "the release receipt does not show this release record stored for this session",
      });
      expect(await refusal(reserve(bobs, await receipt(login.user.releaseRead, bobs)))).to.deep.equal({
        code: Code.PermissionDenied, message: "the release record is not this session's user and client",
      });
      expect(await refusal(reserve(bobs, ""))).to.deep.equal({
        code: Code.InvalidArgument, message: "the release receipt is required: Storage's receipt for this session's release read",
      });
    });
  });

  describe("MintIdToken: this session's stored records, this user's and this app's, then the app's answers", function () {
    const idKey = (alg: SigningAlg, purpose: KeyPurpose = "id-token") => activeKey(keys, purpose, alg);

    it("honest: the ID Token and userinfo answers say exactly the directed id, the released claims and the provider's auth_time", async function () {
      const login = await released(USERS.alice, ["email", "name"], { app: "b", over: { prompt: "login" }, prompt: "login" });
      const minted = await token.mintIdToken(login.mint);
      const t = Math.floor(clock.now().getTime() / 1000);
      const release = record("release", login.mint.releaseRecord);
      const nonce = session(login.started.sessionToken).nonce;
      expect(decodeProtectedHeader(minted.idToken)).to.deep.equal({ alg: "ES256", kid: idKey("ES256").kid, typ: "JWT" });
      const { payload } = await jwtVerify(minted.idToken, createPublicKey(idKey("ES256").privateKey), { issuer: ISSUER, audience: "app-b", currentDate: clock.now() });
      expect(payload).to.deep.equal({
        email: USERS.alice.email, name: USERS.alice.name, nonce, auth_time: login.upstream.claims.auth_time,
        iss: ISSUER, sub: release.directed_id, aud: "app-b", iat: t, exp: t + 600,
      });
      expect(decodeProtectedHeader(minted.userinfoJwt)).to.deep.equal({ alg: "ES256", kid: idKey("ES256", "userinfo").kid, typ: "userinfo+jwt" });
      expect(decodeJwt(minted.userinfoJwt)).to.deep.equal({ sub: release.directed_id, email: USERS.alice.email, name: USERS.alice.name, iss: ISSUER, aud: "app-b", iat: t, exp: t + 660 });
      expect(JSON.parse(minted.userinfoJson)).to.deep.equal({ sub: release.directed_id, email: USERS.alice.email, name: USERS.alice.name });
    });

    it("the directed id is per app, and no auth_time appears when the provider sent none", async function () {
      const atA = await released(USERS.bob, ["email"], { app: "a" });
      const atB = await released(USERS.bob, ["email"], { app: "b" });
      const [a, b] = [decodeJwt((await token.mintIdToken(atA.mint)).idToken), decodeJwt((await token.mintIdToken(atB.mint)).idToken)];
      expect(a.sub).to.not.equal(b.sub);
      expect(a).to.not.have.property("auth_time");
      expect(decodeProtectedHeader((await token.mintIdToken(atA.mint)).idToken)).to.include({ alg: "RS256", kid: idKey("RS256").kid });
    });

    it("refusals: a subject not held, another user's wallet or release, no release receipt, a forged wallet", async function () {
      const alice = await released(USERS.alice, ["email"], { app: "a" });
      const bob = await released(USERS.bob, ["email"], { app: "a" });
      const mint = (over: Partial<typeof alice.mint>) => token.mintIdToken({ ...alice.mint, ...over });
      expect(await refusal(mint({ subjectRecord: bob.mint.subjectRecord }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the subject record is not the one this session holds",
      });
      // the wallet and release the session holds are by digest: another is refused whatever receipt comes with it
      expect(await refusal(mint({ walletRecord: bob.mint.walletRecord, walletReceipt: bob.walletReceipt }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the wallet record is not the one this session holds",
      });
      expect(await refusal(mint({ releaseRecord: bob.mint.releaseRecord, releaseReceipt: bob.mint.releaseReceipt }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the release receipt does not show this release record stored for this session",
      });
      expect(await refusal(mint({ releaseReceipt: "" }))).to.deep.equal({
        code: Code.InvalidArgument, message: "the release receipt is required: Storage's receipt for this session's release read",
      });
      const own = generateSigningKey("record");
      const forged = await sign(RECORD_TYPES.wallet, own, { uid: record("wallet", alice.mint.walletRecord).uid, claims: { email: "ceo@bank.example" }, subjects: [] });
      expect(await refusal(mint({ walletRecord: forged }))).to.deep.equal({
        code: Code.Unauthenticated, message: "the wallet record is not valid: its key (kid) is not a known record key",
      });
      await mint({});
    });

    it("checkRelease and checkWallet: another user's records are refused even with Storage's word that they answer this session's reads", async function () {
      const bob = await released(USERS.bob, ["email"], { app: "b" });
      const alice = await returning(USERS.alice, { app: "b" });
      const aliceRelease = rows.get(releaseHash(lookupKey, record("subject", alice.subjectRecord).uid, "app-b"))!;
      const mint = async (over: object) => token.mintIdToken({
        sessionToken: bob.user.sessionToken, subjectRecord: bob.subjectRecord, walletRecord: bob.walletRecord, walletReceipt: bob.walletReceipt,
        releaseRecord: bob.mint.releaseRecord, releaseReceipt: await receipt(bob.user.releaseRead, bob.mint.releaseRecord), ...over,
      });
      expect(await refusal(mint({ releaseRecord: aliceRelease, releaseReceipt: await receipt(bob.user.releaseRead, aliceRelease) }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the release record is not this session's user and client",
      });
      expect(await refusal(mint({ walletRecord: alice.walletRecord, walletReceipt: await receipt(bob.user.walletRead, alice.walletRecord) }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the wallet record is not this session's user's",
      });
      await mint({});
    });

    it("checkStillRegistered: an app removed from Token's registry during the login gets no ID Token", async function () {
      const login = await released(USERS.alice, ["email"], { app: "a" });
      const afterRemoval = tokenInMemory(deps({ clients: clients.filter((c) => c.client_id !== "app-a") }));
      expect(await refusal(afterRemoval.mintIdToken(login.mint))).to.deep.equal({ code: Code.PermissionDenied, message: "the session's client is no longer registered" });
    });
  });

  describe("CreateAccountSession: the account page's sign-in, a forced fresh login (docs/transactions.md)", function () {
    it("honest: an account session with no app, bound to the provider, a fresh upstream nonce and a fresh login", async function () {
      const res = await startAccount();
      expect(res.providerIssuer).to.equal(upstream.devOp.issuer);
      expect(res.upstreamNonce).to.match(/^[\w-]{22}$/);
      const claims = session(res.sessionToken);
      expect(claims).to.include({
        step: "started", purpose: "account", prompt_login: true, max_age: 0, provider: "dev", provider_iss: upstream.devOp.issuer,
        upstream_nonce: res.upstreamNonce, started: clock.now().getTime(),
      });
      for (const login of ["client_id", "redirect_uri", "nonce", "scope", "code_challenge"]) expect(claims).to.not.have.property(login);
    });

    it("checkProvider: a provider Token does not allow is refused as for a login", async function () {
      const forLogin = await refusal(token.createSession({ request: { case: "parameters", value: params("a") }, providerId: "evil" }));
      expect(forLogin.code).to.equal(Code.InvalidArgument);
      expect(await refusal(startAccount("evil"))).to.deep.equal(forLogin);
    });

    it("honest: a returning user's account session reads the wallet and the user's release at each registered app, and no app's own", async function () {
      const account = await accountUser(USERS.alice);
      const uid = record("subject", account.subjectRecord).uid;
      expect(grantOf(account.authorized.walletRead)).to.include({ op: "read", kind: "wallet", hash: walletHash(lookupKey, uid) });
      expect(account.authorized.releaseRead, "an account session has no app").to.equal(undefined);
      expect(account.authorized.accountReleaseReads.map((g) => ({ op: grantOf(g).op, kind: grantOf(g).kind, hash: grantOf(g).hash }))).to.deep.equal(
        clients.map((c) => ({ op: "read", kind: "release", hash: releaseHash(lookupKey, uid, c.client_id) })),
      );
      expect(session(account.authorized.sessionToken)).to.include({ step: "user", purpose: "account", uid });
    });

    it("checkFreshness: a login the provider did not force (no auth_time) is login required", async function () {
      const started = await startAccount();
      const up = await upstream.login(USERS.alice, started.upstreamNonce);
      expect(up.claims.auth_time, "the provider said no auth_time").to.equal(undefined);
      expect(await refusal(token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: up.idToken }))).to.deep.equal({
        code: Code.PermissionDenied,
        message: "login required: the provider did not say when the user authenticated (auth_time), and an account session needs a fresh login",
      });
    });

    it("checkFreshness: an authentication from before the account session began is login required", async function () {
      const started = await clock.ahead(45_000, () => startAccount());
      const up = await upstream.login(USERS.alice, started.upstreamNonce, { prompt: "login" });
      expect(await refusal(token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: up.idToken }))).to.deep.equal({
        code: Code.PermissionDenied, message: "login required: the user did not authenticate at the provider after this account session began",
      });
    });

    it("checkFreshness: an authentication presented 45 s after it happened is not fresh (max_age=0, within the OP ID Token's minute)", async function () {
      const started = await startAccount();
      const up = await upstream.login(USERS.alice, started.upstreamNonce, { prompt: "login" });
      expect(await clock.ahead(45_000, () => refusal(token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: up.idToken })))).to.deep.equal({
        code: Code.PermissionDenied, message: "login required: the user did not authenticate at the provider just now, as an account session needs",
      });
    });

    it("checkOpIdToken: a fresh OP ID Token from a login (bound to that login's nonce) does not open an account session", async function () {
      const login = await start("a", { prompt: "login" });
      const up = await upstream.login(USERS.alice, login.upstreamNonce, { prompt: "login" });
      const account = await startAccount();
      const refused = await refusal(token.authorizeSubject({ sessionToken: account.sessionToken, opIdToken: up.idToken }));
      expect(refused.code).to.equal(Code.Unauthenticated);
      expect(refused.message).to.match(/nonce/);
    });

    it("an account session makes no user and answers no app: every step of a login refuses it", async function () {
      // Storage's "no record" for the account session's subject read still makes no user.
      const unknown = await accountAtSubject(USERS.carol);
      expect(await refusal(token.createUser({ sessionToken: unknown.sessionToken, errorToken: await absent(unknown.subjectRead) }))).to.deep.equal({
        code: Code.FailedPrecondition, message: "this step is a login's, and this is an account session",
      });
      const account = await accountUser(USERS.alice);
      const walletRecord = rows.get(account.authorized.walletRead!.hash)!;
      const walletReceipt = await receipt(account.authorized.walletRead, walletRecord);
      const at = account.authorized.sessionToken;
      const calls = {
        grantReleaseRead: token.grantReleaseRead({ sessionToken: at }),
        createRelease: token.createRelease({ sessionToken: at, errorToken: "x", walletRecord, walletReceipt, consentedClaims: ["email"] }),
        reserveDirectedId: token.reserveDirectedId({ sessionToken: at, releaseRecord: "x", releaseReceipt: "x" }),
        mintIdToken: token.mintIdToken({ sessionToken: at, subjectRecord: account.subjectRecord, walletRecord, walletReceipt, releaseRecord: "x", releaseReceipt: "x" }),
      };
      for (const [name, call] of Object.entries(calls)) {
        expect(await refusal(call), name).to.deep.equal({ code: Code.FailedPrecondition, message: "this step is a login's, and this is an account session" });
      }
    });

    it("a session whose purpose Token never signs is no session: refused at every step", async function () {
      // Signed with Token's own session key, as a later release's or a bug's might be.
      const { iss: _iss, aud: _aud, iat: _iat, exp: _exp, jti: _jti, ...claims } = session((await startAccount()).sessionToken);
      const forged = await sign(SESSION_TOKEN, activeKey(keys, "session"), { ...claims, purpose: "admin" }, { now: clock.now() });
      expect(await refusal(token.authorizeSubject({ sessionToken: forged, opIdToken: "x" }))).to.deep.equal({
        code: Code.FailedPrecondition, message: "the session has an unknown purpose",
      });
    });
  });

  describe("BeginTransaction and the delete: a transaction's own fresh login, and every record of the wallet (docs/transactions.md)", function () {
    const begin = (accountSessionToken: string, kind = TransactionKind.DELETE, providerId = "dev") =>
      token.beginTransaction({ accountSessionToken, kind, providerId });
    type Answer = Pick<ReleaseAnswer, "clientId" | "answer">;

    /** A delete of `user`'s wallet at step "subject": begun from an account session, with `confirmer`'s forced fresh login. */
    async function deleteAtSubject(user: DevUser, confirmer = user) {
      const account = await accountUser(user);
      const tx = await begin(account.authorized.sessionToken);
      const up = await upstream.login(confirmer, tx.upstreamNonce, { prompt: "login" });
      const authorized = await token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: up.idToken });
      return { account, tx, upstream: up, sessionToken: authorized.sessionToken, subjectRead: authorized.subjectRead! };
    }

    /** The same at step "user", with the wallet and every app's release answered as Storage would (the row it holds, or "no record"). */
    async function deleteAtUser(user: DevUser) {
      const at = await deleteAtSubject(user);
      const subjectRecord = rows.get(at.subjectRead.hash)!;
      const authorized = await token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord, subjectReceipt: await receipt(at.subjectRead, subjectRecord) });
      const walletRecord = rows.get(authorized.walletRead!.hash)!;
      const releases: Answer[] = await Promise.all(authorized.accountReleaseReads.map(async (read, i) => {
        const stored = rows.get(read.hash);
        return {
          clientId: clients[i]!.client_id,
          answer: stored
            ? { case: "release" as const, value: { record: stored, receipt: await receipt(read, stored) } as never }
            : { case: "errorToken" as const, value: await absent(read) },
        };
      }));
      const held = rows.get(authorized.holdingsRead!.hash);
      const holdings = {
        answer: held
          ? { case: "record" as const, value: { record: held, receipt: await receipt(authorized.holdingsRead, held) } }
          : { case: "errorToken" as const, value: await absent(authorized.holdingsRead) },
      } as RecordAnswer;
      const request = { sessionToken: authorized.sessionToken, walletRecord, walletReceipt: await receipt(authorized.walletRead, walletRecord), releases: releases as ReleaseAnswer[], holdings };
      return { ...at, authorized, uid: record("subject", subjectRecord).uid, request };
    }

    /** Credential holdings for `user`, as Token signs them: two sessions at two issuers, three instances. */
    async function holdingsOf(user: DevUser) {
      const uid = record("subject", rows.get(subjectHash(lookupKey, upstream.devOp.issuer, user.sub))!).uid;
      const holdings = { uid, sessions: [
        { issuer: "https://issuer-1.test", session_id: `s1-${user.sub}`, instances: ["i1", "i2"] },
        { issuer: "https://issuer-2.test", session_id: `s2-${user.sub}`, instances: ["i3"] },
        { issuer: "https://issuer-2.test", session_id: `s3-${user.sub}` },
      ] };
      rows.set(holdingsHash(lookupKey, uid), await sign(RECORD_TYPES.holdings, activeKey(keys, "record"), holdings));
      return holdings;
    }

    it("honest: a delete session for the account session's user, bound to the provider, a nonce of its own and a fresh login", async function () {
      const account = await accountUser(USERS.alice);
      const res = await begin(account.authorized.sessionToken);
      expect(res.providerIssuer).to.equal(upstream.devOp.issuer);
      expect(res.upstreamNonce).to.match(/^[\w-]{22}$/).and.not.equal(account.started.upstreamNonce);
      expect(session(res.sessionToken)).to.include({
        step: "started", purpose: "delete", uid: session(account.authorized.sessionToken).uid, prompt_login: true, max_age: 0, provider: "dev",
        upstream_nonce: res.upstreamNonce, started: clock.now().getTime(),
      });
    });

    it("a transaction begins only from an account session at step \"user\", and names a kind", async function () {
      const account = await accountAtSubject(USERS.alice);
      expect(await refusal(begin(account.sessionToken))).to.deep.equal({ code: Code.FailedPrecondition, message: 'this step needs a session at step "user", not "subject"' });
      const login = await returning(USERS.alice);
      expect(await refusal(begin(login.user.sessionToken))).to.deep.equal({
        code: Code.FailedPrecondition, message: "a transaction begins from an account session, or a completed recovery, and this is a login session",
      });
      const ready = await accountUser(USERS.alice);
      expect(await refusal(begin(ready.authorized.sessionToken, TransactionKind.UNSPECIFIED))).to.deep.equal({
        code: Code.InvalidArgument, message: "kind must name a transaction (TRANSACTION_KIND_DELETE, _LINK, _UNLINK, _CLAIMS, _RELEASE, _MERGE or _RECOVERY_THRESHOLD)",
      });
      expect((await refusal(begin(ready.authorized.sessionToken, TransactionKind.DELETE, "evil"))).code).to.equal(Code.InvalidArgument);
    });

    describe("fresh authentication bound to the transaction: Token refuses every OP ID Token but the transaction's own", function () {
      it("the account session's own OP ID Token (fresh, but bound to the account session's nonce)", async function () {
        const account = await accountUser(USERS.alice);
        const tx = await begin(account.authorized.sessionToken);
        const refused = await refusal(token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: account.upstream.idToken }));
        expect(refused.code).to.equal(Code.Unauthenticated);
        expect(refused.message).to.match(/nonce/);
      });

      it("a replayed token: another delete's own, presented again to a new delete", async function () {
        const first = await deleteAtSubject(USERS.alice);
        const account = await accountUser(USERS.alice);
        const second = await begin(account.authorized.sessionToken);
        const refused = await refusal(token.authorizeSubject({ sessionToken: second.sessionToken, opIdToken: first.upstream.idToken }));
        expect(refused.code).to.equal(Code.Unauthenticated);
        expect(refused.message).to.match(/nonce/);
      });

      it("every transaction alike (link, unlink, claims, release change, merge, threshold, delete): another transaction's token, an ordinary login's, and one the provider did not force are refused; its own is taken", async function () {
        const kinds: Array<[string, TransactionKind, Partial<{ unlink: { iss: string; sub: string }; clientId: string; threshold: number }>]> = [
          ["link", TransactionKind.LINK, {}],
          ["unlink", TransactionKind.UNLINK, { unlink: { iss: upstream.devOp.issuer, sub: USERS.alice.sub } }],
          ["claims", TransactionKind.CLAIMS, {}],
          ["release change", TransactionKind.RELEASE, { clientId: "app-a" }],
          ["merge", TransactionKind.MERGE, {}],
          ["threshold", TransactionKind.RECOVERY_THRESHOLD, { threshold: 2 }],
          ["delete", TransactionKind.DELETE, {}],
        ];
        const account = await accountUser(USERS.alice);
        const other = await begin(account.authorized.sessionToken);
        const othersToken = (await upstream.login(USERS.alice, other.upstreamNonce, { prompt: "login" })).idToken;
        const login = await start("a", { prompt: "login" });
        const ordinary = (await upstream.login(USERS.alice, login.upstreamNonce, { prompt: "login" })).idToken;
        for (const [what, kind, target] of kinds) {
          const tx = await token.beginTransaction({ accountSessionToken: account.authorized.sessionToken, kind, providerId: "dev", ...target });
          for (const [which, opIdToken] of [["another transaction's", othersToken], ["an ordinary login's", ordinary]] as const) {
            expect((await refusal(token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken }))).code, `${what}: ${which}`).to.equal(Code.Unauthenticated);
          }
          const unforced = (await upstream.login(USERS.alice, tx.upstreamNonce)).idToken;
          expect(await refusal(token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: unforced })), `${what}: not forced`).to.deep.equal({
            code: Code.PermissionDenied, message: "login required: the provider did not say when the user authenticated (auth_time), and a transaction needs a fresh login",
          });
          const own = (await upstream.login(USERS.alice, tx.upstreamNonce, { prompt: "login" })).idToken;
          expect((await token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: own })).subjectRead, `${what}: its own`).to.not.equal(undefined);
        }
      });

      it("a token from an ordinary login, fresh or not", async function () {
        const account = await accountUser(USERS.alice);
        const tx = await begin(account.authorized.sessionToken);
        const login = await start("a", { prompt: "login" });
        const up = await upstream.login(USERS.alice, login.upstreamNonce, { prompt: "login" });
        expect((await refusal(token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: up.idToken }))).code).to.equal(Code.Unauthenticated);
      });

      it("a login the provider did not force (no auth_time), with the transaction's own nonce", async function () {
        const account = await accountUser(USERS.alice);
        const tx = await begin(account.authorized.sessionToken);
        const up = await upstream.login(USERS.alice, tx.upstreamNonce);
        expect(await refusal(token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: up.idToken }))).to.deep.equal({
          code: Code.PermissionDenied, message: "login required: the provider did not say when the user authenticated (auth_time), and a transaction needs a fresh login",
        });
      });

      it("an authentication from before the transaction began (the account session's sign-in, say)", async function () {
        const account = await accountUser(USERS.alice);
        const tx = await clock.ahead(45_000, () => begin(account.authorized.sessionToken));
        const up = await upstream.login(USERS.alice, tx.upstreamNonce, { prompt: "login" });
        expect(await refusal(token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: up.idToken }))).to.deep.equal({
          code: Code.PermissionDenied, message: "login required: the user did not authenticate at the provider after this transaction began",
        });
      });

      it("a fresh sign-in at an account of another wallet confirms nothing (AuthorizeUser)", async function () {
        const at = await deleteAtSubject(USERS.alice, USERS.bob);
        const subjectRecord = rows.get(at.subjectRead.hash)!;
        expect(await refusal(token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord, subjectReceipt: await receipt(at.subjectRead, subjectRecord) }))).to.deep.equal({
          code: Code.PermissionDenied,
          message: "the fresh sign-in is at an account linked to another wallet: a transaction is confirmed at a provider linked to this wallet",
        });
      });
    });

    it("honest: AuthorizeDelete mints the deletion record (its own typ, no claims) with an update bound to the version read", async function () {
      await released(USERS.alice, ["email"]); // a release at app "a", at least
      const del = await deleteAtUser(USERS.alice);
      const res = await token.authorizeDelete(del.request);
      const wallet = record("wallet", del.request.walletRecord);
      expect(decodeProtectedHeader(res.deletion!.record).typ).to.equal(WALLET_DELETION_RECORD.typ);
      const deletion = record("wallet", res.deletion!.record) as unknown as WalletDeletionRecord;
      expect(deletion).to.not.have.property("claims");
      expect(deletion.uid).to.equal(del.uid);
      expect(deletion.subjects).to.deep.equal(wallet.subjects);
      const stored = clients.flatMap((c) => {
        const release = rows.get(releaseHash(lookupKey, del.uid, c.client_id));
        return release ? [{ client_id: c.client_id, directed_id: record("release", release).directed_id }] : [];
      });
      expect(stored.length).to.be.greaterThan(0);
      expect(deletion.releases).to.deep.equal(stored);
      expect(grantOf(res.deletion!.grant)).to.include({ op: "update", kind: "wallet", hash: walletHash(lookupKey, del.uid), version: 1, digest: sha256(res.deletion!.record) });
    });

    describe("AuthorizeDelete refuses what would leave a record of the wallet behind, or is not this delete's", function () {
      it("a session of another purpose: an account session, a login", async function () {
        const account = await accountUser(USERS.alice);
        const del = await deleteAtUser(USERS.alice);
        expect(await refusal(token.authorizeDelete({ ...del.request, sessionToken: account.authorized.sessionToken }))).to.deep.equal({
          code: Code.FailedPrecondition, message: "this step is a delete session's, and this is an account session",
        });
        const login = await returning(USERS.alice);
        expect(await refusal(token.authorizeDelete({ ...del.request, sessionToken: login.user.sessionToken }))).to.deep.equal({
          code: Code.FailedPrecondition, message: "this step is a delete session's, and this is a login session",
        });
      });

      it("a release hidden, answered twice, or an app Token does not know", async function () {
        const del = await deleteAtUser(USERS.alice);
        const message = "releases must answer the release read of every registered app, each once";
        expect(await refusal(token.authorizeDelete({ ...del.request, releases: del.request.releases.slice(1) }))).to.deep.equal({ code: Code.InvalidArgument, message });
        expect(await refusal(token.authorizeDelete({ ...del.request, releases: [...del.request.releases, del.request.releases[0]!] }))).to.deep.equal({ code: Code.InvalidArgument, message });
        const stranger = { ...del.request.releases[0]!, clientId: "app-unknown" } as ReleaseAnswer;
        expect(await refusal(token.authorizeDelete({ ...del.request, releases: [...del.request.releases, stranger] }))).to.deep.equal({
          code: Code.InvalidArgument, message: "a release answer names an app that is not registered",
        });
      });

      it("Storage's answers to another session's reads: the account session's \"no record\", its wallet receipt", async function () {
        const del = await deleteAtUser(USERS.bob); // Bob has released to no app: every answer is "no record"
        const account = await accountUser(USERS.bob);
        const theirs = await Promise.all(account.authorized.accountReleaseReads.map(async (read, i) => ({
          clientId: clients[i]!.client_id, answer: { case: "errorToken" as const, value: await absent(read) },
        }))) as ReleaseAnswer[];
        expect(await refusal(token.authorizeDelete({ ...del.request, releases: theirs }))).to.deep.equal({
          code: Code.PermissionDenied, message: "the error token does not answer this session's release read",
        });
        const walletReceipt = await receipt(account.authorized.walletRead, del.request.walletRecord);
        expect(await refusal(token.authorizeDelete({ ...del.request, walletReceipt }))).to.deep.equal({
          code: Code.PermissionDenied, message: "the wallet receipt does not show this wallet record stored for this session",
        });
      });

      it("the credential holdings hidden, or answered with another read's answer", async function () {
        await holdingsOf(USERS.alice);
        const del = await deleteAtUser(USERS.alice);
        expect(await refusal(token.authorizeDelete({ ...del.request, holdings: undefined }))).to.deep.equal({
          code: Code.InvalidArgument, message: "the holdings read's answer is required: the record, or Storage's Error Token",
        });
        // "No holdings", from Bob's delete session's read (Bob holds none): not this session's read.
        const bobs = await deleteAtUser(USERS.bob);
        expect(await refusal(token.authorizeDelete({ ...del.request, holdings: bobs.request.holdings }))).to.deep.equal({
          code: Code.PermissionDenied, message: "the error token does not answer this session's holdings read",
        });
        // Alice's holdings, under Bob's delete session: not what his read answered.
        expect((await refusal(token.authorizeDelete({ ...bobs.request, holdings: del.request.holdings }))).code).to.equal(Code.PermissionDenied);
      });

      it("a second deletion record from one delete session", async function () {
        const del = await deleteAtUser(USERS.bob);
        const res = await token.authorizeDelete(del.request);
        expect(await refusal(token.authorizeDelete({ ...del.request, sessionToken: res.sessionToken }))).to.deep.equal({
          code: Code.FailedPrecondition, message: "this delete has minted its deletion record already: finish it",
        });
      });
    });

    describe("FinishDelete: the rest of the delete, from the deletion record as stored", function () {
      it("honest: tombstones naming no one, then the releases, the subjects and the wallet", async function () {
        await released(USERS.alice, ["email"]);
        const del = await deleteAtUser(USERS.alice);
        const res = await token.authorizeDelete(del.request);
        const deletion = record("wallet", res.deletion!.record) as unknown as WalletDeletionRecord;
        const finished = await token.finishDelete({ sessionToken: res.sessionToken, deletionRecord: res.deletion!.record, deletionReceipt: await receipt(res.deletion!.grant, res.deletion!.record) });
        expect(finished.releases.map((r) => r.clientId)).to.deep.equal(deletion.releases.map((r) => r.client_id));
        for (const [i, r] of finished.releases.entries()) {
          const { client_id, directed_id } = deletion.releases[i]!;
          const at = reservationHash(lookupKey, client_id, directed_id);
          expect(grantOf(r.reservationRead)).to.include({ op: "read", kind: "reservation", hash: at });
          expect(grantOf(r.tombstoneUpdate!.grant)).to.include({ op: "update", kind: "reservation", hash: at, digest: sha256(r.tombstoneUpdate!.record) });
          expect(grantOf(r.tombstoneUpdate!.grant)).to.not.have.property("version");
          expect(grantOf(r.tombstoneCreate!.grant)).to.include({ op: "create", kind: "reservation", hash: at, digest: sha256(r.tombstoneCreate!.record) });
          expect(r.tombstoneCreate!.record).to.equal(r.tombstoneUpdate!.record);
          const tombstone = record("reservation", r.tombstoneUpdate!.record);
          expect(tombstone).to.include({ client_id, directed_id }).and.not.have.property("uid");
          expect(grantOf(r.releaseDelete)).to.include({ op: "delete", kind: "release", hash: releaseHash(lookupKey, del.uid, client_id) });
        }
        expect(finished.subjectDeletes.map((g) => grantOf(g))).to.satisfy((gs: AccessClaims[]) => gs.every((g) => g.op === "delete" && g.kind === "subject"));
        expect(finished.subjectDeletes.map((g) => g.hash)).to.deep.equal(deletion.subjects.map((s) => subjectHash(lookupKey, s.iss, s.sub)));
        expect(grantOf(finished.walletDelete)).to.include({ op: "delete", kind: "wallet", hash: walletHash(lookupKey, del.uid) });
      });

      it("honest: the credential holdings go too, each credential instance's record, each S2S session's and the holdings, before the subjects", async function () {
        const holdings = await holdingsOf(USERS.alice);
        const del = await deleteAtUser(USERS.alice);
        const res = await token.authorizeDelete(del.request);
        const deletion = record("wallet", res.deletion!.record) as unknown as WalletDeletionRecord;
        expect(deletion.s2s_sessions).to.deep.equal(holdings.sessions.map((s) => ({ issuer: s.issuer, session_id: s.session_id })));
        expect(deletion.credentials).to.deep.equal([
          { issuer: "https://issuer-1.test", session_id: holdings.sessions[0]!.session_id, credential_instance_id: "i1" },
          { issuer: "https://issuer-1.test", session_id: holdings.sessions[0]!.session_id, credential_instance_id: "i2" },
          { issuer: "https://issuer-2.test", session_id: holdings.sessions[1]!.session_id, credential_instance_id: "i3" },
        ]);
        expect(deletion.holdings).to.equal(true);
        const finished = await token.finishDelete({ sessionToken: res.sessionToken, deletionRecord: res.deletion!.record, deletionReceipt: await receipt(res.deletion!.grant, res.deletion!.record) });
        expect(finished.credentialDeletes.map((g) => grantOf(g))).to.satisfy((gs: AccessClaims[]) => gs.every((g) => g.op === "delete" && g.kind === "credential"));
        expect(finished.credentialDeletes.map((g) => g.hash)).to.deep.equal(deletion.credentials!.map((c) => credentialHash(lookupKey, c.issuer, c.session_id, c.credential_instance_id)));
        expect(finished.s2sSessionDeletes.map((g) => grantOf(g).kind)).to.deep.equal(["s2s-session", "s2s-session", "s2s-session"]);
        expect(finished.s2sSessionDeletes.map((g) => g.hash)).to.deep.equal(deletion.s2s_sessions!.map((s) => s2sSessionHash(lookupKey, s.issuer, s.session_id)));
        expect(grantOf(finished.holdingsDelete)).to.include({ op: "delete", kind: "holdings", hash: holdingsHash(lookupKey, del.uid) });
      });

      it("honest: a user with no credential holdings: the deletion record says so, and no such grant is made", async function () {
        const del = await deleteAtUser(USERS.bob);
        const res = await token.authorizeDelete(del.request);
        const deletion = record("wallet", res.deletion!.record) as unknown as WalletDeletionRecord;
        expect(deletion).to.deep.include({ s2s_sessions: [], credentials: [], holdings: false });
        const finished = await token.finishDelete({ sessionToken: res.sessionToken, deletionRecord: res.deletion!.record, deletionReceipt: await receipt(res.deletion!.grant, res.deletion!.record) });
        expect(finished.credentialDeletes).to.deep.equal([]);
        expect(finished.s2sSessionDeletes).to.deep.equal([]);
        expect(finished.holdingsDelete).to.equal(undefined);
      });

      it("honest: any later sign-in that reads the deletion record where the wallet was finishes the delete", async function () {
        const del = await deleteAtUser(USERS.bob);
        const res = await token.authorizeDelete(del.request);
        const login = await returning(USERS.bob);
        // Storage holds the deletion record at the wallet's hash now; the login read it.
        const deletionReceipt = await receipt(login.user.walletRead, res.deletion!.record);
        const finished = await token.finishDelete({ sessionToken: login.user.sessionToken, deletionRecord: res.deletion!.record, deletionReceipt });
        expect(grantOf(finished.walletDelete)).to.include({ op: "delete", kind: "wallet", hash: walletHash(lookupKey, del.uid) });
      });

      it("refuses a wallet as a deletion record, a receipt of any other grant, and another user's deletion record", async function () {
        const del = await deleteAtUser(USERS.bob);
        const res = await token.authorizeDelete(del.request);
        const finish = (over: Partial<{ sessionToken: string; deletionRecord: string; deletionReceipt: string }>) =>
          refusal(token.finishDelete({ sessionToken: res.sessionToken, deletionRecord: res.deletion!.record, deletionReceipt: "", ...over }));
        // A plain wallet, even with a receipt of its own: never a deletion, so a login cannot be turned into a delete.
        const login = await returning(USERS.bob);
        const plain = await finish({ sessionToken: login.user.sessionToken, deletionRecord: login.walletRecord, deletionReceipt: login.walletReceipt });
        expect(plain.code).to.equal(Code.Unauthenticated);
        expect(plain.message).to.match(/typ/);
        // The delete session's read receipt of the wallet is no receipt of its update.
        expect(await finish({ deletionReceipt: await receipt(del.authorized.walletRead, res.deletion!.record) })).to.deep.equal({
          code: Code.PermissionDenied, message: "the wallet receipt does not show this wallet record stored for this session",
        });
        // Alice's login, shown Bob's deletion record (even with a receipt of her own wallet read for it): not her user's.
        const alice = await returning(USERS.alice);
        expect(await finish({ sessionToken: alice.user.sessionToken, deletionReceipt: await receipt(alice.user.walletRead, res.deletion!.record) })).to.deep.equal({
          code: Code.PermissionDenied, message: "the wallet deletion record is not this session's user's",
        });
      });
    });
  });

  describe("LinkSubject: a subject no wallet holds, added to the link session's user's wallet (docs/transactions.md)", function () {
    /** A link of `linked`'s account (at the dev OP) to `user`'s wallet, at step "subject": the subject read and the wallet read. */
    async function linkAtSubject(user: DevUser, linked: DevUser) {
      const account = await accountUser(user);
      const tx = await token.beginTransaction({ accountSessionToken: account.authorized.sessionToken, kind: TransactionKind.LINK, providerId: "dev" });
      const up = await upstream.login(linked, tx.upstreamNonce, { prompt: "login" });
      const authorized = await token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: up.idToken });
      const uid = session(account.authorized.sessionToken).uid!;
      const walletRecord = rows.get(walletHash(lookupKey, uid))!;
      const request = {
        sessionToken: authorized.sessionToken, errorToken: await absent(authorized.subjectRead),
        walletRecord, walletReceipt: await receipt(authorized.walletRead, walletRecord),
      };
      return { account, authorized, uid, request, upstream: up };
    }

    it("honest: the Subject Record for the session's user (its create spends the Error Token), and the wallet with the subject and a history entry, at the version read", async function () {
      const link = await linkAtSubject(USERS.alice, USERS.bob);
      expect(grantOf(link.authorized.walletRead)).to.include({ op: "read", kind: "wallet", hash: walletHash(lookupKey, link.uid) });
      const res = await token.linkSubject(link.request);
      expect(record("subject", res.subject!.record)).to.include({ op_iss: upstream.devOp.issuer, op_sub: USERS.bob.sub, uid: link.uid });
      expect(grantOf(res.subject!.grant)).to.include({ op: "create", kind: "subject", hash: subjectHash(lookupKey, upstream.devOp.issuer, USERS.bob.sub), ejti: decodeJwt(link.request.errorToken).jti });
      const before = record("wallet", link.request.walletRecord);
      const after = record("wallet", res.wallet!.record);
      expect(after.subjects).to.deep.equal([...before.subjects, { iss: upstream.devOp.issuer, sub: USERS.bob.sub }]);
      expect(after.claims).to.deep.equal(before.claims);
      expect(after.history).to.deep.equal([...(before.history ?? []), { kind: "link", at: Math.floor(clock.now().getTime() / 1000), iss: upstream.devOp.issuer }]);
      expect(grantOf(res.wallet!.grant)).to.include({ op: "update", kind: "wallet", hash: walletHash(lookupKey, link.uid), version: 1, digest: sha256(res.wallet!.record) });
    });

    it("refuses a session of another purpose, Storage's answer to another read, and a wallet receipt of another session", async function () {
      const link = await linkAtSubject(USERS.alice, USERS.bob);
      const del = await deleteLinkless(USERS.alice);
      expect(await refusal(token.linkSubject({ ...link.request, sessionToken: del }))).to.deep.equal({
        code: Code.FailedPrecondition, message: "this step is a link session's, and this is a delete session",
      });
      // The "no record" of the wallet read, or of another session's subject read: no word that the subject is in no wallet.
      const other = await linkAtSubject(USERS.alice, USERS.bob);
      for (const errorToken of [await absent(link.authorized.walletRead), await absent(other.authorized.subjectRead)]) {
        expect(await refusal(token.linkSubject({ ...link.request, errorToken }))).to.deep.equal({
          code: Code.PermissionDenied, message: "the error token does not answer this session's subject read",
        });
      }
      expect(await refusal(token.linkSubject({ ...link.request, walletReceipt: other.request.walletReceipt }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the wallet receipt does not show this wallet record stored for this session",
      });
    });

    it("the fresh login must be the link's own: the account session's OP ID Token links nothing", async function () {
      const account = await accountUser(USERS.alice);
      const tx = await token.beginTransaction({ accountSessionToken: account.authorized.sessionToken, kind: TransactionKind.LINK, providerId: "dev" });
      const refused = await refusal(token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: account.upstream.idToken }));
      expect(refused.code).to.equal(Code.Unauthenticated);
      expect(refused.message).to.match(/nonce/);
    });

    describe("UnlinkSubject: the wallet without one of its accounts, confirmed with another", function () {
      /** An unlink of `target` from `user`'s wallet, confirmed with `confirmer`'s fresh login, at step "user" with the wallet read. */
      async function unlinkAtUser(user: DevUser, confirmer: DevUser, target: { iss: string; sub: string }, walletRecord?: string) {
        const account = await accountUser(user);
        const tx = await token.beginTransaction({ accountSessionToken: account.authorized.sessionToken, kind: TransactionKind.UNLINK, providerId: "dev", unlink: target });
        const up = await upstream.login(confirmer, tx.upstreamNonce, { prompt: "login" });
        const at = await token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: up.idToken });
        const subjectRecord = rows.get(at.subjectRead!.hash)!;
        const authorized = await token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord, subjectReceipt: await receipt(at.subjectRead, subjectRecord) });
        const wallet = walletRecord ?? rows.get(authorized.walletRead!.hash)!;
        return { tx, request: { sessionToken: authorized.sessionToken, walletRecord: wallet, walletReceipt: await receipt(authorized.walletRead, wallet) } };
      }
      const dev = (user: DevUser) => ({ iss: upstream.devOp.issuer, sub: user.sub });

      it("an unlink names its account, and only an unlink does", async function () {
        const account = await accountUser(USERS.alice);
        const begin = (kind: TransactionKind, unlink?: { iss: string; sub: string }) =>
          token.beginTransaction({ accountSessionToken: account.authorized.sessionToken, kind, providerId: "dev", ...(unlink ? { unlink } : {}) });
        expect(await refusal(begin(TransactionKind.UNLINK))).to.deep.equal({ code: Code.InvalidArgument, message: "unlink must name the account to unlink (iss and sub)" });
        expect(await refusal(begin(TransactionKind.DELETE, dev(USERS.bob)))).to.deep.equal({ code: Code.InvalidArgument, message: "unlink is for an unlink only" });
        expect(session((await begin(TransactionKind.UNLINK, dev(USERS.bob))).sessionToken)).to.deep.include({ purpose: "unlink", unlink: dev(USERS.bob) });
      });

      it("refuses an account not of this wallet, the one signed in with, and the wallet's last; honest twin: another of its accounts goes", async function () {
        // Alice's wallet, as a link of Bob's account would leave it (what Storage holds for her, plus his subject).
        const held = record("wallet", rows.get(walletHash(lookupKey, session((await accountUser(USERS.alice)).authorized.sessionToken).uid!))!);
        const { iss: _i, aud: _a, iat: _t, ...plain } = held;
        const two = await sign(RECORD_TYPES.wallet, activeKey(keys, "record"), { ...plain, subjects: [...held.subjects, dev(USERS.bob)] }, { now: clock.now() });
        const outsider = await unlinkAtUser(USERS.alice, USERS.alice, dev(USERS.carol), two);
        expect(await refusal(token.unlinkSubject(outsider.request))).to.deep.equal({ code: Code.PermissionDenied, message: "the account to unlink is not one of this wallet's" });
        const itself = await unlinkAtUser(USERS.alice, USERS.alice, dev(USERS.alice), two);
        expect(await refusal(token.unlinkSubject(itself.request))).to.deep.equal({
          code: Code.PermissionDenied, message: "an account cannot unlink itself: confirm with another account of the wallet",
        });
        const last = await unlinkAtUser(USERS.bob, USERS.bob, dev(USERS.bob));
        expect(await refusal(token.unlinkSubject(last.request))).to.deep.equal({
          code: Code.PermissionDenied, message: "an account cannot unlink itself: confirm with another account of the wallet",
        });
        const honest = await unlinkAtUser(USERS.alice, USERS.alice, dev(USERS.bob), two);
        const res = await token.unlinkSubject(honest.request);
        const after = record("wallet", res.wallet!.record);
        expect(after.subjects).to.deep.equal(held.subjects);
        expect(after.history!.at(-1)).to.deep.equal({ kind: "unlink", at: Math.floor(clock.now().getTime() / 1000), iss: upstream.devOp.issuer });
        expect(grantOf(res.wallet!.grant)).to.include({ op: "update", kind: "wallet", version: 1 });
        expect(grantOf(res.subjectDelete)).to.include({ op: "delete", kind: "subject", hash: subjectHash(lookupKey, upstream.devOp.issuer, USERS.bob.sub) });
      });

      it("a wallet's last account cannot be unlinked, even confirmed with another account (a wallet that lists only the one to unlink)", async function () {
        const held = record("wallet", rows.get(walletHash(lookupKey, session((await accountUser(USERS.alice)).authorized.sessionToken).uid!))!);
        const { iss: _i, aud: _a, iat: _t, ...plain } = held;
        const onlyBob = await sign(RECORD_TYPES.wallet, activeKey(keys, "record"), { ...plain, subjects: [dev(USERS.bob)] }, { now: clock.now() });
        const last = await unlinkAtUser(USERS.alice, USERS.alice, dev(USERS.bob), onlyBob);
        expect(await refusal(token.unlinkSubject(last.request))).to.deep.equal({
          code: Code.PermissionDenied, message: "a wallet's last account cannot be unlinked: delete the wallet instead",
        });
      });
    });

    describe("UpdateClaims: claims taken from the session's own fresh login, as Token verified it", function () {
      /** A claims update of `user`'s wallet, its fresh login as `user` (Bob's account linked to Alice's wallet stands in for another account), at step "user". */
      async function claimsAtUser(user: DevUser) {
        const account = await accountUser(user);
        const tx = await token.beginTransaction({ accountSessionToken: account.authorized.sessionToken, kind: TransactionKind.CLAIMS, providerId: "dev" });
        const up = await upstream.login(user, tx.upstreamNonce, { prompt: "login" });
        const at = await token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: up.idToken });
        const subjectRecord = rows.get(at.subjectRead!.hash)!;
        const authorized = await token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord, subjectReceipt: await receipt(at.subjectRead, subjectRecord) });
        const walletRecord = rows.get(authorized.walletRead!.hash)!;
        return { up, request: { sessionToken: authorized.sessionToken, walletRecord, walletReceipt: await receipt(authorized.walletRead, walletRecord) } };
      }

      it("honest: each named claim takes the token's value (email with its email_verified), its source recorded, a history entry, at the version read", async function () {
        const { request } = await claimsAtUser(USERS.carol);
        const res = await token.updateClaims({ ...request, claims: ["email", "name"] });
        const before = record("wallet", request.walletRecord);
        const after = record("wallet", res.wallet!.record);
        expect(after.claims).to.deep.equal({ ...before.claims, email: USERS.carol.email, email_verified: USERS.carol.email_verified, name: USERS.carol.name });
        expect(after.sources).to.deep.equal({ email: upstream.devOp.issuer, email_verified: upstream.devOp.issuer, name: upstream.devOp.issuer });
        expect(after.history!.at(-1)).to.deep.equal({ kind: "claims", at: Math.floor(clock.now().getTime() / 1000), iss: upstream.devOp.issuer });
        expect(after.subjects).to.deep.equal(before.subjects);
        expect(grantOf(res.wallet!.grant)).to.include({ op: "update", kind: "wallet", hash: walletHash(lookupKey, before.uid), version: 1 });
      });

      it("refuses email_verified alone, a name no wallet holds, one the token lacks, none at all, and a session of another purpose", async function () {
        const { request } = await claimsAtUser(USERS.carol);
        const cases: Array<[string[], string, Code]> = [
          [["email_verified"], "email_verified is taken with email, not alone", Code.PermissionDenied],
          [["sub"], "a name is not a claim a wallet holds", Code.PermissionDenied],
          [["picture"], 'the provider\'s ID Token carries no "picture"', Code.PermissionDenied],
          [[], "claims must name at least one claim to take", Code.InvalidArgument],
        ];
        for (const [claims, message, code] of cases) {
          expect(await refusal(token.updateClaims({ ...request, claims })), claims.join()).to.deep.equal({ code, message });
        }
        const account = await accountUser(USERS.carol);
        expect(await refusal(token.updateClaims({ ...request, sessionToken: account.authorized.sessionToken, claims: ["name"] }))).to.deep.equal({
          code: Code.FailedPrecondition, message: "this step is a claims session's, and this is an account session",
        });
      });
    });

    describe("ChangeRelease: claims withdrawn from one app's release, or the user forgotten there", function () {
      /** A release change of `user`'s release at app `app`, at step "user", with the wallet and that release as Storage holds them. */
      async function releaseAtUser(user: DevUser, app: string) {
        const account = await accountUser(user);
        const tx = await token.beginTransaction({ accountSessionToken: account.authorized.sessionToken, kind: TransactionKind.RELEASE, providerId: "dev", clientId: app });
        const up = await upstream.login(user, tx.upstreamNonce, { prompt: "login" });
        const at = await token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: up.idToken });
        const subjectRecord = rows.get(at.subjectRead!.hash)!;
        const authorized = await token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord, subjectReceipt: await receipt(at.subjectRead, subjectRecord) });
        const walletRecord = rows.get(authorized.walletRead!.hash)!;
        const read = authorized.accountReleaseReads[clients.findIndex((c) => c.client_id === app)]!;
        const releaseRecord = rows.get(read.hash)!;
        return {
          account, uid: record("wallet", walletRecord).uid,
          request: {
            sessionToken: authorized.sessionToken, walletRecord, walletReceipt: await receipt(authorized.walletRead, walletRecord),
            release: { record: releaseRecord, receipt: await receipt(read, releaseRecord) } as ReadRecord, keepClaims: [] as string[], forget: false,
          },
        };
      }

      before(async function () {
        // Carol's release at app b, of her email and name.
        await released(USERS.carol, ["email", "name"], { app: "b" });
      });

      it("honest: withdrawing keeps the directed id and the claims kept, at the release's version; the wallet gets the history entry", async function () {
        const { request, uid } = await releaseAtUser(USERS.carol, "app-b");
        const res = await token.changeRelease({ ...request, keepClaims: ["name"] });
        const before = record("release", request.release.record);
        const after = record("release", res.release!.record);
        expect(after).to.deep.include({ uid, client_id: "app-b", directed_id: before.directed_id, claims: ["name"], reserved: true });
        expect(grantOf(res.release!.grant)).to.include({ op: "update", kind: "release", hash: releaseHash(lookupKey, uid, "app-b"), version: 1 });
        expect(record("wallet", res.wallet!.record).history!.at(-1)).to.deep.equal({ kind: "release", at: Math.floor(clock.now().getTime() / 1000), iss: upstream.devOp.issuer, client_id: "app-b" });
        expect(res.releaseDelete).to.equal(undefined);
      });

      it("honest: forgetting deletes the release and makes its directed id's reservation a tombstone that names no one", async function () {
        const { request, uid } = await releaseAtUser(USERS.carol, "app-b");
        const res = await token.changeRelease({ ...request, forget: true });
        const directedId = record("release", request.release.record).directed_id;
        expect(grantOf(res.releaseDelete)).to.include({ op: "delete", kind: "release", hash: releaseHash(lookupKey, uid, "app-b") });
        const at = reservationHash(lookupKey, "app-b", directedId);
        expect(grantOf(res.reservationRead)).to.include({ op: "read", kind: "reservation", hash: at });
        expect(record("reservation", res.tombstoneUpdate!.record)).to.deep.include({ client_id: "app-b", directed_id: directedId }).and.not.have.property("uid");
        expect(res.tombstoneCreate!.record).to.equal(res.tombstoneUpdate!.record);
        expect(res.release).to.equal(undefined);
      });

      it("refuses keeping a claim the release does not list, keeping them all, a release read by another session, and a session of another purpose", async function () {
        const { request, account } = await releaseAtUser(USERS.carol, "app-b");
        expect(await refusal(token.changeRelease({ ...request, keepClaims: ["email", "picture"] }))).to.deep.equal({
          code: Code.PermissionDenied, message: "keep_claims names a claim the app's release does not list",
        });
        expect(await refusal(token.changeRelease({ ...request, keepClaims: ["email", "name"] }))).to.deep.equal({
          code: Code.InvalidArgument, message: "keep_claims must withdraw at least one of the release's claims (or forget)",
        });
        const other = await releaseAtUser(USERS.carol, "app-b");
        expect(await refusal(token.changeRelease({ ...request, release: other.request.release, keepClaims: ["name"] }))).to.deep.equal({
          code: Code.PermissionDenied, message: "the release receipt does not show this release record stored for this session",
        });
        expect(await refusal(token.changeRelease({ ...request, sessionToken: account.authorized.sessionToken, keepClaims: ["name"] }))).to.deep.equal({
          code: Code.FailedPrecondition, message: "this step is a release session's, and this is an account session",
        });
      });

      it("a release change names a registered app, and only a release change names one", async function () {
        const account = await accountUser(USERS.carol);
        const begin = (kind: TransactionKind, clientId: string) => token.beginTransaction({ accountSessionToken: account.authorized.sessionToken, kind, providerId: "dev", clientId });
        expect((await refusal(begin(TransactionKind.RELEASE, "app-unknown"))).code).to.equal(Code.PermissionDenied);
        expect(await refusal(begin(TransactionKind.DELETE, "app-b"))).to.deep.equal({ code: Code.InvalidArgument, message: "client_id is for a release change only" });
        expect(session((await begin(TransactionKind.RELEASE, "app-b")).sessionToken)).to.include({ purpose: "release", client_id: "app-b" });
      });
    });

    /** A delete session of `user` at step "subject", to present where a link session belongs. */
    async function deleteLinkless(user: DevUser) {
      const account = await accountUser(user);
      const tx = await token.beginTransaction({ accountSessionToken: account.authorized.sessionToken, kind: TransactionKind.DELETE, providerId: "dev" });
      const up = await upstream.login(user, tx.upstreamNonce, { prompt: "login" });
      return (await token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: up.idToken })).sessionToken;
    }
  });

  describe("recovery (docs/transactions.md, \"Recovery\"): a threshold of recovery accounts at distinct providers, one forced fresh login each", function () {
    type Provider = "dev" | "north" | "south";
    const op = (id: Provider) => ({ dev: upstream, north, south })[id];
    const iss = (id: Provider) => op(id).devOp.issuer;
    const nowSeconds = () => Math.floor(clock.now().getTime() / 1000);
    type Round = { sessionToken: string; upstreamNonce: string };

    /** `account` at `provider` linked to `owner`'s wallet as a recovery account (an account session at "dev", a link with recovery), both writes stored. */
    async function linkRecovery(owner: DevUser, provider: Provider, account: DevUser) {
      const signedIn = await accountUser(owner);
      const tx = await token.beginTransaction({ accountSessionToken: signedIn.authorized.sessionToken, kind: TransactionKind.LINK, providerId: provider, recovery: true });
      const up = await op(provider).login(account, tx.upstreamNonce, { prompt: "login" });
      const authorized = await token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: up.idToken });
      const walletRecord = rows.get(authorized.walletRead!.hash)!;
      const res = await token.linkSubject({
        sessionToken: authorized.sessionToken, errorToken: await absent(authorized.subjectRead),
        walletRecord, walletReceipt: await receipt(authorized.walletRead, walletRecord),
      });
      await store(res.wallet);
      await store(res.subject);
      return { tx, walletRecord, res, at: nowSeconds(), uid: session(signedIn.authorized.sessionToken).uid! };
    }

    /** `account`'s forced fresh login at `provider` for the session `round`, verified by Token, and its Subject Record as Storage answers the read. */
    async function freshAtSubject(round: Round, provider: Provider, account: DevUser) {
      const up = await op(provider).login(account, round.upstreamNonce, { prompt: "login" });
      const at = await token.authorizeSubject({ sessionToken: round.sessionToken, opIdToken: up.idToken });
      const subjectRecord = rows.get(at.subjectRead!.hash)!;
      return { up, at, subjectRecord, authorizeUser: { sessionToken: at.sessionToken, subjectRecord, subjectReceipt: await receipt(at.subjectRead, subjectRecord) } };
    }

    /** A recovery round at step "user": the wallet as Storage answers the round's read, ready for ProveRecovery. */
    async function roundAtUser(round: Round, provider: Provider, account: DevUser) {
      const fresh = await freshAtSubject(round, provider, account);
      const user = await token.authorizeUser(fresh.authorizeUser);
      const walletRecord = rows.get(user.walletRead!.hash)!;
      return { ...fresh, user, prove: { sessionToken: user.sessionToken, walletRecord, walletReceipt: await receipt(user.walletRead, walletRecord) } };
    }

    /** Alice's first round, at "north", proven: one more provider needed. */
    async function aliceProvenOnce() {
      const started = await token.beginRecovery({ providerId: "north" });
      const first = await roundAtUser(started, "north", USERS.alice);
      return { started, first, one: await token.proveRecovery(first.prove) };
    }

    /** Alice's recovery at its threshold: rounds at "north" then "south", the wallet update minted, not yet stored. */
    async function aliceAtThreshold() {
      const { started, first, one } = await aliceProvenOnce();
      const next = await token.nextRecoveryLogin({ sessionToken: one.sessionToken, providerId: "south" });
      const second = await roundAtUser(next, "south", USERS.alice);
      return { started, first, one, next, second, done: await token.proveRecovery(second.prove) };
    }

    let aliceLinks: Array<Awaited<ReturnType<typeof linkRecovery>>>;
    before(async function () {
      clock.sync(); // the providers' auth_time is the wall clock's; Token's clock is put back on it
      // Alice's wallet: her accounts at "north" and "south" as recovery accounts. Bob's: his own and his work account at "north", and his own at "south".
      aliceLinks = [await linkRecovery(USERS.alice, "north", USERS.alice), await linkRecovery(USERS.alice, "south", USERS.alice)];
      await linkRecovery(USERS.bob, "north", USERS.bob);
      await linkRecovery(USERS.bob, "north", BOB_AT_WORK);
      await linkRecovery(USERS.bob, "south", USERS.bob);
    });

    /** A recovery threshold change of `user`'s wallet at step "user" (the forced fresh login at dev): SetRecoveryThreshold's request. */
    async function thresholdAtUser(user: DevUser, threshold: number) {
      const signedIn = await accountUser(user);
      const tx = await token.beginTransaction({ accountSessionToken: signedIn.authorized.sessionToken, kind: TransactionKind.RECOVERY_THRESHOLD, providerId: "dev", threshold });
      const up = await upstream.login(user, tx.upstreamNonce, { prompt: "login" });
      const at = await token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: up.idToken });
      const subjectRecord = rows.get(at.subjectRead!.hash)!;
      const authorized = await token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord, subjectReceipt: await receipt(at.subjectRead, subjectRecord) });
      const walletRecord = rows.get(authorized.walletRead!.hash)!;
      return { signedIn, request: { sessionToken: authorized.sessionToken, walletRecord, walletReceipt: await receipt(authorized.walletRead, walletRecord) } };
    }

    it("SetRecoveryThreshold: from 2 up to the number of distinct providers of the wallet's recovery accounts (two accounts at one provider count once), with a history entry", async function () {
      // Bob's recovery accounts: two at "north", one at "south": two providers.
      const tooHigh = await thresholdAtUser(USERS.bob, 3);
      expect(await refusal(token.setRecoveryThreshold(tooHigh.request))).to.deep.equal({
        code: Code.PermissionDenied, message: "a threshold of 3 needs recovery accounts at 3 distinct providers, and this wallet has them at 2: link more first",
      });
      const begin = (kind: TransactionKind, threshold: number) =>
        token.beginTransaction({ accountSessionToken: tooHigh.signedIn.authorized.sessionToken, kind, providerId: "dev", threshold });
      expect(await refusal(begin(TransactionKind.RECOVERY_THRESHOLD, 1))).to.deep.equal({ code: Code.InvalidArgument, message: "threshold must be a whole number from 2 to 64" });
      expect(await refusal(begin(TransactionKind.RECOVERY_THRESHOLD, 0))).to.deep.equal({ code: Code.InvalidArgument, message: "threshold must be a whole number from 2 to 64" });
      expect(await refusal(begin(TransactionKind.LINK, 2))).to.deep.equal({ code: Code.InvalidArgument, message: "threshold is for a recovery threshold change only" });
      const ok = await thresholdAtUser(USERS.bob, 2);
      const res = await token.setRecoveryThreshold(ok.request);
      const wallet = record("wallet", res.wallet!.record);
      expect(wallet.recovery).to.deep.equal({ threshold: 2 });
      expect(wallet.history!.at(-1)).to.deep.include({ kind: "threshold", iss: upstream.devOp.issuer, threshold: 2 });
      expect(grantOf(res.wallet!.grant)).to.include({ op: "update", kind: "wallet", version: 1 });
    });

    it("honest: a recovery account's link mints a Subject Record of its own typ; the wallet lists it as a recovery account and gets the threshold 2", async function () {
      const [northLink, southLink] = aliceLinks as [Awaited<ReturnType<typeof linkRecovery>>, Awaited<ReturnType<typeof linkRecovery>>];
      for (const [link, provider] of [[northLink, "north"], [southLink, "south"]] as const) {
        expect(session(link.tx.sessionToken)).to.include({ purpose: "link", link_recovery: true, provider });
        expect(decodeProtectedHeader(link.res.subject!.record).typ).to.equal(RECOVERY_SUBJECT_RECORD.typ);
        expect(record("subject", link.res.subject!.record)).to.include({ op_iss: iss(provider), op_sub: USERS.alice.sub, uid: link.uid });
        expect(grantOf(link.res.subject!.grant)).to.include({ op: "create", kind: "subject", hash: subjectHash(lookupKey, iss(provider), USERS.alice.sub) });
      }
      const before = record("wallet", northLink.walletRecord);
      expect(before).to.not.have.property("recovery");
      const after = record("wallet", southLink.res.wallet!.record);
      expect(after.subjects).to.deep.equal([
        ...before.subjects, { iss: iss("north"), sub: USERS.alice.sub, recovery: true }, { iss: iss("south"), sub: USERS.alice.sub, recovery: true },
      ]);
      expect(after.recovery).to.deep.equal({ threshold: 2 });
      expect(after.claims).to.deep.equal(before.claims);
      expect(after.history).to.deep.equal([
        ...(before.history ?? []),
        { kind: "link", at: northLink.at, iss: iss("north"), recovery: true },
        { kind: "link", at: southLink.at, iss: iss("south"), recovery: true },
      ]);
    });

    it("checkLinkRole: only a link links a recovery account", async function () {
      const signedIn = await accountUser(USERS.alice);
      for (const kind of [TransactionKind.DELETE, TransactionKind.CLAIMS]) {
        expect(await refusal(token.beginTransaction({ accountSessionToken: signedIn.authorized.sessionToken, kind, providerId: "north", recovery: true }))).to.deep.equal({
          code: Code.InvalidArgument, message: "recovery is for a link only",
        });
      }
    });

    it("honest: rounds at two providers reach the threshold; the wallet's history names both; the recovered user may begin a link, and only a link", async function () {
      const started = await token.beginRecovery({ providerId: "north" });
      expect(started.providerIssuer).to.equal(iss("north"));
      expect(session(started.sessionToken)).to.deep.include({
        step: "started", purpose: "recovery", prompt_login: true, max_age: 0, provider: "north", provider_iss: iss("north"),
        upstream_nonce: started.upstreamNonce, started: clock.now().getTime(), recovered: [],
      }).and.not.have.property("uid");

      // Round 1: Alice's recovery account at "north". AuthorizeUser grants the wallet's read only.
      const first = await roundAtUser(started, "north", USERS.alice);
      const uid = record("subject", first.subjectRecord).uid;
      expect(uid).to.equal(aliceLinks[0]!.uid);
      expect(grantOf(first.user.walletRead)).to.include({ op: "read", kind: "wallet", hash: walletHash(lookupKey, uid) });
      expect(first.user.releaseRead).to.equal(undefined);
      expect(first.user.accountReleaseReads).to.deep.equal([]);
      const one = await token.proveRecovery(first.prove);
      expect(one.needed).to.equal(1);
      expect(one.wallet).to.equal(undefined);
      expect(session(one.sessionToken)).to.deep.include({ step: "user", purpose: "recovery", uid, recovered: [iss("north")] });

      // Round 2: the same session back at "started", at "south", with a nonce and a start of its own and nothing of round 1's login.
      const next = await token.nextRecoveryLogin({ sessionToken: one.sessionToken, providerId: "south" });
      expect(next.providerIssuer).to.equal(iss("south"));
      expect(next.upstreamNonce).to.match(/^[\w-]{22}$/).and.not.equal(started.upstreamNonce);
      const round2 = session(next.sessionToken);
      expect(round2).to.deep.include({
        step: "started", purpose: "recovery", sid: session(started.sessionToken).sid, provider: "south", provider_iss: iss("south"),
        upstream_nonce: next.upstreamNonce, started: clock.now().getTime(), uid, recovered: [iss("north")],
      });
      expect(round2).to.not.have.any.keys("op_sub", "op_claims", "auth_time", "subject_hash", "subject_read", "subject_digest", "wallet_read");
      expect(round2.exp, "the recovery never gains time").to.equal(session(started.sessionToken).exp);

      const second = await roundAtUser(next, "south", USERS.alice);
      const done = await token.proveRecovery(second.prove);
      expect(done.needed).to.equal(0);
      const before = record("wallet", second.prove.walletRecord);
      const after = record("wallet", done.wallet!.record);
      expect(after.subjects).to.deep.equal(before.subjects);
      expect(after.claims).to.deep.equal(before.claims);
      expect(after.recovery).to.deep.equal(before.recovery);
      expect(after.history).to.deep.equal([...(before.history ?? []), { kind: "recovery", at: nowSeconds(), iss: iss("south"), issuers: [iss("north"), iss("south")] }]);
      expect(grantOf(done.wallet!.grant)).to.include({ op: "update", kind: "wallet", hash: walletHash(lookupKey, uid), version: 1, digest: sha256(done.wallet!.record) });

      // Orchestration writes the update; CompleteRecovery takes its receipt and grants what an account session's user reads.
      const completed = await token.completeRecovery({ sessionToken: done.sessionToken, walletRecord: done.wallet!.record, walletReceipt: await store(done.wallet) });
      expect(grantOf(completed.walletRead)).to.include({ op: "read", kind: "wallet", hash: walletHash(lookupKey, uid) });
      expect(completed.accountReleaseReads.map((g) => ({ op: grantOf(g).op, kind: grantOf(g).kind, hash: grantOf(g).hash }))).to.deep.equal(
        clients.map((c) => ({ op: "read", kind: "release", hash: releaseHash(lookupKey, uid, c.client_id) })),
      );
      expect(session(completed.sessionToken)).to.include({ step: "user", purpose: "recovery", recovery_done: true, uid });

      // The recovered user links an account to sign in with: that link is the only transaction a recovery begins.
      const link = await token.beginTransaction({ accountSessionToken: completed.sessionToken, kind: TransactionKind.LINK, providerId: "dev" });
      expect(session(link.sessionToken)).to.include({ step: "started", purpose: "link", uid, provider: "dev", prompt_login: true, max_age: 0, upstream_nonce: link.upstreamNonce });
      for (const kind of [TransactionKind.DELETE, TransactionKind.UNLINK, TransactionKind.CLAIMS, TransactionKind.RELEASE]) {
        expect(await refusal(token.beginTransaction({ accountSessionToken: completed.sessionToken, kind, providerId: "dev" })), TransactionKind[kind]).to.deep.equal({
          code: Code.PermissionDenied, message: "a recovered wallet's transaction is a link: link an account to sign in with, then sign in with it for the others",
        });
      }
      expect(await refusal(token.completeRecovery({ sessionToken: completed.sessionToken, walletRecord: done.wallet!.record, walletReceipt: "" }))).to.deep.equal({
        code: Code.FailedPrecondition, message: "this recovery is complete already",
      });
    });

    it("checkAccountRole: a recovery account alone signs in nowhere: a login, an account session and a transaction's fresh login refuse its Subject Record", async function () {
      const message = "the account is a recovery account, which cannot sign in alone: sign in with another account of the wallet, or recover the wallet";
      // An app's login at "north", as Alice's recovery account there: the Subject Record Storage holds, with Storage's receipt for this login's read.
      const login = await token.createSession({ request: { case: "parameters", value: params("a") }, providerId: "north" });
      const atLogin = await freshAtSubject(login, "north", USERS.alice);
      expect(decodeProtectedHeader(atLogin.subjectRecord).typ).to.equal(RECOVERY_SUBJECT_RECORD.typ);
      expect(await refusal(token.authorizeUser(atLogin.authorizeUser))).to.deep.equal({ code: Code.PermissionDenied, message });
      // The account page's sign-in, at "south".
      const account = await token.createAccountSession({ providerId: "south" });
      const atAccount = await freshAtSubject(account, "south", USERS.alice);
      expect(await refusal(token.authorizeUser(atAccount.authorizeUser))).to.deep.equal({ code: Code.PermissionDenied, message });
      // A delete of Alice's wallet confirmed with her recovery account: no transaction is confirmed by one. Twin: her sign-in account's session began it.
      const signedIn = await accountUser(USERS.alice);
      const del = await token.beginTransaction({ accountSessionToken: signedIn.authorized.sessionToken, kind: TransactionKind.DELETE, providerId: "north" });
      const atDelete = await freshAtSubject(del, "north", USERS.alice);
      expect(await refusal(token.authorizeUser(atDelete.authorizeUser))).to.deep.equal({ code: Code.PermissionDenied, message });
    });

    it("checkAccountRole: a recovery is proven by recovery accounts only: a sign-in account's Subject Record is refused, in the first round or a later one", async function () {
      const message = "the fresh sign-in is at an account that is not a recovery account: a recovery is proven by recovery accounts only";
      const started = await token.beginRecovery({ providerId: "dev" });
      const signIn = await freshAtSubject(started, "dev", USERS.alice);
      expect(await refusal(token.authorizeUser(signIn.authorizeUser))).to.deep.equal({ code: Code.PermissionDenied, message });
      const { one } = await aliceProvenOnce();
      const next = await token.nextRecoveryLogin({ sessionToken: one.sessionToken, providerId: "dev" });
      const later = await freshAtSubject(next, "dev", USERS.alice);
      expect(await refusal(token.authorizeUser(later.authorizeUser))).to.deep.equal({ code: Code.PermissionDenied, message });
    });

    it("two recovery accounts at one provider count once: no second round there, no round proven twice, no other provider's token for a round", async function () {
      // Bob's round at "north", as his own account: one more provider needed.
      const first = await roundAtUser(await token.beginRecovery({ providerId: "north" }), "north", USERS.bob);
      const one = await token.proveRecovery(first.prove);
      expect(one.needed).to.equal(1);
      expect(await refusal(token.nextRecoveryLogin({ sessionToken: one.sessionToken, providerId: "north" }))).to.deep.equal({
        code: Code.PermissionDenied, message: "this provider proved this recovery already: the next round is at another provider",
      });
      // The proven round presented again, as if it were a second one at "north".
      expect(await refusal(token.proveRecovery({ ...first.prove, sessionToken: one.sessionToken }))).to.deep.equal({
        code: Code.PermissionDenied, message: "this provider proved this recovery already: each round is at another provider (two accounts at one provider count once)",
      });
      // The round at "south", shown his work account's OP ID Token from "north", got with this round's own nonce: not from the round's provider.
      const next = await token.nextRecoveryLogin({ sessionToken: one.sessionToken, providerId: "south" });
      const work = await north.login(BOB_AT_WORK, next.upstreamNonce, { prompt: "login" });
      const refused = await refusal(token.authorizeSubject({ sessionToken: next.sessionToken, opIdToken: work.idToken }));
      expect(refused.code).to.equal(Code.Unauthenticated);
      expect(refused.message).to.match(/^the OP ID Token is not valid: /);
      // A second recovery, with his work account at "north": it starts from none, and "north" counts once there too.
      const other = await roundAtUser(await token.beginRecovery({ providerId: "north" }), "north", BOB_AT_WORK);
      const otherOne = await token.proveRecovery(other.prove);
      expect(otherOne.needed).to.equal(1);
      expect(session(otherOne.sessionToken).recovered).to.deep.equal([iss("north")]);
      // Twin: the round at "south", as his account there, reaches the threshold.
      const second = await roundAtUser(next, "south", USERS.bob);
      const done = await token.proveRecovery(second.prove);
      expect(done.needed).to.equal(0);
      expect(record("wallet", done.wallet!.record).history!.at(-1)).to.include({ kind: "recovery" }).and.deep.include({ issuers: [iss("north"), iss("south")] });
    });

    it("short of the threshold: no CompleteRecovery and no transaction; no next round before this one is proven, and none after the threshold", async function () {
      const notYet = { code: Code.FailedPrecondition, message: "a transaction begins from an account session, or a completed recovery, and this recovery is not complete yet" };
      const link = (sessionToken: string) => refusal(token.beginTransaction({ accountSessionToken: sessionToken, kind: TransactionKind.LINK, providerId: "dev" }));
      const { first, one } = await aliceProvenOnce();
      expect(await refusal(token.nextRecoveryLogin({ sessionToken: first.prove.sessionToken, providerId: "south" }))).to.deep.equal({
        code: Code.FailedPrecondition, message: "this round is not proven yet: ProveRecovery comes first",
      });
      expect(await link(first.prove.sessionToken)).to.deep.equal(notYet);
      expect(await link(one.sessionToken)).to.deep.equal(notYet);
      expect(await refusal(token.completeRecovery({ sessionToken: one.sessionToken, walletRecord: first.prove.walletRecord, walletReceipt: first.prove.walletReceipt }))).to.deep.equal({
        code: Code.FailedPrecondition, message: "this recovery has not reached its threshold",
      });
      // At the threshold, the update minted but not yet shown stored: still no transaction, and no more rounds or updates.
      const { second, done } = await aliceAtThreshold();
      expect(await link(done.sessionToken)).to.deep.equal(notYet);
      const reached = { code: Code.FailedPrecondition, message: "this recovery has reached its threshold: complete it" };
      expect(await refusal(token.nextRecoveryLogin({ sessionToken: done.sessionToken, providerId: "dev" }))).to.deep.equal(reached);
      expect(await refusal(token.proveRecovery({ ...second.prove, sessionToken: done.sessionToken }))).to.deep.equal(reached);
    });

    describe("each round's fresh login is its own: Token refuses every OP ID Token but the round's", function () {
      it("round 1: a fresh token from an app's login (another nonce), and the round's own from a login the provider did not force (no auth_time)", async function () {
        const started = await token.beginRecovery({ providerId: "north" });
        const login = await token.createSession({ request: { case: "parameters", value: params("a", { prompt: "login" }) }, providerId: "north" });
        const ordinary = await north.login(USERS.alice, login.upstreamNonce, { prompt: "login" });
        expect(await refusal(token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: ordinary.idToken }))).to.deep.equal({
          code: Code.Unauthenticated, message: "the OP ID Token is not valid: its nonce is not this session's upstream nonce",
        });
        const unforced = await north.login(USERS.alice, started.upstreamNonce);
        expect(unforced.claims.auth_time, "the provider said no auth_time").to.equal(undefined);
        expect(await refusal(token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: unforced.idToken }))).to.deep.equal({
          code: Code.PermissionDenied, message: "login required: the provider did not say when the user authenticated (auth_time), and a transaction needs a fresh login",
        });
      });

      it("round 2: the first round's token, a login at the round's provider with the first round's nonce, and another recovery's round there (a replay)", async function () {
        const { started, first, one } = await aliceProvenOnce();
        const next = await token.nextRecoveryLogin({ sessionToken: one.sessionToken, providerId: "south" });
        const authorize = (opIdToken: string) => refusal(token.authorizeSubject({ sessionToken: next.sessionToken, opIdToken }));
        expect((await authorize(first.up.idToken)).code).to.equal(Code.Unauthenticated);
        const nonce = { code: Code.Unauthenticated, message: "the OP ID Token is not valid: its nonce is not this session's upstream nonce" };
        const oldNonce = await south.login(USERS.alice, started.upstreamNonce, { prompt: "login" });
        expect(await authorize(oldNonce.idToken)).to.deep.equal(nonce);
        const elsewhere = await token.beginRecovery({ providerId: "south" });
        const replayed = (await freshAtSubject(elsewhere, "south", USERS.alice)).up;
        expect(await authorize(replayed.idToken)).to.deep.equal(nonce);
        // Twin: the round's own.
        const own = await south.login(USERS.alice, next.upstreamNonce, { prompt: "login" });
        expect(session((await token.authorizeSubject({ sessionToken: next.sessionToken, opIdToken: own.idToken })).sessionToken)).to.include({ step: "subject", op_sub: USERS.alice.sub });
      });

      it("round 2: an authentication from before the round began, though after the recovery began, is login required", async function () {
        clock.sync(); // the provider's auth_time is the wall clock's: the 45 s below are measured from it
        const { one } = await aliceProvenOnce();
        // The round began 45 s after the provider's authentication: within the OP ID Token's minute of skew, past auth_time's 30 s.
        const late = await clock.ahead(45_000, () => token.nextRecoveryLogin({ sessionToken: one.sessionToken, providerId: "south" }));
        const up = await south.login(USERS.alice, late.upstreamNonce, { prompt: "login" });
        expect(await refusal(token.authorizeSubject({ sessionToken: late.sessionToken, opIdToken: up.idToken }))).to.deep.equal({
          code: Code.PermissionDenied, message: "login required: the user did not authenticate at the provider after this transaction began",
        });
        // Twin: a round begun now.
        const now = await token.nextRecoveryLogin({ sessionToken: one.sessionToken, providerId: "south" });
        const fresh = await south.login(USERS.alice, now.upstreamNonce, { prompt: "login" });
        await token.authorizeSubject({ sessionToken: now.sessionToken, opIdToken: fresh.idToken });
      });
    });

    it("checkTransactionUser: round 2 at a recovery account of another wallet (Bob's at \"south\") is refused, and ProveRecovery refuses another wallet; twin: Alice's own", async function () {
      const { one } = await aliceProvenOnce();
      const uid = session(one.sessionToken).uid!;
      const next = await token.nextRecoveryLogin({ sessionToken: one.sessionToken, providerId: "south" });
      const bobs = await freshAtSubject(next, "south", USERS.bob);
      expect(decodeProtectedHeader(bobs.subjectRecord).typ, "a recovery account, of Bob's wallet").to.equal(RECOVERY_SUBJECT_RECORD.typ);
      expect(record("subject", bobs.subjectRecord).uid).to.not.equal(uid);
      expect(await refusal(token.authorizeUser(bobs.authorizeUser))).to.deep.equal({
        code: Code.PermissionDenied,
        message: "the fresh sign-in is at an account linked to another wallet: a transaction is confirmed at a provider linked to this wallet",
      });
      const second = await roundAtUser(next, "south", USERS.alice);
      // Bob's wallet, with Storage's word that it answers this round's read of Alice's.
      const bobsWallet = rows.get(walletHash(lookupKey, record("subject", bobs.subjectRecord).uid))!;
      expect(await refusal(token.proveRecovery({ ...second.prove, walletRecord: bobsWallet, walletReceipt: await receipt(second.user.walletRead, bobsWallet) }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the wallet record is not this session's user's",
      });
      expect((await token.proveRecovery(second.prove)).needed).to.equal(0);
    });

    it("ProveRecovery refuses a wallet that does not list the round's account as a recovery account: not at all (as before the link), or as a sign-in account", async function () {
      const started = await token.beginRecovery({ providerId: "north" });
      const first = await roundAtUser(started, "north", USERS.alice);
      const message = "the wallet does not list the account signed in with as one of its recovery accounts";
      const prove = async (walletRecord: string) => refusal(token.proveRecovery({ ...first.prove, walletRecord, walletReceipt: await receipt(first.user.walletRead, walletRecord) }));
      expect(await prove(aliceLinks[0]!.walletRecord)).to.deep.equal({ code: Code.PermissionDenied, message });
      // Alice's wallet as Token would sign it with her "north" account a sign-in account, each with Storage's word for this round's read.
      const held = record("wallet", first.prove.walletRecord);
      const { iss: _i, aud: _a, iat: _t, ...plain } = held;
      const subjects = held.subjects.map((s) => (s.iss === iss("north") ? { iss: s.iss, sub: s.sub } : s));
      const signIn = await sign(RECORD_TYPES.wallet, activeKey(keys, "record"), { ...plain, subjects }, { now: clock.now() });
      expect(await prove(signIn)).to.deep.equal({ code: Code.PermissionDenied, message });
    });

    it("CompleteRecovery takes the wallet ProveRecovery minted with the receipt of its update: not a read's receipt, another recovery's, or the wallet as read", async function () {
      const { second, done } = await aliceAtThreshold();
      const minted = done.wallet!;
      const complete = (walletRecord: string, walletReceipt: string) => token.completeRecovery({ sessionToken: done.sessionToken, walletRecord, walletReceipt });
      const notStored = { code: Code.PermissionDenied, message: "the wallet receipt does not show this wallet record stored for this session" };
      expect(await refusal(complete(minted.record, await receipt(second.user.walletRead, minted.record)))).to.deep.equal(notStored);
      const other = await aliceAtThreshold();
      expect(await refusal(complete(minted.record, await receipt(other.done.wallet!.grant, minted.record)))).to.deep.equal(notStored);
      expect(await refusal(complete(second.prove.walletRecord, second.prove.walletReceipt))).to.deep.equal({
        code: Code.PermissionDenied, message: "the wallet record is not the one this session holds",
      });
      // Twin: the update's own receipt.
      const completed = await complete(minted.record, await store(minted));
      expect(session(completed.sessionToken)).to.include({ recovery_done: true });
    });
  });

  describe("MergeWallets (docs/transactions.md, \"Merge\"): two wallets of one person, the later merged into the earlier", function () {
    type Provider = "dev" | "north" | "south";
    const op = (id: Provider) => ({ dev: upstream, north, south })[id];
    const iss = (id: Provider) => op(id).devOp.issuer;
    const nowSeconds = () => Math.floor(clock.now().getTime() / 1000);
    /** A record's own claims, without those of its JWS (iss, aud, iat). */
    const bodyOf = <K extends keyof RecordClaims>(kind: K, jws: string) => {
      const { iss: _i, aud: _a, iat: _t, ...body } = record(kind, jws);
      return body as unknown as RecordClaims[K];
    };
    /** A wallet as Token would sign it, changed by `change` (a forged state Storage may say it holds). */
    const resigned = (jws: string, change: (w: RecordClaims["wallet"]) => RecordClaims["wallet"]) =>
      sign(RECORD_TYPES.wallet, activeKey(keys, "record"), { ...change(bodyOf("wallet", jws)) }, { now: clock.now() });
    /** Storage's answer to a read, from the row it holds. */
    const readOf = async (read: AccessGrant | undefined, jws = rows.get(read!.hash)!) => ({ record: jws, receipt: await receipt(read, jws) }) as ReadRecord;
    /** Storage's answers to a user's release reads (one per registered app, in the registry's order): the row it holds, or "no record". */
    const answered = (reads: readonly AccessGrant[]) => Promise.all(reads.map(async (read, i) => {
      const stored = rows.get(read.hash);
      return {
        clientId: clients[i]!.client_id,
        answer: stored ? { case: "release" as const, value: await readOf(read, stored) } : { case: "errorToken" as const, value: await absent(read) },
      } as ReleaseAnswer;
    }));
    const appIndex = (clientId: string) => clients.findIndex((c) => c.client_id === clientId);

    /** A login of `user` at `provider` for app `app`, at step "subject". */
    async function loginAtSubject(provider: Provider, user: DevUser, app: "a" | "b" = "a") {
      const started = await token.createSession({ request: { case: "parameters", value: params(app) }, providerId: provider });
      const up = await op(provider).login(user, started.upstreamNonce);
      return token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: up.idToken });
    }

    /** A new user at `provider`, its CreateUser `aheadMs` later (the wallet's `created`), both writes stored. */
    async function newUserAt(provider: Provider, user: DevUser, aheadMs = 0) {
      const at = await loginAtSubject(provider, user);
      const errorToken = await absent(at.subjectRead);
      const made = await clock.ahead(aheadMs, () => token.createUser({ sessionToken: at.sessionToken, errorToken }));
      await store(made.wallet);
      await store(made.subject);
      return record("wallet", made.wallet!.record).uid;
    }

    /** A returning user's login at `provider` for `app`, at step "user": the Subject Record and the reads' grants. */
    async function loginAtUser(provider: Provider, user: DevUser, app: "a" | "b") {
      const at = await loginAtSubject(provider, user, app);
      const subjectRecord = rows.get(at.subjectRead!.hash)!;
      const authorized = await token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord, subjectReceipt: await receipt(at.subjectRead, subjectRecord) });
      return { subjectRecord, authorized };
    }

    /** `user`'s first release at `app`, through `provider`: CreateRelease on Storage's "no release", both writes stored. */
    async function releaseAt(provider: Provider, user: DevUser, app: "a" | "b") {
      const { authorized } = await loginAtUser(provider, user, app);
      const walletRecord = rows.get(authorized.walletRead!.hash)!;
      const made = await token.createRelease({
        sessionToken: authorized.sessionToken, errorToken: await absent(authorized.releaseRead),
        walletRecord, walletReceipt: await receipt(authorized.walletRead, walletRecord), consentedClaims: ["email"],
      });
      await store(made.reservation);
      await store(made.release);
      return record("release", made.release!.record);
    }

    /** The MintIdToken of a returning user's login at `app` through `provider`, with every record as Storage holds it. */
    async function mintAt(provider: Provider, user: DevUser, app: "a" | "b") {
      const { subjectRecord, authorized } = await loginAtUser(provider, user, app);
      const walletRecord = rows.get(authorized.walletRead!.hash)!;
      const releaseRecord = rows.get(authorized.releaseRead!.hash)!;
      return token.mintIdToken({
        sessionToken: authorized.sessionToken, subjectRecord, walletRecord, walletReceipt: await receipt(authorized.walletRead, walletRecord),
        releaseRecord, releaseReceipt: await receipt(authorized.releaseRead, releaseRecord),
      });
    }

    /** An account session of `user` at `provider`, at step "user". */
    async function accountAt(provider: Provider, user: DevUser) {
      const started = await token.createAccountSession({ providerId: provider });
      const up = await op(provider).login(user, started.upstreamNonce, { prompt: "login" });
      const at = await token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: up.idToken });
      const subjectRecord = rows.get(at.subjectRead!.hash)!;
      const authorized = await token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord, subjectReceipt: await receipt(at.subjectRead, subjectRecord) });
      return { authorized, uid: session(authorized.sessionToken).uid! };
    }

    /** From `from`'s account session, a merge whose forced fresh login is `to`'s: at step "subject", the Subject Record as Storage holds it, with its receipt. */
    async function mergeAtSubject(from: [Provider, DevUser], to: [Provider, DevUser]) {
      const account = await accountAt(...from);
      const tx = await token.beginTransaction({ accountSessionToken: account.authorized.sessionToken, kind: TransactionKind.MERGE, providerId: to[0] });
      const up = await op(to[0]).login(to[1], tx.upstreamNonce, { prompt: "login" });
      const at = await token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: up.idToken });
      const subjectRecord = rows.get(at.subjectRead!.hash)!;
      return {
        account, tx, at, subjectRecord,
        authorizeMerge: { sessionToken: at.sessionToken, subjectRecord, subjectReceipt: await receipt(at.subjectRead, subjectRecord) },
      };
    }

    /** The same after AuthorizeMerge: both wallets and both users' releases as Storage answers this session's reads, ready for MergeWallets. */
    async function mergeAtUser(from: [Provider, DevUser] = ["south", USERS.carol], to: [Provider, DevUser] = ["north", USERS.carol]) {
      const at = await mergeAtSubject(from, to);
      const authorized = await token.authorizeMerge(at.authorizeMerge);
      const request = {
        sessionToken: authorized.sessionToken,
        wallet: await readOf(authorized.walletRead), otherWallet: await readOf(authorized.otherWalletRead),
        releases: await answered(authorized.releaseReads), otherReleases: await answered(authorized.otherReleaseReads),
      };
      return { ...at, authorized, request };
    }

    // Carol's two wallets: the earlier, her account at "north", with a release at app a and
    // a claims update; the later (made 5 s on), her account at "south" with Bob's work
    // account there as its recovery account, and a release at apps a and b.
    let early: string;
    let late: string;
    let earlyAtA: RecordClaims["release"];
    let lateAtA: RecordClaims["release"];
    let lateAtB: RecordClaims["release"];
    let claimsAt: number;
    let linkAt: number;
    before(async function () {
      clock.sync();
      early = await newUserAt("north", USERS.carol);
      late = await newUserAt("south", USERS.carol, 5_000);
      earlyAtA = await releaseAt("north", USERS.carol, "a");
      lateAtA = await releaseAt("south", USERS.carol, "a");
      lateAtB = await releaseAt("south", USERS.carol, "b");
      // The later wallet's recovery account: Bob's work account at "south".
      const signedIn = await accountAt("south", USERS.carol);
      const link = await token.beginTransaction({ accountSessionToken: signedIn.authorized.sessionToken, kind: TransactionKind.LINK, providerId: "south", recovery: true });
      const linkUp = await south.login(BOB_AT_WORK, link.upstreamNonce, { prompt: "login" });
      const linking = await token.authorizeSubject({ sessionToken: link.sessionToken, opIdToken: linkUp.idToken });
      const linked = await token.linkSubject({ sessionToken: linking.sessionToken, errorToken: await absent(linking.subjectRead), walletRecord: rows.get(linking.walletRead!.hash)!, walletReceipt: await receipt(linking.walletRead, rows.get(linking.walletRead!.hash)!) });
      await store(linked.wallet);
      await store(linked.subject);
      linkAt = nowSeconds();
      // The earlier wallet's claims update, 3 s after the link: the merged history is sorted by time, not by wallet.
      const account = await accountAt("north", USERS.carol);
      const tx = await token.beginTransaction({ accountSessionToken: account.authorized.sessionToken, kind: TransactionKind.CLAIMS, providerId: "north" });
      const up = await north.login(USERS.carol, tx.upstreamNonce, { prompt: "login" });
      const at = await token.authorizeSubject({ sessionToken: tx.sessionToken, opIdToken: up.idToken });
      const subjectRecord = rows.get(at.subjectRead!.hash)!;
      const user = await token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord, subjectReceipt: await receipt(at.subjectRead, subjectRecord) });
      const walletRecord = rows.get(user.walletRead!.hash)!;
      const walletReceipt = await receipt(user.walletRead, walletRecord);
      const claims = await clock.ahead(3_000, () => token.updateClaims({ sessionToken: user.sessionToken, walletRecord, walletReceipt, claims: ["name"] }));
      await store(claims.wallet);
      claimsAt = nowSeconds() + 3;
    });

    it("honest: AuthorizeMerge takes the other wallet's sign-in account as stored and grants reads of both wallets and of both users' release at every app", async function () {
      const m = await mergeAtSubject(["south", USERS.carol], ["north", USERS.carol]);
      expect(session(m.tx.sessionToken)).to.include({ step: "started", purpose: "merge", uid: late, provider: "north", prompt_login: true, max_age: 0 });
      expect(record("subject", m.subjectRecord).uid).to.equal(early);
      const res = await token.authorizeMerge(m.authorizeMerge);
      const hashes = (grants: readonly AccessGrant[]) => grants.map((g) => ({ op: grantOf(g).op, kind: grantOf(g).kind, hash: grantOf(g).hash }));
      expect(grantOf(res.walletRead)).to.include({ op: "read", kind: "wallet", hash: walletHash(lookupKey, late) });
      expect(grantOf(res.otherWalletRead)).to.include({ op: "read", kind: "wallet", hash: walletHash(lookupKey, early) });
      expect(hashes(res.releaseReads)).to.deep.equal(clients.map((c) => ({ op: "read", kind: "release", hash: releaseHash(lookupKey, late, c.client_id) })));
      expect(hashes(res.otherReleaseReads)).to.deep.equal(clients.map((c) => ({ op: "read", kind: "release", hash: releaseHash(lookupKey, early, c.client_id) })));
      const jtis = (grants: readonly AccessGrant[]) => Object.fromEntries(grants.map((g, i) => [clients[i]!.client_id, grantOf(g).jti]));
      expect(session(res.sessionToken)).to.deep.include({
        step: "user", purpose: "merge", uid: late, merge_uid: early, subject_digest: sha256(m.subjectRecord),
        wallet_read: grantOf(res.walletRead).jti, merge_wallet_read: grantOf(res.otherWalletRead).jti,
        release_reads: jtis(res.releaseReads), merge_release_reads: jtis(res.otherReleaseReads),
      });
    });

    it("honest: the later wallet merges into the earlier: the wallet joined at its version, each account and release moved, reservations naming the survivor, the merged records deleted", async function () {
      const m = await mergeAtUser(); // the account session is the later wallet's: the survivor is the other
      const [lateWallet, earlyWallet] = [record("wallet", m.request.wallet.record), record("wallet", m.request.otherWallet.record)];
      expect(earlyWallet.created! < lateWallet.created!, "CreateUser stamps created").to.equal(true);
      expect(earlierWallet(lateWallet, earlyWallet)).to.equal(earlyWallet);
      const res = await token.mergeWallets(m.request);
      expect(res.survivorIsOther).to.equal(true);

      // The surviving wallet: its own claims and created, every account of both, both histories by time and the merge last, at the version read.
      const wallet = bodyOf("wallet", res.wallet!.record);
      expect(wallet).to.deep.equal(mergedWallet(earlyWallet, lateWallet, iss("north"), nowSeconds()));
      expect(wallet).to.deep.include({ uid: early, created: earlyWallet.created, claims: earlyWallet.claims, recovery: { threshold: 2 } });
      expect(wallet.subjects).to.deep.equal([
        { iss: iss("north"), sub: USERS.carol.sub }, { iss: iss("south"), sub: USERS.carol.sub }, { iss: iss("south"), sub: BOB_AT_WORK.sub, recovery: true },
      ]);
      expect(wallet.history).to.deep.equal([
        { kind: "link", at: linkAt, iss: iss("south"), recovery: true },
        { kind: "claims", at: claimsAt, iss: iss("north") },
        { kind: "merge", at: nowSeconds(), iss: iss("north") },
      ]);
      expect(grantOf(res.wallet!.grant)).to.include({ op: "update", kind: "wallet", hash: walletHash(lookupKey, early), version: 1, digest: sha256(res.wallet!.record) });
      expect(grantOf(res.mergedWalletDelete)).to.include({ op: "delete", kind: "wallet", hash: walletHash(lookupKey, late) });

      // Each account of the merged wallet, read then pointed at the survivor; the recovery account stays one.
      expect(res.subjects.map((s) => ({ read: grantOf(s.read), update: grantOf(s.update!.grant), typ: decodeProtectedHeader(s.update!.record).typ, subject: bodyOf("subject", s.update!.record) }))
        .map(({ read, update, typ, subject }) => ({ read: [read.op, read.kind, read.hash], update: [update.op, update.kind, update.hash], typ, subject }))).to.deep.equal(
        lateWallet.subjects.map((s) => {
          const at = subjectHash(lookupKey, s.iss, s.sub);
          return {
            read: ["read", "subject", at], update: ["update", "subject", at],
            typ: s.recovery ? RECOVERY_SUBJECT_RECORD.typ : RECORD_TYPES.subject.typ, subject: { op_iss: s.iss, op_sub: s.sub, uid: early },
          };
        }),
      );
      for (const s of res.subjects) expect(grantOf(s.update!.grant).digest).to.equal(sha256(s.update!.record));

      // The merged user's releases, in the registry's order: app a's joins the survivor's (merged_subs), app b's moves (the same directed id).
      expect(res.releases.map((r) => r.clientId)).to.deep.equal(["app-a", "app-b"]);
      const [atA, atB] = res.releases as [typeof res.releases[0], typeof res.releases[0]];
      for (const [moved, release] of [[atA, lateAtA], [atB, lateAtB]] as const) {
        const at = reservationHash(lookupKey, release.client_id, release.directed_id);
        expect(grantOf(moved.reservationRead)).to.include({ op: "read", kind: "reservation", hash: at });
        expect(grantOf(moved.reservationUpdate!.grant)).to.include({ op: "update", kind: "reservation", hash: at, digest: sha256(moved.reservationUpdate!.record) });
        expect(grantOf(moved.reservationCreate!.grant)).to.include({ op: "create", kind: "reservation", hash: at, digest: sha256(moved.reservationCreate!.record) });
        expect(moved.reservationCreate!.record).to.equal(moved.reservationUpdate!.record);
        expect(bodyOf("reservation", moved.reservationUpdate!.record)).to.deep.equal({ client_id: release.client_id, directed_id: release.directed_id, uid: early });
        expect(grantOf(moved.mergedReleaseDelete)).to.include({ op: "delete", kind: "release", hash: releaseHash(lookupKey, late, release.client_id) });
      }
      expect(atA.releaseCreate).to.equal(undefined);
      expect(bodyOf("release", atA.releaseUpdate!.record)).to.deep.equal({ ...bodyOf("release", rows.get(releaseHash(lookupKey, early, "app-a"))!), merged_subs: [lateAtA.directed_id] });
      expect(bodyOf("release", atA.releaseUpdate!.record)).to.include({ uid: early, directed_id: earlyAtA.directed_id });
      expect(grantOf(atA.releaseUpdate!.grant)).to.include({ op: "update", kind: "release", hash: releaseHash(lookupKey, early, "app-a"), version: 1, digest: sha256(atA.releaseUpdate!.record) });
      expect(atB.releaseUpdate).to.equal(undefined);
      expect(bodyOf("release", atB.releaseCreate!.record)).to.deep.equal({ uid: early, client_id: "app-b", directed_id: lateAtB.directed_id, claims: lateAtB.claims, reserved: true });
      // The create relies on Storage's "no release" for the survivor at app b: it spends that Error Token.
      const noRelease = m.request.otherReleases[appIndex("app-b")]!.answer;
      expect(noRelease.case).to.equal("errorToken");
      expect(grantOf(atB.releaseCreate!.grant)).to.include({
        op: "create", kind: "release", hash: releaseHash(lookupKey, early, "app-b"), digest: sha256(atB.releaseCreate!.record), ejti: decodeJwt(noRelease.value as string).jti,
      });
    });

    it("the survivor is the earlier wallet whichever begins the merge; a wallet without `created` survives one with it (earlierWallet)", async function () {
      // Begun from the earlier wallet's account session: the survivor is the session's own.
      const fromEarly = await mergeAtUser(["north", USERS.carol], ["south", USERS.carol]);
      const res = await token.mergeWallets(fromEarly.request);
      expect(res.survivorIsOther).to.equal(false);
      expect(grantOf(res.wallet!.grant)).to.include({ op: "update", hash: walletHash(lookupKey, early) });
      expect(grantOf(res.mergedWalletDelete)).to.include({ op: "delete", hash: walletHash(lookupKey, late) });
      expect(record("wallet", res.wallet!.record).history!.at(-1)).to.deep.equal({ kind: "merge", at: nowSeconds(), iss: iss("south") });

      // The later wallet as stored before `created` was kept (Storage's word for this session's read): it is the earlier now, and survives.
      const m = await mergeAtUser();
      const lateWallet = record("wallet", m.request.wallet.record);
      const earlyWallet = record("wallet", m.request.otherWallet.record);
      const { created: _c, ...withoutCreated } = bodyOf("wallet", m.request.wallet.record);
      const old = await resigned(m.request.wallet.record, () => withoutCreated);
      const kept = await token.mergeWallets({ ...m.request, wallet: await readOf(m.authorized.walletRead, old) });
      expect(kept.survivorIsOther).to.equal(false);
      const wallet = bodyOf("wallet", kept.wallet!.record);
      expect(wallet).to.deep.equal(mergedWallet(record("wallet", old), earlyWallet, iss("north"), nowSeconds()));
      expect(wallet).to.include({ uid: late }).and.not.have.property("created");
      expect(wallet.subjects).to.deep.equal([...lateWallet.subjects, ...earlyWallet.subjects]);
      expect(grantOf(kept.wallet!.grant)).to.include({ op: "update", kind: "wallet", hash: walletHash(lookupKey, late), version: 1 });
      expect(grantOf(kept.mergedWalletDelete)).to.include({ op: "delete", kind: "wallet", hash: walletHash(lookupKey, early) });
      expect(kept.subjects.map((s) => bodyOf("subject", s.update!.record))).to.deep.equal([{ op_iss: iss("north"), op_sub: USERS.carol.sub, uid: late }]);
      expect(kept.subjects.map((s) => decodeProtectedHeader(s.update!.record).typ)).to.deep.equal([RECORD_TYPES.subject.typ]);
      // The earlier wallet's only release, at app a, joins the later's there.
      expect(kept.releases.map((r) => r.clientId)).to.deep.equal(["app-a"]);
      expect(bodyOf("release", kept.releases[0]!.releaseUpdate!.record)).to.include({ uid: late, directed_id: lateAtA.directed_id }).and.deep.include({ merged_subs: [earlyAtA.directed_id] });
      expect(bodyOf("reservation", kept.releases[0]!.reservationUpdate!.record)).to.deep.equal({ client_id: "app-a", directed_id: earlyAtA.directed_id, uid: late });
      expect(grantOf(kept.releases[0]!.mergedReleaseDelete)).to.include({ op: "delete", kind: "release", hash: releaseHash(lookupKey, early, "app-a") });

      // Both made in one second: the smaller uid survives.
      const same = await resigned(m.request.wallet.record, (w) => ({ ...w, created: earlyWallet.created! }));
      const tie = await token.mergeWallets({ ...m.request, wallet: await readOf(m.authorized.walletRead, same) });
      expect(tie.survivorIsOther).to.equal(early < late);
    });

    it("earlierWallet: the earlier created; no created before any; one moment, the smaller uid; either order", function () {
      const cases: Array<[{ uid: string; created?: number }, { uid: string; created?: number }]> = [
        [{ uid: "b", created: 100 }, { uid: "a", created: 200 }], // the earlier, though its uid is larger
        [{ uid: "z" }, { uid: "a", created: 1 }], // none kept: made before any that has it
        [{ uid: "a", created: 100 }, { uid: "b", created: 100 }], // one moment: the smaller uid
        [{ uid: "a" }, { uid: "b" }],
      ];
      for (const [first, second] of cases) {
        expect(earlierWallet(first, second), JSON.stringify([first, second])).to.equal(first);
        expect(earlierWallet(second, first), JSON.stringify([second, first])).to.equal(first);
      }
    });

    it("AuthorizeMerge refuses an account of this wallet, a recovery account, another session's read, and another account's Subject Record", async function () {
      const own = await mergeAtSubject(["north", USERS.carol], ["north", USERS.carol]);
      expect(await refusal(token.authorizeMerge(own.authorizeMerge))).to.deep.equal({
        code: Code.PermissionDenied, message: "the account signed in with is this wallet's already: there is nothing to merge",
      });
      // The later wallet's recovery account, from the earlier wallet's account session: a recovery account proves no wallet.
      const recovery = await mergeAtSubject(["north", USERS.carol], ["south", BOB_AT_WORK]);
      expect(decodeProtectedHeader(recovery.subjectRecord).typ).to.equal(RECOVERY_SUBJECT_RECORD.typ);
      expect(await refusal(token.authorizeMerge(recovery.authorizeMerge))).to.deep.equal({
        code: Code.PermissionDenied,
        message: "the account is a recovery account, which cannot sign in alone: sign in with another account of the wallet, or recover the wallet",
      });
      // The Subject Record with Storage's receipt for another merge session's read of it.
      const m = await mergeAtSubject(["south", USERS.carol], ["north", USERS.carol]);
      const other = await mergeAtSubject(["south", USERS.carol], ["north", USERS.carol]);
      expect(await refusal(token.authorizeMerge({ ...m.authorizeMerge, subjectReceipt: other.authorizeMerge.subjectReceipt }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the subject receipt does not show this subject record stored for this session",
      });
      // Alice's Subject Record, with Storage's word that it answers this session's read: not the account signed in with.
      const alices = rows.get(subjectHash(lookupKey, upstream.devOp.issuer, USERS.alice.sub))!;
      expect(await refusal(token.authorizeMerge({ ...m.authorizeMerge, subjectRecord: alices, subjectReceipt: await receipt(m.at.subjectRead, alices) }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the subject record is not this session's subject",
      });
      expect(await refusal(token.authorizeMerge({ ...m.authorizeMerge, subjectReceipt: "" }))).to.deep.equal({
        code: Code.InvalidArgument, message: "the subject receipt is required: Storage's receipt for this session's subject read",
      });
      // Twin: the session's own read; then no second AuthorizeMerge.
      const authorized = await token.authorizeMerge(m.authorizeMerge);
      expect(await refusal(token.authorizeMerge({ ...m.authorizeMerge, sessionToken: authorized.sessionToken }))).to.deep.equal({
        code: Code.FailedPrecondition, message: 'this step needs a session at step "subject", not "user"',
      });
    });

    it("a merge session is its own: AuthorizeUser refuses it, a login begins none, and no other transaction's session merges", async function () {
      // AuthorizeUser, at the other wallet's account (another wallet's) or at the merge's own wallet's.
      const m = await mergeAtSubject(["south", USERS.carol], ["north", USERS.carol]);
      const { sessionToken, subjectRecord, subjectReceipt } = m.authorizeMerge;
      expect(await refusal(token.authorizeUser({ sessionToken, subjectRecord, subjectReceipt }))).to.deep.equal({
        code: Code.PermissionDenied,
        message: "the fresh sign-in is at an account linked to another wallet: a transaction is confirmed at a provider linked to this wallet",
      });
      const own = await mergeAtSubject(["south", USERS.carol], ["south", USERS.carol]);
      expect(await refusal(token.authorizeUser(own.authorizeMerge))).to.deep.equal({ code: Code.FailedPrecondition, message: "a merge goes on with AuthorizeMerge" });
      // BeginTransaction(MERGE) from a login, or from a merge session.
      const { authorized } = await loginAtUser("north", USERS.carol, "a");
      const beginMerge = (accountSessionToken: string) => token.beginTransaction({ accountSessionToken, kind: TransactionKind.MERGE, providerId: "south" });
      expect(await refusal(beginMerge(authorized.sessionToken))).to.deep.equal({
        code: Code.FailedPrecondition, message: "a transaction begins from an account session, or a completed recovery, and this is a login session",
      });
      const merging = await token.authorizeMerge(m.authorizeMerge);
      expect(await refusal(beginMerge(merging.sessionToken))).to.deep.equal({
        code: Code.FailedPrecondition, message: "a transaction begins from an account session, or a completed recovery, and this is a merge session",
      });
      // A merge names no app, no account to unlink, and no recovery role.
      const account = await accountAt("south", USERS.carol);
      const begin = (extra: object) => refusal(token.beginTransaction({ accountSessionToken: account.authorized.sessionToken, kind: TransactionKind.MERGE, providerId: "north", ...extra }));
      expect(await begin({ clientId: "app-a" })).to.deep.equal({ code: Code.InvalidArgument, message: "client_id is for a release change only" });
      expect(await begin({ recovery: true })).to.deep.equal({ code: Code.InvalidArgument, message: "recovery is for a link only" });
      // AuthorizeMerge and MergeWallets take a merge session only: a delete's at "subject", an account session at "user".
      const del = await token.beginTransaction({ accountSessionToken: account.authorized.sessionToken, kind: TransactionKind.DELETE, providerId: "south" });
      const delUp = await south.login(USERS.carol, del.upstreamNonce, { prompt: "login" });
      const delAt = await token.authorizeSubject({ sessionToken: del.sessionToken, opIdToken: delUp.idToken });
      expect(await refusal(token.authorizeMerge({ ...m.authorizeMerge, sessionToken: delAt.sessionToken }))).to.deep.equal({
        code: Code.FailedPrecondition, message: "this step is a merge session's, and this is a delete session",
      });
      expect(await refusal(token.mergeWallets({ sessionToken: account.authorized.sessionToken, releases: [], otherReleases: [] }))).to.deep.equal({
        code: Code.FailedPrecondition, message: "this step is a merge session's, and this is an account session",
      });
    });

    it("MergeWallets refuses a merge not authorized yet, a wallet missing, and the wallets swapped (each is checked against its own read)", async function () {
      const m = await mergeAtUser();
      expect(await refusal(token.mergeWallets({ ...m.request, sessionToken: m.authorizeMerge.sessionToken }))).to.deep.equal({
        code: Code.FailedPrecondition, message: 'this step needs a session at step "user", not "subject"',
      });
      // A merge session at "user" that names no other user (as only a bug in Token would sign it).
      const { iss: _i, aud: _a, iat: _t, exp: _e, jti: _j, merge_uid: _u, ...claims } = session(m.request.sessionToken);
      const unauthorized = await sign(SESSION_TOKEN, activeKey(keys, "session"), { ...claims }, { now: clock.now() });
      expect(await refusal(token.mergeWallets({ ...m.request, sessionToken: unauthorized }))).to.deep.equal({
        code: Code.FailedPrecondition, message: "this merge has not authorized the other wallet yet: AuthorizeMerge comes first",
      });
      const { otherWallet: _o, ...withoutOther } = m.request;
      expect(await refusal(token.mergeWallets(withoutOther))).to.deep.equal({
        code: Code.InvalidArgument, message: "wallet and other_wallet are required: each wallet as this session read it",
      });
      // Swapped, each with Storage's receipt for the read it answered: not this read's.
      const swapped = { ...m.request, wallet: m.request.otherWallet, otherWallet: m.request.wallet };
      expect(await refusal(token.mergeWallets(swapped))).to.deep.equal({
        code: Code.PermissionDenied, message: "the wallet receipt does not show this wallet record stored for this session",
      });
      // Swapped, with Storage's word that each answers the other read: not that user's wallet.
      const reanswered = {
        ...m.request,
        wallet: await readOf(m.authorized.walletRead, m.request.otherWallet.record), otherWallet: await readOf(m.authorized.otherWalletRead, m.request.wallet.record),
      };
      expect(await refusal(token.mergeWallets(reanswered))).to.deep.equal({ code: Code.PermissionDenied, message: "the wallet record is not this session's user's" });
      expect(await refusal(token.mergeWallets({ ...m.request, otherWallet: reanswered.otherWallet }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the wallet record is not this session's user's",
      });
      // Another merge session's reads of the same two wallets.
      const other = await mergeAtUser();
      expect(await refusal(token.mergeWallets({ ...m.request, otherWallet: other.request.otherWallet }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the wallet receipt does not show this wallet record stored for this session",
      });
      // Twin: as read.
      expect((await token.mergeWallets(m.request)).survivorIsOther).to.equal(true);
    });

    it("MergeWallets refuses a release answer missing, twice, of an app Token does not know, swapped between the users, of another read, or another user's release", async function () {
      const m = await mergeAtUser();
      const merge = (over: Partial<typeof m.request>) => refusal(token.mergeWallets({ ...m.request, ...over }));
      const every = { code: Code.InvalidArgument, message: "releases must answer the release read of every registered app, each once" };
      for (const side of ["releases", "otherReleases"] as const) {
        const answers = m.request[side];
        expect(await merge({ [side]: answers.slice(1) }), `${side}: missing`).to.deep.equal(every);
        expect(await merge({ [side]: answers.filter((a) => a.clientId !== "app-b") }), `${side}: app b hidden`).to.deep.equal(every);
        expect(await merge({ [side]: [...answers, answers[0]!] }), `${side}: twice`).to.deep.equal(every);
        expect(await merge({ [side]: [...answers, { ...answers[0]!, clientId: "app-unknown" } as ReleaseAnswer] }), `${side}: unknown app`).to.deep.equal({
          code: Code.InvalidArgument, message: "a release answer names an app that is not registered",
        });
        expect(await merge({ [side]: answers.map((a) => ({ ...a, answer: { case: undefined } }) as ReleaseAnswer) }), `${side}: no answer`).to.deep.equal({
          code: Code.InvalidArgument, message: "each release answer needs the release as read, or the Error Token of its read",
        });
      }
      // Each user's answers given as the other's.
      expect(await merge({ releases: m.request.otherReleases, otherReleases: m.request.releases })).to.deep.equal({
        code: Code.PermissionDenied, message: "the release receipt does not show this release record stored for this session",
      });
      // The earlier user's "no release" at app b: Storage's answer to the later user's read there, or to another merge session's read of it.
      const b = appIndex("app-b");
      const other = await mergeAtUser();
      const withAnswerAtB = (answer: ReleaseAnswer["answer"]) => m.request.otherReleases.map((a, i) => (i === b ? { ...a, answer } as ReleaseAnswer : a));
      const notThisRead = { code: Code.PermissionDenied, message: "the error token does not answer this session's release read" };
      expect(await merge({ otherReleases: withAnswerAtB({ case: "errorToken", value: await absent(m.authorized.releaseReads[b]) }) })).to.deep.equal(notThisRead);
      expect(await merge({ otherReleases: withAnswerAtB({ case: "errorToken", value: await absent(other.authorized.otherReleaseReads[b]) }) })).to.deep.equal(notThisRead);
      // The later user's release at app b hidden behind the Error Token of another read.
      const hidden = m.request.releases.map((a, i) => (i === b ? { ...a, answer: { case: "errorToken", value: other.request.otherReleases[b]!.answer.value } } as ReleaseAnswer : a));
      expect(await merge({ releases: hidden })).to.deep.equal(notThisRead);
      // Another user's release at app a, with Storage's word that it answers this session's read: the later user's as the earlier's, or Alice's.
      const a = appIndex("app-a");
      const alicesAtA = rows.get(releaseHash(lookupKey, record("subject", rows.get(subjectHash(lookupKey, upstream.devOp.issuer, USERS.alice.sub))!).uid, "app-a"))!;
      for (const stranger of [rows.get(releaseHash(lookupKey, late, "app-a"))!, alicesAtA]) {
        const answer = { case: "release", value: await readOf(m.authorized.otherReleaseReads[a], stranger) } as ReleaseAnswer["answer"];
        const answers = m.request.otherReleases.map((x, i) => (i === a ? { ...x, answer } as ReleaseAnswer : x));
        expect(await merge({ otherReleases: answers })).to.deep.equal({
          code: Code.PermissionDenied, message: "the release record is not this session's user and client",
        });
      }
      // Twin: every answer as read.
      expect((await token.mergeWallets(m.request)).releases).to.have.length(2);
    });

    it("a merge writes at most 64 records (one WriteRecords): 64 is minted, 65 refused", async function () {
      const m = await mergeAtUser();
      // The later (merged) wallet with more accounts: 2 wallet writes, 2 + n accounts, 3 for each of its 2 releases.
      const filled = (n: number) => resigned(m.request.wallet.record, (w) => ({
        ...w, subjects: [...w.subjects, ...Array.from({ length: n }, (_, i) => ({ iss: iss("south"), sub: `filler-${i}` }))],
      }));
      const at64 = await token.mergeWallets({ ...m.request, wallet: await readOf(m.authorized.walletRead, await filled(54)) });
      expect(1 + 1 + at64.subjects.length + 3 * at64.releases.length).to.equal(64);
      expect(await refusal(token.mergeWallets({ ...m.request, wallet: await readOf(m.authorized.walletRead, await filled(55)) }))).to.deep.equal({
        code: Code.PermissionDenied, message: "this merge would write 65 records, more than the 64 one WriteRecords takes",
      });
    });

    it("honest, written: every account signs in to the survivor; the app told the other sub in merged_subs (ID Token, userinfo), the app that knew one sub is told none", async function () {
      const m = await mergeAtUser();
      const res = await token.mergeWallets(m.request);
      // Storage writes it all (a delete drops the row).
      await store(res.wallet);
      for (const s of res.subjects) await store(s.update);
      for (const r of res.releases) {
        await store(r.reservationUpdate);
        await store(r.releaseUpdate ?? r.releaseCreate);
        rows.delete(r.mergedReleaseDelete!.hash);
      }
      rows.delete(res.mergedWalletDelete!.hash);

      for (const [provider, user] of [["north", USERS.carol], ["south", USERS.carol]] as const) {
        const atA = await mintAt(provider, user, "a");
        const t = Math.floor(clock.now().getTime() / 1000);
        const idKey = activeKey(keys, "id-token", "RS256");
        const { payload } = await jwtVerify(atA.idToken, createPublicKey(idKey.privateKey), { issuer: ISSUER, audience: "app-a", currentDate: clock.now() });
        expect(payload, provider).to.deep.include({ sub: earlyAtA.directed_id, merged_subs: [lateAtA.directed_id], email: USERS.carol.email, iat: t });
        expect(JSON.parse(atA.userinfoJson), provider).to.deep.equal({ sub: earlyAtA.directed_id, email: USERS.carol.email, merged_subs: [lateAtA.directed_id] });
        expect(decodeJwt(atA.userinfoJwt), provider).to.deep.include({ sub: earlyAtA.directed_id, email: USERS.carol.email, merged_subs: [lateAtA.directed_id] });
        // App b knew the later wallet only: its sub, and no merged_subs.
        const atB = await mintAt(provider, user, "b");
        expect(decodeJwt(atB.idToken), provider).to.include({ sub: lateAtB.directed_id }).and.not.have.property("merged_subs");
        expect(JSON.parse(atB.userinfoJson), provider).to.deep.equal({ sub: lateAtB.directed_id, email: USERS.carol.email });
        expect(decodeJwt(atB.userinfoJwt), provider).to.include({ sub: lateAtB.directed_id }).and.not.have.property("merged_subs");
      }
      // The recovery account stays one, of the survivor's wallet.
      const moved = rows.get(subjectHash(lookupKey, iss("south"), BOB_AT_WORK.sub))!;
      expect(decodeProtectedHeader(moved).typ).to.equal(RECOVERY_SUBJECT_RECORD.typ);
      expect(record("subject", moved).uid).to.equal(early);
      expect(rows.has(walletHash(lookupKey, late))).to.equal(false);
    });
  });

  describe("GetKeySet: the app-facing keys only, signed with the key-set key", function () {
    it("publishes every id-token and userinfo key (next and retired too) and no internal key", async function () {
      const next = { ...generateSigningKey("id-token", "ES256"), status: "next" as const };
      const retired = { ...generateSigningKey("userinfo", "EdDSA"), status: "retired" as const, retired: new Date(clock.now().getTime() - 3_600_000).toISOString() };
      const nextSession = { ...generateSigningKey("session"), status: "next" as const };
      const all = [...keys, next, retired, nextSession];
      const res = await tokenInMemory(deps({ keys: () => all })).getKeySet({});
      const published = (JSON.parse(Buffer.from(res.jwks).toString()) as { keys: Array<Record<string, unknown>> }).keys;
      expect(published.map((k) => k.kid)).to.deep.equal(all.filter((k) => k.purpose === "id-token" || k.purpose === "userinfo").map((k) => k.kid));
      expect(published.find((k) => k.kid === retired.kid)).to.include({ retired: retired.retired });
      expect(published.some((k) => "d" in k || "p" in k)).to.equal(false);
      expect(published.find((k) => k.kid === next.kid)).to.deep.equal(publicJwk(next));

      const keySet = activeKey(keys, "key-set");
      const [header, , signature] = res.signature.split(".");
      const verified = await compactVerify(`${header}.${Buffer.from(res.jwks).toString("base64url")}.${signature}`, createPublicKey(keySet.privateKey));
      expect(verified.protectedHeader).to.deep.equal({ alg: keySet.alg, kid: keySet.kid, typ: "hello-key-set" });
    });
  });
});
