// The simulated network of scripts/multi-region.ts: network namespaces, veth pairs, and a
// switch that delays frames. Everything here acts only on the namespaces named in
// NAMESPACES, with `ip -n <ns>`: no interface, address or route of the machine's own
// (root) namespace is created or changed.
//
//   hm-br   the switch's namespace: ports to-a, to-b, to-c (no address), and the switch
//           process (delay-switch.py) that forwards frames between them
//   hm-a    eth0 10.231.0.11/24  (the peer of hm-br's to-a)
//   hm-b    eth0 10.231.0.12/24
//   hm-c    eth0 10.231.0.13/24
//
// The delay model: every frame a region sends to another region is held for D/2 by the
// switch (one delay per sending region), and the answer is held D/2 when the other region
// sends it: a round trip between any two regions costs D. Traffic inside a region never
// leaves its namespace (a namespace's own address is routed over its loopback), so it
// costs nothing. A region is cut off by having the switch drop every frame from it and
// to it: silently, as a partition looks to TCP (no RST, no ICMP), ARP included.
//
// Two ways to make that network, the same model either way (chooseLinks):
// - where the kernel has sch_netem, a kernel bridge in hm-br joins the ports, and
//   `tc qdisc … netem delay D/2` on each region's eth0 holds what it sends; a region is
//   cut off with `netem loss 100%` on its eth0 and on the bridge's port towards it;
// - where it has not (the machine these figures were measured on: `tc` answers
//   "Specified qdisc kind is unknown", and there is no fq for a BPF EDT delay either), a
//   switch in user space (delay-switch.py, Python for its AF_PACKET sockets, which Node
//   has not) forwards the frames between the ports and holds them.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const REGIONS = ["a", "b", "c"] as const;
export type Region = (typeof REGIONS)[number];

export const BRIDGE_NS = "hm-br";
export const nsOf = (region: Region): string => `hm-${region}`;
export const NAMESPACES: readonly string[] = [...REGIONS.map(nsOf), BRIDGE_NS];
export const SUBNET = "10.231.0.0/24";
export const ADDRESS: Record<Region, string> = { a: "10.231.0.11", b: "10.231.0.12", c: "10.231.0.13" };

