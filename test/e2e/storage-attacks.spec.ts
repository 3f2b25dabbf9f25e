// docs/design.md §5, what Storage and the database must not give away, over the real mesh on
// PostgreSQL: a dump of the database reveals no identifier, claim or email; a ciphertext
// moved to another storage key does not open; hiding the Subject Record (or racing, or
// replaying a create) cannot make a second user for one subject; each process loads a
// configuration that holds only its own secrets; and no refusal carries a token, hash,
// user id, email or upstream sub. Each attack asserts the exact refusal and has an honest
// twin: the same call done rightly, which succeeds.

import { execFile } from "node:child_process";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { Code } from "@connectrpc/connect";
import { decodeJwt } from "jose";
import pg from "pg";
import { COMPONENTS, type Component } from "../../internal/protocol/identity.js";
import { loadComponentConfig } from "../../internal/config/component-config.js";
import { ConfigError } from "../../internal/config/errors.js";
import { DEFAULT_DEV_USERS, type DevUser } from "../../internal/dev/devop/dev-op.js";
import { type AccessGrant, TransactionKind } from "../../internal/gen/hello/token/v1/token_service_pb.js";
import { isLostCreateRace } from "../../internal/components/orchestration/login-driver.js";
import { type ProtocolMesh, APPS, USERS, appRequest, startProtocolMesh } from "../support/protocol-mesh.js";
import { verify } from "../../internal/protocol/jws.js";
import { releaseHash, reservationHash, subjectHash, walletHash } from "../../internal/protocol/lookup-key.js";
import { RECORD_TYPES, type RecordClaims } from "../../internal/protocol/tokens.js";
import { errorOf, refusedWith } from "../support/refusal.js";
import { tamper } from "../support/tamper.js";
import { byteaEscape, dumpDatabase, findValue } from "../support/database-dump.js";

const run = promisify(execFile);
const CAROL = DEFAULT_DEV_USERS[2]!;
type AppName = "a" | "b" | "es";

// --- what the file saw, for the last test: every refusal, and every secret-ish value ---

interface Refusal {
  readonly what: string;
  readonly code: Code;
  readonly message: string;
  /** Everything the caller received: the full message, metadata and details. */
  readonly everything: string;
}
const refusals: Refusal[] = [];
const seen = {
  tokens: new Set<string>(),
  hashes: new Set<string>(),
  uids: new Set<string>(),
  directedIds: new Set<string>(),
};

/** The refusal `call` ends in ({ code, message }), recorded for the leak check of §5. */
async function refusal(what: string, call: Promise<unknown>): Promise<{ code: Code; message: string }> {
  const e = await refusedWith(call, what);
  const metadata = [...e.metadata.entries()].map(([k, v]) => `${k}: ${v}`).join("\n");
  const details = e.details.map((d) => JSON.stringify(d, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v)));
  refusals.push({ what, code: e.code, message: e.rawMessage, everything: [e.message, e.rawMessage, metadata, ...details].join("\n") });
  return { code: e.code, message: e.rawMessage };
}

function noteGrant(grant: AccessGrant | undefined): AccessGrant {
  expect(grant, "a grant").to.not.equal(undefined);
  seen.tokens.add(grant!.accessToken);
  seen.hashes.add(grant!.hash);
  return grant!;
}


// -----------------------------------------------------------------------------------------


/** An account of the development provider that signs in nowhere: Bob links it as a recovery account. */
const DORA: DevUser = { sub: "dora-0004", email: "dora@example.org", email_verified: true, name: "Dora Recovery", password: "dora" };

