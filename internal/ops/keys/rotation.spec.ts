// Issue 5's acceptance test for signing keys: every key type of Token and Storage is
// rotated through `hello keys`' functions while logins run without pause through the
// front door (four `hello serve` processes, a real upstream OP, apps verifying ID Tokens
// with openid-client). No login fails; what was signed before a rotation still verifies
// until it expires; records outlive their key's retirement; and the attacker's side:
// unpublished, pruned and retired-then-reused keys are refused.

import { readFileSync } from "node:fs";
import { expect } from "chai";
import * as oidc from "openid-client";
import { type Interceptor, ConnectError, type Client, createClient } from "@connectrpc/connect";
import { type JSONWebKeySet, createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { type ProtocolMesh, APPS, USERS, appRequest, appSecret, startProtocolMesh } from "../../../test/support/protocol-mesh.js";
import { Browserless } from "../../../test/support/browserless.js";
import { DEFAULT_DEV_USERS, type DevUser } from "../../dev/devop/dev-op.js";
import { readBundle } from "../../../mesh/bundle.js";
import { createMeshTransport } from "../../../mesh/client.js";
import type { Component } from "../../protocol/identity.js";
import { pkiPaths } from "../pki/layout.js";
import { TokenService } from "../../gen/hello/token/v1/token_service_pb.js";
import { EncryptionService } from "../../gen/hello/encryption/v1/encryption_service_pb.js";
import { LoginDriver, loginContext } from "../../components/orchestration/login-driver.js";
import { sign } from "../../protocol/jws.js";
import { subjectHash } from "../../protocol/lookup-key.js";
import { ACCESS_TOKEN } from "../../protocol/tokens.js";
import {
  type KeyPurpose,
  type SigningKey,
  VerificationKeys,
  generateSigningKey,
  privateJwk,
} from "../../protocol/signing-keys.js";
import { checkServedKeys } from "../verify/served-keys.js";
import { type KeyLocation, type SigningComponent, keyStatus, promoteKeys, pruneKeys, rotateKeys } from "./rotation.js";
import { writeFileAtomic } from "../../fs/write-file-atomic.js";
import { STORAGE_KEYS, TOKEN_KEYS, loadSigningKeys } from "../../protocol/key-files.js";
import { errorOf, rejectionOf } from "../../../test/support/refusal.js";
import { authorizationRequest } from "../../../test/support/app-client.js";

type App = "a" | "es" | "ed";
const APPS_BY_ALG: readonly App[] = ["a", "es", "ed"]; // RS256, ES256, EdDSA ID Tokens

/** Brand-new subjects at the upstream OP: each first login makes a user (Error Tokens, receipts). */
const NEWCOMERS: DevUser[] = Array.from({ length: 400 }, (_, i) => ({
  sub: `rotation-${i}`,
  email: `rotation-${i}@example.com`,
  email_verified: true,
  name: `Rotation ${i}`,
  password: `rotation-${i}`,
}));

/** Longer than every watcher's debounce (bundles 200 ms, key files 100 ms), with room for a busy machine. */
const PROPAGATION_MS = 3_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
async function until<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await check();
    if (result) return result;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(200);
  }
}

/**
 * What the first test rotates, one purpose after another: each that Token and then Storage
 * signs with (key-files.ts, so a purpose added there is rotated here too), but userinfo,
 * which signs only /userinfo answers that no login here asks for.
 */
const ROTATED: ReadonlyArray<{ component: SigningComponent; purpose: KeyPurpose }> = [
  ...TOKEN_KEYS.map(({ purpose }) => ({ component: "token" as const, purpose })),
  ...STORAGE_KEYS.map(({ purpose }) => ({ component: "storage" as const, purpose })),
].filter((step, i, all) => step.purpose !== "userinfo" && all.findIndex((s) => s.purpose === step.purpose) === i);

const kidOf = (jws: string) => decodeProtectedHeader(jws).kid!;
const purposeOf = (kid: string) => kid.split(".", 1)[0] as KeyPurpose;

