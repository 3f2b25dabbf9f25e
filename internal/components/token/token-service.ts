// Token (docs/design.md §3, §4): verifies what Orchestration presents and mints every token
// and record of a login. Each handler below is the list of checks its step names in
// docs/protocol.md, in order (checks.ts, one rule each), then what it mints: grants and
// records (grants.ts), the next session (session.ts), the app's answers (app-tokens.ts).

import { randomBytes } from "node:crypto";
import type { ConnectRouter } from "@connectrpc/connect";
import { TokenService } from "../../gen/hello/token/v1/token_service_pb.js";
import type { AllowedProvider, RegisteredClient } from "../../config/component-config.js";
import { credentialHash, holdingsHash, releaseHash, reservationHash, s2sSessionHash, subjectHash, walletHash } from "../../protocol/lookup-key.js";
import type { SigningKey, VerificationKeys } from "../../protocol/signing-keys.js";
import { releasedClaims } from "../../protocol/claims.js";
import type { UpstreamVerifier } from "./upstream.js";
import { ownKeys } from "./own-keys.js";
import { walletAccess } from "./wallet-access.js";
import { type WalletIssuerEntry, walletSessions } from "./wallet-sessions.js";
import { type Purpose, type Session, type SessionClaims, sessions as sessionTokens } from "./session.js";
import { grants as accessGrants } from "./grants.js";
import { deleteHandlers } from "./delete.js";
import { recoveryHandlers } from "./recovery.js";
import { mergeHandlers } from "./merge.js";
import { denied, invalidArgument, outOfOrder } from "../../protocol/errors.js";
import { recordBody, walletUpdates } from "./wallet-updates.js";
import { type AppAnswer, signIdToken, signKeySet, signUserinfo, userinfoClaims } from "./app-tokens.js";
import {
  type StorageWord,
  checkAbsence,
  checkAccountRole,
  checkBeginsFrom,
  checkLinkRole,
  checkThresholdTarget,
  checkClaimsRequest,
  checkClient,
  checkConsent,
  checkCreated,
  checkFreshness,
  checkHeld,
  checkNonce,
  checkOpIdToken,
  checkPkce,
  checkPrompt,
  checkProvider,
  checkReceipt,
  checkReceiptOf,
  checkRedirectUri,
  checkDpopJkt,
  checkRelease,
  checkScope,
  checkSessionProvider,
  checkStillRegistered,
  checkStored,
  checkSubject,
  checkTransactionUser,
  checkReleaseTarget,
  checkUnlinkTarget,
  transactionPurpose,
  checkWallet,
  readRequest,
} from "./checks.js";

export type { SessionClaims } from "./session.js";

export interface TokenServiceDeps {
  /** The public issuer: the `iss` of app ID Tokens. */
  readonly issuer: string;
  /** Token's signing keys as last loaded (they are reloaded when the key file changes). */
  readonly keys: () => readonly SigningKey[];
  /** Storage's published keys (Error Tokens, receipts), from Storage's mesh bundle. */
  readonly storageKeys: () => VerificationKeys;
  readonly lookupKey: Uint8Array;
  readonly clients: readonly RegisteredClient[];
  readonly upstream: UpstreamVerifier;
  readonly providers: readonly AllowedProvider[];
  /** Token's credential-wallet keys as last loaded (docs/wallet-server.md); absent: no wallet is served. */
  readonly walletKeys?: () => readonly SigningKey[];
  /** Token's issuer allow-list (docs/wallet-server.md); absent: none. */
  readonly walletIssuers?: readonly WalletIssuerEntry[];
  readonly now?: () => Date;
}

/** A user id or directed id: 128 random bits, meaningless outside hello-mesh. */
const randomId = () => randomBytes(16).toString("base64url");

