// Orchestration's side of the login (docs/design.md §4): it drives Token and Encryption
// through the steps and verifies everything Token returns before using it — each
// grant's kind, operation and hash (recomputed with the lookup key), the identifiers in
// every record (signature by Token's record keys, iss/sub/uid/client), a new wallet's
// claims against the OP ID Token Orchestration verified itself, the reservation of
// every directed id before a release uses it, and the ID Token and userinfo Token mints
// (minted-check.ts) before they leave. Writes of a new user go wallet first, subject
// last: the Subject Record is the commit point, so a crash leaves no user half made.
//
// Every call carries a deadline (docs/faults.md): at most RPC_TIMEOUT_MS per call, and
// no call outlives its login step — the mesh work of one front-door request (start,
// continue, consent) has STEP_BUDGET_MS in all. A component that hangs costs a login
// its step budget, never an unbounded wait, and Connect sends the deadline along
// (connect-timeout-ms, or grpc-timeout over gRPC) so Encryption and Storage give up at the same moment.

import { isDeepStrictEqual } from "node:util";
import { type CallOptions, Code, ConnectError, type Client } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import {
  type AccessGrant,
  type AuthorizeUserResponse,
  type FinishDeleteResponse,
  type MergeWalletsResponse,
  RecordAnswerSchema,
  type RecordWrite,
  type ReleaseAnswer,
  ReleaseAnswerSchema,
  type TokenService,
  type TransactionKind,
} from "../../gen/hello/token/v1/token_service_pb.js";
import type { EncryptionService } from "../../gen/hello/encryption/v1/encryption_service_pb.js";
import { RecordOperation } from "../../gen/hello/common/v1/record_pb.js";
import { typOf, verify } from "../../protocol/jws.js";
import { credentialHash, holdingsHash, releaseHash, reservationHash, s2sSessionHash, subjectHash, walletHash } from "../../protocol/lookup-key.js";
import { holdingsToDelete } from "../../protocol/wallet-records.js";
import type { VerificationKeys } from "../../protocol/signing-keys.js";
import {
  DEFAULT_RECOVERY_THRESHOLD, type HistoryEntry, type HoldingsRecord, RECORD_KIND, RECORD_TYPES, RECOVERY_SUBJECT_RECORD, type RecordClaims, type TokenType, WALLET_DELETION_RECORD,
  type WalletDeletionRecord, type WalletSubject, earlierWallet, mergedWallet, recoveryThreshold,
} from "../../protocol/tokens.js";
import type { RecordKindName } from "../../protocol/records.js";
import { type WalletClaims, releasedClaims, takeClaims, walletClaimsOf } from "../../protocol/claims.js";
import { type FreshnessDemand, LOGIN_REQUIRED, authTimeProblem } from "../../protocol/auth-time.js";
import { MINT_CLOCK_SKEW_SECONDS, ProtocolViolation, checkMinted } from "./minted-check.js";
import { type WalletKeys, checkWalletAccessToken } from "./wallet-keys.js";

export interface LoginDriverDeps {
  /** The public issuer: the `iss` every ID Token for apps must carry. */
  readonly issuer: string;
  readonly token: Client<typeof TokenService>;
  readonly encryption: Client<typeof EncryptionService>;
  readonly lookupKey: Uint8Array;
  /** Token's published keys (from Token's mesh bundle): records, ID Tokens and userinfo are checked with them. */
  readonly tokenKeys: () => VerificationKeys;
  /** Token's credential-wallet keys (wallet-keys.ts): a DPoP-bound client's wallet access token is checked with them. */
  readonly walletKeys?: WalletKeys;
  /** Overrides of RPC_TIMEOUT_MS and STEP_BUDGET_MS. */
  readonly deadlines?: { readonly rpcMs?: number; readonly stepMs?: number };
  /** The apps Orchestration serves: an account session reads the user's release at these, and no other. */
  readonly clientIds?: readonly string[];
  /**
   * Tests' seam for races (docs/transactions.md): awaited at each named point, so a test
   * can run another sign-in there, or stop the driver as a crash would. Never set in a
   * running component.
   */
  readonly pause?: (point: PausePoint) => Promise<void>;
  /**
   * Tells an issuer that one of its credential instances is gone with a deleted wallet:
   * the wallet server's own UNLINK (reason NO_CLIENT; wallet-driver.ts), which Orchestration
   * queues for its background work (s2s/wallet-work.ts). Absent where Orchestration runs
   * no wallet server.
   */
  readonly unlinkCredential?: (credential: { issuer: string; session_id: string; credential_instance_id: string }) => Promise<void>;
  /** Where an UNLINK that could not be told (or queued) is reported (it never stops the delete). */
  readonly onUnlinkFailure?: (error: unknown, credential: { issuer: string; session_id: string; credential_instance_id: string }) => void;
}

/**
 * The points a test may pause the driver at: a sign-in that has read its Subject Record;
 * a consent about to write its release; a release change about to write; a link about to write its subject; a delete about to write its deletion record
 * (its commit point), and one that has written it.
 */
export type PausePoint = "subject-read" | "release-writing" | "release-changing" | "link-writing" | "deletion-writing" | "deletion-stored" | "merge-writing";

/** The longest one mesh call of a login may take (a Token or Encryption call; Storage's inside it). */
export const RPC_TIMEOUT_MS = 5_000;
/** The longest the mesh calls of one login step (one front-door request) may take together. */
export const STEP_BUDGET_MS = 10_000;

/** One login step's deadline, handed out call by call. */
class StepDeadline {
  readonly #end: number;
  constructor(
    budgetMs: number,
    private readonly rpcMs: number,
  ) {
    this.#end = performance.now() + budgetMs;
  }

  /** Options for the next call: what is left of the step, at most one call's worth. */
  call(): CallOptions {
    const left = Math.floor(this.#end - performance.now());
    if (left <= 0) throw new ConnectError("the login step ran out of time before its next call", Code.DeadlineExceeded);
    return { timeoutMs: Math.min(this.rpcMs, left) };
  }
}

export { ProtocolViolation };

/**
 * The app asked for a recent or fresh login (max_age, prompt=login) and the provider's
 * authentication is not one: the app gets `login_required` (OIDC Core §3.1.2.6).
 */
export class LoginRequired extends Error {
  override name = "LoginRequired";
}

/**
 * The wallet the user signed in to is deleted: its delete finished before this sign-in
 * reached it, or just now, by this sign-in. The next sign-in starts a new wallet.
 */
export class WalletDeleted extends Error {
  override name = "WalletDeleted";
  constructor() {
    super("the wallet was deleted");
  }
}

/**
 * The wallet changed between this step's read of it and its write: a consent and a
 * transaction (a delete) met, and this one came second. Nothing of it was written; doing
 * it again reads the wallet anew.
 */
export class WalletChanged extends Error {
  override name = "WalletChanged";
  constructor() {
    super("the wallet changed while this step was under way");
  }
}

/** The account to link is linked already: to this wallet (`mine`), or to another one, which only a merge joins. */
export class AlreadyLinked extends Error {
  override name = "AlreadyLinked";
  constructor(readonly mine: boolean) {
    super(mine ? "the account is linked to this wallet already" : "the account is linked to another wallet");
  }
}

/** A release change for an app the user has no release at. */
export class NoRelease extends Error {
  override name = "NoRelease";
  constructor() {
    super("the user has no release at this app");
  }
}

/** An unlink that cannot be: the account is not the wallet's, it is the one signed in with, or it is the wallet's last. */
export class UnlinkRefused extends Error {
  override name = "UnlinkRefused";
}

/** A transaction's fresh sign-in was at an account no subject of the user's wallet names. */
export class NotLinked extends Error {
  override name = "NotLinked";
  constructor() {
    super("the account signed in with is not linked to this wallet");
  }
}

/** A merge that cannot be: the account signed in with is in no wallet (link it instead), or in this one already. */
export class MergeRefused extends Error {
  override name = "MergeRefused";
}

/** A recovery account signed in where only a sign-in account may (a login, the account page, a transaction): it cannot sign in alone. */
export class RecoveryAccountOnly extends Error {
  override name = "RecoveryAccountOnly";
  constructor() {
    super("the account is a recovery account, which cannot sign in alone");
  }
}

/** A recovery's round signed in with an account that is not one of the wallet's recovery accounts, or at a provider this recovery used already. */
export class RecoveryRefused extends Error {
  override name = "RecoveryRefused";
}

/** The app's request as Orchestration received it. */
export interface AppRequest {
  readonly clientId: string;
  readonly redirectUri: string;
  readonly nonce: string;
  readonly scope: string;
  readonly codeChallenge: string;
  readonly claims?: string;
  /** The app's prompt parameter (space-separated), if any. */
  readonly prompt?: string;
  /** The app's max_age in seconds, if it sent one. */
  readonly maxAge?: number;
  /** A signed request object (JAR), if the app sent one; then it is what Token checks. */
  readonly requestObject?: string;
  /** RFC 9449 §10: a DPoP-bound client's DPoP key thumbprint. */
  readonly dpopJkt?: string;
}

/**
 * What Orchestration itself knows of a login, from its own sealed flow state: every
 * answer Token mints is checked against it.
 */
export interface LoginContext {
  readonly clientId: string;
  /** The app's nonce. */
  readonly nonce: string;
  readonly promptLogin?: boolean;
  /** The app sent prompt=consent: a returning user confirms, or changes, what it receives. */
  readonly promptConsent?: boolean;
  readonly maxAge?: number;
  /** A DPoP-bound client's DPoP key thumbprint: the login's wallet access token must be bound to it. */
  readonly dpopJkt?: string;
  /** When the login began (epoch ms). */
  readonly started: number;
}

/** The login context of an app's request that began at `started`. */
export function loginContext(request: AppRequest, started: number): LoginContext {
  return {
    clientId: request.clientId,
    nonce: request.nonce,
    ...(request.prompt?.split(" ").includes("login") ? { promptLogin: true } : {}),
    ...(request.prompt?.split(" ").includes("consent") ? { promptConsent: true } : {}),
    ...(request.maxAge === undefined ? {} : { maxAge: request.maxAge }),
    ...(request.dpopJkt ? { dpopJkt: request.dpopJkt } : {}),
    started,
  };
}

/** The upstream result Orchestration verified itself (step 2). */
export interface UpstreamResult {
  readonly idToken: string;
  readonly iss: string;
  readonly sub: string;
  /** Every claim of the OP ID Token, as Orchestration verified it. */
  readonly claims: Readonly<Record<string, unknown>>;
}

/** Everything needed to continue a login after the consent page; travels encrypted. */
export interface LoginState {
  sessionToken: string;
  login: LoginContext;
  uid: string;
  subjectRecord: string;
  walletRecord: string;
  /** Storage's receipt for the wallet read; "" for a new user (the session made it). */
  walletReceipt: string;
  /** The version the wallet was stored at when this login read (or made) it; absent in a state sealed before versions were kept. */
  walletVersion?: number;
  /** The provider's auth_time, as Orchestration verified it. */
  authTime?: number;
}

export type LoginOutcome =
  /**
   * The consent page: no release yet (consent), or, with `existing`, prompt=consent for an
   * app that has one: the user confirms it, or changes what it receives (changeConsent).
   */
  | { kind: "consent"; state: LoginState; wallet: RecordClaims["wallet"]; newUser: boolean; existing?: { release: ReadRelease; released: string[] } }
  | { kind: "done"; idToken: string; userinfoJwt: string; userinfoJson: string; newUser: boolean; walletAccessToken?: string };

/** What an account session shows the user: their wallet as stored, checked. */
export interface AccountView {
  /** The account session, at step "user". */
  readonly sessionToken: string;
  readonly uid: string;
  readonly wallet: RecordClaims["wallet"];
  /** The apps the user released to, and the claims each receives. */
  readonly releases: ReadonlyArray<{ readonly clientId: string; readonly claims: readonly string[] }>;
}

/** A returning user as AuthorizeUser (or CompleteRecovery) left them: the stored subject, checked, and Token's answer with the wallet read. */
interface StoredUser {
  readonly user: Pick<AuthorizeUserResponse, "sessionToken" | "accountReleaseReads"> & { readonly releaseRead?: AccessGrant | undefined };
  readonly subjectRecord: string;
  readonly subject: RecordClaims["subject"];
  readonly walletRead: AccessGrant;
}

/** A claims update between its fresh login and the user's choice; travels sealed in the page's form. */
export interface ClaimsState {
  readonly sessionToken: string;
  readonly uid: string;
  readonly walletRecord: string;
  readonly walletReceipt: string;
  readonly walletVersion: number;
  /** The issuer of the account signed in with. */
  readonly iss: string;
  /** The wallet claims that account's OP ID Token carries, as Orchestration verified it. */
  readonly offered: WalletClaims;
}

/** A recovery between rounds (docs/transactions.md, "Recovery"); travels sealed in the page's form. */
export interface RecoveryState {
  readonly sessionToken: string;
  /** The wallet the rounds so far proved. */
  readonly uid: string;
  /** The providers (issuers) that proved it, one per round. */
  readonly proven: string[];
  /** How many more providers must. */
  readonly needed: number;
}

/** A release as this login read it: the record, Storage's receipt, and the version it is stored at. */
export interface ReadRelease {
  readonly record: string;
  readonly receipt: string;
  readonly version: number;
}

/** One app's answer to a read of a user's release: the release (with its record, receipt and version), or Storage's Error Token. */
interface ReleaseRead {
  readonly clientId: string;
  readonly record: string;
  readonly receipt: string;
  readonly version: bigint;
  readonly errorToken: string;
  readonly release?: RecordClaims["release"];
}

/** One of a merge's two users as read: the wallet and the release at each app. */
interface MergeSide {
  readonly wallet: RecordClaims["wallet"];
  readonly walletRecord: string;
  readonly walletRes: { readonly receipt: string; readonly version: bigint };
  readonly releases: readonly ReleaseRead[];
}

/** A record and Storage's receipt for it. */
interface Receipted {
  readonly record: string;
  readonly receipt: string;
}

export class LoginDriver {
  constructor(private readonly deps: LoginDriverDeps) {}

