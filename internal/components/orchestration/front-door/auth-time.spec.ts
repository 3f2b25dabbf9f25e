// auth_time, max_age and prompt=login mean what apps think (OIDC Core §2, §3.1.2.1;
// issue 11, item 5). The ID Token's auth_time is the provider's, copied from the OP ID
// Token Token verified; when the app sent max_age or prompt=login, a provider's
// authentication that is absent, too old, or older than the login is login_required.
//
// The development OP is honest and authenticates afresh, so the provider's
// authentication is made old by moving hello-mesh's clock instead (the four components
// run twisted, test/support/twisted): 50 s ahead, which is within the minute a
// provider's clock may be off, so the OP ID Token itself still passes.

import { expect } from "chai";
import * as oidc from "openid-client";
import { type ProtocolMesh, USERS, browseToApp, startProtocolMesh } from "../../../../test/support/protocol-mesh.js";
import { prepareAuthorization } from "../../../../test/support/app-client.js";
import { AUTH_TIME_SKEW_SECONDS, authTimeProblem } from "../../../protocol/auth-time.js";

const AHEAD_MS = 50_000;

describe("auth_time, max_age and prompt=login (issue 11, item 5)", function () {
  this.timeout(120_000);

  describe("the rule (protocol/auth-time.ts), which Token and Orchestration both apply", function () {
    const started = Date.UTC(2026, 11, 6, 12, 0, 0);
    const at = (seconds: number) => new Date(started + seconds * 1000);
    const t0 = started / 1000;

    it("no demand: any auth_time, or none, is fine; only one from the future is refused", function () {
      expect(authTimeProblem(undefined, { started }, at(10))).to.equal(undefined);
      expect(authTimeProblem(t0 - 86_400, { started }, at(10))).to.equal(undefined);
      expect(authTimeProblem(t0 + 10 + AUTH_TIME_SKEW_SECONDS + 1, { started }, at(10))).to.match(/in the future/);
      expect(authTimeProblem(t0 + 10 + AUTH_TIME_SKEW_SECONDS, { started }, at(10))).to.equal(undefined);
    });

    it("max_age: absent is refused, older than max_age plus the skew is refused, the boundary passes", function () {
      expect(authTimeProblem(undefined, { started, maxAge: 60 }, at(0))).to.match(/did not say when the user authenticated/);
      expect(authTimeProblem(t0 - 60 - AUTH_TIME_SKEW_SECONDS, { started, maxAge: 60 }, at(0))).to.equal(undefined);
      expect(authTimeProblem(t0 - 60 - AUTH_TIME_SKEW_SECONDS - 1, { started, maxAge: 60 }, at(0))).to.match(/longer ago than the app's max_age/);
      expect(authTimeProblem(t0 - AUTH_TIME_SKEW_SECONDS, { started, maxAge: 0 }, at(0))).to.equal(undefined);
    });

    it("prompt=login: absent is refused, before the login began (less the skew) is refused", function () {
      expect(authTimeProblem(undefined, { started, promptLogin: true }, at(5))).to.match(/did not say/);
      expect(authTimeProblem(t0 - AUTH_TIME_SKEW_SECONDS, { started, promptLogin: true }, at(5))).to.equal(undefined);
      expect(authTimeProblem(t0 - AUTH_TIME_SKEW_SECONDS - 1, { started, promptLogin: true }, at(5))).to.match(/after this login began/);
    });
  });

  describe("through the front door, Token and a real provider", function () {
    let mesh: ProtocolMesh;
    before(async () => {
      mesh = await startProtocolMesh({ database: "pglite", twisted: {} });
      await login({}); // Alice exists and has consented at app a
    });
    after(async () => mesh?.close());
    afterEach(() => mesh.control({}));

    /** A login to app a with `extra` authorization parameters: the tokens, or the error the app got. */
    async function login(extra: Record<string, string>) {
      const { config, checks, url } = await prepareAuthorization(mesh.issuer, "a", extra);
      const { page } = await browseToApp(url, "a", USERS.alice);
      const error = page.url.searchParams.get("error");
      if (error) return { error, description: page.url.searchParams.get("error_description"), iss: page.url.searchParams.get("iss") };
      return { tokens: await oidc.authorizationCodeGrant(config, page.url, checks) };
    }

    it("max_age: the ID Token's auth_time is the provider's (here 50 s before hello-mesh's now), not the time of minting", async function () {
      mesh.control({ clockOffsetMs: AHEAD_MS });
      const result = await login({ max_age: "300" });
      const claims = result.tokens!.claims()!;
      expect(claims.auth_time).to.be.a("number");
      expect(claims.iat - claims.auth_time!).to.be.within(AHEAD_MS / 1000 - 5, AHEAD_MS / 1000 + 5);
    });

    it("max_age shorter than the provider's authentication's age: login_required to the app; the honest twin (within max_age) signs in", async function () {
      mesh.control({ clockOffsetMs: AHEAD_MS });
      const refused = await login({ max_age: "10" });
      expect(refused).to.include({ error: "login_required", iss: mesh.issuer });
      expect(refused.description).to.match(/max_age/);
      const honest = await login({ max_age: "60" });
      expect(honest.tokens!.claims()!.auth_time).to.be.a("number");
    });

    it("prompt=login: an authentication from before the login began is login_required; the honest twin (a fresh one) signs in", async function () {
      mesh.control({ clockOffsetMs: AHEAD_MS });
      const refused = await login({ prompt: "login" });
      expect(refused).to.include({ error: "login_required", iss: mesh.issuer });
      expect(refused.description).to.match(/after this login began/);
      mesh.control({});
      const before = Math.floor(Date.now() / 1000);
      const honest = await login({ prompt: "login" });
      expect(honest.tokens!.claims()!.auth_time).to.be.at.least(before - 1);
    });

    it("without max_age or prompt=login, an old authentication is no refusal", async function () {
      mesh.control({ clockOffsetMs: AHEAD_MS });
      const result = await login({});
      expect(result.tokens!.claims()!.sub).to.be.a("string");
    });
  });
});
