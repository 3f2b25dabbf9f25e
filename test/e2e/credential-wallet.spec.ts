// The credential wallet end to end (issue 14, docs/wallet-server.md): the four
// processes on a real PostgreSQL, the development issuer over mutual TLS, and `hello
// wallet`'s own code (internal/wallet) as the Wallet Client. Chromium signs the client in;
// then an identity card and a driving licence from one verification, listed, shown and
// presented (the SD-JWT VC verified against the issuer's key and the presentation's key
// binding); ADDITIONAL_INFO_REQUIRED answered with evidence by reference; PENDING decided
// and notified; DENIED. Then what Orchestration and Storage hold: another client
// instance of the same user, and another user, get none of it, and a dump of the
// database shows no issuer-side identifier, credential type name or claim. The
// lifecycle (issue 15): the user's own suspend, unsuspend and unlink, signed by her
// client, and refused to a rogue Orchestration; reconciliation by the issuer's status on
// her call, and the issuer asking the wallet server's view.

import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import pg from "pg";
import { type BrowserContext, chromium } from "playwright-core";
import { z } from "zod";
import { Code } from "@connectrpc/connect";
import { createDpopProof, generateDpopKey, jwkThumbprint } from "../../internal/protocol/dpop.js";
import { s2sSessionHash } from "../../internal/protocol/lookup-key.js";
import { CLIENT_ACTION_EXTENSION, TRANSFER_SESSION_EXTENSION, credentialStatusResponseSchema, issuerMetadataSchema } from "../../internal/s2s/messages.js";
import { ProblemError, S2S_INVALID_CLIENT_AUTHENTICATION } from "../../internal/s2s/problem.js";
import { signStatement } from "../../internal/s2s/statements.js";
import type { WireClient } from "../../internal/s2s/wire-client.js";
import { IssuerClients } from "../../internal/components/orchestration/s2s/issuers.js";
import type { OrchestrationConfig } from "../../internal/config/component-config.js";
import { refusal } from "../support/refusal.js";
import { verifySdJwtVc } from "../../internal/s2s/sd-jwt-vc.js";
import { fetchCredentialStatus } from "../../internal/s2s/status-list.js";
import { WalletApi, WalletApiError } from "../../internal/wallet/api-client.js";
import { KeyStore } from "../../internal/wallet/key-store.js";
import { login } from "../../internal/wallet/login.js";
import {
  addCredentials, credentialStatus, deleteCredential, listCredentials, manageCredential, presentCredential, refreshCredential, resumeCredentials, showCredential, transferCredentials,
  WalletClientError,
} from "../../internal/wallet/wallet-client.js";
import { DEFAULT_DEV_USERS, type DevUser } from "../../internal/dev/devop/dev-op.js";
import { CHROMIUM, CHROMIUM_ARGS } from "../support/chromium.js";
import { browserlessWalletStep, chromiumWalletStep } from "../support/wallet-browser.js";
import { dumpDatabase, findValue } from "../support/database-dump.js";
import { Browserless } from "../support/browserless.js";
import { type ProtocolMesh, USERS, browseToAccount, startProtocolMesh } from "../support/protocol-mesh.js";
import { ADA, ALAN, GRACE, KATHERINE, MALLORY, es256Pair } from "../support/s2s-fixtures.js";
import { walletEncryptionKeyData } from "../../internal/s2s/client-payload.js";
import { generateHpkeKeyPair } from "../../internal/s2s/hpke-jwe.js";
import type { JWK } from "jose";

const noWait = async () => {};
/** One more person, whose one credential the /wallet page unlinks. */
const DORA: DevUser = { sub: "dora-0004", email: "dora@example.org", email_verified: true, name: "Dora Example", password: "dora" };

