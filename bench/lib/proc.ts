// CPU time and memory of the benchmark's processes, read from Linux's /proc: CPU as
// utime + stime (and, for PostgreSQL's postmaster, its reaped backends' time too),
// memory as VmRSS sampled while a phase runs and VmHWM (the kernel's own peak).

import { readFileSync, readdirSync } from "node:fs";

const TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux architecture Node runs on

function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    return text.slice(text.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined; // gone
  }
}

/** CPU seconds a process has used (user + system); with `children`, also its reaped children's. */
export function cpuSeconds(pid: number, children = false): number {
  const f = statFields(pid);
  if (!f) return 0;
  // Fields after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
  const ticks = Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0);
  return ticks / TICKS_PER_SECOND;
}

export interface MemoryStatus {
  /** Resident set, bytes. */
  rss: number;
  /** Peak resident set since the process started, bytes. */
  hwm: number;
  /** Anonymous (private) resident memory, bytes. */
  anon: number;
  /** Shared memory resident (PostgreSQL's shared buffers), bytes. */
  shmem: number;
}

export function memoryStatus(pid: number): MemoryStatus | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return undefined;
  }
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM"), anon: kb("RssAnon"), shmem: kb("RssShmem") };
}

function ppidOf(pid: number): number | undefined {
  const f = statFields(pid);
  return f ? Number(f[1]) : undefined;
}

function pids(): number[] {
  return readdirSync("/proc").filter((n) => /^\d+$/.test(n)).map(Number);
}

/** One thing the benchmark reports on: a process, or a process and its children. */
export interface Watched {
  readonly name: string;
  /** CPU seconds so far (monotonic while the thing runs). */
  cpu(): number;
  /** Resident memory now, bytes. */
  rss(): number;
  /** The kernel's peak resident memory, bytes (for a group: the sum of what rss() counts). */
  hwm(): number;
}

export function watchProcess(name: string, pid: number): Watched {
  return {
    name,
    cpu: () => cpuSeconds(pid),
    rss: () => memoryStatus(pid)?.rss ?? 0,
    hwm: () => memoryStatus(pid)?.hwm ?? 0,
  };
}

export function watchSelf(name: string): Watched {
  return {
    name,
    cpu: () => {
      const { user, system } = process.cpuUsage();
      return (user + system) / 1e6;
    },
    rss: () => process.memoryUsage.rss(),
    hwm: () => memoryStatus(process.pid)?.hwm ?? 0,
  };
}

/**
 * PostgreSQL: the postmaster listening on `port` and its backends. CPU is the
 * postmaster's own and its reaped backends' (cutime) plus the live backends'. Memory
 * counts each process's private memory and the shared buffers once.
 */
export function watchPostgres(name: string, port: number): Watched {
  let postmaster: number | undefined;
  const find = () => {
    if (postmaster !== undefined && statFields(postmaster)) return postmaster;
    for (const pid of pids()) {
      let cmdline: string;
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      } catch {
        continue;
      }
      const args = cmdline.split("\0");
      if (/\/postgres$/.test(args[0] ?? "") && args.some((a, i) => a === "-p" && args[i + 1] === String(port))) {
        return (postmaster = pid);
      }
    }
    return undefined;
  };
  // Walking /proc costs a read per process on the machine: the backends (a pool's,
  // long-lived) are looked up again at most every 2 s; exited ones simply read as 0.
  let members: number[] = [];
  let foundAt = 0;
  const family = () => {
    if (performance.now() - foundAt < 2000) return members;
    foundAt = performance.now();
    const root = find();
    members = root === undefined ? [] : [root, ...pids().filter((p) => ppidOf(p) === root)];
    return members;
  };
  const memory = () => {
    let anon = 0;
    let shmem = 0;
    for (const pid of family()) {
      const m = memoryStatus(pid);
      if (!m) continue;
      anon += m.anon;
      shmem = Math.max(shmem, m.shmem);
    }
    return anon + shmem;
  };
  return {
    name,
    cpu: () => {
      foundAt = 0; // CPU is read twice per cell: then the list must be exact
      const [root, ...children] = family();
      if (root === undefined) return 0;
      return cpuSeconds(root, true) + children.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    },
    rss: memory,
    hwm: memory,
  };
}

/** Samples every watched thing's resident memory until stopped; keeps each one's peak and the series. */
export class MemorySampler {
  readonly peaks = new Map<string, number>();
  readonly series = new Map<string, Array<[number, number]>>();
  readonly #timer: NodeJS.Timeout;
  readonly #started = performance.now();

  constructor(
    private readonly watched: readonly Watched[],
    intervalMs: number,
    private readonly keepSeries = false,
  ) {
    this.sample();
    this.#timer = setInterval(() => this.sample(), intervalMs);
  }

  sample(): void {
    const t = (performance.now() - this.#started) / 1000;
    for (const w of this.watched) {
      const rss = w.rss();
      this.peaks.set(w.name, Math.max(this.peaks.get(w.name) ?? 0, rss));
      if (this.keepSeries) {
        let s = this.series.get(w.name);
        if (!s) this.series.set(w.name, (s = []));
        s.push([Math.round(t * 10) / 10, rss]);
      }
    }
  }

  stop(): void {
    clearInterval(this.#timer);
    this.sample();
  }
}

export function loadAverage(): [number, number, number] {
  const [a = 0, b = 0, c = 0] = readFileSync("/proc/loadavg", "utf8").split(" ").map(Number);
  return [a, b, c];
}
