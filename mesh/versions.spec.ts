// The protocol version on the wire (mesh/versions.ts, docs/upgrades.md): real mesh servers
// and clients over mutual TLS, with the versions they speak and accept set as a later
// release would set them.

import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import { Code, type Interceptor, createClient } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { COMPONENTS } from "../internal/protocol/identity.js";
import { PROTOCOL_HEADER, PROTOCOL_REFUSED_HEADER, PROTOCOL_VERSION, type ProtocolWindow } from "../internal/protocol/versions.js";
import { TrustStore } from "./trust.js";
import { type MeshServer, startMeshServer } from "./server.js";
import { type MeshProtocol, createMeshTransport } from "./client.js";
import { callerProtocolKey, isVersionRefusal } from "./versions.js";
import { routesFor } from "../test/support/echo-mesh.js";
import { type TestPki, makeTestPki } from "../test/support/test-pki.js";
import { refusedWith } from "../test/support/refusal.js";
import { StorageService } from "../internal/gen/hello/storage/v1/storage_service_pb.js";
import { BuildInfoService } from "../internal/gen/hello/common/v1/build_info_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../internal/gen/grpc/health/v1/health_pb.js";
import { buildInfoRoutes, currentBuildInfo } from "../internal/components/runtime/buildinfo/build-info.js";
import { HealthStatus, healthRoutes } from "./grpc/health.js";

