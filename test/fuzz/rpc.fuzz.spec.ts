// Bad input on the mesh (docs/bad-input.md): every method of every service each
// component serves — walked from the service descriptors, so a method added to a proto
// is covered here without a change — gets messages generated from its input
// descriptor (missing fields, empty and huge strings and bytes, unknown enum numbers,
// token-shaped garbage, real tokens bit-flipped or re-typed), then raw HTTP/2 bytes no
// client would send. Every answer is a success or a clear client-error code (never
// INTERNAL or UNKNOWN), says what is wrong without internals or an echo of the input,
// and comes quickly; afterwards every component still reports SERVING and serves an
// honest call. The real handlers run on real mesh servers (mutual TLS) over PGlite.

import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { expect } from "chai";
import fc from "fast-check";
import { Code, type ConnectRouter, ConnectError, type Transport, createClient } from "@connectrpc/connect";
import { type DescMessage, type DescMethod, type DescService, create, toBinary, toJsonString } from "@bufbuild/protobuf";
import type { Component } from "../../internal/protocol/identity.js";
import { DEFAULT_READ_MAX_BYTES, startMeshServer } from "../../mesh/server.js";
import { type MeshProtocol, createMeshTransport } from "../../mesh/client.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../internal/gen/grpc/health/v1/health_pb.js";
import { TokenService } from "../../internal/gen/hello/token/v1/token_service_pb.js";
import { EncryptionService } from "../../internal/gen/hello/encryption/v1/encryption_service_pb.js";
import { StorageService } from "../../internal/gen/hello/storage/v1/storage_service_pb.js";
import { sign, sha256 } from "../../internal/protocol/jws.js";
import { ACCESS_TOKEN, ERROR_TOKEN, RECEIPT, RECORD_TYPES } from "../../internal/protocol/tokens.js";
import { activeKey } from "../../internal/protocol/signing-keys.js";
import { HealthStatus, healthRoutes } from "../../mesh/grpc/health.js";
import { type MessageOptions, anyString, fuzzParameters, messageOf, tokenLike } from "./arbitraries.js";
import { CLIENT_ERROR_CODES, expectClearRefusal, expectNoInternals, within } from "./checks.js";
import { OPERATOR_SERVICES, PEER_SERVICES, PROTOCOL_SERVICE, type Rig, startRig } from "./rig.js";
import { RawHttp2, envelope, grpcWebTrailers } from "./raw-http2.js";

const SERVERS: readonly Component[] = ["token", "encryption", "storage", "orchestration"];
const PROTOCOLS: readonly MeshProtocol[] = ["grpc", "connect", "grpc-web"];
/** An answer slower than this is a hang (the rig is local; honest calls take milliseconds). */
const BOUND_MS = 3_000;

const servicesOf = (server: Component): DescService[] => [...PEER_SERVICES[server], ...OPERATOR_SERVICES];

