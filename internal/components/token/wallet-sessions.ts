// Token's side of the credential wallet's records (docs/wallet-server.md): the S2S
// session, each credential instance and the user's holdings. Every handler takes a call
// token (a user's DPoP-checked call, or an issuer's notification), accepts a record only
// as Storage's receipt for that call's own read shows it stored, checks the record is
// the caller's, and mints the change by the shared rules of
// internal/protocol/wallet-records.ts, which Orchestration applies again.

import { createPublicKey, randomBytes, randomUUID } from "node:crypto";
import type { JSONWebKeySet, JWK } from "jose";
import { SignJWT } from "jose";
import { denied, invalidArgument, outOfOrder } from "../../protocol/errors.js";
import { sign, verify } from "../../protocol/jws.js";
import { credentialHash, holdingsHash, s2sSessionHash, walletHash } from "../../protocol/lookup-key.js";
import type { RecordKindName } from "../../protocol/records.js";
import { type SigningKey, activeKey } from "../../protocol/signing-keys.js";
import { type CredentialRecord, type S2sSessionRecord, WALLET_CALL_TOKEN, type WalletCallClaims } from "../../protocol/tokens.js";
import {
  WalletRecordError,
  addInstances,
  applyStatus,
  confirmed,
  delivered,
  holdingsWithInstances,
  holdingsWithSession,
  holdingsWithoutInstance,
  metadataRefreshed,
  statusReported,
  newCredential,
  rejected,
} from "../../protocol/wallet-records.js";
import { credentialGetResponseSchema, credentialInstancesSchema, credentialManageResponseSchema, credentialMetadataResponseSchema, credentialStatusResponseSchema, verificationStatusSchema } from "../../s2s/messages.js";
import { assertEs256PublicJwk } from "../../s2s/statements.js";
import { signWskAttestation } from "../../s2s/wsk-attestation.js";
import { type StorageWord, checkAbsence, checkReceiptOf } from "./checks.js";
import type { Grants } from "./grants.js";
import type { OwnKeys } from "./own-keys.js";
import type { WalletCaller } from "./wallet-access.js";

/** An issuer on Token's allow-list (Token's configuration, `issuers`). */
export interface WalletIssuerEntry {
  readonly id: string;
  readonly encryption_key: JWK;
  readonly jwks: JSONWebKeySet;
  readonly credential_configurations: Readonly<Record<string, { vct: string; display?: unknown }>>;
}

export interface WalletSessionDeps {
  readonly issuer: string;
  readonly keys: OwnKeys;
  readonly walletKeys: () => readonly SigningKey[];
  readonly grants: Grants;
  readonly storage: StorageWord;
  readonly lookupKey: Uint8Array;
  readonly issuers: readonly WalletIssuerEntry[];
  readonly now: () => Date;
}

/** How long an issuer statement is good for: the client fetches them at each `add`. */
export const ISSUER_STATEMENT_LIFETIME_SECONDS = 60 * 60;
const MAX_JSON = 256 * 1024;

interface ReadRecord {
  record: string;
  receipt: string;
}