export function tokenRoutes(deps: TokenServiceDeps) {
  const now = deps.now ?? (() => new Date());
  const clients = new Map(deps.clients.map((c) => [c.client_id, c]));
  const keys = ownKeys(deps.keys);
  const sessions = sessionTokens(keys, now);
  const grants = accessGrants(keys, now);
  const storage: StorageWord = { keys: deps.storageKeys, now };
  const lookup = {
    subject: (iss: string, sub: string) => subjectHash(deps.lookupKey, iss, sub),
    wallet: (uid: string) => walletHash(deps.lookupKey, uid),
    release: (uid: string, clientId: string) => releaseHash(deps.lookupKey, uid, clientId),
    reservation: (clientId: string, directedId: string) => reservationHash(deps.lookupKey, clientId, directedId),
    holdings: (uid: string) => holdingsHash(deps.lookupKey, uid),
    s2sSession: (issuer: string, sessionId: string) => s2sSessionHash(deps.lookupKey, issuer, sessionId),
    credential: (issuer: string, sessionId: string, instanceId: string) => credentialHash(deps.lookupKey, issuer, sessionId, instanceId),
  };
  /**
   * A session of `purpose` (no app) at a provider of the allow-list, bound to a fresh
   * upstream nonce and demanding a forced fresh login there: auth_time after the session
   * began (prompt_login) and no older than max_age=0 allows, by checkFreshness's rule.
   */
  async function startFresh(purpose: Exclude<Purpose, "login">, providerId: string, extra: Partial<SessionClaims> = {}) {
    const provider = checkProvider(deps.providers, providerId);
    const upstreamNonce = randomId();
    const sessionToken = await sessions.start({
      sid: randomId(),
      purpose,
      started: now().getTime(),
      prompt_login: true,
      max_age: 0,
      provider: provider.id,
      provider_iss: provider.issuer,
      upstream_nonce: upstreamNonce,
      ...extra,
    });
    return { sessionToken, upstreamNonce, providerIssuer: provider.issuer };
  }
  /** An account session's reads of its user's records: the wallet, and the user's release at each app Token knows. */
  async function accountReads(uid: string) {
    const walletRead = await grants.read("wallet", lookup.wallet(uid));
    const releaseReads = await Promise.all(deps.clients.map(async (c) => ({ clientId: c.client_id, ...(await grants.read("release", lookup.release(uid, c.client_id))) })));
    return { walletRead, releaseReads };
  }
  const deletes = deleteHandlers({ sessions, grants, keys, storage, lookup, clients: deps.clients, now });
  const updates = walletUpdates({ sessions, grants, storage, lookup, now });
  const merges = mergeHandlers({ sessions, grants, storage, lookup, now, clients: deps.clients, accountReads });
  const recoveries = recoveryHandlers({ sessions, grants, storage, lookup, now, providers: deps.providers, accountReads });
  const walletCalls = walletAccess({ walletKeys: deps.walletKeys, clients, now });
  const s2s = walletSessions({
    issuer: deps.issuer, keys, walletKeys: () => deps.walletKeys?.() ?? [], grants, storage, lookupKey: deps.lookupKey, issuers: deps.walletIssuers ?? [], now,
  });

  return (router: ConnectRouter) => {
    router.service(TokenService, {
      /** Step 1: the app's request, checked against Token's own registry, becomes a session. */
      createSession: async (req) => {
        const request = await readRequest(req.request, clients, deps.issuer, now());
        const client = checkClient(clients, request.client_id);
        checkRedirectUri(client, request.redirect_uri);
        checkDpopJkt(client, request.dpop_jkt);
        // Found out now, not after a release for the wallet client was written.
        if (client.dpop_bound_access_tokens && !walletCalls.available()) {
          throw outOfOrder("Token holds no wallet keys: its custodian has not configured keys.wallet, so the credential wallet's client cannot sign in");
        }
        checkNonce(request.nonce);
        checkScope(request.scope);
        checkPkce(request.code_challenge);
        checkPrompt(request.prompt);
        checkClaimsRequest(request.scope, request.claims);
        const provider = checkProvider(deps.providers, req.providerId);

        const upstreamNonce = randomId();
        const sessionToken = await sessions.start({
          sid: randomId(),
          started: now().getTime(),
          client_id: request.client_id,
          redirect_uri: request.redirect_uri,
          nonce: request.nonce,
          scope: request.scope,
          ...(request.claims ? { claims_request: request.claims } : {}),
          code_challenge: request.code_challenge,
          ...(request.prompt.split(" ").includes("login") ? { prompt_login: true as const } : {}),
          ...(request.max_age === undefined ? {} : { max_age: request.max_age }),
          provider: provider.id,
          provider_iss: provider.issuer,
          upstream_nonce: upstreamNonce,
          ...(request.dpop_jkt ? { dpop_jkt: request.dpop_jkt } : {}),
        });
        return { sessionToken, upstreamNonce, providerIssuer: provider.issuer };
      },

      /**
       * An account session (docs/transactions.md): no app, a provider from the allow-list,
       * and a forced fresh login there: auth_time after the session began (prompt=login)
       * and no older than max_age=0 allows, by the rule checkFreshness applies.
       */
      createAccountSession: (req) => startFresh("account", req.providerId),

      /**
       * A transaction of the wallet (docs/transactions.md), begun from an account session:
       * the same user, and a forced fresh login of its own, at a provider of the wallet
       * (AuthorizeUser checks the subject is this user's).
       */
      beginTransaction: async (req) => {
        const account = await sessions.readShared(req.accountSessionToken, "user");
        const purpose = transactionPurpose(req.kind);
        checkBeginsFrom(account, purpose);
        const unlink = checkUnlinkTarget(purpose, req.unlink);
        const app = checkReleaseTarget(purpose, clients, req.clientId);
        const recovery = checkLinkRole(purpose, req.recovery);
        const threshold = checkThresholdTarget(purpose, req.threshold);
        return startFresh(purpose, req.providerId, {
          uid: account.uid, ...(unlink ? { unlink } : {}), ...(app ? { client_id: app } : {}), ...(recovery ? { link_recovery: true } : {}), ...(threshold ? { threshold } : {}),
        });
      },

      /** A merge (merge.ts): the other wallet's account as stored, then reads of both users' records. */
      authorizeMerge: (req) => merges.authorizeMerge(req),

      /** A merge (merge.ts): both users' records as read, merged into the earlier wallet. */
      mergeWallets: (req) => merges.mergeWallets(req),

      /** A recovery (recovery.ts): its first round, with no account session, at a provider of the allow-list. */
      beginRecovery: (req) => startFresh("recovery", req.providerId, { recovered: [] }),

      /** A round of a recovery proven by its recovery account's wallet; at the threshold, the wallet's history entry (recovery.ts). */
      proveRecovery: (req) => recoveries.proveRecovery(req),

      /** The next round of a recovery, at another provider (recovery.ts). */
      nextRecoveryLogin: (req) => recoveries.nextRecoveryLogin(req),

      /** A recovery whose wallet update is stored: the user's reads, as an account session's (recovery.ts). */
      completeRecovery: (req) => recoveries.completeRecovery(req),

      /** Step 3: Token's own verification of the OP ID Token, then a read of the subject (every purpose's). */
      authorizeSubject: async (req) => {
        const session = await sessions.readShared(req.sessionToken, "started");
        const subject = await checkOpIdToken(deps.upstream, session, req.opIdToken, now());
        checkSessionProvider(subject, session);
        checkFreshness(subject.authTime, session, now());

        const hash = lookup.subject(subject.iss, subject.sub);
        const read = await grants.read("subject", hash);
        // A link reads the user's wallet too: the subject it links is usually in none.
        const walletRead = session.purpose === "link" && session.uid !== undefined ? await grants.read("wallet", lookup.wallet(session.uid)) : undefined;
        const sessionToken = await sessions.advance(session, "subject", {
          op_sub: subject.sub,
          op_claims: subject.claims,
          ...(subject.authTime === undefined ? {} : { auth_time: subject.authTime }),
          subject_hash: hash,
          subject_read: read.jti,
          ...(walletRead ? { wallet_read: walletRead.jti } : {}),
        });
        return { sessionToken, subjectRead: read.grant, ...(walletRead ? { walletRead: walletRead.grant } : {}) };
      },

      /** Step 5, a new user: Storage's "no record" for this session's read, then the user's records. */
      createUser: async (req) => {
        const session = await sessions.read(req.sessionToken, "subject");
        const ejti = await checkAbsence(storage, req.errorToken, "subject", session.subject_hash, session.subject_read);

        const uid = randomId();
        // The wallet's claims are the ones Token verified in the OP ID Token, never Orchestration's.
        const wallet = await grants.write("wallet", lookup.wallet(uid), {
          uid,
          created: Math.floor(now().getTime() / 1000),
          claims: session.op_claims ?? {},
          subjects: [{ iss: session.provider_iss, sub: session.op_sub }],
        });
        // The commit point relies on the Error Token: Storage spends its jti with this create.
        const subject = await grants.write("subject", session.subject_hash, { op_iss: session.provider_iss, op_sub: session.op_sub, uid }, ejti);
        const sessionToken = await sessions.advance(session, "created", {
          uid,
          wallet_hash: wallet.write.grant!.hash,
          wallet_create: wallet.jti,
          wallet_digest: wallet.digest,
          subject_create: subject.jti,
          subject_digest: subject.digest,
        });
        return { sessionToken, wallet: wallet.write, subject: subject.write };
      },

      /** Step 5, committed: Storage's receipts show both of this session's creates done. */
      commitUser: async (req) => {
        const session = await sessions.read(req.sessionToken, "created");
        await checkCreated(storage, req.walletReceipt, "wallet", session.wallet_hash, session.wallet_create, session.wallet_digest);
        await checkCreated(storage, req.subjectReceipt, "subject", session.subject_hash, session.subject_create, session.subject_digest);
        // A create's receipt is of version 1 (checkCreated): the wallet as this session made it.
        return { sessionToken: await sessions.advance(session, "user", { wallet_version: 1 }) };
      },

      /** Step 6, a returning user: the stored Subject Record of this session's subject, then reads of wallet and release. */
      authorizeUser: async (req) => {
        const session = await sessions.readShared(req.sessionToken, "subject");
        const { subject, recovery } = await grants.subject(req.subjectRecord);
        const digest = await checkReceipt(storage, "subject", req.subjectRecord, req.subjectReceipt, session.subject_hash, { read: session.subject_read });
        checkSubject(subject, session);
        checkTransactionUser(subject, session);
        checkAccountRole(recovery, session);
        // A merge's fresh login is at another wallet's account: AuthorizeMerge takes it.
        if (session.purpose === "merge") throw outOfOrder("a merge goes on with AuthorizeMerge");

        if (session.purpose === "recovery") {
          // A recovery's round: the wallet, which ProveRecovery reads the account's role and the threshold in.
          const walletRead = await grants.read("wallet", lookup.wallet(subject.uid));
          const sessionToken = await sessions.advance(session, "user", { uid: subject.uid, subject_digest: digest, wallet_read: walletRead.jti });
          return { sessionToken, walletRead: walletRead.grant };
        }
        if (session.purpose !== undefined) {
          // The account page's user, or a transaction's: the wallet, and the user's release at each app;
          // a delete's, the credential holdings too (AuthorizeDelete takes them).
          const { walletRead, releaseReads: reads } = await accountReads(subject.uid);
          const holdingsRead = session.purpose === "delete" ? await grants.read("holdings", lookup.holdings(subject.uid)) : undefined;
          const sessionToken = await sessions.advance(session, "user", {
            uid: subject.uid,
            subject_digest: digest,
            wallet_read: walletRead.jti,
            release_reads: Object.fromEntries(reads.map((r) => [r.clientId, r.jti])),
            ...(holdingsRead ? { holdings_read: holdingsRead.jti } : {}),
          });
          return { sessionToken, walletRead: walletRead.grant, accountReleaseReads: reads.map((r) => r.grant), ...(holdingsRead ? { holdingsRead: holdingsRead.grant } : {}) };
        }
        const walletRead = await grants.read("wallet", lookup.wallet(subject.uid));
        // Not an account session, so a login's, which holds its app from CreateSession on.
        const login = session as Session<"subject">;
        const releaseRead = await grants.read("release", lookup.release(subject.uid, login.client_id));
        const sessionToken = await sessions.advance(session, "user", {
          uid: subject.uid,
          subject_digest: digest,
          wallet_read: walletRead.jti,
          release_read: releaseRead.jti,
        });
        return { sessionToken, walletRead: walletRead.grant, releaseRead: releaseRead.grant };
      },

      /** Step 6, a release made before reservations: its directed id reserved for this user. */
      reserveDirectedId: async (req) => {
        const session = await sessions.read(req.sessionToken, "user");
        const release = await grants.record("release", req.releaseRecord);
        const digest = await checkStored(storage, "release", req.releaseRecord, req.releaseReceipt, session.release_digest,
          lookup.release(session.uid, session.client_id), { read: session.release_read, create: session.release_create });
        checkRelease(release, session);

        const reservationKey = lookup.reservation(session.client_id, release.directed_id);
        const reservation = await grants.write("reservation", reservationKey, { client_id: session.client_id, directed_id: release.directed_id, uid: session.uid });
        const read = await grants.read("reservation", reservationKey);
        const sessionToken = await sessions.advance(session, "user", { release_digest: digest });
        return { sessionToken, reservationRead: read.grant, reservation: reservation.write };
      },

      /** Step 6, after consent: a fresh read of the release (the consent page may take longer than an Error Token lives). */
      grantReleaseRead: async (req) => {
        const session = await sessions.read(req.sessionToken, "user");
        const read = await grants.read("release", lookup.release(session.uid, session.client_id));
        return { sessionToken: await sessions.advance(session, "user", { release_read: read.jti }), releaseRead: read.grant };
      },

      /** Step 6, consented: Storage's "no release" for this session's read, then a release of what the user consented to, reserved. */
      createRelease: async (req) => {
        const session = await sessions.read(req.sessionToken, "user");
        const hash = lookup.release(session.uid, session.client_id);
        const ejti = await checkAbsence(storage, req.errorToken, "release", hash, session.release_read);
        const wallet = await grants.record("wallet", req.walletRecord);
        const walletHash = lookup.wallet(session.uid);
        // The wallet this session holds already (it made it), or shown stored by this session's read, at a version.
        const stored = session.wallet_digest !== undefined
          ? { digest: checkHeld("wallet", req.walletRecord, session.wallet_digest), version: session.wallet_version }
          : await checkReceiptOf(storage, "wallet", req.walletRecord, req.walletReceipt, walletHash, { read: session.wallet_read });
        checkWallet(wallet, session);
        checkConsent(req.consentedClaims, session, wallet);

        // A new directed id, reserved (written only if absent) before the release names it.
        const directedId = randomId();
        const reservation = await grants.write("reservation", lookup.reservation(session.client_id, directedId), {
          client_id: session.client_id,
          directed_id: directedId,
          uid: session.uid,
        });
        const release = await grants.write("release", hash, {
          uid: session.uid,
          client_id: session.client_id,
          directed_id: directedId,
          claims: [...new Set(req.consentedClaims)],
          reserved: true,
        }, ejti);
        // The wallet unchanged, rewritten at the version read: the release lands with it or not at all (WriteRecords).
        const rewrite = stored.version === undefined ? undefined : await grants.update("wallet", walletHash, recordBody(wallet), { version: stored.version });
        const sessionToken = await sessions.advance(session, "user", {
          wallet_digest: stored.digest,
          ...(stored.version === undefined ? {} : { wallet_version: stored.version }),
          release_create: release.jti,
        });
        return { sessionToken, release: release.write, reservation: reservation.write, ...(rewrite ? { wallet: rewrite.write } : {}) };
      },

      /**
       * Step 6, prompt=consent with a change: the app's release rewritten with the claims the
       * user chose (an added one asked for and held, as a consent's), and the wallet rewritten
       * unchanged, both at the versions read, so that a delete and this exclude each other.
       */
      updateRelease: async (req) => {
        const session = await sessions.read(req.sessionToken, "user");
        const hash = lookup.release(session.uid, session.client_id);
        const release = await grants.record("release", req.releaseRecord);
        const releaseRead = await checkReceiptOf(storage, "release", req.releaseRecord, req.releaseReceipt, hash, { read: session.release_read });
        checkRelease(release, session);
        if (release.reserved !== true) throw denied("the release predates reservations: its directed id is reserved first (ReserveDirectedId)");
        const wallet = await grants.record("wallet", req.walletRecord);
        const walletHash = lookup.wallet(session.uid);
        const walletRead = await checkReceiptOf(storage, "wallet", req.walletRecord, req.walletReceipt, walletHash, { read: session.wallet_read });
        checkWallet(wallet, session);
        const claims = [...new Set(req.claims)];
        checkConsent(claims.filter((name) => !release.claims.includes(name)), session, wallet);
        if (claims.length === release.claims.length && claims.every((name) => release.claims.includes(name))) {
          throw invalidArgument("claims are the release's already: nothing to update (MintIdToken takes the release as read)");
        }

        const releaseWrite = await grants.update("release", hash, { ...recordBody(release), claims }, { version: releaseRead.version });
        const rewrite = await grants.update("wallet", walletHash, recordBody(wallet), { version: walletRead.version });
        const sessionToken = await sessions.advance(session, "user", {
          // MintIdToken takes the release by the update's receipt, not the one held before.
          release_digest: undefined,
          release_update: releaseWrite.jti,
          wallet_digest: walletRead.digest,
          wallet_version: walletRead.version,
        });
        return { sessionToken, release: releaseWrite.write, wallet: rewrite.write };
      },

      /** Step 7: the session's own stored records, this user's and this app's, then the app's answers. */
      mintIdToken: async (req) => {
        const session = await sessions.read(req.sessionToken, "user");
        const subject = await grants.record("subject", req.subjectRecord);
        const release = await grants.record("release", req.releaseRecord);
        const wallet = await grants.record("wallet", req.walletRecord);
        checkHeld("subject", req.subjectRecord, session.subject_digest);
        await checkStored(storage, "wallet", req.walletRecord, req.walletReceipt, session.wallet_digest, lookup.wallet(session.uid), {
          read: session.wallet_read,
        });
        await checkStored(storage, "release", req.releaseRecord, req.releaseReceipt, session.release_digest,
          lookup.release(session.uid, session.client_id), // After a prompt=consent's change, only the release as changed: not the one read before it.
          session.release_update === undefined ? { read: session.release_read, create: session.release_create } : { update: session.release_update });
        checkSubject(subject, session);
        checkRelease(release, session);
        checkWallet(wallet, session);
        const client = checkStillRegistered(clients, session.client_id);

        const answer: AppAnswer = {
          issuer: deps.issuer,
          clientId: session.client_id,
          nonce: session.nonce,
          sub: release.directed_id,
          released: releasedClaims(release, wallet),
          authTime: session.auth_time,
          mergedSubs: release.merged_subs,
        };
        const t = now();
        const idToken = await signIdToken(keys.active("id-token", client.id_token_signed_response_alg), answer, t);
        const userinfoJwt = await signUserinfo(keys.active("userinfo", client.id_token_signed_response_alg), answer, t);
        // A DPoP-bound client's login (docs/wallet-server.md): the wallet access token, bound to the key its request named.
        const walletAccessToken =
          client.dpop_bound_access_tokens && session.dpop_jkt
            ? await walletCalls.mintAccessToken({ sub: session.uid!, client_id: session.client_id!, cnf: { jkt: session.dpop_jkt } })
            : "";
        return { idToken, userinfoJwt, userinfoJson: JSON.stringify(userinfoClaims(answer)), walletAccessToken };
      },

      /** A link: the new Subject Record and the wallet that lists it (wallet-updates.ts). */
      linkSubject: (req) => updates.linkSubject(req),

      /** An unlink: the wallet without the account, and its Subject Record's delete (wallet-updates.ts). */
      unlinkSubject: (req) => updates.unlinkSubject(req),

      /** A new recovery threshold (wallet-updates.ts). */
      setRecoveryThreshold: (req) => updates.setRecoveryThreshold(req),

      /** Claims taken from one of the wallet's accounts (wallet-updates.ts). */
      updateClaims: (req) => updates.updateClaims(req),

      /** Claims withdrawn from an app's release, or the user forgotten there (wallet-updates.ts). */
      changeRelease: (req) => updates.changeRelease(req),

      /** A delete's commit point: the wallet's deletion record (delete.ts). */
      authorizeDelete: (req) => deletes.authorizeDelete(req),

      /** The rest of a delete, from its deletion record as stored (delete.ts). */
      finishDelete: (req) => deletes.finishDelete(req),

      /** The app-facing key set, as the front door serves it byte for byte. */
      getKeySet: () => signKeySet(deps.keys(), keys.active("key-set")),

      /** The wallet key set, as the front door serves it at /wallet/jwks byte for byte (wallet-access.ts). */
      getWalletKeySet: () => walletCalls.keySet(keys.active("key-set")),

      /** One wallet API call: Token's access token and its DPoP proof, before any record access (wallet-access.ts). */
      authorizeWalletCall: async (req) => {
        const caller = await walletCalls.authorizeCall({ accessToken: req.accessToken, dpopProof: req.dpopProof, method: req.method, url: req.url });
        const started = await s2s.startCall(caller, req.session);
        return { clientId: caller.clientId, jkt: caller.jkt, expiresAt: BigInt(caller.expiresAt), ...started };
      },

      /** The credential wallet's records (wallet-sessions.ts). */
      listWalletIssuers: (req) => s2s.listIssuers(req.callToken),
      beginS2sSession: (req) => s2s.beginSession({ callToken: req.callToken, issuer: req.issuer, wsk: req.wsk, holdings: req.holdings?.answer, ...(req.transferFrom ? { transferFrom: req.transferFrom } : {}) }),
      attestS2sSession: (req) => s2s.attest(req),
      recordS2sStatus: (req) => s2s.recordStatus(req),
      recordS2sInstances: (req) => s2s.recordInstances(req),
      updateCredential: (req) => s2s.updateCredential(req),
      deleteCredential: (req) => s2s.deleteCredential(req),
      grantCredentialReads: (req) => s2s.grantCredentialReads(req),
      authorizeIssuerNotice: (req) => s2s.authorizeNotice(req.session),
      /** The /wallet page: an account session's user may list their credentials (wallet-sessions.ts). */
      authorizeWalletView: async (req) => {
        const account = await sessions.readOf(req.sessionToken, "user", "account");
        return s2s.startView(account.uid!, req.credential);
      },
    });
  };
}