describe("the credential wallet end to end: four processes, the development issuer, hello wallet (docs/wallet-server.md)", function () {
  this.timeout(120_000);
  let mesh: ProtocolMesh;
  let browser: BrowserContext;
  let issuerId: string;
  const dirs: string[] = [];
  /** What the flows saw, to search the database dump for. */
  const seen = { sessions: new Set<string>(), instances: new Set<string>(), verifications: new Set<string>() };

  before(async function () {
    this.timeout(240_000);
    // Token runs twisted (test/support/twisted/rogue-token.ts): honest unless a test names a twist.
    mesh = await startProtocolMesh({ database: "postgres", credentialWallet: true, twisted: { rogue: ["token"] }, users: [...DEFAULT_DEV_USERS, DORA] });
    issuerId = mesh.devIssuer!.metadata.issuer;
    const profile = await mkdtemp(path.join(os.tmpdir(), "hello-chromium-"));
    dirs.push(profile);
    browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  });
  /** Orchestration's S2S clients, as the rogue-Orchestration tests use them (orchestrationIssuerClient). */
  let rogueIssuerClients: IssuerClients | undefined;
  afterEach(() => mesh?.control({}));
  after(async () => {
    rogueIssuerClients?.close();
    await browser?.close();
    await mesh?.close();
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  async function newStore(): Promise<KeyStore> {
    const dir = await mkdtemp(path.join(os.tmpdir(), "hello-wallet-"));
    dirs.push(dir);
    return KeyStore.open(path.join(dir, "wallet"));
  }

  /** `hello wallet login` for `user`, the browser step in Chromium (or the browserless stand-in). */
  async function signedIn(user: DevUser, how: "chromium" | "browserless" = "browserless"): Promise<{ store: KeyStore; api: WalletApi }> {
    const store = await newStore();
    const openUrl = how === "chromium" ? chromiumWalletStep(browser, mesh.issuer, user) : browserlessWalletStep(user);
    await login({ server: mesh.issuer, store, openUrl, allowInsecureHttp: true });
    return { store, api: await WalletApi.fromStore(store) };
  }

  const note = (result: { sessionId: string; verificationId: string; instances: Array<{ id: string }> }) => {
    seen.sessions.add(result.sessionId);
    seen.verifications.add(result.verificationId);
    for (const i of result.instances) seen.instances.add(i.id);
  };

  let alice: { store: KeyStore; api: WalletApi };
  /** Carol's credentials (the PENDING test's), which the last test deletes with her whole wallet. */
  let carols: { sessionId: string; instanceIds: string[] } | undefined;
  let issued: Awaited<ReturnType<typeof addCredentials>>;

  it("Alice signs in with Chromium, and adds an identity card and a driving licence from one verification, two presentment keys each", async function () {
    alice = await signedIn(USERS.alice, "chromium");
    issued = await addCredentials(alice.api, alice.store, { issuer: issuerId, configurations: ["identity_card", "driving_licence"], person: ADA, presentmentKeys: 2, sleep: noWait });
    expect(issued.state).to.equal("ISSUED");
    note(issued);
    expect(issued.instances.map((i) => i.configuration).sort()).to.deep.equal(["driving_licence", "identity_card"]);
    for (const instance of issued.instances) expect(instance.count).to.equal(2);

    const listed = await listCredentials(alice.api, alice.store);
    expect(listed.map((c) => [c.configuration, c.status]).sort()).to.deep.equal([["driving_licence", "ACTIVE"], ["identity_card", "ACTIVE"]]);
    // A list names claims, never their values.
    expect(JSON.stringify(listed)).to.not.match(/Lovelace|1990-12-10|D-1001/);
    const card = issued.instances.find((i) => i.configuration === "identity_card")!;
    const shown = await showCredential(alice.api, alice.store, card.id);
    expect(JSON.stringify(shown)).to.include("Lovelace");
  });

  it("/credential/metadata refreshes the display data, with a WEK statement her client signs; the server's own is refused by the issuer", async function () {
    const card = issued.instances.find((i) => i.configuration === "identity_card")!;
    const wsk = (await alice.store.getKey(`wsk.${issued.sessionId}`))!;
    const wek = await generateHpkeKeyPair();
    const body = (signer: JWK) => walletEncryptionKeyData(wek.publicJwk, issuerId, issued.sessionId, signer).then((walletEncryptionKey) => ({
      issuer: issuerId, sessionId: issued.sessionId, credentialInstanceId: card.id, walletEncryptionKey,
    }));
    const answer = await alice.api.call("POST", "/wallet/api/credential/metadata", z.looseObject({ credentialMetadata: z.looseObject({ vct: z.string() }) }), await body(wsk));
    expect(answer.credentialMetadata.vct).to.equal("urn:hello-mesh:dev:identity-card");
    const invented = (await es256Pair()).privateJwk;
    const refused = await alice.api.call("POST", "/wallet/api/credential/metadata", z.unknown(), await body(invented)).then(
      () => expect.fail("the issuer took a WEK the session's WSK did not sign"),
      (error: unknown) => error as WalletApiError,
    );
    expect(refused).to.be.instanceOf(WalletApiError);
    expect(refused.status).to.equal(422);
  });

  it("a presentation of selected claims verifies against the issuer's key, with the key binding to the presentment key", async function () {
    const card = issued.instances.find((i) => i.configuration === "identity_card")!;
    const presentation = await presentCredential(alice.api, alice.store, card.id, { claims: ["family_name", "age_over_18"], audience: "https://verifier.example", nonce: "n-0123456789", key: 1 });
    // The issuer's own signing keys, as its metadata publishes them (GET /.well-known/s2s-issuer).
    const metadata = issuerMetadataSchema.parse(mesh.devIssuer!.metadata);
    const verified = await verifySdJwtVc({
      presentation, issuerKeys: metadata.jwks as never, expectedIssuer: issuerId, expectedVct: "urn:hello-mesh:dev:identity-card",
      audience: "https://verifier.example", nonce: "n-0123456789",
    });
    expect(verified.claims).to.deep.equal({ family_name: "Lovelace", age_over_18: true });
    for (const hidden of ["1990-12-10", "D-1001", "Ada"]) expect(presentation).to.not.include(hidden);
  });

  it("ADDITIONAL_INFO_REQUIRED: a proof of address sent out of band, by reference, then APPROVED", async function () {
    const bob = await signedIn(USERS.bob);
    const file = path.join(dirs[0]!, "bill.pdf");
    await writeFile(file, "%PDF-1.7 a utility bill for Grace Hopper");
    const statuses: string[] = [];
    const result = await addCredentials(bob.api, bob.store, {
      issuer: issuerId, configurations: ["identity_card"], person: GRACE, document: { path: file, mediaType: "application/pdf" }, sleep: noWait,
      onStatus: (s) => statuses.push(s.status),
    });
    expect(result.state).to.equal("ISSUED");
    note(result);
    expect(statuses).to.deep.equal(["ADDITIONAL_INFO_REQUIRED", "APPROVED"]);
  });

  it("PENDING, then the issuer's decision reaches the wallet server's /verification/notify and is recorded; then APPROVED", async function () {
    const carol = await signedIn(USERS.carol);
    const pending = await addCredentials(carol.api, carol.store, { issuer: issuerId, configurations: ["identity_card"], person: ALAN, wait: false, sleep: noWait });
    expect(pending).to.include({ state: "PENDING", waitingFor: "verification" });
    await mesh.devIssuer!.decide(pending.sessionId, pending.verificationId, "APPROVED");
    const notice = mesh.devIssuer!.notices.find((n) => n.sessionId === pending.sessionId && n.path === "/verification/notify");
    expect(notice, "the issuer notified the wallet server").to.deep.include({ delivered: true });
    const done = await resumeCredentials(carol.api, carol.store, pending.sessionId, { sleep: noWait });
    expect(done.state).to.equal("ISSUED");
    note(done);
    if (done.state === "ISSUED") carols = { sessionId: done.sessionId, instanceIds: done.instances.map((i) => i.id) };
  });

  it("DENIED ends, with the issuer's reason", async function () {
    const dave = await signedIn(USERS.alice);
    const refused = await addCredentials(dave.api, dave.store, { issuer: issuerId, configurations: ["identity_card"], person: MALLORY, sleep: noWait }).then(
      () => expect.fail("a denied verification issued something"),
      (error: unknown) => error,
    );
    expect(refused).to.be.instanceOf(WalletClientError);
    expect((refused as WalletClientError).details).to.deep.include({ status: "DENIED", reasonCode: "POLICY" });
  });

  it("another client instance of Alice sees her credentials listed but cannot open or change them; another user sees none", async function () {
    // Alice's second device: her user, another DPoP key. The records are hers, the WEKs the first device's.
    const second = await signedIn(USERS.alice);
    const listed = await second.api.call("GET", "/wallet/api/credentials", z.object({ credentials: z.array(z.looseObject({ credentialInstanceId: z.string() })) }));
    const card = issued.instances.find((i) => i.configuration === "identity_card")!;
    expect(listed.credentials.map((c) => c.credentialInstanceId)).to.include(card.id);
    const session = issued.sessionId;
    // Its calls on the first device's session: as if the session did not exist.
    const refused = await second.api.call("POST", "/wallet/api/credential/confirm", z.unknown(), { issuer: issuerId, sessionId: session, credentialInstanceId: card.id }).then(
      () => expect.fail("another client instance changed the credential"),
      (error: unknown) => error as WalletApiError,
    );
    expect(refused).to.be.instanceOf(WalletApiError);
    expect(refused.status).to.equal(404);
    // Bob: none of Alice's credentials, and her session is unknown to him.
    const bob = await signedIn(USERS.bob);
    const his = await bob.api.call("GET", "/wallet/api/credentials", z.object({ credentials: z.array(z.looseObject({ credentialInstanceId: z.string() })) }));
    expect(his.credentials.map((c) => c.credentialInstanceId)).to.not.include(card.id);
    const status = await bob.api.call("POST", "/wallet/api/status", z.unknown(), { issuer: issuerId, sessionId: session, verificationId: issued.verificationId }).then(
      () => expect.fail("Bob read Alice's verification"),
      (error: unknown) => error as WalletApiError,
    );
    expect(status.status).to.equal(404);
  });

  it("the /wallet page, after a forced fresh sign-in, lists Alice's credentials by issuer and type with their status, and nothing of their contents", async function () {
    const browser = new Browserless();
    const chooser = await browser.go(new URL("/wallet", mesh.issuer));
    expect(chooser.status).to.equal(200);
    let page = await browser.submit(browser.form(chooser, /^\/wallet\/provider$/), [["provider", "dev"]]);
    expect(page.body, "the provider asks for the password: prompt=login").to.match(/name="password"/);
    page = await browser.submit(browser.form(page, /\/login$/), [["email", USERS.alice.email], ["password", USERS.alice.password]]);
    expect(page.status, page.body.slice(0, 400)).to.equal(200);
    expect(page.body).to.include("<h1>Your credentials</h1>");
    expect(page.body).to.include(`<h2>${issuerId}</h2>`);
    expect(page.body).to.match(/Identity card \(development\) <small>\(identity_card\)<\/small><\/td><td>Active<\/td>/);
    expect(page.body).to.match(/Driving licence \(development\) <small>\(driving_licence\)<\/small><\/td><td>Active<\/td>/);
    for (const value of ["Lovelace", "1990-12-10", "D-1001", ...seen.instances]) expect(page.body).to.not.include(value);
    // Bob's page shows his one identity card, none of hers.
    const other = new Browserless();
    let bobs = await other.submit(other.form(await other.go(new URL("/wallet", mesh.issuer)), /^\/wallet\/provider$/), [["provider", "dev"]]);
    bobs = await other.submit(other.form(bobs, /\/login$/), [["email", USERS.bob.email], ["password", USERS.bob.password]]);
    expect(bobs.body.match(/<\/td><td>Active<\/td>/g)).to.have.length(1);
    expect(bobs.body).to.not.include("driving_licence");
  });

  it("a rogue Orchestration (the test, with Orchestration's certificate) cannot act for Alice's client without its proof: as an issuer's notice it reads one named record at most, and changes none", async function () {
    const token = mesh.token("orchestration");
    const card = issued.instances.find((i) => i.configuration === "identity_card")!;
    const ref = { issuer: issuerId, sessionId: issued.sessionId };
    const login = (await alice.store.login())!;
    const key = await alice.store.dpopKey();
    const url = `${mesh.issuer}/wallet/api/credentials`;
    // The honest call: Alice's client, through the front door.
    const proof = await createDpopProof(key, { method: "GET", url, accessToken: login.accessToken });
    const honest = await fetch(url, { headers: { authorization: `DPoP ${login.accessToken}`, dpop: proof } });
    expect(honest.status).to.equal(200);
    // Orchestration saw her token and that proof: replayed to Token, or its token with a
    // proof of Orchestration's own key, or for a credential record it names: refused.
    const refusedCall = async (call: Promise<unknown>) => ((await refusal(call)) as { code: Code }).code;
    expect(await refusedCall(token.authorizeWalletCall({ accessToken: login.accessToken, dpopProof: proof, method: "GET", url }))).to.equal(Code.Unauthenticated);
    const own = await generateDpopKey();
    const forged = await createDpopProof(own, { method: "POST", url: `${mesh.issuer}/wallet/api/credential/get`, accessToken: login.accessToken });
    expect(await refusedCall(token.authorizeWalletCall({
      accessToken: login.accessToken, dpopProof: forged, method: "POST", url: `${mesh.issuer}/wallet/api/credential/get`,
      session: { ...ref, credentialInstanceId: card.id },
    }))).to.equal(Code.Unauthenticated);
    // As an issuer's notification: one credential record's read at most (the issuer's
    // /credential/status; its ciphertext is for the client's WEK), never a change, and
    // nothing a user's call may do.
    const cardNotice = await token.authorizeIssuerNotice({ session: { ...ref, credentialInstanceId: card.id } });
    const cardRead = await mesh.encryption("orchestration").readRecord({ accessToken: cardNotice.credentialRead!.accessToken });
    expect(cardRead.result.case).to.equal("record");
    const unlink = JSON.stringify({ sessionId: issued.sessionId, credentialInstanceId: card.id, currentStatus: "UNLINKED", outcome: "COMPLETED" });
    expect(await refusedCall(token.updateCredential({ callToken: cardNotice.callToken, credential: { record: cardRead.result.value as string, receipt: cardRead.receipt }, change: { case: "managed", value: unlink } }))).to.equal(Code.PermissionDenied);
    const notice = await token.authorizeIssuerNotice({ session: { ...ref, credentialInstanceId: "" } });
    const read = await mesh.encryption("orchestration").readRecord({ accessToken: notice.sessionRead!.accessToken });
    expect(read.result.case).to.equal("record");
    const session = { record: read.result.value as string, receipt: read.receipt };
    expect(await refusedCall(token.grantCredentialReads({ callToken: notice.callToken, holdings: session }))).to.equal(Code.PermissionDenied);
    expect(await refusedCall(token.attestS2sSession({ callToken: notice.callToken, session }))).to.equal(Code.PermissionDenied);
    // A status that would undo the approval: nothing to write (APPROVED is terminal).
    const undo = JSON.stringify({ sessionId: issued.sessionId, verificationId: issued.verificationId, status: "DENIED", reasonCode: "FRAUD", deniedMessage: "no" });
    expect((await token.recordS2sStatus({ callToken: notice.callToken, session, status: undo })).session).to.equal(undefined);
    // The /wallet page's view needs an account session, not any session Orchestration holds.
    const login2 = await token.createSession({ request: { case: "parameters", value: { clientId: "app-a", redirectUri: "https://a.example/callback", nonce: "n", scope: "openid", claims: "", codeChallenge: "x".repeat(43), prompt: "", dpopJkt: "" } }, providerId: "dev" });
    expect(await refusedCall(token.authorizeWalletView({ sessionToken: login2.sessionToken }))).to.equal(Code.FailedPrecondition);
    // And the honest twin still works: Alice's client lists her credentials.
    expect((await listCredentials(alice.api, alice.store)).map((c) => c.configuration).sort()).to.deep.equal(["driving_licence", "identity_card"]);
  });

  it("lifecycle (issue 15): Alice suspends, unsuspends and unlinks her driving licence with her client's signature; a repeat changes nothing; the unlinked record keeps no ciphertext and her keys for it are gone", async function () {
    const licence = issued.instances.find((i) => i.configuration === "driving_licence")!;
    const issuerView = issuerStatus(issued.sessionId, licence.id);
    expect(await issuerView()).to.equal("ACTIVE");

    const suspended = await manageCredential(alice.api, alice.store, licence.id, "SUSPEND", "card mislaid");
    expect(suspended).to.include({ outcome: "COMPLETED", status: "SUSPENDED_WALLET", previousStatus: "ACTIVE", keysRemoved: false });
    expect(await issuerView()).to.equal("SUSPENDED_WALLET");
    expect((await listCredentials(alice.api, alice.store)).find((c) => c.instanceId === licence.id)?.status).to.equal("SUSPENDED_WALLET");
    // The same action again, with a fresh signature: applied once, NO_CHANGE.
    expect(await manageCredential(alice.api, alice.store, licence.id, "SUSPEND")).to.include({ outcome: "NO_CHANGE", status: "SUSPENDED_WALLET" });

    expect(await manageCredential(alice.api, alice.store, licence.id, "RESUME")).to.include({ outcome: "COMPLETED", status: "ACTIVE", previousStatus: "SUSPENDED_WALLET" });
    expect(await issuerView()).to.equal("ACTIVE");

    const keysBefore = await alice.store.listKeys(`pk.${licence.id}.`);
    expect(keysBefore).to.have.length(2);
    const unlinked = await manageCredential(alice.api, alice.store, licence.id, "UNLINK", "sold the car");
    expect(unlinked).to.include({ outcome: "COMPLETED", status: "UNLINKED", keysRemoved: true });
    expect(await issuerView()).to.equal("UNLINKED");
    expect(await alice.store.listKeys(`pk.${licence.id}.`)).to.deep.equal([]);
    const held = z.looseObject({ credentials: z.array(z.looseObject({ credentialInstanceId: z.string(), status: z.string(), credentials: z.unknown().optional() })) });
    const record = (await alice.api.call("GET", "/wallet/api/credentials", held)).credentials.find((c) => c.credentialInstanceId === licence.id)!;
    expect(record.status).to.equal("UNLINKED");
    expect(record, "an unlinked credential's record keeps no ciphertext").to.not.have.property("credentials");
    // UNLINKED is terminal: nothing moves it back, and the issuer gives nothing more for it.
    expect(await manageCredential(alice.api, alice.store, licence.id, "RESUME")).to.include({ outcome: "FAILED", status: "UNLINKED" });
    const wek = await generateHpkeKeyPair();
    const wsk = (await alice.store.getKey(`wsk.${issued.sessionId}`))!;
    const refused = await alice.api.call("POST", "/wallet/api/credential/get", z.unknown(), {
      issuer: issuerId, sessionId: issued.sessionId, credentialInstanceId: licence.id,
      walletEncryptionKey: await walletEncryptionKeyData(wek.publicJwk, issuerId, issued.sessionId, wsk),
    }).then(() => expect.fail("an unlinked credential was delivered again"), (error: unknown) => error as WalletApiError);
    expect(refused.status).to.equal(409);
    // The identity card, untouched.
    expect((await listCredentials(alice.api, alice.store)).find((c) => c.configuration === "identity_card")?.status).to.equal("ACTIVE");
  });

  it("a rogue Orchestration (Orchestration's own S2S certificate) cannot suspend, resume or unlink without Alice's signature, nor replay or repurpose one; the issuer's status stays", async function () {
    const card = issued.instances.find((i) => i.configuration === "identity_card")!;
    const issuer = orchestrationIssuerClient();
    const view = issuerStatus(issued.sessionId, card.id);
    const manage = (action: string, authority?: string, requestId?: string) =>
      issuer.post("/credential/manage", {
        sessionId: issued.sessionId, credentialInstanceId: card.id, action, reason: "ROGUE",
        ...(authority !== undefined ? { extensions: { [CLIENT_ACTION_EXTENSION]: authority } } : {}),
      }, z.looseObject({ outcome: z.string(), currentStatus: z.string() }), requestId ? { requestId } : {});
    const refusedWith = async (p: Promise<unknown>) => {
      const error = await p.then(() => expect.fail("the issuer took a manage without the user's authority"), (e: unknown) => e);
      expect(error).to.be.instanceOf(ProblemError);
      return (error as ProblemError).problem;
    };
    for (const action of ["SUSPEND", "UNLINK", "RESUME"]) {
      expect((await refusedWith(manage(action))).status, `${action} without a signature`).to.equal(422);
    }
    // A key of its own making is not the session's WSK.
    const own = (await es256Pair()).privateJwk;
    const forged = await signStatement("action", { audience: issuerId, sessionId: issued.sessionId, credentialInstanceId: card.id }, { action: "SUSPEND" }, own);
    expect((await refusedWith(manage("SUSPEND", forged))).detail).to.match(/wallet signing key/);
    // Alice's own signature, for another action or another instance, is not for this one.
    const wsk = (await alice.store.getKey(`wsk.${issued.sessionId}`))!;
    const forResume = await signStatement("action", { audience: issuerId, sessionId: issued.sessionId, credentialInstanceId: card.id }, { action: "RESUME" }, wsk);
    expect((await refusedWith(manage("SUSPEND", forResume))).detail).to.match(/another action/);
    const licence = issued.instances.find((i) => i.configuration === "driving_licence")!;
    const forLicence = await signStatement("action", { audience: issuerId, sessionId: issued.sessionId, credentialInstanceId: licence.id }, { action: "SUSPEND" }, wsk);
    expect((await refusedWith(manage("SUSPEND", forLicence))).detail).to.match(/another credential instance/);
    expect(await view()).to.equal("ACTIVE");

    // A signature Orchestration saw go by, honestly used once: a replay under a new
    // request id is refused (its jti is spent); under the same request id the issuer
    // answers what it answered, and applies nothing twice.
    const seenOnce = await signStatement("action", { audience: issuerId, sessionId: issued.sessionId, credentialInstanceId: card.id }, { action: "SUSPEND" }, wsk);
    const requestId = randomUUID();
    const first = await manage("SUSPEND", seenOnce, requestId);
    expect(first.body).to.include({ outcome: "COMPLETED", currentStatus: "SUSPENDED_WALLET" });
    const again = await manage("SUSPEND", seenOnce, requestId);
    expect(again.body).to.deep.equal(first.body);
    expect((await refusedWith(manage("SUSPEND", seenOnce))).detail).to.match(/used before/);
    expect(await view()).to.equal("SUSPENDED_WALLET");
    // Alice lifts it with her own client: the honest twin.
    expect(await manageCredential(alice.api, alice.store, card.id, "RESUME")).to.include({ outcome: "COMPLETED", status: "ACTIVE" });
    expect(await view()).to.equal("ACTIVE");
  });

  it("reconciliation (issue 15): a suspension the issuer made, never notified, is taken into the record when Alice's client asks the issuer's status; she cannot lift it; the issuer lifts it and tells the wallet server, which takes it on her next call and answers LIFECYCLE_SUCCESS; an UNLINKED record stays so", async function () {
    const card = issued.instances.find((i) => i.configuration === "identity_card")!;
    mesh.devIssuer!.suspendAsIssuer(issued.sessionId, card.id, true);
    // Not yet seen: nothing told the wallet server.
    expect((await listCredentials(alice.api, alice.store)).find((c) => c.instanceId === card.id)?.status).to.equal("ACTIVE");
    const seen = await credentialStatus(alice.api, card.id);
    expect(seen).to.include({ status: "SUSPENDED_ISSUER", issuerStatus: "SUSPENDED_ISSUER", issuerVersion: "1", version: "1", updateAvailable: false });
    expect(seen.lastStatusChangeReason).to.equal("the issuer's suspension");
    expect((await listCredentials(alice.api, alice.store)).find((c) => c.instanceId === card.id)?.status).to.equal("SUSPENDED_ISSUER");
    // Only the party that suspended resumes.
    expect(await manageCredential(alice.api, alice.store, card.id, "RESUME")).to.include({ outcome: "FAILED", failureReason: "SUSPENDED_BY_ISSUER", status: "SUSPENDED_ISSUER" });
    const lifecycle = () => mesh.devIssuer!.received.filter((e) => e.eventType === "LIFECYCLE_SUCCESS" && e.credentialInstanceId === card.id).length;
    expect(lifecycle(), "the issuer is told once the change reached the wallet").to.equal(1);
    // The issuer lifts it and tells the wallet server (its /credential/manage): a poke. The
    // server alone changes no record, so SCHEDULED, with the status as it stands; Alice's
    // client's next status call takes it, and then the issuer hears LIFECYCLE_SUCCESS.
    expect(await mesh.devIssuer!.suspendAndTell(issued.sessionId, card.id, false)).to.include({ outcome: "SCHEDULED", currentStatus: "SUSPENDED_ISSUER" });
    expect((await listCredentials(alice.api, alice.store)).find((c) => c.instanceId === card.id)?.status).to.equal("SUSPENDED_ISSUER");
    expect(await credentialStatus(alice.api, card.id)).to.include({ status: "ACTIVE", issuerStatus: "ACTIVE" });
    expect(lifecycle()).to.equal(2);
    // Asked again with nothing changed: no event.
    await credentialStatus(alice.api, card.id);
    expect(lifecycle()).to.equal(2);
    // The unlinked licence: the issuer says UNLINKED too, and the record keeps it.
    const licence = issued.instances.find((i) => i.configuration === "driving_licence")!;
    expect(await credentialStatus(alice.api, licence.id)).to.include({ status: "UNLINKED", issuerStatus: "UNLINKED", updateAvailable: false });
    // An issuer's action on an ended instance: FAILED, nothing moves.
    const late = await mesh.devIssuer!.suspendAndTell(issued.sessionId, licence.id, true);
    expect(late).to.include({ outcome: "FAILED", currentStatus: "UNLINKED" });
    // Another client instance of Alice's cannot ask for it (the record is this instance's).
    const second = await signedIn(USERS.alice);
    const refused = await credentialStatus(second.api, card.id).then(() => expect.fail("another client instance read the status"), (e: unknown) => e as WalletClientError);
    expect(refused).to.be.instanceOf(WalletClientError);
    expect(refused.details.httpStatus).to.equal(404);
  });

  it("updates (issue 15): CREDENTIAL_UPDATE_AVAILABLE reaches the wallet server; Alice's status call shows the newer version, refresh fetches and checks it under her same keys, and the issuer hears UPDATE_SUCCESS", async function () {
    const card = issued.instances.find((i) => i.configuration === "identity_card")!;
    const delivered = mesh.devIssuer!.notices.length;
    await mesh.devIssuer!.publishUpdate(issued.sessionId, card.id);
    expect(mesh.devIssuer!.notices.slice(delivered)).to.deep.equal([{ path: "/event/notify", sessionId: issued.sessionId, delivered: true }]);
    expect(await credentialStatus(alice.api, card.id)).to.include({ issuerVersion: "2", version: "1", updateAvailable: true });
    const refreshed = await refreshCredential(alice.api, alice.store, card.id);
    expect(refreshed).to.deep.equal({ instanceId: card.id, state: "READY", previousVersion: "1", version: "2", count: 2, displayName: "Identity card (development)" });
    expect(await credentialStatus(alice.api, card.id)).to.include({ status: "ACTIVE", version: "2", updateAvailable: false });
    expect((await listCredentials(alice.api, alice.store)).find((c) => c.instanceId === card.id)).to.include({ version: "2", verified: true, count: 2 });
    expect(mesh.devIssuer!.received.filter((e) => e.credentialInstanceId === card.id).map((e) => e.eventType)).to.include("UPDATE_SUCCESS");
    // The new version presents and verifies as the first did.
    const presentation = await presentCredential(alice.api, alice.store, card.id, { claims: ["age_over_18"], audience: "https://verifier.example", nonce: "n-update-1" });
    const metadata = issuerMetadataSchema.parse(mesh.devIssuer!.metadata);
    const verified = await verifySdJwtVc({ presentation, issuerKeys: metadata.jwks as never, expectedIssuer: issuerId, audience: "https://verifier.example", nonce: "n-update-1" });
    expect(verified.claims).to.deep.equal({ age_over_18: true });
  });

  it("the issuer asks the wallet server's view (its /credential/status, as the issuer over mutual TLS): the record's status and version; another session's instance is 404", async function () {
    const [card, licence] = ["identity_card", "driving_licence"].map((c) => issued.instances.find((i) => i.configuration === c)!);
    const view = await mesh.devIssuer!.walletServerStatus(issued.sessionId, card!.id);
    const record = (await listCredentials(alice.api, alice.store)).find((c) => c.instanceId === card!.id)!;
    expect(view).to.include({ currentStatus: record.status, currentVersion: record.version });
    expect(view.currentStatus).to.equal("ACTIVE");
    expect(new Date(view.lastStatusChangeTime!).getTime()).to.be.greaterThan(0);
    expect(await mesh.devIssuer!.walletServerStatus(issued.sessionId, licence!.id)).to.include({ currentStatus: "UNLINKED" });
    // An instance of another session (the other verification's) named under this session: as if it did not exist.
    const other = [...seen.instances].find((id) => id !== card!.id && id !== licence!.id)!;
    const refused = await mesh.devIssuer!.walletServerStatus(issued.sessionId, other).then(() => expect.fail("the wallet server answered for another session's instance"), (e: unknown) => e as ProblemError);
    expect(refused.problem).to.include({ status: 404, errorCode: "unknown_credential_instance" });
  });

  /** Orchestration's own S2S client of the development issuer (its `wallet.tls`), as a rogue Orchestration would use it: made once, closed after. */
  function orchestrationIssuerClient(): WireClient {
    if (!rogueIssuerClients) {
      const wallet = (mesh.deployment.configs.orchestration as OrchestrationConfig).wallet!;
      const base = path.dirname(mesh.deployment.configFiles.orchestration);
      const pem = (file: string) => readFileSync(path.resolve(base, file), "utf8");
      rogueIssuerClients = new IssuerClients({ ...wallet, issuers: wallet.issuers.map((i) => ({ ...i, ca: path.resolve(base, i.ca) })) }, pem(wallet.tls.cert), pem(wallet.tls.key), { maxRetries: 0 });
    }
    return rogueIssuerClients.client(issuerId);
  }

  /** The issuer's own view of an instance (its /credential/status), asked with Orchestration's certificate. */
  const issuerStatus = (sessionId: string, instanceId: string) => async () =>
    (await orchestrationIssuerClient().post("/credential/status", { sessionId, credentialInstanceId: instanceId }, credentialStatusResponseSchema)).body.currentStatus;

  /** Waits for the wallet server's background work (a timer in the Orchestration process) to have done `what`. */
  async function until(done: () => Promise<boolean> | boolean, what: string, withinMs = 30_000): Promise<void> {
    const end = Date.now() + withinMs;
    while (!(await done())) {
      if (Date.now() > end) expect.fail(`not within ${withinMs} ms: ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  it("a lost notification recovered by polling (issue 15): the issuer's decision never reaches the wallet server, whose background work asks its status and records APPROVED before the client asks; a late PENDING notification then changes nothing", async function () {
    const dave = await signedIn(USERS.bob);
    const pending = await addCredentials(dave.api, dave.store, { issuer: issuerId, configurations: ["identity_card"], person: ALAN, wait: false, sleep: noWait });
    if (pending.state !== "PENDING") expect.fail(`not pending: ${pending.state}`);
    const db = new pg.Client({ connectionString: mesh.postgres!.url });
    await db.connect();
    const at = s2sSessionHash(mesh.lookupKey, issuerId, pending.sessionId);
    const version = async () => Number((await db.query<{ version: string }>("SELECT version FROM records WHERE hash = $1", [at])).rows[0]!.version);
    try {
      const before = await version();
      mesh.devIssuer!.setFaults({ loseNotifications: true });
      await mesh.devIssuer!.decide(pending.sessionId, pending.verificationId, "APPROVED");
      mesh.devIssuer!.setFaults({ loseNotifications: false });
      expect(mesh.devIssuer!.notices.filter((n) => n.sessionId === pending.sessionId).at(-1)).to.deep.include({ delivered: false });
      const asked = mesh.devIssuer!.statusAsked;
      await until(async () => (await version()) > before, "the wallet server's poll recorded the issuer's decision");
      expect(mesh.devIssuer!.statusAsked, "the wallet server asked the issuer's status").to.be.greaterThan(asked);
      // A late notification, PENDING as it once was: taken (200), and nothing moves back.
      const recorded = await version();
      await mesh.devIssuer!.renotify(pending.sessionId, pending.verificationId, { sessionId: pending.sessionId, verificationId: pending.verificationId, status: "PENDING" });
      expect(mesh.devIssuer!.notices.filter((n) => n.sessionId === pending.sessionId).at(-1)).to.deep.include({ delivered: true });
      expect(await version()).to.equal(recorded);
      const done = await resumeCredentials(dave.api, dave.store, pending.sessionId, { sleep: noWait });
      expect(done.state).to.equal("ISSUED");
      if (done.state === "ISSUED") note(done);
    } finally {
      await db.end();
    }
  });

  it("an event the issuer cannot take now is not lost (issue 15): PROVISIONING_SUCCESS answered 503 is queued, the user's confirm goes on, and the issuer gets it once it takes events again", async function () {
    const erin = await signedIn(USERS.bob);
    // The next event the issuer is sent (the confirm's) is answered 503; it takes the ones after.
    mesh.devIssuer!.setFaults({ refuseEvents: 1 });
    const added = await addCredentials(erin.api, erin.store, { issuer: issuerId, configurations: ["identity_card"], person: ADA, sleep: noWait });
    if (added.state !== "ISSUED") expect.fail(`not issued: ${added.state}`);
    note(added);
    const id = added.instances[0]!.id;
    expect((await listCredentials(erin.api, erin.store)).find((c) => c.instanceId === id)?.status, "the confirm was recorded").to.equal("ACTIVE");
    await until(() => mesh.devIssuer!.received.some((e) => e.credentialInstanceId === id && e.eventType === "PROVISIONING_SUCCESS"), "the queued PROVISIONING_SUCCESS reached the issuer");
    expect(mesh.devIssuer!.received.filter((e) => e.credentialInstanceId === id && e.eventType === "PROVISIONING_SUCCESS")).to.have.length(1);
  });

  it("a rogue Token (the real one, twisted) keeping a credential the issuer unlinked ACTIVE, with its ciphertext, is refused before anything is written; the honest twin records UNLINKED", async function () {
    const frank = await signedIn(USERS.bob);
    const added = await addCredentials(frank.api, frank.store, { issuer: issuerId, configurations: ["driving_licence"], person: ADA, sleep: noWait });
    if (added.state !== "ISSUED") expect.fail(`not issued: ${added.state}`);
    note(added);
    const id = added.instances[0]!.id;
    mesh.control({ token: { updateCredential: "revive" } });
    const refused = await manageCredential(frank.api, frank.store, id, "UNLINK").then(() => expect.fail("a revived record was written"), (e: unknown) => e as WalletClientError);
    expect(refused).to.be.instanceOf(WalletClientError);
    expect(refused.details.httpStatus).to.equal(502);
    mesh.control({});
    // Nothing written: the record is as it was, though the issuer did unlink it.
    expect((await listCredentials(frank.api, frank.store)).find((c) => c.instanceId === id)).to.include({ status: "ACTIVE", verified: true });
    expect(await issuerStatus(added.sessionId, id)()).to.equal("UNLINKED");
    // The honest twin: the next status call takes the issuer's word.
    expect(await credentialStatus(frank.api, id)).to.include({ status: "UNLINKED", issuerStatus: "UNLINKED" });
  });

  it("the wallet's own events (issue 15): new presentment keys are KEY_ROTATED; credentials about to expire are CREDENTIAL_EXPIRING, which the issuer answers with an update the client then fetches", async function () {
    const gina = await signedIn(USERS.bob);
    // Credentials valid 10 days, until the rotation below.
    mesh.devIssuer!.setCredentialValidity(10 * 24 * 60 * 60);
    let added;
    let id: string;
    let old;
    let rotated;
    try {
      added = await addCredentials(gina.api, gina.store, { issuer: issuerId, configurations: ["identity_card"], person: ADA, sleep: noWait });
      if (added.state !== "ISSUED") expect.fail(`not issued: ${added.state}`);
      note(added);
      id = added.instances[0]!.id;
      // KEY_ROTATED: the credentials come bound to the new key, and the old one is gone.
      old = (await gina.store.getKey(`pk.${id}.0`))!;
      rotated = await refreshCredential(gina.api, gina.store, id, { newKeys: 1 });
    } finally {
      mesh.devIssuer!.setCredentialValidity(undefined);
    }
    const events = () => mesh.devIssuer!.received.filter((e) => e.credentialInstanceId === id).map((e) => e.eventType);
    expect(rotated).to.deep.include({ state: "READY", keysRotated: true, count: 1 });
    expect(events()).to.deep.equal(["PROVISIONING_SUCCESS", "KEY_ROTATED"]);
    const now = (await gina.store.getKey(`pk.${id}.0`))!;
    expect(now.x).to.not.equal(old.x);
    const request = { claims: ["age_over_18"], audience: "https://verifier.example", nonce: "n-rotated" };
    const metadata = issuerMetadataSchema.parse(mesh.devIssuer!.metadata);
    const verified = await verifySdJwtVc({ presentation: await presentCredential(gina.api, gina.store, id, request), issuerKeys: metadata.jwks as never, expectedIssuer: issuerId, audience: request.audience, nonce: request.nonce });
    expect(await jwkThumbprint(verified.holderKey)).to.equal(await jwkThumbprint({ kty: now.kty, crv: now.crv, x: now.x, y: now.y }));

    // CREDENTIAL_EXPIRING: the rotation's credentials expire in 10 days; the status call says so, the issuer answers with a new version.
    const status = await credentialStatus(gina.api, id, gina.store);
    expect(status.expiringAt! - Math.floor(Date.now() / 1000)).to.be.within(9 * 86_400, 10 * 86_400);
    expect(events()).to.include("CREDENTIAL_EXPIRING");
    await until(async () => (await credentialStatus(gina.api, id)).updateAvailable, "the issuer's update after CREDENTIAL_EXPIRING");
    const refreshed = await refreshCredential(gina.api, gina.store, id);
    expect(refreshed).to.deep.include({ state: "READY", previousVersion: "1", version: "2" });
    const renewed = await credentialStatus(gina.api, id, gina.store);
    expect(renewed).to.not.have.property("expiringAt");
  });

  it("the issuer's own events and actions (issue 15): CREDENTIAL_READY after an asynchronous issuance; its own UNLINK, told through the wallet server's /credential/manage, taken on the user's next status call (LIFECYCLE_SUCCESS)", async function () {
    const hank = await signedIn(USERS.bob);
    const waiting = await addCredentials(hank.api, hank.store, { issuer: issuerId, configurations: ["identity_card"], person: KATHERINE, wait: false, sleep: noWait });
    expect(waiting).to.include({ state: "PENDING", waitingFor: "credential" });
    const id = waiting.instances.length > 0 ? waiting.instances[0]!.id : (await listCredentials(hank.api, hank.store)).find((c) => c.sessionId === waiting.sessionId)!.instanceId;
    const delivered = mesh.devIssuer!.notices.length;
    await mesh.devIssuer!.completeIssuance(waiting.sessionId, id);
    expect(mesh.devIssuer!.notices.slice(delivered)).to.deep.equal([{ path: "/event/notify", sessionId: waiting.sessionId, delivered: true }]);
    const done = await resumeCredentials(hank.api, hank.store, waiting.sessionId, { sleep: noWait });
    if (done.state !== "ISSUED") expect.fail(`not issued: ${done.state}`);
    note(done);

    const told = await mesh.devIssuer!.unlinkAndTell(waiting.sessionId, id);
    expect(told).to.include({ outcome: "SCHEDULED", currentStatus: "ACTIVE" });
    expect(await credentialStatus(hank.api, id)).to.include({ status: "UNLINKED", issuerStatus: "UNLINKED" });
    expect(mesh.devIssuer!.received.filter((e) => e.credentialInstanceId === id).map((e) => e.eventType)).to.deep.equal(["PROVISIONING_SUCCESS", "LIFECYCLE_SUCCESS"]);
  });

  it("credentials that fail the client's checks are refused, and the issuer is told (PROVISIONING_FAILURE, then UPDATE_FAILURE for a refresh); nothing is confirmed", async function () {
    const ivy = await signedIn(USERS.bob);
    mesh.devIssuer!.setFaults({ misbind: 1 });
    const refused = await addCredentials(ivy.api, ivy.store, { issuer: issuerId, configurations: ["identity_card"], person: ADA, sleep: noWait })
      .then(() => expect.fail("credentials bound to other keys were accepted"), (e: unknown) => e as WalletClientError);
    mesh.devIssuer!.setFaults({ misbind: 0 });
    expect(refused).to.be.instanceOf(WalletClientError);
    expect(refused.message).to.include("not bound to a presentment key of this wallet");
    const held = (await listCredentials(ivy.api, ivy.store)).filter((c) => c.onThisDevice);
    expect(held).to.have.length(1);
    expect(held[0]!.status, "not confirmed").to.equal("IN_PROCESS");
    expect(mesh.devIssuer!.received.filter((e) => e.credentialInstanceId === held[0]!.instanceId).map((e) => e.eventType)).to.deep.equal(["PROVISIONING_FAILURE"]);

    // A refresh of a good credential answered with bad ones: refused, UPDATE_FAILURE, and the good ones stay.
    const good = await addCredentials(ivy.api, ivy.store, { issuer: issuerId, configurations: ["driving_licence"], person: ADA, sleep: noWait });
    if (good.state !== "ISSUED") expect.fail(`not issued: ${good.state}`);
    note(good);
    const id = good.instances[0]!.id;
    mesh.devIssuer!.setFaults({ misbind: 1 });
    const bad = await refreshCredential(ivy.api, ivy.store, id).then(() => expect.fail("a refresh bound to other keys was accepted"), (e: unknown) => e as WalletClientError);
    mesh.devIssuer!.setFaults({ misbind: 0 });
    expect(bad).to.be.instanceOf(WalletClientError);
    expect(mesh.devIssuer!.received.filter((e) => e.credentialInstanceId === id).map((e) => e.eventType)).to.deep.equal(["PROVISIONING_SUCCESS", "UPDATE_FAILURE"]);
    expect((await listCredentials(ivy.api, ivy.store)).find((c) => c.instanceId === id)).to.include({ status: "ACTIVE", verified: true });
  });

  it("the /wallet page unlinks a credential of a lost device (issue 15): after a fresh sign-in of its own, the wallet server's own UNLINK, recorded; confirmed at another wallet's account, nothing is done", async function () {
    const device = await signedIn(DORA);
    const added = await addCredentials(device.api, device.store, { issuer: issuerId, configurations: ["identity_card"], person: ADA, sleep: noWait });
    if (added.state !== "ISSUED") expect.fail(`not issued: ${added.state}`);
    note(added);
    const id = added.instances[0]!.id;
    const openPage = async (browser: Browserless) => {
      let page = await browser.submit(browser.form(await browser.go(new URL("/wallet", mesh.issuer)), /^\/wallet\/provider$/), [["provider", "dev"]]);
      page = await browser.submit(browser.form(page, /\/login$/), [["email", DORA.email], ["password", DORA.password]]);
      expect(page.body).to.include("<h1>Your credentials</h1>").and.not.include(id);
      return page;
    };
    // Confirmed at Bob's account (another wallet, his own since his first sign-in): refused, nothing changes.
    await signedIn(USERS.bob);
    const rogue = new Browserless();
    const shown = await openPage(rogue);
    let other = await rogue.submit(rogue.form(shown, /^\/wallet\/unlink$/), []);
    other = await rogue.submit(rogue.form(other, /\/login$/), [["email", USERS.bob.email], ["password", USERS.bob.password]]);
    // The provider, whose session in this browser was Dora's, hands the answer back through a self-submitting form.
    if (/document\.forms\[0\]\.submit\(\)/.test(other.body)) other = await rogue.submit(rogue.form(other), []);
    expect(other.status).to.equal(403);
    expect(other.body).to.include("Not your wallet&#39;s account");
    expect(await issuerStatus(added.sessionId, id)()).to.equal("ACTIVE");

    const browser = new Browserless();
    const page = await openPage(browser);
    expect(page.body).to.include("Unlink, confirming with");
    let done = await browser.submit(browser.form(page, /^\/wallet\/unlink$/), []);
    expect(done.body, "the provider asks again: prompt=login").to.match(/name="password"/);
    done = await browser.submit(browser.form(done, /\/login$/), [["email", DORA.email], ["password", DORA.password]]);
    expect(done.body).to.include("<h1>Credential unlinked</h1>");
    expect(mesh.devIssuer!.instanceStatus(added.sessionId, id)).to.deep.equal({ status: "UNLINKED", reason: "NO_CLIENT (the wallet server's own UNLINK)" });
    expect((await listCredentials(device.api, device.store)).find((c) => c.instanceId === id)?.status).to.equal("UNLINKED");
    // The page offers no unlink for it any more.
    expect((await openPage(new Browserless())).body).to.not.include("Unlink, confirming with");
  });

  it("display data and revocation (issue 15): DISPLAY_DATA_UPDATED reaches the wallet server and Bob's refresh takes the new display; the issuer revokes: a verifier sees REVOKED in its status list, present refuses, and Bob's status call ends the record (CANCELLED, no ciphertext)", async function () {
    const bob = await signedIn(USERS.bob);
    const added = await addCredentials(bob.api, bob.store, { issuer: issuerId, configurations: ["identity_card"], person: ADA, sleep: noWait });
    if (added.state !== "ISSUED") expect.fail(`not issued: ${added.state}`);
    note(added);
    const card = added.instances[0]!;
    const request = { claims: ["age_over_18"], audience: "https://verifier.example", nonce: "n-revoked" };
    const earlier = await presentCredential(bob.api, bob.store, card.id, request);
    const metadata = issuerMetadataSchema.parse(mesh.devIssuer!.metadata);
    const verifier = async (presentation: string) => {
      const verified = await verifySdJwtVc({ presentation, issuerKeys: metadata.jwks as never, expectedIssuer: issuerId, audience: request.audience, nonce: request.nonce });
      return fetchCredentialStatus(verified.status!, { issuer: issuerId, issuerKeys: metadata.jwks as never, now: Math.floor(Date.now() / 1000) });
    };
    expect(await verifier(earlier)).to.equal("VALID");

    const delivered = mesh.devIssuer!.notices.length;
    await mesh.devIssuer!.publishDisplayUpdate(added.sessionId, card.id);
    expect(mesh.devIssuer!.notices.slice(delivered)).to.deep.equal([{ path: "/event/notify", sessionId: added.sessionId, delivered: true }]);
    expect((await listCredentials(bob.api, bob.store)).find((c) => c.instanceId === card.id)?.display).to.equal("Identity card (development)");
    expect(await refreshCredential(bob.api, bob.store, card.id)).to.deep.include({ state: "READY", version: "1", displayName: "Identity card (development), design 2" });
    expect((await listCredentials(bob.api, bob.store)).find((c) => c.instanceId === card.id)?.display).to.equal("Identity card (development), design 2");

    mesh.devIssuer!.revoke(added.sessionId, card.id);
    expect(await verifier(earlier)).to.equal("REVOKED");
    const refused = await presentCredential(bob.api, bob.store, card.id, request).then(() => expect.fail("a revoked credential was presented"), (e: unknown) => e as WalletClientError);
    expect(refused).to.be.instanceOf(WalletClientError);
    expect(refused.message).to.include("REVOKED in its issuer's status list");
    expect(await credentialStatus(bob.api, card.id)).to.include({ status: "CANCELLED", issuerStatus: "CANCELLED" });
    const record = (await bob.api.call("GET", "/wallet/api/credentials", z.looseObject({ credentials: z.array(z.looseObject({ credentialInstanceId: z.string(), status: z.string(), credentials: z.unknown().optional() })) })))
      .credentials.find((c) => c.credentialInstanceId === card.id)!;
    expect(record.status).to.equal("CANCELLED");
    expect(record.credentials, "an ended record keeps no ciphertext").to.equal(undefined);
    // A revoked credential needs no unlink to be deleted.
    expect(await deleteCredential(bob.api, bob.store, card.id)).to.deep.equal({ instanceId: card.id, unlinked: false });
  });

  it("device transfer (issue 15): Alice's new device takes over her old device's session: the issuer approves it without her details, the new device's credentials are bound to its own keys, and the old device's are unlinked, signed by the new session's key; a rogue Orchestration can unlink nothing by naming a transfer", async function () {
    const old = await signedIn(USERS.alice);
    const before = await addCredentials(old.api, old.store, { issuer: issuerId, configurations: ["identity_card", "driving_licence"], person: ADA, presentmentKeys: 1, sleep: noWait });
    if (before.state !== "ISSUED") expect.fail(`not issued: ${before.state}`);
    note(before);
    const request = { claims: ["age_over_18"], audience: "https://verifier.example", nonce: "n-transfer" };
    const metadata = issuerMetadataSchema.parse(mesh.devIssuer!.metadata);
    const verifier = async (presentation: string) => {
      const verified = await verifySdJwtVc({ presentation, issuerKeys: metadata.jwks as never, expectedIssuer: issuerId, audience: request.audience, nonce: request.nonce });
      return { verified, status: await fetchCredentialStatus(verified.status!, { issuer: issuerId, issuerKeys: metadata.jwks as never, now: Math.floor(Date.now() / 1000) }) };
    };
    const oldCard = before.instances.find((i) => i.configuration === "identity_card")!;
    const earlier = await presentCredential(old.api, old.store, oldCard.id, request);

    // A rogue Orchestration naming a session as a transfer of Alice's old one: not one the issuer approved as such.
    const rogue = orchestrationIssuerClient();
    const invented = (await es256Pair()).privateJwk;
    const forged = await signStatement("action", { audience: issuerId, sessionId: before.sessionId, credentialInstanceId: oldCard.id }, { action: "UNLINK" }, invented);
    const refused = await rogue.post("/credential/manage", {
      sessionId: before.sessionId, credentialInstanceId: oldCard.id, action: "UNLINK",
      extensions: { [CLIENT_ACTION_EXTENSION]: forged, [TRANSFER_SESSION_EXTENSION]: issued.sessionId },
    }, z.unknown()).then(() => expect.fail("the issuer took an unlink naming a session that is no transfer"), (e: unknown) => (e as ProblemError).problem);
    expect(refused).to.include({ status: 422, type: S2S_INVALID_CLIENT_AUTHENTICATION });
    expect(await issuerStatus(before.sessionId, oldCard.id)()).to.equal("ACTIVE");

    const fresh = await signedIn(USERS.alice);
    // A rogue Token making the transfer session take over another session than the one asked: refused, nothing written.
    mesh.control({ token: { beginS2sSession: "transfer-elsewhere" } });
    const bent = await transferCredentials(fresh.api, fresh.store, before.sessionId, { sleep: noWait }).then(() => expect.fail("a bent transfer session was written"), (e: unknown) => e as WalletClientError);
    expect(bent.details.httpStatus).to.equal(502);
    mesh.control({});
    // The old device cannot transfer to itself, and the new one names a session of Alice's only.
    expect((await transferCredentials(old.api, old.store, before.sessionId).then(() => expect.fail("transferred to itself"), (e: unknown) => e as Error)).message).to.match(/this device holds the session/);
    expect((await transferCredentials(fresh.api, fresh.store, randomUUID()).then(() => expect.fail("transferred a session the wallet does not hold"), (e: unknown) => e as Error)).message).to.match(/holds no session/);
    const moved = await transferCredentials(fresh.api, fresh.store, before.sessionId, { presentmentKeys: 2, sleep: noWait });
    if (moved.state !== "ISSUED") expect.fail(`not issued: ${moved.state}`);
    note(moved);
    expect(moved.sessionId).to.not.equal(before.sessionId);
    expect(moved.instances.map((i) => [i.configuration, i.count]).sort()).to.deep.equal([["driving_licence", 2], ["identity_card", 2]]);
    expect(moved.unlinked.map((u) => [u.instanceId, u.status]).sort()).to.deep.equal(before.instances.map((i) => [i.id, "UNLINKED"]).sort());

    // The new device's credentials are bound to its own keys; the old device's are unlinked, everywhere.
    const newCard = moved.instances.find((i) => i.configuration === "identity_card")!;
    const { verified, status } = await verifier(await presentCredential(fresh.api, fresh.store, newCard.id, request));
    const pk = (await fresh.store.getKey(`pk.${newCard.id}.0`))!;
    expect(await jwkThumbprint(verified.holderKey)).to.equal(await jwkThumbprint({ kty: pk.kty, crv: pk.crv, x: pk.x, y: pk.y }));
    expect(status).to.equal("VALID");
    expect((await verifier(earlier)).status, "the old device's credential, as a verifier sees it").to.equal("REVOKED");
    for (const i of before.instances) {
      expect(await issuerStatus(before.sessionId, i.id)()).to.equal("UNLINKED");
      const reason = (await rogue.post("/credential/status", { sessionId: before.sessionId, credentialInstanceId: i.id }, credentialStatusResponseSchema)).body.lastStatusChangeReason;
      expect(reason).to.equal("transferred to another device");
    }
    const listed = await listCredentials(fresh.api, fresh.store);
    expect(listed.filter((c) => c.sessionId === before.sessionId).map((c) => c.status)).to.deep.equal(["UNLINKED", "UNLINKED"]);
    expect(listed.filter((c) => c.sessionId === moved.sessionId).map((c) => [c.status, c.onThisDevice])).to.deep.equal([["ACTIVE", true], ["ACTIVE", true]]);
    const gone = await presentCredential(old.api, old.store, oldCard.id, request).then(() => expect.fail("the old device presented an unlinked credential"), (e: unknown) => e as WalletClientError);
    expect(gone).to.be.instanceOf(WalletClientError);
    // Nothing is left to transfer from the old session.
    expect((await transferCredentials(fresh.api, fresh.store, before.sessionId).then(() => expect.fail("transferred twice"), (e: unknown) => e as Error)).message).to.match(/nothing to transfer/);
  });

  it("a dump of the database shows no issuer-side identifier, credential type name or claim, in any encoding", async function () {
    const db = new pg.Client({ connectionString: mesh.postgres!.url });
    await db.connect();
    try {
      const { haystack } = await dumpDatabase(mesh.postgres!.url, db);
      const sensitive: Record<string, string> = {
        "the issuer id": issuerId,
        "the issuer's host": new URL(issuerId).host,
        "a credential configuration": "identity_card",
        "another credential configuration": "driving_licence",
        "a credential type (vct)": "urn:hello-mesh:dev:identity-card",
        "a family name": "Lovelace",
        "a birthdate": "1990-12-10",
        "a document number": "D-1001",
        "the proof of address": "utility bill",
      };
      for (const id of seen.sessions) sensitive[`the sessionId ${id}`] = id;
      for (const id of seen.verifications) sensitive[`the verificationId ${id}`] = id;
      for (const id of seen.instances) sensitive[`the credentialInstanceId ${id}`] = id;
      const found = Object.entries(sensitive).flatMap(([what, value]) => findValue(haystack, value).map((encoding) => `${what} (${encoding})`));
      expect(found, "found in the dump").to.deep.equal([]);
      // The search is not vacuous: the records are there.
      const { rows } = await db.query<{ kind: string; n: string }>("SELECT kind, count(*) AS n FROM records GROUP BY kind");
      const kinds = Object.fromEntries(rows.map((r) => [r.kind, Number(r.n)]));
      expect(kinds["s2s-session"]).to.be.at.least(4);
      expect(kinds.credential).to.be.at.least(4);
      expect(kinds.holdings).to.be.at.least(3);
    } finally {
      await db.end();
    }
  });

  it("deletion (issue 15): an unlinked credential's record goes; an active one is unlinked at the issuer first; another client instance deletes nothing", async function () {
    const [card, licence] = ["identity_card", "driving_licence"].map((c) => issued.instances.find((i) => i.configuration === c)!);
    const db = new pg.Client({ connectionString: mesh.postgres!.url });
    await db.connect();
    const credentialRows = async () => Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM records WHERE kind = 'credential'")).rows[0]!.n);
    try {
      const before = await credentialRows();
      // Another client instance of Alice's, straight to the wallet API (its own client would
      // stop before, lacking the keys): the record is this instance's, so 404.
      const second = await signedIn(USERS.alice);
      const refused = await second.api.call("POST", "/wallet/api/credential/delete", z.unknown(), { issuer: issuerId, sessionId: issued.sessionId, credentialInstanceId: licence!.id })
        .then(() => expect.fail("another client instance deleted Alice's credential"), (e: unknown) => e as WalletApiError);
      expect(refused.status).to.equal(404);
      // Nor can Alice's own client delete a credential that has not ended, past its client's unlink.
      const active = await alice.api.call("POST", "/wallet/api/credential/delete", z.unknown(), { issuer: issuerId, sessionId: issued.sessionId, credentialInstanceId: card!.id })
        .then(() => expect.fail("an active credential was deleted without the issuer being told"), (e: unknown) => e as WalletApiError);
      expect(active.status).to.equal(409);
      expect(await credentialRows()).to.equal(before);

      expect(await deleteCredential(alice.api, alice.store, licence!.id)).to.deep.equal({ instanceId: licence!.id, unlinked: false });
      expect(await credentialRows()).to.equal(before - 1);
      expect((await listCredentials(alice.api, alice.store)).map((c) => c.instanceId)).to.not.include(licence!.id);

      const cardAtIssuer = issuerStatus(issued.sessionId, card!.id);
      expect(await deleteCredential(alice.api, alice.store, card!.id, "no longer needed")).to.deep.equal({ instanceId: card!.id, unlinked: true });
      expect(await cardAtIssuer()).to.equal("UNLINKED");
      expect(await credentialRows()).to.equal(before - 2);
      expect((await listCredentials(alice.api, alice.store)).map((c) => c.instanceId)).to.not.include(card!.id);
      expect(await alice.store.listKeys(`pk.${card!.id}.`)).to.deep.equal([]);
    } finally {
      await db.end();
    }
  });

  it("the whole wallet deleted from the account page (issue 15): each credential is unlinked at its issuer as the wallet server's own UNLINK (NO_CLIENT), and every credential, S2S session and holdings record of the user goes", async function () {
    const { sessionId, instanceIds } = carols!;
    expect(instanceIds).to.have.length(1);
    const atIssuer = issuerStatus(sessionId, instanceIds[0]!);
    expect(await atIssuer()).to.equal("ACTIVE");
    const db = new pg.Client({ connectionString: mesh.postgres!.url });
    await db.connect();
    const kinds = async () => Object.fromEntries((await db.query<{ kind: string; n: string }>("SELECT kind, count(*) AS n FROM records GROUP BY kind")).rows.map((r) => [r.kind, Number(r.n)]));
    try {
      const before = await kinds();
      // A rogue Token whose deletion record leaves one credential out: refused before the commit point, nothing deleted.
      mesh.control({ token: { authorizeDelete: "hide-credential" } });
      const rogue = new Browserless();
      const { page: rogueStart } = await browseToAccount(mesh.issuer, USERS.carol, rogue);
      let bent = await rogue.submit(rogue.form(rogueStart, /^\/account\/delete$/), [["provider", "dev"]]);
      bent = await rogue.submit(rogue.form(bent, /\/login$/), [["email", USERS.carol.email], ["password", USERS.carol.password]]);
      expect(bent.status).to.equal(502);
      expect(bent.body).to.not.include("Your wallet is deleted");
      mesh.control({});
      expect(await kinds()).to.deep.equal(before);
      expect(await atIssuer()).to.equal("ACTIVE");
      const browser = new Browserless();
      const { page } = await browseToAccount(mesh.issuer, USERS.carol, browser);
      let done = await browser.submit(browser.form(page, /^\/account\/delete$/), [["provider", "dev"]]);
      // The provider asks once more, for the delete itself.
      done = await browser.submit(browser.form(done, /\/login$/), [["email", USERS.carol.email], ["password", USERS.carol.password]]);
      expect(done.body).to.include("Your wallet is deleted");

      // The wallet server's UNLINK, queued by the delete, is sent by its background work.
      let told = "ACTIVE";
      await until(async () => (told = await atIssuer()) === "UNLINKED", "the deleted wallet's UNLINK reached the issuer");
      expect(told).to.equal("UNLINKED");
      const reason = (await orchestrationIssuerClient().post("/credential/status", { sessionId, credentialInstanceId: instanceIds[0] }, credentialStatusResponseSchema)).body.lastStatusChangeReason;
      expect(reason).to.match(/wallet server's own UNLINK/);
      const after = await kinds();
      expect({ credential: before.credential! - after.credential!, session: before["s2s-session"]! - (after["s2s-session"] ?? 0), holdings: before.holdings! - (after.holdings ?? 0) })
        .to.deep.equal({ credential: 1, session: 1, holdings: 1 });
    } finally {
      await db.end();
    }
  });
});
