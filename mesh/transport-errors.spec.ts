// Which failed calls mean "the peer is unavailable, try again" (transport-errors.ts),
// over real mesh TLS: a peer's own answer is never mistaken for a dead peer, and a
// peer that dies under a call is recognised whatever code the socket's failure got.

import net from "node:net";
import { expect } from "chai";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { COMPONENTS } from "../internal/protocol/identity.js";
import { TrustStore } from "./trust.js";
import { type EchoMesh, meshClient, routesFor, startEchoMesh } from "../test/support/echo-mesh.js";
import { failedInTransport, isUnavailable } from "./transport-errors.js";
import { type TestPki, makeTestPki } from "../test/support/test-pki.js";
import { refusedWith } from "../test/support/refusal.js";
import { TokenService } from "../internal/gen/hello/token/v1/token_service_pb.js";

/** A TCP relay in front of a server, whose connections a test can cut like a crash would. */
async function relay(target: number) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    /** What a killed process's kernel does to its connections: RST. */
    crash: () => sockets.forEach((s) => s.resetAndDestroy()),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe("mesh: telling a dead peer from a peer's answer (transport-errors.ts)", function () {
  let pki: TestPki;
  let trust: TrustStore;
  let mesh: EchoMesh;
  let answer: () => Promise<unknown>;
  let arrived: () => void = () => {};

  before(async function () {
    pki = await makeTestPki();
    trust = new TrustStore(new Map(COMPONENTS.map((c) => [c, pki.ca(c).certPem])));
    mesh = await startEchoMesh((c) => pki.leaf(c), trust, {
      token: (router: ConnectRouter) =>
        routesFor(TokenService, () => {
          arrived();
          return answer();
        })(router),
    });
  });
  after(async () => mesh?.close());

  const client = (url: string) => meshClient(TokenService, "token", url, pki.leaf("orchestration"), trust);

  it("a peer's own ABORTED, INTERNAL or CANCELED answer is the peer's answer, not a failure to reach it", async function () {
    for (const code of [Code.Aborted, Code.Internal, Code.Canceled, Code.PermissionDenied]) {
      answer = async () => {
        throw new ConnectError("the peer says no", code);
      };
      const error = await refusedWith(client(mesh.servers.token.url).getKeySet({}));
      expect(error.code).to.equal(code);
      expect(failedInTransport(error), Code[code]).to.equal(false);
      expect(isUnavailable(error), Code[code]).to.equal(false);
    }
  });

  it("the peer's connection reset under a call (a crash) is a transport failure, whatever code it got", async function () {
    const front = await relay(mesh.servers.token.port);
    try {
      const reached = new Promise<void>((resolve) => (arrived = resolve));
      answer = () => new Promise(() => {}); // the peer is busy when it dies
      const call = refusedWith(client(front.url).getKeySet({}, { timeoutMs: 10_000 }));
      await reached;
      front.crash();
      const error = await call;
      expect(error.code, "not UNAVAILABLE on its own").to.not.equal(Code.Unavailable);
      expect(failedInTransport(error)).to.equal(true);
      expect(isUnavailable(error)).to.equal(true);
    } finally {
      arrived = () => {};
      await front.close();
    }
  });

  it("a refused connection and a passed deadline are unavailable too", async function () {
    const gone = await relay(1);
    await gone.close(); // nothing listens there now
    const refused = await refusedWith(client(gone.url).getKeySet({}));
    expect(refused.code).to.equal(Code.Unavailable);
    expect(isUnavailable(refused)).to.equal(true);

    answer = () => new Promise(() => {});
    const late = await refusedWith(client(mesh.servers.token.url).getKeySet({}, { timeoutMs: 200 }));
    expect(late.code).to.equal(Code.DeadlineExceeded);
    expect(isUnavailable(late)).to.equal(true);
  });
});
