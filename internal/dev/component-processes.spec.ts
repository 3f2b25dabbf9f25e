// startComponentProcesses as `hello start` and the end-to-end rigs use it: a component
// that cannot serve is reported at once, with why, and never confused with whatever
// else answers on its port.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { loadDevConfig } from "./dev-config.js";
import { freePort } from "../../test/support/free-port.js";
import { startComponentProcesses } from "./component-processes.js";
import { prepareDevDeployment } from "./dev-deployment.js";

describe("startComponentProcesses: readiness", function () {
  this.timeout(120_000);
  let dir: string;
  let squatter: Server;

  before(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-processes-"));
  });
  after(async function () {
    await new Promise((resolve) => squatter?.close(resolve));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("a component whose port a plain HTTP server holds exits, and is reported at once, not after the timeout", async function () {
    const taken = await freePort();
    squatter = createServer((_req, res) => res.end("not a component"));
    await new Promise<void>((resolve) => squatter.listen(taken, "127.0.0.1", resolve));
    const ports = { public: await freePort(), orchestration: await freePort(), token: taken, encryption: await freePort(), storage: await freePort() };
    const configFile = path.join(dir, "hello.config.json");
    await writeFile(configFile, JSON.stringify({ issuer: `http://localhost:${ports.public}`, ports, certificates: "certs", stateDir: "state" }));
    const deployment = await prepareDevDeployment(loadDevConfig(configFile));

    const started = performance.now();
    const processes = startComponentProcesses(deployment, { components: ["token"], readyTimeoutMs: 60_000 });
    const failure = await processes.ready.then(
      () => undefined,
      (error: Error) => error,
    );
    const elapsed = performance.now() - started;
    expect(failure, "token served on a port a plain HTTP server holds").to.be.instanceOf(Error);
    expect(failure!.message).to.match(/token: exited \(code [1-9]\d*\) before serving/);
    expect(failure!.message, "the reason the component gave").to.include(`cannot listen on 127.0.0.1:${taken} (EADDRINUSE)`);
    expect(elapsed, `reported after ${Math.round(elapsed)} ms`).to.be.below(30_000);
    await processes.stop();
  });
});
