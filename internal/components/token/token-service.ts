// Token (DESIGN.md §3, §4): verifies what Orchestration presents and mints every token
// and record of a login. It trusts nothing Orchestration says that it can check
// itself: apps come from Token's own client registry, providers from its allow-list,
// OP ID Tokens are verified against keys Token fetched, wallet claims come only from
// those verified tokens, and every record and Error Token must match the session.

import { randomBytes } from "node:crypto";
import type { ConnectRouter } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { CompactSign, type JWTPayload, SignJWT, createLocalJWKSet, decodeJwt, jwtVerify } from "jose";
import {
  AccessGrantSchema,
  type AuthorizationParameters,
  TokenService,
} from "../../gen/hello/token/v1/token_service_pb.js";
import { RecordOperation } from "../../gen/hello/common/v1/record_pb.js";
import type { AllowedProvider, RegisteredClient } from "../../config/component-config.js";
import type { RecordKindName } from "../../protocol/records.js";
import { InvalidTokenError, newJti, sha256, sign, verify } from "../../protocol/jws.js";
import { releaseHash, reservationHash, subjectHash, walletHash } from "../../protocol/lookup-key.js";
import { type SigningAlg, type SigningKey, VerificationKeys, activeKey, isAppFacing, publicJwk } from "../../protocol/signing-keys.js";
import {
  ACCESS_TOKEN,
  ERROR_TOKEN,
  type ErrorClaims,
  type Operation,
  RECEIPT,
  RECORD_KIND,
  type ReceiptClaims,
  RECORD_TYPES,
  type RecordClaims,
  SESSION_TOKEN,
  ID_TOKEN_LIFETIME_SECONDS,
  USERINFO_LIFETIME_SECONDS,
  USERINFO_TYP,
} from "../../protocol/tokens.js";
import { denied, invalidArgument, outOfOrder } from "../../protocol/errors.js";
import type { UpstreamVerifier } from "./upstream.js";
import { WALLET_CLAIMS, type WalletClaims, releasedClaims, requestedClaims } from "../../protocol/claims.js";
import { LOGIN_REQUIRED, authTimeProblem } from "../../protocol/auth-time.js";

/** What a Session Token carries; each step adds to it (DESIGN.md §3). */
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

export interface TokenServiceDeps {
  /** The public issuer: the `iss` of app ID Tokens. */
  readonly issuer: string;
  /** Token's signing keys as last loaded (they are reloaded when the key file changes). */
  readonly keys: () => readonly SigningKey[];
  /** Storage's published keys (Error Tokens), from Storage's mesh bundle. */
  readonly storageKeys: () => VerificationKeys;
  readonly lookupKey: Uint8Array;
  readonly clients: readonly RegisteredClient[];
  readonly upstream: UpstreamVerifier;
  readonly providers: readonly AllowedProvider[];
  readonly now?: () => Date;
}

export { ID_TOKEN_LIFETIME_SECONDS, USERINFO_LIFETIME_SECONDS, USERINFO_TYP };
const OPERATION: Record<Operation, RecordOperation> = {
  read: RecordOperation.READ,
  create: RecordOperation.CREATE,
  update: RecordOperation.UPDATE,
  delete: RecordOperation.DELETE,
};

const randomId = () => randomBytes(16).toString("base64url");

