// Serving the metrics: hello.common.v1.MetricsService/GetMetrics on every component's
// mesh server, callable by every custodian's operator (mesh/policy.ts), and the same
// text at GET /metrics on the mesh port for a Prometheus server that presents an
// operator certificate (HTTP/2 over TLS, as every mesh connection).

import type { ConnectRouter } from "@connectrpc/connect";
import { MetricsService } from "../../gen/hello/common/v1/metrics_pb.js";
import type { MeshMetrics } from "./registry.js";

/** The full method name the policy table and the HTTP endpoint's authorization use. */
export const GET_METRICS = `/${MetricsService.typeName}/${MetricsService.method.getMetrics.name}`;

/** The path a Prometheus scraper asks for on the mesh port. */
export const METRICS_PATH = "/metrics";

export function metricsRoutes(metrics: MeshMetrics) {
  return (router: ConnectRouter) => {
    router.service(MetricsService, {
      async getMetrics() {
        const { contentType, text } = await metrics.exposition();
        return { contentType, exposition: text };
      },
    });
  };
}
