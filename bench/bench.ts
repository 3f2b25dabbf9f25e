// npm run bench: complete logins through the four-process mesh on PostgreSQL, at
// several concurrencies, for new and returning users; the same protocol in one
// process; node-oidc-provider; and the crypto floor. Prints the tables, the targets
// with PASS/FAIL and the ratios, and writes bench/results/<time>.json and latest.json.
// What is measured and why is in docs/performance.md.
//
//   npm run bench                        the whole run (under ten minutes on 2 cores)
//   npm run bench -- --quick             short cells and soak, for trying changes
//   npm run bench -- --only mesh,floor   some parts (mesh, soak, inproc, oidc, floor)
//   npm run bench -- --node-options=--max-old-space-size=64   the components' V8 settings
//   npm run bench:soak                   the soak alone, longer
//   npm run bench:profile                one c=32 phase of the mesh under V8's CPU profiler (profile.ts)

import { execFileSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { type CellResult, runCell } from "./lib/cell.js";
import { type Child, startChild } from "./lib/children.js";
import { type Floor, cryptoFloor } from "./lib/crypto-floor.js";
import { agent } from "./lib/http.js";
import { type App, frontDoorLogin, loadKeys, oidcProviderLogin } from "./lib/logins.js";
import { MemorySampler, type Watched, loadAverage, watchProcess, watchSelf } from "./lib/proc.js";
import { printReport, type Report, type SoakResult } from "./lib/report.js";
import { APP, type Mesh, type Rig, buildArtifacts, heldState, liveHeaps, startMesh, startRig } from "./lib/rig.js";

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    seconds: { type: "string" },
    warmup: { type: "string" },
    concurrency: { type: "string" },
    "soak-seconds": { type: "string" },
    "soak-concurrency": { type: "string" },
    pool: { type: "string" },
    out: { type: "string" },
    /** Run the components from source (tsx) even where the checkout can build their artifacts. */
    source: { type: "boolean", default: false },
    /** NODE_OPTIONS for the four components (a custodian's V8 settings): --node-options=--max-old-space-size=64 */
    "node-options": { type: "string" },
  },
});
const PARTS = ["floor", "mesh", "soak", "inproc", "oidc"] as const;
type Part = (typeof PARTS)[number];
const only = new Set((flags.only ?? PARTS.join(",")).split(",").map((s) => s.trim()));
for (const part of only) if (!PARTS.includes(part as Part)) throw new Error(`--only: ${part} is not one of ${PARTS.join(", ")}`);
const runs = (part: Part) => only.has(part);

const config = {
  measureSeconds: Number(flags.seconds ?? (flags.quick ? 3 : 10)),
  warmupSeconds: Number(flags.warmup ?? (flags.quick ? 1 : 2)),
  concurrencies: (flags.concurrency ?? "1,8,32,64").split(",").map(Number),
  soakSeconds: Number(flags["soak-seconds"] ?? (flags.quick ? 15 : 60)),
  soakConcurrency: Number(flags["soak-concurrency"] ?? 32),
  /** Returning users made before the cells (also the warm-up of each variant). */
  pool: Number(flags.pool ?? (flags.quick ? 64 : 128)),
};

const ROOT = fileURLToPath(new URL("..", import.meta.url));

