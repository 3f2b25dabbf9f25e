// Clients of a replicated peer (replicated-transport.ts, docs/replicas.md), over real
// mesh servers and mutual TLS: three Token replicas, each with a certificate of its own
// from Token's CA, and the replicas a client must never call (another CA's certificate,
// another identity's). Ordering comes from the transport's own hooks (a replica's state
// changed, a call failed over) and from handlers that hold a call until the test lets it
// go: never a sleep.

import net from "node:net";
import { expect } from "chai";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { COMPONENTS, identityUri } from "../internal/protocol/identity.js";
import { issueComponentCertificate, issueLeafCertificate, type CertificateAndKey } from "../internal/ops/pki/pki.js";
import { TrustStore } from "./trust.js";
import { type MeshServer, startMeshServer } from "./server.js";
import { HealthStatus, ServingStatus, healthRoutes } from "./grpc/health.js";
import { type ReplicaState, type ReplicatedTransportOptions, createReplicatedTransport, notDelivered } from "./replicated-transport.js";
import { type MeshTransport } from "./client.js";
import { isUnavailable } from "./transport-errors.js";
import { routesFor } from "../test/support/echo-mesh.js";
import { type TestPki, makeTestPki } from "../test/support/test-pki.js";
import { refusedWith } from "../test/support/refusal.js";
import { startTcpRelay } from "../test/support/tcp-relay.js";
import { TokenService } from "../internal/gen/hello/token/v1/token_service_pb.js";
import { Health } from "../internal/gen/grpc/health/v1/health_pb.js";
import { PeerHealth } from "../internal/components/runtime/peer-health.js";

/** One Token replica: a mesh server of its own, counting the calls its handlers ran. */
interface Replica {
  readonly name: string;
  server: MeshServer;
  readonly url: string;
  readonly port: number;
  readonly health: HealthStatus;
  /** How many calls of TokenService its handlers began. */
  executions: number;
  /** Runs when a call begins, before it is answered (a test holds calls here). */
  onCall: () => Promise<void> | void;
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  restart(): Promise<void>;
}

async function startReplica(name: string, credentials: CertificateAndKey, trust: TrustStore, port = 0): Promise<Replica> {
  const health = new HealthStatus();
  health.set("", ServingStatus.SERVING);
  const listen = (on: number) =>
    startMeshServer({
      component: "token",
      credentials,
      trust,
      port: on,
      routes: (router) => {
        routesFor(TokenService, async () => {
          replica.executions++;
          await replica.onCall();
        })(router);
        healthRoutes(health)(router);
      },
    });
  const server = await listen(port);
  const replica: Replica = {
    name,
    server,
    url: server.url,
    port: server.port,
    health,
    executions: 0,
    onCall: () => {},
    stop: () => replica.server.close(),
    restart: async () => {
      replica.server = await listen(replica.port);
    },
  };
  return replica;
}

/** A URL nothing listens on. */
async function deadUrl(): Promise<string> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `https://127.0.0.1:${port}`;
}

/**
 * Resolves after the event loop's next poll for I/O: what the kernel holds for this
 * process's sockets by now (a reset on loopback arrives with the syscall that sent it)
 * has been read. The first immediate runs in this turn's check phase, the second in the
 * next turn's, after its poll phase. An ordering, not a wait for time to pass.
 */
async function pollPhase(): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
  await new Promise<void>((resolve) => setImmediate(resolve));
}

/** What a client's transport reported: each replica's state, and each failover. */
class Watcher {
  readonly states = new Map<string, ReplicaState>();
  readonly failovers: Array<{ url: string; error: ConnectError }> = [];
  readonly #waiters = new Set<() => void>();

