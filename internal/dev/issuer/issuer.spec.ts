// The S2S draft's black-box checks for an Issuer Server (s2s-draft-summary §7, "Issuer
// Server", 1-11 and 14; 12-13 are the lifecycle's, issue 15), run against the
// development issuer over real mutual TLS, driven the way a wallet would: a test
// wallet client (keys, sealed payloads) and a test wallet server (mTLS client to the
// issuer, host of /verification/notify, /event/notify and evidence downloads). Each
// attack asserts the exact refusal and has an honest twin.

import { createHash, createPrivateKey, randomUUID } from "node:crypto";
import { request as httpsRequest } from "node:https";
import { expect } from "chai";
import { type JWK, calculateJwkThumbprint } from "jose";
import type { CertificateAndKey } from "../../ops/pki/pki.js";
import { openCredentials, sealClientPayload, walletEncryptionKeyData } from "../../s2s/client-payload.js";
import { encryptCompact, generateHpkeKeyPair, type HpkePublicJwk } from "../../s2s/hpke-jwe.js";
import { ITEM_TYPES, KEY_TYPES, type JweEncryptedPayload, issuerMetadataSchema, provisionResponseSchema, verificationStatusSchema, credentialGetResponseSchema, eventNotifySchema, type VerificationStatus, type EventNotify } from "../../s2s/messages.js";
import { ProblemError, S2S_INVALID_CLIENT_AUTHENTICATION, S2S_INVALID_ENCRYPTION } from "../../s2s/problem.js";
import { inspectSdJwtVc, presentSdJwtVc, verifySdJwtVc } from "../../s2s/sd-jwt-vc.js";
import { signStatement } from "../../s2s/statements.js";
import { fetchCredentialStatus } from "../../s2s/status-list.js";
import { WireClient } from "../../s2s/wire-client.js";
import { type WireServer, startWireServer } from "../../s2s/wire-server.js";
import { signWskAttestation } from "../../s2s/wsk-attestation.js";
import { z } from "zod";
import { type DevIssuer, startDevIssuer } from "./issuer.js";
import { ADA, ALAN, GRACE, KATHERINE, MALLORY, es256Pair, s2sCa, s2sLeaf } from "../../../test/support/s2s-fixtures.js";

const ISSUER_ID = "https://issuer.dev.hello-mesh.test";
const WALLET_SERVER = "https://wallet.hello-mesh.test";

const leaf = s2sLeaf;
const ca = s2sCa;

/** What a wallet server received from the issuer. */
interface Inbox {
  notifications: VerificationStatus[];
  events: EventNotify[];
  blobs: Map<string, string>;
}

/** A test wallet server: its mTLS identity, the issuer client, and the endpoints the issuer calls back. */
async function testWalletServer(name: string, issuerCa: CertificateAndKey) {
  const walletCa = ca(`${name} CA`);
  const cert = leaf(walletCa, name);
  const inbox: Inbox = { notifications: [], events: [], blobs: new Map() };
  const server: WireServer = await startWireServer({
    ...cert,
    peers: [{ id: "issuer", caPem: issuerCa.certPem }],
    routes: [
      {
        path: "/verification/notify",
        schema: verificationStatusSchema,
        async handle({ body }) {
          inbox.notifications.push(body);
          return { body: { sessionId: body.sessionId, verificationId: body.verificationId } };
        },
      },
      {
        path: "/event/notify",
        schema: eventNotifySchema,
        async handle({ body }) {
          inbox.events.push(body);
          return { body: { acknowledged: true } };
        },
      },
    ],
    getRoutes: [
      {
        path: "/evidence/proof-of-address",
        async handle() {
          const blob = inbox.blobs.get("proof-of-address");
          return blob ? { body: undefined, text: { contentType: "application/jose", body: blob } } : { status: 404, body: {} };
        },
      },
    ],
  });
  return { walletCa, cert, inbox, server };
}

