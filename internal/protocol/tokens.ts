// The internal tokens and records of the Hellō Protocol (docs/design.md §3): each is a
// compact JWS with its own `typ`, an explicit issuer and audience (the SPIFFE identity
// of the component that made it and of the one that consumes it), and a key of its
// own purpose.

import { decodeJwt } from "jose";
import { identityUri } from "./identity.js";
import { RecordKind } from "../gen/hello/common/v1/record_pb.js";
import type { RecordKindName } from "./records.js";
import type { KeyPurpose } from "./signing-keys.js";

export const TOKEN = identityUri("token");
export const STORAGE = identityUri("storage");

export interface TokenType {
  readonly typ: string;
  readonly purpose: KeyPurpose;
  readonly issuer: string;
  readonly audience: string;
  /** Longest lifetime a verifier accepts (exp - iat), or undefined for records. */
  readonly maxLifetimeSeconds: number | undefined;
}

export const SESSION_TOKEN: TokenType = {
  typ: "hello-session+jwt",
  purpose: "session",
  issuer: TOKEN,
  audience: TOKEN,
  maxLifetimeSeconds: 15 * 60,
};
export const ACCESS_TOKEN: TokenType = {
  typ: "hello-access+jwt",
  purpose: "access",
  issuer: TOKEN,
  audience: STORAGE,
  maxLifetimeSeconds: 60,
};
export const ERROR_TOKEN: TokenType = {
  typ: "hello-error+jwt",
  purpose: "error",
  issuer: STORAGE,
  audience: TOKEN,
  maxLifetimeSeconds: 60,
};

/**
 * Storage's receipt for a record it wrote or returned. It lives as long as a session
 * can (a user may spend minutes on the consent page between the wallet read and the
 * release it makes possible), and it is worth nothing outside the session whose grant
 * it answers.
 */
export const RECEIPT: TokenType = {
  typ: "hello-receipt+jwt",
  purpose: "receipt",
  issuer: STORAGE,
  audience: TOKEN,
  maxLifetimeSeconds: 15 * 60,
};

/**
 * The Wallet Client's access token (docs/wallet-server.md): minted at a DPoP-bound
 * client's login, bound to its DPoP key (cnf.jkt), and read only by Token (Orchestration
 * checks it before passing it on). Its user id never reaches an app.
 */
export const WALLET_ACCESS_TOKEN: TokenType = {
  typ: "hello-wallet-access+jwt",
  purpose: "wallet-access",
  issuer: TOKEN,
  audience: TOKEN,
  maxLifetimeSeconds: 60 * 60,
};
export interface WalletAccessClaims {
  /** The user id. */
  sub: string;
  client_id: string;
  cnf: { jkt: string };
}

/**
 * A wallet call's state (docs/wallet-server.md): who calls (a user's client instance,
 * or an issuer's notification) about which S2S session, and the jti of each read Token
 * granted the call, so that a record enters it only as Storage's answer to those reads.
 * Signed with a session key: like the Session Token, Token's own state in transit.
 */
export const WALLET_CALL_TOKEN: TokenType = {
  typ: "hello-wallet-call+jwt",
  purpose: "session",
  issuer: TOKEN,
  audience: TOKEN,
  maxLifetimeSeconds: 2 * 60,
};
export interface WalletCallClaims {
  /** A user's call: the user, the client and its instance (DPoP key thumbprint). */
  uid?: string;
  client_id?: string;
  jkt?: string;
  /** An issuer's notification: the issuer (its mTLS peer, as Orchestration named it). */
  notice_issuer?: string;
  /** The /wallet page's view, from an account session: it may only list the user's credentials. */
  view?: true;
  session?: { issuer: string; session_id: string; credential_instance_id?: string; via_session_id?: string };
  reads: { holdings?: string; wallet?: string; session?: string; credential?: string; credentials?: Record<string, string>; via?: string };
}

// What Token signs for apps (with jose, in the formats apps expect): their lifetimes and
// the userinfo answer's typ. Orchestration checks every one against these before it
// leaves (internal/components/orchestration/minted-check.ts).

export const ID_TOKEN_LIFETIME_SECONDS = 600;
/**
 * A signed userinfo answer is served for as long as the access token that fetches it
 * lives, which starts when the code (60 s) is redeemed: 60 s + 10 min.
 */
export const USERINFO_LIFETIME_SECONDS = 660;
/** The JWS typ of a signed userinfo answer: never to be taken for an ID Token. */
export const USERINFO_TYP = "userinfo+jwt";
/** How long apps may cache the JWKS: a new key must stay `next` (published, unused) longer. */
export const JWKS_MAX_AGE = 300;

