// Orchestration's side of the login (login-driver.ts) over the real Token, Encryption and
// Storage joined in memory (Storage on an in-memory PGlite), with the development OP in
// this process for the upstream login: the logins of docs/design.md §4 end to end in well
// under a second each, and the driver's refusal of every wrong answer a compromised
// Token can give. Such a Token is the real one with one answer bent, re-signed with
// Token's own keys as its custodian could (a rogue twist); each refusal is exact, nothing
// it made reaches Storage or the app, and the honest twin — the same login with the
// honest Token — succeeds. The same through four processes: test/e2e/rogue-token.spec.ts.

import { randomBytes, randomUUID } from "node:crypto";
import { expect } from "chai";
import { create, type DescMessage } from "@bufbuild/protobuf";
import { type Client, Code, type ConnectRouter, type HandlerContext, type ServiceImpl, createClient } from "@connectrpc/connect";
import { type JWTPayload, SignJWT, decodeJwt, decodeProtectedHeader } from "jose";
import { AccessGrantSchema, type AccessGrant, MergedSubjectSchema, type RecordWrite, RecordWriteSchema, TokenService, TransactionKind } from "../../gen/hello/token/v1/token_service_pb.js";
import { EncryptionService } from "../../gen/hello/encryption/v1/encryption_service_pb.js";
import { StorageService } from "../../gen/hello/storage/v1/storage_service_pb.js";
import { RecordOperation } from "../../gen/hello/common/v1/record_pb.js";
import type { RegisteredClient } from "../../config/component-config.js";
import { sha256, sign } from "../../protocol/jws.js";
import { Keyring, generateRecordKey } from "../../protocol/keyring.js";
import { credentialHash, holdingsHash, releaseHash, reservationHash, s2sSessionHash, subjectHash, walletHash } from "../../protocol/lookup-key.js";
import { type KeyPurpose, type SigningAlg, activeKey, generateSigningKey } from "../../protocol/signing-keys.js";
import type { RecordKindName } from "../../protocol/records.js";
import {
  ACCESS_TOKEN, type Operation, RECORD_KIND, RECORD_TYPES, RECOVERY_SUBJECT_RECORD, type RecordClaims, WALLET_DELETION_RECORD, type WalletDeletionRecord,
  earlierWallet, mergedWallet,
} from "../../protocol/tokens.js";
import type { DevUser } from "../../dev/devop/dev-op.js";
import { storageErrors, storageRoutes } from "../storage/storage-service.js";
import { openPGliteStore } from "../storage/backend/pglite-store.js";
import type { RecordStore } from "../storage/backend/record-store.js";
import { encryptionRoutes } from "../encryption/encryption-service.js";
import { type TokenServiceDeps, tokenRoutes } from "../token/token-service.js";
import { UpstreamVerifier } from "../token/upstream.js";
import { inMemory } from "../../../test/support/in-memory.js";
import { storageKeyPair } from "../../../test/support/storage-keys.js";
import { refusal, rejectionOf } from "../../../test/support/refusal.js";
import {
  APPS,
  ISSUER,
  USERS,
  type Upstream,
  appParameters,
  publishedKeys,
  startUpstream,
  tokenInMemory,
  tokenSigningKeys,
} from "../../../test/support/token-harness.js";
import {
  LoginDriver, LoginRequired, MergeRefused, ProtocolViolation, RecoveryAccountOnly, RecoveryRefused, type RecoveryState, WalletChanged, WalletDeleted, loginContext,
} from "./login-driver.js";

const DAVE: DevUser = { sub: "dave-0004", email: "dave@example.org", email_verified: false, name: "Dave Unverified", password: "dave" };
const ERIN: DevUser = { sub: "erin-0005", email: "erin@example.org", email_verified: true, name: "Erin Example", password: "erin" };
/** Deletes her wallet, again and again (each test's first sign-in makes it anew). */
const GINA: DevUser = { sub: "gina-0007", email: "gina@example.org", email_verified: true, name: "Gina Example", password: "gina" };
/** Has a wallet that Hank's account is linked to. */
const IVY: DevUser = { sub: "ivy-0008", email: "ivy@example.org", email_verified: true, name: "Ivy Example", password: "ivy" };
/** In no wallet until he is linked to Ivy's. */
const HANK: DevUser = { sub: "hank-0009", email: "hank@example.org", email_verified: true, name: "Hank Example", password: "hank" };
/** Has a wallet, to which Kim's account is linked, and takes Kim's name. */
const JULES: DevUser = { sub: "jules-0010", email: "jules@example.org", email_verified: false, name: "Jules Example", password: "jules" };
const KIM: DevUser = { sub: "kim-0011", email: "kim@example.org", email_verified: true, name: "Kim Example", password: "kim" };
/** Signs in to no app, only to the account page. */
const FRANK: DevUser = { sub: "frank-0006", email: "frank@example.org", email_verified: true, name: "Frank Example", password: "frank" };
/** Has a wallet with two recovery accounts, Milo's at the dev OP and Nell's at the second one, and recovers it. */
const LENA: DevUser = { sub: "lena-0012", email: "lena@example.org", email_verified: true, name: "Lena Example", password: "lena" };
/** Lena's recovery account at the dev OP. */
const MILO: DevUser = { sub: "milo-0013", email: "milo@example.org", email_verified: true, name: "Milo Example", password: "milo" };
/** Lena's recovery account at the second OP. */
const NELL: DevUser = { sub: "nell-0014", email: "nell@example.org", email_verified: true, name: "Nell Example", password: "nell" };
/** The account Lena links to sign in with once her wallet is recovered. */
const OLGA: DevUser = { sub: "olga-0015", email: "olga@example.org", email_verified: true, name: "Olga Example", password: "olga" };
/** In no wallet, ever. */
const PIA: DevUser = { sub: "pia-0016", email: "pia@example.org", email_verified: true, name: "Pia Example", password: "pia" };
/** Changes what app b receives with prompt=consent. */
const QUINN: DevUser = { sub: "quinn-0017", email: "quinn@example.org", email_verified: true, name: "Quinn Example", password: "quinn" };
/** Has two wallets, and merges them: this account's at the dev OP, the earlier made (apps a and b)... */
const TESS: DevUser = { sub: "tess-0018", email: "tess@example.org", email_verified: true, name: "Tess Example", password: "tess" };
/** ...and her account at the second OP, whose wallet is made later (apps a and c, and Uma's recovery account). */
const TESS_TOO: DevUser = { sub: "tess-0019", email: "tess@example.net", email_verified: true, name: "Tess Example", password: "tess-too" };
/** ...and her oldest account, at the dev OP, whose wallet is from before `created` was kept (so the earliest of all), with a release from before reservations at app a. */
const TESS_OLD: DevUser = { sub: "tess-0022", email: "tess.old@example.org", email_verified: true, name: "Tess Example", password: "tess-old" };
/** The recovery account of Tess's later wallet. */
const UMA: DevUser = { sub: "uma-0020", email: "uma@example.org", email_verified: true, name: "Uma Example", password: "uma" };
/** A third party: a wallet of her own, which no merge of Tess's may touch. */
const VERA: DevUser = { sub: "vera-0021", email: "vera@example.org", email_verified: true, name: "Vera Example", password: "vera" };

/** Token's RPCs, each answer as a message: what a twist bends. */
type Methods = (typeof TokenService)["method"];
type Name = keyof Methods;
type Answer<M extends Name> = Awaited<ReturnType<Client<typeof TokenService>[M]>>;
type Request<M extends Name> = Parameters<ServiceImpl<typeof TokenService>[M]>[0];
/** One answer of Token bent: what a compromised Token does to its own real answer. */
type Twist = { [M in Name]?: (answer: Answer<M>, request: Request<M>) => Promise<Answer<M>> };

/** A JWS's claims without the ones sign() sets anew. */
function claimsOf<T>(jws: string): T {
  const { iss: _iss, aud: _aud, iat: _iat, ...claims } = decodeJwt(jws);
  return claims as T;
}

