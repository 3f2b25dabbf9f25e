// Multi-region by simulation: the whole service spread over three "regions" (network
// namespaces on this machine) with a chosen round-trip delay between regions, people
// logging in through the front door, and the login latency measured; then region b cut
// off, and how long logins take to succeed again. Not part of CI. Run as root:
//
//   node --import tsx scripts/multi-region.ts [--logins 30] [--concurrency 4]
//        [--delays 0,30,80] [--cut-rtt 30 | --no-cut] [--network auto|netem|switch] [--keep]
//   node --import tsx scripts/multi-region.ts --cleanup     (only remove what a killed run left)
//
// docs/multi-region.md describes it and the figures measured.
//
// Topology (scripts/multi-region/net.ts makes the network):
//
//   region a  hm-a  10.231.0.11   Orchestration (front door: http://localhost:9000 inside hm-a;
//                                 mesh 10.231.0.11:7100), Token :7101, Encryption :7102,
//                                 Storage :7103, PostgreSQL pg1 :5432 (Patroni :8008),
//                                 etcd1 :2379/:2380, the development upstream OP :9001,
//                                 and the load generator (the "browser", test/support/browserless.ts)
//   region b  hm-b  10.231.0.12   token-2 :7101, encryption-2 :7102, storage-2 :7103,
//                                 pg2 :5432 (:8008), etcd2 :2379/:2380
//   region c  hm-c  10.231.0.13   pg3 :5432 (:8008), etcd3 :2379/:2380 (the database quorum's witness)
//   switch    hm-br               ports to-a, to-b, to-c and the delay switch (no address)
//
// Orchestration names both Token and both Encryption replicas, every Encryption names both
// Storage replicas (docs/replicas.md), and Storage names all three database members
// (target_session_attrs=read-write: it finds the primary itself).
//
// The network model: a round trip between two regions costs RTT, inside a region nothing.
// Each region's frames to another region are held RTT/2 by a switch in hm-br (one way),
// the answer RTT/2 by the same rule the other way. Where the kernel has netem (--network
// auto, the default), a kernel bridge joins the regions and `tc qdisc … netem delay
// RTT/2` on each region's eth0 does the holding; a region cut off gets `netem loss 100%`
// both ways. The machine the figures were measured on has no sch_netem, so there the
// switch (scripts/multi-region/delay-switch.py, AF_PACKET sockets) holds and drops the
// frames in user space instead (scripts/multi-region/net.ts).
//
// Processes: this process stays in the machine's own namespace and only makes and removes
// the namespaces; everything else runs in a second process of this script inside hm-a
// (it must reach the namespace addresses), which runs each member and component under
// `ip netns exec <its region's namespace>`. At exit, also on Ctrl-C or failure, every
// process left inside the namespaces is killed and the namespaces are deleted; a run
// starts by doing the same to what a crashed run left (only the namespaces hm-a, hm-b,
// hm-c, hm-br and the work directory /tmp/hello-multi-region are touched).

import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { NAMESPACES, createNetwork, existingNamespaces, nsOf, removeNamespaces } from "./multi-region/net.js";

const WORK_DIR = "/tmp/hello-multi-region";
const SCRIPT = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL("../", import.meta.url));

const { values } = parseArgs({
  options: {
    inner: { type: "boolean", default: false },
    cleanup: { type: "boolean", default: false },
    logins: { type: "string", default: "30" },
    concurrency: { type: "string", default: "4" },
    delays: { type: "string", default: "0,30,80" },
    "cut-rtt": { type: "string", default: "30" },
    "no-cut": { type: "boolean", default: false },
    keep: { type: "boolean", default: false },
    network: { type: "string", default: "auto" },
  },
});

const say = (line: string) => process.stdout.write(`multi-region: ${line}\n`);

if (values.inner) {
  const { runInner } = await import("./multi-region/inner.js");
  const code = await runInner({
    workDir: WORK_DIR,
    logins: Number(values.logins),
    concurrency: Number(values.concurrency),
    delays: values.delays.split(",").filter(Boolean).map(Number),
    cutRtt: values["no-cut"] ? undefined : Number(values["cut-rtt"]),
    network: values.network as "auto" | "netem" | "switch",
  });
  process.exit(code);
} else {
  process.exitCode = await outer();
}

async function outer(): Promise<number> {
  if (process.getuid?.() !== 0) {
    process.stderr.write("multi-region: run as root (it makes network namespaces and runs PostgreSQL as the postgres user)\n");
    return 1;
  }
  if (!["auto", "netem", "switch"].includes(values.network)) {
    process.stderr.write(`multi-region: --network is auto, netem or switch, not ${values.network}\n`);
    return 2;
  }
  for (const n of [values.logins, values.concurrency]) {
    if (!/^\d+$/.test(n) || Number(n) < 1) {
      process.stderr.write(`multi-region: ${n} is not a positive whole number\n`);
      return 2;
    }
  }
  let code = 1;
  // The work directory (logs, configurations) is kept after a failure, for a look; the next run removes it.
  const cleanup = () => {
    removeNamespaces(say);
    if (!values.keep && code === 0) rmSync(WORK_DIR, { recursive: true, force: true });
  };
  // What a crashed run left: processes in our namespaces, the namespaces, the work directory.
  if (existingNamespaces().length > 0) say(`removing namespaces of an earlier run: ${existingNamespaces().join(", ")}`);
  removeNamespaces(say);
  rmSync(WORK_DIR, { recursive: true, force: true });
  if (values.cleanup) {
    say("clean");
    return 0;
  }

  let interrupted = 0;
  let child: ReturnType<typeof spawn> | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    interrupted++;
    // The terminal's Ctrl-C reaches the inner process too (same process group); it stops
    // in order. A second one, or a signal sent to us alone, is not waited on for long.
    if (interrupted > 1) child?.kill("SIGKILL");
    else setTimeout(() => child?.kill("SIGKILL"), 60_000).unref();
    if (sig !== "SIGINT") child?.kill(sig);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("SIGHUP", onSignal);
  process.on("exit", () => {
    // The last resort (an exception in this process): synchronous.
    if (existingNamespaces().length > 0) cleanup();
  });
  try {
    mkdirSync(WORK_DIR, { recursive: true });
    // The postgres user must reach the cluster's directory under it.
    chmodSync(WORK_DIR, 0o755);
    createNetwork();
    say(`made namespaces ${NAMESPACES.join(", ")}`);
    child = spawn(
      "ip",
      ["netns", "exec", nsOf("a"), process.execPath, "--import", "tsx", SCRIPT, "--inner", ...process.argv.slice(2).filter((a) => a !== "--inner")],
      { cwd: ROOT, stdio: "inherit" },
    );
    code = await new Promise<number>((resolve) => {
      child!.once("exit", (c, sig) => resolve(c ?? (sig ? 128 + 1 : 1)));
      child!.once("error", (error) => {
        say(`cannot start the inner run: ${error.message}`);
        resolve(1);
      });
    });
  } catch (error) {
    say(`failed: ${(error as Error).message}`);
    code = 1;
  } finally {
    cleanup();
    say(`removed the namespaces${values.keep || code !== 0 ? `; kept ${WORK_DIR} (logs, configurations)` : ` and ${WORK_DIR}`}`);
  }
  return code;
}
