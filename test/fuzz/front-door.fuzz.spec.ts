// Bad input at the front door (docs/bad-input.md): every public endpoint and parameter
// — discovery, /jwks, /authorize (GET query and POST form, every OIDC parameter, request
// objects signed, unsigned and broken), /authorize/provider, /upstream/callback/<id>,
// /consent, /token (every client authentication), /userinfo, unknown paths and methods
// — gets random and unicode strings, huge values, repeated parameters, wrong content
// types, invalid percent-encoding and UTF-8, NUL bytes, JSON where a form belongs and
// oversized bodies, over raw HTTP/1.1. Every answer is a 4xx (or the redirect or page the
// protocol prescribes), never a 5xx, comes within a bound, shows no stack trace or
// internal error, escapes what it repeats, and keeps RFC 6749's error shape on the JSON
// endpoints; afterwards an honest request still succeeds. The front door runs in this
// process with a real LoginDriver over real Token, Encryption and Storage mesh servers.

import { createHash, randomBytes } from "node:crypto";
import { expect } from "chai";
import fc from "fast-check";
import { SignJWT } from "jose";
import { Browserless } from "../support/browserless.js";
import { HTML_PROBE, anyString, fuzzParameters, hugeString, tokenLike } from "./arbitraries.js";
import { expectNoInternals } from "./checks.js";
import { type RawHttpAnswer, type RawHttpRequest, rawHttp } from "./raw-http.js";
import { RIG_APPS, type Rig, type RigApp, rigSecret, startRig } from "./rig.js";

/** An answer slower than this is a hang: the rig is local and honest requests take milliseconds. */
const BOUND_MS = 2_000;
/** The front door's limits (docs/bad-input.md). */
const MAX_FORM_BODY = 64 * 1024;

/** RFC 6749 §5.2, RFC 6750 §3.1 and OIDC Core §3.1.2.6: the error codes an app may see. */
const OAUTH_ERRORS = new Set([
  "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type", "invalid_scope",
  "unsupported_response_type", "access_denied", "server_error", "temporarily_unavailable", "interaction_required",
  "login_required", "account_selection_required", "consent_required", "invalid_request_uri", "invalid_request_object",
  "request_not_supported", "request_uri_not_supported", "registration_not_supported", "invalid_token", "insufficient_scope",
]);

const OIDC_PARAMETERS = [
  "response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method",
  "response_mode", "prompt", "max_age", "claims", "login_hint", "provider_hint", "request", "request_uri", "id_token_hint",
  "ui_locales", "display", "acr_values", "registration", "claims_locales",
] as const;

