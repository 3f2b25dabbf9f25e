// The acceptance test of observability (issue 5, docs/design.md §2): a run of logins with
// the four components as four processes logging at debug (the most they ever write),
// every line of their stdout and stderr kept, their metrics read as every custodian's
// operator reads them; then every identifier, claim, email, token, code, secret and key
// the run saw is looked for in all of it, raw and encoded, and none is found.
//
// What the run sees is collected from where it passes: every HTTP exchange of the
// browser and the apps (URLs, forms, cookies, headers, JSON, pages), every mesh message
// of a login the test drives as Orchestration (Session Tokens, Access Tokens, records,
// Error Tokens, user ids), the users' claims and passwords, and every custodian's keys.

import { readFileSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import type { ChildProcess } from "node:child_process";
import { expect } from "chai";
import * as oidc from "openid-client";
import { Code, type Interceptor, createClient } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { COMPONENTS, type Component, identityUri } from "../protocol/identity.js";
import { createMeshTransport } from "../../mesh/client.js";
import type { MeshCredentials } from "../../mesh/server.js";
import { pkiPaths } from "../ops/pki/layout.js";
import { type ProtocolMesh, APPS, USERS, UPSTREAM_CLIENT, appRequest, appSecret, browseToApp, startProtocolMesh } from "../../test/support/protocol-mesh.js";
import { Browserless, type Page } from "../../test/support/browserless.js";
import { prepareAuthorization } from "../../test/support/app-client.js";
import { refusedWith } from "../../test/support/refusal.js";
import type { DevUser } from "../dev/devop/dev-op.js";
import { LoginDriver, type LoginOutcome, loginContext } from "../components/orchestration/login-driver.js";
import { TokenService } from "../gen/hello/token/v1/token_service_pb.js";
import { EncryptionService } from "../gen/hello/encryption/v1/encryption_service_pb.js";
import { KeyringAdminService } from "../gen/hello/encryption/v1/keyring_admin_service_pb.js";
import { StorageService } from "../gen/hello/storage/v1/storage_service_pb.js";
import { KeyMaintenanceService } from "../gen/hello/storage/v1/key_maintenance_service_pb.js";
import { KeyWrappingAdminService } from "../gen/hello/storage/v1/key_wrapping_admin_service_pb.js";
import { BuildInfoService } from "../gen/hello/common/v1/build_info_pb.js";
import { MetricsService } from "../gen/hello/common/v1/metrics_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { WALLET_CLAIMS } from "../protocol/claims.js";
import { type Needle, NeedleSet, encodings, search } from "./leak-search.js";
import { parseExposition, seriesSum } from "./metrics/exposition.js";

type App = keyof typeof APPS;

/** What a component wrote: stdout and stderr, line by line. */
const output = new Map<Component, string[]>(COMPONENTS.map((c) => [c, []]));
function captureOutput(component: Component, child: ChildProcess): void {
  for (const stream of [child.stdout!, child.stderr!]) {
    let pending = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      output.get(component)!.push(...lines.filter((l) => l.length > 0));
    });
    stream.on("end", () => {
      if (pending) output.get(component)!.push(pending);
    });
  }
}

/** The metric labels hello-mesh itself may write, by label name. */
function labelVocabulary() {
  // Every service a component serves: a method label can only ever be one of theirs.
  const services = [
    TokenService, EncryptionService, KeyringAdminService, StorageService, KeyMaintenanceService, KeyWrappingAdminService,
    BuildInfoService, MetricsService, Health, ServerReflection,
  ];
  const identities = COMPONENTS.flatMap((c) => [c, `${c}/operator`]);
  return {
    component: new Set(identities),
    target: new Set<string>(COMPONENTS),
    method: new Set([...services.flatMap((s) => s.methods.map((m) => `${s.typeName}/${m.name}`)), "GET", "POST", "HEAD", "other"]),
    code: new Set(["ok", ...Object.values(Code).filter((c): c is Code => typeof c === "number").map((c) => codeToString(c))]),
    route: new Set(["/.well-known/openid-configuration", "/jwks", "/authorize", "/authorize/provider", "/upstream/callback", "/consent", "/token", "/userinfo", "/health", "/healthz/live", "/healthz/ready", "other"]),
    kind: new Set(["code", "access-token", "assertion", "request-object", "other"]), // hello_state_*: what Orchestration's store holds
    status: /^[1-5]\d\d$/,
    le: /^(\d+(\.\d+)?(e[+-]?\d+)?|\+Inf)$/,
  };
}

