// Assembles one component from its own configuration, as its custodian runs it
// (`hello serve <component>`): mesh credentials, peers' bundles, the component's
// service, health, reflection and BuildInfo, and a clean stop.

import type { ConnectRouter } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { COMPONENTS, type Component } from "../../protocol/identity.js";
import { readBundles, trustFromBundles, watchBundles } from "../../../mesh/bundle.js";
import { type MeshServer, startMeshServer } from "../../../mesh/server.js";
import type { ConfigFor } from "../../config/component-config.js";
import { buildInfoRoutes, currentBuildInfo, describeRunningArtifact } from "./buildinfo/build-info.js";
import { BuildInfoService } from "../../gen/hello/common/v1/build_info_pb.js";
import { MetricsService } from "../../gen/hello/common/v1/metrics_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { HealthStatus, healthRoutes } from "../../../mesh/grpc/health.js";
import { reflectionRoutes } from "../../../mesh/grpc/reflection.js";
import type { Logger } from "../../observability/log/logger.js";
import { loadCredentials } from "./credentials.js";
import type { ServiceFactory } from "./component-services.js";

export interface RunningComponent {
  readonly component: Component;
  readonly server: MeshServer;
  readonly health: HealthStatus;
  close(): Promise<void>;
}

/** The peers' CAs a component must hold: every custodian may at least call BuildInfo. */
const TRUSTED_BUNDLES: readonly Component[] = COMPONENTS;

/**
 * `service` is the component's own wiring (internal/components/<component>/wiring.ts),
 * passed in rather than looked up so that a component's artifact bundles only its own.
 */
export async function serveComponent<C extends Component>(
  config: ConfigFor<C>,
  log: Logger,
  service: ServiceFactory<C>,
): Promise<RunningComponent> {
  const credentials = loadCredentials(config);
  let bundles = readBundles(config.bundles, TRUSTED_BUNDLES);
  // Digested once, before serving: BuildInfo names the files this process started from.
  const buildInfo = currentBuildInfo(config.component, await describeRunningArtifact());
  const running = await service(config, { credentials, bundles: () => bundles, log });

  const health = new HealthStatus();
  // MetricsService's routes are added by startMeshServer itself; listed here for reflection.
  const served: DescService[] = [...running.descriptors, BuildInfoService, MetricsService, Health, ServerReflection];
  const routes = (router: ConnectRouter) => {
    running.routes(router);
    buildInfoRoutes(buildInfo)(router);
    healthRoutes(health)(router);
    reflectionRoutes(served)(router);
  };

  let server;
  try {
    server = await startMeshServer({
      component: config.component,
      credentials,
      trust: trustFromBundles(bundles),
      routes,
      host: config.listen.host,
      port: config.listen.port,
      ...(running.mapError ? { mapError: running.mapError } : {}),
    });
  } catch (error) {
    // Nothing half-started stays behind (a pool, a timer) to keep the process alive.
    await running.close().catch(() => {}); // the error worth reporting is the listener's
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE" || code === "EACCES" || code === "EADDRNOTAVAIL") {
      throw new Error(`cannot listen on ${config.listen.host}:${config.listen.port} (${code}): something else holds that port, or listen.host is not this machine's; change listen in the configuration`, { cause: error });
    }
    throw error;
  }
  // A component that needs its peers serves while they do (docs/design.md §1); others now.
  const following = new Set(running.readiness ? ["", ...running.readiness.services] : []);
  const status = (serving: boolean) => (serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  for (const name of [...running.descriptors.map((d) => d.typeName), ""]) {
    health.set(name, following.has(name) ? status(running.readiness!.peers.serving) : ServingStatus.SERVING);
  }
  if (running.readiness) {
    const { peers } = running.readiness;
    peers.onChange((serving, notServing) => {
      for (const name of following) health.set(name, status(serving));
      if (serving) log.info("every peer it needs serves: serving");
      else log.warn({ not_serving: notServing }, `not serving while ${notServing.join(" and ")} ${notServing.length > 1 ? "do" : "does"} not`);
    });
    health.refreshWith(() => peers.settle());
    if (!peers.serving) log.info({ not_serving: peers.notServing() }, `not serving until ${peers.notServing().join(" and ")} ${peers.notServing().length > 1 ? "do" : "does"}`);
  }

  const stopWatching = watchBundles(
    config.bundles,
    TRUSTED_BUNDLES,
    (next) => {
      bundles = next;
      server.updateTrust(trustFromBundles(next));
      log.info("reloaded the peers' mesh bundles");
    },
    (error) => log.error({ err: error }, "a mesh bundle changed but could not be loaded; keeping the previous ones"),
  );

  return {
    component: config.component,
    server,
    health,
    async close() {
      stopWatching();
      health.shutdown();
      await server.close();
      await running.close();
    },
  };
}
