// How the credential wallet's records change (docs/wallet-server.md): one set of pure
// rules that Token applies to mint each record, and Orchestration applies again to
// check what Token minted before it is written (as mergedWallet is for a merge). The
// rules follow the S2S draft's state machines, made monotonic: a verification's
// terminal status (APPROVED, DENIED, EXPIRED) never moves, an instance is recorded once,
// and only for a configuration its verification approved.

import type { CredentialRecord, HoldingsRecord, S2sSessionRecord, S2sVerification, WalletDeletionRecord } from "./tokens.js";

export const TERMINAL_VERIFICATION_STATUSES: ReadonlySet<string> = new Set(["APPROVED", "DENIED", "EXPIRED"]);
/** A credential instance's statuses that never move: unlinked from its device, or invalidated by the issuer. */
export const TERMINAL_CREDENTIAL_STATUSES: ReadonlySet<string> = new Set(["UNLINKED", "CANCELLED"]);
/** The statuses an issuer may report of an instance (the draft's CredentialStatus). */
const CREDENTIAL_STATUSES: ReadonlySet<string> = new Set(["ACTIVE", "SUSPENDED_ISSUER", "SUSPENDED_WALLET", "UNLINKED", "IN_PROCESS", "CANCELLED", "UNKNOWN"]);
/** How many S2S sessions one user's holdings list, and instances one verification makes: bounds on one record's size. */
export const MAX_SESSIONS = 500;
export const MAX_INSTANCES_PER_VERIFICATION = 16;

/** Why a change is refused: the words say the rule, never a value. */
export class WalletRecordError extends Error {
  override name = "WalletRecordError";
}

/** What the rules read of a VerificationStatus (already schema-checked by the caller). */
export interface StatusUpdate {
  sessionId: string;
  verificationId: string;
  status: string;
  credentialConfigurationIds?: string[];
  reasonCode?: string;
}

/** The record's own members only: a JWS's iss, aud and iat are the signature's, not the record's. */
function body<T extends object>(record: T): T {
  const { iss: _iss, aud: _aud, iat: _iat, ...rest } = record as T & { iss?: unknown; aud?: unknown; iat?: unknown };
  return rest as T;
}

/**
 * The session with the issuer's status applied: a new verification (only when `mayAdd`,
 * the user's own call), or a non-terminal one moved on. Undefined when nothing changes.
 */
export function applyStatus(session: S2sSessionRecord, update: StatusUpdate, at: number, mayAdd: boolean): S2sSessionRecord | undefined {
  if (update.sessionId !== session.session_id) throw new WalletRecordError("the status is for another session");
  const next: S2sVerification = {
    verification_id: update.verificationId,
    status: update.status,
    credential_configuration_ids: update.status === "APPROVED" ? [...(update.credentialConfigurationIds ?? [])] : [],
    ...(update.reasonCode !== undefined ? { reason_code: update.reasonCode } : {}),
    updated: at,
  };
  const index = session.verifications.findIndex((v) => v.verification_id === update.verificationId);
  const current = index === -1 ? undefined : session.verifications[index]!;
  if (!current) {
    if (!mayAdd) throw new WalletRecordError("the status names a verification this session does not have");
    return { ...body(session), verifications: [...session.verifications, next] };
  }
  if (TERMINAL_VERIFICATION_STATUSES.has(current.status)) return undefined;
  if (current.status === next.status && current.reason_code === next.reason_code && sameList(current.credential_configuration_ids, next.credential_configuration_ids)) {
    return undefined;
  }
  const verifications = [...session.verifications];
  verifications[index] = next;
  return { ...body(session), verifications };
}

