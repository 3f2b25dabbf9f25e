// The `hello` command as people run it: separate processes, real certificates made on
// first run, and the operator's view through `buf curl`.

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import https from "node:https";
import { mkdir, mkdtemp, rm, writeFile, readFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { Code, createClient } from "@connectrpc/connect";
import { COMPONENTS, type Component } from "../../internal/protocol/identity.js";
import { readBundles, trustFromBundles } from "../../mesh/bundle.js";
import { createMeshTransport } from "../../mesh/client.js";
import { pkiPaths } from "../../internal/ops/pki/layout.js";
import { TokenService } from "../../internal/gen/hello/token/v1/token_service_pb.js";
import { StorageService } from "../../internal/gen/hello/storage/v1/storage_service_pb.js";
import { freePort } from "../../test/support/free-port.js";
import { outcomeOf, refusedWith, rejectionOf } from "../../test/support/refusal.js";
// Imported here, not by import() in a hook: a module loaded in the middle of the full
// suite's run goes through tsx's loader while other specs' work is under way, and
// under load that has hung the run once.
import { generateSigningKey, privateJwk } from "../../internal/protocol/signing-keys.js";
import { tokenSigningKeys } from "../../test/support/token-harness.js";
import { main } from "./main.js";

const run = promisify(execFile);
const BIN = path.resolve(import.meta.dirname, "bin.js");
const BUF = path.resolve(import.meta.dirname, "../../node_modules/.bin/buf");

/** Runs `hello start` in `dir` and resolves once it says it is running. */
function startHello(dir: string): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, [BIN, "start", "--config", path.join(dir, "hello.config.json")], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hello start did not come up:\n${output}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("Press Ctrl-C to stop.")) {
        clearTimeout(timer);
        resolve({ child, output: () => output });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => reject(new Error(`hello start exited with ${code}:\n${output}`)));
  });
}

