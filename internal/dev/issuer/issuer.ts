// The development Issuer Server (docs/wallet-server.md): the Issuer side of the
// OpenID4VCI server-to-server draft as hello-mesh profiles it (DESIGN §9.1), so that the
// Wallet Server can be exercised end to end, and a fair stand-in for a real issuer: the
// draft's black-box checks for an Issuer run against it (issuer.spec.ts).
//
// What it does, and checks, on every call (over mutual TLS, Api-Version 1.0.0, problem
// details, x-request-id idempotency: wire-server.ts):
// - every session belongs to the wallet server that made it (the mTLS peer); another
//   peer touching it gets 404, as for a session that does not exist;
// - initiate: a sessionId is used once, ever; the WSK comes with a wallet server's
//   attestation (wsk-attestation.ts) and the verificationNonce is a fresh single-use
//   `verification-nonce+jwt` for this issuer and session, signed by that WSK;
// - every client payload is opened as client-payload.ts says (invalid_encryption /
//   invalid_client_authentication), and a payload sent by reference is fetched only from
//   the calling wallet server's own origin and checked against its contentDigest;
// - credentials are encrypted only to a WEK in a `wek+jwt` statement of the session's
//   WSK, and bound (cnf) to presentment keys the client signed for that instance.
//
// Development only: state is in memory, the registry is invented (registry.ts).

import { type JsonWebKey, createHash, createPrivateKey, generateKeyPairSync, randomInt, randomUUID } from "node:crypto";
import { createServer as createHttpServer } from "node:http";
import { request as httpsRequest } from "node:https";
import type { AddressInfo } from "node:net";
import type { JSONWebKeySet, JWK } from "jose";
import { equalsConstantTime } from "../../protocol/constant-time.js";
import { openClientPayload, sealCredentials, verifyWalletEncryptionKey } from "../../s2s/client-payload.js";
import { type HpkePublicJwk, publicHpkeJwk } from "../../s2s/hpke-jwe.js";
import {
  type CredentialGetRequest,
  type InitiateRequest,
  type IssuerMetadata,
  ITEM_TYPES,
  KEY_TYPES,
  TERMINAL_STATUSES,
  type VerificationDataRequest,
  type VerificationDataResponse,
  type VerificationStatus,
  type VerificationStatusValue,
  CLIENT_ACTION_EXTENSION,
  TRANSFER_SESSION_EXTENSION,
  type CredentialManageRequest,
  cancelRequestSchema,
  credentialManageRequestSchema,
  credentialManageResponseSchema,
  credentialStatusRequestSchema,
  credentialStatusResponseSchema,
  credentialGetRequestSchema,
  credentialMetadataRequestSchema,
  eventNotifySchema,
  initiateRequestSchema,
  supplementRequestSchema,
  verificationEchoSchema,
  verificationRefSchema,
} from "../../s2s/messages.js";
import { ProblemError, invalidClientAuthentication, problem } from "../../s2s/problem.js";
import { issueSdJwtVc } from "../../s2s/sd-jwt-vc.js";
import { STATUS_LIST_MEDIA_TYPE, STATUS_VALUES, signStatusList } from "../../s2s/status-list.js";
import { type ReplayGuard, StatementError, assertEs256PublicJwk, memoryReplayGuard, verifyStatement } from "../../s2s/statements.js";
import { WireClient } from "../../s2s/wire-client.js";
import { memoryIdempotencyStore } from "../../s2s/idempotency.js";
import { API_VERSION, type WireReply, type WireRoute, type WireServer, startWireServer } from "../../s2s/wire-server.js";
import { WskAttestationError, verifyWskAttestation } from "../../s2s/wsk-attestation.js";
import {
  CREDENTIAL_CONFIGURATIONS,
  type CredentialConfigurationId,
  DEV_PEOPLE,
  PROOF_OF_ADDRESS,
  type Person,
  credentialClaims,
  findPerson,
  isCredentialConfigurationId,
} from "./registry.js";

/** A wallet server this issuer serves: known by its mTLS CA, reached at its base URL. */
export interface IssuerWalletServer {
  /** The peer's name in this issuer's books. */
  id: string;
  /** The CA of its mTLS certificates (client and server). */
  caPem: string;
  /** Where it hosts /verification/notify and /event/notify, and the only origin evidence is fetched from. */
  baseUrl: string;
  /** The `iss` of its WSK attestations (hello-mesh's issuer URL). */
  attestationIssuer: string;
  /** The keys its WSK attestations are signed with. */
  attestationJwks: JSONWebKeySet;
  /** Hostname to check on its certificate when baseUrl names an IP address. */
  servername?: string;
}

export interface DevIssuerOptions {
  issuerId: string;
  /** This issuer's mTLS certificate (server and client) and key, PEM. */
  certPem: string;
  keyPem: string;
  walletServers: IssuerWalletServer[];
  /** Private HPKE-0 key (EC P-256 JWK with d) that client payloads are encrypted to. */
  encryptionKey: JWK;
  /** Private ES256 key (EC P-256 JWK with d and kid) that credentials are signed with. */
  signingKey: JWK;
  people?: readonly Person[];
  host?: string;
  port?: number;
  /** Seconds since the epoch; injectable for tests. */
  now?: () => number;
  /** Decide a PENDING verification (APPROVED) after this long; absent: only `decide()` does. */
  pendingDecisionMs?: number;
  /** Complete an asynchronous issuance after this long; absent: only `completeIssuance()` does. */
  asyncIssuanceMs?: number;
  /**
   * Where the Token Status List is published (plain HTTP on this host, like the
   * development OPs; the list is signed, so it is trusted for its signature, not its
   * transport): default 127.0.0.1 and a free port.
   */
  statusHost?: string;
  statusPort?: number;
  /** Seconds of Retry-After to answer with (429), per call; for tests of the wallet server's backoff. */
  rateLimit?: (peer: string, path: string) => number | undefined;
  onError?: (error: unknown, what: string) => void;
}