describe("what Storage and its database can learn or do (docs/design.md §5), on PostgreSQL", function () {
  this.timeout(180_000);
  let mesh: ProtocolMesh;
  let db: pg.Client;
  const uid: Record<string, string> = {};
  const directed: Record<string, Partial<Record<AppName, string>>> = {};

  /** A returning user's login step by step, as Orchestration drives it, keeping every token. */
  async function returningUser(user: DevUser, app: AppName) {
    const request = appRequest(app);
    const started = await mesh.driver.start(request, "dev");
    seen.tokens.add(started.sessionToken);
    const upstream = await mesh.upstreamLogin(user, started.upstreamNonce);
    const authorized = await mesh.token().authorizeSubject({ sessionToken: started.sessionToken, opIdToken: upstream.idToken });
    seen.tokens.add(authorized.sessionToken);
    const subjectRead = noteGrant(authorized.subjectRead);
    const read = await mesh.encryption().readRecord({ accessToken: subjectRead.accessToken });
    expect(read.result.case, "the subject read").to.equal("record");
    const subjectRecord = read.result.value as string;
    const subject = await record("subject", subjectRecord);
    expect(subject).to.include({ op_iss: mesh.devOp.issuer, op_sub: user.sub });
    seen.uids.add(subject.uid);
    const authorizedUser = await mesh.token().authorizeUser({ sessionToken: authorized.sessionToken, subjectRecord, subjectReceipt: read.receipt });
    seen.tokens.add(authorizedUser.sessionToken);
    return {
      request, upstream, authorized, subjectRead, subjectRecord, subject, authorizedUser,
      walletRead: noteGrant(authorizedUser.walletRead),
      releaseRead: noteGrant(authorizedUser.releaseRead),
    };
  }

  /** A record as Orchestration checks it: signed by Token's record key, of its kind. */
  async function record<K extends keyof RecordClaims>(kind: K, jws: string): Promise<RecordClaims[K]> {
    return (await verify<RecordClaims[K]>(RECORD_TYPES[kind], mesh.tokenKeys(), jws, `${kind} record`)).claims;
  }

  async function readWallet(grant: AccessGrant) {
    const res = await mesh.encryption().readRecord({ accessToken: grant.accessToken });
    expect(res.result.case).to.equal("record");
    return record("wallet", res.result.value as string);
  }

  async function row(hash: string) {
    const { rows } = await db.query<{ kind: string; key_id: string; ciphertext: Buffer }>(
      "SELECT kind, key_id, ciphertext FROM records WHERE hash = $1",
      [hash],
    );
    expect(rows, `one row for ${hash}`).to.have.length(1);
    return rows[0]!;
  }

  const setRow = (hash: string, r: { key_id: string; ciphertext: Buffer }) =>
    db.query("UPDATE records SET key_id = $2, ciphertext = $3 WHERE hash = $1", [hash, r.key_id, r.ciphertext]);

  async function countByKind(): Promise<Record<string, number>> {
    const { rows } = await db.query<{ kind: string; n: string }>("SELECT kind, count(*) AS n FROM records GROUP BY kind");
    return Object.fromEntries(rows.map((r) => [r.kind, Number(r.n)]));
  }

  /** Every hash a user's records are kept under: their subject, wallet and releases at apps a and b; and the reservations of their directed ids. */
  function hashesOf(name: "alice" | "bob") {
    const k = mesh.lookupKey;
    return {
      owned: [
        subjectHash(k, mesh.devOp.issuer, USERS[name].sub),
        walletHash(k, uid[name]!),
        ...[APPS.a, APPS.b].map((app) => releaseHash(k, uid[name]!, app.client_id)),
      ],
      reservations: (["a", "b"] as const).map((app) => reservationHash(k, APPS[app]!.client_id, directed[name]![app]!)),
    };
  }

  /** The whole database as an attacker with a copy of it reads it (test/support/database-dump.ts). */
  async function dumpEverything() {
    const dumped = await dumpDatabase(mesh.postgres!.url, db);
    expect(dumped.tables).to.include.members(["public.records", "public.spent_token_ids"]);
    return dumped;
  }

  /** Every identifier, claim and email of the users, each searched in `haystack` in every encoding: those found. */
  function foundIn(haystack: string) {
    const sensitive: Record<string, string> = {
      "alice's upstream sub": USERS.alice.sub,
      "bob's upstream sub": USERS.bob.sub,
      "dora's upstream sub": DORA.sub,
      "carol's upstream sub": CAROL.sub,
      "carol's email": CAROL.email,
      "dora's email": DORA.email,
      "the upstream issuer": mesh.devOp.issuer,
      "the upstream issuer's host": new URL(mesh.devOp.issuer).host,
      "alice's email": USERS.alice.email,
      "bob's email": USERS.bob.email,
      "alice's name": USERS.alice.name,
      "bob's name": USERS.bob.name,
      "alice's picture": USERS.alice.picture!,
      "alice's user id": uid.alice!,
      "bob's user id": uid.bob!,
      "app a's redirect_uri": APPS.a.redirect_uri,
    };
    for (const app of Object.values(APPS)) sensitive[`the client_id ${app.client_id}`] = app.client_id;
    for (const name of ["alice", "bob"] as const) {
      for (const app of ["a", "b"] as const) sensitive[`${name}'s directed id at ${app}`] = directed[name]![app]!;
    }
    expect(new Set(Object.values(sensitive)).size, "every value is distinct").to.equal(Object.keys(sensitive).length);
    return Object.entries(sensitive)
      .map(([label, value]) => ({ label, encodings: findValue(haystack, value) }))
      .filter((f) => f.encodings.length > 0);
  }

  before(async function () {
    mesh = await startProtocolMesh({ database: "postgres", users: [...DEFAULT_DEV_USERS, DORA] });
    db = new pg.Client({ connectionString: mesh.postgres!.url });
    await db.connect();
    // Alice and Bob, each at apps a and b, consenting to everything asked.
    for (const name of ["alice", "bob"] as const) {
      directed[name] = {};
      for (const app of ["a", "b"] as const) {
        const outcome = await mesh.login(USERS[name], app);
        expect(outcome.claims.email).to.equal(USERS[name].email);
        directed[name][app] = outcome.claims.sub as string;
        seen.directedIds.add(outcome.claims.sub as string);
      }
      // The user id, from the Subject Record Orchestration reads with its read grant.
      uid[name] = (await returningUser(USERS[name], "a")).subject.uid;
    }
  });
  after(async () => {
    await db?.end();
    await mesh?.close();
  });

  // --- 1 -------------------------------------------------------------------------------

  describe("Storage, or a dump of its database, reveals no identifier, claim or email (§5)", function () {
    it("the value search finds a value in every encoding it claims to search (so a clean dump means something)", function () {
      const value = USERS.alice.email;
      const bytes = Buffer.from(value);
      const json = Buffer.from(JSON.stringify({ x: "!", email: value, y: 1 }));
      for (const [name, haystack] of [
        ["utf-8", `... ${value.toUpperCase()} ...`],
        ["hex", `\\\\x00ff${bytes.toString("hex")}00`],
        ["bytea escape", `a\\001${byteaEscape(bytes)}\\377`],
        ["base64", json.toString("base64")],
        ["base64", Buffer.concat([Buffer.from("a"), json]).toString("base64")],
        ["base64url", Buffer.concat([Buffer.from("ab"), json]).toString("base64url")],
      ] as const) {
        expect(findValue(haystack, value), `${name} in ${haystack}`).to.include(name);
      }
      expect(findValue("hash, kind, key_id, ciphertext", value)).to.deep.equal([]);
    });

    it("pg_dump and SELECT * of every table hold only keyed hashes and ciphertext: no sub, issuer, email, name, user id, directed id or client_id", async function () {
      const { dumps, haystack } = await dumpEverything();

      // Honest twin: the dump is not empty; it holds exactly the rows the logins made.
      const counts = await countByKind();
      // 2 users × (subject + wallet) + 2 × 2 releases, each release's directed id reserved
      expect(counts).to.deep.equal({ subject: 2, wallet: 2, release: 4, reservation: 4 });
      const expectedHashes = (["alice", "bob"] as const).flatMap((n) => [...hashesOf(n).owned, ...hashesOf(n).reservations]);
      const { rows: stored } = await db.query<{ hash: string; ciphertext: Buffer }>("SELECT hash, ciphertext FROM records");
      expect(stored.map((r) => r.hash)).to.have.members(expectedHashes);
      const { rows: spent } = await db.query<{ n: string }>("SELECT count(*) AS n FROM spent_token_ids");
      // Create tokens: 2 users × (wallet, subject, 2 × (reservation, release)); the update
      // token of the wallet rewrite each consent wrote with its release: 2 × 2; and the
      // Error Token each subject and release create relied on: 2 × (1 + 2).
      expect(Number(spent[0]!.n), "create and update tokens and Error Tokens spent").to.equal(2 * 6 + 2 * 2 + 2 * 3);
      for (const dump of dumps) {
        for (const hash of expectedHashes) expect(dump, `pg_dump holds ${hash}`).to.include(hash);
        for (const r of stored) expect(dump, "pg_dump holds each ciphertext").to.include(r.ciphertext.toString("hex"));
      }

      // The attack: every identifier, claim and email, in every encoding.
      expect(foundIn(haystack), "values found in the dump").to.deep.equal([]);
    });
  });

  // --- 2 -------------------------------------------------------------------------------

  describe("Storage cannot move a ciphertext to another storage key (§5)", function () {
    it("alice's wallet ciphertext copied over bob's wallet row does not open: DATA_LOSS, and bob's login fails (honest twin: before, and after the row is restored, bob's read and login succeed)", async function () {
      const bobHash = walletHash(mesh.lookupKey, uid.bob!);
      const aliceHash = walletHash(mesh.lookupKey, uid.alice!);
      // Honest twin: bob's wallet read with his read grant returns bob's wallet.
      const before = await returningUser(USERS.bob, "a");
      expect(before.walletRead.hash).to.equal(bobHash);
      const wallet = await readWallet(before.walletRead);
      expect(wallet.uid).to.equal(uid.bob);
      expect(wallet.claims.email).to.equal(USERS.bob.email);

      const original = await row(bobHash);
      const alices = await row(aliceHash);
      expect(alices.ciphertext.equals(original.ciphertext)).to.equal(false);
      await setRow(bobHash, alices);
      try {
        expect((await row(bobHash)).ciphertext.equals(alices.ciphertext), "the row now holds alice's ciphertext").to.equal(true);
        const notOpened = { code: Code.DataLoss, message: "the stored record does not authenticate under its key and storage key" };
        // The grant from before, and a fresh one obtained the honest way.
        expect(await refusal("read of a moved wallet ciphertext", mesh.encryption().readRecord({ accessToken: before.walletRead.accessToken })))
          .to.deep.equal(notOpened);
        const fresh = await returningUser(USERS.bob, "a");
        expect(await refusal("read of a moved wallet ciphertext (fresh grant)", mesh.encryption().readRecord({ accessToken: fresh.walletRead.accessToken })))
          .to.deep.equal(notOpened);
        // Bob's login fails rather than going on with alice's wallet.
        expect(await refusal("bob's login over a moved wallet", mesh.login(USERS.bob, "a"))).to.deep.equal(notOpened);
        // Alice's own row still opens under her own grant.
        const alice = await returningUser(USERS.alice, "a");
        expect((await readWallet(alice.walletRead)).uid).to.equal(uid.alice);
      } finally {
        await setRow(bobHash, original);
      }
      const restored = await returningUser(USERS.bob, "a");
      expect((await readWallet(restored.walletRead)).uid).to.equal(uid.bob);
      const login = await mesh.login(USERS.bob, "a");
      expect(login.claims).to.include({ sub: directed.bob!.a, email: USERS.bob.email });
    });

    it("alice's and bob's Subject Record ciphertexts swapped: neither opens (DATA_LOSS) and neither logs in as the other (honest twin: restored, each logs in as themself)", async function () {
      const aliceHash = subjectHash(mesh.lookupKey, mesh.devOp.issuer, USERS.alice.sub);
      const bobHash = subjectHash(mesh.lookupKey, mesh.devOp.issuer, USERS.bob.sub);
      const alices = await row(aliceHash);
      const bobs = await row(bobHash);
      await setRow(aliceHash, bobs);
      await setRow(bobHash, alices);
      try {
        const notOpened = { code: Code.DataLoss, message: "the stored record does not authenticate under its key and storage key" };
        for (const user of [USERS.alice, USERS.bob]) {
          const request = appRequest("a");
          const started = await mesh.driver.start(request, "dev");
          const upstream = await mesh.upstreamLogin(user, started.upstreamNonce);
          const authorized = await mesh.token().authorizeSubject({ sessionToken: started.sessionToken, opIdToken: upstream.idToken });
          const grant = noteGrant(authorized.subjectRead);
          expect(await refusal(`${user.sub}'s read of a swapped subject row`, mesh.encryption().readRecord({ accessToken: grant.accessToken })))
            .to.deep.equal(notOpened);
          expect(await refusal(`${user.sub}'s login over a swapped subject row`, mesh.login(user, "a"))).to.deep.equal(notOpened);
        }
      } finally {
        await setRow(aliceHash, alices);
        await setRow(bobHash, bobs);
      }
      expect((await mesh.login(USERS.alice, "a")).claims.sub).to.equal(directed.alice!.a);
      expect((await mesh.login(USERS.bob, "a")).claims.sub).to.equal(directed.bob!.a);
    });
  });

  // --- 3 -------------------------------------------------------------------------------

  describe("Orchestration cannot create a second user for one subject (§5)", function () {
    const carolHash = () => subjectHash(mesh.lookupKey, mesh.devOp.issuer, CAROL.sub);

    /** A first login's steps up to Storage's "no record": the session and its Error Token. */
    async function absentSubject(user: DevUser, app: AppName = "a") {
      const request = appRequest(app);
      const started = await mesh.driver.start(request, "dev");
      const upstream = await mesh.upstreamLogin(user, started.upstreamNonce);
      const authorized = await mesh.token().authorizeSubject({ sessionToken: started.sessionToken, opIdToken: upstream.idToken });
      seen.tokens.add(authorized.sessionToken);
      const grant = noteGrant(authorized.subjectRead);
      const read = await mesh.encryption().readRecord({ accessToken: grant.accessToken });
      expect(read.result.case, `${user.sub} has no subject record yet`).to.equal("errorToken");
      seen.tokens.add(read.result.value as string);
      return { request, upstream, sessionToken: authorized.sessionToken, errorToken: read.result.value as string };
    }

    async function subjectRows(hash: string): Promise<number> {
      const { rows } = await db.query<{ n: string }>("SELECT count(*) AS n FROM records WHERE hash = $1", [hash]);
      return Number(rows[0]!.n);
    }

    it("CreateUser for an existing user with an Error Token of another session, hash or kind is PERMISSION_DENIED (honest twin: a session's own Error Token, and AuthorizeUser with the record)", async function () {
      expect(await subjectRows(carolHash()), "carol is new").to.equal(0);
      const notAnswered = { code: Code.PermissionDenied, message: "the error token does not answer this session's subject read" };
      // Alice exists: her session's subject read finds her record, which Orchestration hides.
      const request = appRequest("a");
      const started = await mesh.driver.start(request, "dev");
      const upstream = await mesh.upstreamLogin(USERS.alice, started.upstreamNonce);
      const alice = await mesh.token().authorizeSubject({ sessionToken: started.sessionToken, opIdToken: upstream.idToken });
      const aliceRead = await mesh.encryption().readRecord({ accessToken: noteGrant(alice.subjectRead).accessToken });
      expect(aliceRead.result.case).to.equal("record");

      // Error Tokens Orchestration can get: carol's subject reads in two other sessions.
      const carol1 = await absentSubject(CAROL);
      const carol2 = await absentSubject(CAROL);
      expect(await refusal("alice's CreateUser with carol's Error Token", mesh.token().createUser({ sessionToken: alice.sessionToken, errorToken: carol1.errorToken })))
        .to.deep.equal(notAnswered);
      // Same hash, another session's read: refused too.
      expect(await refusal("CreateUser with another session's Error Token", mesh.token().createUser({ sessionToken: carol1.sessionToken, errorToken: carol2.errorToken })))
        .to.deep.equal(notAnswered);
      // An Error Token re-addressed to alice's hash and read: the signature breaks.
      const forged = tamper(carol1.errorToken, (p) => {
        p.hash = alice.subjectRead!.hash;
      });
      expect(await refusal("CreateUser with a re-addressed Error Token", mesh.token().createUser({ sessionToken: alice.sessionToken, errorToken: forged })))
        .to.deep.equal({ code: Code.Unauthenticated, message: "the error token is not valid: its signature does not verify" });

      // Honest twin: carol's session with its own Error Token gets a new user's records.
      const made = await mesh.token().createUser({ sessionToken: carol1.sessionToken, errorToken: carol1.errorToken });
      const madeSubject = await record("subject", made.subject!.record);
      expect(madeSubject).to.include({ op_iss: mesh.devOp.issuer, op_sub: CAROL.sub });
      seen.uids.add(madeSubject.uid);
      // An Error Token of another kind: the release read of an app alice has not used.
      const releaseAbsent = await mesh.encryption().readRecord({ accessToken: (await returningUser(USERS.alice, "es")).releaseRead.accessToken });
      expect(releaseAbsent.result.case).to.equal("errorToken");
      expect(await refusal("alice's CreateUser with a release Error Token", mesh.token().createUser({ sessionToken: alice.sessionToken, errorToken: releaseAbsent.result.value as string })))
        .to.deep.equal(notAnswered);
      // Honest twin for alice: her session goes on with her record.
      const user = await mesh.token().authorizeUser({ sessionToken: alice.sessionToken, subjectRecord: aliceRead.result.value as string, subjectReceipt: aliceRead.receipt });
      expect(noteGrant(user.walletRead).hash).to.equal(walletHash(mesh.lookupKey, uid.alice!));
      // Nothing was written: carol is still new, alice is still one user.
      expect(await subjectRows(carolHash())).to.equal(0);
      expect(await countByKind()).to.deep.equal({ subject: 2, wallet: 2, release: 4, reservation: 4 });
    });

    let race: {
      winner: { wallet: AccessGrant; subject: AccessGrant; walletRecord: string; subjectRecord: string; subjectReceipt?: string };
      winnerSub: string;
      loser: { subject: AccessGrant; subjectRecord: string; sessionToken: string; walletRecord: string; walletReceipt?: string };
      at: number;
    };

    it("two concurrent first logins of a new subject make one Subject Record: one commits, the other loses with ALREADY_EXISTS, and later logins find the winner's user", async function () {
      const before = await countByKind();
      // Both logins pass the absence check before either writes: the race at its widest.
      const logins = [await absentSubject(CAROL), await absentSubject(CAROL)];
      const made = await Promise.all(logins.map((l) => mesh.token().createUser({ sessionToken: l.sessionToken, errorToken: l.errorToken })));
      const uids = await Promise.all(made.map(async (m) => (await record("subject", m.subject!.record)).uid));
      uids.forEach((u) => seen.uids.add(u));
      expect(uids[0]).to.not.equal(uids[1]);
      for (const m of made) {
        noteGrant(m.wallet!.grant);
        expect(noteGrant(m.subject!.grant).hash).to.equal(carolHash());
      }
      // Each commits as the LoginDriver does: wallet first, Subject Record last, concurrently.
      const receipts: Array<{ wallet?: string; subject?: string }> = [{}, {}];
      const commits = await Promise.allSettled(
        made.map(async (m, i) => {
          receipts[i]!.wallet = (await mesh.encryption().createRecord({ accessToken: m.wallet!.grant!.accessToken, record: m.wallet!.record })).receipt;
          receipts[i]!.subject = (await mesh.encryption().createRecord({ accessToken: m.subject!.grant!.accessToken, record: m.subject!.record })).receipt;
        }),
      );
      const won = commits.flatMap((c, i) => (c.status === "fulfilled" ? [i] : []));
      expect(won, "exactly one commit wins").to.have.length(1);
      const w = won[0]!;
      const l = 1 - w;
      const lost = commits[l] as PromiseRejectedResult;
      expect(isLostCreateRace(lost.reason), "the loser sees a lost race").to.equal(true);
      expect(await refusal("the loser's Subject Record create", Promise.reject(lost.reason)))
        .to.deep.equal({ code: Code.AlreadyExists, message: "storage: a record already exists for this key" });
      race = {
        winner: {
          wallet: made[w]!.wallet!.grant!, subject: made[w]!.subject!.grant!, walletRecord: made[w]!.wallet!.record,
          subjectRecord: made[w]!.subject!.record, ...(receipts[w]!.subject ? { subjectReceipt: receipts[w]!.subject } : {}),
        },
        winnerSub: "",
        loser: {
          subject: made[l]!.subject!.grant!, subjectRecord: made[l]!.subject!.record, sessionToken: made[l]!.sessionToken,
          walletRecord: made[l]!.wallet!.record,
          ...(receipts[l]!.wallet ? { walletReceipt: receipts[l]!.wallet } : {}),
        },
        at: Date.now(),
      };

      // One Subject Record for carol; the loser's wallet is left unreachable (docs/design.md §4).
      expect(await subjectRows(carolHash())).to.equal(1);
      const after = await countByKind();
      expect(after.subject).to.equal(before.subject! + 1);
      expect(after.wallet! - before.wallet!).to.be.within(1, 2);
      // Later logins all find the winner's user, with one directed id per app.
      const first = await mesh.login(CAROL, "a");
      const again = await mesh.login(CAROL, "a");
      expect(first.newUser).to.equal(false);
      expect(again.claims.sub).to.equal(first.claims.sub);
      seen.directedIds.add(first.claims.sub as string);
      race.winnerSub = first.claims.sub as string;
      const steps = await returningUser(CAROL, "a");
      expect(steps.subject.uid).to.equal(uids[w]);
      expect((await readWallet(steps.walletRead)).claims.email).to.equal(CAROL.email);
      expect(await subjectRows(carolHash())).to.equal(1);
    });

    it("Storage spends create Access Tokens: a replayed create, of the winner or of the loser, is PERMISSION_DENIED (honest twin: the winner's first use, above)", async function () {
      expect(race, "the race ran").to.not.equal(undefined);
      expect(Date.now() - race.at, "the race's tokens are still within their 60 s").to.be.below(45_000);
      const used = { code: Code.PermissionDenied, message: "this token was already used" };
      const storage = mesh.storage("encryption");
      const anyCiphertext = (await row(carolHash())).ciphertext;
      // Directly at Storage, as Encryption: the winner's Subject Record create, and the loser's
      // (spent by its failed insert, so a lost race cannot be retried with the same token).
      expect(await refusal("replay of the winner's subject create at Storage", storage.createRecord({ accessToken: race.winner.subject.accessToken, keyId: "k1", ciphertext: anyCiphertext })))
        .to.deep.equal(used);
      expect(await refusal("replay of the loser's subject create at Storage", storage.createRecord({ accessToken: race.loser.subject.accessToken, keyId: "k1", ciphertext: anyCiphertext })))
        .to.deep.equal(used);
      // Through Encryption, with the very record the token was issued for.
      expect(await refusal("replay of the winner's wallet create through Encryption", mesh.encryption().createRecord({ accessToken: race.winner.wallet.accessToken, record: race.winner.walletRecord })))
        .to.deep.equal({ code: used.code, message: `storage: ${used.message}` });
      expect(await refusal("replay of the loser's subject create through Encryption", mesh.encryption().createRecord({ accessToken: race.loser.subject.accessToken, record: race.loser.subjectRecord })))
        .to.deep.equal({ code: used.code, message: `storage: ${used.message}` });
      // Still one Subject Record for carol, the winner's.
      expect(await subjectRows(carolHash())).to.equal(1);
      const read = await mesh.encryption().readRecord({ accessToken: (await returningUser(CAROL, "b")).subjectRead.accessToken });
      expect(read.result.value).to.equal(race.winner.subjectRecord);
    });

    it("the race's loser cannot go on to an ID Token for its never-committed user: carol keeps one sub per app (honest twin: her login gets the winner's sub)", async function () {
      expect(race, "the race ran").to.not.equal(undefined);
      // A compromised Orchestration ignores the lost Subject Record write and carries on with
      // the loser's session, which holds Token-signed records for a user id Storage never kept.
      let minted: string | undefined;
      const refused = await errorOf((async () => {
        const again = await mesh.token().grantReleaseRead({ sessionToken: race.loser.sessionToken });
        const releaseAbsent = await mesh.encryption().readRecord({ accessToken: again.releaseRead!.accessToken });
        const made = await mesh.token().createRelease({
          sessionToken: again.sessionToken, errorToken: releaseAbsent.result.value as string,
          walletRecord: race.loser.walletRecord, consentedClaims: ["email"],
        });
        const id = await mesh.token().mintIdToken({
          sessionToken: made.sessionToken, subjectRecord: race.loser.subjectRecord,
          releaseRecord: made.release!.record, walletRecord: race.loser.walletRecord,
        });
        minted = decodeJwt(id.idToken).sub;
      })());
      if (minted !== undefined) {
        seen.directedIds.add(minted);
        expect.fail(
          `the race's loser minted an ID Token for ${APPS.a.client_id} with sub ${minted}, while carol's committed user has sub ${race.winnerSub} there: two users for one subject`,
        );
      }
      expect(refused, "refused").to.not.equal(undefined);
      // Its session never got past "created": Token goes on only with Storage's receipts
      // for both creates, and the loser has no receipt for its Subject Record.
      expect(await refusal("the race loser's ID Token for an uncommitted user", Promise.reject(refused!))).to.deep.equal({
        code: Code.FailedPrecondition,
        message: 'this step needs a session at step "user", not "created"',
      });
      // Nor can it commit: its wallet receipt is real, but the winner's subject receipt answers another session's create.
      expect(await refusal("the loser commits with the winner's subject receipt", mesh.token().commitUser({
        sessionToken: race.loser.sessionToken, walletReceipt: race.loser.walletReceipt ?? "", subjectReceipt: race.winner.subjectReceipt ?? "",
      }))).to.deep.equal(race.loser.walletReceipt
        ? { code: Code.PermissionDenied, message: "the subject receipt does not answer this session's subject create" }
        : { code: Code.InvalidArgument, message: "the wallet receipt is not valid: it is missing" });
      // Honest twin: carol's login finds her one committed user.
      expect((await mesh.login(CAROL, "a")).claims.sub).to.equal(race.winnerSub);
    });
  });

  // --- 4 -------------------------------------------------------------------------------

  describe("each process loads only its own secrets: Encryption holds no signing key, Token no database credentials (§5)", function () {
    const keysDir = (c: Component) => path.join(mesh.deployment.certs, c, "keys");
    const text = (file: string) => readFileSync(file, "utf8");
    /** Every file under a directory, as relative paths. */
    const filesUnder = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? filesUnder(path.join(dir, e.name)).map((f) => path.join(e.name, f)) : [e.name],
      );

    it("each `hello serve` process is started with its own derived configuration file, which loads", function () {
      for (const c of COMPONENTS) {
        const args = mesh.processes.children.get(c)!.spawnargs;
        expect(args.slice(-4), c).to.deep.equal(["serve", c, "--config", mesh.deployment.configFiles[c]]);
        expect(loadComponentConfig(mesh.deployment.configFiles[c], c).component).to.equal(c);
      }
    });

    it("Token's configuration and key files hold no database URL or credentials; Orchestration's no database and no Storage peer", function () {
      const dbUrl = new URL(mesh.postgres!.url);
      const secrets = [mesh.postgres!.url, `${dbUrl.hostname}:${dbUrl.port}`, "postgres://", "postgresql://", ...(dbUrl.password ? [dbUrl.password] : [])];
      const token = loadComponentConfig(mesh.deployment.configFiles.token, "token");
      expect(token).to.not.have.property("database");
      expect(Object.keys(token.keys).sort()).to.deep.equal(["lookup", "signing", "wallet"]);
      const orchestration = loadComponentConfig(mesh.deployment.configFiles.orchestration, "orchestration");
      expect(orchestration).to.not.have.property("database");
      expect(Object.keys(orchestration.peers).sort()).to.deep.equal(["encryption", "token"]);
      const storagePort = new RegExp(`:${mesh.deployment.configs.storage.listen.port}(?![0-9])`);
      for (const [c, config] of [["token", token], ["orchestration", orchestration]] as const) {
        const all = [text(mesh.deployment.configFiles[c]), JSON.stringify(config), ...filesUnder(keysDir(c)).map((f) => text(path.join(keysDir(c), f)))];
        for (const secret of secrets) for (const t of all) expect(t, `${c} holds ${secret}`).to.not.include(secret);
        if (c === "orchestration") for (const t of all) expect(t, "orchestration names Storage").to.not.match(storagePort);
      }
      // Honest twin: Storage's configuration is where the database URL is.
      const storage = loadComponentConfig(mesh.deployment.configFiles.storage, "storage");
      expect(storage.database.url).to.equal(mesh.postgres!.url);
    });

    it("Encryption's configuration names no signing key and its keyring holds no private JWK; Storage's names no lookup key", function () {
      const encryption = loadComponentConfig(mesh.deployment.configFiles.encryption, "encryption");
      expect(Object.keys(encryption.keys)).to.deep.equal(["keyring"]);
      expect(text(mesh.deployment.configFiles.encryption)).to.not.match(/signing|lookup|database/);
      const keyring = JSON.parse(text(encryption.keys.keyring)) as { current: string; keys: Record<string, unknown> };
      expect(Object.keys(keyring).sort()).to.deep.equal(["current", "keys"]);
      for (const key of Object.values(keyring.keys)) expect(key).to.be.a("string").and.match(/^[A-Za-z0-9_-]{43}$/);
      for (const f of filesUnder(keysDir("encryption"))) {
        expect(text(path.join(keysDir("encryption"), f)), f).to.not.match(/"d"\s*:|"kty"|"kid"/);
      }
      const storage = loadComponentConfig(mesh.deployment.configFiles.storage, "storage");
      expect(Object.keys(storage.keys)).to.deep.equal(["signing"]);
      expect(text(mesh.deployment.configFiles.storage)).to.not.match(/lookup/);
      // The lookup key itself is in no file Storage or Encryption holds.
      const lookup = text(path.join(keysDir("token"), "lookup.key")).trim();
      for (const c of ["storage", "encryption"] as const) {
        for (const f of filesUnder(keysDir(c))) expect(text(path.join(keysDir(c), f)), `${c}/${f}`).to.not.include(lookup);
        expect(text(mesh.deployment.configFiles[c])).to.not.include(lookup);
      }
    });

    it("each component's key directory holds exactly its own key files", function () {
      expect(filesUnder(keysDir("encryption"))).to.deep.equal(["keyring.json"]);
      expect(filesUnder(keysDir("storage"))).to.deep.equal(["signing-keys.json"]);
      expect(filesUnder(keysDir("token")).sort()).to.deep.equal(["lookup.key", "signing-keys.json", "wallet-keys.json"]);
      // Orchestration: the lookup key it shares with Token, and its own browser cookie key.
      expect(filesUnder(keysDir("orchestration")).sort()).to.deep.equal(["cookie.key", "lookup.key"]);
      const cookie = text(path.join(keysDir("orchestration"), "cookie.key")).trim();
      expect(cookie).to.not.equal(text(path.join(keysDir("orchestration"), "lookup.key")).trim());
      for (const c of ["token", "encryption", "storage"] as const) {
        for (const f of filesUnder(keysDir(c))) expect(text(path.join(keysDir(c), f)), `${c}/${f}`).to.not.include(cookie);
      }
      const kids = (c: Component) =>
        (JSON.parse(text(path.join(keysDir(c), "signing-keys.json"))) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
      expect(kids("storage")).to.have.length.above(0);
      // Storage: its Error Token key and its receipt key, one purpose each.
      expect(kids("storage").map((k) => k.split(".")[0]).sort()).to.deep.equal(["error", "receipt"]);
      // Honest twin: Token's file holds its signing keys, and no Error Token key.
      expect(kids("token").map((k) => k.split(".")[0]).sort()).to.deep.equal(
        ["access", "id-token", "id-token", "id-token", "key-set", "record", "session", "userinfo", "userinfo", "userinfo"],
      );
      // And the configurations point at exactly these files.
      expect(loadComponentConfig(mesh.deployment.configFiles.encryption, "encryption").keys.keyring).to.equal(path.join(keysDir("encryption"), "keyring.json"));
      expect(loadComponentConfig(mesh.deployment.configFiles.storage, "storage").keys.signing).to.equal(path.join(keysDir("storage"), "signing-keys.json"));
    });

    it("a component's strict configuration refuses another's secret: Token with database, Encryption with a signing key, Storage with a lookup key, Orchestration with a Storage peer (honest twin: the files as derived load)", async function () {
      const dir = await mkdtemp(path.join(os.tmpdir(), "hello-config-"));
      try {
        const cases: Array<[Component, (c: Record<string, unknown>) => void, string]> = [
          ["token", (c) => (c.database = { url: mesh.postgres!.url }), '(top level): Unrecognized key: "database"'],
          ["encryption", (c) => ((c.keys as Record<string, string>).signing = path.join(keysDir("token"), "signing-keys.json")), 'keys: Unrecognized key: "signing"'],
          ["storage", (c) => ((c.keys as Record<string, string>).lookup = path.join(keysDir("token"), "lookup.key")), 'keys: Unrecognized key: "lookup"'],
          ["orchestration", (c) => ((c.peers as Record<string, string>).storage = "https://127.0.0.1:1"), 'peers: Unrecognized key: "storage"'],
          ["orchestration", (c) => (c.database = { url: mesh.postgres!.url }), '(top level): Unrecognized key: "database"'],
        ];
        for (const [i, [component, change, problem]] of cases.entries()) {
          const config = JSON.parse(text(mesh.deployment.configFiles[component])) as Record<string, unknown>;
          const file = path.join(dir, `${i}-${component}.json`);
          await writeFile(file, JSON.stringify(config));
          expect(loadComponentConfig(file, component).component).to.equal(component); // honest twin
          change(config);
          await writeFile(file, JSON.stringify(config));
          let error: unknown;
          try {
            loadComponentConfig(file, component);
          } catch (e) {
            error = e;
          }
          expect(error, problem).to.be.instanceOf(ConfigError);
          expect((error as ConfigError).problems, component).to.deep.equal([problem]);
          // The refusal names the field, never the secret it was handed.
          expect((error as ConfigError).message).to.not.include(mesh.postgres!.url);
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  // --- 5 -------------------------------------------------------------------------------

  describe("refusals leak nothing (§5, and internal/protocol/errors.ts)", function () {
    it("garbage, tampered and other-purpose tokens are refused with messages that carry no content (honest twin: the real grant reads)", async function () {
      const steps = await returningUser(USERS.alice, "b");
      const grant = steps.walletRead;
      const storage = mesh.storage("encryption");
      const cases: Array<[string, () => Promise<unknown>, { code: Code; message: string }]> = [
        ["a garbage access token at Encryption", () => mesh.encryption().readRecord({ accessToken: "not-a-token" }),
          { code: Code.InvalidArgument, message: "the access token is not valid: it is malformed" }],
        ["a garbage access token at Storage", () => storage.readRecord({ accessToken: "x.y.z" }),
          { code: Code.InvalidArgument, message: "the access token is not valid: it is malformed" }],
        ["no access token", () => mesh.encryption().readRecord({ accessToken: "" }),
          { code: Code.InvalidArgument, message: "the access token is not valid: it is missing" }],
        ["an access token with its exp pushed back", () => mesh.encryption().readRecord({ accessToken: tamper(grant.accessToken, (p) => (p.exp = 1)) }),
          { code: Code.Unauthenticated, message: "the access token is not valid: its signature does not verify" }],
        ["an access token re-addressed to bob's wallet", () => storage.readRecord({ accessToken: tamper(grant.accessToken, (p) => (p.hash = walletHash(mesh.lookupKey, uid.bob!))) }),
          { code: Code.Unauthenticated, message: "the access token is not valid: its signature does not verify" }],
        ["a Session Token as an access token", () => mesh.encryption().readRecord({ accessToken: steps.authorizedUser.sessionToken }),
          { code: Code.Unauthenticated, message: "the access token is not valid: its key (kid) is not a known access key" }],
        ["a Subject Record as an access token", () => storage.readRecord({ accessToken: steps.subjectRecord }),
          { code: Code.Unauthenticated, message: "the access token is not valid: its key (kid) is not a known access key" }],
        ["a read grant presented to create", () => mesh.encryption().createRecord({ accessToken: grant.accessToken, record: steps.subjectRecord }),
          { code: Code.PermissionDenied, message: "the access token grants read, not create" }],
        ["a read grant presented to delete at Storage", () => storage.deleteRecord({ accessToken: grant.accessToken }),
          { code: Code.PermissionDenied, message: "the access token grants read, not delete" }],
        ["Orchestration calling Storage directly with a real grant", () => mesh.storage("orchestration").readRecord({ accessToken: grant.accessToken }),
          { code: Code.PermissionDenied, message: "orchestration may not call /hello.storage.v1.StorageService/ReadRecord on storage" }],
        ["a Session Token as a Subject Record", () => mesh.token().authorizeUser({ sessionToken: steps.authorized.sessionToken, subjectRecord: steps.authorizedUser.sessionToken }),
          { code: Code.Unauthenticated, message: "the subject record is not valid: its key (kid) is not a known record key" }],
      ];
      for (const [what, call, expected] of cases) expect(await refusal(what, call()), what).to.deep.equal(expected);
      // Honest twin: the grant itself reads alice's wallet.
      expect((await readWallet(grant)).uid).to.equal(uid.alice);
    });

    it("no refusal in this file carries an access token, Error or Session Token, hash, user id, directed id, email, name or upstream sub", function () {
      expect(refusals.length, "refusals collected").to.be.at.least(10);
      expect(seen.tokens.size).to.be.above(10);
      expect(seen.hashes.size).to.be.above(5);
      const forbidden = new Map<string, string>();
      for (const t of seen.tokens) {
        forbidden.set(t, "a token");
        for (const part of t.split(".")) if (part.length >= 16) forbidden.set(part, "a part of a token");
      }
      for (const h of seen.hashes) forbidden.set(h, "a hash");
      for (const u of [...seen.uids, ...Object.values(uid)]) forbidden.set(u, "a user id");
      for (const d of seen.directedIds) forbidden.set(d, "a directed id");
      for (const user of [USERS.alice, USERS.bob, CAROL]) {
        forbidden.set(user.email, "an email");
        forbidden.set(user.sub, "an upstream sub");
        forbidden.set(user.name, "a name");
      }
      const leaks = refusals.flatMap((r) =>
        [...forbidden].filter(([value]) => r.everything.includes(value)).map(([, kind]) => `${r.what}: ${kind} in "${r.message}"`),
      );
      expect(leaks).to.deep.equal([]);
    });
  });
  // --- last: a delete, then the dump again ------------------------------------------------

  describe("after the wallet's transactions (issue 13): the dump still reveals nothing", function () {
    it("bob takes his details again, has app b forget him, links Dora's account as a recovery account and merges Carol's wallet with his: his wallet now holds a history, the claims' sources (the issuer among them), a recovery account and Carol's account, and no value is found", async function () {
      const began = Date.now();
      const account = await mesh.driver.startAccount("dev");
      const view = (await mesh.driver.openAccount(account.sessionToken, began, await mesh.upstreamLogin(USERS.bob, account.upstreamNonce, { prompt: "login" })))!;
      const claimsBegan = Date.now();
      const claims = await mesh.driver.beginTransaction(view.sessionToken, TransactionKind.CLAIMS, "dev");
      const opened = await mesh.driver.openClaims(claims.sessionToken, claimsBegan, await mesh.upstreamLogin(USERS.bob, claims.upstreamNonce, { prompt: "login" }), view.uid);
      await mesh.driver.updateClaims(opened.state, ["email", "name"]);
      const releaseBegan = Date.now();
      const change = await mesh.driver.beginTransaction(view.sessionToken, TransactionKind.RELEASE, "dev", { clientId: APPS.b.client_id });
      await mesh.driver.changeRelease(change.sessionToken, releaseBegan, await mesh.upstreamLogin(USERS.bob, change.upstreamNonce, { prompt: "login" }), view.uid, APPS.b.client_id, { forget: true });
      // And Dora's account (one Bob holds too) linked to his wallet as a recovery account: a Subject Record of its own type.
      const linkBegan = Date.now();
      const link = await mesh.driver.beginTransaction(view.sessionToken, TransactionKind.LINK, "dev", { recovery: true });
      await mesh.driver.linkSubject(link.sessionToken, linkBegan, await mesh.upstreamLogin(DORA, link.upstreamNonce, { prompt: "login" }), view.uid, true);
      // And Carol's wallet (her account is one Bob holds too) merged with his: one wallet, the later one's records moved, then deleted.
      const mergeBegan = Date.now();
      const merge = await mesh.driver.beginTransaction(view.sessionToken, TransactionKind.MERGE, "dev");
      const merged = await mesh.driver.mergeWallets(merge.sessionToken, mergeBegan, await mesh.upstreamLogin(CAROL, merge.upstreamNonce, { prompt: "login" }), view.uid);
      expect(merged.survivor, "Bob's wallet, made in this file's first step, is the earlier").to.equal(view.uid);
      // Honest twin: the wallet does hold them now.
      const again = await mesh.driver.startAccount("dev");
      const reopened = (await mesh.driver.openAccount(again.sessionToken, Date.now(), await mesh.upstreamLogin(USERS.bob, again.upstreamNonce, { prompt: "login" })))!;
      expect(reopened.wallet.sources).to.include({ email: mesh.devOp.issuer, name: mesh.devOp.issuer });
      expect(reopened.wallet.history!.map((h) => h.kind)).to.include.members(["claims", "release", "link", "merge"]);
      expect(reopened.wallet.subjects).to.deep.include({ iss: mesh.devOp.issuer, sub: CAROL.sub });
      expect(reopened.wallet.subjects).to.deep.include({ iss: mesh.devOp.issuer, sub: DORA.sub, recovery: true });
      const { haystack } = await dumpEverything();
      expect(foundIn(haystack), "values found in the dump").to.deep.equal([]);
    });
  });

  describe("after a delete (issue 13): no record of the wallet is left but its anonymous tombstones, and the dump still reveals nothing", function () {
    it("alice deletes her wallet: her subject, wallet and releases are gone (counted by hash), her reservations stay as tombstones, bob's rows are untouched, and no value is found", async function () {
      const before = await db.query<{ hash: string; version: string }>("SELECT hash, version FROM records");
      const versionBefore = new Map(before.rows.map((r) => [r.hash, Number(r.version)]));
      const alice = hashesOf("alice");
      for (const h of alice.owned) expect(versionBefore.has(h), "alice's records are there before").to.equal(true);

      // The account page's sign-in, then the delete's own forced fresh sign-in, through the driver.
      const began = Date.now();
      const account = await mesh.driver.startAccount("dev");
      const view = (await mesh.driver.openAccount(account.sessionToken, began, await mesh.upstreamLogin(USERS.alice, account.upstreamNonce, { prompt: "login" })))!;
      expect(view.uid).to.equal(uid.alice);
      const deleting = Date.now();
      const tx = await mesh.driver.beginTransaction(view.sessionToken, TransactionKind.DELETE, "dev");
      await mesh.driver.deleteWallet(tx.sessionToken, deleting, await mesh.upstreamLogin(USERS.alice, tx.upstreamNonce, { prompt: "login" }), view.uid);

      const { dumps, haystack } = await dumpEverything();
      const after = await db.query<{ hash: string; version: string }>("SELECT hash, version FROM records");
      const versionAfter = new Map(after.rows.map((r) => [r.hash, Number(r.version)]));
      expect(alice.owned.filter((h) => versionAfter.has(h)), "none of alice's subject, wallet or releases").to.deep.equal([]);
      for (const dump of dumps) for (const h of alice.owned) expect(dump.includes(h), "no deleted hash in pg_dump").to.equal(false);
      // Her reservations, each written over once more: a tombstone that names no one.
      for (const h of alice.reservations) expect(versionAfter.get(h)).to.equal(versionBefore.get(h)! + 1);
      // Everything else is as it was: bob's rows, and what the other tests left.
      for (const [h, v] of versionBefore) if (!alice.owned.includes(h) && !alice.reservations.includes(h)) expect(versionAfter.get(h)).to.equal(v);
      expect(after.rows.length).to.equal(before.rows.length - alice.owned.length);
      expect(foundIn(haystack), "values found in the dump").to.deep.equal([]);
    });
  });
});
