// Token's side of a merge (docs/transactions.md, "Merge"). A merge session is begun from
// an account session (the user proved the account page's wallet with a forced fresh
// login) and makes its own forced fresh login at an account of another wallet: the user
// holds both. AuthorizeMerge takes that account's Subject Record as stored and grants
// reads of both wallets and of both users' release at every app; MergeWallets takes them
// all as Storage answered and mints the merge into the earlier wallet, for Orchestration
// to write in one WriteRecords. Apps keep the `sub` they knew: a release moves with its
// directed id, and where both users had one at an app, the surviving release lists the
// other's directed id in `merged_subs`. Reservations move to the surviving user here and
// nowhere else.

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { MergeWalletsResponseSchema, ReleaseAnswer, ReadRecord } from "../../gen/hello/token/v1/token_service_pb.js";
import { denied, invalidArgument, outOfOrder } from "../../protocol/errors.js";
import { RECOVERY_SUBJECT_RECORD, type RecordClaims, earlierWallet, mergedWallet } from "../../protocol/tokens.js";
import { checkAccountRole, checkReceipt, checkSubject } from "./checks.js";
import { type ReleaseRead, checkReleaseAnswers } from "./delete.js";
import { type WalletUpdateDeps, recordBody, storedWallet } from "./wallet-updates.js";
import type { AccountReads } from "./recovery.js";
import { reservationRewrite } from "./grants.js";
import type { RegisteredClient } from "../../config/component-config.js";

export interface MergeDeps extends WalletUpdateDeps {
  readonly clients: readonly RegisteredClient[];
  readonly accountReads: AccountReads;
}

/** The most records one merge writes: WriteRecords takes 64 writes at most, and a merge is one. */
export const MERGE_MAX_WRITES = 64;

