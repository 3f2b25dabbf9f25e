// Token's side of the transactions that update the wallet (docs/transactions.md): link,
// unlink, claims and release changes. Each mints the wallet as read with its change and a history entry,
// as an update bound to the version read, for Orchestration to write (with the Subject
// Record's create or delete, in one WriteRecords).
//
// A link (docs/transactions.md, "Link a provider"): a link session
// (begun from an account session) makes its forced fresh login at the account to link;
// AuthorizeSubject verifies it and grants reads of that subject and of the user's
// wallet. LinkSubject then needs Storage's word that no wallet holds the subject (an
// Error Token answering this session's read, which the new Subject Record's create
// spends) and the wallet as stored: a subject of another wallet is never moved here,
// and one Error Token links once. It mints the Subject Record for the session's user and
// the wallet with the subject added and a history entry, bound to the version read, for
// Orchestration to write together.

import { DEFAULT_RECOVERY_THRESHOLD, type HistoryEntry, RECOVERY_SUBJECT_RECORD, type RecordClaims } from "../../protocol/tokens.js";
import { denied, invalidArgument } from "../../protocol/errors.js";
import { takeClaims } from "../../protocol/claims.js";
import { type Grants, reservationRewrite } from "./grants.js";
import type { Sessions } from "./session.js";
import { type StorageWord, checkAbsence, checkReceiptOf, checkRelease, checkWallet } from "./checks.js";
import type { ReadRecord } from "../../gen/hello/token/v1/token_service_pb.js";
import type { Lookup } from "./delete.js";

export interface WalletUpdateDeps {
  readonly sessions: Sessions;
  readonly grants: Grants;
  readonly storage: StorageWord;
  readonly lookup: Lookup;
  readonly now: () => Date;
}

/** A record's own claims, without those of the JWS it came in (iss, aud, iat), to be signed again changed. */
export function recordBody<T extends object>(record: T): Omit<T, "iss" | "aud" | "iat"> {
  const { iss: _iss, aud: _aud, iat: _iat, ...body } = record as T & { iss?: unknown; aud?: unknown; iat?: unknown };
  return body;
}

/** The session's user's wallet as this session read it (`read`: the read's grant): its claims, hash and stored version. */
export async function storedWallet(deps: WalletUpdateDeps, uid: string, read: string | undefined, record: string, receipt: string) {
  const wallet = await deps.grants.record("wallet", record);
  const hash = deps.lookup.wallet(uid);
  const { version } = await checkReceiptOf(deps.storage, "wallet", record, receipt, hash, { read });
  checkWallet(wallet, { uid });
  return { wallet, hash, version };
}

/** `wallet` with `change` made and a history entry of `kind` (now) added, as an update bound to `version`. */
export function rewrite(deps: WalletUpdateDeps, wallet: RecordClaims["wallet"], hash: string, version: number, change: Partial<RecordClaims["wallet"]>, entry: Omit<HistoryEntry, "at">) {
  const at = Math.floor(deps.now().getTime() / 1000);
  const history = [...(wallet.history ?? []), { ...entry, at } as HistoryEntry];
  return deps.grants.update("wallet", hash, { ...recordBody(wallet), ...change, history }, { version });
}

