// The front door's requests, counted, timed and logged by a fixed route name. The
// requested path, query string, cookies, form body, headers and redirect URLs never
// reach a label or a log line: they carry authorization codes, state, nonces, login
// hints (email addresses) and tokens. A path that is not one of the front door's
// routes is counted as "other", so the number of series stays bounded whatever
// the Internet sends.
//
// Each request is also a SERVER span (a new trace: an app's traceparent is not
// trusted), so the mesh calls it makes share its trace id with its log line.

import type http from "node:http";
import { ConnectError } from "@connectrpc/connect";
import { SpanKind, SpanStatusCode, context, isSpanContextValid, trace } from "@opentelemetry/api";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { type Logger, processLogger } from "../log/logger.js";
import { isPeerViolation, logHttpRequest } from "../log/request-log.js";
import { type MeshMetrics, processMeshMetrics } from "./registry.js";

const TRACER_NAME = "hello-mesh";

/** The route label for a request whose path is not a known route. */
export const OTHER_ROUTE = "other";
const METHODS = new Set(["GET", "POST", "HEAD"]);
/** What nginx calls "client closed request": the answer was never finished. */
const CLIENT_CLOSED = 499;

/** What a handler learned about one request, for its line and its series. */
export interface HttpObservation {
  /** Names the route (one of the server's fixed names); unknown paths stay "other". */
  route(name: string): void;
  /** Records the exception that decided the answer (its kind only, unless it is a 5xx). */
  failed(error: unknown): void;
  /** Runs the handler inside the request's span, so its mesh calls join the trace. */
  run<T>(handler: () => T): T;
}

export interface HttpObserver {
  /** Call first thing for each request; the line is written when the response closes. */
  begin(req: http.IncomingMessage, res: http.ServerResponse): HttpObservation;
}

/**
 * An error's kind, safe as a log field: an OAuth error code ("invalid_grant"), a gRPC
 * code name ("unavailable"), or the error's class name ("ProtocolViolation").
 */
function outcomeOf(error: unknown): string {
  if (error instanceof ConnectError) return codeToString(error.code);
  const oauth = (error as { error?: unknown } | null)?.error;
  if (typeof oauth === "string" && /^[a-z_]{1,64}$/.test(oauth)) return oauth;
  const name = error instanceof Error ? error.name : typeof error;
  return /^[A-Za-z]{1,64}$/.test(name) ? name : "Error";
}

export function httpObserver(
  component: string,
  options: { metrics?: MeshMetrics; log?: () => Logger } = {},
): HttpObserver {
  const metrics = options.metrics ?? processMeshMetrics();
  const log = options.log ?? processLogger;
  return {
    begin(req, res) {
      const started = performance.now();
      const method = METHODS.has(req.method ?? "") ? req.method! : "other";
      let route = OTHER_ROUTE;
      let error: unknown;
      let outcome: string | undefined;
      const span = trace.getTracer(TRACER_NAME).startSpan(`${method} ${route}`, {
        kind: SpanKind.SERVER,
        root: true,
        attributes: { "http.request.method": method },
      });
      const spanContext = span.spanContext();
      const traceId = isSpanContextValid(spanContext) ? spanContext.traceId : undefined;
      res.once("close", () => {
        const status = res.writableFinished ? res.statusCode : CLIENT_CLOSED;
        const seconds = (performance.now() - started) / 1000;
        span.updateName(`${method} ${route}`);
        span.setAttributes({ "http.route": route, "http.response.status_code": status });
        if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
        const labels = { component, route, method, status: String(status) };
        metrics.http.observe(labels, seconds);
        logHttpRequest(log(), {
          route,
          method,
          status,
          durationMs: seconds * 1000,
          ...(traceId ? { traceId } : {}),
          ...(outcome ? { outcome } : {}),
          // Only a server-side failure, or a peer component caught misbehaving, needs the
          // exception itself, and only its safe form.
          ...((status >= 500 || isPeerViolation(error)) && error !== undefined ? { error } : {}),
        });
      });
      return {
        route(name) {
          route = name;
        },
        failed(e) {
          error = e;
          outcome = outcomeOf(e);
        },
        run(handler) {
          return context.with(trace.setSpan(context.active(), span), handler);
        },
      };
    },
  };
}
