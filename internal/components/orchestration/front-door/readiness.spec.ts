// The front door opens only when a login can succeed (issue 11): Storage takes its
// time to open its database, and until it serves, Encryption does not, Orchestration
// does not, /healthz/ready is 503 and a login gets the "unavailable" page. Then the
// first login after ready succeeds. Storage's slowness is the test's own doing (a TCP
// proxy in front of PostgreSQL that holds connections until the test lets them
// through); production code has no such switch. The waits are on events and on
// polling the endpoints, never on the clock.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import * as oidc from "openid-client";
import type { Component } from "../../../protocol/identity.js";
import { COMPONENTS } from "../../../protocol/identity.js";
import { readBundles, trustFromBundles } from "../../../../mesh/bundle.js";
import { createMeshTransport } from "../../../../mesh/client.js";
import { upstreamRedirectUri } from "../../../config/component-config.js";
import { loadDevConfig } from "../../../dev/dev-config.js";
import { type DevOp, startDevOp } from "../../../dev/devop/dev-op.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../../gen/grpc/health/v1/health_pb.js";
import { type ComponentProcesses, startComponentProcesses } from "../../../dev/component-processes.js";
import { operatorCredentials } from "../../../ops/pki/layout.js";
import { type DevDeployment, prepareDevDeployment } from "../../../dev/dev-deployment.js";
import { prepareAuthorization } from "../../../../test/support/app-client.js";
import { Browserless, type Page } from "../../../../test/support/browserless.js";
import { freePort } from "../../../../test/support/free-port.js";
import { type TestPostgres, startPostgres } from "../../../../test/support/postgres-server.js";
import { APPS, UPSTREAM_CLIENT, USERS, appSecret, browseToApp } from "../../../../test/support/protocol-mesh.js";

