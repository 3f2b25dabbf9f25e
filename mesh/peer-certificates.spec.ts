// Issue 11, item 4 (docs/design.md §5): no custodian can crash another component. Every
// certificate a peer can present, of any key type and however its subjectAltName is
// broken, gets an answer (allowed, or refused by policy or authentication), never an
// uncaught error; and the process that answered it goes on serving. Real mesh servers
// with the real policy table, over real TLS sockets on localhost.

import http2 from "node:http2";
import { generateKeyPairSync } from "node:crypto";
import { expect } from "chai";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { COMPONENTS, type Component, identityOf, identityUri } from "../internal/protocol/identity.js";
import { TrustStore } from "./trust.js";
import { type MeshCredentials, startMeshServer } from "./server.js";
import { createMeshTransport } from "./client.js";
import { authorize } from "./policy.js";
import { type EchoMesh, PROTOCOL_SERVICES, startEchoMesh } from "../test/support/echo-mesh.js";
import { type TestPki, makeTestPki, malformedSanCertificates } from "../test/support/test-pki.js";
import { errorOf, outcomeOf } from "../test/support/refusal.js";
import {
  type CertificateAndKey,
  KEY_TYPES,
  type KeyType,
  createCertificateAuthority,
  issueComponentCertificate,
  issueOperatorCertificate,
} from "../internal/ops/pki/pki.js";
import { BuildInfoService } from "../internal/gen/hello/common/v1/build_info_pb.js";
import { MetricsService } from "../internal/gen/hello/common/v1/metrics_pb.js";
import { Health } from "../internal/gen/grpc/health/v1/health_pb.js";
import { TokenService } from "../internal/gen/hello/token/v1/token_service_pb.js";

type Outcome = "ok" | Code;

/** Calls the first method of `service` on `url` as `credentials`, on a connection of its own. */
async function callFirstMethod(
  service: DescService,
  target: Component,
  url: string,
  credentials: MeshCredentials,
  trust: TrustStore,
): Promise<Outcome> {
  const transport = createMeshTransport({ target, baseUrl: url, credentials, trust });
  try {
    const client = createClient(service, transport) as unknown as Record<string, (req: object) => Promise<unknown>>;
    return await outcomeOf(client[service.methods[0]!.localName]!({}));
  } finally {
    transport.close();
  }
}

/** GET /metrics over HTTP/2 + TLS, as Prometheus scrapes it: the status, or how the connection ended. */
function scrape(url: string, serverCa: string, credentials: MeshCredentials): Promise<number | string> {
  return new Promise((resolve) => {
    const session = http2.connect(url, {
      ca: serverCa,
      cert: credentials.certPem,
      key: credentials.keyPem,
      checkServerIdentity: () => undefined,
      minVersion: "TLSv1.3",
    });
    const done = (outcome: number | string) => {
      session.destroy();
      resolve(outcome);
    };
    session.on("error", (error: NodeJS.ErrnoException) => done(error.code ?? error.message));
    session.on("close", () => done("closed"));
    const stream = session.request({ ":path": "/metrics", ":method": "GET" });
    stream.on("response", (headers) => done(Number(headers[":status"])));
    stream.on("error", (error: NodeJS.ErrnoException) => done(error.code ?? error.message));
  });
}