describe("signing-key rotation without downtime (hello keys, docs/key-rotation.md)", function () {
  this.timeout(600_000);
  let mesh: ProtocolMesh;
  let newcomer = 0;
  const nextNewcomer = () => NEWCOMERS[newcomer++] ?? USERS.alice;
  /** A user made, and an ID Token signed, before any rotation. */
  let veteran: DevUser;
  let veteranIdToken: string;

  before(async () => (mesh = await startProtocolMesh({ database: "pglite", users: [...DEFAULT_DEV_USERS, ...NEWCOMERS] })));
  after(async () => mesh?.close());

  const location = (component: SigningComponent): KeyLocation => {
    const config = mesh.deployment.configs[component] as { keys: { signing: string }; bundles: string };
    return { component, keyFile: config.keys.signing, bundles: config.bundles };
  };
  const bundleKeys = (component: "token" | "storage") => new VerificationKeys(readBundle(location("token").bundles, component).jwks.keys);
  const privateKeys = (component: SigningComponent): SigningKey[] => loadSigningKeys(component, location(component).keyFile, []);
  const servedJwks = async () => createLocalJWKSet((await (await fetch(`${mesh.issuer}/jwks`)).json()) as JSONWebKeySet);

  // --- an app's login through the front door --------------------------------------------

  /** A person logs in to `app` through the front door; the app redeems the code and validates the ID Token. */
  async function appLogin(app: App, user: DevUser): Promise<string> {
    const client = APPS[app]!;
    // A fresh discovery per login: an app whose JWKS cache is no older than the max-age.
    const config = await oidc.discovery(new URL(mesh.issuer), client.client_id, undefined, oidc.ClientSecretBasic(appSecret(client.client_id)), {
      execute: [oidc.allowInsecureRequests, oidc.enableNonRepudiationChecks],
    });
    const { checks, url } = await authorizationRequest(config, client.redirect_uri);
    const browser = new Browserless();
    const atApp = (u: URL) => u.origin === new URL(client.redirect_uri).origin;
    let page = await browser.go(url, {}, atApp);
    if (!atApp(page.url)) page = await browser.submit(browser.form(page, /\/login$/), [["email", user.email], ["password", user.password]], atApp);
    if (!atApp(page.url) && page.body.includes('name="decision"')) {
      page = await browser.submit(browser.form(page, /^\/consent$/), [["decision", "allow"]], atApp);
    }
    if (!atApp(page.url)) throw new Error(`the login ended at ${page.url.pathname} (HTTP ${page.status}), not at the app`);
    if (page.url.searchParams.has("error")) throw new Error(`the app got error=${page.url.searchParams.get("error")}`);
    const tokens = await oidc.authorizationCodeGrant(config, page.url, checks);
    if (tokens.claims()?.email !== user.email) throw new Error("the ID Token names another user");
    return tokens.id_token!;
  }

  interface Traffic {
    readonly done: Array<{ at: number; app: App; idToken: string }>;
    readonly failures: Array<{ phase: string; error: string }>;
    phase: string;
    stop(): Promise<void>;
  }

  /** `loops` people logging in one after another, each alternating a new user and a returning one. */
  function traffic(loops: number): Traffic {
    let running = true;
    const state: Omit<Traffic, "stop"> = { done: [], failures: [], phase: "before any rotation" };
    const loop = async (n: number) => {
      const mine: DevUser[] = [];
      for (let i = 0; running; i++) {
        const app = APPS_BY_ALG[(n + i) % APPS_BY_ALG.length]!;
        const returning = i % 2 === 1 && mine.length > 0;
        const user = returning ? mine[i % mine.length]! : nextNewcomer();
        const phase = state.phase;
        try {
          const idToken = await appLogin(app, user);
          if (!returning) mine.push(user);
          state.done.push({ at: Date.now(), app, idToken });
        } catch (error) {
          state.failures.push({ phase, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
        }
      }
    };
    const all = Promise.all(Array.from({ length: loops }, (_, n) => loop(n)));
    return Object.assign(state, {
      async stop() {
        running = false;
        await all;
      },
    });
  }

  // --- a witness: a login at protocol level that shows which key signed what ----------

  function witnessClients(seen: string[]) {
    const capture: Interceptor = (next) => async (req) => {
      const res = await next(req);
      if (!res.stream) collectJws(res.message, seen);
      return res;
    };
    const p = pkiPaths(mesh.deployment.certs, "orchestration");
    const credentials = { certPem: readFileSync(p.cert, "utf8"), keyPem: readFileSync(p.key, "utf8") };
    const transport = (target: Component) =>
      createMeshTransport({
        target,
        baseUrl: `https://127.0.0.1:${mesh.deployment.configs[target].listen.port}`,
        credentials,
        trust: mesh.trust,
        interceptors: [capture],
      });
    return { token: createClient(TokenService, transport("token")), encryption: createClient(EncryptionService, transport("encryption")) };
  }

  /**
   * A new user's login driven as Orchestration drives it (records checked against Token's
   * bundle as it is on disk now), returning the kid of everything signed on the way.
   */
  async function witness(): Promise<Map<KeyPurpose, Set<string>>> {
    const seen: string[] = [];
    const clients = witnessClients(seen);
    const driver = new LoginDriver({ ...clients, issuer: mesh.issuer, lookupKey: mesh.lookupKey, tokenKeys: () => bundleKeys("token") });
    const request = appRequest("a");
    const started = await driver.start(request, "dev");
    const upstream = await mesh.upstreamLogin(nextNewcomer(), started.upstreamNonce);
    const first = await driver.continue(started.sessionToken, loginContext(request, Date.now()), upstream);
    if (first.kind !== "consent") throw new Error("a new user gets the consent page");
    const done = await driver.consent(first.state, ["email"], true);
    seen.push(done.idToken);
    const keySet = await clients.token.getKeySet({});
    seen.push(keySet.signature.replace("..", ".e30."));
    const kids = new Map<KeyPurpose, Set<string>>();
    for (const jws of seen) {
      const kid = kidOf(jws);
      kids.set(purposeOf(kid), (kids.get(purposeOf(kid)) ?? new Set()).add(kid));
    }
    return kids;
  }

  /** An Access Token for a read of Carol's subject record, signed by `key` (by Token, or by a thief). */
  const accessToken = (key: SigningKey, iat = new Date()) =>
    sign(ACCESS_TOKEN, key, { op: "read", kind: "subject", hash: subjectHash(mesh.lookupKey, mesh.devOp.issuer, USERS.carol.sub) }, { now: iat });
  const read = (client: Client<typeof EncryptionService>, token: string) =>
    client.readRecord({ accessToken: token }).then(
      (res) => res.result.case ?? "nothing",
      (error: unknown) => ConnectError.from(error),
    );

  // --- the tests -------------------------------------------------------------------------

  it("rotates every signing key of Token and Storage while logins run: no login fails, and what was signed before still verifies", async function () {
    const before = await witness();
    for (const { purpose } of ROTATED) {
      expect(before.get(purpose), `a login uses a ${purpose} key`).to.have.length.greaterThan(0);
    }
    // A read Access Token and a session minted before any rotation, used after all of them.
    const tokenKeys = privateKeys("token");
    const earlySession = await mesh.token().createSession({ request: { case: "parameters", value: appRequest("a") }, providerId: "dev" });
    const earlyRead = await accessToken(tokenKeys.find((k) => k.purpose === "access" && k.status !== "next")!);

    veteran = nextNewcomer();
    veteranIdToken = await appLogin("a", veteran);

    const logins = traffic(3);
    await until("the apps have their first ID Tokens", async () => APPS_BY_ALG.every((app) => logins.done.some((d) => d.app === app)));

    const earlyIdTokens = new Map<App, string>();
    try {
      for (const { component, purpose } of ROTATED) {
        if (purpose === "id-token") for (const app of APPS_BY_ALG) earlyIdTokens.set(app, logins.done.filter((d) => d.app === app).at(-1)!.idToken);
        logins.phase = `${component} ${purpose}: next published`;
        const added = await rotateKeys(location(component), { purposes: [purpose] });
        expect(added.map((k) => k.status)).to.deep.equal(added.map(() => "next"));
        const newKids = new Set(added.map((k) => k.kid));
        if (purpose === "id-token") {
          // apps can find the new keys before a single ID Token is signed with them
          await until("the front door serves the new ID Token keys", async () => {
            const served = (await (await fetch(`${mesh.issuer}/jwks`)).json()) as { keys: Array<{ kid: string }> };
            return added.every((k) => served.keys.some((s) => s.kid === k.kid));
          });
        }
        await sleep(PROPAGATION_MS);
        // nothing signs with a next key yet
        expect([...((await witness()).get(purpose) ?? [])].filter((kid) => newKids.has(kid))).to.deep.equal([]);

        logins.phase = `${component} ${purpose}: promoted`;
        const promotedAt = Date.now();
        const { promoted, retired } = await promoteKeys(location(component), {
          purposes: [purpose],
          minPublishedSeconds: PROPAGATION_MS / 1000,
          ...(purpose === "id-token" ? { issuer: mesh.issuer } : {}),
        });
        expect(promoted.map((k) => k.kid).sort()).to.deep.equal([...newKids].sort());
        expect(retired).to.have.length(added.length);
        await until(`logins use the new ${purpose} key`, async () => [...((await witness()).get(purpose) ?? [])].some((kid) => newKids.has(kid)));
        if (purpose === "id-token") {
          await until("apps receive ID Tokens from every new key", async () =>
            APPS_BY_ALG.every((app) => logins.done.some((d) => d.app === app && d.at > promotedAt && newKids.has(kidOf(d.idToken)))),
          );
          // ID Tokens signed before the rotation still validate against the JWKS apps see
          for (const [app, idToken] of earlyIdTokens) {
            expect(newKids.has(kidOf(idToken))).to.equal(false);
            const { payload } = await jwtVerify(idToken, await servedJwks(), { issuer: mesh.issuer, audience: APPS[app]!.client_id });
            expect(payload.sub).to.be.a("string");
          }
        }
        // the front door's own logins keep going through the change
        await until("logins complete after the promotion", async () => logins.done.filter((d) => d.at > promotedAt + 500).length >= 3);
      }
    } finally {
      logins.phase = "after every rotation";
      await logins.stop();
    }
    expect(logins.failures, "no login fails during the rotations").to.deep.equal([]);
    expect(logins.done.length).to.be.greaterThan(ROTATED.length * 3);

    // Minted before any rotation, by keys now retired: still good until they expire.
    const upstream = await mesh.upstreamLogin(nextNewcomer(), earlySession.upstreamNonce);
    const continued = await mesh.token().authorizeSubject({ sessionToken: earlySession.sessionToken, opIdToken: upstream.idToken });
    expect(before.get("session")!.has(kidOf(earlySession.sessionToken))).to.equal(true);
    expect(kidOf(continued.sessionToken)).to.not.equal(kidOf(earlySession.sessionToken));
    expect(await read(mesh.encryption(), earlyRead)).to.equal("errorToken");
    // Every key retired, none pruned, each published; the JWKS is still Token's own.
    for (const component of ["token", "storage"] as const) {
      const status = await keyStatus(location(component));
      expect(status.filter((k) => k.status === "retired").length).to.equal(component === "token" ? 7 : 2);
      expect(status.every((k) => k.published)).to.equal(true);
    }
    expect((await checkServedKeys(mesh.issuer, readBundle(location("token").bundles, "token"))).problems).to.deep.equal([]);
  });

  it("a next key's token verifies as soon as the key is published (so promotion never races a peer); an unpublished key's does not", async function () {
    // Decision (docs/key-rotation.md): publication is what makes a key trusted. `next`
    // only tells the signer not to use it yet; a verifier refusing it would turn every
    // promotion into a race against peers reloading the bundle.
    const [next] = await rotateKeys(location("token"), { purposes: ["access"] });
    await sleep(PROPAGATION_MS);
    expect(await read(mesh.encryption(), await accessToken(next!))).to.equal("errorToken");

    // The custodian's key file holds a key it never published: nobody accepts it.
    const unpublished = { ...generateSigningKey("access"), status: "next" as const };
    const file = JSON.parse(readFileSync(location("token").keyFile, "utf8")) as { keys: object[] };
    await writeFileAtomic(location("token").keyFile, JSON.stringify({ keys: [...file.keys, privateJwk(unpublished)] }), { secret: true });
    const refused = await read(mesh.encryption(), await accessToken(unpublished));
    expect(refused).to.be.instanceOf(ConnectError);
    expect((refused as ConnectError).rawMessage).to.equal("the access token is not valid: its key (kid) is not a known access key");
    // promote refuses a key the bundle does not publish (the first next access key is published)
    const promote = await rejectionOf(promoteKeys(location("token"), { purposes: ["access"], minPublishedSeconds: 0 }), "promoting an unpublished key");
    expect((promote as Error).message).to.match(/does not publish the next key access\./);
    await writeFileAtomic(location("token").keyFile, JSON.stringify(file), { secret: true });
    await promoteKeys(location("token"), { purposes: ["access"], minPublishedSeconds: 0 });
  });

  it("prune drops a short-lived key only after its tokens' lifetime, then its tokens are refused, though unexpired; record keys are never pruned", async function () {
    const location_ = location("token");
    const oldAccess = privateKeys("token").find((k) => k.purpose === "access" && (k.status ?? "active") === "active")!;
    const early = await accessToken(oldAccess);
    await rotateKeys(location_, { purposes: ["access"] });
    await sleep(PROPAGATION_MS);
    await promoteKeys(location_, { purposes: ["access"], minPublishedSeconds: 0 });
    await sleep(PROPAGATION_MS);
    expect(await read(mesh.encryption(), early), "retired, not pruned: still verifies").to.equal("errorToken");

    // Too early: the key just retired stays while its tokens may live; record keys always stay.
    const now = await pruneKeys(location_);
    expect(now.pruned.map((k) => k.kid)).to.not.include(oldAccess.kid);
    expect(now.kept.find((k) => k.key.kid === oldAccess.kid)?.reason).to.match(/^its tokens may still be live until /);
    expect(now.kept.map((k) => k.reason)).to.include("record keys are retired, never deleted: stored records still verify");

    // A day later (by the custodian's clock): every short-lived retired key goes, record keys stay.
    const later = new Date(Date.now() + 24 * 3600 * 1000);
    const idTokens: Array<{ app: App; idToken: string }> = [];
    for (const app of APPS_BY_ALG) idTokens.push({ app, idToken: await appLogin(app, USERS.bob) });
    for (const component of ["token", "storage"] as const) {
      const { pruned, kept } = await pruneKeys(location(component), {}, later);
      expect(pruned.length).to.be.greaterThan(0);
      expect(pruned.some((k) => k.purpose === "record")).to.equal(false);
      expect(kept.every((k) => k.key.purpose === "record")).to.equal(true);
    }
    expect(new Set((await keyStatus(location_)).filter((k) => k.status === "retired").map((k) => k.purpose))).to.deep.equal(new Set(["record"]));

    // The attacker's side: a token of a pruned key is refused by every verifier, though unexpired.
    const refused = await until("Encryption has dropped the pruned key", async () => {
      const result = await read(mesh.encryption(), early);
      return result instanceof ConnectError ? result : undefined;
    });
    expect(refused.rawMessage).to.equal("the access token is not valid: its key (kid) is not a known access key");
    const atStorage = await until("Storage has dropped the pruned key", async () => {
      return errorOf(mesh.storage().readRecord({ accessToken: early }));
    });
    expect(atStorage.rawMessage).to.equal("the access token is not valid: its key (kid) is not a known access key");
    // an ID Token of a pruned key no longer validates against the JWKS apps see
    const stale = await rejectionOf(jwtVerify(veteranIdToken, await servedJwks(), { issuer: mesh.issuer, audience: "app-a" }), "an ID Token of a pruned key");
    expect((stale as Error).name).to.equal("JWKSNoMatchingKey");

    // ID Tokens of the current keys validate; records signed by the first record key
    // (retired, never pruned) still do, so a user made before every rotation logs in.
    for (const { app, idToken } of idTokens) {
      await jwtVerify(idToken, await servedJwks(), { issuer: mesh.issuer, audience: APPS[app]!.client_id });
    }
    await appLogin("es", veteran);
  });

  it("a retired key verifies nothing signed after its retirement: a stolen old key mints nothing new", async function () {
    const stolen = privateKeys("token").find((k) => k.purpose === "access" && (k.status ?? "active") === "active")!;
    // The custodian rotated this key out an hour ago (a backdated rotation, by the test's clock).
    const hourAgo = Date.now() - 3600 * 1000;
    await rotateKeys(location("token"), { purposes: ["access"] }, new Date(hourAgo - 600_000));
    await promoteKeys(location("token"), { purposes: ["access"], now: new Date(hourAgo) });
    await sleep(PROPAGATION_MS);

    const forged = await read(mesh.encryption(), await accessToken(stolen));
    expect((forged as ConnectError).rawMessage).to.equal("the access token is not valid: it was signed after its key was retired");
    // backdating the token to before the retirement makes it expired instead
    const backdated = await read(mesh.encryption(), await accessToken(stolen, new Date(hourAgo - 10_000)));
    expect((backdated as ConnectError).rawMessage).to.equal("the access token is not valid: it has expired");
    // the honest twin: the key now active signs, and that verifies
    const active = privateKeys("token").find((k) => k.purpose === "access" && (k.status ?? "active") === "active")!;
    expect(await read(mesh.encryption(), await accessToken(active))).to.equal("errorToken");
    await appLogin("ed", USERS.bob);
  });
});

/** Every compact JWS in a response message (strings of three base64url parts). */
function collectJws(value: unknown, into: string[]): void {
  if (typeof value === "string") {
    if (/^[\w-]+\.[\w-]+\.[\w-]+$/.test(value) && value.startsWith("eyJ")) into.push(value);
  } else if (Array.isArray(value)) {
    for (const item of value) collectJws(item, into);
  } else if (value && typeof value === "object" && !(value instanceof Uint8Array)) {
    for (const item of Object.values(value)) collectJws(item, into);
  }
}