export interface DevIssuer {
  url: string;
  port: number;
  metadata: IssuerMetadata;
  /** Decides a PENDING verification and notifies its wallet server; resolves after the notification was tried. */
  decide(sessionId: string, verificationId: string, status: "APPROVED" | "DENIED"): Promise<void>;
  /** Finishes an asynchronous issuance and sends CREDENTIAL_READY; resolves after it was tried. */
  completeIssuance(sessionId: string, credentialInstanceId: string): Promise<void>;
  /**
   * The issuer's own suspension of an instance, set or lifted (its flag; the wallet's
   * suspension is the wallet's). No notification is sent: the wallet server learns it
   * from /credential/status, as it would after a lost notification.
   */
  suspendAsIssuer(sessionId: string, credentialInstanceId: string, suspended: boolean): void;
  /**
   * The same, told to the wallet server through its /credential/manage (SUSPEND or
   * RESUME, as the issuer): resolves with the wallet server's answer.
   */
  suspendAndTell(sessionId: string, credentialInstanceId: string, suspended: boolean): Promise<{ outcome: string; currentStatus: string }>;
  /**
   * The issuer's permanent invalidation of an instance (CANCELLED, terminal): its status
   * list entry becomes INVALID, and the wallet server learns it from /credential/status.
   */
  revoke(sessionId: string, credentialInstanceId: string): void;
  /** Where the status list is published (each credential's status.status_list.uri). */
  statusListUri: string;
  /** New display data for an instance (its name gains the version), announced with DISPLAY_DATA_UPDATED; resolves after it was tried. */
  publishDisplayUpdate(sessionId: string, credentialInstanceId: string): Promise<void>;
  /** The issuer's own UNLINK of an instance (terminal), told to the wallet server through its /credential/manage: resolves with its answer. */
  unlinkAndTell(sessionId: string, credentialInstanceId: string): Promise<{ outcome: string; currentStatus: string }>;
  /** A new version of an instance's dataset, announced to the wallet server (CREDENTIAL_UPDATE_AVAILABLE); resolves after it was tried. */
  publishUpdate(sessionId: string, credentialInstanceId: string): Promise<void>;
  /**
   * Tests' switches: its /verification/notify calls lost on the way; its next
   * `refuseEvents` incoming /event/notify answered 503; its next `misbind` gets answered
   * with credentials bound to keys that are not the wallet's (an issuer's bug).
   */
  setFaults(faults: { loseNotifications?: boolean; refuseEvents?: number; misbind?: number }): void;
  /**
   * An outage: the issuer stops listening (connections are refused), keeping its state;
   * `end()` listens again on the same port.
   */
  outage(): Promise<{ end(): Promise<void> }>;
  /** The issuer's own view of an instance: its status and the reason of its last change. */
  instanceStatus(sessionId: string, credentialInstanceId: string): { status: string; reason?: string };
  /** Credentials issued from now on are valid this long (tests of CREDENTIAL_EXPIRING). */
  setCredentialValidity(seconds: number | undefined): void;
  /** How many /verification/status calls it answered (a poll shows here). */
  readonly statusAsked: number;
  /** Sends a verification's notification again, with `status` as it once was (a late notification). */
  renotify(sessionId: string, verificationId: string, status: VerificationStatus): Promise<void>;
  /** The events the wallet server sent this issuer (/event/notify), in order. */
  readonly received: ReadonlyArray<{ eventType: string; sessionId: string; credentialInstanceId: string }>;
  /** The wallet server's own view of an instance: its /credential/status, asked as this issuer (reconciliation from this side). */
  walletServerStatus(sessionId: string, credentialInstanceId: string): Promise<{ currentStatus: string; currentVersion: string; lastStatusChangeTime?: string }>;
  /** How many verifications exist for a session (tests: "only one verification exists"). */
  verificationCount(sessionId: string): number;
  /** Every notification this issuer sent, and whether the wallet server took it (2xx). */
  readonly notices: ReadonlyArray<{ path: "/verification/notify" | "/event/notify"; sessionId: string; delivered: boolean }>;
  close(): Promise<void>;
}

const MAX_ATTEMPTS = 3;
const VERIFICATION_DEADLINE_SECONDS = 24 * 60 * 60;
const MAX_PRESENTMENT_KEYS = 10;
const MAX_EVIDENCE_BYTES = 8 * 1024 * 1024;
/** The status list's first size (entries); it doubles when half full, so an index says little about issuance order. */
const STATUS_LIST_SIZE = 4096;
/** How long a published status list is valid, and how long a verifier may cache it (seconds). */
const STATUS_LIST_VALIDITY_SECONDS = 300;
const STATUS_LIST_TTL_SECONDS = 30;
const STATUS_LIST_PATH = "/status-lists/1";

interface Verification {
  id: string;
  status: VerificationStatusValue;
  requested: CredentialConfigurationId[];
  approved?: CredentialConfigurationId[];
  person?: Person;
  documentReceived: boolean;
  attempts: number;
  deadline: number;
  request?: VerificationDataRequest;
  reasonCode?: string;
  deniedMessage?: string;
  /** The wallet server's own signals, as received (development: kept, not judged). */
  serverSignals: Record<string, unknown>[];
  instances?: { credentialConfigurationId: string; credentialInstanceIds: string[] }[];
}

interface Instance {
  id: string;
  configuration: CredentialConfigurationId;
  person: Person;
  status: "IN_PROCESS" | "ACTIVE";
  presentmentKeys?: JWK[];
  version: number;
  /** For asynchronous issuance: false until completed. */
  ready: boolean;
  pendingRequestId?: string;
  /**
   * The lifecycle (docs/wallet-server.md, "Lifecycle"): two suspension flags, so that
   * only the party that suspended resumes; UNLINKED and CANCELLED are terminal.
   */
  suspendedByWallet?: boolean;
  suspendedByIssuer?: boolean;
  unlinked?: boolean;
  cancelled?: boolean;
  /** The instance's entry in the status list. */
  statusIdx: number;
  /** The display data's version (DISPLAY_DATA_UPDATED raises it). */
  displayVersion: number;
  lastChange?: { at: number; reason?: string };
}

interface Session {
  peer: string;
  sessionId: string;
  wsk: JWK;
  dpopJkt: string;
  requestedDeviceCount: number;
  verifications: Map<string, Verification>;
  instances: Map<string, Instance>;
  /** A device transfer's session: the session it took over. */
  transferFrom?: string;
}

