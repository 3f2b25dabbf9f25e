// Token's side of the delete (docs/transactions.md, "Delete"). A delete session (begun
// from an account session, with its own forced fresh login) presents the wallet, the
// user's release at every app Token knows and the user's credential holdings, each as
// Storage answered this session's own read. Token then mints the wallet's deletion
// record: the commit point, written over the wallet at the version read. With it
// stored, FinishDelete grants the rest, in order: each release's reservation made a
// tombstone that names no one, the release deleted, each credential, S2S session and
// holdings record, every Subject Record, and the deletion record last. Any later session that
// reads a deletion record where the wallet was (a login, say, after a crash part-way)
// presents it to FinishDelete too, and the delete finishes.

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { AccessGrant, FinishDeleteResponseSchema, RecordAnswer, ReleaseAnswer } from "../../gen/hello/token/v1/token_service_pb.js";
import type { RegisteredClient } from "../../config/component-config.js";
import { denied, invalidArgument, outOfOrder } from "../../protocol/errors.js";
import { verify } from "../../protocol/jws.js";
import { type HoldingsRecord, type RecordClaims, WALLET_DELETION_RECORD, type WalletDeletionRecord } from "../../protocol/tokens.js";
import { holdingsToDelete } from "../../protocol/wallet-records.js";
import type { OwnKeys } from "./own-keys.js";
import { type Grants, reservationRewrite } from "./grants.js";
import { type Session, type Sessions, purposeOf } from "./session.js";
import { type StorageWord, checkAbsence, checkReceipt, checkReceiptOf, checkRelease, checkWallet } from "./checks.js";

/** The keyed hashes of records, as token-service.ts computes them. */
export interface Lookup {
  subject(iss: string, sub: string): string;
  wallet(uid: string): string;
  release(uid: string, clientId: string): string;
  reservation(clientId: string, directedId: string): string;
  holdings(uid: string): string;
  s2sSession(issuer: string, sessionId: string): string;
  credential(issuer: string, sessionId: string, instanceId: string): string;
}

export interface DeleteDeps {
  readonly sessions: Sessions;
  readonly grants: Grants;
  readonly keys: OwnKeys;
  readonly storage: StorageWord;
  readonly lookup: Lookup;
  readonly clients: readonly RegisteredClient[];
  readonly now: () => Date;
}

export function deleteHandlers(deps: DeleteDeps) {
  const { sessions, grants, storage, lookup } = deps;

  /** A deletion record Token signed (its own typ: never a wallet). */
  const deletionRecord = async (record: string) =>
    (await verify<WalletDeletionRecord>(WALLET_DELETION_RECORD, deps.keys.verification(), record, "wallet deletion record", deps.now())).claims;

  return {
    /** The delete's commit point: the wallet and every release as Storage answered this session, then the deletion record. */
    async authorizeDelete(req: { sessionToken: string; walletRecord: string; walletReceipt: string; releases: readonly ReleaseAnswer[]; holdings?: RecordAnswer }) {
      const session = await sessions.readOf(req.sessionToken, "user", "delete");
      if (session.deletion_update !== undefined) throw outOfOrder("this delete has minted its deletion record already: finish it");
      const wallet = await grants.record("wallet", req.walletRecord);
      const walletHash = lookup.wallet(session.uid);
      const read = await checkReceiptOf(storage, "wallet", req.walletRecord, req.walletReceipt, walletHash, { read: session.wallet_read });
      checkWallet(wallet, session);
      const releases = await checkEveryRelease(deps, session, req.releases);
      const holdings = await checkHoldings(deps, session, req.holdings);

      const deletion: WalletDeletionRecord = { uid: session.uid, subjects: wallet.subjects, releases, ...holdingsToDelete(holdings, session.uid) };
      const write = await grants.update("wallet", walletHash, deletion, { version: read.version, type: WALLET_DELETION_RECORD });
      const sessionToken = await sessions.advance(session, "user", { deletion_update: write.jti, deletion_digest: write.digest });
      return { sessionToken, deletion: write.write };
    },

    /** The rest of a delete, from its deletion record as stored: grants in the order they are used. */
    async finishDelete(req: { sessionToken: string; deletionRecord: string; deletionReceipt: string }): Promise<MessageInitShape<typeof FinishDeleteResponseSchema>> {
      const session = await sessions.readShared(req.sessionToken, "user");
      const deletion = await deletionRecord(req.deletionRecord);
      const walletHash = lookup.wallet(session.uid);
      // The delete session's own update, or another session's read of what was stored.
      const answered = purposeOf(session) === "delete" ? { update: session.deletion_update } : { read: session.wallet_read };
      await checkReceipt(storage, "wallet", req.deletionRecord, req.deletionReceipt, walletHash, answered);
      if (deletion.uid !== session.uid) throw denied("the wallet deletion record is not this session's user's");

      const releases = await Promise.all(deletion.releases.map(async ({ client_id, directed_id }) => {
        const tombstone = await reservationRewrite(grants, lookup.reservation(client_id, directed_id), client_id, directed_id);
        return {
          clientId: client_id,
          reservationRead: tombstone.read,
          tombstoneUpdate: tombstone.update,
          tombstoneCreate: tombstone.create,
          releaseDelete: await grants.remove("release", lookup.release(session.uid, client_id)),
        };
      }));
      const credentialDeletes = await Promise.all((deletion.credentials ?? []).map((c) => grants.remove("credential", lookup.credential(c.issuer, c.session_id, c.credential_instance_id))));
      const s2sSessionDeletes = await Promise.all((deletion.s2s_sessions ?? []).map((s) => grants.remove("s2s-session", lookup.s2sSession(s.issuer, s.session_id))));
      const holdingsDelete = deletion.holdings ? await grants.remove("holdings", lookup.holdings(session.uid)) : undefined;
      const subjectDeletes: AccessGrant[] = await Promise.all(deletion.subjects.map((s) => grants.remove("subject", lookup.subject(s.iss, s.sub))));
      return { releases, credentialDeletes, s2sSessionDeletes, ...(holdingsDelete ? { holdingsDelete } : {}), subjectDeletes, walletDelete: await grants.remove("wallet", walletHash) };
    },
  };
}