describe("bad input at the front door: clear 4xx answers, never a 5xx (docs/bad-input.md)", function () {
  this.timeout(240_000);
  let rig: Rig;
  let port: number;
  /** A real upstream flow: the state the front door sent the provider and the cookie that carries it. */
  let flow: { state: string; cookie: string };
  /** A real chooser page's sealed flow, and a real consent page's. */
  let chooserFlow: string;
  let consentFlow: string;
  /** Valid JWTs of app-jwt (a client assertion, a request object), for the generators to mangle. */
  let pool: string[];

  before(async function () {
    rig = await startRig();
    port = Number(new URL(rig.issuer).port);
    flow = await upstreamFlow();
    chooserFlow = await sealedField(await send({ method: "GET", target: authorizeTarget(honestParams()) }), "flow");
    consentFlow = await consentPageFlow();
    pool = [await clientAssertion({}), await requestObject({})];
  });
  after(async () => {
    if (process.env.HELLO_FUZZ_STATS) console.log([...STATS].sort().map(([k, v]) => `${v}\t${k}`).join("\n"));
    await rig?.close();
  });
  afterEach(async function () {
    if (rig) await expectHealthy();
  });

  // --- the properties -----------------------------------------------------------------------

  it("any method on any path: a 404 or 405, never a crash", async function () {
    const methods = fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECT", "PROPFIND", "BREW", "get");
    const paths = fc.oneof(
      fc.constantFrom("/", "/.well-known/openid-configuration", "/jwks", "/authorize", "/authorize/provider", "/upstream/callback", "/upstream/callback/dev", "/upstream/callback/nowhere", "/consent", "/token", "/userinfo", "/health"),
      fc.constantFrom("//", "///", "//evil.example/x", "http://[", "http://evil.example/authorize", "*", "/%", "/%zz", "/%00", "/authorize%00", "/../../etc/passwd", "/.well-known/openid-configuration/../jwks", "/token/", "/TOKEN", "/;x", "/?", "/#x", "https://127.0.0.1/jwks"),
      fc.string({ maxLength: 30 }).map((p) => `/${encodeURI(p)}`),
      fc.webPath(),
    );
    const query = fc.option(fc.webQueryParameters(), { nil: undefined });
    await fc.assert(
      fc.asyncProperty(methods, paths, query, async (method, path, q) => {
        const answer = await send({ method, target: q === undefined ? path : `${path}?${q}` });
        checkAnswer(answer, `${method} ${path}`);
      }),
      fuzzParameters("front door paths", 150),
    );
  });

  it("/authorize, GET and POST: every OIDC parameter missing, junk, huge, repeated or of the wrong type", async function () {
    await fc.assert(
      fc.asyncProperty(authorizationRequest(), fc.constantFrom("GET", "POST"), formEncoding(), async (generated, method, encoding) => {
        const pairs = await signRequestObjects(generated);
        const encoded = encodeForm(pairs, encoding);
        const answer = await send(
          method === "GET"
            ? { method, target: Buffer.concat([Buffer.from("/authorize?"), encoded]) }
            : { method, target: "/authorize", headers: [["Content-Type", "application/x-www-form-urlencoded"]], body: encoded },
        );
        checkAnswer(answer, `${method} /authorize`);
        checkAuthorizationAnswer(answer, pairs);
      }),
      fuzzParameters("front door authorize", 200),
    );
  });

  it("/token: every grant and client authentication, with garbage in each part", async function () {
    await fc.assert(
      fc.asyncProperty(tokenRequest(), async ({ headers, pairs: generated, encoding }) => {
        const pairs = await Promise.all(generated.map(async ([k, v]): Promise<[string, string]> => [k, v === ASSERTION ? await clientAssertion({}) : v]));
        const answer = await send({ method: "POST", target: "/token", headers: [["Content-Type", "application/x-www-form-urlencoded"], ...headers], body: encodeForm(pairs, encoding) });
        checkAnswer(answer, "POST /token");
        checkOAuthJson(answer, "POST /token");
      }),
      fuzzParameters("front door token", 200),
    );
  });

  it("/userinfo: garbage in the Authorization header and the access_token form field", async function () {
    const authorization = fc.oneof(
      fc.constant(undefined),
      fc.tuple(fc.constantFrom("Bearer ", "bearer ", "Bearer", "Basic ", "DPoP ", ""), fc.oneof(tokenLike(), anyString())).map(([scheme, token]) => `${scheme}${headerSafe(token)}`),
    );
    await fc.assert(
      fc.asyncProperty(authorization, fc.constantFrom("GET", "POST"), fc.option(anyString(), { nil: undefined }), fc.constantFrom("application/json", "application/jwt", "*/*", ""), async (auth, method, formToken, accept) => {
        const headers: Array<[string, string]> = [...(auth !== undefined ? [["Authorization", auth] as [string, string]] : []), ...(accept ? [["Accept", accept] as [string, string]] : [])];
        const answer = await send(
          method === "GET"
            ? { method, target: "/userinfo", headers }
            : { method, target: "/userinfo", headers: [...headers, ["Content-Type", "application/x-www-form-urlencoded"]], body: encodeForm(formToken === undefined ? [] : [["access_token", formToken]], "standard") },
        );
        checkAnswer(answer, `${method} /userinfo`);
        checkOAuthJson(answer, `${method} /userinfo`);
        if (answer.status === 401) expect(answer.headers["www-authenticate"], "RFC 6750 §3").to.match(/^Bearer error="invalid_token"/);
      }),
      fuzzParameters("front door userinfo", 120),
    );
  });

  it("/upstream/callback/<id>: junk answers from the provider, with junk cookies or the real flow's", async function () {
    const params = fc.array(fc.tuple(fc.constantFrom("state", "code", "iss", "error", "error_description", "session_state", "scope", "x"), fc.oneof(anyString(), fc.constantFrom("login_required", "access_denied", "consent_required"))), { maxLength: 6 });
    await fc.assert(
      fc.asyncProperty(params, fc.boolean(), fc.option(anyString(), { nil: undefined }), fc.constantFrom("dev", "dev2"), async (pairs, real, cookie, at) => {
        const all: Array<[string, string]> = real ? [["state", flow.state], ...pairs.filter(([k]) => k !== "state")] : pairs;
        const headers: Array<[string, string]> = [];
        if (real) headers.push(["Cookie", flow.cookie]);
        else if (cookie !== undefined) headers.push(["Cookie", `hello_flow_${headerSafe(cookie)}=${headerSafe(cookie)}; ${headerSafe(cookie)}`]);
        // The flow began with "dev": its answer also comes to the other provider's path.
        const target = Buffer.concat([Buffer.from(`/upstream/callback/${at}?`), encodeForm(all, "standard")]);
        const answer = await send({ method: "GET", target, headers });
        checkAnswer(answer, `GET /upstream/callback/${at}`);
        if (answer.status >= 300 && answer.status < 400) checkRedirectToApp(answer, `/upstream/callback/${at}`);
        if (real && at === "dev2") expect(answer.status, "an answer at another provider's path").to.equal(400);
      }),
      fuzzParameters("front door callback", 100),
    );
  });

  it("/authorize/provider and /consent: junk forms, with junk or real sealed flows", async function () {
    const field = fc.oneof(anyString(), tokenLike());
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("/authorize/provider", "/consent"),
        fc.oneof(field, fc.constant("real")),
        fc.array(fc.tuple(fc.constantFrom("provider", "decision", "claims", "flow", "x"), fc.oneof(field, fc.constantFrom("dev", "dev2", "allow", "deny", "email", "name"))), { maxLength: 6 }),
        formEncoding(),
        async (path, sealed, pairs, encoding) => {
          const flowValue = sealed === "real" ? (path === "/consent" ? consentFlow : chooserFlow) : sealed;
          const body = encodeForm([["flow", flowValue], ...pairs], encoding);
          const answer = await send({ method: "POST", target: path, headers: [["Content-Type", "application/x-www-form-urlencoded"]], body });
          checkAnswer(answer, `POST ${path}`);
          if (answer.status >= 300 && answer.status < 400) {
            const location = new URL(answer.headers.location!);
            if (location.origin !== new URL(rig.devOp.issuer).origin) checkRedirectToApp(answer, path);
          }
        },
      ),
      fuzzParameters("front door forms", 120),
    );
  });

  it("POST bodies: wrong content types, JSON for a form, invalid UTF-8, lying lengths, oversized", async function () {
    const posts = fc.constantFrom("/authorize", "/authorize/provider", "/consent", "/token", "/userinfo");
    const contentType = fc.constantFrom(
      "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-16", "application/json", "text/plain",
      "multipart/form-data; boundary=x", "application/xml", "", "application/x-www-form-urlencoded\u0000", "*/*",
    );
    const body = fc.oneof(
      { arbitrary: fc.json().map((j) => Buffer.from(j)), weight: 2 },
      { arbitrary: fc.uint8Array({ maxLength: 256 }).map((b) => Buffer.from(b)), weight: 2 },
      { arbitrary: fc.constantFrom(Buffer.from([0xc3, 0x28, 0x3d, 0xff, 0xfe]), Buffer.from("a=%zz&b=%E0%A4%A&c=%00"), Buffer.from("=&=&&==")), weight: 1 },
      { arbitrary: hugeString().map((s) => Buffer.from(s)), weight: 1 },
    );
    const length = fc.constantFrom<RawHttpRequest["length"]>(undefined, undefined, "chunked", 10 * 1024 * 1024);
    await fc.assert(
      fc.asyncProperty(posts, contentType, body, length, async (path, type, b, declared) => {
        const answer = await send({ method: "POST", target: path, headers: type ? [["Content-Type", type]] : [], body: b, ...(declared !== undefined ? { length: declared } : {}) });
        checkAnswer(answer, `POST ${path} (${type}, ${b.length} bytes)`);
        if (b.length > MAX_FORM_BODY || declared === 10 * 1024 * 1024) {
          // (A content type with a control character is refused by Node's parser first: 400.)
          if (type.startsWith("application/x-www-form-urlencoded") && !/[\u0000-\u001f]/.test(type)) {
            expect(answer.status, `POST ${path}: over the body limit`).to.equal(413);
          }
        }
        if (path === "/token" || path === "/userinfo") checkOAuthJson(answer, `POST ${path}`);
      }),
      fuzzParameters("front door bodies", 40),
    );
  });

  // --- fixed examples of what the properties found, kept as regression tests --------------

  describe("fixed examples", function () {
    it("a request target that is no URL (//, http://[) is a 400 or 404, and the server stays up", async function () {
      for (const target of ["//", "http://[", "//:99999/x", "http://a b/"]) {
        const answer = await send({ method: "GET", target });
        expect(answer.status, target).to.be.within(400, 499);
      }
    });

    it("a form body over 64 KiB is 413, whether it says so up front or not", async function () {
      for (const length of [undefined, "chunked"] as const) {
        const answer = await send({ method: "POST", target: "/token", headers: [["Content-Type", "application/x-www-form-urlencoded"]], body: Buffer.alloc(MAX_FORM_BODY + 1, "a"), ...(length ? { length } : {}) });
        expect(answer.status).to.equal(413);
        expect(JSON.parse(answer.text)).to.include({ error: "invalid_request" });
      }
      const declared = await send({ method: "POST", target: "/consent", headers: [["Content-Type", "application/x-www-form-urlencoded"]], body: Buffer.from("a=b"), length: 1024 * 1024 * 1024 });
      expect(declared.status).to.equal(413);
    });

    it("CONNECT is refused with 405 rather than a dropped connection", async function () {
      const answer = await send({ method: "CONNECT", target: "127.0.0.1:443" });
      expect(answer.status).to.equal(405);
    });

    it("claims that is JSON but not an object is invalid_request, sent back to the app", async function () {
      for (const claims of ["null", "1", "[]", '"x"', '{"id_token":5}']) {
        const answer = await send({ method: "GET", target: authorizeTarget({ ...honestParams(), claims, provider_hint: "dev" }) });
        expect(answer.status, claims).to.equal(303);
        const back = new URL(answer.headers.location!);
        expect(back.origin, claims).to.equal("https://basic.example");
        expect(back.searchParams.get("error"), claims).to.equal("invalid_request");
      }
    });

    it("headers over 16 KiB are 431", async function () {
      const answer = await send({ method: "GET", target: "/jwks", headers: [["X-Big", "a".repeat(20 * 1024)]] });
      expect(answer.status).to.equal(431);
    });
  });

  it("after all of it, an honest login still completes", async function () {
    const verifier = randomBytes(32).toString("base64url");
    const params = { ...honestParams(), provider_hint: "dev", code_challenge: createHash("sha256").update(verifier).digest("base64url") };
    const browser = new Browserless();
    const atApp = (u: URL) => u.origin === "https://basic.example";
    let page = await browser.go(new URL(authorizeTarget(params), rig.issuer), {}, atApp);
    page = await browser.submit(browser.form(page, /\/login$/), [["email", "alice@example.com"], ["password", "alice"]], atApp);
    if (!atApp(page.url)) page = await browser.submit(browser.form(page, /^\/consent$/), [["decision", "allow"]], atApp);
    const code = page.url.searchParams.get("code");
    expect(code, "a code for the app").to.be.a("string");
    const token = await fetch(`${rig.issuer}/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${Buffer.from(`app-basic:${rigSecret("app-basic")}`).toString("base64")}` },
      body: new URLSearchParams({ grant_type: "authorization_code", code: code!, redirect_uri: RIG_APPS.basic.redirect_uri, code_verifier: verifier }),
    });
    expect(token.status).to.equal(200);
    const tokens = (await token.json()) as { id_token?: string; access_token: string };
    expect(tokens.id_token).to.be.a("string");
    const userinfo = await fetch(`${rig.issuer}/userinfo`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    expect(userinfo.status).to.equal(200);
    expect(((await userinfo.json()) as { email?: string }).email).to.equal("alice@example.com");
  });

  // --- sending and checking -------------------------------------------------------------------

  function send(request: RawHttpRequest): Promise<RawHttpAnswer> {
    return rawHttp(port, request, BOUND_MS);
  }

  /** The contract every answer keeps, whatever was asked. */
  function checkAnswer(answer: RawHttpAnswer, what: string) {
    if (process.env.HELLO_FUZZ_STATS) noteAnswer(answer, what);
    expect(answer.status, `${what}: never a 5xx`).to.be.below(500);
    expect(answer.status, `${what}: a status`).to.be.at.least(200);
    expectNoInternals(answer.text, what);
    if ((answer.headers["content-type"] ?? "").startsWith("text/html")) {
      expect(answer.text.includes(HTML_PROBE), `${what}: input repeated unescaped into HTML`).to.equal(false);
    }
  }

  /** JSON endpoints answer errors as RFC 6749 §5.2 says: {error, error_description}, no-store. */
  function checkOAuthJson(answer: RawHttpAnswer, what: string) {
    if (answer.status < 400 || answer.status === 431) return;
    // Refused by Node's HTTP parser (a header with a control character) before the front door saw it.
    if (answer.status === 400 && answer.headers["content-type"] === undefined && answer.body.length === 0) return;
    expect(answer.headers["content-type"], `${what}: JSON`).to.match(/^application\/json/);
    const body = JSON.parse(answer.text) as { error?: string; error_description?: string };
    expect(OAUTH_ERRORS.has(body.error ?? ""), `${what}: error ${body.error}`).to.equal(true);
    expect(body.error_description, `${what}: says what is wrong`).to.be.a("string");
    expect(answer.headers["cache-control"], `${what}: no-store`).to.include("no-store");
    if (answer.status === 401) expect(answer.headers["www-authenticate"], `${what}: 401 says how to authenticate`).to.be.a("string");
  }

  /** A redirect from /authorize goes to the provider, or back to the app's registered redirect_uri with an error. */
  function checkAuthorizationAnswer(answer: RawHttpAnswer, pairs: ReadonlyArray<readonly [string, string]>) {
    if (answer.status < 300 || answer.status >= 400) return;
    const location = new URL(answer.headers.location!);
    if (location.origin === new URL(rig.devOp.issuer).origin) {
      expect(location.searchParams.get("code_challenge_method")).to.equal("S256");
      return;
    }
    checkRedirectToApp(answer, `/authorize ${JSON.stringify(pairs).slice(0, 200)}`);
  }

  function checkRedirectToApp(answer: RawHttpAnswer, what: string) {
    const location = new URL(answer.headers.location!);
    const registered = Object.values(RIG_APPS).map((a) => a.redirect_uri);
    expect(registered, `${what}: only to a registered redirect_uri`).to.include(`${location.origin}${location.pathname}`);
    const error = location.searchParams.get("error");
    if (error !== null) expect(OAUTH_ERRORS.has(error), `${what}: error ${error}`).to.equal(true);
    else expect(location.searchParams.get("code"), `${what}: a code or an error`).to.be.a("string");
    expect(location.searchParams.get("iss"), `${what}: RFC 9207 iss`).to.equal(rig.issuer);
  }

  /** Discovery answers, and an honest authorization request still reaches the provider through Token. */
  async function expectHealthy() {
    const discovery = await send({ method: "GET", target: "/.well-known/openid-configuration" });
    expect(discovery.status).to.equal(200);
    expect(JSON.parse(discovery.text).issuer).to.equal(rig.issuer);
    const authorize = await send({ method: "GET", target: authorizeTarget({ ...honestParams(), provider_hint: "dev" }) });
    expect(authorize.status, authorize.text.slice(0, 200)).to.equal(303);
    expect(new URL(authorize.headers.location!).origin).to.equal(new URL(rig.devOp.issuer).origin);
  }

  // --- real flows, to fuzz what lies behind them ---------------------------------------------

  async function upstreamFlow() {
    const answer = await send({ method: "GET", target: authorizeTarget({ ...honestParams(), provider_hint: "dev" }) });
    const state = new URL(answer.headers.location!).searchParams.get("state")!;
    const cookie = answer.headers["set-cookie"]!.split(";")[0]!;
    return { state, cookie };
  }

  async function sealedField(answer: RawHttpAnswer, name: string): Promise<string> {
    const match = new RegExp(`name="${name}" value="([^"]+)"`).exec(answer.text);
    if (!match) throw new Error(`no ${name} field on the page (status ${answer.status})`);
    return match[1]!;
  }

  /** Carol's first login stops at the consent page: its sealed flow. */
  async function consentPageFlow() {
    const browser = new Browserless();
    let page = await browser.go(new URL(authorizeTarget({ ...honestParams(), provider_hint: "dev" }), rig.issuer));
    page = await browser.submit(browser.form(page, /\/login$/), [["email", "carol@example.net"], ["password", "carol"]]);
    return browser.form(page, /^\/consent$/).fields.find(([k]) => k === "flow")![1];
  }

  function honestParams(app: RigApp = "basic"): Record<string, string> {
    return {
      response_type: "code", client_id: RIG_APPS[app].client_id, redirect_uri: RIG_APPS[app].redirect_uri, scope: "openid email",
      state: "st", nonce: "n-0123456789", code_challenge: "c".repeat(43), code_challenge_method: "S256",
    };
  }

  function authorizeTarget(params: Record<string, string>): string {
    return `/authorize?${new URLSearchParams(params)}`;
  }

  function clientAssertion(claims: Record<string, unknown>): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ jti: randomBytes(8).toString("hex"), ...claims })
      .setProtectedHeader({ alg: "ES256", kid: rig.appKey.kid })
      .setIssuer("app-jwt").setSubject("app-jwt").setAudience(`${rig.issuer}/token`).setIssuedAt(now).setExpirationTime(now + 60)
      .sign(rig.appKey.privateKey);
  }

  function requestObject(claims: Record<string, unknown>): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ ...honestParams("jwt"), jti: randomBytes(8).toString("hex"), ...claims })
      .setProtectedHeader({ alg: "ES256", kid: rig.appKey.kid, typ: "oauth-authz-req+jwt" })
      .setIssuer("app-jwt").setAudience(rig.issuer).setIssuedAt(now).setExpirationTime(now + 300)
      .sign(rig.appKey.privateKey);
  }

  // --- generators that need the rig ------------------------------------------------------------

  /** A value for an authorization parameter: honest, junk, huge, JSON of any type, a JWT. */
  function parameterValue(name: string): fc.Arbitrary<string> {
    const special: Record<string, fc.Arbitrary<string>> = {
      claims: fc.oneof(fc.json(), fc.jsonValue().map((v) => JSON.stringify({ id_token: v, userinfo: v })), fc.constantFrom('{"id_token":{"email":null}}', "{", "null", "[]")),
      request: fc.oneof(
        tokenLike(),
        fc.dictionary(fc.constantFrom(...OIDC_PARAMETERS), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 8 }).chain((claims) =>
          fc.constantFrom("signed", "none").map((how) => ({ how, claims })),
        ).map(({ how, claims }) => (how === "none" ? `${b64({ alg: "none" })}.${b64({ ...honestParams("jwt"), ...claims })}.` : `${SIGNED}${JSON.stringify(claims)}`)),
      ),
      prompt: fc.oneof(fc.constantFrom("none", "login", "consent", "select_account", "none login", "login consent", ""), fc.array(fc.constantFrom("none", "login", "consent", "x"), { maxLength: 3 }).map((p) => p.join(" "))),
      max_age: fc.oneof(fc.nat().map(String), fc.constantFrom("-1", "1e3", "0x10", "9999999999", "")),
      provider_hint: fc.constantFrom("dev", "dev2", "nope", ""),
      response_mode: fc.constantFrom("query", "form_post", "fragment", "jwt", ""),
      client_id: fc.constantFrom(...Object.values(RIG_APPS).map((a) => a.client_id), "nobody"),
      redirect_uri: fc.constantFrom(...Object.values(RIG_APPS).map((a) => a.redirect_uri), "https://evil.example/cb", "https://basic.example/callback/../x"),
    };
    return fc.oneof({ arbitrary: special[name] ?? anyString(), weight: 2 }, { arbitrary: anyString({ huge: true }), weight: 1 });
  }

  /** The honest request with some parameters removed, replaced, repeated or added. */
  function authorizationRequest(): fc.Arbitrary<Array<[string, string]>> {
    const edit = fc.constantFrom(...OIDC_PARAMETERS).chain((name) =>
      fc.oneof(
        fc.constant({ name, values: [] as string[] }),
        parameterValue(name).map((v) => ({ name, values: [v] })),
        fc.array(parameterValue(name), { minLength: 2, maxLength: 3 }).map((values) => ({ name, values })),
      ),
    );
    return fc.tuple(fc.constantFrom<RigApp>("basic", "jwt", "public"), fc.array(edit, { maxLength: 5 }), fc.boolean()).chain(([app, edits, hint]) => {
      const params = new Map<string, string[]>(Object.entries({ ...honestParams(app), ...(hint ? { provider_hint: "dev" } : {}) }).map(([k, v]) => [k, [v]]));
      for (const { name, values } of edits) params.set(name, values);
      const pairs = [...params].flatMap(([k, vs]) => vs.map((v): [string, string] => [k, v]));
      return fc.constant(pairs);
    });
  }

  /** Replaces the SIGNED placeholders with request objects validly signed by app-jwt, carrying those claims. */
  async function signRequestObjects(pairs: Array<[string, string]>): Promise<Array<[string, string]>> {
    return Promise.all(pairs.map(async ([k, v]): Promise<[string, string]> => [k, v.startsWith(SIGNED) ? await requestObject(JSON.parse(v.slice(SIGNED.length)) as Record<string, unknown>) : v]));
  }

  function tokenRequest(): fc.Arbitrary<{ headers: Array<[string, string]>; pairs: Array<[string, string]>; encoding: Encoding }> {
    const ids = fc.constantFrom(...Object.values(RIG_APPS).map((a) => a.client_id), "nobody", "");
    const secret = fc.oneof(ids.map(rigSecret), anyString());
    const basic = fc.oneof(
      fc.tuple(ids, secret).map(([id, s]) => `Basic ${Buffer.from(`${id}:${s}`).toString("base64")}`),
      fc.uint8Array({ maxLength: 40 }).map((b) => `Basic ${Buffer.from(b).toString("base64")}`),
      fc.constantFrom("Basic", "Basic ", "Basic %%%", "Basic Og==", "Basic OjpfOg", "Bearer x", "basic YTpi", `Basic ${Buffer.from("%zz:%E0").toString("base64")}`),
      anyString().map((s) => `Basic ${headerSafe(s)}`),
    );
    const field = fc.constantFrom("grant_type", "code", "redirect_uri", "code_verifier", "client_id", "client_secret", "client_assertion", "client_assertion_type", "scope", "refresh_token", "x");
    const value = (name: string): fc.Arbitrary<string> => {
      switch (name) {
        case "grant_type": return fc.oneof(fc.constantFrom("authorization_code", "refresh_token", "client_credentials", "password", "urn:ietf:params:oauth:grant-type:jwt-bearer"), anyString());
        case "client_assertion": return fc.oneof(tokenLike(pool), fc.constantFrom(...pool));
        case "client_assertion_type": return fc.oneof(fc.constant("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), anyString());
        case "client_id": return fc.oneof(ids, anyString());
        case "client_secret": return secret;
        case "code_verifier": return fc.oneof(fc.stringMatching(/^[A-Za-z0-9._~-]{43,128}$/), anyString({ huge: true }));
        default: return anyString({ huge: true });
      }
    };
    const pairs = fc.array(field.chain((name) => value(name).map((v): [string, string] => [name, v])), { maxLength: 8 });
    // Honest client authentication too, so that the grant itself is what meets the garbage.
    const honest = fc.constantFrom<RigApp>("basic", "post", "public", "jwt").map((app): { headers: Array<[string, string]>; pairs: Array<[string, string]> } => {
      const id = RIG_APPS[app].client_id;
      switch (app) {
        case "basic": return { headers: [["Authorization", `Basic ${Buffer.from(`${id}:${rigSecret(id)}`).toString("base64")}`]], pairs: [] };
        case "post": return { headers: [], pairs: [["client_id", id], ["client_secret", rigSecret(id)]] };
        case "public": return { headers: [], pairs: [["client_id", id]] };
        case "jwt": return { headers: [], pairs: [["client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"], ["client_assertion", ASSERTION]] };
      }
    });
    const garbage = fc.option(basic, { nil: undefined }).map((b) => ({ headers: (b === undefined ? [] : [["Authorization", b]]) as Array<[string, string]>, pairs: [] as Array<[string, string]> }));
    return fc
      .tuple(
        fc.oneof(honest, garbage),
        fc.constantFrom<Array<[string, string]>>([["grant_type", "authorization_code"]], []),
        fc.option(fc.oneof(anyString(), fc.stringMatching(/^[A-Za-z0-9_-]{43}$/)), { nil: undefined }),
        pairs,
        formEncoding(),
      )
      .map(([auth, grant, code, rest, encoding]) => ({
        headers: auth.headers,
        pairs: [...grant, ...(code === undefined ? [] : [["code", code] as [string, string]]), ...auth.pairs, ...rest],
        encoding,
      }));
  }
});

