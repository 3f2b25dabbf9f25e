// Metrics and call logs on the mesh (docs/design.md §2, seed 000): real mesh servers on real
// TLS, counted and logged by the interceptors startMeshServer and createMeshTransport
// wire in, read back as every custodian's operator would (MetricsService and GET
// /metrics). Each server here gets its own registry and an in-memory log.

import http from "node:http";
import http2 from "node:http2";
import { Writable } from "node:stream";
import { expect } from "chai";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { context, propagation, trace } from "@opentelemetry/api";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { COMPONENTS } from "../../protocol/identity.js";
import { type MeshServer, startMeshServer } from "../../../mesh/server.js";
import { createMeshTransport } from "../../../mesh/client.js";
import { TrustStore } from "../../../mesh/trust.js";
import { routesFor } from "../../../test/support/echo-mesh.js";
import { type TestPki, makeTestPki } from "../../../test/support/test-pki.js";
import { refusedWith } from "../../../test/support/refusal.js";
import { TokenService } from "../../gen/hello/token/v1/token_service_pb.js";
import { MetricsService } from "../../gen/hello/common/v1/metrics_pb.js";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { reflectionRoutes } from "../../../mesh/grpc/reflection.js";
import { createLogger } from "../log/logger.js";
import { MeshMetrics } from "./registry.js";
import { httpObserver } from "./http-observer.js";
import { seriesValue as sample } from "./exposition.js";

/** A logger writing JSON lines into an array. */
function memoryLog(component: string) {
  const lines: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) {
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { log: createLogger(component, { level: "debug", destination }), lines, raw };
}

const SECRET = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLWEtdG9rZW4";
const EMAIL = "alice@example.com";

