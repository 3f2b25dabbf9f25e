// HELLO_TRACE=console: each span one JSON line, as the log lines beside it are (issue 18).

import { expect } from "chai";
import { trace } from "@opentelemetry/api";
import { JsonLineSpanExporter, initTracing } from "./tracing.js";

describe("the console span exporter writes JSON lines", function () {
  it("one line per span, parsable, with trace, parent and link ids; nothing multi-line", async function () {
    const lines: string[] = [];
    const provider = initTracing("hello-test", new JsonLineSpanExporter((line) => lines.push(line)));
    try {
      const tracer = trace.getTracer("test");
      const linked = tracer.startSpan("elsewhere");
      linked.end();
      tracer.startActiveSpan("outer", (outer) => {
        const inner = tracer.startSpan("inner", { links: [{ context: linked.spanContext() }] });
        inner.setAttribute("rpc.method", "hello.token.v1.TokenService/CreateSession");
        inner.end();
        outer.end();
      });
      await provider.forceFlush();
    } finally {
      await provider.shutdown();
      trace.disable();
    }
    expect(lines).to.have.length(3);
    for (const line of lines) expect(line.indexOf("\n")).to.equal(line.length - 1);
    const spans = lines.map((line) => (JSON.parse(line) as { span: Record<string, unknown> }).span);
    const [elsewhere, inner, outer] = spans as Array<Record<string, unknown>>;
    expect(inner).to.include({ name: "inner", trace_id: outer!.trace_id, parent_span_id: outer!.span_id });
    expect(inner!.attributes).to.deep.equal({ "rpc.method": "hello.token.v1.TokenService/CreateSession" });
    expect(inner!.links).to.deep.equal([{ trace_id: elsewhere!.trace_id, span_id: elsewhere!.span_id }]);
    expect(outer).not.to.have.property("parent_span_id");
    expect(outer!.duration_ms).to.be.a("number");
  });
});
