// The benchmark's printed report: throughput and latency per cell, CPU and memory per
// process, the crypto floor, the ratios, and each target with PASS/FAIL and the figure.

import type { CellResult } from "./cell.js";
import { type Floor, OPERATIONS } from "./crypto-floor.js";

export interface SoakResult {
  seconds: number;
  concurrency: number;
  newUserShare: number;
  cell: CellResult;
  /**
   * Per process: resident memory (every second's, lowest, highest) and, for the four
   * components, the live heap after a full collection before and after the run.
   */
  memory: Record<string, {
    liveBeforeMb?: number;
    liveAfterMb?: number;
    /** Orchestration: what its store held by design (hello_state_bytes), before and after. */
    heldBeforeMb?: number;
    heldAfterMb?: number;
    flat?: boolean;
    rssMinMb: number;
    rssMaxMb: number;
    seriesMb: Array<[number, number]>;
  }>;
}

export interface Report {
  startedAt: string;
  durationSeconds: number;
  machine: { cpu: string; cores: number; memoryGb: number; node: string; postgres: string; kernel: string; revision: string };
  config: {
    measureSeconds: number;
    warmupSeconds: number;
    concurrencies: number[];
    soakSeconds: number;
    soakConcurrency: number;
    pool: number;
    /** What the mesh's components ran from. */
    componentsFrom?: "artifacts" | "source";
    /** NODE_OPTIONS given to the four components, if any. */
    componentNodeOptions?: string;
  };
  loadAverages: Array<{ at: string; load: [number, number, number] }>;
  cells: CellResult[];
  /** The kernel's peak resident memory of each process over the run (VmHWM), MB. */
  peakRssMb: Record<string, number>;
  floor?: Floor;
  soak?: SoakResult;
  targets?: Target[];
  ratios?: Record<string, number>;
}

export interface Target {
  name: string;
  verdict: "PASS" | "FAIL" | "n/a";
  measured: string;
}

/** The processes that are the service in each variant (not PostgreSQL, the upstream OP or the driver). */
export const SERVICE: Record<string, string[]> = {
  mesh: ["orchestration", "token", "encryption", "storage"],
  "mesh soak": ["orchestration", "token", "encryption", "storage"],
  "in-process": ["in-process"],
  "oidc-provider": ["oidc-provider"],
};
const COMPONENTS = ["orchestration", "token", "encryption", "storage"];

export function serviceCpuMsPerLogin(cell: CellResult): number {
  const names = SERVICE[cell.variant] ?? [];
  const cpu = names.reduce((sum, n) => sum + (cell.cpuSeconds[n] ?? 0), 0);
  return cell.logins > 0 ? (cpu * 1000) / cell.logins : Number.NaN;
}

