// Process-wide OpenTelemetry set-up: W3C trace context propagation and an async
// context manager, so the mesh interceptors (mesh/telemetry.ts) link every call into
// one trace. Spans go nowhere unless an exporter is asked for: HELLO_TRACE=console
// prints them (development); shipping them to a collector is a deployment choice.

import { resourceFromAttributes } from "@opentelemetry/resources";
import { type ExportResult, ExportResultCode, hrTimeToMilliseconds } from "@opentelemetry/core";
import { type ReadableSpan, SimpleSpanProcessor, type SpanExporter, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions";

/**
 * Each span as one JSON line on stdout, among the component's log lines (which are JSON
 * lines too): OpenTelemetry's ConsoleSpanExporter prints multi-line objects instead.
 */
export class JsonLineSpanExporter implements SpanExporter {
  constructor(private readonly write: (line: string) => void = (line) => process.stdout.write(line)) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    for (const span of spans) {
      const context = span.spanContext();
      const line = {
        span: {
          name: span.name,
          kind: span.kind,
          trace_id: context.traceId,
          span_id: context.spanId,
          ...(span.parentSpanContext ? { parent_span_id: span.parentSpanContext.spanId } : {}),
          start: new Date(hrTimeToMilliseconds(span.startTime)).toISOString(),
          duration_ms: hrTimeToMilliseconds(span.duration),
          status: span.status,
          attributes: span.attributes,
          links: span.links.map((link) => ({ trace_id: link.context.traceId, span_id: link.context.spanId })),
        },
      };
      this.write(`${JSON.stringify(line)}\n`);
    }
    done({ code: ExportResultCode.SUCCESS });
  }

  async shutdown(): Promise<void> {}
}

export function initTracing(serviceName: string, exporter?: SpanExporter): NodeTracerProvider {
  const chosen = exporter ?? (process.env.HELLO_TRACE === "console" ? new JsonLineSpanExporter() : undefined);
  const spanProcessors: SpanProcessor[] = chosen ? [new SimpleSpanProcessor(chosen)] : [];
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName }),
    spanProcessors,
  });
  provider.register();
  return provider;
}