describe("no custodian can crash another component: every certificate gets an answer (docs/design.md §5)", function () {
  this.timeout(120_000);
  let pki: TestPki;
  /** What reached process 'uncaughtException' while a test ran: must stay empty. */
  const uncaught: unknown[] = [];
  const record = (error: unknown) => uncaught.push(error);
  /** One RSA key for every RSA leaf made here: generating RSA keys is the slow part. */
  let rsaKeyPem: string;

  before(async function () {
    pki = await makeTestPki();
    rsaKeyPem = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    process.prependListener("uncaughtException", record);
  });
  after(() => {
    process.off("uncaughtException", record);
  });
  beforeEach(() => {
    uncaught.length = 0;
  });
  afterEach(() => {
    expect(uncaught.map(String), "uncaught exceptions").to.deep.equal([]);
  });

  const leafOf = (ca: CertificateAndKey, component: Component, operator: boolean, keyType: KeyType) => {
    const options = keyType === "rsa" ? { keyPem: rsaKeyPem } : { keyType };
    return operator ? issueOperatorCertificate(ca, component, options) : issueComponentCertificate(ca, component, options);
  };

  for (const caType of KEY_TYPES) {
    describe(`four custodian CAs with ${caType} keys, and component servers with ${caType} keys`, function () {
      let cas: Record<Component, CertificateAndKey>;
      let trust: TrustStore;
      let mesh: EchoMesh;

      before(async function () {
        cas = Object.fromEntries(
          COMPONENTS.map((c) => [c, caType === "rsa" ? pki.ca(c) : createCertificateAuthority(c, { keyType: caType })]),
        ) as Record<Component, CertificateAndKey>;
        trust = new TrustStore(new Map(COMPONENTS.map((c) => [c, cas[c].certPem])));
        const servers = Object.fromEntries(
          COMPONENTS.map((c) => [c, caType === "rsa" ? pki.leaf(c) : issueComponentCertificate(cas[c], c, { keyType: caType })]),
        ) as Record<Component, CertificateAndKey>;
        mesh = await startEchoMesh((c) => servers[c], trust);
      });
      after(async () => {
        await mesh?.close();
      });

      /** The policy's answer for `caller` calling the first method of `service` on `server`. */
      const expected = (caller: { component: Component; operator: boolean }, server: Component, service: DescService): Outcome =>
        authorize(server, identityOf(caller.component, caller.operator), `/${service.typeName}/${service.methods[0]!.name}`).allowed
          ? "ok"
          : Code.PermissionDenied;

      for (const leafType of KEY_TYPES) {
        it(`${leafType} operator and component certificates of every custodian get the policy's answer from every server`, async function () {
          const outcomes: string[] = [];
          const expectations: string[] = [];
          for (const component of COMPONENTS) {
            for (const operator of [true, false]) {
              const caller = { component, operator };
              const credentials = leafOf(cas[component], component, operator, leafType);
              await Promise.all(
                COMPONENTS.map(async (server) => {
                  // Health (own operator only), BuildInfo (any operator), and the server's protocol (its callers only).
                  for (const service of [Health, BuildInfoService, PROTOCOL_SERVICES[server] ?? MetricsService]) {
                    const label = `${identityOf(component, operator).uri} -> ${server} ${service.typeName}`;
                    const outcome = await callFirstMethod(service, server, mesh.servers[server].url, credentials, trust);
                    outcomes.push(`${label}: ${outcome}`);
                    expectations.push(`${label}: ${expected(caller, server, service)}`);
                  }
                }),
              );
            }
          }
          expect(outcomes.sort()).to.deep.equal(expectations.sort());
          expect(outcomes.filter((o) => o.endsWith(": ok")).length, "some calls were allowed").to.be.greaterThan(0);
          expect(mesh.refusedHandshakes).to.deep.equal([]);
        });
      }

      it("GET /metrics answers a P-256 or Ed25519 operator (200) and a component (403)", async function () {
        for (const server of COMPONENTS) {
          for (const keyType of ["p256", "ed25519"] as const) {
            const url = mesh.servers[server].url;
            expect(await scrape(url, cas[server].certPem, leafOf(cas.storage, "storage", true, keyType)), `${server} ${keyType}`).to.equal(200);
            expect(await scrape(url, cas[server].certPem, leafOf(cas.encryption, "encryption", false, keyType)), `${server} ${keyType}`).to.equal(403);
          }
        }
      });

      it("afterwards every server still answers an honest call", async function () {
        for (const server of COMPONENTS) {
          expect(await callFirstMethod(BuildInfoService, server, mesh.servers[server].url, leafOf(cas.token, "token", true, "p256"), trust)).to.equal("ok");
        }
      });
    });
  }

  describe("certificates whose subjectAltName is malformed", function () {
    let trust: TrustStore;
    let mesh: EchoMesh;
    /** Claiming Orchestration's operator, which may call BuildInfo: only the broken SAN stands in the way. */
    let malformed: Record<string, CertificateAndKey>;

    before(async function () {
      trust = new TrustStore(new Map(COMPONENTS.map((c) => [c, pki.ca(c).certPem])));
      mesh = await startEchoMesh((c) => pki.leaf(c), trust);
      malformed = malformedSanCertificates(pki.ca("orchestration"), identityUri("orchestration", true), pki.rogue.keyPem);
    });
    after(async () => {
      await mesh?.close();
    });

    it("each is refused, UNAUTHENTICATED by the mesh or in the handshake by OpenSSL, by every server, and nothing crashes", async function () {
      const refusals: Record<string, string> = {};
      for (const [name, credentials] of Object.entries(malformed)) {
        for (const server of COMPONENTS) {
          mesh.refusedHandshakes.length = 0;
          const outcome = await callFirstMethod(BuildInfoService, server, mesh.servers[server].url, credentials, trust);
          // OpenSSL refuses some (two SAN extensions, an unknown GeneralName) before the
          // mesh sees them; the mesh's own reader refuses the rest.
          const refusal = mesh.refusedHandshakes.length > 0 ? "refused in the handshake" : outcome === Code.Unauthenticated ? "UNAUTHENTICATED" : `${outcome}`;
          refusals[`${name} -> ${server}`] = refusal;
          expect(["refused in the handshake", "UNAUTHENTICATED"], `${name} -> ${server}`).to.include(refusal);
        }
      }
      // Most reach the mesh's reader: the handshake is not what protects these.
      const byMesh = Object.values(refusals).filter((r) => r === "UNAUTHENTICATED").length;
      expect(byMesh).to.be.greaterThanOrEqual((Object.keys(malformed).length - 3) * COMPONENTS.length);
      // and the honest twin: the same servers answer Orchestration's real operator
      for (const server of COMPONENTS) {
        expect(await callFirstMethod(BuildInfoService, server, mesh.servers[server].url, pki.operator("orchestration"), trust)).to.equal("ok");
      }
    });

    it("GET /metrics refuses each with 401 (or in the handshake) and keeps serving", async function () {
      for (const [name, credentials] of Object.entries(malformed)) {
        const outcome = await scrape(mesh.servers.token.url, pki.ca("token").certPem, credentials);
        expect([401, "closed", "ECONNRESET"], name).to.include(outcome);
      }
      expect(await scrape(mesh.servers.token.url, pki.ca("token").certPem, pki.operator("orchestration"))).to.equal(200);
    });

    it("a client refuses a server presenting each of them, and goes on calling honest servers", async function () {
      // Servers claiming to be Token, with the Token CA's signature on a broken SAN.
      const asToken = malformedSanCertificates(pki.ca("token"), identityUri("token"), pki.rogue.keyPem);
      for (const [name, credentials] of Object.entries(asToken)) {
        let handled = 0;
        const fake = await startMeshServer({
          component: "token",
          credentials,
          trust,
          routes: (router) =>
            router.service(TokenService, {
              createSession: () => {
                handled++;
                return {};
              },
            }),
        });
        try {
          const transport = createMeshTransport({ target: "token", baseUrl: fake.url, credentials: pki.leaf("orchestration"), trust });
          const error = await errorOf(createClient(TokenService, transport).createSession({}));
          transport.close();
          expect(error, name).to.be.instanceOf(ConnectError);
          expect(error!.rawMessage, name).to.match(/certificate|URI SAN/);
          expect(handled, name).to.equal(0);
        } finally {
          await fake.close();
        }
      }
      expect(await callFirstMethod(TokenService, "token", mesh.servers.token.url, pki.leaf("orchestration"), trust)).to.equal("ok");
    });
  });
});