function recordType(kind: RecordKindName): TokenType {
  return { typ: `hello-${kind}-record+jwt`, purpose: "record", issuer: TOKEN, audience: TOKEN, maxLifetimeSeconds: undefined };
}
export const RECORD_TYPES: Record<RecordKindName, TokenType> = {
  subject: recordType("subject"),
  release: recordType("release"),
  wallet: recordType("wallet"),
  reservation: recordType("reservation"),
  "s2s-session": recordType("s2s-session"),
  credential: recordType("credential"),
  holdings: recordType("holdings"),
};

/**
 * The wallet's deletion record (docs/transactions.md, delete): written over the Wallet
 * Record at the delete's commit point, under the wallet's hash. It has a `typ` of its
 * own so that no reader takes it for a wallet: a release that knows no deletion record
 * refuses it as a wallet that does not verify, and never logs anyone in to it.
 */
export const WALLET_DELETION_RECORD: TokenType = { ...recordType("wallet"), typ: "hello-wallet-deletion-record+jwt" };

/**
 * A recovery account's Subject Record (docs/transactions.md, "Recovery"): stored where
 * any Subject Record is (hash(iss, sub)), so the account belongs to one wallet, but with
 * a `typ` of its own, so that no login takes it for a sign-in account: a Token that
 * knows no recovery refuses it as a subject record that does not verify, and only a
 * recovery's AuthorizeUser accepts it. A recovery account alone never signs in.
 */
export const RECOVERY_SUBJECT_RECORD: TokenType = { ...recordType("subject"), typ: "hello-recovery-subject-record+jwt" };

/** A record kind as it crosses the mesh (hello.common.v1.RecordKind). */
export const RECORD_KIND: Record<RecordKindName, RecordKind> = {
  subject: RecordKind.SUBJECT,
  release: RecordKind.RELEASE,
  wallet: RecordKind.WALLET,
  reservation: RecordKind.RESERVATION,
  "s2s-session": RecordKind.S2S_SESSION,
  credential: RecordKind.CREDENTIAL,
  holdings: RecordKind.HOLDINGS,
};

export type Operation = "read" | "create" | "update" | "delete";
export const OPERATIONS: readonly Operation[] = ["read", "create", "update", "delete"];

/** The refusal for an Access Token of another operation; names `claimed` only if it is an operation. */
export function wrongOperation(claimed: unknown, needed: Operation): string {
  // The claim is the token's content: a value that is no operation is not repeated back.
  const named = (OPERATIONS as readonly unknown[]).includes(claimed) ? (claimed as Operation) : "no known operation";
  return `the access token grants ${named}, not ${needed}`;
}

/**
 * The write an Access Token claims (create, update or delete), read before it is
 * verified: only to choose which check to verify it with, which checks the op again
 * with the signature.
 */
export function writeOpOf(accessToken: string): "create" | "update" | "delete" | undefined {
  let op: unknown;
  try {
    op = decodeJwt(accessToken).op;
  } catch {
    return undefined;
  }
  return op === "create" || op === "update" || op === "delete" ? op : undefined;
}

/** Access Token: one operation on one record. No session id: Storage must not link rows. */
export interface AccessClaims {
  op: Operation;
  kind: RecordKindName;
  hash: string;
  /** SHA-256 (base64url) of the record to be written; create and update only. */
  digest?: string;
  /**
   * For a create that relies on Storage's word that the record is absent: the jti of
   * that Error Token. Storage spends it, so one Error Token serves one create, even
   * across Token replicas (Token keeps no state).
   */
  ejti?: string;
  /**
   * For an update Token binds to the version it read (a wallet's): Storage refuses the
   * update at any other, so two updates made from one read cannot both land.
   */
  version?: number;
}

/** Error Token: Storage's signed "no record" answer to one Access Token. */
export interface ErrorClaims {
  op: "read";
  kind: RecordKindName;
  hash: string;
  /** The jti of the Access Token this answers. */
  ajti: string;
}

/**
 * Receipt: Storage's signed word that it wrote, or returned, the record with this
 * digest at this hash, answering one Access Token.
 */
export interface ReceiptClaims {
  op: "read" | "create" | "update";
  kind: RecordKindName;
  hash: string;
  /** SHA-256 (base64url) of the record (the compact JWS Token signed) as written. */
  digest: string;
  version: number;
  /** The jti of the Access Token this answers. */
  ajti: string;
}

/** Subject Record: upstream iss and sub -> user id. */
export interface SubjectRecord {
  op_iss: string;
  op_sub: string;
  uid: string;
}

