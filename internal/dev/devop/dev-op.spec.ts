import { expect } from "chai";
import { randomBytes } from "node:crypto";
import { createRemoteJWKSet, jwtVerify } from "jose";

import { DEFAULT_DEV_USERS, startDevOp, type DevOp } from "./dev-op.js";
import { DevOpLoginError, loginAtDevOp, promptNoneAtDevOp } from "./headless-login.js";
import { rejectionOf } from "../../../test/support/refusal.js";

const CLIENT = { client_id: "hello-orchestration", client_secret: "dev-secret-0123456789", redirect_uris: ["http://localhost:9/callback"] };
const alice = DEFAULT_DEV_USERS[0]!;

describe("dev OP", function () {
  let op: DevOp;
  const nonce = () => randomBytes(16).toString("base64url");
  const login = (overrides: { nonce?: string; scope?: string; password?: string } = {}) =>
    loginAtDevOp({
      issuer: op.issuer,
      clientId: CLIENT.client_id,
      clientSecret: CLIENT.client_secret,
      redirectUri: CLIENT.redirect_uris[0]!,
      user: { email: alice.email, password: overrides.password ?? alice.password },
      nonce: overrides.nonce ?? nonce(),
      ...(overrides.scope ? { scope: overrides.scope } : {}),
    });
  const discovery = async () => (await (await fetch(`${op.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
  /** The authorization endpoint, asked for a code for CLIENT (openid, a state and a fresh nonce) with `params` besides. */
  const authorizationUrl = async (params: Record<string, string>) => {
    const url = new URL(String((await discovery()).authorization_endpoint));
    url.search = new URLSearchParams({ response_type: "code", client_id: CLIENT.client_id, scope: "openid", state: "s", nonce: nonce(), ...params }).toString();
    return url;
  };

  before(async function () {
    op = await startDevOp({ clients: [CLIENT] });
  });
  after(async function () {
    await op?.close();
  });

  it("publishes discovery: its issuer and JWKS, code flow only, PKCE S256 only", async function () {
    expect(op.issuer).to.match(/^http:\/\/localhost:\d+$/);
    const meta = await discovery();
    expect(meta.issuer).to.equal(op.issuer);
    expect(meta.jwks_uri).to.equal(op.jwksUri);
    expect(meta.response_types_supported).to.deep.equal(["code"]);
    expect(meta.code_challenge_methods_supported).to.deep.equal(["S256"]);
    expect(meta.scopes_supported).to.include.members(["openid", "email", "profile"]);
    const jwks = (await (await fetch(op.jwksUri)).json()) as { keys: Array<Record<string, unknown>> };
    expect(jwks.keys).to.have.length(1);
    expect(jwks.keys[0]).to.include({ kty: "RSA", alg: "RS256", use: "sig" });
    expect(jwks.keys[0]).to.not.have.property("d"); // the public half only
  });

  it("logs in headlessly and issues an ID Token that verifies, with nonce and profile/email claims", async function () {
    const sent = nonce();
    const { idToken, accessToken, claims } = await login({ nonce: sent });
    expect(accessToken).to.be.a("string").and.not.equal("");
    const { payload, protectedHeader } = await jwtVerify(idToken, createRemoteJWKSet(new URL(op.jwksUri)), {
      issuer: op.issuer,
      audience: CLIENT.client_id,
      algorithms: ["RS256"],
    });
    expect(protectedHeader.kid).to.be.a("string");
    expect(payload).to.include({
      sub: alice.sub,
      nonce: sent,
      email: alice.email,
      email_verified: true,
      name: alice.name,
      given_name: alice.given_name,
      picture: alice.picture,
    });
    expect(payload).to.not.have.property("password");
    expect(claims).to.deep.equal(payload);
  });

  it("puts only the claims of the requested scopes in the ID Token", async function () {
    const { claims } = await login({ scope: "openid email" });
    expect(claims).to.include({ sub: alice.sub, email: alice.email, email_verified: true });
    expect(claims).to.not.have.any.keys("name", "given_name", "picture");
  });

  it("answers a wrong password with the login page and an error, and no code", async function () {
    const failure = await rejectionOf(login({ password: "not-alice" }), "a wrong password");
    expect(failure).to.be.instanceOf(DevOpLoginError);
    const { status, page } = failure as DevOpLoginError;
    expect(status).to.equal(401);
    expect(page).to.contain('id="login"'); // the form again …
    expect(page).to.match(/role="alert"[^>]*>Wrong email or password\./); // … with an announced error
    expect(page).to.contain(`value="${alice.email}"`); // the email kept
    expect(page).to.not.contain("not-alice"); // the password not echoed
  });

  it("gives two logins with different nonces two ID Tokens, each with its own nonce", async function () {
    const [n1, n2] = [nonce(), nonce()];
    const [first, second] = await Promise.all([login({ nonce: n1 }), login({ nonce: n2 })]);
    expect(first.idToken).to.not.equal(second.idToken);
    expect(first.claims.nonce).to.equal(n1);
    expect(second.claims.nonce).to.equal(n2);
  });

  it("answers prompt=none without a session with login_required at the redirect_uri", async function () {
    const error = await promptNoneAtDevOp({
      issuer: op.issuer,
      clientId: CLIENT.client_id,
      redirectUri: CLIENT.redirect_uris[0]!,
      nonce: nonce(),
    });
    expect(error).to.equal("login_required");
  });

  it("refuses an unregistered redirect_uri without redirecting to it", async function () {
    const url = await authorizationUrl({
      redirect_uri: "http://localhost:9/evil",
      code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
      code_challenge_method: "S256",
    });
    const response = await fetch(url, { redirect: "manual", headers: { accept: "text/html" } });
    expect(response.status).to.equal(400);
    expect(response.headers.get("location")).to.equal(null);
    expect(await response.text()).to.contain("redirect_uri");
  });

  it("refuses to start with invalid client metadata", async function () {
    const bad = { client_id: "bad", client_secret: "s", redirect_uris: ["not a uri"] };
    const failure = await rejectionOf(
      startDevOp({ clients: [bad] }).then(async (started) => started.close()),
      "starting with an invalid redirect_uri",
    );
    expect(failure).to.be.instanceOf(Error);
    expect((failure as Error).message).to.contain("redirect_uris");
  });

  it("requires PKCE", async function () {
    const url = await authorizationUrl({ redirect_uri: CLIENT.redirect_uris[0]! }); // and no PKCE
    const response = await fetch(url, { redirect: "manual" });
    const location = new URL(response.headers.get("location") ?? "", url);
    expect(`${location.origin}${location.pathname}`).to.equal(CLIENT.redirect_uris[0]);
    expect(location.searchParams.get("error")).to.equal("invalid_request");
    expect(location.searchParams.get("code")).to.equal(null);
  });
});