export function walletUpdates(deps: WalletUpdateDeps) {
  const { sessions, grants, storage, lookup } = deps;
  const stored = (uid: string, read: string | undefined, record: string, receipt: string) => storedWallet(deps, uid, read, record, receipt);
  const rewritten = (wallet: RecordClaims["wallet"], hash: string, version: number, change: Partial<RecordClaims["wallet"]>, entry: Omit<HistoryEntry, "at">) =>
    rewrite(deps, wallet, hash, version, change, entry);

  return {
    async linkSubject(req: { sessionToken: string; errorToken: string; walletRecord: string; walletReceipt: string }) {
      const session = await sessions.readOf(req.sessionToken, "subject", "link");
      const uid = session.uid;
      if (uid === undefined || session.wallet_read === undefined) throw denied("the link session names no user");
      const ejti = await checkAbsence(storage, req.errorToken, "subject", session.subject_hash, session.subject_read);
      const { wallet, hash, version } = await stored(uid, session.wallet_read, req.walletRecord, req.walletReceipt);
      const linked = { iss: session.provider_iss, sub: session.op_sub };
      if (wallet.subjects.some((s) => s.iss === linked.iss && s.sub === linked.sub)) throw denied("the account is listed in this wallet already");

      // A recovery account: marked in the wallet, which gets its recovery threshold, and a Subject Record of its own type, which no login takes.
      const forRecovery = session.link_recovery === true;
      const change = forRecovery
        ? { subjects: [...wallet.subjects, { ...linked, recovery: true as const }], recovery: wallet.recovery ?? { threshold: DEFAULT_RECOVERY_THRESHOLD } }
        : { subjects: [...wallet.subjects, linked] };
      const walletWrite = await rewritten(wallet, hash, version, change, { kind: "link", iss: linked.iss, ...(forRecovery ? { recovery: true as const } : {}) });
      const subject = await grants.write("subject", session.subject_hash, { op_iss: linked.iss, op_sub: linked.sub, uid }, ejti, forRecovery ? RECOVERY_SUBJECT_RECORD : undefined);
      return { wallet: walletWrite.write, subject: subject.write };
    },

    /** An unlink: the wallet without the account (not the one signed in with, nor its last), and its Subject Record's delete. */
    async unlinkSubject(req: { sessionToken: string; walletRecord: string; walletReceipt: string }) {
      const session = await sessions.readOf(req.sessionToken, "user", "unlink");
      const target = session.unlink;
      if (target === undefined) throw denied("the unlink session names no account to unlink");
      const { wallet, hash, version } = await stored(session.uid, session.wallet_read, req.walletRecord, req.walletReceipt);
      const kept = wallet.subjects.filter((s) => !(s.iss === target.iss && s.sub === target.sub));
      if (kept.length === wallet.subjects.length) throw denied("the account to unlink is not one of this wallet's");
      if (target.iss === session.provider_iss && target.sub === session.op_sub) {
        throw denied("an account cannot unlink itself: confirm with another account of the wallet");
      }
      if (kept.length === 0) throw denied("a wallet's last account cannot be unlinked: delete the wallet instead");
      // The confirming account is a sign-in account (AuthorizeUser refuses a recovery account) and stays: a wallet keeps one to sign in with.

      const walletWrite = await rewritten(wallet, hash, version, { subjects: kept }, { kind: "unlink", iss: target.iss });
      return { wallet: walletWrite.write, subjectDelete: await grants.remove("subject", lookup.subject(target.iss, target.sub)) };
    },

    /**
     * A new recovery threshold: at most the number of distinct providers of the wallet's
     * recovery accounts (a threshold no recovery could reach is refused), with a history entry.
     */
    async setRecoveryThreshold(req: { sessionToken: string; walletRecord: string; walletReceipt: string }) {
      const session = await sessions.readOf(req.sessionToken, "user", "threshold");
      const threshold = session.threshold;
      if (threshold === undefined) throw denied("the threshold session names no threshold");
      const { wallet, hash, version } = await stored(session.uid, session.wallet_read, req.walletRecord, req.walletReceipt);
      const providers = new Set(wallet.subjects.filter((s) => s.recovery).map((s) => s.iss)).size;
      if (threshold > providers) {
        throw denied(`a threshold of ${threshold} needs recovery accounts at ${threshold} distinct providers, and this wallet has them at ${providers}: link more first`);
      }
      return { wallet: (await rewritten(wallet, hash, version, { recovery: { threshold } }, { kind: "threshold", iss: session.provider_iss, threshold })).write };
    },

    /** Claims taken from the claims session's own fresh login, as Token verified its OP ID Token; each one's source recorded. */
    async updateClaims(req: { sessionToken: string; walletRecord: string; walletReceipt: string; claims: readonly string[] }) {
      const session = await sessions.readOf(req.sessionToken, "user", "claims");
      if (req.claims.length === 0) throw invalidArgument("claims must name at least one claim to take");
      const { wallet, hash, version } = await stored(session.uid, session.wallet_read, req.walletRecord, req.walletReceipt);
      const taken = takeClaims(wallet.claims, session.op_claims ?? {}, req.claims);
      if ("refused" in taken) throw denied(taken.refused);

      const iss = session.provider_iss;
      const sources = { ...wallet.sources, ...Object.fromEntries(taken.taken.map((name) => [name, iss])) };
      return { wallet: (await rewritten(wallet, hash, version, { claims: taken.claims, sources }, { kind: "claims", iss })).write };
    },

    /**
     * A release change: claims withdrawn from the release at the session's app (the same
     * directed id), or, forgetting, the release deleted and its directed id's reservation
     * made a tombstone. The wallet gets the history entry.
     */
    async changeRelease(req: { sessionToken: string; walletRecord: string; walletReceipt: string; release?: ReadRecord | undefined; keepClaims: readonly string[]; forget: boolean }) {
      const session = await sessions.readOf(req.sessionToken, "user", "release");
      const clientId = session.client_id;
      if (clientId === undefined) throw denied("the release session names no app");
      if (!req.release) throw invalidArgument("release is required: the release at the app, as this session read it");
      const { wallet, hash, version } = await stored(session.uid, session.wallet_read, req.walletRecord, req.walletReceipt);
      const releaseHash = lookup.release(session.uid, clientId);
      const release = await grants.record("release", req.release.record);
      const releaseRead = await checkReceiptOf(storage, "release", req.release.record, req.release.receipt, releaseHash, { read: session.release_reads?.[clientId] });
      checkRelease(release, { uid: session.uid, client_id: clientId });

      const walletWrite = (await rewritten(wallet, hash, version, {}, { kind: "release", iss: session.provider_iss, client_id: clientId })).write;
      if (req.forget) {
        /** The reservation of `directedId` at the app made a tombstone. */
        const tombstoneOf = (directedId: string) => reservationRewrite(grants, lookup.reservation(clientId, directedId), clientId, directedId);
        const own = await tombstoneOf(release.directed_id);
        return {
          wallet: walletWrite,
          releaseDelete: await grants.remove("release", releaseHash),
          reservationRead: own.read,
          tombstoneUpdate: own.update,
          tombstoneCreate: own.create,
          // A merge's ids at this app are this user's there too: forgotten with it.
          mergedSubTombstones: await Promise.all((release.merged_subs ?? []).map(tombstoneOf)),
        };
      }
      const keep = [...new Set(req.keepClaims)];
      if (keep.some((name) => !release.claims.includes(name))) throw denied("keep_claims names a claim the app's release does not list");
      if (keep.length === release.claims.length) throw invalidArgument("keep_claims must withdraw at least one of the release's claims (or forget)");
      const releaseWrite = await grants.update("release", releaseHash, { ...recordBody(release), claims: release.claims.filter((name) => keep.includes(name)) }, { version: releaseRead.version });
      return { wallet: walletWrite, release: releaseWrite.write };
    },
  };
}
