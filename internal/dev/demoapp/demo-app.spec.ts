import { expect } from "chai";
import { createServer as createHttpServer, request as httpRequest } from "node:http";

import { DEFAULT_DEV_USERS, startDevOp, type DevOp, type DevUser } from "../devop/dev-op.js";
import { startDemoApp, type DemoApp } from "./demo-app.js";
import { freePort } from "../../../test/support/free-port.js";

// The demo app against a real OpenID Provider (the development OP), driven like a browser
// would: fetch, a cookie jar, following redirects, submitting forms.

const CLIENT_ID = "hello-demo-app";
const CLIENT_SECRET = "demo-secret-0123456789";
const alice = DEFAULT_DEV_USERS[0]!;

describe("demo app", function () {
  let op: DevOp;
  let app: DemoApp; // response_mode=query (the default)
  let formPostApp: DemoApp;

  before(async function () {
    // The apps start first, while nothing listens at the issuer yet: discovery fails at
    // start and is retried at the first /login. The OP then starts with their redirect_uris.
    const opPort = await freePort();
    const issuer = `http://localhost:${opPort}`;
    app = await startDemoApp({ issuer, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
    formPostApp = await startDemoApp({ issuer, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, responseMode: "form_post" });
    op = await startDevOp({
      port: opPort,
      clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [app.redirectUri, formPostApp.redirectUri] }],
    });
  });
  after(async function () {
    await Promise.all([app?.close(), formPostApp?.close(), op?.close()]);
  });

  it("serves /health", async function () {
    const response = await fetch(`${app.url}/health`);
    expect(response.status).to.equal(200);
    expect(await response.text()).to.equal("ok");
  });

  it("logs in at the OP (response_mode=query) and shows the ID Token's claims, then logs out", async function () {
    const browser = new Browser();
    const start = await browser.get(app.url);
    expect(start.status).to.equal(200);
    expect(start.html).to.include(`<html lang="en">`).and.include("hello-mesh demo app").and.include(`href="/login"`);
    expect(start.html).to.include("Log in with hello-mesh").and.not.include(alice.email);

    const loginPage = await browser.get(`${app.url}/login`);
    expect(loginPage.url.origin).to.equal(op.issuer);
    const authorize = new URL(loginPage.trail[1]!);
    expect(authorize.origin + authorize.pathname).to.equal(`${op.issuer}/auth`);
    expect(Object.fromEntries(authorize.searchParams)).to.include({
      client_id: CLIENT_ID,
      response_type: "code",
      redirect_uri: app.redirectUri,
      scope: "openid email profile",
      code_challenge_method: "S256",
    });
    expect(authorize.searchParams.get("nonce")).to.have.length.greaterThan(20);
    expect(authorize.searchParams.get("state")).to.have.length.greaterThan(20);
    expect(authorize.searchParams.has("response_mode")).to.equal(false);

    const home = await browser.submit(loginPage, "login", { email: alice.email, password: alice.password });
    // Back through /callback (with the RFC 9207 iss parameter) to the app's home page.
    const callback = home.trail.map((u) => new URL(u)).find((u) => u.href.startsWith(app.redirectUri));
    expect(callback?.searchParams.get("iss")).to.equal(op.issuer);
    expect(home.url.href).to.equal(`${app.url}/`);
    expect(home.status).to.equal(200);
    expect(home.html).to.include(alice.email).and.include(alice.name).and.include(alice.sub);
    expect(home.html).to.match(/<dt>iss<\/dt><dd>http:\/\/localhost:\d+<\/dd>/);
    expect(home.html).to.include(`<code>RS256</code>`);
    expect(home.html).to.include(`action="/logout"`).and.not.include("Log in with hello-mesh");
    expect(browser.cookie(app.url, "demo_login")).to.equal(undefined); // the pending login is cleared

    const out = await browser.submit(home, undefined, {});
    expect(out.url.href).to.equal(`${app.url}/`);
    expect(out.html).to.include("Log in with hello-mesh").and.not.include(alice.email);
  });

  it("logs in with response_mode=form_post, posting the OP's auto-submitting form", async function () {
    const browser = new Browser();
    const loginPage = await browser.get(`${formPostApp.url}/login`);
    expect(new URL(loginPage.trail[1]!).searchParams.get("response_mode")).to.equal("form_post");

    const formPage = await browser.submit(loginPage, "login", { email: alice.email, password: alice.password });
    // No browser, so no script: the OP's page is a form to post to the redirect_uri.
    expect(formPage.status).to.equal(200);
    const form = parseForm(formPage.html);
    expect(form.action).to.equal(formPostApp.redirectUri);
    expect(form.fields).to.have.keys("code", "state", "iss");

    const home = await browser.submit(formPage, undefined, {});
    expect(home.url.href).to.equal(`${formPostApp.url}/`);
    expect(home.html).to.include(alice.email).and.include(alice.name);
  });

  it("refuses a callback whose state was altered, and starts no session", async function () {
    const browser = new Browser();
    const loginPage = await browser.get(`${app.url}/login`);
    // Log in at the OP but stop before the redirect back to the app is followed.
    const atCallback = await browser.submit(loginPage, "login", { email: alice.email, password: alice.password }, (url) =>
      url.href.startsWith(app.redirectUri),
    );
    const genuine = atCallback.url;
    expect(genuine.searchParams.get("code")).to.be.a("string");
    const forged = new URL(genuine);
    forged.searchParams.set("state", "not-the-state-the-app-sent");

    const refused = await browser.get(forged);
    expect(refused.status).to.equal(400);
    expect(refused.url.href).to.equal(forged.href); // no redirect into the app
    expect(refused.html).to.include("Sign-in failed").and.include("state").and.include(`href="/"`);
    expect(refused.html).to.not.include(alice.email);
    expect(browser.cookie(app.url, "demo_session")).to.equal(undefined);
    expect((await browser.get(app.url)).html).to.include("Log in with hello-mesh").and.not.include(alice.email);

    // The pending login was used up by the forged response: the genuine one cannot follow.
    const replay = await browser.get(genuine);
    expect(replay.status).to.equal(400);
    expect(replay.html).to.include("Sign-in not recognised");
    expect(browser.cookie(app.url, "demo_session")).to.equal(undefined);
  });

  it("says so when the user declines at the OP (error=access_denied)", async function () {
    const browser = new Browser();
    const loginPage = await browser.get(`${app.url}/login`);
    const declined = await browser.submit(loginPage, "abort", {}); // the OP's "Cancel" button
    const callback = declined.trail.map((u) => new URL(u)).find((u) => u.href.startsWith(app.redirectUri));
    expect(callback?.searchParams.get("error")).to.equal("access_denied");
    expect(declined.url.href.startsWith(app.redirectUri)).to.equal(true);
    expect(declined.status).to.equal(403);
    expect(declined.html).to.include("You declined to sign in").and.include("access_denied").and.include(`href="/"`);
    expect(browser.cookie(app.url, "demo_session")).to.equal(undefined);
  });

  it("refuses a callback when no login was started in this browser", async function () {
    const browser = new Browser();
    const page = await browser.get(`${app.redirectUri}?code=abc&state=def&iss=${encodeURIComponent(op.issuer)}`);
    expect(page.status).to.equal(400);
    expect(page.html).to.include("Sign-in not recognised");
  });

  it("explains when the OP cannot be reached", async function () {
    const lonely = await startDemoApp({ issuer: `http://localhost:${await freePort()}`, clientId: "x", clientSecret: "y" });
    try {
      const page = await new Browser().get(`${lonely.url}/login`);
      expect(page.status).to.equal(502);
      expect(page.html).to.include("cannot be reached").and.include(`href="/login"`);
    } finally {
      await lonely.close();
    }
  });

  it("refuses an ID Token whose signature does not verify against the OP's JWKS", async function () {
    // A proxy in front of the OP (which it names as the issuer) that corrupts the ID Token's
    // signature in the token response: everything else about the token is genuine.
    const port = await freePort();
    const proxied = await startDemoApp({ issuer: `http://localhost:${port}`, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
    const realOp = await startDevOp({
      issuer: `http://localhost:${port}`,
      clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [proxied.redirectUri] }],
    });
    const proxy = await startProxy(port, realOp.url, (path, body) => {
      if (path !== "/token") return body;
      const tokens = JSON.parse(body) as { id_token: string };
      const [header, payload, signature = ""] = tokens.id_token.split(".");
      const flipped = signature.slice(0, 10) + (signature[10] === "A" ? "B" : "A") + signature.slice(11);
      return JSON.stringify({ ...tokens, id_token: `${header}.${payload}.${flipped}` });
    });
    try {
      const browser = new Browser();
      const loginPage = await browser.get(`${proxied.url}/login`);
      const refused = await browser.submit(loginPage, "login", { email: alice.email, password: alice.password });
      expect(refused.status).to.equal(400);
      expect(refused.html).to.include("Sign-in failed").and.include("signature").and.not.include(alice.email);
      expect(browser.cookie(proxied.url, "demo_session")).to.equal(undefined);
    } finally {
      await Promise.all([proxied.close(), realOp.close(), proxy.close()]);
    }
  });

  it("escapes claims in the page", async function () {
    const mallory: DevUser = {
      sub: "mallory-0004",
      email: "mallory@example.com",
      email_verified: true,
      name: `<script>alert("x")</script> & 'Mallory'`,
      password: "mallory",
    };
    const port = await freePort();
    const escApp = await startDemoApp({ issuer: `http://localhost:${port}`, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
    const escOp = await startDevOp({
      port,
      users: [mallory],
      clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [escApp.redirectUri] }],
    });
    try {
      const browser = new Browser();
      const loginPage = await browser.get(`${escApp.url}/login`);
      const home = await browser.submit(loginPage, "login", { email: mallory.email, password: mallory.password });
      expect(home.html).to.include(mallory.email).and.not.include("<script>");
      expect(home.html).to.include("&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62; &#38; &#39;Mallory&#39;");
    } finally {
      await Promise.all([escApp.close(), escOp.close()]);
    }
  });
});

