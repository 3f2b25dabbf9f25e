// Every command in the README runs, as a reader would type it (issue 12): `npm start` in a
// copy of this checkout, then each command of the README's shell blocks and each `npx`
// command of its prose, in order, against that running service. A command the README
// shows that stops working fails this test.
//
// Not run here, each for a reason: `npm ci` (CI itself runs it on a fresh machine),
// `npm test` (this is part of it) and `npm run ha` (test/faults/ha-start.spec.ts).
// /etc/hello in the README becomes a scratch directory, and the README's storage.json
// is written there first (its port swapped for a free one: the running service holds
// 7103). The custodian's `hello serve storage` runs until
// it serves, with the other three custodians' bundles copied in from the running
// service (the exchange the README asks for), and is then stopped. `hello wallet login`'s
// browser step is done by the browserless stand-in, as the development OP's Alice; the
// README's `<session id>` and `<instance id>` are the ones the commands before printed,
// and its bill.pdf is a file written in the checkout.

import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { freePort } from "../support/free-port.js";
import { browserlessWalletStep } from "../support/wallet-browser.js";
import { DEFAULT_DEV_USERS } from "../../internal/dev/devop/dev-op.js";

const run = promisify(execFile);
const CHECKOUT = path.resolve(import.meta.dirname, "../..");

/** The README's commands: each shell block's lines (continuations joined, comments dropped), then the `npx` commands of its prose. */
export function readmeCommands(markdown: string): string[] {
  const commands: string[] = [];
  for (const block of markdown.matchAll(/^```sh\n([\s\S]*?)^```/gm)) {
    const joined = block[1]!.replace(/\\\n\s*/g, " ");
    for (const line of joined.split("\n")) {
      const command = line.replace(/\s+#.*$/, "").trim();
      if (command && !command.startsWith("#")) commands.push(command);
    }
  }
  for (const [, inline] of markdown.matchAll(/`(npx [^`]+)`/g)) commands.push(inline!);
  return commands;
}

/** What this test runs in place of a command it cannot run as written; null to leave it out. */
function asRun(command: string, etc: string): string | null {
  if (command === "npm ci && npm start") return null; // the service this test starts
  if (/^npm ci && npm test\b/.test(command)) return null;
  // Needs Debian's patroni and etcd-server, and starts a database cluster: run as a reader
  // would by test/faults/ha-start.spec.ts, in `npm run test:faults`, which installs them.
  if (command === "npm run ha") return null;
  return command.replaceAll("/etc/hello", etc);
}

/** The README's JSON block that follows the prose naming `file` (`storage.json`). */
export function readmeJson(markdown: string, file: string): Record<string, unknown> {
  const at = markdown.indexOf(`\`${file}\` (`);
  const block = /^```json\n([\s\S]*?)^```/m.exec(markdown.slice(at));
  if (at < 0 || !block) throw new Error(`the README shows no ${file}`);
  return JSON.parse(block[1]!) as Record<string, unknown>;
}

/** Process groups of the serving commands still running: the after hook stops them whatever happened. */
const serving = new Set<number>();

/** Runs a command that serves until stopped: started, waited for until it serves, stopped. */
async function serveUntilServing(line: string, cwd: string): Promise<void> {
  const child = spawn("bash", ["-c", `exec ${line}`], { cwd, stdio: ["ignore", "pipe", "pipe"], detached: true });
  serving.add(child.pid!);
  child.once("exit", () => serving.delete(child.pid!));
  // "close", not "exit": npx may exit on Ctrl-C before the component it runs has written
  // its last line, and the component holds the pipes until it is done.
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  let output = "";
  const served = new Promise<boolean>((resolve) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (/ is serving on /.test(output)) resolve(true);
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    void exited.then(() => resolve(false));
  });
  if (!(await served)) expect.fail(`the README's command exited before it served: ${line}\n${output}`);
  // Ctrl-C, as a terminal sends it: to npx and the component alike.
  process.kill(-child.pid!, "SIGINT");
  await exited;
  expect(output, `${line} stopped cleanly`).to.match(/"msg":"stopped"/);
}

/**
 * `hello wallet login` as a person runs it: it prints the address, the person signs in
 * there (the development OP's Alice, then hello-mesh's consent page), the browser comes
 * back to the command's loopback address, and the command exits 0.
 */
async function walletLogin(line: string, cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  const child = spawn("bash", ["-c", `exec ${line}`], { cwd, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  serving.add(child.pid!);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let output = "";
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /^\s+(http\S+\/authorize\?\S+)$/m.exec(output);
      if (match) resolve(match[1]!);
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    void exited.then(() => reject(new Error(`hello wallet login exited before it printed an address:\n${output}`)));
  });
  await browserlessWalletStep(DEFAULT_DEV_USERS[0]!)(url);
  expect(await exited, `hello wallet login exits 0:\n${output}`).to.equal(0);
  serving.delete(child.pid!);
}

