// Orchestration's side of the credential wallet (docs/wallet-server.md): the Wallet
// Server. For each wallet API call (already checked by Token's AuthorizeWalletCall and
// the front door, wallet-api.ts) it reads the records Token granted, calls the issuer
// over mutual TLS (the S2S wire), and writes what Token mints of the issuer's answer —
// after checking every one of Token's answers itself: each grant's hash and kind, each
// record's signature, and that each change is exactly what the shared rules
// (internal/protocol/wallet-records.ts) make of the records read and the issuer's answer.
// It also takes the issuers' notifications (S2sHandlers), which reach only the
// notifying issuer's own session.
//
// It never sees a client payload's or a credential's plaintext: those are JWEs to the
// issuer's key and to the client's WEK, carried byte for byte.

import { type CallOptions, Code, ConnectError, type Client } from "@connectrpc/connect";
import { type JSONWebKeySet, type JWK, calculateJwkThumbprint, decodeProtectedHeader, jwtVerify } from "jose";
import type { EncryptionService } from "../../gen/hello/encryption/v1/encryption_service_pb.js";
import { create } from "@bufbuild/protobuf";
import { type AccessGrant, type AuthorizeWalletCallResponse, AuthorizeWalletCallResponseSchema, type RecordWrite, type TokenService } from "../../gen/hello/token/v1/token_service_pb.js";
import { RecordOperation } from "../../gen/hello/common/v1/record_pb.js";
import { verify } from "../../protocol/jws.js";
import { credentialHash, holdingsHash, s2sSessionHash, walletHash } from "../../protocol/lookup-key.js";
import type { RecordKindName } from "../../protocol/records.js";
import type { VerificationKeys } from "../../protocol/signing-keys.js";
import {
  RECORD_KIND,
  RECORD_TYPES,
  type CredentialRecord,
  type RecordClaims,
  type S2sSessionRecord,
  type WalletRecord,
  WALLET_CALL_TOKEN,
  type WalletCallClaims,
} from "../../protocol/tokens.js";
import { addInstances, applyStatus, confirmed, delivered, holdingsWithInstances, holdingsWithSession, holdingsWithoutInstance, metadataRefreshed, newCredential, rejected, sameRecord, statusReported, TERMINAL_CREDENTIAL_STATUSES } from "../../protocol/wallet-records.js";
import {
  type CredentialGetResponse,
  type EventNotify,
  ITEM_TYPES,
  KEY_TYPES,
  type JweEncryptedPayload,
  type KeyData,
  type VerificationStatus,
  CLIENT_ACTION_EXTENSION,
  TRANSFER_SESSION_EXTENSION,
  credentialGetResponseSchema,
  credentialManageResponseSchema,
  credentialMetadataResponseSchema,
  credentialPendingSchema,
  credentialStatusResponseSchema,
  MANAGE_ACTIONS,
  provisionResponseSchema,
  verificationEchoSchema,
  verificationStatusSchema,
} from "../../s2s/messages.js";
import { type Problem, ProblemError, problem } from "../../s2s/problem.js";
import type { WireClient } from "../../s2s/wire-client.js";
import { WSK_ATTESTATION_TYP } from "../../s2s/wsk-attestation.js";
import { ProtocolViolation } from "./minted-check.js";
import type { WalletKeys } from "./wallet-keys.js";
import type { WalletTask, WalletWorkHandlers } from "./s2s/wallet-work.js";
import { z } from "zod";

/** The issuers Orchestration is pinned to (its configuration): a WireClient for each. */
export interface IssuerDirectory {
  client(issuerId: string): WireClient;
  ids(): string[];
}

export interface WalletDriverDeps {
  /** hello-mesh's issuer URL: the `iss` of Token's WSK attestations. */
  readonly issuer: string;
  readonly token: Client<typeof TokenService>;
  readonly encryption: Client<typeof EncryptionService>;
  readonly lookupKey: Uint8Array;
  readonly tokenKeys: () => VerificationKeys;
  readonly walletKeys: WalletKeys;
  readonly issuers: IssuerDirectory;
  readonly now?: () => number;
  readonly rpcTimeoutMs?: number;
  /** The background work queue (s2s/wallet-work.ts): an event the issuer did not take, a PENDING verification to poll. */
  readonly work?: { enqueue(task: WalletTask, delayMs?: number): Promise<void> };
}

/** After a PENDING answer, the first poll of the verification's status (the queue backs off from there). */
const FIRST_POLL_MS = 2_000;

/** A checked wallet call: Token's answer, and the call token's claims as Orchestration verified them. */
export interface WalletCall {
  readonly answer: AuthorizeWalletCallResponse;
  readonly claims: WalletCallClaims & { uid: string; jkt: string };
}

/** An issuer refused a call (its RFC 9457 problem): the wallet API passes it on as the issuer's. */
export class IssuerRefusal extends Error {
  override name = "IssuerRefusal";
  constructor(readonly problem: Problem) {
    super(`the issuer refused: ${problem.detail}`);
  }
}

/** The issuer answered, and its answer is final (a manage FAILED): nothing to try again. */
export class IssuerOutcome extends Error {
  override name = "IssuerOutcome";
}

/** A failure worth trying again later: the issuer unreachable, failing (5xx) or asking to slow down (429). */
function retryable(error: unknown): boolean {
  if (error instanceof IssuerRefusal) return error.problem.status >= 500 || error.problem.status === 429;
  return !(error instanceof ProtocolViolation || error instanceof IssuerOutcome || error instanceof ProblemError);
}

/** How far Token's `updated` times may be from this clock. */
const CLOCK_SLACK_SECONDS = 300;

const notFound = (what: string) => problem(404, `unknown_${what}`, `no ${what.replace(/_/g, " ")} with this id belongs to you`);

export class WalletDriver {
  constructor(private readonly deps: WalletDriverDeps) {}

