// Four custodians, as docs/deploy.md walks through it (issue 18): every command of its
// shell blocks runs, in order, in a scratch directory, with the `hello-mesh` command
// installed the way the page says (npm install -g <checkout>, here into a scratch
// prefix). The long-running commands (the four `hello-mesh serve`, `devop`, `demoapp`)
// are started in the background and waited for; the page's ports are swapped for free
// ones. Then a login through the front door with the development OP (through the demo
// app, and with openid-client as the app), and checks: each custodian's directory holds
// only its own secrets, every bundle was exchanged, nothing is left in the handover.

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import * as oidc from "openid-client";
import { Browserless, type Page } from "../support/browserless.js";
import { freePort } from "../support/free-port.js";
import { waitUntilFrontDoorReady } from "../../internal/dev/readiness.js";
import { DEFAULT_DEV_USERS } from "../../internal/dev/devop/dev-op.js";
import { authorizationRequest } from "../support/app-client.js";

const run = promisify(execFile);
const CHECKOUT = path.resolve(import.meta.dirname, "../..");
const CUSTODIANS = ["orchestration", "token", "encryption", "storage"] as const;
type Custodian = (typeof CUSTODIANS)[number];
/** The ports docs/deploy.md names: the front door, the development OP, the demo app, the mesh. */
const PAGE_PORTS = [9000, 9001, 9002, 7100, 7101, 7102, 7103] as const;
const ALICE = DEFAULT_DEV_USERS[0]!;

interface Block {
  readonly script: string;
  /** A command that runs until stopped: started in the background. */
  readonly background: boolean;
}

/** docs/deploy.md's shell blocks, in order; a block of one long-running command is a background one. */
export function deployBlocks(markdown: string): Block[] {
  return [...markdown.matchAll(/^```sh\n([\s\S]*?)^```/gm)].map((match) => {
    const script = match[1]!;
    const lines = script.split("\n").filter((line) => line.trim() && !line.trim().startsWith("#"));
    const background = lines.length === 1 && /^hello-mesh (serve|devop|demoapp)\b/.test(lines[0]!.trim());
    return { script, background };
  });
}

