// `hello verify` against running deployments (docs/design.md §8): it passes against what
// `hello start` runs, BuildInfo reports each artifact's digest, and it fails, naming
// the component, when one component runs a modified build or not the file the
// deployment names.

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { cpSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { createClient } from "@connectrpc/connect";
import { COMPONENTS, type Component } from "../../protocol/identity.js";
import { readBundles, trustFromBundles } from "../../../mesh/bundle.js";
import { createMeshTransport } from "../../../mesh/client.js";
import { BuildInfoService } from "../../gen/hello/common/v1/build_info_pb.js";
import { artifactDigest } from "../../components/runtime/buildinfo/artifact-digest.js";
import { readBuildRecord } from "../../components/runtime/buildinfo/build-record.js";
import { buildComponents } from "../build/build.js";
import { loadDevConfig } from "../../dev/dev-config.js";
import { pkiPaths } from "../pki/layout.js";
import { type ComponentProcesses, startComponentProcesses } from "../../dev/component-processes.js";
import { deploymentRecord, pidsOf, readDeploymentRecord, writeDeploymentRecord } from "../../dev/deployment-record.js";
import { prepareDevDeployment } from "../../dev/dev-deployment.js";
import { freePort } from "../../../test/support/free-port.js";

const run = promisify(execFile);
const CHECKOUT = path.resolve(import.meta.dirname, "../../..");
const BIN = path.join(CHECKOUT, "cmd/hello/bin.js");
const PINNED = `v${readFileSync(path.join(CHECKOUT, ".node-version"), "utf8").trim()}`;

async function devConfig(dir: string): Promise<{ file: string; ports: Record<Component | "public", number> }> {
  const ports = {} as Record<Component | "public", number>;
  for (const key of [...COMPONENTS, "public"] as const) ports[key] = await freePort();
  const file = path.join(dir, "hello.config.json");
  await writeFile(file, JSON.stringify({ issuer: `http://localhost:${ports.public}`, ports, certificates: "certs", stateDir: "state" }));
  return { file, ports };
}

/** `hello verify …`: exit code and output, whether it passes or fails. */
async function verify(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, "verify", ...args], { timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** The table row of `component`: [expected, deployed, reported, verdict]. */
function row(stdout: string, component: Component): string[] {
  const line = stdout.split("\n").find((l) => l.startsWith(`${component} `));
  if (!line) throw new Error(`no row for ${component} in:\n${stdout}`);
  return line.split(/\s+/).slice(1);
}

describe("hello verify after hello start (the deployment runs from artifacts)", function () {
  this.timeout(180_000);
  let dir: string;
  let config: string;
  let hello: ChildProcess;
  let output = "";

  before(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-verify-start-"));
    ({ file: config } = await devConfig(dir));
    hello = spawn(process.execPath, [BIN, "start", "--config", config], { stdio: ["ignore", "pipe", "pipe"] });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`hello start did not come up:\n${output}`)), 150_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes("Press Ctrl-C to stop.")) {
          clearTimeout(timer);
          resolve();
        }
      };
      hello.stdout!.on("data", onData);
      hello.stderr!.on("data", onData);
      hello.once("exit", (code) => reject(new Error(`hello start exited with ${code}:\n${output}`)));
    });
  });
  after(async function () {
    if (hello && hello.exitCode === null) hello.kill("SIGKILL");
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const recordFile = () => path.join(dir, "state", "deployment.json");

  it("passes with nothing but the config: each component runs what this checkout builds, the keys are Token's", async function () {
    const { code, stdout } = await verify(["--config", config]);
    expect(code, stdout).to.equal(0);
    for (const component of COMPONENTS) {
      const [expected, deployed, reported, verdict] = row(stdout, component);
      expect(expected).to.match(/^[0-9a-f]{16}$/);
      expect([deployed, reported, verdict]).to.deep.equal([expected, expected, "ok"]);
    }
    expect(stdout).to.include(`builds        ok: each component runs what this checkout builds, on Node ${PINNED}`);
    expect(stdout).to.include("verdict       ok: every served key is Token's");
    expect(stdout).to.not.include("FAIL");
  });

  it("BuildInfo, asked by another custodian's operator, reports the digest of the artifact each process was started from", async function () {
    const record = readDeploymentRecord(recordFile());
    const trust = trustFromBundles(readBundles(record.bundles, COMPONENTS));
    for (const [i, component] of COMPONENTS.entries()) {
      const entry = record.components[component];
      expect(entry.artifact).to.equal(path.join(CHECKOUT, "dist", component, "main.mjs"));
      expect(readFileSync(`/proc/${entry.pid}/cmdline`, "utf8").split("\0")[1]).to.equal(entry.artifact);
      const digest = await artifactDigest(path.dirname(entry.artifact!));
      expect(output, "hello start prints each digest").to.include(`${component.padEnd(15)}${digest}`);

      const asker = COMPONENTS[(i + 1) % COMPONENTS.length]!;
      const operator = pkiPaths(record.certs, asker);
      const client = createClient(
        BuildInfoService,
        createMeshTransport({
          target: component,
          baseUrl: entry.mesh,
          credentials: { certPem: readFileSync(operator.operatorCert, "utf8"), keyPem: readFileSync(operator.operatorKey, "utf8") },
          trust,
        }),
      );
      const { buildInfo } = await client.getBuildInfo({});
      expect(buildInfo).to.include({ component, artifactDigest: digest, nodeVersion: PINNED });
      expect(buildInfo!.sourceRevision).to.equal(readBuildRecord(path.dirname(entry.artifact!), digest)!.sourceRevision);
    }
  });

  it("hello start stops on Ctrl-C and takes its deployment record with it; verify then says there is nothing to check", async function () {
    const exited = new Promise<number | null>((r) => hello.once("exit", (code) => r(code)));
    hello.kill("SIGINT");
    expect(await exited).to.equal(0);
    expect(existsSync(recordFile())).to.equal(false);
    const { code, stderr } = await verify(["--config", config]);
    expect(code).to.equal(2);
    expect(stderr).to.include(`there is no deployment record at ${recordFile()}`);
  });
});