export async function startDevIssuer(options: DevIssuerOptions): Promise<DevIssuer> {
  const now = options.now ?? (() => Math.floor(Date.now() / 1000));
  const people = options.people ?? DEV_PEOPLE;
  const issuerId = options.issuerId;
  const encryptionPrivate = options.encryptionKey;
  const encryptionPublic: HpkePublicJwk = await publicHpkeJwk(encryptionPrivate);
  if (!options.signingKey.kid) throw new Error("the issuer's signing key needs a kid");
  const signingPrivate = { privateKey: createPrivateKey({ key: options.signingKey as JsonWebKey, format: "jwk" }), kid: options.signingKey.kid };
  const { d: _d, ...signingPublic } = options.signingKey;
  const walletServers = new Map(options.walletServers.map((w) => [w.id, w]));
  const sessions = new Map<string, Session>();
  const statusEntries = new Map<number, Instance>();
  let statusListSize = STATUS_LIST_SIZE;
  const replay: ReplayGuard = memoryReplayGuard(() => now());
  const timers = new Set<NodeJS.Timeout>();
  const clients = new Map<string, WireClient>();
  const report = (error: unknown, what: string) => options.onError?.(error, what);

  // The status list is published over plain HTTP (a development server, on this host) at
  // one uri; started first, as every credential names it.
  const statusServer = createHttpServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== STATUS_LIST_PATH) return void res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    if (req.method !== "GET") return void res.writeHead(405, { allow: "GET", "content-type": "text/plain" }).end("use GET\n");
    publishedStatusList().then(
      (token) => res.writeHead(200, { "content-type": STATUS_LIST_MEDIA_TYPE, "cache-control": `max-age=${STATUS_LIST_TTL_SECONDS}` }).end(token),
      (error) => {
        report(error, "status list");
        res.writeHead(500, { "content-type": "text/plain" }).end("the status list cannot be made\n");
      },
    );
  });
  const statusHost = options.statusHost ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    statusServer.once("error", reject);
    statusServer.listen(options.statusPort ?? 0, statusHost, () => {
      statusServer.off("error", reject);
      resolve();
    });
  });
  const statusListUri = `http://${statusHost.includes(":") ? `[${statusHost}]` : statusHost}:${(statusServer.address() as AddressInfo).port}${STATUS_LIST_PATH}`;

  const metadata: IssuerMetadata = {
    issuer: issuerId,
    encryptionKey: { ...encryptionPublic },
    jwks: { keys: [{ kty: "EC", crv: "P-256", x: signingPublic.x, y: signingPublic.y, kid: signingPublic.kid, alg: "ES256", use: "sig" }] },
    apiVersions: [API_VERSION],
    credentialConfigurationsSupported: structuredClone(CREDENTIAL_CONFIGURATIONS) as unknown as IssuerMetadata["credentialConfigurationsSupported"],
    statusListUri,
  };

  // --- helpers -------------------------------------------------------------------

  const notFound = (what: string) => problem(404, `unknown_${what.replace(/ /g, "_")}`, `no ${what} with this id belongs to you`);

  /** The session, only for the peer that made it: any other peer sees a 404, as for an unknown id. */
  function ownSession(peer: string, sessionId: string): Session {
    const session = sessions.get(sessionId);
    if (!session || session.peer !== peer) throw notFound("session");
    return session;
  }

  function ownVerification(session: Session, verificationId: string): Verification {
    const verification = session.verifications.get(verificationId);
    if (!verification) throw notFound("verification");
    expireIfDue(verification);
    return verification;
  }

  function ownInstance(session: Session, instanceId: string): Instance {
    const instance = session.instances.get(instanceId);
    if (!instance) throw notFound("credential instance");
    return instance;
  }

  function expireIfDue(v: Verification): void {
    if (!TERMINAL_STATUSES.has(v.status) && now() > v.deadline) {
      v.status = "EXPIRED";
      v.request = undefined;
    }
  }

  function statusOf(session: Session, v: Verification): VerificationStatus {
    const base = { sessionId: session.sessionId, verificationId: v.id, status: v.status };
    switch (v.status) {
      case "APPROVED":
        return { ...base, credentialConfigurationIds: v.approved ?? [], authorizedDeviceCount: session.requestedDeviceCount };
      case "REJECTED":
        return { ...base, reasonCode: v.reasonCode ?? "DATA_MISMATCH", ...(v.request ? { verificationDataRequest: v.request } : {}) };
      case "DENIED":
        return { ...base, reasonCode: v.reasonCode ?? "DENIED", deniedMessage: v.deniedMessage ?? "The verification was not successful." };
      case "ADDITIONAL_INFO_REQUIRED":
        return { ...base, verificationDataRequest: v.request! };
      default:
        return base;
    }
  }

  function requestFor(v: Verification, items: VerificationDataRequest["verificationDataItems"]): VerificationDataRequest {
    return { verificationDataItems: items, deadline: new Date(v.deadline * 1000).toISOString(), maxAttempts: MAX_ATTEMPTS };
  }

  function deny(v: Verification, reasonCode: string, message: string): void {
    v.status = "DENIED";
    v.reasonCode = reasonCode;
    v.deniedMessage = message;
    v.request = undefined;
  }

  function clientFor(peer: string): WireClient {
    const walletServer = walletServers.get(peer)!;
    let client = clients.get(peer);
    if (!client) {
      client = new WireClient({
        baseUrl: walletServer.baseUrl,
        caPem: walletServer.caPem,
        certPem: options.certPem,
        keyPem: options.keyPem,
        servername: walletServer.servername,
      });
      clients.set(peer, client);
    }
    return client;
  }

  const notices: Array<{ path: "/verification/notify" | "/event/notify"; sessionId: string; delivered: boolean }> = [];
  /** Tests' switches: notifications lost on the way out, events refused (503) on the way in, and how often the wallet server asked a verification's status. */
  const faults = { loseNotifications: false, refuseEvents: 0, misbind: 0 };
  /** How long the credentials it issues are valid; undefined: a year (sd-jwt-vc.ts's default). */
  let credentialValiditySeconds: number | undefined;
  let statusAsked = 0;
  const received: Array<{ eventType: string; sessionId: string; credentialInstanceId: string }> = [];

  async function notifyVerification(session: Session, v: Verification, status = statusOf(session, v)): Promise<void> {
    try {
      // Tests' seam: a notification lost on the way (the wallet server polls, so nothing is lost).
      if (faults.loseNotifications) throw new Error("the notification was lost (the issuer's test switch)");
      await clientFor(session.peer).post("/verification/notify", status, verificationEchoSchema);
      notices.push({ path: "/verification/notify", sessionId: session.sessionId, delivered: true });
    } catch (error) {
      // A hint only: the wallet server also polls /verification/status.
      notices.push({ path: "/verification/notify", sessionId: session.sessionId, delivered: false });
      report(error, "verification notify");
    }
  }

  function later(ms: number | undefined, work: () => Promise<void>): void {
    if (ms === undefined) return;
    const timer = setTimeout(() => {
      timers.delete(timer);
      work().catch((error) => report(error, "scheduled work"));
    }, ms);
    timers.add(timer);
  }

  /** Fetches evidence sent by reference: only from the caller's own origin, checked against its digest. */
  async function fetchReference(peer: string, payload: { downloadUrl?: string; contentDigest?: string; contentSize?: number; expiresAt?: string }): Promise<string> {
    const walletServer = walletServers.get(peer)!;
    const url = new URL(payload.downloadUrl!);
    if (url.origin !== new URL(walletServer.baseUrl).origin) {
      throw problem(422, "untrusted_download_url", "evidence is fetched only from the calling wallet server's own origin");
    }
    if (payload.expiresAt !== undefined && !(Date.parse(payload.expiresAt) / 1000 > now())) {
      throw problem(422, "content_expired", "the content reference has expired (expiresAt)");
    }
    const body = await new Promise<Buffer>((resolve, reject) => {
      const req = httpsRequest(
        url,
        {
          method: "GET",
          ca: walletServer.caPem,
          cert: options.certPem,
          key: options.keyPem,
          servername: walletServer.servername,
          minVersion: "TLSv1.2",
          headers: { "Api-Version": API_VERSION, "x-request-id": randomUUID(), accept: "application/jose" },
          timeout: 10_000,
        },
        (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            reject(problem(422, "content_unavailable", `the content reference answered ${res.statusCode}`));
            return;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_EVIDENCE_BYTES) {
              req.destroy();
              reject(problem(422, "content_too_large", `referenced content is limited to ${MAX_EVIDENCE_BYTES} bytes`));
              return;
            }
            chunks.push(chunk);
          });
          res.on("end", () => resolve(Buffer.concat(chunks)));
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", (error) => reject(error instanceof ProblemError ? error : problem(422, "content_unavailable", "the content reference could not be fetched")));
      req.end();
    });
    const digest = createHash("sha256").update(body).digest("base64url");
    if (!equalsConstantTime(digest, payload.contentDigest!)) throw problem(422, "content_digest_mismatch", "the referenced content does not match contentDigest");
    if (payload.contentSize !== undefined && payload.contentSize !== body.length) throw problem(422, "content_size_mismatch", "the referenced content does not match contentSize");
    return body.toString("ascii");
  }

  /** Opens every client payload, keeps the server's signals, and moves the verification on. */
  async function evaluate(session: Session, v: Verification, data: VerificationDataResponse | undefined, context: { verificationId?: string }): Promise<void> {
    const items: Record<string, unknown>[] = [];
    for (const payload of data?.clientEncryptedPayload ?? []) {
      const jwe = payload.jwe ?? (await fetchReference(session.peer, payload));
      items.push(
        await openClientPayload("verificationData", payload.origin, jwe, encryptionPrivate, session.wsk, { sessionId: session.sessionId, ...context }, {
          replay: { guard: replay, scope: issuerId },
          now: now(),
        }),
      );
    }
    for (const item of data?.serverVerificationDataItem ?? []) {
      if (item.type === ITEM_TYPES.walletAge && !(Number.isInteger(item.days) && (item.days as number) >= 0)) {
        throw problem(400, "invalid_request", "a wallet-age item needs days, a non-negative integer");
      }
      if (item.type === ITEM_TYPES.emailVerified && typeof item.verified !== "boolean") {
        throw problem(400, "invalid_request", "an email-verified item needs verified, a boolean");
      }
      v.serverSignals.push(item);
    }

    const personItem = items.find((i) => i.type === ITEM_TYPES.personData);
    if (personItem && !v.person) {
      const found = findPerson(people, personItem);
      if (found === undefined) return deny(v, "NOT_FOUND", "No document with these details is known to this issuer.");
      if (found === "mismatch") {
        v.attempts += 1;
        if (v.attempts >= MAX_ATTEMPTS) return deny(v, "MAX_ATTEMPTS", "Too many attempts.");
        v.status = "REJECTED";
        v.reasonCode = "DATA_MISMATCH";
        v.request = requestFor(v, [{ type: ITEM_TYPES.personData, id: "person", required: true }]);
        return;
      }
      v.person = found;
    }
    if (items.some((i) => i.type === ITEM_TYPES.document && i.id === PROOF_OF_ADDRESS && typeof i.content === "string" && i.content.length > 0)) {
      v.documentReceived = true;
    }
    if (!v.person) {
      v.status = "ADDITIONAL_INFO_REQUIRED";
      v.request = requestFor(v, [{ type: ITEM_TYPES.personData, id: "person", required: true }]);
      return;
    }
    const person = v.person;
    if (person.outcome === "deny") return deny(v, "POLICY", "This issuer cannot issue credentials for this document.");
    const approved = v.requested.filter((c) => person.documents.includes(c));
    if (approved.length === 0) return deny(v, "NOT_ELIGIBLE", "None of the requested credentials can be issued for this document.");
    v.approved = approved;
    if (person.outcome === "document" && !v.documentReceived) {
      v.status = "ADDITIONAL_INFO_REQUIRED";
      v.request = requestFor(v, [{ type: ITEM_TYPES.document, id: PROOF_OF_ADDRESS, required: true, documentType: PROOF_OF_ADDRESS }]);
      return;
    }
    v.request = undefined;
    if (person.outcome === "pending") {
      v.status = "PENDING";
      later(options.pendingDecisionMs, () => decide(session.sessionId, v.id, "APPROVED"));
      return;
    }
    v.status = "APPROVED";
  }

  async function decide(sessionId: string, verificationId: string, status: "APPROVED" | "DENIED"): Promise<void> {
    const session = sessions.get(sessionId);
    const v = session?.verifications.get(verificationId);
    if (!session || !v) throw new Error("no such verification");
    if (v.status !== "PENDING") return; // decisions are monotonic: a terminal state never moves back
    if (status === "APPROVED") v.status = "APPROVED";
    else deny(v, "POLICY", "The verification was not successful.");
    await notifyVerification(session, v);
  }

  // --- the draft's Issuer endpoints ----------------------------------------------

  async function initiate(peer: string, body: InitiateRequest): Promise<WireReply> {
    const { sessionId } = body;
    // A sessionId is used once, ever, whichever peer used it (§Replay Protection).
    if (sessions.has(sessionId)) throw problem(409, "session_id_reused", "this sessionId was used before; a new session needs a new UUID");
    const keyData = body.walletSigningKeyData;
    if (keyData.keyType !== KEY_TYPES.signing) throw problem(400, "invalid_request", `walletSigningKeyData.keyType must be ${KEY_TYPES.signing}`);
    const wsk = keyData.client_public_key as JWK;
    try {
      assertEs256PublicJwk(wsk, "walletSigningKeyData.client_public_key");
      if (wsk.alg !== "ES256") throw new Error("walletSigningKeyData.client_public_key needs alg ES256");
    } catch (error) {
      throw problem(400, "invalid_request", (error as Error).message);
    }
    const walletServer = walletServers.get(peer)!;
    const attestation = keyData.attestation as { proof_type?: unknown; jwt?: unknown } | undefined;
    if (attestation?.proof_type !== "jwt") {
      throw invalidClientAuthentication("walletSigningKeyData.attestation must be the wallet server's wsk-attestation+jwt ({proof_type: jwt, jwt})");
    }
    let dpopJkt: string;
    let transferFrom: string | undefined;
    try {
      ({ dpopJkt, transferFrom } = await verifyWskAttestation(
        attestation.jwt,
        walletServer.attestationJwks,
        { walletServer: walletServer.attestationIssuer, issuerId, sessionId, wsk },
        { now: now() },
      ));
    } catch (error) {
      if (error instanceof WskAttestationError) throw invalidClientAuthentication(error.message);
      throw error;
    }
    try {
      await verifyStatement("nonce", body.verificationNonce, wsk, { audience: issuerId, sessionId }, { replay: { guard: replay, scope: issuerId }, now: now() });
    } catch (error) {
      if (error instanceof StatementError) throw invalidClientAuthentication(`verificationNonce is refused: ${error.reason}`);
      throw error;
    }
    const unknown = body.credentialConfigurationIds.filter((c) => !isCredentialConfigurationId(c));
    if (unknown.length > 0) throw problem(400, "unsupported_credential_configuration", "credentialConfigurationIds names a configuration this issuer does not offer (see /.well-known/s2s-issuer)");

    const session: Session = {
      peer,
      sessionId,
      wsk: { kty: "EC", crv: "P-256", x: wsk.x, y: wsk.y },
      dpopJkt,
      requestedDeviceCount: body.requestedDeviceCount ?? 1,
      verifications: new Map(),
      instances: new Map(),
      ...(transferFrom !== undefined ? { transferFrom } : {}),
    };
    const v: Verification = {
      id: randomUUID(),
      status: "PENDING",
      requested: [...new Set(body.credentialConfigurationIds as CredentialConfigurationId[])],
      documentReceived: false,
      attempts: 0,
      deadline: now() + VERIFICATION_DEADLINE_SECONDS,
      serverSignals: [],
    };
    // Evaluated before the session is kept: a refused payload leaves no session behind.
    if (transferFrom !== undefined) transfer(peer, session, v, transferFrom, body.verificationData);
    else await evaluate(session, v, body.verificationData, {});
    session.verifications.set(v.id, v);
    sessions.set(sessionId, session);
    return { body: statusOf(session, v) };
  }

  /**
   * A device transfer (docs/wallet-server.md, "Device transfer"): the wallet server's
   * attestation (Token's word) says the new session is the same user's as `fromId`, and
   * the request names it as its previous session. Approved, for the person of the old
   * session's approval, with the configurations the old session still has live
   * instances of, while the transfers approved from it stay within its authorized
   * device count; DENIED (DEVICE_LIMIT, NOTHING_TO_TRANSFER) otherwise.
   */
  function transfer(peer: string, session: Session, v: Verification, fromId: string, data: VerificationDataResponse | undefined): void {
    const named = (data?.serverVerificationDataItem ?? []).filter((item) => item.type === ITEM_TYPES.previousSession);
    if (named.length !== 1 || (named[0] as { sessionId?: unknown }).sessionId !== fromId) {
      throw problem(400, "invalid_transfer", `a device transfer names the session it takes over once, as a ${ITEM_TYPES.previousSession} item, and the same as its attestation`);
    }
    const old = sessions.get(fromId);
    if (!old || old.peer !== peer) throw problem(400, "invalid_transfer", "the session a device transfer takes over is not one of yours");
    const approved = [...old.verifications.values()].find((x) => x.status === "APPROVED" && x.person);
    const live = new Set([...old.instances.values()].filter((i) => !i.unlinked && !i.cancelled).map((i) => i.configuration));
    const configurations = v.requested.filter((c) => live.has(c));
    const transfers = [...sessions.values()].filter((s) => s.transferFrom === fromId && [...s.verifications.values()].some((x) => x.status === "APPROVED")).length;
    if (!approved || configurations.length === 0) return deny(v, "NOTHING_TO_TRANSFER", "The earlier device holds no credential of these types to transfer.");
    if (transfers >= old.requestedDeviceCount) return deny(v, "DEVICE_LIMIT", "These credentials were transferred to as many devices as they may be.");
    v.person = approved.person;
    v.status = "APPROVED";
    v.approved = configurations;
  }

  const routes: WireRoute<any>[] = [
    { path: "/verification/initiate", schema: initiateRequestSchema, handle: (r) => initiate(r.peer, r.body) },
    {
      path: "/verification/supplement",
      schema: supplementRequestSchema,
      async handle({ peer, body }) {
        const session = ownSession(peer, body.sessionId);
        const v = ownVerification(session, body.verificationId);
        if (v.status !== "ADDITIONAL_INFO_REQUIRED" && v.status !== "REJECTED") {
          throw problem(409, "invalid_state", `a verification that is ${v.status} takes no supplement`);
        }
        await evaluate(session, v, body.verificationDataPayload, { verificationId: v.id });
        return { body: statusOf(session, v) };
      },
    },
    {
      path: "/verification/status",
      schema: verificationRefSchema,
      async handle({ peer, body }) {
        const session = ownSession(peer, body.sessionId);
        statusAsked++;
        return { body: statusOf(session, ownVerification(session, body.verificationId)) };
      },
    },
    {
      path: "/verification/cancel",
      schema: cancelRequestSchema,
      async handle({ peer, body }) {
        const session = ownSession(peer, body.sessionId);
        const v = ownVerification(session, body.verificationId);
        if (TERMINAL_STATUSES.has(v.status)) throw problem(409, "invalid_state", `a verification that is ${v.status} cannot be cancelled`);
        deny(v, "CANCELLED", "The verification was cancelled.");
        return { body: { sessionId: session.sessionId, verificationId: v.id } };
      },
    },
    {
      path: "/credential/provision",
      schema: verificationRefSchema,
      async handle({ peer, body }) {
        const session = ownSession(peer, body.sessionId);
        const v = ownVerification(session, body.verificationId);
        if (v.status !== "APPROVED") throw problem(409, "invalid_state", `credentials are provisioned only after APPROVED; this verification is ${v.status}`);
        // Provisioned once per verification: a second call returns the same instances.
        v.instances ??= v.approved!.map((configuration) => {
          const instance: Instance = {
            id: randomUUID(), configuration, person: v.person!, status: "IN_PROCESS", version: 1, ready: !v.person!.asyncIssuance, statusIdx: allocateStatusIdx(), displayVersion: 1,
          };
          statusEntries.set(instance.statusIdx, instance);
          session.instances.set(instance.id, instance);
          return { credentialConfigurationId: configuration, credentialInstanceIds: [instance.id] };
        });
        return { body: { credentialInstances: v.instances } };
      },
    },
    { path: "/credential/get", schema: credentialGetRequestSchema, handle: (r) => get(r.peer, r.body, r.requestId) },
    {
      path: "/credential/metadata",
      schema: credentialMetadataRequestSchema,
      async handle({ peer, body }) {
        const session = ownSession(peer, body.sessionId);
        const instance = ownInstance(session, body.credentialInstanceId);
        await verifyWalletEncryptionKey(body.walletEncryptionKey, session.wsk, issuerId, session.sessionId, { now: now() });
        return { body: { credentialMetadata: displayOf(instance), credentialVersion: String(instance.version) } };
      },
    },
    {
      path: "/credential/status",
      schema: credentialStatusRequestSchema,
      async handle({ peer, body }) {
        const instance = ownInstance(ownSession(peer, body.sessionId), body.credentialInstanceId);
        return {
          body: {
            currentStatus: statusOfInstance(instance),
            currentVersion: String(instance.version),
            ...(instance.lastChange ? { lastStatusChangeTime: new Date(instance.lastChange.at * 1000).toUTCString() } : {}),
            ...(instance.lastChange?.reason ? { lastStatusChangeReason: instance.lastChange.reason } : {}),
          },
        };
      },
    },
    { path: "/credential/manage", schema: credentialManageRequestSchema, handle: (r) => manage(r.peer, r.body) },
    {
      path: "/event/notify",
      schema: eventNotifySchema,
      async handle({ peer, body }) {
        if (faults.refuseEvents > 0) {
          faults.refuseEvents--;
          throw problem(503, "unavailable", "the issuer cannot take events now; try again later");
        }
        const session = ownSession(peer, body.sessionId);
        const instance = ownInstance(session, body.credentialInstanceId);
        received.push({ eventType: body.eventType, sessionId: session.sessionId, credentialInstanceId: instance.id });
        if (body.eventType === "PROVISIONING_SUCCESS" && instance.status === "IN_PROCESS") instance.status = "ACTIVE";
        // The wallet's credentials expire soon: a new version (a fresh validity), announced once this answer is sent.
        if (body.eventType === "CREDENTIAL_EXPIRING" && !instance.unlinked && !instance.cancelled) later(0, () => publishUpdate(session.sessionId, instance.id));
        return { body: { acknowledged: true } };
      },
    },
  ];

  function displayOf(instance: Instance): Record<string, unknown> {
    const configuration = CREDENTIAL_CONFIGURATIONS[instance.configuration];
    // Display data only: the Wallet Server reads it, so it names the type, never the person.
    const display = instance.displayVersion === 1 ? configuration.display : configuration.display.map((d) => ({ ...d, name: `${d.name}, design ${instance.displayVersion}` }));
    return { credentialConfigurationId: instance.configuration, vct: configuration.vct, display, displayVersion: String(instance.displayVersion) };
  }

  /** The draft's credential status of an instance, from its flags. */
  function statusOfInstance(instance: Instance): string {
    if (instance.cancelled) return "CANCELLED";
    if (instance.unlinked) return "UNLINKED";
    if (instance.suspendedByIssuer) return "SUSPENDED_ISSUER";
    if (instance.suspendedByWallet) return "SUSPENDED_WALLET";
    return instance.status;
  }

  /**
   * /credential/manage from the wallet side. SUSPEND and RESUME carry the user's own
   * authority: the client's `credential-action+jwt`, signed by the session's WSK, for this
   * issuer, session, instance and action (a Wallet Server alone cannot suspend). An UNLINK
   * without it is accepted only as the server's own, for an instance no client can sign
   * for any more (reason NO_CLIENT: a lost device, a deleted wallet), and recorded so.
   * Replays are idempotent (NO_CHANGE); UNLINKED is terminal.
   */
  async function manage(peer: string, body: CredentialManageRequest): Promise<WireReply> {
    const session = ownSession(peer, body.sessionId);
    const instance = ownInstance(session, body.credentialInstanceId);
    const action = body.extensions?.[CLIENT_ACTION_EXTENSION];
    const serverUnlink = body.action === "UNLINK" && action === undefined && body.reason === "NO_CLIENT";
    // A device transfer's UNLINK: signed by the WSK of the session approved as this one's transfer.
    const viaId = body.extensions?.[TRANSFER_SESSION_EXTENSION];
    let signer = session.wsk;
    if (viaId !== undefined) {
      const via = typeof viaId === "string" ? sessions.get(viaId) : undefined;
      if (!via || via.peer !== peer || via.transferFrom !== session.sessionId || ![...via.verifications.values()].some((x) => x.status === "APPROVED")) {
        throw invalidClientAuthentication("the transfer session named is not an approved transfer of this session");
      }
      if (body.action !== "UNLINK") throw invalidClientAuthentication("a transfer session authorises only the UNLINK of the session it took over");
      signer = via.wsk;
    }
    if (!serverUnlink) {
      try {
        const statement = await verifyStatement("action", action, signer, { audience: issuerId, sessionId: session.sessionId, credentialInstanceId: instance.id }, {
          replay: { guard: replay, scope: issuerId }, now: now(),
        });
        if (statement.action !== body.action) throw new StatementError("action", "it authorises another action");
      } catch (error) {
        if (error instanceof StatementError) throw invalidClientAuthentication(`the user's authority for ${body.action} is refused: ${error.reason}`);
        throw error;
      }
    }
    const previous = statusOfInstance(instance);
    const answer = (outcome: string, failureReason?: string) => ({
      body: {
        sessionId: session.sessionId, credentialInstanceId: instance.id, currentStatus: statusOfInstance(instance), previousStatus: previous, outcome,
        ...(failureReason ? { failureReason } : {}),
      },
    });
    if (instance.unlinked || instance.cancelled) {
      return answer(body.action === "UNLINK" ? "NO_CHANGE" : "FAILED", body.action === "UNLINK" ? undefined : `${statusOfInstance(instance)} is terminal`);
    }
    const changed = (reason?: string) => {
      instance.lastChange = { at: now(), ...(reason ? { reason } : {}) };
      return answer("COMPLETED");
    };
    switch (body.action) {
      case "SUSPEND":
        if (instance.suspendedByWallet) return answer("NO_CHANGE");
        instance.suspendedByWallet = true;
        return changed(body.reason);
      case "RESUME":
        if (instance.suspendedByWallet) {
          instance.suspendedByWallet = false;
          return changed(body.reason);
        }
        // Only the party that suspended resumes: a wallet cannot lift the issuer's suspension.
        return instance.suspendedByIssuer ? answer("FAILED", "SUSPENDED_BY_ISSUER") : answer("NO_CHANGE");
      case "UNLINK":
        instance.unlinked = true;
        return changed(serverUnlink ? "NO_CLIENT (the wallet server's own UNLINK)" : viaId !== undefined ? "transferred to another device" : body.reason);
    }
  }

  async function get(peer: string, body: CredentialGetRequest, requestId: string): Promise<WireReply> {
    const session = ownSession(peer, body.sessionId);
    const instance = ownInstance(session, body.credentialInstanceId);
    if (instance.unlinked || instance.cancelled) {
      throw problem(409, `credential_${statusOfInstance(instance).toLowerCase()}`, `this credential instance is ${statusOfInstance(instance)}: a new verification makes a new one`);
    }
    const wek = await verifyWalletEncryptionKey(body.walletEncryptionKey, session.wsk, issuerId, session.sessionId, { now: now() });
    if (body.clientEncryptedData) {
      const payload = body.clientEncryptedData;
      const jwe = payload.jwe ?? (await fetchReference(peer, payload));
      const statement = await openClientPayload(
        "presentmentKeys",
        payload.origin,
        jwe,
        encryptionPrivate,
        session.wsk,
        { sessionId: session.sessionId, credentialInstanceId: instance.id },
        { replay: { guard: replay, scope: issuerId }, now: now() },
      );
      const keys = statement.presentmentKeys;
      if (!Array.isArray(keys) || keys.length < 1 || keys.length > MAX_PRESENTMENT_KEYS) {
        throw problem(400, "invalid_presentment_keys", `presentmentKeys must hold 1 to ${MAX_PRESENTMENT_KEYS} ES256 public keys`);
      }
      try {
        for (const key of keys) assertEs256PublicJwk(key, "a presentment key");
      } catch (error) {
        throw problem(400, "invalid_presentment_keys", (error as Error).message);
      }
      instance.presentmentKeys = (keys as JWK[]).map(({ kty, crv, x, y }) => ({ kty, crv, x, y }));
    }
    if (!instance.presentmentKeys) {
      throw problem(400, "presentment_keys_required", "the first get of an instance needs clientEncryptedData with the presentment keys (credentials are always holder-bound)");
    }
    if (!instance.ready) {
      if (instance.pendingRequestId === undefined) {
        instance.pendingRequestId = requestId;
        later(options.asyncIssuanceMs, () => completeIssuance(session.sessionId, instance.id));
      }
      return { status: 202, body: { extensions: { status: "PENDING" } }, headers: { "Retry-After": "2" } };
    }
    const configuration = CREDENTIAL_CONFIGURATIONS[instance.configuration];
    // Tests' switch: an issuer's bug, credentials bound to keys that are not the wallet's.
    const misbound = faults.misbind > 0;
    if (misbound) faults.misbind--;
    const holders = misbound
      ? instance.presentmentKeys.map(() => generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "jwk" }) as JWK)
      : instance.presentmentKeys;
    const credentials = await Promise.all(
      holders.map((holderKey) =>
        issueSdJwtVc({
          issuer: issuerId,
          vct: configuration.vct,
          claims: credentialClaims(instance.person, instance.configuration),
          holderKey,
          signingKey: signingPrivate,
          issuedAt: now(),
          ...(credentialValiditySeconds !== undefined ? { expiresAt: now() + credentialValiditySeconds } : {}),
          status: { idx: instance.statusIdx, uri: statusListUri },
        }),
      ),
    );
    return {
      body: {
        credentialVersion: String(instance.version),
        credentials: await sealCredentials(credentials, wek),
        credentialMetadata: displayOf(instance),
      },
    };
  }

  async function completeIssuance(sessionId: string, credentialInstanceId: string): Promise<void> {
    const { session, instance } = known(sessionId, credentialInstanceId);
    if (instance.ready) return;
    instance.ready = true;
    await poke(session, instance, "CREDENTIAL_READY", instance.pendingRequestId ? { triggeringRequestId: instance.pendingRequestId } : {});
  }

  /** A session and instance by id, for the issuer's own actions (a programming error otherwise). */
  function known(sessionId: string, credentialInstanceId: string): { session: Session; instance: Instance } {
    const session = sessions.get(sessionId);
    const instance = session?.instances.get(credentialInstanceId);
    if (!session || !instance) throw new Error("no such credential instance");
    return { session, instance };
  }

  /** An /event/notify to the instance's wallet server: a poke, so a lost one costs nothing the wallet's status call does not recover. */
  async function poke(session: Session, instance: Instance, eventType: string, extra: Record<string, unknown>): Promise<void> {
    try {
      await clientFor(session.peer).post(
        "/event/notify",
        { sessionId: session.sessionId, credentialInstanceId: instance.id, eventType, eventTimestamp: new Date(now() * 1000).toISOString(), ...extra },
        eventAckSchema,
      );
      notices.push({ path: "/event/notify", sessionId: session.sessionId, delivered: true });
    } catch (error) {
      notices.push({ path: "/event/notify", sessionId: session.sessionId, delivered: false });
      report(error, "event notify");
    }
  }

  /**
   * A new version of an instance's dataset (the next get delivers it), announced with
   * CREDENTIAL_UPDATE_AVAILABLE: a poke, so nothing is lost if it is not delivered (the
   * wallet's status call shows the version).
   */
  async function publishUpdate(sessionId: string, credentialInstanceId: string): Promise<void> {
    const { session, instance } = known(sessionId, credentialInstanceId);
    if (instance.unlinked || instance.cancelled) throw new Error("an instance that ended gets no update");
    instance.version += 1;
    await poke(session, instance, "CREDENTIAL_UPDATE_AVAILABLE", { eventDetails: { credentialVersion: String(instance.version) } });
  }

  /** New display data (the next /credential/metadata gives it), announced with DISPLAY_DATA_UPDATED. */
  async function publishDisplayUpdate(sessionId: string, credentialInstanceId: string): Promise<void> {
    const { session, instance } = known(sessionId, credentialInstanceId);
    if (instance.unlinked || instance.cancelled) throw new Error("an instance that ended gets no display update");
    instance.displayVersion += 1;
    await poke(session, instance, "DISPLAY_DATA_UPDATED", { eventDetails: { displayVersion: String(instance.displayVersion) } });
  }

  // --- the Token Status List -----------------------------------------------------

  /** A random free index (herd privacy: an index does not tell the order of issuance). */
  function allocateStatusIdx(): number {
    if (statusEntries.size * 2 >= statusListSize) statusListSize *= 2;
    for (;;) {
      const idx = randomInt(statusListSize);
      if (!statusEntries.has(idx)) return idx;
    }
  }

  /** An instance's entry: INVALID once it ended (revoked, or unlinked from its device), SUSPENDED while either party suspends it. */
  function listValue(instance: Instance): number {
    if (instance.cancelled || instance.unlinked) return STATUS_VALUES.INVALID;
    if (instance.suspendedByIssuer || instance.suspendedByWallet) return STATUS_VALUES.SUSPENDED;
    return STATUS_VALUES.VALID;
  }

  async function publishedStatusList(): Promise<string> {
    const values = new Array<number>(statusListSize).fill(STATUS_VALUES.VALID);
    for (const [idx, instance] of statusEntries) values[idx] = listValue(instance);
    return signStatusList({
      uri: statusListUri,
      issuer: issuerId,
      values,
      signingKey: signingPrivate,
      issuedAt: now(),
      validitySeconds: STATUS_LIST_VALIDITY_SECONDS,
      ttlSeconds: STATUS_LIST_TTL_SECONDS,
    });
  }

  // One idempotency store for the issuer's life, across an outage's restart of its listener.
  const idempotency = memoryIdempotencyStore();
  const listen = (port: number | undefined) => startWireServer({
    certPem: options.certPem,
    keyPem: options.keyPem,
    host: options.host,
    port,
    peers: options.walletServers.map((w) => ({ id: w.id, caPem: w.caPem })),
    routes,
    getRoutes: [{ path: "/.well-known/s2s-issuer", handle: async () => ({ body: metadata }) }],
    rateLimit: options.rateLimit,
    idempotency,
    onError: (error, path) => report(error, path),
  });
  let server: WireServer = await listen(options.port);

  function suspendAsIssuer(sessionId: string, credentialInstanceId: string, suspended: boolean): void {
    const { instance } = known(sessionId, credentialInstanceId);
    if (instance.unlinked || instance.cancelled || instance.suspendedByIssuer === suspended) return;
    instance.suspendedByIssuer = suspended;
    instance.lastChange = { at: now(), reason: suspended ? "the issuer's suspension" : "the issuer lifted its suspension" };
  }

  /** The issuer's own action on an instance, told to its wallet server (its /credential/manage): its answer. */
  async function tellWalletServer(sessionId: string, credentialInstanceId: string, action: "SUSPEND" | "RESUME" | "UNLINK") {
    const { session } = known(sessionId, credentialInstanceId);
    const answer = await clientFor(session.peer).post(
      "/credential/manage",
      { sessionId, credentialInstanceId, action, reason: "ISSUER_POLICY", timestamp: new Date(now() * 1000).toISOString() },
      credentialManageResponseSchema,
    );
    return answer.body;
  }

  return {
    url: server.url,
    port: server.port,
    metadata,
    decide,
    completeIssuance,
    verificationCount: (sessionId) => sessions.get(sessionId)?.verifications.size ?? 0,
    async walletServerStatus(sessionId, credentialInstanceId) {
      const session = sessions.get(sessionId);
      if (!session) throw new Error("no such session");
      return (await clientFor(session.peer).post("/credential/status", { sessionId, credentialInstanceId }, credentialStatusResponseSchema)).body;
    },
    suspendAsIssuer,
    publishUpdate,
    publishDisplayUpdate,
    statusListUri,
    revoke(sessionId, credentialInstanceId) {
      const { instance } = known(sessionId, credentialInstanceId);
      if (instance.cancelled || instance.unlinked) return;
      instance.cancelled = true;
      instance.lastChange = { at: now(), reason: "revoked by the issuer" };
    },
    async unlinkAndTell(sessionId, credentialInstanceId) {
      const { instance } = known(sessionId, credentialInstanceId);
      if (!instance.unlinked && !instance.cancelled) {
        instance.unlinked = true;
        instance.lastChange = { at: now(), reason: "unlinked by the issuer" };
      }
      return tellWalletServer(sessionId, credentialInstanceId, "UNLINK");
    },
    async suspendAndTell(sessionId, credentialInstanceId, suspended) {
      suspendAsIssuer(sessionId, credentialInstanceId, suspended);
      return tellWalletServer(sessionId, credentialInstanceId, suspended ? "SUSPEND" : "RESUME");
    },
    received,
    notices,
    setFaults(next) {
      Object.assign(faults, next);
    },
    setCredentialValidity(seconds) {
      credentialValiditySeconds = seconds;
    },
    async outage() {
      const port = server.port;
      await server.close();
      // Its own connections to wallet servers go too, as a stopped process's would.
      for (const client of clients.values()) client.close();
      clients.clear();
      return {
        end: async () => {
          server = await listen(port);
        },
      };
    },
    instanceStatus(sessionId, credentialInstanceId) {
      const { instance } = known(sessionId, credentialInstanceId);
      return { status: statusOfInstance(instance), ...(instance.lastChange?.reason ? { reason: instance.lastChange.reason } : {}) };
    },
    get statusAsked() {
      return statusAsked;
    },
    async renotify(sessionId, verificationId, status) {
      const session = sessions.get(sessionId);
      const v = session?.verifications.get(verificationId);
      if (!session || !v) throw new Error("no such verification");
      await notifyVerification(session, v, status);
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const client of clients.values()) client.close();
      await server.close();
      statusServer.closeAllConnections();
      await new Promise<void>((resolve) => statusServer.close(() => resolve()));
    },
  };
}

const eventAckSchema = verificationEchoSchema.partial().loose();