/** The instances /credential/provision made for an APPROVED verification, of its approved configurations only. */
export function addInstances(
  session: S2sSessionRecord,
  verificationId: string,
  instances: ReadonlyArray<{ credentialConfigurationId: string; credentialInstanceIds: readonly string[] }>,
): { session: S2sSessionRecord; added: Array<{ credential_instance_id: string; credential_configuration_id: string }> } {
  const verification = session.verifications.find((v) => v.verification_id === verificationId);
  if (!verification || verification.status !== "APPROVED") throw new WalletRecordError("instances are recorded only for an APPROVED verification of the session");
  const added = instances.flatMap((group) => {
    if (!verification.credential_configuration_ids.includes(group.credentialConfigurationId)) {
      throw new WalletRecordError("an instance is of a configuration its verification did not approve");
    }
    return group.credentialInstanceIds.map((id) => ({ credential_instance_id: id, credential_configuration_id: group.credentialConfigurationId }));
  });
  const ids = added.map((i) => i.credential_instance_id);
  if (added.length === 0 || added.length > MAX_INSTANCES_PER_VERIFICATION || new Set(ids).size !== ids.length) {
    throw new WalletRecordError(`a provision makes 1 to ${MAX_INSTANCES_PER_VERIFICATION} distinct instances`);
  }
  const known = new Set(session.instances.map((i) => i.credential_instance_id));
  if (ids.some((id) => known.has(id))) throw new WalletRecordError("an instance is recorded already");
  return {
    session: { ...body(session), instances: [...session.instances, ...added.map((i) => ({ ...i, verification_id: verificationId }))] },
    added,
  };
}

/** The holdings with a new session (the user's first: `holdings` undefined). */
export function holdingsWithSession(holdings: HoldingsRecord | undefined, uid: string, issuer: string, sessionId: string): HoldingsRecord {
  if (holdings && holdings.uid !== uid) throw new WalletRecordError("the holdings are another user's");
  const sessions = holdings?.sessions ?? [];
  if (sessions.length >= MAX_SESSIONS) throw new WalletRecordError(`a wallet holds at most ${MAX_SESSIONS} S2S sessions`);
  return { ...(holdings ? body(holdings) : {}), uid, sessions: [...sessions, { issuer, session_id: sessionId }] };
}

/** The holdings listing a session's new instances. */
export function holdingsWithInstances(holdings: HoldingsRecord, issuer: string, sessionId: string, instanceIds: readonly string[]): HoldingsRecord {
  let found = false;
  const sessions = holdings.sessions.map((s) => {
    if (s.issuer !== issuer || s.session_id !== sessionId) return s;
    found = true;
    return { ...s, instances: [...(s.instances ?? []), ...instanceIds] };
  });
  if (!found) throw new WalletRecordError("the holdings do not list this session");
  return { ...body(holdings), sessions };
}

/**
 * The holdings without one instance of a session: the user deleted its credential. Only
 * a credential that ended (UNLINKED or CANCELLED) is deleted, so that the issuer was told
 * before the record goes.
 */
export function holdingsWithoutInstance(holdings: HoldingsRecord, credential: CredentialRecord): HoldingsRecord {
  if (!TERMINAL_CREDENTIAL_STATUSES.has(credential.status)) throw new WalletRecordError("only a credential that ended (UNLINKED or CANCELLED) is deleted: unlink it first");
  if (holdings.uid !== credential.uid) throw new WalletRecordError("the holdings are another user's");
  let found = false;
  const sessions = holdings.sessions.map((s) => {
    if (s.issuer !== credential.issuer || s.session_id !== credential.session_id || !(s.instances ?? []).includes(credential.credential_instance_id)) return s;
    found = true;
    return { ...s, instances: (s.instances ?? []).filter((id) => id !== credential.credential_instance_id) };
  });
  if (!found) throw new WalletRecordError("the holdings do not list this credential");
  return { ...body(holdings), sessions };
}

/**
 * What a wallet's delete removes of its credential holdings (absent: the user holds
 * none): every S2S session the holdings list and every credential instance of each, in
 * the holdings' order. Token lists them in the deletion record; Orchestration checks
 * that list against the holdings it read.
 */
export function holdingsToDelete(holdings: HoldingsRecord | undefined, uid: string): Pick<WalletDeletionRecord, "s2s_sessions" | "credentials" | "holdings"> {
  if (!holdings) return { s2s_sessions: [], credentials: [], holdings: false };
  if (holdings.uid !== uid) throw new WalletRecordError("the holdings are another user's");
  return {
    s2s_sessions: holdings.sessions.map((s) => ({ issuer: s.issuer, session_id: s.session_id })),
    credentials: holdings.sessions.flatMap((s) => (s.instances ?? []).map((id) => ({ issuer: s.issuer, session_id: s.session_id, credential_instance_id: id }))),
    holdings: true,
  };
}

/** A new instance's credential record: IN_PROCESS until the client confirms it. */
export function newCredential(session: S2sSessionRecord, instance: { credential_instance_id: string; credential_configuration_id: string }, at: number): CredentialRecord {
  return {
    issuer: session.issuer,
    session_id: session.session_id,
    credential_instance_id: instance.credential_instance_id,
    credential_configuration_id: instance.credential_configuration_id,
    uid: session.uid,
    jkt: session.jkt,
    status: "IN_PROCESS",
    updated: at,
  };
}