/**
 * The user's release at every app in Token's registry, each answered once, as Storage
 * answered this session's read of it (a Release Record with its receipt, or an Error
 * Token): Orchestration can hide no release from a delete. Returns the releases found.
 */
async function checkEveryRelease(deps: DeleteDeps, session: Session<"user", "delete">, answers: readonly ReleaseAnswer[]) {
  const found: WalletDeletionRecord["releases"] = [];
  for (const [client_id, answer] of await checkReleaseAnswers(deps, session.uid, session.release_reads, answers)) {
    // A merge's ids at the app are reserved for this user too: each becomes a tombstone with the release's own.
    if ("release" in answer) for (const directed_id of [answer.release.directed_id, ...(answer.release.merged_subs ?? [])]) found.push({ client_id, directed_id });
  }
  return found;
}

/**
 * The user's credential holdings as Storage answered this delete session's read of them
 * (the record with its receipt, or the Error Token: none), required, so that Orchestration
 * can hide no credential from a delete. Undefined when the user holds none.
 */
async function checkHoldings(deps: DeleteDeps, session: Session<"user", "delete">, answer: RecordAnswer | undefined): Promise<HoldingsRecord | undefined> {
  if (session.holdings_read === undefined) throw outOfOrder("this delete session has no holdings read: begin the delete again");
  const hash = deps.lookup.holdings(session.uid);
  switch (answer?.answer.case) {
    case "record": {
      const holdings = await deps.grants.record("holdings", answer.answer.value.record);
      await checkReceiptOf(deps.storage, "holdings", answer.answer.value.record, answer.answer.value.receipt, hash, { read: session.holdings_read });
      if (holdings.uid !== session.uid) throw denied("the holdings are another user's");
      return holdings;
    }
    case "errorToken":
      await checkAbsence(deps.storage, answer.answer.value, "holdings", hash, session.holdings_read);
      return undefined;
    default:
      throw invalidArgument("the holdings read's answer is required: the record, or Storage's Error Token");
  }
}

/** What Storage answered one release read: the release at its version, or "none" (the Error Token's jti, which a create may spend). */
export type ReleaseRead = { release: RecordClaims["release"]; version: number } | { ejti: string };

/**
 * User `uid`'s release at every app in Token's registry, each answered once, as Storage
 * answered the read `reads` names for it (a Release Record with its receipt, or an Error
 * Token), by app, in the registry's order.
 */
export async function checkReleaseAnswers(deps: Pick<DeleteDeps, "clients" | "grants" | "storage" | "lookup">, uid: string, reads: Record<string, string> | undefined,
  answers: readonly ReleaseAnswer[]): Promise<Map<string, ReleaseRead>> {
  const known = new Set(deps.clients.map((c) => c.client_id));
  for (const answer of answers) {
    if (!known.has(answer.clientId)) throw invalidArgument("a release answer names an app that is not registered");
  }
  const found = new Map<string, ReleaseRead>();
  for (const { client_id } of deps.clients) {
    const mine = answers.filter((a) => a.clientId === client_id);
    if (mine.length !== 1) throw invalidArgument("releases must answer the release read of every registered app, each once");
    const answer = mine[0]!.answer;
    const hash = deps.lookup.release(uid, client_id);
    const readJti = reads?.[client_id];
    if (answer.case === "release") {
      const release = await deps.grants.record("release", answer.value.record);
      const { version } = await checkReceiptOf(deps.storage, "release", answer.value.record, answer.value.receipt, hash, { read: readJti });
      checkRelease(release, { uid, client_id });
      found.set(client_id, { release, version });
    } else if (answer.case === "errorToken") {
      found.set(client_id, { ejti: await checkAbsence(deps.storage, answer.value, "release", hash, readJti) });
    } else {
      throw invalidArgument("each release answer needs the release as read, or the Error Token of its read");
    }
  }
  return found;
}
