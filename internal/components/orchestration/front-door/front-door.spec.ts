// The front door as apps see it (docs/design.md §6): openid-client, a strict relying party,
// completes code + PKCE against hello-mesh with discovery and validates the ID Token;
// every login goes through the real upstream OP and the four components.

import { createHash, randomBytes } from "node:crypto";
import { expect } from "chai";
import * as oidc from "openid-client";
import { SignJWT, createRemoteJWKSet, jwtVerify } from "jose";
import { type ProtocolMesh, APPS, APP_KEY, USERS, appSecret, browseToApp, startProtocolMesh } from "../../../../test/support/protocol-mesh.js";
import { type App, appClient, prepareAuthorization } from "../../../../test/support/app-client.js";
import { Browserless, type Page } from "../../../../test/support/browserless.js";
import { rejectionOf } from "../../../../test/support/refusal.js";
import type { DevUser } from "../../../dev/devop/dev-op.js";

describe("the front door: a standard OpenID Provider (docs/design.md §6)", function () {
  this.timeout(120_000);
  let mesh: ProtocolMesh;
  before(async () => (mesh = await startProtocolMesh({ database: "pglite" })));
  after(async () => mesh?.close());

  /** A person at the browser: logs in at the upstream OP and answers the consent page. */
  async function browse(url: URL, app: App, user: DevUser, decision: "allow" | "deny" = "allow", browser = new Browserless()): Promise<Page> {
    return (await browseToApp(url, app, user, { decision, browser })).page;
  }

  const prepare = (app: App, extra: Record<string, string> = {}) => prepareAuthorization(mesh.issuer, app, extra);
  const rp = (app: App) => appClient(mesh.issuer, app);

  async function login(app: App, user: DevUser, extra: Record<string, string> = {}) {
    const { config, checks, url } = await prepare(app, extra);
    const page = await browse(url, app, user);
    const tokens = await oidc.authorizationCodeGrant(config, page.url, checks);
    return { config, tokens, callback: page.url, checks };
  }

  it("OIDC Discovery 1.0 §3: the metadata names the endpoints and what is supported", async function () {
    const meta = (await rp("a")).serverMetadata();
    expect(meta.issuer).to.equal(mesh.issuer);
    expect(meta.response_types_supported).to.deep.equal(["code"]);
    expect(meta.code_challenge_methods_supported).to.deep.equal(["S256"]);
    expect(meta.authorization_response_iss_parameter_supported).to.equal(true);
  });

  for (const app of ["a", "post", "pub", "jwt"] as const) {
    it(`code + PKCE with discovery, ${APPS[app]!.auth ?? "client_secret_basic"}: openid-client validates the ID Token`, async function () {
      const { config, tokens } = await login(app, USERS.alice);
      const claims = tokens.claims()!;
      expect(claims.iss).to.equal(mesh.issuer);
      expect(claims.aud).to.equal(APPS[app]!.client_id);
      expect(claims.email).to.equal(USERS.alice.email);
      expect(claims.sub).to.not.equal(USERS.alice.sub);
      // userinfo: the same claims, for the same directed sub
      const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
      expect(info.email).to.equal(USERS.alice.email);
    });
  }

  it("OAuth 2.0 Form Post Response Mode: the code arrives in an auto-submitted form, and openid-client accepts it", async function () {
    const { config, checks, url } = await prepare("a", { scope: "openid email", response_mode: "form_post" });
    const browser = new Browserless();
    const page = await browse(url, "a", USERS.alice, "allow", browser);
    // the front door answered with a page whose form posts to the app's redirect_uri
    const form = browser.form(page, /^https:\/\/a\.example\/callback$/);
    expect(page.headers.get("content-security-policy")).to.match(/script-src 'sha256-[^']+'/);
    const posted = new Request(form.action, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(form.fields) });
    const tokens = await oidc.authorizationCodeGrant(config, posted, checks);
    expect(tokens.claims()!.email).to.equal(USERS.alice.email);
  });

  it("RFC 9101: a signed request object (by value) is verified by Token with the client's registered key", async function () {
    const key = await APP_KEY;
    const { config, checks, params } = await prepare("jwt", { scope: "openid email", response_type: "code" });
    const url = await oidc.buildAuthorizationUrlWithJAR(config, params, { key: key.privateKey, kid: key.kid });
    const page = await browse(url, "jwt", USERS.bob);
    const tokens = await oidc.authorizationCodeGrant(config, page.url, checks);
    expect(tokens.claims()!.email).to.equal(USERS.bob.email);
    // the same request object with a byte changed does not get past Token
    const tampered = new URL(url);
    const jar = tampered.searchParams.get("request")!;
    tampered.searchParams.set("request", `${jar.slice(0, -3)}${jar.endsWith("AAA") ? "BBB" : "AAA"}`);
    const refused = await new Browserless().go(tampered, {}, (u) => u.origin === "https://jwt.example");
    expect(refused.url.searchParams.get("error")).to.equal("invalid_request_object");
    expect(refused.url.searchParams.get("state")).to.equal(checks.expectedState);
  });

  it("RFC 9101 §10.8: a request object serves one login; the same one again is invalid_request_object", async function () {
    const key = await APP_KEY;
    const { config, checks, params } = await prepare("jwt", { scope: "openid email", response_type: "code" });
    const url = await oidc.buildAuthorizationUrlWithJAR(config, params, { key: key.privateKey, kid: key.kid });
    const page = await browse(url, "jwt", USERS.bob);
    expect((await oidc.authorizationCodeGrant(config, page.url, checks)).claims()!.email).to.equal(USERS.bob.email);
    const replayed = await new Browserless().go(url, {}, (u) => u.origin === "https://jwt.example");
    expect(replayed.url.searchParams.get("error")).to.equal("invalid_request_object");
    expect(replayed.url.searchParams.get("error_description")).to.match(/already used/);
    // Honest twin: a new request object (another jti) signs in.
    const fresh = await prepare("jwt", { scope: "openid email", response_type: "code" });
    const again = await browse(await oidc.buildAuthorizationUrlWithJAR(fresh.config, fresh.params, { key: key.privateKey, kid: key.kid }), "jwt", USERS.bob);
    expect((await oidc.authorizationCodeGrant(fresh.config, again.url, fresh.checks)).claims()!.email).to.equal(USERS.bob.email);
  });

  it("an expired authorization request (a request object past its exp) is invalid_request_object", async function () {
    const key = await APP_KEY;
    const challenge = await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier());
    const now = Math.floor(Date.now() / 1000);
    const expired = await new SignJWT({
      client_id: "app-jwt", response_type: "code", redirect_uri: APPS.jwt!.redirect_uri, scope: "openid", nonce: "n-0123456789",
      state: "late", code_challenge: challenge, code_challenge_method: "S256", jti: oidc.randomState(),
    }).setProtectedHeader({ alg: "ES256", kid: key.kid, typ: "oauth-authz-req+jwt" })
      .setIssuer("app-jwt").setAudience(mesh.issuer).setIssuedAt(now - 900).setExpirationTime(now - 600)
      .sign(key.privateKey);
    const url = new URL(`${mesh.issuer}/authorize`);
    url.search = new URLSearchParams({ client_id: "app-jwt", request: expired }).toString();
    const page = await new Browserless().go(url, {}, (u) => u.origin === "https://jwt.example");
    expect(page.url.searchParams.get("error")).to.equal("invalid_request_object");
    expect(page.url.searchParams.get("state")).to.equal("late");
    expect(page.url.searchParams.get("iss")).to.equal(mesh.issuer);
  });

  it("OIDC Core §5.3.2: userinfo as a JWT signed by Token, for the ID Token's sub", async function () {
    const { tokens } = await login("a", USERS.alice);
    const response = await fetch(`${mesh.issuer}/userinfo`, { headers: { authorization: `Bearer ${tokens.access_token}`, accept: "application/jwt" } });
    expect(response.headers.get("content-type")).to.equal("application/jwt");
    const jwks = createRemoteJWKSet(new URL(`${mesh.issuer}/jwks`));
    const signed = await response.text();
    const { payload, protectedHeader } = await jwtVerify(signed, jwks, { issuer: mesh.issuer, audience: "app-a", typ: "userinfo+jwt", requiredClaims: ["exp", "iat"] });
    expect(payload.sub).to.equal(tokens.claims()!.sub);
    expect(payload.email).to.equal(USERS.alice.email);
    // Its own typ and its own key: a userinfo JWT never passes for an ID Token.
    expect(protectedHeader.kid).to.match(/^userinfo\./);
    expect(payload.exp! - payload.iat!).to.equal(660);
    expect(payload.exp! * 1000).to.be.above(Date.now() + tokens.expires_in! * 1000 - 5_000);
    const asIdToken = await rejectionOf(jwtVerify(signed, jwks, { issuer: mesh.issuer, audience: "app-a", typ: "JWT" }), "a userinfo JWT as an ID Token");
    expect(asIdToken).to.be.instanceOf(Error);
    const bad = await fetch(`${mesh.issuer}/userinfo`, { headers: { authorization: "Bearer not-a-token" } });
    expect(bad.status).to.equal(401);
    expect(bad.headers.get("www-authenticate")).to.match(/^Bearer error="invalid_token"/);
  });

  it("OIDC Core §5.3.1 / RFC 6750 §2: userinfo by POST, with the token in the header or the form body, never both", async function () {
    const { tokens } = await login("a", USERS.alice);
    const token = tokens.access_token;
    const userinfo = (init: { headers?: Record<string, string>; body?: string }, query = "") =>
      fetch(`${mesh.issuer}/userinfo${query}`, { method: "POST", ...init });
    const form = { "content-type": "application/x-www-form-urlencoded" };
    const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
    const claimsOf = async (response: Response) => {
      expect(response.status, await response.clone().text()).to.equal(200);
      return (await response.json()) as { email?: string; sub?: string };
    };
    // the header alone: no body and no content type, or a body that is not a form
    expect((await claimsOf(await userinfo({ headers: bearer(token) }))).email).to.equal(USERS.alice.email);
    expect((await claimsOf(await userinfo({ headers: { ...bearer(token), "content-type": "application/json" }, body: "{}" }))).email).to.equal(USERS.alice.email);
    // a form without access_token beside the header; the scheme's case does not matter (RFC 7235 §2.1)
    expect((await claimsOf(await userinfo({ headers: { ...form, authorization: `bearer ${token}` }, body: "x=1" }))).email).to.equal(USERS.alice.email);
    // the form body alone
    const fromBody = await claimsOf(await userinfo({ headers: form, body: new URLSearchParams({ access_token: token }).toString() }));
    expect(fromBody.sub).to.equal(tokens.claims()!.sub);
    // the JWT form answers a POST too
    const jwt = await userinfo({ headers: { ...bearer(token), accept: "application/jwt" } });
    expect(jwt.headers.get("content-type")).to.equal("application/jwt");

    // two places (header and body, or the body twice), or the URL: invalid_request, in the body and the challenge
    for (const refused of [
      await userinfo({ headers: { ...form, ...bearer(token) }, body: new URLSearchParams({ access_token: token }).toString() }),
      await userinfo({ headers: form, body: new URLSearchParams([["access_token", token], ["access_token", token]]).toString() }),
      await userinfo({ headers: form }, `?${new URLSearchParams({ access_token: token })}`),
    ]) {
      expect(refused.status).to.equal(400);
      expect(((await refused.json()) as { error: string }).error).to.equal("invalid_request");
      expect(refused.headers.get("www-authenticate")).to.match(/^Bearer error="invalid_request"/);
    }
    // a bad token, wherever it is, and no token at all: 401 with the challenge
    for (const init of [{ headers: bearer("not-a-token") }, { headers: form, body: "access_token=not-a-token" }, {}, { headers: form, body: "" }]) {
      const bad = await userinfo(init);
      expect(bad.status, JSON.stringify(init)).to.equal(401);
      expect(((await bad.json()) as { error: string }).error).to.equal("invalid_token");
      expect(bad.headers.get("www-authenticate")).to.match(/^Bearer error="invalid_token"/);
    }
  });

  it("a claim named like an object's own property (constructor, __proto__) is neither offered nor released", async function () {
    const claims = JSON.stringify({ id_token: { constructor: null, ["__proto__"]: null, toString: null, email: null } });
    const { config, checks, url } = await prepare("b", { scope: "openid", claims });
    const browser = new Browserless();
    const atApp = (u: URL) => u.origin === new URL(APPS.b!.redirect_uri).origin;
    let page = await browser.go(url, {}, atApp);
    page = await browser.submit(browser.form(page, /\/login$/), [["email", USERS.alice.email], ["password", USERS.alice.password]], atApp);
    const form = browser.form(page, /^\/consent$/);
    expect(form.checkboxes.map((c) => c.value)).to.deep.equal(["email"]);
    // A hand-made answer that also names the inherited ones: the front door keeps only what it offered.
    const body = new URLSearchParams(form.fields);
    for (const [k, v] of [["decision", "allow"], ["claims", "email"], ["claims", "constructor"], ["claims", "toString"]]) body.append(k!, v!);
    page = await browser.go(form.action, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body }, atApp);
    const tokens = await oidc.authorizationCodeGrant(config, page.url, checks);
    const released = tokens.claims()!;
    expect(released.email).to.equal(USERS.alice.email);
    expect(Object.hasOwn(released, "constructor") || Object.hasOwn(released, "toString")).to.equal(false);
  });

  it("OIDC Core §3.1.2.1: the authorization endpoint takes POST as well as GET", async function () {
    const { config, checks, url } = await prepare("a", { scope: "openid email" });
    const browser = new Browserless();
    const callback = new URL(APPS.a!.redirect_uri);
    const atApp = (u: URL) => u.origin === callback.origin;
    let page = await browser.go(`${mesh.issuer}/authorize`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: url.searchParams }, atApp);
    page = await browser.submit(browser.form(page, /\/login$/), [["email", USERS.alice.email], ["password", USERS.alice.password]], atApp);
    const tokens = await oidc.authorizationCodeGrant(config, page.url, checks);
    expect(tokens.claims()!.aud).to.equal("app-a");
  });

  it("OIDC Core §3.1.2.1 prompt=consent: a returning user confirms what the app receives, or declines", async function () {
    await login("a", USERS.bob); // bob has released to app-a
    for (const decision of ["allow", "deny"] as const) {
      const { config, checks, url } = await prepare("a", { prompt: "consent" });
      const browser = new Browserless();
      const atApp = (u: URL) => u.origin === new URL(APPS.a!.redirect_uri).origin;
      let page = await browser.go(url, {}, atApp);
      page = await browser.submit(browser.form(page, /\/login$/), [["email", USERS.bob.email], ["password", USERS.bob.password]], atApp);
      expect(page.body).to.include("Continue to app-a?");
      expect(page.body.replaceAll("<wbr>", ""), "the address as the page reads").to.include(USERS.bob.email);
      page = await browser.submit(browser.form(page, /^\/consent$/), [["decision", decision]], atApp);
      if (decision === "deny") {
        expect(page.url.searchParams.get("error")).to.equal("access_denied");
      } else {
        const tokens = await oidc.authorizationCodeGrant(config, page.url, checks);
        expect(tokens.claims()!.email).to.equal(USERS.bob.email);
      }
    }
  });

  it("OIDC Core §3.1.2.1 prompt=consent: the user withdraws a claim, then adds it back; the app's sub stays, and the release is what the page said", async function () {
    // Carol's first login (at app-b: the test of a new user's consent page at app-a below needs her new there) releases everything app-b asks for.
    const first = await login("b", USERS.carol);
    const sub = first.tokens.claims()!.sub;
    /** A prompt=consent login at app-b, choosing the checked boxes with `choose`: what the page started checked, and the ID Token's claims. */
    const reconsent = async (choose: (box: { name: string; value: string; checked: boolean }) => boolean) => {
      const { config, checks, url } = await prepare("b", { prompt: "consent" });
      const browser = new Browserless();
      const atApp = (u: URL) => u.origin === new URL(APPS.b!.redirect_uri).origin;
      let page = await browser.go(url, {}, atApp);
      page = await browser.submit(browser.form(page, /\/login$/), [["email", USERS.carol.email], ["password", USERS.carol.password]], atApp);
      expect(page.body).to.include("Continue to app-b?");
      const form = browser.form(page, /^\/consent$/);
      const startedChecked = form.checkboxes.filter((b) => b.checked).map((b) => b.value).sort();
      page = await browser.submit(form, [["decision", "allow"]], atApp, (box) => choose({ ...box, checked: form.checkboxes.find((b) => b.value === box.value)!.checked }));
      return { startedChecked, claims: (await oidc.authorizationCodeGrant(config, page.url, checks)).claims()! };
    };
    const withdrawn = await reconsent((box) => box.value !== "email");
    expect(withdrawn.startedChecked, "what the app receives now starts checked").to.include("email");
    expect(withdrawn.claims.sub, "the same sub").to.equal(sub);
    expect(withdrawn.claims).to.not.have.property("email");
    expect(withdrawn.claims).to.have.property("name", USERS.carol.name);
    // An ordinary login afterwards: the release as changed.
    const after = await login("b", USERS.carol);
    expect(after.tokens.claims()).to.not.have.property("email");
    // prompt=consent again: email starts unchecked, and checking it adds it back.
    const added = await reconsent(() => true);
    expect(added.startedChecked).to.not.include("email");
    expect(added.claims.sub).to.equal(sub);
    expect(added.claims).to.have.property("email", USERS.carol.email);
    // Confirmed as it is: nothing changes.
    const same = await reconsent((box) => box.checked);
    expect(same.claims).to.have.property("email", USERS.carol.email);
  });

  it("RFC 6749 §4.1.2 / §10.5: a code is single use; the second redemption is invalid_grant and revokes the first one's access token", async function () {
    const { config, callback, checks, tokens } = await login("a", USERS.bob);
    const userinfo = () => fetch(`${mesh.issuer}/userinfo`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    // honest twin: redeemed once, the access token works (and keeps working)
    expect((await userinfo()).status).to.equal(200);
    expect((await userinfo()).status).to.equal(200);
    const again = await rejectionOf(oidc.authorizationCodeGrant(config, callback, checks), "a code's second redemption");
    expect((again as oidc.ResponseBodyError).error).to.equal("invalid_grant");
    const revoked = await userinfo();
    expect(revoked.status).to.equal(401);
    expect(revoked.headers.get("www-authenticate")).to.match(/^Bearer error="invalid_token"/);
  });

  it("RFC 7636 §4.6: a wrong code_verifier is invalid_grant (and burns the code)", async function () {
    const { config, checks, url } = await prepare("a", { scope: "openid email" });
    const page = await browse(url, "a", USERS.alice);
    const wrong = await rejectionOf(oidc.authorizationCodeGrant(config, page.url, { ...checks, pkceCodeVerifier: oidc.randomPKCECodeVerifier() }), "another code_verifier");
    expect((wrong as oidc.ResponseBodyError).error).to.equal("invalid_grant");
    expect((wrong as oidc.ResponseBodyError).error_description).to.equal("code_verifier does not match the code_challenge (PKCE)");
    // the failed attempt used the code up: the right verifier cannot redeem it now
    const late = await rejectionOf(oidc.authorizationCodeGrant(config, page.url, checks), "the right code_verifier after a wrong one");
    expect((late as oidc.ResponseBodyError).error).to.equal("invalid_grant");
  });

  it("RFC 6749 §4.1.3: a code issued to one client is invalid_grant for another", async function () {
    // app-a tries to redeem a code issued to app-b
    const stolen = await issueCodeFor("b");
    const response = await fetch(`${mesh.issuer}/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${Buffer.from(`app-a:${appSecret("app-a")}`).toString("base64")}` },
      body: new URLSearchParams({ grant_type: "authorization_code", code: stolen.code, redirect_uri: APPS.b!.redirect_uri, code_verifier: stolen.verifier }),
    });
    expect(response.status).to.equal(400);
    expect(await response.json()).to.deep.equal({ error: "invalid_grant", error_description: "the code was issued to another client" });
  });

  it("RFC 6749 §3.2: a repeated parameter at /token is invalid_request, and the code stays good (honest twin)", async function () {
    const issued = await issueCodeFor("a");
    const redeem = (body: URLSearchParams) =>
      fetch(`${mesh.issuer}/token`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${Buffer.from(`app-a:${appSecret("app-a")}`).toString("base64")}` },
        body,
      });
    const body = new URLSearchParams({ grant_type: "authorization_code", code: issued.code, redirect_uri: APPS.a!.redirect_uri, code_verifier: issued.verifier });
    const twice = new URLSearchParams(body);
    twice.append("client_id", "app-a");
    twice.append("client_id", "app-b");
    const refused = await redeem(twice);
    expect(refused.status).to.equal(400);
    expect(await refused.json()).to.deep.equal({ error: "invalid_request", error_description: "the client_id parameter is given more than once: each may appear once (RFC 6749 §3.2)" });
    const honest = await redeem(body);
    expect(honest.status).to.equal(200);
  });

  it("RFC 6749 §5.2: a bad client secret, and an unknown client, are invalid_client (401)", async function () {
    const stolen = await issueCodeFor("a");
    for (const authorization of [`Basic ${Buffer.from("app-a:wrong-secret-xxxxxxxx").toString("base64")}`, `Basic ${Buffer.from("nobody:x").toString("base64")}`]) {
      const response = await fetch(`${mesh.issuer}/token`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", authorization },
        body: new URLSearchParams({ grant_type: "authorization_code", code: stolen.code, redirect_uri: APPS.a!.redirect_uri, code_verifier: stolen.verifier }),
      });
      expect(response.status).to.equal(401);
      expect(((await response.json()) as { error: string }).error).to.equal("invalid_client");
    }
  });

  /** A code for `app`, redeemed by no one yet. */
  async function issueCodeFor(app: App) {
    const verifier = randomBytes(32).toString("base64url");
    const url = new URL(`${mesh.issuer}/authorize`);
    url.search = new URLSearchParams({
      response_type: "code", client_id: APPS[app]!.client_id, redirect_uri: APPS[app]!.redirect_uri, scope: "openid email",
      nonce: "n-0123456789", state: "s-1", code_challenge: createHash("sha256").update(verifier).digest("base64url"), code_challenge_method: "S256",
    }).toString();
    const page = await browse(url, app, USERS.alice);
    return { code: page.url.searchParams.get("code")!, verifier };
  }

  describe("authorization errors (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6)", function () {
    const base = (over: Record<string, string | undefined>) => {
      const params: Record<string, string> = {
        response_type: "code", client_id: "app-a", redirect_uri: APPS.a!.redirect_uri, scope: "openid", nonce: "n-0123456789",
        state: "st", code_challenge: createHash("sha256").update("v".repeat(43)).digest("base64url"), code_challenge_method: "S256",
      };
      for (const [k, v] of Object.entries(over)) if (v === undefined) delete params[k]; else params[k] = v;
      const url = new URL(`${mesh.issuer}/authorize`);
      url.search = new URLSearchParams(params).toString();
      return url;
    };
    const redirected = async (url: URL) => {
      const response = await fetch(url, { redirect: "manual" });
      return { status: response.status, location: response.headers.get("location"), body: response.status === 200 || response.status === 400 ? await response.text() : "" };
    };

    it("response_type=id_token is unsupported_response_type, redirected with state and iss", async function () {
      const { status, location } = await redirected(base({ response_type: "id_token" }));
      expect(status).to.equal(303);
      const back = new URL(location!);
      expect(back.origin + back.pathname).to.equal(APPS.a!.redirect_uri);
      expect(back.searchParams.get("error")).to.equal("unsupported_response_type");
      expect(back.searchParams.get("state")).to.equal("st");
      expect(back.searchParams.get("iss")).to.equal(mesh.issuer);
    });

    it("a missing nonce is invalid_request; a missing PKCE challenge is invalid_request", async function () {
      for (const over of [{ nonce: undefined }, { code_challenge: undefined }]) {
        const back = new URL((await redirected(base(over))).location!);
        expect(back.searchParams.get("error")).to.equal("invalid_request");
      }
    });

    it("an unregistered redirect_uri, or an unknown client_id, is an error page and never a redirect", async function () {
      for (const over of [{ redirect_uri: "https://evil.example/steal" }, { client_id: "nobody" }]) {
        const { status, location, body } = await redirected(base(over));
        expect(status).to.equal(400);
        expect(location).to.equal(null);
        expect(body).to.include("hello-mesh will not send you back to an address it does not know");
      }
    });

    it("prompt=none without an upstream session is login_required", async function () {
      const page = await browse(base({ prompt: "none" }), "a", USERS.alice);
      expect(page.url.searchParams.get("error")).to.equal("login_required");
      expect(page.url.searchParams.get("state")).to.equal("st");
    });

    it("an upstream answer that does not verify (a swapped code) is a clear 400 page, not a code", async function () {
      const browser = new Browserless();
      const atCallback = (u: URL) => u.pathname === "/upstream/callback/dev";
      const login = await browser.go(base({}), {}, atCallback);
      const back = await browser.submit(browser.form(login, /\/login$/), [["email", USERS.alice.email], ["password", USERS.alice.password]], atCallback);
      const swapped = new URL(back.url);
      swapped.searchParams.set("code", "not-the-code-the-provider-issued");
      const page = await browser.go(swapped, {}, (u) => u.origin === new URL(APPS.a!.redirect_uri).origin);
      expect(page.status).to.equal(400);
      expect(page.body).to.include("could not be verified");
      expect(page.url.origin, "no redirect to the app").to.equal(new URL(mesh.issuer).origin);
    });

    it("RFC 9207: an answer whose iss is not the provider's, or lacks the iss the provider promises, is refused before redemption", async function () {
      const issuer = new URL(mesh.devOp.issuer).toString().replace(/\/$/, "");
      for (const tamper of [(u: URL) => u.searchParams.set("iss", "https://evil.example"), (u: URL) => u.searchParams.delete("iss")]) {
        const browser = new Browserless();
        const atCallback = (u: URL) => u.pathname === "/upstream/callback/dev";
        const login = await browser.go(base({}), {}, atCallback);
        const back = await browser.submit(browser.form(login, /\/login$/), [["email", USERS.alice.email], ["password", USERS.alice.password]], atCallback);
        expect(back.url.searchParams.get("iss"), "the provider sends iss").to.equal(issuer);
        const tampered = new URL(back.url);
        tamper(tampered);
        const page = await browser.go(tampered, {}, (u) => u.origin === new URL(APPS.a!.redirect_uri).origin);
        expect(page.status).to.equal(400);
        expect(page.body).to.include("could not be verified");
      }
      // An error answer carries no code, and its iss is checked all the same: with the
      // provider's iss it reaches the app; with another it is refused.
      for (const [iss, refused] of [[issuer, false], ["https://evil.example", true]] as const) {
        const browser = new Browserless();
        const toProvider = await fetch(base({}), { redirect: "manual" });
        const cookie = toProvider.headers.getSetCookie()[0]!.split(";")[0]!;
        const state = new URL(toProvider.headers.get("location")!).searchParams.get("state")!;
        const answer = new URL(`${mesh.issuer}/upstream/callback/dev`);
        answer.search = new URLSearchParams({ error: "access_denied", state, iss }).toString();
        const page = await browser.go(answer, { headers: { cookie } }, (u) => u.origin === new URL(APPS.a!.redirect_uri).origin);
        if (refused) {
          expect(page.status).to.equal(400);
          expect(page.body).to.include("could not be verified");
        } else {
          expect(page.url.searchParams.get("error")).to.equal("access_denied");
          expect(page.url.searchParams.get("state")).to.equal("st");
        }
      }
    });

    it("the callback is per provider: an unknown provider's path is 404, the old shared path is gone", async function () {
      for (const path of ["/upstream/callback/nowhere", "/upstream/callback", "/upstream/callback/"]) {
        expect((await fetch(`${mesh.issuer}${path}?state=x&code=y`)).status, path).to.equal(404);
      }
      const post = await fetch(`${mesh.issuer}/upstream/callback/dev`, { method: "POST" });
      expect(post.status).to.equal(405);
      expect(post.headers.get("allow")).to.equal("GET");
    });

    it("a declined consent is access_denied, and no release is made", async function () {
      // carol is new: the consent page comes first
      const page = await browse(base({ scope: "openid email" }), "a", USERS.carol, "deny");
      expect(page.url.searchParams.get("error")).to.equal("access_denied");
      const again = await browse(base({ scope: "openid email" }), "a", USERS.carol, "deny");
      expect(again.url.searchParams.get("error"), "the consent page is shown again").to.equal("access_denied");
    });
  });
});
