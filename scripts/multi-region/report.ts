// Figures of scripts/multi-region.ts: per-scenario latency statistics, the text table,
// the Markdown table and the JSON file.

export interface LoginRecord {
  readonly ok: boolean;
  readonly kind: "new" | "returning";
  /** ms since the run's start (performance.now) when the login began. */
  readonly startedAt: number;
  readonly totalMs: number;
  /** Each step's time (authorize, upstream, consent, token), for the steps it got to. */
  readonly steps: Readonly<Record<string, number>>;
  readonly consentShown: boolean;
  /** What failed: the step and the front door's status, or what was thrown. */
  readonly failure?: string;
}

export interface Stats {
  readonly count: number;
  readonly median: number;
  readonly p90: number;
  readonly max: number;
}

export interface ScenarioResult {
  readonly name: string;
  readonly rttMs: number;
  readonly concurrency: number;
  readonly logins: number;
  readonly failed: number;
  readonly all: Stats | undefined;
  readonly newUsers: Stats | undefined;
  readonly returning: Stats | undefined;
  /** Median of each step over the successful logins. */
  readonly stepMedians: Readonly<Record<string, number>>;
  /** The database cluster when the scenario began: leader and synchronous standby. */
  readonly database: { readonly leader: string | undefined; readonly syncStandbys: readonly string[] };
  readonly notes: readonly string[];
  /** Every failed login's failure, as counted. */
  readonly failures: readonly string[];
}

export function stats(values: readonly number[]): Stats | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  const median = sorted.length % 2 === 1 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
  return { count: sorted.length, median: Math.round(median), p90: Math.round(at(0.9)), max: Math.round(sorted[sorted.length - 1]!) };
}

export function summarize(
  name: string,
  rttMs: number,
  concurrency: number,
  records: readonly LoginRecord[],
  database: ScenarioResult["database"],
  notes: readonly string[] = [],
): ScenarioResult {
  const ok = records.filter((r) => r.ok);
  const stepNames = [...new Set(ok.flatMap((r) => Object.keys(r.steps)))];
  const stepMedians = Object.fromEntries(
    stepNames.map((step) => [step, stats(ok.flatMap((r) => (r.steps[step] === undefined ? [] : [r.steps[step]!])))?.median ?? 0]),
  );
  return {
    name,
    rttMs,
    concurrency,
    logins: records.length,
    failed: records.length - ok.length,
    all: stats(ok.map((r) => r.totalMs)),
    newUsers: stats(ok.filter((r) => r.kind === "new").map((r) => r.totalMs)),
    returning: stats(ok.filter((r) => r.kind === "returning").map((r) => r.totalMs)),
    stepMedians,
    database,
    notes,
    failures: records.flatMap((r) => (r.ok ? [] : [r.failure ?? "?"])),
  };
}

const fmt = (s: Stats | undefined, key: keyof Stats) => (s ? String(s[key]) : "–");
const steps = (r: ScenarioResult) =>
  ["authorize", "upstream", "consent", "token"].map((s) => (r.stepMedians[s] === undefined ? "–" : String(Math.round(r.stepMedians[s]!)))).join(" / ");

const COLUMNS = ["scenario", "RTT ms", "conc.", "logins", "failed", "median", "p90", "max", "new median", "returning median", "steps (median ms): authorize / upstream / consent / token"];

function rows(results: readonly ScenarioResult[]): string[][] {
  return results.map((r) => [
    r.name,
    String(r.rttMs),
    String(r.concurrency),
    String(r.logins),
    String(r.failed),
    fmt(r.all, "median"),
    fmt(r.all, "p90"),
    fmt(r.all, "max"),
    fmt(r.newUsers, "median"),
    fmt(r.returning, "median"),
    steps(r),
  ]);
}

export function textTable(results: readonly ScenarioResult[]): string {
  const table = [COLUMNS, ...rows(results)];
  const widths = COLUMNS.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  return table.map((row) => row.map((cell, i) => (i === 0 || i === row.length - 1 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")).join("\n");
}

export function markdownTable(results: readonly ScenarioResult[]): string {
  const lines = [`| ${COLUMNS.join(" | ")} |`, `| ${COLUMNS.map((_, i) => (i === 0 || i === COLUMNS.length - 1 ? "---" : "---:")).join(" | ")} |`];
  for (const row of rows(results)) lines.push(`| ${row.join(" | ")} |`);
  return lines.join("\n");
}
