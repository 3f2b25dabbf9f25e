// Loaded into each component by the benchmark (NODE_OPTIONS=--expose-gc --import …)
// and idle until asked: SIGUSR2 runs a full garbage collection and writes the live
// heap to <HELLO_HEAP_DIR>/<pid>.json, so the soak judges leaks by what survives a
// collection, not by resident memory, whose peaks follow V8's heap-growth policy.
import { writeFileSync } from "node:fs";
import path from "node:path";

const dir = process.env.HELLO_HEAP_DIR;
if (dir && typeof globalThis.gc === "function") {
  process.on("SIGUSR2", () => {
    globalThis.gc();
    globalThis.gc();
    const { heapUsed, external, arrayBuffers, rss } = process.memoryUsage();
    writeFileSync(path.join(dir, `${process.pid}.json`), JSON.stringify({ at: Date.now(), heapUsed, external, arrayBuffers, rss }));
  });
}