  #options(): CallOptions {
    return { timeoutMs: this.deps.rpcTimeoutMs ?? 5_000 };
  }

  #seconds(): number {
    return Math.floor((this.deps.now?.() ?? Date.now()) / 1000);
  }

  /** Token's call token, verified with its published keys: whose call Token says this is. */
  async checkCall(answer: AuthorizeWalletCallResponse, jkt: string): Promise<WalletCall> {
    const claims = await this.#verified<WalletCallClaims>(WALLET_CALL_TOKEN, answer.callToken, "wallet call token");
    if (typeof claims.uid !== "string" || claims.jkt !== jkt || claims.client_id !== answer.clientId) {
      throw new ProtocolViolation("Token's wallet call token is not for this caller");
    }
    this.#grant(answer.holdingsRead, "holdings", holdingsHash(this.deps.lookupKey, claims.uid));
    return { answer, claims: claims as WalletCall["claims"] };
  }

  /** The issuer, if Orchestration is pinned to it; a 400 otherwise. */
  #issuer(issuerId: string): WireClient {
    if (!this.deps.issuers.ids().includes(issuerId)) throw problem(400, "unknown_issuer", "this wallet server is not configured for that issuer: GET /wallet/api/issuers lists the ones it is");
    return this.deps.issuers.client(issuerId);
  }

  // --- the wallet API's operations ------------------------------------------------------

  /** Token's countersigned issuers that this wallet server can also reach. */
  async listIssuers(call: WalletCall) {
    const { issuers } = await this.deps.token.listWalletIssuers({ callToken: call.answer.callToken }, this.#options());
    const keys = await this.#walletJwks();
    const out = [];
    for (const entry of issuers) {
      const payload = await this.#walletJws(entry.statement, "hello-issuer+jwt", keys, "issuer statement");
      if (payload.sub !== entry.issuer) throw new ProtocolViolation("Token's issuer statement names another issuer");
      if (this.deps.issuers.ids().includes(entry.issuer)) out.push({ issuer: entry.issuer, statement: entry.statement });
    }
    return { issuers: out };
  }

  /** A new S2S session: the session record and the holdings that list it, written together. */
  async beginSession(call: WalletCall, issuerId: string, wsk: JWK, transferFrom?: string) {
    this.#issuer(issuerId);
    const holdingsAt = holdingsHash(this.deps.lookupKey, call.claims.uid);
    const read = await this.#read(call.answer.holdingsRead, "holdings", holdingsAt);
    // A device transfer takes over a session of the same user at this issuer: one the holdings list.
    if (transferFrom !== undefined && !(read.found && (await this.#record("holdings", read.record)).sessions.some((s) => s.issuer === issuerId && s.session_id === transferFrom))) {
      throw notFound("session");
    }
    const res = await this.deps.token.beginS2sSession(
      {
        callToken: call.answer.callToken,
        issuer: issuerId,
        wsk: JSON.stringify(wsk),
        holdings: { answer: read.found ? { case: "record", value: { record: read.record, receipt: read.receipt } } : { case: "errorToken", value: read.errorToken } },
        ...(transferFrom !== undefined ? { transferFrom } : {}),
      },
      this.#options(),
    );
    const sessionId = res.sessionId;
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(sessionId)) throw new ProtocolViolation("Token's sessionId is not a UUID");
    const session = await this.#written(res.session, "s2s-session", RecordOperation.CREATE, s2sSessionHash(this.deps.lookupKey, issuerId, sessionId));
    const expected: S2sSessionRecord = {
      issuer: issuerId, session_id: sessionId, uid: call.claims.uid, jkt: call.claims.jkt,
      wsk: { kty: "EC", crv: "P-256", x: wsk.x!, y: wsk.y! }, created: session.created, verifications: [], instances: [],
      ...(transferFrom !== undefined ? { transfer_from: transferFrom } : {}),
    };
    this.#fresh(session.created);
    if (!sameRecord(session, expected)) throw new ProtocolViolation("Token's session record is not the caller's new session with its WSK");
    const holdings = await this.#written(res.holdings, "holdings", read.found ? RecordOperation.UPDATE : RecordOperation.CREATE, holdingsAt);
    if (!sameRecord(holdings, holdingsWithSession(read.found ? await this.#record("holdings", read.record) : undefined, call.claims.uid, issuerId, sessionId))) {
      throw new ProtocolViolation("Token's holdings are not the holdings read with the new session");
    }
    await this.deps.encryption.writeRecords({ writes: [this.#write(res.session), this.#write(res.holdings, read.found ? read.version : 0)] }, this.#options());
    return { sessionId, issuer: issuerId };
  }

  /** /verification/initiate with Token's WSK attestation and the server's own signals, then the answer recorded. */
  async initiate(call: WalletCall, body: { issuer: string; sessionId: string; credentialConfigurationIds: string[]; verificationNonce: string; clientEncryptedPayload?: JweEncryptedPayload[]; locale?: string }) {
    const client = this.#issuer(body.issuer);
    const session = await this.#session(call, body.issuer, body.sessionId);
    const wallet = await this.#read(call.answer.walletRead, "wallet", walletHash(this.deps.lookupKey, call.claims.uid));
    const { attestation } = await this.deps.token.attestS2sSession({ callToken: call.answer.callToken, session: { record: session.record, receipt: session.receipt } }, this.#options());
    await this.#checkAttestation(attestation, session.claims);
    const walletSigningKeyData: KeyData = {
      keyType: KEY_TYPES.signing,
      client_public_key: { ...session.claims.wsk, alg: "ES256" },
      attestation: { proof_type: "jwt", jwt: attestation },
    };
    const status = await this.#ask(client, "/verification/initiate", {
      sessionId: body.sessionId,
      credentialConfigurationIds: body.credentialConfigurationIds,
      walletSigningKeyData,
      verificationNonce: body.verificationNonce,
      verificationData: {
        ...(body.clientEncryptedPayload ? { clientEncryptedPayload: body.clientEncryptedPayload } : {}),
        serverVerificationDataItem: [
          ...(wallet.found ? this.#signals(await this.#record("wallet", wallet.record), call.claims.uid) : []),
          // A device transfer: the session it takes over, as the draft's "previous SessionId"
          // (the attestation's transferFrom is what the issuer trusts it by).
          ...(session.claims.transfer_from !== undefined ? [{ type: ITEM_TYPES.previousSession, id: "previous-session", sessionId: session.claims.transfer_from }] : []),
        ],
      },
      ...(body.locale ? { locale: body.locale } : {}),
    }, verificationStatusSchema);
    return this.#recordStatus(call, session, status.body, true);
  }

  /** supplement, status or cancel: the issuer's answer, recorded. */
  async verification(call: WalletCall, op: "supplement" | "status" | "cancel", body: { issuer: string; sessionId: string; verificationId: string; clientEncryptedPayload?: JweEncryptedPayload[]; reason?: string }) {
    const client = this.#issuer(body.issuer);
    const session = await this.#session(call, body.issuer, body.sessionId);
    if (!session.claims.verifications.some((v) => v.verification_id === body.verificationId)) throw notFound("verification");
    const ref = { sessionId: body.sessionId, verificationId: body.verificationId };
    let status: VerificationStatus;
    if (op === "supplement") {
      status = (await this.#ask(client, "/verification/supplement", { ...ref, verificationDataPayload: { clientEncryptedPayload: body.clientEncryptedPayload ?? [] } }, verificationStatusSchema)).body;
    } else if (op === "status") {
      status = (await this.#ask(client, "/verification/status", ref, verificationStatusSchema)).body;
    } else {
      const echo = await this.#ask(client, "/verification/cancel", { ...ref, reason: body.reason ?? "cancelled by the user" }, verificationEchoSchema);
      if (echo.body.sessionId !== ref.sessionId || echo.body.verificationId !== ref.verificationId) throw problem(502, "issuer_answer", "the issuer's answer names another verification");
      status = (await this.#ask(client, "/verification/status", ref, verificationStatusSchema)).body;
    }
    return this.#recordStatus(call, session, status, false);
  }

  /** /credential/provision for an APPROVED verification: the instances, their credential records and the holdings. */
  async provision(call: WalletCall, body: { issuer: string; sessionId: string; verificationId: string }) {
    const client = this.#issuer(body.issuer);
    const session = await this.#session(call, body.issuer, body.sessionId);
    const holdingsAt = holdingsHash(this.deps.lookupKey, call.claims.uid);
    const holdings = await this.#read(call.answer.holdingsRead, "holdings", holdingsAt);
    if (!holdings.found) throw new ProtocolViolation("the holdings that list this session are missing");
    const answer = await this.#ask(client, "/credential/provision", { sessionId: body.sessionId, verificationId: body.verificationId }, provisionResponseSchema);
    const instances = answer.body.credentialInstances;
    // A second provision of one verification (a client resuming a session whose credential
    // the issuer was still making) names the instances the session records already: the
    // same answer again, nothing recorded twice.
    const recorded = session.claims.instances.filter((i) => i.verification_id === body.verificationId);
    const named = instances.flatMap((g) => g.credentialInstanceIds.map((id) => ({ credential_instance_id: id, credential_configuration_id: g.credentialConfigurationId })));
    if (recorded.length > 0 && recorded.length === named.length && named.every((n) => recorded.some((r) => r.credential_instance_id === n.credential_instance_id && r.credential_configuration_id === n.credential_configuration_id))) {
      return { credentialInstances: instances };
    }
    const res = await this.deps.token.recordS2sInstances({
      callToken: call.answer.callToken,
      session: { record: session.record, receipt: session.receipt },
      holdings: { record: holdings.record, receipt: holdings.receipt },
      verificationId: body.verificationId,
      instances: JSON.stringify(instances),
    }, this.#options());
    const at = s2sSessionHash(this.deps.lookupKey, body.issuer, body.sessionId);
    const nextSession = await this.#written(res.session, "s2s-session", RecordOperation.UPDATE, at);
    const expected = addInstances(session.claims, body.verificationId, instances);
    if (!sameRecord(nextSession, expected.session)) throw new ProtocolViolation("Token's session record is not the session with the provisioned instances");
    if (res.credentials.length !== expected.added.length) throw new ProtocolViolation("Token minted another number of credential records than instances");
    for (const [i, write] of res.credentials.entries()) {
      const instance = expected.added[i]!;
      const credential = await this.#written(write, "credential", RecordOperation.CREATE, credentialHash(this.deps.lookupKey, body.issuer, body.sessionId, instance.credential_instance_id));
      this.#fresh(credential.updated);
      if (!sameRecord(credential, newCredential(session.claims, instance, credential.updated))) throw new ProtocolViolation("Token's credential record is not the new instance's");
    }
    const nextHoldings = await this.#written(res.holdings, "holdings", RecordOperation.UPDATE, holdingsAt);
    if (!sameRecord(nextHoldings, holdingsWithInstances(await this.#record("holdings", holdings.record), body.issuer, body.sessionId, expected.added.map((a) => a.credential_instance_id)))) {
      throw new ProtocolViolation("Token's holdings are not the holdings with the new instances");
    }
    await this.deps.encryption.writeRecords({
      writes: [this.#write(res.session, session.version), ...res.credentials.map((w) => this.#write(w)), this.#write(res.holdings, holdings.version)],
    }, this.#options());
    return { credentialInstances: instances };
  }

  /** /credential/get with the client's WEK statement and presentment keys, the JWE kept in the credential's record. */
  async credentialGet(call: WalletCall, body: { issuer: string; sessionId: string; credentialInstanceId: string; walletEncryptionKey: KeyData; clientEncryptedData?: JweEncryptedPayload }) {
    const client = this.#issuer(body.issuer);
    const credential = await this.#credential(call, body.issuer, body.sessionId, body.credentialInstanceId);
    const answer = await this.#ask(client, "/credential/get", {
      sessionId: body.sessionId,
      credentialInstanceId: body.credentialInstanceId,
      reason: credential.claims.credentials ? "refresh" : "first issuance",
      walletEncryptionKey: body.walletEncryptionKey,
      ...(body.clientEncryptedData ? { clientEncryptedData: body.clientEncryptedData } : {}),
    }, z.union([credentialGetResponseSchema, credentialPendingSchema]));
    if (answer.status === 202) {
      credentialPendingSchema.parse(answer.body);
      return { status: "PENDING" as const, retryAfter: Number(answer.headers["retry-after"] ?? 2) || 2 };
    }
    const got = credentialGetResponseSchema.parse(answer.body) as CredentialGetResponse;
    await this.#updateCredential(call, credential, { case: "delivered", value: JSON.stringify(got) }, (c, at) => delivered(c, got, at));
    return { status: "READY" as const, credentialVersion: got.credentialVersion, credentials: got.credentials, ...(got.credentialMetadata ? { credentialMetadata: got.credentialMetadata } : {}) };
  }

  /** /credential/metadata with the client's WEK statement (the draft asks for one): the display data refreshed in the record. */
  async credentialMetadata(call: WalletCall, body: { issuer: string; sessionId: string; credentialInstanceId: string; walletEncryptionKey: KeyData }) {
    const client = this.#issuer(body.issuer);
    const credential = await this.#credential(call, body.issuer, body.sessionId, body.credentialInstanceId);
    if (!credential.claims.credentials) throw problem(409, "not_delivered", "get the credential before refreshing its display data");
    const answer = (await this.#ask(client, "/credential/metadata", {
      sessionId: body.sessionId,
      credentialInstanceId: body.credentialInstanceId,
      walletEncryptionKey: body.walletEncryptionKey,
    }, credentialMetadataResponseSchema)).body;
    const next = await this.#updateCredential(call, credential, { case: "metadata", value: JSON.stringify(answer) }, (c, at) => metadataRefreshed(c, answer, at));
    return { ...(next.metadata ? { credentialMetadata: next.metadata } : {}), ...(next.version ? { credentialVersion: next.version } : {}) };
  }

  /** The client has its credential: PROVISIONING_SUCCESS to the issuer (UPDATE_SUCCESS after a refresh), and the record ACTIVE. */
  async confirm(call: WalletCall, body: { issuer: string; sessionId: string; credentialInstanceId: string; keysRotated?: boolean }) {
    const client = this.#issuer(body.issuer);
    const credential = await this.#credential(call, body.issuer, body.sessionId, body.credentialInstanceId);
    if (!credential.claims.credentials) throw problem(409, "not_delivered", "get the credential before confirming it");
    await this.#notify(body.issuer, {
      sessionId: body.sessionId,
      credentialInstanceId: body.credentialInstanceId,
      // The first delivery is a provisioning; a later confirm follows a refresh (an update),
      // or the device's new presentment keys (a rotation).
      eventType: credential.claims.status === "IN_PROCESS" ? "PROVISIONING_SUCCESS" : body.keysRotated ? "KEY_ROTATED" : "UPDATE_SUCCESS",
      eventTimestamp: new Date(this.#seconds() * 1000).toISOString(),
    });
    const next = await this.#updateCredential(call, credential, { case: "confirmed", value: true }, (c, at) => confirmed(c, at));
    return { status: next.status };
  }

  /** The client refused what it was given: PROVISIONING_FAILURE (a first delivery) or UPDATE_FAILURE to the issuer; no record changes. */
  async reject(call: WalletCall, body: { issuer: string; sessionId: string; credentialInstanceId: string; reason: string }) {
    const credential = await this.#credential(call, body.issuer, body.sessionId, body.credentialInstanceId);
    const eventType = credential.claims.status === "IN_PROCESS" ? "PROVISIONING_FAILURE" : "UPDATE_FAILURE";
    // What was refused leaves the record: a refresh's pending delivery, or a first delivery (the good credentials stay).
    if (credential.claims.pending || (credential.claims.credentials && credential.claims.status === "IN_PROCESS")) {
      await this.#updateCredential(call, credential, { case: "rejected", value: true }, (c, at) => rejected(c, at));
    }
    await this.#notify(body.issuer, {
      sessionId: body.sessionId,
      credentialInstanceId: body.credentialInstanceId,
      eventType,
      eventTimestamp: new Date(this.#seconds() * 1000).toISOString(),
      eventDetails: { reason: body.reason },
    });
    return { told: eventType };
  }

  /**
   * The user's own suspend, resume or unlink (/credential/manage): the client's
   * `credential-action+jwt` goes to the issuer as it came (the issuer checks it against
   * the session's WSK, so this server alone can do none of it), and the record takes the
   * issuer's answer: its status, a terminal one never moving.
   */
  async manage(call: WalletCall, body: { issuer: string; sessionId: string; credentialInstanceId: string; action: (typeof MANAGE_ACTIONS)[number]; reason?: string; authority: string; viaSessionId?: string }) {
    const client = this.#issuer(body.issuer);
    // A device transfer's unlink: the old session's instance, by the caller's own session that transferred from it.
    const via = body.viaSessionId !== undefined ? await this.#transferSession(call, body.issuer, body.sessionId, body.viaSessionId) : undefined;
    if (via && body.action !== "UNLINK") throw problem(400, "invalid_request", "a device transfer unlinks the old session's instances, and does nothing else to them");
    const credential = via ? await this.#transferredCredential(call, body.issuer, body.sessionId, body.credentialInstanceId) : await this.#credential(call, body.issuer, body.sessionId, body.credentialInstanceId);
    const answer = (await this.#ask(client, "/credential/manage", {
      sessionId: body.sessionId,
      credentialInstanceId: body.credentialInstanceId,
      action: body.action,
      ...(body.reason !== undefined ? { reason: body.reason } : {}),
      timestamp: new Date(this.#seconds() * 1000).toISOString(),
      extensions: { [CLIENT_ACTION_EXTENSION]: body.authority, ...(via ? { [TRANSFER_SESSION_EXTENSION]: via.claims.session_id } : {}) },
    }, credentialManageResponseSchema)).body;
    if (answer.sessionId !== body.sessionId || answer.credentialInstanceId !== body.credentialInstanceId) {
      throw problem(502, "issuer_answer", "the issuer answered for another credential instance");
    }
    // A transfer changes the old instance's record only by its unlink: any other answer is told, not recorded.
    const next = via && answer.currentStatus !== "UNLINKED"
      ? credential.claims
      : await this.#updateCredential(call, credential, { case: "managed", value: JSON.stringify(answer) }, (c, at) => statusReported(c, answer.currentStatus, at), via);
    return {
      outcome: answer.outcome,
      status: next.status,
      ...(answer.previousStatus !== undefined ? { previousStatus: answer.previousStatus } : {}),
      ...(answer.failureReason !== undefined ? { failureReason: answer.failureReason } : {}),
    };
  }

  /**
   * A deleted wallet's credential, told to its issuer (login-driver.ts, the delete): the
   * wallet server's own UNLINK, reason NO_CLIENT, as no client can sign for a wallet that
   * is gone (the issuer records it as the server's). COMPLETED and NO_CHANGE (one that
   * ended already) are done; anything else throws, for the delete to report.
   */
  async unlinkForDeletedWallet(credential: { issuer: string; session_id: string; credential_instance_id: string }): Promise<void> {
    if (!this.deps.issuers.ids().includes(credential.issuer)) throw new Error("a deleted wallet's credential is of an issuer this wallet server is no longer configured for");
    const answer = (await this.#ask(this.deps.issuers.client(credential.issuer), "/credential/manage", {
      sessionId: credential.session_id,
      credentialInstanceId: credential.credential_instance_id,
      action: "UNLINK",
      reason: "NO_CLIENT",
      timestamp: new Date(this.#seconds() * 1000).toISOString(),
    }, credentialManageResponseSchema)).body;
    if (answer.outcome !== "COMPLETED" && answer.outcome !== "NO_CHANGE") {
      throw new IssuerOutcome(`the issuer answered a deleted wallet's UNLINK with ${answer.outcome}`);
    }
  }

  /**
   * The issuer's own view of an instance (/credential/status), asked on the user's call:
   * the record takes its status (reconciling a suspension or unlink the issuer made, or a
   * notification that never arrived), and the answer says whether the issuer holds a
   * newer version than the one delivered (the client's next get fetches it).
   */
  async credentialStatus(call: WalletCall, body: { issuer: string; sessionId: string; credentialInstanceId: string; expiringAt?: number }) {
    const client = this.#issuer(body.issuer);
    const credential = await this.#credential(call, body.issuer, body.sessionId, body.credentialInstanceId);
    const answer = (await this.#ask(client, "/credential/status", { sessionId: body.sessionId, credentialInstanceId: body.credentialInstanceId }, credentialStatusResponseSchema)).body;
    const next = await this.#updateCredential(call, credential, { case: "reported", value: JSON.stringify(answer) }, (c, at) => statusReported(c, answer.currentStatus, at));
    if (next.status !== credential.claims.status) {
      // The issuer's change has reached the user's wallet: say so (the draft's LIFECYCLE_SUCCESS
      // after a SCHEDULED manage), queued for later if the issuer cannot take it now.
      await this.#notify(body.issuer, {
        sessionId: body.sessionId,
        credentialInstanceId: body.credentialInstanceId,
        eventType: "LIFECYCLE_SUCCESS",
        eventTimestamp: new Date(this.#seconds() * 1000).toISOString(),
      }).catch(() => undefined);
    }
    // The client's word that its credentials expire soon (only it can read them): the
    // issuer may answer with an update (CREDENTIAL_UPDATE_AVAILABLE).
    if (body.expiringAt !== undefined && !TERMINAL_CREDENTIAL_STATUSES.has(next.status)) {
      await this.#notify(body.issuer, {
        sessionId: body.sessionId,
        credentialInstanceId: body.credentialInstanceId,
        eventType: "CREDENTIAL_EXPIRING",
        eventTimestamp: new Date(this.#seconds() * 1000).toISOString(),
        eventDetails: { expiresAt: new Date(body.expiringAt * 1000).toISOString() },
      }).catch(() => undefined);
    }
    return {
      status: next.status,
      issuerStatus: answer.currentStatus,
      issuerVersion: answer.currentVersion,
      ...(next.version !== undefined ? { credentialVersion: next.version } : {}),
      updateAvailable: next.credentials !== undefined && next.version !== undefined && answer.currentVersion !== next.version,
      ...(answer.lastStatusChangeTime !== undefined ? { lastStatusChangeTime: answer.lastStatusChangeTime } : {}),
      ...(answer.lastStatusChangeReason !== undefined ? { lastStatusChangeReason: answer.lastStatusChangeReason } : {}),
    };
  }

  /**
   * The user deletes a credential that ended (UNLINKED or CANCELLED; the client unlinks
   * first, so the issuer was told): its record goes and the holdings no longer list it,
   * in one batch, each at the version read.
   */
  async deleteCredential(call: WalletCall, body: { issuer: string; sessionId: string; credentialInstanceId: string }) {
    this.#issuer(body.issuer);
    const credential = await this.#credential(call, body.issuer, body.sessionId, body.credentialInstanceId);
    const holdingsAt = holdingsHash(this.deps.lookupKey, call.claims.uid);
    const holdings = await this.#read(call.answer.holdingsRead, "holdings", holdingsAt);
    if (!holdings.found) throw notFound("credential_instance");
    const res = await this.deps.token.deleteCredential({
      callToken: call.answer.callToken,
      credential: { record: credential.record, receipt: credential.receipt },
      holdings: { record: holdings.record, receipt: holdings.receipt },
    }, this.#options());
    const at = credentialHash(this.deps.lookupKey, body.issuer, body.sessionId, body.credentialInstanceId);
    const remove = this.#grant(res.credentialDelete, "credential", at, RecordOperation.DELETE);
    const next = await this.#written(res.holdings, "holdings", RecordOperation.UPDATE, holdingsAt);
    if (!sameRecord(next, holdingsWithoutInstance(await this.#record("holdings", holdings.record), credential.claims))) {
      throw new ProtocolViolation("Token's holdings are not the holdings without the deleted credential");
    }
    await this.deps.encryption.writeRecords({
      writes: [{ accessToken: remove.accessToken, record: "", expectedVersion: BigInt(credential.version) }, this.#write(res.holdings, holdings.version)],
    }, this.#options());
    return { deleted: true as const };
  }

  /** The user's credentials, from their records. */
  async list(call: WalletCall) {
    const holdingsAt = holdingsHash(this.deps.lookupKey, call.claims.uid);
    const holdings = await this.#read(call.answer.holdingsRead, "holdings", holdingsAt);
    if (!holdings.found) return { credentials: [] };
    const held = await this.#record("holdings", holdings.record);
    if (held.uid !== call.claims.uid) throw new ProtocolViolation("the holdings read are another user's");
    const res = await this.deps.token.grantCredentialReads({ callToken: call.answer.callToken, holdings: { record: holdings.record, receipt: holdings.receipt } }, this.#options());
    const wanted = held.sessions.flatMap((s) => (s.instances ?? []).map((id) => ({ issuer: s.issuer, sessionId: s.session_id, id })));
    if (res.credentialReads.length !== wanted.length) throw new ProtocolViolation("Token granted another number of credential reads than the holdings list");
    const credentials = await Promise.all(
      wanted.map(async (w, i) => {
        const read = await this.#read(res.credentialReads[i], "credential", credentialHash(this.deps.lookupKey, w.issuer, w.sessionId, w.id));
        if (!read.found) return undefined;
        const c = await this.#record("credential", read.record);
        if (c.uid !== call.claims.uid || c.issuer !== w.issuer || c.session_id !== w.sessionId || c.credential_instance_id !== w.id) {
          throw new ProtocolViolation("a credential record read is not the one the holdings list");
        }
        return {
          issuer: c.issuer, sessionId: c.session_id, credentialInstanceId: c.credential_instance_id, credentialConfigurationId: c.credential_configuration_id,
          status: c.status, ...(c.version ? { credentialVersion: c.version } : {}), ...(c.metadata ? { credentialMetadata: c.metadata } : {}),
          ...(c.credentials ? { credentials: c.credentials } : {}),
        };
      }),
    );
    return { credentials: credentials.filter((c) => c !== undefined) };
  }

  /**
   * The /wallet page's list: from an account session (its forced fresh sign-in, at step
   * "user"), Token's view call, which can only list the user's credentials.
   */
  async view(sessionToken: string, uid: string) {
    const res = await this.deps.token.authorizeWalletView({ sessionToken }, this.#options());
    const claims = await this.#verified<WalletCallClaims>(WALLET_CALL_TOKEN, res.callToken, "wallet call token");
    if (claims.uid !== uid || claims.view !== true || claims.jkt !== undefined) throw new ProtocolViolation("Token's wallet view is not this account's");
    const answer = create(AuthorizeWalletCallResponseSchema, { callToken: res.callToken, ...(res.holdingsRead ? { holdingsRead: res.holdingsRead } : {}) });
    this.#grant(answer.holdingsRead, "holdings", holdingsHash(this.deps.lookupKey, uid));
    return this.list({ answer, claims: { ...claims, uid, jkt: "" } });
  }

  /**
   * The /wallet page's unlink of one credential, for a device that is lost (no client can
   * sign): from an account session (its own forced fresh sign-in), the wallet server's own
   * UNLINK (reason NO_CLIENT, which the issuer records as such), and Token's view call
   * records only that. Answers what the record now holds.
   */
  async unlinkFromPage(sessionToken: string, uid: string, ref: { issuer: string; sessionId: string; credentialInstanceId: string }) {
    const client = this.#issuer(ref.issuer);
    const res = await this.deps.token.authorizeWalletView({ sessionToken, credential: { issuer: ref.issuer, sessionId: ref.sessionId, credentialInstanceId: ref.credentialInstanceId } }, this.#options());
    const claims = await this.#verified<WalletCallClaims>(WALLET_CALL_TOKEN, res.callToken, "wallet call token");
    if (claims.uid !== uid || claims.view !== true || claims.jkt !== undefined || claims.session?.issuer !== ref.issuer || claims.session.session_id !== ref.sessionId ||
      claims.session.credential_instance_id !== ref.credentialInstanceId) {
      throw new ProtocolViolation("Token's wallet view is not this account's unlink of this credential");
    }
    const credential = await this.#usersCredential(res.credentialRead, uid, ref);
    if (TERMINAL_CREDENTIAL_STATUSES.has(credential.claims.status)) return { status: credential.claims.status };
    const answer = (await this.#ask(client, "/credential/manage", {
      sessionId: ref.sessionId, credentialInstanceId: ref.credentialInstanceId, action: "UNLINK", reason: "NO_CLIENT", timestamp: new Date(this.#seconds() * 1000).toISOString(),
    }, credentialManageResponseSchema)).body;
    if (answer.sessionId !== ref.sessionId || answer.credentialInstanceId !== ref.credentialInstanceId) throw problem(502, "issuer_answer", "the issuer answered for another credential instance");
    if (answer.currentStatus !== "UNLINKED") return { status: credential.claims.status, outcome: answer.outcome };
    const call: WalletCall = { answer: create(AuthorizeWalletCallResponseSchema, { callToken: res.callToken }), claims: { ...claims, uid, jkt: "" } };
    const next = await this.#updateCredential(call, credential, { case: "managed", value: JSON.stringify(answer) }, (c, at) => statusReported(c, answer.currentStatus, at));
    return { status: next.status, outcome: answer.outcome };
  }

  // --- the issuers' notifications (the S2S server's handlers) -----------------------------

  /** /verification/notify: a hint, recorded only into the notifying issuer's own session, and never moving a terminal status. */
  async verificationNotice(issuerId: string, status: VerificationStatus): Promise<void> {
    const { res, read, session, at } = await this.#noticeSession(issuerId, status.sessionId);
    if (!session.verifications.some((v) => v.verification_id === status.verificationId)) throw notFound("verification");
    const recorded = await this.deps.token.recordS2sStatus({ callToken: res.callToken, session: { record: read.record, receipt: read.receipt }, status: JSON.stringify(status) }, this.#options());
    await this.#writeStatus(recorded.session, session, status, false, at, read.version);
  }

  /**
   * /event/notify: acknowledged for an instance of the notifying issuer's own session
   * (CREDENTIAL_READY: the client's next get fetches it). The session record says which
   * instances it has; no credential record is read for an event.
   */
  async event(issuerId: string, event: EventNotify): Promise<void> {
    const { session } = await this.#noticeSession(issuerId, event.sessionId);
    if (!session.instances.some((i) => i.credential_instance_id === event.credentialInstanceId)) throw notFound("credential_instance");
  }

  /**
   * /credential/status from an issuer: the wallet server's own view of one of that
   * issuer's instances (its record's status and delivered version), for the issuer to
   * reconcile with. Token grants a read of that record only; an instance the session does
   * not list, or another issuer's, is 404, as one that does not exist.
   */
  async credentialStatusForIssuer(issuerId: string, body: { sessionId: string; credentialInstanceId: string }) {
    const c = await this.#issuerInstance(issuerId, body);
    return {
      currentStatus: c.status,
      // The draft requires a version; before the first delivery there is none, and "0" says so.
      currentVersion: c.version ?? "0",
      lastStatusChangeTime: new Date(c.updated * 1000).toUTCString(),
    };
  }

  /**
   * /credential/manage from an issuer (its own SUSPEND, RESUME or UNLINK). A poke, as the
   * draft's notifications are: the wallet server alone changes no credential record (only
   * the user's own call does), so the answer is SCHEDULED with the record's status as it
   * stands. The change reaches the record when the user's client next asks the issuer's
   * status (reconciliation, credentialStatus), and then the issuer gets LIFECYCLE_SUCCESS.
   * An instance that ended (UNLINKED, CANCELLED) answers FAILED: nothing moves it.
   */
  async manageForIssuer(issuerId: string, body: { sessionId: string; credentialInstanceId: string; action: string }) {
    const c = await this.#issuerInstance(issuerId, body);
    const ended = TERMINAL_CREDENTIAL_STATUSES.has(c.status);
    return {
      sessionId: body.sessionId,
      credentialInstanceId: body.credentialInstanceId,
      currentStatus: c.status,
      previousStatus: c.status,
      outcome: ended ? ("FAILED" as const) : ("SCHEDULED" as const),
      ...(ended ? { failureReason: `${c.status} is terminal` } : {}),
    };
  }

  /**
   * An issuer's call about one of its sessions: Token's notice grant (with a read of the
   * named instance's record, if one is named), and the session record read with it, which
   * must be the calling issuer's own (404 for a session that does not exist).
   */
  async #noticeSession(issuerId: string, sessionId: string, credentialInstanceId = "") {
    const res = await this.deps.token.authorizeIssuerNotice({ session: { issuer: issuerId, sessionId, credentialInstanceId } }, this.#options());
    const at = s2sSessionHash(this.deps.lookupKey, issuerId, sessionId);
    const read = await this.#read(res.sessionRead, "s2s-session", at);
    if (!read.found) throw notFound("session");
    const session = await this.#record("s2s-session", read.record);
    if (session.issuer !== issuerId || session.session_id !== sessionId) throw new ProtocolViolation("the session read is not the calling issuer's");
    return { res, read, session, at };
  }

  /** One of `issuerId`'s instances as this server's record holds it, read with Token's notice grant (404 for any other). */
  async #issuerInstance(issuerId: string, body: { sessionId: string; credentialInstanceId: string }): Promise<CredentialRecord> {
    const { res, session } = await this.#noticeSession(issuerId, body.sessionId, body.credentialInstanceId);
    if (!session.instances.some((i) => i.credential_instance_id === body.credentialInstanceId)) throw notFound("credential_instance");
    const read = await this.#read(res.credentialRead, "credential", credentialHash(this.deps.lookupKey, issuerId, body.sessionId, body.credentialInstanceId));
    if (!read.found) throw notFound("credential_instance");
    const c = await this.#record("credential", read.record);
    if (c.issuer !== issuerId || c.session_id !== body.sessionId || c.credential_instance_id !== body.credentialInstanceId || c.uid !== session.uid) {
      throw new ProtocolViolation("the credential record read is not the one the issuer asked about");
    }
    return c;
  }

  /** The caller's own session (a 404 otherwise), at an issuer this wallet server knows. */
  async ownSession(call: WalletCall, issuerId: string, sessionId: string): Promise<void> {
    this.#issuer(issuerId);
    await this.#session(call, issuerId, sessionId);
  }

  // --- helpers --------------------------------------------------------------------------

  /** One S2S call to an issuer; its refusal (a problem) becomes an IssuerRefusal, told apart from the wallet server's own. */
  /**
   * An /event/notify to the issuer. One it cannot take now (unreachable, 5xx, 429) is
   * queued and sent later (wallet-work.ts), so the user's call goes on and nothing is
   * lost; one it refuses (4xx) is its answer, and thrown.
   */
  async #notify(issuerId: string, body: { sessionId: string; credentialInstanceId: string; eventType: string; eventTimestamp: string; eventDetails?: Record<string, unknown> }): Promise<void> {
    try {
      await this.#ask(this.#issuer(issuerId), "/event/notify", body, z.looseObject({ acknowledged: z.boolean().optional() }));
    } catch (error) {
      if (!this.deps.work || !retryable(error)) throw error;
      await this.deps.work.enqueue({ kind: "event", issuer: issuerId, body });
    }
  }

  /** The background work's handlers (wallet-work.ts): each says whether it is done, or to be tried again. */
  workHandlers(): WalletWorkHandlers {
    return {
      unlink: async (task) => {
        try {
          await this.unlinkForDeletedWallet(task);
          return "done";
        } catch (error) {
          if (retryable(error)) return "again";
          throw error;
        }
      },
      event: async (task) => {
        try {
          await this.#ask(this.#issuer(task.issuer), "/event/notify", task.body, z.looseObject({ acknowledged: z.boolean().optional() }));
          return "done";
        } catch (error) {
          // Refused for good (the issuer does not know the instance any more): nothing to retry.
          if (retryable(error)) return "again";
          return "done";
        }
      },
      poll: async (task) => {
        let status: VerificationStatus;
        try {
          status = (await this.#ask(this.#issuer(task.issuer), "/verification/status", { sessionId: task.session_id, verificationId: task.verification_id }, verificationStatusSchema)).body;
        } catch (error) {
          if (retryable(error)) return "again";
          return "done";
        }
        if (status.sessionId !== task.session_id || status.verificationId !== task.verification_id) throw new ProtocolViolation("the issuer answered for another verification");
        if (status.status === "PENDING") return "again";
        // What a notification would have said: recorded the same way, with the notice grant
        // Token gives for that issuer's own session only.
        await this.verificationNotice(task.issuer, status);
        return "done";
      },
    };
  }

  async #ask<T>(client: WireClient, path: string, body: unknown, schema: z.ZodType<T>) {
    try {
      return await client.post(path, body, schema);
    } catch (error) {
      if (error instanceof ProblemError) throw new IssuerRefusal(error.problem);
      throw error;
    }
  }

  async #recordStatus(call: WalletCall, session: Read<"s2s-session">, status: VerificationStatus, mayAdd: boolean) {
    if (status.sessionId !== session.claims.session_id) throw problem(502, "issuer_answer", "the issuer answered for another session");
    const recorded = await this.deps.token.recordS2sStatus({ callToken: call.answer.callToken, session: { record: session.record, receipt: session.receipt }, status: JSON.stringify(status) }, this.#options());
    await this.#writeStatus(recorded.session, session.claims, status, mayAdd, s2sSessionHash(this.deps.lookupKey, session.claims.issuer, session.claims.session_id), session.version);
    // PENDING: the issuer's decision comes by /verification/notify, or, if that is lost, by
    // polling. A poll that cannot be queued now costs the user's call nothing: the client
    // polls the status itself, and its next call queues it again.
    if (status.status === "PENDING") {
      await this.deps.work?.enqueue({ kind: "poll", issuer: session.claims.issuer, session_id: status.sessionId, verification_id: status.verificationId }, FIRST_POLL_MS).catch(() => undefined);
    }
    return status;
  }

  async #writeStatus(write: RecordWrite | undefined, session: S2sSessionRecord, status: VerificationStatus, mayAdd: boolean, at: string, version: number) {
    if (!write) {
      // Token says nothing changes: so must the rules.
      if (applyStatus(session, status, this.#seconds(), mayAdd) !== undefined) throw new ProtocolViolation("Token recorded nothing of a status that changes the session");
      return;
    }
    const next = await this.#written(write, "s2s-session", RecordOperation.UPDATE, at);
    const updated = next.verifications.find((v) => v.verification_id === status.verificationId)?.updated ?? 0;
    this.#fresh(updated);
    const expected = applyStatus(session, status, updated, mayAdd);
    if (!expected || !sameRecord(next, expected)) throw new ProtocolViolation("Token's session record is not the session with the issuer's status");
    await this.deps.encryption.writeRecords({ writes: [this.#write(write, version)] }, this.#options());
  }

  async #updateCredential(
    call: WalletCall, credential: Read<"credential">, change: { case: "delivered" | "metadata" | "managed" | "reported"; value: string } | { case: "confirmed" | "rejected"; value: boolean },
    rule: (c: CredentialRecord, at: number) => CredentialRecord, via?: Read<"s2s-session">,
  ) {
    const res = await this.deps.token.updateCredential({
      callToken: call.answer.callToken, credential: { record: credential.record, receipt: credential.receipt }, change,
      ...(via ? { viaSession: { record: via.record, receipt: via.receipt } } : {}),
    }, this.#options());
    const at = credentialHash(this.deps.lookupKey, credential.claims.issuer, credential.claims.session_id, credential.claims.credential_instance_id);
    const next = await this.#written(res.credential, "credential", RecordOperation.UPDATE, at);
    this.#fresh(next.updated);
    if (!sameRecord(next, rule(credential.claims, next.updated))) throw new ProtocolViolation("Token's credential record is not the change the issuer's answer makes");
    await this.deps.encryption.writeRecords({ writes: [this.#write(res.credential, credential.version)] }, this.#options());
    return next;
  }

  /** The caller's session record, read with the call's grant: its own, at an issuer Orchestration knows. */
  async #session(call: WalletCall, issuerId: string, sessionId: string): Promise<Read<"s2s-session">> {
    if (call.claims.session?.issuer !== issuerId || call.claims.session.session_id !== sessionId) throw new ProtocolViolation("Token's call token is for another session");
    const read = await this.#read(call.answer.sessionRead, "s2s-session", s2sSessionHash(this.deps.lookupKey, issuerId, sessionId));
    if (!read.found) throw notFound("session");
    const claims = await this.#record("s2s-session", read.record);
    if (claims.uid !== call.claims.uid || claims.jkt !== call.claims.jkt || claims.issuer !== issuerId || claims.session_id !== sessionId) {
      // Another user's or another client instance's session: as if it did not exist.
      throw notFound("session");
    }
    return { ...read, claims };
  }

  async #credential(call: WalletCall, issuerId: string, sessionId: string, instanceId: string): Promise<Read<"credential">> {
    if (call.claims.session?.credential_instance_id !== instanceId) throw new ProtocolViolation("Token's call token is for another credential instance");
    const session = await this.#session(call, issuerId, sessionId);
    if (!session.claims.instances.some((i) => i.credential_instance_id === instanceId)) throw notFound("credential_instance");
    const read = await this.#read(call.answer.credentialRead, "credential", credentialHash(this.deps.lookupKey, issuerId, sessionId, instanceId));
    if (!read.found) throw notFound("credential_instance");
    const claims = await this.#record("credential", read.record);
    if (claims.uid !== call.claims.uid || claims.jkt !== call.claims.jkt || claims.credential_instance_id !== instanceId) throw notFound("credential_instance");
    return { ...read, claims };
  }

  /**
   * A device transfer's own session (`viaSessionId`), read with the call's grant: the
   * caller's, at this issuer, taking over `oldSessionId` (404 for anything else).
   */
  async #transferSession(call: WalletCall, issuerId: string, oldSessionId: string, viaSessionId: string): Promise<Read<"s2s-session">> {
    if (call.claims.session?.issuer !== issuerId || call.claims.session.session_id !== oldSessionId || call.claims.session.via_session_id !== viaSessionId) {
      throw new ProtocolViolation("Token's call token is for another transfer");
    }
    const read = await this.#read(call.answer.viaSessionRead, "s2s-session", s2sSessionHash(this.deps.lookupKey, issuerId, viaSessionId));
    if (!read.found) throw notFound("session");
    const claims = await this.#record("s2s-session", read.record);
    if (claims.uid !== call.claims.uid || claims.jkt !== call.claims.jkt || claims.issuer !== issuerId || claims.session_id !== viaSessionId || claims.transfer_from !== oldSessionId) {
      throw notFound("session");
    }
    return { ...read, claims };
  }

  /** The old session's instance a device transfer unlinks: the same user's (any client instance's), read with the call's grant. */
  async #transferredCredential(call: WalletCall, issuerId: string, sessionId: string, instanceId: string): Promise<Read<"credential">> {
    if (call.claims.session?.credential_instance_id !== instanceId) throw new ProtocolViolation("Token's call token is for another credential instance");
    return this.#usersCredential(call.answer.credentialRead, call.claims.uid, { issuer: issuerId, sessionId, credentialInstanceId: instanceId });
  }

  /** A credential record of user `uid`'s (any client instance's), read with `grant`: the one named, or 404. */
  async #usersCredential(grant: AccessGrant | undefined, uid: string, ref: { issuer: string; sessionId: string; credentialInstanceId: string }): Promise<Read<"credential">> {
    const read = await this.#read(grant, "credential", credentialHash(this.deps.lookupKey, ref.issuer, ref.sessionId, ref.credentialInstanceId));
    if (!read.found) throw notFound("credential_instance");
    const claims = await this.#record("credential", read.record);
    if (claims.uid !== uid || claims.issuer !== ref.issuer || claims.session_id !== ref.sessionId || claims.credential_instance_id !== ref.credentialInstanceId) throw notFound("credential_instance");
    return { ...read, claims };
  }

  /** Token's WSK attestation: a wallet key's, for this issuer, session, WSK and client instance. */
  async #checkAttestation(attestation: string, session: S2sSessionRecord) {
    const payload = await this.#walletJws(attestation, WSK_ATTESTATION_TYP, await this.#walletJwks(), "WSK attestation");
    const jwk = payload.jwk as JWK | undefined;
    if (
      payload.iss !== this.deps.issuer || payload.aud !== session.issuer || payload.sessionId !== session.session_id ||
      (payload.cnf as { jkt?: unknown } | undefined)?.jkt !== session.jkt || !jwk || payload.transferFrom !== session.transfer_from ||
      (await calculateJwkThumbprint(jwk)) !== (await calculateJwkThumbprint(session.wsk))
    ) {
      throw new ProtocolViolation("Token's WSK attestation is not for this session's issuer, WSK, client instance and transfer");
    }
  }

  /** The wallet server's own signals: how old the wallet is, and whether its email is verified. */
  #signals(wallet: WalletRecord, uid: string) {
    if (wallet.uid !== uid) throw new ProtocolViolation("the wallet read is not the caller's");
    return [
      ...(wallet.created !== undefined ? [{ type: ITEM_TYPES.walletAge, id: "wallet-age", days: Math.max(0, Math.floor((this.#seconds() - wallet.created) / 86_400)) }] : []),
      { type: ITEM_TYPES.emailVerified, id: "email-verified", verified: wallet.claims.email_verified === true },
    ];
  }

  async #walletJwks(): Promise<JSONWebKeySet> {
    return JSON.parse(Buffer.from((await this.deps.walletKeys.get()).jwks).toString("utf8")) as JSONWebKeySet;
  }

  /** A JWS Token signed with a `wallet` key (ES256), of `typ`. */
  async #walletJws(jws: string, typ: string, jwks: JSONWebKeySet, what: string): Promise<Record<string, unknown>> {
    try {
      const { kid } = decodeProtectedHeader(jws);
      const key = jwks.keys.find((k) => k.kid === kid && typeof kid === "string" && kid.startsWith("wallet."));
      if (!key) throw new Error("unknown kid");
      const { payload } = await jwtVerify(jws, key, { algorithms: ["ES256"], typ });
      return payload as Record<string, unknown>;
    } catch {
      throw new ProtocolViolation(`Token's ${what} does not verify with its wallet keys`);
    }
  }

  #grant(grant: AccessGrant | undefined, kind: RecordKindName, expectedHash: string | undefined, op: RecordOperation = RecordOperation.READ): AccessGrant {
    if (!grant || grant.kind !== RECORD_KIND[kind] || grant.operation !== op || (expectedHash !== undefined && grant.hash !== expectedHash)) {
      throw new ProtocolViolation(`Token's ${kind} grant is not for the ${kind} record this call needs`);
    }
    return grant;
  }

  async #read<K extends RecordKindName>(grant: AccessGrant | undefined, kind: K, expectedHash: string | undefined) {
    const checked = this.#grant(grant, kind, expectedHash);
    const res = await this.deps.encryption.readRecord({ accessToken: checked.accessToken }, this.#options());
    if (res.result.case === "record") return { found: true as const, record: res.result.value, receipt: res.receipt, version: Number(res.version) };
    if (res.result.case === "errorToken") return { found: false as const, errorToken: res.result.value };
    throw new ProtocolViolation(`the ${kind} read returned nothing`);
  }

  async #written<K extends RecordKindName>(write: RecordWrite | undefined, kind: K, op: RecordOperation, expectedHash: string): Promise<RecordClaims[K]> {
    if (!write) throw new ProtocolViolation(`Token minted no ${kind} write`);
    this.#grant(write.grant, kind, expectedHash, op);
    return this.#record(kind, write.record);
  }

  #write(write: RecordWrite | undefined, expectedVersion = 0) {
    return { accessToken: write!.grant!.accessToken, record: write!.record, expectedVersion: BigInt(expectedVersion) };
  }

  #record<K extends RecordKindName>(kind: K, record: string): Promise<RecordClaims[K]> {
    return this.#verified<RecordClaims[K]>(RECORD_TYPES[kind], record, `${kind} record`);
  }

  #fresh(at: number) {
    if (Math.abs(at - this.#seconds()) > CLOCK_SLACK_SECONDS) throw new ProtocolViolation("Token's record is dated far from now");
  }

  async #verified<T>(type: (typeof RECORD_TYPES)[RecordKindName] | typeof WALLET_CALL_TOKEN, jws: string, what: string): Promise<T> {
    try {
      return (await verify<T>(type, this.deps.tokenKeys(), jws, what)).claims;
    } catch (error) {
      throw new ProtocolViolation(error instanceof Error ? error.message : `the ${what} is not valid`);
    }
  }
}

interface Read<K extends RecordKindName> {
  found: true;
  record: string;
  receipt: string;
  version: number;
  claims: RecordClaims[K];
}

/** Whether a wallet operation failed because an issuer did not answer (its WireClient gave up). */
export function isIssuerUnavailable(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.Unavailable;
}