function run(command: string, args: readonly string[], options: { quiet?: boolean } = {}): string {
  try {
    return execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (error) {
    if (options.quiet) return "";
    const e = error as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(" ")}: ${(e.stderr ?? "").trim() || e.message}`);
  }
}

const ip = (...args: string[]) => run("ip", args);

/** The namespaces of ours that exist now. */
export function existingNamespaces(): string[] {
  const listed = run("ip", ["netns", "list"], { quiet: true })
    .split("\n")
    .map((line) => line.trim().split(/\s+/)[0] ?? "")
    .filter(Boolean);
  return NAMESPACES.filter((ns) => listed.includes(ns));
}

/** The processes that run inside our namespaces (all of them started by this script, this run or a crashed one). */
export function namespacePids(): number[] {
  return existingNamespaces().flatMap((ns) =>
    run("ip", ["netns", "pids", ns], { quiet: true })
      .split("\n")
      .map((s) => Number.parseInt(s, 10))
      .filter((n) => Number.isInteger(n) && n > 0 && n !== process.pid),
  );
}

/**
 * Removes our namespaces, after SIGKILLing every process still inside one (a member, a
 * component, the controller of a crashed run). Only processes inside these namespaces
 * are touched: nothing of the machine's own, nor anyone else's clusters.
 */
export function removeNamespaces(log: (line: string) => void = () => {}): void {
  for (let round = 0; round < 10; round++) {
    const pids = namespacePids();
    if (pids.length === 0) break;
    if (round === 0) log(`killing ${pids.length} process(es) left in ${existingNamespaces().join(", ")}`);
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
    execFileSync("sleep", ["0.3"]);
  }
  for (const ns of existingNamespaces()) {
    // Deleting hm-br also deletes its veth ends, and with them their peers in the regions.
    run("ip", ["netns", "del", ns], { quiet: true });
  }
  const left = existingNamespaces();
  if (left.length > 0) throw new Error(`could not remove namespaces ${left.join(", ")}`);
}

/** Makes the namespaces and the links (the switch, which joins them, is DelaySwitch). */
export function createNetwork(): void {
  ip("netns", "add", BRIDGE_NS);
  ip("-n", BRIDGE_NS, "link", "set", "lo", "up");
  for (const region of REGIONS) {
    const ns = nsOf(region);
    ip("netns", "add", ns);
    ip("-n", ns, "link", "set", "lo", "up");
    // Both ends are made directly in their namespaces: nothing passes through ours.
    ip("-n", BRIDGE_NS, "link", "add", `to-${region}`, "type", "veth", "peer", "name", "eth0", "netns", ns);
    // The switch's ports carry frames only: no IPv6 link-local address, no chatter of their own.
    ip("-n", BRIDGE_NS, "link", "set", `to-${region}`, "addrgenmode", "none");
    ip("-n", BRIDGE_NS, "link", "set", `to-${region}`, "up");
    ip("-n", ns, "addr", "add", `${ADDRESS[region]}/24`, "dev", "eth0");
    ip("-n", ns, "link", "set", "eth0", "up");
  }
}

const SWITCH = fileURLToPath(new URL("./delay-switch.py", import.meta.url));

/**
 * The switch (delay-switch.py), run in hm-br: it joins the regions, holding each frame a
 * region sends for that region's delay, and drops everything from and to a region cut off.
 */
export class DelaySwitch implements RegionLinks {
  readonly #child: ChildProcess;
  readonly #lines: string[] = [];
  #waiting: ((line: string) => void) | undefined;
  #rttMs = 0;
  readonly #cut = new Set<Region>();

  private constructor(child: ChildProcess) {
    this.#child = child;
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const waiting = this.#waiting;
      this.#waiting = undefined;
      if (waiting) waiting(line);
      else this.#lines.push(line);
    });
  }

  static async start(log: (line: string) => void): Promise<DelaySwitch> {
    const python = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
    const child = spawn("ip", ["netns", "exec", BRIDGE_NS, python, SWITCH, ...REGIONS], { stdio: ["pipe", "pipe", "pipe"] });
    child.stderr!.on("data", (chunk: Buffer) => log(`delay switch: ${chunk.toString("utf8").trim()}`));
    const sw = new DelaySwitch(child);
    const first = await Promise.race([sw.#next(), new Promise<string>((resolve) => child.once("exit", (code) => resolve(`exited (code ${code})`)))]);
    if (first !== "ready") throw new Error(`the delay switch did not start: ${first}`);
    return sw;
  }

  #next(): Promise<string> {
    const line = this.#lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    return new Promise((resolve) => (this.#waiting = resolve));
  }

  async #command(line: string): Promise<string> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) throw new Error("the delay switch has exited");
    const answer = this.#next();
    this.#child.stdin!.write(`${line}\n`);
    const said = await answer;
    if (said.startsWith("error")) throw new Error(`delay switch: ${line}: ${said}`);
    return said;
  }

  get rttMs(): number {
    return this.#rttMs;
  }

  /** A round trip between any two regions costs `rttMs` (each region's frames held rttMs / 2). */
  async setRoundTrip(rttMs: number): Promise<void> {
    for (const region of REGIONS) await this.#command(`delay ${region} ${rttMs / 2}`);
    this.#rttMs = rttMs;
  }

  async cutOff(region: Region): Promise<void> {
    await this.#command(`cut ${region}`);
    this.#cut.add(region);
  }

  async reconnect(region: Region): Promise<void> {
    await this.#command(`heal ${region}`);
    this.#cut.delete(region);
  }

  /** Frames forwarded and dropped so far. */
  stats(): Promise<string> {
    return this.#command("stats");
  }

  describe(): string {
    const cut = [...this.#cut];
    return `round trip between regions ${this.#rttMs} ms (each region's frames held ${this.#rttMs / 2} ms)${cut.length ? `; cut off: ${cut.join(", ")}` : ""}`;
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const gone = new Promise((resolve) => this.#child.once("exit", resolve));
    this.#child.stdin!.end();
    const timer = setTimeout(() => this.#child.kill("SIGKILL"), 3_000);
    await gone;
    clearTimeout(timer);
  }
}

/** The links between the regions, whichever way they are made. */
export interface RegionLinks {
  setRoundTrip(rttMs: number): Promise<void>;
  cutOff(region: Region): Promise<void>;
  reconnect(region: Region): Promise<void>;
  describe(): string;
  stop(): Promise<void>;
}

const tc = (ns: string, ...args: string[]) => run("tc", ["-n", ns, ...args]);

/** Whether this kernel has netem: a qdisc tried on hm-br's loopback, and removed. */
export function netemAvailable(): boolean {
  try {
    tc(BRIDGE_NS, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "0ms");
    tc(BRIDGE_NS, "qdisc", "del", "dev", "lo", "root");
    return true;
  } catch {
    return false;
  }
}

/** The kernel's way: a bridge in hm-br, netem on each region's eth0 and on the bridge's ports (for a cut). */
export class NetemLinks implements RegionLinks {
  #rttMs = 0;
  readonly #cut = new Set<Region>();

  static start(): NetemLinks {
    ip("-n", BRIDGE_NS, "link", "add", "br0", "type", "bridge");
    for (const region of REGIONS) ip("-n", BRIDGE_NS, "link", "set", `to-${region}`, "master", "br0");
    ip("-n", BRIDGE_NS, "link", "set", "br0", "up");
    return new NetemLinks();
  }

  /** What each region's eth0 and the bridge's port towards it hold or drop now. */
  #apply(region: Region): void {
    const out = this.#cut.has(region) ? ["loss", "100%"] : this.#rttMs > 0 ? ["delay", `${this.#rttMs / 2}ms`] : undefined;
    const towards = this.#cut.has(region) ? ["loss", "100%"] : undefined;
    for (const [ns, dev, rule] of [[nsOf(region), "eth0", out], [BRIDGE_NS, `to-${region}`, towards]] as const) {
      if (rule) tc(ns, "qdisc", "replace", "dev", dev, "root", "netem", ...rule);
      else run("tc", ["-n", ns, "qdisc", "del", "dev", dev, "root"], { quiet: true });
    }
  }

  async setRoundTrip(rttMs: number): Promise<void> {
    this.#rttMs = rttMs;
    for (const region of REGIONS) this.#apply(region);
  }

  async cutOff(region: Region): Promise<void> {
    this.#cut.add(region);
    this.#apply(region);
  }

  async reconnect(region: Region): Promise<void> {
    this.#cut.delete(region);
    this.#apply(region);
  }

  describe(): string {
    const cut = [...this.#cut];
    return `kernel bridge with netem: round trip between regions ${this.#rttMs} ms${cut.length ? `; cut off: ${cut.join(", ")}` : ""}`;
  }

  async stop(): Promise<void> {
    // The namespaces' removal takes the bridge and the qdiscs with it.
  }
}

/** netem where the kernel has it (or `prefer` says so), the user-space switch otherwise. */
export async function chooseLinks(prefer: "auto" | "netem" | "switch", log: (line: string) => void): Promise<RegionLinks> {
  const netem = prefer !== "switch" && netemAvailable();
  if (prefer === "netem" && !netem) throw new Error("--network netem: this kernel has no sch_netem");
  if (netem) return NetemLinks.start();
  if (prefer === "auto") log("this kernel has no netem: the delays are made by the user-space switch (delay-switch.py)");
  return DelaySwitch.start(log);
}