// --- helpers without the rig -------------------------------------------------------------------

/** With HELLO_FUZZ_STATS set, how often each kind of answer came: to see what the generators reach. */
const STATS = new Map<string, number>();
function noteAnswer(answer: RawHttpAnswer, what: string) {
  const location = answer.status >= 300 && answer.status < 400 && answer.headers.location ? new URL(answer.headers.location) : undefined;
  const gist = location ? `${location.origin} ${location.searchParams.get("error") ?? ""}` : (/<h1>([^<]*)/.exec(answer.text)?.[1] ?? answer.text.slice(0, 60));
  const key = `${what.split(" (")[0]} ${answer.status} ${gist}`;
  STATS.set(key, (STATS.get(key) ?? 0) + 1);
}
/** Stands for a fresh client assertion of app-jwt, signed when the property runs. */
const ASSERTION = "\u0001assertion";
/** Marks a request object the property signs (with app-jwt's key) before sending. */
const SIGNED = "\u0001signed:";

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

/** A header value cannot carry CR, LF or NUL; everything else goes through as bytes. */
function headerSafe(value: string): string {
  return value.replace(/[\r\n\u0000]/g, "").slice(0, 8 * 1024);
}

type Encoding = "standard" | "raw" | "plus";

function formEncoding(): fc.Arbitrary<Encoding> {
  return fc.constantFrom<Encoding>("standard", "standard", "plus", "raw");
}

/**
 * application/x-www-form-urlencoded, three ways: percent-encoded (standard), with + for
 * spaces (plus), or raw bytes with only & and = escaped, so invalid percent-escapes and
 * invalid UTF-8 reach the parser as they are.
 */
function encodeForm(pairs: ReadonlyArray<readonly [string, string]>, encoding: Encoding): Buffer {
  const encode = (s: string) => (encoding === "raw" ? Buffer.from(s.replace(/[&=#\s%]/g, (c) => (c === "%" ? "%" : `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`)), "utf8") : percentEncode(s, encoding === "plus"));
  const parts: Buffer[] = [];
  pairs.forEach(([k, v], i) => {
    if (i > 0) parts.push(Buffer.from("&"));
    parts.push(encode(k), Buffer.from("="), encode(v));
  });
  return Buffer.concat(parts);
}

/** Percent-encodes the UTF-8 bytes of `s` (a lone surrogate becomes U+FFFD, as a browser sends it). */
function percentEncode(s: string, plus: boolean): Buffer {
  let out = "";
  for (const byte of Buffer.from(s, "utf8")) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_.~-]/.test(c) ? c : plus && c === " " ? "+" : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return Buffer.from(out);
}