describe("bad input on the mesh: every RPC refuses it clearly (docs/bad-input.md)", function () {
  this.timeout(240_000);
  let rig: Rig;
  /** Real tokens and records, valid and signed by the right keys, for the generators to mangle. */
  let pool: string[];

  before(async function () {
    rig = await startRig();
    pool = await realTokens(rig);
  });
  after(async () => rig?.close());
  afterEach(async function () {
    if (rig) await expectHealthy(rig);
  });

  describe("messages generated from the descriptors, over gRPC, Connect and gRPC-web", function () {
    for (const server of SERVERS) {
      for (const service of servicesOf(server)) {
        for (const method of service.methods) {
          it(`${server}: ${service.typeName}/${method.name}`, async function () {
            const options: MessageOptions = { tokens: tokenLike(pool), huge: true };
            await fc.assert(
              fc.asyncProperty(messageOf(method.input, options), fc.constantFrom(...PROTOCOLS), async (message, protocol) => {
                await callAndCheck(server, service, method, message, protocol);
              }),
              fuzzParameters(`rpc ${server} ${service.typeName}/${method.name}`, 25),
            );
          });
        }
      }
    }
  });

  describe("tokens validly signed by Token with claims of any shape, at Encryption and Storage", function () {
    // Encryption and Storage trust Token's signature, not the shape of what it signed:
    // a claim of the wrong type or value must still end in a clear refusal.
    for (const [server, service] of [["encryption", EncryptionService], ["storage", StorageService]] as const) {
      for (const method of service.methods) {
        it(`${server}: ${method.name} with signed access tokens of odd claims`, async function () {
          const accessKey = activeKey(rig.keys.token, "access");
          const value = fc.oneof(fc.constantFrom("read", "create", "update", "delete", "subject", "release", "wallet"), anyString(), fc.jsonValue({ maxDepth: 2 }));
          const claims = fc.record({
            op: value, kind: value, hash: fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,130}$/), value), digest: value,
          }, { requiredKeys: [] });
          await fc.assert(
            fc.asyncProperty(claims, messageOf(method.input, { tokens: fc.constant("") }), async (c, message) => {
              const accessToken = await sign(ACCESS_TOKEN, accessKey, c);
              const request = create(method.input, { ...(message as object), accessToken } as never);
              await callAndCheck(server, service, method, request, "grpc", [accessToken]);
            }),
            fuzzParameters(`rpc signed claims ${server} ${method.name}`, 25),
          );
        });
      }
    }
  });

  describe("raw HTTP/2 bytes with the right mTLS identity", function () {
    for (const server of ["token", "encryption", "storage"] as const) {
      it(`${server}: truncated, bit-flipped and re-framed protobuf, JSON of wrong types, odd headers`, async function () {
        const service = PROTOCOL_SERVICE[server]!;
        const connect = () => new RawHttp2(rig.servers[server].url, rig.callerFor(service, server), rig.trust);
        let raw = connect();
        try {
          await fc.assert(
            fc.asyncProperty(rawRequest(service, pool), async (r) => {
              const what = `${r.path} (${r.headers["content-type"]})`;
              let response = await within(BOUND_MS, what, raw.request(r.path, r.headers, r.body));
              if (response.resetCode === ENHANCE_YOUR_CALM) {
                // This client's own Node session counted the unsent rest of bodies the server
                // answered unread, and now refuses new streams (docs/bad-input.md): the
                // request must still be answered on a fresh connection.
                raw.close();
                raw = connect();
                response = await within(BOUND_MS, what, raw.request(r.path, r.headers, r.body));
              }
              checkRawAnswer(r, response);
            }),
            fuzzParameters(`rpc raw ${server}`, 150),
          );
        } finally {
          raw.close();
        }
      });
    }

    // A fixed example for each bug the properties found, kept as a regression test.
    it("a truncated protobuf message is INVALID_ARGUMENT in every protocol, not INTERNAL", async function () {
      const method = TokenService.method.createSession;
      const whole = toBinary(method.input, create(method.input, { providerId: "dev", request: { case: "requestObject", value: pool[0]! } }));
      const truncated = whole.subarray(0, whole.length - 3);
      const raw = new RawHttp2(rig.servers.token.url, rig.callerFor(TokenService, "token"), rig.trust);
      try {
        const path = `/${TokenService.typeName}/${method.name}`;
        const grpc = await raw.request(path, { "content-type": "application/grpc", te: "trailers" }, envelope(truncated));
        expect(grpc.trailers["grpc-status"] ?? grpc.headers["grpc-status"]).to.equal(String(Code.InvalidArgument));
        const web = await raw.request(path, { "content-type": "application/grpc-web+proto" }, envelope(truncated));
        expect(grpcWebTrailers(web.body)["grpc-status"]).to.equal(String(Code.InvalidArgument));
        const connect = await raw.request(path, { "content-type": "application/proto", "connect-protocol-version": "1" }, truncated);
        expect(connect.status).to.equal(400);
        expect(JSON.parse(connect.body.toString()).code).to.equal("invalid_argument");
        // a message that parses is not affected
        const honest = await raw.request(path, { "content-type": "application/grpc", te: "trailers" }, envelope(whole));
        expect(honest.trailers["grpc-status"]).to.not.equal(String(Code.Internal));
      } finally {
        raw.close();
      }
    });

    it("a request refused before it was read (too large) does not hold its stream open: the server still closes", async function () {
      // Found by the properties: rig.close() waited for ever on Storage, whose graceful close
      // waited for a 5 MiB request the client was still sending into a stream nobody read.
      const health = new HealthStatus();
      const server = await startMeshServer({
        component: "storage", credentials: rig.pki.leaf("storage"), trust: rig.trust, routes: storageLikeRoutes(health),
      });
      const caller = rig.pki.leaf("encryption");
      // A client that sends on after the answer, as an HTTP/2 client may (and Node's does).
      const session = http2.connect(server.url, { cert: caller.certPem, key: caller.keyPem, ca: rig.trust.pems(["storage"]), checkServerIdentity: () => undefined });
      session.on("error", () => {});
      try {
        const method = StorageService.method.createRecord;
        const big = toBinary(method.input, create(method.input, { accessToken: "x", keyId: "k1", ciphertext: new Uint8Array(DEFAULT_READ_MAX_BYTES + 1024) }));
        const status = await within(BOUND_MS, "the refusal", new Promise<string>((resolve) => {
          const stream = session.request({ ":method": "POST", ":path": `/${StorageService.typeName}/${method.name}`, "content-type": "application/grpc", te: "trailers" });
          stream.on("error", () => {});
          stream.on("trailers", (t) => resolve(String(t["grpc-status"])));
          stream.end(envelope(big));
        }));
        expect(status).to.equal(String(Code.ResourceExhausted));
      } finally {
        await within(5_000, "closing the server", server.close());
        session.destroy();
      }
    });

    it("a mesh client refuses a message over the limit before sending it, and its connection serves the next call", async function () {
      // Found by the properties: sent, the refused rest of such a message stays counted in
      // Node's client session, and after one or two the connection refuses every new
      // stream (ENHANCE_YOUR_CALM, INTERNAL at the caller) for good.
      const storage = createClient(StorageService, createMeshTransport({ target: "storage", baseUrl: rig.servers.storage.url, credentials: rig.pki.leaf("encryption"), trust: rig.trust }));
      for (let i = 0; i < 3; i++) {
        const refused = await storage.createRecord({ accessToken: "x", keyId: "k1", ciphertext: new Uint8Array(DEFAULT_READ_MAX_BYTES + 1024) }).catch((e: unknown) => ConnectError.from(e));
        expect((refused as ConnectError).code).to.equal(Code.ResourceExhausted);
        const next = await storage.deleteRecord({ accessToken: "x" }).catch((e: unknown) => ConnectError.from(e));
        expect((next as ConnectError).code, "the next call on the same connection").to.equal(Code.InvalidArgument);
      }
    });

    it(`a body over readMaxBytes (${DEFAULT_READ_MAX_BYTES} bytes) is RESOURCE_EXHAUSTED, compressed or not`, async function () {
      const method = StorageService.method.createRecord;
      const path = `/${StorageService.typeName}/${method.name}`;
      const big = toBinary(method.input, create(method.input, { accessToken: pool[0]!, keyId: "k1", ciphertext: new Uint8Array(DEFAULT_READ_MAX_BYTES + 1) }));
      const raw = new RawHttp2(rig.servers.storage.url, rig.callerFor(StorageService, "storage"), rig.trust);
      try {
        const plain = await raw.request(path, { "content-type": "application/grpc", te: "trailers" }, envelope(big));
        expect(plain.trailers["grpc-status"] ?? plain.headers["grpc-status"]).to.equal(String(Code.ResourceExhausted));
        // 5 MiB of zeros gzip to a few KiB: the limit applies to what it inflates to
        const bomb = await raw.request(path, { "content-type": "application/grpc", te: "trailers", "grpc-encoding": "gzip" }, envelope(gzipSync(big), 1));
        expect(bomb.trailers["grpc-status"] ?? bomb.headers["grpc-status"]).to.equal(String(Code.ResourceExhausted));
        const connect = await raw.request(path, { "content-type": "application/proto", "connect-protocol-version": "1" }, big);
        expect(JSON.parse(connect.body.toString()).code).to.equal("resource_exhausted");
      } finally {
        raw.close();
      }
    });
  });

  it("a header block over HTTP/2's 64 KiB list size is refused; other connections are served", async function () {
    // Node refuses the stream (and, its header compression state now unknown, the streams
    // that follow on that connection); the process and every other connection go on.
    const path = `/${TokenService.typeName}/${TokenService.method.getKeySet.name}`;
    const request = (raw: RawHttp2, headers: Record<string, string> = {}) =>
      within(BOUND_MS, path, raw.request(path, { "content-type": "application/grpc", te: "trailers", ...headers }, envelope(Buffer.alloc(0))));
    const abuser = new RawHttp2(rig.servers.token.url, rig.callerFor(TokenService, "token"), rig.trust);
    const honest = new RawHttp2(rig.servers.token.url, rig.callerFor(TokenService, "token"), rig.trust);
    try {
      const big = await request(abuser, { "x-big": "a".repeat(100 * 1024) });
      expect(big.status, "no answer, only a reset").to.equal(0);
      expect(big.resetCode).to.equal(7); // REFUSED_STREAM
      expect((await request(honest)).trailers["grpc-status"]).to.equal("0");
    } finally {
      abuser.close();
      honest.close();
    }
  });

  describe("fixed examples of what the properties found", function () {
    it("Health.Check of a huge or odd service name is NOT_FOUND with a short message, not a broken stream", async function () {
      for (const service of ["A".repeat(1024 * 1024), "no such service\u0000"]) {
        const error = await rig.client(Health, "storage").check({ service }).catch((e: unknown) => ConnectError.from(e));
        expect((error as ConnectError).code).to.equal(Code.NotFound);
        expect((error as ConnectError).rawMessage).to.equal("unknown service: (not a service name)");
      }
      const named = await rig.client(Health, "storage").check({ service: "hello.nope.v1.Nope" }).catch((e: unknown) => ConnectError.from(e));
      expect((named as ConnectError).rawMessage).to.equal('unknown service: "hello.nope.v1.Nope"');
    });

    it("an access token whose op is no operation is refused without repeating the claim", async function () {
      const accessToken = await sign(ACCESS_TOKEN, activeKey(rig.keys.token, "access"), { op: { "<x>": "y".repeat(64) }, kind: "wallet", hash: sha256("h") });
      for (const call of [rig.client(StorageService, "storage").deleteRecord({ accessToken }), rig.client(EncryptionService, "encryption").deleteRecord({ accessToken })]) {
        const error = await call.catch((e: unknown) => ConnectError.from(e));
        expect((error as ConnectError).code).to.equal(Code.PermissionDenied);
        expect((error as ConnectError).rawMessage).to.equal("the access token grants no known operation, not delete");
      }
    });

    it("a compressed flag without a compression, and a gzip stream cut short, are INVALID_ARGUMENT", async function () {
      const method = StorageService.method.readRecord;
      const path = `/${StorageService.typeName}/${method.name}`;
      const raw = new RawHttp2(rig.servers.storage.url, rig.callerFor(StorageService, "storage"), rig.trust);
      try {
        const flagged = await raw.request(path, { "content-type": "application/grpc", te: "trailers" }, envelope(Buffer.from([0x0a, 0x00]), 1));
        expect(flagged.trailers["grpc-status"] ?? flagged.headers["grpc-status"]).to.equal(String(Code.InvalidArgument));
        const zipped = gzipSync(Buffer.from([0x0a, 0x03, 0x61, 0x62, 0x63]));
        const cut = await raw.request(path, { "content-type": "application/grpc", te: "trailers", "grpc-encoding": "gzip" }, envelope(zipped.subarray(0, zipped.length - 6), 1));
        expect(cut.trailers["grpc-status"] ?? cut.headers["grpc-status"]).to.equal(String(Code.InvalidArgument));
      } finally {
        raw.close();
      }
    });
  });

  // --- calling ------------------------------------------------------------------------------

  /**
   * One transport (one HTTP/2 connection) per server, service and protocol, as a real peer
   * keeps. Streaming calls are cancelled by the client once answered, and a connection
   * that resets a thousand streams is closed by Node's defence against rapid resets, so
   * they move to a fresh connection every 200 calls.
   */
  const transports = new Map<string, Transport>();
  let streamingCalls = 0;
  function transportFor(server: Component, service: DescService, protocol: MeshProtocol, streaming: boolean): Transport {
    const generation = streaming ? Math.floor(streamingCalls++ / 200) : 0;
    const key = `${server} ${service.typeName} ${protocol} ${generation}`;
    let transport = transports.get(key);
    if (!transport) {
      transport = createMeshTransport({ target: server, baseUrl: rig.servers[server].url, credentials: rig.callerFor(service, server), trust: rig.trust, protocol });
      transports.set(key, transport);
    }
    return transport;
  }

  async function callAndCheck(server: Component, service: DescService, method: DescMethod, message: unknown, protocol: MeshProtocol, secrets: string[] = []) {
    const client = createClient(service, transportFor(server, service, protocol, method.methodKind !== "unary")) as unknown as Record<string, (input: unknown, options?: object) => unknown>;
    const what = `${server} ${service.typeName}/${method.name} over ${protocol}`;
    const controller = new AbortController();
    const call = async () => {
      switch (method.methodKind) {
        case "unary":
          return client[method.localName]!(message, { signal: controller.signal });
        case "server_streaming": {
          // A watch never ends by itself: its first answer is what is checked.
          for await (const answer of client[method.localName]!(message, { signal: controller.signal }) as AsyncIterable<unknown>) {
            controller.abort();
            return answer;
          }
          return undefined;
        }
        default: {
          const answers: unknown[] = [];
          for await (const answer of client[method.localName]!(oneMessage(message), { signal: controller.signal }) as AsyncIterable<unknown>) answers.push(answer);
          return answers;
        }
      }
    };
    try {
      await within(BOUND_MS, what, call());
    } catch (error) {
      if (controller.signal.aborted && ConnectError.from(error).code === Code.Canceled) return;
      // Operator services carry no secrets (a service or symbol name): only the protocol's
      // messages are checked for echoes. The length bound applies to all.
      const operator = OPERATOR_SERVICES.some((s) => s.typeName === service.typeName);
      expectClearRefusal(error, operator ? [] : [message, ...secrets], what);
    } finally {
      controller.abort();
    }
  }
});