export function mergeHandlers(deps: MergeDeps) {
  const { sessions, grants, storage, lookup } = deps;

  return {
    /** The other wallet's account, as stored: a sign-in account of another wallet; then reads of both users' records. */
    async authorizeMerge(req: { sessionToken: string; subjectRecord: string; subjectReceipt: string }) {
      const session = await sessions.readOf(req.sessionToken, "subject", "merge");
      if (session.uid === undefined) throw denied("the merge session names no user");
      const { subject, recovery } = await grants.subject(req.subjectRecord);
      const digest = await checkReceipt(storage, "subject", req.subjectRecord, req.subjectReceipt, session.subject_hash, { read: session.subject_read });
      checkSubject(subject, session);
      checkAccountRole(recovery, session);
      if (subject.uid === session.uid) throw denied("the account signed in with is this wallet's already: there is nothing to merge");

      const mine = await deps.accountReads(session.uid);
      const other = await deps.accountReads(subject.uid);
      const sessionToken = await sessions.advance(session, "user", {
        subject_digest: digest,
        wallet_read: mine.walletRead.jti,
        release_reads: Object.fromEntries(mine.releaseReads.map((r) => [r.clientId, r.jti])),
        merge_uid: subject.uid,
        merge_wallet_read: other.walletRead.jti,
        merge_release_reads: Object.fromEntries(other.releaseReads.map((r) => [r.clientId, r.jti])),
      });
      return {
        sessionToken,
        walletRead: mine.walletRead.grant, releaseReads: mine.releaseReads.map((r) => r.grant),
        otherWalletRead: other.walletRead.grant, otherReleaseReads: other.releaseReads.map((r) => r.grant),
      };
    },

    /** Both wallets and both users' releases, as this session read them: the merge into the earlier wallet. */
    async mergeWallets(req: { sessionToken: string; wallet?: ReadRecord | undefined; otherWallet?: ReadRecord | undefined; releases: readonly ReleaseAnswer[]; otherReleases: readonly ReleaseAnswer[] }):
      Promise<MessageInitShape<typeof MergeWalletsResponseSchema>> {
      const session = await sessions.readOf(req.sessionToken, "user", "merge");
      if (session.merge_uid === undefined) throw outOfOrder("this merge has not authorized the other wallet yet: AuthorizeMerge comes first");
      if (!req.wallet || !req.otherWallet) throw invalidArgument("wallet and other_wallet are required: each wallet as this session read it");
      const mine = await storedWallet(deps, session.uid, session.wallet_read, req.wallet.record, req.wallet.receipt);
      const theirs = await storedWallet(deps, session.merge_uid, session.merge_wallet_read, req.otherWallet.record, req.otherWallet.receipt);
      if (!theirs.wallet.subjects.some((s) => s.iss === session.provider_iss && s.sub === session.op_sub && !s.recovery)) {
        throw denied("the other wallet does not list the account signed in with as one it signs in with");
      }
      const myReleases = await checkReleaseAnswers(deps, session.uid, session.release_reads, req.releases);
      const theirReleases = await checkReleaseAnswers(deps, session.merge_uid, session.merge_release_reads, req.otherReleases);

      const survivorIsOther = earlierWallet(mine.wallet, theirs.wallet) === theirs.wallet;
      const [kept, merged] = survivorIsOther ? [theirs, mine] : [mine, theirs];
      const [keptReleases, mergedReleases] = survivorIsOther ? [theirReleases, myReleases] : [myReleases, theirReleases];
      const uid = kept.wallet.uid;

      const moving = [...mergedReleases.values()].flatMap((r) => ("release" in r ? [r.release] : []));
      const writes = 2 + merged.wallet.subjects.length + moving.reduce((n, r) => n + 3 + (r.merged_subs?.length ?? 0), 0);
      if (writes > MERGE_MAX_WRITES) throw denied(`this merge would write ${writes} records, more than the ${MERGE_MAX_WRITES} one WriteRecords takes`);

      const wallet = await grants.update("wallet", kept.hash, mergedWallet(kept.wallet, merged.wallet, session.provider_iss, Math.floor(deps.now().getTime() / 1000)), { version: kept.version });
      const subjects = await Promise.all(merged.wallet.subjects.map(async (s) => {
        const hash = lookup.subject(s.iss, s.sub);
        const update = await grants.update("subject", hash, { op_iss: s.iss, op_sub: s.sub, uid }, s.recovery ? { type: RECOVERY_SUBJECT_RECORD } : {});
        return { read: (await grants.read("subject", hash)).grant, update: update.write };
      }));
      const releases = [];
      for (const [clientId, read] of mergedReleases) {
        if (!("release" in read)) continue;
        releases.push(await moveRelease(deps, uid, merged.wallet.uid, clientId, read.release, keptReleases.get(clientId)!));
      }
      return { wallet: wallet.write, mergedWalletDelete: await grants.remove("wallet", merged.hash), subjects, releases, survivorIsOther };
    },
  };
}

/** One release of the merged user, at `clientId`, moved to user `uid`: its reservation, then the release, then the merged one's delete. */
async function moveRelease(deps: MergeDeps, uid: string, mergedUid: string, clientId: string, release: RecordClaims["release"], kept: ReleaseRead) {
  const { grants, lookup } = deps;
  /** The reservation of `directedId` at this app, naming the surviving user. */
  const reservationMove = (directedId: string) => reservationRewrite(grants, lookup.reservation(clientId, directedId), clientId, directedId, uid);
  const own = await reservationMove(release.directed_id);
  const hash = lookup.release(uid, clientId);
  const moved = "release" in kept
    ? { releaseUpdate: (await grants.update("release", hash, {
        ...recordBody(kept.release),
        merged_subs: [...(kept.release.merged_subs ?? []), release.directed_id, ...(release.merged_subs ?? [])],
      }, { version: kept.version })).write }
    : { releaseCreate: (await grants.write("release", hash, { ...recordBody(release), uid, reserved: true }, kept.ejti)).write };
  return {
    clientId,
    reservationRead: own.read,
    reservationUpdate: own.update,
    reservationCreate: own.create,
    ...moved,
    mergedReleaseDelete: await grants.remove("release", lookup.release(mergedUid, clientId)),
    // An earlier merge's ids travel with the release: their reservations move with it.
    mergedSubReservations: await Promise.all((release.merged_subs ?? []).map(reservationMove)),
  };
}
