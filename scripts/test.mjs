#!/usr/bin/env node
// `npm test`: everything the tests need, then the tests. The storage suite runs on a
// real PostgreSQL server and the browser test in real Chromium, so this makes sure
// Debian's postgresql and chromium are present (installing them when we can, as root)
// before mocha starts; the suite itself starts a throwaway PostgreSQL server in a
// temporary directory (or uses HELLO_TEST_DATABASE_URL).

import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { existsSync, readFileSync, readdirSync } from "node:fs";

// `--faults` (npm run test:faults) runs the fault tests instead: components killed and
// restarted, the database restarted, Storage hung, under streams of logins. They take
// minutes, so they have a script of their own, which CI runs too (docs/faults.md). They
// stop and start a PostgreSQL server of their own, so they need the local binaries.
const faults = process.argv.includes("--faults");

function hasPostgresServer() {
  if (process.env.HELLO_TEST_DATABASE_URL && !faults) return true;
  const root = "/usr/lib/postgresql";
  return existsSync(root) && readdirSync(root).some((v) => existsSync(`${root}/${v}/bin/initdb`));
}

function aptInstall(packages) {
  if (process.getuid?.() !== 0) {
    console.error(`npm test needs ${packages.join(", ")}: install with sudo apt-get install -y ${packages.join(" ")}`);
    process.exit(1);
  }
  console.log(`Installing ${packages.join(", ")} from Debian's packages…`);
  execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit" });
  execFileSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...packages], {
    stdio: "inherit",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
}

const missing = [
  ...(hasPostgresServer() ? [] : ["postgresql"]),
  // playwright cannot download a browser here: the tests drive Debian's Chromium.
  ...(existsSync("/usr/bin/chromium") ? [] : ["chromium"]),
  // The availability faults run a replicated PostgreSQL under Patroni, with etcd as its
  // consensus store (test/faults/availability.spec.ts, docs/availability.md).
  ...(faults && !existsSync("/usr/bin/patroni") ? ["patroni"] : []),
  ...(faults && !existsSync("/usr/bin/etcd") ? ["etcd-server"] : []),
];
if (missing.length > 0) aptInstall(missing);

const specs = faults ? ["test/faults/**/*.spec.ts"] : ["{cmd,internal,mesh,test}/**/*.spec.ts", "--ignore", "test/faults/**"];
// mocha's own bin, run by this Node, not through npx: npx exits 0 when mocha is killed by a
// signal (the OOM killer, say), which would pass a run that never finished. mocha's bin
// dies of the signal its child died of, which the exit handler below fails on.
const args = [createRequire(import.meta.url).resolve("mocha/bin/mocha.js"), ...specs, ...process.argv.slice(2).filter((a) => a !== "--faults")];
// mocha's output goes through this process (for the stall watchdog below); keep its colours
// where the reader has a terminal, as if it wrote there itself.
if (process.stdout.isTTY && !args.includes("--no-color")) args.push("--color");
const child = spawn(process.execPath, args, { stdio: ["inherit", "pipe", "pipe"], detached: true });
let lastOutput = Date.now();
/** Set once a stall is found: what the processes print then (V8's stack prints) is kept here, not forwarded. */
let captured;
const forward = (to) => (chunk) => {
  lastOutput = Date.now();
  if (captured !== undefined) captured += chunk.toString("utf8");
  else to.write(chunk);
};
child.stdout.on("data", forward(process.stdout));
child.stderr.on("data", forward(process.stderr));
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => killTree(signal));

// The stall watchdog. Every test has a mocha timeout, so a suite that prints nothing for
// this long is not slow but stuck with its event loop blocked, where no timeout can fire
// (CI once sat silent until its 90-minute limit). Rather than wait for that, it prints
// what each process of the run is doing (the JavaScript stack of each Node process's main
// thread, then the native stacks of every thread) and fails the run: a stall is a failure
// to diagnose, never one to retry.
const STALL_MINUTES = Number(process.env.HELLO_TEST_STALL_MINUTES ?? 12);
const watchdog = setInterval(() => {
  if (Date.now() - lastOutput < STALL_MINUTES * 60_000) return;
  clearInterval(watchdog);
  captured = "";
  let native;
  try {
    native = diagnose(child.pid);
  } catch (e) {
    native = `the diagnosis failed: ${e}`;
  }
  // V8's prints arrive through the pipes: give them a moment, then report and stop.
  setTimeout(() => {
    killTree("SIGKILL");
    const stacks = [...captured.matchAll(/==== JS stack trace =+\n([\s\S]*?)(?:==== Details|$)/g)].map((m) => m[1].replace(/\n{2,}/g, "\n").trim());
    console.error(`\nnpm test: no output for ${STALL_MINUTES} minutes (HELLO_TEST_STALL_MINUTES): the run is stuck, with an event loop blocked.`);
    console.error(`Processes and native stacks:${native}`);
    console.error(`JavaScript stacks of the blocked main threads:\n${stacks.join("\n--\n") || "(none printed)"}`);
    console.error("npm test: stopped: failed.");
    process.exit(1);
  }, 3000);
}, 15_000);
watchdog.unref();

