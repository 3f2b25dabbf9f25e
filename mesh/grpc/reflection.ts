// gRPC server reflection (grpc.reflection.v1) for connect-node, so that grpcurl and
// `buf curl` can list and describe a component's services without a copy of the
// protos. Protocol: https://github.com/grpc/grpc/blob/master/doc/server-reflection.md
//
// Only v1 is served: buf curl (and recent grpcurl) try v1 first and fall back to
// v1alpha only when v1 is unimplemented.

import {
  type DescEnum,
  type DescExtension,
  type DescFile,
  type DescMessage,
  type DescService,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import {
  ServerReflection,
  type ServerReflectionRequest,
  type ServerReflectionResponseSchema,
} from "../../internal/gen/grpc/reflection/v1/reflection_pb.js";

type Reply = MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"];

/** What the reflection service can answer, computed once from the served services. */
interface Index {
  /** Fully-qualified service names, for list_services. */
  readonly services: readonly string[];
  /** Each file's proto name ("hello/storage/v1/storage_service.proto") -> descriptor. */
  readonly files: Map<string, DescFile>;
  /**
   * Any fully-qualified name -> its declaring file: services, methods, messages,
   * fields, oneofs, enums, enum values and extensions, as gRPC's own servers resolve.
   */
  readonly symbols: Map<string, DescFile>;
  /** Message type name -> the extension fields declared for it (empty for most). */
  readonly extensions: Map<string, DescExtension[]>;
  /** Each file -> the serialized FileDescriptorProtos that answer for it (withDependencies). */
  readonly answers: Map<DescFile, Uint8Array[]>;
}

/**
 * Routes for grpc.reflection.v1.ServerReflection describing `services` (and the
 * reflection service itself). Everything the given services' files import, directly
 * or not, can be looked up too (e.g. google.protobuf.Timestamp).
 */
export function reflectionRoutes(services: readonly DescService[]): (router: ConnectRouter) => void {
  const index = buildIndex([...services, ServerReflection]);
  return (router) => {
    router.service(ServerReflection, {
      // One answer per request, in order. Anything not found gets an error_response and
      // the stream carries on, as in grpc-go. So does a request with nothing set, where
      // grpc-go ends the stream with INVALID_ARGUMENT: one bad request should not cost
      // a client its other answers.
      async *serverReflectionInfo(requests) {
        for await (const request of requests) {
          yield { validHost: request.host, originalRequest: request, messageResponse: answer(index, request) };
        }
      },
    });
  };
}

function answer(index: Index, request: ServerReflectionRequest): Reply {
  const req = request.messageRequest;
  switch (req.case) {
    case "listServices":
      // The protocol says the value is not checked.
      return {
        case: "listServicesResponse",
        value: { service: index.services.map((name) => ({ name })) },
      };
    case "fileByFilename":
      return fileResponse(index, index.files.get(req.value), `file not found: ${req.value}`);
    case "fileContainingSymbol":
      return fileResponse(index, index.symbols.get(req.value), `symbol not found: ${req.value}`);
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = req.value;
      const extension = index.extensions.get(containingType)?.find((x) => x.number === extensionNumber);
      return fileResponse(index, extension?.file, `extension not found: ${containingType} field ${extensionNumber}`);
    }
    case "allExtensionNumbersOfType": {
      const extensions = index.extensions.get(req.value);
      if (!extensions) return errorReply(Code.NotFound, `message type not found: ${req.value}`);
      return {
        case: "allExtensionNumbersResponse",
        value: { baseTypeName: req.value, extensionNumber: extensions.map((x) => x.number) },
      };
    }
    case undefined:
      // Also where a request kind newer than this proto lands (as an unknown field).
      return errorReply(Code.InvalidArgument, "message_request is not set");
  }
}

function fileResponse(index: Index, file: DescFile | undefined, notFound: string): Reply {
  const files = file && index.answers.get(file);
  if (!files) return errorReply(Code.NotFound, notFound);
  return { case: "fileDescriptorResponse", value: { fileDescriptorProto: files } };
}

function errorReply(code: Code, message: string): Reply {
  // connect's Code values are the gRPC status codes, which is what error_code carries.
  return { case: "errorResponse", value: { errorCode: code, errorMessage: message } };
}

function buildIndex(services: readonly DescService[]): Index {
  const files = new Map<string, DescFile>();
  const symbols = new Map<string, DescFile>();
  const extensions = new Map<string, DescExtension[]>();
  // The first declaration of a name wins; protoc rejects duplicates within one build,
  // so a clash could only come from two differently-built copies of the same file.
  const symbol = (name: string, file: DescFile) => {
    if (!symbols.has(name)) symbols.set(name, file);
  };
  const addExtension = (ext: DescExtension) => {
    symbol(ext.typeName, ext.file);
    const list = extensions.get(ext.extendee.typeName);
    if (list) list.push(ext);
    else extensions.set(ext.extendee.typeName, [ext]);
  };
  const addEnum = (desc: DescEnum) => {
    symbol(desc.typeName, desc.file);
    // Enum values are scoped like C++ enumerators: siblings of their enum, not children.
    const scope = desc.typeName.slice(0, desc.typeName.length - desc.name.length);
    for (const value of desc.values) symbol(scope + value.name, desc.file);
  };
  const addMessage = (desc: DescMessage) => {
    symbol(desc.typeName, desc.file);
    if (!extensions.has(desc.typeName)) extensions.set(desc.typeName, []);
    for (const field of desc.fields) symbol(`${desc.typeName}.${field.name}`, desc.file);
    for (const oneof of desc.oneofs) symbol(`${desc.typeName}.${oneof.name}`, desc.file);
    desc.nestedEnums.forEach(addEnum);
    desc.nestedMessages.forEach(addMessage);
    desc.nestedExtensions.forEach(addExtension);
  };
  const addFile = (file: DescFile) => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    file.dependencies.forEach(addFile);
    for (const service of file.services) {
      symbol(service.typeName, file);
      for (const method of service.methods) symbol(`${service.typeName}.${method.name}`, file);
    }
    file.enums.forEach(addEnum);
    file.messages.forEach(addMessage);
    file.extensions.forEach(addExtension);
  };
  services.forEach((s) => addFile(s.file));

  const encoded = new Map<string, Uint8Array>();
  for (const [name, file] of files) encoded.set(name, toBinary(FileDescriptorProtoSchema, file.proto));
  const answers = new Map<DescFile, Uint8Array[]>();
  for (const file of files.values()) answers.set(file, withDependencies(file, encoded));

  return { services: [...new Set(services.map((s) => s.typeName))], files, symbols, extensions, answers };
}

/**
 * The file, then every file it imports directly or not, each once, so the client can
 * build the descriptor without further round trips. Every answer is self-contained
 * (grpc-go skips files already sent earlier on the same stream; clients accept both).
 */
function withDependencies(file: DescFile, encoded: ReadonlyMap<string, Uint8Array>): Uint8Array[] {
  const queue = [file];
  for (const current of queue) {
    for (const dep of current.dependencies) if (!queue.includes(dep)) queue.push(dep);
  }
  // Every dependency was indexed (by name) with the file that imports it, so the
  // fallback is only there to keep the types honest.
  return queue.map((f) => encoded.get(f.proto.name) ?? toBinary(FileDescriptorProtoSchema, f.proto));
}
