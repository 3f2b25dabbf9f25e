// docs/design.md §5, played by a compromised Token: the real Token (its handlers, its keys)
// with a malicious twist (test/support/twisted/rogue-token.ts), inside the
// four-process mesh, with the real Orchestration and its front door, and an app
// (openid-client) at the other end. Orchestration must refuse each attack before any ID
// Token reaches the app, say why in its log, and the same login with an honest Token
// (the honest twin) must succeed. After the rogue phase, the honest system never hands
// one user another's `sub`.

import { expect } from "chai";
import * as oidc from "openid-client";
import type { ChildProcess } from "node:child_process";
import { type ProtocolMesh, USERS, browseToApp, startProtocolMesh } from "../support/protocol-mesh.js";
import { type App, loginAtFrontDoor, prepareAuthorization } from "../support/app-client.js";
import { DEFAULT_DEV_USERS, type DevUser } from "../../internal/dev/devop/dev-op.js";
import type { Page } from "../support/browserless.js";

/** Two more accounts at the development OP, who first log in during the rogue phase. */
const MALLORY: DevUser = { sub: "mallory-0004", email: "mallory@example.org", email_verified: true, name: "Mallory Example", password: "mallory" };
const DAVE: DevUser = { sub: "dave-0005", email: "dave@example.org", email_verified: false, name: "Dave Unverified", password: "dave" };

