// The rigs write freePort's answers into configs that other processes bind later; a
// `listen(0)` in between must not be handed the same port (a CI run lost Token's port to
// the development OP that way).

import { createServer } from "node:net";
import { readFileSync } from "node:fs";
import { expect } from "chai";
import { freePort } from "./free-port.js";

const ephemeralStart = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);

describe("freePort: ports a later listen(0) cannot take", function () {
  it("hands out ports below the kernel's ephemeral range, each one once", async function () {
    const ports = await Promise.all(Array.from({ length: 200 }, () => freePort()));
    expect(new Set(ports).size).to.equal(ports.length);
    for (const port of ports) expect(port).to.be.within(10_000, ephemeralStart - 1);
  });

  it("a listen(0) in between gets a port outside what was handed out", async function () {
    const handed = await freePort();
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const taken = (server.address() as { port: number }).port;
    await new Promise((resolve) => server.close(resolve));
    expect(taken).to.be.at.least(ephemeralStart);
    expect(taken).not.to.equal(handed);
  });
});