describe("development Issuer Server: the draft's black-box checks for an Issuer", function () {
  this.timeout(20_000);

  const issuerCa = ca("issuer CA");
  const issuerCert = leaf(issuerCa, "issuer");
  let attestation: { publicJwk: JWK; privateJwk: JWK };
  let issuer: DevIssuer;
  let walletA: Awaited<ReturnType<typeof testWalletServer>>;
  let walletB: Awaited<ReturnType<typeof testWalletServer>>;
  let clientA: WireClient;
  let clientB: WireClient;
  let issuerKey: HpkePublicJwk;

  before(async () => {
    attestation = await es256Pair("attestation-1");
    walletA = await testWalletServer("wallet server A", issuerCa);
    walletB = await testWalletServer("wallet server B", issuerCa);
    const encryption = await generateHpkeKeyPair();
    const signing = await es256Pair("issuer-signing-1");
    const walletServer = (w: typeof walletA, id: string) => ({
      id,
      caPem: w.walletCa.certPem,
      baseUrl: w.server.url,
      attestationIssuer: WALLET_SERVER,
      attestationJwks: { keys: [{ ...attestation.publicJwk, alg: "ES256" }] },
    });
    issuer = await startDevIssuer({
      issuerId: ISSUER_ID,
      ...issuerCert,
      walletServers: [walletServer(walletA, "a"), walletServer(walletB, "b")],
      encryptionKey: encryption.privateJwk,
      signingKey: signing.privateJwk,
    });
    clientA = new WireClient({ baseUrl: issuer.url, caPem: issuerCa.certPem, ...walletA.cert });
    clientB = new WireClient({ baseUrl: issuer.url, caPem: issuerCa.certPem, ...walletB.cert });
    const metadata = await clientA.get("/.well-known/s2s-issuer", issuerMetadataSchema);
    issuerKey = metadata.body.encryptionKey as unknown as HpkePublicJwk;
  });

  after(async () => {
    clientA?.close();
    clientB?.close();
    await issuer?.close();
    await walletA?.server.close();
    await walletB?.server.close();
  });

  /** A wallet client instance: its WSK and DPoP key, and one S2S session. */
  async function newInstance() {
    const wsk = await es256Pair();
    const dpop = await es256Pair();
    return { wsk, dpopJkt: await calculateJwkThumbprint(dpop.publicJwk), sessionId: randomUUID() };
  }
  type Instance = Awaited<ReturnType<typeof newInstance>>;

  async function signingKeyData(instance: Instance, options: { attestWith?: JWK; attestedKey?: JWK; attestedSession?: string; transferFrom?: string } = {}) {
    const jwt = await signWskAttestation(
      {
        walletServer: WALLET_SERVER,
        issuerId: ISSUER_ID,
        sessionId: options.attestedSession ?? instance.sessionId,
        wsk: options.attestedKey ?? instance.wsk.publicJwk,
        dpopJkt: instance.dpopJkt,
        ...(options.transferFrom !== undefined ? { transferFrom: options.transferFrom } : {}),
      },
      { privateKey: await importPrivate(options.attestWith ?? attestation.privateJwk), kid: "attestation-1", alg: "ES256" },
    );
    return { keyType: KEY_TYPES.signing, client_public_key: { ...instance.wsk.publicJwk, alg: "ES256" }, attestation: { proof_type: "jwt", jwt } };
  }

  const person = (who: object) => ({ type: ITEM_TYPES.personData, id: "person", ...who });

  async function initiateBody(instance: Instance, who?: object, options: { configurations?: string[]; nonce?: string } = {}) {
    return {
      sessionId: instance.sessionId,
      credentialConfigurationIds: options.configurations ?? ["identity_card", "driving_licence"],
      walletSigningKeyData: await signingKeyData(instance),
      verificationNonce: options.nonce ?? (await signStatement("nonce", { audience: ISSUER_ID, sessionId: instance.sessionId }, {}, instance.wsk.privateJwk)),
      ...(who
        ? {
            verificationData: {
              clientEncryptedPayload: [await sealClientPayload("verificationData", person(who), { sessionId: instance.sessionId }, instance.wsk.privateJwk, issuerKey)],
              serverVerificationDataItem: [
                { type: ITEM_TYPES.walletAge, id: "wallet-age", days: 420 },
                { type: ITEM_TYPES.emailVerified, id: "email", verified: true },
              ],
            },
          }
        : {}),
    };
  }

  const initiate = async (instance: Instance, who?: object, client = clientA) =>
    (await client.post("/verification/initiate", await initiateBody(instance, who), verificationStatusSchema)).body;

  async function refusal(promise: Promise<unknown>): Promise<ProblemError["problem"]> {
    try {
      await promise;
    } catch (error) {
      if (error instanceof ProblemError) return error.problem;
      throw error;
    }
    throw new Error("expected a problem answer, got success");
  }

  async function approvedInstances(instance: Instance, who = ADA) {
    const status = await initiate(instance, who);
    expect(status.status).to.equal("APPROVED");
    const provisioned = await clientA.post("/credential/provision", { sessionId: instance.sessionId, verificationId: status.verificationId }, provisionResponseSchema);
    return { status, instances: provisioned.body.credentialInstances };
  }

  async function getBody(instance: Instance, instanceId: string, options: { presentmentKeys?: JWK[]; wek?: Awaited<ReturnType<typeof generateHpkeKeyPair>> } = {}) {
    const wek = options.wek ?? (await generateHpkeKeyPair());
    return {
      wek,
      body: {
        sessionId: instance.sessionId,
        credentialInstanceId: instanceId,
        reason: "first issuance",
        walletEncryptionKey: await walletEncryptionKeyData(wek.publicJwk, ISSUER_ID, instance.sessionId, instance.wsk.privateJwk),
        ...(options.presentmentKeys
          ? {
              clientEncryptedData: await sealClientPayload(
                "presentmentKeys",
                { presentmentKeys: options.presentmentKeys },
                { sessionId: instance.sessionId, credentialInstanceId: instanceId },
                instance.wsk.privateJwk,
                issuerKey,
              ),
            }
          : {}),
      },
    };
  }

  describe("1. mutual TLS", () => {
    it("refuses a connection without a client certificate, or with one from an unknown CA, in the handshake", async () => {
      const rogue = leaf(ca("rogue CA"), "rogue");
      for (const credentials of [{}, rogue]) {
        const outcome = await rawRequest(issuer.url, "/.well-known/s2s-issuer", { method: "GET", headers: { "Api-Version": "1.0.0" } }, issuerCa.certPem, credentials);
        expect(outcome.error, "handshake refused").to.be.instanceOf(Error);
      }
      // The honest twin: wallet server A's certificate gets through.
      const ok = await rawRequest(issuer.url, "/.well-known/s2s-issuer", { method: "GET", headers: { "Api-Version": "1.0.0" } }, issuerCa.certPem, walletA.cert);
      expect(ok.status).to.equal(200);
    });
  });

  describe("2. Api-Version", () => {
    it("answers a missing or unsupported version with 400 problem+json and Api-Supported-Versions; a valid answer repeats Api-Version", async () => {
      for (const headers of [{}, { "Api-Version": "2.0.0" }] as Record<string, string>[]) {
        const answer = await rawRequest(issuer.url, "/verification/status", { method: "POST", headers: { ...headers, "x-request-id": randomUUID(), "content-type": "application/json" }, body: "{}" }, issuerCa.certPem, walletA.cert);
        expect(answer.status).to.equal(400);
        expect(answer.headers["content-type"]).to.match(/^application\/problem\+json/);
        expect(answer.headers["api-supported-versions"]).to.equal("1.0.0");
        expect(JSON.parse(answer.body)).to.include({ status: 400, errorCode: "unsupported_api_version" });
      }
      const ok = await rawRequest(issuer.url, "/.well-known/s2s-issuer", { method: "GET", headers: { "Api-Version": "1.0.0" } }, issuerCa.certPem, walletA.cert);
      expect(ok.headers["api-version"]).to.equal("1.0.0");
      const metadata = issuerMetadataSchema.parse(JSON.parse(ok.body));
      expect(metadata.issuer).to.equal(ISSUER_ID);
      expect(metadata.encryptionKey).to.include({ kty: "EC", crv: "P-256", alg: "HPKE-0" });
      expect(metadata.encryptionKey).to.not.have.property("d");
      expect(metadata.jwks.keys[0]).to.not.have.property("d");
    });
  });

  describe("3. idempotency", () => {
    it("answers the same x-request-id and body twice identically and makes one verification; another body under that id is 422", async () => {
      const instance = await newInstance();
      const body = await initiateBody(instance, ADA);
      const requestId = randomUUID();
      const first = await clientA.post("/verification/initiate", body, verificationStatusSchema, { requestId });
      const second = await clientA.post("/verification/initiate", body, verificationStatusSchema, { requestId });
      expect(second.body).to.deep.equal(first.body);
      expect(issuer.verificationCount(instance.sessionId)).to.equal(1);
      const other = await refusal(clientA.post("/verification/initiate", { ...body, locale: "de" }, verificationStatusSchema, { requestId }));
      expect(other).to.include({ status: 422, errorCode: "request_id_reused" });
    });

    it("refuses a request without x-request-id", async () => {
      const answer = await rawRequest(issuer.url, "/verification/status", { method: "POST", headers: { "Api-Version": "1.0.0", "content-type": "application/json" }, body: "{}" }, issuerCa.certPem, walletA.cert);
      expect(answer.status).to.equal(400);
      expect(JSON.parse(answer.body)).to.include({ errorCode: "invalid_request_id" });
    });
  });

  describe("4. initiate", () => {
    it("returns a full VerificationStatus that echoes the sessionId, with a verificationId and an immediate APPROVED", async () => {
      const instance = await newInstance();
      const status = await initiate(instance, ADA);
      expect(status).to.include({ sessionId: instance.sessionId, status: "APPROVED", authorizedDeviceCount: 1 });
      expect(status.verificationId).to.be.a("string").and.not.empty;
      expect(status.credentialConfigurationIds).to.deep.equal(["identity_card", "driving_licence"]);
    });

    it("refuses a configuration it does not offer, and malformed server signals", async () => {
      const instance = await newInstance();
      const unknown = await refusal(clientA.post("/verification/initiate", await initiateBody(instance, ADA, { configurations: ["passport"] }), verificationStatusSchema));
      expect(unknown).to.include({ status: 400, errorCode: "unsupported_credential_configuration" });
      const body = await initiateBody(await newInstance(), ADA);
      body.verificationData!.serverVerificationDataItem[0] = { type: ITEM_TYPES.walletAge, id: "wallet-age", days: -1 };
      expect(await refusal(clientA.post("/verification/initiate", body, verificationStatusSchema))).to.include({ status: 400, errorCode: "invalid_request" });
    });
  });

  describe("5. replay protection and the WSK", () => {
    it("refuses a reused sessionId, from the same or another wallet server", async () => {
      const instance = await newInstance();
      await initiate(instance, ADA);
      for (const client of [clientA, clientB]) {
        const again = await refusal(client.post("/verification/initiate", await initiateBody(instance, ADA), verificationStatusSchema));
        expect(again).to.include({ status: 409, errorCode: "session_id_reused" });
      }
    });

    it("refuses a nonce over another sessionId, for another issuer, signed by another key, or replayed", async () => {
      const instance = await newInstance();
      const otherKey = await es256Pair();
      const nonces = [
        await signStatement("nonce", { audience: ISSUER_ID, sessionId: randomUUID() }, {}, instance.wsk.privateJwk),
        await signStatement("nonce", { audience: "https://another-issuer.test", sessionId: instance.sessionId }, {}, instance.wsk.privateJwk),
        await signStatement("nonce", { audience: ISSUER_ID, sessionId: instance.sessionId }, {}, otherKey.privateJwk),
      ];
      for (const nonce of nonces) {
        const refused = await refusal(clientA.post("/verification/initiate", await initiateBody(instance, ADA, { nonce }), verificationStatusSchema));
        expect(refused).to.include({ status: 422, type: S2S_INVALID_CLIENT_AUTHENTICATION });
      }
      expect(issuer.verificationCount(instance.sessionId)).to.equal(0);
      // A nonce that was used once (in a refused request it still counts) is not taken again.
      const nonce = await signStatement("nonce", { audience: ISSUER_ID, sessionId: instance.sessionId }, {}, instance.wsk.privateJwk);
      const body = await initiateBody(instance, ADA, { nonce });
      body.credentialConfigurationIds = ["passport"];
      await refusal(clientA.post("/verification/initiate", body, verificationStatusSchema));
      const replayed = await refusal(clientA.post("/verification/initiate", await initiateBody(instance, ADA, { nonce }), verificationStatusSchema));
      expect(replayed).to.include({ status: 422, type: S2S_INVALID_CLIENT_AUTHENTICATION });
      // The honest twin: a fresh nonce for this session and issuer.
      expect((await initiate(instance, ADA)).status).to.equal("APPROVED");
    });

    it("refuses a WSK the wallet server invented: no attestation, one signed by another key, for another key or session", async () => {
      const instance = await newInstance();
      const rogue = await es256Pair();
      const invented = await es256Pair();
      const variants = [
        async () => ({ ...(await signingKeyData(instance)), attestation: undefined }),
        () => signingKeyData(instance, { attestWith: rogue.privateJwk }),
        () => signingKeyData(instance, { attestedKey: invented.publicJwk }),
        () => signingKeyData(instance, { attestedSession: randomUUID() }),
      ];
      for (const variant of variants) {
        const body = { ...(await initiateBody(instance, ADA)), walletSigningKeyData: await variant() };
        const refused = await refusal(clientA.post("/verification/initiate", body, verificationStatusSchema));
        expect(refused).to.include({ status: 422, type: S2S_INVALID_CLIENT_AUTHENTICATION });
      }
      expect(issuer.verificationCount(instance.sessionId)).to.equal(0);
    });
  });

  describe("6. client payloads", () => {
    it("refuses a bad WSK signature, an aud that is not the issuer key's thumbprint, an undecryptable JWE and a plaintext that is no JWS", async () => {
      const instance = await newInstance();
      const stranger = await es256Pair();
      const otherIssuerKey = (await generateHpkeKeyPair()).publicJwk;
      const payloads: Array<[JweEncryptedPayload, string]> = [
        [await sealClientPayload("verificationData", person(ADA), { sessionId: instance.sessionId }, stranger.privateJwk, issuerKey), S2S_INVALID_CLIENT_AUTHENTICATION],
        [
          { origin: "WALLET_CLIENT", jwe: await encryptCompact(await signStatement("verificationData", { audience: otherIssuerKey.kid, sessionId: instance.sessionId }, person(ADA), instance.wsk.privateJwk), issuerKey) },
          S2S_INVALID_CLIENT_AUTHENTICATION,
        ],
        [await sealClientPayload("verificationData", person(ADA), { sessionId: instance.sessionId }, instance.wsk.privateJwk, otherIssuerKey), S2S_INVALID_ENCRYPTION],
        [{ origin: "WALLET_CLIENT", jwe: await encryptCompact(JSON.stringify(person(ADA)), issuerKey) }, S2S_INVALID_CLIENT_AUTHENTICATION],
        [{ ...(await sealClientPayload("verificationData", person(ADA), { sessionId: instance.sessionId }, instance.wsk.privateJwk, issuerKey)), origin: "WALLET_SERVER" }, S2S_INVALID_CLIENT_AUTHENTICATION],
      ];
      for (const [payload, type] of payloads) {
        const body = await initiateBody(instance, undefined);
        const refused = await refusal(clientA.post("/verification/initiate", { ...body, verificationData: { clientEncryptedPayload: [payload] } }, verificationStatusSchema));
        expect(refused).to.include({ status: 422, type });
      }
      expect(issuer.verificationCount(instance.sessionId)).to.equal(0);
    });

    it("refuses a client payload replayed into another session or verification", async () => {
      const first = await newInstance();
      const payload = await sealClientPayload("verificationData", person(GRACE), { sessionId: first.sessionId }, first.wsk.privateJwk, issuerKey);
      const status = await clientA.post("/verification/initiate", { ...(await initiateBody(first)), verificationData: { clientEncryptedPayload: [payload] } }, verificationStatusSchema);
      expect(status.body.status).to.equal("ADDITIONAL_INFO_REQUIRED");
      // The same sealed payload, in the same session's supplement: it was spent, and has no verificationId.
      const again = await refusal(clientA.post("/verification/supplement", { sessionId: first.sessionId, verificationId: status.body.verificationId, verificationDataPayload: { clientEncryptedPayload: [payload] } }, verificationStatusSchema));
      expect(again).to.include({ status: 422, type: S2S_INVALID_CLIENT_AUTHENTICATION });
      // Into another session (even one of the same client instance's WSK).
      const second = { ...first, sessionId: randomUUID() };
      const elsewhere = await refusal(clientA.post("/verification/initiate", { ...(await initiateBody(second)), verificationData: { clientEncryptedPayload: [payload] } }, verificationStatusSchema));
      expect(elsewhere).to.include({ status: 422, type: S2S_INVALID_CLIENT_AUTHENTICATION });
    });
  });

  describe("7. the negotiated flow", () => {
    it("initiate without data asks for it; supplement; a document sent out of band by reference; APPROVED", async () => {
      const instance = await newInstance();
      const asked = await initiate(instance);
      expect(asked.status).to.equal("ADDITIONAL_INFO_REQUIRED");
      expect(asked.verificationDataRequest!.verificationDataItems[0]).to.include({ type: ITEM_TYPES.personData, required: true });
      const context = { sessionId: instance.sessionId, verificationId: asked.verificationId };
      const supplement = async (payload: JweEncryptedPayload) =>
        (await clientA.post("/verification/supplement", { ...context, verificationDataPayload: { clientEncryptedPayload: [payload] } }, verificationStatusSchema)).body;
      const document = await supplement(await sealClientPayload("verificationData", person(GRACE), context, instance.wsk.privateJwk, issuerKey));
      expect(document.status).to.equal("ADDITIONAL_INFO_REQUIRED");
      const wanted = document.verificationDataRequest!.verificationDataItems[0]!;
      expect(wanted).to.include({ type: ITEM_TYPES.document, id: "proof_of_address" });

      // The evidence: sealed for the issuer, uploaded to the wallet server, sent by reference.
      const sealed = await sealClientPayload(
        "verificationData",
        { type: ITEM_TYPES.document, id: wanted.id, documentType: "proof_of_address", mediaType: "application/pdf", content: Buffer.from("%PDF-1.7 utility bill").toString("base64") },
        context,
        instance.wsk.privateJwk,
        issuerKey,
      );
      walletA.inbox.blobs.set("proof-of-address", sealed.jwe!);
      const reference = {
        origin: "WALLET_CLIENT" as const,
        downloadUrl: `${walletA.server.url}/evidence/proof-of-address`,
        contentDigest: createHash("sha256").update(sealed.jwe!, "ascii").digest("base64url"),
        contentSize: sealed.jwe!.length,
      };
      // Attacks first: another origin, and a digest that does not match.
      const elsewhere = await refusal(supplement({ ...reference, downloadUrl: `${walletB.server.url}/evidence/proof-of-address` }));
      expect(elsewhere).to.include({ status: 422, errorCode: "untrusted_download_url" });
      const altered = await refusal(supplement({ ...reference, contentDigest: createHash("sha256").update("other").digest("base64url") }));
      expect(altered).to.include({ status: 422, errorCode: "content_digest_mismatch" });
      const approved = await supplement(reference);
      expect(approved).to.include({ status: "APPROVED" });
      expect(approved.credentialConfigurationIds).to.deep.equal(["identity_card", "driving_licence"]);
    });

    it("PENDING, then the decision reaches the wallet server's /verification/notify and matches /verification/status", async () => {
      const instance = await newInstance();
      const pending = await initiate(instance, ALAN);
      expect(pending.status).to.equal("PENDING");
      await issuer.decide(instance.sessionId, pending.verificationId, "APPROVED");
      const notified = walletA.inbox.notifications.find((n) => n.verificationId === pending.verificationId);
      expect(notified).to.include({ sessionId: instance.sessionId, status: "APPROVED" });
      const status = await clientA.post("/verification/status", { sessionId: instance.sessionId, verificationId: pending.verificationId }, verificationStatusSchema);
      expect(status.body).to.deep.equal(notified);
      // Monotonic: a later decision never moves a terminal state back.
      await issuer.decide(instance.sessionId, pending.verificationId, "DENIED");
      expect((await clientA.post("/verification/status", { sessionId: instance.sessionId, verificationId: pending.verificationId }, verificationStatusSchema)).body.status).to.equal("APPROVED");
    });
  });

  describe("8. REJECTED, DENIED and cancel", () => {
    it("REJECTED takes another supplement; the third mismatch is DENIED, after which nothing more is taken", async () => {
      const instance = await newInstance();
      const wrong = { ...GRACE, birthdate: "1900-01-01" };
      let status = await initiate(instance, wrong);
      expect(status).to.include({ status: "REJECTED", reasonCode: "DATA_MISMATCH" });
      const context = { sessionId: instance.sessionId, verificationId: status.verificationId };
      for (const expected of ["REJECTED", "DENIED"]) {
        const payload = await sealClientPayload("verificationData", person(wrong), context, instance.wsk.privateJwk, issuerKey);
        status = (await clientA.post("/verification/supplement", { ...context, verificationDataPayload: { clientEncryptedPayload: [payload] } }, verificationStatusSchema)).body;
        expect(status.status).to.equal(expected);
      }
      expect(status).to.include({ reasonCode: "MAX_ATTEMPTS" });
      const payload = await sealClientPayload("verificationData", person(GRACE), context, instance.wsk.privateJwk, issuerKey);
      expect(await refusal(clientA.post("/verification/supplement", { ...context, verificationDataPayload: { clientEncryptedPayload: [payload] } }, verificationStatusSchema))).to.include({ status: 409, errorCode: "invalid_state" });
      expect(await refusal(clientA.post("/credential/provision", context, provisionResponseSchema))).to.include({ status: 409, errorCode: "invalid_state" });
    });

    it("DENIED ends; cancel ends a verification as DENIED with reasonCode CANCELLED", async () => {
      const denied = await initiate(await newInstance(), MALLORY);
      expect(denied).to.include({ status: "DENIED", reasonCode: "POLICY" });
      expect(denied.deniedMessage).to.be.a("string");

      const instance = await newInstance();
      const asked = await initiate(instance);
      const context = { sessionId: instance.sessionId, verificationId: asked.verificationId };
      const cancelled = await clientA.post("/verification/cancel", { ...context, reason: "user aborted" }, z.looseObject({ sessionId: z.string(), verificationId: z.string() }));
      expect(cancelled.body).to.include(context);
      const status = await clientA.post("/verification/status", context, verificationStatusSchema);
      expect(status.body).to.include({ status: "DENIED", reasonCode: "CANCELLED" });
      expect(await refusal(clientA.post("/verification/cancel", { ...context, reason: "again" }, verificationStatusSchema))).to.include({ status: 409 });
    });
  });

  describe("9. provision", () => {
    it("is refused before APPROVED; after, it returns instances grouped by configuration with unique ids, the same on a second call", async () => {
      const instance = await newInstance();
      const asked = await initiate(instance);
      expect(await refusal(clientA.post("/credential/provision", { sessionId: instance.sessionId, verificationId: asked.verificationId }, provisionResponseSchema))).to.include({ status: 409 });
      const { status, instances } = await approvedInstances(await newInstance());
      expect(instances.map((i) => i.credentialConfigurationId)).to.deep.equal(["identity_card", "driving_licence"]);
      const ids = instances.flatMap((i) => i.credentialInstanceIds);
      expect(new Set(ids).size).to.equal(ids.length);
      void status;
    });
  });

  describe("10-11. get: credentials only the WEK opens, bound to the presentment keys; no other WEK", () => {
    it("returns a credentialVersion and one SD-JWT VC per presentment key, encrypted to the WEK, that verifies against the issuer's key", async () => {
      const instance = await newInstance();
      const { instances } = await approvedInstances(instance);
      const holders = [await es256Pair(), await es256Pair()];
      const identityCard = instances[0]!.credentialInstanceIds[0]!;
      const { wek, body } = await getBody(instance, identityCard, { presentmentKeys: holders.map((h) => h.publicJwk) });
      const answer = await clientA.post("/credential/get", body, credentialGetResponseSchema);
      expect(answer.body.credentialVersion).to.equal("1");
      expect(answer.body.credentials.origin).to.equal("ISSUER");
      // Display data only in the clear: no claim of the person.
      expect(JSON.stringify(answer.body.credentialMetadata)).to.not.match(/Lovelace|1990-12-10|D-1001/);
      const stranger = await generateHpkeKeyPair();
      await openCredentials(answer.body.credentials, stranger.privateJwk).then(
        () => expect.fail("another key opened the credentials"),
        () => undefined,
      );
      const credentials = await openCredentials(answer.body.credentials, wek.privateJwk);
      expect(credentials).to.have.length(2);
      const metadata = (await clientA.get("/.well-known/s2s-issuer", issuerMetadataSchema)).body;
      for (const [index, credential] of credentials.entries()) {
        const inspected = inspectSdJwtVc(credential);
        expect(await calculateJwkThumbprint(inspected.holderKey)).to.equal(await calculateJwkThumbprint(holders[index]!.publicJwk));
        const presentation = await presentSdJwtVc({ credential, holderPrivateKey: holders[index]!.privateJwk, disclose: ["family_name", "age_over_18"], audience: "https://verifier.test", nonce: "n-1" });
        const verified = await verifySdJwtVc({ presentation, issuerKeys: metadata.jwks as never, expectedIssuer: ISSUER_ID, expectedVct: "urn:hello-mesh:dev:identity-card", audience: "https://verifier.test", nonce: "n-1" });
        expect(verified.claims).to.deep.equal({ family_name: "Lovelace", age_over_18: true });
      }
      // A refresh reuses the stored presentment keys.
      const refresh = await getBody(instance, identityCard);
      expect((await openCredentials((await clientA.post("/credential/get", refresh.body, credentialGetResponseSchema)).body.credentials, refresh.wek.privateJwk))).to.have.length(2);
    });

    it("refuses a WEK the wallet server swapped in, or one without its statement, and issues nothing", async () => {
      const instance = await newInstance();
      const { instances } = await approvedInstances(instance);
      const instanceId = instances[0]!.credentialInstanceIds[0]!;
      const holder = await es256Pair();
      const { body } = await getBody(instance, instanceId, { presentmentKeys: [holder.publicJwk] });
      const serverKey = (await generateHpkeKeyPair()).publicJwk;
      const swapped = { ...body, walletEncryptionKey: { ...body.walletEncryptionKey, client_public_key: { ...serverKey } } };
      expect(await refusal(clientA.post("/credential/get", swapped, credentialGetResponseSchema))).to.include({ status: 422, type: S2S_INVALID_CLIENT_AUTHENTICATION });
      const bare = { ...body, walletEncryptionKey: { keyType: KEY_TYPES.encryption, client_public_key: { ...serverKey } } };
      expect(await refusal(clientA.post("/credential/get", bare, credentialGetResponseSchema))).to.include({ status: 422, type: S2S_INVALID_CLIENT_AUTHENTICATION });
      // A statement the server signed with a WSK of its own.
      const invented = await es256Pair();
      const forged = { ...body, walletEncryptionKey: await walletEncryptionKeyData(serverKey, ISSUER_ID, instance.sessionId, invented.privateJwk) };
      expect(await refusal(clientA.post("/credential/get", forged, credentialGetResponseSchema))).to.include({ status: 422, type: S2S_INVALID_CLIENT_AUTHENTICATION });
    });

    it("needs the presentment keys on the first get, signed for this very instance", async () => {
      const instance = await newInstance();
      const { instances } = await approvedInstances(instance);
      const [card, licence] = instances.map((i) => i.credentialInstanceIds[0]!);
      const without = await getBody(instance, card!);
      expect(await refusal(clientA.post("/credential/get", without.body, credentialGetResponseSchema))).to.include({ status: 400, errorCode: "presentment_keys_required" });
      const holder = await es256Pair();
      const forLicence = await getBody(instance, licence!, { presentmentKeys: [holder.publicJwk] });
      const misplaced = { ...without.body, clientEncryptedData: forLicence.body.clientEncryptedData };
      expect(await refusal(clientA.post("/credential/get", misplaced, credentialGetResponseSchema))).to.include({ status: 422, type: S2S_INVALID_CLIENT_AUTHENTICATION });
    });

    it("issues asynchronously: 202 PENDING with Retry-After, then CREDENTIAL_READY naming the request, then the credentials", async () => {
      const instance = await newInstance();
      const { instances } = await approvedInstances(instance, KATHERINE);
      const instanceId = instances[0]!.credentialInstanceIds[0]!;
      const holder = await es256Pair();
      const { body } = await getBody(instance, instanceId, { presentmentKeys: [holder.publicJwk] });
      const pending = await clientA.post("/credential/get", body, z.looseObject({ extensions: z.looseObject({ status: z.literal("PENDING") }) }));
      expect(pending.status).to.equal(202);
      expect(pending.headers["retry-after"]).to.equal("2");
      await issuer.completeIssuance(instance.sessionId, instanceId);
      const ready = walletA.inbox.events.find((e) => e.credentialInstanceId === instanceId);
      expect(ready).to.include({ eventType: "CREDENTIAL_READY", sessionId: instance.sessionId, triggeringRequestId: pending.requestId });
      const again = await getBody(instance, instanceId);
      const answer = await clientA.post("/credential/get", again.body, credentialGetResponseSchema);
      expect(await openCredentials(answer.body.credentials, again.wek.privateJwk)).to.have.length(1);
      // PROVISIONING_SUCCESS is acknowledged.
      const ack = await clientA.post("/event/notify", { sessionId: instance.sessionId, credentialInstanceId: instanceId, eventType: "PROVISIONING_SUCCESS", eventTimestamp: new Date().toISOString() }, z.looseObject({ acknowledged: z.boolean() }));
      expect(ack.body.acknowledged).to.equal(true);
    });
  });

  describe("12. manage and status: the user's authority, two suspension flags, UNLINKED terminal", () => {
    const manageSchema = z.looseObject({ currentStatus: z.string(), previousStatus: z.string().optional(), outcome: z.string(), failureReason: z.string().optional() });
    const statusSchema = z.looseObject({ currentStatus: z.string(), currentVersion: z.string(), lastStatusChangeTime: z.string().optional() });

    /** An ACTIVE instance of a new session: issued, then confirmed. */
    async function active() {
      const instance = await newInstance();
      const { instances } = await approvedInstances(instance);
      const instanceId = instances[0]!.credentialInstanceIds[0]!;
      const { body } = await getBody(instance, instanceId, { presentmentKeys: [(await es256Pair()).publicJwk] });
      await clientA.post("/credential/get", body, credentialGetResponseSchema);
      await clientA.post("/event/notify", { sessionId: instance.sessionId, credentialInstanceId: instanceId, eventType: "PROVISIONING_SUCCESS", eventTimestamp: new Date().toISOString() }, z.unknown());
      return { instance, instanceId };
    }
    const authority = (instance: Instance, instanceId: string, action: string, key = instance.wsk.privateJwk) =>
      signStatement("action", { audience: ISSUER_ID, sessionId: instance.sessionId, credentialInstanceId: instanceId }, { action }, key);
    const manage = async (instance: Instance, instanceId: string, action: string, extra: Record<string, unknown> = {}) =>
      (await clientA.post("/credential/manage", {
        sessionId: instance.sessionId, credentialInstanceId: instanceId, action,
        extensions: { "urn:hello-mesh:s2s:client-action": await authority(instance, instanceId, action) }, ...extra,
      }, manageSchema)).body;
    const status = async (instance: Instance, instanceId: string) =>
      (await clientA.post("/credential/status", { sessionId: instance.sessionId, credentialInstanceId: instanceId }, statusSchema)).body;

    it("SUSPEND, again, RESUME, UNLINK: COMPLETED, NO_CHANGE, COMPLETED, COMPLETED; the statuses follow; a get after UNLINK is refused", async function () {
      const { instance, instanceId } = await active();
      expect((await status(instance, instanceId)).currentStatus).to.equal("ACTIVE");
      const steps: Array<[string, string, string]> = [
        ["SUSPEND", "COMPLETED", "SUSPENDED_WALLET"],
        ["SUSPEND", "NO_CHANGE", "SUSPENDED_WALLET"],
        ["RESUME", "COMPLETED", "ACTIVE"],
        ["UNLINK", "COMPLETED", "UNLINKED"],
        ["UNLINK", "NO_CHANGE", "UNLINKED"],
      ];
      for (const [action, outcome, now] of steps) {
        const answer = await manage(instance, instanceId, action);
        expect(answer, action).to.include({ outcome, currentStatus: now });
        expect((await status(instance, instanceId)).currentStatus, action).to.equal(now);
      }
      expect((await status(instance, instanceId)).lastStatusChangeTime).to.match(/GMT$/);
      // UNLINKED is terminal.
      expect(await manage(instance, instanceId, "RESUME")).to.include({ outcome: "FAILED", currentStatus: "UNLINKED" });
      const { body } = await getBody(instance, instanceId);
      expect(await refusal(clientA.post("/credential/get", body, credentialGetResponseSchema))).to.include({ status: 409, errorCode: "credential_unlinked" });
    });

    it("a Wallet Server alone cannot suspend or resume: no statement, one for another action or key, or a replayed one is invalid_client_authentication", async function () {
      const { instance, instanceId } = await active();
      const base = { sessionId: instance.sessionId, credentialInstanceId: instanceId };
      const invented = await es256Pair();
      const replayed = await authority(instance, instanceId, "SUSPEND");
      await clientA.post("/credential/manage", { ...base, action: "SUSPEND", extensions: { "urn:hello-mesh:s2s:client-action": replayed } }, manageSchema);
      await clientA.post("/credential/manage", { ...base, action: "RESUME", extensions: { "urn:hello-mesh:s2s:client-action": await authority(instance, instanceId, "RESUME") } }, manageSchema);
      const attempts = [
        { ...base, action: "SUSPEND" },
        { ...base, action: "SUSPEND", extensions: { "urn:hello-mesh:s2s:client-action": await authority(instance, instanceId, "RESUME") } },
        { ...base, action: "SUSPEND", extensions: { "urn:hello-mesh:s2s:client-action": await authority(instance, instanceId, "SUSPEND", invented.privateJwk) } },
        { ...base, action: "SUSPEND", extensions: { "urn:hello-mesh:s2s:client-action": replayed } },
        { ...base, action: "UNLINK", reason: "user asked" },
      ];
      for (const attempt of attempts) {
        expect(await refusal(clientA.post("/credential/manage", attempt, manageSchema)), JSON.stringify(attempt.action)).to.include({ status: 422, type: S2S_INVALID_CLIENT_AUTHENTICATION });
      }
      expect((await status(instance, instanceId)).currentStatus).to.equal("ACTIVE");
    });

    it("the wallet server's own UNLINK (reason NO_CLIENT: a lost device, a deleted wallet) needs no client, and says so", async function () {
      const { instance, instanceId } = await active();
      const answer = await clientA.post("/credential/manage", { sessionId: instance.sessionId, credentialInstanceId: instanceId, action: "UNLINK", reason: "NO_CLIENT" }, manageSchema);
      expect(answer.body).to.include({ outcome: "COMPLETED", currentStatus: "UNLINKED", previousStatus: "ACTIVE" });
      const after = await clientA.post("/credential/status", { sessionId: instance.sessionId, credentialInstanceId: instanceId }, z.looseObject({ lastStatusChangeReason: z.string() }));
      expect(after.body.lastStatusChangeReason).to.match(/wallet server's own UNLINK/);
    });
  });

  describe("revocation: a Token Status List", () => {
    const verifierStatus = async (credential: string) => {
      const metadata = (await clientA.get("/.well-known/s2s-issuer", issuerMetadataSchema)).body;
      const reference = inspectSdJwtVc(credential).status!;
      return fetchCredentialStatus(reference, { issuer: ISSUER_ID, issuerKeys: metadata.jwks as never, now: Math.floor(Date.now() / 1000) });
    };

    it("names a distinct entry for each instance in every credential, at the uri its metadata publishes; revoked, suspended and unlinked instances show there", async () => {
      const metadata = (await clientA.get("/.well-known/s2s-issuer", issuerMetadataSchema)).body;
      expect(metadata.statusListUri).to.equal(issuer.statusListUri);
      const instance = await newInstance();
      const { instances } = await approvedInstances(instance);
      const ids = instances.flatMap((i) => i.credentialInstanceIds);
      expect(ids).to.have.length(2);
      const credentialOf = async (id: string) => {
        const { wek, body } = await getBody(instance, id, { presentmentKeys: [(await es256Pair()).publicJwk] });
        const [credential] = await openCredentials((await clientA.post("/credential/get", body, credentialGetResponseSchema)).body.credentials, wek.privateJwk);
        return credential!;
      };
      const credentials = await Promise.all(ids.map(credentialOf));
      const references = credentials.map((c) => inspectSdJwtVc(c).status!);
      expect(references.map((r) => r.uri)).to.deep.equal(ids.map(() => issuer.statusListUri));
      expect(new Set(references.map((r) => r.idx)).size).to.equal(ids.length);
      expect(await verifierStatus(credentials[0]!)).to.equal("VALID");

      issuer.suspendAsIssuer(instance.sessionId, ids[0]!, true);
      expect(await verifierStatus(credentials[0]!)).to.equal("SUSPENDED");
      issuer.suspendAsIssuer(instance.sessionId, ids[0]!, false);
      expect(await verifierStatus(credentials[0]!)).to.equal("VALID");
      issuer.revoke(instance.sessionId, ids[0]!);
      expect(await verifierStatus(credentials[0]!)).to.equal("REVOKED");
      // CANCELLED is terminal: the issuer's status says so, a get is refused, and no resume of its suspension moves it.
      const status = await clientA.post("/credential/status", { sessionId: instance.sessionId, credentialInstanceId: ids[0] }, z.looseObject({ currentStatus: z.string() }));
      expect(status.body.currentStatus).to.equal("CANCELLED");
      issuer.suspendAsIssuer(instance.sessionId, ids[0]!, false);
      expect(await verifierStatus(credentials[0]!)).to.equal("REVOKED");
      const { body } = await getBody(instance, ids[0]!);
      expect(await refusal(clientA.post("/credential/get", body, credentialGetResponseSchema))).to.include({ status: 409, errorCode: "credential_cancelled" });
      expect(await verifierStatus(credentials[1]!)).to.equal("VALID");
      await clientA.post("/credential/manage", { sessionId: instance.sessionId, credentialInstanceId: ids[1], action: "UNLINK", reason: "NO_CLIENT" }, z.unknown());
      expect(await verifierStatus(credentials[1]!)).to.equal("REVOKED");
    });
  });

  describe("device transfer: a session the wallet server's attestation says takes over another", () => {
    const manageSchema = z.looseObject({ currentStatus: z.string(), outcome: z.string() });
    /** initiate of a new session taking over `from` (the attestation and the previous-session item say so, unless told otherwise). */
    async function transferBody(from: string, options: { item?: string | null; attested?: string; configurations?: string[] } = {}) {
      const instance = await newInstance();
      const body = {
        sessionId: instance.sessionId,
        credentialConfigurationIds: options.configurations ?? ["identity_card", "driving_licence"],
        walletSigningKeyData: await signingKeyData(instance, { transferFrom: options.attested ?? from }),
        verificationNonce: await signStatement("nonce", { audience: ISSUER_ID, sessionId: instance.sessionId }, {}, instance.wsk.privateJwk),
        verificationData: { serverVerificationDataItem: options.item === null ? [] : [{ type: ITEM_TYPES.previousSession, id: "previous-session", sessionId: options.item ?? from }] },
      };
      return { instance, body };
    }
    /** A session of ADA's with both instances delivered: the one to transfer. */
    async function original() {
      const instance = await newInstance();
      const { instances } = await approvedInstances(instance);
      const ids = instances.flatMap((i) => i.credentialInstanceIds);
      for (const id of ids) {
        const { body } = await getBody(instance, id, { presentmentKeys: [(await es256Pair()).publicJwk] });
        await clientA.post("/credential/get", body, credentialGetResponseSchema);
      }
      return { instance, ids };
    }

    it("approved without the person's details, for the configurations the old session holds; credentials for the new keys; the old instance unlinked by the new session's signature, and nothing else", async () => {
      const old = await original();
      const { instance, body } = await transferBody(old.instance.sessionId);
      const status = (await clientA.post("/verification/initiate", body, verificationStatusSchema)).body;
      expect(status).to.include({ status: "APPROVED" });
      expect((status as { credentialConfigurationIds: string[] }).credentialConfigurationIds).to.deep.equal(["identity_card", "driving_licence"]);
      const provisioned = (await clientA.post("/credential/provision", { sessionId: instance.sessionId, verificationId: status.verificationId }, provisionResponseSchema)).body;
      const cardId = provisioned.credentialInstances.find((g) => g.credentialConfigurationId === "identity_card")!.credentialInstanceIds[0]!;
      const holder = await es256Pair();
      const { wek, body: get } = await getBody(instance, cardId, { presentmentKeys: [holder.publicJwk] });
      const [credential] = await openCredentials((await clientA.post("/credential/get", get, credentialGetResponseSchema)).body.credentials, wek.privateJwk);
      expect(await calculateJwkThumbprint(inspectSdJwtVc(credential!).holderKey)).to.equal(await calculateJwkThumbprint(holder.publicJwk));

      const unlink = async (action: string, signer = instance.wsk.privateJwk, via = instance.sessionId) =>
        clientA.post("/credential/manage", {
          sessionId: old.instance.sessionId, credentialInstanceId: old.ids[0], action,
          extensions: {
            "urn:hello-mesh:s2s:client-action": await signStatement("action", { audience: ISSUER_ID, sessionId: old.instance.sessionId, credentialInstanceId: old.ids[0]! }, { action }, signer),
            "urn:hello-mesh:s2s:transfer-session": via,
          },
        }, manageSchema);
      // Only the UNLINK, only with the transfer session's own key, only naming a session that is the old one's transfer.
      expect(await refusal(unlink("SUSPEND"))).to.include({ status: 422, type: S2S_INVALID_CLIENT_AUTHENTICATION });
      expect(await refusal(unlink("UNLINK", (await es256Pair()).privateJwk))).to.include({ status: 422, type: S2S_INVALID_CLIENT_AUTHENTICATION });
      const unrelated = await original();
      expect(await refusal(unlink("UNLINK", unrelated.instance.wsk.privateJwk, unrelated.instance.sessionId))).to.include({ status: 422, type: S2S_INVALID_CLIENT_AUTHENTICATION });
      expect((await unlink("UNLINK")).body).to.include({ outcome: "COMPLETED", currentStatus: "UNLINKED" });
    });

    it("refused within the device count: a second transfer of the same session is DENIED (DEVICE_LIMIT); a session with nothing live to take over is DENIED (NOTHING_TO_TRANSFER)", async () => {
      const old = await original();
      expect((await clientA.post("/verification/initiate", (await transferBody(old.instance.sessionId)).body, verificationStatusSchema)).body.status).to.equal("APPROVED");
      const second = (await clientA.post("/verification/initiate", (await transferBody(old.instance.sessionId)).body, verificationStatusSchema)).body;
      expect(second).to.include({ status: "DENIED", reasonCode: "DEVICE_LIMIT" });
      const ended = await original();
      for (const id of ended.ids) await clientA.post("/credential/manage", { sessionId: ended.instance.sessionId, credentialInstanceId: id, action: "UNLINK", reason: "NO_CLIENT" }, manageSchema);
      expect((await clientA.post("/verification/initiate", (await transferBody(ended.instance.sessionId)).body, verificationStatusSchema)).body).to.include({ status: "DENIED", reasonCode: "NOTHING_TO_TRANSFER" });
    });

    it("refuses a transfer the request does not name as its attestation does, of another wallet server's session, or one that does not exist: 400 invalid_transfer, no session kept", async () => {
      const old = await original();
      const other = await original();
      const cases = [
        await transferBody(old.instance.sessionId, { item: null }),
        await transferBody(old.instance.sessionId, { item: other.instance.sessionId }),
        await transferBody(randomUUID()),
      ];
      for (const { instance, body } of cases) {
        expect(await refusal(clientA.post("/verification/initiate", body, verificationStatusSchema))).to.include({ status: 400, errorCode: "invalid_transfer" });
        expect(issuer.verificationCount(instance.sessionId)).to.equal(0);
      }
      // Wallet server B (here with an attestation key as good as A's) cannot take over A's session.
      const { instance, body } = await transferBody(old.instance.sessionId);
      expect(await refusal(clientB.post("/verification/initiate", body, verificationStatusSchema))).to.include({ status: 400, errorCode: "invalid_transfer" });
      expect(issuer.verificationCount(instance.sessionId)).to.equal(0);
    });
  });

  describe("14. every identifier belongs to the wallet server that made it", () => {
    it("refuses wallet server B every call on wallet server A's session, as if it did not exist", async () => {
      const instance = await newInstance();
      const { status, instances } = await approvedInstances(instance);
      const context = { sessionId: instance.sessionId, verificationId: status.verificationId };
      const instanceId = instances[0]!.credentialInstanceIds[0]!;
      const holder = await es256Pair();
      const { body } = await getBody(instance, instanceId, { presentmentKeys: [holder.publicJwk] });
      const calls = [
        clientB.post("/verification/status", context, verificationStatusSchema),
        clientB.post("/verification/cancel", { ...context, reason: "hostile" }, verificationStatusSchema),
        clientB.post("/credential/provision", context, provisionResponseSchema),
        clientB.post("/credential/get", body, credentialGetResponseSchema),
        clientB.post("/event/notify", { sessionId: instance.sessionId, credentialInstanceId: instanceId, eventType: "PROVISIONING_SUCCESS", eventTimestamp: new Date().toISOString() }, z.unknown()),
      ];
      for (const call of calls) expect(await refusal(call)).to.include({ status: 404, errorCode: "unknown_session" });
      // The honest twin: A still can.
      expect((await clientA.post("/verification/status", context, verificationStatusSchema)).body.status).to.equal("APPROVED");
    });
  });
});

async function importPrivate(jwk: JWK) {
  return createPrivateKey({ key: jwk as never, format: "jwk" });
}

/** One HTTPS request with explicit headers, for the checks a WireClient would never let us make. */
function rawRequest(
  base: string,
  path: string,
  init: { method: string; headers: Record<string, string>; body?: string },
  caPem: string,
  credentials: { certPem?: string; keyPem?: string },
): Promise<{ status?: number; headers: Record<string, string | undefined>; body: string; error?: Error }> {
  return new Promise((resolve) => {
    const req = httpsRequest(
      new URL(path, base),
      { method: init.method, headers: init.headers, ca: caPem, cert: credentials.certPem, key: credentials.keyPem, agent: false },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers as Record<string, string | undefined>, body }));
        res.on("error", (error) => resolve({ headers: {}, body: "", error }));
      },
    );
    req.on("error", (error) => resolve({ headers: {}, body: "", error }));
    req.end(init.body);
  });
}