describe("hello start: all four components, each its own process", function () {
  this.timeout(120_000);
  let dir: string;
  let hello: { child: ChildProcess; output: () => string };
  const ports = {} as Record<Component | "public" | "issuer" | "wallet" | "issuerStatus", number>;

  before(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-start-"));
    for (const key of [...COMPONENTS, "public", "issuer", "wallet", "issuerStatus"] as const) ports[key] = await freePort();
    await writeFile(
      path.join(dir, "hello.config.json"),
      JSON.stringify({ issuer: `http://localhost:${ports.public}`, ports, certificates: "certs", stateDir: "state" }),
    );
    hello = await startHello(dir);
  });
  after(async function () {
    if (hello && hello.child.exitCode === null) hello.child.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  });

  const url = (c: Component) => `https://127.0.0.1:${ports[c]}`;
  const certs = () => path.join(dir, "certs");
  const certFiles = (c: Component, operator = false) => {
    const p = pkiPaths(certs(), c);
    return operator ? { cert: p.operatorCert, key: p.operatorKey } : { cert: p.cert, key: p.key };
  };
  const buf = (args: string[]) => run(BUF, ["curl", "--protocol", "grpc", ...args], { timeout: 30_000 });

  it("says where each component listens and where the certificates are", function () {
    const output = hello.output();
    for (const c of COMPONENTS) expect(output).to.include(`https://127.0.0.1:${ports[c]}`);
    expect(output).to.include(certs());
    expect(output).to.include("Made development CAs and certificates");
  });

  it("runs the development issuer and says where it and the wallet server are, with the registry's people", function () {
    const output = hello.output();
    expect(output).to.include(`wallet server (S2S):   https://localhost:${ports.wallet}`);
    expect(output).to.include(`development issuer:    https://localhost:${ports.issuer}  (credential issuer, mutual TLS; listening on https://127.0.0.1:${ports.issuer})`);
    expect(output).to.include(`its status list:       http://127.0.0.1:${ports.issuerStatus}/status-lists/1`);
    expect(output).to.match(/^ {6}D-1001 {2}Lovelace {2}1990-12-10: approve$/m);
    expect(output).to.match(/^ {6}D-1005 {2}Johnson {3}1988-08-26: approve \(issued asynchronously\)$/m);
  });

  it("Orchestration's wallet server and the development issuer reach each other over mutual TLS, each with the certificates hello start made", async function () {
    const issuerDir = path.join(certs(), "issuer");
    const orchestrationDir = pkiPaths(certs(), "orchestration").dir;
    const get = (port: number, target: string, ca: string, as: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const request = https.request({
          host: "127.0.0.1", port, path: target, servername: "localhost", agent: false,
          ca: readFileSync(ca), cert: readFileSync(`${as}.crt`), key: readFileSync(`${as}.key`),
          headers: { "Api-Version": "1.0.0", "x-request-id": randomUUID() },
        }, (response) => {
          let body = "";
          response.on("data", (chunk: Buffer) => (body += chunk.toString()));
          response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
        });
        request.on("error", reject);
        request.end();
      });
    // As the issuer, at the Orchestration process's S2S listener: it knows the issuer by its CA, and holds no such evidence.
    const evidence = await get(ports.wallet, "/evidence/AAAAAAAAAAAAAAAAAAAAAA", path.join(orchestrationDir, "ca.crt"), path.join(issuerDir, "issuer"));
    expect(evidence.status, evidence.body).to.equal(404);
    expect(JSON.parse(evidence.body)).to.include({ errorCode: "unknown_evidence" });
    // As the wallet server, at the development issuer: it knows hello-mesh by the orchestration CA.
    const metadata = await get(ports.issuer, "/.well-known/s2s-issuer", path.join(issuerDir, "ca.crt"), path.join(orchestrationDir, "wallet-server"));
    expect(metadata.status, metadata.body).to.equal(200);
    expect(JSON.parse(metadata.body)).to.include({ issuer: `https://localhost:${ports.issuer}` });
  });

  it("reports each component ready (grpc.health.v1 SERVING) before it says hello-mesh is running", function () {
    const output = hello.output();
    const running = output.indexOf("hello-mesh is running");
    expect(running).to.be.greaterThan(0);
    for (const c of COMPONENTS) {
      const ready = new RegExp(`^${c} *│ ready: grpc\\.health\\.v1 reports SERVING \\(\\d+ ms after start\\)$`, "m").exec(output);
      expect(ready, `${c} readiness line`).to.not.equal(null);
      expect(ready!.index).to.be.lessThan(running);
    }
  });

  it("says it is running only once the front door is ready (a login would succeed): /healthz/ready answers 200", async function () {
    const output = hello.output();
    const frontDoor = /^front door *│ ready: \/healthz\/ready answers 200 \(\d+ ms after start\)$/m.exec(output);
    expect(frontDoor, "the front door's readiness line").to.not.equal(null);
    expect(frontDoor!.index).to.be.lessThan(output.indexOf("hello-mesh is running"));
    const ready = await fetch(`http://127.0.0.1:${ports.public}/healthz/ready`);
    expect(ready.status).to.equal(200);
    expect(await ready.json()).to.deep.equal({ status: "ready" });
    expect((await fetch(`http://127.0.0.1:${ports.public}/healthz/live`)).status).to.equal(200);
  });

  it("hello metrics: any custodian's operator reads any component's metrics (seed 000)", async function () {
    const config = path.join(dir, "hello.config.json");
    // Each component read by another custodian's operator, and one by its own.
    const pairs: Array<[Component, Component]> = [["storage", "orchestration"], ["token", "encryption"], ["orchestration", "token"], ["encryption", "encryption"]];
    for (const [component, as] of pairs) {
      const { stdout } = await run(process.execPath, [BIN, "metrics", component, "--as", as, "--config", config], { timeout: 30_000 });
      // hello start's readiness checks were Health/Check calls, served and counted.
      expect(stdout, `${component} as ${as}`).to.match(
        new RegExp(`^hello_mesh_server_requests_total\\{component="${component}",method="grpc\\.health\\.v1\\.Health/Check",code="ok"\\} [1-9]`, "m"),
      );
      expect(stdout).to.match(/^process_resident_memory_bytes \d+/m);
      expect(stdout).to.match(/^nodejs_eventloop_lag_seconds /m);
    }
  });

  it("hello metrics without the operator's certificate says which file is missing", async function () {
    const result = (await rejectionOf(run(process.execPath, [BIN, "metrics", "token", "--as", "storage", "--url", url("token"), "--certs", path.join(dir, "nowhere")]))) as { code: number; stderr: string };
    expect(result.code).to.equal(1);
    expect(result.stderr).to.include(path.join(dir, "nowhere", "storage", "operator.crt"));
  });

  it("buf curl --list-methods with the storage operator's certificate lists Storage's services", async function () {
    const { cert, key } = certFiles("storage", true);
    const { stdout } = await buf(["--cacert", pkiPaths(certs(), "storage").caCert, "--cert", cert, "--key", key, "--list-methods", url("storage")]);
    const methods = stdout.split("\n");
    expect(methods).to.include.members([
      "hello.storage.v1.StorageService/ReadRecord",
      "hello.storage.v1.StorageService/CreateRecord",
      "hello.storage.v1.KeyMaintenanceService/ListRecordKeys",
      "hello.storage.v1.KeyMaintenanceService/RewrapRecordKey",
      "hello.storage.v1.KeyMaintenanceService/CountRecordKeys",
      "hello.storage.v1.KeyWrappingAdminService/GetKeyUsage",
      "hello.common.v1.MetricsService/GetMetrics",
      "grpc.health.v1.Health/Check",
    ]);
    // Key maintenance is no longer part of the record service.
    expect(methods.filter((m) => m.startsWith("hello.storage.v1.StorageService/")).sort()).to.deep.equal(
      ["BackfillRecordDigest", "CreateRecord", "DeleteRecord", "ReadRecord", "UpdateRecord", "WriteRecords"].map((m) => `hello.storage.v1.StorageService/${m}`),
    );
  });

  it("the same call with another custodian's operator certificate is refused", async function () {
    const { cert, key } = certFiles("token", true);
    const error = (await rejectionOf(buf([
      "--cacert", pkiPaths(certs(), "storage").caCert, "--cert", cert, "--key", key, "--list-methods", url("storage"),
    ]))) as { stderr?: string; code?: number };
    expect(error.code).to.not.equal(undefined);
    expect(error.stderr).to.match(/permission[_ ]denied/i);
  });

  it("buf curl calls BuildInfo on Token with the Encryption operator's certificate", async function () {
    // Reflection is Token's own operator's; another custodian uses the schema from source.
    const { cert, key } = certFiles("encryption", true);
    const { stdout } = await buf([
      "--schema", path.resolve(import.meta.dirname, "../.."),
      "--cacert", pkiPaths(certs(), "token").caCert, "--cert", cert, "--key", key,
      `${url("token")}/hello.common.v1.BuildInfoService/GetBuildInfo`,
    ]);
    expect(JSON.parse(stdout).buildInfo).to.include({ component: "token", nodeVersion: process.version });
  });

  it("the real processes enforce the call graph: Orchestration reaches Token, Token cannot reach Storage", async function () {
    const trust = trustFromBundles(readBundles(path.join(certs(), "bundles"), COMPONENTS));
    const credentials = async (c: Component) => ({
      certPem: await readFile(certFiles(c).cert, "utf8"),
      keyPem: await readFile(certFiles(c).key, "utf8"),
    });
    const token = createClient(
      TokenService,
      createMeshTransport({ target: "token", baseUrl: url("token"), credentials: await credentials("orchestration"), trust }),
    );
    // Past the mesh: the protocol handler itself answers.
    expect(await outcomeOf(token.getKeySet({}))).to.not.be.oneOf([Code.PermissionDenied, Code.Unauthenticated, Code.Unavailable]);

    const storage = createClient(
      StorageService,
      createMeshTransport({ target: "storage", baseUrl: url("storage"), credentials: await credentials("token"), trust }),
    );
    expect((await refusedWith(storage.readRecord({ accessToken: "t" }))).code).to.equal(Code.PermissionDenied);
  });

  it("stops every component cleanly on Ctrl-C (SIGINT)", async function () {
    const exited = new Promise<number | null>((r) => hello.child.once("exit", (code) => r(code)));
    hello.child.kill("SIGINT");
    expect(await exited).to.equal(0);
    for (const c of [...COMPONENTS, "issuer", "wallet", "issuerStatus"] as const) {
      const refused = await new Promise<boolean>((resolve) => {
        const socket = net.connect(ports[c], "127.0.0.1");
        socket.once("connect", () => (socket.destroy(), resolve(false)));
        socket.once("error", () => resolve(true));
      });
      expect(refused, `${c} still listening`).to.equal(true);
    }
  });

  it("a second start reuses the certificates made on the first", async function () {
    hello = await startHello(dir);
    expect(hello.output()).to.include("Using the certificates under");
    const exited = new Promise<number | null>((r) => hello.child.once("exit", (code) => r(code)));
    hello.child.kill("SIGTERM");
    expect(await exited).to.equal(0);
  });
});