  #step(): StepDeadline {
    return new StepDeadline(this.deps.deadlines?.stepMs ?? STEP_BUDGET_MS, this.deps.deadlines?.rpcMs ?? RPC_TIMEOUT_MS);
  }

  /** Step 1: a Session Token for this request and provider. */
  async start(request: AppRequest, providerId: string) {
    const step = this.#step();
    const res = await this.deps.token.createSession({
      request: request.requestObject
        ? { case: "requestObject", value: request.requestObject }
        : {
            case: "parameters",
            value: {
              clientId: request.clientId,
              redirectUri: request.redirectUri,
              nonce: request.nonce,
              scope: request.scope,
              claims: request.claims ?? "",
              codeChallenge: request.codeChallenge,
              prompt: request.prompt ?? "",
              ...(request.maxAge === undefined ? {} : { maxAge: BigInt(request.maxAge) }),
              dpopJkt: request.dpopJkt ?? "",
            },
          },
      providerId,
    }, step.call());
    return { sessionToken: res.sessionToken, upstreamNonce: res.upstreamNonce, providerIssuer: res.providerIssuer };
  }

  /** Steps 3–7 after the upstream login: the ID Token, or the consent page first. */
  async continue(sessionToken: string, login: LoginContext, upstream: UpstreamResult): Promise<LoginOutcome> {
    // The app's demand for a recent or fresh login, checked on Orchestration's own reading
    // of the OP ID Token before anything else (Token checks its own reading too).
    const authTime = freshEnough(upstream, login);

    const step = this.#step();
    const found = await this.#user(step, sessionToken, upstream);
    if (!found.stored) return this.#newUser(step, found.sessionToken, login, upstream, authTime, found.errorToken);
    const { user, subjectRecord, subject, walletRead } = found;
    const releaseRead = this.#checkGrant(user.releaseRead, "release", RecordOperation.READ,
      releaseHash(this.deps.lookupKey, subject.uid, login.clientId));
    const [walletRes, releaseRes] = await Promise.all([
      this.deps.encryption.readRecord({ accessToken: walletRead.accessToken }, step.call()),
      this.deps.encryption.readRecord({ accessToken: releaseRead.accessToken }, step.call()),
    ]);
    const { walletRecord, wallet } = await this.#wallet(step, user.sessionToken, walletRes, subject.uid);

