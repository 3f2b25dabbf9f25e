// PeerHealth's promises, with peers whose Check answers when the test says (the mesh
// calls themselves are covered end to end in front-door/readiness.spec.ts): a question
// asked while not serving is answered from a look begun after it, never from an older
// one; while serving it is answered at once; a failed call makes it look at once.

import { expect } from "chai";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { PeerHealth, onUnavailable } from "./peer-health.js";

/** A peer whose Checks wait until the test answers them, in order. */
function peer() {
  const pending: Array<(serving: boolean | Error) => void> = [];
  let arrived: () => void = () => {};
  const health = {
    check: () =>
      new Promise<{ status: ServingStatus }>((resolve, reject) => {
        pending.push((answer) => (answer instanceof Error ? reject(answer) : resolve({ status: answer ? ServingStatus.SERVING : ServingStatus.NOT_SERVING })));
        arrived();
      }),
  } as unknown as Client<typeof Health>;
  return {
    health,
    get checks() {
      return pending.length;
    },
    /** Resolves once `n` Checks have been asked in all. */
    async asked(n: number) {
      while (pending.length < n) await new Promise<void>((resolve) => (arrived = resolve));
    },
    answer(i: number, serving: boolean | Error) {
      pending[i]!(serving);
    },
  };
}

describe("PeerHealth: whether the peers a component needs serve", function () {
  let health: PeerHealth | undefined;
  afterEach(() => health?.close());

  it("not serving until every peer has answered SERVING; listeners hear each change", async function () {
    const token = peer();
    const encryption = peer();
    health = new PeerHealth({ peers: [{ name: "token", health: token.health }, { name: "encryption", health: encryption.health }] });
    const heard: string[] = [];
    health.onChange((serving, notServing) => heard.push(`${serving} ${notServing.join()}`));
    expect(health.serving).to.equal(false);
    expect(health.notServing()).to.deep.equal(["token", "encryption"]);
    const first = health.settle();
    await Promise.all([token.asked(1), encryption.asked(1)]);
    token.answer(0, true);
    encryption.answer(0, new ConnectError("connect ECONNREFUSED", Code.Unavailable));
    expect(await first).to.equal(false);
    expect(health.notServing()).to.deep.equal(["encryption"]);
    const second = health.settle();
    await Promise.all([token.asked(2), encryption.asked(2)]);
    token.answer(1, true);
    encryption.answer(1, true);
    expect(await second).to.equal(true);
    expect(heard).to.deep.equal(["false encryption", "true "]);
  });

  it("a question asked while a look is under way waits for a look begun after it", async function () {
    const storage = peer();
    health = new PeerHealth({ peers: [{ name: "storage", health: storage.health }] }).start();
    await storage.asked(1); // a look under way, begun before the question
    const asked = health.settle();
    storage.answer(0, false); // that look's answer is older than the question...
    await storage.asked(2); // ...so another look begins
    storage.answer(1, true);
    expect(await asked).to.equal(true);
    expect(storage.checks).to.equal(2);
  });

  it("a question is answered 'not serving' when its look does not answer within settleWithinMs (a hung peer); the look goes on", async function () {
    const storage = peer();
    health = new PeerHealth({ peers: [{ name: "storage", health: storage.health }], settleWithinMs: 20 });
    expect(await health.settle(), "the peer has not answered").to.equal(false);
    expect(storage.checks).to.equal(1);
    const changed = new Promise((resolve) => health!.onChange(resolve));
    storage.answer(0, true); // the hung look ends after all
    await changed;
    expect(await health.settle()).to.equal(true);
    expect(storage.checks, "served: no new look").to.equal(1);
  });

  it("questions that come while a look is under way share the one look after it; while serving, none is needed", async function () {
    const storage = peer();
    health = new PeerHealth({ peers: [{ name: "storage", health: storage.health }] });
    const questions = [health.settle(), health.settle(), health.settle(), health.settle()];
    await storage.asked(1);
    storage.answer(0, true);
    await storage.asked(2);
    storage.answer(1, true);
    expect(await Promise.all(questions)).to.deep.equal([true, true, true, true]);
    expect(await health.settle()).to.equal(true);
    expect(storage.checks, "two looks for four questions, none once serving").to.equal(2);
  });

  /** A call through onUnavailable's interceptor that fails with `error`. */
  const failingCall = (suspect: () => void, error: ConnectError, service = "hello.storage.v1.StorageService") =>
    onUnavailable(suspect)(() => Promise.reject(error))({ service: { typeName: service } } as never).catch(() => {});

  it("a call that fails as unavailable makes it look at once; a peer's refusal, or a failed health check, does not", async function () {
    const storage = peer();
    health = new PeerHealth({ peers: [{ name: "storage", health: storage.health }] });
    const settled = health.settle();
    await storage.asked(1);
    storage.answer(0, true);
    expect(await settled).to.equal(true);
    const suspect = () => health!.suspect();
    await failingCall(suspect, new ConnectError("no such record", Code.NotFound));
    await failingCall(suspect, new ConnectError("connect ECONNREFUSED", Code.Unavailable), "grpc.health.v1.Health");
    expect(storage.checks).to.equal(1);
    await failingCall(suspect, new ConnectError("connect ECONNREFUSED", Code.Unavailable));
    expect(storage.checks).to.equal(2);
  });
});