/** A TCP proxy that accepts connections and forwards none until `release()`. */
async function holdingProxy(target: { host: string; port: number }) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let arrived!: () => void;
  const held = new Promise<void>((resolve) => (arrived = resolve));
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on("error", () => {});
    arrived();
    void released.then(() => {
      const upstream = net.connect(target.port, target.host);
      sockets.add(upstream);
      upstream.on("error", () => client.destroy());
      client.on("error", () => upstream.destroy());
      client.pipe(upstream).pipe(client);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    /** Resolves when the first connection has come (and is being held). */
    held,
    release,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe("the front door opens only when a login can succeed (issue 11)", function () {
  this.timeout(180_000);
  let dir: string;
  let postgres: TestPostgres;
  let proxy: Awaited<ReturnType<typeof holdingProxy>>;
  let devOp: DevOp;
  let deployment: DevDeployment;
  let issuer: string;
  /** Token, Encryption and Orchestration, started before Storage. */
  let others: ComponentProcesses;
  let storage: ComponentProcesses | undefined;

  before(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-readiness-"));
    postgres = await startPostgres();
    const database = new URL(postgres.url);
    proxy = await holdingProxy({ host: database.hostname, port: Number(database.port || 5432) });
    database.hostname = "127.0.0.1";
    database.port = String(proxy.port);
    const ports: Record<string, number> = { public: await freePort() };
    for (const c of COMPONENTS) ports[c] = await freePort();
    issuer = `http://localhost:${ports.public}`;
    devOp = await startDevOp({ clients: [{ client_id: UPSTREAM_CLIENT.id, client_secret: UPSTREAM_CLIENT.secret, redirect_uris: [upstreamRedirectUri(issuer, "dev")] }] });
    const configFile = path.join(dir, "hello.config.json");
    await writeFile(configFile, JSON.stringify({
      issuer,
      ports,
      clients: [{ client_id: APPS.a!.client_id, client_secret: appSecret(APPS.a!.client_id), redirect_uris: [APPS.a!.redirect_uri] }],
      providers: [{ id: "dev", name: "Dev OP", issuer: devOp.issuer, client_id: UPSTREAM_CLIENT.id, client_secret: UPSTREAM_CLIENT.secret, jwks_uri: devOp.jwksUri }],
      database: database.toString(),
      certificates: "certs",
      stateDir: "state",
    }));
    deployment = await prepareDevDeployment(loadDevConfig(configFile));
  });

  after(async function () {
    await storage?.stop();
    await others?.stop();
    await proxy?.close();
    await devOp?.close();
    await postgres?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /**
   * A component's grpc health for `service`, as its own custodian's operator asks.
   * A component opens its mesh port after its own wiring is up (Orchestration's front
   * door answers first), so a refused connection is looked at again until the port
   * listens; any other failure, or an answer, ends the wait.
   */
  async function statusOf(component: Component, service = ""): Promise<string> {
    const { host, port } = deployment.configs[component].listen;
    const bound = Date.now() + 60_000;
    for (;;) {
      const transport = createMeshTransport({
        target: component,
        baseUrl: `https://${host}:${port}`,
        credentials: operatorCredentials(deployment.certs, component),
        trust: trustFromBundles(readBundles(deployment.configs[component].bundles, COMPONENTS)),
      });
      try {
        return ServingStatus[(await createClient(Health, transport).check({ service })).status];
      } catch (error) {
        const refused = error instanceof ConnectError && error.code === Code.Unavailable && /ECONNREFUSED/.test(error.message);
        if (!refused || Date.now() > bound) throw error;
      } finally {
        transport.close();
      }
      await new Promise((r) => setTimeout(r, 50)); // the polling interval, as for readiness
    }
  }

  /** GET /healthz/ready, polled until `until` accepts the answer. */
  async function readiness(until: (answer: { status: number; body: { status: string; not_serving?: string[] } }) => boolean) {
    const bound = Date.now() + 60_000;
    for (;;) {
      const answer = await fetch(`${issuer}/healthz/ready`).then(
        async (r) => ({ status: r.status, body: (await r.json()) as { status: string; not_serving?: string[] } }),
        () => undefined, // not listening yet
      );
      if (answer && until(answer)) return answer;
      if (Date.now() > bound) throw new Error(`/healthz/ready never said what was awaited; last: ${JSON.stringify(answer)}`);
      await new Promise((r) => setTimeout(r, 50)); // the polling interval; nothing waits on the clock
    }
  }

  /** What a person gets who starts a login now: the page the front door ends it with. */
  async function tryToLogIn(): Promise<Page> {
    const { url } = await prepareAuthorization(issuer, "a");
    const browser = new Browserless();
    const atApp = (u: URL) => u.origin === new URL(APPS.a!.redirect_uri).origin;
    let page = await browser.go(url, {}, atApp);
    if (/\/interaction\//.test(page.body)) {
      page = await browser.submit(browser.form(page, /\/login$/), [["email", USERS.alice.email], ["password", USERS.alice.password]], atApp);
    }
    return page;
  }

  function expectUnavailablePage(page: Page) {
    expect(page.url.origin, "the front door's own page").to.equal(new URL(issuer).origin);
    expect(page.status).to.equal(503);
    expect(page.headers.get("retry-after")).to.match(/^\d+$/);
    expect(page.body).to.include("<h1>hello-mesh is unavailable right now</h1>");
  }

  it("while Storage has not started: discovery and liveness answer; readiness is 503 naming Encryption; /authorize is the unavailable page; Orchestration and Encryption report NOT_SERVING", async function () {
    others = startComponentProcesses(deployment, { components: ["token", "encryption", "orchestration"], readyTimeoutMs: 150_000 });
    others.ready.catch(() => {}); // awaited below, once Storage is there
    // Token serves soon; Encryption cannot until Storage does.
    const notReady = await readiness((a) => a.status === 503 && a.body.not_serving?.join() === "encryption");
    expect(notReady.body).to.deep.equal({ status: "not ready", not_serving: ["encryption"] });
    for (const path of ["/healthz/live", "/health", "/.well-known/openid-configuration"]) expect((await fetch(`${issuer}${path}`)).status, path).to.equal(200);

    const page = await tryToLogIn();
    expectUnavailablePage(page);
    expect(page.url.pathname, "no login started: the answer to /authorize itself").to.equal("/authorize");

    expect(await statusOf("token")).to.equal("SERVING");
    expect(await statusOf("encryption")).to.equal("NOT_SERVING");
    expect(await statusOf("encryption", "hello.encryption.v1.EncryptionService")).to.equal("NOT_SERVING");
    expect(await statusOf("encryption", "hello.encryption.v1.KeyringAdminService"), "its operator's own service").to.equal("SERVING");
    expect(await statusOf("orchestration")).to.equal("NOT_SERVING");
  });

  it("while Storage is opening its database (its connection held): still not ready, still no login", async function () {
    storage = startComponentProcesses(deployment, { components: ["storage"], readyTimeoutMs: 150_000 });
    await proxy.held; // Storage is in the middle of opening the record store
    try {
      expect((await readiness(() => true)).status).to.equal(503);
      const page = await tryToLogIn();
      expectUnavailablePage(page);
      expect(page.url.pathname).to.equal("/authorize");
    } finally {
      proxy.release(); // within Storage's 5 s connect timeout, or it gives up and exits
    }
  });

  it("once Storage serves: ready at once, without a restart, and the first login succeeds with no unavailable page", async function () {
    await storage!.ready;
    // No waiting for a tick: a probe that finds the front door not ready looks again.
    const ready = await fetch(`${issuer}/healthz/ready`);
    expect(ready.status).to.equal(200);
    expect(await ready.json()).to.deep.equal({ status: "ready" });
    await others.ready;
    expect(await statusOf("orchestration")).to.equal("SERVING");
    expect(await statusOf("encryption")).to.equal("SERVING");

    const { config, checks, url } = await prepareAuthorization(issuer, "a");
    const { page } = await browseToApp(url, "a", USERS.alice);
    expect(page.url.origin + page.url.pathname, `${page.status} ${page.body.slice(0, 200)}`).to.equal(APPS.a!.redirect_uri);
    const tokens = await oidc.authorizationCodeGrant(config, page.url, checks);
    expect(tokens.claims()!.email).to.equal(USERS.alice.email);
  });

  it("an outage later (Storage killed): a login gets the unavailable page, and readiness turns 503 naming Encryption", async function () {
    const child = storage!.children.get("storage")!;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
    expectUnavailablePage(await tryToLogIn());
    const down = await readiness((a) => a.status === 503);
    expect(down.body).to.deep.equal({ status: "not ready", not_serving: ["encryption"] });
    expect(await statusOf("orchestration")).to.equal("NOT_SERVING");
  });
});
