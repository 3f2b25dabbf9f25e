// Process-wide OpenTelemetry set-up: W3C trace context propagation and an async
// context manager, so the mesh interceptors (mesh/telemetry.ts) link every call into
// one trace. Spans go nowhere unless an exporter is asked for: HELLO_TRACE=console
// prints them (development); shipping them to a collector is a deployment choice.

import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  ConsoleSpanExporter,
  SimpleSpanProcessor,
  type SpanExporter,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions";

export function initTracing(serviceName: string, exporter?: SpanExporter): NodeTracerProvider {
  const chosen = exporter ?? (process.env.HELLO_TRACE === "console" ? new ConsoleSpanExporter() : undefined);
  const spanProcessors: SpanProcessor[] = chosen ? [new SimpleSpanProcessor(chosen)] : [];
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName }),
    spanProcessors,
  });
  provider.register();
  return provider;
}