describe("every command in the README runs (issue 12)", function () {
  this.timeout(600_000);
  let dir: string;
  let etc: string;
  let service: ChildProcess | undefined;
  let output = "";

  before(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-readme-"));
    etc = path.join(dir, "etc-hello");
    mkdirSync(etc);
    const checkout = path.join(dir, "checkout");
    const files = execFileSync("git", ["-C", CHECKOUT, "ls-files", "-z"]).toString().split("\0").filter(Boolean);
    for (const file of files) {
      if (!existsSync(path.join(CHECKOUT, file))) continue;
      mkdirSync(path.dirname(path.join(checkout, file)), { recursive: true });
      cpSync(path.join(CHECKOUT, file), path.join(checkout, file));
    }
    symlinkSync(realpathSync(path.join(CHECKOUT, "node_modules")), path.join(checkout, "node_modules"));
    // The README's first command (npm ci has run: node_modules is this checkout's).
    service = spawn("npm", ["start"], { cwd: checkout, stdio: ["ignore", "pipe", "pipe"], detached: true });
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes("Press Ctrl-C to stop.")) resolve();
      };
      service!.stdout!.on("data", onData);
      service!.stderr!.on("data", onData);
      service!.once("exit", (code) => reject(new Error(`npm start exited with ${code}:\n${output}`)));
    });
  });
  after(async function () {
    for (const group of serving) {
      try {
        process.kill(-group, "SIGKILL");
      } catch {
        // already gone
      }
    }
    // npm start's whole process group: npm, hello start and the four components.
    // (A service that already exited, say because its port was taken, has nothing to wait for.)
    if (service?.pid && service.exitCode === null && service.signalCode === null) {
      const exited = new Promise((resolve) => service!.once("exit", resolve));
      try {
        process.kill(-service.pid, "SIGINT");
        await exited;
      } catch {
        // already gone
      }
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("finds the commands: the service, the tests, the custodian's, keys, buf curl, metrics, verify", function () {
    const commands = readmeCommands(readFileSync(path.join(CHECKOUT, "README.md"), "utf8"));
    expect(commands[0]).to.equal("npm ci && npm start");
    expect(commands[1]).to.match(/^npm ci && npm test/);
    for (const needle of ["npx hello pki init-ca", "npx hello keys init", "npx hello pki bundle", "npx hello serve", "npx hello keys status", "npx buf curl", "npx hello metrics", "npx hello verify"]) {
      expect(commands.some((c) => c.startsWith(needle)), needle).to.equal(true);
    }
  });

  it("each one succeeds against the running service", async function () {
    expect(output).to.include("hello-mesh is running");
    const readme = readFileSync(path.join(CHECKOUT, "README.md"), "utf8");
    const commands = readmeCommands(readme);
    const storage = readmeJson(readme, "storage.json");
    writeFileSync(path.join(etc, "storage.json"), JSON.stringify({ ...storage, listen: { host: "127.0.0.1", port: await freePort() } }));
    const ran: string[] = [];
    // `hello wallet`'s keys in a home of this test's own; the README's proof of address.
    const walletEnv = { ...process.env, HELLO_WALLET_HOME: path.join(dir, "wallet-home") };
    writeFileSync(path.join(dir, "checkout", "bill.pdf"), "%PDF-1.7 a utility bill");
    const wallet: { sessionId?: string; instanceId?: string } = {};
    for (const command of commands) {
      const line = asRun(command, etc);
      if (line === null) continue;
      if (/^npx hello serve /.test(line)) {
        // The exchange: the other three custodians' bundles, here the running service's.
        for (const peer of ["orchestration", "token", "encryption"]) {
          cpSync(path.join(dir, "checkout", "certs", "bundles", `${peer}.json`), path.join(etc, "bundles", `${peer}.json`));
        }
        await serveUntilServing(line, path.join(dir, "checkout"));
        ran.push(command);
        continue;
      }
      if (/^npx hello wallet login\b/.test(line)) {
        await walletLogin(line, path.join(dir, "checkout"), walletEnv);
        ran.push(command);
        continue;
      }
      const filled = line.replace("<session id>", wallet.sessionId ?? "<no session id printed>").replace(/<instance id>/g, wallet.instanceId ?? "<no instance id printed>");
      const started = performance.now();
      try {
        const { stdout } = await run("bash", ["-c", filled], { cwd: path.join(dir, "checkout"), timeout: 120_000, maxBuffer: 16 * 1024 * 1024, env: walletEnv });
        // What the next commands' placeholders stand for: the session an add left waiting, an identity card.
        const waiting = /hello wallet resume (\S+)/.exec(stdout);
        if (waiting) wallet.sessionId = waiting[1]!;
        const card = /^\s+identity_card\s+(\S+)\s+\d+ credentials?,/m.exec(stdout);
        if (card && !wallet.instanceId) wallet.instanceId = card[1]!;
        if (process.env.HELLO_README_TIMES) process.stdout.write(`      ${Math.round(performance.now() - started)} ms  ${command}\n`);
      } catch (error) {
        const e = error as { code?: number; stdout?: string; stderr?: string };
        expect.fail(`the README's command failed (exit ${e.code}): ${command}\n${e.stderr ?? ""}${e.stdout ?? ""}`);
      }
      ran.push(command);
    }
    expect(ran.length).to.be.at.least(8);
  });
});