/**
 * What /credential/get delivered: the version, the display data, and the JWE to the WEK
 * (never a reference, never another origin). The first delivery is the record's; a later
 * one (a refresh, new presentment keys) is kept `pending` beside the credentials the
 * client already has, until the client confirms it (confirmed) or refuses it (rejected):
 * credentials that fail the client's checks never replace good ones.
 */
export function delivered(
  credential: CredentialRecord,
  answer: { credentialVersion: string; credentials: { jwe?: string; origin: string }; credentialMetadata?: Record<string, unknown> },
  at: number,
): CredentialRecord {
  if (answer.credentials.origin !== "ISSUER" || typeof answer.credentials.jwe !== "string") {
    throw new WalletRecordError("the credentials must be the issuer's JWE (origin ISSUER), not a reference");
  }
  const got = {
    version: answer.credentialVersion,
    ...(answer.credentialMetadata ? { metadata: answer.credentialMetadata } : {}),
    credentials: { jwe: answer.credentials.jwe, origin: "ISSUER" as const },
  };
  if (credential.credentials && credential.status !== "IN_PROCESS") return { ...body(credential), pending: got, updated: at };
  return { ...body(credential), ...got, updated: at };
}

/**
 * The client refused what the last get delivered (it failed its checks): a refresh's
 * pending credentials are dropped, the good ones stay; a first delivery's are dropped, and
 * the record is as before it (IN_PROCESS, nothing delivered), for the client to get again.
 */
export function rejected(credential: CredentialRecord, at: number): CredentialRecord {
  const current = body(credential);
  if (current.pending) {
    const { pending: _dropped, ...kept } = current;
    return { ...kept, updated: at };
  }
  if (!current.credentials || current.status !== "IN_PROCESS") throw new WalletRecordError("only delivered credentials the client has not confirmed are refused");
  const { credentials: _refused, version: _version, ...undelivered } = current;
  return { ...undelivered, updated: at };
}

/** /credential/metadata's answer: the display data refreshed (the credentials and their version stay). */
export function metadataRefreshed(credential: CredentialRecord, answer: { credentialMetadata?: Record<string, unknown> }, at: number): CredentialRecord {
  if (!credential.credentials) throw new WalletRecordError("display data is refreshed only once the credential was delivered");
  return { ...body(credential), ...(answer.credentialMetadata ? { metadata: answer.credentialMetadata } : {}), updated: at };
}

/** The client confirmed the credential (first delivered, or refreshed): IN_PROCESS becomes ACTIVE (anything else stays), dated. */
export function confirmed(credential: CredentialRecord, at: number): CredentialRecord {
  if (!credential.credentials) throw new WalletRecordError("a credential is confirmed only once it was delivered");
  // A refresh's pending delivery becomes the record's.
  const { pending, ...current } = body(credential);
  return { ...current, ...(pending ?? {}), ...(credential.status === "IN_PROCESS" ? { status: "ACTIVE" } : {}), updated: at };
}

/**
 * The issuer's status of the instance (its answer to a manage, or to /credential/status)
 * taken into the record, dated `at`, the time the wallet server last heard it. A terminal
 * status never moves, whatever a late or replayed answer says; UNKNOWN changes nothing;
 * an instance that ended keeps no ciphertext (its credentials can no longer be used, and
 * the wallet server keeps nothing it does not need).
 */
export function statusReported(credential: CredentialRecord, status: string, at: number): CredentialRecord {
  if (!CREDENTIAL_STATUSES.has(status)) throw new WalletRecordError("the status is not a credential status");
  const current = body(credential);
  if (TERMINAL_CREDENTIAL_STATUSES.has(credential.status) || status === "UNKNOWN") return { ...current, updated: at };
  if (TERMINAL_CREDENTIAL_STATUSES.has(status)) {
    const { credentials: _gone, pending: _pending, ...kept } = current;
    return { ...kept, status, updated: at };
  }
  return { ...current, status, updated: at };
}

/** Two records are the same, whatever order their keys were written in (and the JWS's own iss, aud, iat aside). */
export function sameRecord(a: object, b: object): boolean {
  return canonical(body(a)) === canonical(body(b));
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