/** The ports of a `hello start` with the development OPs, the demo app and the development issuer. */
type StartPorts = Record<Component | "public" | "upstream" | "upstream2" | "demo" | "issuer" | "wallet" | "issuerStatus", number>;

/** Free ports for every setting of StartPorts. */
async function freeStartPorts(): Promise<StartPorts> {
  const ports = {} as StartPorts;
  for (const key of [...COMPONENTS, "public", "upstream", "upstream2", "demo", "issuer", "wallet", "issuerStatus"] as const) ports[key] = await freePort();
  return ports;
}

/**
 * The repository's hello.config.json (the README's: both development OPs and the demo
 * app), on `ports`: the providers' issuers and the demo app's redirect URI follow them.
 */
async function committedConfigOn(ports: StartPorts): Promise<Record<string, unknown>> {
  const devConfig = JSON.parse(await readFile(path.resolve(import.meta.dirname, "../../hello.config.json"), "utf8")) as Record<string, unknown>;
  // Each default port (dev-config.ts) and the free one that takes its place.
  const moved: Array<[number, number]> = [[9001, ports.upstream], [9003, ports.upstream2], [9002, ports.demo]];
  const move = (url: string) => moved.reduce((u, [from, to]) => u.replace(`http://localhost:${from}`, `http://localhost:${to}`), url);
  const clients = (devConfig.clients as Array<{ redirect_uris: string[] }>).map((c) => ({ ...c, redirect_uris: c.redirect_uris.map(move) }));
  const providers = (devConfig.providers as Array<{ issuer: string }>).map((p) => ({ ...p, issuer: move(p.issuer) }));
  expect(providers.map((p) => p.issuer), "the committed providers are the two development OPs").to.deep.equal([`http://localhost:${ports.upstream}`, `http://localhost:${ports.upstream2}`]);
  return { ...devConfig, issuer: `http://localhost:${ports.public}`, ports, clients, providers, stateDir: "state" };
}

