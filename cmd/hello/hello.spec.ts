// The `hello` command as people run it: separate processes, real certificates made on
// first run, and the operator's view through `buf curl`.

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile, readFile } from "node:fs/promises";
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
  const ports = {} as Record<Component | "public", number>;

  before(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-start-"));
    for (const key of [...COMPONENTS, "public"] as const) ports[key] = await freePort();
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
      ["BackfillRecordDigest", "CreateRecord", "DeleteRecord", "ReadRecord", "UpdateRecord"].map((m) => `hello.storage.v1.StorageService/${m}`),
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
    for (const c of COMPONENTS) {
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

  it("with Token's port taken, it says so, names the setting, stops the others and exits 1", async function () {
    // It accepts connections and never answers: no TLS handshake ever completes.
    const held = new Set<net.Socket>();
    const squatter = net.createServer((socket) => held.add(socket));
    await new Promise<void>((resolve) => squatter.listen(ports.token, "127.0.0.1", resolve));
    try {
      const started = performance.now();
      const child = spawn(process.execPath, [BIN, "start", "--config", path.join(dir, "hello.config.json")], { stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
      child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
      const code = await new Promise<number | null>((resolve) => {
        const timer = setTimeout(() => (child.kill("SIGKILL"), resolve(null)), 60_000);
        child.once("exit", (exitCode) => (clearTimeout(timer), resolve(exitCode)));
      });
      expect(code, `hello start's exit code; it said:\n${output}`).to.equal(1);
      expect(output).to.include(`cannot listen on 127.0.0.1:${ports.token} (EADDRINUSE)`);
      expect(output).to.include(`token exited during start-up (code 1); it listens on port ${ports.token}, ports.token in`);
      expect(performance.now() - started, "it does not wait for a readiness timeout").to.be.below(30_000);
      for (const c of ["orchestration", "encryption", "storage"] as const) {
        const refused = await new Promise<boolean>((resolve) => {
          const socket = net.connect(ports[c], "127.0.0.1");
          socket.once("connect", () => (socket.destroy(), resolve(false)));
          socket.once("error", () => resolve(true));
        });
        expect(refused, `${c} still listening`).to.equal(true);
      }
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => squatter.close(resolve));
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
    const { generateSigningKey, privateJwk } = await import("../../internal/protocol/signing-keys.js");
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
