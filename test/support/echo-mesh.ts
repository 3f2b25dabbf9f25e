// A test harness for the mesh itself: real mesh servers (real TLS, real policy, real
// interceptors) for all four components on localhost, whose protocol methods answer
// with an empty response and record who called. What is under test is the mesh;
// the protocol handlers are tested with the protocol.

import { create, type DescMethod, type DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { createClient, type Client } from "@connectrpc/connect";
import { COMPONENTS, type Component } from "../../internal/protocol/identity.js";
import { type MeshServer, type MeshCredentials, callerIdentity, startMeshServer } from "../../mesh/server.js";
import { type MeshProtocol, createMeshTransport } from "../../mesh/client.js";
import type { TrustStore } from "../../mesh/trust.js";
import { TokenService } from "../../internal/gen/hello/token/v1/token_service_pb.js";
import { EncryptionService } from "../../internal/gen/hello/encryption/v1/encryption_service_pb.js";
import { StorageService } from "../../internal/gen/hello/storage/v1/storage_service_pb.js";
import { BuildInfoService } from "../../internal/gen/hello/common/v1/build_info_pb.js";
import { MetricsService } from "../../internal/gen/hello/common/v1/metrics_pb.js";
import { Health } from "../../internal/gen/grpc/health/v1/health_pb.js";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../internal/gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../../internal/gen/grpc/reflection/v1/reflection_pb.js";
import { buildInfoRoutes, currentBuildInfo } from "../../internal/components/runtime/buildinfo/build-info.js";
import { HealthStatus, healthRoutes } from "../../mesh/grpc/health.js";
import { reflectionRoutes } from "../../mesh/grpc/reflection.js";
import { formatIdentity } from "../../internal/protocol/identity.js";

export const PROTOCOL_SERVICES: Record<Component, DescService | undefined> = {
  orchestration: undefined,
  token: TokenService,
  encryption: EncryptionService,
  storage: StorageService,
};

export interface Call {
  server: Component;
  method: string;
  caller: string;
}

/** Implements every unary method of `service` with `handler`, defaulting to an empty answer. */
export function routesFor(
  service: DescService,
  handler: (method: DescMethod, values: Parameters<typeof callerIdentity>[0]) => Promise<unknown> | unknown,
) {
  return (router: ConnectRouter) => {
    for (const method of service.methods) {
      if (method.methodKind !== "unary") continue;
      const impl = async (_req: unknown, ctx: { values: Parameters<typeof callerIdentity>[0] }) =>
        (await handler(method, ctx.values)) ?? create(method.output);
      // The method is only known at run time here, so its typed impl cannot be spelled.
      router.rpc(method, impl as never);
    }
  };
}

export interface EchoMesh {
  servers: Record<Component, MeshServer>;
  calls: Call[];
  /** Handshake refusals per server, by error code. */
  refusedHandshakes: Array<{ server: Component; code: string }>;
  close(): Promise<void>;
}

export async function startEchoMesh(
  credentials: (c: Component) => MeshCredentials,
  trust: TrustStore,
  extra: Partial<Record<Component, (router: ConnectRouter) => void>> = {},
  interceptors: Interceptor[] = [],
): Promise<EchoMesh> {
  const calls: Call[] = [];
  const refusedHandshakes: EchoMesh["refusedHandshakes"] = [];
  const servers = {} as Record<Component, MeshServer>;
  for (const component of COMPONENTS) {
    const service = PROTOCOL_SERVICES[component];
    const health = new HealthStatus();
    health.set("", ServingStatus.SERVING);
    const served = [...(service ? [service] : []), BuildInfoService, MetricsService, Health, ServerReflection];
    servers[component] = await startMeshServer({
      component,
      credentials: credentials(component),
      trust,
      interceptors,
      onHandshakeRefused: (code) => refusedHandshakes.push({ server: component, code }),
      routes: (router) => {
        if (extra[component]) extra[component](router);
        else if (service) {
          routesFor(service, (method, values) => {
            calls.push({ server: component, method: method.name, caller: formatIdentity(callerIdentity(values)) });
          })(router);
        }
        buildInfoRoutes(currentBuildInfo(component))(router);
        healthRoutes(health)(router);
        reflectionRoutes(served)(router);
      },
    });
  }
  return {
    servers,
    calls,
    refusedHandshakes,
    close: async () => {
      await Promise.all(Object.values(servers).map((s) => s.close()));
    },
  };
}

/** A client of `service` on `target`'s server, presenting `credentials`. */
export function meshClient<S extends DescService>(
  service: S,
  target: Component,
  url: string,
  credentials: MeshCredentials,
  trust: TrustStore,
  protocol: MeshProtocol = "grpc",
): Client<S> {
  return createClient(service, createMeshTransport({ target, baseUrl: url, credentials, trust, protocol }));
}
