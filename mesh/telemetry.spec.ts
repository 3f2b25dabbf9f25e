// W3C trace context crosses the mesh, except into Storage (docs/design.md §2, §5): one trace
// spans Orchestration -> Encryption, with each server span a child of its caller's
// client span; each call Encryption makes to Storage starts a trace of its own, linked
// on Encryption's side to the call it serves, so Storage never sees a trace id (or
// tracestate, or baggage) that ties one login's reads together. Spans carry procedure
// names and codes but no request content.

import { expect } from "chai";
import { type Interceptor, createClient } from "@connectrpc/connect";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { ROOT_CONTEXT, TraceFlags, context, createTraceState, propagation, trace } from "@opentelemetry/api";
import { COMPONENTS } from "../internal/protocol/identity.js";
import { TrustStore } from "./trust.js";
import { type MeshTransport, createMeshTransport } from "./client.js";
import { type EchoMesh, routesFor, startEchoMesh } from "../test/support/echo-mesh.js";
import { type TestPki, makeTestPki } from "../test/support/test-pki.js";
import { EncryptionService } from "../internal/gen/hello/encryption/v1/encryption_service_pb.js";
import { StorageService } from "../internal/gen/hello/storage/v1/storage_service_pb.js";

const CLIENT = 2;
const SERVER = 1;
/** The trace context headers a server received, per service. */
interface SeenHeaders {
  traceparent: string | null;
  tracestate: string | null;
  baggage: string | null;
}

