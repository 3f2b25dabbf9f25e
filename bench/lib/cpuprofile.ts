// Summarises a V8 .cpuprofile: self time by place (a package, a Node subsystem, one of
// our files, or V8's own: GC, "(program)") and the functions with the most self time.

import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }>;
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Where a function's code lives: a package, a Node subsystem, one of ours, or V8's own. */
function place(url: string, name: string): string {
  if (!url) return name.startsWith("(") ? name : "(native)";
  if (url.startsWith("node:")) return `node:${url.slice(5).replace(/^internal\//, "").split("/")[0]}`;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const file = url.replace(/^file:\/\//, "");
  return path.relative(ROOT, file);
}

export function summarise(file: string, logins: number): string {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  // The hook's own calls (starting and stopping the profiler) are not the component's work.
  const hook = new Set<number>();
  const mark = (id: number, inHook: boolean) => {
    const node = byId.get(id)!;
    const here = inHook || node.callFrame.url.endsWith("profile-hook.mjs");
    if (here) hook.add(id);
    for (const child of node.children ?? []) mark(child, here);
  };
  mark(profile.nodes[0]!.id, false);
  const self = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    if (hook.has(profile.samples[i]!)) continue;
    self.set(profile.samples[i]!, (self.get(profile.samples[i]!) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const idle = [...self].filter(([id]) => byId.get(id)?.callFrame.functionName === "(idle)").reduce((a, [, t]) => a + t, 0);
  const busy = total - idle;
  const places = new Map<string, number>();
  const functions = new Map<string, number>();
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === "(idle)") continue;
    const where = place(url, functionName);
    places.set(where, (places.get(where) ?? 0) + us);
    const fn = `${functionName || "(anonymous)"} ${where}${url ? `:${lineNumber + 1}` : ""}`;
    functions.set(fn, (functions.get(fn) ?? 0) + us);
  }
  const pct = (us: number) => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
  const top = (m: Map<string, number>, n: number) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, us]) => `    ${pct(us)}  ${k}`);
  return [
    `  busy ${(busy / 1000).toFixed(0)} ms of ${(total / 1000).toFixed(0)} ms (${(busy / 1000 / Math.max(1, logins)).toFixed(2)} ms per login)`,
    "  self time by place:",
    ...top(places, 14),
    "  functions with the most self time:",
    ...top(functions, 18),
  ].join("\n");
}