export function tokenRoutes(deps: TokenServiceDeps) {
  const now = deps.now ?? (() => new Date());
  const clients = new Map(deps.clients.map((c) => [c.client_id, c]));

  const active = (purpose: SigningKey["purpose"], alg?: SigningAlg): SigningKey => activeKey(deps.keys(), purpose, alg);
  // Token verifies its own sessions and records with its own public keys (next, active
  // and retired alike), rebuilt only when the key set changes.
  let verification: { from: readonly SigningKey[]; keys: VerificationKeys } | undefined;
  const verificationKeys = (): VerificationKeys => {
    const keys = deps.keys();
    if (verification?.from !== keys) verification = { from: keys, keys: new VerificationKeys(keys.map(publicJwk)) };
    return verification.keys;
  };

  // --- sessions -----------------------------------------------------------------------

  async function readSession(token: string, step: SessionClaims["step"]) {
    const { claims } = await verify<SessionClaims>(SESSION_TOKEN, verificationKeys(), token, "session token", now());
    if (claims.step !== step) throw outOfOrder(`this step needs a session at step "${step}", not "${claims.step}"`);
    return claims;
  }

  /** Re-issues the session with more claims and the same expiry. */
  async function writeSession(claims: SessionClaims & Pick<JWTPayload, "iss" | "aud" | "iat" | "jti" | "exp">): Promise<string> {
    // iss, aud, iat and jti are the token's, set anew by sign(); exp is kept.
    const { iss: _iss, aud: _aud, iat: _iat, jti: _jti, exp, ...rest } = claims;
    const t = now();
    const lifetime = exp === undefined ? SESSION_TOKEN.maxLifetimeSeconds! : exp - Math.floor(t.getTime() / 1000);
    return sign(SESSION_TOKEN, active("session"), rest, { lifetimeSeconds: lifetime, now: t });
  }

  // --- grants, records, receipts and proofs of absence -------------------------------

  async function grant(op: Operation, kind: RecordKindName, hash: string, extra: { record?: string; ejti?: string } = {}) {
    const jti = newJti();
    const accessToken = await sign(
      ACCESS_TOKEN,
      active("access"),
      {
        op, kind, hash,
        ...(extra.record === undefined ? {} : { digest: sha256(extra.record) }),
        ...(extra.ejti === undefined ? {} : { ejti: extra.ejti }),
      },
      { jti, now: now() },
    );
    return { jti, grant: create(AccessGrantSchema, { accessToken, hash, kind: RECORD_KIND[kind], operation: OPERATION[op] }) };
  }

  /** A record to write, with its single-use create grant (which carries the record's digest). */
  async function write<K extends RecordKindName>(kind: K, hash: string, claims: RecordClaims[K], ejti?: string) {
    const record = await mintRecord(kind, claims);
    const created = await grant("create", kind, hash, { record, ...(ejti === undefined ? {} : { ejti }) });
    return { jti: created.jti, digest: sha256(record), write: { record, grant: created.grant } };
  }

  async function mintRecord<K extends RecordKindName>(kind: K, claims: RecordClaims[K]): Promise<string> {
    return sign(RECORD_TYPES[kind], active("record"), { ...claims }, { now: now() });
  }

  async function readRecord<K extends RecordKindName>(kind: K, record: string): Promise<RecordClaims[K]> {
    const { claims } = await verify<RecordClaims[K]>(RECORD_TYPES[kind], verificationKeys(), record, `${kind} record`, now());
    return claims;
  }

  /**
   * A record enters a session only as the stored one: Storage's receipt must answer one
   * of this session's own grants for it (its read, or its create) at this hash, with
   * this record's digest. Without that, a record Token minted but that was never
   * stored (a forked user's subject, say) is worth nothing. Returns the digest.
   */
  async function acceptRecord(
    kind: RecordKindName,
    record: string,
    receipt: string,
    hash: string | undefined,
    grants: { read?: string | undefined; create?: string | undefined },
  ): Promise<string> {
    if (!receipt) throw invalidArgument(`the ${kind} receipt is required: Storage's receipt for this session's ${kind} read`);
    const { claims } = await verify<ReceiptClaims>(RECEIPT, deps.storageKeys(), receipt, `${kind} receipt`, now());
    const digest = sha256(record);
    const answers =
      (claims.op === "read" && grants.read !== undefined && claims.ajti === grants.read) ||
      (claims.op === "create" && grants.create !== undefined && claims.ajti === grants.create);
    if (!answers || claims.kind !== kind || hash === undefined || claims.hash !== hash || claims.digest !== digest) {
      throw denied(`the ${kind} receipt does not show this ${kind} record stored for this session`);
    }
    return digest;
  }

  /** A record the session already holds: the same bytes, by digest. */
  function heldRecord(kind: RecordKindName, record: string, digest: string | undefined): string {
    if (digest === undefined || sha256(record) !== digest) throw denied(`the ${kind} record is not the one this session holds`);
    return digest;
  }

  /** The session's record, held already or shown stored now by its receipt. */
  async function sessionRecord(
    kind: RecordKindName,
    record: string,
    receipt: string,
    held: string | undefined,
    hash: string | undefined,
    grants: { read?: string | undefined; create?: string | undefined },
  ): Promise<string> {
    return held !== undefined ? heldRecord(kind, record, held) : acceptRecord(kind, record, receipt, hash, grants);
  }

  /** Storage's create receipt must answer this session's create of the record it minted. */
  async function checkCreated(receipt: string, kind: RecordKindName, hash: string | undefined, createJti: string | undefined, digest: string | undefined) {
    const { claims } = await verify<ReceiptClaims>(RECEIPT, deps.storageKeys(), receipt, `${kind} receipt`, now());
    if (claims.op !== "create" || claims.kind !== kind || claims.hash !== hash || createJti === undefined || claims.ajti !== createJti || claims.digest !== digest) {
      throw denied(`the ${kind} receipt does not answer this session's ${kind} create`);
    }
  }

  /** Storage's Error Token must answer exactly this session's read of this hash. Returns its jti. */
  async function checkAbsence(errorToken: string, kind: RecordKindName, hash: string, readJti: string | undefined): Promise<string> {
    const { claims } = await verify<ErrorClaims>(ERROR_TOKEN, deps.storageKeys(), errorToken, "error token", now());
    if (claims.op !== "read" || claims.kind !== kind || claims.hash !== hash || readJti === undefined || claims.ajti !== readJti) {
      throw denied(`the error token does not answer this session's ${kind} read`);
    }
    return claims.jti!;
  }

  // --- the app's request ---------------------------------------------------------------

  interface CheckedRequest {
    client_id: string;
    redirect_uri: string;
    nonce: string;
    scope: string;
    claims?: string | undefined;
    code_challenge: string;
    prompt: string;
    max_age?: number | undefined;
  }

  async function checkRequest(
    request: { case: "requestObject"; value: string } | { case: "parameters"; value: AuthorizationParameters } | { case: undefined },
  ): Promise<CheckedRequest> {
    let params: CheckedRequest;
    if (request.case === "parameters") {
      const p = request.value;
      params = {
        client_id: p.clientId, redirect_uri: p.redirectUri, nonce: p.nonce, scope: p.scope, claims: p.claims, code_challenge: p.codeChallenge,
        prompt: p.prompt, max_age: p.maxAge === undefined ? undefined : maxAge(p.maxAge),
      };
    } else if (request.case === "requestObject") {
      params = await verifyRequestObject(request.value);
    } else {
      throw invalidArgument("request is required: the app's request object or its parameters");
    }
    const client = clients.get(params.client_id);
    if (!client) throw denied("client_id is not registered");
    if (!client.redirect_uris.includes(params.redirect_uri)) throw denied("redirect_uri is not registered for this client");
    if (!params.nonce || params.nonce.length > 255) throw invalidArgument("nonce is required (at most 255 characters)");
    if (!params.scope.split(" ").includes("openid")) throw invalidArgument('scope must include "openid"');
    if (!/^[A-Za-z0-9_-]{43,128}$/.test(params.code_challenge)) {
      throw invalidArgument("code_challenge is required: PKCE with S256 for every client");
    }
    if (params.prompt.length > 64) throw invalidArgument("prompt is too long");
    if (params.claims) {
      try {
        requestedClaims(params.scope, params.claims);
      } catch {
        throw invalidArgument("claims is not valid JSON");
      }
    }
    return params;
  }

  /** max_age as the app sent it: 0 to 999 999 999 seconds. */
  function maxAge(value: bigint | number | string): number {
    const seconds = typeof value === "string" && /^\d{1,9}$/.test(value) ? Number(value) : typeof value === "string" ? Number.NaN : Number(value);
    if (!Number.isSafeInteger(seconds) || seconds < 0 || seconds > 999_999_999) throw invalidArgument("max_age must be a whole number of seconds");
    return seconds;
  }

  /** A signed request object (RFC 9101), verified with the client's own registered keys. */
  async function verifyRequestObject(jwt: string): Promise<CheckedRequest> {
    let clientId: unknown;
    try {
      clientId = decodeJwt(jwt).client_id;
    } catch {
      throw invalidArgument("the request object is malformed");
    }
    const client = typeof clientId === "string" ? clients.get(clientId) : undefined;
    if (!client) throw denied("the request object's client_id is not registered");
    if (!client.jwks) throw denied("this client registered no keys for signed request objects");
    let payload;
    try {
      ({ payload } = await jwtVerify(jwt, createLocalJWKSet(client.jwks as never), {
        issuer: client.client_id,
        audience: deps.issuer,
        algorithms: ["RS256", "PS256", "ES256", "EdDSA"],
        requiredClaims: ["exp", "jti", "aud"],
        maxTokenAge: "10m",
        currentDate: now(),
      }));
    } catch (error) {
      throw new InvalidTokenError("request object", error instanceof Error ? error.message.slice(0, 120) : "invalid");
    }
    const text = (name: string) => (typeof payload[name] === "string" ? (payload[name] as string) : "");
    const age = payload.max_age;
    return {
      client_id: client.client_id,
      redirect_uri: text("redirect_uri"),
      nonce: text("nonce"),
      scope: text("scope"),
      claims: payload.claims === undefined ? undefined : JSON.stringify(payload.claims),
      code_challenge: text("code_challenge"),
      prompt: text("prompt"),
      max_age: age === undefined ? undefined : typeof age === "number" || typeof age === "string" ? maxAge(age) : maxAge(Number.NaN),
    };
  }

  // --- the service -----------------------------------------------------------------------

  return (router: ConnectRouter) => {
    router.service(TokenService, {
      createSession: async (req) => {
        const params = await checkRequest(req.request);
        const provider = deps.providers.find((p) => p.id === req.providerId);
        if (!provider) throw invalidArgument("provider_id is not on Token's allow-list");
        const upstreamNonce = randomId();
        const session: SessionClaims = {
          sid: randomId(),
          step: "started",
          started: now().getTime(),
          client_id: params.client_id,
          redirect_uri: params.redirect_uri,
          nonce: params.nonce,
          scope: params.scope,
          ...(params.claims ? { claims_request: params.claims } : {}),
          code_challenge: params.code_challenge,
          ...(params.prompt.split(" ").includes("login") ? { prompt_login: true as const } : {}),
          ...(params.max_age === undefined ? {} : { max_age: params.max_age }),
          provider: provider.id,
          provider_iss: provider.issuer,
          upstream_nonce: upstreamNonce,
        };
        return { sessionToken: await writeSession(session), upstreamNonce, providerIssuer: provider.issuer };
      },

      authorizeSubject: async (req) => {
        const session = await readSession(req.sessionToken, "started");
        const subject = await deps.upstream.verify(
          session.provider,
          req.opIdToken,
          session.upstream_nonce,
          new Date(session.started),
          now(),
        );
        if (subject.iss !== session.provider_iss) throw denied("the OP ID Token is not from the session's provider");
        const stale = authTimeProblem(subject.authTime, { maxAge: session.max_age, promptLogin: session.prompt_login, started: session.started }, now());
        if (stale) throw denied(`${LOGIN_REQUIRED}${stale}`);
        const hash = subjectHash(deps.lookupKey, subject.iss, subject.sub);
        const read = await grant("read", "subject", hash);
        const sessionToken = await writeSession({
          ...session,
          step: "subject",
          op_sub: subject.sub,
          op_claims: subject.claims,
          ...(subject.authTime === undefined ? {} : { auth_time: subject.authTime }),
          subject_hash: hash,
          subject_read: read.jti,
        });
        return { sessionToken, subjectRead: read.grant };
      },

      createUser: async (req) => {
        const session = await readSession(req.sessionToken, "subject");
        const ejti = await checkAbsence(req.errorToken, "subject", session.subject_hash!, session.subject_read);
        const uid = randomId();
        const wallet = await write("wallet", walletHash(deps.lookupKey, uid), {
          uid,
          claims: session.op_claims ?? {},
          subjects: [{ iss: session.provider_iss, sub: session.op_sub! }],
        });
        // The commit point relies on the Error Token: Storage spends its jti with this create.
        const subject = await write("subject", session.subject_hash!, { op_iss: session.provider_iss, op_sub: session.op_sub!, uid }, ejti);
        const sessionToken = await writeSession({
          ...session,
          step: "created",
          uid,
          wallet_hash: wallet.write.grant.hash,
          wallet_create: wallet.jti,
          wallet_digest: wallet.digest,
          subject_create: subject.jti,
          subject_digest: subject.digest,
        });
        return { sessionToken, wallet: wallet.write, subject: subject.write };
      },

      commitUser: async (req) => {
        const session = await readSession(req.sessionToken, "created");
        await checkCreated(req.walletReceipt, "wallet", session.wallet_hash, session.wallet_create, session.wallet_digest);
        await checkCreated(req.subjectReceipt, "subject", session.subject_hash, session.subject_create, session.subject_digest);
        return { sessionToken: await writeSession({ ...session, step: "user" }) };
      },

      authorizeUser: async (req) => {
        const session = await readSession(req.sessionToken, "subject");
        const subject = await readRecord("subject", req.subjectRecord);
        const digest = await acceptRecord("subject", req.subjectRecord, req.subjectReceipt, session.subject_hash, { read: session.subject_read });
        if (subject.op_iss !== session.provider_iss || subject.op_sub !== session.op_sub) {
          throw denied("the subject record is not this session's subject");
        }
        const walletRead = await grant("read", "wallet", walletHash(deps.lookupKey, subject.uid));
        const releaseRead = await grant("read", "release", releaseHash(deps.lookupKey, subject.uid, session.client_id));
        const sessionToken = await writeSession({
          ...session,
          step: "user",
          uid: subject.uid,
          subject_digest: digest,
          wallet_read: walletRead.jti,
          release_read: releaseRead.jti,
        });
        return { sessionToken, walletRead: walletRead.grant, releaseRead: releaseRead.grant };
      },

      reserveDirectedId: async (req) => {
        const session = await readSession(req.sessionToken, "user");
        const hash = releaseHash(deps.lookupKey, session.uid!, session.client_id);
        const release = await readRecord("release", req.releaseRecord);
        const digest = await sessionRecord("release", req.releaseRecord, req.releaseReceipt, session.release_digest, hash, {
          read: session.release_read,
          create: session.release_create,
        });
        if (release.uid !== session.uid || release.client_id !== session.client_id) {
          throw denied("the release record is not this session's user and client");
        }
        const reservationKey = reservationHash(deps.lookupKey, session.client_id, release.directed_id);
        const reservation = await write("reservation", reservationKey, { client_id: session.client_id, directed_id: release.directed_id, uid: session.uid! });
        const read = await grant("read", "reservation", reservationKey);
        const sessionToken = await writeSession({ ...session, release_digest: digest });
        return { sessionToken, reservationRead: read.grant, reservation: reservation.write };
      },

      grantReleaseRead: async (req) => {
        const session = await readSession(req.sessionToken, "user");
        const read = await grant("read", "release", releaseHash(deps.lookupKey, session.uid!, session.client_id));
        return { sessionToken: await writeSession({ ...session, release_read: read.jti }), releaseRead: read.grant };
      },

      createRelease: async (req) => {
        const session = await readSession(req.sessionToken, "user");
        const hash = releaseHash(deps.lookupKey, session.uid!, session.client_id);
        const ejti = await checkAbsence(req.errorToken, "release", hash, session.release_read);
        const wallet = await readRecord("wallet", req.walletRecord);
        const walletDigest = await sessionRecord("wallet", req.walletRecord, req.walletReceipt, session.wallet_digest,
          walletHash(deps.lookupKey, session.uid!), { read: session.wallet_read });
        if (wallet.uid !== session.uid) throw denied("the wallet record is not this session's user's");
        const asked = requestedClaims(session.scope, session.claims_request);
        for (const name of req.consentedClaims) {
          if (!asked.has(name)) throw denied(`the app did not ask for the claim "${name}"`);
          if (!(WALLET_CLAIMS as readonly string[]).includes(name) || !Object.hasOwn(wallet.claims, name)) {
            throw denied(`the user's wallet holds no "${name}" claim`);
          }
        }
        const directedId = randomId();
        const reservation = await write("reservation", reservationHash(deps.lookupKey, session.client_id, directedId), {
          client_id: session.client_id,
          directed_id: directedId,
          uid: session.uid!,
        });
        const release = await write("release", hash, {
          uid: session.uid!,
          client_id: session.client_id,
          directed_id: directedId,
          claims: [...new Set(req.consentedClaims)],
          reserved: true,
        }, ejti);
        const sessionToken = await writeSession({ ...session, wallet_digest: walletDigest, release_create: release.jti });
        return { sessionToken, release: release.write, reservation: reservation.write };
      },

      mintIdToken: async (req) => {
        const session = await readSession(req.sessionToken, "user");
        const subject = await readRecord("subject", req.subjectRecord);
        const release = await readRecord("release", req.releaseRecord);
        const wallet = await readRecord("wallet", req.walletRecord);
        // Each is the stored one, this session's: held by digest, or shown by its receipt.
        heldRecord("subject", req.subjectRecord, session.subject_digest);
        await sessionRecord("wallet", req.walletRecord, req.walletReceipt, session.wallet_digest, walletHash(deps.lookupKey, session.uid!), {
          read: session.wallet_read,
        });
        await sessionRecord("release", req.releaseRecord, req.releaseReceipt, session.release_digest,
          releaseHash(deps.lookupKey, session.uid!, session.client_id), { read: session.release_read, create: session.release_create });
        if (subject.op_iss !== session.provider_iss || subject.op_sub !== session.op_sub || subject.uid !== session.uid) {
          throw denied("the subject record is not this session's subject");
        }
        if (release.uid !== session.uid || release.client_id !== session.client_id) {
          throw denied("the release record is not this session's user and client");
        }
        if (wallet.uid !== session.uid) throw denied("the wallet record is not this session's user's");
        const client = clients.get(session.client_id);
        if (!client) throw denied("the session's client is no longer registered");

        const released = releasedClaims(release, wallet);
        const t = Math.floor(now().getTime() / 1000);
        const idKey = active("id-token", client.id_token_signed_response_alg);
        const idToken = await new SignJWT({ ...released, nonce: session.nonce, ...(session.auth_time === undefined ? {} : { auth_time: session.auth_time }) })
          .setProtectedHeader({ alg: idKey.alg, kid: idKey.kid, typ: "JWT" })
          .setIssuer(deps.issuer)
          .setSubject(release.directed_id)
          .setAudience(session.client_id)
          .setIssuedAt(t)
          .setExpirationTime(t + ID_TOKEN_LIFETIME_SECONDS)
          .sign(idKey.privateKey);
        const userinfo = { sub: release.directed_id, ...released };
        const userinfoKey = active("userinfo", client.id_token_signed_response_alg);
        const userinfoJwt = await new SignJWT({ ...userinfo })
          .setProtectedHeader({ alg: userinfoKey.alg, kid: userinfoKey.kid, typ: USERINFO_TYP })
          .setIssuer(deps.issuer)
          .setAudience(session.client_id)
          .setIssuedAt(t)
          .setExpirationTime(t + USERINFO_LIFETIME_SECONDS)
          .sign(userinfoKey.privateKey);
        return { idToken, userinfoJwt, userinfoJson: JSON.stringify(userinfo) };
      },

      getKeySet: async () => {
        // Every app-facing key: next ones before they sign, retired ones while their tokens live.
        const jwks = Buffer.from(JSON.stringify({ keys: deps.keys().filter((k) => isAppFacing(k.purpose)).map(publicJwk) }));
        const key = active("key-set");
        const [header, , signature] = (
          await new CompactSign(jwks).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "hello-key-set" }).sign(key.privateKey)
        ).split(".");
        return { jwks, signature: `${header}..${signature}` };
      },
    });
  };
}