describe("a rogue Token cannot log anyone in as someone else (docs/design.md §5; issue 11, items 1 and 2)", function () {
  this.timeout(240_000);
  let mesh: ProtocolMesh;
  /** Orchestration's log lines (JSON) that report a peer caught misbehaving, as its operators read them. */
  const violations: Array<Record<string, unknown>> = [];
  let logged: () => void = () => {};

  const capture = (component: string, child: ChildProcess) => {
    if (component !== "orchestration") return;
    let partial = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      const lines = (partial + chunk.toString("utf8")).split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue; // not a log line
        }
        if ((entry.err as { type?: string } | undefined)?.type === "ProtocolViolation") {
          violations.push(entry);
          logged();
        }
      }
    });
  };

  /** A whole login at the front door as an app and a person do it: the page where it ended, and the tokens if it reached the app. */
  const login = (app: App, user: DevUser) => loginAtFrontDoor(mesh.issuer, app, user);

  /** The login ended at hello-mesh's error page, nothing went to the app, and Orchestration logged why. */
  async function expectRefused(attempt: Promise<{ page: Page; tokens?: unknown }>, reason: RegExp) {
    const before = violations.length;
    // The log line may come after the page: each new one wakes this up.
    const reported = new Promise<void>((resolve) => {
      logged = () => violations.length > before && resolve();
    });
    const result = await attempt;
    expect(result.tokens, "no ID Token reaches the app").to.equal(undefined);
    expect(result.page.status, "a peer's fault, not the user's").to.equal(502);
    expect(result.page.body).to.include("Sign-in failed").and.include("the problem is on hello-mesh&#39;s side, not yours");
    expect(result.page.url.origin, "the browser stays at hello-mesh").to.equal(new URL(mesh.issuer).origin);
    await reported;
    expect(violations.length, "one violation logged for one login").to.equal(before + 1);
    const entry = violations.at(-1)!;
    expect((entry.err as { message?: string }).message, "Orchestration's log says why").to.match(reason);
    expect(entry.level, "at level error").to.equal("error");
  }

  const subOf = (result: { tokens?: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers }) => {
    expect(result.tokens, "the login reached the app").to.not.equal(undefined);
    return result.tokens!.claims()!.sub;
  };

  const subs: Record<string, string> = {};

  before(async function () {
    mesh = await startProtocolMesh({
      database: "pglite",
      users: [...DEFAULT_DEV_USERS, MALLORY, DAVE],
      twisted: { rogue: ["token"] },
      processes: { onSpawn: capture },
    });
    // Honest beginnings: Alice and Bob use app a, so the rogue has seen both in MintIdToken.
    subs.alice = subOf(await login("a", USERS.alice));
    subs.bob = subOf(await login("a", USERS.bob));
    expect(subs.alice).to.not.equal(subs.bob);
  });
  after(async () => mesh?.close());
  afterEach(() => mesh.control({}));

  describe("item 1: Orchestration checks every ID Token and userinfo answer Token mints", function () {
    it("Bob's login with Alice's sub and claims (Token sees every directed id) is refused; the honest twin logs Bob in as Bob", async function () {
      mesh.control({ token: { mintIdToken: "steal-sub" } });
      await expectRefused(login("a", USERS.bob), /^Token's ID Token does not match what Orchestration verified: /);
      mesh.control({});
      const honest = await login("a", USERS.bob);
      expect(subOf(honest)).to.equal(subs.bob);
      expect(honest.tokens!.claims()!.email).to.equal(USERS.bob.email);
    });

    const twists: Array<[string, RegExp]> = [
      ["extra-claim", /ID Token .*it carries a claim the release does not list/],
      ["changed-claim", /ID Token .*its email is not the wallet's/],
      ["wrong-nonce", /ID Token .*its nonce is not the app's/],
      ["wrong-aud", /ID Token .*its aud is not the app/],
      ["two-aud", /ID Token .*its aud is not the app/],
      ["wrong-azp", /ID Token .*its azp is not the app/],
      ["wrong-iss", /ID Token .*its iss is not hello-mesh's issuer/],
      ["long-exp", /ID Token .*its exp is not within 600 s of its iat/],
      ["old-iat", /ID Token .*its iat is not now/],
      ["old-auth-time", /ID Token .*(its auth_time is not the provider's|it carries a claim the release does not list \(auth_time\))/],
      ["typ", /ID Token .*its typ header is not JWT/],
      ["record-key", /^Token's ID Token is not valid: its key \(kid\) is not a known id-token key/],
      ["userinfo-key", /^Token's ID Token is not valid: its key \(kid\) is not a known id-token key/],
      ["alg-none", /^Token's ID Token is not valid: its key \(kid\) is not a known id-token key/],
      ["userinfo-sub", /^Token's userinfo does not match .*its sub is not the verified release's directed id/],
      ["userinfo-extra", /^Token's userinfo does not match .*it carries a claim the release does not list/],
      ["userinfo-jwt-extra", /^Token's signed userinfo does not match .*it carries a claim the release does not list/],
      ["userinfo-jwt-as-id-token", /^Token's signed userinfo is not valid: its key \(kid\) is not a known userinfo key/],
      ["userinfo-jwt-no-exp", /^Token's signed userinfo does not match .*its iat and exp are not whole seconds/],
    ];
    for (const [twist, reason] of twists) {
      it(`an answer bent one way (${twist}) is refused before it leaves`, async function () {
        mesh.control({ token: { mintIdToken: twist } });
        await expectRefused(login("a", USERS.alice), reason);
      });
    }

    it("the honest twin of every bent answer: the same login succeeds, and openid-client accepts the ID Token and userinfo", async function () {
      const honest = await login("a", USERS.alice);
      expect(subOf(honest)).to.equal(subs.alice);
      const info = await oidc.fetchUserInfo(honest.config, honest.tokens!.access_token, subs.alice!);
      expect(info.email).to.equal(USERS.alice.email);
    });

    it("a new wallet with a claim the provider never said (email_verified: true) is refused before anything is written; the honest twin stores what the provider said", async function () {
      mesh.control({ token: { createUser: "verified-email" } });
      await expectRefused(login("a", DAVE), /the new wallet's claims are not the ones the provider's ID Token carries/);
      mesh.control({});
      // Nothing was written: Dave is still a new user (consent page), and his wallet says what the OP said.
      const { config, checks, url } = await prepareAuthorization(mesh.issuer, "a");
      const { page, consented } = await browseToApp(url, "a", DAVE);
      expect(consented, "a new user sees the consent page").to.equal(true);
      const tokens = await oidc.authorizationCodeGrant(config, page.url, checks);
      expect(tokens.claims()!.email_verified).to.equal(false);
    });
  });

  describe("item 2: a directed identifier belongs to one user per app, for good", function () {
    it("a new user's release with Alice's directed id is refused at the reservation (Alice's is held); the twins: Mallory gets her own, Alice keeps hers", async function () {
      mesh.control({ token: { createRelease: "steal-directed-id" } });
      await expectRefused(login("a", MALLORY), /Token's new directed id is already reserved/);
      mesh.control({});
      const mallory = subOf(await login("a", MALLORY));
      expect(mallory).to.not.be.oneOf([subs.alice, subs.bob]);
      expect(subOf(await login("a", USERS.alice))).to.equal(subs.alice);
      expect(subOf(await login("a", MALLORY))).to.equal(mallory);
    });

    it("a release that does not say its id is reserved, or a reservation of another id, is refused", async function () {
      mesh.control({ token: { createRelease: "unreserved" } });
      await expectRefused(login("b", USERS.bob), /the new release record does not say its directed id is reserved/);
      mesh.control({ token: { createRelease: "fresh-reservation" } });
      await expectRefused(login("b", USERS.bob), /Token's reservation is not of this directed id for this user and app/);
      mesh.control({});
      const bobAtB = subOf(await login("b", USERS.bob));
      expect(bobAtB).to.not.equal(subs.bob);
      expect(subOf(await login("b", USERS.bob))).to.equal(bobAtB);
    });

    it("after the rogue phase, every user still has their own sub at each app", async function () {
      const again = { alice: subOf(await login("a", USERS.alice)), bob: subOf(await login("a", USERS.bob)), mallory: subOf(await login("a", MALLORY)) };
      expect(again.alice).to.equal(subs.alice);
      expect(again.bob).to.equal(subs.bob);
      expect(new Set(Object.values(again)).size).to.equal(3);
    });
  });
});
