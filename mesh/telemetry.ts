// W3C trace context across every mesh call (docs/design.md §2), except where a trace must
// stop: Encryption starts a new trace for each call to Storage and links it on its own
// side (`clientTracing({ newTrace: true })`), so no trace id shared by one login's reads
// reaches Storage. Spans carry the procedure name and the gRPC code only: never a header
// value, message field, token or error message, which may hold user data.

import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  type Context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  context,
  isSpanContextValid,
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

export interface ClientTracingOptions {
  /**
   * Start a new trace for every call instead of continuing the caller's: the CLIENT span
   * is a root (a fresh trace id, no parent) with a span link to the span that was active
   * when the call was made, and the server is sent only the new root's `traceparent` —
   * no `tracestate` or baggage of the caller's context. The link stays on this side, so
   * the server cannot tell which of its calls belong to one incoming request. Default:
   * false (the server's span is a child of this call's span, in the caller's trace).
   */
  readonly newTrace?: boolean;
}

/** Client side: a CLIENT span per call, its context injected as `traceparent`. */
export function clientTracing(options: ClientTracingOptions = {}): Interceptor {
  const tracer = trace.getTracer(TRACER_NAME);
  return (next) => async (req) => {
    const active = context.active();
    const name = procedureName(req.service, req.method);
    const attributes = spanAttributes(req.service, req.method);
    if (!options.newTrace) {
      const span = tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes }, active);
      const ctx = trace.setSpan(active, span);
      propagation.inject(ctx, req.header, headerSetter);
      return traced(span, ctx, () => next(req));
    }
    const incoming = trace.getSpanContext(active);
    const span = tracer.startSpan(name, {
      kind: SpanKind.CLIENT,
      attributes,
      root: true,
      ...(incoming && isSpanContextValid(incoming) ? { links: [{ context: incoming }] } : {}),
    });
    // Whatever trace context the request already carries goes, and only the new span's
    // is put in: injected from an empty context, so no baggage or tracestate comes along.
    for (const field of propagation.fields()) req.header.delete(field);
    propagation.inject(trace.setSpan(ROOT_CONTEXT, span), req.header, headerSetter);
    // The call itself runs under the new span, so its log line carries the new trace id.
    return traced(span, trace.setSpan(active, span), () => next(req));
  };
}

/** Runs `call` in `ctx` and ends `span` with its outcome. */
async function traced<T>(span: Span, ctx: Context, call: () => Promise<T>): Promise<T> {
  try {
    const res = await context.with(ctx, call);
    finish(span, undefined);
    return res;
  } catch (error) {
    finish(span, error);
    throw error;
  }
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
    return traced(span, trace.setSpan(parent, span), () => next(req));
  };
}