/** Storage's service answering nothing but RESOURCE_EXHAUSTED from the framework, and health. */
function storageLikeRoutes(health: HealthStatus) {
  return (router: ConnectRouter) => {
    router.service(StorageService, {});
    healthRoutes(health)(router);
  };
}

async function* oneMessage<T>(message: T): AsyncIterable<T> {
  yield message;
}

/** Every component reports SERVING to its operator and answers an honest call. */
async function expectHealthy(rig: Rig) {
  for (const server of SERVERS) {
    const health = rig.client(Health, server);
    const answer = await within(BOUND_MS, `${server} health`, health.check({ service: "" }));
    expect(answer.status, `${server} health`).to.equal(ServingStatus.SERVING);
  }
  const keySet = await rig.client(TokenService, "token").getKeySet({});
  expect(keySet.jwks.length).to.be.greaterThan(0);
}

/** One of each real token and record, validly signed: the seeds the generators mutate. */
async function realTokens(rig: Rig): Promise<string[]> {
  const key = (purpose: Parameters<typeof activeKey>[1]) => activeKey([...rig.keys.token, ...rig.keys.storage], purpose);
  const hash = (n: number) => sha256(`fuzz-${n}`);
  const tokens: string[] = [];
  let n = 0;
  for (const op of ["read", "create", "update", "delete"] as const) {
    for (const kind of ["subject", "release", "wallet"] as const) {
      tokens.push(await sign(ACCESS_TOKEN, key("access"), { op, kind, hash: hash(n++), ...(op === "create" || op === "update" ? { digest: sha256("record") } : {}) }));
    }
  }
  tokens.push(await sign(ERROR_TOKEN, key("error"), { op: "read", kind: "subject", hash: hash(n++), ajti: "x" }));
  tokens.push(await sign(RECEIPT, key("receipt"), { op: "create", kind: "wallet", hash: hash(n++), ajti: "x" }));
  tokens.push(await sign(RECORD_TYPES.subject, key("record"), { op_iss: rig.devOp.issuer, op_sub: "someone", uid: "u1" }));
  tokens.push(await sign(RECORD_TYPES.wallet, key("record"), { uid: "u1", claims: { email: "a@example.com" }, subjects: [] }));
  const session = await rig.client(TokenService, "token").createSession({
    providerId: "dev",
    request: {
      case: "parameters",
      value: { clientId: "app-basic", redirectUri: "https://basic.example/callback", nonce: "n-0123456789", scope: "openid email", codeChallenge: "c".repeat(43) },
    },
  });
  tokens.push(session.sessionToken);
  return tokens;
}

