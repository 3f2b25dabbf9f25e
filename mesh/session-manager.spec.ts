// A peer that shuts down gracefully (SIGTERM: GOAWAY with NO_ERROR, no open streams)
// must not crash its callers. connect-node 2.1.2 raises a late session error as an
// uncaught exception when a call arrives before the old socket has closed
// (connectrpc/connect-es#1768); a fault test saw Encryption die of it when Storage
// restarted. mesh/client.ts's GoawaySafeSessionManager is the workaround.

import { once } from "node:events";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import { GoawaySafeSessionManager } from "./client.js";

describe("mesh client sessions: a peer's graceful shutdown (GOAWAY)", function () {
  let server: http2.Http2Server;
  let url: string;
  const sessions: http2.ServerHttp2Session[] = [];

  before(async function () {
    server = http2.createServer();
    server.on("session", (session) => sessions.push(session));
    server.on("stream", (stream) => {
      stream.respond({ ":status": 200 });
      stream.end();
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async function () {
    for (const session of sessions) session.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  async function finish(stream: http2.ClientHttp2Stream) {
    stream.end();
    stream.resume();
    await once(stream, "close");
  }

  it("a call made between the GOAWAY and the old socket's close gets a new session, and nothing is thrown later", async function () {
    const uncaught: unknown[] = [];
    const record = (error: unknown) => uncaught.push(error);
    process.prependListener("uncaughtException", record);
    try {
      const manager = new GoawaySafeSessionManager(url);
      const first = await manager.request("POST", "/", {}, {});
      const old = first.session!;
      await finish(first);
      expect(manager.state()).to.equal("idle");

      // The call arrives in the window: right after the manager destroyed the old session
      // on the GOAWAY (its listener runs before this one), before the socket has closed.
      const oldClosed = new Promise((resolve) => old.once("close", resolve));
      const second = new Promise<http2.ClientHttp2Stream>((resolve, reject) =>
        old.once("goaway", () => manager.request("POST", "/", {}, {}).then(resolve, reject)),
      );
      sessions.at(-1)!.close();
      const stream = await second;
      expect(stream.session, "a new session").to.not.equal(old).and.not.equal(undefined);
      await finish(stream);
      // The old session's deferred error comes once its socket has closed.
      await oldClosed;
      await new Promise((resolve) => setImmediate(resolve));
      expect(uncaught.map(String)).to.deep.equal([]);
      manager.abort();
    } finally {
      process.off("uncaughtException", record);
    }
  });
});
