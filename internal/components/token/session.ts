// The Session Token (docs/design.md §3): Token keeps no state, so a login's state travels in a
// token Token signs, and each step re-issues it with what that step proved. The steps:
//
//   started ──AuthorizeSubject──▶ subject ──CreateUser──▶ created ──CommitUser──▶ user
//                                        └──────────AuthorizeUser───────────────▶ user
//
// and at "user" the session gains grants and records (ReserveDirectedId,
// GrantReleaseRead, CreateRelease) without moving on. Each RPC reads the session at the
// one step it continues: anything else is a step out of order.
//
// A session has a purpose: a login (an app's; the default, and all a session without
// the claim can be), an account session (docs/transactions.md: the user signs in to
// manage the wallet, with no app), or a transaction's (begun from an account session:
// "delete", "link", "unlink", "claims", "release", "merge"), or a recovery's (begun with no
// account session, one round per recovery account: user -> started again). Each goes started -> subject -> user through the steps they share
// (AuthorizeSubject, AuthorizeUser); every other step reads with `read`, which takes
// one purpose only, logins by default, so an account session never makes a user or
// answers an app, and a login never deletes a wallet.

import type { JWTPayload } from "jose";
import { sign, verify } from "../../protocol/jws.js";
import { outOfOrder } from "../../protocol/errors.js";
import { SESSION_TOKEN } from "../../protocol/tokens.js";
import type { WalletClaims } from "../../protocol/claims.js";
import type { OwnKeys } from "./own-keys.js";

/** What a Session Token carries; each step adds to it (docs/design.md §3). */
export interface SessionClaims {
  sid: string;
  step: "started" | "subject" | "created" | "user";
  /** Absent: a login. */
  purpose?: "account" | "delete" | "link" | "unlink" | "claims" | "release" | "recovery" | "merge" | "threshold";
  /** A threshold session's: the recovery threshold to set. */
  threshold?: number;
  /** A merge session's (after AuthorizeMerge): the other wallet's user, and this session's reads of that user's wallet and release at each app. */
  merge_uid?: string;
  merge_wallet_read?: string;
  merge_release_reads?: Record<string, string>;
  /** A link session's: the account is linked as a recovery account. */
  link_recovery?: true;
  /**
   * A recovery session's (docs/transactions.md, "Recovery"): the providers (issuers)
   * whose recovery accounts of the wallet proved it so far, one per round. The
   * threshold is read from each round's wallet, as Storage's receipt shows it stored.
   */
  recovered?: string[];
  /** A recovery at its threshold: the wallet update's grant jti and the record's digest. */
  recovery_update?: string;
  recovery_digest?: string;
  /** A recovery whose wallet update is stored: the user's way back in (BeginTransaction takes it for a link). */
  recovery_done?: true;
  /** An unlink session's account to unlink. */
  unlink?: { iss: string; sub: string };
  /** When the login began (ms): OP ID Tokens issued before it are refused. */
  started: number;
  // A login's app and its request; an account session has none, and a release change only its app.
  client_id?: string;
  redirect_uri?: string;
  nonce?: string;
  scope?: string;
  claims_request?: string;
  code_challenge?: string;
  /** The app asked for prompt=login: the provider's auth_time must follow `started`. */
  prompt_login?: true;
  /** The app's max_age (seconds), if it sent one. */
  max_age?: number;
  /** A DPoP-bound client's (RFC 9449 §10): its DPoP key, which the login's wallet access token is bound to. */
  dpop_jkt?: string;
  provider: string;
  provider_iss: string;
  upstream_nonce: string;
  // after AuthorizeSubject
  op_sub?: string;
  op_claims?: WalletClaims;
  /** The provider's auth_time (epoch seconds), copied into the app's ID Token. */
  auth_time?: number;
  subject_hash?: string;
  /** The jti of each grant this session was given and may see answered. */
  subject_read?: string;
  // after CreateUser (step "created": the writes are not proven yet)
  wallet_hash?: string;
  wallet_create?: string;
  subject_create?: string;
  // after CommitUser / AuthorizeUser
  uid?: string;
  wallet_read?: string;
  release_read?: string;
  release_create?: string;
  /** A prompt=consent that changed the release: its update grant's jti. */
  release_update?: string;
  /** An account or transaction session's read of the user's release at each registered app, by client_id. */
  release_reads?: Record<string, string>;
  /** A delete session's read of the user's credential holdings (AuthorizeDelete takes its answer). */
  holdings_read?: string;
  /** A delete session's update of the wallet to its deletion record: the grant's jti and the record's digest. */
  deletion_update?: string;
  deletion_digest?: string;
  /**
   * The records this session holds, by digest: Storage's receipt showed each stored,
   * answering this session's own grant (or, for a new user's, its creates).
   */
  subject_digest?: string;
  wallet_digest?: string;
  /** The version the session's wallet is stored at, as its create or read receipt said. */
  wallet_version?: number;
  release_digest?: string;
}

export type Step = SessionClaims["step"];

