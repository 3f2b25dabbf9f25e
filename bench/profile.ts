// npm run bench:profile: the mesh once under the V8 CPU profiler. The four components
// run as in `npm run bench`, with a hook (lib/profile-hook.mjs) that profiles between
// two SIGUSR2s; the profile covers one phase of returning-user logins at concurrency 32
// (after the warm-up), and this prints where each component's time goes: by package
// or file, and the functions with the most self time. The .cpuprofile files stay in
// bench/results/profile-<time>/ (Chrome DevTools opens them).
//
//   npm run bench:profile [-- --seconds 15 --concurrency 32 --users returning|new --artifacts]
//
// The components run from source unless --artifacts is given: in a bundle, every
// function's place would be the one artifact file.

import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { COMPONENTS } from "../internal/protocol/identity.js";
import { runCell } from "./lib/cell.js";
import { summarise } from "./lib/cpuprofile.js";
import { agent } from "./lib/http.js";
import { frontDoorLogin, loadKeys } from "./lib/logins.js";
import { type Mesh, type Rig, buildArtifacts, startMesh, startRig } from "./lib/rig.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "15" },
    concurrency: { type: "string", default: "32" },
    users: { type: "string", default: "returning" },
    artifacts: { type: "boolean", default: false },
  },
});
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const log = (line: string) => process.stderr.write(`[profile] ${line}\n`);

let rig: Rig | undefined;
let mesh: Mesh | undefined;
try {
  const dir = path.join(ROOT, "bench", "results", `profile-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  await mkdir(dir, { recursive: true });
  rig = await startRig(log);
  const hook = new URL("./lib/profile-hook.mjs", import.meta.url).href;
  // From source by default: in a bundle every function's place is the one artifact file.
  const artifacts = values.artifacts ? await buildArtifacts(rig, log) : undefined;
  mesh = await startMesh(rig, { env: { NODE_OPTIONS: `--import ${hook}`, HELLO_PROFILE_DIR: dir }, heapHook: false, ...(artifacts ? { artifacts } : {}) });
  await loadKeys(mesh.app, "/jwks");
  const users = values.users === "new" ? "new" : "returning";
  log("making 256 users (the warm-up)");
  const pool: string[] = [];
  let n = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (pool.length < 256) {
      const sub = `p${Date.now().toString(36)}-${n++}`;
      await frontDoorLogin(mesh!.app, sub, "new");
      pool.push(sub);
    }
  }));
  const pids = new Map(COMPONENTS.map((c) => [c, mesh!.processes.children.get(c)!.pid!]));
  const signal = () => { for (const pid of pids.values()) process.kill(pid, "SIGUSR2"); };
  let turn = 0;
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);
  log(`profiling ${seconds} s of ${users}-user logins at c=${concurrency}`);
  const timers = [
    setTimeout(signal, 2000),
    setTimeout(signal, 2000 + seconds * 1000),
  ];
  const cell = await runCell({
    variant: "mesh", users, concurrency, warmupSeconds: 2, measureSeconds: seconds, watched: mesh.watched,
    login: () => (users === "new" ? frontDoorLogin(mesh!.app, `q${turn++}-${Date.now().toString(36)}`, "new") : frontDoorLogin(mesh!.app, pool[turn++ % pool.length]!, "returning")),
  });
  timers.forEach(clearTimeout);
  for (let i = 0; i < 100 && ![...pids.values()].every((pid) => existsSync(path.join(dir, `${pid}.cpuprofile`))); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const out = [
    `\nmesh profile (components from ${mesh.from}): ${users} users, c=${concurrency}, ${seconds} s: ${cell.loginsPerSecond} logins/s, p50 ${cell.latencyMs.p50} ms, ${cell.errors} errors`,
    `CPU seconds in the window: ${Object.entries(cell.cpuSeconds).map(([k, v]) => `${k} ${v}`).join(", ")}`,
  ];
  for (const [component, pid] of pids) {
    out.push(`\n${component}:`);
    const file = path.join(dir, `${pid}.cpuprofile`);
    out.push(existsSync(file) ? summarise(file, cell.logins) : "  (no profile written)");
  }
  out.push(`\nprofiles: ${path.relative(process.cwd(), dir)}`);
  process.stdout.write(`${out.join("\n")}\n`);
} finally {
  await mesh?.processes.stop();
  await rig?.close();
  agent.destroy();
}