/** Release Record: what one app sees of one user. */
export interface ReleaseRecord {
  uid: string;
  client_id: string;
  /** The `sub` this app sees (directed identifier). */
  directed_id: string;
  /** The claim names the user consented to release to this app. */
  claims: string[];
  /**
   * Present on every release made since directed ids are reserved: its directed id
   * was reserved for this user (a reservation record written only if absent) before
   * the release was stored. A release without it predates reservations, and a login
   * that reads it reserves its id first (ReserveDirectedId).
   */
  reserved?: true;
  /**
   * The directed ids this user had at this app in wallets merged into this one
   * (docs/transactions.md, "Merge"): the app receives them as the `merged_subs` claim,
   * and should treat each as this `sub` from then on.
   */
  merged_subs?: string[];
}

/**
 * Reservation Record: a directed id given to one user of one app, for good. Written
 * only if absent, before the release that uses the id; it outlives the user's
 * deletion as a tombstone without `uid`, so the id is never handed out again.
 */
export interface ReservationRecord {
  client_id: string;
  directed_id: string;
  /** Absent in a tombstone. */
  uid?: string;
}

/** Wallet Record: the claims the user holds, each from an OP ID Token Token verified. */
export interface WalletRecord {
  uid: string;
  /** When the wallet was made (epoch seconds); absent in a wallet made before it was kept. A merge keeps the earlier wallet. */
  created?: number;
  claims: Record<string, string | boolean>;
  /** The wallet's accounts; a recovery account (`recovery`) cannot sign in, and only helps recover the wallet. */
  subjects: WalletSubject[];
  /**
   * How many recovery accounts, at distinct providers, recover the wallet: present once
   * a recovery account is linked (2 by default).
   */
  recovery?: { threshold: number };
  /**
   * The transactions done on the wallet, oldest first (docs/transactions.md), which the
   * account page shows. Absent in a wallet no transaction has changed. A release that
   * does not know it ignores it, which is safe: it only reports.
   */
  history?: HistoryEntry[];
  /**
   * Where each claim came from when the user took it from one of the wallet's accounts
   * (claim name -> issuer). A claim not listed came with the account the wallet was made
   * with. Ignored by a release that does not know it, which only reports it.
   */
  sources?: Record<string, string>;
}

/** The recovery threshold a wallet gets with its first recovery account, and the least any wallet's counts as. */
export const DEFAULT_RECOVERY_THRESHOLD = 2;

/** A wallet's recovery threshold: its own, never below the default (one recovery account alone never recovers a wallet). */
export function recoveryThreshold(wallet: Pick<WalletRecord, "recovery">): number {
  const own = wallet.recovery?.threshold;
  return typeof own === "number" && Number.isSafeInteger(own) && own > DEFAULT_RECOVERY_THRESHOLD ? own : DEFAULT_RECOVERY_THRESHOLD;
}

/**
 * Which of two wallets a merge keeps: the earlier made. A wallet without `created` was made
 * before it was kept, so before any that has it; between two alike, the smaller uid (an
 * arbitrary rule, but one both Token and Orchestration apply).
 */
export function earlierWallet<W extends Pick<WalletRecord, "uid" | "created">>(a: W, b: W): W {
  const made = (w: W) => w.created ?? 0;
  if (made(a) !== made(b)) return made(a) < made(b) ? a : b;
  return a.uid < b.uid ? a : b;
}

/**
 * The surviving wallet after a merge (docs/transactions.md, "Merge"): its own claims,
 * sources and recovery threshold (the merged wallet's threshold when it has none), every
 * account of both, and both histories in time order with the merge's entry (the provider
 * of its fresh login, at `at`) last. Token mints it; Orchestration computes it again from
 * the two wallets it read, and the two must agree.
 */
export function mergedWallet(kept: WalletRecord, merged: WalletRecord, iss: string, at: number): WalletRecord {
  const { iss: _iss, aud: _aud, iat: _iat, ...body } = kept as WalletRecord & { iss?: unknown; aud?: unknown; iat?: unknown };
  const recovery = kept.recovery ?? merged.recovery;
  const history: HistoryEntry[] = [...(kept.history ?? []), ...(merged.history ?? [])].sort((a, b) => a.at - b.at);
  history.push({ kind: "merge", at, iss });
  return { ...body, subjects: [...kept.subjects, ...merged.subjects], ...(recovery ? { recovery } : {}), history };
}

/** One account of a wallet. */
export interface WalletSubject {
  iss: string;
  sub: string;
  /** A recovery account: its Subject Record is a RECOVERY_SUBJECT_RECORD. */
  recovery?: true;
}