/** Where a step may go next; "user" stays "user" as it gains grants and records. */
const NEXT: Readonly<Record<Step, readonly Step[]>> = {
  started: ["subject"],
  subject: ["created", "user"],
  created: ["user"],
  user: ["user"],
};

// What a session signed at each step holds for certain, so handlers need not guess.
type AtSubject = "op_sub" | "subject_hash" | "subject_read";
type Holds = {
  started: never;
  subject: AtSubject;
  created: AtSubject | "uid" | "wallet_hash" | "wallet_create" | "wallet_digest" | "subject_create" | "subject_digest";
  user: AtSubject | "uid" | "subject_digest";
};

export type Purpose = "login" | "account" | "delete" | "link" | "unlink" | "claims" | "release" | "recovery" | "merge" | "threshold";
/** Every purpose Token signs; a session claiming another is none of Token's. */
const PURPOSES: readonly Purpose[] = ["login", "account", "delete", "link", "unlink", "claims", "release", "recovery", "merge", "threshold"];
/** What every login holds from its start, and an account session never does. */
type LoginHolds = "client_id" | "redirect_uri" | "nonce" | "scope" | "code_challenge";

/** A verified session at step `S`, with the token's own claims (exp is kept on re-issue). */
export type Session<S extends Step, P extends Purpose = "login"> = SessionClaims & { step: S } &
  Required<Pick<SessionClaims, Holds[S] | (P extends "login" ? LoginHolds : never)>> & JWTPayload;

export function purposeOf(session: Pick<SessionClaims, "purpose">): Purpose {
  return session.purpose ?? "login";
}

export interface Sessions {
  /** A new session, at step "started", for the longest a session lives. */
  start(claims: Omit<SessionClaims, "step">): Promise<string>;
  /** The login `token` at `step`: verified (signature, typ, iss, aud, expiry), a login's, and at that step. */
  read<S extends Step>(token: string, step: S): Promise<Session<S>>;
  /** The same for a session of `purpose`. */
  readOf<S extends Step>(token: string, step: S, purpose: Exclude<Purpose, "login">): Promise<Session<S, Purpose>>;
  /** The same for a step every purpose shares. */
  readShared<S extends Step>(token: string, step: S): Promise<Session<S, Purpose>>;
  /** `session` re-issued at `step` with `additions`, and the same expiry: a login never gains time. */
  advance<S extends Step>(session: Session<S, Purpose>, step: Step, additions?: Partial<SessionClaims>): Promise<string>;
}

/** "an account", "a login", "a delete". */
function article(purpose: Purpose): string {
  return `${/^[aeiou]/.test(purpose) ? "an" : "a"} ${purpose}`;
}

export function sessions(keys: OwnKeys, now: () => Date): Sessions {
  const readShared = async <S extends Step>(token: string, step: S) => {
    const { claims } = await verify<SessionClaims>(SESSION_TOKEN, keys.verification(), token, "session token", now());
    if (claims.step !== step) throw outOfOrder(`this step needs a session at step "${step}", not "${claims.step}"`);
    // Only these purposes were ever signed; anything else is no session of ours.
    if (claims.purpose !== undefined && ((claims.purpose as Purpose) === "login" || !PURPOSES.includes(claims.purpose))) throw outOfOrder("the session has an unknown purpose");
    return claims as Session<S, Purpose>;
  };
  return {
    start: (claims) => sign(SESSION_TOKEN, keys.active("session"), { ...claims, step: "started" }, { now: now() }),

    async read<S extends Step>(token: string, step: S) {
      const session = await readShared(token, step);
      if (purposeOf(session) !== "login") throw outOfOrder(`this step is a login's, and this is ${article(purposeOf(session))} session`);
      return session as Session<S>;
    },

    async readOf<S extends Step>(token: string, step: S, purpose: Exclude<Purpose, "login">) {
      const session = await readShared(token, step);
      if (purposeOf(session) !== purpose) throw outOfOrder(`this step is ${article(purpose)} session's, and this is ${article(purposeOf(session))} session`);
      return session;
    },

    readShared,

    advance<S extends Step>(session: Session<S, Purpose>, step: Step, additions: Partial<SessionClaims> = {}) {
      // A handler that moves a session where the machine does not go is a bug in Token.
      // A recovery alone goes back from "user" to "started": its next round's login.
      const nextRound = session.purpose === "recovery" && session.step === "user" && step === "started";
      if (!NEXT[session.step].includes(step) && !nextRound) throw new Error(`a session at step "${session.step}" cannot move to "${step}"`);
      // iss, aud, iat and jti are the token's, set anew by sign(); exp is kept.
      const { iss: _iss, aud: _aud, iat: _iat, jti: _jti, exp, ...rest } = { ...session, ...additions, step };
      const t = now();
      const lifetime = exp === undefined ? SESSION_TOKEN.maxLifetimeSeconds! : exp - Math.floor(t.getTime() / 1000);
      return sign(SESSION_TOKEN, keys.active("session"), rest, { lifetimeSeconds: lifetime, now: t });
    },
  };
}
