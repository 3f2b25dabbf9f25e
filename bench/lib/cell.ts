// One measurement: `concurrency` virtual users, each doing one login after another
// (a closed loop), for a warm-up that is not counted and then a measured window.
// Throughput counts the logins completed inside the window; latencies are those of
// logins that started and finished inside it; CPU is each watched process's CPU time
// across the window; memory is sampled every 250 ms.

import { MemorySampler, type Watched } from "./proc.js";

export interface CellResult {
  readonly variant: string;
  readonly users: "new" | "returning" | "fresh browser";
  readonly concurrency: number;
  readonly seconds: number;
  readonly logins: number;
  readonly loginsPerSecond: number;
  readonly latencyMs: { p50: number; p95: number; p99: number; mean: number; max: number };
  /** Failed logins, warm-up included. */
  readonly errors: number;
  /** A few distinct error messages (ours: step and status, never user data). */
  readonly errorSamples: string[];
  /** CPU seconds used by each watched process during the window. */
  readonly cpuSeconds: Record<string, number>;
  /** Peak resident memory of each watched process during the cell, MB. */
  readonly peakRssMb: Record<string, number>;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

export async function runCell(options: {
  variant: string;
  users: CellResult["users"];
  concurrency: number;
  warmupSeconds: number;
  measureSeconds: number;
  watched: readonly Watched[];
  /** One complete login by virtual user `worker`. */
  login: (worker: number) => Promise<void>;
}): Promise<CellResult> {
  const sampler = new MemorySampler(options.watched, 250);
  const start = performance.now();
  const windowStart = start + options.warmupSeconds * 1000;
  const windowEnd = windowStart + options.measureSeconds * 1000;
  const latencies: number[] = [];
  let completed = 0;
  let errors = 0;
  const errorSamples = new Set<string>();
  let cpuBefore: Record<string, number> | undefined;
  const cpuSnapshot = () => Object.fromEntries(options.watched.map((w) => [w.name, w.cpu()]));
  const atWindowStart = setTimeout(() => (cpuBefore = cpuSnapshot()), options.warmupSeconds * 1000);
  let cpuAfter: Record<string, number> | undefined;
  const atWindowEnd = setTimeout(() => (cpuAfter = cpuSnapshot()), options.warmupSeconds * 1000 + options.measureSeconds * 1000);

  const worker = async (id: number) => {
    while (performance.now() < windowEnd) {
      const t0 = performance.now();
      try {
        await options.login(id);
        const t1 = performance.now();
        if (t1 >= windowStart && t1 <= windowEnd) {
          completed++;
          if (t0 >= windowStart) latencies.push(t1 - t0);
        }
      } catch (error) {
        errors++; // warm-up included: an error is an error
        if (errorSamples.size < 5) errorSamples.add(error instanceof Error ? error.message.slice(0, 200) : String(error));
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, (_, i) => worker(i)));
  clearTimeout(atWindowStart);
  clearTimeout(atWindowEnd);
  cpuAfter ??= cpuSnapshot();
  cpuBefore ??= cpuAfter;
  sampler.stop();

  latencies.sort((a, b) => a - b);
  const seconds = options.measureSeconds;
  return {
    variant: options.variant,
    users: options.users,
    concurrency: options.concurrency,
    seconds,
    logins: completed,
    loginsPerSecond: round(completed / seconds, 1),
    latencyMs: {
      p50: round(percentile(latencies, 50)),
      p95: round(percentile(latencies, 95)),
      p99: round(percentile(latencies, 99)),
      mean: round(latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length)),
      max: round(latencies.at(-1) ?? Number.NaN),
    },
    errors,
    errorSamples: [...errorSamples],
    cpuSeconds: Object.fromEntries(options.watched.map((w) => [w.name, round(cpuAfter![w.name]! - cpuBefore![w.name]!)])),
    peakRssMb: Object.fromEntries([...sampler.peaks].map(([name, bytes]) => [name, round(bytes / 2 ** 20, 1)])),
  };
}
