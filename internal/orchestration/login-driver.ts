// Orchestration's side of the login (DESIGN.md §4): it drives Token and Encryption
// through the steps and verifies everything Token returns before using it — each
// grant's kind, operation and hash (recomputed with the lookup key), and the
// identifiers in every record (signature by Token's record keys, iss/sub/uid/client).
// Writes of a new user go wallet first, subject last: the Subject Record is the commit
// point, so a crash leaves no user half made.
//
// Every call carries a deadline (docs/faults.md): at most RPC_TIMEOUT_MS per call, and
// no call outlives its login step — the mesh work of one front-door request (start,
// continue, consent) has STEP_BUDGET_MS in all. A component that hangs costs a login
// its step budget, never an unbounded wait, and Connect sends the deadline along
// (connect-timeout-ms, or grpc-timeout over gRPC) so Encryption and Storage give up at the same moment.

import { type CallOptions, Code, ConnectError, type Client } from "@connectrpc/connect";
import type { AccessGrant, TokenService } from "../gen/hello/token/v1/token_service_pb.js";
import type { EncryptionService } from "../gen/hello/encryption/v1/encryption_service_pb.js";
import { RecordOperation } from "../gen/hello/common/v1/record_pb.js";
import { verify } from "../protocol/jws.js";
import { releaseHash, subjectHash, walletHash } from "../protocol/lookup-key.js";
import type { VerificationKeys } from "../protocol/signing-keys.js";
import { RECORD_KIND, RECORD_TYPES, type RecordClaims } from "../protocol/tokens.js";
import type { RecordKindName } from "../storage/backend/record-store.js";

export interface LoginDriverDeps {
  readonly token: Client<typeof TokenService>;
  readonly encryption: Client<typeof EncryptionService>;
  readonly lookupKey: Uint8Array;
  /** Token's published keys (from Token's mesh bundle): records are checked with them. */
  readonly tokenKeys: () => VerificationKeys;
  /** Overrides of RPC_TIMEOUT_MS and STEP_BUDGET_MS. */
  readonly deadlines?: { readonly rpcMs?: number; readonly stepMs?: number };
}

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

/** Token or Storage handed Orchestration something that does not fit the session. */
export class ProtocolViolation extends Error {
  override name = "ProtocolViolation";
}

/** The app's request as Orchestration received it. */
export interface AppRequest {
  readonly clientId: string;
  readonly redirectUri: string;
  readonly nonce: string;
  readonly scope: string;
  readonly codeChallenge: string;
  readonly claims?: string;
  /** A signed request object (JAR), if the app sent one; then it is what Token checks. */
  readonly requestObject?: string;
}

/** The upstream result Orchestration verified itself (step 2). */
export interface UpstreamResult {
  readonly idToken: string;
  readonly iss: string;
  readonly sub: string;
}

/** Everything needed to continue a login after the consent page; travels encrypted. */
export interface LoginState {
  sessionToken: string;
  clientId: string;
  iss: string;
  sub: string;
  uid: string;
  subjectRecord: string;
  walletRecord: string;
  releaseErrorToken: string;
}