// --- a small headless browser ------------------------------------------------------------

interface Page {
  status: number;
  /** The URL of this response (after redirects). */
  url: URL;
  /** Every URL requested to get here, in order. */
  trail: string[];
  html: string;
}

interface Form {
  action: string;
  method: string;
  fields: Record<string, string>;
}

/**
 * fetch with a cookie jar, following redirects by hand. Cookies are kept per host name and
 * path, not per port, as browsers do: the app and the OP, both on localhost, share a jar.
 */
class Browser {
  readonly #cookies = new Map<string, { host: string; path: string; name: string; value: string }>();

  get(url: string | URL, stop?: (url: URL) => boolean): Promise<Page> {
    return this.#navigate(new URL(url), {}, stop);
  }

  /** Submits the form with this id (or the first form), its fields overridden by `values`. */
  submit(page: Page, id: string | undefined, values: Record<string, string>, stop?: (url: URL) => boolean): Promise<Page> {
    const form = parseForm(page.html, id);
    const url = new URL(form.action, page.url);
    const fields = new URLSearchParams({ ...form.fields, ...values });
    if (form.method === "get") {
      url.search = fields.toString();
      return this.#navigate(url, {}, stop);
    }
    const init = { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: fields.toString() };
    return this.#navigate(url, init, stop);
  }