// --- raw requests ---------------------------------------------------------------------------

interface RawRequest {
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
  readonly protocol: "grpc" | "grpc-web" | "connect" | "other";
}

function rawRequest(service: DescService, pool: readonly string[]): fc.Arbitrary<RawRequest> {
  const method = fc.constantFrom(...service.methods);
  const path = fc.oneof(
    { arbitrary: method.map((m) => `/${service.typeName}/${m.name}`), weight: 8 },
    { arbitrary: fc.constantFrom("/", `/${service.typeName}/`, `/${service.typeName}/Nope`, "/grpc.health.v1.Health/Nope", "//", "/%00", `/${service.typeName.toUpperCase()}/X`), weight: 1 },
  );
  const payload = (m: DescMethod) => protobufBytes(m.input, pool);
  return fc
    .tuple(method, path, fc.constantFrom("grpc", "grpc-web", "connect-proto", "connect-json", "other"))
    .chain(([m, p, kind]): fc.Arbitrary<RawRequest> => {
      const input = m.input;
      switch (kind) {
        case "grpc":
        case "grpc-web":
          return fc.oneof(
            { arbitrary: fc.tuple(framed(payload(m)), grpcHeaders(kind)).map(([body, headers]) => ({ path: p, headers, body, protocol: kind })), weight: 4 },
            { arbitrary: fc.tuple(gzipped(payload(m)), grpcHeaders(kind)).map(([body, headers]) => ({ path: p, headers: { ...headers, "grpc-encoding": "gzip" }, body, protocol: kind })), weight: 1 },
          );
        case "connect-proto":
          return fc.tuple(payload(m), connectHeaders("application/proto")).map(([body, headers]) => ({ path: p, headers, body, protocol: "connect" as const }));
        case "connect-json":
          return fc.tuple(jsonBody(input, pool), connectHeaders("application/json")).map(([body, headers]) => ({ path: p, headers, body, protocol: "connect" as const }));
        default:
          return fc
            .tuple(fc.constantFrom("text/plain", "application/x-www-form-urlencoded", "", "application/grpc-web-text", "application/grpc+json; charset=utf-16", "multipart/form-data", "application/proto; charset=ascii"), payload(m))
            .map(([type, body]) => ({ path: p, headers: type ? { "content-type": type } : ({} as Record<string, string>), body, protocol: "other" as const }));
      }
    });
}

