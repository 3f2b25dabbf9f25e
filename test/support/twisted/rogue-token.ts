// TEST SUPPORT ONLY: a rogue Token — the real Token (its wiring, its handlers, its keys)
// with a malicious twist, as a compromised Token custodian would run it. The test names
// the twist per method in the control file; with none, every call is the honest one.
// What it does with Token's own keys is exactly what a compromised Token could do:
// re-sign its session tokens, records, grants, ID Tokens and userinfo answers.
//
// The attacks it plays (docs/design.md §5, issue 11):
//   mintIdToken    hand one user's login another user's `sub` and claims (it sees
//                  every directed id in MintIdToken calls), or bend one claim or rule
//                  of the ID Token or userinfo at a time
//   createUser     put into a new wallet a claim the provider never said
//   createRelease  give a new user's release another user's directed id
//   the credential wallet (issue 15):
//   updateCredential  "revive": a record the issuer's answer ended (UNLINKED) kept ACTIVE,
//                  its ciphertext kept
//   authorizeDelete   "hide-credential": a deletion record that leaves one credential out
//   beginS2sSession   "transfer-elsewhere": a transfer session taking over another session
//                  than the one asked for

import type { ConnectRouter, HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { type JWTPayload, SignJWT, decodeJwt, decodeProtectedHeader } from "jose";
import {
  AccessGrantSchema,
  AuthorizeDeleteResponseSchema,
  BeginS2sSessionResponseSchema,
  CreateReleaseResponseSchema,
  UpdateCredentialResponseSchema,
  type MintIdTokenResponse,
  MintIdTokenResponseSchema,
  RecordWriteSchema,
  TokenService,
} from "../../../internal/gen/hello/token/v1/token_service_pb.js";
import { TOKEN_KEYS, loadLookupKey, loadSigningKeys } from "../../../internal/protocol/key-files.js";
import { newJti, sha256, sign } from "../../../internal/protocol/jws.js";
import { reservationHash } from "../../../internal/protocol/lookup-key.js";
import { type KeyPurpose, type SigningAlg, activeKey } from "../../../internal/protocol/signing-keys.js";
import {
  ACCESS_TOKEN,
  type AccessClaims,
  RECORD_KIND,
  RECORD_TYPES,
  type ReleaseRecord,
  type ReservationRecord,
  SESSION_TOKEN,
  WALLET_DELETION_RECORD,
  type WalletRecord,
} from "../../../internal/protocol/tokens.js";
import { randomUUID } from "node:crypto";
import { WALLET_CLAIMS, releasedClaims } from "../../../internal/protocol/claims.js";
import { RecordOperation } from "../../../internal/gen/hello/common/v1/record_pb.js";
import type { ServiceFactory } from "../../../internal/components/runtime/component-services.js";
import type { SessionClaims } from "../../../internal/components/token/token-service.js";

type Twists = Readonly<Record<string, string>>;
type Impl = ServiceImpl<typeof TokenService>;

/** What the rogue has seen of users in MintIdToken calls: their releases and wallets. */
interface Seen {
  readonly releases: ReleaseRecord[];
  readonly wallets: Map<string, WalletRecord>;
}

const payloadOf = <T>(jws: string): T => decodeJwt(jws) as T;

export function rogueToken(honest: ServiceFactory<"token">, twists: () => Twists): ServiceFactory<"token"> {
  return async (config, deps) => {
    const service = await honest(config, deps);
    let impl: Impl | undefined;
    service.routes({
      service(descriptor: unknown, implementation: Impl) {
        if (descriptor === TokenService) impl = implementation;
      },
    } as unknown as ConnectRouter);
    if (!impl) throw new Error("the rogue Token found no TokenService to twist");
    const real = impl;
    const keys = loadSigningKeys("token", config.keys.signing, TOKEN_KEYS);
    const key = (purpose: KeyPurpose, alg?: SigningAlg) => activeKey(keys, purpose, alg);
    const lookupKey = loadLookupKey("token", config.keys.lookup);
    const seen: Seen = { releases: [], wallets: new Map() };

    /** Another user's release at the same app, as seen in an earlier MintIdToken. */
    const victimOf = (clientId: string, uid: string) => seen.releases.find((r) => r.client_id === clientId && r.uid !== uid);

    async function resignSession(token: string, change: (claims: SessionClaims & JWTPayload) => void): Promise<string> {
      const claims = payloadOf<SessionClaims & JWTPayload>(token);
      change(claims);
      const { iss: _iss, aud: _aud, iat, jti: _jti, exp, ...rest } = claims;
      return sign(SESSION_TOKEN, key("session"), rest, { lifetimeSeconds: exp! - iat!, now: new Date(iat! * 1000) });
    }

    async function resignRecordWrite<K extends "release" | "reservation">(kind: K, claims: K extends "release" ? ReleaseRecord : ReservationRecord, hash: string, ejti?: string) {
      const record = await sign(RECORD_TYPES[kind], key("record"), { ...claims });
      const jti = newJti();
      const accessToken = await sign(ACCESS_TOKEN, key("access"), {
        op: "create", kind, hash, digest: sha256(record), ...(ejti ? { ejti } : {}),
      } satisfies AccessClaims, { jti });
      return { jti, write: create(RecordWriteSchema, { record, grant: create(AccessGrantSchema, { accessToken, hash, kind: RECORD_KIND[kind], operation: RecordOperation.CREATE }) }) };
    }

    /** A record write re-signed with `claims` as its record, its grant's digest following (the same hash, operation and version). */
    async function rewrite(write: { record: string; grant?: { accessToken: string; hash: string; kind: number; operation: number } }, claims: Record<string, unknown>, type: Parameters<typeof sign>[0]) {
      const record = await sign(type, key("record"), claims);
      const { iss: _i, aud: _a, iat: _t, jti: _j, exp: _e, ...grantClaims } = payloadOf<AccessClaims & JWTPayload>(write.grant!.accessToken);
      const accessToken = await sign(ACCESS_TOKEN, key("access"), { ...grantClaims, digest: sha256(record) }, { jti: newJti() });
      return create(RecordWriteSchema, { record, grant: create(AccessGrantSchema, { ...write.grant!, accessToken }) });
    }
    const recordBody = (jws: string) => {
      const { iss: _i, aud: _a, iat: _t, ...rest } = payloadOf<Record<string, unknown>>(jws);
      return rest;
    };

    const twisted: Partial<Impl> = {
      async updateCredential(req, ctx) {
        const res = create(UpdateCredentialResponseSchema, await call(real.updateCredential, req, ctx));
        if (twists().updateCredential !== "revive" || !res.credential) return res;
        const body = recordBody(res.credential.record);
        if (body.status !== "UNLINKED") return res;
        const before = recordBody(req.credential!.record);
        return { ...res, credential: await rewrite(res.credential, { ...body, status: "ACTIVE", ...(before.credentials ? { credentials: before.credentials } : {}) }, RECORD_TYPES.credential) };
      },

      async authorizeDelete(req, ctx) {
        const res = create(AuthorizeDeleteResponseSchema, await call(real.authorizeDelete, req, ctx));
        if (twists().authorizeDelete !== "hide-credential" || !res.deletion) return res;
        const body = recordBody(res.deletion.record) as { credentials?: unknown[] };
        return { ...res, deletion: await rewrite(res.deletion, { ...body, credentials: (body.credentials ?? []).slice(1) }, WALLET_DELETION_RECORD) };
      },

      async beginS2sSession(req, ctx) {
        const res = create(BeginS2sSessionResponseSchema, await call(real.beginS2sSession, req, ctx));
        if (twists().beginS2sSession !== "transfer-elsewhere" || !res.session || !req.transferFrom) return res;
        return { ...res, session: await rewrite(res.session, { ...recordBody(res.session.record), transfer_from: randomUUID() }, RECORD_TYPES["s2s-session"]) };
      },

      async createUser(req, ctx) {
        if (twists().createUser === "verified-email") {
          // A claim the provider never said: the wallet comes from the session's op_claims.
          req = { ...req, sessionToken: await resignSession(req.sessionToken, (c) => { c.op_claims = { ...c.op_claims, email_verified: true }; }) };
        }
        return call(real.createUser, req, ctx);
      },

      async createRelease(req, ctx) {
        const res = create(CreateReleaseResponseSchema, await call(real.createRelease, req, ctx));
        const twist = twists().createRelease;
        if (!twist) return res;
        const release = payloadOf<ReleaseRecord & JWTPayload>(res.release!.record);
        const victim = victimOf(release.client_id, release.uid);
        if (twist === "steal-directed-id" && !victim) throw new Error("the rogue Token has seen no other user of this app yet");
        const directedId = twist === "steal-directed-id" ? victim!.directed_id : release.directed_id;
        const { iss: _i, aud: _a, iat: _t, ...claims } = release;
        const ejti = payloadOf<AccessClaims>(res.release!.grant!.accessToken).ejti;
        const forged = await resignRecordWrite("release", {
          ...claims,
          directed_id: directedId,
          ...(twist === "unreserved" ? { reserved: undefined } : {}),
        } as ReleaseRecord, res.release!.grant!.hash, ejti);
        // The reservation of the id the release names (for a stolen id, Storage already
        // holds the victim's), or one that names another id under that id's key.
        const reservation = await resignRecordWrite(
          "reservation",
          { client_id: release.client_id, directed_id: twist === "fresh-reservation" ? `${directedId}-other` : directedId, uid: release.uid },
          reservationHash(lookupKey, release.client_id, directedId),
        );
        const sessionToken = await resignSession(res.sessionToken, (c) => { c.release_create = forged.jti; });
        return { ...res, sessionToken, release: forged.write, reservation: reservation.write };
      },

      async mintIdToken(req, ctx) {
        const release = payloadOf<ReleaseRecord>(req.releaseRecord);
        const wallet = payloadOf<WalletRecord>(req.walletRecord);
        if (!seen.releases.some((r) => r.directed_id === release.directed_id)) seen.releases.push(release);
        seen.wallets.set(wallet.uid, wallet);
        const res = create(MintIdTokenResponseSchema, await call(real.mintIdToken, req, ctx));
        const twist = twists().mintIdToken;
        return twist ? mintTwist(twist, res, release) : res;
      },
    };

    async function mintTwist(twist: string, res: MintIdTokenResponse, release: ReleaseRecord): Promise<MintIdTokenResponse> {
      const id = decodeJwt(res.idToken);
      const info = decodeJwt(res.userinfoJwt);
      const json = JSON.parse(res.userinfoJson) as Record<string, unknown>;
      const idHeader = decodeProtectedHeader(res.idToken);
      const alg = idHeader.alg as SigningAlg;
      const signed = async (payload: JWTPayload, purpose: KeyPurpose, typ: string, signingAlg: SigningAlg = alg) => {
        const k = key(purpose, purpose === "record" ? undefined : signingAlg);
        return new SignJWT(payload).setProtectedHeader({ alg: k.alg, kid: k.kid, typ }).sign(k.privateKey);
      };
      const idToken = (payload: JWTPayload, typ = "JWT") => signed(payload, "id-token", typ);
      const userinfoJwt = (payload: JWTPayload) => signed(payload, "userinfo", "userinfo+jwt");
      const out = (changes: Partial<MintIdTokenResponse>): MintIdTokenResponse => ({ ...res, ...changes });
      const now = Math.floor(Date.now() / 1000);
      switch (twist) {
        case "steal-sub": {
          // Another user of this app: their directed id and their claims, everywhere.
          const victim = victimOf(release.client_id, release.uid);
          const wallet = victim && seen.wallets.get(victim.uid);
          if (!victim || !wallet) throw new Error("the rogue Token has seen no other user of this app yet");
          const claims = releasedClaims(victim, wallet);
          const strip = (p: JWTPayload) => Object.fromEntries(Object.entries(p).filter(([name]) => !(WALLET_CLAIMS as readonly string[]).includes(name)));
          return out({
            idToken: await idToken({ ...strip(id), ...claims, sub: victim.directed_id }),
            userinfoJwt: await userinfoJwt({ ...strip(info), ...claims, sub: victim.directed_id }),
            userinfoJson: JSON.stringify({ sub: victim.directed_id, ...claims }),
          });
        }
        case "extra-claim":
          return out({ idToken: await idToken({ ...id, email_verified: true, role: "admin" }) });
        case "changed-claim":
          return out({ idToken: await idToken({ ...id, email: "someone.else@example.org" }) });
        case "wrong-nonce":
          return out({ idToken: await idToken({ ...id, nonce: "a-nonce-the-app-never-sent" }) });
        case "wrong-aud":
          return out({ idToken: await idToken({ ...id, aud: "another-app" }) });
        case "two-aud":
          return out({ idToken: await idToken({ ...id, aud: [String(id.aud), "another-app"] }) });
        case "wrong-azp":
          return out({ idToken: await idToken({ ...id, azp: "another-app" }) });
        case "wrong-iss":
          return out({ idToken: await idToken({ ...id, iss: "https://rogue.example" }) });
        case "long-exp":
          return out({ idToken: await idToken({ ...id, exp: (id.iat ?? now) + 30 * 24 * 3600 }) });
        case "old-iat":
          return out({ idToken: await idToken({ ...id, iat: now - 3600, exp: now + 60 }) });
        case "old-auth-time":
          return out({ idToken: await idToken({ ...id, auth_time: (typeof id.auth_time === "number" ? id.auth_time : now) - 3600 }) });
        case "typ":
          return out({ idToken: await idToken(id, "at+jwt") });
        case "record-key":
          return out({ idToken: await signed(id, "record", "JWT") });
        case "userinfo-key":
          return out({ idToken: await signed(id, "userinfo", "JWT") });
        case "alg-none":
          return out({ idToken: `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${Buffer.from(JSON.stringify(id)).toString("base64url")}.` });
        case "userinfo-sub":
          return out({ userinfoJson: JSON.stringify({ ...json, sub: "someone-else" }) });
        case "userinfo-extra":
          return out({ userinfoJson: JSON.stringify({ ...json, phone_number: "+1 555 0100" }) });
        case "userinfo-jwt-extra":
          return out({ userinfoJwt: await userinfoJwt({ ...info, email_verified: true, role: "admin" }) });
        case "userinfo-jwt-as-id-token":
          return out({ userinfoJwt: await idToken(info) });
        case "userinfo-jwt-no-exp": {
          const { exp: _exp, ...rest } = info;
          return out({ userinfoJwt: await userinfoJwt(rest) });
        }
        default:
          throw new Error(`the rogue Token knows no twist "${twist}" for MintIdToken`);
      }
    }

    return {
      ...service,
      routes(router: ConnectRouter) {
        router.service(TokenService, { ...real, ...twisted } as Impl);
      },
    };
  };
}

/** Calls one of the real handlers (connect-es types them as possibly synchronous). */
async function call<I, O>(handler: ((req: I, ctx: HandlerContext) => O | Promise<O>) | undefined, req: I, ctx: HandlerContext): Promise<O> {
  if (!handler) throw new Error("the real Token lacks this method");
  return handler(req, ctx);
}