export function walletSessions(deps: WalletSessionDeps) {
  const seconds = () => Math.floor(deps.now().getTime() / 1000);
  const lookup = {
    session: (issuer: string, sessionId: string) => s2sSessionHash(deps.lookupKey, issuer, sessionId),
    credential: (issuer: string, sessionId: string, instanceId: string) => credentialHash(deps.lookupKey, issuer, sessionId, instanceId),
    holdings: (uid: string) => holdingsHash(deps.lookupKey, uid),
  };

  function allowed(issuer: string): WalletIssuerEntry {
    const entry = deps.issuers.find((i) => i.id === issuer);
    if (!entry) throw invalidArgument("the issuer is not on Token's issuer allow-list");
    return entry;
  }

  const callToken = (claims: WalletCallClaims) => sign(WALLET_CALL_TOKEN, deps.keys.active("session"), { ...claims }, { now: deps.now() });

  async function readCall(token: string): Promise<WalletCallClaims> {
    const { claims } = await verify<WalletCallClaims>(WALLET_CALL_TOKEN, deps.keys.verification(), token, "wallet call token", deps.now());
    if (typeof claims.reads !== "object" || claims.reads === null) throw invalidArgument("the wallet call token has no reads");
    return claims;
  }

  /** A user's call only (not an issuer's notification, nor the /wallet page's view). */
  function user(call: WalletCallClaims): { uid: string; jkt: string } {
    if (typeof call.uid !== "string" || typeof call.jkt !== "string" || call.view) throw denied("this step is a user's own call, not an issuer's notification");
    return { uid: call.uid, jkt: call.jkt };
  }

  /** A user's call, or the /wallet page's view of the user's credentials: enough to list them. */
  function reader(call: WalletCallClaims): { uid: string } {
    if (typeof call.uid !== "string" || (typeof call.jkt !== "string" && call.view !== true)) throw denied("this step is a user's own call, not an issuer's notification");
    return { uid: call.uid };
  }

  /** A record of the call's session as Storage returned it to this call's read, and its stored version. */
  async function stored<K extends RecordKindName>(kind: K, read: ReadRecord | undefined, hash: string, readJti: string | undefined) {
    if (!read?.record) throw invalidArgument(`the ${kind} record is required`);
    const receipt = await checkReceiptOf(deps.storage, kind, read.record, read.receipt, hash, { read: readJti });
    return { claims: await deps.grants.record(kind, read.record), version: receipt.version };
  }

  async function sessionOf(call: WalletCallClaims, read: ReadRecord | undefined): Promise<{ session: S2sSessionRecord; version: number }> {
    if (!call.session) throw outOfOrder("the wallet call names no S2S session");
    const { claims, version } = await stored("s2s-session", read, lookup.session(call.session.issuer, call.session.session_id), call.reads.session);
    if (claims.issuer !== call.session.issuer || claims.session_id !== call.session.session_id) throw denied("the session record is not the call's session");
    if (call.notice_issuer !== undefined) {
      // An issuer's notification reaches only that issuer's own session.
      if (claims.issuer !== call.notice_issuer) throw denied("the session is not the notifying issuer's");
    } else {
      const caller = user(call);
      if (claims.uid !== caller.uid || claims.jkt !== caller.jkt) throw denied("the session belongs to another user or client instance");
    }
    return { session: claims, version };
  }

  /**
   * The credential record the user's call names, as Storage returned it to the call's
   * read: the calling client instance's own, or refused. With `via` (a device transfer's
   * unlink), the record may be another client instance's of the same user, when `via`,
   * as this call read it, is the caller's own session that transferred from the
   * credential's session (transfer_from); the caller says so with `transferred`.
   */
  async function ownCredential(call: WalletCallClaims, read: ReadRecord | undefined, via?: ReadRecord) {
    // The /wallet page's view call (a fresh sign-in, no client): the user's own record, any client instance's.
    const caller = call.view === true && typeof call.uid === "string" ? { uid: call.uid, jkt: undefined } : user(call);
    if (!call.session?.credential_instance_id) throw outOfOrder("the wallet call names no credential instance");
    const ref = call.session;
    const hash = lookup.credential(ref.issuer, ref.session_id, ref.credential_instance_id!);
    const { claims: credential, version } = await stored("credential", read, hash, call.reads.credential);
    if (credential.uid !== caller.uid || credential.issuer !== ref.issuer || credential.session_id !== ref.session_id || credential.credential_instance_id !== ref.credential_instance_id) {
      throw denied("the credential record is not the calling client instance's");
    }
    let transferred = false;
    if (caller.jkt === undefined) {
      transferred = true; // the page's unlink: changed by its UNLINK only, as a transfer's is
    } else if (credential.jkt !== caller.jkt) {
      if (!via?.record || !ref.via_session_id) throw denied("the credential record is not the calling client instance's");
      const { claims: session } = await stored("s2s-session", via, lookup.session(ref.issuer, ref.via_session_id), call.reads.via);
      if (session.uid !== caller.uid || session.jkt !== caller.jkt || session.issuer !== ref.issuer || session.session_id !== ref.via_session_id || session.transfer_from !== ref.session_id) {
        throw denied("the credential record is not the calling client instance's, nor of a session its own transferred from");
      }
      transferred = true;
    }
    return { credential, version, hash, transferred };
  }

  function parsed<T>(text: string, schema: { safeParse(v: unknown): { success: true; data: T } | { success: false } }, what: string): T {
    if (text.length > MAX_JSON) throw invalidArgument(`the ${what} is too large`);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw invalidArgument(`the ${what} is not JSON`);
    }
    const result = schema.safeParse(value);
    if (!result.success) throw invalidArgument(`the ${what} is not a valid one (S2S draft)`);
    return result.data;
  }

  const ruled = <T>(apply: () => T): T => {
    try {
      return apply();
    } catch (error) {
      if (error instanceof WalletRecordError) throw outOfOrder(error.message);
      throw error;
    }
  };

  return {
    /** AuthorizeWalletCall's second half: the call token and its reads, for a caller Token has just checked. */
    async startCall(caller: WalletCaller, ref: { issuer: string; sessionId: string; credentialInstanceId: string; viaSessionId?: string } | undefined) {
      const holdings = await deps.grants.read("holdings", lookup.holdings(caller.uid));
      const wallet = await deps.grants.read("wallet", walletHash(deps.lookupKey, caller.uid));
      let session;
      let credential;
      let via;
      if (ref && ref.issuer) {
        allowed(ref.issuer);
        if (!ref.sessionId) throw invalidArgument("the S2S session needs its sessionId");
        session = await deps.grants.read("s2s-session", lookup.session(ref.issuer, ref.sessionId));
        if (ref.credentialInstanceId) credential = await deps.grants.read("credential", lookup.credential(ref.issuer, ref.sessionId, ref.credentialInstanceId));
        if (ref.viaSessionId) {
          if (!ref.credentialInstanceId || ref.viaSessionId === ref.sessionId) throw invalidArgument("via_session_id names the caller's own session that transferred from session_id, for one of its credential instances");
          via = await deps.grants.read("s2s-session", lookup.session(ref.issuer, ref.viaSessionId));
        }
      }
      const callClaims: WalletCallClaims = {
        uid: caller.uid,
        client_id: caller.clientId,
        jkt: caller.jkt,
        ...(ref && ref.issuer ? {
          session: {
            issuer: ref.issuer, session_id: ref.sessionId,
            ...(ref.credentialInstanceId ? { credential_instance_id: ref.credentialInstanceId } : {}),
            ...(via ? { via_session_id: ref.viaSessionId } : {}),
          },
        } : {}),
        reads: { holdings: holdings.jti, wallet: wallet.jti, ...(session ? { session: session.jti } : {}), ...(credential ? { credential: credential.jti } : {}), ...(via ? { via: via.jti } : {}) },
      };
      return {
        callToken: await callToken(callClaims),
        holdingsRead: holdings.grant,
        walletRead: wallet.grant,
        ...(session ? { sessionRead: session.grant } : {}),
        ...(credential ? { credentialRead: credential.grant } : {}),
        ...(via ? { viaSessionRead: via.grant } : {}),
      };
    },

    /** Token's allow-list, each issuer countersigned for the client with a wallet key. */
    async listIssuers(token: string) {
      user(await readCall(token));
      const key = activeKey(deps.walletKeys(), "wallet");
      const iat = seconds();
      const issuers = await Promise.all(
        deps.issuers.map(async (entry) => ({
          issuer: entry.id,
          statement: await new SignJWT({
            jwk: publicOnly(entry.encryption_key),
            jwks: { keys: entry.jwks.keys.map(publicOnly) },
            credential_configurations: entry.credential_configurations,
          })
            .setProtectedHeader({ alg: "ES256", typ: "hello-issuer+jwt", kid: key.kid })
            .setIssuer(deps.issuer)
            .setSubject(entry.id)
            .setIssuedAt(iat)
            .setExpirationTime(iat + ISSUER_STATEMENT_LIFETIME_SECONDS)
            .setJti(randomBytes(16).toString("base64url"))
            .sign(key.privateKey),
        })),
      );
      return { issuers };
    },

    /** A new S2S session of the caller's client instance, and the holdings that list it. */
    async beginSession(req: { callToken: string; issuer: string; wsk: string; holdings?: { case: "record"; value: ReadRecord } | { case: "errorToken"; value: string } | { case: undefined }; transferFrom?: string }) {
      const call = await readCall(req.callToken);
      const caller = user(call);
      allowed(req.issuer);
      let wsk: JWK;
      try {
        wsk = JSON.parse(req.wsk) as JWK;
        assertEs256PublicJwk(wsk, "the WSK");
        // A point on P-256, or node:crypto refuses it.
        createPublicKey({ key: { kty: "EC", crv: "P-256", x: wsk.x, y: wsk.y }, format: "jwk" });
      } catch {
        throw invalidArgument("wsk must be the session's public ES256 (EC P-256) JWK, as JSON");
      }
      const holdingsHashed = lookup.holdings(caller.uid);
      let holdings;
      let holdingsWrite;
      const sessionId = randomUUID();
      if (req.holdings?.case === "record") {
        const read = await stored("holdings", req.holdings.value, holdingsHashed, call.reads.holdings);
        if (read.claims.uid !== caller.uid) throw denied("the holdings are another user's");
        // A device transfer takes over a session of the same user at the same issuer: the user's holdings list it.
        if (req.transferFrom && !read.claims.sessions.some((s) => s.issuer === req.issuer && s.session_id === req.transferFrom)) {
          throw denied("a device transfer takes over one of the user's own sessions at this issuer, and the holdings list no such session");
        }
        holdings = ruled(() => holdingsWithSession(read.claims, caller.uid, req.issuer, sessionId));
        holdingsWrite = (await deps.grants.update("holdings", holdingsHashed, holdings, { version: read.version })).write;
      } else if (req.holdings?.case === "errorToken") {
        if (req.transferFrom) throw denied("a device transfer takes over one of the user's own sessions at this issuer, and the user holds none");
        const ejti = await checkAbsence(deps.storage, req.holdings.value, "holdings", holdingsHashed, call.reads.holdings);
        holdings = ruled(() => holdingsWithSession(undefined, caller.uid, req.issuer, sessionId));
        holdingsWrite = (await deps.grants.write("holdings", holdingsHashed, holdings, ejti)).write;
      } else {
        throw invalidArgument("the holdings read's answer is required: the record, or Storage's Error Token");
      }
      const session: S2sSessionRecord = {
        issuer: req.issuer,
        session_id: sessionId,
        uid: caller.uid,
        jkt: caller.jkt,
        wsk: { kty: "EC", crv: "P-256", x: wsk.x!, y: wsk.y! },
        created: seconds(),
        verifications: [],
        instances: [],
        ...(req.transferFrom ? { transfer_from: req.transferFrom } : {}),
      };
      const sessionWrite = (await deps.grants.write("s2s-session", lookup.session(req.issuer, sessionId), session)).write;
      return { sessionId, session: sessionWrite, holdings: holdingsWrite };
    },

    /** The WSK attestation of the caller's own session, for /verification/initiate. */
    async attest(req: { callToken: string; session?: ReadRecord }) {
      const call = await readCall(req.callToken);
      const { session } = await sessionOf(call, req.session);
      if (call.notice_issuer !== undefined) throw denied("only the user's own call gets an attestation");
      allowed(session.issuer);
      const key = activeKey(deps.walletKeys(), "wallet");
      const attestation = await signWskAttestation(
        {
          walletServer: deps.issuer, issuerId: session.issuer, sessionId: session.session_id, wsk: session.wsk, dpopJkt: session.jkt,
          ...(session.transfer_from !== undefined ? { transferFrom: session.transfer_from } : {}),
        },
        { privateKey: key.privateKey, kid: key.kid, alg: "ES256" },
        { now: seconds() },
      );
      return { attestation };
    },

    /** The issuer's VerificationStatus into the session record. */
    async recordStatus(req: { callToken: string; session?: ReadRecord; status: string }) {
      const call = await readCall(req.callToken);
      const { session, version } = await sessionOf(call, req.session);
      const status = parsed(req.status, verificationStatusSchema, "VerificationStatus");
      const next = ruled(() => applyStatus(session, status, seconds(), call.notice_issuer === undefined));
      if (!next) return {};
      const { write } = await deps.grants.update("s2s-session", lookup.session(session.issuer, session.session_id), next, { version });
      return { session: write };
    },

    /** A provision's instances: the session, a credential record for each, the holdings. */
    async recordInstances(req: { callToken: string; session?: ReadRecord; holdings?: ReadRecord; verificationId: string; instances: string }) {
      const call = await readCall(req.callToken);
      const caller = user(call);
      const { session, version } = await sessionOf(call, req.session);
      const holdingsHashed = lookup.holdings(caller.uid);
      const holdingsRead = await stored("holdings", req.holdings, holdingsHashed, call.reads.holdings);
      if (holdingsRead.claims.uid !== caller.uid) throw denied("the holdings are another user's");
      const instances = parsed(req.instances, credentialInstancesSchema, "credentialInstances");
      const at = seconds();
      const { session: next, added } = ruled(() => addInstances(session, req.verificationId, instances));
      const holdings = ruled(() => holdingsWithInstances(holdingsRead.claims, session.issuer, session.session_id, added.map((i) => i.credential_instance_id)));
      const sessionWrite = (await deps.grants.update("s2s-session", lookup.session(session.issuer, session.session_id), next, { version })).write;
      const credentials = await Promise.all(
        added.map(async (instance) =>
          (await deps.grants.write("credential", lookup.credential(session.issuer, session.session_id, instance.credential_instance_id), newCredential(session, instance, at))).write,
        ),
      );
      const holdingsWrite = (await deps.grants.update("holdings", holdingsHashed, holdings, { version: holdingsRead.version })).write;
      return { session: sessionWrite, credentials, holdings: holdingsWrite };
    },

    /** A credential instance's record after /credential/get, or its confirmation. */
    async updateCredential(req: {
      callToken: string;
      credential?: ReadRecord;
      change: { case: "delivered" | "metadata" | "managed" | "reported"; value: string } | { case: "confirmed" | "rejected"; value: boolean } | { case: undefined };
      viaSession?: ReadRecord;
    }) {
      const call = await readCall(req.callToken);
      const { credential, version, hash, transferred } = await ownCredential(call, req.credential, req.viaSession);
      if (transferred && req.change.case !== "managed") throw denied("a device transfer (or the /wallet page) changes another client instance's record only by its unlink");
      let next: CredentialRecord;
      if (req.change.case === "delivered") {
        const answer = parsed(req.change.value, credentialGetResponseSchema, "credential get answer");
        next = ruled(() => delivered(credential, answer, seconds()));
      } else if (req.change.case === "metadata") {
        const answer = parsed(req.change.value, credentialMetadataResponseSchema, "credential metadata answer");
        next = ruled(() => metadataRefreshed(credential, answer, seconds()));
      } else if (req.change.case === "confirmed" && req.change.value) {
        next = ruled(() => confirmed(credential, seconds()));
      } else if (req.change.case === "rejected" && req.change.value) {
        next = ruled(() => rejected(credential, seconds()));
      } else if (req.change.case === "managed") {
        const answer = parsed(req.change.value, credentialManageResponseSchema, "credential manage answer");
        if (answer.sessionId !== credential.session_id || answer.credentialInstanceId !== credential.credential_instance_id) {
          throw invalidArgument("the manage answer is for another credential instance");
        }
        if (transferred && answer.currentStatus !== "UNLINKED") throw denied("a device transfer (or the /wallet page) changes another client instance's record only by its unlink");
        next = ruled(() => statusReported(credential, answer.currentStatus, seconds()));
      } else if (req.change.case === "reported") {
        const answer = parsed(req.change.value, credentialStatusResponseSchema, "credential status answer");
        next = ruled(() => statusReported(credential, answer.currentStatus, seconds()));
      } else {
        throw invalidArgument("the change is required: the get answer delivered, the metadata answer, the manage or status answer, confirmed or rejected");
      }
      const { write } = await deps.grants.update("credential", hash, next, { version });
      return { credential: write };
    },

    /** The caller's own ended credential deleted, and its holdings without it (holdingsWithoutInstance). */
    async deleteCredential(req: { callToken: string; credential?: ReadRecord; holdings?: ReadRecord }) {
      const call = await readCall(req.callToken);
      const caller = user(call);
      const { credential, hash } = await ownCredential(call, req.credential);
      const held = await stored("holdings", req.holdings, lookup.holdings(caller.uid), call.reads.holdings);
      if (held.claims.uid !== caller.uid) throw denied("the holdings are another user's");
      const next = ruled(() => holdingsWithoutInstance(held.claims, credential));
      const { write } = await deps.grants.update("holdings", lookup.holdings(caller.uid), next, { version: held.version });
      return { credentialDelete: await deps.grants.remove("credential", hash), holdings: write };
    },

    /** Reads of every credential record the caller's holdings list. */
    async grantCredentialReads(req: { callToken: string; holdings?: ReadRecord }) {
      const call = await readCall(req.callToken);
      const caller = reader(call);
      const { claims: holdings } = await stored("holdings", req.holdings, lookup.holdings(caller.uid), call.reads.holdings);
      if (holdings.uid !== caller.uid) throw denied("the holdings are another user's");
      const reads = await Promise.all(
        holdings.sessions.flatMap((s) => (s.instances ?? []).map((id) => deps.grants.read("credential", lookup.credential(s.issuer, s.session_id, id)))),
      );
      const credentials = Object.fromEntries(reads.map((r) => [r.grant.hash, r.jti]));
      const { iss: _iss, aud: _aud, iat: _iat, exp, jti: _jti, ...rest } = call as WalletCallClaims & { exp?: number } & Record<string, unknown>;
      // The call keeps its own end: adding reads never makes it live longer.
      const left = (exp ?? 0) - seconds();
      if (left <= 0) throw outOfOrder("the wallet call is over");
      const renewed = await sign(WALLET_CALL_TOKEN, deps.keys.active("session"), { ...(rest as WalletCallClaims), reads: { ...call.reads, credentials } }, { now: deps.now(), lifetimeSeconds: left });
      return { callToken: renewed, credentialReads: reads.map((r) => r.grant) };
    },

    /** The /wallet page's view: an account session's user, who may only list. */
    async startView(uid: string, ref?: { issuer: string; sessionId: string; credentialInstanceId: string }) {
      const holdings = await deps.grants.read("holdings", lookup.holdings(uid));
      // The /wallet page's unlink names one credential: a read of its record, which UpdateCredential checks is the user's.
      let credential;
      if (ref?.issuer) {
        allowed(ref.issuer);
        if (!ref.sessionId || !ref.credentialInstanceId) throw invalidArgument("the credential to unlink needs its issuer, sessionId and credentialInstanceId");
        credential = await deps.grants.read("credential", lookup.credential(ref.issuer, ref.sessionId, ref.credentialInstanceId));
      }
      return {
        callToken: await callToken({
          uid, view: true,
          ...(credential ? { session: { issuer: ref!.issuer, session_id: ref!.sessionId, credential_instance_id: ref!.credentialInstanceId } } : {}),
          reads: { holdings: holdings.jti, ...(credential ? { credential: credential.jti } : {}) },
        }),
        holdingsRead: holdings.grant,
        ...(credential ? { credentialRead: credential.grant } : {}),
      };
    },

    /**
     * An issuer's notification (the issuer as Orchestration's mTLS peer named it): a read
     * of only that issuer's session record — never of a credential record, which only the
     * user's own DPoP-bound call reads.
     */
    async authorizeNotice(ref: { issuer: string; sessionId: string; credentialInstanceId: string } | undefined) {
      if (!ref?.issuer || !ref.sessionId) throw invalidArgument("the notification's issuer and sessionId are required");
      allowed(ref.issuer);
      const session = await deps.grants.read("s2s-session", lookup.session(ref.issuer, ref.sessionId));
      // An issuer asking the wallet server's view of one of its instances (/credential/status)
      // gets a read of that record only: its hash binds the issuer and the session, so no
      // other issuer's or session's record can be named. Reads only: every change of a
      // credential record is the user's own call (`user` in UpdateCredential).
      const credential = ref.credentialInstanceId ? await deps.grants.read("credential", lookup.credential(ref.issuer, ref.sessionId, ref.credentialInstanceId)) : undefined;
      return {
        callToken: await callToken({
          notice_issuer: ref.issuer,
          session: { issuer: ref.issuer, session_id: ref.sessionId, ...(ref.credentialInstanceId ? { credential_instance_id: ref.credentialInstanceId } : {}) },
          reads: { session: session.jti, ...(credential ? { credential: credential.jti } : {}) },
        }),
        sessionRead: session.grant,
        ...(credential ? { credentialRead: credential.grant } : {}),
      };
    },
  };
}

/** A JWK's public members only. */
function publicOnly(jwk: JWK): JWK {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, k: _k, oth: _oth, priv: _priv, ...rest } = jwk as JWK & { oth?: unknown; priv?: unknown };
  return rest;
}
