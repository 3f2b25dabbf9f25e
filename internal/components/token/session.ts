// The Session Token (docs/design.md §3): Token keeps no state, so a login's state travels in a
// token Token signs, and each step re-issues it with what that step proved. The steps:
//
//   started ──AuthorizeSubject──▶ subject ──CreateUser──▶ created ──CommitUser──▶ user
//                                        └──────────AuthorizeUser───────────────▶ user
//
// and at "user" the session gains grants and records (ReserveDirectedId,
// GrantReleaseRead, CreateRelease) without moving on. Each RPC reads the session at the
// one step it continues: anything else is a step out of order.

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
  /** When the login began (ms): OP ID Tokens issued before it are refused. */
  started: number;
  client_id: string;
  redirect_uri: string;
  nonce: string;
  scope: string;
  claims_request?: string;
  code_challenge: string;
  /** The app asked for prompt=login: the provider's auth_time must follow `started`. */
  prompt_login?: true;
  /** The app's max_age (seconds), if it sent one. */
  max_age?: number;
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
  /**
   * The records this session holds, by digest: Storage's receipt showed each stored,
   * answering this session's own grant (or, for a new user's, its creates).
   */
  subject_digest?: string;
  wallet_digest?: string;
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

/** A verified session at step `S`, with the token's own claims (exp is kept on re-issue). */
export type Session<S extends Step> = SessionClaims & { step: S } & Required<Pick<SessionClaims, Holds[S]>> & JWTPayload;

export interface Sessions {
  /** A new session, at step "started", for the longest a session lives. */
  start(claims: Omit<SessionClaims, "step">): Promise<string>;
  /** The session `token` at `step`: verified (signature, typ, iss, aud, expiry), and at that step. */
  read<S extends Step>(token: string, step: S): Promise<Session<S>>;
  /** `session` re-issued at `step` with `additions`, and the same expiry: a login never gains time. */
  advance<S extends Step>(session: Session<S>, step: Step, additions?: Partial<SessionClaims>): Promise<string>;
}

export function sessions(keys: OwnKeys, now: () => Date): Sessions {
  return {
    start: (claims) => sign(SESSION_TOKEN, keys.active("session"), { ...claims, step: "started" }, { now: now() }),

    async read<S extends Step>(token: string, step: S) {
      const { claims } = await verify<SessionClaims>(SESSION_TOKEN, keys.verification(), token, "session token", now());
      if (claims.step !== step) throw outOfOrder(`this step needs a session at step "${step}", not "${claims.step}"`);
      return claims as Session<S>;
    },

    advance<S extends Step>(session: Session<S>, step: Step, additions: Partial<SessionClaims> = {}) {
      // A handler that moves a session where the machine does not go is a bug in Token.
      if (!NEXT[session.step].includes(step)) throw new Error(`a session at step "${session.step}" cannot move to "${step}"`);
      // iss, aud, iat and jti are the token's, set anew by sign(); exp is kept.
      const { iss: _iss, aud: _aud, iat: _iat, jti: _jti, exp, ...rest } = { ...session, ...additions, step };
      const t = now();
      const lifetime = exp === undefined ? SESSION_TOKEN.maxLifetimeSeconds! : exp - Math.floor(t.getTime() / 1000);
      return sign(SESSION_TOKEN, keys.active("session"), rest, { lifetimeSeconds: lifetime, now: t });
    },
  };
}
