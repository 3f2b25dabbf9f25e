// W3C trace context across every mesh call (DESIGN.md §2). Spans carry the procedure
// name and the gRPC code only: never a header value, message field, token or error
// message, which may hold user data.

import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  context,
  propagation,
  trace,
} from "@opentelemetry/api";

const TRACER_NAME = "hello-mesh";

const headerSetter: TextMapSetter<Headers> = {
  set: (carrier, key, value) => carrier.set(key, value),
};
const headerGetter: TextMapGetter<Headers> = {
  keys: (carrier) => [...carrier.keys()],
  get: (carrier, key) => carrier.get(key) ?? undefined,
};

function procedureName(service: { typeName: string }, method: { name: string }): string {
  return `${service.typeName}/${method.name}`;
}

function spanAttributes(service: { typeName: string }, method: { name: string }) {
  return { "rpc.system": "connect_rpc", "rpc.service": service.typeName, "rpc.method": method.name };
}

/** Ends a span with the call's outcome: only the code, never the message. */
function finish(span: Span, error: unknown): void {
  if (error === undefined) {
    span.setAttribute("rpc.grpc.status_code", 0); // OK
  } else {
    const code = ConnectError.from(error).code;
    span.setAttribute("rpc.grpc.status_code", code);
    span.setStatus({ code: SpanStatusCode.ERROR, message: Code[code] });
  }
  span.end();
}

/** Client side: a CLIENT span per call, its context injected as `traceparent`. */
export function clientTracing(): Interceptor {
  const tracer = trace.getTracer(TRACER_NAME);
  return (next) => async (req) => {
    const span = tracer.startSpan(procedureName(req.service, req.method), {
      kind: SpanKind.CLIENT,
      attributes: spanAttributes(req.service, req.method),
    });
    const ctx = trace.setSpan(context.active(), span);
    propagation.inject(ctx, req.header, headerSetter);
    try {
      const res = await context.with(ctx, () => next(req));
      finish(span, undefined);
      return res;
    } catch (error) {
      finish(span, error);
      throw error;
    }
  };
}

/** Server side: a SERVER span per call, child of the caller's `traceparent`. */
export function serverTracing(): Interceptor {
  const tracer = trace.getTracer(TRACER_NAME);
  return (next) => async (req) => {
    const parent = propagation.extract(context.active(), req.header, headerGetter);
    const span = tracer.startSpan(
      procedureName(req.service, req.method),
      { kind: SpanKind.SERVER, attributes: spanAttributes(req.service, req.method) },
      parent,
    );
    try {
      const res = await context.with(trace.setSpan(parent, span), () => next(req));
      finish(span, undefined);
      return res;
    } catch (error) {
      finish(span, error);
      throw error;
    }
  };
}