child.on("exit", (exitCode, signal) => {
  if (captured !== undefined) return; // the watchdog reports and exits
  clearInterval(watchdog);
  // Killed (a signal, not an exit code): the run did not finish, so it failed.
  if (signal) console.error(`\nnpm test: mocha was killed (${signal}) before it finished: the run fails.`);
  const code = signal ? 1 : (exitCode ?? 1);
  // Whatever ends this process now (the timer below, the pipes' end, or an event loop
  // with nothing left: the pipes may have ended before this), it ends with mocha's code.
  process.exitCode = code;
  // A process a test left behind may hold the pipes open: give the output a moment to
  // drain, then go, as spawnSync with inherited output did.
  setTimeout(() => process.exit(code), 1000).unref();
  const ended = () => child.stdout.readableEnded && child.stderr.readableEnded && process.exit(code);
  child.stdout.on("end", ended);
  child.stderr.on("end", ended);
  ended();
});

function killTree(signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** A process's /proc/<pid>/stat fields after its name (state, ppid, …; proc(5) numbers them from 3). */
function statFields(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** The processes under `root` (itself included), from /proc. */
function descendants(root) {
  const parent = new Map();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      parent.set(Number(entry), Number(statFields(entry)[1]));
    } catch {
      // Gone meanwhile.
    }
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) for (const [pid, ppid] of parent) if (ppid === tree[i]) tree.push(pid);
  return tree;
}

/** Each process under `root`: its state, and for a Node process its threads' stacks (V8's own print of the JavaScript stack goes to its stdout). */
function diagnose(root) {
  const gdb = existsSync("/usr/bin/gdb");
  let report = "";
  for (const pid of descendants(root)) {
    let cmdline, state, wchan;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
      const fields = statFields(pid);
      state = `${fields[0]} cpu=${(Number(fields[11]) + Number(fields[12])) / 100}s`;
      wchan = readFileSync(`/proc/${pid}/wchan`, "utf8");
    } catch {
      continue;
    }
    report += `\n--- pid ${pid} [${state}, wchan ${wchan}] ${cmdline.slice(0, 160)}`;
    if (!gdb || !/(^|\/)node /.test(cmdline)) continue;
    const out = spawnSync(
      "gdb",
      ["-batch", "-nx", "-p", String(pid), "-ex", "thread apply all bt 14", "-ex", "thread 1", "-ex", "call (void)_v8_internal_Print_StackTrace()", "-ex", "call (int)fflush(0)"],
      { encoding: "utf8", timeout: 60_000 },
    );
    report += `\n${summariseBacktraces(out.stdout ?? "")}`;
  }
  if (!gdb) report += "\n(gdb is not installed, so no stacks: apt-get install gdb)";
  return report;
}

/** gdb's `thread apply all bt` as a line per kind of thread: the frames' functions, libc's waiting frames left out, alike threads counted together. */
function summariseBacktraces(text) {
  const kinds = new Map();
  for (const block of text.split(/\n(?=Thread \d+ )/)) {
    const head = /^Thread (\d+) \(Thread \S+ \(LWP (\d+)\)/.exec(block);
    if (!head) continue;
    const frames = [...block.matchAll(/^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+?)(?: \(|$)/gm)]
      .map((m) => m[1].replace(/^v8::internal::/, ""))
      .filter((f) => !/^(_{1,3}(futex|GI_|pthread|new_sem|libc)|do_futex_wait|uv__sem_wait|start_thread|clone3|_start$)/.test(f));
    const line = frames.join(" < ") || "(no frames)";
    kinds.set(line, [...(kinds.get(line) ?? []), head[1]]);
  }
  return [...kinds].map(([line, threads]) => `  thread${threads.length > 1 ? "s" : ""} ${threads.join(",")}: ${line}`).join("\n");
}