describe("metrics and call logs on the mesh (docs/design.md §2, seed 000)", function () {
  let pki: TestPki;
  let trust: TrustStore;
  let token: MeshServer;
  let serverMetrics: MeshMetrics;
  let serverLog: ReturnType<typeof memoryLog>;
  let provider: NodeTracerProvider;

  before(async function () {
    provider = new NodeTracerProvider();
    provider.register();
    pki = await makeTestPki();
    trust = new TrustStore(new Map(COMPONENTS.map((c) => [c, pki.ca(c).certPem])));
    serverMetrics = new MeshMetrics({ processMetrics: false });
    serverLog = memoryLog("token");
    token = await startMeshServer({
      component: "token",
      credentials: pki.leaf("token"),
      trust,
      metrics: serverMetrics,
      log: () => serverLog.log,
      routes: (router) => {
        routesFor(TokenService, (method) => {
          // Failures whose messages quote what must never reach a log: the scrubber's work.
          if (method.name === "AuthorizeSubject") throw new ConnectError(`the OP ID Token ${SECRET} of ${EMAIL} did not verify`, Code.Unauthenticated);
          if (method.name === "MintIdToken") throw new ConnectError("the records are unreadable", Code.Internal);
          return undefined;
        })(router);
        reflectionRoutes([TokenService, MetricsService, ServerReflection])(router);
      },
    });
  });
  after(async function () {
    await token?.close();
    await provider?.shutdown();
    trace.disable();
    context.disable();
    propagation.disable();
  });
  beforeEach(() => {
    serverLog.lines.length = 0;
    serverLog.raw.length = 0;
  });

  const client = <S extends typeof TokenService | typeof MetricsService | typeof ServerReflection>(
    service: S, credentials = pki.leaf("orchestration"), metrics?: MeshMetrics,
  ) => createClient(service, createMeshTransport({ target: "token", baseUrl: token.url, credentials, trust, ...(metrics ? { metrics } : {}) }));

  it("counts served calls by component, full method name and code, ok included, and times them", async function () {
    const tokens = client(TokenService);
    await tokens.createSession({ providerId: "dev" });
    await tokens.createSession({ providerId: "dev" });
    const { text } = await serverMetrics.exposition();
    const labels = { component: "token", method: "hello.token.v1.TokenService/CreateSession", code: "ok" };
    expect(sample(text, "hello_mesh_server_requests_total", labels)).to.equal(2);
    expect(sample(text, "hello_mesh_server_duration_seconds_count", labels)).to.equal(2);
    expect(sample(text, "hello_mesh_server_errors_total", labels)).to.equal(undefined);
  });

  it("counts failures as errors by their code, and a refused caller as permission_denied", async function () {
    await client(TokenService).authorizeSubject({ sessionToken: SECRET }).catch(() => undefined);
    await client(TokenService).mintIdToken({}).catch(() => undefined);
    // Encryption may not call Token: refused by the policy, still counted.
    await client(TokenService, pki.leaf("encryption")).getKeySet({}).catch(() => undefined);
    const { text } = await serverMetrics.exposition();
    const series = (method: string, code: string) => ({ component: "token", method: `hello.token.v1.TokenService/${method}`, code });
    expect(sample(text, "hello_mesh_server_errors_total", series("AuthorizeSubject", "unauthenticated"))).to.equal(1);
    expect(sample(text, "hello_mesh_server_errors_total", series("MintIdToken", "internal"))).to.equal(1);
    expect(sample(text, "hello_mesh_server_requests_total", series("GetKeySet", "permission_denied"))).to.equal(1);
    expect(text).not.to.include(SECRET);
  });

  it("counts the calls a client makes by its own identity, the target, the method and the code", async function () {
    const clientMetrics = new MeshMetrics({ processMetrics: false });
    await client(TokenService, pki.leaf("orchestration"), clientMetrics).createSession({});
    await client(TokenService, pki.leaf("orchestration"), clientMetrics).mintIdToken({}).catch(() => undefined);
    const { text } = await clientMetrics.exposition();
    const base = { component: "orchestration", target: "token" };
    expect(sample(text, "hello_mesh_client_requests_total", { ...base, method: "hello.token.v1.TokenService/CreateSession", code: "ok" })).to.equal(1);
    expect(sample(text, "hello_mesh_client_errors_total", { ...base, method: "hello.token.v1.TokenService/MintIdToken", code: "internal" })).to.equal(1);
    expect(sample(text, "hello_mesh_client_duration_seconds_count", { ...base, method: "hello.token.v1.TokenService/CreateSession", code: "ok" })).to.equal(1);
  });

  it("counts a streaming call (reflection) once its stream has ended", async function () {
    const reflection = client(ServerReflection, pki.operator("token"));
    const requests = (async function* () {
      yield { messageRequest: { case: "listServices" as const, value: "" } };
    })();
    let answers = 0;
    for await (const _ of reflection.serverReflectionInfo(requests)) answers++;
    expect(answers).to.equal(1);
    const { text } = await serverMetrics.exposition();
    expect(sample(text, "hello_mesh_server_requests_total", {
      component: "token", method: "grpc.reflection.v1.ServerReflection/ServerReflectionInfo", code: "ok",
    })).to.equal(1);
  });

  it("writes one line per call: debug with the trace id when it succeeds, info for the caller's mistake, warn for the server's", async function () {
    await client(TokenService).createSession({ providerId: SECRET });
    await client(TokenService).authorizeSubject({ sessionToken: SECRET, opIdToken: SECRET }).catch(() => undefined);
    await client(TokenService).mintIdToken({ sessionToken: SECRET }).catch(() => undefined);
    const [ok, caller, server] = serverLog.lines as Array<{
      level: string; rpc: Record<string, unknown>; trace_id?: string; err?: Record<string, unknown>; reason?: Record<string, unknown>;
    }>;
    expect(serverLog.lines).to.have.length(3);
    expect(ok!.level).to.equal("debug");
    expect(ok!.rpc).to.include({ side: "server", method: "hello.token.v1.TokenService/CreateSession", peer: "orchestration", code: "ok" });
    expect(ok!.rpc.duration_ms).to.be.a("number");
    expect(ok!.trace_id).to.match(/^[0-9a-f]{32}$/);
    expect(ok!.err).to.equal(undefined);
    expect(caller!.level).to.equal("info");
    expect(caller!.rpc.code).to.equal("unauthenticated");
    // The message names what failed (what it quoted is scrubbed); no stack for a caller's mistake.
    expect(caller!.reason).to.deep.equal({ type: "ConnectError", code: "unauthenticated", message: "the OP ID Token [jws] of [email] did not verify" });
    expect(caller!.err).to.equal(undefined);
    expect(server!.level).to.equal("warn");
    expect(server!.rpc.code).to.equal("internal");
    expect(server!.err).to.include({ type: "ConnectError", code: "internal", message: "the records are unreadable" });
    expect(server!.err!.stack).to.be.a("string");
    const everything = serverLog.raw.join("\n");
    expect(everything).not.to.include(SECRET);
    expect(everything).not.to.include(EMAIL);
    // Honest twin: the request did carry them.
    expect(SECRET).to.have.length.greaterThan(40);
  });

  it("MetricsService: any custodian's operator reads the exposition; a component's own identity may not", async function () {
    for (const custodian of COMPONENTS) {
      const { contentType, exposition } = await client(MetricsService, pki.operator(custodian)).getMetrics({});
      expect(contentType).to.match(/^text\/plain; version=0\.0\.4/);
      expect(exposition).to.include("# TYPE hello_mesh_server_requests_total counter");
    }
    const refused = await refusedWith(client(MetricsService, pki.leaf("orchestration")).getMetrics({}));
    expect(refused.code).to.equal(Code.PermissionDenied);
  });

  describe("GET /metrics on the mesh port, for Prometheus", function () {
    /** GET `path` over HTTP/2 + TLS with `credentials`; the status and body. */
    function get(credentials: { certPem: string; keyPem: string }, path = "/metrics", method = "GET") {
      return new Promise<{ status: number; type: string; body: string }>((resolve, reject) => {
        const session = http2.connect(token.url, {
          ca: pki.ca("token").certPem, cert: credentials.certPem, key: credentials.keyPem,
          checkServerIdentity: () => undefined, minVersion: "TLSv1.3",
        });
        session.on("error", reject);
        const stream = session.request({ ":path": path, ":method": method });
        let status = 0;
        let type = "";
        let body = "";
        stream.on("response", (headers) => {
          status = Number(headers[":status"]);
          type = String(headers["content-type"] ?? "");
        });
        stream.setEncoding("utf8");
        stream.on("data", (chunk: string) => (body += chunk));
        stream.on("end", () => {
          session.close();
          resolve({ status, type, body });
        });
        stream.on("error", reject);
      });
    }

    it("answers an operator of any custodian with the exposition", async function () {
      for (const custodian of COMPONENTS) {
        const { status, type, body } = await get(pki.operator(custodian));
        expect(status, custodian).to.equal(200);
        expect(type).to.match(/^text\/plain; version=0\.0\.4/);
        expect(body).to.include("# TYPE hello_mesh_server_duration_seconds histogram");
      }
      const { text } = await serverMetrics.exposition();
      expect(sample(text, "hello_mesh_server_requests_total", { component: "token", method: "hello.common.v1.MetricsService/GetMetrics", code: "ok" }))
        .to.be.at.least(4);
    });

    it("refuses a component's certificate with 403 and says why (honest twin: the operator's)", async function () {
      const { status, body } = await get(pki.leaf("orchestration"));
      expect(status).to.equal(403);
      expect(body).to.equal("orchestration may not call /hello.common.v1.MetricsService/GetMetrics on token\n");
      expect((await get(pki.operator("orchestration"))).status).to.equal(200);
      // Each scrape has its line, like any call.
      const lines = serverLog.lines.map((l) => l.rpc as { method: string; peer: string; code: string });
      expect(lines.map((l) => `${l.method} ${l.peer} ${l.code}`)).to.deep.equal([
        "hello.common.v1.MetricsService/GetMetrics orchestration permission_denied",
        "hello.common.v1.MetricsService/GetMetrics orchestration/operator ok",
      ]);
    });

    it("refuses other HTTP methods, and a certificate bound to the wrong CA", async function () {
      expect((await get(pki.operator("storage"), "/metrics", "POST")).status).to.equal(405);
      expect((await get(pki.impostor)).status).to.equal(401);
    });
  });
});

