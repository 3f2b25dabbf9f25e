// The mesh's promises (docs/design.md §1, §2), each checked over real TLS sockets on
// localhost, with the attacker's attempt next to the honest call.

import http2 from "node:http2";
import tls from "node:tls";
import { expect } from "chai";
import { Code } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { COMPONENTS, type Component, formatIdentity, identityOf } from "../internal/protocol/identity.js";
import { TrustStore } from "./trust.js";
import { type MeshCredentials, type MeshServer, callerIdentity, startMeshServer } from "./server.js";
import { authorize } from "./policy.js";
import { type EchoMesh, PROTOCOL_SERVICES, meshClient, routesFor, startEchoMesh } from "../test/support/echo-mesh.js";
import { type TestPki, makeTestPki } from "../test/support/test-pki.js";
import { errorOf, outcomeOf, refusedWith } from "../test/support/refusal.js";
import { BuildInfoService } from "../internal/gen/hello/common/v1/build_info_pb.js";
import { MetricsService } from "../internal/gen/hello/common/v1/metrics_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../internal/gen/grpc/health/v1/health_pb.js";
import { TokenService } from "../internal/gen/hello/token/v1/token_service_pb.js";
import { StorageService } from "../internal/gen/hello/storage/v1/storage_service_pb.js";
import { KeyMaintenanceService } from "../internal/gen/hello/storage/v1/key_maintenance_service_pb.js";
import { KeyWrappingAdminService } from "../internal/gen/hello/storage/v1/key_wrapping_admin_service_pb.js";

/**
 * The allowed edges, written out from docs/design.md §1 independently of mesh/policy.ts,
 * so that a change to the table that the design does not sanction fails here.
 */
function expectedAllowed(caller: { component: Component; operator: boolean }, server: Component, service: string, method: string): boolean {
  if (service === "hello.common.v1.BuildInfoService" || service === "hello.common.v1.MetricsService") return caller.operator;
  const edge =
    !caller.operator &&
    ((caller.component === "orchestration" && server === "token") ||
      (caller.component === "orchestration" && server === "encryption") ||
      (caller.component === "encryption" && server === "storage"));
  // Health: all of it for the component's own operator; Check alone along each edge.
  if (service === "grpc.health.v1.Health") return (caller.operator && caller.component === server) || (edge && method === "Check");
  if (service === "grpc.reflection.v1.ServerReflection") return caller.operator && caller.component === server;
  // Storage's undo for re-wraps: its own custodian's operator, and no component.
  if (service === "hello.storage.v1.KeyWrappingAdminService") return server === "storage" && caller.operator && caller.component === "storage";
  return (
    edge &&
    (service === "hello.token.v1.TokenService" || service === "hello.encryption.v1.EncryptionService" || service === "hello.storage.v1.StorageService" ||
      // Key maintenance takes no Access Token: Encryption's re-wrap job only, along its edge.
      service === "hello.storage.v1.KeyMaintenanceService") &&
    service.split(".")[1] === server
  );
}