describe("the login driver over Token, Encryption and Storage in memory (login-driver.ts)", function () {
  // Opening PGlite (initdb, in WebAssembly) costs seconds, many more on a loaded machine.
  this.timeout(60_000);
  const keys = tokenSigningKeys();
  const tokenKeys = publishedKeys(keys);
  const storageSigning = storageKeyPair();
  const lookupKey = randomBytes(32);
  const keyring = new Keyring(new Map([["k1", generateRecordKey()]]), "k1");
  const clients: RegisteredClient[] = [
    APPS.a,
    APPS.b,
    ...["c", "d"].map((id) => ({ client_id: `app-${id}`, redirect_uris: [`https://${id}.example/callback`], id_token_signed_response_alg: "EdDSA" as const })),
  ];
  type App = "a" | "b" | "c" | "d";
  let upstream: Upstream;
  /** A second development OP, Token's provider "dev2": a recovery needs providers of two issuers. */
  let upstream2: Upstream;
  let store: RecordStore;
  let encryption: Client<typeof EncryptionService>;
  let tokenDeps: TokenServiceDeps;
  let honest: LoginDriver;
  /** The kind of every record Storage wrote, in order. */
  const written: string[] = [];
  /** Every update and delete Storage made ("update wallet", "delete subject"…), in order. */
  const changed: string[] = [];
  /** The number of writes of each WriteRecords Storage made, in order. */
  const batches: number[] = [];
  /** Each user's id, learned at their first consent. */
  const uids: Record<string, string> = {};
  /** Each user's sub at each app, from the ID Tokens that reached the app. */
  const subs: Record<string, string> = {};

  const driverOver = (token: Client<typeof TokenService>) =>
    new LoginDriver({ issuer: ISSUER, token, encryption, lookupKey, tokenKeys: () => tokenKeys, clientIds: clients.map((c) => c.client_id) });

  before(async function () {
    [upstream, upstream2, store] = await Promise.all([
      startUpstream([USERS.alice, USERS.bob, USERS.carol, DAVE, ERIN, FRANK, GINA, IVY, HANK, JULES, KIM, LENA, MILO, OLGA, PIA, QUINN, TESS, TESS_OLD, UMA, VERA]),
      startUpstream([NELL, TESS_TOO]),
      openPGliteStore({}),
    ]);
    const storage = createClient(StorageService, inMemory(storageRoutes({
      store, tokenKeys: () => tokenKeys, errorKey: storageSigning.error, receiptKey: storageSigning.receipt,
    }), storageErrors));
    // What Storage wrote, as the test sees it: the kind of each create that succeeded.
    const watched = new Proxy(storage, {
      get(target, name: keyof typeof storage) {
        if (name === "updateRecord" || name === "deleteRecord") {
          return async (req: { accessToken: string }, options?: unknown) => {
            const res = await (target[name] as (r: unknown, o?: unknown) => Promise<unknown>)(req, options);
            const { op, kind } = decodeJwt(req.accessToken);
            changed.push(`${String(op)} ${String(kind)}`);
            return res;
          };
        }
        if (name === "writeRecords") {
          return async (req: { writes: Array<{ accessToken: string }> }, options?: unknown) => {
            const res = await target.writeRecords(req as never, options as never);
            batches.push(req.writes.length);
            for (const w of req.writes) {
              const { op, kind } = decodeJwt(w.accessToken);
              if (op === "create") written.push(String(kind));
              else changed.push(`${String(op)} ${String(kind)}`);
            }
            return res;
          };
        }
        if (name !== "createRecord") return target[name];
        return async (...args: Parameters<typeof storage.createRecord>) => {
          const res = await target.createRecord(...args);
          written.push(String(decodeJwt(args[0].accessToken!).kind));
          return res;
        };
      },
    });
    encryption = createClient(EncryptionService, inMemory(encryptionRoutes({
      keyring: () => keyring, tokenKeys: () => tokenKeys, storageKeys: () => storageSigning.keys, storage: watched,
    })));
    const providers = [upstream.provider, { ...upstream2.provider, id: "dev2" }];
    tokenDeps = { issuer: ISSUER, keys: () => keys, storageKeys: () => storageSigning.keys, lookupKey, clients, upstream: new UpstreamVerifier(providers), providers };
    honest = driverOver(tokenInMemory(tokenDeps));
  });
  after(async () => {
    await store?.close();
    await upstream?.close();
    await upstream2?.close();
  });

  /** A whole login, as the front door drives it: the ID Token that leaves, and whether the consent page came. */
  async function login(driver: LoginDriver, user: DevUser, app: App, consent?: string[]) {
    const request = app === "a" || app === "b" ? appParameters(app) : { ...appParameters("a"), clientId: `app-${app}`, redirectUri: `https://${app}.example/callback` };
    const began = Date.now();
    const started = await driver.start(request, "dev");
    const verified = await upstream.login(user, started.upstreamNonce);
    const first = await driver.continue(started.sessionToken, loginContext(request, began), verified);
    if (first.kind === "done") return { ...first, consented: false, claims: decodeJwt(first.idToken), request, wallet: undefined };
    uids[user.sub] = first.state.uid;
    const done = await driver.consent(first.state, consent ?? Object.keys(first.wallet.claims), first.newUser);
    return { ...done, consented: true, claims: decodeJwt(done.idToken), request, wallet: first.wallet, newUser: first.newUser };
  }

  /** What Storage holds: a row of `kind` at `hash`, or none. */
  const holds = (hash: string, kind: RecordKindName) => store.read(hash, kind).then(() => true, () => false);

  /** The login ends in a ProtocolViolation with exactly these words, and Storage wrote nothing meanwhile. */
  async function refused(attempt: Promise<unknown>, message: string) {
    const before = written.length;
    const error = await rejectionOf(attempt, "the login");
    expect(error).to.be.instanceOf(ProtocolViolation);
    expect((error as Error).message).to.equal(message);
    expect(written.slice(before), "nothing written").to.deep.equal([]);
  }

  describe("honest logins", function () {
    it("a new user: the consent page first (the wallet as the provider said), wallet then subject written, the release reserved before it is written", async function () {
      const before = written.length;
      const alice = await login(honest, USERS.alice, "a", ["email", "name"]);
      expect(alice.newUser).to.equal(true);
      expect(alice.wallet!.claims).to.include({ email: USERS.alice.email, email_verified: true, name: USERS.alice.name });
      expect(written.slice(before)).to.deep.equal(["wallet", "subject", "reservation", "release"]);
      const uid = uids[USERS.alice.sub]!;
      expect(await holds(subjectHash(lookupKey, upstream.devOp.issuer, USERS.alice.sub), "subject")).to.equal(true);
      expect(await holds(walletHash(lookupKey, uid), "wallet")).to.equal(true);
      expect(await holds(releaseHash(lookupKey, uid, "app-a"), "release")).to.equal(true);
      expect(await holds(reservationHash(lookupKey, "app-a", String(alice.claims.sub)), "reservation")).to.equal(true);
      // The ID Token that leaves: the directed id, the released claims, the app's nonce.
      expect(alice.claims).to.include({ iss: ISSUER, aud: "app-a", nonce: alice.request.nonce, email: USERS.alice.email, name: USERS.alice.name });
      expect(alice.claims).to.not.have.any.keys("email_verified", "auth_time", "given_name");
      expect(alice.claims.sub).to.match(/^[\w-]{22}$/).and.not.equal(uid).and.not.equal(USERS.alice.sub);
      expect(JSON.parse(alice.userinfoJson)).to.deep.equal({ sub: alice.claims.sub, email: USERS.alice.email, name: USERS.alice.name });
      subs.aliceA = String(alice.claims.sub);
    });

    it("a returning user: no consent page, the same sub, nothing written; another app: consent, then another sub", async function () {
      const before = written.length;
      const again = await login(honest, USERS.alice, "a");
      expect(again.consented).to.equal(false);
      expect(again.newUser).to.equal(false);
      expect(again.claims.sub).to.equal(subs.aliceA);
      expect(written.slice(before)).to.deep.equal([]);
      const atB = await login(honest, USERS.alice, "b", ["email"]);
      expect(atB).to.include({ consented: true, newUser: false });
      expect(written.slice(before)).to.deep.equal(["reservation", "release"]);
      expect(atB.claims.sub).to.not.equal(subs.aliceA);
      expect(atB.claims).to.include({ email: USERS.alice.email }).and.not.have.property("name");
      expect((await login(honest, USERS.alice, "b")).claims.sub).to.equal(atB.claims.sub);
    });

    it("consent: the release is read again on Allow, so a second tab that consented meanwhile makes no second release", async function () {
      subs.bobA = String((await login(honest, USERS.bob, "a")).claims.sub); // Bob exists
      const tab = async () => {
        const request = appParameters("b");
        const started = await honest.start(request, "dev");
        const outcome = await honest.continue(started.sessionToken, loginContext(request, Date.now()), await upstream.login(USERS.bob, started.upstreamNonce));
        if (outcome.kind !== "consent") return expect.fail("Bob has no release at app b yet");
        return outcome;
      };
      const [first, second] = [await tab(), await tab()];
      const before = written.length;
      const one = await honest.consent(first.state, ["email"]);
      const other = await honest.consent(second.state, ["email", "name"]);
      expect(written.slice(before)).to.deep.equal(["reservation", "release"]);
      expect(decodeJwt(other.idToken).sub).to.equal(decodeJwt(one.idToken).sub);
      // the second tab gets what the stored release lists, not what it asked for
      expect(decodeJwt(other.idToken)).to.not.have.property("name");
    });

    it("a release made before reservations is reserved on the way; the next login finds it this user's; another user's release naming the same id ends at the reservation", async function () {
      await login(honest, ERIN, "a");
      await login(honest, USERS.carol, "a");
      // The previous version of Token wrote releases without a reservation (the test holds Token's keys).
      await legacyRelease(uids[ERIN.sub]!, "app-d", "legacy-directed-0001");
      await legacyRelease(uids[USERS.carol.sub]!, "app-d", "legacy-directed-0001");
      const before = written.length;
      const erin = await login(honest, ERIN, "d");
      expect(erin).to.include({ consented: false });
      expect(erin.claims.sub).to.equal("legacy-directed-0001");
      expect(written.slice(before)).to.deep.equal(["reservation"]);
      expect((await login(honest, ERIN, "d")).claims.sub).to.equal("legacy-directed-0001");
      expect(written.slice(before)).to.deep.equal(["reservation"]);
      await refused(login(honest, USERS.carol, "d"), "this app's identifier for the user is reserved for someone else");
    });
  });

  // --- a compromised Token: its custodian's keys, its real answers, one bent ---------------

  const key = (purpose: KeyPurpose, alg?: SigningAlg) => activeKey(keys, purpose, alg);
  const rogueRecord = <K extends RecordKindName>(kind: K, claims: RecordClaims[K]) => sign(RECORD_TYPES[kind], key("record"), { ...claims });
  const rogueGrant = async (kind: RecordKindName, op: Operation, hash: string, digest?: string): Promise<AccessGrant> => {
    const accessToken = await sign(ACCESS_TOKEN, key("access"), { op, kind, hash, ...(digest ? { digest } : {}) });
    const operation = { read: RecordOperation.READ, create: RecordOperation.CREATE, update: RecordOperation.UPDATE, delete: RecordOperation.DELETE }[op];
    return create(AccessGrantSchema, { accessToken, hash, kind: RECORD_KIND[kind], operation });
  };
  async function rogueWrite<K extends RecordKindName>(kind: K, hash: string, claims: RecordClaims[K]): Promise<RecordWrite> {
    const record = await rogueRecord(kind, claims);
    return create(RecordWriteSchema, { record, grant: await rogueGrant(kind, "create", hash, sha256(record)) });
  }
  /** A release as the previous version of Token wrote it (no `reserved`), written through Encryption. */
  async function legacyRelease(uid: string, clientId: string, directedId: string) {
    const write = await rogueWrite("release", releaseHash(lookupKey, uid, clientId), { uid, client_id: clientId, directed_id: directedId, claims: ["email"] });
    await encryption.createRecord({ accessToken: write.grant!.accessToken, record: write.record });
  }
  const idToken = (payload: JWTPayload, purpose: KeyPurpose = "id-token", typ = "JWT") => {
    const k = key(purpose, purpose === "record" ? undefined : "RS256");
    return new SignJWT(payload).setProtectedHeader({ alg: k.alg, kid: k.kid, typ }).sign(k.privateKey);
  };

  /** A driver over the real Token with `twist` bending its answers. */
  function rogue(twist: Twist): LoginDriver {
    let real: ServiceImpl<typeof TokenService> | undefined;
    tokenRoutes(tokenDeps)({ service: (_s: unknown, impl: ServiceImpl<typeof TokenService>) => void (real = impl) } as unknown as ConnectRouter);
    const methods = Object.fromEntries(Object.entries(real!).map(([name, handler]) => [name, async (req: never, ctx: HandlerContext) => {
      const answer = create(TokenService.method[name as Name].output as DescMessage, await (handler as (r: never, c: HandlerContext) => Promise<Record<string, unknown>>)(req, ctx));
      const bend = twist[name as Name] as ((a: unknown, r: unknown) => Promise<unknown>) | undefined;
      return bend ? bend(answer, req) : answer;
    }]));
    return driverOver(createClient(TokenService, inMemory((router) => router.service(TokenService, methods as unknown as ServiceImpl<typeof TokenService>))));
  }

  describe("a new user: Token's records and grants are checked before anything is written", function () {
    const twists: Array<[string, Twist, string]> = [
      ["a subject read of another subject's hash", {
        authorizeSubject: async (a) => ({ ...a, subjectRead: await rogueGrant("subject", "read", subjectHash(lookupKey, upstream.devOp.issuer, USERS.alice.sub)) }),
      }, "Token's subject grant is not for the subject record this login needs"],
      ["a wallet claim the provider never said (email_verified: true)", {
        createUser: async (a) => {
          const wallet = claimsOf<RecordClaims["wallet"]>(a.wallet!.record);
          return { ...a, wallet: await rogueWrite("wallet", a.wallet!.grant!.hash, { ...wallet, claims: { ...wallet.claims, email_verified: true } }) };
        },
      }, "the new wallet's claims are not the ones the provider's ID Token carries"],
      ["a Subject Record of another upstream subject", {
        createUser: async (a) => ({ ...a, subject: await rogueWrite("subject", a.subject!.grant!.hash, { ...claimsOf<RecordClaims["subject"]>(a.subject!.record), op_sub: USERS.alice.sub }) }),
      }, "the new user's records do not match the upstream subject"],
      ["a wallet linking a second subject", {
        createUser: async (a) => {
          const wallet = claimsOf<RecordClaims["wallet"]>(a.wallet!.record);
          return { ...a, wallet: await rogueWrite("wallet", a.wallet!.grant!.hash, { ...wallet, subjects: [...wallet.subjects, { iss: "https://other.example", sub: "x" }] }) };
        },
      }, "the new wallet does not link exactly the upstream subject"],
      ["a wallet create at another user's wallet hash", {
        createUser: async (a) => ({ ...a, wallet: { ...a.wallet!, grant: await rogueGrant("wallet", "create", walletHash(lookupKey, uids[USERS.alice.sub]!), sha256(a.wallet!.record)) } }),
      }, "Token's wallet grant is not for the wallet record this login needs"],
      ["a Subject Record signed by a key Token's bundle does not hold", {
        createUser: async (a) => ({ ...a, subject: { ...a.subject!, record: await sign(RECORD_TYPES.subject, generateSigningKey("record"), claimsOf(a.subject!.record)) } }),
      }, "the subject record is not valid: its key (kid) is not a known record key"],
    ];
    for (const [what, twist, message] of twists) {
      it(`${what} is refused: ${message}`, async function () {
        await refused(login(rogue(twist), DAVE, "a"), message);
      });
    }

    it("the honest twin: Dave is still new, and his wallet says what the provider said", async function () {
      expect(await holds(subjectHash(lookupKey, upstream.devOp.issuer, DAVE.sub), "subject")).to.equal(false);
      const dave = await login(honest, DAVE, "a", ["email", "email_verified"]);
      expect(dave.newUser).to.equal(true);
      expect(dave.claims).to.include({ email: DAVE.email, email_verified: false });
    });
  });

  describe("a returning user: Token's grants are for this user's records", function () {
    const twists: Array<[string, Twist, string]> = [
      ["a wallet read of another user's wallet", {
        authorizeUser: async (a) => ({ ...a, walletRead: await rogueGrant("wallet", "read", walletHash(lookupKey, uids[USERS.bob.sub] ?? "bob")) }),
      }, "Token's wallet grant is not for the wallet record this login needs"],
      ["a release read of another app's release", {
        authorizeUser: async (a) => ({ ...a, releaseRead: await rogueGrant("release", "read", releaseHash(lookupKey, uids[USERS.alice.sub]!, "app-b")) }),
      }, "Token's release grant is not for the release record this login needs"],
    ];
    for (const [what, twist, message] of twists) {
      it(`${what} is refused: ${message}`, async function () {
        await refused(login(rogue(twist), USERS.alice, "a"), message);
      });
    }
  });

  describe("consent: the release Token makes is the one the user consented to, reserved for them", function () {
    /** Token's release and reservation with `change` made to the release (and its reservation following, unless it says otherwise). */
    const bentRelease = (change: (release: RecordClaims["release"]) => RecordClaims["release"], reservationOf?: (release: RecordClaims["release"]) => RecordClaims["reservation"]): Twist => ({
      createRelease: async (a) => {
        const release = change(claimsOf<RecordClaims["release"]>(a.release!.record));
        const reservation = reservationOf?.(release) ?? { client_id: release.client_id, directed_id: release.directed_id, uid: release.uid };
        return {
          ...a,
          release: await rogueWrite("release", a.release!.grant!.hash, release),
          reservation: await rogueWrite("reservation", reservationHash(lookupKey, release.client_id, release.directed_id), reservation),
        };
      },
    });
    const twists: Array<[string, () => Twist, string]> = [
      ["a fresh release read of another hash", () => ({
        grantReleaseRead: async (a) => ({ ...a, releaseRead: await rogueGrant("release", "read", releaseHash(lookupKey, uids[USERS.alice.sub]!, "app-c")) }),
      }), "Token's release grant is not for the release record this login needs"],
      ["a claim the user did not consent to", () => bentRelease((r) => ({ ...r, claims: [...r.claims, "name"] })),
        "the release record lists claims the user did not consent to"],
      ["a release without its reserved mark", () => bentRelease(({ reserved: _r, ...r }) => r), "the new release record does not say its directed id is reserved"],
      ["a reservation of another id", () => bentRelease((r) => r, (r) => ({ client_id: r.client_id, directed_id: `${r.directed_id}-other`, uid: r.uid })),
        "Token's reservation is not of this directed id for this user and app"],
      ["a release of another user", () => bentRelease((r) => ({ ...r, uid: uids[USERS.alice.sub]! })), "the release record is not this user's and app's"],
      ["Alice's directed id at this app, for Bob", () => bentRelease((r) => ({ ...r, directed_id: subs.aliceC! })), "Token's new directed id is already reserved"],
      ["a wallet rewrite that is not the wallet unchanged (another name)", () => ({
        createRelease: async (a) => {
          const wallet = claimsOf<RecordClaims["wallet"]>(a.wallet!.record);
          const record = await rogueRecord("wallet", { ...wallet, claims: { ...wallet.claims, name: "Mallory" } });
          return { ...a, wallet: create(RecordWriteSchema, { record, grant: await rogueGrant("wallet", "update", a.wallet!.grant!.hash, sha256(record)) }) };
        },
      }), "Token's rewrite of the wallet is not the wallet unchanged"],
      ["a wallet rewrite that adds to the wallet's history (or could drop from it)", () => ({
        createRelease: async (a) => {
          const wallet = claimsOf<RecordClaims["wallet"]>(a.wallet!.record);
          const record = await rogueRecord("wallet", { ...wallet, history: [{ kind: "link", at: 0, iss: "https://mallory.example" }] });
          return { ...a, wallet: create(RecordWriteSchema, { record, grant: await rogueGrant("wallet", "update", a.wallet!.grant!.hash, sha256(record)) }) };
        },
      }), "Token's rewrite of the wallet is not the wallet unchanged"],
      ["a wallet rewrite of Alice's wallet", () => ({
        createRelease: async (a) => ({ ...a, wallet: create(RecordWriteSchema, { record: a.wallet!.record, grant: await rogueGrant("wallet", "update", walletHash(lookupKey, uids[USERS.alice.sub]!)) }) }),
      }), "Token's wallet grant is not for the wallet record this login needs"],
    ];
    before(async () => {
      subs.aliceC = String((await login(honest, USERS.alice, "c", ["email"])).claims.sub);
    });
    for (const [what, twist, message] of twists) {
      it(`${what} is refused: ${message}`, async function () {
        const before = changed.length;
        await refused(login(rogue(twist()), USERS.bob, "c", ["email"]), message);
        expect(changed.slice(before), "no wallet rewritten").to.deep.equal([]);
      });
    }

    it("the honest twin: Bob's own directed id at app c, and Alice keeps hers", async function () {
      const bob = await login(honest, USERS.bob, "c", ["email"]);
      expect(bob.consented).to.equal(true);
      expect(bob.claims.sub).to.not.equal(subs.aliceC);
      expect((await login(honest, USERS.alice, "c")).claims.sub).to.equal(subs.aliceC);
    });
  });

  describe("a release made before reservations: Token's reservation is of that release's id", function () {
    before(async () => legacyRelease(uids[USERS.bob.sub]!, "app-d", "legacy-directed-0002"));
    const twists: Array<[string, Twist, string]> = [
      ["a reservation read of another id", {
        reserveDirectedId: async (a) => ({ ...a, reservationRead: await rogueGrant("reservation", "read", reservationHash(lookupKey, "app-d", "legacy-directed-0001")) }),
      }, "Token's reservation grant is not for the reservation record this login needs"],
      ["a reservation of another id", {
        reserveDirectedId: async (a) => ({
          ...a, reservation: await rogueWrite("reservation", a.reservation!.grant!.hash, { ...claimsOf<RecordClaims["reservation"]>(a.reservation!.record), directed_id: "legacy-directed-0001" }),
        }),
      }, "Token's reservation is not of this directed id for this user and app"],
      ["a reservation for another user", {
        reserveDirectedId: async (a) => ({
          ...a, reservation: await rogueWrite("reservation", a.reservation!.grant!.hash, { ...claimsOf<RecordClaims["reservation"]>(a.reservation!.record), uid: uids[ERIN.sub]! }),
        }),
      }, "Token's reservation is not of this directed id for this user and app"],
    ];
    for (const [what, twist, message] of twists) {
      it(`${what} is refused: ${message}`, async function () {
        await refused(login(rogue(twist), USERS.bob, "d"), message);
      });
    }

    it("the honest twin: Bob's old id is reserved for him on the way", async function () {
      expect((await login(honest, USERS.bob, "d")).claims.sub).to.equal("legacy-directed-0002");
    });
  });

  describe("MintIdToken: what Token mints is checked before it leaves (minted-check.ts)", function () {
    const bentMint = (bend: (id: JWTPayload, info: JWTPayload, json: Record<string, unknown>) => Promise<Partial<Answer<"mintIdToken">>>): Twist => ({
      mintIdToken: async (a) => ({ ...a, ...(await bend(decodeJwt(a.idToken), decodeJwt(a.userinfoJwt), JSON.parse(a.userinfoJson) as Record<string, unknown>)) }),
    });
    const twists: Array<[string, Twist, string]> = [
      ["another user's sub (Bob's at this app)", bentMint(async (id) => ({ idToken: await idToken({ ...id, sub: subs.bobA! }) })),
        "Token's ID Token does not match what Orchestration verified: its sub is not the verified release's directed id"],
      ["a claim the release does not list", bentMint(async (id) => ({ idToken: await idToken({ ...id, email_verified: true }) })),
        "Token's ID Token does not match what Orchestration verified: it carries a claim the release does not list (email_verified)"],
      ["another nonce", bentMint(async (id) => ({ idToken: await idToken({ ...id, nonce: "not-the-apps" }) })),
        "Token's ID Token does not match what Orchestration verified: its nonce is not the app's"],
      ["an ID Token signed by the record key", bentMint(async (id) => ({ idToken: await idToken(id, "record") })),
        "Token's ID Token is not valid: its key (kid) is not a known id-token key"],
      ["userinfo JSON with another claim", bentMint(async (_id, _info, json) => ({ userinfoJson: JSON.stringify({ ...json, phone_number: "+1 555 0100" }) })),
        "Token's userinfo does not match what Orchestration verified: it carries a claim the release does not list (phone_number)"],
      ["signed userinfo by the ID Token key", bentMint(async (_id, info) => ({ userinfoJwt: await idToken(info, "id-token", "userinfo+jwt") })),
        "Token's signed userinfo is not valid: its key (kid) is not a known userinfo key"],
    ];
    for (const [what, twist, message] of twists) {
      it(`${what} is refused: ${message}`, async function () {
        await refused(login(rogue(twist), USERS.alice, "a"), message);
      });
    }

    it("the honest twin: Alice's login at app a gets her own sub", async function () {
      expect((await login(honest, USERS.alice, "a")).claims.sub).to.equal(subs.aliceA);
    });
  });
  describe("account sessions (docs/transactions.md): the wallet after a forced fresh sign-in, checked", function () {
    /** An account sign-in of `user`: the provider asked to make the user sign in again unless `forced` is false. */
    async function account(driver: LoginDriver, user: DevUser, forced = true) {
      const began = Date.now();
      const started = await driver.startAccount("dev");
      const verified = await upstream.login(user, started.upstreamNonce, forced ? { prompt: "login" } : {});
      return driver.openAccount(started.sessionToken, began, verified);
    }

    it("honest: Alice's wallet as stored, linking the subject she signed in with; nothing written", async function () {
      const before = written.length;
      const view = await account(honest, USERS.alice);
      expect(view!.uid).to.equal(uids[USERS.alice.sub]);
      expect(view!.wallet.claims).to.include({ email: USERS.alice.email, name: USERS.alice.name });
      expect(view!.wallet.subjects).to.deep.equal([{ iss: upstream.devOp.issuer, sub: USERS.alice.sub }]);
      // Her releases, as her logins above made them: app a with what she consented to, and app b.
      expect(view!.releases.find((r) => r.clientId === "app-a")?.claims).to.have.members(["email", "name"]);
      expect(view!.releases.map((r) => r.clientId)).to.include.members(["app-a", "app-b"]);
      expect(written.slice(before)).to.deep.equal([]);
    });

    it("a subject no wallet holds: no wallet, and no user made", async function () {
      const before = written.length;
      expect(await account(honest, FRANK)).to.equal(undefined);
      expect(written.slice(before)).to.deep.equal([]);
      expect(await holds(subjectHash(lookupKey, upstream.devOp.issuer, FRANK.sub), "subject")).to.equal(false);
    });

    it("a login the provider did not force is refused by Orchestration's own reading, before Token is asked", async function () {
      let asked = 0;
      const counting = rogue({ authorizeSubject: async (a) => (asked++, a) });
      const error = await rejectionOf(account(counting, USERS.alice, false), "the account sign-in");
      expect(error).to.be.instanceOf(LoginRequired);
      expect((error as Error).message).to.equal("the provider did not say when the user authenticated (auth_time), and an account session needs a fresh login");
      expect(asked).to.equal(0);
    });

    const twists: Array<[string, Twist, string]> = [
      ["a wallet read of another user's wallet", {
        authorizeUser: async (a) => ({ ...a, walletRead: await rogueGrant("wallet", "read", walletHash(lookupKey, uids[USERS.bob.sub] ?? "bob")) }),
      }, "Token's wallet grant is not for the wallet record this login needs"],
      ["an app's release read besides", {
        authorizeUser: async (a) => ({ ...a, releaseRead: await rogueGrant("release", "read", releaseHash(lookupKey, uids[USERS.alice.sub]!, "app-a")) }),
      }, "Token granted an account session an app's release read"],
      ["a read of another user's release among the apps'", {
        authorizeUser: async (a) => ({ ...a, accountReleaseReads: [...a.accountReleaseReads, await rogueGrant("release", "read", releaseHash(lookupKey, uids[USERS.bob.sub] ?? "bob", "app-a"))] }),
      }, "Token's release grant is not for this user's release at an app hello-mesh serves"],
      ["one app's release read twice", {
        authorizeUser: async (a) => ({ ...a, accountReleaseReads: [...a.accountReleaseReads, a.accountReleaseReads[0]!] }),
      }, "Token's release grant is not for this user's release at an app hello-mesh serves"],
    ];
    for (const [what, twist, message] of twists) {
      it(`a compromised Token granting ${what} is refused: ${message}`, async function () {
        await refused(account(rogue(twist), USERS.alice), message);
      });
    }
  });
  describe("delete (docs/transactions.md): Token's deletion record and grants remove exactly this wallet", function () {
    /** Gina's wallet as her account page shows it, made anew by a login at app a if she has none. */
    async function ginasWallet() {
      if (!(await holds(subjectHash(lookupKey, upstream.devOp.issuer, GINA.sub), "subject"))) await login(honest, GINA, "a");
      const began = Date.now();
      const started = await honest.startAccount("dev");
      return (await honest.openAccount(started.sessionToken, began, await upstream.login(GINA, started.upstreamNonce, { prompt: "login" })))!;
    }

    /** Gina deletes her wallet through `driver`, confirming with a forced fresh sign-in. */
    async function remove(driver: LoginDriver) {
      const view = await ginasWallet();
      const began = Date.now();
      const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.DELETE, "dev");
      await driver.deleteWallet(tx.sessionToken, began, await upstream.login(GINA, tx.upstreamNonce, { prompt: "login" }), view.uid);
      return view;
    }

    /** Token's deletion record with `change` made, re-signed as its custodian could; the grant stays Token's. */
    const bentDeletion = (change: (d: WalletDeletionRecord) => WalletDeletionRecord) => ({
      authorizeDelete: async (a: Answer<"authorizeDelete">) => {
        const record = await sign(WALLET_DELETION_RECORD, key("record"), { ...change(claimsOf<WalletDeletionRecord>(a.deletion!.record)) });
        return { ...a, deletion: create(RecordWriteSchema, { record, grant: a.deletion!.grant! }) };
      },
    });
    const bob = () => ({ iss: upstream.devOp.issuer, sub: USERS.bob.sub });

    /** Credential holdings for `uid` as Token mints them (one S2S session, two instances), each record written through Encryption, unless it has some. */
    async function holdingsFor(uid: string) {
      const at = holdingsHash(lookupKey, uid);
      if (await holds(at, "holdings")) return claimsOf<RecordClaims["holdings"]>((await encryption.readRecord({ accessToken: (await rogueGrant("holdings", "read", at)).accessToken })).result.value as string);
      const issuer = "https://issuer.test";
      const session_id = randomUUID();
      const instances = [randomUUID(), randomUUID()];
      const put = async <K extends RecordKindName>(kind: K, hash: string, claims: RecordClaims[K]) => {
        const write = await rogueWrite(kind, hash, claims);
        await encryption.createRecord({ accessToken: write.grant!.accessToken, record: write.record });
      };
      const wsk = { kty: "EC" as const, crv: "P-256" as const, x: "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", y: "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" };
      await put("s2s-session", s2sSessionHash(lookupKey, issuer, session_id), {
        issuer, session_id, uid, jkt: "jkt", wsk, created: 1, verifications: [],
        instances: instances.map((id) => ({ credential_instance_id: id, credential_configuration_id: "card", verification_id: "v" })),
      });
      for (const id of instances) {
        await put("credential", credentialHash(lookupKey, issuer, session_id, id), {
          issuer, session_id, credential_instance_id: id, credential_configuration_id: "card", uid, jkt: "jkt", status: "ACTIVE", updated: 1,
        });
      }
      const holdings = { uid, sessions: [{ issuer, session_id, instances }] };
      await put("holdings", at, holdings);
      return holdings;
    }

    it("honest: the deletion record, then tombstones, releases, the subject and the wallet, in that order; a new sign-in is a new user", async function () {
      const view = await ginasWallet();
      const changedBefore = changed.length;
      const writtenBefore = written.length;
      await remove(honest);
      expect(changed.slice(changedBefore)).to.deep.equal(["update wallet", ...view.releases.flatMap(() => ["update reservation", "delete release"]), "delete subject", "delete wallet"]);
      expect(written.slice(writtenBefore), "nothing created").to.deep.equal([]);
      expect(await holds(walletHash(lookupKey, view.uid), "wallet")).to.equal(false);
      expect(await holds(subjectHash(lookupKey, upstream.devOp.issuer, GINA.sub), "subject")).to.equal(false);
      const again = await login(honest, GINA, "a");
      expect(again.newUser).to.equal(true);
    });

    it("honest, with credential holdings: each issuer told (UNLINK), then the credential records, the S2S session and the holdings go, before the subject and the wallet", async function () {
      const view = await ginasWallet();
      const holdings = await holdingsFor(view.uid);
      const told: Array<{ issuer: string; session_id: string; credential_instance_id: string }> = [];
      const driver = new LoginDriver({
        issuer: ISSUER, token: tokenInMemory(tokenDeps), encryption, lookupKey, tokenKeys: () => tokenKeys, clientIds: clients.map((c) => c.client_id),
        unlinkCredential: async (credential) => void told.push(credential),
      });
      const changedBefore = changed.length;
      await remove(driver);
      const { issuer, session_id, instances } = holdings.sessions[0]!;
      expect(told).to.deep.equal(instances!.map((id) => ({ issuer, session_id, credential_instance_id: id })));
      expect(changed.slice(changedBefore)).to.deep.equal([
        "update wallet", ...view.releases.flatMap(() => ["update reservation", "delete release"]),
        "delete credential", "delete credential", "delete s2s-session", "delete holdings", "delete subject", "delete wallet",
      ]);
      for (const id of instances!) expect(await holds(credentialHash(lookupKey, issuer, session_id, id), "credential")).to.equal(false);
      expect(await holds(s2sSessionHash(lookupKey, issuer, session_id), "s2s-session")).to.equal(false);
      expect(await holds(holdingsHash(lookupKey, view.uid), "holdings")).to.equal(false);
    });

    it("an issuer that cannot be told does not keep a wallet from being deleted: the failure is reported, and every record goes", async function () {
      const view = await ginasWallet();
      const holdings = await holdingsFor(view.uid);
      const reported: unknown[] = [];
      const driver = new LoginDriver({
        issuer: ISSUER, token: tokenInMemory(tokenDeps), encryption, lookupKey, tokenKeys: () => tokenKeys, clientIds: clients.map((c) => c.client_id),
        unlinkCredential: async () => {
          throw new Error("the issuer is down");
        },
        onUnlinkFailure: (error) => reported.push(error),
      });
      await remove(driver);
      expect(reported.map((e) => (e as Error).message)).to.deep.equal(["the issuer is down", "the issuer is down"]);
      const { issuer, session_id } = holdings.sessions[0]!;
      expect(await holds(s2sSessionHash(lookupKey, issuer, session_id), "s2s-session")).to.equal(false);
      expect(await holds(walletHash(lookupKey, view.uid), "wallet")).to.equal(false);
    });

    it("a compromised Token minting a deletion record that leaves a credential out is refused before anything changes: the wallet deletion record does not list exactly the user's credential holdings", async function () {
      const view = await ginasWallet();
      await holdingsFor(view.uid);
      const before = changed.length;
      await refused(remove(rogue(bentDeletion((d) => ({ ...d, credentials: d.credentials!.slice(1) })))), "the wallet deletion record does not list exactly the user's credential holdings");
      await refused(remove(rogue(bentDeletion((d) => ({ ...d, holdings: false })))), "the wallet deletion record does not list exactly the user's credential holdings");
      expect(changed.slice(before), "nothing updated or deleted").to.deep.equal([]);
    });

    const committing: Array<[string, Twist, string]> = [
      ["a deletion record of another user", bentDeletion((d) => ({ ...d, uid: uids[USERS.bob.sub]! })),
        "the wallet deletion record does not list exactly this wallet's subjects and releases"],
      ["a deletion record listing another wallet's subject", bentDeletion((d) => ({ ...d, subjects: [...d.subjects, bob()] })),
        "the wallet deletion record does not list exactly this wallet's subjects and releases"],
      ["a deletion record that leaves a release out", bentDeletion((d) => ({ ...d, releases: d.releases.slice(1) })),
        "the wallet deletion record does not list exactly this wallet's subjects and releases"],
      ["the deletion written over another user's wallet", {
        authorizeDelete: async (a) => ({ ...a, deletion: create(RecordWriteSchema, { record: a.deletion!.record, grant: await rogueGrant("wallet", "update", walletHash(lookupKey, uids[USERS.bob.sub]!)) }) }),
      }, "Token's wallet grant is not for the wallet record this login needs"],
    ];
    for (const [what, twist, message] of committing) {
      it(`a compromised Token minting ${what} is refused before anything changes: ${message}`, async function () {
        await ginasWallet();
        const before = changed.length;
        await refused(remove(rogue(twist)), message);
        expect(changed.slice(before), "nothing updated or deleted").to.deep.equal([]);
      });
    }

    const finishing: Array<[string, Twist, string]> = [
      ["a tombstone that still names the user", {
        finishDelete: async (a) => {
          const r = a.releases[0]!;
          const t = claimsOf<RecordClaims["reservation"]>(r.tombstoneUpdate!.record);
          const named = await rogueRecord("reservation", { ...t, uid: "someone" });
          return { ...a, releases: [{ ...r, tombstoneUpdate: create(RecordWriteSchema, { record: named, grant: r.tombstoneUpdate!.grant! }) }, ...a.releases.slice(1)] };
        },
      }, "Token's tombstone is not an anonymous reservation of the released directed id"],
      ["a delete of another user's Subject Record", {
        finishDelete: async (a) => ({ ...a, subjectDeletes: [await rogueGrant("subject", "delete", subjectHash(lookupKey, bob().iss, bob().sub))] }),
      }, "Token's subject grant is not for the subject record this login needs"],
      ["a delete of another user's wallet", {
        finishDelete: async (a) => ({ ...a, walletDelete: await rogueGrant("wallet", "delete", walletHash(lookupKey, uids[USERS.bob.sub]!)) }),
      }, "Token's wallet grant is not for the wallet record this login needs"],
      ["a delete of another user's release", {
        finishDelete: async (a) => ({ ...a, releases: [{ ...a.releases[0]!, releaseDelete: await rogueGrant("release", "delete", releaseHash(lookupKey, uids[USERS.bob.sub]!, "app-a")) }, ...a.releases.slice(1)] }),
      }, "Token's release grant is not for the release record this login needs"],
      ["no grants for one release", { finishDelete: async (a) => ({ ...a, releases: a.releases.slice(1) }) },
        "Token's delete grants are not for exactly the deletion record's releases"],
      ["a delete of another user's holdings instead of this user's", {
        finishDelete: async (a) => ({ ...a, holdingsDelete: await rogueGrant("holdings", "delete", holdingsHash(lookupKey, uids[USERS.bob.sub]!)) }),
      }, "Token's holdings grant is not for the holdings record this login needs"],
      ["a delete of a credential record the holdings do not list", {
        finishDelete: async (a) => ({ ...a, credentialDeletes: [await rogueGrant("credential", "delete", credentialHash(lookupKey, "https://issuer.test", "another", "one")), ...a.credentialDeletes.slice(1)] }),
      }, "Token's credential grant is not for the credential record this login needs"],
      ["no grant for one credential record", { finishDelete: async (a) => ({ ...a, credentialDeletes: a.credentialDeletes.slice(1) }) },
        "Token's delete grants are not for exactly the deletion record's credential holdings"],
    ];
    for (const [what, twist, message] of finishing) {
      it(`a compromised Token granting ${what} is refused after the commit point, before anything is removed; the next honest sign-in finishes the delete: ${message}`, async function () {
        await holdingsFor((await ginasWallet()).uid);
        const bobBefore = await login(honest, USERS.bob, "a");
        const before = changed.length;
        await refused(remove(rogue(twist)), message);
        expect(changed.slice(before), "only the commit point").to.deep.equal(["update wallet"]);
        // Honest twin: Gina's next sign-in meets the deletion record and finishes the delete; Bob is untouched.
        expect(await rejectionOf(login(honest, GINA, "a"))).to.be.instanceOf(WalletDeleted);
        expect(await holds(subjectHash(lookupKey, upstream.devOp.issuer, GINA.sub), "subject")).to.equal(false);
        expect((await login(honest, USERS.bob, "a")).claims.sub).to.equal(bobBefore.claims.sub);
      });
    }
  });
  describe("link (docs/transactions.md): Token's Subject Record and wallet are exactly the account Orchestration verified, added", function () {
    /** Ivy's account page, then a link of Hank's account, through `driver`. */
    before(async () => {
      subs.ivyA = String((await login(honest, IVY, "a")).claims.sub);
    });

    async function linkHank(driver: LoginDriver) {
      const began = Date.now();
      const started = await honest.startAccount("dev");
      const view = (await honest.openAccount(started.sessionToken, began, await upstream.login(IVY, started.upstreamNonce, { prompt: "login" })))!;
      const txBegan = Date.now();
      const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.LINK, "dev");
      await driver.linkSubject(tx.sessionToken, txBegan, await upstream.login(HANK, tx.upstreamNonce, { prompt: "login" }), view.uid);
      return view;
    }
    const hank = () => ({ iss: upstream.devOp.issuer, sub: HANK.sub });
    const bentWallet = (change: (w: RecordClaims["wallet"]) => RecordClaims["wallet"]): Twist => ({
      linkSubject: async (a) => {
        const record = await rogueRecord("wallet", change(claimsOf<RecordClaims["wallet"]>(a.wallet!.record)));
        return { ...a, wallet: create(RecordWriteSchema, { record, grant: await rogueGrant("wallet", "update", a.wallet!.grant!.hash, sha256(record)) }) };
      },
    });
    const bentSubject = (change: (s: RecordClaims["subject"]) => RecordClaims["subject"], at?: () => string): Twist => ({
      linkSubject: async (a) => {
        const claims = change(claimsOf<RecordClaims["subject"]>(a.subject!.record));
        return { ...a, subject: await rogueWrite("subject", at?.() ?? a.subject!.grant!.hash, claims) };
      },
    });

    const twists: Array<[string, () => Twist, string]> = [
      ["a Subject Record pointing at another user", () => bentSubject((sub) => ({ ...sub, uid: uids[USERS.bob.sub]! })),
        "the new subject record is not the account signed in with, for this user, as a sign-in account"],
      ["a Subject Record of another account, at its own hash", () => bentSubject((sub) => ({ ...sub, op_sub: USERS.bob.sub }), () => subjectHash(lookupKey, upstream.devOp.issuer, USERS.bob.sub)),
        "Token's subject grant is not for the subject record this login needs"],
      ["a wallet that adds another account than the one signed in with", () => bentWallet((w) => ({ ...w, subjects: [...w.subjects.slice(0, -1), { iss: hank().iss, sub: USERS.bob.sub }] })),
        "Token's wallet for this link is not the wallet as read with only that change and its history entry"],
      ["a wallet that also changes a claim", () => bentWallet((w) => ({ ...w, claims: { ...w.claims, email: "mallory@example.org" } })),
        "Token's wallet for this link is not the wallet as read with only that change and its history entry"],
      ["a wallet without the history entry", () => bentWallet((w) => ({ ...w, history: w.history!.slice(0, -1) })),
        "Token's wallet for this link is not the wallet as read with only that change and its history entry"],
      ["a wallet that drops a subject it had", () => bentWallet((w) => ({ ...w, subjects: w.subjects.slice(1) })),
        "Token's wallet for this link is not the wallet as read with only that change and its history entry"],
      ["the link written over another user's wallet", () => ({
        linkSubject: async (a) => ({ ...a, wallet: create(RecordWriteSchema, { record: a.wallet!.record, grant: await rogueGrant("wallet", "update", walletHash(lookupKey, uids[USERS.bob.sub]!)) }) }),
      }), "Token's wallet grant is not for the wallet record this login needs"],
    ];
    for (const [what, twist, message] of twists) {
      it(`a compromised Token minting ${what} is refused before anything is written: ${message}`, async function () {
        const before = changed.length;
        await refused(linkHank(rogue(twist())), message);
        expect(changed.slice(before), "no wallet rewritten").to.deep.equal([]);
        expect(await holds(subjectHash(lookupKey, hank().iss, hank().sub), "subject"), "Hank is in no wallet").to.equal(false);
      });
    }

    /** Ivy unlinks Hank's account, confirming with her own, through `driver`. */
    async function unlinkHank(driver: LoginDriver) {
      const began = Date.now();
      const started = await honest.startAccount("dev");
      const view = (await honest.openAccount(started.sessionToken, began, await upstream.login(IVY, started.upstreamNonce, { prompt: "login" })))!;
      const txBegan = Date.now();
      const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.UNLINK, "dev", { unlink: hank() });
      await driver.unlinkSubject(tx.sessionToken, txBegan, await upstream.login(IVY, tx.upstreamNonce, { prompt: "login" }), view.uid, hank());
    }

    it("the honest twin: Hank's account is linked to Ivy's wallet, in one write, and signs in as Ivy", async function () {
      const ivyAtA = subs.ivyA;
      const before = { written: written.length, changed: changed.length };
      const view = await linkHank(honest);
      expect(written.slice(before.written)).to.deep.equal(["subject"]);
      expect(changed.slice(before.changed)).to.deep.equal(["update wallet"]);
      const viaHank = await login(honest, HANK, "a");
      expect(viaHank.claims.sub).to.equal(ivyAtA);
      expect(viaHank.consented).to.equal(false);
      expect(uids[IVY.sub]).to.equal(view.uid);
    });
  
    const unlinkTwists: Array<[string, () => Twist, string]> = [
      ["an unlink that removes Ivy's own account instead", () => ({
        unlinkSubject: async (a) => {
          const w = claimsOf<RecordClaims["wallet"]>(a.wallet!.record);
          const record = await rogueRecord("wallet", { ...w, subjects: [hank()] });
          return { ...a, wallet: create(RecordWriteSchema, { record, grant: await rogueGrant("wallet", "update", a.wallet!.grant!.hash, sha256(record)) }) };
        },
      }), "Token's wallet for this unlink is not the wallet as read with only that change and its history entry"],
      ["a delete of Ivy's own Subject Record", () => ({
        unlinkSubject: async (a) => ({ ...a, subjectDelete: await rogueGrant("subject", "delete", subjectHash(lookupKey, upstream.devOp.issuer, IVY.sub)) }),
      }), "Token's subject grant is not for the subject record this login needs"],
    ];
    for (const [what, twist, message] of unlinkTwists) {
      it(`a compromised Token answering an unlink with ${what} is refused before anything is written: ${message}`, async function () {
        const before = changed.length;
        await refused(unlinkHank(rogue(twist())), message);
        expect(changed.slice(before)).to.deep.equal([]);
      });
    }

    it("the honest twin: Ivy unlinks Hank's account in one write; Hank's next sign-in is a new user", async function () {
      const before = changed.length;
      await unlinkHank(honest);
      expect(changed.slice(before)).to.deep.equal(["update wallet", "delete subject"]);
      const hankAlone = await login(honest, HANK, "a");
      expect(hankAlone.newUser).to.equal(true);
      expect(hankAlone.claims.sub).to.not.equal(subs.ivyA);
    });
});

  describe("claims (docs/transactions.md): Token's wallet takes exactly the chosen claims, with the values Orchestration read in the OP ID Token", function () {
    let jules: string;
    before(async () => {
      await login(honest, JULES, "a");
      // Kim's account linked to Jules's wallet: Jules takes details from it.
      const began = Date.now();
      const started = await honest.startAccount("dev");
      const view = (await honest.openAccount(started.sessionToken, began, await upstream.login(JULES, started.upstreamNonce, { prompt: "login" })))!;
      jules = view.uid;
      const txBegan = Date.now();
      const tx = await honest.beginTransaction(view.sessionToken, TransactionKind.LINK, "dev");
      await honest.linkSubject(tx.sessionToken, txBegan, await upstream.login(KIM, tx.upstreamNonce, { prompt: "login" }), view.uid);
    });

    /** Jules takes `names` from Kim's account through `driver`. */
    async function take(driver: LoginDriver, names: string[]) {
      const began = Date.now();
      const started = await honest.startAccount("dev");
      const view = (await honest.openAccount(started.sessionToken, began, await upstream.login(JULES, started.upstreamNonce, { prompt: "login" })))!;
      const txBegan = Date.now();
      const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.CLAIMS, "dev");
      const { state, wallet } = await driver.openClaims(tx.sessionToken, txBegan, await upstream.login(KIM, tx.upstreamNonce, { prompt: "login" }), view.uid);
      expect(state.offered).to.include({ name: KIM.name, email: KIM.email });
      await driver.updateClaims(state, names);
      return wallet;
    }
    const bent = (change: (w: RecordClaims["wallet"]) => RecordClaims["wallet"]): Twist => ({
      updateClaims: async (a) => {
        const record = await rogueRecord("wallet", change(claimsOf<RecordClaims["wallet"]>(a.wallet!.record)));
        return { ...a, wallet: create(RecordWriteSchema, { record, grant: await rogueGrant("wallet", "update", a.wallet!.grant!.hash, sha256(record)) }) };
      },
    });
    const message = "Token's wallet for this claims update is not the wallet as read with only that change and its history entry";
    const twists: Array<[string, () => Twist]> = [
      ["a value the provider did not say", () => bent((w) => ({ ...w, claims: { ...w.claims, name: "Mallory" } }))],
      ["a claim the user did not choose, changed too", () => bent((w) => ({ ...w, claims: { ...w.claims, email: KIM.email, email_verified: true } }))],
      ["no record of where the claim came from", () => bent(({ sources: _s, ...w }) => w)],
    ];
    for (const [what, twist] of twists) {
      it(`a compromised Token writing ${what} is refused before anything is written`, async function () {
        const before = changed.length;
        await refused(take(rogue(twist()), ["name"]), message);
        expect(changed.slice(before)).to.deep.equal([]);
      });
    }

    it("the honest twin: Jules's wallet takes Kim's name, and only that; the apps see it at the next sign-in", async function () {
      const before = await take(honest, ["name"]);
      expect(before.claims.name).to.equal(JULES.name);
      const atA = await login(honest, JULES, "a");
      expect(atA.claims).to.include({ name: KIM.name, email: JULES.email, email_verified: false });
      expect(uids[JULES.sub] ?? jules).to.equal(jules);
    });
  });

  describe("prompt=consent (OIDC Core §3.1.2.1): Token's changed release is the one read with exactly the claims chosen", function () {
    before(async () => {
      await login(honest, QUINN, "b", ["email"]);
    });

    /** Quinn's prompt=consent login at app b, through `driver`, choosing `claims`: the ID Token's claims. */
    async function reconsent(driver: LoginDriver, claims: string[]) {
      const request = { ...appParameters("b"), prompt: "consent" };
      const began = Date.now();
      const started = await driver.start(request, "dev");
      const first = await driver.continue(started.sessionToken, loginContext(request, began), await upstream.login(QUINN, started.upstreamNonce));
      if (first.kind !== "consent" || !first.existing) return expect.fail("prompt=consent with a release asks to confirm it");
      const done = await driver.changeConsent(first.state, first.existing.release, claims);
      return { released: first.existing.released, claims: decodeJwt(done.idToken) };
    }
    const bent = (change: (r: RecordClaims["release"]) => RecordClaims["release"]): Twist => ({
      updateRelease: async (a) => {
        const record = await rogueRecord("release", change(claimsOf<RecordClaims["release"]>(a.release!.record)));
        return { ...a, release: create(RecordWriteSchema, { record, grant: await rogueGrant("release", "update", a.release!.grant!.hash, sha256(record)) }) };
      },
    });
    const twists: Array<[string, Twist, string]> = [
      ["a claim the user did not choose", bent((r) => ({ ...r, claims: [...r.claims, "email_verified"] })), "Token's release change is not the release read with the chosen claims"],
      ["another directed id", bent((r) => ({ ...r, directed_id: "someone-else" })), "Token's release change is not the release read with the chosen claims"],
      ["the release of another app", {
        updateRelease: async (a) => ({ ...a, release: { ...a.release!, grant: await rogueGrant("release", "update", releaseHash(lookupKey, uids[QUINN.sub]!, "app-a"), sha256(a.release!.record)) } }),
      }, "Token's release grant is not for the release record this login needs"],
      ["a wallet rewrite that is not the wallet", {
        updateRelease: async (a) => {
          const wallet = claimsOf<RecordClaims["wallet"]>(a.wallet!.record);
          const record = await rogueRecord("wallet", { ...wallet, claims: { ...wallet.claims, name: "Mallory" } });
          return { ...a, wallet: create(RecordWriteSchema, { record, grant: await rogueGrant("wallet", "update", a.wallet!.grant!.hash, sha256(record)) }) };
        },
      }, "Token's rewrite of the wallet is not the wallet unchanged"],
    ];
    for (const [what, twist, message] of twists) {
      it(`a compromised Token writing ${what} is refused before anything is written`, async function () {
        const before = changed.length;
        await refused(reconsent(rogue(twist), ["email", "name"]), message);
        expect(changed.slice(before)).to.deep.equal([]);
      });
    }

    it("the honest twin: name added, then email withdrawn, each written with the wallet; confirmed as it is, nothing is written; the sub stays", async function () {
      const before = changed.length;
      const added = await reconsent(honest, ["email", "name"]);
      expect(added.released).to.deep.equal(["email"]);
      expect(added.claims).to.include({ email: QUINN.email, name: QUINN.name });
      expect(changed.slice(before)).to.deep.equal(["update wallet", "update release"]);
      const withdrawn = await reconsent(honest, ["name"]);
      expect(withdrawn.claims).to.not.have.property("email");
      expect(withdrawn.claims.sub).to.equal(added.claims.sub);
      const mark = changed.length;
      const same = await reconsent(honest, ["name"]);
      expect(same.released).to.deep.equal(["name"]);
      expect(changed.slice(mark), "confirmed as it is").to.deep.equal([]);
    });
  });

  describe("release changes (docs/transactions.md): Token's release and tombstone are exactly the change asked for", function () {
    /** Jules changes what app a receives, through `driver`. */
    async function change(driver: LoginDriver, what: { forget: true } | { keep: string[] }) {
      const began = Date.now();
      const started = await honest.startAccount("dev");
      const view = (await honest.openAccount(started.sessionToken, began, await upstream.login(JULES, started.upstreamNonce, { prompt: "login" })))!;
      const txBegan = Date.now();
      const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.RELEASE, "dev", { clientId: "app-a" });
      await driver.changeRelease(tx.sessionToken, txBegan, await upstream.login(JULES, tx.upstreamNonce, { prompt: "login" }), view.uid, "app-a", what);
    }
    const twists: Array<[string, () => Twist, { forget: true } | { keep: string[] }, string]> = [
      ["a release that keeps a claim the user withdrew", () => ({
        changeRelease: async (a) => {
          const r = claimsOf<RecordClaims["release"]>(a.release!.record);
          const record = await rogueRecord("release", { ...r, claims: [...r.claims, "email"] });
          return { ...a, release: create(RecordWriteSchema, { record, grant: await rogueGrant("release", "update", a.release!.grant!.hash, sha256(record)) }) };
        },
      }), { keep: ["name"] }, "Token's release is not this app's release with only the claims kept"],
      ["a tombstone that still names the user", () => ({
        changeRelease: async (a) => {
          const t = claimsOf<RecordClaims["reservation"]>(a.tombstoneUpdate!.record);
          const record = await rogueRecord("reservation", { ...t, uid: "someone" });
          return { ...a, tombstoneUpdate: create(RecordWriteSchema, { record, grant: a.tombstoneUpdate!.grant! }) };
        },
      }), { forget: true }, "Token's tombstone is not an anonymous reservation of the released directed id"],
      ["a delete of another app's release", () => ({
        changeRelease: async (a) => ({ ...a, releaseDelete: await rogueGrant("release", "delete", releaseHash(lookupKey, uids[JULES.sub] ?? "x", "app-b")) }),
      }), { forget: true }, "Token's release grant is not for the release record this login needs"],
    ];
    for (const [what, twist, asked, message] of twists) {
      it(`a compromised Token answering with ${what} is refused before anything is written: ${message}`, async function () {
        const before = changed.length;
        await refused(change(rogue(twist()), asked), message);
        expect(changed.slice(before)).to.deep.equal([]);
      });
    }

    it("the honest twins: withdrawing leaves app a the name only, with the same sub; forgetting makes app a ask again, and see a new user", async function () {
      const first = await login(honest, JULES, "a");
      await change(honest, { keep: ["name"] });
      const fewer = await login(honest, JULES, "a");
      expect(fewer.consented).to.equal(false);
      expect(fewer.claims.sub).to.equal(first.claims.sub);
      expect(fewer.claims).to.have.property("name").and.not.have.property("email");
      const before = changed.length;
      await change(honest, { forget: true });
      expect(changed.slice(before)).to.deep.equal(["update wallet", "delete release", "update reservation"]);
      const again = await login(honest, JULES, "a");
      expect(again.consented).to.equal(true);
      expect(again.claims.sub).to.not.equal(first.claims.sub);
    });
  });

  describe("recovery (docs/transactions.md, \"Recovery\"): recovery accounts linked as such, a threshold of providers counted by Orchestration itself, the wallet written only at it", function () {
    const op = (providerId: "dev" | "dev2") => (providerId === "dev" ? upstream : upstream2);
    const dev = () => upstream.devOp.issuer;
    const dev2 = () => upstream2.devOp.issuer;
    const lena = () => uids[LENA.sub]!;
    /** The version Storage holds Lena's wallet at: what a write would move on. */
    const walletVersion = async () => (await store.read(walletHash(lookupKey, lena()), "wallet")).version;
    before(async () => {
      subs.lenaA = String((await login(honest, LENA, "a")).claims.sub);
    });

    /** Lena's account page, after a forced fresh sign-in with her own account. */
    async function lenasPage() {
      const began = Date.now();
      const started = await honest.startAccount("dev");
      return (await honest.openAccount(started.sessionToken, began, await upstream.login(LENA, started.upstreamNonce, { prompt: "login" })))!;
    }

    /** `user`'s account at `providerId` linked to Lena's wallet through `driver`: a recovery account unless `recovery` is false. */
    async function linkToLena(driver: LoginDriver, user: DevUser, providerId: "dev" | "dev2", recovery = true) {
      const view = await lenasPage();
      const began = Date.now();
      const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.LINK, providerId, recovery ? { recovery: true } : {});
      await driver.linkSubject(tx.sessionToken, began, await op(providerId).login(user, tx.upstreamNonce, { prompt: "login" }), view.uid, recovery);
    }

    /** A recovery's round through `driver` with `user`'s account at `providerId`: the first, or the next after `state`. */
    async function round(driver: LoginDriver, user: DevUser, providerId: "dev" | "dev2", state?: RecoveryState) {
      const began = Date.now();
      const started = state ? await driver.nextRecovery(state, providerId) : await driver.startRecovery(providerId);
      return driver.recover(started.sessionToken, began, await op(providerId).login(user, started.upstreamNonce, { prompt: "login" }), state);
    }

    /** Lena's wallet recovered through `driver`: Milo's account at the dev OP, then Nell's at the second. */
    async function recoverLena(driver: LoginDriver) {
      const first = await round(driver, MILO, "dev");
      if (first.kind !== "more") throw new Error("the first round ended the recovery");
      return round(driver, NELL, "dev2", first.state);
    }

    /** `attempt` refused with exactly `message`, nothing created, and Lena's wallet neither rewritten nor moved on. */
    async function untouched(attempt: Promise<unknown>, message: string) {
      const [before, version] = [changed.length, await walletVersion()];
      await refused(attempt, message);
      expect(changed.slice(before), "no wallet rewritten").to.deep.equal([]);
      expect(await walletVersion(), "the wallet's version").to.equal(version);
    }

    // --- linking recovery accounts -----------------------------------------------------------

    const bentLinkWallet = (change: (w: RecordClaims["wallet"]) => RecordClaims["wallet"]): Twist => ({
      linkSubject: async (a) => {
        const record = await rogueRecord("wallet", change(claimsOf<RecordClaims["wallet"]>(a.wallet!.record)));
        return { ...a, wallet: create(RecordWriteSchema, { record, grant: await rogueGrant("wallet", "update", a.wallet!.grant!.hash, sha256(record)) }) };
      },
    });
    /** Token's Subject Record re-signed as `type` (a sign-in account's, or a recovery account's), its claims and grant Token's own. */
    const resignedSubject = (type: typeof RECOVERY_SUBJECT_RECORD): Twist => ({
      linkSubject: async (a) => {
        const record = await sign(type, key("record"), claimsOf(a.subject!.record));
        return { ...a, subject: create(RecordWriteSchema, { record, grant: await rogueGrant("subject", "create", a.subject!.grant!.hash, sha256(record)) }) };
      },
    });
    const lastSubject = (w: RecordClaims["wallet"], change: (s: RecordClaims["wallet"]["subjects"][number]) => RecordClaims["wallet"]["subjects"][number]) =>
      ({ ...w, subjects: [...w.subjects.slice(0, -1), change(w.subjects.at(-1)!)] });
    const linkMessage = "Token's wallet for this link is not the wallet as read with only that change and its history entry";
    const linkTwists: Array<[string, () => Twist, DevUser, boolean, string]> = [
      ["a recovery link minting a sign-in account's Subject Record", () => resignedSubject(RECORD_TYPES.subject), MILO, true,
        "the new subject record is not the account signed in with, for this user, as a recovery account"],
      ["a sign-in link minting a recovery account's Subject Record", () => resignedSubject(RECOVERY_SUBJECT_RECORD), OLGA, false,
        "the new subject record is not the account signed in with, for this user, as a sign-in account"],
      ["a recovery link whose wallet lists the account without recovery: true (a sign-in account in the wallet)", () => bentLinkWallet((w) => lastSubject(w, ({ recovery: _r, ...s }) => s)), MILO, true, linkMessage],
      ["a sign-in link whose wallet marks the account recovery: true", () => bentLinkWallet((w) => lastSubject(w, (s) => ({ ...s, recovery: true }))), OLGA, false, linkMessage],
      ["a recovery link whose wallet has no threshold", () => bentLinkWallet(({ recovery: _r, ...w }) => w), MILO, true, linkMessage],
      ["a recovery link whose wallet's threshold is 1", () => bentLinkWallet((w) => ({ ...w, recovery: { threshold: 1 } })), MILO, true, linkMessage],
      ["a recovery link whose history entry does not say recovery", () => bentLinkWallet((w) => ({ ...w, history: [...w.history!.slice(0, -1), { ...w.history!.at(-1)!, recovery: undefined }] })),
        MILO, true, linkMessage],
    ];
    for (const [what, twist, user, recovery, message] of linkTwists) {
      it(`a compromised Token answering ${what} is refused before anything is written: ${message}`, async function () {
        await untouched(linkToLena(rogue(twist()), user, "dev", recovery), message);
        expect(await holds(subjectHash(lookupKey, dev(), user.sub), "subject"), `${user.name} is in no wallet`).to.equal(false);
      });
    }

    it("the honest twin: Milo's account (dev) and Nell's (dev2) linked as recovery accounts, each in one write: a recovery Subject Record, marked in the wallet, a threshold of 2", async function () {
      const minted: string[] = [];
      // The real Token, its answers unchanged, only looked at.
      const watched = rogue({ linkSubject: async (a) => (minted.push(a.subject!.record), a) });
      const before = { written: written.length, changed: changed.length, version: await walletVersion() };
      await linkToLena(watched, MILO, "dev");
      await linkToLena(watched, NELL, "dev2");
      expect(written.slice(before.written)).to.deep.equal(["subject", "subject"]);
      expect(changed.slice(before.changed)).to.deep.equal(["update wallet", "update wallet"]);
      expect(await walletVersion()).to.equal(before.version + 2);
      expect(minted.map((record) => decodeProtectedHeader(record).typ)).to.deep.equal([RECOVERY_SUBJECT_RECORD.typ, RECOVERY_SUBJECT_RECORD.typ]);
      const { wallet } = await lenasPage();
      expect(wallet.subjects).to.deep.equal([
        { iss: dev(), sub: LENA.sub }, { iss: dev(), sub: MILO.sub, recovery: true }, { iss: dev2(), sub: NELL.sub, recovery: true },
      ]);
      expect(wallet.recovery).to.deep.equal({ threshold: 2 });
      expect(wallet.history!.slice(-2).map(({ at: _at, ...entry }) => entry)).to.deep.equal([
        { kind: "link", iss: dev(), recovery: true }, { kind: "link", iss: dev2(), recovery: true },
      ]);
    });

    // --- a recovery account signs in nowhere; a recovery takes nothing else ---------------------

    it("a recovery account used to sign in to an app is refused (RecoveryAccountOnly), and makes no user", async function () {
      const before = written.length;
      expect(await rejectionOf(login(honest, MILO, "a"), "Milo's login")).to.be.instanceOf(RecoveryAccountOnly);
      expect(written.slice(before)).to.deep.equal([]);
    });

    it("a recovery account used to open the account page, or to confirm a transaction, is refused (RecoveryAccountOnly)", async function () {
      const began = Date.now();
      const started = await honest.startAccount("dev2");
      const page = honest.openAccount(started.sessionToken, began, await upstream2.login(NELL, started.upstreamNonce, { prompt: "login" }));
      expect(await rejectionOf(page, "Nell's account page")).to.be.instanceOf(RecoveryAccountOnly);
      const view = await lenasPage();
      const txBegan = Date.now();
      const tx = await honest.beginTransaction(view.sessionToken, TransactionKind.CLAIMS, "dev");
      const confirm = honest.openClaims(tx.sessionToken, txBegan, await upstream.login(MILO, tx.upstreamNonce, { prompt: "login" }), view.uid);
      expect(await rejectionOf(confirm, "a claims update confirmed with Milo's account")).to.be.instanceOf(RecoveryAccountOnly);
    });

    it("a recovery round with a sign-in account, or with an account in no wallet, is refused (RecoveryRefused), and writes nothing", async function () {
      const before = { written: written.length, changed: changed.length };
      const lenaRound = await rejectionOf(round(honest, LENA, "dev"), "a round with Lena's own account");
      expect(lenaRound).to.be.instanceOf(RecoveryRefused);
      expect((lenaRound as Error).message).to.equal("the account signed in with is not a recovery account: a recovery is proven by recovery accounts only");
      const piaRound = await rejectionOf(round(honest, PIA, "dev"), "a round with Pia's account");
      expect(piaRound).to.be.instanceOf(RecoveryRefused);
      expect((piaRound as Error).message).to.equal("the account signed in with is not linked to any wallet");
      expect(written.slice(before.written)).to.deep.equal([]);
      expect(changed.slice(before.changed)).to.deep.equal([]);
    });

    it("a second round at the provider of the first is refused (RecoveryRefused) before Token is asked; Token refuses that round too", async function () {
      const first = await round(honest, MILO, "dev");
      if (first.kind !== "more") throw new Error("the first round ended the recovery");
      const calls: string[] = [];
      const counting = rogue(Object.fromEntries(Object.keys(TokenService.method).map((name) => [name, async (a: unknown) => (calls.push(name), a)])) as Twist);
      const began = Date.now();
      const again = await upstream.login(MILO, randomBytes(16).toString("base64url"), { prompt: "login" });
      const error = await rejectionOf(counting.recover(first.state.sessionToken, began, again, first.state), "a second round at dev");
      expect(error).to.be.instanceOf(RecoveryRefused);
      expect((error as Error).message).to.equal("this provider proved this recovery already: each round is at another provider");
      expect(calls, "Token calls").to.deep.equal([]);
      expect(await refusal(honest.nextRecovery(first.state, "dev"))).to.deep.equal({
        code: Code.PermissionDenied, message: "this provider proved this recovery already: the next round is at another provider",
      });
    });

    // --- a compromised Token's ProveRecovery ---------------------------------------------------

    /** A round-1 answer with a wallet write already: the wallet as read with a recovery entry of that one provider. */
    const early = (needed?: number): Twist => ({
      proveRecovery: async (a, req) => {
        if (a.wallet) return a;
        const w = claimsOf<RecordClaims["wallet"]>(req.walletRecord);
        const record = await rogueRecord("wallet", { ...w, history: [...(w.history ?? []), { kind: "recovery", at: Math.floor(Date.now() / 1000), iss: dev(), issuers: [dev()] }] });
        return { ...a, needed: needed ?? a.needed, wallet: create(RecordWriteSchema, { record, grant: await rogueGrant("wallet", "update", walletHash(lookupKey, w.uid), sha256(record)) }) };
      },
    });
    /** The threshold round's wallet with `change` made, re-signed; its grant Token's hash. */
    const bentRecovered = (change: (w: RecordClaims["wallet"]) => RecordClaims["wallet"]): Twist => ({
      proveRecovery: async (a) => {
        if (!a.wallet) return a;
        const record = await rogueRecord("wallet", change(claimsOf<RecordClaims["wallet"]>(a.wallet.record)));
        return { ...a, wallet: create(RecordWriteSchema, { record, grant: await rogueGrant("wallet", "update", a.wallet.grant!.hash, sha256(record)) }) };
      },
    });
    const lastEntry = (w: RecordClaims["wallet"], change: (e: NonNullable<RecordClaims["wallet"]["history"]>[number]) => NonNullable<RecordClaims["wallet"]["history"]>[number]) =>
      ({ ...w, history: [...w.history!.slice(0, -1), change(w.history!.at(-1)!)] });
    const countMessage = "Token's count of this recovery's providers is not the wallet's threshold less the providers that proved it";
    const walletMessage = "Token's wallet for this recovery is not the wallet as read with only that change and its history entry";
    const proveTwists: Array<[string, () => Twist, string]> = [
      ["a wallet write one round early (needed 0 after one provider)", () => early(0), countMessage],
      ["a wallet write one round early, needed still 1", () => early(), countMessage],
      ["needed 2 after one provider (a threshold of 3, not the wallet's 2)", () => ({ proveRecovery: async (a) => (a.wallet ? a : { ...a, needed: 2 }) }), countMessage],
      ["needed 1 and no wallet at the threshold", () => ({ proveRecovery: async (a) => (a.wallet ? { ...a, needed: 1, wallet: undefined } : a) }), countMessage],
      ["a wallet at the threshold that says needed 1", () => ({ proveRecovery: async (a) => (a.wallet ? { ...a, needed: 1 } : a) }), countMessage],
      ["a recovery entry naming another provider among its issuers", () => bentRecovered((w) => lastEntry(w, (e) => ({ ...e, issuers: [dev(), "https://mallory.example"] }))), walletMessage],
      ["a recovery entry naming only the last provider", () => bentRecovered((w) => lastEntry(w, (e) => ({ ...e, issuers: [dev2()] }))), walletMessage],
      ["a recovery entry naming the first provider as the last round's", () => bentRecovered((w) => lastEntry(w, (e) => ({ ...e, iss: dev() }))), walletMessage],
      ["a recovered wallet that also changes a claim", () => bentRecovered((w) => ({ ...w, claims: { ...w.claims, email: "mallory@example.org" } })), walletMessage],
      ["a recovered wallet that also adds an account to sign in with", () => bentRecovered((w) => ({ ...w, subjects: [...w.subjects, { iss: dev(), sub: PIA.sub }] })), walletMessage],
      ["a recovered wallet that makes a recovery account a sign-in account", () => bentRecovered((w) => ({ ...w, subjects: w.subjects.map(({ recovery: _r, ...s }) => s) })), walletMessage],
      ["a recovered wallet with its threshold lowered to 1", () => bentRecovered((w) => ({ ...w, recovery: { threshold: 1 } })), walletMessage],
      ["the recovered wallet written over another user's wallet", () => ({
        proveRecovery: async (a) => (a.wallet ? { ...a, wallet: create(RecordWriteSchema, { record: a.wallet.record, grant: await rogueGrant("wallet", "update", walletHash(lookupKey, uids[USERS.bob.sub]!)) }) } : a),
      }), "Token's wallet grant is not for the wallet record this login needs"],
    ];
    for (const [what, twist, message] of proveTwists) {
      it(`a compromised Token proving a recovery with ${what} is refused before anything is written: ${message}`, async function () {
        await untouched(recoverLena(rogue(twist())), message);
      });
    }

    // --- the recovery threshold ---------------------------------------------------------------

    /** Lena sets her recovery threshold to `threshold` through `driver`, confirming at the dev OP with her own account. */
    async function setThreshold(driver: LoginDriver, threshold: number) {
      const view = await lenasPage();
      const began = Date.now();
      const tx = await honest.beginTransaction(view.sessionToken, TransactionKind.RECOVERY_THRESHOLD, "dev", { threshold });
      await driver.setRecoveryThreshold(tx.sessionToken, began, await upstream.login(LENA, tx.upstreamNonce, { prompt: "login" }), view.uid, threshold);
    }
    const bentThreshold = (change: (w: RecordClaims["wallet"]) => RecordClaims["wallet"]): Twist => ({
      setRecoveryThreshold: async (a) => {
        const record = await rogueRecord("wallet", change(claimsOf<RecordClaims["wallet"]>(a.wallet!.record)));
        return { ...a, wallet: create(RecordWriteSchema, { record, grant: await rogueGrant("wallet", "update", a.wallet!.grant!.hash, sha256(record)) }) };
      },
    });
    const thresholdTwists: Array<[string, Twist]> = [
      ["a threshold of 1 for the 2 asked", bentThreshold((w) => ({ ...w, recovery: { threshold: 1 } }))],
      ["a history entry naming another threshold", bentThreshold((w) => ({ ...w, history: [...w.history!.slice(0, -1), { ...w.history!.at(-1)!, threshold: 3 }] }))],
      ["a recovery account dropped with it", bentThreshold((w) => ({ ...w, subjects: w.subjects.filter((s) => !s.recovery) }))],
    ];
    for (const [what, twist] of thresholdTwists) {
      it(`a compromised Token answering a threshold change with ${what} is refused before anything is written`, async function () {
        await untouched(setThreshold(rogue(twist), 2), "Token's wallet for this threshold change is not the wallet as read with only that change and its history entry");
      });
    }

    it("the honest twin: Lena's threshold set to 2 in one write, with its history entry", async function () {
      const before = changed.length;
      await setThreshold(honest, 2);
      expect(changed.slice(before)).to.deep.equal(["update wallet"]);
      const view = await lenasPage();
      expect(view.wallet.recovery).to.deep.equal({ threshold: 2 });
      expect(view.wallet.history!.at(-1)).to.deep.include({ kind: "threshold", iss: upstream.devOp.issuer, threshold: 2 });
    });

    it("the honest twin: Milo's round (dev) needs one more, nothing written; Nell's (dev2) recovers Lena's wallet in one write; the recovered session links Olga's account, which signs in as Lena", async function () {
      const before = { written: written.length, changed: changed.length, version: await walletVersion() };
      const first = await round(honest, MILO, "dev");
      if (first.kind !== "more") throw new Error("the first round ended the recovery");
      expect(first.state).to.include({ uid: lena(), needed: 1 });
      expect(first.state.proven).to.deep.equal([dev()]);
      expect(changed.slice(before.changed), "nothing written before the threshold").to.deep.equal([]);
      const second = await round(honest, NELL, "dev2", first.state);
      if (second.kind !== "done") throw new Error("the second round did not end the recovery");
      expect(written.slice(before.written)).to.deep.equal([]);
      expect(changed.slice(before.changed)).to.deep.equal(["update wallet"]);
      expect(await walletVersion()).to.equal(before.version + 1);
      const { view } = second;
      expect(view.uid).to.equal(lena());
      expect(view.wallet.claims).to.include({ email: LENA.email, name: LENA.name });
      const { at, ...entry } = view.wallet.history!.at(-1)!;
      expect(entry).to.deep.equal({ kind: "recovery", iss: dev2(), issuers: [dev(), dev2()] });
      expect(Math.abs(at - Date.now() / 1000)).to.be.below(60);
      expect(view.releases.map((r) => r.clientId)).to.include("app-a");

      // The recovered session begins a link, and nothing else.
      expect(await refusal(honest.beginTransaction(view.sessionToken, TransactionKind.DELETE, "dev"))).to.deep.equal({
        code: Code.PermissionDenied, message: "a recovered wallet's transaction is a link: link an account to sign in with, then sign in with it for the others",
      });
      const began = Date.now();
      const tx = await honest.beginTransaction(view.sessionToken, TransactionKind.LINK, "dev");
      await honest.linkSubject(tx.sessionToken, began, await upstream.login(OLGA, tx.upstreamNonce, { prompt: "login" }), view.uid);
      const viaOlga = await login(honest, OLGA, "a");
      expect(viaOlga.consented).to.equal(false);
      expect(viaOlga.claims.sub).to.equal(subs.lenaA);
      expect(viaOlga.claims).to.include({ email: LENA.email });
    });
  });

  describe("merge (docs/transactions.md, \"Merge\"): Token's merge is the two wallets as read joined into the earlier, checked by Orchestration, then written in one WriteRecords", function () {
    type Provider = "dev" | "dev2";
    const op = (providerId: Provider) => (providerId === "dev" ? upstream : upstream2);
    const dev = () => upstream.devOp.issuer;
    const dev2 = () => upstream2.devOp.issuer;
    /** Tess's two wallets: her dev account's (made first) and her dev2 account's (made later, with Uma's recovery account). */
    const tess = { earlier: "", later: "" };
    /** Tess's sub at each app, by wallet: earlier at a and b, later at a and c. */
    const tessSubs = { earlierA: "", earlierB: "", laterA: "", laterC: "" };
    const vera = () => uids[VERA.sub]!;
    /** A wallet's members without the ones sign() sets anew. */
    const bare = ({ iss: _iss, aud: _aud, iat: _iat, ...w }: RecordClaims["wallet"] & { iss?: unknown; aud?: unknown; iat?: unknown }) => w;

    /** A login at `app` with `user`'s account at `providerId`, consenting to every claim if asked. */
    async function loginAt(driver: LoginDriver, providerId: Provider, user: DevUser, app: App) {
      if (providerId === "dev") return login(driver, user, app);
      const request = app === "a" || app === "b" ? appParameters(app) : { ...appParameters("a"), clientId: `app-${app}`, redirectUri: `https://${app}.example/callback` };
      const began = Date.now();
      const started = await driver.start(request, providerId);
      const first = await driver.continue(started.sessionToken, loginContext(request, began), await op(providerId).login(user, started.upstreamNonce));
      const done = first.kind === "consent" ? await driver.consent(first.state, Object.keys(first.wallet.claims), first.newUser) : first;
      return { ...done, consented: first.kind === "consent", claims: decodeJwt(done.idToken), request };
    }

    /** `user`'s account page, after a forced fresh sign-in at `providerId`. */
    async function page(providerId: Provider, user: DevUser) {
      const began = Date.now();
      const started = await honest.startAccount(providerId);
      return (await honest.openAccount(started.sessionToken, began, await op(providerId).login(user, started.upstreamNonce, { prompt: "login" })))!;
    }

    /**
     * A merge through `driver` from the account page of `from` (Tess's later wallet unless
     * said), confirmed by a fresh login with `user`'s account at `providerId` (Tess's dev
     * account, of the earlier wallet, unless said), forced unless `forced` is false.
     */
    async function merge(driver: LoginDriver, { user = TESS, providerId = "dev" as Provider, from = ["dev2", TESS_TOO] as [Provider, DevUser], forced = true } = {}) {
      const view = await page(...from);
      const began = Date.now();
      const tx = await driver.beginTransaction(view.sessionToken, TransactionKind.MERGE, providerId);
      return driver.mergeWallets(tx.sessionToken, began, await op(providerId).login(user, tx.upstreamNonce, forced ? { prompt: "login" } : {}), view.uid);
    }

    /** `attempt` ends in `error` (with `message`, if given), and nothing is created, updated or deleted meanwhile; both wallets are still there. */
    async function nothingMerged(attempt: Promise<unknown>, error: new (...args: never[]) => Error, message?: string) {
      const before = { written: written.length, changed: changed.length, batches: batches.length };
      const refusal = await rejectionOf(attempt, "the merge");
      expect(refusal).to.be.instanceOf(error);
      if (message !== undefined) expect((refusal as Error).message).to.equal(message);
      expect(written.slice(before.written), "nothing created").to.deep.equal([]);
      expect(changed.slice(before.changed), "nothing updated or deleted").to.deep.equal([]);
      expect(batches.slice(before.batches), "no WriteRecords").to.deep.equal([]);
      expect(await holds(walletHash(lookupKey, tess.later), "wallet"), "the later wallet").to.equal(true);
      expect(await holds(walletHash(lookupKey, tess.earlier), "wallet"), "the earlier wallet").to.equal(true);
    }

    before(async function () {
      // Tess's first wallet, at the dev OP: releases at apps a and b.
      tessSubs.earlierA = String((await login(honest, TESS, "a")).claims.sub);
      tessSubs.earlierB = String((await login(honest, TESS, "b")).claims.sub);
      tess.earlier = uids[TESS.sub]!;
      // A second later at least (`created` is in seconds), her second wallet: releases at apps a and c.
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      tessSubs.laterA = String((await loginAt(honest, "dev2", TESS_TOO, "a")).claims.sub);
      tessSubs.laterC = String((await loginAt(honest, "dev2", TESS_TOO, "c")).claims.sub);
      // Uma's account linked to the later wallet as a recovery account (a history entry, a threshold, a recovery Subject Record).
      const later = await page("dev2", TESS_TOO);
      tess.later = later.uid;
      const linkBegan = Date.now();
      const link = await honest.beginTransaction(later.sessionToken, TransactionKind.LINK, "dev", { recovery: true });
      await honest.linkSubject(link.sessionToken, linkBegan, await upstream.login(UMA, link.upstreamNonce, { prompt: "login" }), later.uid, true);
      // The earlier wallet's own history entry: app b now receives the email only.
      const earlier = await page("dev", TESS);
      const changeBegan = Date.now();
      const change = await honest.beginTransaction(earlier.sessionToken, TransactionKind.RELEASE, "dev", { clientId: "app-b" });
      await honest.changeRelease(change.sessionToken, changeBegan, await upstream.login(TESS, change.upstreamNonce, { prompt: "login" }), earlier.uid, "app-b", { keep: ["email"] });
      // Vera's wallet, which no merge of Tess's may touch.
      subs.veraA = String((await login(honest, VERA, "a")).claims.sub);
    });

    it("a compromised Token that leaves out one app's release read (of either user) is refused: no release is hidden from the merge", async function () {
      for (const side of ["releaseReads", "otherReleaseReads"] as const) {
        await nothingMerged(merge(rogue({ authorizeMerge: async (a) => ({ ...a, [side]: a[side].slice(1) }) })), ProtocolViolation,
          "Token's release grants are not for this user's release at every app hello-mesh serves");
      }
    });

    it("Tess's two wallets: the earlier is her dev account's, the later her dev2 account's, each with its own history", async function () {
      const [earlier, later] = [await page("dev", TESS), await page("dev2", TESS_TOO)];
      expect(earlier.uid).to.equal(tess.earlier).and.not.equal(tess.later);
      expect(earlierWallet(earlier.wallet, later.wallet)).to.equal(earlier.wallet);
      expect(earlier.wallet.created).to.be.below(later.wallet.created!);
      expect(earlier.wallet.history!.map((h) => h.kind)).to.deep.equal(["release"]);
      expect(later.wallet.history!.map((h) => h.kind)).to.deep.equal(["link"]);
      expect(later.wallet.subjects).to.deep.equal([{ iss: dev2(), sub: TESS_TOO.sub }, { iss: dev(), sub: UMA.sub, recovery: true }]);
    });

    // --- a merge that cannot be ----------------------------------------------------------------

    it("a merge confirmed by a login the provider did not force is refused by Orchestration's own reading (LoginRequired), before Token is asked", async function () {
      const asked: string[] = [];
      const counting = rogue({ authorizeSubject: async (a) => (asked.push("authorizeSubject"), a), authorizeMerge: async (a) => (asked.push("authorizeMerge"), a) });
      await nothingMerged(merge(counting, { forced: false }), LoginRequired);
      expect(asked).to.deep.equal([]);
    });

    it("a merge confirmed with an account in no wallet is refused (MergeRefused: link it instead), and makes no user", async function () {
      await nothingMerged(merge(honest, { user: PIA }), MergeRefused, "the account signed in with is in no wallet: link it instead");
      expect(await holds(subjectHash(lookupKey, dev(), PIA.sub), "subject")).to.equal(false);
    });

    it("a merge confirmed with an account of the same wallet is refused (MergeRefused), from either wallet", async function () {
      const message = "the account signed in with is this wallet's already";
      await nothingMerged(merge(honest, { user: TESS_TOO, providerId: "dev2" }), MergeRefused, message);
      await nothingMerged(merge(honest, { from: ["dev", TESS] }), MergeRefused, message);
    });

    it("a merge confirmed with a recovery account of the other wallet is refused (RecoveryAccountOnly): a recovery account proves nothing alone", async function () {
      await nothingMerged(merge(honest, { user: UMA, from: ["dev", TESS] }), RecoveryAccountOnly, "the account is a recovery account, which cannot sign in alone");
    });

    // --- a compromised Token's MergeWallets ------------------------------------------------------

    type Merged = Answer<"mergeWallets">;
    const bentMerge = (bend: (a: Merged) => Promise<Merged>): Twist => ({ mergeWallets: bend });
    /** The surviving wallet with `change` made, re-signed; its grant at Token's hash. */
    const bentWallet = (change: (w: RecordClaims["wallet"]) => RecordClaims["wallet"]) => bentMerge(async (a) => {
      const record = await rogueRecord("wallet", change(claimsOf<RecordClaims["wallet"]>(a.wallet!.record)));
      return { ...a, wallet: create(RecordWriteSchema, { record, grant: await rogueGrant("wallet", "update", a.wallet!.grant!.hash, sha256(record)) }) };
    });
    /** The merged account `sub`'s Subject Record with `change` made, re-signed as `type`; its grant at Token's hash. */
    const bentSubject = (sub: () => string, change: (s: RecordClaims["subject"]) => RecordClaims["subject"], type = RECORD_TYPES.subject) => bentMerge(async (a) => ({
      ...a,
      subjects: await Promise.all(a.subjects.map(async (s) => {
        const claims = claimsOf<RecordClaims["subject"]>(s.update!.record);
        if (claims.op_sub !== sub()) return s;
        const record = await sign(type, key("record"), { ...change(claims) });
        return { ...s, update: create(RecordWriteSchema, { record, grant: await rogueGrant("subject", "update", s.update!.grant!.hash, sha256(record)) }) };
      })),
    }));
    /** Each merged release's `which` write (where it has one) with `change` made, re-signed; its grant at Token's hash. */
    const bentMove = <W extends "releaseCreate" | "releaseUpdate" | "reservationUpdate" | "reservationCreate">(which: W,
      change: (r: RecordClaims[W extends "releaseCreate" | "releaseUpdate" ? "release" : "reservation"]) => RecordClaims[W extends "releaseCreate" | "releaseUpdate" ? "release" : "reservation"]) =>
      bentMerge(async (a) => ({
        ...a,
        releases: await Promise.all(a.releases.map(async (r) => {
          const write = r[which];
          if (!write) return r;
          const kind = which.startsWith("release") ? "release" : "reservation";
          const changed = change(claimsOf(write.record)) as RecordClaims["release"] | RecordClaims["reservation"];
          const record = await sign(RECORD_TYPES[kind], key("record"), { ...changed });
          return { ...r, [which]: create(RecordWriteSchema, { record, grant: await rogueGrant(kind, which.endsWith("Create") ? "create" : "update", write.grant!.hash, sha256(record)) }) };
        })),
      }));
    const lastEntry = (w: RecordClaims["wallet"], change: (e: NonNullable<RecordClaims["wallet"]["history"]>[number]) => NonNullable<RecordClaims["wallet"]["history"]>[number]) =>
      ({ ...w, history: [...w.history!.slice(0, -1), change(w.history!.at(-1)!)] });
    const veraAccount = () => ({ iss: dev(), sub: VERA.sub });

    const walletMessage = "Token's merged wallet is not the two wallets as read, joined, with the merge's history entry";
    const subjectMessage = "Token's merge points an account elsewhere than at the surviving user, or changes its kind";
    const mergeTwists: Array<[string, () => Twist, string]> = [
      ["survivor_is_other flipped: the later wallet kept", () => bentMerge(async (a) => ({ ...a, survivorIsOther: !a.survivorIsOther })), "Token keeps the later wallet of the two"],
      // The surviving wallet.
      ["a surviving wallet that also lists Vera's account", () => bentWallet((w) => ({ ...w, subjects: [...w.subjects, veraAccount()] })), walletMessage],
      ["a surviving wallet that leaves Tess's dev2 account out", () => bentWallet((w) => ({ ...w, subjects: w.subjects.filter((s) => s.sub !== TESS_TOO.sub) })), walletMessage],
      ["a surviving wallet that makes Uma's recovery account a sign-in account", () => bentWallet((w) => ({ ...w, subjects: w.subjects.map(({ recovery: _r, ...s }) => s) })), walletMessage],
      ["a surviving wallet with a claim changed", () => bentWallet((w) => ({ ...w, claims: { ...w.claims, email: "mallory@example.org" } })), walletMessage],
      ["a surviving wallet with the later wallet's email", () => bentWallet((w) => ({ ...w, claims: { ...w.claims, email: TESS_TOO.email } })), walletMessage],
      ["a surviving wallet with its threshold lowered to 1", () => bentWallet((w) => ({ ...w, recovery: { threshold: 1 } })), walletMessage],
      ["a surviving wallet made a second later (its `created` changed)", () => bentWallet((w) => ({ ...w, created: w.created! + 1 })), walletMessage],
      ["a merge entry naming the account page's provider, not the fresh login's", () => bentWallet((w) => lastEntry(w, (e) => ({ ...e, iss: dev2() }))), walletMessage],
      ["a merge entry of another kind", () => bentWallet((w) => lastEntry(w, (e) => ({ ...e, kind: "link" }))), walletMessage],
      ["a merge entry an hour old", () => bentWallet((w) => lastEntry(w, (e) => ({ ...e, at: e.at - 3600 }))), walletMessage],
      ["a history without the later wallet's link entry", () => bentWallet((w) => ({ ...w, history: w.history!.filter((e) => e.kind !== "link") })), walletMessage],
      ["a history with an entry altered (the link entry's provider)", () => bentWallet((w) => ({ ...w, history: w.history!.map((e) => (e.kind === "link" ? { ...e, iss: "https://mallory.example" } : e)) })), walletMessage],
      ["the surviving wallet written over Vera's wallet", () => bentMerge(async (a) => ({
        ...a, wallet: create(RecordWriteSchema, { record: a.wallet!.record, grant: await rogueGrant("wallet", "update", walletHash(lookupKey, vera()), sha256(a.wallet!.record)) }),
      })), "Token's wallet grant is not for the wallet record this login needs"],
      // The merged wallet's delete.
      ["the merged wallet's delete at the surviving wallet's hash", () => bentMerge(async (a) => ({ ...a, mergedWalletDelete: await rogueGrant("wallet", "delete", walletHash(lookupKey, tess.earlier)) })),
        "Token's wallet grant is not for the wallet record this login needs"],
      ["the merged wallet's delete at Vera's wallet's hash", () => bentMerge(async (a) => ({ ...a, mergedWalletDelete: await rogueGrant("wallet", "delete", walletHash(lookupKey, vera())) })),
        "Token's wallet grant is not for the wallet record this login needs"],
      // The merged accounts.
      ["Tess's dev2 account pointed at Vera's user", () => bentSubject(() => TESS_TOO.sub, (s) => ({ ...s, uid: vera() })), subjectMessage],
      ["Tess's dev2 account pointed at the merged (deleted) user", () => bentSubject(() => TESS_TOO.sub, (s) => ({ ...s, uid: tess.later })), subjectMessage],
      ["Tess's dev2 account pointed at the survivor, as a recovery account", () => bentSubject(() => TESS_TOO.sub, (s) => s, RECOVERY_SUBJECT_RECORD), subjectMessage],
      ["Uma's recovery account pointed at the survivor, as a sign-in account", () => bentSubject(() => UMA.sub, (s) => s, RECORD_TYPES.subject), subjectMessage],
      ["Uma's recovery account's record naming Vera's account", () => bentSubject(() => UMA.sub, (s) => ({ ...s, op_sub: VERA.sub }), RECOVERY_SUBJECT_RECORD), subjectMessage],
      ["Tess's dev2 account's update written at Vera's account's hash", () => bentMerge(async (a) => ({
        ...a, subjects: [{ ...a.subjects[0]!, update: { ...a.subjects[0]!.update!, grant: await rogueGrant("subject", "update", subjectHash(lookupKey, dev(), VERA.sub), sha256(a.subjects[0]!.update!.record)) } }, ...a.subjects.slice(1)],
      })), "Token's subject grant is not for the subject record this login needs"],
      ["a read of Vera's account for a merged account's version", () => bentMerge(async (a) => ({
        ...a, subjects: [{ ...a.subjects[0]!, read: await rogueGrant("subject", "read", subjectHash(lookupKey, dev(), VERA.sub)) }, ...a.subjects.slice(1)],
      })), "Token's subject grant is not for the subject record this login needs"],
      ["an extra merged account: Vera's, pointed at the survivor", () => bentMerge(async (a) => {
        const hash = subjectHash(lookupKey, dev(), VERA.sub);
        const record = await rogueRecord("subject", { op_iss: dev(), op_sub: VERA.sub, uid: tess.earlier });
        const update = create(RecordWriteSchema, { record, grant: await rogueGrant("subject", "update", hash, sha256(record)) });
        return { ...a, subjects: [...a.subjects, create(MergedSubjectSchema, { read: await rogueGrant("subject", "read", hash), update })] };
      }), "Token's merge does not move exactly the merged wallet's accounts"],
      ["Uma's account left pointing at the merged user (dropped from the moves)", () => bentMerge(async (a) => ({ ...a, subjects: a.subjects.slice(0, 1) })),
        "Token's merge does not move exactly the merged wallet's accounts"],
      // The merged releases.
      ["the release moved to app c under another directed id", () => bentMove("releaseCreate", (r) => ({ ...r, directed_id: `${r.directed_id}-other` })),
        "Token's moved release is not the merged user's release, for the surviving user, with its directed id"],
      ["the release moved to app c with another claim", () => bentMove("releaseCreate", (r) => ({ ...r, claims: [...r.claims, "phone_number"] })),
        "Token's moved release is not the merged user's release, for the surviving user, with its directed id"],
      ["the release moved to app c for Vera", () => bentMove("releaseCreate", (r) => ({ ...r, uid: vera() })),
        "Token's moved release is not the merged user's release, for the surviving user, with its directed id"],
      ["the release moved to app c with merged_subs it never had", () => bentMove("releaseCreate", (r) => ({ ...r, merged_subs: [tessSubs.earlierA] })),
        "Token's moved release is not the merged user's release, for the surviving user, with its directed id"],
      ["merged_subs at app a with an extra id (Vera's)", () => bentMove("releaseUpdate", (r) => ({ ...r, merged_subs: [...(r.merged_subs ?? []), subs.veraA!] })),
        "Token's merged release is not the surviving release with the merged directed id added to merged_subs"],
      ["app a's surviving release taking the merged directed id as its sub", () => bentMove("releaseUpdate", (r) => ({ ...r, directed_id: tessSubs.laterA, merged_subs: [tessSubs.earlierA] })),
        "Token's merged release is not the surviving release with the merged directed id added to merged_subs"],
      ["app a's surviving release with its claims widened", () => bentMove("releaseUpdate", (r) => ({ ...r, claims: [...r.claims, "phone_number"] })),
        "Token's merged release is not the surviving release with the merged directed id added to merged_subs"],
      ["a reservation update naming Vera's user", () => bentMove("reservationUpdate", (r) => ({ ...r, uid: vera() })),
        "Token's reservation does not move the merged directed id to the surviving user"],
      ["a reservation update naming the merged user still", () => bentMove("reservationUpdate", (r) => ({ ...r, uid: tess.later })),
        "Token's reservation does not move the merged directed id to the surviving user"],
      ["a reservation create (the fallback) naming Vera's user", () => bentMove("reservationCreate", (r) => ({ ...r, uid: vera() })),
        "Token's reservation does not move the merged directed id to the surviving user"],
      ["a reservation that names no one (a tombstone)", () => bentMove("reservationUpdate", ({ uid: _u, ...r }) => r as RecordClaims["reservation"]),
        "Token's reservation does not move the merged directed id to the surviving user"],
      ["a merged release's delete at the surviving user's release", () => bentMerge(async (a) => ({
        ...a, releases: await Promise.all(a.releases.map(async (r) => ({ ...r, mergedReleaseDelete: await rogueGrant("release", "delete", releaseHash(lookupKey, tess.earlier, r.clientId)) }))),
      })), "Token's release grant is not for the release record this login needs"],
      ["one of the merged user's releases left behind (app c's move dropped)", () => bentMerge(async (a) => ({ ...a, releases: a.releases.filter((r) => r.clientId !== "app-c") })),
        "Token's merge does not move exactly the merged user's releases"],
      ["one release moved twice, another dropped", () => bentMerge(async (a) => ({ ...a, releases: [a.releases[0]!, a.releases[0]!] })),
        "Token's merge does not move exactly the merged user's releases"],
      ["a move of app b, where the merged user has no release", () => bentMerge(async (a) => ({ ...a, releases: [...a.releases.filter((r) => r.clientId !== "app-c"), { ...a.releases.find((r) => r.clientId === "app-c")!, clientId: "app-b" }] })),
        "Token's merge does not move exactly the merged user's releases"],
      ["a release created at app a, where the survivor has one", () => bentMerge(async (a) => ({
        ...a, releases: a.releases.map((r) => (r.clientId === "app-a" ? { ...r, releaseCreate: r.releaseUpdate } : r)),
      })), "Token's merge creates a release where the surviving user has one"],
    ];
    for (const [what, twist, message] of mergeTwists) {
      it(`a compromised Token merging with ${what} is refused before anything is written: ${message}`, async function () {
        await nothingMerged(merge(rogue(twist())), ProtocolViolation, message);
      });
    }

    // --- the honest merge ------------------------------------------------------------------------

    it("a consent in the surviving wallet while the merge is about to write: the wallet moved on, so nothing is merged (WalletChanged)", async function () {
      const racing = new LoginDriver({
        issuer: ISSUER, token: tokenInMemory(tokenDeps), encryption, lookupKey, tokenKeys: () => tokenKeys, clientIds: clients.map((c) => c.client_id),
        pause: async (point) => {
          if (point === "merge-writing") await login(honest, TESS, "d");
        },
      });
      const before = { written: written.length, changed: changed.length };
      expect(await rejectionOf(merge(racing), "the racing merge")).to.be.instanceOf(WalletChanged);
      // Only the consent's own writes: its wallet rewrite, reservation and release.
      expect(written.slice(before.written)).to.deep.equal(["reservation", "release"]);
      expect(changed.slice(before.changed)).to.deep.equal(["update wallet"]);
      expect((await page("dev2", TESS_TOO)).uid, "nothing merged").to.equal(tess.later);
    });

    it("the honest twin: one WriteRecords merges the later wallet into the earlier; both accounts sign in to it; app a keeps the earlier sub and is told the later in merged_subs; apps b and c keep theirs", async function () {
      const [earlier, later] = [await page("dev", TESS), await page("dev2", TESS_TOO)];
      const before = { written: written.length, changed: changed.length, batches: batches.length };
      // From the later wallet's page, confirmed at the earlier's account: the survivor is the other wallet.
      const minted: boolean[] = [];
      const watched = rogue({ mergeWallets: async (a) => (minted.push(a.survivorIsOther), a) });
      expect(await merge(watched)).to.deep.equal({ survivor: tess.earlier, merged: tess.later });
      expect(minted).to.deep.equal([true]);

      // Exactly one WriteRecords: the two wallets, the two merged accounts, and for apps a and c the reservation, the release and the merged release's delete.
      expect(batches.slice(before.batches)).to.deep.equal([2 + 2 + 3 * 2]);
      expect(changed.slice(before.changed)).to.deep.equal([
        "update wallet", "delete wallet", "update subject", "update subject",
        "update reservation", "update release", "delete release", // app a: both had one
        "update reservation", "delete release", // app c: the later wallet's only, created for the survivor
      ]);
      expect(written.slice(before.written)).to.deep.equal(["release"]);
      expect(await holds(walletHash(lookupKey, tess.later), "wallet"), "the merged wallet").to.equal(false);
      for (const app of ["app-a", "app-c"]) expect(await holds(releaseHash(lookupKey, tess.later, app), "release"), `the merged user's release at ${app}`).to.equal(false);
      expect(await holds(releaseHash(lookupKey, tess.earlier, "app-c"), "release"), "the release moved to app c").to.equal(true);

      // The surviving wallet, through either account: both wallets' accounts, both histories in time order, and the merge.
      const viaTess = await page("dev", TESS);
      const viaToo = await page("dev2", TESS_TOO);
      expect(viaTess.uid).to.equal(tess.earlier);
      expect(viaToo.uid).to.equal(tess.earlier);
      expect(viaTess.wallet.subjects).to.deep.equal([{ iss: dev(), sub: TESS.sub }, { iss: dev2(), sub: TESS_TOO.sub }, { iss: dev(), sub: UMA.sub, recovery: true }]);
      const { at, ...entry } = viaTess.wallet.history!.at(-1)!;
      expect(entry).to.deep.equal({ kind: "merge", iss: dev() });
      expect(bare(viaTess.wallet)).to.deep.equal(mergedWallet(earlier.wallet, later.wallet, dev(), at));
      expect(viaTess.wallet.claims).to.deep.equal(bare(earlier.wallet).claims);
      expect(viaTess.wallet.recovery).to.deep.equal({ threshold: 2 });
      expect(viaTess.releases.map((r) => r.clientId).sort()).to.deep.equal(["app-a", "app-b", "app-c", "app-d"]);

      // App a knew both: the earlier sub, with the later in merged_subs, whichever account signs in; nothing asked, nothing written.
      const mark = { written: written.length, changed: changed.length };
      for (const [providerId, user] of [["dev", TESS], ["dev2", TESS_TOO]] as const) {
        const atA = await loginAt(honest, providerId, user, "a");
        expect(atA.consented, `${user.sub} at app a`).to.equal(false);
        expect(atA.claims.sub).to.equal(tessSubs.earlierA);
        expect(atA.claims.merged_subs).to.deep.equal([tessSubs.laterA]);
        expect(JSON.parse(atA.userinfoJson)).to.deep.include({ sub: tessSubs.earlierA, merged_subs: [tessSubs.laterA] });
        expect(decodeJwt(atA.userinfoJwt).merged_subs).to.deep.equal([tessSubs.laterA]);
      }
      // App b knew only the earlier wallet, app c only the later: each its sub, nothing merged, whichever account signs in.
      const atB = await loginAt(honest, "dev2", TESS_TOO, "b");
      expect(atB).to.include({ consented: false });
      expect(atB.claims.sub).to.equal(tessSubs.earlierB);
      expect(atB.claims).to.not.have.property("merged_subs");
      const atC = await loginAt(honest, "dev", TESS, "c");
      expect(atC).to.include({ consented: false });
      expect(atC.claims.sub).to.equal(tessSubs.laterC);
      expect(atC.claims).to.not.have.property("merged_subs");
      expect(JSON.parse(atC.userinfoJson)).to.not.have.property("merged_subs");
      expect(written.slice(mark.written), "nothing written by the logins").to.deep.equal([]);
      expect(changed.slice(mark.changed), "nothing changed by the logins").to.deep.equal([]);

      // Uma's account moved as what it was: a recovery account, which signs in nowhere.
      expect(await rejectionOf(login(honest, UMA, "a"), "Uma's login")).to.be.instanceOf(RecoveryAccountOnly);
    });

    it("after the merge, a merge of the same two is refused: they are one wallet (MergeRefused)", async function () {
      const refusal = await rejectionOf(merge(honest), "a second merge");
      expect(refusal).to.be.instanceOf(MergeRefused);
      expect((refusal as Error).message).to.equal("the account signed in with is this wallet's already");
    });

    // --- what Token mints for apps after the merge (minted-check.ts) --------------------------

    const bentMint = (bend: (id: JWTPayload, info: JWTPayload, json: Record<string, unknown>) => Promise<Partial<Answer<"mintIdToken">>>): Twist => ({
      mintIdToken: async (a) => ({ ...a, ...(await bend(decodeJwt(a.idToken), decodeJwt(a.userinfoJwt), JSON.parse(a.userinfoJson) as Record<string, unknown>)) }),
    });
    const mintTwists: Array<[string, App, () => Twist, string]> = [
      ["an ID Token with merged_subs at app b, whose release has none", "b", () => bentMint(async (id) => ({ idToken: await idToken({ ...id, merged_subs: [tessSubs.laterA] }) })),
        "Token's ID Token does not match what Orchestration verified: it carries merged_subs the release does not list"],
      ["an ID Token without merged_subs at app a, whose release has them", "a", () => bentMint(async ({ merged_subs: _m, ...id }) => ({ idToken: await idToken(id) })),
        "Token's ID Token does not match what Orchestration verified: its merged_subs are not the release's"],
      ["an ID Token whose merged_subs add another id at app a", "a", () => bentMint(async (id) => ({ idToken: await idToken({ ...id, merged_subs: [tessSubs.laterA, tessSubs.laterC] }) })),
        "Token's ID Token does not match what Orchestration verified: its merged_subs are not the release's"],
      ["an ID Token whose merged_subs is a string, not a list", "a", () => bentMint(async (id) => ({ idToken: await idToken({ ...id, merged_subs: tessSubs.laterA }) })),
        "Token's ID Token does not match what Orchestration verified: its merged_subs are not the release's"],
      ["an ID Token with an empty merged_subs at app c", "c", () => bentMint(async (id) => ({ idToken: await idToken({ ...id, merged_subs: [] }) })),
        "Token's ID Token does not match what Orchestration verified: it carries merged_subs the release does not list"],
      ["userinfo JSON without merged_subs at app a", "a", () => bentMint(async (_id, _info, { merged_subs: _m, ...json }) => ({ userinfoJson: JSON.stringify(json) })),
        "Token's userinfo does not match what Orchestration verified: its merged_subs are not the release's"],
      ["userinfo JSON with merged_subs at app b", "b", () => bentMint(async (_id, _info, json) => ({ userinfoJson: JSON.stringify({ ...json, merged_subs: [tessSubs.laterA] }) })),
        "Token's userinfo does not match what Orchestration verified: it carries merged_subs the release does not list"],
      ["signed userinfo without merged_subs at app a", "a", () => bentMint(async (_id, { merged_subs: _m, ...info }) => ({ userinfoJwt: await idToken(info, "userinfo", "userinfo+jwt") })),
        "Token's signed userinfo does not match what Orchestration verified: its merged_subs are not the release's"],
    ];
    for (const [what, app, twist, message] of mintTwists) {
      it(`a compromised Token minting ${what} is refused before it leaves: ${message}`, async function () {
        await refused(login(rogue(twist()), TESS, app), message);
      });
    }

    // --- a merge of a merged wallet: its merged_subs, and their reservations, travel with it ---

    describe("a second merge: Tess's merged wallet into her oldest (from before `created` was kept)", function () {
      const oldest = "legacy-uid-tess-000001";
      /** The reservation of `directedId` at `clientId`, as Storage holds it (read with a grant the test mints with Token's keys): whom it names, or "none". */
      async function reservationOf(clientId: string, directedId: string) {
        const res = await encryption.readRecord({ accessToken: (await rogueGrant("reservation", "read", reservationHash(lookupKey, clientId, directedId))).accessToken });
        if (res.result.case !== "record") return "none";
        const reservation = claimsOf<RecordClaims["reservation"]>(res.result.value);
        return Object.hasOwn(reservation, "uid") ? reservation.uid : "no one";
      }
      before(async function () {
        // As the previous version of Token wrote them: a wallet without `created`, its Subject Record, a release without a reservation.
        for (const write of [
          await rogueWrite("wallet", walletHash(lookupKey, oldest), { uid: oldest, claims: { email: TESS_OLD.email, name: TESS_OLD.name }, subjects: [{ iss: dev(), sub: TESS_OLD.sub }] }),
          await rogueWrite("subject", subjectHash(lookupKey, dev(), TESS_OLD.sub), { op_iss: dev(), op_sub: TESS_OLD.sub, uid: oldest }),
        ]) await encryption.createRecord({ accessToken: write.grant!.accessToken, record: write.record });
        await legacyRelease(oldest, "app-a", "legacy-tess-0001");
      });
      /** From Tess's merged wallet's page, a merge confirmed at her oldest account: the oldest survives. */
      const mergeIntoOldest = (driver: LoginDriver) => merge(driver, { from: ["dev", TESS], user: TESS_OLD });
      /** App a's move (the release with merged_subs) with `change` made. */
      const bentAppA = (change: (r: Merged["releases"][number]) => Promise<Merged["releases"][number]>) =>
        bentMerge(async (a) => ({ ...a, releases: await Promise.all(a.releases.map((r) => (r.clientId === "app-a" ? change(r) : r))) }));
      const chainMessage = "Token's merge does not move exactly the reservations of the merged release's merged_subs";
      const chainTwists: Array<[string, () => Twist, string]> = [
        ["the merged_subs' reservations left naming the merged user (their moves dropped)", () => bentAppA(async (r) => ({ ...r, mergedSubReservations: [] })), chainMessage],
        ["a move of another id's reservation (Vera's at app a) instead of the merged_subs'", () => bentAppA(async (r) => ({
          ...r, mergedSubReservations: r.mergedSubReservations.map((m) => ({ ...m, directedId: subs.veraA! })),
        })), chainMessage],
        ["a merged_subs reservation naming Vera's user", () => bentAppA(async (r) => ({
          ...r,
          mergedSubReservations: await Promise.all(r.mergedSubReservations.map(async (m) => {
            const record = await rogueRecord("reservation", { ...claimsOf<RecordClaims["reservation"]>(m.update!.record), uid: vera() });
            return { ...m, update: create(RecordWriteSchema, { record, grant: await rogueGrant("reservation", "update", m.update!.grant!.hash, sha256(record)) }) };
          })),
        })), "Token's reservation does not move the merged directed id to the surviving user"],
        ["a merged_subs reservation read at the release's own id", () => bentAppA(async (r) => ({
          ...r, mergedSubReservations: r.mergedSubReservations.map((m) => ({ ...m, read: r.reservationRead })),
        })), "Token's reservation grant is not for the reservation record this login needs"],
        ["app a's surviving release without the earlier merge's id in merged_subs", () => bentMove("releaseUpdate", (r) => ({ ...r, merged_subs: r.merged_subs!.slice(0, 1) })),
          "Token's merged release is not the surviving release with the merged directed id added to merged_subs"],
      ];
      for (const [what, twist, message] of chainTwists) {
        it(`a compromised Token merging with ${what} is refused before anything is written: ${message}`, async function () {
          const before = { written: written.length, changed: changed.length };
          await refused(mergeIntoOldest(rogue(twist())), message);
          expect(changed.slice(before.changed)).to.deep.equal([]);
          expect(await holds(walletHash(lookupKey, tess.earlier), "wallet")).to.equal(true);
        });
      }

      it("the honest twin: the oldest wallet survives; app a keeps its sub and is told both others; every id's reservation names the survivor; a delete then leaves only tombstones", async function () {
        const before = { written: written.length, changed: changed.length, batches: batches.length };
        expect(await mergeIntoOldest(honest)).to.deep.equal({ survivor: oldest, merged: tess.earlier });
        // One WriteRecords: two wallets, three accounts; app a's two reservations, release and delete; three of each for b, c and d.
        expect(batches.slice(before.batches)).to.deep.equal([2 + 3 + 4 + 3 * 3]);
        expect(written.slice(before.written), "the releases at b, c and d, created for the survivor").to.deep.equal(["release", "release", "release"]);
        expect(await holds(walletHash(lookupKey, tess.earlier), "wallet")).to.equal(false);

        for (const [providerId, user] of [["dev", TESS_OLD], ["dev", TESS], ["dev2", TESS_TOO]] as const) {
          const atA = await loginAt(honest, providerId, user, "a");
          expect(atA.consented).to.equal(false);
          expect(atA.claims.sub).to.equal("legacy-tess-0001");
          expect(atA.claims.merged_subs, `${user.sub} at app a`).to.deep.equal([tessSubs.earlierA, tessSubs.laterA]);
        }
        expect((await loginAt(honest, "dev2", TESS_TOO, "c")).claims.sub).to.equal(tessSubs.laterC);
        for (const id of ["legacy-tess-0001", tessSubs.earlierA, tessSubs.laterA]) expect(await reservationOf("app-a", id), `the reservation of ${id}`).to.equal(oldest);

        // The survivor deleted: the release's id and both merged ids are tombstones.
        const view = await page("dev", TESS);
        expect(view.uid).to.equal(oldest);
        const began = Date.now();
        const tx = await honest.beginTransaction(view.sessionToken, TransactionKind.DELETE, "dev");
        await honest.deleteWallet(tx.sessionToken, began, await upstream.login(TESS, tx.upstreamNonce, { prompt: "login" }), view.uid);
        for (const id of ["legacy-tess-0001", tessSubs.earlierA, tessSubs.laterA]) expect(await reservationOf("app-a", id), `the reservation of ${id}`).to.equal("no one");
        expect(await reservationOf("app-c", tessSubs.laterC)).to.equal("no one");
        for (const account of [{ iss: dev(), sub: TESS_OLD.sub }, { iss: dev(), sub: TESS.sub }, { iss: dev2(), sub: TESS_TOO.sub }, { iss: dev(), sub: UMA.sub }]) {
          expect(await holds(subjectHash(lookupKey, account.iss, account.sub), "subject"), account.sub).to.equal(false);
        }
      });
    });
  });
});
