// The authorization request's checks (authorization-request.ts), in-process: the order
// they run in, and which side of the trusted redirect_uri each error lands on. The
// answers they become at /authorize are front-door.spec.ts and the fuzz tests.

import { expect } from "chai";
import { UnsecuredJWT } from "jose";
import type { FrontDoorClient } from "../../../config/component-config.js";
import { RedirectableError, UntrustedRedirectError, parseAuthorizationRequest } from "./authorization-request.js";

describe("the authorization request's checks (authorization-request.ts)", function () {
  const app: FrontDoorClient = {
    client_id: "app",
    client_secret: "app-secret-0123456789",
    redirect_uris: ["https://app.example/cb"],
    token_endpoint_auth_method: "client_secret_basic",
  };
  const clients = new Map([[app.client_id, app]]);
  const CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
  const valid = () => new URLSearchParams({
    client_id: "app", redirect_uri: "https://app.example/cb", response_type: "code", scope: "openid email",
    nonce: "n-1", code_challenge: CHALLENGE, code_challenge_method: "S256", state: "st",
  });
  const parse = (params: URLSearchParams) => parseAuthorizationRequest(params, clients);
  const errorOf = (params: URLSearchParams): unknown => {
    try {
      parse(params);
    } catch (error) {
      return error;
    }
    return undefined;
  };

  it("a valid request becomes the request the login carries; the request object's values win over the query's", function () {
    expect(parse(valid())).to.deep.equal({
      client_id: "app", redirect_uri: "https://app.example/cb", state: "st", nonce: "n-1", scope: "openid email",
      response_mode: "query", code_challenge: CHALLENGE,
    });
    const params = valid();
    const jwt = new UnsecuredJWT({ nonce: "from-object", max_age: 60, claims: { id_token: { email: null } } }).encode();
    params.set("request", jwt);
    params.set("nonce", "from-query");
    expect(parse(params)).to.include({ nonce: "from-object", max_age: "60", claims: '{"id_token":{"email":null}}', request_object: jwt });
  });

  // Each breaks one check; listed in the order the checks run.
  const untrusted: Array<[string, (p: URLSearchParams) => void, RegExp]> = [
    ["a parameter too long", (p) => p.set("login_hint", "x".repeat(5000)), /login_hint parameter is too long/],
    ["a repeated parameter (two states)", (p) => p.append("state", "again"), /state parameter is given more than once/],
    ["request_uri", (p) => p.set("request_uri", "https://app.example/r"), /request_uri is not supported/],
    ["a request object that is no JWT", (p) => p.set("request", "not-a-jwt"), /not a JWT/],
    ["an unknown client", (p) => p.set("client_id", "nope"), /not registered with hello-mesh/],
    ["an unregistered redirect_uri", (p) => p.set("redirect_uri", "https://evil.example/cb"), /redirect_uri is missing or not registered/],
  ];
  const trusted: Array<[string, (p: URLSearchParams) => void, string, RegExp]> = [
    ["response_mode=fragment", (p) => p.set("response_mode", "fragment"), "invalid_request", /response_mode/],
    ["response_type=id_token", (p) => p.set("response_type", "id_token"), "unsupported_response_type", /response_type=code/],
    ["no openid scope", (p) => p.set("scope", "email"), "invalid_scope", /openid/],
    ["no nonce", (p) => p.delete("nonce"), "invalid_request", /nonce is required/],
    ["no PKCE challenge", (p) => p.delete("code_challenge"), "invalid_request", /code_challenge is required/],
    ["an unknown prompt", (p) => p.set("prompt", "bogus"), "invalid_request", /unknown prompt value/],
    ["max_age that is no number", (p) => p.set("max_age", "soon"), "invalid_request", /max_age/],
    ["claims that are no object", (p) => p.set("claims", "[]"), "invalid_request", /claims must be a JSON object/],
  ];

  it("before the redirect_uri is trusted, the first failing check decides, and its error is never redirected", function () {
    for (const [i, [name, breakIt, said]] of untrusted.entries()) {
      for (const [, breakLater] of untrusted.slice(i + 1)) {
        const params = valid();
        breakIt(params);
        breakLater(params);
        const error = errorOf(params);
        expect(error, name).to.be.instanceOf(UntrustedRedirectError);
        expect((error as Error).message, name).to.match(said);
      }
    }
    // Every untrusted error comes before any a trusted check would raise.
    const params = valid();
    params.set("client_id", "nope");
    params.set("response_type", "token");
    expect(errorOf(params)).to.be.instanceOf(UntrustedRedirectError);
  });

  it("after, the first failing check decides, and its error goes to the registered redirect_uri with state", function () {
    for (const [i, [name, breakIt, code, said]] of trusted.entries()) {
      for (const [, breakLater] of [...trusted.slice(i + 1), [undefined, () => {}] as const]) {
        const params = valid();
        breakIt(params);
        breakLater(params);
        const error = errorOf(params);
        expect(error, name).to.be.instanceOf(RedirectableError);
        const redirectable = error as RedirectableError;
        expect(redirectable.error, name).to.equal(code);
        expect(redirectable.description, name).to.match(said);
        expect(redirectable.request, name).to.deep.equal({ redirect_uri: "https://app.example/cb", state: "st", response_mode: "query" });
      }
    }
  });

  it("the error goes back by form_post when the app asked for it, and in the query when its response_mode was not one to use", function () {
    const formPost = valid();
    formPost.set("response_mode", "form_post");
    formPost.delete("nonce");
    expect((errorOf(formPost) as RedirectableError).request.response_mode).to.equal("form_post");
    const unknown = valid();
    unknown.set("response_mode", "fragment");
    expect((errorOf(unknown) as RedirectableError).request.response_mode).to.equal("query");
  });
});