/** Runs `hello start --config <config>` to its end (60 s at most): its exit code, everything it said, how long it took. */
async function startToEnd(config: string): Promise<{ code: number | null; output: string; ms: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, [BIN, "start", "--config", config], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => (child.kill("SIGKILL"), resolve(null)), 60_000);
    child.once("exit", (exitCode) => (clearTimeout(timer), resolve(exitCode)));
  });
  return { code, output, ms: performance.now() - started };
}

/** Whether something accepts connections on 127.0.0.1:`port`. */
const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
  });

describe("hello start with the repository's hello.config.json: two development OPs, the demo app, the account page and recovery", function () {
  this.timeout(120_000);
  let dir: string;
  let ports: StartPorts;
  let hello: { child: ChildProcess; output: () => string } | undefined;
  const config = () => path.join(dir, "hello.config.json");

  before(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-devops-"));
    ports = await freeStartPorts();
    await writeFile(config(), JSON.stringify(await committedConfigOn(ports)));
    hello = await startHello(dir);
  });
  after(async function () {
    // Whatever happened: no process and no development OP left behind.
    if (hello && hello.child.exitCode === null && hello.child.signalCode === null) {
      const exited = new Promise((resolve) => hello!.child.once("exit", resolve));
      hello.child.kill("SIGINT");
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  });

  /** An authorization request of hello-mesh's front door at `op`, coming back to `provider`'s callback: what the OP answers. */
  const authorize = (op: number, provider: string) => {
    const url = new URL(`http://127.0.0.1:${op}/auth`);
    const params = {
      client_id: "hello-mesh", response_type: "code", scope: "openid email profile", state: "s", nonce: "n",
      redirect_uri: `http://localhost:${ports.public}/upstream/callback/${provider}`,
      code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", code_challenge_method: "S256",
    };
    for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
    return fetch(url, { redirect: "manual" });
  };

  it("starts both, each at its own issuer with its own keys, and says where each is, the account page and recovery", async function () {
    const output = hello!.output();
    expect(output).to.include(`development OP:        http://localhost:${ports.upstream}  (Development OP)`);
    expect(output).to.include(`development OP:        http://localhost:${ports.upstream2}  (Second development OP)`);
    expect(output).to.include("accounts at each: alice@example.com / alice, bob@example.com / bob");
    expect(output).to.include(`account page:          http://localhost:${ports.public}/account `);
    expect(output).to.include(`recovery:              http://localhost:${ports.public}/account/recover `);
    expect(output).not.to.include("its client must be registered"); // both providers are hello start's own
    const issuers: string[] = [];
    const kids: string[] = [];
    for (const port of [ports.upstream, ports.upstream2]) {
      const discovery = (await (await fetch(`http://127.0.0.1:${port}/.well-known/openid-configuration`)).json()) as { issuer: string; jwks_uri: string };
      expect(discovery.issuer).to.equal(`http://localhost:${port}`);
      issuers.push(discovery.issuer);
      const jwks = (await (await fetch(discovery.jwks_uri.replace("localhost", "127.0.0.1"))).json()) as { keys: Array<{ kid: string }> };
      kids.push(...jwks.keys.map((k) => k.kid));
    }
    expect(new Set(issuers).size, "distinct issuers").to.equal(2);
    expect(new Set(kids).size, "each its own keys").to.equal(kids.length);
  });

  it("registers hello-mesh's client at each with that provider's own callback, and no other", async function () {
    for (const [port, own, other] of [[ports.upstream, "dev", "dev2"], [ports.upstream2, "dev2", "dev"]] as const) {
      const accepted = await authorize(port, own);
      expect(accepted.status, `${own}'s OP, its own callback`).to.be.oneOf([302, 303]);
      expect(accepted.headers.get("location")).to.match(/\/interaction\//);
      expect((await authorize(port, other)).status, `${own}'s OP, ${other}'s callback`).to.equal(400);
    }
  });

  it("Token trusts both (each jwks_uri found by discovery), and the recovery page offers both", async function () {
    const token = JSON.parse(await readFile(path.join(dir, "state", "config", "token.json"), "utf8")) as { providers: Array<{ id: string; issuer: string; jwks_uri: string }> };
    expect(token.providers.map((p) => [p.id, p.issuer, p.jwks_uri])).to.deep.equal([
      ["dev", `http://localhost:${ports.upstream}`, `http://localhost:${ports.upstream}/jwks`],
      ["dev2", `http://localhost:${ports.upstream2}`, `http://localhost:${ports.upstream2}/jwks`],
    ]);
    const page = await (await fetch(`http://127.0.0.1:${ports.public}/account/recover`)).text();
    expect(page).to.include("Sign in with your recovery account at Development OP");
    expect(page).to.include("Sign in with your recovery account at Second development OP");
  });

  it("stops both development OPs, the demo app and every component on Ctrl-C (SIGINT)", async function () {
    const exited = new Promise<number | null>((r) => hello!.child.once("exit", (code) => r(code)));
    hello!.child.kill("SIGINT");
    expect(await exited).to.equal(0);
    for (const [setting, port] of Object.entries(ports)) expect(await listening(port), `ports.${setting} is listening`).to.equal(false);
  });

  it("a configuration without the second provider starts the first development OP only", async function () {
    const withOne = JSON.parse(await readFile(config(), "utf8")) as { providers: unknown[] };
    await writeFile(config(), JSON.stringify({ ...withOne, providers: withOne.providers.slice(0, 1) }));
    hello = await startHello(dir);
    const output = hello.output();
    expect(output).to.include(`development OP:        http://localhost:${ports.upstream}  (Development OP)`);
    expect(output).to.include("accounts: alice@example.com / alice, bob@example.com / bob");
    expect(output).not.to.include(`localhost:${ports.upstream2}`);
    expect(await listening(ports.upstream)).to.equal(true);
    expect(await listening(ports.upstream2), "ports.upstream2 is listening").to.equal(false);
    const exited = new Promise<number | null>((r) => hello!.child.once("exit", (code) => r(code)));
    hello.child.kill("SIGINT");
    expect(await exited).to.equal(0);
    expect(await listening(ports.upstream), "ports.upstream is listening").to.equal(false);
  });
});

describe("hello start that cannot start: says why and which setting, leaves nothing running and no record (issue 18)", function () {
  this.timeout(120_000);
  let dir: string;
  let ports: StartPorts;
  const config = () => path.join(dir, "hello.config.json");
  const record = () => path.join(dir, "state", "deployment.json");

  before(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-taken-"));
    ports = await freeStartPorts();
    // Both development OPs and the demo app too, as in the README's hello.config.json.
    await writeFile(config(), JSON.stringify(await committedConfigOn(ports)));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  /** Holds `port` with a server that accepts and never answers while `during` runs. */
  async function holding<T>(port: number, during: () => Promise<T>): Promise<T> {
    const held = new Set<net.Socket>();
    const squatter = net.createServer((socket) => held.add(socket));
    await new Promise<void>((resolve) => squatter.listen(port, "127.0.0.1", resolve));
    try {
      return await during();
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => squatter.close(resolve));
    }
  }

  const start = () => startToEnd(config());

  for (const setting of ["public", ...COMPONENTS, "upstream", "upstream2", "demo", "issuer", "wallet", "issuerStatus"] as const) {
    it(`ports.${setting} taken: exit 1 in seconds, the port and its setting named, nothing listening, no record`, async function () {
      const { code, output, ms } = await holding(ports[setting], start);
      expect(code, `hello start's exit code; it said:\n${output}`).to.equal(1);
      expect(output).to.include(`port ${ports[setting]} is taken (EADDRINUSE); it is ports.${setting} in ${config()}`);
      expect(output).not.to.match(/\n\s+at /); // no stack trace
      expect(ms).to.be.below(30_000);
      for (const [other, port] of Object.entries(ports)) {
        if (other !== setting) expect(await listening(port), `ports.${other} is listening`).to.equal(false);
      }
      expect(existsSync(record()), "a deployment record was left").to.equal(false);
    });
  }

  it("a component that exits during start-up (Storage, its database refusing connections): its reason, the others stopped, exit 1, no record", async function () {
    const original = await readFile(config(), "utf8");
    await writeFile(config(), JSON.stringify({ ...JSON.parse(original), database: `postgresql://hello@127.0.0.1:${await freePort()}/records` }));
    try {
      const { code, output, ms } = await start();
      expect(code, `hello start's exit code; it said:\n${output}`).to.equal(1);
      expect(output).to.include("the PostgreSQL database is unreachable (ECONNREFUSED)");
      expect(output).to.include(`storage exited during start-up (code 1); its reason is above (it listens on port ${ports.storage}, ports.storage in`);
      expect(ms, "it does not wait for a readiness timeout").to.be.below(60_000);
      for (const [other, port] of Object.entries(ports)) expect(await listening(port), `ports.${other} is listening`).to.equal(false);
      expect(existsSync(record()), "a deployment record was left").to.equal(false);
    } finally {
      await writeFile(config(), original);
    }
  });

  it("a previous run's components still alive (by its deployment record) are named, with how to stop them", async function () {
    const mesh = (c: Component) => ({ pid: process.pid, mesh: `https://127.0.0.1:${ports[c]}`, config: path.join(dir, `${c}.json`) });
    const stale = { issuer: `http://localhost:${ports.public}`, certs: dir, bundles: dir, components: Object.fromEntries(COMPONENTS.map((c) => [c, mesh(c)])) };
    await mkdir(path.dirname(record()), { recursive: true });
    await writeFile(record(), JSON.stringify(stale));
    try {
      const { code, output } = await holding(ports.token, start);
      expect(code).to.equal(1);
      expect(output).to.include(`a previous hello start's components are still running (pids ${process.pid}, from ${record()})`);
    } finally {
      await rm(record(), { force: true });
    }
  });
});

describe("hello serve: a custodian runs one component from its own configuration", function () {
  this.timeout(60_000);
  let dir: string;
  before(async () => (dir = await mkdtemp(path.join(os.tmpdir(), "hello-serve-"))));
  after(async () => rm(dir, { recursive: true, force: true }));

  async function serve(component: Component, config: object) {
    const file = path.join(dir, `${component}.json`);
    await writeFile(file, JSON.stringify(config));
    return run(process.execPath, [BIN, "serve", component, "--config", file], { timeout: 30_000 }).then(
      () => ({ code: 0, stderr: "" }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
    );
  }
  const base = (component: Component) => ({
    component,
    listen: { port: 0 },
    tls: { cert: `certs/${component}/${component}.crt`, key: `certs/${component}/${component}.key` },
    bundles: "certs/bundles",
  });

  it("refuses to start when its certificate and key are missing, and says how its custodian makes them", async function () {
    const { code, stderr } = await serve("storage", { ...base("storage"), keys: { signing: "keys/storage.json" }, database: {} });
    expect(code).to.equal(1);
    expect(stderr).to.match(/storage\.crt and .*storage\.key are missing/);
    expect(stderr).to.include("hello pki issue storage");
  });

  it("refuses to start when its signing keys are missing: production keys are never generated on start", async function () {
    await run(process.execPath, [BIN, "pki", "dev", "--dir", path.join(dir, "certs")]);
    // Each custodian hands the others its bundle: CA and public keys, never a private key.
    const tokenKeys = path.join(dir, "token-keys.json");
    await writeFile(tokenKeys, JSON.stringify({ keys: [privateJwk(generateSigningKey("access"))] }));
    for (const c of COMPONENTS) {
      const keys = c === "token" ? ["--keys", tokenKeys] : [];
      await run(process.execPath, [BIN, "pki", "bundle", c, "--dir", path.join(dir, "certs"), ...keys]);
    }
    const tokenBundle = JSON.parse(await readFile(path.join(dir, "certs", "bundles", "token.json"), "utf8"));
    expect(tokenBundle.jwks.keys).to.have.length(1);
    expect(tokenBundle.jwks.keys[0]).to.not.have.property("d");
    expect(tokenBundle.ca).to.equal(await readFile(pkiPaths(path.join(dir, "certs"), "token").caCert, "utf8"));
    const { code, stderr } = await serve("storage", { ...base("storage"), keys: { signing: "keys/storage.json" }, database: {} });
    expect(code).to.equal(1);
    expect(stderr).to.include("its signing key file");
    expect(stderr).to.include("keys/storage.json is missing");
  });

  describe("a component that cannot start exits, so that a supervisor sees it (issue 18)", function () {
    const storageKeys = () => path.join(dir, "storage-keys.json");
    before(async function () {
      await run(process.execPath, [BIN, "pki", "dev", "--dir", path.join(dir, "certs")]); // as the test above, if it did not run
      for (const c of COMPONENTS) await run(process.execPath, [BIN, "pki", "bundle", c, "--dir", path.join(dir, "certs")]);
      const keys = [generateSigningKey("error"), generateSigningKey("receipt")].map(privateJwk);
      await writeFile(storageKeys(), JSON.stringify({ keys }));
      await writeFile(path.join(dir, "token-signing.json"), JSON.stringify({ keys: tokenSigningKeys().map(privateJwk) }));
    });
    const storage = (database: object) => ({ ...base("storage"), keys: { signing: storageKeys() }, database });

    it("Storage with its database refusing connections: exit 1 and the reason, at once", async function () {
      const port = await freePort();
      const started = performance.now();
      const { code, stderr } = await serve("storage", storage({ url: `postgresql://hello:secret@127.0.0.1:${port}/records` }));
      expect(code).to.equal(1);
      expect(stderr).to.include("the PostgreSQL database is unreachable (ECONNREFUSED)");
      expect(stderr).not.to.include("secret");
      expect(performance.now() - started).to.be.below(20_000);
    });

    it("Storage with a database that never answers: exit 1 once the connection times out", async function () {
      const silent = net.createServer(() => {}); // accepts, never speaks
      await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
      try {
        const { port } = silent.address() as net.AddressInfo;
        const { code, stderr } = await serve("storage", storage({ url: `postgresql://hello@127.0.0.1:${port}/records` }));
        expect(code).to.equal(1);
        expect(stderr).to.match(/hello serve storage: .*(timed out|unreachable|timeout)/i);
      } finally {
        silent.close();
      }
    });

    it("a second Storage on the same PGlite directory: exit 1 and the first one's pid; the first keeps serving, then stops once", async function () {
      const config = path.join(dir, "storage-pglite.json");
      await writeFile(config, JSON.stringify(storage({ dataDir: path.join(dir, "pgdata") })));
      const first = spawn(process.execPath, [BIN, "serve", "storage", "--config", config], { stdio: ["ignore", "pipe", "pipe"] });
      try {
        let out = "";
        await new Promise<void>((resolve, reject) => {
          first.stdout!.on("data", (chunk: Buffer) => {
            out += chunk.toString();
            if (out.includes("storage is serving")) resolve();
          });
          first.once("exit", (code) => reject(new Error(`the first Storage exited (${code})`)));
        });
        const { code, stderr } = await serve("storage", storage({ dataDir: path.join(dir, "pgdata") }));
        expect(code).to.equal(1);
        expect(stderr).to.include(`another process (pid ${first.pid}) has the embedded database`);
        expect(first.exitCode, "the first Storage still runs").to.equal(null);
        // Ctrl-C under hello start reaches a component twice (SIGINT from the terminal,
        // SIGTERM from hello start): it stops once, says so once, and exits 0.
        const exited = new Promise<number | null>((resolve) => first.once("exit", resolve));
        first.kill("SIGINT");
        first.kill("SIGTERM");
        expect(await exited).to.equal(0);
        const said = out.split("\n").filter((line) => line.includes('"msg":"stopping"'));
        expect(said, out).to.have.length(1);
      } finally {
        if (first.exitCode === null && first.signalCode === null) first.kill("SIGTERM");
        await new Promise((resolve) => (first.exitCode === null && first.signalCode === null ? first.once("exit", resolve) : resolve(null)));
      }
    });

    it("Token without its lookup key: exit 1 and which file is missing", async function () {
      const { code, stderr } = await serve("token", {
        ...base("token"),
        issuer: "https://id.example",
        keys: { signing: path.join(dir, "token-signing.json"), lookup: path.join(dir, "no-lookup.key") },
        clients: [],
        providers: [],
      });
      expect(code).to.equal(1, stderr);
      expect(stderr, stderr).to.include("no-lookup.key");
    });
  });

  it("Token's configuration has no place for database credentials", async function () {
    const { code, stderr } = await serve("token", { ...base("token"), database: { url: "postgresql://u:p@db/x" } });
    expect(code).to.equal(1);
    expect(stderr).to.match(/Unrecognized key.*"database"/);
    expect(stderr).not.to.include("u:p@db");
  });

  it("Orchestration's configuration cannot name a Storage peer", async function () {
    const { code, stderr } = await serve("orchestration", {
      ...base("orchestration"),
      peers: { token: "https://127.0.0.1:1", encryption: "https://127.0.0.1:2", storage: "https://127.0.0.1:3" },
    });
    expect(code).to.equal(1);
    expect(stderr).to.match(/peers: Unrecognized key.*"storage"/);
  });

  it("reports every configuration problem at once", async function () {
    const { code, stderr } = await serve("encryption", { component: "encryption", listen: { port: -1 }, tls: {} });
    expect(code).to.equal(1);
    for (const problem of ["listen.port", "tls.cert", "tls.key", "bundles", "peers"]) expect(stderr).to.include(problem);
  });

  it("a usage error names the components", async function () {
    const result = (await rejectionOf(run(process.execPath, [BIN, "serve", "vault"]))) as { code: number; stderr: string };
    expect(result.code).to.equal(2);
    expect(result.stderr).to.include("orchestration, token, encryption, storage");
  });
});

describe("hello --help everywhere, and errors that name the bad word (issue 18)", function () {
  this.timeout(120_000);
  /** `hello <args>` in this process, as bin.js runs it (main()): its exit code and what it wrote. */
  async function hello(args: string[]) {
    const written = { stdout: [] as string[], stderr: [] as string[] };
    const writes = { stdout: process.stdout.write, stderr: process.stderr.write };
    for (const stream of ["stdout", "stderr"] as const) {
      process[stream].write = ((chunk: string | Uint8Array) => (written[stream].push(String(chunk)), true)) as typeof process.stdout.write;
    }
    try {
      const code = await main(args);
      return { code, stdout: written.stdout.join(""), stderr: written.stderr.join("") };
    } finally {
      process.stdout.write = writes.stdout;
      process.stderr.write = writes.stderr;
    }
  }
  const commands = [
    ["start"], ["serve"], ["serve", "storage"], ["verify"], ["metrics"], ["metrics", "token"],
    ...["init-ca", "issue", "dev", "bundle", "show"].map((c) => ["pki", c]),
    ...["status", "rotate", "promote", "prune", "publish", "init", "lookup"].map((c) => ["keys", c]),
    ...["new", "install", "fingerprint"].map((c) => ["keys", "lookup", c]),
    ["devop"], ["demoapp"],
    ...["status", "rotate", "rewrap", "drop", "storage"].map((c) => ["keyring", c]),
    ["keyring", "storage", "restore"],
  ];

  it("--help on every command and subcommand (and -h on each command): exit 0 and its usage on stdout, no stack trace", async function () {
    // The real command, once: bin.js exits with main()'s code.
    const { stdout: real } = await run(process.execPath, [BIN, "start", "--help"]);
    expect(real).to.match(/^usage: hello start\b/);
    for (const command of commands) {
      for (const flag of command.length === 1 ? ["--help", "-h"] : ["--help"]) {
        const { code, stdout, stderr } = await hello([...command, flag]);
        const what = `hello ${command.join(" ")} ${flag}`;
        expect(code, `${what}: ${stderr}`).to.equal(0);
        expect(stdout, what).to.match(new RegExp(`^usage: hello ${command[0]}\\b`));
        expect(stderr, what).to.equal("");
      }
    }
  });

  it("a misspelt component, option or command is named, with the usage; exit 2", async function () {
    const cases: Array<[string[], string]> = [
      [["serve", "storag"], 'hello serve: unknown component "storag": expected one of orchestration, token, encryption, storage'],
      [["start", "--bogus"], "hello start: Unknown option '--bogus'"],
      [["serve", "storage", "--bogus"], "hello serve: Unknown option '--bogus'"],
      [["metrics", "tokn"], 'hello metrics: unknown component "tokn"'],
      [["verify", "--bogus"], "hello verify: Unknown option '--bogus'"],
      [["keys", "rotat"], 'hello keys: unknown keys command "rotat"'],
      [["keys", "lookup", "nwe"], 'hello keys lookup: unknown keys lookup command "nwe"'],
      [["keys", "init", "vault"], 'unknown component "vault"'],
      [["devop", "--bogus"], "hello devop: Unknown option '--bogus'"],
      [["demoapp", "--issuer", "http://localhost:9000"], "hello demoapp: --client-id is required"],
      [["pki", "issue", "vault"], 'unknown component "vault"'],
      [["keyring", "spin"], 'hello keyring: unknown keyring command "spin"'],
      [["spin"], 'hello: unknown command "spin"'],
    ];
    for (const [args, says] of cases) {
      const { code, stderr } = await hello(args);
      expect(code, `hello ${args.join(" ")}: ${stderr}`).to.equal(2);
      expect(stderr).to.include(says);
      expect(stderr).to.include("usage: hello");
      expect(stderr).not.to.match(/\n\s+at /);
    }
  });
});

describe("hello-mesh: the command outside the checkout (issue 18)", function () {
  this.timeout(120_000);
  let prefix: string;
  before(async () => (prefix = await mkdtemp(path.join(os.tmpdir(), "hello-global-"))));
  after(async () => rm(prefix, { recursive: true, force: true }));

  it("npm install -g <checkout> links it as hello-mesh, which runs from anywhere and prints hints under that name", async function () {
    const checkout = path.resolve(import.meta.dirname, "../..");
    await run("npm", ["install", "-g", "--prefix", prefix, "--offline", "--ignore-scripts", "--no-audit", "--no-fund", checkout]);
    const command = path.join(prefix, "bin", "hello-mesh");
    const elsewhere = await mkdtemp(path.join(prefix, "work-"));
    const { stdout } = await run(command, ["help"], { cwd: elsewhere });
    expect(stdout).to.match(/^usage: hello <command>/);
    const { stdout: made } = await run(command, ["pki", "init-ca", "token", "--dir", path.join(elsewhere, "pki"), "--key-type", "p256"], { cwd: elsewhere });
    expect(made).to.include(`next: hello-mesh pki issue token --dir ${path.join(elsewhere, "pki")}`);
  });
});