    const state: LoginState = {
      sessionToken: user.sessionToken, login, uid: subject.uid, subjectRecord, walletRecord, walletReceipt: walletRes.receipt, walletVersion: Number(walletRes.version),
      ...(authTime === undefined ? {} : { authTime }),
    };
    if (releaseRes.result.case === "errorToken") return { kind: "consent", state, wallet, newUser: false };
    if (releaseRes.result.case !== "record") throw new ProtocolViolation("the release read returned nothing");
    if (login.promptConsent) {
      const release = await this.#record("release", releaseRes.result.value);
      if (release.uid !== subject.uid || release.client_id !== login.clientId) throw new ProtocolViolation("the release record is not this user's and app's");
      // A release from before reservations goes the old way: reserved, then confirmed as it is.
      if (release.reserved === true) {
        const existing = { release: { record: releaseRes.result.value, receipt: releaseRes.receipt, version: Number(releaseRes.version) }, released: release.claims };
        return { kind: "consent", state, wallet, newUser: false, existing };
      }
    }
    return this.#useRelease(step, state, { record: releaseRes.result.value, receipt: releaseRes.receipt }, false);
  }

  /**
   * After the consent page: the release is read again (the user may have taken minutes,
   * longer than any Error Token lives, or consented in another tab meanwhile); then the
   * Release Record with the consented claims, its directed id reserved first; then the
   * ID Token.
   */
  async consent(state: LoginState, consentedClaims: readonly string[], newUser = false): Promise<LoginOutcome & { kind: "done" }> {
    const step = this.#step();
    const { login, uid } = state;
    const releaseKey = releaseHash(this.deps.lookupKey, uid, login.clientId);
    const again = await this.deps.token.grantReleaseRead({ sessionToken: state.sessionToken }, step.call());
    const releaseRead = this.#checkGrant(again.releaseRead, "release", RecordOperation.READ, releaseKey);
    const read = await this.deps.encryption.readRecord({ accessToken: releaseRead.accessToken }, step.call());
    const current = { ...state, sessionToken: again.sessionToken };
    if (read.result.case === "record") return this.#useRelease(step, current, { record: read.result.value, receipt: read.receipt }, newUser);
    if (read.result.case !== "errorToken") throw new ProtocolViolation("the release read returned nothing");

    const res = await this.deps.token.createRelease({
      sessionToken: current.sessionToken,
      errorToken: read.result.value,
      walletRecord: state.walletRecord,
      walletReceipt: state.walletReceipt,
      consentedClaims: [...consentedClaims],
    }, step.call());
    const write = res.release!;
    this.#checkGrant(write.grant, "release", RecordOperation.CREATE, releaseKey);
    const release = await this.#record("release", write.record);
    if (release.uid !== uid || release.client_id !== login.clientId) {
      throw new ProtocolViolation("the release record is not this user's and app's");
    }
    if (release.claims.some((c) => !consentedClaims.includes(c))) {
      throw new ProtocolViolation("the release record lists claims the user did not consent to");
    }
    if (release.reserved !== true) throw new ProtocolViolation("the new release record does not say its directed id is reserved");
    // The directed id is this user's for good before any release names it: a reservation
    // that exists already (another user's) ends the login here.
    const reservation = await this.#reservationWrite(res.reservation, login.clientId, release.directed_id, uid);
    await this.deps.pause?.("release-writing");
    const receipt = (res.wallet && state.walletVersion !== undefined ? await this.#writeTogether(step, state, res.wallet, reservation, write) : undefined)
      ?? await this.#writeOneByOne(step, reservation, write);
    return this.#mint(step, { ...current, sessionToken: res.sessionToken }, { record: write.record, receipt }, newUser);
  }

  /**
   * The reservation and the release, with the wallet rewritten unchanged at the version
   * this login read it at, in one WriteRecords: the release lands only if the wallet is
   * still that version, so a delete (or any transaction) that rewrote the wallet since
   * excludes it, and one that read the wallet before it fails in turn. Returns the
   * release's create receipt, or undefined when Encryption is of a release before
   * WriteRecords (then the writes are made one by one).
   */
  async #writeTogether(step: StepDeadline, state: LoginState, rewrite: RecordWrite, reservation: RecordWrite, release: RecordWrite): Promise<string | undefined> {
    this.#checkGrant(rewrite.grant, "wallet", RecordOperation.UPDATE, walletHash(this.deps.lookupKey, state.uid));
    const [held, rewritten] = [await this.#record("wallet", state.walletRecord), await this.#record("wallet", rewrite.record)];
    // Every member as it was (its history and sources too), only the JWS's own iat new.
    if (canonical({ ...rewritten, iat: 0 }) !== canonical({ ...held, iat: 0 })) {
      throw new ProtocolViolation("Token's rewrite of the wallet is not the wallet unchanged");
    }
    try {
      const { results } = await this.deps.encryption.writeRecords({ writes: [
        { accessToken: rewrite.grant!.accessToken, record: rewrite.record, expectedVersion: BigInt(state.walletVersion!) },
        { accessToken: reservation.grant!.accessToken, record: reservation.record },
        { accessToken: release.grant!.accessToken, record: release.record },
      ] }, step.call());
      return results[2]?.receipt ?? "";
    } catch (error) {
      if (error instanceof ConnectError && error.code === Code.Unimplemented) return undefined;
      // The wallet moved on (ABORTED) or is gone (NOT_FOUND): a transaction, a delete above all, came first.
      if (walletMovedOn(error)) throw new WalletChanged();
      // Write 2 is the reservation: Token's new directed id taken already. Write 3 is the release: another tab consented first.
      if (isLostCreateRace(error) && /write 2 of 3/.test((error as ConnectError).rawMessage)) throw new ProtocolViolation("Token's new directed id is already reserved");
      throw error;
    }
  }

  /** The reservation, then the release, each on its own (before WriteRecords): returns the release's create receipt. */
  async #writeOneByOne(step: StepDeadline, reservation: RecordWrite, release: RecordWrite): Promise<string> {
    try {
      await this.deps.encryption.createRecord({ accessToken: reservation.grant!.accessToken, record: reservation.record }, step.call());
    } catch (error) {
      if (isLostCreateRace(error)) throw new ProtocolViolation("Token's new directed id is already reserved");
      throw error;
    }
    return (await this.deps.encryption.createRecord({ accessToken: release.grant!.accessToken, record: release.record }, step.call())).receipt;
  }

  async #newUser(step: StepDeadline, sessionToken: string, login: LoginContext, upstream: UpstreamResult, authTime: number | undefined,
    errorToken: string): Promise<LoginOutcome> {
    const made = await this.deps.token.createUser({ sessionToken, errorToken }, step.call());
    const subject = await this.#record("subject", made.subject!.record);
    const wallet = await this.#record("wallet", made.wallet!.record);
    if (subject.op_iss !== upstream.iss || subject.op_sub !== upstream.sub || wallet.uid !== subject.uid) {
      throw new ProtocolViolation("the new user's records do not match the upstream subject");
    }
    if (wallet.subjects.length !== 1 || wallet.subjects[0]!.iss !== upstream.iss || wallet.subjects[0]!.sub !== upstream.sub) {
      throw new ProtocolViolation("the new wallet does not link exactly the upstream subject");
    }
    // Token takes a new wallet's claims from the OP ID Token it verified; so must they
    // equal what Orchestration read in the same token. A claim the provider never said
    // (email_verified: true, say) would otherwise enter the wallet for good.
    if (!sameClaims(wallet.claims, walletClaimsOf(upstream.claims))) {
      throw new ProtocolViolation("the new wallet's claims are not the ones the provider's ID Token carries");
    }
    const walletWrite = this.#checkGrant(made.wallet!.grant, "wallet", RecordOperation.CREATE, walletHash(this.deps.lookupKey, subject.uid));
    const subjectWrite = this.#checkGrant(made.subject!.grant, "subject", RecordOperation.CREATE,
      subjectHash(this.deps.lookupKey, upstream.iss, upstream.sub));

    // Wallet first, Subject last: until the Subject Record exists, nothing reaches the wallet.
    // A lost race ends here with ALREADY_EXISTS; Token goes on only with both receipts.
    const walletWritten = await this.deps.encryption.createRecord({ accessToken: walletWrite.accessToken, record: made.wallet!.record }, step.call());
    const subjectWritten = await this.deps.encryption.createRecord({ accessToken: subjectWrite.accessToken, record: made.subject!.record }, step.call());
    const committed = await this.deps.token.commitUser({
      sessionToken: made.sessionToken,
      walletReceipt: walletWritten.receipt,
      subjectReceipt: subjectWritten.receipt,
    }, step.call());
    const state: LoginState = {
      sessionToken: committed.sessionToken, login, uid: subject.uid,
      subjectRecord: made.subject!.record, walletRecord: made.wallet!.record, walletReceipt: "", walletVersion: Number(walletWritten.version),
      ...(authTime === undefined ? {} : { authTime }),
    };
    return { kind: "consent", state, wallet, newUser: true };
  }

  /**
   * A release read from Storage: a release made before directed ids were reserved has
   * its id reserved now (or found reserved for this user) before it is used.
   */
  async #useRelease(step: StepDeadline, state: LoginState, release: Receipted, newUser: boolean): Promise<LoginOutcome & { kind: "done" }> {
    const claims = await this.#record("release", release.record);
    if (claims.uid !== state.uid || claims.client_id !== state.login.clientId) {
      throw new ProtocolViolation("the release record is not this user's and app's");
    }
    if (claims.reserved === true) return this.#mint(step, state, release, newUser);

    const { clientId } = state.login;
    const res = await this.deps.token.reserveDirectedId({
      sessionToken: state.sessionToken, releaseRecord: release.record, releaseReceipt: release.receipt,
    }, step.call());
    const key = reservationHash(this.deps.lookupKey, clientId, claims.directed_id);
    const read = this.#checkGrant(res.reservationRead, "reservation", RecordOperation.READ, key);
    const reservation = await this.#reservationWrite(res.reservation, clientId, claims.directed_id, state.uid);
    const held = async () => {
      const found = await this.deps.encryption.readRecord({ accessToken: read.accessToken }, step.call());
      if (found.result.case === "errorToken") return false;
      if (found.result.case !== "record") throw new ProtocolViolation("the reservation read returned nothing");
      const stored = await this.#record("reservation", found.result.value);
      if (stored.client_id !== clientId || stored.directed_id !== claims.directed_id || stored.uid !== state.uid) {
        throw new ProtocolViolation("this app's identifier for the user is reserved for someone else");
      }
      return true;
    };
    if (!(await held())) {
      try {
        await this.deps.encryption.createRecord({ accessToken: reservation.grant!.accessToken, record: reservation.record }, step.call());
      } catch (error) {
        // Another login of this user reserved it a moment ago, or another user did.
        if (!isLostCreateRace(error) || !(await held())) throw error;
      }
    }
    // The session now holds the release it took in ReserveDirectedId.
    return this.#mint(step, { ...state, sessionToken: res.sessionToken }, { record: release.record, receipt: "" }, newUser);
  }

  /**
   * prompt=consent's answer: the app receives `claims` from now on. The same as the
   * release: its ID Token, minted from the release as read. Otherwise Token's release
   * must be the one read with exactly those claims, and its wallet the one held,
   * unchanged; both are written at the versions read in one WriteRecords, then the ID
   * Token is minted from the release as written.
   */
  async changeConsent(state: LoginState, read: ReadRelease, claims: readonly string[]): Promise<LoginOutcome & { kind: "done" }> {
    const step = this.#step();
    const held = await this.#record("release", read.record);
    const chosen = [...new Set(claims)];
    if (sameSet(chosen, held.claims)) return this.#mint(step, state, read, false);
    if (state.walletVersion === undefined) throw new ProtocolViolation("the login holds no wallet version to write the release change at");

    const res = await this.deps.token.updateRelease({
      sessionToken: state.sessionToken, releaseRecord: read.record, releaseReceipt: read.receipt,
      walletRecord: state.walletRecord, walletReceipt: state.walletReceipt, claims: chosen,
    }, step.call());
    const releaseWrite = res.release;
    const rewrite = res.wallet;
    if (!releaseWrite || !rewrite) throw new ProtocolViolation("Token returned no release change");
    this.#checkGrant(releaseWrite.grant, "release", RecordOperation.UPDATE, releaseHash(this.deps.lookupKey, state.uid, state.login.clientId));
    this.#checkGrant(rewrite.grant, "wallet", RecordOperation.UPDATE, walletHash(this.deps.lookupKey, state.uid));
    const [changed, wallet, rewritten] = [await this.#record("release", releaseWrite.record), await this.#record("wallet", state.walletRecord), await this.#record("wallet", rewrite.record)];
    // Every member as it was but the claims, which are exactly the chosen ones; the wallet unchanged; only the JWS's iat new.
    if (canonical({ ...changed, iat: 0, claims: [...changed.claims].sort() }) !== canonical({ ...held, iat: 0, claims: [...chosen].sort() }) || changed.claims.length !== chosen.length) {
      throw new ProtocolViolation("Token's release change is not the release read with the chosen claims");
    }
    if (canonical({ ...rewritten, iat: 0 }) !== canonical({ ...wallet, iat: 0 })) throw new ProtocolViolation("Token's rewrite of the wallet is not the wallet unchanged");
    await this.deps.pause?.("release-changing");
    let results;
    try {
      ({ results } = await this.deps.encryption.writeRecords({ writes: [
        { accessToken: rewrite.grant!.accessToken, record: rewrite.record, expectedVersion: BigInt(state.walletVersion) },
        { accessToken: releaseWrite.grant!.accessToken, record: releaseWrite.record, expectedVersion: BigInt(read.version) },
      ] }, step.call()));
    } catch (error) {
      // The wallet, or the release, moved on since this login read them (a delete, another tab): nothing was written.
      if (walletMovedOn(error)) throw new WalletChanged();
      throw error;
    }
    return this.#mint(step, { ...state, sessionToken: res.sessionToken }, { record: releaseWrite.record, receipt: results[1]?.receipt ?? "" }, false);
  }

  /** Token's reservation must be exactly of this directed id, for this user and app. */
  async #reservationWrite(write: RecordWrite | undefined, clientId: string, directedId: string, uid: string): Promise<RecordWrite> {
    if (!write) throw new ProtocolViolation("Token returned no reservation");
    this.#checkGrant(write.grant, "reservation", RecordOperation.CREATE, reservationHash(this.deps.lookupKey, clientId, directedId));
    const reservation = await this.#record("reservation", write.record);
    if (reservation.client_id !== clientId || reservation.directed_id !== directedId || reservation.uid !== uid) {
      throw new ProtocolViolation("Token's reservation is not of this directed id for this user and app");
    }
    return write;
  }

  /** Step 7: the ID Token, checked against the records Orchestration verified before it goes anywhere. */
  async #mint(step: StepDeadline, state: LoginState, release: Receipted, newUser: boolean): Promise<LoginOutcome & { kind: "done" }> {
    const releaseClaims = await this.#record("release", release.record);
    const wallet = await this.#record("wallet", state.walletRecord);
    if (releaseClaims.uid !== state.uid || releaseClaims.client_id !== state.login.clientId || wallet.uid !== state.uid) {
      throw new ProtocolViolation("the release and wallet records are not this user's and app's");
    }
    const minted = await this.deps.token.mintIdToken({
      sessionToken: state.sessionToken,
      subjectRecord: state.subjectRecord,
      releaseRecord: release.record,
      walletRecord: state.walletRecord,
      walletReceipt: state.walletReceipt,
      releaseReceipt: release.receipt,
    }, step.call());
    checkMinted(minted, {
      issuer: this.deps.issuer,
      clientId: state.login.clientId,
      nonce: state.login.nonce,
      sub: releaseClaims.directed_id,
      claims: releasedClaims(releaseClaims, wallet),
      authTime: state.authTime,
      mergedSubs: releaseClaims.merged_subs,
    }, this.deps.tokenKeys());
    // A DPoP-bound client's login (docs/wallet-server.md): Token's wallet access token, checked like the ID Token.
    const jkt = state.login.dpopJkt;
    if (jkt !== undefined) {
      if (!minted.walletAccessToken || !this.deps.walletKeys) throw new ProtocolViolation("Token minted no wallet access token for a DPoP-bound client's login");
      await checkWalletAccessToken(minted.walletAccessToken, { uid: state.uid, clientId: state.login.clientId, jkt }, this.deps.walletKeys);
    } else if (minted.walletAccessToken) {
      throw new ProtocolViolation("Token minted a wallet access token for a login that asked for none");
    }
    return {
      kind: "done", idToken: minted.idToken, userinfoJwt: minted.userinfoJwt, userinfoJson: minted.userinfoJson, newUser,
      ...(jkt !== undefined ? { walletAccessToken: minted.walletAccessToken } : {}),
    };
  }

  /** A Token call whose "login required" refusal means the app's freshness demand is not met. */
  /**
   * An account session for the user's sign-in at `providerId` (docs/transactions.md): the
   * provider must be sent prompt=login and max_age=0 with the nonce returned.
   */
  async startAccount(providerId: string) {
    const res = await this.deps.token.createAccountSession({ providerId }, this.#step().call());
    return { sessionToken: res.sessionToken, upstreamNonce: res.upstreamNonce, providerIssuer: res.providerIssuer };
  }

  /**
   * The account session after its upstream login, begun at `started`: the user's wallet
   * as stored, checked as a login checks it, or undefined when no wallet holds this
   * subject (an account session makes no user). The login must be a forced fresh one,
   * by Orchestration's own reading of the OP ID Token before Token's.
   */
  async openAccount(sessionToken: string, started: number, upstream: UpstreamResult): Promise<AccountView | undefined> {
    freshEnough(upstream, { maxAge: 0, promptLogin: true, started, demandedBy: "account" });

    const step = this.#step();
    const found = await this.#user(step, sessionToken, upstream);
    if (!found.stored) return undefined;
    return this.#view(found.user.sessionToken, found.subject.uid, await this.#walletAndReleases(step, found, upstream));
  }

  /** What the account page shows of a wallet and its releases, as read. */
  #view(sessionToken: string, uid: string, { wallet, releases }: { wallet: RecordClaims["wallet"]; releases: ReadonlyArray<{ clientId: string; release?: RecordClaims["release"] }> }): AccountView {
    return { sessionToken, uid, wallet, releases: releases.flatMap((r) => (r.release ? [{ clientId: r.clientId, claims: r.release.claims }] : [])) };
  }

  /**
   * A transaction of the wallet, begun from the account session at step "user" (or a
   * completed recovery, for a link): its session and upstream nonce. `recovery` links
   * the account as a recovery account.
   */
  async beginTransaction(accountSessionToken: string, kind: TransactionKind, providerId: string,
    target: { unlink?: { iss: string; sub: string }; clientId?: string; recovery?: boolean; threshold?: number } = {}) {
    const { unlink, clientId, recovery, threshold } = target;
    const res = await this.deps.token.beginTransaction({
      accountSessionToken, kind, providerId, ...(unlink ? { unlink } : {}), ...(clientId ? { clientId } : {}), ...(recovery ? { recovery } : {}), ...(threshold ? { threshold } : {}),
    }, this.#step().call());
    return { sessionToken: res.sessionToken, upstreamNonce: res.upstreamNonce, providerIssuer: res.providerIssuer };
  }

  /** A recovery's first round (docs/transactions.md, "Recovery"), at `providerId`: its session and upstream nonce, for a forced fresh login. */
  async startRecovery(providerId: string) {
    const res = await this.deps.token.beginRecovery({ providerId }, this.#step().call());
    return { sessionToken: res.sessionToken, upstreamNonce: res.upstreamNonce, providerIssuer: res.providerIssuer };
  }

  /** A recovery's next round, at `providerId` (another provider than the rounds so far). */
  async nextRecovery(state: RecoveryState, providerId: string) {
    const res = await this.deps.token.nextRecoveryLogin({ sessionToken: state.sessionToken, providerId }, this.#step().call());
    return { sessionToken: res.sessionToken, upstreamNonce: res.upstreamNonce, providerIssuer: res.providerIssuer };
  }

  /**
   * A recovery's round, after its forced fresh login begun at `started`: the account must
   * be a recovery account (its Subject Record's type, and the wallet's mark) of the
   * wallet earlier rounds proved, at a provider none of them used. Orchestration counts
   * the providers and reads the threshold itself; Token's count must agree. At the
   * threshold, Token's wallet must be the one read with only the recovery's history entry
   * added; it is written at the version read, and the recovered user's wallet is shown
   * as the account page shows it.
   */
  async recover(sessionToken: string, started: number, upstream: UpstreamResult, previous?: Pick<RecoveryState, "uid" | "proven">): Promise<{ kind: "more"; state: RecoveryState } | { kind: "done"; view: AccountView }> {
    freshEnough(upstream, { maxAge: 0, promptLogin: true, started, demandedBy: "transaction" });
    const proven = previous?.proven ?? [];
    if (proven.includes(upstream.iss)) throw new RecoveryRefused("this provider proved this recovery already: each round is at another provider");

    const step = this.#step();
    const found = await this.#user(step, sessionToken, upstream, previous?.uid, "recovery");
    if (!found.stored) throw new RecoveryRefused("the account signed in with is not linked to any wallet");
    const { user, subject, walletRead } = found;
    const walletRes = await this.deps.encryption.readRecord({ accessToken: walletRead.accessToken }, step.call());
    const { walletRecord, wallet } = await this.#wallet(step, user.sessionToken, walletRes, subject.uid);
    if (!wallet.subjects.some((s) => s.iss === upstream.iss && s.sub === upstream.sub && s.recovery === true)) {
      throw new ProtocolViolation("the wallet does not list the recovery account signed in with as one");
    }
    const nowProven = [...proven, upstream.iss];
    const needed = Math.max(0, recoveryThreshold(wallet) - nowProven.length);
    const res = await this.deps.token.proveRecovery({ sessionToken: user.sessionToken, walletRecord, walletReceipt: walletRes.receipt }, step.call());
    if (res.needed !== needed || (needed > 0) !== (res.wallet === undefined)) {
      throw new ProtocolViolation("Token's count of this recovery's providers is not the wallet's threshold less the providers that proved it");
    }
    if (needed > 0) return { kind: "more", state: { sessionToken: res.sessionToken, uid: subject.uid, proven: nowProven, needed } };

    const write = res.wallet!;
    this.#checkGrant(write.grant, "wallet", RecordOperation.UPDATE, walletHash(this.deps.lookupKey, subject.uid));
    checkTransacted(wallet, await this.#record("wallet", write.record), {}, { kind: "recovery", iss: upstream.iss, issuers: nowProven });
    let stored;
    try {
      stored = await this.deps.encryption.updateRecord({ accessToken: write.grant!.accessToken, record: write.record, expectedVersion: walletRes.version }, step.call());
    } catch (error) {
      if (walletMovedOn(error)) throw new WalletChanged();
      throw error;
    }
    const done = await this.deps.token.completeRecovery({ sessionToken: res.sessionToken, walletRecord: write.record, walletReceipt: stored.receipt }, step.call());
    const recoveredRead = this.#checkGrant(done.walletRead, "wallet", RecordOperation.READ, walletHash(this.deps.lookupKey, subject.uid));
    const shown = await this.#walletAndReleases(step, { ...found, user: done, walletRead: recoveredRead }, upstream);
    return { kind: "done", view: this.#view(done.sessionToken, subject.uid, shown) };
  }

  /**
   * Deletes the wallet of user `uid` (docs/transactions.md, "Delete"), after the delete
   * session's forced fresh login begun at `started`, at a subject of that wallet. The
   * deletion record is the commit point: once it is stored, the rest follows, here or
   * at the next sign-in of any of the wallet's subjects.
   */
  async deleteWallet(sessionToken: string, started: number, upstream: UpstreamResult, uid: string): Promise<void> {
    freshEnough(upstream, { maxAge: 0, promptLogin: true, started, demandedBy: "transaction" });

    const step = this.#step();
    const found = await this.#user(step, sessionToken, upstream, uid);
    if (!found.stored) throw new NotLinked();
    const { wallet, walletRes, releases } = await this.#walletAndReleases(step, found, upstream);
    const answers: ReleaseAnswer[] = releases.map((r) => create(ReleaseAnswerSchema, {
      clientId: r.clientId,
      answer: r.release ? { case: "release", value: { record: r.record, receipt: r.receipt } } : { case: "errorToken", value: r.errorToken },
    }));
    // The credential holdings, as the delete session read them: Token lists what they hold.
    const holdingsRead = this.#checkGrant(found.user.holdingsRead, "holdings", RecordOperation.READ, holdingsHash(this.deps.lookupKey, uid));
    const heldRes = await this.deps.encryption.readRecord({ accessToken: holdingsRead.accessToken }, step.call());
    if (heldRes.result.case !== "record" && heldRes.result.case !== "errorToken") throw new ProtocolViolation("the holdings read returned nothing");
    const held: HoldingsRecord | undefined = heldRes.result.case === "record" ? await this.#record("holdings", heldRes.result.value) : undefined;
    const holdings = create(RecordAnswerSchema, {
      answer: heldRes.result.case === "record"
        ? { case: "record", value: { record: heldRes.result.value, receipt: heldRes.receipt } }
        : { case: "errorToken", value: heldRes.result.value },
    });
    const res = await this.deps.token.authorizeDelete({
      sessionToken: found.user.sessionToken, walletRecord: walletRes.record, walletReceipt: walletRes.receipt, releases: answers, holdings,
    }, step.call());

    // The deletion record must remove exactly this wallet: its subjects, and the releases read.
    const write = res.deletion;
    if (!write) throw new ProtocolViolation("Token returned no deletion record");
    this.#checkGrant(write.grant, "wallet", RecordOperation.UPDATE, walletHash(this.deps.lookupKey, uid));
    const deletion = await this.#deletion(write.record);
    // Each release's directed id, and a merge's ids at that app (merged_subs): every reservation of the user's becomes a tombstone.
    const foundReleases = releases.flatMap((r) => (r.release ? [r.release.directed_id, ...(r.release.merged_subs ?? [])].map((id) => ({ client_id: r.clientId, directed_id: id })) : []));
    if (deletion.uid !== uid || !sameSubjects(deletion.subjects, wallet.subjects) || !sameReleases(deletion.releases, foundReleases)) {
      throw new ProtocolViolation("the wallet deletion record does not list exactly this wallet's subjects and releases");
    }
    // …and exactly the credential records the holdings list (the same rule Token applied).
    const { s2s_sessions, credentials, holdings: hasHoldings } = deletion;
    if (!isDeepStrictEqual({ s2s_sessions, credentials, holdings: hasHoldings }, holdingsToDelete(held, uid))) {
      throw new ProtocolViolation("the wallet deletion record does not list exactly the user's credential holdings");
    }
    await this.deps.pause?.("deletion-writing");
    let updated;
    try {
      updated = await this.deps.encryption.updateRecord({ accessToken: write.grant!.accessToken, record: write.record, expectedVersion: walletRes.version }, step.call());
    } catch (error) {
      // The wallet moved on since it was read (a consent at an app, say): nothing is deleted.
      if (error instanceof ConnectError && error.code === Code.Aborted) throw new WalletChanged();
      throw error;
    }
    await this.deps.pause?.("deletion-stored");
    await this.#finishDelete(step, res.sessionToken, uid, write.record, deletion, updated.receipt);
  }

  /**
   * Links the account of the link session's forced fresh login, begun at `started`, to
   * the wallet of user `uid` (docs/transactions.md, "Link a provider"). The account must
   * be in no wallet (AlreadyLinked otherwise: a subject is never moved here). Token's
   * Subject Record and wallet must be exactly what Orchestration verified itself: that
   * account, this user, the wallet as read with that subject and one history entry added.
   * Both are written in one WriteRecords.
   */
  async linkSubject(sessionToken: string, started: number, upstream: UpstreamResult, uid: string, recovery = false): Promise<void> {
    freshEnough(upstream, { maxAge: 0, promptLogin: true, started, demandedBy: "transaction" });

    const step = this.#step();
    const key = this.deps.lookupKey;
    const authorized = await this.#token(() => this.deps.token.authorizeSubject({ sessionToken, opIdToken: upstream.idToken }, step.call()));
    const subjectRead = this.#checkGrant(authorized.subjectRead, "subject", RecordOperation.READ, subjectHash(key, upstream.iss, upstream.sub));
    const walletRead = this.#checkGrant(authorized.walletRead, "wallet", RecordOperation.READ, walletHash(key, uid));
    const [subjectRes, walletRes] = await Promise.all([
      this.deps.encryption.readRecord({ accessToken: subjectRead.accessToken }, step.call()),
      this.deps.encryption.readRecord({ accessToken: walletRead.accessToken }, step.call()),
    ]);
    if (subjectRes.result.case === "record") {
      const { subject } = await this.#subject(subjectRes.result.value);
      if (subject.op_iss !== upstream.iss || subject.op_sub !== upstream.sub) throw new ProtocolViolation("the subject record is not the upstream subject's");
      throw new AlreadyLinked(subject.uid === uid);
    }
    if (subjectRes.result.case !== "errorToken") throw new ProtocolViolation("the subject read returned nothing");
    const { walletRecord, wallet } = await this.#wallet(step, authorized.sessionToken, walletRes, uid);

    const res = await this.deps.token.linkSubject({
      sessionToken: authorized.sessionToken, errorToken: subjectRes.result.value, walletRecord, walletReceipt: walletRes.receipt,
    }, step.call());
    const subjectWrite = res.subject;
    const walletWrite = res.wallet;
    if (!subjectWrite || !walletWrite) throw new ProtocolViolation("Token returned no link");
    this.#checkGrant(subjectWrite.grant, "subject", RecordOperation.CREATE, subjectHash(key, upstream.iss, upstream.sub));
    this.#checkGrant(walletWrite.grant, "wallet", RecordOperation.UPDATE, walletHash(key, uid));
    const minted = await this.#subject(subjectWrite.record);
    const subject = minted.subject;
    if (subject.op_iss !== upstream.iss || subject.op_sub !== upstream.sub || subject.uid !== uid || minted.recovery !== recovery) {
      throw new ProtocolViolation(`the new subject record is not the account signed in with, for this user, as a ${recovery ? "recovery" : "sign-in"} account`);
    }
    const updated = await this.#record("wallet", walletWrite.record);
    checkTransacted(wallet, updated, recovery
      ? { subjects: [...wallet.subjects, { iss: upstream.iss, sub: upstream.sub, recovery: true }], recovery: wallet.recovery ?? { threshold: DEFAULT_RECOVERY_THRESHOLD } }
      : { subjects: [...wallet.subjects, { iss: upstream.iss, sub: upstream.sub }] },
    { kind: "link", iss: upstream.iss, ...(recovery ? { recovery: true as const } : {}) });
    await this.deps.pause?.("link-writing");
    try {
      await this.deps.encryption.writeRecords({ writes: [
        { accessToken: walletWrite.grant!.accessToken, record: walletWrite.record, expectedVersion: walletRes.version },
        { accessToken: subjectWrite.grant!.accessToken, record: subjectWrite.record },
      ] }, step.call());
    } catch (error) {
      if (walletMovedOn(error)) throw new WalletChanged();
      // The account signed in to an app meanwhile, and got a wallet of its own.
      if (isLostCreateRace(error)) throw new AlreadyLinked(false);
      throw error;
    }
  }

  /**
   * Merges the wallet of the account the merge session's forced fresh login (begun at
   * `started`) was made at with user `uid`'s (docs/transactions.md, "Merge"). Token keeps
   * the earlier wallet; Orchestration checks every record Token mints against both wallets
   * and both users' releases as read (the surviving wallet as it computes it itself, each
   * account and release of the merged user moved to the survivor and nothing else, each
   * reservation moved from the merged user only), then writes it all in one WriteRecords,
   * both wallets at the versions read. Returns the surviving user.
   */
  async mergeWallets(sessionToken: string, started: number, upstream: UpstreamResult, uid: string): Promise<{ survivor: string; merged: string }> {
    freshEnough(upstream, { maxAge: 0, promptLogin: true, started, demandedBy: "transaction" });
    const step = this.#step();
    const key = this.deps.lookupKey;
    const authorized = await this.#token(() => this.deps.token.authorizeSubject({ sessionToken, opIdToken: upstream.idToken }, step.call()));
    const subjectRead = this.#checkGrant(authorized.subjectRead, "subject", RecordOperation.READ, subjectHash(key, upstream.iss, upstream.sub));
    const read = await this.deps.encryption.readRecord({ accessToken: subjectRead.accessToken }, step.call());
    if (read.result.case === "errorToken") throw new MergeRefused("the account signed in with is in no wallet: link it instead");
    if (read.result.case !== "record") throw new ProtocolViolation("the subject read returned nothing");
    const { subject, recovery } = await this.#subject(read.result.value);
    if (subject.op_iss !== upstream.iss || subject.op_sub !== upstream.sub) throw new ProtocolViolation("the subject record is not the upstream subject's");
    if (recovery) throw new RecoveryAccountOnly();
    if (subject.uid === uid) throw new MergeRefused("the account signed in with is this wallet's already");
    const other = subject.uid;

    const res = await this.deps.token.authorizeMerge({ sessionToken: authorized.sessionToken, subjectRecord: read.result.value, subjectReceipt: read.receipt }, step.call());
    const [mine, theirs] = await Promise.all([
      this.#walletWithReleases(step, res.sessionToken, res.walletRead, res.releaseReads, uid),
      this.#walletWithReleases(step, res.sessionToken, res.otherWalletRead, res.otherReleaseReads, other),
    ]);
    const answer = (r: (typeof mine.releases)[number]) => create(ReleaseAnswerSchema, {
      clientId: r.clientId,
      answer: r.release ? { case: "release", value: { record: r.record, receipt: r.receipt } } : { case: "errorToken", value: r.errorToken },
    });
    const merge = await this.deps.token.mergeWallets({
      sessionToken: res.sessionToken,
      wallet: { record: mine.walletRecord, receipt: mine.walletRes.receipt },
      otherWallet: { record: theirs.walletRecord, receipt: theirs.walletRes.receipt },
      releases: mine.releases.map(answer),
      otherReleases: theirs.releases.map(answer),
    }, step.call());

    if (!theirs.wallet.subjects.some((s) => s.iss === upstream.iss && s.sub === upstream.sub && !s.recovery)) {
      throw new ProtocolViolation("the other wallet does not list the account signed in with");
    }
    // The earlier wallet survives, by the rule Token applies too.
    const survivorIsOther = earlierWallet(mine.wallet, theirs.wallet) === theirs.wallet;
    if (merge.survivorIsOther !== survivorIsOther) throw new ProtocolViolation("Token keeps the later wallet of the two");
    const [kept, merged] = survivorIsOther ? [theirs, mine] : [mine, theirs];
    const survivor = kept.wallet.uid;
    const plan = await this.#checkMerge(merge, kept, merged, upstream.iss);

    // What the merge overwrites, read now for the versions it is written at: each account
    // and each reservation must still be the merged user's (or a reservation absent).
    const subjectVersions = await Promise.all(plan.subjects.map(async ({ read: grant, account }) => {
      const found = await this.deps.encryption.readRecord({ accessToken: grant.accessToken }, step.call());
      if (found.result.case !== "record") throw new WalletChanged();
      const { subject: stored } = await this.#subject(found.result.value);
      if (stored.op_iss !== account.iss || stored.op_sub !== account.sub) throw new ProtocolViolation("the subject read is not the merged account's");
      if (stored.uid !== merged.wallet.uid) throw new WalletChanged();
      return found.version;
    }));
    const reservations = await Promise.all(plan.releases.map(({ reservations: moves, clientId }) => Promise.all(moves.map(async (move) => {
      const found = await this.deps.encryption.readRecord({ accessToken: move.read.accessToken }, step.call());
      if (found.result.case === "errorToken") return { write: move.create, version: 0n };
      if (found.result.case !== "record") throw new ProtocolViolation("the reservation read returned nothing");
      const stored = await this.#record("reservation", found.result.value);
      if (stored.client_id !== clientId || stored.directed_id !== move.directedId) throw new ProtocolViolation("the reservation read is not the one the merge moves");
      if (stored.uid !== merged.wallet.uid) throw new ProtocolViolation("a reservation the merge moves names someone else than the merged user");
      return { write: move.update, version: found.version };
    }))));

    const writes = [
      { accessToken: plan.wallet.grant!.accessToken, record: plan.wallet.record, expectedVersion: kept.walletRes.version },
      { accessToken: plan.mergedWalletDelete.accessToken, expectedVersion: merged.walletRes.version },
      ...plan.subjects.map(({ update }, i) => ({ accessToken: update.grant!.accessToken, record: update.record, expectedVersion: subjectVersions[i]! })),
      ...plan.releases.flatMap(({ release }, i) => [
        ...reservations[i]!.map((r) => ({ accessToken: r.write.grant!.accessToken, record: r.write.record, expectedVersion: r.version })),
        { accessToken: release.write.grant!.accessToken, record: release.write.record, expectedVersion: release.version },
        { accessToken: release.mergedDelete.accessToken },
      ]),
    ];
    await this.deps.pause?.("merge-writing");
    try {
      await this.deps.encryption.writeRecords({ writes }, step.call());
    } catch (error) {
      // Either wallet, an account, a release or a reservation moved on since it was read: nothing was written.
      if (walletMovedOn(error) || isLostCreateRace(error)) throw new WalletChanged();
      throw error;
    }
    return { survivor, merged: merged.wallet.uid };
  }

  /** A user's wallet and release at each app Orchestration serves, read with `walletRead` and `releaseReads` (each checked to be that user's). */
  async #walletWithReleases(step: StepDeadline, sessionToken: string, walletRead: AccessGrant | undefined, releaseReads: readonly AccessGrant[], uid: string) {
    const grant = this.#checkGrant(walletRead, "wallet", RecordOperation.READ, walletHash(this.deps.lookupKey, uid));
    const apps = this.#appReleaseReads(releaseReads, uid);
    const [walletRes, ...releaseRes] = await Promise.all([
      this.deps.encryption.readRecord({ accessToken: grant.accessToken }, step.call()),
      ...releaseReads.map((g) => this.deps.encryption.readRecord({ accessToken: g.accessToken }, step.call())),
    ]);
    const { walletRecord, wallet } = await this.#wallet(step, sessionToken, walletRes, uid);
    const releases = await this.#releasesRead(releaseRes, releaseReads, apps, uid);
    return { wallet, walletRecord, walletRes, releases };
  }

  /**
   * Token's merge, checked against both wallets and both users' releases as read: the
   * survivor's wallet as Orchestration computes it, the merged wallet's delete, each of the
   * merged wallet's accounts pointed at the survivor (and no other account), and each of
   * the merged user's releases moved (no other), with its reservation naming the survivor.
   */
  async #checkMerge(res: MergeWalletsResponse, kept: MergeSide, merged: MergeSide, iss: string) {
    const key = this.deps.lookupKey;
    const survivor = kept.wallet.uid;
    const wallet = res.wallet;
    if (!wallet) throw new ProtocolViolation("Token returned no merged wallet");
    this.#checkGrant(wallet.grant, "wallet", RecordOperation.UPDATE, walletHash(key, survivor));
    const minted = await this.#record("wallet", wallet.record);
    const at = minted.history?.at(-1)?.at ?? Number.NaN;
    const { iss: _iss, aud: _aud, iat: _iat, ...body } = minted as RecordClaims["wallet"] & { iss?: unknown; aud?: unknown; iat?: unknown };
    if (canonical(body) !== canonical(mergedWallet(kept.wallet, merged.wallet, iss, at))
      || !(Math.abs(at - Math.floor(Date.now() / 1000)) <= MINT_CLOCK_SKEW_SECONDS)) {
      throw new ProtocolViolation("Token's merged wallet is not the two wallets as read, joined, with the merge's history entry");
    }
    const mergedWalletDelete = this.#checkGrant(res.mergedWalletDelete, "wallet", RecordOperation.DELETE, walletHash(key, merged.wallet.uid));

    if (res.subjects.length !== merged.wallet.subjects.length) throw new ProtocolViolation("Token's merge does not move exactly the merged wallet's accounts");
    const subjects = await Promise.all(merged.wallet.subjects.map(async (account, i) => {
      const at = subjectHash(key, account.iss, account.sub);
      const { read, update } = res.subjects[i]!;
      this.#checkGrant(update?.grant, "subject", RecordOperation.UPDATE, at);
      const moved = await this.#subject(update!.record);
      if (moved.subject.op_iss !== account.iss || moved.subject.op_sub !== account.sub || moved.subject.uid !== survivor || moved.recovery !== (account.recovery === true)) {
        throw new ProtocolViolation("Token's merge points an account elsewhere than at the surviving user, or changes its kind");
      }
      return { read: this.#checkGrant(read, "subject", RecordOperation.READ, at), update: update!, account };
    }));

    const toMove = merged.releases.filter((r) => r.release);
    if (res.releases.length !== toMove.length || new Set(res.releases.map((r) => r.clientId)).size !== toMove.length) {
      throw new ProtocolViolation("Token's merge does not move exactly the merged user's releases");
    }
    const releases = await Promise.all(res.releases.map(async (r) => {
      const from = toMove.find((m) => m.clientId === r.clientId);
      if (!from) throw new ProtocolViolation("Token's merge does not move exactly the merged user's releases");
      const moving = from.release!;
      // Its own directed id's reservation, and an earlier merge's ids' (they travel with the release), each moved to the survivor.
      const chained = moving.merged_subs ?? [];
      if (r.mergedSubReservations.length !== chained.length || r.mergedSubReservations.some((m, i) => m.directedId !== chained[i])) {
        throw new ProtocolViolation("Token's merge does not move exactly the reservations of the merged release's merged_subs");
      }
      const reservations = [
        { directedId: moving.directed_id, ...(await this.#checkReservation(r, r.clientId, moving.directed_id, survivor)) },
        ...await Promise.all(r.mergedSubReservations.map(async (m) => ({
          directedId: m.directedId,
          ...(await this.#checkReservation({ reservationRead: m.read, reservationUpdate: m.update, reservationCreate: m.create }, r.clientId, m.directedId, survivor)),
        }))),
      ];
      const into = kept.releases.find((k) => k.clientId === r.clientId)!;
      const hash = releaseHash(key, survivor, r.clientId);
      let release;
      if (into.release) {
        if (r.releaseCreate) throw new ProtocolViolation("Token's merge creates a release where the surviving user has one");
        this.#checkGrant(r.releaseUpdate?.grant, "release", RecordOperation.UPDATE, hash);
        const expected = { ...into.release, merged_subs: [...(into.release.merged_subs ?? []), moving.directed_id, ...(moving.merged_subs ?? [])] };
        if (canonical({ ...(await this.#record("release", r.releaseUpdate!.record)), iat: 0 }) !== canonical({ ...expected, iat: 0 })) {
          throw new ProtocolViolation("Token's merged release is not the surviving release with the merged directed id added to merged_subs");
        }
        release = { write: r.releaseUpdate!, version: into.version };
      } else {
        if (r.releaseUpdate) throw new ProtocolViolation("Token's merge updates a release the surviving user does not have");
        this.#checkGrant(r.releaseCreate?.grant, "release", RecordOperation.CREATE, hash);
        const expected = { ...moving, uid: survivor, reserved: true };
        if (canonical({ ...(await this.#record("release", r.releaseCreate!.record)), iat: 0 }) !== canonical({ ...expected, iat: 0 })) {
          throw new ProtocolViolation("Token's moved release is not the merged user's release, for the surviving user, with its directed id");
        }
        release = { write: r.releaseCreate!, version: 0n };
      }
      const mergedDelete = this.#checkGrant(r.mergedReleaseDelete, "release", RecordOperation.DELETE, releaseHash(key, merged.wallet.uid, r.clientId));
      return { clientId: r.clientId, reservations, release: { ...release, mergedDelete } };
    }));
    return { wallet, mergedWalletDelete, subjects, releases };
  }

  /**
   * Token's grants that make the reservation of `directedId` at `clientId` name `uid`: a
   * read of it, and the record as an update and as a create, each at its hash (`uid`
   * undefined: a tombstone that names no one).
   */
  async #checkReservation(grants: { reservationRead?: AccessGrant | undefined; reservationUpdate?: RecordWrite | undefined; reservationCreate?: RecordWrite | undefined },
    clientId: string, directedId: string, uid: string | undefined) {
    const at = reservationHash(this.deps.lookupKey, clientId, directedId);
    const read = this.#checkGrant(grants.reservationRead, "reservation", RecordOperation.READ, at);
    this.#checkGrant(grants.reservationUpdate?.grant, "reservation", RecordOperation.UPDATE, at);
    this.#checkGrant(grants.reservationCreate?.grant, "reservation", RecordOperation.CREATE, at);
    const [update, create] = [grants.reservationUpdate!, grants.reservationCreate!];
    for (const write of [update, create]) {
      const reservation = await this.#record("reservation", write.record);
      const names = uid === undefined ? !Object.hasOwn(reservation, "uid") : reservation.uid === uid;
      if (!names || reservation.client_id !== clientId || reservation.directed_id !== directedId || Object.keys(reservation).some((k) => !["client_id", "directed_id", "uid", "iss", "aud", "iat"].includes(k))) {
        throw new ProtocolViolation(uid === undefined
          ? "Token's tombstone is not an anonymous reservation of the released directed id"
          : "Token's reservation does not move the merged directed id to the surviving user");
      }
    }
    return { read, update, create };
  }

  /**
   * Unlinks `target` from the wallet of user `uid` (docs/transactions.md), after the
   * unlink session's forced fresh login begun at `started` at another account of that
   * wallet. Token's wallet must be the one read without `target` and with one history
   * entry, and its delete grant must be `target`'s Subject Record's; both are written in
   * one WriteRecords.
   */
  async unlinkSubject(sessionToken: string, started: number, upstream: UpstreamResult, uid: string, target: { iss: string; sub: string }): Promise<void> {
    freshEnough(upstream, { maxAge: 0, promptLogin: true, started, demandedBy: "transaction" });
    if (upstream.iss === target.iss && upstream.sub === target.sub) throw new UnlinkRefused("an account cannot unlink itself: confirm with another account of the wallet");

    const step = this.#step();
    const found = await this.#user(step, sessionToken, upstream, uid);
    if (!found.stored) throw new NotLinked();
    const walletRes = await this.deps.encryption.readRecord({ accessToken: found.walletRead.accessToken }, step.call());
    const { walletRecord, wallet } = await this.#wallet(step, found.user.sessionToken, walletRes, uid);
    const kept = wallet.subjects.filter((s) => !(s.iss === target.iss && s.sub === target.sub));
    if (kept.length === wallet.subjects.length) throw new UnlinkRefused("the account to unlink is not one of this wallet's");
    if (kept.length === 0) throw new UnlinkRefused("a wallet's last account cannot be unlinked");

    const res = await this.deps.token.unlinkSubject({ sessionToken: found.user.sessionToken, walletRecord, walletReceipt: walletRes.receipt }, step.call());
    const walletWrite = res.wallet;
    if (!walletWrite) throw new ProtocolViolation("Token returned no unlink");
    this.#checkGrant(walletWrite.grant, "wallet", RecordOperation.UPDATE, walletHash(this.deps.lookupKey, uid));
    const subjectDelete = this.#checkGrant(res.subjectDelete, "subject", RecordOperation.DELETE, subjectHash(this.deps.lookupKey, target.iss, target.sub));
    checkTransacted(wallet, await this.#record("wallet", walletWrite.record), { subjects: kept }, { kind: "unlink", iss: target.iss });
    try {
      await this.deps.encryption.writeRecords({ writes: [
        { accessToken: walletWrite.grant!.accessToken, record: walletWrite.record, expectedVersion: walletRes.version },
        { accessToken: subjectDelete.accessToken },
      ] }, step.call());
    } catch (error) {
      if (walletMovedOn(error)) throw new WalletChanged();
      throw error;
    }
  }

  /**
   * Sets the wallet of user `uid`'s recovery threshold to `threshold`, after the threshold
   * session's forced fresh login begun at `started` at a sign-in account of that wallet.
   * Token's wallet must be the one read with only that threshold and one history entry;
   * it is written at the version read.
   */
  async setRecoveryThreshold(sessionToken: string, started: number, upstream: UpstreamResult, uid: string, threshold: number): Promise<void> {
    freshEnough(upstream, { maxAge: 0, promptLogin: true, started, demandedBy: "transaction" });
    const step = this.#step();
    const found = await this.#user(step, sessionToken, upstream, uid);
    if (!found.stored) throw new NotLinked();
    const walletRes = await this.deps.encryption.readRecord({ accessToken: found.walletRead.accessToken }, step.call());
    const { walletRecord, wallet } = await this.#wallet(step, found.user.sessionToken, walletRes, uid);
    const res = await this.deps.token.setRecoveryThreshold({ sessionToken: found.user.sessionToken, walletRecord, walletReceipt: walletRes.receipt }, step.call());
    const write = res.wallet;
    if (!write) throw new ProtocolViolation("Token returned no wallet");
    this.#checkGrant(write.grant, "wallet", RecordOperation.UPDATE, walletHash(this.deps.lookupKey, uid));
    checkTransacted(wallet, await this.#record("wallet", write.record), { recovery: { threshold } }, { kind: "threshold", iss: upstream.iss, threshold });
    try {
      await this.deps.encryption.updateRecord({ accessToken: write.grant!.accessToken, record: write.record, expectedVersion: walletRes.version }, step.call());
    } catch (error) {
      if (walletMovedOn(error)) throw new WalletChanged();
      throw error;
    }
  }

  /**
   * A claims update's fresh login, begun at `started`, at an account of the wallet of
   * user `uid`: the wallet as stored, and what that account's OP ID Token offers, for
   * the user to choose from.
   */
  async openClaims(sessionToken: string, started: number, upstream: UpstreamResult, uid: string): Promise<{ state: ClaimsState; wallet: RecordClaims["wallet"] }> {
    freshEnough(upstream, { maxAge: 0, promptLogin: true, started, demandedBy: "transaction" });
    const step = this.#step();
    const found = await this.#user(step, sessionToken, upstream, uid);
    if (!found.stored) throw new NotLinked();
    const walletRes = await this.deps.encryption.readRecord({ accessToken: found.walletRead.accessToken }, step.call());
    const { walletRecord, wallet } = await this.#wallet(step, found.user.sessionToken, walletRes, uid);
    const state: ClaimsState = {
      sessionToken: found.user.sessionToken, uid, walletRecord, walletReceipt: walletRes.receipt, walletVersion: Number(walletRes.version),
      iss: upstream.iss, offered: walletClaimsOf(upstream.claims),
    };
    return { state, wallet };
  }

  /**
   * Takes `names` into the wallet from the claims session's OP ID Token: Token's wallet
   * must be the one read with exactly those values (by Orchestration's own reading of
   * that token), their source recorded, and one history entry; it is written at the
   * version read.
   */
  async updateClaims(state: ClaimsState, names: readonly string[]): Promise<void> {
    const step = this.#step();
    const held = await this.#record("wallet", state.walletRecord);
    const expected = takeClaims(held.claims, state.offered, names);
    if ("refused" in expected) throw new ProtocolViolation(`the claims chosen cannot be taken: ${expected.refused}`);
    const res = await this.deps.token.updateClaims({ sessionToken: state.sessionToken, walletRecord: state.walletRecord, walletReceipt: state.walletReceipt, claims: [...names] }, step.call());
    const write = res.wallet;
    if (!write) throw new ProtocolViolation("Token returned no wallet");
    this.#checkGrant(write.grant, "wallet", RecordOperation.UPDATE, walletHash(this.deps.lookupKey, state.uid));
    const sources = { ...held.sources, ...Object.fromEntries(expected.taken.map((name) => [name, state.iss])) };
    checkTransacted(held, await this.#record("wallet", write.record), { claims: expected.claims, sources }, { kind: "claims", iss: state.iss });
    try {
      await this.deps.encryption.updateRecord({ accessToken: write.grant!.accessToken, record: write.record, expectedVersion: BigInt(state.walletVersion) }, step.call());
    } catch (error) {
      if (walletMovedOn(error)) throw new WalletChanged();
      throw error;
    }
  }

  /**
   * Changes what app `clientId` receives of user `uid` (docs/transactions.md, release
   * changes), after the release session's forced fresh login begun at `started` at an
   * account of the wallet: claims withdrawn (`keep`, the same directed id), or the user
   * forgotten there (`forget`: the release deleted, its directed id's reservation made a
   * tombstone). Token's writes must be exactly that, with the wallet's history entry;
   * all are written in one WriteRecords.
   */
  async changeRelease(sessionToken: string, started: number, upstream: UpstreamResult, uid: string, clientId: string, change: { forget: true } | { keep: readonly string[] }): Promise<void> {
    freshEnough(upstream, { maxAge: 0, promptLogin: true, started, demandedBy: "transaction" });
    const step = this.#step();
    const key = this.deps.lookupKey;
    const found = await this.#user(step, sessionToken, upstream, uid);
    if (!found.stored) throw new NotLinked();
    const { wallet, walletRes, releases } = await this.#walletAndReleases(step, found, upstream);
    const read = releases.find((r) => r.clientId === clientId);
    if (!read?.release) throw new NoRelease();
    const forget = "forget" in change;
    const res = await this.deps.token.changeRelease({
      sessionToken: found.user.sessionToken, walletRecord: walletRes.record, walletReceipt: walletRes.receipt,
      release: { record: read.record, receipt: read.receipt }, keepClaims: forget ? [] : [...change.keep], forget,
    }, step.call());

    const walletWrite = res.wallet;
    if (!walletWrite) throw new ProtocolViolation("Token returned no wallet");
    this.#checkGrant(walletWrite.grant, "wallet", RecordOperation.UPDATE, walletHash(key, uid));
    checkTransacted(wallet, await this.#record("wallet", walletWrite.record), {}, { kind: "release", iss: upstream.iss, client_id: clientId });
    const writes: Array<{ accessToken: string; record?: string; expectedVersion?: bigint }> = [
      { accessToken: walletWrite.grant!.accessToken, record: walletWrite.record, expectedVersion: walletRes.version },
    ];
    const releaseKey = releaseHash(key, uid, clientId);
    if (forget) {
      const releaseDelete = this.#checkGrant(res.releaseDelete, "release", RecordOperation.DELETE, releaseKey);
      // The release's own directed id, and a merge's ids at this app: each reservation made a tombstone.
      const merged = read.release.merged_subs ?? [];
      if (res.mergedSubTombstones.length !== merged.length || res.mergedSubTombstones.some((t, i) => t.directedId !== merged[i])) {
        throw new ProtocolViolation("Token's tombstones are not for exactly the release's merged_subs");
      }
      const tombstones = [
        { directedId: read.release.directed_id, ...(await this.#checkTombstone(res, clientId, read.release.directed_id)) },
        ...await Promise.all(res.mergedSubTombstones.map(async (t) => ({
          directedId: t.directedId,
          ...(await this.#checkReservation({ reservationRead: t.read, reservationUpdate: t.update, reservationCreate: t.create }, clientId, t.directedId, undefined)),
        }))),
      ];
      writes.push({ accessToken: releaseDelete.accessToken, expectedVersion: read.version });
      for (const tombstone of tombstones) {
        const reservation = await this.deps.encryption.readRecord({ accessToken: tombstone.read.accessToken }, step.call());
        if (reservation.result.case === "record") {
          const stored = await this.#record("reservation", reservation.result.value);
          if (stored.uid !== uid || stored.directed_id !== tombstone.directedId) throw new ProtocolViolation("the reservation of this app's directed id is not this user's");
          writes.push({ accessToken: tombstone.update.grant!.accessToken, record: tombstone.update.record, expectedVersion: reservation.version });
        } else if (reservation.result.case === "errorToken") {
          writes.push({ accessToken: tombstone.create.grant!.accessToken, record: tombstone.create.record });
        } else {
          throw new ProtocolViolation("the reservation read returned nothing");
        }
      }
    } else {
      const releaseWrite = res.release;
      this.#checkGrant(releaseWrite?.grant, "release", RecordOperation.UPDATE, releaseKey);
      const changed = await this.#record("release", releaseWrite!.record);
      const expected = read.release.claims.filter((name) => change.keep.includes(name));
      if (changed.uid !== uid || changed.client_id !== clientId || changed.directed_id !== read.release.directed_id || changed.reserved !== read.release.reserved ||
        JSON.stringify(changed.claims) !== JSON.stringify(expected)) {
        throw new ProtocolViolation("Token's release is not this app's release with only the claims kept");
      }
      writes.push({ accessToken: releaseWrite!.grant!.accessToken, record: releaseWrite!.record, expectedVersion: read.version });
    }
    await this.deps.pause?.("release-changing");
    try {
      await this.deps.encryption.writeRecords({ writes }, step.call());
    } catch (error) {
      if (walletMovedOn(error)) throw new WalletChanged();
      throw error;
    }
  }

  /**
   * The wallet and the user's release at each app Orchestration serves, as read with
   * AuthorizeUser's grants (an account or transaction session's). Only reads of this
   * user's release at those apps are made, each app once.
   */
  async #walletAndReleases(step: StepDeadline, found: StoredUser, upstream: UpstreamResult) {
    const { user, subject, walletRead } = found;
    if (user.releaseRead) throw new ProtocolViolation("Token granted an account session an app's release read");
    const read = await this.#walletWithReleases(step, user.sessionToken, walletRead, user.accountReleaseReads, subject.uid);
    if (!read.wallet.subjects.some((s) => s.iss === upstream.iss && s.sub === upstream.sub)) {
      throw new ProtocolViolation("the wallet does not list the subject the user signed in with");
    }
    return { wallet: read.wallet, walletRes: { record: read.walletRecord, receipt: read.walletRes.receipt, version: read.walletRes.version }, releases: read.releases };
  }

  /**
   * Token's reads of user `uid`'s release at each app Orchestration serves, and nothing
   * else: never a read of another user's release, nor of one app twice. The app of each, by hash.
   */
  #appReleaseReads(grants: readonly AccessGrant[], uid: string): Map<string, string> {
    const apps = new Map((this.deps.clientIds ?? []).map((id) => [releaseHash(this.deps.lookupKey, uid, id), id]));
    const asked = new Set<string>();
    for (const grant of grants) {
      if (grant.kind !== RECORD_KIND.release || grant.operation !== RecordOperation.READ || !apps.has(grant.hash) || asked.has(grant.hash)) {
        throw new ProtocolViolation("Token's release grant is not for this user's release at an app hello-mesh serves");
      }
      asked.add(grant.hash);
    }
    // And one at every app: a read left out would hide that app's release from a delete or a merge.
    if (asked.size !== apps.size) throw new ProtocolViolation("Token's release grants are not for this user's release at every app hello-mesh serves");
    return apps;
  }

  /** The answers to the release reads `grants` (of user `uid`, apps by hash): each release, checked to be that user's at that app, or none. */
  async #releasesRead(answers: ReadonlyArray<Awaited<ReturnType<LoginDriverDeps["encryption"]["readRecord"]>>>, grants: readonly AccessGrant[], apps: Map<string, string>, uid: string) {
    const releases: ReleaseRead[] = [];
    for (const [i, res] of answers.entries()) {
      const clientId = apps.get(grants[i]!.hash)!;
      if (res.result.case === "errorToken") { // no release at this app
        releases.push({ clientId, record: "", receipt: "", version: 0n, errorToken: res.result.value });
        continue;
      }
      if (res.result.case !== "record") throw new ProtocolViolation("a release read returned nothing");
      const release = await this.#record("release", res.result.value);
      if (release.uid !== uid || release.client_id !== clientId) {
        throw new ProtocolViolation("the release record is not this user's at that app");
      }
      releases.push({ clientId, record: res.result.value, receipt: res.receipt, version: res.version, errorToken: "", release });
    }
    return releases;
  }

  /**
   * The rest of a delete, from its deletion record as stored (written by this delete,
   * or met by any later sign-in): Token's grants, checked against the deletion record,
   * then used in order. Each release's reservation becomes a tombstone naming no one
   * before the release goes; the Subject Records go next, and the deletion record last,
   * so that until the end a sign-in of any subject still finds what is left to delete.
   * A record already gone (an earlier attempt's) is no failure.
   */
  async #finishDelete(step: StepDeadline, sessionToken: string, uid: string, deletionRecord: string, deletion: WalletDeletionRecord, receipt: string) {
    const res = await this.deps.token.finishDelete({ sessionToken, deletionRecord, deletionReceipt: receipt }, step.call());
    const plan = await this.#checkFinish(res, uid, deletion);
    await Promise.all(plan.releases.map(async ({ read, update, create: created, releaseDelete, directedId, clientId }) => {
      const found = await this.deps.encryption.readRecord({ accessToken: read.accessToken }, step.call());
      if (found.result.case === "record") {
        const stored = await this.#record("reservation", found.result.value);
        if (stored.client_id !== clientId || stored.directed_id !== directedId) throw new ProtocolViolation("the reservation read is not the one the deletion lists");
        if (stored.uid !== undefined && stored.uid !== uid) throw new ProtocolViolation("a reservation the deletion lists names another user");
        if (stored.uid !== undefined) {
          await this.deps.encryption.updateRecord({ accessToken: update.grant!.accessToken, record: update.record, expectedVersion: found.version }, step.call());
        }
      } else if (found.result.case === "errorToken") {
        // A release from before reservations: its id is reserved now, as a tombstone.
        await this.deps.encryption.createRecord({ accessToken: created.grant!.accessToken, record: created.record }, step.call());
      } else {
        throw new ProtocolViolation("the reservation read returned nothing");
      }
      await this.#gone(this.deps.encryption.deleteRecord({ accessToken: releaseDelete.accessToken }, step.call()));
    }));
    // The credential wallet's records: each issuer told first (no client can sign for a
    // deleted wallet, so the wallet server's own UNLINK, NO_CLIENT; in a running
    // Orchestration, queued and sent by its background work), never holding up the delete:
    // an issuer that cannot be reached does not keep a user's wallet alive. A credential
    // that ended answers NO_CHANGE at its issuer.
    await Promise.all((deletion.credentials ?? []).map(async (credential) => {
      try {
        await this.deps.unlinkCredential?.(credential);
      } catch (error) {
        this.deps.onUnlinkFailure?.(error, credential);
      }
    }));
    for (const grant of [...plan.credentials, ...plan.s2sSessions, ...(plan.holdings ? [plan.holdings] : [])]) {
      await this.#gone(this.deps.encryption.deleteRecord({ accessToken: grant.accessToken }, step.call()));
    }
    for (const grant of plan.subjects) await this.#gone(this.deps.encryption.deleteRecord({ accessToken: grant.accessToken }, step.call()));
    await this.#gone(this.deps.encryption.deleteRecord({ accessToken: plan.wallet.accessToken }, step.call()));
  }

  /** FinishDelete's grants are exactly the deletion record's: its releases' and subjects' records, and the wallet; tombstones name no one. */
  async #checkFinish(res: FinishDeleteResponse, uid: string, deletion: WalletDeletionRecord) {
    const key = this.deps.lookupKey;
    const releases = [];
    if (res.releases.length !== deletion.releases.length) throw new ProtocolViolation("Token's delete grants are not for exactly the deletion record's releases");
    for (const [i, { client_id: clientId, directed_id: directedId }] of deletion.releases.entries()) {
      const r = res.releases[i]!;
      if (r.clientId !== clientId) throw new ProtocolViolation("Token's delete grants are not for exactly the deletion record's releases");
      const tombstone = await this.#checkTombstone(r, clientId, directedId);
      const releaseDelete = this.#checkGrant(r.releaseDelete, "release", RecordOperation.DELETE, releaseHash(key, uid, clientId));
      releases.push({ clientId, directedId, ...tombstone, releaseDelete });
    }
    const wanted = deletion.subjects.map((s) => subjectHash(key, s.iss, s.sub));
    if (res.subjectDeletes.length !== wanted.length) throw new ProtocolViolation("Token's delete grants are not for exactly the wallet's subjects");
    const subjects = res.subjectDeletes.map((grant, i) => this.#checkGrant(grant, "subject", RecordOperation.DELETE, wanted[i]!));
    const credentialHashes = (deletion.credentials ?? []).map((c) => credentialHash(key, c.issuer, c.session_id, c.credential_instance_id));
    const sessionHashes = (deletion.s2s_sessions ?? []).map((s) => s2sSessionHash(key, s.issuer, s.session_id));
    if (res.credentialDeletes.length !== credentialHashes.length || res.s2sSessionDeletes.length !== sessionHashes.length || (res.holdingsDelete !== undefined) !== (deletion.holdings === true)) {
      throw new ProtocolViolation("Token's delete grants are not for exactly the deletion record's credential holdings");
    }
    const credentials = res.credentialDeletes.map((grant, i) => this.#checkGrant(grant, "credential", RecordOperation.DELETE, credentialHashes[i]!));
    const s2sSessions = res.s2sSessionDeletes.map((grant, i) => this.#checkGrant(grant, "s2s-session", RecordOperation.DELETE, sessionHashes[i]!));
    const holdings = deletion.holdings ? this.#checkGrant(res.holdingsDelete, "holdings", RecordOperation.DELETE, holdingsHash(key, uid)) : undefined;
    const wallet = this.#checkGrant(res.walletDelete, "wallet", RecordOperation.DELETE, walletHash(key, uid));
    return { releases, subjects, credentials, s2sSessions, holdings, wallet };
  }

  /**
   * Token's grants that make the reservation of `directedId` at `clientId` a tombstone:
   * a read of it, and the tombstone as an update and as a create, each at its hash, the
   * tombstone naming no one.
   */
  #checkTombstone(grants: { reservationRead?: AccessGrant | undefined; tombstoneUpdate?: RecordWrite | undefined; tombstoneCreate?: RecordWrite | undefined },
    clientId: string, directedId: string) {
    return this.#checkReservation({ reservationRead: grants.reservationRead, reservationUpdate: grants.tombstoneUpdate, reservationCreate: grants.tombstoneCreate }, clientId, directedId, undefined);
  }

  /** A delete whose record is gone already (an earlier attempt's, or a concurrent one's) is done. */
  async #gone(deleting: Promise<unknown>): Promise<void> {
    try {
      await deleting;
    } catch (error) {
      if (!(error instanceof ConnectError && error.code === Code.NotFound)) throw error;
    }
  }

  /**
   * Steps 3, 4 and 6's AuthorizeUser, a login's or an account session's: Token's own
   * reading of the OP ID Token, the subject read, and either Storage's "no record"
   * (with the session to go on with) or the stored, checked subject and the user's
   * wallet read.
   */
  async #user(step: StepDeadline, sessionToken: string, upstream: UpstreamResult, expectedUid?: string, role: "sign-in" | "recovery" = "sign-in") {
    const authorized = await this.#token(() => this.deps.token.authorizeSubject({ sessionToken, opIdToken: upstream.idToken }, step.call()));
    const subjectRead = this.#checkGrant(authorized.subjectRead, "subject", RecordOperation.READ,
      subjectHash(this.deps.lookupKey, upstream.iss, upstream.sub));
    const read = await this.deps.encryption.readRecord({ accessToken: subjectRead.accessToken }, step.call());
    if (read.result.case === "errorToken") return { stored: false as const, sessionToken: authorized.sessionToken, errorToken: read.result.value };
    if (read.result.case !== "record") throw new ProtocolViolation("the subject read returned nothing");
    const subjectRecord = read.result.value;
    // A recovery account's Subject Record has a type of its own: only a recovery takes it, and a recovery takes only it.
    const { subject, recovery } = await this.#subject(subjectRecord);
    if (subject.op_iss !== upstream.iss || subject.op_sub !== upstream.sub) {
      throw new ProtocolViolation("the subject record is not the upstream subject's");
    }
    // A transaction's sign-in must be at a subject of the wallet it began from.
    if (expectedUid !== undefined && subject.uid !== expectedUid) throw new NotLinked();
    if (recovery && role !== "recovery") throw new RecoveryAccountOnly();
    if (!recovery && role === "recovery") throw new RecoveryRefused("the account signed in with is not a recovery account: a recovery is proven by recovery accounts only");
    await this.deps.pause?.("subject-read");
    const user = await this.deps.token.authorizeUser({ sessionToken: authorized.sessionToken, subjectRecord, subjectReceipt: read.receipt }, step.call());
    const walletRead = this.#checkGrant(user.walletRead, "wallet", RecordOperation.READ, walletHash(this.deps.lookupKey, subject.uid));
    return { stored: true as const, user, subjectRecord, subject, walletRead };
  }

  /**
   * The wallet read's answer: the user's stored wallet. A deletion record there is a
   * delete that stopped part-way, and this session finishes it; no wallet at all is a
   * delete that finished after this sign-in read its subject. Either way the user is
   * told the wallet is deleted (WalletDeleted).
   */
  async #wallet(step: StepDeadline, sessionToken: string, res: Awaited<ReturnType<LoginDriverDeps["encryption"]["readRecord"]>>, uid: string) {
    if (res.result.case === "errorToken") throw new WalletDeleted();
    if (res.result.case !== "record") throw new ProtocolViolation("the wallet read returned nothing");
    const walletRecord = res.result.value;
    if (typOf(walletRecord) === WALLET_DELETION_RECORD.typ) {
      const deletion = await this.#deletion(walletRecord);
      if (deletion.uid !== uid) throw new ProtocolViolation("the wallet deletion record is not the subject's user's");
      await this.#finishDelete(step, sessionToken, uid, walletRecord, deletion, res.receipt);
      throw new WalletDeleted();
    }
    const wallet = await this.#record("wallet", walletRecord);
    if (wallet.uid !== uid) throw new ProtocolViolation("the wallet record is not the subject's user's");
    return { walletRecord, wallet };
  }

  async #token<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (error instanceof ConnectError && error.code === Code.PermissionDenied && error.rawMessage.startsWith(LOGIN_REQUIRED)) {
        throw new LoginRequired(error.rawMessage.slice(LOGIN_REQUIRED.length));
      }
      throw error;
    }
  }

  #checkGrant(grant: AccessGrant | undefined, kind: RecordKindName, op: RecordOperation, expectedHash: string): AccessGrant {
    if (!grant || grant.kind !== RECORD_KIND[kind] || grant.operation !== op || grant.hash !== expectedHash) {
      throw new ProtocolViolation(`Token's ${kind} grant is not for the ${kind} record this login needs`);
    }
    return grant;
  }

  #record<K extends RecordKindName>(kind: K, record: string): Promise<RecordClaims[K]> {
    return this.#verified<RecordClaims[K]>(RECORD_TYPES[kind], record, `${kind} record`);
  }

  /** A Subject Record of either type: a sign-in account's, or a recovery account's (`recovery`). */
  async #subject(record: string): Promise<{ subject: RecordClaims["subject"]; recovery: boolean }> {
    // The header's typ only chooses which type to verify as; verify checks it with the signature.
    const recovery = typOf(record) === RECOVERY_SUBJECT_RECORD.typ;
    return { subject: await this.#verified<RecordClaims["subject"]>(recovery ? RECOVERY_SUBJECT_RECORD : RECORD_TYPES.subject, record, "subject record"), recovery };
  }

  /** A wallet's deletion record (its own typ: never taken for a wallet). */
  #deletion(record: string): Promise<WalletDeletionRecord> {
    return this.#verified<WalletDeletionRecord>(WALLET_DELETION_RECORD, record, "wallet deletion record");
  }

  /** A record Token signed, of `type`, verified with Token's published keys. */
  async #verified<T>(type: TokenType, record: string, what: string): Promise<T> {
    try {
      return (await verify<T>(type, this.deps.tokenKeys(), record, what)).claims;
    } catch (error) {
      throw new ProtocolViolation(error instanceof Error ? error.message : `the ${what} is not valid`);
    }
  }
}

/**
 * The provider's auth_time as Orchestration itself read it in the OP ID Token, once it
 * meets `demand` (an app's max_age and prompt=login, or an account session's fresh
 * login); LoginRequired when it does not. Token checks its own reading too.
 */
function freshEnough(upstream: UpstreamResult, demand: FreshnessDemand): number | undefined {
  const authTime = typeof upstream.claims.auth_time === "number" ? upstream.claims.auth_time : undefined;
  const stale = authTimeProblem(authTime, demand, new Date());
  if (stale) throw new LoginRequired(stale);
  return authTime;
}

/**
 * A transaction's wallet: the wallet as read with exactly `change` made (its accounts,
 * in that order; its claims; its claims' sources), exactly one history entry (this
 * transaction, of that provider, now) added at the end, and nothing else changed.
 */
function checkTransacted(
  before: RecordClaims["wallet"], after: RecordClaims["wallet"],
  change: { subjects?: readonly WalletSubject[]; claims?: WalletClaims; sources?: Record<string, string>; recovery?: { threshold: number } },
  expected: Omit<HistoryEntry, "at">,
): void {
  const subjects = change.subjects ?? before.subjects;
  const sources = change.sources ?? before.sources ?? {};
  const recovery = change.recovery ?? before.recovery;
  const history = before.history ?? [];
  const { at, ...entry } = after.history?.at(-1) ?? { at: Number.NaN };
  const now = Math.floor(Date.now() / 1000);
  const same =
    after.uid === before.uid && after.created === before.created &&
    sameClaims(after.claims, change.claims ?? before.claims) &&
    JSON.stringify(Object.entries(after.sources ?? {}).sort()) === JSON.stringify(Object.entries(sources).sort()) &&
    canonical(after.subjects) === canonical(subjects) &&
    canonical(after.recovery) === canonical(recovery) &&
    after.history?.length === history.length + 1 &&
    canonical(after.history.slice(0, -1)) === canonical(history) &&
    canonical(entry) === canonical(expected) && Math.abs(at - now) <= MINT_CLOCK_SKEW_SECONDS &&
    Object.keys(after).every((k) => ["uid", "created", "claims", "subjects", "history", "sources", "recovery", "iss", "aud", "iat"].includes(k));
  const { kind } = expected;
  const what = kind === "claims" ? "claims update" : kind === "release" ? "release change" : kind === "threshold" ? "threshold change" : kind;
  if (!same) throw new ProtocolViolation(`Token's wallet for this ${what} is not the wallet as read with only that change and its history entry`);
}

/** `value` as JSON with every object's keys sorted: two records say the same exactly when these are equal. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v);
}

/** The same subjects, in any order. */
function sameSubjects(a: ReadonlyArray<{ iss: string; sub: string }>, b: ReadonlyArray<{ iss: string; sub: string }>): boolean {
  const key = (s: { iss: string; sub: string }) => JSON.stringify([s.iss, s.sub]);
  return sameSet(a.map(key), b.map(key));
}

/** The same releases, in any order. */
function sameReleases(a: WalletDeletionRecord["releases"], b: WalletDeletionRecord["releases"]): boolean {
  const key = (r: { client_id: string; directed_id: string }) => JSON.stringify([r.client_id, r.directed_id]);
  return sameSet(a.map(key), b.map(key));
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const set = new Set(a);
  return set.size === a.length && a.length === b.length && b.every((x) => set.has(x));
}

/** The same claim names with the same values. */
function sameClaims(a: WalletClaims, b: WalletClaims): boolean {
  const names = Object.keys(a);
  return names.length === Object.keys(b).length && names.every((name) => Object.hasOwn(b, name) && a[name] === b[name]);
}

/** A write at the wallet's version refused: the wallet moved on since it was read (ABORTED), or is gone (NOT_FOUND). */
function walletMovedOn(error: unknown): boolean {
  return error instanceof ConnectError && (error.code === Code.Aborted || error.code === Code.NotFound);
}

/** A lost race: another login created this user at the same moment. Retrying succeeds. */
export function isLostCreateRace(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.AlreadyExists;
}
