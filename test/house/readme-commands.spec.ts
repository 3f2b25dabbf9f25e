// Every command in the README runs, as a reader would type it (issue 12): `npm start` in a
// copy of this checkout, then each command of the README's shell blocks and each `npx`
// command of its prose, in order, against that running service. A command the README
// shows that stops working fails this test.
//
// Not run here, each for a reason: `npm ci` (CI itself runs it on a fresh machine),
// `npm test` (this is part of it), and the production custodian's `hello pki bundle …
// --keys` and `hello serve` (they need a custodian's own signing keys, which no command
// makes yet; the four-custodian walkthrough will run them). /etc/hello in the README
// becomes a scratch directory.

import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, realpathSync, symlinkSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";

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
  if (/^npx hello pki bundle storage .*--keys/.test(command) || /^npx hello serve storage/.test(command)) return null;
  return command.replaceAll("/etc/hello", etc);
}

describe("every command in the README runs (issue 12)", function () {
  this.timeout(300_000);
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
    // npm start's whole process group: npm, hello start and the four components.
    if (service?.pid) {
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
    for (const needle of ["npx hello pki init-ca", "npx hello keys status", "npx buf curl", "npx hello metrics", "npx hello verify"]) {
      expect(commands.some((c) => c.startsWith(needle)), needle).to.equal(true);
    }
  });

  it("each one succeeds against the running service", async function () {
    expect(output).to.include("hello-mesh is running");
    const commands = readmeCommands(readFileSync(path.join(CHECKOUT, "README.md"), "utf8"));
    const ran: string[] = [];
    for (const command of commands) {
      const line = asRun(command, etc);
      if (line === null) continue;
      try {
        await run("bash", ["-c", line], { cwd: path.join(dir, "checkout"), timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
      } catch (error) {
        const e = error as { code?: number; stdout?: string; stderr?: string };
        expect.fail(`the README's command failed (exit ${e.code}): ${command}\n${e.stderr ?? ""}${e.stdout ?? ""}`);
      }
      ran.push(command);
    }
    expect(ran.length).to.be.at.least(8);
  });
});