describe("mesh protocol versions", function () {
  let pki: TestPki;
  let trust: TrustStore;
  const servers: MeshServer[] = [];
  /** The caller version each StorageService call was handled in, in order. */
  const handledIn: number[] = [];

  before(async function () {
    pki = await makeTestPki();
    trust = new TrustStore(new Map(COMPONENTS.map((c) => [c, pki.ca(c).certPem])));
  });
  after(async function () {
    await Promise.all(servers.map((s) => s.close()));
  });
  beforeEach(() => {
    handledIn.length = 0;
  });

  /** A Storage that speaks and accepts `window` (undefined: this release's). */
  async function storage(window?: ProtocolWindow): Promise<MeshServer> {
    const health = new HealthStatus();
    health.set("", ServingStatus.SERVING);
    const server = await startMeshServer({
      component: "storage",
      credentials: pki.leaf("storage"),
      trust,
      ...(window ? { protocolVersions: window } : {}),
      routes: (router) => {
        routesFor(StorageService, (_method, values) => {
          handledIn.push((values as unknown as { get(key: typeof callerProtocolKey): number }).get(callerProtocolKey));
        })(router);
        buildInfoRoutes(currentBuildInfo("storage"))(router);
        healthRoutes(health)(router);
      },
    });
    servers.push(server);
    return server;
  }

  /** Encryption's client of `server`, speaking `window`; `interceptors` run after the version is stated. */
  function encryption(server: { url: string }, window?: ProtocolWindow, protocol: MeshProtocol = "connect", interceptors: Interceptor[] = []) {
    const transport = createMeshTransport({
      target: "storage",
      baseUrl: server.url,
      credentials: pki.leaf("encryption"),
      trust,
      protocol,
      interceptors,
      ...(window ? { protocolVersions: window } : {}),
    });
    return { storage: createClient(StorageService, transport) };
  }

  /** The answer's headers, as the client got them. */
  const headersOf = () => {
    const seen: { header?: Headers } = {};
    return { seen, onHeader: (header: Headers) => (seen.header = header) };
  };

  it("this release states its version on every call and is answered in it", async function () {
    const server = await storage();
    const { seen, onHeader } = headersOf();
    await encryption(server).storage.deleteRecord({}, { onHeader });
    expect(seen.header?.get(PROTOCOL_HEADER)).to.equal(String(PROTOCOL_VERSION));
    expect(handledIn).to.deep.equal([PROTOCOL_VERSION]);
  });

  for (const protocol of ["connect", "grpc", "grpc-web"] as const) {
    it(`a caller newer than the server accepts is refused before the handler runs, naming both versions (${protocol})`, async function () {
      const server = await storage({ speaks: 1, oldest: 1 });
      const error = await refusedWith(encryption(server, { speaks: 2, oldest: 1 }, protocol).storage.deleteRecord({}));
      expect(error.code).to.equal(Code.FailedPrecondition);
      expect(error.rawMessage).to.equal(
        "the caller encryption speaks protocol 2, and storage accepts only protocol 1: upgrade storage, one release at a time (docs/upgrades.md gives the order)",
      );
      expect(error.metadata.get(PROTOCOL_REFUSED_HEADER)).to.equal("storage");
      expect(error.metadata.get(PROTOCOL_HEADER), "the refusal states what the server speaks").to.equal("1");
      expect(isVersionRefusal(error)).to.equal(true);
      expect(handledIn, "the handler never ran").to.deep.equal([]);
    });
  }

  it("a caller older than the server accepts is refused, and told to upgrade", async function () {
    const server = await storage({ speaks: 3, oldest: 2 });
    const error = await refusedWith(encryption(server, { speaks: 1, oldest: 1 }).storage.deleteRecord({}));
    expect(error.rawMessage).to.equal(
      "the caller encryption speaks protocol 1, and storage accepts protocols 2 to 3: upgrade encryption, one release at a time (docs/upgrades.md gives the order)",
    );
    expect(handledIn).to.deep.equal([]);
  });

  it("a server one release ahead answers the older caller in the caller's version, which the caller accepts", async function () {
    const server = await storage({ speaks: 2, oldest: 1 });
    const { seen, onHeader } = headersOf();
    await encryption(server, { speaks: 1, oldest: 1 }).storage.deleteRecord({}, { onHeader });
    expect(seen.header?.get(PROTOCOL_HEADER)).to.equal("1");
    await encryption(server, { speaks: 2, oldest: 1 }).storage.deleteRecord({});
    expect(handledIn, "each call handled in its caller's version").to.deep.equal([1, 2]);
  });

  it("a call that states no version comes from a release before versions: protocol 1", async function () {
    const dropHeader: Interceptor = (next) => (req) => {
      req.header.delete(PROTOCOL_HEADER);
      return next(req);
    };
    await encryption(await storage({ speaks: 2, oldest: 1 }), undefined, "connect", [dropHeader]).storage.deleteRecord({});
    expect(handledIn).to.deep.equal([1]);
    const error = await refusedWith(encryption(await storage({ speaks: 2, oldest: 2 }), undefined, "connect", [dropHeader]).storage.deleteRecord({}));
    expect(error.rawMessage).to.match(/^the caller encryption speaks protocol 1 \(its release states no version\), and storage accepts only protocol 2: upgrade encryption/);
  });

  it("a malformed version is refused without being repeated", async function () {
    const server = await storage();
    for (const garbage of ["0", "-1", "1.0", "two", "1, 2", "9999999", "<script>"]) {
      const garble: Interceptor = (next) => (req) => {
        req.header.set(PROTOCOL_HEADER, garbage);
        return next(req);
      };
      const error = await refusedWith(encryption(server, undefined, "connect", [garble]).storage.deleteRecord({}), garbage);
      expect(error.code, garbage).to.equal(Code.FailedPrecondition);
      expect(error.rawMessage, garbage).to.equal("the caller encryption states a malformed hello-protocol header: it must be a protocol version number");
    }
    expect(handledIn).to.deep.equal([]);
  });

  it("BuildInfo, metrics and health answer a caller of any version, and BuildInfo says which versions the component takes", async function () {
    const server = await storage();
    // An operator (whom BuildInfo and health answer) with tools of a far later release.
    const operator = createMeshTransport({
      target: "storage", baseUrl: server.url, credentials: pki.operator("encryption"), trust, protocolVersions: { speaks: 9, oldest: 9 },
    });
    const { buildInfo } = await createClient(BuildInfoService, operator).getBuildInfo({});
    expect(buildInfo?.protocolVersion).to.equal(PROTOCOL_VERSION);
    expect(buildInfo?.oldestProtocolVersion).to.be.within(1, PROTOCOL_VERSION);
    // Health along the edge: Encryption's own check of its Storage, whatever their releases.
    const peer = createMeshTransport({ target: "storage", baseUrl: server.url, credentials: pki.leaf("encryption"), trust, protocolVersions: { speaks: 9, oldest: 9 } });
    expect((await createClient(Health, peer).check({ service: "" })).status).to.equal(ServingStatus.SERVING);
    const error = await refusedWith(encryption(server, { speaks: 9, oldest: 9 }).storage.deleteRecord({}), "while the protocol's own service refuses it");
    expect(error.code).to.equal(Code.FailedPrecondition);
  });

  it("a caller refuses an answer in a version it does not accept: a server of a release before versions", async function () {
    // A Storage from before versions were stated: the same routes and mutual TLS, no version check.
    const old = http2.createSecureServer(
      { cert: pki.leaf("storage").certPem, key: pki.leaf("storage").keyPem, ca: pki.ca("encryption").certPem, requestCert: true, rejectUnauthorized: true },
      connectNodeAdapter({ routes: routesFor(StorageService, () => void handledIn.push(0)) }),
    );
    await new Promise<void>((resolve) => old.listen(0, "127.0.0.1", resolve));
    try {
      const url = `https://127.0.0.1:${(old.address() as AddressInfo).port}`;
      await encryption({ url }, { speaks: 2, oldest: 1 }).storage.deleteRecord({});
      const error = await refusedWith(encryption({ url }, { speaks: 2, oldest: 2 }).storage.deleteRecord({}));
      expect(error.code).to.equal(Code.FailedPrecondition);
      expect(error.rawMessage).to.equal(
        "the server storage speaks protocol 1 (its release states no version), and encryption accepts only protocol 2: upgrade storage, one release at a time (docs/upgrades.md gives the order)",
      );
      expect(error.metadata.get(PROTOCOL_REFUSED_HEADER)).to.equal("encryption");
    } finally {
      old.close();
    }
  });
});
