// W3C trace context crosses the mesh: one trace spans Orchestration -> Encryption ->
// Storage, with each server span a child of its caller's client span, and spans carry
// procedure names and codes but no request content.

import { expect } from "chai";
import { createClient } from "@connectrpc/connect";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { context, propagation, trace } from "@opentelemetry/api";
import { COMPONENTS } from "./identity.js";
import { TrustStore } from "./trust.js";
import { createMeshTransport } from "./client.js";
import { type EchoMesh, routesFor, startEchoMesh } from "./testing/echo-mesh.js";
import { type TestPki, makeTestPki } from "../internal/testing/test-pki.js";
import { EncryptionService } from "../internal/gen/hello/encryption/v1/encryption_service_pb.js";
import { StorageService } from "../internal/gen/hello/storage/v1/storage_service_pb.js";

describe("telemetry: one trace across Orchestration -> Encryption -> Storage (DESIGN.md §2)", function () {
  const exporter = new InMemorySpanExporter();
  let provider: NodeTracerProvider;
  let pki: TestPki;
  let mesh: EchoMesh;

  before(async function () {
    provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    provider.register();
    pki = await makeTestPki();
    const trust = new TrustStore(new Map(COMPONENTS.map((c) => [c, pki.ca(c).certPem])));
    // Encryption's handler calls Storage over the mesh, as the protocol will.
    let storageUrl = "";
    mesh = await startEchoMesh((c) => pki.leaf(c), trust, {
      encryption: routesFor(EncryptionService, async () => {
        const storage = createClient(
          StorageService,
          createMeshTransport({ target: "storage", baseUrl: storageUrl, credentials: pki.leaf("encryption"), trust }),
        );
        await storage.readRecord({ accessToken: "secret-access-token" });
        return undefined;
      }),
    });
    storageUrl = mesh.servers.storage.url;
  });
  after(async function () {
    await mesh?.close();
    await provider?.shutdown();
    trace.disable();
    context.disable();
    propagation.disable();
  });

  it("links client and server spans into one trace", async function () {
    const trust = new TrustStore(new Map(COMPONENTS.map((c) => [c, pki.ca(c).certPem])));
    const encryption = createClient(
      EncryptionService,
      createMeshTransport({
        target: "encryption",
        baseUrl: mesh.servers.encryption.url,
        credentials: pki.leaf("orchestration"),
        trust,
      }),
    );
    exporter.reset();
    await encryption.readRecord({ accessToken: "secret-access-token" });
    await provider.forceFlush();

    const spans = exporter.getFinishedSpans();
    const byName = (name: string, kind: number): ReadableSpan => {
      const found = spans.filter((s) => s.name === name && s.kind === kind);
      expect(found, `${name} kind ${kind}`).to.have.length(1);
      return found[0]!;
    };
    const CLIENT = 2;
    const SERVER = 1;
    const orchestrationClient = byName("hello.encryption.v1.EncryptionService/ReadRecord", CLIENT);
    const encryptionServer = byName("hello.encryption.v1.EncryptionService/ReadRecord", SERVER);
    const encryptionClient = byName("hello.storage.v1.StorageService/ReadRecord", CLIENT);
    const storageServer = byName("hello.storage.v1.StorageService/ReadRecord", SERVER);

    const traceId = orchestrationClient.spanContext().traceId;
    for (const span of [encryptionServer, encryptionClient, storageServer]) {
      expect(span.spanContext().traceId).to.equal(traceId);
    }
    expect(encryptionServer.parentSpanContext?.spanId).to.equal(orchestrationClient.spanContext().spanId);
    expect(encryptionClient.parentSpanContext?.spanId).to.equal(encryptionServer.spanContext().spanId);
    expect(storageServer.parentSpanContext?.spanId).to.equal(encryptionClient.spanContext().spanId);
    expect(storageServer.attributes["rpc.grpc.status_code"]).to.equal(0);

    // Nothing from the request reaches a span.
    const everything = JSON.stringify(spans.map((s) => ({ name: s.name, attributes: s.attributes, events: s.events, status: s.status })));
    expect(everything).not.to.include("secret-access-token");
  });

  it("records a refused call's code, not its message", async function () {
    const trust = new TrustStore(new Map(COMPONENTS.map((c) => [c, pki.ca(c).certPem])));
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
