// Which failed calls mean "the peer is unavailable, try again" (transport-errors.ts),
// over real mesh TLS: a peer's own answer is never mistaken for a dead peer, and a
// peer that dies under a call is recognised whatever code the socket's failure got.

import { expect } from "chai";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { COMPONENTS } from "../internal/protocol/identity.js";
import { TrustStore } from "./trust.js";
import { type EchoMesh, meshClient, routesFor, startEchoMesh } from "../test/support/echo-mesh.js";
import { failedInTransport, isUnavailable } from "./transport-errors.js";
import { type TestPki, makeTestPki } from "../test/support/test-pki.js";
import { refusedWith } from "../test/support/refusal.js";
import { startTcpRelay } from "../test/support/tcp-relay.js";
import { TokenService } from "../internal/gen/hello/token/v1/token_service_pb.js";

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
    const front = await startTcpRelay(mesh.servers.token.port);
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
    const gone = await startTcpRelay(1);
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