/** Protobuf bytes: a valid message of the right type, then perhaps truncated, bit-flipped, extended or replaced. */
function protobufBytes(input: DescMessage, pool: readonly string[]): fc.Arbitrary<Buffer> {
  const valid = messageOf(input, { tokens: tokenLike(pool), maxDepth: 2 }).map((m) => Buffer.from(toBinary(input, m as never)));
  return fc.oneof(
    valid,
    fc.tuple(valid, fc.nat()).map(([b, at]) => b.subarray(0, b.length === 0 ? 0 : at % b.length)),
    fc.tuple(valid, fc.nat(), fc.nat(7)).map(([b, at, bit]) => {
      if (b.length === 0) return Buffer.from([0xff]);
      const copy = Buffer.from(b);
      copy[at % copy.length]! ^= 1 << bit;
      return copy;
    }),
    fc.tuple(valid, fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([b, junk]) => Buffer.concat([b, junk])),
    fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
    // classic parser traps: an over-long varint, a length past the end, group tags, wire types 6 and 7
    fc.constantFrom(
      Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
      Buffer.from([0x0b]), Buffer.from([0x0c]), Buffer.from([0x0e]), Buffer.from([0x0f]), Buffer.from([0x00]), Buffer.alloc(200, 0x0b),
      Buffer.from([0x12, 0x02, 0xc3, 0x28]), // invalid UTF-8 in a string field
    ),
  );
}

