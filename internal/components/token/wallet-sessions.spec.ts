// Token's credential-wallet records (docs/wallet-server.md; wallet-sessions.ts and the
// wallet RPCs of token-service.ts), in memory as wallet-access.spec.ts does it: Token's
// real routes with the mesh's error mapping, keys made here, a clock the test holds, a
// real upstream provider (the development OP, in this process) for the Wallet Client's
// logins, and Storage's part played by the test with Storage's keys (rows kept, versions
// counted, receipts signed).
//
//   AuthorizeWalletCall    the call token and its reads (holdings, wallet, session, credential)
//   BeginS2sSession        the session record and the holdings, at an allowed issuer
//   AttestS2sSession       the WSK attestation of the caller's own session
//   RecordS2sStatus        monotonic statuses; an issuer's notice only moves its own
//   RecordS2sInstances     only for APPROVED, approved configurations, once
//   UpdateCredential       the issuer's JWE, then confirmed
//   GrantCredentialReads   reads of the credentials the holdings list
//   AuthorizeIssuerNotice  an issuer's notification: its own session only
//   ListWalletIssuers      the allow-list, countersigned, public keys only

import { generateKeyPairSync, randomBytes, randomUUID } from "node:crypto";
import { expect } from "chai";
import { Code, type Client } from "@connectrpc/connect";
import { type JWK, type JWTPayload, type JSONWebKeySet, createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from "jose";
import type { AccessGrant, AuthorizeWalletCallResponse, RecordWrite, TokenService } from "../../gen/hello/token/v1/token_service_pb.js";
import type { RegisteredClient } from "../../config/component-config.js";
import { type DpopKey, createDpopProof, generateDpopKey, jwkThumbprint } from "../../protocol/dpop.js";
import { sha256, sign } from "../../protocol/jws.js";
import { WALLET_KEYS } from "../../protocol/key-files.js";
import { credentialHash, holdingsHash, s2sSessionHash, walletHash } from "../../protocol/lookup-key.js";
import { activeKey, generateSigningKey } from "../../protocol/signing-keys.js";
import {
  type AccessClaims,
  ERROR_TOKEN,
  type ErrorClaims,
  RECEIPT,
  type ReceiptClaims,
  type RecordClaims,
  SESSION_TOKEN,
  WALLET_CALL_TOKEN,
  type WalletCallClaims,
} from "../../protocol/tokens.js";
import { verifyWskAttestation } from "../../s2s/wsk-attestation.js";
import type { DevUser } from "../../dev/devop/dev-op.js";
import { storageKeyPair } from "../../../test/support/storage-keys.js";
import { outcomeOf, refusal } from "../../../test/support/refusal.js";
import { APPS, Clock, ISSUER, USERS, type Upstream, appParameters, startUpstream, tokenInMemory, tokenSigningKeys } from "../../../test/support/token-harness.js";
import type { TokenServiceDeps } from "./token-service.js";
import type { WalletIssuerEntry } from "./wallet-sessions.js";

const grantOf = (grant: AccessGrant | undefined) => decodeJwt(grant!.accessToken) as AccessClaims & JWTPayload & { jti: string; version?: number };
const record = <K extends keyof RecordClaims>(_kind: K, jws: string) => decodeJwt(jws) as RecordClaims[K] & JWTPayload;
const kidPurpose = (jws: string) => String(decodeProtectedHeader(jws).kid).split(".")[0];
const callClaims = (callToken: string) => decodeJwt(callToken) as WalletCallClaims & JWTPayload;

/** The Wallet Client in Token's registry: public, native, DPoP-bound (docs/wallet-server.md). */
const WALLET = {
  client_id: "hello-wallet",
  redirect_uris: ["http://127.0.0.1/callback", "http://[::1]/callback"],
  id_token_signed_response_alg: "ES256",
  application_type: "native",
  dpop_bound_access_tokens: true,
} as const satisfies RegisteredClient;
const LOOPBACK = "http://127.0.0.1:54321/callback";
const CALL_URL = `${ISSUER}/wallet/api/initiate`;

/** Two issuers on Token's allow-list, and one that is not. */
const X = "https://issuer-x.example";
const Y = "https://issuer-y.example";
const UNLISTED = "https://issuer-z.example";

/** A P-256 key pair as JWKs (the private one keeps `d`). */
function p256(kid?: string): { privateJwk: JWK; publicJwk: JWK } {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const extra = kid === undefined ? {} : { kid };
  return { privateJwk: { ...(privateKey.export({ format: "jwk" }) as JWK), ...extra }, publicJwk: { ...(publicKey.export({ format: "jwk" }) as JWK), ...extra } };
}

/** An allow-list entry as a careless custodian might write it: private members in both keys. */
function issuerEntry(id: string): { entry: WalletIssuerEntry; encryption: JWK; signing: JWK } {
  const encryption = p256(`${id}#hpke`);
  const signing = p256(`${id}#sig`);
  return {
    entry: {
      id,
      encryption_key: { ...encryption.privateJwk, alg: "HPKE-0", use: "enc" },
      jwks: { keys: [{ ...signing.privateJwk, alg: "ES256" }] },
      credential_configurations: { pid: { vct: `${id}/pid` }, mdl: { vct: `${id}/mdl`, display: [{ name: "Driving licence" }] } },
    },
    encryption: { ...encryption.publicJwk, alg: "HPKE-0", use: "enc" },
    signing: { ...signing.publicJwk, alg: "ES256" },
  };
}
const ISSUERS = { x: issuerEntry(X), y: issuerEntry(Y) };

/** One client instance of one user at the Wallet Client: its DPoP key and the wallet access token its login got. */
interface Instance {
  readonly name: string;
  readonly uid: string;
  readonly key: DpopKey;
  readonly jkt: string;
  readonly accessToken: string;
}
interface Ref {
  issuer: string;
  sessionId: string;
  credentialInstanceId?: string;
  viaSessionId?: string;
}

describe("Token: the credential wallet's records (internal/components/token/wallet-sessions.ts)", function () {
  this.timeout(10_000);
  const clock = new Clock();
  const keys = tokenSigningKeys();
  const walletKeys = WALLET_KEYS.map((s) => generateSigningKey(s.purpose, s.alg));
  const storageKeys = storageKeyPair();
  const lookupKey = randomBytes(32);
  let upstream: Upstream;
  let token: Client<typeof TokenService>;
  /** The wallet keys' public halves, as the client pins them (GetWalletKeySet). */
  let walletJwks: JSONWebKeySet;
  let alice: Instance;
  /** Alice's second client instance: another DPoP key, another login. */
  let alice2: Instance;
  let bob: Instance;

  const deps = (): TokenServiceDeps => ({
    issuer: ISSUER,
    keys: () => keys,
    storageKeys: () => storageKeys.keys,
    lookupKey,
    clients: [APPS.a, WALLET],
    upstream: upstream.verifier,
    providers: [upstream.provider],
    walletKeys: () => walletKeys,
    walletIssuers: [ISSUERS.x.entry, ISSUERS.y.entry],
    now: clock.now,
  });
  const seconds = () => Math.floor(clock.now().getTime() / 1000);

  // --- Storage's part, played with Storage's keys -------------------------------------
  //
  // Rows by hash with their version. A read is answered with the row and a receipt for
  // that read's grant; a create or update is carried out as Storage would (the grant's
  // digest, no create over a row, an update only at the version its grant names).

  const rows = new Map<string, { record: string; version: number }>();
  const absent = (grant: AccessGrant | undefined, over: Partial<ErrorClaims> = {}) => {
    const g = grantOf(grant);
    return sign(ERROR_TOKEN, storageKeys.error, { op: "read", kind: g.kind, hash: g.hash, ajti: g.jti, ...over }, { now: clock.now() });
  };
  const receipt = (grant: AccessGrant | undefined, jws: string, over: Partial<ReceiptClaims> = {}) => {
    const g = grantOf(grant);
    const claims = { op: g.op, kind: g.kind, hash: g.hash, digest: sha256(jws), version: rows.get(g.hash)?.version ?? 1, ajti: g.jti, ...over };
    return sign(RECEIPT, storageKeys.receipt, claims, { now: clock.now() });
  };
  /** Storage's answer to a read grant: the row and its receipt. */
  async function read(grant: AccessGrant | undefined): Promise<{ record: string; receipt: string }> {
    const row = rows.get(grantOf(grant).hash);
    if (!row) throw new Error("Storage holds no row at the read's hash");
    return { record: row.record, receipt: await receipt(grant, row.record) };
  }
  /** Storage carrying out a wallet record's create or update grant. */
  async function store(write: RecordWrite | undefined): Promise<string> {
    const g = grantOf(write!.grant);
    expect(g.digest, "the grant's digest").to.equal(sha256(write!.record));
    const row = rows.get(g.hash);
    if (g.op === "create") expect(row, "a create over a row").to.equal(undefined);
    else {
      expect(g.op).to.equal("update");
      expect(row, "an update of no row").to.not.equal(undefined);
      if (g.version !== undefined) expect(g.version, "the update's version").to.equal(row!.version);
    }
    rows.set(g.hash, { record: write!.record, version: (row?.version ?? 0) + 1 });
    return receipt(write!.grant, write!.record);
  }
  /** A login's write (subject, wallet, release, reservation): kept as written, over any row. */
  const keep = (write: RecordWrite | undefined) => {
    rows.set(write!.grant!.hash, { record: write!.record, version: 1 });
    return receipt(write!.grant, write!.record);
  };
  const row = <K extends keyof RecordClaims>(kind: K, hash: string) => record(kind, rows.get(hash)!.record);

  // --- logins, step by step (as wallet-access.spec.ts) ---------------------------------

  const start = (app: "a" | "wallet", dpopJkt?: string) =>
    token.createSession({
      request: { case: "parameters", value: app === "wallet" ? { ...appParameters("a"), clientId: WALLET.client_id, redirectUri: LOOPBACK, dpopJkt } : appParameters("a") },
      providerId: "dev",
    });
  async function atSubject(user: DevUser, app: "a" | "wallet", dpopJkt?: string) {
    const started = await start(app, dpopJkt);
    const up = await upstream.login(user, started.upstreamNonce);
    const authorized = await token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: up.idToken });
    return { sessionToken: authorized.sessionToken, subjectRead: authorized.subjectRead! };
  }
  async function newUser(user: DevUser) {
    const at = await atSubject(user, "a");
    const made = await token.createUser({ sessionToken: at.sessionToken, errorToken: await absent(at.subjectRead) });
    const walletReceipt = await keep(made.wallet);
    const subjectReceipt = await keep(made.subject);
    await token.commitUser({ sessionToken: made.sessionToken, walletReceipt, subjectReceipt });
  }
  /** A client instance of `user` at the Wallet Client: a DPoP key of its own, a login, its wallet access token. */
  async function instance(name: string, user: DevUser): Promise<Instance> {
    const key = await generateDpopKey();
    const jkt = await jwkThumbprint(key.publicJwk);
    const at = await atSubject(user, "wallet", jkt);
    const subjectRecord = rows.get(at.subjectRead.hash)!.record;
    const authorized = await token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord, subjectReceipt: await receipt(at.subjectRead, subjectRecord) });
    const walletRecord = rows.get(authorized.walletRead!.hash)!.record;
    const made = await token.createRelease({
      sessionToken: authorized.sessionToken, errorToken: await absent(authorized.releaseRead),
      walletRecord, walletReceipt: await receipt(authorized.walletRead, walletRecord), consentedClaims: ["email"],
    });
    await keep(made.reservation);
    const releaseReceipt = await keep(made.release);
    const minted = await token.mintIdToken({ sessionToken: made.sessionToken, subjectRecord, walletRecord, walletReceipt: "", releaseRecord: made.release!.record, releaseReceipt });
    return { name, uid: record("subject", subjectRecord).uid, key, jkt, accessToken: minted.walletAccessToken };
  }

  // --- the wallet API's calls, as Orchestration drives them -----------------------------

  /** AuthorizeWalletCall for `who`'s call (a fresh proof of its key), about `ref` if given. */
  async function call(who: Instance, ref?: Ref): Promise<AuthorizeWalletCallResponse> {
    const dpopProof = await createDpopProof(who.key, { method: "POST", url: CALL_URL, accessToken: who.accessToken, now: seconds() });
    return token.authorizeWalletCall({
      accessToken: who.accessToken, dpopProof, method: "POST", url: CALL_URL,
      ...(ref ? { session: { issuer: ref.issuer, sessionId: ref.sessionId, credentialInstanceId: ref.credentialInstanceId ?? "", viaSessionId: ref.viaSessionId ?? "" } } : {}),
    });
  }
  /** The holdings read's answer: the record, or Storage's Error Token. */
  async function holdingsAnswer(c: AuthorizeWalletCallResponse) {
    return rows.has(c.holdingsRead!.hash)
      ? { answer: { case: "record" as const, value: await read(c.holdingsRead) } }
      : { answer: { case: "errorToken" as const, value: await absent(c.holdingsRead) } };
  }
  const wskOf = () => p256().publicJwk;
  /** A new session of `who` at `issuer`, both writes stored. */
  async function begin(who: Instance, issuer = X, wsk: JWK = wskOf()): Promise<{ sessionId: string; wsk: JWK }> {
    const c = await call(who);
    const res = await token.beginS2sSession({ callToken: c.callToken, issuer, wsk: JSON.stringify(wsk), holdings: await holdingsAnswer(c) });
    await store(res.session);
    await store(res.holdings);
    return { sessionId: res.sessionId, wsk };
  }
  const statusJson = (sessionId: string, verificationId: string, status: string, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ sessionId, verificationId, status, ...extra });
  const approvedJson = (sessionId: string, verificationId: string, configurations = ["pid"]) =>
    statusJson(sessionId, verificationId, "APPROVED", { credentialConfigurationIds: configurations });
  /** RecordS2sStatus on `who`'s call, stored. */
  async function recordStatus(who: Instance, ref: Ref, status: string) {
    const c = await call(who, ref);
    const res = await token.recordS2sStatus({ callToken: c.callToken, session: await read(c.sessionRead), status });
    if (res.session) await store(res.session);
    return res;
  }
  const instancesJson = (groups: Record<string, string[]>) =>
    JSON.stringify(Object.entries(groups).map(([credentialConfigurationId, credentialInstanceIds]) => ({ credentialConfigurationId, credentialInstanceIds })));
  /** RecordS2sInstances on `who`'s call, every write stored. */
  async function recordInstances(who: Instance, ref: Ref, verificationId: string, instances: string) {
    const c = await call(who, ref);
    const res = await token.recordS2sInstances({ callToken: c.callToken, session: await read(c.sessionRead), holdings: await read(c.holdingsRead), verificationId, instances });
    await store(res.session);
    for (const w of res.credentials) await store(w);
    await store(res.holdings);
    return res;
  }
  /** A session of `who` at `issuer` with verification v1 APPROVED for pid and an instance `instanceId` of it. */
  async function provisioned(who: Instance, issuer = X, instanceId = "i-1") {
    const { sessionId, wsk } = await begin(who, issuer);
    await recordStatus(who, { issuer, sessionId }, approvedJson(sessionId, "v1"));
    await recordInstances(who, { issuer, sessionId }, "v1", instancesJson({ pid: [instanceId] }));
    return { sessionId, wsk, ref: { issuer, sessionId, credentialInstanceId: instanceId } };
  }
  const getAnswer = (credentials: Record<string, unknown>) =>
    JSON.stringify({ credentialVersion: "1", credentials, credentialMetadata: { display: [{ name: "PID" }] } });
  const JWE = "eyJhbGciOiJIUEtFLTAiLCJraWQiOiJ3ZWsifQ.ZW5j..Y2lwaGVydGV4dA.";

  const sessionDenied = { code: Code.PermissionDenied, message: "the session belongs to another user or client instance" };
  const userOnly = { code: Code.PermissionDenied, message: "this step is a user's own call, not an issuer's notification" };
  const receiptDenied = (kind: string) => ({ code: Code.PermissionDenied, message: `the ${kind} receipt does not show this ${kind} record stored for this session` });
  const ruled = (message: string) => ({ code: Code.FailedPrecondition, message });
  const notAllowed = { code: Code.InvalidArgument, message: "the issuer is not on Token's issuer allow-list" };
  const callInvalid = (reason: string) => ({ code: Code.Unauthenticated, message: `the wallet call token is not valid: ${reason}` });

  before(async function () {
    this.timeout(30_000); // the development OP's first login warms it up
    clock.sync();
    upstream = await startUpstream();
    token = tokenInMemory(deps());
    walletJwks = JSON.parse(Buffer.from((await token.getWalletKeySet({})).jwks).toString()) as JSONWebKeySet;
    await newUser(USERS.alice);
    await newUser(USERS.bob);
    alice = await instance("alice", USERS.alice);
    alice2 = await instance("alice's other instance", USERS.alice);
    bob = await instance("bob", USERS.bob);
  });
  after(async () => upstream?.close());

  it("honest: begin, attest, APPROVED, instances, delivered, confirmed, and the credential listed", async function () {
    expect(alice.uid).to.equal(alice2.uid);
    expect(alice.jkt).to.not.equal(alice2.jkt);

    // AuthorizeWalletCall without a session: the call token and reads of the holdings and the wallet only
    const first = await call(alice);
    expect(first).to.include({ clientId: "hello-wallet", jkt: alice.jkt });
    expect(decodeProtectedHeader(first.callToken)).to.include({ typ: WALLET_CALL_TOKEN.typ });
    expect(kidPurpose(first.callToken)).to.equal("session");
    const firstClaims = callClaims(first.callToken);
    expect(firstClaims).to.include({ uid: alice.uid, client_id: "hello-wallet", jkt: alice.jkt });
    expect(firstClaims.exp! - firstClaims.iat!).to.equal(120);
    expect(firstClaims).to.not.have.property("session");
    expect(grantOf(first.holdingsRead)).to.include({ op: "read", kind: "holdings", hash: holdingsHash(lookupKey, alice.uid) });
    expect(grantOf(first.walletRead)).to.include({ op: "read", kind: "wallet", hash: walletHash(lookupKey, alice.uid) });
    expect(firstClaims.reads).to.deep.equal({ holdings: grantOf(first.holdingsRead).jti, wallet: grantOf(first.walletRead).jti });
    expect(first.sessionRead).to.equal(undefined);
    expect(first.credentialRead).to.equal(undefined);

    // BeginS2sSession on Storage's "no holdings": the session record and the holdings, both creates
    expect(rows.has(holdingsHash(lookupKey, alice.uid)), "Alice has no holdings yet").to.equal(false);
    const wsk = { ...wskOf(), alg: "ES256", kid: "wsk-1" };
    const begun = await token.beginS2sSession({ callToken: first.callToken, issuer: X, wsk: JSON.stringify(wsk), holdings: await holdingsAnswer(first) });
    const sessionId = begun.sessionId;
    expect(sessionId).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const sessionAt = s2sSessionHash(lookupKey, X, sessionId);
    expect(grantOf(begun.session!.grant)).to.include({ op: "create", kind: "s2s-session", hash: sessionAt });
    expect(grantOf(begun.holdings!.grant)).to.include({ op: "create", kind: "holdings", hash: holdingsHash(lookupKey, alice.uid) });
    expect(grantOf(begun.holdings!.grant).ejti).to.be.a("string");
    expect(decodeProtectedHeader(begun.session!.record).typ).to.equal("hello-s2s-session-record+jwt");
    const { iss: _iss, aud: _aud, iat: _iat, ...made } = record("s2s-session", begun.session!.record);
    expect(made).to.deep.equal({
      issuer: X, session_id: sessionId, uid: alice.uid, jkt: alice.jkt, wsk: { kty: "EC", crv: "P-256", x: wsk.x, y: wsk.y }, created: seconds(), verifications: [], instances: [],
    });
    expect(record("holdings", begun.holdings!.record)).to.deep.include({ uid: alice.uid, sessions: [{ issuer: X, session_id: sessionId }] });
    await store(begun.session);
    await store(begun.holdings);
    const ref = { issuer: X, sessionId };

    // AuthorizeWalletCall with the session: a read of its record too
    const second = await call(alice, ref);
    expect(grantOf(second.sessionRead)).to.include({ op: "read", kind: "s2s-session", hash: sessionAt });
    expect(callClaims(second.callToken).session).to.deep.equal({ issuer: X, session_id: sessionId });
    expect(callClaims(second.callToken).reads.session).to.equal(grantOf(second.sessionRead).jti);
    const sessionRead = await read(second.sessionRead);

    // AttestS2sSession: the issuer's check passes, for this issuer, session, WSK and client instance
    const { attestation } = await token.attestS2sSession({ callToken: second.callToken, session: sessionRead });
    expect(decodeProtectedHeader(attestation)).to.include({ alg: "ES256", typ: "wsk-attestation+jwt" });
    expect(kidPurpose(attestation)).to.equal("wallet");
    const attested = await verifyWskAttestation(attestation, walletJwks, { walletServer: ISSUER, issuerId: X, sessionId, wsk }, { now: seconds() });
    expect(attested).to.deep.equal({ dpopJkt: alice.jkt });
    const attestationClaims = decodeJwt(attestation);
    expect(attestationClaims).to.include({ iss: ISSUER, aud: X, sessionId });
    expect(attestationClaims.jwk).to.deep.equal({ kty: "EC", crv: "P-256", x: wsk.x, y: wsk.y });
    expect(attestationClaims.cnf).to.deep.equal({ jkt: alice.jkt });
    expect(attestationClaims, "it names no user").to.not.have.any.keys("sub", "uid");
    // the issuer's twin check: another issuer, session or WSK does not verify
    for (const expected of [{ issuerId: Y, sessionId, wsk }, { issuerId: X, sessionId: "other", wsk }, { issuerId: X, sessionId, wsk: wskOf() }]) {
      expect(await outcomeOf(verifyWskAttestation(attestation, walletJwks, { walletServer: ISSUER, ...expected }, { now: seconds() })), expected.issuerId).to.not.equal("ok");
    }

    // RecordS2sStatus: the issuer's APPROVED, a new verification of the user's call
    const approved = await token.recordS2sStatus({ callToken: second.callToken, session: sessionRead, status: approvedJson(sessionId, "v1", ["pid", "mdl"]) });
    expect(grantOf(approved.session!.grant)).to.include({ op: "update", kind: "s2s-session", hash: sessionAt, version: 1 });
    expect(record("s2s-session", approved.session!.record).verifications).to.deep.equal([
      { verification_id: "v1", status: "APPROVED", credential_configuration_ids: ["pid", "mdl"], updated: seconds() },
    ]);
    await store(approved.session);

    // RecordS2sInstances: the session, a credential record per instance (IN_PROCESS), the holdings
    const third = await call(alice, ref);
    const provisioned = await token.recordS2sInstances({
      callToken: third.callToken, session: await read(third.sessionRead), holdings: await read(third.holdingsRead), verificationId: "v1",
      instances: instancesJson({ pid: ["i-1"], mdl: ["i-2"] }),
    });
    expect(grantOf(provisioned.session!.grant)).to.include({ op: "update", hash: sessionAt, version: 2 });
    expect(record("s2s-session", provisioned.session!.record).instances).to.deep.equal([
      { credential_instance_id: "i-1", credential_configuration_id: "pid", verification_id: "v1" },
      { credential_instance_id: "i-2", credential_configuration_id: "mdl", verification_id: "v1" },
    ]);
    expect(provisioned.credentials.map((w) => ({ op: grantOf(w.grant).op, hash: grantOf(w.grant).hash }))).to.deep.equal([
      { op: "create", hash: credentialHash(lookupKey, X, sessionId, "i-1") },
      { op: "create", hash: credentialHash(lookupKey, X, sessionId, "i-2") },
    ]);
    const { iss: _ci, aud: _ca, iat: _ct, ...credential } = record("credential", provisioned.credentials[0]!.record);
    expect(credential).to.deep.equal({
      issuer: X, session_id: sessionId, credential_instance_id: "i-1", credential_configuration_id: "pid", uid: alice.uid, jkt: alice.jkt, status: "IN_PROCESS", updated: seconds(),
    });
    expect(grantOf(provisioned.holdings!.grant)).to.include({ op: "update", version: 1 });
    expect(record("holdings", provisioned.holdings!.record).sessions).to.deep.equal([{ issuer: X, session_id: sessionId, instances: ["i-1", "i-2"] }]);
    await store(provisioned.session);
    for (const w of provisioned.credentials) await store(w);
    await store(provisioned.holdings);

    // UpdateCredential: delivered (the issuer's JWE to the WEK), then confirmed (ACTIVE)
    const instanceRef = { ...ref, credentialInstanceId: "i-1" };
    const credentialAt = credentialHash(lookupKey, X, sessionId, "i-1");
    const fourth = await call(alice, instanceRef);
    expect(grantOf(fourth.credentialRead)).to.include({ op: "read", kind: "credential", hash: credentialAt });
    expect(callClaims(fourth.callToken).session).to.deep.equal({ issuer: X, session_id: sessionId, credential_instance_id: "i-1" });
    const got = await token.updateCredential({ callToken: fourth.callToken, credential: await read(fourth.credentialRead), change: { case: "delivered", value: getAnswer({ jwe: JWE, origin: "ISSUER" }) } });
    expect(grantOf(got.credential!.grant)).to.include({ op: "update", hash: credentialAt, version: 1 });
    expect(record("credential", got.credential!.record)).to.deep.include({
      status: "IN_PROCESS", version: "1", metadata: { display: [{ name: "PID" }] }, credentials: { jwe: JWE, origin: "ISSUER" },
    });
    await store(got.credential);
    const fifth = await call(alice, instanceRef);
    const done = await token.updateCredential({ callToken: fifth.callToken, credential: await read(fifth.credentialRead), change: { case: "confirmed", value: true } });
    expect(grantOf(done.credential!.grant)).to.include({ op: "update", version: 2 });
    expect(record("credential", done.credential!.record)).to.deep.include({ status: "ACTIVE", credentials: { jwe: JWE, origin: "ISSUER" } });
    await store(done.credential);

    // GrantCredentialReads: a read of each instance the holdings list, and the call token with them
    const sixth = await call(alice);
    const listed = await token.grantCredentialReads({ callToken: sixth.callToken, holdings: await read(sixth.holdingsRead) });
    const hashes = listed.credentialReads.map((g) => grantOf(g).hash);
    expect(hashes).to.deep.equal([credentialAt, credentialHash(lookupKey, X, sessionId, "i-2")]);
    expect(listed.credentialReads.map((g) => grantOf(g).op)).to.deep.equal(["read", "read"]);
    const renewed = callClaims(listed.callToken);
    expect(renewed).to.include({ uid: alice.uid, jkt: alice.jkt, client_id: "hello-wallet" });
    expect(renewed.reads).to.deep.equal({
      ...callClaims(sixth.callToken).reads,
      credentials: Object.fromEntries(listed.credentialReads.map((g) => [grantOf(g).hash, grantOf(g).jti])),
    });
    // what the first read gets from Storage: the ACTIVE credential with the issuer's JWE
    expect(record("credential", (await read(listed.credentialReads[0])).record)).to.deep.include({ status: "ACTIVE", uid: alice.uid, credentials: { jwe: JWE, origin: "ISSUER" } });
  });

  describe("1. the session is the caller's: its user and its client instance", function () {
    it("Bob's own valid call, asking for Alice's session, with Storage's receipt for his read of it: PERMISSION_DENIED (twin: Alice)", async function () {
      const { sessionId } = await begin(alice);
      await recordStatus(alice, { issuer: X, sessionId }, statusJson(sessionId, "v1", "PENDING"));
      const ref = { issuer: X, sessionId };
      for (const who of [bob, alice2]) {
        const c = await call(who, ref);
        // Token granted the read (it cannot know whose the session is before it is read), and Storage answered it
        expect(grantOf(c.sessionRead).hash).to.equal(s2sSessionHash(lookupKey, X, sessionId));
        const stolen = await read(c.sessionRead);
        expect(await refusal(token.attestS2sSession({ callToken: c.callToken, session: stolen }), `${who.name}: attest`)).to.deep.equal(sessionDenied);
        expect(await refusal(token.recordS2sStatus({ callToken: c.callToken, session: stolen, status: approvedJson(sessionId, "v1") }), `${who.name}: status`)).to.deep.equal(sessionDenied);
        expect(await refusal(token.recordS2sStatus({ callToken: c.callToken, session: stolen, status: statusJson(sessionId, "v2", "PENDING") }), `${who.name}: new verification`)).to.deep.equal(sessionDenied);
        // the session is checked before the holdings are looked at
        const holdings = rows.has(c.holdingsRead!.hash) ? await read(c.holdingsRead) : undefined;
        expect(await refusal(token.recordS2sInstances({ callToken: c.callToken, session: stolen, ...(holdings ? { holdings } : {}), verificationId: "v1", instances: instancesJson({ pid: ["i-x"] }) }), `${who.name}: instances`))
          .to.deep.equal(sessionDenied);
      }
      // twin: Alice's own instance, the same steps
      const c = await call(alice, ref);
      expect((await token.attestS2sSession({ callToken: c.callToken, session: await read(c.sessionRead) })).attestation).to.be.a("string");
      expect((await token.recordS2sStatus({ callToken: c.callToken, session: await read(c.sessionRead), status: approvedJson(sessionId, "v1") })).session).to.not.equal(undefined);
    });

    it("Bob's call with his own holdings but Alice's session (APPROVED): RecordS2sInstances is PERMISSION_DENIED", async function () {
      await begin(bob, Y); // Bob has holdings
      const { sessionId } = await begin(alice);
      await recordStatus(alice, { issuer: X, sessionId }, approvedJson(sessionId, "v1"));
      const c = await call(bob, { issuer: X, sessionId });
      expect(await refusal(token.recordS2sInstances({
        callToken: c.callToken, session: await read(c.sessionRead), holdings: await read(c.holdingsRead), verificationId: "v1", instances: instancesJson({ pid: ["i-b"] }),
      }))).to.deep.equal(sessionDenied);
      expect(row("s2s-session", s2sSessionHash(lookupKey, X, sessionId)).instances).to.deep.equal([]);
    });

    it("Bob's call on Alice's credential record (read with his grant): UpdateCredential is PERMISSION_DENIED", async function () {
      const { ref } = await provisioned(alice);
      const c = await call(bob, ref);
      expect(await refusal(token.updateCredential({ callToken: c.callToken, credential: await read(c.credentialRead), change: { case: "delivered", value: getAnswer({ jwe: JWE, origin: "ISSUER" }) } }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the credential record is not the calling client instance's",
      });
    });

    it("Bob's holdings read answered with Alice's holdings (even with a receipt that says so): PERMISSION_DENIED", async function () {
      await begin(alice);
      const c = await call(bob);
      const aliceHoldings = rows.get(holdingsHash(lookupKey, alice.uid))!.record;
      const forged = { record: aliceHoldings, receipt: await receipt(c.holdingsRead, aliceHoldings) };
      expect(await refusal(token.beginS2sSession({ callToken: c.callToken, issuer: X, wsk: JSON.stringify(wskOf()), holdings: { answer: { case: "record", value: forged } } }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the holdings are another user's",
      });
      expect(await refusal(token.grantCredentialReads({ callToken: c.callToken, holdings: forged }))).to.deep.equal({ code: Code.PermissionDenied, message: "the holdings are another user's" });
    });

    // Every session step checks the record's user AND client instance (uid, jkt); a
    // credential record carries its session's jkt, so Alice's other client instance (one
    // that never held the session's WSK) gets no update of an instance it does not hold.
    it("UpdateCredential of a session's instance from Alice's other client instance is PERMISSION_DENIED, as every session step is", async function () {
      const { ref } = await provisioned(alice, X, "i-other-instance");
      const c = await call(alice2, ref);
      const credential = await read(c.credentialRead);
      expect(await refusal(token.updateCredential({ callToken: c.callToken, credential, change: { case: "delivered", value: getAnswer({ jwe: JWE, origin: "ISSUER" }) } }), "another instance's delivered"))
        .to.have.property("code", Code.PermissionDenied);
    });
  });

  describe("2. a record enters a call only as Storage's answer to that call's own read", function () {
    it("a receipt for another call's read, for the session's create, or none: refused (twin: this call's)", async function () {
      const { sessionId } = await begin(alice);
      const ref = { issuer: X, sessionId };
      const c = await call(alice, ref);
      const other = await call(alice, ref);
      const { record: jws } = await read(c.sessionRead);
      const status = statusJson(sessionId, "v1", "PENDING");
      // another call's read (the same user, instance and session)
      const otherReceipt = (await read(other.sessionRead)).receipt;
      expect(await refusal(token.recordS2sStatus({ callToken: c.callToken, session: { record: jws, receipt: otherReceipt }, status }))).to.deep.equal(receiptDenied("s2s-session"));
      expect(await refusal(token.attestS2sSession({ callToken: c.callToken, session: { record: jws, receipt: otherReceipt } }))).to.deep.equal(receiptDenied("s2s-session"));
      // a receipt for another op of this call's grant jti, another hash, or another digest
      expect(await refusal(token.recordS2sStatus({ callToken: c.callToken, session: { record: jws, receipt: await receipt(c.sessionRead, jws, { op: "create" }) }, status }))).to.deep.equal(receiptDenied("s2s-session"));
      expect(await refusal(token.recordS2sStatus({ callToken: c.callToken, session: { record: jws, receipt: await receipt(c.sessionRead, jws, { hash: holdingsHash(lookupKey, alice.uid) }) }, status }))).to.deep.equal(receiptDenied("s2s-session"));
      expect(await refusal(token.recordS2sStatus({ callToken: c.callToken, session: { record: jws, receipt: await receipt(c.sessionRead, jws, { kind: "credential" }) }, status }))).to.deep.equal(receiptDenied("s2s-session"));
      // no receipt, no record
      expect(await refusal(token.recordS2sStatus({ callToken: c.callToken, session: { record: jws, receipt: "" }, status }))).to.deep.equal({
        code: Code.InvalidArgument, message: "the s2s-session receipt is required: Storage's receipt for this session's s2s-session read",
      });
      expect(await refusal(token.recordS2sStatus({ callToken: c.callToken, status }))).to.deep.equal({ code: Code.InvalidArgument, message: "the s2s-session record is required" });
      expect(await refusal(token.attestS2sSession({ callToken: c.callToken }))).to.deep.equal({ code: Code.InvalidArgument, message: "the s2s-session record is required" });
      // twin
      expect((await token.recordS2sStatus({ callToken: c.callToken, session: await read(c.sessionRead), status })).session).to.not.equal(undefined);
    });

    it("an older version of the record with this read's receipt (of the current one) is refused: no rollback", async function () {
      const { sessionId } = await begin(alice);
      const ref = { issuer: X, sessionId };
      const old = rows.get(s2sSessionHash(lookupKey, X, sessionId))!.record;
      await recordStatus(alice, ref, approvedJson(sessionId, "v1"));
      const c = await call(alice, ref);
      const current = await read(c.sessionRead);
      expect(await refusal(token.recordS2sStatus({ callToken: c.callToken, session: { record: old, receipt: current.receipt }, status: statusJson(sessionId, "v1", "PENDING") }))).to.deep.equal(receiptDenied("s2s-session"));
      expect(await refusal(token.recordS2sInstances({ callToken: c.callToken, session: { record: old, receipt: current.receipt }, holdings: await read(c.holdingsRead), verificationId: "v1", instances: instancesJson({ pid: ["i"] }) })))
        .to.deep.equal(receiptDenied("s2s-session"));
    });

    it("holdings: another call's Error Token or receipt, or no answer at all, is refused", async function () {
      await begin(alice);
      const c = await call(alice);
      const other = await call(alice);
      const wsk = JSON.stringify(wskOf());
      expect(await refusal(token.beginS2sSession({ callToken: c.callToken, issuer: X, wsk, holdings: { answer: { case: "errorToken", value: await absent(other.holdingsRead) } } }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the error token does not answer this session's holdings read",
      });
      expect(await refusal(token.beginS2sSession({ callToken: c.callToken, issuer: X, wsk, holdings: { answer: { case: "record", value: await read(other.holdingsRead) } } }))).to.deep.equal(receiptDenied("holdings"));
      expect(await refusal(token.grantCredentialReads({ callToken: c.callToken, holdings: await read(other.holdingsRead) }))).to.deep.equal(receiptDenied("holdings"));
      expect(await refusal(token.beginS2sSession({ callToken: c.callToken, issuer: X, wsk }))).to.deep.equal({
        code: Code.InvalidArgument, message: "the holdings read's answer is required: the record, or Storage's Error Token",
      });
      // twin
      expect((await token.beginS2sSession({ callToken: c.callToken, issuer: X, wsk, holdings: await holdingsAnswer(c) })).sessionId).to.be.a("string");
    });

    it("a credential record with another call's receipt, or a call that names no instance: refused", async function () {
      const { ref } = await provisioned(alice);
      const c = await call(alice, ref);
      const other = await call(alice, ref);
      const { record: jws } = await read(c.credentialRead);
      const change = { case: "confirmed" as const, value: true };
      expect(await refusal(token.updateCredential({ callToken: c.callToken, credential: { record: jws, receipt: (await read(other.credentialRead)).receipt }, change }))).to.deep.equal(receiptDenied("credential"));
      const noInstance = await call(alice, { issuer: ref.issuer, sessionId: ref.sessionId });
      expect(await refusal(token.updateCredential({ callToken: noInstance.callToken, credential: { record: jws, receipt: (await read(c.credentialRead)).receipt }, change }))).to.deep.equal(
        ruled("the wallet call names no credential instance"),
      );
    });
  });

  describe("3. an issuer's notice: its own session, and only a status of a verification it has", function () {
    const notice = (issuer: string, sessionId: string, credentialInstanceId = "") => token.authorizeIssuerNotice({ session: { issuer, sessionId, credentialInstanceId } });

    it("honest: the notice for X moves X's session's PENDING verification to APPROVED; its call token names no user", async function () {
      const { sessionId } = await begin(alice);
      await recordStatus(alice, { issuer: X, sessionId }, statusJson(sessionId, "v1", "PENDING"));
      const n = await notice(X, sessionId);
      const claims = callClaims(n.callToken);
      expect(claims).to.include({ notice_issuer: X });
      expect(claims).to.not.have.any.keys("uid", "jkt", "client_id");
      expect(claims.session).to.deep.equal({ issuer: X, session_id: sessionId });
      expect(grantOf(n.sessionRead)).to.include({ op: "read", kind: "s2s-session", hash: s2sSessionHash(lookupKey, X, sessionId) });
      expect(claims.reads).to.deep.equal({ session: grantOf(n.sessionRead).jti });
      const res = await token.recordS2sStatus({ callToken: n.callToken, session: await read(n.sessionRead), status: approvedJson(sessionId, "v1") });
      expect(record("s2s-session", res.session!.record).verifications).to.deep.equal([{ verification_id: "v1", status: "APPROVED", credential_configuration_ids: ["pid"], updated: seconds() }]);
    });

    it("the notice for X used on Y's session: refused, with Y's read's receipt or even a receipt for its own read", async function () {
      const { sessionId } = await begin(alice, Y);
      await recordStatus(alice, { issuer: Y, sessionId }, statusJson(sessionId, "v1", "PENDING"));
      const n = await notice(X, sessionId);
      expect(grantOf(n.sessionRead).hash).to.equal(s2sSessionHash(lookupKey, X, sessionId)); // not Y's row
      const c = await call(alice, { issuer: Y, sessionId });
      const ys = await read(c.sessionRead);
      const status = approvedJson(sessionId, "v1");
      expect(await refusal(token.recordS2sStatus({ callToken: n.callToken, session: ys, status }))).to.deep.equal(receiptDenied("s2s-session"));
      // Y's record as if Storage had it at X's hash for the notice's read
      const misplaced = { record: ys.record, receipt: await receipt(n.sessionRead, ys.record) };
      expect(await refusal(token.recordS2sStatus({ callToken: n.callToken, session: misplaced, status }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the session record is not the call's session",
      });
      expect(row("s2s-session", s2sSessionHash(lookupKey, Y, sessionId)).verifications[0]!.status).to.equal("PENDING");
      // a notice at an issuer not on the allow-list gets no read at all
      expect(await refusal(notice(UNLISTED, sessionId))).to.deep.equal(notAllowed);
      expect(await refusal(notice(X, ""))).to.deep.equal({ code: Code.InvalidArgument, message: "the notification's issuer and sessionId are required" });
    });

    it("a notice cannot add a verification: FAILED_PRECONDITION (twin: the user's call can)", async function () {
      const { sessionId } = await begin(alice);
      const n = await notice(X, sessionId);
      for (const status of [approvedJson(sessionId, "v-unknown"), statusJson(sessionId, "v-unknown", "PENDING")]) {
        expect(await refusal(token.recordS2sStatus({ callToken: n.callToken, session: await read(n.sessionRead), status }))).to.deep.equal(
          ruled("the status names a verification this session does not have"),
        );
      }
      expect((await recordStatus(alice, { issuer: X, sessionId }, approvedJson(sessionId, "v-unknown"))).session).to.not.equal(undefined);
    });

    it("a notice reads one credential record at most, and cannot attest, record instances, update a credential, list, begin or grant reads: PERMISSION_DENIED", async function () {
      const { sessionId, ref } = await provisioned(alice);
      await recordStatus(alice, { issuer: X, sessionId }, approvedJson(sessionId, "v2"));
      // A notice naming no instance reads no credential record; naming one (the issuer's
      // /credential/status), it reads that record of its own session, and changes nothing.
      expect((await notice(X, sessionId)).credentialRead).to.equal(undefined);
      const n = await notice(X, sessionId, ref.credentialInstanceId);
      expect(grantOf(n.credentialRead)).to.include({ op: "read", kind: "credential", hash: credentialHash(lookupKey, X, sessionId, ref.credentialInstanceId) });
      const session = await read(n.sessionRead);
      // The credential as Alice's own call reads it: still refused with the notice's call token.
      const credential = await read((await call(alice, ref)).credentialRead);
      const holdings = await read((await call(alice)).holdingsRead);
      expect(await refusal(token.attestS2sSession({ callToken: n.callToken, session }))).to.deep.equal({ code: Code.PermissionDenied, message: "only the user's own call gets an attestation" });
      expect(await refusal(token.recordS2sInstances({ callToken: n.callToken, session, holdings, verificationId: "v2", instances: instancesJson({ pid: ["i-n"] }) }))).to.deep.equal(userOnly);
      expect(await refusal(token.updateCredential({ callToken: n.callToken, credential, change: { case: "delivered", value: getAnswer({ jwe: JWE, origin: "ISSUER" }) } }))).to.deep.equal(userOnly);
      expect(await refusal(token.updateCredential({ callToken: n.callToken, credential, change: { case: "confirmed", value: true } }))).to.deep.equal(userOnly);
      const suspend = JSON.stringify({ sessionId, credentialInstanceId: ref.credentialInstanceId, currentStatus: "SUSPENDED_ISSUER", outcome: "COMPLETED" });
      expect(await refusal(token.updateCredential({ callToken: n.callToken, credential, change: { case: "managed", value: suspend } }))).to.deep.equal(userOnly);
      expect(await refusal(token.listWalletIssuers({ callToken: n.callToken }))).to.deep.equal(userOnly);
      expect(await refusal(token.grantCredentialReads({ callToken: n.callToken, holdings }))).to.deep.equal(userOnly);
      expect(await refusal(token.beginS2sSession({ callToken: n.callToken, issuer: X, wsk: JSON.stringify(wskOf()), holdings: { answer: { case: "record", value: holdings } } }))).to.deep.equal(userOnly);
    });
  });

  describe("4. a terminal status never moves", function () {
    it("APPROVED, then DENIED (the user's call or the issuer's notice): no write; the same status again: no write", async function () {
      const { sessionId } = await begin(alice);
      const ref = { issuer: X, sessionId };
      await recordStatus(alice, ref, approvedJson(sessionId, "v1"));
      const at = s2sSessionHash(lookupKey, X, sessionId);
      const before = rows.get(at)!;
      const denied = statusJson(sessionId, "v1", "DENIED", { reasonCode: "FRAUD", deniedMessage: "no" });
      expect((await recordStatus(alice, ref, denied)).session).to.equal(undefined);
      const n = await token.authorizeIssuerNotice({ session: { issuer: X, sessionId, credentialInstanceId: "" } });
      for (const status of [denied, statusJson(sessionId, "v1", "PENDING"), statusJson(sessionId, "v1", "EXPIRED"), approvedJson(sessionId, "v1", ["mdl"]), approvedJson(sessionId, "v1")]) {
        const res = await token.recordS2sStatus({ callToken: n.callToken, session: await read(n.sessionRead), status });
        expect(res.session, status).to.equal(undefined);
      }
      expect(rows.get(at)).to.deep.equal(before);
      expect(row("s2s-session", at).verifications.map((v) => [v.status, v.credential_configuration_ids])).to.deep.equal([["APPROVED", ["pid"]]]);
    });

    it("DENIED and EXPIRED are terminal too (twin: REJECTED moves on)", async function () {
      const { sessionId } = await begin(alice);
      const ref = { issuer: X, sessionId };
      await recordStatus(alice, ref, statusJson(sessionId, "d", "DENIED", { reasonCode: "R", deniedMessage: "m" }));
      await recordStatus(alice, ref, statusJson(sessionId, "e", "EXPIRED"));
      await recordStatus(alice, ref, statusJson(sessionId, "r", "REJECTED", { reasonCode: "BLURRY" }));
      expect((await recordStatus(alice, ref, approvedJson(sessionId, "d"))).session).to.equal(undefined);
      expect((await recordStatus(alice, ref, approvedJson(sessionId, "e"))).session).to.equal(undefined);
      expect((await recordStatus(alice, ref, approvedJson(sessionId, "r"))).session).to.not.equal(undefined);
      expect(row("s2s-session", s2sSessionHash(lookupKey, X, sessionId)).verifications.map((v) => v.status)).to.deep.equal(["DENIED", "EXPIRED", "APPROVED"]);
    });

    it("a status that is no VerificationStatus, or for another session: refused", async function () {
      const { sessionId } = await begin(alice);
      const c = await call(alice, { issuer: X, sessionId });
      const session = await read(c.sessionRead);
      for (const status of ["{", statusJson(sessionId, "v1", "DONE"), statusJson(sessionId, "v1", "APPROVED"), statusJson("not-a-uuid", "v1", "PENDING")]) {
        const r = await refusal(token.recordS2sStatus({ callToken: c.callToken, session, status }), status);
        expect(r.code, status).to.equal(Code.InvalidArgument);
      }
      const otherSession = "6f1d0c2e-1b0a-4c3d-9e8f-7a6b5c4d3e2f";
      expect(await refusal(token.recordS2sStatus({ callToken: c.callToken, session, status: statusJson(otherSession, "v1", "PENDING") }))).to.deep.equal(ruled("the status is for another session"));
    });
  });

  describe("5. RecordS2sInstances: only for APPROVED, of approved configurations, once", function () {
    it("before APPROVED, for a configuration not approved, for no verification, or the same instance twice: FAILED_PRECONDITION", async function () {
      const { sessionId } = await begin(alice);
      const ref = { issuer: X, sessionId };
      await recordStatus(alice, ref, statusJson(sessionId, "v1", "PENDING"));
      const attempt = async (verificationId: string, instances: string) => {
        const c = await call(alice, ref);
        return refusal(token.recordS2sInstances({ callToken: c.callToken, session: await read(c.sessionRead), holdings: await read(c.holdingsRead), verificationId, instances }));
      };
      const notApproved = ruled("instances are recorded only for an APPROVED verification of the session");
      expect(await attempt("v1", instancesJson({ pid: ["i-1"] }))).to.deep.equal(notApproved);
      expect(await attempt("v-none", instancesJson({ pid: ["i-1"] }))).to.deep.equal(notApproved);
      await recordStatus(alice, ref, approvedJson(sessionId, "v1", ["pid"]));
      expect(await attempt("v1", instancesJson({ mdl: ["i-1"] }))).to.deep.equal(ruled("an instance is of a configuration its verification did not approve"));
      expect(await attempt("v1", instancesJson({ pid: ["i-1", "i-1"] }))).to.deep.equal(ruled("a provision makes 1 to 16 distinct instances"));
      expect((await attempt("v1", "[]"))).to.deep.equal(ruled("a provision makes 1 to 16 distinct instances"));
      // honest once, then the same instance again
      await recordInstances(alice, ref, "v1", instancesJson({ pid: ["i-1"] }));
      expect(await attempt("v1", instancesJson({ pid: ["i-1"] }))).to.deep.equal(ruled("an instance is recorded already"));
      expect(row("s2s-session", s2sSessionHash(lookupKey, X, sessionId)).instances.map((i) => i.credential_instance_id)).to.deep.equal(["i-1"]);
      expect(row("holdings", holdingsHash(lookupKey, alice.uid)).sessions.find((s) => s.session_id === sessionId)).to.deep.equal({ issuer: X, session_id: sessionId, instances: ["i-1"] });
    });

    it("holdings that do not list the session (a stale holdings row): FAILED_PRECONDITION", async function () {
      await begin(alice);
      const stale = rows.get(holdingsHash(lookupKey, alice.uid))!;
      const { sessionId } = await begin(alice);
      const ref = { issuer: X, sessionId };
      await recordStatus(alice, ref, approvedJson(sessionId, "v1"));
      const c = await call(alice, ref);
      const holdings = { record: stale.record, receipt: await receipt(c.holdingsRead, stale.record) }; // as if Storage held the old row
      expect(await refusal(token.recordS2sInstances({ callToken: c.callToken, session: await read(c.sessionRead), holdings, verificationId: "v1", instances: instancesJson({ pid: ["i-1"] }) })))
        .to.deep.equal(ruled("the holdings do not list this session"));
    });
  });

  describe("6. UpdateCredential: the issuer's own JWE, and confirmed only once delivered", function () {
    it("a content reference, or credentials of origin WALLET_SERVER or WALLET_CLIENT: FAILED_PRECONDITION; confirm before delivery: FAILED_PRECONDITION", async function () {
      const { ref } = await provisioned(alice);
      const c = await call(alice, ref);
      const credential = await read(c.credentialRead);
      const notJwe = ruled("the credentials must be the issuer's JWE (origin ISSUER), not a reference");
      const reference = { origin: "ISSUER", downloadUrl: "https://issuer-x.example/c/1", contentDigest: sha256(JWE), contentSize: JWE.length, expiresAt: "2030-01-01T00:00:00Z" };
      for (const credentials of [reference, { ...reference, origin: "WALLET_SERVER" }, { jwe: JWE, origin: "WALLET_SERVER" }, { jwe: JWE, origin: "WALLET_CLIENT" }]) {
        expect(await refusal(token.updateCredential({ callToken: c.callToken, credential, change: { case: "delivered", value: getAnswer(credentials) } }), JSON.stringify(credentials))).to.deep.equal(notJwe);
      }
      // both (a JWE and a reference) is no get answer at all
      expect((await refusal(token.updateCredential({ callToken: c.callToken, credential, change: { case: "delivered", value: getAnswer({ ...reference, jwe: JWE }) } }))).code).to.equal(Code.InvalidArgument);
      expect(await refusal(token.updateCredential({ callToken: c.callToken, credential, change: { case: "confirmed", value: true } }))).to.deep.equal(
        ruled("a credential is confirmed only once it was delivered"),
      );
      expect(await refusal(token.updateCredential({ callToken: c.callToken, credential, change: { case: undefined } }))).to.deep.equal({
        code: Code.InvalidArgument, message: "the change is required: the get answer delivered, the metadata answer, the manage or status answer, confirmed or rejected",
      });
      expect(row("credential", grantOf(c.credentialRead).hash).status).to.equal("IN_PROCESS");
      // twin: the issuer's JWE
      expect((await token.updateCredential({ callToken: c.callToken, credential, change: { case: "delivered", value: getAnswer({ jwe: JWE, origin: "ISSUER" }) } })).credential).to.not.equal(undefined);
    });
  });

  describe("6b. UpdateCredential with the issuer's manage or status answer (the user's suspend, resume, unlink; reconciliation)", function () {
    it("takes the issuer's status; UNLINKED ends it without ciphertext and nothing moves it back; an answer for another instance or no manage answer is refused", async function () {
      const { ref } = await provisioned(alice);
      const hash = grantOf((await call(alice, ref)).credentialRead).hash;
      const manage = async (answer: Record<string, unknown>) => {
        const c = await call(alice, ref);
        return token.updateCredential({ callToken: c.callToken, credential: await read(c.credentialRead), change: { case: "managed", value: JSON.stringify(answer) } });
      };
      const answer = (currentStatus: string, over: Record<string, unknown> = {}) => ({ sessionId: ref.sessionId, credentialInstanceId: ref.credentialInstanceId, currentStatus, outcome: "COMPLETED", ...over });
      const c = await call(alice, ref);
      await store((await token.updateCredential({ callToken: c.callToken, credential: await read(c.credentialRead), change: { case: "delivered", value: getAnswer({ jwe: JWE, origin: "ISSUER" }) } })).credential);
      await store((await manage(answer("SUSPENDED_WALLET"))).credential);
      expect(row("credential", hash).status).to.equal("SUSPENDED_WALLET");
      // Another instance's answer, another session's, or something that is no manage answer.
      expect(await refusal(manage(answer("ACTIVE", { credentialInstanceId: "i-other" })))).to.deep.equal({ code: Code.InvalidArgument, message: "the manage answer is for another credential instance" });
      expect(await refusal(manage(answer("ACTIVE", { sessionId: randomUUID() })))).to.deep.equal({ code: Code.InvalidArgument, message: "the manage answer is for another credential instance" });
      expect((await refusal(manage(answer("REVOKED")))).code).to.equal(Code.InvalidArgument);
      expect((await refusal(manage({ currentStatus: "ACTIVE" }))).code).to.equal(Code.InvalidArgument);
      await store((await manage(answer("UNLINKED"))).credential);
      expect(row("credential", hash)).to.include({ status: "UNLINKED" }).and.not.have.property("credentials");
      // A late answer does not bring it back, nor the issuer's status read after.
      await store((await manage(answer("ACTIVE"))).credential);
      expect(row("credential", hash).status).to.equal("UNLINKED");
      const c2 = await call(alice, ref);
      const credential = await read(c2.credentialRead);
      const reported = (value: unknown) => token.updateCredential({ callToken: c2.callToken, credential, change: { case: "reported", value: JSON.stringify(value) } });
      // No currentVersion: no status answer (S2S draft).
      expect(await refusal(reported({ currentStatus: "ACTIVE" }))).to.deep.equal({ code: Code.InvalidArgument, message: "the credential status answer is not a valid one (S2S draft)" });
      await store((await reported({ currentStatus: "ACTIVE", currentVersion: "2" })).credential);
      expect(row("credential", hash).status).to.equal("UNLINKED");
    });
  });

  describe("6c. DeleteCredential: the caller's own credential, once it ended", function () {
    it("refused while ACTIVE or for another instance's caller; once UNLINKED: a delete grant and the holdings without it", async function () {
      const { ref } = await provisioned(alice);
      const hash = grantOf((await call(alice, ref)).credentialRead).hash;
      const remove = async (who: Instance) => {
        const c = await call(who, ref);
        return token.deleteCredential({ callToken: c.callToken, credential: await read(c.credentialRead), holdings: await read(c.holdingsRead) });
      };
      expect(await refusal(remove(alice))).to.deep.equal(ruled("only a credential that ended (UNLINKED or CANCELLED) is deleted: unlink it first"));
      const c = await call(alice, ref);
      await store((await token.updateCredential({ callToken: c.callToken, credential: await read(c.credentialRead), change: { case: "managed", value: JSON.stringify({ sessionId: ref.sessionId, credentialInstanceId: ref.credentialInstanceId, currentStatus: "UNLINKED", outcome: "COMPLETED" }) } })).credential);
      // Alice's other client instance: the record is not its own.
      expect((await refusal(remove(alice2))).code).to.equal(Code.PermissionDenied);
      const res = await remove(alice);
      expect(grantOf(res.credentialDelete)).to.include({ op: "delete", kind: "credential", hash });
      const holdings = record("holdings", res.holdings!.record);
      expect(holdings.sessions.find((s) => s.session_id === ref.sessionId)?.instances).to.deep.equal([]);
    });
  });

  describe("6d. a device transfer: a session taking over the same user's session, and the old instance's unlink", function () {
    /** BeginS2sSession of `who` taking over `transferFrom`, stored. */
    async function transfer(who: Instance, transferFrom: string, issuer = X) {
      const c = await call(who);
      const res = await token.beginS2sSession({ callToken: c.callToken, issuer, wsk: JSON.stringify(wskOf()), holdings: await holdingsAnswer(c), transferFrom });
      await store(res.session);
      await store(res.holdings);
      return res.sessionId;
    }
    const unlinkedAnswer = (ref: Ref) => JSON.stringify({ sessionId: ref.sessionId, credentialInstanceId: ref.credentialInstanceId, currentStatus: "UNLINKED", outcome: "COMPLETED" });
    /** UpdateCredential on `who`'s call about `ref`'s credential, with the via session as the call read it. */
    async function viaUpdate(who: Instance, ref: Ref, change: { case: "managed" | "reported" | "metadata"; value: string }) {
      const c = await call(who, ref);
      return token.updateCredential({ callToken: c.callToken, credential: await read(c.credentialRead), change, viaSession: await read(c.viaSessionRead) });
    }

    it("honest: Alice's other client instance takes over her session: its record and WSK attestation name it; its unlink of the old instance is recorded (twin: without the via session, refused)", async function () {
      const { ref } = await provisioned(alice);
      const sessionId = await transfer(alice2, ref.sessionId);
      const c = await call(alice2, { issuer: X, sessionId });
      const session = await read(c.sessionRead);
      expect(record("s2s-session", session.record)).to.include({ transfer_from: ref.sessionId, jkt: alice2.jkt, uid: alice.uid });
      const { attestation } = await token.attestS2sSession({ callToken: c.callToken, session });
      expect(decodeJwt(attestation)).to.include({ sessionId, transferFrom: ref.sessionId });
      const wsk = record("s2s-session", session.record).wsk;
      expect(await verifyWskAttestation(attestation, walletJwks, { walletServer: ISSUER, issuerId: X, sessionId, wsk }, { now: seconds() })).to.deep.equal({ dpopJkt: alice2.jkt, transferFrom: ref.sessionId });
      // Without naming its transfer, the old instance is not the new client instance's.
      const plain = await call(alice2, ref);
      expect((await refusal(token.updateCredential({ callToken: plain.callToken, credential: await read(plain.credentialRead), change: { case: "managed", value: unlinkedAnswer(ref) } }))).code).to.equal(Code.PermissionDenied);
      const via = { ...ref, viaSessionId: sessionId };
      const res = await viaUpdate(alice2, via, { case: "managed", value: unlinkedAnswer(ref) });
      await store(res.credential);
      expect(record("credential", res.credential!.record)).to.include({ status: "UNLINKED", jkt: alice.jkt });
    });

    it("a transfer of a session the user's holdings do not list (Bob's, an unknown one, her own at another issuer): PERMISSION_DENIED", async function () {
      const bobs = await provisioned(bob);
      await provisioned(alice);
      expect(await refusal(transfer(alice2, bobs.sessionId))).to.deep.equal({
        code: Code.PermissionDenied, message: "a device transfer takes over one of the user's own sessions at this issuer, and the holdings list no such session",
      });
      expect((await refusal(transfer(alice2, randomUUID()))).code).to.equal(Code.PermissionDenied);
      // Alice's session, named at another issuer: not one of hers there.
      const { sessionId } = await provisioned(alice, Y);
      expect((await refusal(transfer(alice2, sessionId, X))).code).to.equal(Code.PermissionDenied);
    });

    it("the via session must be the caller's own transfer of that very session, and it changes the old record only by its unlink", async function () {
      const { ref } = await provisioned(alice);
      const transferred = await transfer(alice2, ref.sessionId);
      // A session of alice2's that is no transfer of it.
      const other = await begin(alice2);
      expect(await refusal(viaUpdate(alice2, { ...ref, viaSessionId: other.sessionId }, { case: "managed", value: unlinkedAnswer(ref) }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the credential record is not the calling client instance's, nor of a session its own transferred from",
      });
      // Bob naming Alice's transfer session: not his.
      expect((await refusal(viaUpdate(bob, { ...ref, viaSessionId: transferred }, { case: "managed", value: unlinkedAnswer(ref) }))).code).to.equal(Code.PermissionDenied);
      // Anything but the unlink: refused.
      const via = { ...ref, viaSessionId: transferred };
      const suspended = JSON.stringify({ sessionId: ref.sessionId, credentialInstanceId: ref.credentialInstanceId, currentStatus: "SUSPENDED_WALLET", outcome: "COMPLETED" });
      const onlyUnlink = { code: Code.PermissionDenied, message: "a device transfer (or the /wallet page) changes another client instance's record only by its unlink" };
      expect(await refusal(viaUpdate(alice2, via, { case: "managed", value: suspended }))).to.deep.equal(onlyUnlink);
      expect(await refusal(viaUpdate(alice2, via, { case: "reported", value: JSON.stringify({ currentStatus: "UNLINKED", currentVersion: "1" }) }))).to.deep.equal(onlyUnlink);
      // A via session named without an instance, or the session itself: INVALID_ARGUMENT.
      expect((await refusal(call(alice2, { issuer: X, sessionId: ref.sessionId, viaSessionId: transferred }))).code).to.equal(Code.InvalidArgument);
      expect((await refusal(call(alice2, { ...ref, viaSessionId: ref.sessionId }))).code).to.equal(Code.InvalidArgument);
    });
  });

  describe("6e. the /wallet page's unlink: an account session's view call, for one credential, to UNLINKED only", function () {
    /** `user`'s account session at step "user" (its forced fresh sign-in), then Token's view call naming `ref`. */
    async function pageView(user: DevUser, ref?: Ref) {
      const started = await token.createAccountSession({ providerId: "dev" });
      const up = await upstream.login(user, started.upstreamNonce, { prompt: "login" });
      const at = await token.authorizeSubject({ sessionToken: started.sessionToken, opIdToken: up.idToken });
      const subjectRecord = rows.get(at.subjectRead!.hash)!.record;
      const account = await token.authorizeUser({ sessionToken: at.sessionToken, subjectRecord, subjectReceipt: await receipt(at.subjectRead, subjectRecord) });
      return token.authorizeWalletView({
        sessionToken: account.sessionToken,
        ...(ref ? { credential: { issuer: ref.issuer, sessionId: ref.sessionId, credentialInstanceId: ref.credentialInstanceId ?? "", viaSessionId: "" } } : {}),
      });
    }
    const answerOf = (ref: Ref, currentStatus: string) => JSON.stringify({ sessionId: ref.sessionId, credentialInstanceId: ref.credentialInstanceId, currentStatus, outcome: "COMPLETED" });

    it("honest: Alice's page view names her credential (any client instance's) and records its UNLINKED; anything else is refused", async function () {
      const { ref } = await provisioned(alice2);
      const view = await pageView(USERS.alice, ref);
      expect(decodeJwt(view.callToken)).to.include({ view: true }).and.not.have.property("jkt");
      const credential = await read(view.credentialRead);
      const onlyUnlink = { code: Code.PermissionDenied, message: "a device transfer (or the /wallet page) changes another client instance's record only by its unlink" };
      expect(await refusal(token.updateCredential({ callToken: view.callToken, credential, change: { case: "managed", value: answerOf(ref, "SUSPENDED_WALLET") } }))).to.deep.equal(onlyUnlink);
      expect(await refusal(token.updateCredential({ callToken: view.callToken, credential, change: { case: "confirmed", value: true } }))).to.deep.equal(onlyUnlink);
      const res = await token.updateCredential({ callToken: view.callToken, credential, change: { case: "managed", value: answerOf(ref, "UNLINKED") } });
      expect(record("credential", res.credential!.record)).to.include({ status: "UNLINKED", jkt: alice2.jkt });
      // The view call deletes nothing, and begins nothing.
      expect((await refusal(token.deleteCredential({ callToken: view.callToken, credential, holdings: await read(view.holdingsRead) }))).code).to.equal(Code.PermissionDenied);
    });

    it("Bob's page view naming Alice's credential, or a view that names none: PERMISSION_DENIED or FAILED_PRECONDITION", async function () {
      const { ref } = await provisioned(alice);
      const bobs = await pageView(USERS.bob, ref);
      expect(await refusal(token.updateCredential({ callToken: bobs.callToken, credential: await read(bobs.credentialRead), change: { case: "managed", value: answerOf(ref, "UNLINKED") } }))).to.deep.equal({
        code: Code.PermissionDenied, message: "the credential record is not the calling client instance's",
      });
      const plain = await pageView(USERS.alice);
      const aliceCall = await call(alice, ref);
      expect((await refusal(token.updateCredential({ callToken: plain.callToken, credential: await read(aliceCall.credentialRead), change: { case: "managed", value: answerOf(ref, "UNLINKED") } }))).code).to.equal(Code.FailedPrecondition);
    });
  });

  describe("7. the allow-list and the WSK", function () {
    it("BeginS2sSession at an issuer not on the allow-list: INVALID_ARGUMENT", async function () {
      const c = await call(alice);
      for (const issuer of [UNLISTED, "", `${X}/`, X.toUpperCase()]) {
        expect(await refusal(token.beginS2sSession({ callToken: c.callToken, issuer, wsk: JSON.stringify(wskOf()), holdings: await holdingsAnswer(c) }), issuer)).to.deep.equal(notAllowed);
      }
    });

    it("a WSK that is private, RSA, of another curve or alg, or no JWK: INVALID_ARGUMENT (twin: public P-256)", async function () {
      const c = await call(alice);
      const message = { code: Code.InvalidArgument, message: "wsk must be the session's public ES256 (EC P-256) JWK, as JSON" };
      const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ format: "jwk" });
      const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ format: "jwk" });
      const ed = generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" });
      const pair = p256();
      for (const wsk of [
        JSON.stringify(pair.privateJwk), JSON.stringify(rsa), JSON.stringify(p384), JSON.stringify(ed), JSON.stringify({ ...pair.publicJwk, alg: "ES384" }),
        JSON.stringify({ kty: "EC", crv: "P-256" }), "", "{", "null", JSON.stringify([pair.publicJwk]),
      ]) {
        expect(await refusal(token.beginS2sSession({ callToken: c.callToken, issuer: X, wsk, holdings: await holdingsAnswer(c) }), wsk.slice(0, 40))).to.deep.equal(message);
      }
      const ok = await token.beginS2sSession({ callToken: c.callToken, issuer: X, wsk: JSON.stringify({ ...pair.publicJwk, alg: "ES256", use: "sig" }), holdings: await holdingsAnswer(c) });
      expect(record("s2s-session", ok.session!.record).wsk).to.deep.equal({ kty: "EC", crv: "P-256", x: pair.publicJwk.x, y: pair.publicJwk.y });
    });

    it("AuthorizeWalletCall naming a session at an issuer not on the allow-list, or without its sessionId: INVALID_ARGUMENT", async function () {
      const sessionId = "6f1d0c2e-1b0a-4c3d-9e8f-7a6b5c4d3e2f";
      expect(await refusal(call(alice, { issuer: UNLISTED, sessionId }))).to.deep.equal(notAllowed);
      expect(await refusal(call(alice, { issuer: UNLISTED, sessionId, credentialInstanceId: "i" }))).to.deep.equal(notAllowed);
      expect(await refusal(call(alice, { issuer: X, sessionId: "" }))).to.deep.equal({ code: Code.InvalidArgument, message: "the S2S session needs its sessionId" });
      expect(grantOf((await call(alice, { issuer: Y, sessionId })).sessionRead).hash).to.equal(s2sSessionHash(lookupKey, Y, sessionId));
    });
  });

  describe("8. ListWalletIssuers: the allow-list, countersigned with a wallet key", function () {
    it("each statement verifies with the pinned wallet keys (ES256, typ hello-issuer+jwt, a wallet key) and holds public keys only", async function () {
      const c = await call(alice);
      const { issuers } = await token.listWalletIssuers({ callToken: c.callToken });
      expect(issuers.map((i) => i.issuer)).to.deep.equal([X, Y]);
      for (const [i, configured] of [ISSUERS.x, ISSUERS.y].entries()) {
        const statement = issuers[i]!.statement;
        const header = decodeProtectedHeader(statement);
        expect(header).to.include({ alg: "ES256", typ: "hello-issuer+jwt" });
        expect(kidPurpose(statement)).to.equal("wallet");
        expect(header.kid).to.equal(activeKey(walletKeys, "wallet").kid);
        const { payload } = await jwtVerify(statement, createLocalJWKSet(walletJwks), { algorithms: ["ES256"], typ: "hello-issuer+jwt", issuer: ISSUER, subject: configured.entry.id, currentDate: clock.now() });
        expect(payload.exp! - payload.iat!).to.equal(3600);
        expect(payload.jti).to.be.a("string");
        expect(payload.jwk).to.deep.equal(configured.encryption);
        expect(payload.jwks).to.deep.equal({ keys: [configured.signing] });
        expect(payload.credential_configurations).to.deep.equal(configured.entry.credential_configurations);
        expect(JSON.stringify(payload), "no private member").to.not.match(/"(d|p|q|dp|dq|qi|k)":/);
        expect(configured.entry.encryption_key.d, "the configured entry had a d").to.be.a("string");
      }
      // a wallet-access key's signature, or a key Token does not hold, is not what the client pins for statements
      const [first] = issuers;
      expect(await outcomeOf(jwtVerify(first!.statement, createLocalJWKSet({ keys: walletJwks.keys.filter((k) => String(k.kid).startsWith("wallet-access.")) })))).to.not.equal("ok");
    });
  });

  describe("9. the call token", function () {
    it("expired (the clock 3 min on): UNAUTHENTICATED (twin: 1 min on)", async function () {
      const c = await call(alice);
      expect((await clock.ahead(60_000, () => token.listWalletIssuers({ callToken: c.callToken }))).issuers).to.have.length(2);
      expect(await clock.ahead(180_000, () => refusal(token.listWalletIssuers({ callToken: c.callToken })))).to.deep.equal(callInvalid("it has expired"));
      expect(await clock.ahead(180_000, () => refusal(token.beginS2sSession({ callToken: c.callToken, issuer: X, wsk: JSON.stringify(wskOf()) })))).to.deep.equal(callInvalid("it has expired"));
    });

    it("re-typed, signed with another purpose's key or a key Token does not hold, or a Session Token: UNAUTHENTICATED (twin: re-signed as it was)", async function () {
      const c = await call(alice);
      const { iss: _iss, aud: _aud, iat: _iat, exp: _exp, jti: _jti, ...body } = callClaims(c.callToken);
      const now = clock.now();
      const list = (callToken: string) => token.listWalletIssuers({ callToken });
      for (const typ of [SESSION_TOKEN.typ, "JWT", "hello-wallet-access+jwt"]) {
        const retyped = await sign({ ...WALLET_CALL_TOKEN, typ }, activeKey(keys, "session"), body, { now });
        expect(await refusal(list(retyped), typ)).to.deep.equal(callInvalid("its typ header is wrong"));
      }
      const byAccess = await sign({ ...WALLET_CALL_TOKEN, purpose: "access" }, activeKey(keys, "access"), body, { now });
      const byRecord = await sign({ ...WALLET_CALL_TOKEN, purpose: "record" }, activeKey(keys, "record"), body, { now });
      const byWallet = await sign({ ...WALLET_CALL_TOKEN, purpose: "wallet" }, activeKey(walletKeys, "wallet"), body, { now });
      const byWalletAccess = await sign({ ...WALLET_CALL_TOKEN, purpose: "wallet-access" }, activeKey(walletKeys, "wallet-access"), body, { now });
      const byStranger = await sign(WALLET_CALL_TOKEN, generateSigningKey("session"), body, { now });
      for (const forged of [byAccess, byRecord, byWallet, byWalletAccess, byStranger]) {
        expect(await refusal(list(forged), kidPurpose(forged))).to.deep.equal(callInvalid("its key (kid) is not a known session key"));
      }
      // another user's id written into Alice's call token: the signature no longer holds
      const [header, , signature] = c.callToken.split(".");
      const altered = `${header}.${Buffer.from(JSON.stringify({ ...callClaims(c.callToken), uid: bob.uid })).toString("base64url")}.${signature}`;
      expect(await refusal(list(altered))).to.deep.equal(callInvalid("its signature does not verify"));
      // a Session Token is no call token
      const started = await start("wallet", alice.jkt);
      expect(await refusal(list(started.sessionToken))).to.deep.equal(callInvalid("its typ header is wrong"));
      // twin
      expect((await list(await sign(WALLET_CALL_TOKEN, activeKey(keys, "session"), body, { now }))).issuers).to.have.length(2);
    });

    // The call token GrantCredentialReads returns keeps the presented one's exp: feeding
    // renewed tokens back in never makes one user call's authority outlast its 2 min.
    it("GrantCredentialReads does not extend the call: its call token expires when the presented one does", async function () {
      if (!rows.has(holdingsHash(lookupKey, alice.uid))) await begin(alice);
      const c = await call(alice);
      const holdings = await read(c.holdingsRead);
      const renewed = await clock.ahead(100_000, () => token.grantCredentialReads({ callToken: c.callToken, holdings }));
      const twice = await clock.ahead(200_000, () => token.grantCredentialReads({ callToken: renewed.callToken, holdings }).then((r) => r.callToken, () => undefined));
      expect(
        {
          renewedExp: callClaims(renewed.callToken).exp! <= callClaims(c.callToken).exp!,
          renewedAt3Min: await clock.ahead(180_000, () => outcomeOf(token.listWalletIssuers({ callToken: renewed.callToken }))),
          renewedTwiceAt5Min: twice === undefined ? "refused" : await clock.ahead(300_000, () => outcomeOf(token.listWalletIssuers({ callToken: twice }))),
        },
        "the original call token expires 2 min after AuthorizeWalletCall",
      ).to.deep.equal({ renewedExp: true, renewedAt3Min: Code.Unauthenticated, renewedTwiceAt5Min: "refused" });
    });
  });
});