const log = (line: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const started = Date.now();
const cells: CellResult[] = [];
const loads: Array<{ at: string; load: [number, number, number] }> = [];
const noteLoad = (at: string) => loads.push({ at, load: loadAverage() });

// --- machine ---------------------------------------------------------------------------

function machine(pgVersion: string) {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  return {
    cpu: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? "unknown",
    cores: os.cpus().length,
    memoryGb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    postgres: pgVersion,
    kernel: os.release(),
    revision: (() => {
      try {
        return execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
      } catch {
        return "unknown";
      }
    })(),
  };
}

// --- the login mixes --------------------------------------------------------------------

let nextSub = 0;
const runTag = Date.now().toString(36);
const newSub = () => `u${runTag}-${nextSub++}`;

/** Makes `count` users (new-user logins at concurrency 16); the first cell's warm-up too. */
async function makeUsers(app: App, count: number): Promise<string[]> {
  const made: string[] = [];
  let failures = 0;
  const worker = async () => {
    while (made.length + failures < count) {
      const sub = newSub();
      try {
        await frontDoorLogin(app, sub, "new");
        made.push(sub);
      } catch (error) {
        if (++failures > 5) throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return made;
}

async function frontDoorCells(variant: string, app: App, pool: string[], watched: Watched[]) {
  for (const concurrency of config.concurrencies) {
    for (const users of ["returning", "new"] as const) {
      let turn = 0;
      const login =
        users === "new"
          ? async () => frontDoorLogin(app, newSub(), "new")
          : async () => frontDoorLogin(app, pool[turn++ % pool.length]!, "returning");
      const cell = await runCell({ variant, users, concurrency, warmupSeconds: config.warmupSeconds, measureSeconds: config.measureSeconds, watched, login });
      cells.push(cell);
      log(`${variant} ${users} c=${concurrency}: ${cell.loginsPerSecond}/s p50 ${cell.latencyMs.p50} ms p99 ${cell.latencyMs.p99} ms errors ${cell.errors}`);
    }
  }
}

// --- the run ----------------------------------------------------------------------------

async function main() {
  noteLoad("start");
  log(`config ${JSON.stringify(config)}; parts ${[...only].join(",")}`);
  let floor: Floor | undefined;
  if (runs("floor")) {
    log("crypto floor");
    floor = cryptoFloor(flags.quick ? 100 : 300);
  }

  let rig: Rig | undefined;
  let mesh: Mesh | undefined;
  let inproc: Child<{ url: string }> | undefined;
  let oidcOp: Child<{ issuer: string; jwksUri: string }> | undefined;
  const self = watchSelf("driver");
  const peaks: Record<string, number> = {};
  const hwm = (w: Watched) => (peaks[w.name] = Math.max(peaks[w.name] ?? 0, Math.round((w.hwm() / 2 ** 20) * 10) / 10));
  let soak: SoakResult | undefined;
  let componentsFrom: "artifacts" | "source" | undefined;

  try {
    if (runs("mesh") || runs("soak") || runs("inproc")) {
      rig = await startRig(log);
      if (runs("mesh") || runs("soak")) {
        const artifacts = flags.source ? undefined : await buildArtifacts(rig, log);
        log(`starting the four components from ${artifacts ? "their artifacts" : "source"}`);
        const env = flags["node-options"] ? { NODE_OPTIONS: flags["node-options"] } : {};
        mesh = await startMesh(rig, { env, ...(artifacts ? { artifacts } : {}) });
        componentsFrom = mesh.from;
        const watched = [...mesh.watched, rig.watchPostgres, rig.watchUpstream, self];
        await loadKeys(mesh.app, "/jwks");
        log(`making ${config.pool} users (the warm-up)`);
        const pool = await makeUsers(mesh.app, config.pool);
        noteLoad("mesh");
        if (runs("mesh")) await frontDoorCells("mesh", mesh.app, pool, watched);
        if (runs("soak")) soak = await runSoak(rig, mesh, pool, watched);
        for (const w of watched) hwm(w);
        await mesh.processes.stop();
        mesh = undefined;
      }

      if (runs("inproc")) {
        log("starting the in-process variant");
        inproc = await startChild("in-process.ts", [
          "--configs", path.dirname(rig.deployment.configFiles.token), "--port", String(rig.ports.inproc),
          "--issuer", rig.inprocIssuer, "--database", rig.inprocDatabase,
        ]);
        const watched = [watchProcess("in-process", inproc.pid), rig.watchPostgres, rig.watchUpstream, self];
        const app: App = { issuer: rig.inprocIssuer, base: rig.inprocIssuer, authorizationPath: "/authorize", tokenPath: "/token", ...APP };
        await loadKeys(app, "/jwks");
        const pool = await makeUsers(app, config.pool);
        noteLoad("inproc");
        await frontDoorCells("in-process", app, pool, watched);
        for (const w of watched) hwm(w);
        await inproc.stop();
        inproc = undefined;
      }
    }

    if (runs("oidc")) {
      log("starting node-oidc-provider");
      oidcOp = await startChild("oidc-provider-op.ts", ["--client-id", APP.clientId, "--client-secret", APP.clientSecret, "--redirect-uri", APP.redirectUri]);
      const watched = [watchProcess("oidc-provider", oidcOp.pid), self];
      const app: App = { issuer: oidcOp.info.issuer, base: oidcOp.info.issuer, authorizationPath: "/auth", tokenPath: "/token", ...APP };
      await loadKeys(app, "/jwks");
      // Warm-up: as many logins as the front-door variants' pool.
      for (let i = 0; i < config.pool; i += 16) await Promise.all(Array.from({ length: 16 }, () => oidcProviderLogin(app, newSub())));
      noteLoad("oidc");
      for (const concurrency of config.concurrencies) {
        const cell = await runCell({
          variant: "oidc-provider", users: "fresh browser", concurrency, warmupSeconds: config.warmupSeconds,
          measureSeconds: config.measureSeconds, watched, login: () => oidcProviderLogin(app, newSub()),
        });
        cells.push(cell);
        log(`oidc-provider c=${concurrency}: ${cell.loginsPerSecond}/s p50 ${cell.latencyMs.p50} ms p99 ${cell.latencyMs.p99} ms errors ${cell.errors}`);
      }
      for (const w of watched) hwm(w);
      await oidcOp.stop();
      oidcOp = undefined;
    }
  } finally {
    await mesh?.processes.stop();
    await inproc?.stop();
    await oidcOp?.stop();
    await rig?.close();
    agent.destroy();
  }
  noteLoad("end");

  const report: Report = {
    startedAt: new Date(started).toISOString(),
    durationSeconds: Math.round((Date.now() - started) / 1000),
    machine: machine(rig?.postgresVersion ?? "not started"),
    config: { ...config, ...(componentsFrom ? { componentsFrom } : {}), ...(flags["node-options"] ? { componentNodeOptions: flags["node-options"] } : {}) },
    loadAverages: loads,
    cells,
    peakRssMb: peaks,
    ...(floor ? { floor } : {}),
    ...(soak ? { soak } : {}),
  };
  const text = printReport(report);
  process.stdout.write(text);
  const outDir = flags.out ?? path.join(ROOT, "bench", "results");
  await mkdir(outDir, { recursive: true });
  const json = `${JSON.stringify({ ...report, printed: text }, null, 2)}\n`;
  const file = path.join(outDir, `${report.startedAt.replace(/[:.]/g, "-")}.json`);
  await writeFile(file, json);
  await writeFile(path.join(outDir, "latest.json"), json);
  log(`wrote ${path.relative(process.cwd(), file)} and latest.json (${report.durationSeconds} s in all)`);
}

/**
 * A bounded run at fixed concurrency, 1 login in 10 a new user. Leaks are judged by
 * each component's live heap after a full collection, taken just before and just
 * after the run; resident memory is sampled every second and reported beside it.
 */
async function runSoak(rig: Rig, mesh: Mesh, pool: string[], watched: Watched[]): Promise<SoakResult> {
  log(`soak: ${config.soakSeconds} s at c=${config.soakConcurrency}`);
  const before = await liveHeaps(rig, mesh);
  const heldBefore = await heldState(rig);
  const series = new MemorySampler(watched, 1000, true);
  let turn = 0;
  const cell = await runCell({
    variant: "mesh soak", users: "returning", concurrency: config.soakConcurrency, warmupSeconds: 5, measureSeconds: config.soakSeconds, watched,
    login: async () => (turn++ % 10 === 9 ? frontDoorLogin(mesh.app, newSub(), "new") : frontDoorLogin(mesh.app, pool[turn % pool.length]!, "returning")),
  });
  series.stop();
  const after = await liveHeaps(rig, mesh);
  const heldAfter = await heldState(rig);
  const memory: SoakResult["memory"] = {};
  for (const [name, points] of series.series) {
    const mb = points.map(([, v]) => v / 2 ** 20);
    const round = (x: number) => Math.round(x * 10) / 10;
    const live = before[name] !== undefined && after[name] !== undefined ? { liveBeforeMb: before[name]!, liveAfterMb: after[name]! } : {};
    // Orchestration keeps every access token for its ten minutes, longer than the soak:
    // that growth is by design, and counted (hello_state_bytes) rather than guessed. A
    // leak is what grows beyond it.
    const held = name === "orchestration" ? { heldBeforeMb: heldBefore, heldAfterMb: heldAfter } : undefined;
    memory[name] = {
      ...live,
      ...held,
      rssMinMb: round(Math.min(...mb)),
      rssMaxMb: round(Math.max(...mb)),
      ...(before[name] !== undefined ? { flat: after[name]! - (held?.heldAfterMb ?? 0) <= (before[name]! - (held?.heldBeforeMb ?? 0)) * 1.1 + 5 } : {}),
      seriesMb: points.map(([t, v]) => [t, round(v / 2 ** 20)]),
    };
  }
  log(`soak: ${cell.loginsPerSecond}/s, ${cell.errors} errors`);
  return { seconds: config.soakSeconds, concurrency: config.soakConcurrency, newUserShare: 0.1, cell, memory };
}

await main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