describe("hello verify when one component runs a modified build", function () {
  this.timeout(180_000);
  let dir: string;
  let processes: ComponentProcesses;
  let issuer: string;
  let artifacts: Record<Component, string>;
  let modified: string;
  let record: ReturnType<typeof deploymentRecord>;
  let bundles: string;
  let deployment: Awaited<ReturnType<typeof prepareDevDeployment>>;

  before(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-verify-modified-"));
    const built = await buildComponents({ sourceDir: CHECKOUT, outDir: path.join(dir, "dist") });
    artifacts = Object.fromEntries(built.map((a) => [a.component, a.entry])) as Record<Component, string>;

    // Token's artifact with one message changed: it runs, and it is not what the source builds.
    cpSync(path.dirname(artifacts.token), path.join(dir, "modified", "token"), { recursive: true });
    modified = path.join(dir, "modified", "token", "main.mjs");
    const code = readFileSync(modified, "utf8");
    expect(code).to.include("reloaded the signing keys");
    writeFileSync(modified, code.replace("reloaded the signing keys", "reloaded the signing keyz"));

    const { file, ports } = await devConfig(dir);
    issuer = `http://localhost:${ports.public}`;
    deployment = await prepareDevDeployment(loadDevConfig(file));
    bundles = path.join(deployment.certs, "bundles");
    const running = { ...artifacts, token: modified };
    processes = startComponentProcesses(deployment, { artifacts: running });
    await processes.ready;
    record = deploymentRecord(deployment, pidsOf(processes.children), running, issuer);
  });
  after(async function () {
    await processes?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("fails, naming token, and passes the others", async function () {
    const file = path.join(dir, "deployment.json");
    await writeDeploymentRecord(file, record);
    const { code, stdout } = await verify(["--deployment", file, "--issuer", issuer, "--bundles", bundles]);
    expect(code, stdout).to.equal(1);
    const [expected, deployed, reported, verdict] = row(stdout, "token");
    expect(deployed).to.not.equal(expected);
    expect(reported, "token reports the digest of what it runs").to.equal(deployed);
    expect(verdict).to.equal("FAIL");
    expect(stdout).to.include(`FAIL          token: the deployed artifact ${path.dirname(modified)} (${await artifactDigest(path.dirname(modified))}) is not what this checkout builds`);
    for (const other of COMPONENTS.filter((c) => c !== "token")) expect(row(stdout, other).at(-1), other).to.equal("ok");
    expect(stdout).to.include("verdict       ok: every served key is Token's");
    expect(stdout.trimEnd().split("\n").at(-1)).to.equal("hello verify: FAILED for token");
  });

  it("fails, naming token, when the deployment record names a file the process does not run", async function () {
    // The record claims the honest build; /proc shows the process runs the modified one.
    const file = path.join(dir, "deployment-claim.json");
    await writeDeploymentRecord(file, { ...record, components: { ...record.components, token: { ...record.components.token, artifact: artifacts.token } } });
    const { code, stdout } = await verify(["--deployment", file, "--issuer", issuer, "--bundles", bundles]);
    expect(code, stdout).to.equal(1);
    expect(stdout).to.include(`FAIL          token: process ${record.components.token.pid} does not run ${artifacts.token}`);
    expect(row(stdout, "token").at(-1)).to.equal("FAIL");
    expect(stdout.trimEnd().split("\n").at(-1)).to.equal("hello verify: FAILED for token");
  });

  it("fails, naming token, when the record names an idle honest copy while the modified build answers on the mesh", async function () {
    // An honest token artifact, really running (on another port), for the record to point at.
    const config = { ...deployment.configs.token, listen: { ...deployment.configs.token.listen, port: await freePort() } };
    const configFile = path.join(dir, "token-idle.json");
    await writeFile(configFile, JSON.stringify(config));
    const idle = spawn(process.execPath, [artifacts.token, "--config", configFile], { stdio: "ignore" });
    try {
      const file = path.join(dir, "deployment-idle.json");
      await writeDeploymentRecord(file, {
        ...record,
        components: { ...record.components, token: { ...record.components.token, pid: idle.pid!, artifact: artifacts.token } },
      });
      // Until the copy listens it would fail for a weaker reason; wait for its port.
      for (let i = 0; i < 100 && !readFileSync(`/proc/${idle.pid}/net/tcp`, "utf8").includes(`:${config.listen.port.toString(16).toUpperCase().padStart(4, "0")} 00000000:0000 0A`); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      const { code, stdout } = await verify(["--deployment", file, "--issuer", issuer, "--bundles", bundles]);
      expect(code, stdout).to.equal(1);
      const [expected, deployed] = row(stdout, "token");
      expect(deployed, "the idle copy is the honest build").to.equal(expected);
      expect(stdout).to.include(`FAIL          token: process ${idle.pid} does not listen on ${record.components.token.mesh}: another process answers there`);
      expect(stdout.trimEnd().split("\n").at(-1)).to.equal("hello verify: FAILED for token");
    } finally {
      idle.kill("SIGKILL");
    }
  });
});