describe("front-door request metrics and lines: a fixed route name, never the path or query", function () {
  let provider: NodeTracerProvider;
  before(() => {
    provider = new NodeTracerProvider();
    provider.register();
  });
  after(async () => {
    await provider.shutdown();
    trace.disable();
    context.disable();
    propagation.disable();
  });

  it("each request is a span of its own: what the handler calls joins its trace, and its line names it", async function () {
    const { log, lines } = memoryLog("orchestration");
    const observer = httpObserver("orchestration", { metrics: new MeshMetrics({ processMetrics: false }), log: () => log });
    const inside: string[] = [];
    const server = http.createServer((req, res) => {
      const seen = observer.begin(req, res);
      seen.route("/token");
      void seen.run(async () => {
        await new Promise((r) => setTimeout(r, 1)); // across an await, as a mesh call is
        inside.push(trace.getActiveSpan()!.spanContext().traceId);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/token`;
    try {
      // An app's traceparent is not trusted: the request starts a trace of its own.
      await fetch(url, { headers: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" } });
      await fetch(url);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
    const ids = lines.map((l) => l.trace_id as string);
    expect(ids).to.have.length(2);
    expect(ids[0]).to.match(/^[0-9a-f]{32}$/);
    expect(ids).to.deep.equal(inside);
    expect(ids[0]).to.not.equal(ids[1]);
    expect(ids).not.to.include("0af7651916cd43dd8448eb211c80319c");
  });

  it("labels a known route by name and anything else as other, and logs no query, cookie or header", async function () {
    const metrics = new MeshMetrics({ processMetrics: false });
    const { log, lines, raw } = memoryLog("orchestration");
    const observer = httpObserver("orchestration", { metrics, log: () => log });
    const server = http.createServer((req, res) => {
      const seen = observer.begin(req, res);
      const path = new URL(req.url ?? "/", "http://x").pathname;
      if (path === "/authorize") {
        seen.route("/authorize");
        res.writeHead(303, { location: `https://a.example/cb?code=${SECRET}` }).end();
      } else if (path === "/token") {
        seen.route("/token");
        seen.failed(Object.assign(new Error(`bad code ${SECRET}`), { error: "invalid_grant" }));
        res.writeHead(400).end();
      } else if (path === "/boom") {
        seen.route("/boom");
        seen.failed(new Error(`unexpected, holding ${EMAIL}`));
        res.writeHead(500).end();
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      const headers = { cookie: `hello_flow=${SECRET}`, authorization: `Bearer ${SECRET}` };
      await fetch(`${base}/authorize?login_hint=${encodeURIComponent(EMAIL)}&state=${SECRET}`, { headers, redirect: "manual" });
      await fetch(`${base}/token`, { method: "POST", headers, body: `code=${SECRET}` });
      await fetch(`${base}/boom`);
      for (const path of ["/a", `/${SECRET}`, "/wp-admin.php"]) await fetch(`${base}${path}`);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
    const { text } = await metrics.exposition();
    expect(sample(text, "hello_http_requests_total", { component: "orchestration", route: "/authorize", method: "GET", status: "303" })).to.equal(1);
    expect(sample(text, "hello_http_requests_total", { component: "orchestration", route: "/token", method: "POST", status: "400" })).to.equal(1);
    expect(sample(text, "hello_http_requests_total", { component: "orchestration", route: "other", method: "GET", status: "404" })).to.equal(3);
    expect(text).not.to.include(SECRET);

    const http_ = lines.map((l) => ({ level: l.level, ...(l.http as object), err: l.err }));
    expect(http_[0]).to.deep.include({ level: "info", route: "/authorize", method: "GET", status: 303 });
    expect(http_[1]).to.deep.include({ level: "info", route: "/token", status: 400, outcome: "invalid_grant", err: undefined });
    expect(http_[2]).to.deep.include({ level: "error", route: "/boom", status: 500 });
    expect((http_[2]!.err as { message: string }).message).to.equal("unexpected, holding [email]");
    const everything = raw.join("\n");
    for (const value of [SECRET, EMAIL, encodeURIComponent(EMAIL), "login_hint", "wp-admin"]) expect(everything).not.to.include(value);
  });
});
