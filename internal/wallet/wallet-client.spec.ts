// The Wallet Client's flows (wallet-client.ts, issuer-trust.ts) against real parts: the
// real development issuer (internal/dev/issuer) over mutual TLS, behind a small TEST
// wallet server that implements the wallet API table of docs/wallet-server.md by
// relaying to the issuer the way Orchestration does (WSK attestation, server signals,
// evidence hosted on its own mTLS address for the issuer to fetch), checking every
// call's DPoP proof with the verifier Token and Orchestration use. The client runs with
// a real KeyStore in a temporary directory, whose sign-in pins the test's `wallet.` key.

import { createHash, createPrivateKey, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { type JWK, SignJWT, exportJWK, generateKeyPair } from "jose";
import { z } from "zod";
import { type CertificateAndKey, createCertificateAuthority, issueLeafCertificate } from "../ops/pki/pki.js";
import { type DevIssuer, startDevIssuer } from "../dev/issuer/issuer.js";
import { jwkThumbprint, memoryDpopReplayCache, verifyDpopProof } from "../protocol/dpop.js";
import { sealCredentials } from "../s2s/client-payload.js";
import { type HpkePublicJwk, generateHpkeKeyPair } from "../s2s/hpke-jwe.js";
import {
  ITEM_TYPES,
  KEY_TYPES,
  CLIENT_ACTION_EXTENSION,
  TRANSFER_SESSION_EXTENSION,
  credentialGetResponseSchema,
  credentialManageResponseSchema,
  credentialStatusResponseSchema,
  credentialPendingSchema,
  eventNotifySchema,
  jweEncryptedPayloadSchema,
  keyDataSchema,
  provisionResponseSchema,
  verificationStatusSchema,
  type VerificationStatus,
} from "../s2s/messages.js";
import { ProblemError } from "../s2s/problem.js";
import { issueSdJwtVc, verifySdJwtVc } from "../s2s/sd-jwt-vc.js";
import { fetchCredentialStatus } from "../s2s/status-list.js";
import { WireClient } from "../s2s/wire-client.js";
import { type WireServer, startWireServer } from "../s2s/wire-server.js";
import { signWskAttestation } from "../s2s/wsk-attestation.js";
import { rejectionOf } from "../../test/support/refusal.js";
import { ADA, ALAN, GRACE, KATHERINE, MALLORY, es256Pair, s2sCa, s2sLeaf } from "../../test/support/s2s-fixtures.js";
import { runWallet } from "../../cmd/hello/wallet.js";
import { WalletApi } from "./api-client.js";
import { IssuerTrustError, resolveIssuerId, trustedIssuer } from "./issuer-trust.js";
import { KeyStore } from "./key-store.js";
import { type AddCredentialsInput, WalletClientError, addCredentials, listCredentials, presentCredential, resumeCredentials, showCredential } from "./wallet-client.js";

const ISSUER_ID = "https://issuer.dev.hello-mesh.test";
const WALLET_SERVER = "https://wallet.hello-mesh.test";
const VERIFIER = "https://verifier.example";
const EVIDENCE_SLOTS = 8;

const now = () => Math.floor(Date.now() / 1000);
const noSleep = async () => {};
const b64json = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

const ca = s2sCa;
const leaf = s2sLeaf;
const keyObject = (jwk: JWK) => createPrivateKey({ key: jwk as never, format: "jwk" });

// --- the test wallet server -------------------------------------------------------------

interface Caller {
  user: string;
  jkt: string;
}
interface ServerSession {
  user: string;
  issuer: string;
  wsk: JWK;
  jkt: string;
  /** A device transfer's session: the same user's session it takes over. */
  transferFrom?: string;
}
interface ServerInstance {
  user: string;
  issuer: string;
  sessionId: string;
  credentialInstanceId: string;
  credentialConfigurationId: string;
  status: string;
  credentialVersion?: string;
  credentialMetadata?: Record<string, unknown>;
  credentials?: { jwe?: string; origin: string };
}

const session = { issuer: z.string().min(1), sessionId: z.string().uuid() };
const payloads = z.array(jweEncryptedPayloadSchema).min(1).max(32);
/** The wallet API's bodies, strict as the front door's (docs/wallet-server.md, "The wallet API"). */
const bodies = {
  "/wallet/api/sessions": z.strictObject({ issuer: z.string().min(1), wsk: z.looseObject({ kty: z.literal("EC"), crv: z.literal("P-256"), x: z.string(), y: z.string() }), transferFrom: z.string().uuid().optional() }),
  "/wallet/api/initiate": z.strictObject({ ...session, credentialConfigurationIds: z.array(z.string()).min(1).max(16), verificationNonce: z.string(), clientEncryptedPayload: payloads.optional(), locale: z.string().optional() }),
  "/wallet/api/supplement": z.strictObject({ ...session, verificationId: z.string(), clientEncryptedPayload: payloads }),
  "/wallet/api/status": z.strictObject({ ...session, verificationId: z.string() }),
  "/wallet/api/evidence": z.strictObject({ ...session, jwe: z.string().min(1).max(8 * 1024 * 1024) }),
  "/wallet/api/provision": z.strictObject({ ...session, verificationId: z.string() }),
  "/wallet/api/credential/get": z.strictObject({ ...session, credentialInstanceId: z.string(), walletEncryptionKey: keyDataSchema, clientEncryptedData: jweEncryptedPayloadSchema.optional() }),
  "/wallet/api/credential/confirm": z.strictObject({ ...session, credentialInstanceId: z.string(), keysRotated: z.boolean().optional() }),
  "/wallet/api/credential/metadata": z.strictObject({ ...session, credentialInstanceId: z.string(), walletEncryptionKey: keyDataSchema }),
  "/wallet/api/credential/status": z.strictObject({ ...session, credentialInstanceId: z.string(), expiringAt: z.number().int().optional() }),
  "/wallet/api/credential/delete": z.strictObject({ ...session, credentialInstanceId: z.string() }),
  "/wallet/api/credential/manage": z.strictObject({
    ...session, credentialInstanceId: z.string(), action: z.enum(["SUSPEND", "RESUME", "UNLINK"]), reason: z.string().optional(), authority: z.string(), viaSessionId: z.string().uuid().optional(),
  }),
} as const;

class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: string,
    detail: string,
  ) {
    super(detail);
  }
}

