// Contract across implementations: a @grpc/grpc-js client built from the same .proto
// files (not from our generated TypeScript) calls a connect-node mesh server over
// mutual TLS.

import path from "node:path";
import { X509Certificate } from "node:crypto";
import { expect } from "chai";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { COMPONENTS, identityUri } from "../internal/protocol/identity.js";
import { TrustStore } from "./trust.js";
import { type EchoMesh, startEchoMesh } from "../test/support/echo-mesh.js";
import { type TestPki, makeTestPki } from "../test/support/test-pki.js";
import { rejectionOf } from "../test/support/refusal.js";

const PROTO_ROOT = path.resolve(import.meta.dirname, "..", "proto");

type UnaryCall = (
  request: object,
  callback: (error: grpc.ServiceError | null, response?: Record<string, unknown>) => void,
) => void;

function loadService(file: string, qualifiedName: string): grpc.ServiceClientConstructor {
  const definition = protoLoader.loadSync(path.join(PROTO_ROOT, file), {
    includeDirs: [PROTO_ROOT],
    keepCase: false,
    enums: String,
    defaults: true,
  });
  const pkg = grpc.loadPackageDefinition(definition);
  const ctor = qualifiedName.split(".").reduce<unknown>((node, part) => (node as Record<string, unknown>)[part], pkg);
  return ctor as grpc.ServiceClientConstructor;
}

function call(client: grpc.Client, method: string, request: object): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    ((client as unknown as Record<string, UnaryCall>)[method]!).call(client, request, (error, response) =>
      error ? reject(error) : resolve(response!),
    );
  });
}

describe("contract: a @grpc/grpc-js client against connect-node mesh servers", function () {
  let pki: TestPki;
  let mesh: EchoMesh;
  before(async function () {
    pki = await makeTestPki();
    const trust = new TrustStore(new Map(COMPONENTS.map((c) => [c, pki.ca(c).certPem])));
    mesh = await startEchoMesh((c) => pki.leaf(c), trust);
  });
  after(async () => mesh?.close());

  /** A grpc-js client of `ctor` on `server`, presenting `as`; closed once `use` is done with it. */
  async function withGrpcJsClient<T>(
    ctor: grpc.ServiceClientConstructor,
    server: "token" | "storage",
    as: { certPem: string; keyPem: string },
    use: (client: grpc.Client) => Promise<T>,
  ): Promise<T> {
    const client = grpcJsClient(ctor, server, as);
    try {
      return await use(client);
    } finally {
      client.close();
    }
  }

  function grpcJsClient(ctor: grpc.ServiceClientConstructor, server: "token" | "storage", as: { certPem: string; keyPem: string }) {
    const credentials = grpc.credentials.createSsl(
      Buffer.from(pki.ca(server).certPem),
      Buffer.from(as.keyPem),
      Buffer.from(as.certPem),
      {
        // Trust the server by its SPIFFE identity, as our own client does.
        checkServerIdentity: (_host, cert) =>
          new X509Certificate(cert.raw).subjectAltName?.includes(`URI:${identityUri(server)}`)
            ? undefined
            : new Error(`not ${server}`),
      },
    );
    return new ctor(new URL(mesh.servers[server].url).host, credentials);
  }

  it("calls TokenService/CreateSession as Orchestration", async function () {
    const TokenService = loadService("hello/token/v1/token_service.proto", "hello.token.v1.TokenService");
    const response = await withGrpcJsClient(TokenService, "token", pki.leaf("orchestration"), (client) =>
      call(client, "createSession", { parameters: { clientId: "app", redirectUri: "https://app.example/cb", nonce: "n" }, providerId: "dev" }),
    );
    expect(response).to.include({ sessionToken: "", upstreamNonce: "" });
    expect(mesh.calls).to.deep.include({ server: "token", method: "CreateSession", caller: "orchestration" });
  });

  it("is refused with PERMISSION_DENIED on a disallowed edge (Token -> Storage)", async function () {
    const StorageService = loadService("hello/storage/v1/storage_service.proto", "hello.storage.v1.StorageService");
    const error = await withGrpcJsClient(StorageService, "storage", pki.leaf("token"), (client) => rejectionOf(call(client, "readRecord", { accessToken: "t" })));
    expect((error as grpc.ServiceError).code).to.equal(grpc.status.PERMISSION_DENIED);
  });

  it("reads BuildInfo with an operator certificate", async function () {
    const BuildInfoService = loadService("hello/common/v1/build_info.proto", "hello.common.v1.BuildInfoService");
    const response = await withGrpcJsClient(BuildInfoService, "storage", pki.operator("token"), (client) => call(client, "getBuildInfo", {}));
    expect((response.buildInfo as Record<string, unknown>).component).to.equal("storage");
  });
});