function table(header: string[], rows: Array<Array<string | number>>, rightFrom = 1): string {
  const text = rows.map((r) => r.map((c) => (typeof c === "number" ? (Number.isNaN(c) ? "-" : String(c)) : c)));
  const widths = header.map((h, i) => Math.max(h.length, ...text.map((r) => (r[i] ?? "").length)));
  const line = (cols: string[]) =>
    cols.map((c, i) => (i >= rightFrom ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...text.map(line)].join("\n");
}

const r2 = (x: number) => Math.round(x * 100) / 100;

function find(report: Report, variant: string, users: string, concurrency: number): CellResult | undefined {
  return report.cells.find((c) => c.variant === variant && c.users === users && c.concurrency === concurrency);
}

export function evaluate(report: Report): { targets: Target[]; ratios: Record<string, number> } {
  const targets: Target[] = [];
  const add = (name: string, ok: boolean | undefined, measured: string) =>
    targets.push({ name, verdict: ok === undefined ? "n/a" : ok ? "PASS" : "FAIL", measured });
  const mesh32 = find(report, "mesh", "returning", 32);
  const oidc32 = find(report, "oidc-provider", "fresh browser", 32);
  const inproc32 = find(report, "in-process", "returning", 32);
  add("c=32 returning through the mesh >= 200 logins/s", mesh32 && mesh32.loginsPerSecond >= 200, mesh32 ? `${mesh32.loginsPerSecond}/s` : "not run");
  add(
    "c=32 returning through the mesh >= node-oidc-provider (c=32)",
    mesh32 && oidc32 && mesh32.loginsPerSecond >= oidc32.loginsPerSecond,
    mesh32 && oidc32 ? `${mesh32.loginsPerSecond}/s vs ${oidc32.loginsPerSecond}/s` : "not run",
  );
  for (const users of ["returning", "new"] as const) {
    const c1 = find(report, "mesh", users, 1);
    add(`c=1 ${users} p50 <= 15 ms`, c1 && c1.latencyMs.p50 <= 15, c1 ? `${c1.latencyMs.p50} ms` : "not run");
    add(`c=1 ${users} p99 <= 30 ms`, c1 && c1.latencyMs.p99 <= 30, c1 ? `${c1.latencyMs.p99} ms` : "not run");
  }
  add(
    "mesh >= 0.5x in-process (c=32 returning)",
    mesh32 && inproc32 && mesh32.loginsPerSecond >= 0.5 * inproc32.loginsPerSecond,
    mesh32 && inproc32 ? `${r2(mesh32.loginsPerSecond / inproc32.loginsPerSecond)}x` : "not run",
  );
  const componentPeaks = COMPONENTS.map((c) =>
    Math.max(report.peakRssMb[c] ?? 0, ...report.cells.map((cell) => cell.peakRssMb[c] ?? 0)),
  );
  const ranMesh = report.cells.some((c) => c.variant.startsWith("mesh"));
  add("no component above 200 MB resident", ranMesh ? componentPeaks.every((m) => m <= 200) : undefined,
    ranMesh ? `peak ${Math.max(...componentPeaks)} MB (${COMPONENTS.map((c, i) => `${c} ${componentPeaks[i]}`).join(", ")})` : "not run");
  const errorCells = report.cells.filter((c) => c.errors > 0);
  add("no failed login in any cell", report.cells.length > 0 ? errorCells.length === 0 : undefined,
    `${report.cells.reduce((s, c) => s + c.errors, 0)} errors${errorCells.length ? ` (${errorCells.map((c) => `${c.variant} ${c.users} c=${c.concurrency}`).join("; ")})` : ""}`);
  if (report.soak) {
    const s = report.soak;
    add(`soak (${s.seconds} s, c=${s.concurrency}): zero errors`, s.cell.errors === 0, `${s.cell.errors} errors in ${s.cell.logins} logins`);
    const judged = COMPONENTS.filter((c) => s.memory[c]?.flat !== undefined);
    const held = (c: string, when: "heldBeforeMb" | "heldAfterMb") => (s.memory[c]?.[when] ? ` (${s.memory[c]![when]} held)` : "");
    add(`soak: flat memory (live heap after GC net of state held by design, after <= before +10% +5 MB)`, judged.length === COMPONENTS.length ? judged.every((c) => s.memory[c]!.flat) : undefined,
      COMPONENTS.map((c) => `${c} ${s.memory[c]?.liveBeforeMb ?? "?"}${held(c, "heldBeforeMb")}->${s.memory[c]?.liveAfterMb ?? "?"}${held(c, "heldAfterMb")} MB`).join(", "));
  } else {
    add("soak: zero errors, flat memory", undefined, "not run");
  }

  const ratios: Record<string, number> = {};
  for (const c of report.config.concurrencies) {
    for (const users of ["returning", "new"] as const) {
      const mesh = find(report, "mesh", users, c);
      const inproc = find(report, "in-process", users, c);
      const oidc = find(report, "oidc-provider", "fresh browser", c);
      if (mesh && inproc) ratios[`mesh/in-process ${users} c=${c}`] = r2(mesh.loginsPerSecond / inproc.loginsPerSecond);
      if (mesh && oidc) ratios[`mesh/oidc-provider ${users} c=${c}`] = r2(mesh.loginsPerSecond / oidc.loginsPerSecond);
    }
  }
  if (report.floor) {
    for (const users of ["returning", "new"] as const) {
      const m32 = find(report, "mesh", users, 32);
      const m1 = find(report, "mesh", users, 1);
      if (m32) ratios[`floor/mesh CPU per login ${users} c=32`] = r2(report.floor.msPerLogin[users] / serviceCpuMsPerLogin(m32));
      if (m1) ratios[`floor/mesh p50 latency ${users} c=1`] = r2(report.floor.msPerLogin[users] / m1.latencyMs.p50);
    }
  }
  return { targets, ratios };
}

export function printReport(report: Report): string {
  const { targets, ratios } = evaluate(report);
  report.targets = targets;
  report.ratios = ratios;
  const m = report.machine;
  const out: string[] = [];
  out.push("");
  out.push(`hello-mesh benchmark, ${report.startedAt} (${report.durationSeconds} s), revision ${m.revision}`);
  out.push(`machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGb} GB; Node ${m.node}; PostgreSQL ${m.postgres}; Linux ${m.kernel}`);
  out.push(`load average (1/5/15 min): ${report.loadAverages.map((l) => `${l.at} ${l.load.join("/")}`).join("; ")}`);
  out.push(`each cell: ${report.config.warmupSeconds} s warm-up, ${report.config.measureSeconds} s measured; returning users: a pool of ${report.config.pool}` +
    (report.config.componentsFrom ? `; the mesh's components ran from ${report.config.componentsFrom === "artifacts" ? "their built artifacts" : "source (tsx)"}` : "") +
    (report.config.componentNodeOptions ? ` with NODE_OPTIONS=${report.config.componentNodeOptions}` : ""));
  out.push("");

  if (report.cells.length > 0) {
    out.push("Complete logins (authorize -> upstream -> callback [-> consent] -> code -> token -> ID Token verified)");
    out.push(table(
      ["variant", "users", "c", "logins/s", "p50 ms", "p95 ms", "p99 ms", "errors", "CPU ms/login", "all CPU ms/login", "machine used"],
      report.cells.map((c) => {
        const all = Object.values(c.cpuSeconds).reduce((a, b) => a + b, 0);
        return [c.variant, c.users, c.concurrency, c.loginsPerSecond, c.latencyMs.p50, c.latencyMs.p95, c.latencyMs.p99, c.errors,
          r2(serviceCpuMsPerLogin(c)), c.logins ? r2((all * 1000) / c.logins) : Number.NaN,
          `${Math.round((100 * all) / (report.machine.cores * c.seconds))}%`];
      }),
      2,
    ));
    out.push("CPU ms/login: the service's processes (the four components, the in-process server, or oidc-provider); all: with PostgreSQL, the upstream OP and the driver.");
    out.push("machine used: all the run's processes' CPU over the cores' time. At high concurrency, well under 100% for the mesh or oidc-provider means other load on");
    out.push("the machine took the rest; the in-process server is one thread, so it tops out near one core (about 50-60% with the driver and the upstream OP).");
    out.push("");

    const names = [...new Set(report.cells.flatMap((c) => Object.keys(c.cpuSeconds)))];
    out.push(`CPU seconds per process during each ${report.config.measureSeconds} s window`);
    out.push(table(["variant", "users", "c", ...names],
      report.cells.map((c) => [c.variant, c.users, c.concurrency, ...names.map((n) => c.cpuSeconds[n] ?? Number.NaN)]), 2));
    out.push("");
    out.push("Peak resident memory per process, MB (sampled every 250 ms in each cell; VmHWM over the run in the last row)");
    out.push(table(["variant", "users", "c", ...names],
      [
        ...report.cells.map((c) => [c.variant, c.users, c.concurrency, ...names.map((n) => c.peakRssMb[n] ?? Number.NaN)]),
        ["VmHWM", "", "", ...names.map((n) => report.peakRssMb[n] ?? Number.NaN)],
      ], 2));
    out.push("postgres: every backend's private memory plus the shared buffers once.");
    out.push("");
  }

  if (report.floor) {
    const f = report.floor;
    out.push("Crypto floor: the four components' cryptography per login, each primitive timed alone (CPU time, node:crypto, one thread)");
    out.push(table(["primitive", "µs/op", "returning: ops", "ms", "new: ops", "ms"],
      Object.keys(f.microsecondsPerOp).map((p) => {
        const key = p as keyof typeof f.microsecondsPerOp;
        return [p, f.microsecondsPerOp[key], OPERATIONS.returning[key], f.breakdownMs.returning[key], OPERATIONS.new[key], f.breakdownMs.new[key]];
      }).concat([["total", "", "", f.msPerLogin.returning, "", f.msPerLogin.new]])));
    out.push(`outside the mesh, per login: ${Object.entries(f.outsideMs).map(([w, ms]) => `${w} ${ms} ms`).join("; ")}`);
    out.push("");
  }

  if (Object.keys(ratios).length > 0) {
    out.push("Ratios (throughput; floor/mesh: the floor over the four components' CPU per login, and over p50 latency at c=1)");
    out.push(table(["ratio", "value"], Object.entries(ratios)));
    out.push("");
  }

  if (report.soak) {
    const s = report.soak;
    out.push(`Soak: ${s.seconds} s at c=${s.concurrency} through the mesh, ${s.newUserShare * 100}% new users: ${s.cell.logins} logins, ${s.cell.loginsPerSecond}/s, ${s.cell.errors} errors, p99 ${s.cell.latencyMs.p99} ms`);
    out.push(table(["process", "live heap before MB", "live heap after MB", "held by design MB", "flat", "RSS lowest MB", "RSS highest MB"],
      Object.entries(s.memory).map(([name, mem]) => [name, mem.liveBeforeMb ?? "-", mem.liveAfterMb ?? "-",
        mem.heldAfterMb === undefined ? "-" : `${mem.heldBeforeMb} -> ${mem.heldAfterMb}`, mem.flat === undefined ? "-" : mem.flat ? "yes" : "NO", mem.rssMinMb, mem.rssMaxMb]), 1));
    out.push("live heap: V8 heap and external memory after a full collection, just before and just after the soak (what a leak grows).");
    out.push("held by design: Orchestration's store of codes and access tokens, each kept until it expires (hello_state_bytes); flat judges the live heap net of it.");
    out.push("");
  }

  out.push("Targets");
  out.push(table(["target", "verdict", "measured"], targets.map((t) => [t.name, t.verdict, t.measured]), 99));
  const errors = report.cells.flatMap((c) => c.errorSamples.map((e) => `${c.variant} ${c.users} c=${c.concurrency}: ${e}`));
  if (errors.length > 0) {
    out.push("");
    out.push("Errors seen (first of each cell):");
    for (const e of errors.slice(0, 20)) out.push(`  ${e}`);
  }
  out.push("");
  return out.join("\n");
}