describe("Wallet Client flows against the development issuer, through a test wallet server", function () {
  this.timeout(20_000);

  const issuerCa = ca("issuer CA");
  const walletCa = ca("wallet server CA");
  const walletCert = leaf(walletCa, "wallet server");
  let scratch: string;
  let attestation: { publicJwk: JWK; privateJwk: JWK };
  /** Token's `wallet` key: signs the issuer statements; the clients pin it. */
  let walletKey: { publicJwk: JWK; privateJwk: JWK };
  let issuerSigning: { publicJwk: JWK; privateJwk: JWK };
  let issuer: DevIssuer;
  let wire: WireServer;
  let issuerClient: WireClient;
  let http: Server;
  let base: string;

  // The test server's state, in memory.
  const replay = memoryDpopReplayCache();
  const tokens = new Map<string, Caller>();
  const sessions = new Map<string, ServerSession>();
  const instances = new Map<string, ServerInstance>();
  const blobs: (string | undefined)[] = [];
  let nextSlot = 0;
  /** Every request: path and raw body, to check what the server ever saw. */
  const seen: { path: string; body: string }[] = [];
  /** What GET /wallet/api/issuers lists; a test may replace it. */
  let listIssuers: () => Promise<{ issuer: string; statement: string }[]>;
  /** A test may make the server lie about the credentials it holds. */
  let tamperCredentials: ((list: ServerInstance[]) => Promise<ServerInstance[]>) | undefined;

  const configurations = () =>
    Object.fromEntries(Object.entries(issuer.metadata.credentialConfigurationsSupported).map(([id, c]) => [id, { vct: c.vct, display: c.display }]));

  /** A Token-style issuer statement; every part can be overridden for the attacks. */
  async function statement(over: { sub?: string; jwk?: unknown; jwks?: unknown; iat?: number; exp?: number; kid?: string; typ?: string; key?: JWK } = {}): Promise<string> {
    const iat = over.iat ?? now();
    return new SignJWT({
      jwk: over.jwk ?? issuer.metadata.encryptionKey,
      jwks: over.jwks ?? issuer.metadata.jwks,
      credential_configurations: configurations(),
    })
      .setProtectedHeader({ alg: "ES256", typ: over.typ ?? "hello-issuer+jwt", kid: over.kid ?? "wallet.test-1" })
      .setSubject(over.sub ?? ISSUER_ID)
      .setIssuedAt(iat)
      .setExpirationTime(over.exp ?? iat + 3600)
      .sign(keyObject(over.key ?? walletKey.privateJwk));
  }
  const honestList = async () => [{ issuer: ISSUER_ID, statement: await statement() }];

  function ownSession(caller: Caller, body: { issuer: string; sessionId: string }): ServerSession {
    const s = sessions.get(body.sessionId);
    if (!s || s.user !== caller.user || s.issuer !== body.issuer) throw new Refusal(404, "unknown_session", "no such wallet session");
    return s;
  }

  async function route(caller: Caller, method: string, path: string, raw: string): Promise<unknown> {
    if (method === "GET" && path === "/wallet/api/issuers") return { issuers: await listIssuers() };
    if (method === "GET" && path === "/wallet/api/credentials") {
      let mine = [...instances.values()].filter((i) => i.user === caller.user);
      if (tamperCredentials) mine = await tamperCredentials(mine);
      return { credentials: mine.map(({ user: _user, ...rest }) => rest) };
    }
    const schema = bodies[path as keyof typeof bodies];
    if (method !== "POST" || !schema) throw new Refusal(404, "not_found", "no such wallet API call");
    const parsed = schema.safeParse(JSON.parse(raw || "null"));
    if (!parsed.success) throw new Refusal(400, "invalid_request", z.prettifyError(parsed.error));
    const body = parsed.data as Record<string, any>;
    if (body.issuer !== ISSUER_ID) throw new Refusal(404, "unknown_issuer", "this wallet server reaches no such issuer");

    switch (path) {
      case "/wallet/api/sessions": {
        const sessionId = randomUUID();
        if (body.transferFrom !== undefined) {
          const old = sessions.get(body.transferFrom);
          if (!old || old.user !== caller.user || old.issuer !== body.issuer) throw new Refusal(404, "unknown_session", "no such wallet session");
        }
        sessions.set(sessionId, { user: caller.user, issuer: body.issuer, wsk: body.wsk, jkt: caller.jkt, ...(body.transferFrom ? { transferFrom: body.transferFrom } : {}) });
        return { sessionId, issuer: body.issuer };
      }
      case "/wallet/api/initiate": {
        const s = ownSession(caller, body as never);
        const jwt = await signWskAttestation(
          { walletServer: WALLET_SERVER, issuerId: s.issuer, sessionId: body.sessionId, wsk: s.wsk, dpopJkt: s.jkt, ...(s.transferFrom ? { transferFrom: s.transferFrom } : {}) },
          { privateKey: keyObject(attestation.privateJwk), kid: "attestation-1", alg: "ES256" },
        );
        const answer = await issuerClient.post(
          "/verification/initiate",
          {
            sessionId: body.sessionId,
            credentialConfigurationIds: body.credentialConfigurationIds,
            walletSigningKeyData: { keyType: KEY_TYPES.signing, client_public_key: { ...s.wsk, alg: "ES256" }, attestation: { proof_type: "jwt", jwt } },
            verificationNonce: body.verificationNonce,
            verificationData: {
              ...(body.clientEncryptedPayload ? { clientEncryptedPayload: body.clientEncryptedPayload } : {}),
              serverVerificationDataItem: [
                { type: ITEM_TYPES.walletAge, id: "wallet-age", days: 30 },
                { type: ITEM_TYPES.emailVerified, id: "email", verified: true },
                ...(s.transferFrom ? [{ type: ITEM_TYPES.previousSession, id: "previous-session", sessionId: s.transferFrom }] : []),
              ],
            },
          },
          verificationStatusSchema,
        );
        return answer.body;
      }
      case "/wallet/api/supplement": {
        ownSession(caller, body as never);
        const { sessionId, verificationId, clientEncryptedPayload } = body;
        return (await issuerClient.post("/verification/supplement", { sessionId, verificationId, verificationDataPayload: { clientEncryptedPayload } }, verificationStatusSchema)).body;
      }
      case "/wallet/api/status": {
        ownSession(caller, body as never);
        return (await issuerClient.post("/verification/status", { sessionId: body.sessionId, verificationId: body.verificationId }, verificationStatusSchema)).body;
      }
      case "/wallet/api/evidence": {
        ownSession(caller, body as never);
        const slot = nextSlot++ % EVIDENCE_SLOTS;
        blobs[slot] = body.jwe;
        return {
          origin: "WALLET_CLIENT",
          downloadUrl: `${wire.url}/evidence/${slot}`,
          contentDigest: createHash("sha256").update(body.jwe, "ascii").digest("base64url"),
          contentSize: body.jwe.length,
          expiresAt: new Date(Date.now() + 600_000).toISOString(),
        };
      }
      case "/wallet/api/provision": {
        const s = ownSession(caller, body as never);
        const answer = (await issuerClient.post("/credential/provision", { sessionId: body.sessionId, verificationId: body.verificationId }, provisionResponseSchema)).body;
        for (const group of answer.credentialInstances) {
          for (const id of group.credentialInstanceIds) {
            if (!instances.has(id)) {
              instances.set(id, { user: caller.user, issuer: s.issuer, sessionId: body.sessionId, credentialInstanceId: id, credentialConfigurationId: group.credentialConfigurationId, status: "IN_PROCESS" });
            }
          }
        }
        return { credentialInstances: answer.credentialInstances };
      }
      case "/wallet/api/credential/get": {
        ownSession(caller, body as never);
        const instance = instances.get(body.credentialInstanceId);
        if (!instance || instance.user !== caller.user || instance.sessionId !== body.sessionId) throw new Refusal(404, "unknown_credential", "no such credential");
        const answer = await issuerClient.post(
          "/credential/get",
          {
            sessionId: body.sessionId,
            credentialInstanceId: body.credentialInstanceId,
            reason: "first issuance",
            walletEncryptionKey: body.walletEncryptionKey,
            ...(body.clientEncryptedData ? { clientEncryptedData: body.clientEncryptedData } : {}),
          },
          z.union([credentialGetResponseSchema, credentialPendingSchema]),
        );
        if (answer.status === 202) return { status: "PENDING", retryAfter: Number(answer.headers["retry-after"] ?? 2) };
        const got = credentialGetResponseSchema.parse(answer.body);
        Object.assign(instance, { credentialVersion: got.credentialVersion, credentials: got.credentials, credentialMetadata: got.credentialMetadata });
        return { status: "READY", credentialVersion: got.credentialVersion, credentials: got.credentials, credentialMetadata: got.credentialMetadata };
      }
      case "/wallet/api/credential/metadata": {
        ownSession(caller, body as never);
        const instance = instances.get(body.credentialInstanceId);
        if (!instance || instance.user !== caller.user || instance.sessionId !== body.sessionId) throw new Refusal(404, "unknown_credential", "no such credential");
        const answer = await issuerClient.post(
          "/credential/metadata",
          { sessionId: body.sessionId, credentialInstanceId: body.credentialInstanceId, walletEncryptionKey: body.walletEncryptionKey },
          z.looseObject({ credentialMetadata: z.record(z.string(), z.unknown()).optional() }),
        );
        if (answer.body.credentialMetadata) instance.credentialMetadata = answer.body.credentialMetadata;
        return { ...(answer.body.credentialMetadata ? { credentialMetadata: answer.body.credentialMetadata } : {}) };
      }
      case "/wallet/api/credential/confirm": {
        ownSession(caller, body as never);
        const instance = instances.get(body.credentialInstanceId);
        if (!instance || instance.user !== caller.user) throw new Refusal(404, "unknown_credential", "no such credential");
        const eventType = instance.status === "IN_PROCESS" ? "PROVISIONING_SUCCESS" : body.keysRotated ? "KEY_ROTATED" : "UPDATE_SUCCESS";
        await issuerClient.post(
          "/event/notify",
          { sessionId: body.sessionId, credentialInstanceId: body.credentialInstanceId, eventType, eventTimestamp: new Date().toISOString() },
          z.looseObject({ acknowledged: z.boolean() }),
        );
        instance.status = "ACTIVE";
        return { status: "ACTIVE" };
      }
      case "/wallet/api/credential/delete": {
        ownSession(caller, body as never);
        const instance = instances.get(body.credentialInstanceId);
        if (!instance || instance.user !== caller.user) throw new Refusal(404, "unknown_credential", "no such credential");
        if (instance.status !== "UNLINKED") throw new Refusal(409, "conflict", "only a credential that ended is deleted");
        instances.delete(body.credentialInstanceId);
        return { deleted: true };
      }
      case "/wallet/api/credential/status": {
        ownSession(caller, body as never);
        const instance = instances.get(body.credentialInstanceId);
        if (!instance || instance.user !== caller.user) throw new Refusal(404, "unknown_credential", "no such credential");
        const answer = (await issuerClient.post("/credential/status", { sessionId: body.sessionId, credentialInstanceId: body.credentialInstanceId }, credentialStatusResponseSchema)).body;
        if (instance.status !== "UNLINKED") instance.status = answer.currentStatus;
        if (body.expiringAt !== undefined) {
          await issuerClient.post("/event/notify", {
            sessionId: body.sessionId, credentialInstanceId: body.credentialInstanceId, eventType: "CREDENTIAL_EXPIRING", eventTimestamp: new Date().toISOString(),
            eventDetails: { expiresAt: new Date(body.expiringAt * 1000).toISOString() },
          }, z.looseObject({ acknowledged: z.boolean() }));
        }
        return {
          status: instance.status, issuerStatus: answer.currentStatus, issuerVersion: answer.currentVersion, credentialVersion: instance.credentialVersion,
          updateAvailable: instance.credentialVersion !== undefined && instance.credentialVersion !== answer.currentVersion,
          ...(answer.lastStatusChangeTime ? { lastStatusChangeTime: answer.lastStatusChangeTime } : {}),
          ...(answer.lastStatusChangeReason ? { lastStatusChangeReason: answer.lastStatusChangeReason } : {}),
        };
      }
      case "/wallet/api/credential/manage": {
        ownSession(caller, body as never);
        if (body.viaSessionId !== undefined) {
          const via = sessions.get(body.viaSessionId);
          if (!via || via.user !== caller.user || via.jkt !== caller.jkt || via.transferFrom !== body.sessionId) throw new Refusal(404, "unknown_session", "no such transfer session");
        }
        const instance = instances.get(body.credentialInstanceId);
        if (!instance || instance.user !== caller.user) throw new Refusal(404, "unknown_credential", "no such credential");
        const answer = (await issuerClient.post(
          "/credential/manage",
          {
            sessionId: body.sessionId, credentialInstanceId: body.credentialInstanceId, action: body.action, ...(body.reason ? { reason: body.reason } : {}),
            extensions: { [CLIENT_ACTION_EXTENSION]: body.authority, ...(body.viaSessionId ? { [TRANSFER_SESSION_EXTENSION]: body.viaSessionId } : {}) },
          },
          credentialManageResponseSchema,
        )).body;
        instance.status = answer.currentStatus;
        if (answer.currentStatus === "UNLINKED") delete instance.credentials;
        return { outcome: answer.outcome, status: answer.currentStatus, ...(answer.previousStatus ? { previousStatus: answer.previousStatus } : {}), ...(answer.failureReason ? { failureReason: answer.failureReason } : {}) };
      }
    }
    throw new Refusal(404, "not_found", "no such wallet API call");
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString("utf8");
    const path = (req.url ?? "/").split("?")[0]!;
    seen.push({ path, body: raw });
    const send = (status: number, body: unknown, type = "application/json"): void => void res.writeHead(status, { "content-type": type }).end(JSON.stringify(body));
    const refuse = (status: number, errorCode: string, detail: string) =>
      send(status, { type: "about:blank", title: "refused", status, detail, errorCode }, "application/problem+json");
    const authorization = req.headers.authorization ?? "";
    const token = authorization.startsWith("DPoP ") ? authorization.slice(5) : "";
    const caller = tokens.get(token);
    if (!caller) return void res.writeHead(401, { "www-authenticate": 'DPoP error="invalid_token"' }).end();
    try {
      await verifyDpopProof(req.headers.dpop, { method: req.method!, url: `${base}${req.url}`, accessToken: token, boundJkt: caller.jkt, replay });
    } catch (error) {
      return void res.writeHead(401, { "www-authenticate": `DPoP error="invalid_dpop_proof", error_description="${(error as Error).message}"` }).end();
    }
    try {
      send(200, await route(caller, req.method!, path, raw));
    } catch (error) {
      if (error instanceof Refusal) return refuse(error.status, error.errorCode, error.message);
      if (error instanceof ProblemError) return send(error.problem.status, error.problem, "application/problem+json");
      refuse(500, "internal_error", (error as Error).message);
    }
  }

  before(async function () {
    scratch = await mkdtemp(join(tmpdir(), "wallet-client-spec-"));
    attestation = await es256Pair("attestation-1");
    walletKey = await es256Pair("wallet.test-1");
    issuerSigning = await es256Pair("issuer-signing-1");
    wire = await startWireServer({
      ...walletCert,
      peers: [{ id: "issuer", caPem: issuerCa.certPem }],
      routes: [
        { path: "/verification/notify", schema: verificationStatusSchema, handle: async ({ body }) => ({ body: { sessionId: body.sessionId, verificationId: body.verificationId } }) },
        { path: "/event/notify", schema: eventNotifySchema, handle: async () => ({ body: { acknowledged: true } }) },
      ],
      getRoutes: Array.from({ length: EVIDENCE_SLOTS }, (_, slot) => ({
        path: `/evidence/${slot}`,
        handle: async () => (blobs[slot] ? { body: undefined, text: { contentType: "application/jose", body: blobs[slot]! } } : { status: 404, body: {} }),
      })),
    });
    const encryption = await generateHpkeKeyPair();
    const issuerCert = leaf(issuerCa, "issuer");
    issuer = await startDevIssuer({
      issuerId: ISSUER_ID,
      ...issuerCert,
      walletServers: [
        { id: "hello", caPem: walletCa.certPem, baseUrl: wire.url, attestationIssuer: WALLET_SERVER, attestationJwks: { keys: [{ ...attestation.publicJwk, alg: "ES256" }] } },
      ],
      encryptionKey: encryption.privateJwk,
      signingKey: issuerSigning.privateJwk,
      asyncIssuanceMs: 40,
    });
    issuerClient = new WireClient({ baseUrl: issuer.url, caPem: issuerCa.certPem, ...walletCert });
    http = createServer((req, res) => void handle(req, res));
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  });

  after(async function () {
    issuerClient?.close();
    await issuer?.close();
    await wire?.close();
    await new Promise<void>((resolve) => (http ? http.close(() => resolve()) : resolve()));
    http?.closeAllConnections();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  beforeEach(function () {
    listIssuers = honestList;
    tamperCredentials = undefined;
  });

  let users = 0;
  /** A new user's wallet: a KeyStore signed in to the test server, pinning Token's `wallet.` key. */
  /** A signed-in wallet: a new user's, or (`user`) another device of that user's. */
  async function newWallet(sameUser?: string): Promise<{ store: KeyStore; api: WalletApi; user: string }> {
    const user = sameUser ?? `user-${++users}`;
    const store = await KeyStore.open(join(scratch, `${user}-${randomUUID()}`));
    const accessToken = `token-${user}-${randomUUID()}`;
    tokens.set(accessToken, { user, jkt: await jwkThumbprint((await store.dpopKey()).publicJwk) });
    await store.saveLogin({
      server: base,
      clientId: "hello-wallet",
      accessToken,
      expiresAt: now() + 3600,
      sub: user,
      walletJwks: { keys: [{ ...walletKey.publicJwk, alg: "ES256", use: "sig" }, { kty: "EC", crv: "P-256", x: attestation.publicJwk.x, y: attestation.publicJwk.y, kid: "wallet-access.test-1", alg: "ES256", use: "sig" }] },
    });
    return { store, api: await WalletApi.fromStore(store), user };
  }

  const add = (api: WalletApi, store: KeyStore, input: Partial<AddCredentialsInput> & { person: AddCredentialsInput["person"] }) =>
    addCredentials(api, store, { issuer: ISSUER_ID, configurations: ["identity_card"], sleep: noSleep, ...input });

  /** runWallet in this process, with what it writes. */
  async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const { write: stdout } = process.stdout;
    const { write: stderr } = process.stderr;
    process.stdout.write = ((chunk: unknown) => (out.push(String(chunk)), true)) as typeof process.stdout.write;
    process.stderr.write = ((chunk: unknown) => (err.push(String(chunk)), true)) as typeof process.stderr.write;
    try {
      return { code: await runWallet(args), out: out.join(""), err: err.join("") };
    } finally {
      process.stdout.write = stdout;
      process.stderr.write = stderr;
    }
  }

  const sessionsOf = (user: string) => [...sessions.values()].filter((s) => s.user === user).length;

  // --- issuing --------------------------------------------------------------------------

  describe("D-1001: approved at once", function () {
    let wallet: Awaited<ReturnType<typeof newWallet>>;
    let result: Awaited<ReturnType<typeof addCredentials>>;
    const statuses: VerificationStatus[] = [];

    before(async function () {
      wallet = await newWallet();
      seen.length = 0;
      result = await add(wallet.api, wallet.store, { configurations: ["identity_card", "driving_licence"], person: ADA, presentmentKeys: 2, onStatus: (s) => statuses.push(s) });
    });

    it("gets identity_card and driving_licence, two credentials each, bound to its own keys, and keeps only keys and an index", async function () {
      expect(result.state).to.equal("ISSUED");
      if (result.state !== "ISSUED") return;
      expect(statuses.map((s) => s.status)).to.deep.equal(["APPROVED"]);
      expect(result.instances.map((i) => [i.configuration, i.count, i.credentialVersion])).to.deep.equal([
        ["identity_card", 2, "1"],
        ["driving_licence", 2, "1"],
      ]);
      expect(result.instances[0]!.vct).to.equal("urn:hello-mesh:dev:identity-card");
      expect(result.instances[0]!.claimNames).to.include.members(["family_name", "birthdate", "age_over_18", "document_number"]);
      const keys = await wallet.store.listKeys();
      expect(keys).to.include(`wsk.${result.sessionId}`);
      for (const instance of result.instances) {
        expect(keys).to.include.members([`wek.${instance.id}`, `pk.${instance.id}.0`, `pk.${instance.id}.1`]);
      }
      expect(await wallet.store.listData()).to.deep.equal([`session.${result.sessionId}`]);
      const index = JSON.stringify(await wallet.store.getData(`session.${result.sessionId}`, z.unknown()));
      expect(index).to.not.match(/Lovelace|1990-12-10|D-1001/);
      // The server is ACTIVE for both, and it never saw the person or a claim in the clear.
      expect([...instances.values()].filter((i) => i.sessionId === result.sessionId).map((i) => i.status)).to.deep.equal(["ACTIVE", "ACTIVE"]);
      expect(seen.map((s) => s.body).join("\n")).to.not.match(/Lovelace|1990-12-10|D-1001/);
      // The WSK went to the server as a public key only.
      const sessionBody = JSON.parse(seen.find((s) => s.path === "/wallet/api/sessions")!.body);
      expect(sessionBody.wsk).to.not.have.property("d");
    });

    it("list shows both, with their claim names and no values", async function () {
      const list = await listCredentials(wallet.api, wallet.store);
      expect(list.map((c) => [c.configuration, c.status, c.version, c.count, c.verified, c.onThisDevice])).to.deep.equal([
        ["identity_card", "ACTIVE", "1", 2, true, true],
        ["driving_licence", "ACTIVE", "1", 2, true, true],
      ]);
      expect(list[0]!.claimNames).to.have.members(["given_name", "family_name", "birthdate", "nationality", "document_number", "age_over_18"]);
      expect(list[1]!.claimNames).to.include.members(["licence_number", "driving_privileges"]);
      expect(list[0]!.display).to.equal("Identity card (development)");
      expect(JSON.stringify(list)).to.not.match(/Lovelace|Ada|1990-12-10|D-1001|L-1001/);
    });

    it("show returns the claims of one credential", async function () {
      const card = result.state === "ISSUED" ? result.instances[0]! : expect.fail();
      const shown = await showCredential(wallet.api, wallet.store, card.id);
      expect(shown).to.include({ issuer: ISSUER_ID, configuration: "identity_card", vct: "urn:hello-mesh:dev:identity-card", keys: 2, status: "ACTIVE" });
      expect(shown.claims).to.deep.equal({ given_name: "Ada", family_name: "Lovelace", birthdate: "1990-12-10", nationality: "GB", document_number: "D-1001", age_over_18: true });
      expect(shown.expiresAt).to.be.greaterThan(now());
    });

    it("present: the verifier accepts it, with only the chosen claims; --key 1 uses the other credential", async function () {
      const card = result.state === "ISSUED" ? result.instances[0]! : expect.fail();
      const holders: string[] = [];
      for (const key of [0, 1]) {
        const presentation = await presentCredential(wallet.api, wallet.store, card.id, { claims: ["family_name", "age_over_18"], audience: VERIFIER, nonce: `n-${key}`, key });
        const verified = await verifySdJwtVc({
          presentation,
          issuerKeys: issuer.metadata.jwks as never,
          expectedIssuer: ISSUER_ID,
          expectedVct: "urn:hello-mesh:dev:identity-card",
          audience: VERIFIER,
          nonce: `n-${key}`,
        });
        expect(verified.claims).to.deep.equal({ family_name: "Lovelace", age_over_18: true });
        expect(presentation).to.not.include(Buffer.from("1990-12-10").toString("base64url").slice(0, 8));
        holders.push(await jwkThumbprint(verified.holderKey));
        const pk = (await wallet.store.getKey(`pk.${card.id}.${key}`))!;
        expect(holders[key]).to.equal(await jwkThumbprint({ kty: pk.kty, crv: pk.crv, x: pk.x, y: pk.y }));
      }
      expect(holders[0]).to.not.equal(holders[1]);

      const unknown = (await rejectionOf(presentCredential(wallet.api, wallet.store, card.id, { claims: ["shoe_size"], audience: VERIFIER, nonce: "n" }))) as WalletClientError;
      expect(unknown).to.be.instanceOf(WalletClientError);
      expect(unknown.message).to.include("shoe_size").and.include("family_name").and.not.match(/Lovelace/);
      const noKey = (await rejectionOf(presentCredential(wallet.api, wallet.store, card.id, { claims: ["family_name"], audience: VERIFIER, nonce: "n", key: 2 }))) as WalletClientError;
      expect(noKey.message).to.include("--key 0 to 1");
    });

    it("present checks the issuer's status list first: a suspended or revoked credential is not presented, and a verifier sees REVOKED for one presented before", async function () {
      const licence = result.state === "ISSUED" ? result.instances[1]! : expect.fail();
      const sessionId = result.state === "ISSUED" ? result.sessionId : expect.fail();
      const input = { claims: ["family_name"], audience: VERIFIER, nonce: "n-status" };
      const before = await presentCredential(wallet.api, wallet.store, licence.id, input);
      const verifier = async (presentation: string) => {
        const verified = await verifySdJwtVc({ presentation, issuerKeys: issuer.metadata.jwks as never, expectedIssuer: ISSUER_ID, audience: VERIFIER, nonce: "n-status" });
        return fetchCredentialStatus(verified.status!, { issuer: ISSUER_ID, issuerKeys: issuer.metadata.jwks as never, now: now() });
      };
      expect(await verifier(before)).to.equal("VALID");

      issuer.suspendAsIssuer(sessionId, licence.id, true);
      const suspended = (await rejectionOf(presentCredential(wallet.api, wallet.store, licence.id, input))) as WalletClientError;
      expect(suspended).to.be.instanceOf(WalletClientError);
      expect(suspended.message).to.include(`SUSPENDED in its issuer's status list (${issuer.statusListUri})`);
      expect(await verifier(before)).to.equal("SUSPENDED");
      issuer.suspendAsIssuer(sessionId, licence.id, false);
      expect(await verifier(await presentCredential(wallet.api, wallet.store, licence.id, input))).to.equal("VALID");

      issuer.revoke(sessionId, licence.id);
      const revoked = (await rejectionOf(presentCredential(wallet.api, wallet.store, licence.id, input))) as WalletClientError;
      expect(revoked.message).to.include("REVOKED in its issuer's status list").and.include("not presented");
      expect(await verifier(before)).to.equal("REVOKED");
    });

    it("refuses a credential the wallet server forged and encrypted to the WEK (it carries the WEK's public half)", async function () {
      const card = result.state === "ISSUED" ? result.instances[0]! : expect.fail();
      const rogue = await es256Pair("issuer-signing-1"); // the issuer's kid, another key
      const wek = (await wallet.store.getKey(`wek.${card.id}`))!;
      const pk = (await wallet.store.getKey(`pk.${card.id}.0`))!;
      const forged = await issueSdJwtVc({
        issuer: ISSUER_ID,
        vct: "urn:hello-mesh:dev:identity-card",
        claims: { family_name: "Mallory", age_over_18: true },
        holderKey: { kty: pk.kty, crv: pk.crv, x: pk.x, y: pk.y },
        signingKey: { privateKey: keyObject(rogue.privateJwk), kid: "issuer-signing-1" },
      });
      const sealed = await sealCredentials([forged], { kty: "EC", crv: "P-256", x: wek.x!, y: wek.y!, kid: wek.kid! } as HpkePublicJwk);
      tamperCredentials = async (list) => list.map((i) => (i.credentialInstanceId === card.id ? { ...i, credentials: sealed } : i));
      const list = await listCredentials(wallet.api, wallet.store);
      const entry = list.find((c) => c.instanceId === card.id)!;
      expect(entry.verified).to.equal(false);
      expect(entry.claimNames).to.deep.equal([]);
      expect(entry.note).to.match(/refused/);
      const shown = (await rejectionOf(showCredential(wallet.api, wallet.store, card.id))) as WalletClientError;
      expect(shown).to.be.instanceOf(WalletClientError);
      expect(shown.message).to.include("signature").and.not.include("Mallory");
    });
  });

  it("D-1002: the proof_of_address document is uploaded, sent to the issuer by reference, and APPROVED", async function () {
    const { api, store } = await newWallet();
    seen.length = 0;
    const result = await add(api, store, { person: GRACE, document: { bytes: Buffer.from("%PDF-1.7 a utility bill"), mediaType: "application/pdf" } });
    expect(result.state).to.equal("ISSUED");
    const uploads = seen.filter((s) => s.path === "/wallet/api/evidence");
    expect(uploads).to.have.length(1);
    const supplement = JSON.parse(seen.find((s) => s.path === "/wallet/api/supplement")!.body);
    expect(supplement.clientEncryptedPayload).to.have.length(1);
    expect(supplement.clientEncryptedPayload[0]).to.include({ origin: "WALLET_CLIENT" }).and.have.keys("origin", "downloadUrl", "contentDigest", "contentSize", "expiresAt");
    expect(supplement.clientEncryptedPayload[0].contentDigest).to.equal(createHash("sha256").update(JSON.parse(uploads[0]!.body).jwe).digest("base64url"));
    expect(seen.map((s) => s.body).join("\n")).to.not.include(Buffer.from("%PDF-1.7 a utility bill").toString("base64"));
  });

  it("D-1002 without a document: says to pass --document; resume with one finishes the same session", async function () {
    const { api, store } = await newWallet();
    const error = (await rejectionOf(add(api, store, { person: GRACE }))) as WalletClientError;
    expect(error).to.be.instanceOf(WalletClientError);
    expect(error.message).to.include("the issuer asks for a proof_of_address document: pass --document <file>");
    expect(error.details.status).to.equal("ADDITIONAL_INFO_REQUIRED");
    const sessionId = error.details.sessionId!;
    const file = join(scratch, "bill.pdf");
    await writeFile(file, "%PDF-1.7 another bill");
    const resumed = await resumeCredentials(api, store, sessionId, { document: { path: file }, sleep: noSleep });
    expect(resumed).to.include({ state: "ISSUED", sessionId });
  });

  it("D-1003: PENDING, polled until the issuer decides, then APPROVED", async function () {
    const { api, store } = await newWallet();
    const statuses: VerificationStatus[] = [];
    let sleeps = 0;
    const result = await add(api, store, {
      person: ALAN,
      onStatus: (s) => statuses.push(s),
      wait: { pollMs: 5, maxPolls: 10 },
      sleep: async (ms) => {
        expect(ms).to.equal(5);
        // The issuer decides after the client has polled once and seen PENDING again.
        if (++sleeps === 2) await issuer.decide(statuses[0]!.sessionId, statuses[0]!.verificationId, "APPROVED");
      },
    });
    expect(result.state).to.equal("ISSUED");
    expect(statuses.map((s) => s.status)).to.deep.equal(["PENDING", "PENDING", "APPROVED"]);
  });

  it("D-1003 with --no-wait: returns PENDING with the session, and resume finishes it after the decision", async function () {
    const { api, store } = await newWallet();
    const pending = await add(api, store, { person: ALAN, wait: false });
    expect(pending).to.include({ state: "PENDING", waitingFor: "verification", timedOut: false });
    await issuer.decide(pending.sessionId, pending.verificationId, "APPROVED");
    const resumed = await resumeCredentials(api, store, pending.sessionId, { sleep: noSleep });
    expect(resumed.state).to.equal("ISSUED");
    expect((await listCredentials(api, store)).map((c) => [c.configuration, c.verified])).to.deep.equal([["identity_card", true]]);
    const again = (await rejectionOf(resumeCredentials(api, store, pending.sessionId))) as WalletClientError;
    expect(again.message).to.include("complete");
  });

  it("D-1004: DENIED stops with the reason code and the issuer's message", async function () {
    const { api, store } = await newWallet();
    const error = (await rejectionOf(add(api, store, { person: MALLORY }))) as WalletClientError;
    expect(error).to.be.instanceOf(WalletClientError);
    expect(error.details).to.include({ status: "DENIED", reasonCode: "POLICY" });
    expect(error.details.deniedMessage).to.be.a("string").and.not.empty;
    expect(error.message).to.include("POLICY").and.include(error.details.deniedMessage!);
    expect(await store.listKeys("wek.")).to.deep.equal([]);
  });

  it("REJECTED stops with its reason code and what to fix; resume with corrected details goes on", async function () {
    const { api, store } = await newWallet();
    const error = (await rejectionOf(add(api, store, { person: { ...GRACE, birthdate: "1900-01-01" } }))) as WalletClientError;
    expect(error.details).to.include({ status: "REJECTED", reasonCode: "DATA_MISMATCH" });
    expect(error.message).to.include("DATA_MISMATCH").and.include("check the document number, family name and birthdate").and.not.include("1900-01-01");
    const resumed = await resumeCredentials(api, store, error.details.sessionId!, { person: GRACE, document: { bytes: Buffer.from("bill"), mediaType: "application/pdf" }, sleep: noSleep });
    expect(resumed.state).to.equal("ISSUED");
  });

  it("D-1005: a credential issued asynchronously is polled for with a fresh WEK statement and no presentment keys again", async function () {
    const { api, store } = await newWallet();
    seen.length = 0;
    const result = await add(api, store, { person: KATHERINE, wait: { pollMs: 50, maxPolls: 20 }, sleep: (ms) => {
      expect(ms, "the issuer's Retry-After is honoured").to.equal(2000);
      return new Promise((r) => setTimeout(r, 50));
    } });
    expect(result.state).to.equal("ISSUED");
    const gets = seen.filter((s) => s.path === "/wallet/api/credential/get").map((s) => JSON.parse(s.body));
    expect(gets.length).to.be.greaterThan(1);
    expect(gets[0]).to.have.property("clientEncryptedData");
    for (const get of gets.slice(1)) expect(get).to.not.have.property("clientEncryptedData");
    expect(new Set(gets.map((g) => g.walletEncryptionKey.attestation.jwt)).size).to.equal(gets.length);
  });

  it("hello wallet transfer, as a user types it on a second device: the credentials issued again for its keys, the first device's unlinked", async function () {
    const first = await newWallet();
    const second = await newWallet(first.user);
    const [home1, home2] = [["--home", first.store.directory], ["--home", second.store.directory]];
    const added = await cli(["add", "dev", "identity_card", "driving_licence", "--document-number", "D-1001", "--family-name", "Lovelace", "--birthdate", "1990-12-10", ...home1]);
    expect(added.code, added.err).to.equal(0);
    const sessionId = /\(session (\S+)\)/.exec(added.out)![1]!;
    const old = [...added.out.matchAll(/^ {2}(?:identity_card|driving_licence) {2}(\S+)/gm)].map((m) => m[1]!);
    expect(old).to.have.length(2);
    const listed = await cli(["list", ...home2]);
    expect(listed.out).to.include(`session ${sessionId} (on another device: hello wallet transfer moves it here)`);
    const moved = await cli(["transfer", sessionId, "--keys", "2", ...home2]);
    expect(moved.code, moved.err).to.equal(0);
    expect(moved.out).to.match(/^Added to the wallet from .+ \(session [0-9a-f-]{36}\):$/m).and.include("2 credentials, version 1");
    for (const id of old) expect(moved.out).to.include(`Unlinked on the other device: ${id} is UNLINKED.\n`);
    const after = await cli(["list", ...home1]);
    for (const id of old) expect(after.out).to.match(new RegExp(`${id}\\n.*: UNLINKED`));
    // Nothing left to move, and the first device cannot take over its own session.
    expect((await cli(["transfer", sessionId, ...home2])).err).to.include("nothing to transfer");
    expect((await cli(["transfer", sessionId, ...home1])).err).to.include("this device holds the session");
  });

  it("hello wallet add dev, list, show, present, resume, status, refresh, suspend, unsuspend, unlink and delete, as a user types them", async function () {
    const { store } = await newWallet();
    const home = ["--home", store.directory];
    const added = await cli(["add", "dev", "identity_card", "driving_licence", "--document-number", "D-1001", "--family-name", "Lovelace", "--birthdate", "1990-12-10", "--keys", "2", ...home]);
    expect(added.code, added.err).to.equal(0);
    expect(added.err).to.include(`dev is ${ISSUER_ID}.`);
    expect(added.out).to.include("Added to the wallet from").and.include("identity_card").and.include("2 credentials, version 1");
    const card = /identity_card {2}(\S+)/.exec(added.out)![1]!;

    const list = await cli(["list", ...home]);
    expect(list.code).to.equal(0);
    expect(list.out).to.include(card).and.include("claims: ").and.include("family_name").and.not.match(/Lovelace|1990-12-10/);

    const shown = await cli(["show", card, ...home]);
    expect(shown.out).to.include('family_name: "Lovelace"').and.include("age_over_18: true");

    const presented = await cli(["present", card, "--claims", "family_name,age_over_18", "--audience", VERIFIER, "--nonce", "cli-1", "--key", "1", ...home]);
    expect(presented.code, presented.err).to.equal(0);
    const verified = await verifySdJwtVc({ presentation: presented.out.trim(), issuerKeys: issuer.metadata.jwks as never, expectedIssuer: ISSUER_ID, audience: VERIFIER, nonce: "cli-1" });
    expect(verified.claims).to.deep.equal({ family_name: "Lovelace", age_over_18: true });

    const waiting = await cli(["add", "dev", "identity_card", "--document-number", "D-1003", "--family-name", "Turing", "--birthdate", "1992-06-23", "--no-wait", ...home]);
    expect(waiting.code).to.equal(0);
    const sessionId = /hello wallet resume (\S+)/.exec(waiting.out)![1]!;
    const index = await store.getData(`session.${sessionId}`, z.looseObject({ verificationId: z.string(), status: z.string() }));
    expect(index).to.include({ status: "PENDING" });
    await issuer.decide(sessionId, index!.verificationId, "APPROVED");
    const resumed = await cli(["resume", sessionId, ...home]);
    expect(resumed.code, resumed.err).to.equal(0);
    expect(resumed.out).to.include("Added to the wallet");

    const denied = await cli(["add", ISSUER_ID, "identity_card", "--document-number", "D-1004", "--family-name", "Forger", "--birthdate", "1980-01-01", ...home]);
    expect(denied.code).to.equal(1);
    expect(denied.err).to.include("POLICY");
    // The lifecycle, signed by this device: suspend, a repeat, unsuspend, unlink (its keys go).
    const suspended = await cli(["suspend", card, "--reason", "mislaid", ...home]);
    expect(suspended.code, suspended.err).to.equal(0);
    expect(suspended.out).to.equal(`Done: ${card} is SUSPENDED_WALLET (was ACTIVE).\n`);
    expect((await cli(["suspend", card, ...home])).out).to.equal(`Nothing to change: ${card} is SUSPENDED_WALLET.\n`);
    expect((await cli(["unsuspend", card, ...home])).out).to.equal(`Done: ${card} is ACTIVE (was SUSPENDED_WALLET).\n`);
    // The issuer's own suspension, learnt by asking its status; this device cannot lift it.
    const cardSession = /Session (\S+) with/.exec(added.err)![1]!;
    issuer.suspendAsIssuer(cardSession, card, true);
    const status = await cli(["status", card, ...home]);
    expect(status.code, status.err).to.equal(0);
    expect(status.out).to.match(new RegExp(`^${card} is SUSPENDED_ISSUER at the issuer since .+ \\(the issuer's suspension\\); the issuer's version is 1\\.\\n$`));
    const lift = await cli(["unsuspend", card, ...home]);
    expect(lift.code).to.equal(1);
    expect(lift.err).to.equal(`hello wallet unsuspend: the issuer refused: SUSPENDED_BY_ISSUER; ${card} is SUSPENDED_ISSUER.\n`);
    issuer.suspendAsIssuer(cardSession, card, false);
    expect((await cli(["status", card, ...home])).out).to.include(`${card} is ACTIVE at the issuer`);
    // A new version: status says so, refresh fetches it under the same keys.
    await issuer.publishUpdate(cardSession, card);
    expect((await cli(["status", card, ...home])).out).to.include(`A newer version than this wallet's (1) is available: hello wallet refresh ${card}\n`);
    const refreshed = await cli(["refresh", card, ...home]);
    expect(refreshed.code, refreshed.err).to.equal(0);
    expect(refreshed.out).to.equal(`Refreshed ${card}: version 2 (was 1), 2 credentials, checked. Shown as "Identity card (development)".\n`);
    // New display data (DISPLAY_DATA_UPDATED): the next refresh takes it, the version unchanged.
    await issuer.publishDisplayUpdate(cardSession, card);
    const redisplayed = await cli(["refresh", card, ...home]);
    expect(redisplayed.out).to.equal(`Refreshed ${card}: still version 2, 2 credentials, checked. Shown as "Identity card (development), design 2".\n`);
    // New presentment keys (KEY_ROTATED): three of them, the two old ones gone, and a presentation with the third verifies.
    const oldKeys = await Promise.all((await store.listKeys(`pk.${card}.`)).map((name) => store.getKey(name)));
    const rotated = await cli(["refresh", card, "--new-keys", "3", ...home]);
    expect(rotated.code, rotated.err).to.equal(0);
    expect(rotated.out).to.include("3 credentials, checked.").and.include("They are bound to 3 new presentment keys; the old ones are removed from this device.\n");
    const newKeys = await Promise.all((await store.listKeys(`pk.${card}.`)).map((name) => store.getKey(name)));
    expect(newKeys).to.have.length(3);
    for (const old of oldKeys) expect(newKeys.map((k) => k!.d)).to.not.include(old!.d);
    expect(await store.listKeys(`pkn.${card}.`), "nothing left staged").to.deep.equal([]);
    expect(issuer.received.filter((e) => e.credentialInstanceId === card).map((e) => e.eventType)).to.include("KEY_ROTATED");
    const third = await cli(["present", card, "--claims", "age_over_18", "--audience", VERIFIER, "--nonce", "cli-rotated", "--key", "2", ...home]);
    expect(third.code, third.err).to.equal(0);
    expect((await verifySdJwtVc({ presentation: third.out.trim(), issuerKeys: issuer.metadata.jwks as never, expectedIssuer: ISSUER_ID, audience: VERIFIER, nonce: "cli-rotated" })).claims).to.deep.equal({ age_over_18: true });
    expect((await cli(["refresh", card, "--new-keys", "11", ...home])).code).to.equal(2);
    expect(await store.listKeys(`pk.${card}.`)).to.have.length(3);
    const unlinked = await cli(["unlink", card, ...home]);
    expect(unlinked.out).to.equal(`Done: ${card} is UNLINKED (was ACTIVE). Its keys on this device are removed.\n`);
    expect(await store.listKeys(`pk.${card}.`)).to.deep.equal([]);
    expect(await store.getKey(`wek.${card}`)).to.equal(undefined);
    const after = await cli(["unsuspend", card, ...home]);
    expect(after.code).to.equal(1);
    expect(after.err).to.equal(`hello wallet unsuspend: the issuer refused: UNLINKED is terminal; ${card} is UNLINKED.\n`);
    expect((await cli(["suspend", "no-such-credential", ...home])).err).to.include("the wallet holds no credential no-such-credential");
    const deleted = await cli(["delete", card, ...home]);
    expect(deleted.code, deleted.err).to.equal(0);
    expect(deleted.out).to.equal(`Deleted ${card}: its record is gone from hello-mesh and its keys from this device.\n`);
    expect((await cli(["list", ...home])).out).to.not.include(card);

    for (const args of [["transfer"], ["transfer", card, "extra"], ["transfer", card, "--claims", "x"], ["transfer", card, "--keys", "11"], ["status"], ["refresh"], ["delete"], ["suspend"], ["unlink", card, "extra"], ["unsuspend", card, "--claims", "x"], ["add", "dev"], ["add", "dev", "identity_card"], ["present", card, "--audience", VERIFIER, "--nonce", "n"], ["list", "--claims", "x"], ["show"], ["add", "dev", "identity_card", "--keys", "11", "--document-number", "D-1001", "--family-name", "Lovelace", "--birthdate", "1990-12-10"]]) {
      expect((await cli([...args, ...home])).code, args.join(" ")).to.equal(2);
    }
  });

  // --- whom the client trusts ---------------------------------------------------------------

  describe("issuer trust: what the wallet server cannot fake", function () {
    it("refuses, before any session is made: an unpinned key, a forged signature, another typ or kid, alg none, another issuer, an expired or too long statement, a swapped or bad jwk", async function () {
      const { api, store, user } = await newWallet();
      const rogue = await es256Pair();
      const rogueHpke = await generateHpkeKeyPair();
      const good = await statement();
      const [h, p, s] = good.split(".") as [string, string, string];
      const swapped = `${h}.${b64json({ ...JSON.parse(Buffer.from(p, "base64url").toString()), jwk: rogueHpke.publicJwk })}.${s}`;
      const attacks: [string, string | Promise<string>, RegExp][] = [
        ["unpinned kid", statement({ kid: "wallet.rogue", key: rogue.privateJwk }), /not a wallet key this wallet pinned/],
        ["pinned kid, another key", statement({ key: rogue.privateJwk }), /signature is not the pinned wallet key's/],
        ["a wallet-access key", statement({ kid: "wallet-access.test-1", key: attestation.privateJwk }), /kid is not one of Token's wallet\. keys/],
        ["another typ", statement({ typ: "JWT" }), /typ is not hello-issuer\+jwt/],
        ["alg none", `${b64json({ alg: "none", typ: "hello-issuer+jwt", kid: "wallet.test-1" })}.${p}.`, /alg is not ES256/],
        ["another issuer", statement({ sub: "https://other-issuer.test" }), /another issuer/],
        ["expired", statement({ iat: now() - 7200, exp: now() - 3600 }), /expired/],
        ["too long", statement({ exp: now() + 7200 }), /lifetime must be at most 3600/],
        ["jwk swapped by the server", swapped, /signature is not the pinned wallet key's/],
        ["a private jwk", statement({ jwk: rogueHpke.privateJwk }), /private key material/],
        ["not P-256", statement({ jwk: { kty: "OKP", crv: "X25519", x: Buffer.alloc(32, 1).toString("base64url") } }), /not an EC P-256 key/],
      ];
      for (const [what, made, reason] of attacks) {
        const listed = await made;
        listIssuers = async () => [{ issuer: ISSUER_ID, statement: listed }];
        const error = await rejectionOf(add(api, store, { person: ADA }), what);
        expect(error, what).to.be.instanceOf(IssuerTrustError);
        expect((error as Error).message, what).to.match(reason);
      }
      expect(sessionsOf(user), "no session was made").to.equal(0);
      expect(await store.listKeys()).to.deep.equal([]);
      // The honest twin.
      listIssuers = honestList;
      expect((await add(api, store, { person: ADA })).state).to.equal("ISSUED");
    });

    it("the local issuers.json overrides the server's list (even one Token signed); it must be 0600", async function () {
      const { api, store, user } = await newWallet();
      const rogueHpke = await generateHpkeKeyPair();
      listIssuers = async () => [{ issuer: ISSUER_ID, statement: await statement({ jwk: rogueHpke.publicJwk }) }];
      // Without the local file the client would seal to the listed key, which the issuer cannot open.
      const wrong = (await rejectionOf(add(api, store, { person: ADA }))) as WalletClientError;
      expect(wrong.message).to.match(/cannot be decrypted|invalid_encryption|Invalid encryption/i);
      const before = sessionsOf(user);

      const file = join(store.directory, "issuers.json");
      const local = { issuers: [{ id: ISSUER_ID, encryptionKey: issuer.metadata.encryptionKey, jwks: issuer.metadata.jwks, credential_configurations: configurations() }] };
      await writeFile(file, JSON.stringify(local), { mode: 0o644 });
      const open = (await rejectionOf(add(api, store, { person: ADA }))) as IssuerTrustError;
      expect(open).to.be.instanceOf(IssuerTrustError);
      expect(open.message).to.include("chmod 600");
      expect(sessionsOf(user)).to.equal(before);

      await rm(file);
      await writeFile(file, JSON.stringify(local), { mode: 0o600 });
      const trusted = await trustedIssuer(api, store, ISSUER_ID);
      expect(trusted.source).to.equal("local");
      expect(trusted.encryptionKey.x).to.equal(issuer.metadata.encryptionKey.x);
      expect((await add(api, store, { person: ADA })).state).to.equal("ISSUED");
      // The local file also makes an issuer the server does not list (or lists badly) usable.
      listIssuers = async () => [];
      expect((await add(api, store, { person: ADA })).state).to.equal("ISSUED");
    });

    it("refuses a configuration the trusted issuer does not offer, before any session", async function () {
      const { api, store, user } = await newWallet();
      const error = (await rejectionOf(add(api, store, { person: ADA, configurations: ["passport"] }))) as WalletClientError;
      expect(error.message).to.include("does not offer passport").and.include("identity_card");
      expect(sessionsOf(user)).to.equal(0);
    });

    it("dev names the one issuer the server lists, and only when there is exactly one", async function () {
      const { api } = await newWallet();
      expect(await resolveIssuerId(api, "dev")).to.equal(ISSUER_ID);
      expect(await resolveIssuerId(api, "https://elsewhere.test")).to.equal("https://elsewhere.test");
      listIssuers = async () => [
        { issuer: ISSUER_ID, statement: await statement() },
        { issuer: "https://other-issuer.test", statement: await statement({ sub: "https://other-issuer.test" }) },
      ];
      expect(((await rejectionOf(resolveIssuerId(api, "dev"))) as Error).message).to.include("ambiguous");
      listIssuers = async () => [];
      expect(((await rejectionOf(resolveIssuerId(api, "dev"))) as Error).message).to.include("lists no issuer");
    });
  });
});