describe("mesh: mutual TLS with a CA per custodian (docs/design.md §2)", function () {
  let pki: TestPki;
  let trust: TrustStore;
  let mesh: EchoMesh;

  before(async function () {
    pki = await makeTestPki();
    trust = new TrustStore(new Map(COMPONENTS.map((c) => [c, pki.ca(c).certPem])));
    mesh = await startEchoMesh((c) => pki.leaf(c), trust);
  });
  after(async function () {
    await mesh?.close();
  });
  beforeEach(() => {
    mesh.calls.length = 0;
  });

  const callers = COMPONENTS.flatMap((component) => [
    { component, operator: false },
    { component, operator: true },
  ]);
  const credentialsOf = (caller: { component: Component; operator: boolean }): MeshCredentials =>
    caller.operator ? pki.operator(caller.component) : pki.leaf(caller.component);
  const label = (caller: { component: Component; operator: boolean }) =>
    caller.operator ? `${caller.component}/operator` : caller.component;

  /** Calls the first method of `service` with an empty request. */
  function callFirstMethod(service: DescService, server: Component, credentials: MeshCredentials) {
    const client = meshClient(service, server, mesh.servers[server].url, credentials, trust) as unknown as Record<
      string,
      (req: object) => Promise<unknown>
    >;
    return client[service.methods[0]!.localName]!({});
  }

  describe("§1 call graph: default deny, keyed by full method name", function () {
    for (const server of COMPONENTS) {
      const services = [PROTOCOL_SERVICES[server], BuildInfoService, MetricsService, Health].filter(
        (s): s is DescService => s !== undefined,
      );
      for (const service of services) {
        for (const caller of callers) {
          const allowed = expectedAllowed(caller, server, service.typeName, service.methods[0]!.name);
          it(`${label(caller)} -> ${server} ${service.typeName}/${service.methods[0]!.name}: ${allowed ? "allowed" : "PERMISSION_DENIED"}`, async function () {
            const code = await outcomeOf(callFirstMethod(service, server, credentialsOf(caller)));
            expect(code).to.equal(allowed ? "ok" : Code.PermissionDenied);
          });
        }
      }
    }

    it("every method of an allowed service is reachable, and the handler sees the verified caller", async function () {
      const token = meshClient(TokenService, "token", mesh.servers.token.url, pki.leaf("orchestration"), trust);
      await token.createSession({});
      await token.mintIdToken({});
      await token.getKeySet({});
      expect(mesh.calls).to.deep.equal([
        { server: "token", method: "CreateSession", caller: "orchestration" },
        { server: "token", method: "MintIdToken", caller: "orchestration" },
        { server: "token", method: "GetKeySet", caller: "orchestration" },
      ]);
    });

    describe("health along each edge: Check only", function () {
      const edges = [["orchestration", "token"], ["orchestration", "encryption"], ["encryption", "storage"]] as const;
      const health = (server: Component, as: MeshCredentials) => meshClient(Health, server, mesh.servers[server].url, as, trust);
      /** The first answer of a Watch stream (or its refusal). */
      const firstWatched = async (server: Component, as: MeshCredentials) => {
        for await (const answer of health(server, as).watch({ service: "" })) return answer;
        return undefined;
      };

      for (const [caller, server] of edges) {
        it(`${caller} -> ${server}: Check answers SERVING; List and Watch are PERMISSION_DENIED`, async function () {
          const as = pki.leaf(caller);
          expect((await health(server, as).check({ service: "" })).status).to.equal(ServingStatus.SERVING);
          expect(await outcomeOf(health(server, as).list({}))).to.equal(Code.PermissionDenied);
          expect(await outcomeOf(firstWatched(server, as))).to.equal(Code.PermissionDenied);
        });
      }

      it("no one else's Check: not the other direction, not across an edge, not another component", async function () {
        const refused: Array<[Component, Component]> = [
          ["token", "orchestration"], ["encryption", "orchestration"], ["storage", "encryption"], // the other direction
          ["orchestration", "storage"], ["token", "storage"], ["token", "encryption"], ["storage", "token"], ["encryption", "token"],
        ];
        for (const [caller, server] of refused) {
          expect(await outcomeOf(health(server, pki.leaf(caller)).check({ service: "" })), `${caller} -> ${server}`).to.equal(Code.PermissionDenied);
        }
        // An operator keeps all of its own component's health, and none of another's.
        expect(await outcomeOf(firstWatched("storage", pki.operator("storage")))).to.equal("ok");
        expect(await outcomeOf(health("storage", pki.operator("encryption")).check({ service: "" }))).to.equal(Code.PermissionDenied);
      });
    });

    it("a refused call never reaches the handler", async function () {
      const storage = meshClient(StorageService, "storage", mesh.servers.storage.url, pki.leaf("orchestration"), trust);
      expect(await outcomeOf(storage.readRecord({ accessToken: "x" }))).to.equal(Code.PermissionDenied);
      expect(mesh.calls).to.deep.equal([]);
    });

    it("the refusal says who may not call what, and nothing else", async function () {
      const storage = meshClient(StorageService, "storage", mesh.servers.storage.url, pki.leaf("token"), trust);
      const error = await refusedWith(storage.readRecord({ accessToken: "secret-token-value" }));
      expect(error.rawMessage).to.equal(
        "token may not call /hello.storage.v1.StorageService/ReadRecord on storage",
      );
    });
  });

  describe("§1 Storage's key maintenance: a service and a rule of its own, Encryption's alone", function () {
    // A Storage server (real TLS, the real policy) whose every method of its three
    // services answers empty and records who reached it.
    let storage: MeshServer;
    const reached: string[] = [];
    const STORAGE_SIDE = [StorageService, KeyMaintenanceService, KeyWrappingAdminService];

    before(async function () {
      storage = await startMeshServer({
        component: "storage",
        credentials: pki.leaf("storage"),
        trust,
        routes: (router) => {
          for (const service of STORAGE_SIDE) {
            routesFor(service, (method, values) => {
              reached.push(`${service.typeName}/${method.name} by ${formatIdentity(callerIdentity(values))}`);
            })(router);
          }
        },
      });
    });
    after(async () => storage?.close());
    beforeEach(() => {
      reached.length = 0;
    });

    const call = (service: DescService, method: string, as: MeshCredentials) =>
      (meshClient(service, "storage", storage.url, as, trust) as unknown as Record<string, (req: object) => Promise<unknown>>)[method]!({});

    for (const service of [KeyMaintenanceService, KeyWrappingAdminService]) {
      for (const method of service.methods) {
        it(`${service.typeName}/${method.name}: ${service === KeyMaintenanceService ? "Encryption" : "Storage's operator"} only; every other identity PERMISSION_DENIED, naming itself and the method`, async function () {
          for (const caller of callers) {
            const allowed = expectedAllowed(caller, "storage", service.typeName, method.name);
            const error = await errorOf(call(service, method.localName, credentialsOf(caller)));
            if (allowed) {
              expect(error, label(caller)).to.equal(undefined);
            } else {
              expect(error?.code, label(caller)).to.equal(Code.PermissionDenied);
              expect(error?.rawMessage).to.equal(`${label(caller)} may not call /${service.typeName}/${method.name} on storage`);
            }
          }
          // Only the allowed caller's call reached the handler; exactly one caller is allowed.
          const only = service === KeyMaintenanceService ? "encryption" : "storage/operator";
          expect(reached).to.deep.equal([`${service.typeName}/${method.name} by ${only}`]);
        });
      }
    }

    it("Encryption's rule for the record service does not stretch to key maintenance, nor the other way: each service is named in full", function () {
      const encryption = identityOf("encryption");
      for (const method of [...StorageService.methods, ...KeyMaintenanceService.methods]) {
        expect(authorize("storage", encryption, `/${method.parent.typeName}/${method.name}`).allowed, method.name).to.equal(true);
      }
      // Default deny: a service name that merely starts like an allowed one, another
      // package, or a method the proto does not have under another service.
      for (const method of [
        "/hello.storage.v1.KeyMaintenanceServiceV2/ListRecordKeys",
        "/hello.storage.v2.KeyMaintenanceService/ListRecordKeys",
        "/hello.storage.v1.KeyWrappingAdminService/GetKeyUsage",
        "/hello.storage.v1.KeyMaintenanceService",
      ]) {
        expect(authorize("storage", encryption, method).allowed, method).to.equal(false);
      }
      // Key maintenance is served by Storage alone: Encryption's certificate gets nothing at another server.
      for (const server of ["token", "encryption", "orchestration"] as const) {
        expect(authorize(server, encryption, "/hello.storage.v1.KeyMaintenanceService/ListRecordKeys").allowed, server).to.equal(false);
      }
    });
  });

  describe("§2 identity: exactly one URI SAN, bound to the CA of the custodian it names", function () {
    it("a Token-CA certificate claiming the Orchestration identity gets UNAUTHENTICATED (honest twin: Orchestration's own)", async function () {
      expect(await outcomeOf(callFirstMethod(TokenService, "token", pki.impostor))).to.equal(Code.Unauthenticated);
      expect(await outcomeOf(callFirstMethod(TokenService, "token", pki.leaf("orchestration")))).to.equal("ok");
      expect(mesh.calls.map((c) => c.caller)).to.deep.equal(["orchestration"]);
    });

    it("a certificate with zero URI SANs gets UNAUTHENTICATED", async function () {
      expect(await outcomeOf(callFirstMethod(TokenService, "token", pki.noUri))).to.equal(Code.Unauthenticated);
    });

    it("a certificate with two URI SANs gets UNAUTHENTICATED", async function () {
      expect(await outcomeOf(callFirstMethod(TokenService, "token", pki.twoUris))).to.equal(Code.Unauthenticated);
    });

    it("a URI SAN outside the hello.mesh trust domain gets UNAUTHENTICATED", async function () {
      expect(await outcomeOf(callFirstMethod(TokenService, "token", pki.foreignDomain))).to.equal(Code.Unauthenticated);
    });

    /** Opens a raw TLS connection offering h2, sends the HTTP/2 preface, reports how it ended. */
    function rawTls(server: Component, options: { cert?: string; key?: string }): Promise<string> {
      const url = new URL(mesh.servers[server].url);
      return new Promise<string>((resolve) => {
        let received = 0;
        const socket = tls.connect({
          host: url.hostname,
          port: Number(url.port),
          ca: pki.ca(server).certPem,
          ...options,
          ALPNProtocols: ["h2"],
          checkServerIdentity: () => undefined,
        });
        socket.on("secureConnect", () => socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        socket.on("data", (chunk: Buffer) => {
          received += chunk.length;
          socket.end(); // the server spoke HTTP/2: that is all we wanted to know
        });
        socket.on("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
        socket.on("close", () => resolve(`closed after ${received} bytes`));
      });
    }

    it("a certificate from a fifth, unknown CA is refused in the TLS handshake (honest twin: a known CA)", async function () {
      mesh.refusedHandshakes.length = 0;
      // In TLS 1.3 the server judges the client certificate after the client's
      // Finished; it refuses before reading a single HTTP/2 frame.
      const outcome = await rawTls("token", { cert: pki.rogue.certPem, key: pki.rogue.keyPem });
      expect(outcome).to.equal("closed after 0 bytes");
      expect(mesh.refusedHandshakes).to.deep.equal([{ server: "token", code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" }]);

      mesh.refusedHandshakes.length = 0;
      const honest = await rawTls("token", { cert: pki.leaf("orchestration").certPem, key: pki.leaf("orchestration").keyPem });
      expect(honest).to.match(/^closed after [1-9]\d* bytes$/); // the server's SETTINGS frame arrived
      expect(mesh.refusedHandshakes).to.deep.equal([]);

      // and through a Connect client, the call never happens
      expect(await outcomeOf(callFirstMethod(TokenService, "token", pki.rogue))).not.to.equal("ok");
      expect(mesh.calls).to.deep.equal([]);
    });

    it("a client with no certificate is refused in the handshake", async function () {
      expect(await rawTls("token", {})).to.equal("ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED");
    });

    it("a plaintext HTTP/2 connection is refused", async function () {
      mesh.refusedHandshakes.length = 0;
      const url = new URL(mesh.servers.token.url);
      const outcome = await new Promise<string>((resolve) => {
        const session = http2.connect(`http://${url.host}`);
        session.on("error", (error: NodeJS.ErrnoException) => resolve(`error ${error.code ?? error.message}`));
        session.on("close", () => resolve("closed"));
        const req = session.request({
          ":method": "POST",
          ":path": "/hello.token.v1.TokenService/CreateSession",
          "content-type": "application/grpc",
        });
        req.on("response", (headers) => resolve(`response ${String(headers[":status"])}`));
        req.on("error", () => {});
        req.end();
      });
      expect(outcome).not.to.match(/^response/);
      expect(mesh.refusedHandshakes.map((r) => r.server)).to.deep.equal(["token"]);
      expect(mesh.calls).to.deep.equal([]);
    });

    it("the client refuses a server that is not the component it meant to reach", async function () {
      // Orchestration dials the Storage server's address believing it is Token.
      // Only Token's CA is offered to the handshake, so Storage's chain fails first.
      const token = meshClient(TokenService, "token", mesh.servers.storage.url, pki.leaf("orchestration"), trust);
      const error = await refusedWith(token.createSession({}));
      expect(error.rawMessage).to.include("certificate");
      expect(mesh.calls).to.deep.equal([]);
    });

    it("the client refuses a server whose certificate names an identity its CA may not vouch for", async function () {
      // A server presenting the Token-CA certificate that claims to be Orchestration.
      const fake = await startMeshServer({
        component: "token",
        credentials: pki.impostor,
        trust,
        routes: (router) => router.service(TokenService, {}),
      });
      try {
        const token = meshClient(TokenService, "token", fake.url, pki.leaf("orchestration"), trust);
        const error = await refusedWith(token.createSession({}));
        expect(error.rawMessage).to.include(
          "the certificate claims orchestration but was not issued by the orchestration custodian's CA",
        );
      } finally {
        await fake.close();
      }
    });

    it("an operator's certificate is not its component's: token/operator cannot call Token's protocol", async function () {
      const client = meshClient(TokenService, "token", mesh.servers.token.url, pki.operator("orchestration"), trust);
      expect(await outcomeOf(client.createSession({}))).to.equal(Code.PermissionDenied);
    });
  });

  describe("§2 protocols: gRPC, gRPC-Web and Connect over HTTP/2 + TLS", function () {
    for (const protocol of ["grpc", "grpc-web", "connect"] as const) {
      it(`${protocol}: allowed edge succeeds, disallowed edge is PERMISSION_DENIED`, async function () {
        const ok = meshClient(TokenService, "token", mesh.servers.token.url, pki.leaf("orchestration"), trust, protocol);
        expect(await outcomeOf(ok.createSession({}))).to.equal("ok");
        const denied = meshClient(TokenService, "token", mesh.servers.token.url, pki.leaf("encryption"), trust, protocol);
        expect(await outcomeOf(denied.createSession({}))).to.equal(Code.PermissionDenied);
      });
    }
  });

  describe("BuildInfo: every custodian's operator can read what every component runs", function () {
    for (const server of COMPONENTS) {
      it(`${server} answers every operator with its own component name`, async function () {
        for (const operator of COMPONENTS) {
          const client = meshClient(BuildInfoService, server, mesh.servers[server].url, pki.operator(operator), trust);
          const { buildInfo } = await client.getBuildInfo({});
          expect(buildInfo?.component).to.equal(server);
          expect(buildInfo?.nodeVersion).to.equal(process.version);
        }
      });
    }
  });

  it("identityOf() names the SPIFFE URI the certificates carry", function () {
    expect(identityOf("token").uri).to.equal("spiffe://hello.mesh/token");
    expect(identityOf("token", true).uri).to.equal("spiffe://hello.mesh/token/operator");
  });
});
