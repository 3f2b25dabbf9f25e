import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { expect } from "chai";
import { type DescService, type MessageInitShape, create, createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import { type ConnectRouter, createClient, createRouterTransport } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Health } from "../../internal/gen/grpc/health/v1/health_pb.js";
import { rejectionOf } from "../../test/support/refusal.js";
import {
  ServerReflection,
  type ServerReflectionRequestSchema,
  type ServerReflectionResponse,
} from "../../internal/gen/grpc/reflection/v1/reflection_pb.js";
import { StorageService } from "../../internal/gen/hello/storage/v1/storage_service_pb.js";
import { KeyMaintenanceService } from "../../internal/gen/hello/storage/v1/key_maintenance_service_pb.js";
import { HealthStatus, ServingStatus, healthRoutes } from "./health.js";
import { reflectionRoutes } from "./reflection.js";

type Request = MessageInitShape<typeof ServerReflectionRequestSchema>;
type FileInit = MessageInitShape<typeof FileDescriptorProtoSchema>;

const ask = {
  list: (): Request => ({ messageRequest: { case: "listServices", value: "" } }),
  file: (name: string): Request => ({ messageRequest: { case: "fileByFilename", value: name } }),
  symbol: (name: string): Request => ({ messageRequest: { case: "fileContainingSymbol", value: name } }),
  extensionNumbers: (type: string): Request => ({ messageRequest: { case: "allExtensionNumbersOfType", value: type } }),
  extension: (containingType: string, extensionNumber: number): Request => ({
    messageRequest: { case: "fileContainingExtension", value: { containingType, extensionNumber } },
  }),
};

/** Sends `requests` on one reflection stream and collects the answers. */
async function reflect(services: readonly DescService[], ...requests: Request[]): Promise<ServerReflectionResponse[]> {
  const client = createClient(ServerReflection, createRouterTransport(reflectionRoutes(services)));
  const responses: ServerReflectionResponse[] = [];
  const stream = (async function* () {
    yield* requests;
  })();
  for await (const response of client.serverReflectionInfo(stream)) responses.push(response);
  return responses;
}

/** As Storage serves them to Encryption: its record service and its key maintenance (and health). */
const STORAGE_SERVICES: readonly DescService[] = [StorageService, KeyMaintenanceService, Health];

async function reflectOne(request: Request, services: readonly DescService[] = STORAGE_SERVICES) {
  const responses = await reflect(services, request);
  expect(responses.length).to.equal(1);
  return responses[0]!;
}

/** The files in a file_descriptor_response, decoded, in order. */
function filesOf(response: ServerReflectionResponse): FileDescriptorProto[] {
  const answer = response.messageResponse;
  if (answer.case !== "fileDescriptorResponse") throw new Error(`expected files, got ${answer.case}`);
  return answer.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
}

function fileNames(response: ServerReflectionResponse): string[] {
  return filesOf(response).map((file) => file.name);
}

function serviceNames(response: ServerReflectionResponse): string[] {
  const answer = response.messageResponse;
  if (answer.case !== "listServicesResponse") throw new Error(`expected services, got ${answer.case}`);
  return answer.value.service.map((s) => s.name);
}

function extensionNumbers(response: ServerReflectionResponse): { baseTypeName: string; extensionNumber: number[] } {
  const answer = response.messageResponse;
  if (answer.case !== "allExtensionNumbersResponse") throw new Error(`expected extension numbers, got ${answer.case}`);
  return { baseTypeName: answer.value.baseTypeName, extensionNumber: answer.value.extensionNumber };
}

function errorOf(response: ServerReflectionResponse): { errorCode: number; errorMessage: string } {
  const answer = response.messageResponse;
  if (answer.case !== "errorResponse") throw new Error(`expected an error, got ${answer.case}`);
  return { errorCode: answer.value.errorCode, errorMessage: answer.value.errorMessage };
}

/** A service from hand-written descriptors, for shapes our protos do not have. */
function serviceFrom(typeName: string, ...files: FileInit[]): DescService {
  const set = create(FileDescriptorSetSchema, { file: files.map((file) => create(FileDescriptorProtoSchema, file)) });
  const service = createFileRegistry(set).getService(typeName);
  if (!service) throw new Error(`${typeName} did not build`);
  return service;
}