  readonly hooks: Pick<ReplicatedTransportOptions, "onReplicaState" | "onFailover"> = {
    onReplicaState: (url, state) => {
      this.states.set(url, state);
      for (const waiter of [...this.#waiters]) waiter();
    },
    onFailover: (url, error) => {
      this.failovers.push({ url, error });
    },
  };

  /** Resolves once the transport has said that each of `urls` is in `state`. */
  until(state: ReplicaState, ...urls: string[]): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (!urls.every((url) => this.states.get(url) === state)) return;
        this.#waiters.delete(check);
        resolve();
      };
      this.#waiters.add(check);
      check();
    });
  }
}

/** The Node error codes under a ConnectError. */
function causeCodes(error: ConnectError): string[] {
  const codes: string[] = [];
  for (let cause: unknown = error.cause; cause instanceof Error; cause = cause.cause) {
    codes.push(String((cause as { code?: unknown }).code ?? cause.name));
  }
  return codes;
}

describe("mesh: clients of a replicated peer (replicated-transport.ts, docs/replicas.md)", function () {
  this.timeout(5_000);
  let pki: TestPki;
  let trust: TrustStore;
  let a: Replica;
  let b: Replica;
  let c: Replica;
  let transports: MeshTransport[] = [];

  before(async function () {
    this.timeout(20_000);
    pki = await makeTestPki();
    trust = new TrustStore(new Map(COMPONENTS.map((component) => [component, pki.ca(component).certPem])));
    // Each replica its own key and certificate, all from Token's CA, all naming Token.
    const own = () => issueComponentCertificate(pki.ca("token"), "token", { keyType: "p256" });
    [a, b, c] = await Promise.all([startReplica("a", own(), trust), startReplica("b", own(), trust), startReplica("c", own(), trust)]);
  });
  after(async function () {
    await Promise.all([a, b, c].map((r) => r?.stop()));
  });
  beforeEach(async function () {
    for (const r of [a, b, c]) {
      r.executions = 0;
      r.onCall = () => {};
      r.health.set("", ServingStatus.SERVING);
    }
  });
  afterEach(async function () {
    for (const t of transports) t.close();
    transports = [];
    // A test that stopped a replica leaves it started again for the next.
    for (const r of [a, b, c]) if (!(await listening(r.port))) await r.restart();
  });

  function listening(port: number): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => (socket.destroy(), resolve(true)));
      socket.once("error", () => resolve(false));
    });
  }

  function client(urls: string[], watcher = new Watcher(), extra: Partial<ReplicatedTransportOptions> = {}) {
    const transport = createReplicatedTransport({ target: "token", baseUrls: urls, credentials: pki.leaf("orchestration"), trust, ...watcher.hooks, ...extra });
    transports.push(transport);
    return { token: createClient(TokenService, transport), health: createClient(Health, transport), watcher, transport };
  }

  const counts = () => [a.executions, b.executions, c.executions];

  it("spreads calls round-robin over the replicas that serve, concurrent or one after another", async function () {
    const { token, watcher } = client([a.url, b.url, c.url]);
    await watcher.until("serving", a.url, b.url, c.url);
    for (let i = 0; i < 12; i++) await token.getKeySet({});
    expect(counts()).to.deep.equal([4, 4, 4]);
    await Promise.all(Array.from({ length: 30 }, () => token.getKeySet({})));
    expect(counts()).to.deep.equal([14, 14, 14]);
    expect(watcher.failovers).to.deep.equal([]);
  });

  it("a replica that reports NOT_SERVING gets no calls; a Check through the transport, and so PeerHealth, says SERVING while one replica does", async function () {
    const { token, health, watcher } = client([a.url, b.url, c.url]);
    await watcher.until("serving", a.url, b.url, c.url);
    b.health.set("", ServingStatus.NOT_SERVING);
    expect((await health.check({ service: "" })).status).to.equal(ServingStatus.SERVING);
    await watcher.until("not-serving", b.url); // that Check asked every replica
    await Promise.all(Array.from({ length: 20 }, () => token.getKeySet({})));
    expect(counts()).to.deep.equal([10, 0, 10]);

    const peers = new PeerHealth({ peers: [{ name: "token", health }] });
    try {
      expect(await peers.settle(), "the peer serves while a and c do").to.equal(true);
      a.health.set("", ServingStatus.NOT_SERVING);
      c.health.set("", ServingStatus.NOT_SERVING);
      expect((await health.check({ service: "" })).status, "no replica serves").to.equal(ServingStatus.NOT_SERVING);
      await watcher.until("not-serving", a.url, b.url, c.url);
      peers.suspect();
      await new Promise<void>((resolve) => peers.onChange((serving) => !serving && resolve()));
      expect(peers.notServing()).to.deep.equal(["token"]);
      // None known to serve: each in turn, rather than none.
      await token.getKeySet({});
      c.health.set("", ServingStatus.SERVING);
      expect(await peers.settle(), "one replica back").to.equal(true);
      await watcher.until("serving", c.url);
    } finally {
      peers.close();
    }
  });

  it("a replica down before the call (connection refused): the call goes on to the next replica, and none fails", async function () {
    const dead = await deadUrl();
    // The dead replica first: with nothing known yet, the first call goes to it.
    const { token, watcher } = client([dead, a.url, b.url]);
    const answers = await Promise.allSettled(Array.from({ length: 20 }, () => token.getKeySet({})));
    expect(answers.filter((x) => x.status === "rejected")).to.deep.equal([]);
    expect(a.executions + b.executions).to.equal(20);
    expect(watcher.failovers.length).to.be.greaterThan(0);
    expect(watcher.failovers.map((f) => f.url)).to.satisfy((urls: string[]) => urls.every((u) => u === dead));
    expect(causeCodes(watcher.failovers[0]!.error)).to.include("ECONNREFUSED");
    await watcher.until("unreachable", dead);
  });

  it("a replica stopped while in use (its GOAWAY, then refused): calls go on at the others with no failure", async function () {
    const { token, watcher } = client([a.url, b.url, c.url]);
    await watcher.until("serving", a.url, b.url, c.url);
    for (let i = 0; i < 9; i++) await token.getKeySet({});
    expect(counts()).to.deep.equal([3, 3, 3]);
    await b.stop();
    for (let i = 0; i < 30; i++) await token.getKeySet({});
    expect(b.executions, "b ran nothing after it stopped").to.equal(3);
    expect(a.executions + c.executions).to.equal(36);
    await watcher.until("unreachable", b.url);
  });

  it("a replica killed (RST, then refused) while the client still has a connection to it: calls go on at the others", async function () {
    const front = await startTcpRelay(b.port);
    const { token, watcher } = client([a.url, front.url, c.url]);
    await watcher.until("serving", a.url, front.url, c.url);
    for (let i = 0; i < 3; i++) await token.getKeySet({});
    // Killed: its connections reset, and nothing listens. The calls come once the client has
    // read the reset the kernel already holds for it (a call written before that is one that
    // may have reached a dying replica, and is not sent again: the next test).
    await front.kill();
    await pollPhase();
    const answers = await Promise.allSettled(Array.from({ length: 20 }, () => token.getKeySet({})));
    expect(answers.filter((x) => x.status === "rejected")).to.deep.equal([]);
    expect(b.executions).to.equal(1);
    expect(causeCodes(watcher.failovers[0]!.error)).to.include("ECONNREFUSED");
    await watcher.until("unreachable", front.url);
  });

  it("a call the replica began and then died under is not sent again: it fails as unavailable, run exactly once, and the replica is looked at", async function () {
    const front = await startTcpRelay(a.port);
    const { token, watcher } = client([front.url, b.url, c.url]);
    await watcher.until("serving", front.url, b.url, c.url);
    let reached!: () => void;
    const began = new Promise<void>((resolve) => (reached = resolve));
    a.onCall = () => {
      reached();
      return new Promise(() => {}); // it is busy when it dies
    };
    // The first call of a fresh transport goes to the first serving replica.
    const call = refusedWith(token.getKeySet({}, { timeoutMs: 4_000 }));
    await began;
    await front.kill();
    const error = await call;
    expect(isUnavailable(error), `${Code[error.code]} ${causeCodes(error).join(",")}`).to.equal(true);
    expect(notDelivered(error)).to.equal(false);
    expect(watcher.failovers).to.deep.equal([]);
    expect(counts(), "run once, at a, and nowhere else").to.deep.equal([1, 0, 0]);
    await watcher.until("unreachable", front.url);
    a.onCall = () => {};
    await token.getKeySet({});
    expect(b.executions + c.executions).to.equal(1);
  });

  it("a call whose deadline passes at a replica is not sent again (it may be running there)", async function () {
    const { token, watcher } = client([a.url, b.url, c.url]);
    await watcher.until("serving", a.url, b.url, c.url);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    a.onCall = () => released;
    try {
      const error = await refusedWith(token.getKeySet({}, { timeoutMs: 200 }));
      expect(error.code).to.equal(Code.DeadlineExceeded);
      expect(counts()).to.deep.equal([1, 0, 0]);
      expect(watcher.failovers).to.deep.equal([]);
    } finally {
      release();
    }
  });

  it("all replicas down: UNAVAILABLE at once, well within the deadline; then one back is used again", async function () {
    const { token, health, watcher } = client([a.url, b.url, c.url]);
    await watcher.until("serving", a.url, b.url, c.url);
    await Promise.all([a.stop(), b.stop(), c.stop()]);
    for (const attempt of ["before the client knows", "once it knows"]) {
      if (attempt === "once it knows") await watcher.until("unreachable", a.url, b.url, c.url);
      const started = performance.now();
      const error = await refusedWith(token.getKeySet({}, { timeoutMs: 5_000 }), attempt);
      expect(error.code, attempt).to.equal(Code.Unavailable);
      expect(performance.now() - started, attempt).to.be.lessThan(1_000);
    }
    expect((await refusedWith(health.check({ service: "" }))).code).to.equal(Code.Unavailable);

    await b.restart();
    await watcher.until("serving", b.url); // looked at often while it does not serve
    await Promise.all(Array.from({ length: 5 }, () => token.getKeySet({})));
    expect(b.executions).to.equal(5);
    await Promise.all([a.restart(), c.restart()]);
    await watcher.until("serving", a.url, c.url);
    await Promise.all(Array.from({ length: 9 }, () => token.getKeySet({})));
    expect(counts()).to.deep.equal([3, 8, 3]);
  });

  it("a replica with a certificate of another CA, or naming another identity, is never called: its handshake fails and the call goes on", async function () {
    const otherCa = await startReplica("another CA", issueComponentCertificate(pki.rogueCa, "token", { keyType: "p256" }), trust);
    const otherIdentity = await startReplica(
      "token/operator",
      issueLeafCertificate(pki.ca("token"), { uris: [`${identityUri("token")}/operator`], server: true, client: true, keyType: "p256" }),
      trust,
    );
    try {
      const { token, health, watcher } = client([otherCa.url, otherIdentity.url, a.url]);
      for (let i = 0; i < 6; i++) await token.getKeySet({});
      expect([otherCa.executions, otherIdentity.executions, a.executions]).to.deep.equal([0, 0, 6]);
      const refusedAt = new Map(watcher.failovers.map((f) => [f.url, causeCodes(f.error)]));
      expect(refusedAt.get(otherCa.url)).to.include("UNABLE_TO_VERIFY_LEAF_SIGNATURE");
      expect(refusedAt.get(otherIdentity.url)).to.include("AuthenticationError");
      expect((await health.check({ service: "" })).status).to.equal(ServingStatus.SERVING);
      await watcher.until("unreachable", otherCa.url, otherIdentity.url);
      await watcher.until("serving", a.url);
    } finally {
      await Promise.all([otherCa.stop(), otherIdentity.stop()]);
    }
  });

  it("a stream whose first replica refuses the connection goes on to the next before any of its input is read", async function () {
    const dead = await deadUrl();
    // Watch is for the custodian's own operator: a stream the mesh allows.
    const transport = createReplicatedTransport({ target: "token", baseUrls: [dead, a.url], credentials: pki.operator("token"), trust });
    transports.push(transport);
    for await (const answer of createClient(Health, transport).watch({ service: "" })) {
      expect(answer.status).to.equal(ServingStatus.SERVING);
      break;
    }
  });

  it("with one URL it is a plain mesh transport: no health checks of its own, a dead peer UNAVAILABLE as before", async function () {
    const { token, watcher } = client([a.url]);
    await token.getKeySet({});
    expect(a.executions).to.equal(1);
    expect(watcher.states.size).to.equal(0);
    const { token: alone } = client([await deadUrl()]);
    expect((await refusedWith(alone.getKeySet({}))).code).to.equal(Code.Unavailable);
    expect(() => createReplicatedTransport({ target: "token", baseUrls: [], credentials: pki.leaf("orchestration"), trust })).to.throw(/at least one/);
    expect(() => createReplicatedTransport({ target: "token", baseUrls: [a.url, a.url], credentials: pki.leaf("orchestration"), trust })).to.throw(/more than once/);
  });

  describe("notDelivered: only errors that prove the request never reached the peer", function () {
    const nodeError = (code: string, message = code, syscall?: string) => Object.assign(new Error(message), { code, ...(syscall ? { syscall } : {}) });
    const transportError = (cause: Error, code = Code.Internal) => new ConnectError(cause.message, code, undefined, undefined, cause);

    it("refused connections, refused handshakes and refused streams are", function () {
      expect(notDelivered(transportError(nodeError("ECONNREFUSED", "connect ECONNREFUSED", "connect"), Code.Unavailable))).to.equal(true);
      expect(notDelivered(transportError(nodeError("EHOSTUNREACH", "connect EHOSTUNREACH", "connect")))).to.equal(true);
      expect(notDelivered(transportError(nodeError("ENOTFOUND", "getaddrinfo ENOTFOUND", "getaddrinfo")))).to.equal(true);
      expect(notDelivered(transportError(nodeError("UNABLE_TO_VERIFY_LEAF_SIGNATURE")))).to.equal(true);
      expect(notDelivered(transportError(nodeError("ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED")))).to.equal(true);
      expect(notDelivered(new ConnectError("http/2 stream closed with error code REFUSED_STREAM (0x7)", Code.Unavailable))).to.equal(true);
      expect(notDelivered(transportError(nodeError("ERR_HTTP2_STREAM_ERROR", "Stream closed with error code NGHTTP2_REFUSED_STREAM")))).to.equal(true);
      expect(notDelivered(transportError(nodeError("ERR_HTTP2_GOAWAY_SESSION")))).to.equal(true);
    });

    it("a reset, another stream error, a deadline, a cancel or any answer of the peer (UNAVAILABLE too) is not", function () {
      expect(notDelivered(transportError(nodeError("ECONNRESET", "read ECONNRESET", "read"), Code.Aborted))).to.equal(false);
      expect(notDelivered(transportError(nodeError("EPIPE", "write EPIPE", "write")))).to.equal(false);
      expect(notDelivered(transportError(nodeError("ERR_HTTP2_STREAM_ERROR", "Stream closed with error code NGHTTP2_INTERNAL_ERROR")))).to.equal(false);
      expect(notDelivered(new ConnectError("http/2 stream closed with error code CANCEL (0x8)", Code.Canceled))).to.equal(false);
      expect(notDelivered(transportError(nodeError("ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC")))).to.equal(false);
      expect(notDelivered(new ConnectError("the server is no longer trusted: its custodian's CA changed", Code.Unavailable))).to.equal(false);
      expect(notDelivered(new ConnectError("the operation timed out", Code.DeadlineExceeded))).to.equal(false);
      expect(notDelivered(new ConnectError("storage is unavailable", Code.Unavailable))).to.equal(false);
      expect(notDelivered(new Error("connect ECONNREFUSED"))).to.equal(false);
    });
  });
});