/** Envelopes: one right one, or a lying length, a compressed flag without an encoding, several, none. */
function framed(data: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc.oneof(
    { arbitrary: data.map((d) => envelope(d)), weight: 6 },
    { arbitrary: fc.tuple(data, fc.integer({ min: -8, max: 8 })).map(([d, delta]) => envelope(d, 0, Math.max(0, d.length + delta))), weight: 2 },
    { arbitrary: fc.tuple(data, fc.constantFrom(0x01, 0x02, 0x80, 0xff)).map(([d, flags]) => envelope(d, flags)), weight: 1 },
    { arbitrary: fc.tuple(data, data).map(([a, b]) => Buffer.concat([envelope(a), envelope(b)])), weight: 1 },
    { arbitrary: data.map((d) => envelope(d, 0, 0xffffffff).subarray(0, 5 + Math.min(d.length, 16))), weight: 1 },
    { arbitrary: fc.constantFrom(Buffer.alloc(0), Buffer.from([0]), Buffer.from([0, 0, 0])), weight: 1 },
  );
}

/** A gzip-compressed envelope (flag 1): whole, cut short, or with a byte changed. */
function gzipped(data: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc.tuple(data, fc.constantFrom("whole", "cut", "flipped"), fc.nat()).map(([d, how, at]) => {
    const zipped = gzipSync(d);
    if (how === "cut") return envelope(zipped.subarray(0, at % zipped.length), 1);
    if (how === "flipped") {
      const copy = Buffer.from(zipped);
      copy[at % copy.length]! ^= 0x20;
      return envelope(copy, 1);
    }
    return envelope(zipped, 1);
  });
}