  cookie(origin: string, name: string): string | undefined {
    const host = new URL(origin).hostname;
    return [...this.#cookies.values()].find((c) => c.host === host && c.name === name)?.value;
  }

  async #navigate(url: URL, init: RequestInit, stop?: (url: URL) => boolean): Promise<Page> {
    const trail: string[] = [];
    for (let step = 0; step < 20; step++) {
      trail.push(url.href);
      if (stop?.(url)) return { status: 0, url, trail, html: "" };
      const response = await this.#fetch(url, init);
      const location = response.headers.get("location");
      if (response.status >= 300 && response.status < 400 && location) {
        await response.body?.cancel();
        url = new URL(location, url);
        init = {}; // 302 and 303 both become GET here
        continue;
      }
      return { status: response.status, url, trail, html: await response.text() };
    }
    throw new Error("too many redirects");
  }

  async #fetch(url: URL, init: RequestInit): Promise<Response> {
    const headers = new Headers(init.headers);
    const sent = [...this.#cookies.values()].filter((c) => c.host === url.hostname && pathMatches(url.pathname, c.path));
    if (sent.length) headers.set("cookie", sent.map((c) => `${c.name}=${c.value}`).join("; "));
    const response = await fetch(url, { ...init, headers, redirect: "manual" });
    for (const line of response.headers.getSetCookie()) {
      const [pair = "", ...attributes] = line.split(";").map((s) => s.trim());
      const eq = pair.indexOf("=");
      let path = "/";
      let expired = false;
      for (const attribute of attributes) {
        const [key = "", value = ""] = attribute.split("=");
        if (key.toLowerCase() === "path") path = value;
        if (key.toLowerCase() === "max-age" && Number(value) <= 0) expired = true;
        if (key.toLowerCase() === "expires" && Date.parse(value) <= Date.now()) expired = true;
      }
      const cookie = { host: url.hostname, path, name: pair.slice(0, eq), value: pair.slice(eq + 1) };
      const key = `${cookie.host} ${cookie.path} ${cookie.name}`;
      if (expired) this.#cookies.delete(key);
      else this.#cookies.set(key, cookie);
    }
    return response;
  }
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  return requestPath === cookiePath || (requestPath.startsWith(cookiePath) && (cookiePath.endsWith("/") || requestPath[cookiePath.length] === "/"));
}

