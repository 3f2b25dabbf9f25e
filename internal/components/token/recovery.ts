// Token's side of a recovery (docs/transactions.md, "Recovery"). The user has lost the
// account they sign in with; the wallet's recovery accounts, each linked as one (a
// Subject Record of its own type, which no login takes), prove it instead: one forced
// fresh login per round, each with its own nonce and start time, at a provider no
// earlier round used, every account of one and the same wallet, until the wallet's
// threshold of distinct providers is reached. Token counts the providers itself, from
// the rounds it verified; Orchestration only carries the session from round to round.
//
//   BeginRecovery -> AuthorizeSubject -> R subject -> AuthorizeUser (a recovery account's
//   record only) -> R wallet -> ProveRecovery: more needed -> NextRecoveryLogin -> ...
//                                              threshold  -> W wallet (history entry)
//   -> CompleteRecovery: the recovered session, which BeginTransaction takes for a link.

import { randomBytes } from "node:crypto";
import type { AllowedProvider } from "../../config/component-config.js";
import { denied, outOfOrder } from "../../protocol/errors.js";
import { recoveryThreshold } from "../../protocol/tokens.js";
import { checkHeld, checkProvider, checkReceiptOf } from "./checks.js";
import type { AccessGrant } from "../../gen/hello/token/v1/token_service_pb.js";
import type { Purpose, Session } from "./session.js";
import { type WalletUpdateDeps, rewrite, storedWallet } from "./wallet-updates.js";

/** The reads an account session's user `uid` is granted (token-service.ts): the wallet, and the user's release at each app. */
export type AccountReads = (uid: string) => Promise<{ walletRead: { jti: string; grant: AccessGrant }; releaseReads: Array<{ clientId: string; jti: string; grant: AccessGrant }> }>;

export interface RecoveryDeps extends WalletUpdateDeps {
  readonly providers: readonly AllowedProvider[];
  readonly accountReads: AccountReads;
}

export function recoveryHandlers(deps: RecoveryDeps) {
  const { sessions, storage, lookup } = deps;

  /** A recovery session at step "user" whose threshold is not reached yet. */
  async function openRound(token: string): Promise<Session<"user", Purpose>> {
    const session = await sessions.readOf(token, "user", "recovery");
    if (session.recovery_done) throw outOfOrder("this recovery is complete already");
    if (session.recovery_update !== undefined) throw outOfOrder("this recovery has reached its threshold: complete it");
    return session;
  }

  return {
    /** A round's wallet: the round's account must be one of its recovery accounts, at a provider no earlier round proved. */
    async proveRecovery(req: { sessionToken: string; walletRecord: string; walletReceipt: string }) {
      const session = await openRound(req.sessionToken);
      const recovered = session.recovered ?? [];
      const iss = session.provider_iss;
      if (recovered.includes(iss)) throw denied("this provider proved this recovery already: each round is at another provider (two accounts at one provider count once)");
      const { wallet, hash, version } = await storedWallet(deps, session.uid, session.wallet_read, req.walletRecord, req.walletReceipt);
      if (!wallet.subjects.some((s) => s.iss === iss && s.sub === session.op_sub && s.recovery === true)) {
        throw denied("the wallet does not list the account signed in with as one of its recovery accounts");
      }
      const threshold = recoveryThreshold(wallet);
      const proven = [...recovered, iss];
      if (proven.length < threshold) {
        const sessionToken = await sessions.advance(session, "user", { recovered: proven });
        return { sessionToken, needed: threshold - proven.length };
      }
      const write = await rewrite(deps, wallet, hash, version, {}, { kind: "recovery", iss, issuers: proven });
      const sessionToken = await sessions.advance(session, "user", {
        recovered: proven, recovery_update: write.jti, recovery_digest: write.digest,
      });
      return { sessionToken, needed: 0, wallet: write.write };
    },

    /**
     * The next round, at another provider: the same session (its lifetime runs from
     * BeginRecovery), back at "started" with a nonce and a start time of its own, and
     * nothing of the last round's login kept but the user it proved.
     */
    async nextRecoveryLogin(req: { sessionToken: string; providerId: string }) {
      const session = await openRound(req.sessionToken);
      const recovered = session.recovered ?? [];
      if (!recovered.includes(session.provider_iss)) throw outOfOrder("this round is not proven yet: ProveRecovery comes first");
      const provider = checkProvider(deps.providers, req.providerId);
      if (recovered.includes(provider.issuer)) throw denied("this provider proved this recovery already: the next round is at another provider");
      const upstreamNonce = randomBytes(16).toString("base64url");
      const sessionToken = await sessions.advance(session, "started", {
        provider: provider.id,
        provider_iss: provider.issuer,
        upstream_nonce: upstreamNonce,
        started: deps.now().getTime(),
        op_sub: undefined, op_claims: undefined, auth_time: undefined,
        subject_hash: undefined, subject_read: undefined, subject_digest: undefined, wallet_read: undefined,
      });
      return { sessionToken, upstreamNonce, providerIssuer: provider.issuer };
    },

    /** The recovered wallet as stored (the receipt of the update ProveRecovery granted): the user's reads, as an account session's. */
    async completeRecovery(req: { sessionToken: string; walletRecord: string; walletReceipt: string }) {
      const session = await sessions.readOf(req.sessionToken, "user", "recovery");
      if (session.recovery_done) throw outOfOrder("this recovery is complete already");
      if (session.recovery_update === undefined) throw outOfOrder("this recovery has not reached its threshold");
      checkHeld("wallet", req.walletRecord, session.recovery_digest);
      await checkReceiptOf(storage, "wallet", req.walletRecord, req.walletReceipt, lookup.wallet(session.uid), { update: session.recovery_update });

      const { walletRead, releaseReads } = await deps.accountReads(session.uid);
      const sessionToken = await sessions.advance(session, "user", {
        recovery_done: true,
        wallet_read: walletRead.jti,
        release_reads: Object.fromEntries(releaseReads.map((r) => [r.clientId, r.jti])),
      });
      return { sessionToken, walletRead: walletRead.grant, accountReleaseReads: releaseReads.map((r) => r.grant) };
    },
  };
}