function grpcHeaders(kind: "grpc" | "grpc-web"): fc.Arbitrary<Record<string, string>> {
  const type = kind === "grpc" ? fc.constantFrom("application/grpc", "application/grpc+proto") : fc.constantFrom("application/grpc-web", "application/grpc-web+proto");
  return fc
    .tuple(
      type,
      fc.option(fc.constantFrom("1x", "-1S", "99999999999S", "1S", "0m", "", "abc"), { nil: undefined }),
      fc.option(fc.constantFrom("identity", "snappy", "gzip, br", ""), { nil: undefined }),
    )
    .map(([contentType, timeout, encoding]) => ({
      "content-type": contentType,
      ...(kind === "grpc" ? { te: "trailers" } : {}),
      ...(timeout !== undefined ? { "grpc-timeout": timeout } : {}),
      ...(encoding !== undefined ? { "grpc-encoding": encoding } : {}),
    }));
}

function connectHeaders(contentType: string): fc.Arbitrary<Record<string, string>> {
  return fc
    .tuple(fc.option(fc.constantFrom("1", "2", ""), { nil: undefined }), fc.option(fc.constantFrom("-5", "abc", "99999999999", "1"), { nil: undefined }))
    .map(([version, timeout]) => ({
      "content-type": contentType,
      ...(version !== undefined ? { "connect-protocol-version": version } : {}),
      ...(timeout !== undefined ? { "connect-timeout-ms": timeout } : {}),
    }));
}