/** The form with this id (or the first form): its action, method and named inputs. */
function parseForm(html: string, id?: string): Form {
  const forms = [...html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/g)];
  const match = forms.find(([, attributes = ""]) => id === undefined || attribute(attributes, "id") === id);
  if (!match) throw new Error(`no form${id ? ` "${id}"` : ""} in the page`);
  const [, attributes = "", body = ""] = match;
  const fields: Record<string, string> = {};
  for (const [, input = ""] of body.matchAll(/<input\b([^>]*)>/g)) {
    const name = attribute(input, "name");
    if (name) fields[name] = attribute(input, "value") ?? "";
  }
  return { action: attribute(attributes, "action") ?? "", method: (attribute(attributes, "method") ?? "get").toLowerCase(), fields };
}

function attribute(attributes: string, name: string): string | undefined {
  const value = new RegExp(`\\b${name}="([^"]*)"`).exec(attributes)?.[1];
  return value === undefined ? undefined : decodeEntities(value);
}

function decodeEntities(s: string): string {
  const named: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };
  return s.replace(/&(?:#(\d+)|#x([0-9a-f]+)|(\w+));/gi, (entity, dec?: string, hex?: string, name?: string) =>
    dec ? String.fromCodePoint(Number(dec)) : hex ? String.fromCodePoint(parseInt(hex, 16)) : (named[name ?? ""] ?? entity),
  );
}

/**
 * An HTTP proxy on 127.0.0.1:port to target that may rewrite response bodies. It keeps the
 * Host header, from which the OP builds the endpoint URLs it publishes.
 */
async function startProxy(port: number, target: string, rewrite: (path: string, body: string) => string) {
  const { hostname, port: targetPort } = new URL(target);
  const server = createHttpServer((req, res) => {
    const upstream = httpRequest({ hostname, port: targetPort, method: req.method, path: req.url, headers: req.headers }, async (response) => {
      const chunks: Buffer[] = [];
      for await (const chunk of response as AsyncIterable<Buffer>) chunks.push(chunk);
      const { "content-length": _length, ...headers } = response.headers;
      const body = rewrite((req.url ?? "/").split("?")[0] ?? "/", Buffer.concat(chunks).toString("utf8"));
      res.writeHead(response.statusCode ?? 502, headers).end(body);
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

