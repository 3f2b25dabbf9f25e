// The route table (routes.ts) is the front door's one list of routes: the metric label,
// the 404, the 405 with Allow and the readiness gate all come from it. In-process, with
// stand-ins for the login driver and Token that a request here never reaches; the
// endpoints themselves are front-door.spec.ts and the specs beside it.

import http from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import type { Client } from "@connectrpc/connect";
import type { TokenService } from "../../../gen/hello/token/v1/token_service_pb.js";
import type { HttpObserver } from "../../../observability/metrics/http-observer.js";
import { VerificationKeys } from "../../../protocol/signing-keys.js";
import type { LoginDriver } from "../login-driver.js";
import { MemoryStore } from "../sealed.js";
import { frontDoor } from "./front-door.js";
import { ROUTES, type Route, allowed } from "./routes.js";

describe("the front door's route table (routes.ts)", function () {
  const labels: string[] = [];
  const observer: HttpObserver = {
    begin: () => ({ route: (name) => void labels.push(name), failed: () => {}, run: (handler) => handler() }),
  };
  let ready = true;
  let settled = 0;
  const unreachable = () => {
    throw new Error("not reached by these requests");
  };
  let server: http.Server;
  let base: string;

  before(async function () {
    server = http.createServer(frontDoor({
      issuer: "http://door.test",
      clients: [{ client_id: "app", redirect_uris: ["https://app.example/cb"], token_endpoint_auth_method: "none" }],
      providers: [
        { id: "dev", name: "Dev", issuer: "http://127.0.0.1:9/", client_id: "hello", scopes: ["openid"] },
        { id: "dev2", name: "Dev 2", issuer: "http://127.0.0.1:9/", client_id: "hello", scopes: ["openid"] },
      ],
      driver: { start: unreachable, continue: unreachable, consent: unreachable } as unknown as LoginDriver,
      token: { getKeySet: unreachable } as unknown as Client<typeof TokenService>,
      tokenKeys: () => new VerificationKeys([]),
      cookieKey: new Uint8Array(32),
      store: new MemoryStore(),
      observer,
      readiness: { settle: async () => (settled++, ready), notServing: () => ["token"] },
    }));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  beforeEach(() => {
    labels.length = 0;
    ready = true;
    settled = 0;
  });

  /** A path the route answers at: a per-provider route's, for the provider "dev". */
  const pathOf = (route: Route) => (route.perProvider ? `${route.path}/dev` : route.path);

  it("a method a route does not answer is a 405 whose Allow is the table's, as JSON on the back channel and a page elsewhere", async function () {
    for (const route of ROUTES) {
      for (const method of ["PUT", "DELETE", "HEAD", ...["GET", "POST"].filter((m) => !(m in route.methods))]) {
        const answer = await fetch(`${base}${pathOf(route)}`, { method });
        expect(answer.status, `${method} ${route.path}`).to.equal(405);
        expect(answer.headers.get("allow"), `${method} ${route.path}`).to.equal(allowed(route));
        expect(answer.headers.get("content-type"), `${method} ${route.path}`).to.match(route.errors ? /^application\/json/ : /^text\/html/);
      }
    }
    expect(allowed(ROUTES.find((r) => r.path === "/authorize")!)).to.equal("GET, POST");
    expect(settled, "a 405 waits for nothing").to.equal(0);
  });

  it("each route's label is its path; every provider's callback shares one; anything else is a 404 named \"other\"", async function () {
    for (const route of ROUTES) await fetch(`${base}${pathOf(route)}`, { method: "PUT" });
    expect(labels).to.deep.equal(ROUTES.map((r) => r.path));
    labels.length = 0;
    await fetch(`${base}/upstream/callback/dev2`, { method: "PUT" });
    expect(labels).to.deep.equal(["/upstream/callback"]);
    for (const path of ["/upstream/callback/nobody", "/upstream/callback", "/upstream/callback/", "/upstream/callback/dev/more", "/nowhere", "/token/", "/constructor"]) {
      labels.length = 0;
      expect((await fetch(`${base}${path}`)).status, path).to.equal(404);
      expect(labels, path).to.deep.equal(["other"]);
    }
  });

  it("the issuer's own address is a page that says what this is and links the configuration, not a bare 404", async function () {
    const answer = await fetch(`${base}/`);
    expect(answer.status).to.equal(200);
    expect(answer.headers.get("content-type")).to.match(/^text\/html/);
    const page = await answer.text();
    expect(page).to.include("OpenID Provider").and.include('href="/.well-known/openid-configuration"');
    expect(settled, "it waits for no peer").to.equal(0);
  });

  it("while a peer a login needs does not serve, the login steps (and only they) answer the \"unavailable\" page", async function () {
    ready = false;
    for (const route of ROUTES) {
      const [method] = Object.keys(route.methods);
      settled = 0;
      const answer = await fetch(`${base}${pathOf(route)}`, {
        method,
        ...(method === "POST" ? { headers: { "content-type": "application/x-www-form-urlencoded" }, body: "" } : {}),
      });
      if (route.loginStep) {
        expect(answer.status, route.path).to.equal(503);
        expect(answer.headers.get("retry-after"), route.path).to.equal("5");
        expect(await answer.text(), route.path).to.include("hello-mesh is unavailable right now");
      } else if (route.path !== "/healthz/ready") {
        expect(settled, route.path).to.equal(0);
      }
    }
    expect(ROUTES.filter((r) => r.loginStep).map((r) => r.path)).to.deep.equal(["/authorize", "/authorize/provider", "/upstream/callback", "/consent", "/account/provider", "/account/claims", "/account/claims/update", "/account/release", "/account/link", "/account/unlink", "/account/delete", "/account/merge", "/account/threshold", "/account/recover/provider", "/wallet/provider", "/wallet/unlink"]);
  });
});
