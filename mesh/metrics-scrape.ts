// GET /metrics on the mesh port: the same exposition and the same authorization as
// hello.common.v1.MetricsService/GetMetrics, for Prometheus (which speaks HTTP/2 over TLS
// and presents a client certificate). Every custodian's operator may read every
// component's metrics (seed 000); the call is counted and logged like any other.

import type http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import { Code } from "@connectrpc/connect";
import type { Component } from "../internal/protocol/identity.js";
import { formatIdentity } from "../internal/protocol/identity.js";
import type { Logger } from "../internal/observability/log/logger.js";
import { codeName, logRpc } from "../internal/observability/log/request-log.js";
import type { MeshMetrics } from "../internal/observability/metrics/registry.js";
import { GET_METRICS } from "../internal/observability/metrics/metrics-service.js";
import { type Rule, authorize } from "./policy.js";
import type { PeerAuthentication } from "./trust.js";

export interface MetricsScrapeOptions {
  readonly component: Component;
  readonly metrics: MeshMetrics;
  readonly rules: readonly Rule[];
  /** The mesh server's own verdict on the connection's client certificate. */
  readonly authenticate: (socket: TLSSocket) => PeerAuthentication;
  readonly log: () => Logger;
}

/** The handler of GET (and HEAD) /metrics. */
export function metricsScrape(options: MetricsScrapeOptions) {
  return async (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): Promise<void> => {
    const started = performance.now();
    const method = GET_METRICS.slice(1);
    let peerName: string | undefined;
    const answer = (status: number, code: Code | undefined, body: string, contentType = "text/plain; charset=utf-8") => {
      res.writeHead(status, { "content-type": contentType, "cache-control": "no-store" });
      res.end(body);
      const labels = { component: options.component, method, code: codeName(code) };
      const seconds = (performance.now() - started) / 1000;
      options.metrics.server.observe(labels, seconds, code !== undefined);
      logRpc(options.log(), { side: "server", method, ...(peerName ? { peer: peerName } : {}), code, durationMs: seconds * 1000 });
    };
    if (req.method !== "GET" && req.method !== "HEAD") return answer(405, Code.Unimplemented, "GET /metrics only\n");
    const socket = req.stream?.session?.socket as TLSSocket | undefined;
    const peer: PeerAuthentication = socket ? options.authenticate(socket) : { ok: false, reason: "no client certificate was presented" };
    if (!peer.ok) return answer(401, Code.Unauthenticated, `${peer.reason}\n`);
    peerName = formatIdentity(peer.identity);
    const decision = authorize(options.component, peer.identity, GET_METRICS, options.rules);
    if (!decision.allowed) return answer(403, Code.PermissionDenied, `${decision.reason}\n`);
    const { contentType, text } = await options.metrics.exposition();
    answer(200, undefined, req.method === "HEAD" ? "" : text, contentType);
  };
}