const STORAGE_FILE = "hello/storage/v1/storage_service.proto";
const KEY_MAINTENANCE_FILE = "hello/storage/v1/key_maintenance_service.proto";
const TIMESTAMP_FILE = "google/protobuf/timestamp.proto";
const RECORD_FILE = "hello/common/v1/record.proto";
const HEALTH_FILE = "grpc/health/v1/health.proto";

describe("reflectionRoutes", () => {
  it("lists exactly the given services plus reflection itself", async () => {
    const response = await reflectOne({ messageRequest: { case: "listServices", value: "*" } });
    expect(serviceNames(response)).to.deep.equal([
      "hello.storage.v1.StorageService",
      "hello.storage.v1.KeyMaintenanceService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
    ]);
  });

  it("lists reflection once when it is also passed in", async () => {
    const response = await reflectOne(ask.list(), [ServerReflection]);
    expect(serviceNames(response)).to.deep.equal(["grpc.reflection.v1.ServerReflection"]);
  });

  it("echoes the host and the original request", async () => {
    const response = await reflectOne({ host: "storage.mesh", messageRequest: { case: "listServices", value: "" } });
    expect(response.validHost).to.equal("storage.mesh");
    expect(response.originalRequest?.host).to.equal("storage.mesh");
    expect(response.originalRequest?.messageRequest).to.deep.equal({ case: "listServices", value: "" });
  });

  it("answers file_by_filename with the file first, then its imports", async () => {
    const response = await reflectOne(ask.file(STORAGE_FILE));
    expect(fileNames(response)).to.deep.equal([STORAGE_FILE, TIMESTAMP_FILE]);
    const file = filesOf(response)[0]!;
    expect(file.package).to.equal("hello.storage.v1");
    expect(file.dependency).to.deep.equal([TIMESTAMP_FILE]);
    expect(file.service[0]?.method.map((m) => m.name)).to.deep.equal(["ReadRecord", "BackfillRecordDigest", "CreateRecord", "UpdateRecord", "DeleteRecord", "WriteRecords"]);
    // Key maintenance is a service, and a file, of its own.
    const maintenance = filesOf(await reflectOne(ask.file(KEY_MAINTENANCE_FILE)));
    expect(maintenance.map((f) => f.name)).to.deep.equal([KEY_MAINTENANCE_FILE, RECORD_FILE]);
    expect(maintenance[0]!.dependency).to.deep.equal([RECORD_FILE]);
    expect(maintenance[0]!.service.map((s) => s.name)).to.deep.equal(["KeyMaintenanceService"]);
    expect(maintenance[0]!.service[0]?.method.map((m) => m.name)).to.deep.equal(["ListRecordKeys", "RewrapRecordKey", "CountRecordKeys"]);
  });

  it("sends a file without imports alone", async () => {
    const health = await reflectOne(ask.file(HEALTH_FILE));
    expect(fileNames(health)).to.deep.equal([HEALTH_FILE]);
    const timestamp = await reflectOne(ask.file(TIMESTAMP_FILE));
    expect(fileNames(timestamp)).to.deep.equal([TIMESTAMP_FILE]);
  });

  it("sends a file imported twice over once", async () => {
    // a imports b and c; b imports c too.
    const service = serviceFrom(
      "test.AService",
      { name: "test/c.proto", package: "test", syntax: "proto3", messageType: [{ name: "C" }] },
      {
        name: "test/b.proto",
        package: "test",
        syntax: "proto3",
        dependency: ["test/c.proto"],
        messageType: [{ name: "B" }],
      },
      {
        name: "test/a.proto",
        package: "test",
        syntax: "proto3",
        dependency: ["test/b.proto", "test/c.proto"],
        service: [{ name: "AService", method: [{ name: "Get", inputType: ".test.B", outputType: ".test.C" }] }],
      },
    );
    const response = await reflectOne(ask.file("test/a.proto"), [service]);
    expect(fileNames(response)).to.deep.equal(["test/a.proto", "test/b.proto", "test/c.proto"]);
  });

  const symbols: Array<[kind: string, symbol: string, files: string[]]> = [
    ["a service", "hello.storage.v1.StorageService", [STORAGE_FILE, TIMESTAMP_FILE]],
    ["a method", "hello.storage.v1.StorageService.ReadRecord", [STORAGE_FILE, TIMESTAMP_FILE]],
    ["a message", "hello.storage.v1.StoredRecord", [STORAGE_FILE, TIMESTAMP_FILE]],
    ["a field", "hello.storage.v1.StoredRecord.create_time", [STORAGE_FILE, TIMESTAMP_FILE]],
    ["a oneof", "hello.storage.v1.ReadRecordResponse.result", [STORAGE_FILE, TIMESTAMP_FILE]],
    ["a method of a second service in the package", "hello.storage.v1.KeyMaintenanceService.CountRecordKeys", [KEY_MAINTENANCE_FILE, RECORD_FILE]],
    ["an imported enum", "hello.common.v1.RecordKind", [RECORD_FILE]],
    ["an imported message", "google.protobuf.Timestamp", [TIMESTAMP_FILE]],
    ["a nested enum", "grpc.health.v1.HealthCheckResponse.ServingStatus", [HEALTH_FILE]],
    ["an enum value (scoped beside its enum)", "grpc.health.v1.HealthCheckResponse.SERVING", [HEALTH_FILE]],
    ["the reflection service", "grpc.reflection.v1.ServerReflection", ["grpc/reflection/v1/reflection.proto"]],
  ];
  for (const [kind, symbol, files] of symbols) {
    it(`answers file_containing_symbol for ${kind}`, async () => {
      const response = await reflectOne(ask.symbol(symbol));
      expect(fileNames(response)).to.deep.equal(files);
    });
  }

  it("answers NOT_FOUND for an unknown symbol or file, and the stream carries on", async () => {
    const responses = await reflect(
      [StorageService],
      ask.symbol("hello.storage.v1.Nope"),
      // An enum value is not its enum's child.
      ask.symbol("grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING"),
      ask.file("hello/nope.proto"),
      ask.file(STORAGE_FILE),
    );
    const kinds = responses.map((r) => r.messageResponse.case);
    expect(kinds).to.deep.equal(["errorResponse", "errorResponse", "errorResponse", "fileDescriptorResponse"]);
    expect(errorOf(responses[0]!)).to.deep.equal({
      errorCode: 5,
      errorMessage: "symbol not found: hello.storage.v1.Nope",
    });
    expect(errorOf(responses[1]!).errorCode).to.equal(5);
    expect(errorOf(responses[2]!)).to.deep.equal({ errorCode: 5, errorMessage: "file not found: hello/nope.proto" });
  });

  it("does not describe services it was not given", async () => {
    const response = await reflectOne(ask.symbol("grpc.health.v1.Health"), [StorageService]);
    expect(errorOf(response).errorCode).to.equal(5);
  });

  it("answers all_extension_numbers_of_type with none for a known message, NOT_FOUND otherwise", async () => {
    const known = await reflectOne(ask.extensionNumbers("hello.storage.v1.StoredRecord"));
    expect(extensionNumbers(known)).to.deep.equal({
      baseTypeName: "hello.storage.v1.StoredRecord",
      extensionNumber: [],
    });

    const unknown = await reflectOne(ask.extensionNumbers("hello.storage.v1.Nope"));
    expect(errorOf(unknown)).to.deep.equal({
      errorCode: 5,
      errorMessage: "message type not found: hello.storage.v1.Nope",
    });
  });

  it("answers NOT_FOUND for file_containing_extension when no such extension exists", async () => {
    const response = await reflectOne(ask.extension("hello.storage.v1.StoredRecord", 100));
    expect(errorOf(response)).to.deep.equal({
      errorCode: 5,
      errorMessage: "extension not found: hello.storage.v1.StoredRecord field 100",
    });
  });

  it("answers INVALID_ARGUMENT for a request with no message_request", async () => {
    const responses = await reflect([StorageService], {}, ask.list());
    expect(errorOf(responses[0]!)).to.deep.equal({ errorCode: 3, errorMessage: "message_request is not set" });
    expect(responses[1]?.messageResponse.case).to.equal("listServicesResponse");
  });

  it("finds extensions when a served file declares them", async () => {
    // None of our protos extend anything, so build a proto2 file that does.
    const service = serviceFrom("test.ExtService", {
      name: "test/ext.proto",
      package: "test",
      syntax: "proto2",
      messageType: [{ name: "Base", extensionRange: [{ start: 100, end: 200 }] }],
      extension: [
        {
          name: "tag",
          number: 100,
          label: FieldDescriptorProto_Label.OPTIONAL,
          type: FieldDescriptorProto_Type.STRING,
          extendee: ".test.Base",
        },
      ],
      service: [{ name: "ExtService", method: [{ name: "Get", inputType: ".test.Base", outputType: ".test.Base" }] }],
    });

    const responses = await reflect(
      [service],
      ask.extensionNumbers("test.Base"),
      ask.extension("test.Base", 100),
      ask.extension("test.Base", 101),
      ask.symbol("test.tag"),
    );
    expect(extensionNumbers(responses[0]!)).to.deep.equal({ baseTypeName: "test.Base", extensionNumber: [100] });
    expect(fileNames(responses[1]!)).to.deep.equal(["test/ext.proto"]);
    expect(errorOf(responses[2]!).errorCode).to.equal(5);
    expect(fileNames(responses[3]!)).to.deep.equal(["test/ext.proto"]);
  });

  describe("with the real buf CLI (buf curl over h2c)", () => {
    const buf = fileURLToPath(new URL("../../node_modules/.bin/buf", import.meta.url));
    const run = promisify(execFile);
    let server: http2.Http2Server;
    const sessions = new Set<http2.ServerHttp2Session>();
    let url: string;

    before(async () => {
      const health = new HealthStatus();
      health.set("", ServingStatus.SERVING);
      health.set(StorageService.typeName, ServingStatus.SERVING);
      const routes = (router: ConnectRouter) => {
        // Storage's services are not implemented: reflection only describes them.
        reflectionRoutes(STORAGE_SERVICES)(router);
        healthRoutes(health)(router);
      };
      server = http2.createServer(connectNodeAdapter({ routes }));
      server.on("session", (session) => {
        sessions.add(session);
        session.once("close", () => sessions.delete(session));
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    after(async () => {
      for (const session of sessions) session.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    // --reflect-protocol pins v1, so a silent fallback to v1alpha cannot hide a v1 bug.
    const curl = (...args: string[]) =>
      run(buf, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--reflect-protocol", "grpc-v1", ...args], {
        timeout: 20_000,
      });

    it("lists methods through reflection", async () => {
      const { stdout } = await curl("--list-methods", url);
      expect(stdout.trim().split("\n").sort()).to.deep.equal([
        "grpc.health.v1.Health/Check",
        "grpc.health.v1.Health/List",
        "grpc.health.v1.Health/Watch",
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "hello.storage.v1.KeyMaintenanceService/CountRecordKeys",
        "hello.storage.v1.KeyMaintenanceService/ListRecordKeys",
        "hello.storage.v1.KeyMaintenanceService/RewrapRecordKey",
        "hello.storage.v1.StorageService/BackfillRecordDigest",
        "hello.storage.v1.StorageService/CreateRecord",
        "hello.storage.v1.StorageService/DeleteRecord",
        "hello.storage.v1.StorageService/ReadRecord",
        "hello.storage.v1.StorageService/UpdateRecord",
        "hello.storage.v1.StorageService/WriteRecords",
      ]);
    });

    it("calls Health/Check with the schema it got by reflection", async () => {
      const { stdout } = await curl("--data", JSON.stringify({ service: "" }), `${url}/grpc.health.v1.Health/Check`);
      expect(JSON.parse(stdout)).to.deep.equal({ status: "SERVING" });
    });

    it("reports Check's NOT_FOUND as buf curl's exit code (code << 3)", async () => {
      const failure = await rejectionOf(curl("--data", '{"service":"nope"}', `${url}/grpc.health.v1.Health/Check`));
      expect(failure).to.have.property("code", 5 << 3);
    });
  });
});