describe("telemetry: one trace Orchestration -> Encryption, a new linked trace per Encryption -> Storage call (docs/design.md §2)", function () {
  const exporter = new InMemorySpanExporter();
  let provider: NodeTracerProvider;
  let pki: TestPki;
  let trust: TrustStore;
  let mesh: EchoMesh;
  let storageTransport: MeshTransport | undefined;
  const seen = new Map<string, SeenHeaders[]>();

  before(async function () {
    provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    provider.register();
    pki = await makeTestPki();
    trust = new TrustStore(new Map(COMPONENTS.map((c) => [c, pki.ca(c).certPem])));
    // Every server records the trace context headers it was sent.
    const recordHeaders: Interceptor = (next) => async (req) => {
      const list = seen.get(req.service.typeName) ?? [];
      seen.set(req.service.typeName, list);
      list.push({ traceparent: req.header.get("traceparent"), tracestate: req.header.get("tracestate"), baggage: req.header.get("baggage") });
      return next(req);
    };
    // Encryption's handler calls Storage twice over the mesh, with the transport option
    // encryption-component.ts gives its Storage client, as one login step's read does.
    let storageUrl = "";
    mesh = await startEchoMesh(
      (c) => pki.leaf(c),
      trust,
      {
        encryption: routesFor(EncryptionService, async () => {
          storageTransport ??= createMeshTransport({
            target: "storage",
            baseUrl: storageUrl,
            credentials: pki.leaf("encryption"),
            trust,
            tracing: { newTrace: true },
          });
          const storage = createClient(StorageService, storageTransport);
          await storage.readRecord({ accessToken: "secret-access-token" });
          await storage.readRecord({ accessToken: "secret-access-token-2" });
          return undefined;
        }),
      },
      [recordHeaders],
    );
    storageUrl = mesh.servers.storage.url;
  });
  after(async function () {
    storageTransport?.close();
    await mesh?.close();
    await provider?.shutdown();
    trace.disable();
    context.disable();
    propagation.disable();
  });

  function orchestrationClient() {
    return createClient(
      EncryptionService,
      createMeshTransport({ target: "encryption", baseUrl: mesh.servers.encryption.url, credentials: pki.leaf("orchestration"), trust }),
    );
  }

  it("continues the caller's trace into Encryption and starts a new, linked trace for each of its Storage calls", async function () {
    // The login's own trace, with a tracestate and baggage that must not reach Storage.
    const loginTraceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const parent = trace.setSpanContext(ROOT_CONTEXT, {
      traceId: loginTraceId,
      spanId: "00f067aa0ba902b7",
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
      traceState: createTraceState("vendor=login-state"),
    });
    const withBaggage = propagation.setBaggage(parent, propagation.createBaggage({ step: { value: "login-baggage" } }));
    exporter.reset();
    seen.clear();
    await context.with(withBaggage, () => orchestrationClient().readRecord({ accessToken: "secret-access-token" }));
    await provider.forceFlush();

    const spans = exporter.getFinishedSpans();
    const named = (name: string, kind: number): ReadableSpan[] => spans.filter((s) => s.name === name && s.kind === kind);
    const one = (name: string, kind: number): ReadableSpan => {
      const found = named(name, kind);
      expect(found, `${name} kind ${kind}`).to.have.length(1);
      return found[0]!;
    };
    const orchestrationSpan = one("hello.encryption.v1.EncryptionService/ReadRecord", CLIENT);
    const encryptionServer = one("hello.encryption.v1.EncryptionService/ReadRecord", SERVER);
    const storageClients = named("hello.storage.v1.StorageService/ReadRecord", CLIENT);
    const storageServers = named("hello.storage.v1.StorageService/ReadRecord", SERVER);
    expect(storageClients).to.have.length(2);
    expect(storageServers).to.have.length(2);

    // Orchestration -> Encryption: one trace, the login's.
    expect(orchestrationSpan.spanContext().traceId).to.equal(loginTraceId);
    expect(encryptionServer.spanContext().traceId).to.equal(loginTraceId);
    expect(encryptionServer.parentSpanContext?.spanId).to.equal(orchestrationSpan.spanContext().spanId);

    // Encryption -> Storage: each call a root of a trace of its own, linked to the call it serves.
    const storageTraceIds = storageClients.map((s) => s.spanContext().traceId);
    expect(new Set([loginTraceId, ...storageTraceIds]).size, "two new trace ids").to.equal(3);
    for (const client of storageClients) {
      expect(client.parentSpanContext, "a Storage call's span has no parent").to.equal(undefined);
      expect(client.links).to.have.length(1);
      expect(client.links[0]!.context.traceId).to.equal(loginTraceId);
      expect(client.links[0]!.context.spanId).to.equal(encryptionServer.spanContext().spanId);
      const server = storageServers.find((s) => s.spanContext().traceId === client.spanContext().traceId);
      expect(server, "Storage's span is in the new trace").to.not.equal(undefined);
      expect(server!.parentSpanContext?.spanId).to.equal(client.spanContext().spanId);
      expect(server!.links).to.deep.equal([]);
      expect(server!.attributes["rpc.grpc.status_code"]).to.equal(0);
    }

    // What crossed the wire: Encryption got the login's context; Storage only the new traces'.
    const atEncryption = seen.get("hello.encryption.v1.EncryptionService")!;
    expect(atEncryption).to.have.length(1);
    expect(atEncryption[0]!.traceparent).to.include(loginTraceId);
    expect(atEncryption[0]!.tracestate).to.equal("vendor=login-state");
    expect(atEncryption[0]!.baggage).to.include("login-baggage");
    const atStorage = seen.get("hello.storage.v1.StorageService")!;
    expect(atStorage.map((h) => h.traceparent!.split("-")[1])).to.have.members(storageTraceIds);
    for (const headers of atStorage) {
      expect(headers.traceparent).to.match(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
      expect(headers.traceparent).not.to.include(loginTraceId);
      expect(headers.traceparent).not.to.include(encryptionServer.spanContext().spanId);
      expect(headers.tracestate, "no tracestate reaches Storage").to.equal(null);
      expect(headers.baggage, "no baggage reaches Storage").to.equal(null);
    }
    for (const span of spans.filter((s) => s.name.startsWith("hello.storage.v1."))) {
      expect(span.spanContext().traceId).not.to.equal(loginTraceId);
    }

    // Nothing from the request reaches a span.
    const everything = JSON.stringify(spans.map((s) => ({ name: s.name, attributes: s.attributes, events: s.events, status: s.status })));
    expect(everything).not.to.include("secret-access-token");
    expect(everything).not.to.include("login-baggage");
  });

  it("gives two calls into Encryption, and so their Storage calls, nothing in common at Storage", async function () {
    exporter.reset();
    seen.clear();
    const client = orchestrationClient();
    // Two incoming calls in one outer trace, as two reads of one login are.
    const outer = trace.getTracer("test").startSpan("login");
    await context.with(trace.setSpan(context.active(), outer), async () => {
      await client.readRecord({ accessToken: "a" });
      await client.readRecord({ accessToken: "b" });
    });
    outer.end();
    await provider.forceFlush();
    const loginTraceId = outer.spanContext().traceId;
    const atStorage = seen.get("hello.storage.v1.StorageService")!.map((h) => h.traceparent!.split("-")[1]);
    expect(atStorage).to.have.length(4);
    expect(new Set(atStorage).size, "four Storage calls, four traces").to.equal(4);
    expect(atStorage).not.to.include(loginTraceId);
    // The honest twin: both calls into Encryption were in the login's trace.
    expect(seen.get("hello.encryption.v1.EncryptionService")!.map((h) => h.traceparent!.split("-")[1])).to.deep.equal([loginTraceId, loginTraceId]);
  });

  it("starts an unlinked root for a Storage call made outside any span (the re-wrap job)", async function () {
    exporter.reset();
    seen.clear();
    const storage = createMeshTransport({
      target: "storage",
      baseUrl: mesh.servers.storage.url,
      credentials: pki.leaf("encryption"),
      trust,
      tracing: { newTrace: true },
    });
    try {
      await createClient(StorageService, storage).readRecord({ accessToken: "x" });
    } finally {
      storage.close();
    }
    await provider.forceFlush();
    const client = exporter.getFinishedSpans().find((s) => s.kind === CLIENT)!;
    expect(client.parentSpanContext).to.equal(undefined);
    expect(client.links).to.deep.equal([]);
    expect(seen.get("hello.storage.v1.StorageService")![0]!.traceparent).to.include(client.spanContext().traceId);
  });

  it("records a refused call's code, not its message", async function () {
    const storage = createClient(
      StorageService,
      createMeshTransport({ target: "storage", baseUrl: mesh.servers.storage.url, credentials: pki.leaf("token"), trust }),
    );
    exporter.reset();
    await storage.readRecord({ accessToken: "secret-access-token" }).catch(() => undefined);
    await provider.forceFlush();
    const server = exporter.getFinishedSpans().find((s) => s.kind === 1)!;
    expect(server.attributes["rpc.grpc.status_code"]).to.equal(7);
    expect(server.status.message).to.equal("PermissionDenied");
  });
});
