// `npm run ha` (hello start --ha) as a reader runs it (README, "Availability"): the whole
// service with its database as a Patroni cluster and two processes each of Token,
// Encryption and Storage. It is here, not in the README test of `npm test`, because it
// needs Debian's patroni and etcd-server, which `npm run test:faults` installs.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { decodeJwt } from "jose";

import { DEFAULT_DEV_USERS } from "../../internal/dev/devop/dev-op.js";
import { Browserless } from "../support/browserless.js";
import { authorizationRequest } from "../support/authorization-request.js";
import { freePort } from "../support/free-port.js";
import { allHaPorts } from "../../cmd/hello/start.js";
import { takenPorts } from "../../internal/dev/ports.js";

const BIN = path.resolve(import.meta.dirname, "../../cmd/hello/bin.js");
const DEMO_SECRET = "demo-app-secret-for-development-only";

/** A `ports.ha` whose ports (allHaPorts) are free now and none of `others`. */
async function haBase(others: readonly number[]): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const wanted = allHaPorts(base);
    if (wanted.some((port) => others.includes(port))) continue;
    if ((await takenPorts(wanted.map((port) => ({ setting: "ports.ha", host: "127.0.0.1", port })))).length === 0) return base;
  }
  throw new Error("no free range of ports for ports.ha");
}

describe("npm run ha: the whole service, every part replicated, as a reader runs it (docs/availability.md)", function () {
  let dir: string;
  let child: ChildProcess | undefined;

  after(async function () {
    this.timeout(60_000);
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((resolve) => child!.once("exit", resolve));
      process.kill(-child.pid!, "SIGINT");
      await Promise.race([gone, new Promise((resolve) => setTimeout(resolve, 30_000))]);
      if (child.exitCode === null) process.kill(-child.pid!, "SIGKILL");
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("starts, says where every part listens, logs a person in with the records on the cluster, and stops cleanly keeping the database", async function () {
    this.timeout(420_000);
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-ha-start-"));
    // mkdtemp's 0700 would keep out the postgres user that Patroni runs as (under root).
    await chmod(dir, 0o755);
    const named = {
      public: await freePort(), orchestration: await freePort(), token: await freePort(), encryption: await freePort(), storage: await freePort(),
      upstream: await freePort(), demo: await freePort(), upstream2: await freePort(), issuer: await freePort(), wallet: await freePort(),
      issuerStatus: await freePort(),
    };
    const ports = { ...named, ha: await haBase(Object.values(named)) };
    const issuer = `http://localhost:${ports.public}`;
    const callback = `http://localhost:${ports.demo}/callback`;
    await writeFile(path.join(dir, "hello.config.json"), JSON.stringify({
      issuer,
      ports,
      clients: [{ client_id: "demo-app", client_secret: DEMO_SECRET, redirect_uris: [callback], token_endpoint_auth_method: "client_secret_basic" }],
      providers: [{ id: "dev", name: "Development OP", issuer: `http://localhost:${ports.upstream}`, client_id: "hello-mesh", client_secret: "dev-op-secret-for-development-only" }],
    }));

    // As the README's command runs it (npm run ha = hello start --ha), from source: the
    // artifacts' build is `npm start`'s test.
    child = spawn(process.execPath, [BIN, "start", "--ha", "--source", "--config", "hello.config.json"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let output = "";
    const exited = new Promise<number | null>((resolve) => child!.once("close", (code) => resolve(code)));
    const running = new Promise<boolean>((resolve) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString("utf8");
        if (output.includes("Press Ctrl-C to stop.")) resolve(true);
      };
      child!.stdout!.on("data", onData);
      child!.stderr!.on("data", onData);
      void exited.then(() => resolve(false));
    });
    const started = performance.now();
    expect(await running, `hello start --ha ran:\n${output.slice(-4_000)}`).to.equal(true);
    const startMs = Math.round(performance.now() - started);

    // Where each part listens.
    for (const part of ["token-2", "encryption-2", "storage-2"]) expect(output).to.match(new RegExp(`^  ${part} +https://127\\.0\\.0\\.1:\\d+ +spiffe://hello\\.mesh/`, "m"));
    for (const member of ["pg1", "pg2", "pg3"]) expect(output).to.match(new RegExp(`^  ${member} +127\\.0\\.0\\.1:\\d+ +http://127\\.0\\.0\\.1:\\d+ +etcd\\d`, "m"));
    expect(output).to.match(/primary now: pg[123]; synchronous standby: pg[123]/);
    // The database members at ports.ha + 10…12, as the README and docs/availability.md say.
    const members = [10, 11, 12].map((o) => `127.0.0.1:${ports.ha + o}`).join(",");
    expect(output).to.include(`Storage's database URL: postgresql://postgres@${members}/postgres?target_session_attrs=read-write`);
    expect(output).to.match(/as three regions/);

    // A person logs in at the demo app's client, twice: the second time with no consent and the same sub.
    const login = async () => {
      const browser = new Browserless();
      const { url, verifier, atApp } = authorizationRequest(issuer, { client_id: "demo-app", redirect_uri: callback });
      const alice = DEFAULT_DEV_USERS[0]!;
      let page = await browser.go(url, {}, atApp);
      page = await browser.submit(browser.form(page, /\/login$/), [["email", alice.email], ["password", alice.password]], atApp);
      const consented = !atApp(page.url);
      if (consented) page = await browser.submit(browser.form(page, /^\/consent$/), [["decision", "allow"]], atApp);
      const code = page.url.searchParams.get("code");
      expect(code, `back at the app with a code (${page.url.href}, ${page.status})`).to.be.a("string");
      const response = await fetch(new URL("/token", issuer), {
        method: "POST",
        headers: { authorization: `Basic ${Buffer.from(`demo-app:${DEMO_SECRET}`).toString("base64")}`, "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ grant_type: "authorization_code", code: code!, redirect_uri: callback, code_verifier: verifier }),
      });
      expect(response.status).to.equal(200);
      return { sub: decodeJwt(((await response.json()) as { id_token: string }).id_token).sub, consented };
    };
    const first = await login();
    const second = await login();
    expect(first.consented, "a first visit asks for consent").to.equal(true);
    expect(second.consented, "a second does not").to.equal(false);
    expect(second.sub).to.equal(first.sub);

    // Ctrl-C, as a terminal sends it: everything stops, the database last, its data kept.
    process.kill(-child.pid!, "SIGINT");
    expect(await exited, `exit code:\n${output.slice(-3_000)}`).to.equal(0);
    expect(output).to.match(/cluster stopped/);
    expect(existsSync(path.join(dir, ".hello", "ha", "cluster.json")), "the cluster is kept for the next run").to.equal(true);
    console.log(`      hello start --ha ran (from source) after ${startMs} ms; two logins, the same sub; stopped cleanly`);
  });
});