describe("observability: no identifier, claim, email or token in any log line or metric (issue 5, docs/design.md §2)", function () {
  this.timeout(600_000);
  let mesh: ProtocolMesh;
  const realFetch = globalThis.fetch;
  let needles: NeedleSet;
  const expositions = new Map<string, string>();
  const logins: Array<{ user: string; app: string; path: string; newUser?: boolean }> = [];
  let failures = 0;

  before(async function () {
    mesh = await startProtocolMesh({
      database: "pglite",
      processes: { env: { HELLO_LOG_LEVEL: "debug" }, onSpawn: captureOutput },
    });
    needles = new NeedleSet(publicValues(mesh));
    recordEveryExchange();
    try {
      collectSecrets();
      await driveLogins();
      await driveFailures();
      await driveAsOrchestration();
      await scrapeMetrics();
    } finally {
      globalThis.fetch = realFetch;
      // Stopping drains every process's output, so the logs are complete.
      await mesh.close();
    }
  });
  after(() => {
    globalThis.fetch = realFetch;
  });

  // --- what the run sees --------------------------------------------------------------

  /** Values public by design, which may appear in logs: names and addresses, not data. */
  function publicValues(m: ProtocolMesh): (value: string) => boolean {
    const values = new Set<string>([
      m.issuer, m.devOp.issuer, `${m.issuer}/`, `${m.devOp.issuer}/`,
      ...Object.values(APPS).flatMap((a) => [a.client_id, a.redirect_uri]),
      ...COMPONENTS.flatMap((c) => [c, identityUri(c), identityUri(c, true)]),
      ...WALLET_CLAIMS, "openid email profile", "openid email", "openid profile", "authorization_code", "client_secret_basic",
      "client_secret_post", "private_key_jwt", "form_post", "application/x-www-form-urlencoded", "application/json", "application/jwt",
      UPSTREAM_CLIENT.id, "interaction_required", "login_required", "consent_required", "access_denied", "invalid_client",
      "invalid_grant", "invalid_request", "invalid_token", "the user declined", "Returning you to the app…",
    ]);
    for (const path of ["/authorize", "/token", "/userinfo", "/jwks", "/upstream/callback", "/consent", "/authorize/provider", "/.well-known/openid-configuration"]) {
      values.add(`${m.issuer}${path}`);
    }
    // The two servers' own addresses (endpoints, with no query), and token type names.
    const endpoint = (v: string) => (v.startsWith(`${m.issuer}/`) || v.startsWith(`${m.devOp.issuer}/`)) && !/[?#]/.test(v);
    return (value) => values.has(value) || endpoint(value) || /^hello-[a-z-]+\+jwt$/.test(value);
  }

  function addUrl(url: URL | string, source: string) {
    const parsed = new URL(url);
    for (const [name, value] of parsed.searchParams) needles.add("protocol parameter", value, `${source} ?${name}`);
    for (const [name, value] of new URLSearchParams(parsed.hash.slice(1))) needles.add("protocol parameter", value, `${source} #${name}`);
  }

  function addHeaders(headers: Headers, source: string) {
    const authorization = headers.get("authorization");
    if (authorization?.startsWith("Basic ")) {
      const [id, secret] = Buffer.from(authorization.slice(6), "base64").toString("utf8").split(":").map(decodeURIComponent);
      needles.add("client secret", secret, `${source} basic auth of ${id}`);
    } else if (authorization?.startsWith("Bearer ")) {
      needles.add("token", authorization.slice(7), `${source} bearer`);
    }
    for (const pair of (headers.get("cookie") ?? "").split(";")) needles.add("cookie", pair.split("=").slice(1).join("="), `${source} cookie`);
  }

  /** Wraps fetch: the browser stand-in, openid-client and the dev OP login all go through it. */
  function recordEveryExchange() {
    globalThis.fetch = async (input: string | URL | Request, init?: RequestInit) => {
      const url = input instanceof Request ? input.url : String(input);
      const source = `${init?.method ?? "GET"} ${new URL(url).pathname}`;
      addUrl(url, source);
      addHeaders(new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined)), source);
      const body = init?.body;
      if (typeof body === "string" || body instanceof URLSearchParams) {
        const text = String(body);
        if (text.startsWith("{")) needles.addLeaves("protocol parameter", JSON.parse(text), `${source} body`);
        else for (const [name, value] of new URLSearchParams(text)) needles.add("protocol parameter", value, `${source} body ${name}`);
      }
      const response = await realFetch(input, init);
      const location = response.headers.get("location");
      if (location) addUrl(new URL(location, url), `${source} redirect`);
      for (const line of response.headers.getSetCookie()) {
        needles.add("cookie", line.split(";")[0]!.split("=").slice(1).join("="), `${source} set-cookie`);
      }
      const type = response.headers.get("content-type") ?? "";
      // Discovery documents and key sets are public by design.
      const published = /\/(jwks|\.well-known\/openid-configuration)$/.test(new URL(url).pathname);
      if (/json|jwt|html/.test(type) && !published) {
        const text = await response.clone().text();
        if (type.includes("json")) needles.addLeaves("token", safeJson(text), `${source} response`);
        else if (type.includes("jwt")) needles.add("token", text.trim(), `${source} response`);
        else {
          for (const input of text.matchAll(/<input\b[^>]*\bvalue="([^"]*)"/gi)) needles.add("protocol parameter", unescapeHtml(input[1]!), `${source} page input`);
          for (const link of text.matchAll(/\b(?:action|href)="([^"]*\?[^"]*)"/gi)) addUrl(new URL(unescapeHtml(link[1]!), url), `${source} page link`);
        }
      }
      return response;
    };
  }

  /** Every custodian's secrets, the users' claims and passwords, the clients' secrets. */
  function collectSecrets() {
    for (const user of Object.values(USERS)) {
      for (const field of ["sub", "email", "name", "given_name", "family_name", "picture"] as const) {
        needles.add("user claim", user[field], `dev user ${user.email}`, true);
      }
      needles.add("password", user.password, `dev user ${user.email}`, true);
    }
    for (const app of Object.values(APPS)) needles.add("client secret", appSecret(app.client_id), app.client_id);
    needles.add("client secret", UPSTREAM_CLIENT.secret, "upstream client");
    const configs = mesh.deployment.configs;
    const text = (file: string) => readFileSync(file, "utf8").trim();
    const orchestration = configs.orchestration as Extract<typeof configs.orchestration, { component: "orchestration" }>;
    const token = configs.token as Extract<typeof configs.token, { component: "token" }>;
    const encryption = configs.encryption as Extract<typeof configs.encryption, { component: "encryption" }>;
    const storage = configs.storage as Extract<typeof configs.storage, { component: "storage" }>;
    needles.add("key", text(orchestration.keys.lookup), "lookup key");
    needles.add("key", text(orchestration.keys.cookie), "cookie key");
    for (const [id, key] of Object.entries((JSON.parse(text(encryption.keys.keyring)) as { keys: Record<string, string> }).keys)) {
      needles.add("key", key, `record key ${id}`);
    }
    for (const file of [token.keys.signing, storage.keys.signing]) {
      for (const jwk of (JSON.parse(text(file)) as { keys: Array<Record<string, string>> }).keys) {
        for (const part of ["d", "p", "q", "dp", "dq", "qi", "k"]) needles.add("key", jwk[part], `private key ${jwk.kid} ${part}`);
      }
    }
    for (const c of COMPONENTS) {
      const p = pkiPaths(mesh.deployment.certs, c);
      for (const file of [p.key, p.operatorKey]) {
        const pem = text(file).split("\n").filter((l) => !l.startsWith("-----"));
        for (const line of pem) needles.add("key", line, `${file}`);
      }
    }
  }

  // --- logins through the front door ---------------------------------------------------

  /** A person at the browser: signs in at the dev OP and answers the consent page. */
  async function browse(url: URL, app: App, user: DevUser, decision: "allow" | "deny" = "allow"): Promise<Page> {
    return (await browseToApp(url, app, user, { decision })).page;
  }

  async function prepare(app: App, extra: Record<string, string> = {}) {
    const prepared = await prepareAuthorization(mesh.issuer, app, extra);
    for (const value of Object.values(prepared.checks)) needles.add("protocol parameter", value, `${app} checks`);
    return prepared;
  }

  async function frontDoorLogin(app: App, user: DevUser, extra: Record<string, string> = {}) {
    const { config, checks, url } = await prepare(app, extra);
    const page = await browse(url, app, user);
    let callback: URL | Request = page.url;
    if (extra.response_mode === "form_post") {
      const form = new Browserless().form(page, /callback$/);
      for (const [, value] of form.fields) needles.add("protocol parameter", value, "form_post field");
      callback = new Request(form.action, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(form.fields) });
    }
    const tokens = await oidc.authorizationCodeGrant(config, callback, checks);
    needles.add("token", tokens.id_token, "ID Token");
    needles.add("token", tokens.access_token, "access token");
    const claims = tokens.claims()!;
    needles.add("token claim", claims.sub, `${app}'s directed sub for ${user.email}`);
    const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
    expect(info.email).to.equal(user.email);
    // Userinfo also as a Token-signed JWT.
    await fetch(`${mesh.issuer}/userinfo`, { headers: { authorization: `Bearer ${tokens.access_token}`, accept: "application/jwt" } });
    logins.push({ user: user.email, app: APPS[app]!.client_id, path: "front door" });
    return claims;
  }

  async function driveLogins() {
    const aliceA = await frontDoorLogin("a", USERS.alice); // new user, consent
    const again = await frontDoorLogin("a", USERS.alice); // returning, no consent
    expect(again.sub).to.equal(aliceA.sub);
    const aliceB = await frontDoorLogin("b", USERS.alice); // returning user, new app: consent
    expect(aliceB.sub).to.not.equal(aliceA.sub);
    await frontDoorLogin("post", USERS.bob, { response_mode: "form_post" }); // new user, form_post
    await frontDoorLogin("pub", USERS.bob, { login_hint: USERS.bob.email }); // a public client, and an email in login_hint
  }

  // --- failures, so that error paths log too --------------------------------------------

  /** POST /token as `app` would, with `secret` and `verifier`. */
  function redeem(app: App, code: string, verifier: string, secret = appSecret(APPS[app]!.client_id)) {
    return fetch(`${mesh.issuer}/token`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        authorization: `Basic ${Buffer.from(`${APPS[app]!.client_id}:${secret}`).toString("base64")}`,
      },
      body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: APPS[app]!.redirect_uri, code_verifier: verifier }),
    });
  }

  async function driveFailures() {
    // A code, then: a wrong client secret (the code survives), a wrong PKCE verifier (it does not), a replay.
    const { checks, url } = await prepare("a");
    const page = await browse(url, "a", USERS.alice);
    const code = page.url.searchParams.get("code")!;
    const wrongSecret = "not-the-secret-0123456789";
    needles.add("client secret", wrongSecret, "a wrong client secret");
    expect((await redeem("a", code, checks.pkceCodeVerifier, wrongSecret)).status).to.equal(401);
    const wrongVerifier = oidc.randomPKCECodeVerifier();
    needles.add("protocol parameter", wrongVerifier, "a wrong code_verifier");
    const pkce = await redeem("a", code, wrongVerifier);
    expect(pkce.status).to.equal(400);
    expect(((await pkce.json()) as { error: string }).error).to.equal("invalid_grant");
    expect((await redeem("a", code, checks.pkceCodeVerifier)).status).to.equal(400);
    failures += 3;

    // An unknown client (an error page, never a redirect), with an email in login_hint.
    const unknown = new URL(`${mesh.issuer}/authorize`);
    unknown.search = new URLSearchParams({
      client_id: "app-nobody-knows", redirect_uri: "https://evil.example/cb", response_type: "code", scope: "openid",
      nonce: oidc.randomNonce(), state: oidc.randomState(), login_hint: "mallory@example.org",
      code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()), code_challenge_method: "S256",
    }).toString();
    needles.add("user claim", "mallory@example.org", "login_hint of an unknown client's request", true);
    expect((await new Browserless().go(unknown)).status).to.equal(400);
    // An access token nobody issued; a user who declines consent; prompt=none without a session.
    expect((await fetch(`${mesh.issuer}/userinfo`, { headers: { authorization: `Bearer ${oidc.randomState()}${oidc.randomState()}` } })).status).to.equal(401);
    const declined = await browse((await prepare("b")).url, "b", USERS.carol, "deny");
    expect(declined.url.searchParams.get("error")).to.equal("access_denied");
    const silent = await browse((await prepare("b", { prompt: "none" })).url, "b", USERS.carol);
    expect(silent.url.searchParams.get("error")).to.equal("login_required");
    failures += 4;
  }

  // --- a login driven as Orchestration, to see the mesh's own messages ---------------------

  async function driveAsOrchestration() {
    const p = pkiPaths(mesh.deployment.certs, "orchestration");
    const credentials: MeshCredentials = { certPem: readFileSync(p.cert, "utf8"), keyPem: readFileSync(p.key, "utf8") };
    const capture: Interceptor = (next) => async (req) => {
      needles.addLeaves("mesh message field", req.message, `${req.method.name} request`);
      const res = await next(req);
      if (!res.stream) needles.addLeaves("mesh message field", res.message, `${req.method.name} response`);
      return res;
    };
    const transport = (target: "token" | "encryption") =>
      createMeshTransport({ target, baseUrl: `https://127.0.0.1:${mesh.deployment.configs[target].listen.port}`, credentials, trust: mesh.trust, interceptors: [capture] });
    const token = createClient(TokenService, transport("token"));
    const encryption = createClient(EncryptionService, transport("encryption"));
    const driver = new LoginDriver({ issuer: mesh.issuer, token, encryption, lookupKey: mesh.lookupKey, tokenKeys: mesh.tokenKeys });

    // Alice (an existing user) to a third app, and Carol (who has a wallet but no release).
    for (const [user, app] of [[USERS.alice, "es"], [USERS.carol, "ed"]] as const) {
      const request = appRequest(app);
      needles.addLeaves("protocol parameter", request, `${app} request`);
      const started = await driver.start(request, "dev");
      const upstream = await mesh.upstreamLogin(user, started.upstreamNonce);
      needles.addLeaves("token", upstream, "upstream result");
      const first: LoginOutcome = await driver.continue(started.sessionToken, loginContext(request, Date.now()), upstream);
      needles.addLeaves("mesh message field", first, "login outcome");
      expect(first.kind).to.equal("consent");
      if (first.kind !== "consent") continue;
      const done = await driver.consent(first.state, Object.keys(first.wallet.claims), first.newUser);
      needles.addLeaves("token", done, "minted");
      logins.push({ user: user.email, app: APPS[app]!.client_id, path: "as Orchestration" });

      // The same OP ID Token in another session: Token refuses it (the nonce is another's).
      const replay = await driver.start(appRequest(app), "dev");
      await refusedWith(driver.continue(replay.sessionToken, loginContext(request, Date.now()), upstream), "a replayed OP ID Token");
      failures++;
    }
    // An Access Token nobody minted, at Encryption; Token's certificate at Storage.
    const forged = await refusedWith(encryption.readRecord({ accessToken: `eyJhbGciOiJFUzI1NiJ9.${Buffer.from('{"hash":"x"}').toString("base64url")}.AAAA` }));
    expect(forged.code).to.be.oneOf([Code.Unauthenticated, Code.InvalidArgument]);
    const storageAsToken = await refusedWith(mesh.storage("token").readRecord({ accessToken: "eyJhbGciOiJub25lIn0.e30." }));
    expect(storageAsToken.code).to.equal(Code.PermissionDenied);
    failures += 2;
  }

  // --- the metrics, as every custodian's operator reads them --------------------------------

  async function scrapeMetrics() {
    const operator = (c: Component): MeshCredentials => {
      const p = pkiPaths(mesh.deployment.certs, c);
      return { certPem: readFileSync(p.operatorCert, "utf8"), keyPem: readFileSync(p.operatorKey, "utf8") };
    };
    for (const [i, component] of COMPONENTS.entries()) {
      // Each component read by the next custodian's operator: metrics are everyone's.
      const reader = COMPONENTS[(i + 1) % COMPONENTS.length]!;
      const url = `https://127.0.0.1:${mesh.deployment.configs[component].listen.port}`;
      const metrics = createClient(MetricsService, createMeshTransport({ target: component, baseUrl: url, credentials: operator(reader), trust: mesh.trust }));
      expositions.set(`GetMetrics ${component} (read by ${reader}/operator)`, (await metrics.getMetrics({})).exposition);
      expositions.set(`GET /metrics ${component} (read by ${component}/operator)`, await scrape(url, component, operator(component)));
    }
  }

  function scrape(url: string, component: Component, credentials: MeshCredentials): Promise<string> {
    return new Promise((resolve, reject) => {
      const session = http2.connect(url, {
        ca: readFileSync(pkiPaths(mesh.deployment.certs, component).caCert, "utf8"),
        cert: credentials.certPem, key: credentials.keyPem, checkServerIdentity: () => undefined,
      });
      session.on("error", reject);
      const stream = session.request({ ":path": "/metrics" });
      let body = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => (body += chunk));
      stream.on("end", () => (session.close(), resolve(body)));
      stream.on("error", reject);
    });
  }

  // --- the checks ------------------------------------------------------------------------

  function haystacks(): Map<string, string> {
    const all = new Map<string, string>();
    for (const [component, lines] of output) all.set(`log ${component}`, lines.join("\n"));
    for (const [name, text] of expositions) all.set(`metrics ${name}`, text);
    return all;
  }

  it("captured every component's output at debug, as structured JSON lines with call lines and trace ids", function () {
    for (const [component, lines] of output) {
      expect(lines.length, component).to.be.greaterThan(10);
      const parsed = lines.map((line) => {
        try {
          return JSON.parse(line) as { component?: string; level?: string; rpc?: { method: string }; trace_id?: string };
        } catch {
          throw new Error(`${component} wrote a line that is not a JSON log line: ${line.slice(0, 200)}`);
        }
      });
      expect(parsed.every((l) => l.component === component), component).to.equal(true);
      expect(parsed.some((l) => l.level === "debug" && l.rpc && l.trace_id), `${component} debug call lines`).to.equal(true);
    }
    const token = output.get("token")!.map((l) => JSON.parse(l) as { rpc?: { method: string; code: string; side: string } });
    expect(token.some((l) => l.rpc?.side === "server" && l.rpc.method === "hello.token.v1.TokenService/CreateSession" && l.rpc.code === "ok")).to.equal(true);
    const orchestration = output.get("orchestration")!.map((l) => JSON.parse(l) as { http?: { route: string; status: number; outcome?: string } });
    expect(orchestration.some((l) => l.http?.route === "/token" && l.http.status === 401 && l.http.outcome === "invalid_client")).to.equal(true);
    expect(orchestration.some((l) => l.http?.route === "/token" && l.http.status === 400 && l.http.outcome === "invalid_grant")).to.equal(true);
    // One trace from the front door through the mesh as far as Encryption: a /authorize
    // line's trace id is on Token's CreateSession line, and an /upstream/callback's on
    // Encryption's ReadRecord line. It stops there (docs/design.md §2): each call Encryption
    // makes to Storage is a trace of its own, so no trace id on Storage's lines is on any
    // other line of the login, and no two of Encryption's calls to Storage share one.
    type Line = { http?: { route: string }; rpc?: { side: string; method: string; peer?: string }; trace_id?: string };
    const linesOf = (c: Component) => output.get(c)!.map((l) => JSON.parse(l) as Line);
    const traced = (route: string) => linesOf("orchestration").filter((l) => l.http?.route === route).map((l) => l.trace_id!);
    const servedIn = (c: Component, method: string) => new Set(linesOf(c)
      .filter((l) => l.rpc?.side === "server" && l.rpc.method === method).map((l) => l.trace_id));
    expect(traced("/authorize").some((id) => servedIn("token", "hello.token.v1.TokenService/CreateSession").has(id))).to.equal(true);
    expect(traced("/upstream/callback").some((id) => servedIn("encryption", "hello.encryption.v1.EncryptionService/ReadRecord").has(id))).to.equal(true);
    const atStorage = new Set(linesOf("storage").flatMap((l) => (l.rpc?.side === "server" && l.rpc.peer === "encryption" && l.trace_id ? [l.trace_id] : [])));
    const upstreamOfStorage = new Set([
      ...linesOf("orchestration"),
      ...linesOf("token"),
      ...linesOf("encryption").filter((l) => l.rpc?.side === "server"),
    ].map((l) => l.trace_id));
    expect(atStorage.size, "Storage's call lines carry trace ids").to.be.greaterThan(5);
    expect([...atStorage].filter((id) => upstreamOfStorage.has(id)), "trace ids of the login seen at Storage").to.deep.equal([]);
    // Encryption's calls to Storage: its services (records, key maintenance), and the health checks along the edge.
    const toStorage = linesOf("encryption")
      .filter((l) => l.rpc?.side === "client" && (l.rpc.method.startsWith("hello.storage.v1.") || (l.rpc.method === "grpc.health.v1.Health/Check" && l.rpc.peer === "storage")))
      .map((l) => l.trace_id!);
    expect(new Set(toStorage).size, "one trace per call to Storage").to.equal(toStorage.length);
    expect([...atStorage].every((id) => toStorage.includes(id)), "Storage's traces begin at Encryption").to.equal(true);
    const lines = [...output.values()].reduce((n, l) => n + l.length, 0);
    console.log(`      ${lines} log lines (${COMPONENTS.map((c) => `${c} ${output.get(c)!.length}`).join(", ")}); ${logins.length} logins, ${failures} failures`);
  });

  it("the metrics hold the expected series, for every component, read as every custodian's operator", function () {
    const value = seriesSum;
    const of = (c: Component) => expositions.get(`GetMetrics ${c} (read by ${COMPONENTS[(COMPONENTS.indexOf(c) + 1) % 4]}/operator)`)!;
    const tokenMethod = (m: string) => `hello.token.v1.TokenService/${m}`;
    expect(value(of("token"), "hello_mesh_server_requests_total", { component: "token", method: tokenMethod("CreateSession"), code: "ok" })).to.be.at.least(logins.length);
    expect(value(of("token"), "hello_mesh_server_requests_total", { component: "token", method: tokenMethod("MintIdToken"), code: "ok" })).to.be.at.least(logins.length);
    expect(value(of("token"), "hello_mesh_server_errors_total", { component: "token", method: tokenMethod("AuthorizeSubject") })).to.be.at.least(2);
    expect(value(of("orchestration"), "hello_mesh_client_requests_total", { component: "orchestration", target: "token", method: tokenMethod("CreateSession"), code: "ok" })).to.be.at.least(5);
    expect(value(of("orchestration"), "hello_http_requests_total", { route: "/token", method: "POST", status: "200" })).to.be.at.least(5);
    expect(value(of("orchestration"), "hello_http_requests_total", { route: "/token", status: "401" })).to.equal(1);
    expect(value(of("orchestration"), "hello_http_requests_total", { route: "/authorize", status: "400" })).to.equal(1);
    expect(value(of("orchestration"), "hello_http_request_duration_seconds_count", { route: "/upstream/callback" })).to.be.at.least(5);
    expect(value(of("encryption"), "hello_mesh_client_requests_total", { component: "encryption", target: "storage", code: "ok" })).to.be.greaterThan(0);
    expect(value(of("encryption"), "hello_mesh_server_errors_total", { method: "hello.encryption.v1.EncryptionService/ReadRecord" })).to.equal(1);
    expect(value(of("storage"), "hello_mesh_server_requests_total", { method: "hello.storage.v1.StorageService/CreateRecord", code: "ok" })).to.be.at.least(4);
    expect(value(of("storage"), "hello_mesh_server_errors_total", { method: "hello.storage.v1.StorageService/ReadRecord", code: "permission_denied" })).to.equal(1);
    for (const c of COMPONENTS) {
      expect(value(of(c), "process_resident_memory_bytes", {}), c).to.be.greaterThan(0);
      expect(parseExposition(of(c)).some((s) => s.name === "nodejs_eventloop_lag_seconds"), c).to.equal(true);
      expect(value(of(c), "hello_mesh_server_requests_total", { component: c, method: "grpc.health.v1.Health/Check", code: "ok" }), c).to.be.greaterThan(0);
    }
    const hello = [...expositions.values()].flatMap(parseExposition).filter((s) => s.name.startsWith("hello_"));
    console.log(`      ${expositions.size} scrapes, ${new Set(hello.map((s) => `${s.name}${JSON.stringify(s.labels)}`)).size} distinct hello_* series`);
  });

  it("every label of every hello_* series is a name from a fixed vocabulary", function () {
    const vocabulary = labelVocabulary();
    let checked = 0;
    for (const [name, text] of expositions) {
      for (const s of parseExposition(text).filter((x) => x.name.startsWith("hello_"))) {
        for (const [label, value] of Object.entries(s.labels)) {
          const allowed = vocabulary[label as keyof typeof vocabulary];
          expect(allowed, `${name}: unexpected label ${label} on ${s.name}`).to.not.equal(undefined);
          const ok = allowed instanceof RegExp ? allowed.test(value) : allowed.has(value);
          expect(ok, `${name}: ${s.name} ${label}="${value}"`).to.equal(true);
          checked++;
        }
      }
    }
    expect(checked).to.be.greaterThan(1000);
  });

  it("no identifier, claim, email, token, code, secret or key the run saw appears in any log line or metric, raw or encoded", function () {
    const all = needles.values();
    const categories = needles.byCategory();
    // The search covers what it must: each kind of value the run handled.
    for (const category of ["user claim", "password", "client secret", "key", "token", "token claim", "protocol parameter", "cookie", "mesh message field"]) {
      expect(categories[category] ?? 0, category).to.be.greaterThan(0);
    }
    if (process.env.HELLO_LEAK_LIST) for (const n of all) console.log(`${n.category}\t${n.source}\t${n.value.slice(0, 60)}`);
    const mustHave = (what: string, value: string) => expect(all.some((n) => n.value === value), what).to.equal(true);
    mustHave("alice's email", USERS.alice.email);
    mustHave("bob's upstream sub", USERS.bob.sub);
    expect(all.some((n) => n.source.endsWith("claims.uid")), "a user id").to.equal(true);
    expect(all.some((n) => n.source.endsWith("claims.directed_id")), "a directed id").to.equal(true);
    // Every kind of internal token and record the protocol passes around.
    const typs = new Set(all.map((n) => typOf(n.value)).filter(Boolean));
    for (const typ of ["session", "access", "error", "subject-record", "wallet-record", "release-record", "receipt"]) {
      expect(typs.has(`hello-${typ}+jwt`), typ).to.equal(true);
    }

    const hay = haystacks();
    const { findings, comparisons } = search(all, hay);
    const bytes = [...hay.values()].reduce((n, t) => n + t.length, 0);
    console.log(`      searched ${all.length} values (${Object.entries(categories).map(([k, v]) => `${v} ${k}`).join(", ")}), each in up to ${Math.max(...all.map((n) => encodings(n.value).length))} forms (raw and encoded): ${comparisons} searches over ${hay.size} sources, ${bytes} characters`);
    // HELLO_LEAK_OUTPUT=<file> keeps what was searched, to read by eye.
    if (process.env.HELLO_LEAK_OUTPUT) writeFileSync(process.env.HELLO_LEAK_OUTPUT, [...hay].map(([name, text]) => `==> ${name}\n${text}\n`).join("\n"));
    expect(findings.map((f) => `${f.needle.category} from ${f.needle.source} (${f.encoding}) in ${f.haystack}: ${f.excerpt}`)).to.deep.equal([]);
  });

  it("honest twin: the same search finds a value planted in a log line or a label, in every encoding", function () {
    const sample: Needle[] = [];
    for (const category of Object.keys(needles.byCategory())) sample.push(needles.values().find((n) => n.category === category)!);
    const someLine = output.get("token")!.find((l) => l.includes('"rpc"'))!;
    for (const needle of sample) {
      for (const form of encodings(needle.value)) {
        const planted = new Map(haystacks());
        const line = `${someLine.slice(0, -1)},"planted":"${form.text}"}`;
        planted.set("log token", `${planted.get("log token")}\n${line}`);
        planted.set("metrics planted", `hello_http_requests_total{route="${form.text}"} 1`);
        const { findings } = search([needle], planted);
        const where = new Set(findings.map((f) => f.haystack));
        expect(where.has("log token"), `${needle.category} ${form.name} in a log line`).to.equal(true);
        expect(where.has("metrics planted"), `${needle.category} ${form.name} in a label`).to.equal(true);
      }
    }
    // And an email address whose case a log changed.
    const shouting = search([{ category: "user claim", value: USERS.alice.email, source: "twin" }], new Map([["log", USERS.alice.email.toUpperCase()]]));
    expect(shouting.findings).to.have.length(1);
  });
});

/** The `typ` of a compact JWS, or undefined. */
function typOf(value: string): string | undefined {
  if (!/^eyJ[^.]*\.[^.]+\.[^.]*$/.test(value)) return undefined;
  try {
    return (JSON.parse(Buffer.from(value.split(".")[0]!, "base64url").toString("utf8")) as { typ?: string }).typ;
  } catch {
    return undefined;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function unescapeHtml(text: string): string {
  return text.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}