describe("four custodians, command for command as docs/deploy.md says (issue 18)", function () {
  this.timeout(300_000);
  let scratch: string;
  let prefix: string;
  let env: NodeJS.ProcessEnv;
  const ports = new Map<number, number>();
  const running: Array<{ name: string; child: ChildProcess; exited: Promise<void> }> = [];
  let demoPage: Page | undefined;
  let claims: oidc.IDToken | undefined;
  const ran: string[] = [];

  const port = (page: number) => ports.get(page)!;
  const withPorts = (text: string) => text.replace(new RegExp(`\\b(${PAGE_PORTS.join("|")})\\b`, "g"), (p) => String(port(Number(p))));

  before(async function () {
    scratch = await mkdtemp(path.join(os.tmpdir(), "hello-custodians-"));
    prefix = await mkdtemp(path.join(os.tmpdir(), "hello-custodians-bin-"));
    // The page's first instruction: the checkout's command as hello-mesh (a link).
    await run("npm", ["install", "-g", "--prefix", prefix, "--offline", "--ignore-scripts", "--no-audit", "--no-fund", CHECKOUT]);
    env = { ...process.env, PATH: `${path.join(prefix, "bin")}:${process.env.PATH}` };
    for (const p of PAGE_PORTS) ports.set(p, await freePort());

    const blocks = deployBlocks(readFileSync(path.join(CHECKOUT, "docs/deploy.md"), "utf8"));
    for (const block of blocks) {
      const script = withPorts(block.script);
      if (block.background) {
        await startInBackground(script.trim());
        if (/^hello-mesh serve orchestration\b/.test(script.trim())) {
          // As the page says: the front door is ready when /healthz/ready answers 200.
          await waitUntilFrontDoorReady(`http://127.0.0.1:${port(9000)}`, 60_000);
        }
        if (/^hello-mesh demoapp\b/.test(script.trim())) await logIn();
      } else {
        try {
          await run("bash", ["-e", "-o", "pipefail", "-c", script], { cwd: scratch, env, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
        } catch (error) {
          const e = error as { code?: number; stdout?: string; stderr?: string };
          throw new Error(`docs/deploy.md's block failed (exit ${e.code}):\n${block.script}\n${e.stderr ?? ""}${e.stdout ?? ""}`);
        }
      }
      ran.push(block.script);
    }
  });

  after(async function () {
    // Every process the page started, stopped as Ctrl-C would, and waited for.
    await Promise.all(
      running.map(async ({ child, exited }) => {
        try {
          process.kill(-child.pid!, "SIGINT");
        } catch {
          // already gone
        }
        await exited;
      }),
    );
    if (scratch) await rm(scratch, { recursive: true, force: true });
    if (prefix) await rm(prefix, { recursive: true, force: true });
  });

  /** Starts one long-running command and waits until it says it is up. */
  async function startInBackground(command: string): Promise<void> {
    const child = spawn("bash", ["-c", `exec ${command}`], { cwd: scratch, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    running.push({ name: command, child, exited });
    const ready = /^hello-mesh serve\b/.test(command) ? / is serving on / : /Press Ctrl-C to stop\./;
    let output = "";
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (ready.test(output)) resolve();
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", onData);
      child.once("exit", (code, signal) => reject(new Error(`${command} exited (${signal ?? code}) before it was up:\n${output}`)));
    });
  }

  /** The page's step 6, as a person does it through the demo app; then openid-client as the app. */
  async function logIn(): Promise<void> {
    const browser = new Browserless();
    const demo = `http://localhost:${port(9002)}`;
    const callback = new URL("/callback", demo);
    let page = await browser.go(new URL("/login", demo));
    page = await browser.submit(browser.form(page, /\/login$/), [["email", ALICE.email], ["password", ALICE.password]]);
    page = await browser.submit(browser.form(page, /^\/consent$/), [["decision", "allow"]]);
    demoPage = page;

    // The same login with openid-client as the app, the standard relying party: the user's
    // session at the OP and the release are there, so it comes straight back with a code.
    const issuer = `http://localhost:${port(9000)}`;
    const config = await oidc.discovery(new URL(issuer), "demo-app", undefined, oidc.ClientSecretBasic("demo-app-secret-for-this-walkthrough"), {
      execute: [oidc.allowInsecureRequests, oidc.enableNonRepudiationChecks],
    });
    const { checks, url } = await authorizationRequest(config, callback.href);
    const back = await browser.go(url, {}, (u) => u.origin === callback.origin && u.pathname === callback.pathname);
    const tokens = await oidc.authorizationCodeGrant(config, back.url, checks);
    claims = tokens.claims();
  }

  it("runs every block of the page: certificates, configurations, keys, the lookup key's handover, bundles, the processes, verify", function () {
    const blocks = deployBlocks(readFileSync(path.join(CHECKOUT, "docs/deploy.md"), "utf8"));
    expect(ran).to.have.length(blocks.length);
    const all = blocks.map((b) => b.script).join("\n");
    for (const needle of ["pki init-ca", "keys init", "keys lookup new", "keys lookup install", "pki bundle", "devop", "serve orchestration", "demoapp", "verify"]) {
      expect(all, needle).to.include(`hello-mesh ${needle}`);
    }
    expect(running.map((r) => r.name.split(" ").slice(0, 3).join(" "))).to.have.members([
      "hello-mesh devop --port",
      "hello-mesh serve storage",
      "hello-mesh serve encryption",
      "hello-mesh serve token",
      "hello-mesh serve orchestration",
      "hello-mesh demoapp --issuer",
    ]);
  });

  it("logs Alice in through the front door with the development OP: at the demo app, and with openid-client", function () {
    expect(demoPage?.url.origin).to.equal(`http://localhost:${port(9002)}`);
    expect(demoPage?.body).to.include(ALICE.email);
    expect(claims).to.include({ iss: `http://localhost:${port(9000)}`, aud: "demo-app", email: ALICE.email });
    expect(claims!.sub).to.be.a("string").and.not.equal(ALICE.sub);
  });

  it("every custodian's directory holds only its own secrets (Orchestration's and Token's both the lookup key)", function () {
    const secrets = custodianSecrets(scratch);
    for (const custodian of CUSTODIANS) {
      for (const file of filesUnder(path.join(scratch, custodian))) {
        const relative = path.relative(scratch, file);
        const bytes = readFileSync(file);
        const text = bytes.toString("latin1");
        if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
          expect(relative, "a PEM private key").to.match(new RegExp(`^${custodian}/certs/${custodian}/(ca|${custodian}|operator)\\.key$`));
        }
        if (file.endsWith(".json") && /"d"\s*:/.test(text)) {
          expect(relative, "a private JWK").to.equal(`${custodian}/keys/signing-keys.json`);
          expect(custodian).to.be.oneOf(["token", "storage"]);
        }
        for (const secret of secrets) {
          if (secret.holders.includes(custodian)) continue;
          for (const needle of secret.forms) {
            expect(bytes.includes(needle), `${relative} holds ${secret.name}`).to.equal(false);
          }
        }
      }
    }
    // And the secrets are where they belong, 0600.
    for (const secret of secrets) {
      for (const holder of secret.holders) {
        const file = path.join(scratch, secret.files[holder]!);
        expect(statSync(file).mode & 0o777, file).to.equal(0o600);
      }
    }
    const lookup = (c: Custodian) => readFileSync(path.join(scratch, c, "keys/lookup.key"), "utf8");
    expect(lookup("orchestration")).to.equal(lookup("token"));
    expect(filesUnder(path.join(scratch, "handover"))).to.deep.equal([]);
  });

  it("each custodian holds all four bundles, each as its custodian published it, with no private key", function () {
    for (const custodian of CUSTODIANS) {
      expect(readdirSync(path.join(scratch, custodian, "bundles")).sort()).to.deep.equal(CUSTODIANS.map((c) => `${c}.json`).sort());
      for (const from of CUSTODIANS) {
        const copy = readFileSync(path.join(scratch, custodian, "bundles", `${from}.json`), "utf8");
        expect(copy, `${custodian}'s copy of ${from}'s bundle`).to.equal(readFileSync(path.join(scratch, from, "bundles", `${from}.json`), "utf8"));
        const bundle = JSON.parse(copy) as { ca: string; jwks: { keys: Array<Record<string, unknown>> } };
        expect(bundle.ca).to.equal(readFileSync(path.join(scratch, from, "certs", from, "ca.crt"), "utf8"));
        for (const key of bundle.jwks.keys) expect(key).to.not.have.property("d");
        expect(bundle.jwks.keys.length > 0).to.equal(from === "token" || from === "storage");
      }
    }
  });
});

interface Secret {
  readonly name: string;
  readonly holders: readonly Custodian[];
  /** Where each holder keeps it, relative to the scratch directory. */
  readonly files: Partial<Record<Custodian, string>>;
  /** Every form it could be found in: as written, and as raw bytes. */
  readonly forms: readonly Buffer[];
}

/** Every custodian's secrets, read from where the page made them. */
function custodianSecrets(scratch: string): Secret[] {
  const read = (file: string) => readFileSync(path.join(scratch, file), "utf8");
  const base64url = (name: string, holders: Custodian[], files: Partial<Record<Custodian, string>>, value: string): Secret => ({
    name,
    holders,
    files,
    forms: [Buffer.from(value), Buffer.from(value, "base64url")],
  });
  const secrets: Secret[] = [];
  for (const c of CUSTODIANS) {
    for (const key of ["ca", c, "operator"]) {
      const file = `${c}/certs/${c}/${key}.key`;
      const pem = read(file);
      const body = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
      secrets.push({ name: `${c}'s ${key}.key`, holders: [c], files: { [c]: file }, forms: [Buffer.from(pem), Buffer.from(body), Buffer.from(body, "base64")] });
    }
  }
  for (const c of ["token", "storage"] as const) {
    const file = `${c}/keys/signing-keys.json`;
    for (const jwk of (JSON.parse(read(file)) as { keys: Array<{ kid: string; d: string }> }).keys) {
      secrets.push(base64url(`${c}'s signing key ${jwk.kid}`, [c], { [c]: file }, jwk.d));
    }
  }
  const lookup = read("token/keys/lookup.key").trim();
  secrets.push(base64url("the lookup key", ["orchestration", "token"], { orchestration: "orchestration/keys/lookup.key", token: "token/keys/lookup.key" }, lookup));
  secrets.push(base64url("Orchestration's cookie key", ["orchestration"], { orchestration: "orchestration/keys/cookie.key" }, read("orchestration/keys/cookie.key").trim()));
  const keyring = JSON.parse(read("encryption/keys/keyring.json")) as { keys: Record<string, string> };
  for (const [id, key] of Object.entries(keyring.keys)) {
    secrets.push(base64url(`Encryption's record key ${id}`, ["encryption"], { encryption: "encryption/keys/keyring.json" }, key));
  }
  return secrets;
}

function filesUnder(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(full) : entry.isFile() ? [full] : [];
  });
}