/** One transaction of the wallet: which, when (epoch seconds), the issuer of the provider it concerned (a release change's: the one it was confirmed with), and a release change's app. */
export interface HistoryEntry {
  kind: "link" | "unlink" | "claims" | "release" | "recovery" | "merge" | "threshold";
  at: number;
  /** A recovery's: the provider of its last round. */
  iss: string;
  /** A release change's app. */
  client_id?: string;
  /** A link of a recovery account. */
  recovery?: true;
  /** A recovery's: every provider whose recovery account proved it, in order. */
  issuers?: string[];
  /** A threshold change's: the new threshold. */
  threshold?: number;
}

/**
 * Wallet deletion record: what is left to remove of a wallet being deleted. It holds no
 * claims: only what finds the wallet's other records.
 */
export interface WalletDeletionRecord {
  uid: string;
  /** The wallet's subjects: their Subject Records are deleted after the releases. */
  subjects: Array<{ iss: string; sub: string }>;
  /**
   * The user's releases when the delete began: each is deleted, its reservation made a
   * tombstone. A release with merged_subs (a merge's) is listed once more for each of
   * them, so that every directed id reserved for the user at that app becomes a tombstone.
   */
  releases: Array<{ client_id: string; directed_id: string }>;
  /**
   * The credential wallet's records when the delete began (holdingsToDelete): each
   * credential instance (its issuer told, UNLINK with reason NO_CLIENT, then its record
   * deleted), each S2S session record, and whether a holdings record exists. Absent in a
   * deletion record minted before credential records, which removes none.
   */
  s2s_sessions?: Array<{ issuer: string; session_id: string }>;
  credentials?: Array<{ issuer: string; session_id: string; credential_instance_id: string }>;
  holdings?: boolean;
}

/** A public ES256 key as records keep it: the members that make its thumbprint, nothing else. */
export interface Es256PublicJwk {
  kty: "EC";
  crv: "P-256";
  x: string;
  y: string;
}

/**
 * S2S session record (docs/wallet-server.md): one client instance's session at one
 * issuer, keyed by hash(issuer id, sessionId). Token makes it when the client begins
 * the session, and changes it only as the issuer's answers say (a terminal status never
 * moves back).
 */
export interface S2sSessionRecord {
  issuer: string;
  session_id: string;
  uid: string;
  /** The client instance: RFC 7638 thumbprint of its DPoP key. */
  jkt: string;
  /** The session's Wallet Signing Key. */
  wsk: Es256PublicJwk;
  created: number;
  verifications: S2sVerification[];
  instances: S2sInstance[];
  /** A device transfer: the same user's session at this issuer that this one takes over (its holdings listed it). */
  transfer_from?: string;
}

export interface S2sVerification {
  verification_id: string;
  /** The issuer's VerificationStatus.status. */
  status: string;
  credential_configuration_ids: string[];
  reason_code?: string;
  updated: number;
}

export interface S2sInstance {
  credential_instance_id: string;
  credential_configuration_id: string;
  verification_id: string;
}

/**
 * Credential record: one credential instance, keyed by hash(issuer id, sessionId,
 * instance id). `credentials` is the issuer's JWE to the client's WEK, which no
 * component can open; the rest is what the draft lets the wallet server see.
 */
export interface CredentialRecord {
  issuer: string;
  session_id: string;
  credential_instance_id: string;
  credential_configuration_id: string;
  uid: string;
  /** The client instance whose session made it (its DPoP key thumbprint): only its calls change the record. */
  jkt: string;
  /** The draft's credential status: IN_PROCESS, ACTIVE, SUSPENDED_ISSUER, SUSPENDED_WALLET, UNLINKED, CANCELLED, UNKNOWN. */
  status: string;
  /** The issuer's credentialVersion, once a get delivered. */
  version?: string;
  /** The issuer's credentialMetadata (display data), once a get delivered. */
  metadata?: Record<string, unknown>;
  /** The issuer's `credentials` payload (a JWE to the WEK, origin ISSUER), once a get delivered. */
  credentials?: { jwe: string; origin: "ISSUER" };
  /** A later get's delivery (a refresh, new presentment keys), until the client confirms or refuses it. */
  pending?: { version: string; metadata?: Record<string, unknown>; credentials: { jwe: string; origin: "ISSUER" } };
  updated: number;
}

/** Holdings record: the user's S2S sessions and their instances, so that a user's credentials can be listed. Keyed by hash(user id). */
export interface HoldingsRecord {
  uid: string;
  sessions: Array<{ issuer: string; session_id: string; instances?: string[] }>;
}

export type RecordClaims = {
  subject: SubjectRecord;
  release: ReleaseRecord;
  wallet: WalletRecord;
  reservation: ReservationRecord;
  "s2s-session": S2sSessionRecord;
  credential: CredentialRecord;
  holdings: HoldingsRecord;
};