/** Connect JSON: a valid message's JSON with a field of the wrong type, or any JSON, or not JSON. */
function jsonBody(input: DescMessage, pool: readonly string[]): fc.Arbitrary<Buffer> {
  const valid = messageOf(input, { tokens: tokenLike(pool), maxDepth: 2 }).map((m) => JSON.parse(toJsonString(input, m as never)) as Record<string, unknown>);
  const names = input.fields.map((f) => f.jsonName);
  const wrong = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 2 }), fc.dictionary(fc.string({ maxLength: 4 }), fc.string(), { maxKeys: 2 }), fc.double(), fc.string());
  const retyped =
    names.length === 0
      ? valid
      : fc.tuple(valid, fc.constantFrom(...names), wrong).map(([json, name, value]) => ({ ...json, [name]: value }));
  return fc.oneof(
    retyped.map((json) => Buffer.from(JSON.stringify(json))),
    fc.json().map((text) => Buffer.from(text)),
    fc.constantFrom("", "{", "[", "nul", '{"a":1}x', "\u0000", '{"__proto__":{"x":1}}', '{"accessToken":"\\ud800"}').map((text) => Buffer.from(text)),
    fc.uint8Array({ maxLength: 32 }).map((b) => Buffer.concat([Buffer.from("{\""), Buffer.from(b)])),
  );
}

/** RST_STREAM ENHANCE_YOUR_CALM: a Node session over its memory limit refuses new streams. */
const ENHANCE_YOUR_CALM = 11;

const REFUSED_GRPC = new Set([Code.Unknown, Code.Internal, Code.DataLoss, Code.Unavailable, Code.DeadlineExceeded].map(String));

function checkRawAnswer(r: RawRequest, response: { status: number; headers: Record<string, string>; trailers: Record<string, string>; body: Buffer; resetCode?: number }) {
  const what = `${r.path} as ${r.headers["content-type"] ?? "(no content type)"}`;
  expect(response.status, `${what}: an HTTP answer, not a reset stream`).to.be.greaterThan(0);
  // A caller that gave itself a millisecond has asked for its own deadline to pass: a
  // deadline answer (Connect: 504 deadline_exceeded, or 503 unavailable when Storage
  // finds the deadline gone before sending a statement) is right, not a server failure.
  if (r.headers["connect-timeout-ms"] === "1" && (response.status === 503 || response.status === 504)) {
    const error = JSON.parse(response.body.toString("utf8")) as { code?: string; message?: string };
    expect(error.code, `${what}: a deadline answer`).to.be.oneOf(["deadline_exceeded", "unavailable"]);
    expect(error.message ?? "", `${what}: says the deadline passed`).to.match(/deadline|timed out|time limit/i);
    return;
  }
  expect(response.status, `${what}: never a 5xx`).to.be.below(500);
  const text = response.body.toString("latin1");
  if (r.protocol === "grpc" || r.protocol === "grpc-web") {
    if (response.status !== 200) return; // 415 or 404: a clear refusal before gRPC begins
    const status = r.protocol === "grpc" ? { ...response.headers, ...response.trailers } : grpcWebTrailers(response.body);
    const code = status["grpc-status"];
    expect(code, `${what}: a grpc-status`).to.be.a("string");
    if (REFUSED_GRPC.has(code!)) expect.fail(`${what}: grpc-status ${Code[Number(code)]} (${decodeURIComponent(status["grpc-message"] ?? "")})`);
    expectNoInternals(decodeURIComponent(status["grpc-message"] ?? ""), what);
  } else if (r.protocol === "connect" && response.status !== 200 && response.headers["content-type"]?.startsWith("application/json")) {
    const error = JSON.parse(response.body.toString("utf8")) as { code?: string; message?: string };
    expect(error.code, `${what}: a Connect error code`).to.be.a("string");
    if (["internal", "unknown", "data_loss", "unavailable"].includes(error.code!)) expect.fail(`${what}: ${error.code} (${error.message})`);
    expect(CLIENT_ERROR_CODES.has(codeFromConnect(error.code!)) || error.code === "unimplemented", `${what}: ${error.code}`).to.equal(true);
    expectNoInternals(error.message ?? "", what);
  } else {
    expectNoInternals(text, what);
  }
}

function codeFromConnect(name: string): Code {
  const key = name.split("_").map((p) => p[0]!.toUpperCase() + p.slice(1)).join("") as keyof typeof Code;
  return Code[key] as Code;
}