export type LoginOutcome =
  | { kind: "consent"; state: LoginState; wallet: RecordClaims["wallet"]; newUser: boolean }
  | { kind: "done"; idToken: string; userinfoJwt: string; userinfoJson: string; newUser: boolean };

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
            },
          },
      providerId,
    }, step.call());
    return { sessionToken: res.sessionToken, upstreamNonce: res.upstreamNonce, providerIssuer: res.providerIssuer };
  }

  /** Steps 3–7 after the upstream login: the ID Token, or the consent page first. */
  async continue(sessionToken: string, clientId: string, upstream: UpstreamResult): Promise<LoginOutcome> {
    const step = this.#step();
    const authorized = await this.deps.token.authorizeSubject({ sessionToken, opIdToken: upstream.idToken }, step.call());
    const subjectRead = this.#checkGrant(authorized.subjectRead, "subject", RecordOperation.READ,
      subjectHash(this.deps.lookupKey, upstream.iss, upstream.sub));
    const read = await this.deps.encryption.readRecord({ accessToken: subjectRead.accessToken }, step.call());

    if (read.result.case === "errorToken") return this.#newUser(step, authorized.sessionToken, clientId, upstream, read.result.value);
    if (read.result.case !== "record") throw new ProtocolViolation("the subject read returned nothing");
    const subjectRecord = read.result.value;
    const subject = await this.#record("subject", subjectRecord);
    if (subject.op_iss !== upstream.iss || subject.op_sub !== upstream.sub) {
      throw new ProtocolViolation("the subject record is not the upstream subject's");
    }
    const user = await this.deps.token.authorizeUser({ sessionToken: authorized.sessionToken, subjectRecord }, step.call());
    const walletRead = this.#checkGrant(user.walletRead, "wallet", RecordOperation.READ, walletHash(this.deps.lookupKey, subject.uid));
    const releaseRead = this.#checkGrant(user.releaseRead, "release", RecordOperation.READ,
      releaseHash(this.deps.lookupKey, subject.uid, clientId));
    const [walletRes, releaseRes] = await Promise.all([
      this.deps.encryption.readRecord({ accessToken: walletRead.accessToken }, step.call()),
      this.deps.encryption.readRecord({ accessToken: releaseRead.accessToken }, step.call()),
    ]);
    if (walletRes.result.case !== "record") throw new ProtocolViolation("the user's wallet record is missing");
    const walletRecord = walletRes.result.value;
    const wallet = await this.#record("wallet", walletRecord);
    if (wallet.uid !== subject.uid) throw new ProtocolViolation("the wallet record is not the subject's user's");

    if (releaseRes.result.case === "errorToken") {
      const state: LoginState = {
        sessionToken: user.sessionToken, clientId, iss: upstream.iss, sub: upstream.sub, uid: subject.uid,
        subjectRecord, walletRecord, releaseErrorToken: releaseRes.result.value,
      };
      return { kind: "consent", state, wallet, newUser: false };
    }
    if (releaseRes.result.case !== "record") throw new ProtocolViolation("the release read returned nothing");
    return this.#mint(step, user.sessionToken, clientId, subject.uid, subjectRecord, releaseRes.result.value, walletRecord, false);
  }

  /** After the consent page: the Release Record with the consented claims, then the ID Token. */
  async consent(state: LoginState, consentedClaims: readonly string[], newUser = false): Promise<LoginOutcome & { kind: "done" }> {
    const step = this.#step();
    const res = await this.deps.token.createRelease({
      sessionToken: state.sessionToken,
      errorToken: state.releaseErrorToken,
      walletRecord: state.walletRecord,
      consentedClaims: [...consentedClaims],
    }, step.call());
    const write = res.release!;
    this.#checkGrant(write.grant, "release", RecordOperation.CREATE, releaseHash(this.deps.lookupKey, state.uid, state.clientId));
    const release = await this.#record("release", write.record);
    if (release.uid !== state.uid || release.client_id !== state.clientId) {
      throw new ProtocolViolation("the release record is not this user's and app's");
    }
    if (release.claims.some((c) => !consentedClaims.includes(c))) {
      throw new ProtocolViolation("the release record lists claims the user did not consent to");
    }
    await this.deps.encryption.createRecord({ accessToken: write.grant!.accessToken, record: write.record }, step.call());
    return this.#mint(step, state.sessionToken, state.clientId, state.uid, state.subjectRecord, write.record, state.walletRecord, newUser);
  }

  async #newUser(step: StepDeadline, sessionToken: string, clientId: string, upstream: UpstreamResult, errorToken: string): Promise<LoginOutcome> {
    const made = await this.deps.token.createUser({ sessionToken, errorToken }, step.call());
    const subject = await this.#record("subject", made.subject!.record);
    const wallet = await this.#record("wallet", made.wallet!.record);
    if (subject.op_iss !== upstream.iss || subject.op_sub !== upstream.sub || wallet.uid !== subject.uid) {
      throw new ProtocolViolation("the new user's records do not match the upstream subject");
    }
    if (!wallet.subjects.some((s) => s.iss === upstream.iss && s.sub === upstream.sub)) {
      throw new ProtocolViolation("the new wallet does not link the upstream subject");
    }
    const walletWrite = this.#checkGrant(made.wallet!.grant, "wallet", RecordOperation.CREATE, walletHash(this.deps.lookupKey, subject.uid));
    const subjectWrite = this.#checkGrant(made.subject!.grant, "subject", RecordOperation.CREATE,
      subjectHash(this.deps.lookupKey, upstream.iss, upstream.sub));
    const releaseRead = this.#checkGrant(made.releaseRead, "release", RecordOperation.READ,
      releaseHash(this.deps.lookupKey, subject.uid, clientId));

    // Wallet first, Subject last: until the Subject Record exists, nothing reaches the wallet.
    // A lost race ends here with ALREADY_EXISTS; Token goes on only with both receipts.
    const walletWritten = await this.deps.encryption.createRecord({ accessToken: walletWrite.accessToken, record: made.wallet!.record }, step.call());
    const subjectWritten = await this.deps.encryption.createRecord({ accessToken: subjectWrite.accessToken, record: made.subject!.record }, step.call());
    const committed = await this.deps.token.commitUser({
      sessionToken: made.sessionToken,
      walletReceipt: walletWritten.receipt,
      subjectReceipt: subjectWritten.receipt,
    }, step.call());

    const release = await this.deps.encryption.readRecord({ accessToken: releaseRead.accessToken }, step.call());
    if (release.result.case !== "errorToken") throw new ProtocolViolation("a brand-new user already has a release record");
    const state: LoginState = {
      sessionToken: committed.sessionToken, clientId, iss: upstream.iss, sub: upstream.sub, uid: subject.uid,
      subjectRecord: made.subject!.record, walletRecord: made.wallet!.record, releaseErrorToken: release.result.value,
    };
    return { kind: "consent", state, wallet, newUser: true };
  }

  async #mint(step: StepDeadline, sessionToken: string, clientId: string, uid: string, subjectRecord: string, releaseRecord: string,
    walletRecord: string, newUser: boolean): Promise<LoginOutcome & { kind: "done" }> {
    const release = await this.#record("release", releaseRecord);
    if (release.uid !== uid || release.client_id !== clientId) throw new ProtocolViolation("the release record is not this user's and app's");
    const minted = await this.deps.token.mintIdToken({ sessionToken, subjectRecord, releaseRecord, walletRecord }, step.call());
    return { kind: "done", idToken: minted.idToken, userinfoJwt: minted.userinfoJwt, userinfoJson: minted.userinfoJson, newUser };
  }

  #checkGrant(grant: AccessGrant | undefined, kind: RecordKindName, op: RecordOperation, expectedHash: string): AccessGrant {
    if (!grant || grant.kind !== RECORD_KIND[kind] || grant.operation !== op || grant.hash !== expectedHash) {
      throw new ProtocolViolation(`Token's ${kind} grant is not for the ${kind} record this login needs`);
    }
    return grant;
  }

  async #record<K extends RecordKindName>(kind: K, record: string): Promise<RecordClaims[K]> {
    try {
      return (await verify<RecordClaims[K]>(RECORD_TYPES[kind], this.deps.tokenKeys(), record, `${kind} record`)).claims;
    } catch (error) {
      throw new ProtocolViolation(error instanceof Error ? error.message : `the ${kind} record is not valid`);
    }
  }
}

/** A lost race: another login created this user at the same moment. Retrying succeeds. */
export function isLostCreateRace(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.AlreadyExists;
}
