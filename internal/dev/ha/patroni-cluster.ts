// A real high-availability PostgreSQL cluster on one machine, for fault tests and for
// running the whole service on it (`hello start --ha`): etcd as the consensus store,
// Patroni deciding who is primary, PostgreSQL with strict synchronous replication.
// Every fault here acts on real processes (SIGKILL, SIGSTOP), because what is being
// tested is what Patroni, etcd and PostgreSQL really do, not what we think they do.
//
// THESE ARE THROWAWAY DEV/TEST CLUSTERS: trust authentication for every member host,
// no passwords, no TLS, fsync off. Never point one at data that matters.
//
// Layout of `dir`:
//
//   cluster.json             the layout (names, hosts, ports, token): a kept cluster is
//                            started again from it, on the same ports, since etcd's
//                            membership and Patroni's member records name them
//   run.json                 pids of the processes this run started (a later start in the
//                            same dir kills those a crashed run left behind)
//   etcd1/ …                 etcd data directories
//   pg1/patroni.yml, pg1/data/ …  each member's Patroni configuration and data directory
//   logs/etcd1.log           each etcd's output
//   logs/pg1.patroni.log     each Patroni's output
//   logs/pg1.postgres.log    each PostgreSQL's server log (logging_collector)
//
// API (names are 1-based, `i` arguments are 0-based indexes into `members`/`etcd`):
//
//   startPatroniCluster(options) → PatroniCluster: starts etcd, then Patroni (which runs
//       initdb on one member and clones the others), and waits until healthy.
//   cluster.url                     libpq multi-host URL of every member, read-write target
//   cluster.memberUrl(name)         a URL of that one member (node-postgres does not
//                                   understand multi-host URLs)
//   cluster.state()                 Patroni's GET /cluster, plus what the leader streams to
//   cluster.leader() / etcdLeader()
//   cluster.waitHealthy(ms)         a leader, every member running and streaming, a sync standby
//   cluster.waitForLeader({not, timeoutMs})  a leader that serves as primary (and is not `not`)
//   cluster.killMember / startMember       a machine lost (Patroni and PostgreSQL SIGKILLed), back
//   cluster.freezePatroni / thawPatroni    Patroni SIGSTOPped, its PostgreSQL running on
//   cluster.freezePostgres / thawPostgres  that member's PostgreSQL processes SIGSTOPped
//   cluster.killEtcd / startEtcd           one etcd member lost, back
//   cluster.pids(name), cluster.logTails() for tests that look closer
//   cluster.stop()                  everything down; `dir` removed unless `keep`
//
// Timing (bootstrap.dcs; see DEFAULT_TIMING): ttl 12 s, loop_wait 1 s, retry_timeout 5 s.
// Patroni talks to etcd's v2 API, not v3: see PatroniClusterOptions.etcdApi for why.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import net from "node:net";
import { delimiter, join, resolve } from "node:path";

// ---------------------------------------------------------------------------------------
// Public types

export type MemberRole = "etcd" | "postgres";

/**
 * Patroni's three clocks, in seconds (bootstrap.dcs). The leader key lives `ttl` seconds
 * after the leader last renewed it, the leader renews it every `loopWait`, and a DCS or
 * PostgreSQL call is retried for `retryTimeout` before the leader gives up (and demotes).
 * Patroni requires loopWait + 2 × retryTimeout ≤ ttl.
 */
export interface PatroniTiming {
  readonly ttl: number;
  readonly loopWait: number;
  readonly retryTimeout: number;
}

/**
 * Fixed ports, one per member (index i for member i). A port not given is chosen free at
 * start. `hello start --ha` fixes them so that its configuration can name them.
 */
export interface PatroniClusterPorts {
  readonly postgres?: readonly number[];
  readonly restApi?: readonly number[];
  readonly etcdClient?: readonly number[];
  readonly etcdPeer?: readonly number[];
}

export interface PatroniClusterOptions {
  /**
   * Working directory: data directories, configurations, logs. Created if missing. If it
   * holds a cluster a previous run kept (cluster.json and etcd data), that cluster is
   * started again with its data, its ports and its names.
   */
  readonly dir: string;
  /** Keep `dir` (and so the data) when stopped; default false: stop() removes it. */
  readonly keep?: boolean;
  /** PostgreSQL members, default 3; at least 2 (strict synchronous replication needs a standby). */
  readonly members?: number;
  /** etcd members, default 3 (an odd number: a majority must survive a loss). */
  readonly etcdMembers?: number;
  /**
   * Address member i listens on (etcd and PostgreSQL members are numbered separately);
   * default 127.0.0.1. The multi-region script gives each member its namespace's address.
   */
  readonly host?: string | ((i: number, role: MemberRole) => string);
  /**
   * Command prefix to run member i under, e.g. ["ip", "netns", "exec", "hm-region-a"].
   * It goes before the switch to the `postgres` user, so it runs with our privileges.
   */
  readonly wrap?: (i: number, role: MemberRole) => readonly string[];
  readonly ports?: PatroniClusterPorts;
  /** Patroni's clocks; default DEFAULT_TIMING. Used only when the cluster is first bootstrapped. */
  readonly timing?: Partial<PatroniTiming>;
  /** Patroni's cluster name (its key prefix in etcd); default "hello-mesh". */
  readonly scope?: string;
  /**
   * Which etcd API Patroni uses: "v2" (Patroni's `etcd:` section, etcd run with
   * --enable-v2), the default, or "v3" (`etcd3:`, etcd's gRPC gateway over HTTP).
   *
   * v3 is what one would choose, and it works until a leader's Patroni stalls for longer
   * than the ttl: Patroni 3.0.2's etcd3 client then renews with a new lease and PUTs the
   * leader key unconditionally, taking leadership back from the member that was elected
   * meanwhile and has acknowledged writes since; that member is demoted and rewound onto
   * the stale leader's history, and those writes are lost. The freezePatroni fault test
   * showed exactly that on Debian bookworm. Patroni fixed it in 3.0.3 (patroni/patroni
   * pull requests 2689 and 2693: the write became a compare-and-swap). Its v2 client has
   * always renewed with compare-and-swap on the key's value (prevValue), so a stale leader
   * finds the key gone or taken, and demotes.
   */
  readonly etcdApi?: "v2" | "v3";
  /** Networks (CIDR) trusted besides the member hosts and loopback, e.g. where the service runs. */
  readonly trustedNetworks?: readonly string[];
  /** How long start may take to be healthy; default 120 s. */
  readonly startTimeoutMs?: number;
  /** What the harness does, a line at a time (not the members' own logs: those are files). */
  readonly log?: (line: string) => void;
}

export interface MemberInfo {
  /** "pg1", "pg2", …: Patroni's member name, also the application_name it streams under. */
  readonly name: string;
  readonly index: number;
  readonly host: string;
  readonly pgPort: number;
  readonly restApiPort: number;
  /** Patroni's REST API, e.g. http://127.0.0.1:8008 */
  readonly apiUrl: string;
  readonly dataDir: string;
  readonly patroniLog: string;
  readonly postgresLog: string;
}

export interface EtcdInfo {
  /** "etcd1", … */
  readonly name: string;
  readonly index: number;
  readonly host: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly clientUrl: string;
  readonly dataDir: string;
  readonly log: string;
}

/** One member as Patroni's GET /cluster reports it. */
export interface MemberState {
  readonly name: string;
  /** "leader" | "sync_standby" | "replica" (and "standby_leader", which this harness never makes). */
  readonly role: string;
  /** "running", "starting", "stopped", "crashed", "creating replica", … ("streaming" from Patroni 3.0.4). */
  readonly state: string;
  readonly host?: string;
  readonly port?: number;
  readonly timeline?: number;
  /** Bytes behind the leader, or "unknown"; absent for the leader. */
  readonly lag?: number | "unknown";
}

export interface ClusterState {
  readonly members: readonly MemberState[];
  readonly leader: string | undefined;
  readonly syncStandbys: readonly string[];
  /**
   * The members the leader's PostgreSQL streams to (its pg_stat_replication, state
   * "streaming", as Patroni's GET /patroni reports it); undefined if the leader's Patroni
   * did not answer.
   */
  readonly streaming: readonly string[] | undefined;
  /** The member whose Patroni answered GET /cluster (its view of etcd). */
  readonly reportedBy: string;
}

export interface PatroniCluster {
  /** postgresql://postgres@h1:p1,h2:p2,…/postgres?target_session_attrs=read-write */
  readonly url: string;
  readonly members: readonly MemberInfo[];
  readonly etcd: readonly EtcdInfo[];
  readonly timing: PatroniTiming;
  readonly dir: string;
  /** postgresql://postgres@host:port/postgres of one member. */
  memberUrl(name: string): string;
  state(): Promise<ClusterState>;
  leader(): Promise<string | undefined>;
  /** The index of etcd's Raft leader, as the first etcd member that answers sees it. */
  etcdLeader(): Promise<number | undefined>;
  waitHealthy(timeoutMs?: number): Promise<ClusterState>;
  waitForLeader(options?: { not?: string; timeoutMs?: number }): Promise<string>;
  killMember(name: string): Promise<void>;
  startMember(name: string): Promise<void>;
  freezePatroni(name: string): void;
  thawPatroni(name: string): void;
  freezePostgres(name: string): void;
  thawPostgres(name: string): void;
  killEtcd(i: number): Promise<void>;
  startEtcd(i: number): Promise<void>;
  /** The live processes of a member now: its Patroni and its postmaster (undefined when not running). */
  pids(name: string): { patroni: number | undefined; postmaster: number | undefined };
  /** The last lines of every member's logs, for an error message. */
  logTails(lines?: number): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Small enough that a failover takes seconds, large enough that losing etcd's Raft
 * leader does not cost us the PostgreSQL primary.
 *
 * Patroni 3.0.2 (Debian bookworm) validates none of the three beyond "an integer": it
 * would take ttl 2. Patroni 3.1 and later clamp them to ttl ≥ 20, loop_wait ≥ 1,
 * retry_timeout ≥ 3 (with a warning in their log) and keep loop_wait + 2 × retry_timeout
 * ≤ ttl. loop_wait is at that floor. retry_timeout is not: with 3 s (1 s a request, split
 * over the three etcd hosts) the fault test saw the leader give up on etcd ("demoting
 * self because DCS is not accessible") 2 s after etcd's Raft leader was killed, while the
 * other two were still electing a new one. 5 s rides that out. ttl = 1 + 2 × 5 + 1 = 12,
 * the smallest the rule allows with a second to spare. On a newer Patroni ttl becomes
 * 20: everything still works, a failover just takes longer.
 *
 * Expected failover after the primary is lost: its key expires ttl after its last
 * renewal (0–1 s before the loss), the sync standby sees it at its next loop, takes the
 * key and promotes (~1 s): about 11–14 s from the loss to a promoted primary (measured:
 * 11–18 s on a 2-CPU machine), and a few
 * seconds more to its first commit (strict mode: the remaining replica must follow it
 * and be named its sync standby first). A primary whose Patroni is cut off (frozen) is
 * replaced in the same time; its PostgreSQL still runs as primary, but strict
 * synchronous replication keeps any commit there from returning plainly (the fault test).
 */
export const DEFAULT_TIMING: PatroniTiming = { ttl: 12, loopWait: 1, retryTimeout: 5 };

// ---------------------------------------------------------------------------------------
// Installed software

export interface PatroniInstallation {
  readonly patroni: string;
  readonly etcd: string;
  /** Directory of initdb, postgres, pg_rewind, pg_basebackup. */
  readonly postgresBin: string;
}

/** Where patroni, etcd and PostgreSQL's server binaries are; throws, naming the packages, if any is missing. */
export function ensurePatroniInstalled(): PatroniInstallation {
  const pathDirs = [...(process.env["PATH"] ?? "").split(delimiter).filter(Boolean), "/usr/bin", "/usr/sbin"];
  const which = (name: string) => pathDirs.map((d) => join(d, name)).find((f) => existsSync(f));
  const patroni = which("patroni");
  const etcd = which("etcd");
  const postgresBin = findPostgresBin(pathDirs);
  const missing = [
    patroni ? undefined : "patroni",
    etcd ? undefined : "etcd (package etcd-server)",
    postgresBin ? undefined : "PostgreSQL server binaries (package postgresql)",
  ].filter((m): m is string => m !== undefined);
  if (missing.length > 0 || !patroni || !etcd || !postgresBin) {
    throw new Error(
      `cannot run a Patroni cluster: ${missing.join(", ")} not found. On Debian: apt-get install -y patroni etcd-server postgresql`,
    );
  }
  return { patroni, etcd, postgresBin };
}

/** Debian's newest /usr/lib/postgresql/<version>/bin, else a PATH directory with initdb and pg_ctl (as test/support/postgres-server.ts). */
function findPostgresBin(pathDirs: readonly string[]): string | undefined {
  const debianRoot = "/usr/lib/postgresql";
  let versions: string[] = [];
  try {
    versions = readdirSync(debianRoot);
  } catch {
    // Not Debian's layout.
  }
  const debianBins = versions
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    .map((v) => join(debianRoot, v, "bin"));
  return [...debianBins, ...pathDirs].find((d) => existsSync(join(d, "initdb")) && existsSync(join(d, "pg_rewind")));
}

// ---------------------------------------------------------------------------------------
// Processes, read from /proc (Linux only, like the rest of the harness: netns, runuser)

interface ProcEntry {
  readonly ppid: number;
  /** R, S, T (stopped), Z (zombie), … */
  readonly state: string;
}

function processTable(): Map<number, ProcEntry> {
  const table = new Map<number, ProcEntry>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const entry = procEntry(Number(name));
    if (entry) table.set(Number(name), entry);
  }
  return table;
}

function procEntry(pid: number): ProcEntry | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // "pid (comm) S ppid …": comm may hold spaces and parentheses, so read after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0] ?? "?", ppid: Number(fields[1]) };
  } catch {
    return undefined;
  }
}

/**
 * Alive, and not a zombie: a postmaster is reparented to PID 1 (Patroni starts it in a
 * session of its own), and where PID 1 does not reap (some containers) a killed one
 * stays in /proc as a zombie.
 */
function isAlive(pid: number): boolean {
  const entry = procEntry(pid);
  return entry !== undefined && entry.state !== "Z" && entry.state !== "X";
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
  } catch {
    return "";
  }
}

/**
 * The process that really is the member, under whatever we spawned (the wrap prefix and
 * `runuser` may each stay as a parent): the deepest descendant of `root` whose command
 * line names `marker` (its configuration file or data directory), which no helper
 * Patroni forks (a postmaster, pg_rewind, a multiprocessing child) does.
 */
function memberProcess(root: number, marker: string): number | undefined {
  const table = processTable();
  const children = new Map<number, number[]>();
  for (const [pid, entry] of table) children.set(entry.ppid, [...(children.get(entry.ppid) ?? []), pid]);
  let best: { pid: number; depth: number } | undefined;
  const queue: Array<{ pid: number; depth: number }> = [{ pid: root, depth: 0 }];
  while (queue.length > 0) {
    const { pid, depth } = queue.shift()!;
    const entry = table.get(pid);
    if (entry && entry.state !== "Z" && cmdline(pid).includes(marker) && (!best || depth > best.depth)) best = { pid, depth };
    for (const child of children.get(pid) ?? []) queue.push({ pid: child, depth: depth + 1 });
  }
  return best?.pid;
}

/** The postmaster of `dataDir` if one runs (postmaster.pid names it; a stale file names a dead or foreign pid). */
function postmasterOf(dataDir: string): number | undefined {
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0] ?? "", 10);
  } catch {
    return undefined;
  }
  return Number.isInteger(pid) && pid > 0 && isAlive(pid) && cmdline(pid).includes(dataDir) ? pid : undefined;
}

/** The postmaster and every process it forked (backends, walsender, walreceiver, checkpointer, …). */
function postgresProcesses(dataDir: string): number[] {
  const postmaster = postmasterOf(dataDir);
  if (postmaster === undefined) return [];
  const children = [...processTable()].filter(([, e]) => e.ppid === postmaster && e.state !== "Z").map(([pid]) => pid);
  return [postmaster, ...children];
}

function signal(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, sig);
  } catch {
    // Gone already.
  }
}

// ---------------------------------------------------------------------------------------
// Ports

/**
 * A port for a member to listen on. Not from the kernel's ephemeral range (what listen(0)
 * and outgoing connections draw from, so a port found free there can be taken before the
 * member binds it; test/support/free-port.ts tells the story), chosen at random above
 * 10000, and bound once to check when `host` is an address of this namespace. An address
 * of another namespace (the multi-region script) cannot be checked from here: its port is
 * taken on trust.
 */
async function pickPort(host: string, taken: Set<number>): Promise<number> {
  const floor = 10_000;
  let ceiling = 32_768;
  try {
    ceiling = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || ceiling;
  } catch {
    // Not Linux: the usual default.
  }
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = floor + Math.floor(Math.random() * (ceiling - floor));
    if (taken.has(port)) continue;
    const refusal = await bindRefusal(host, port);
    if (refusal === undefined || refusal === "EADDRNOTAVAIL") {
      taken.add(port);
      return port;
    }
  }
  throw new Error(`no free TCP port on ${host} between ${floor} and ${ceiling}`);
}

/** Why `port` cannot be bound on `host` now ("EADDRINUSE", "EADDRNOTAVAIL", …); undefined if it can. */
function bindRefusal(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolvePromise) => {
    const probe = net.createServer();
    probe.once("error", (error: NodeJS.ErrnoException) => resolvePromise(error.code ?? "error"));
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolvePromise(undefined)));
  });
}

// ---------------------------------------------------------------------------------------
// Layout

interface Layout {
  readonly version: 1;
  readonly scope: string;
  readonly token: string;
  readonly timing: PatroniTiming;
  readonly members: ReadonlyArray<{ name: string; host: string; pgPort: number; restApiPort: number }>;
  readonly etcd: ReadonlyArray<{ name: string; host: string; clientPort: number; peerPort: number }>;
}

function hostPort(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/** pg_hba's address for a host: one address exactly, or a name as it is. */
function hbaAddress(host: string): string {
  if (net.isIPv4(host)) return `${host}/32`;
  if (net.isIPv6(host)) return `${host}/128`;
  return host;
}

// ---------------------------------------------------------------------------------------
// The cluster

/**
 * What the members inherit from our environment: only what runs them. Both read settings
 * from the environment (etcd every ETCD_* variable as a flag, Patroni every PATRONI_*,
 * libpq every PG*), and a CI's or a developer's variables must not reconfigure them.
 */
const INHERITED = /^(PATH|LANG|LC_[A-Z]+|TZ|TMPDIR)$/;

interface Running {
  readonly child: ChildProcess;
  /** Resolves when the spawned process (the wrap prefix, runuser, or the member itself) has exited. */
  readonly exited: Promise<void>;
}

export async function startPatroniCluster(options: PatroniClusterOptions): Promise<PatroniCluster> {
  const installed = ensurePatroniInstalled();
  const log = options.log ?? (() => {});
  const dir = resolve(options.dir);
  const asRoot = process.getuid?.() === 0;
  mkdirSync(join(dir, "logs"), { recursive: true });

  const etcdApi = options.etcdApi ?? "v2";
  const layout = await decideLayout(dir, options);
  const restarting = layout.etcd.some((e) => existsSync(join(dir, e.name, "member")));
  writeFileSync(join(dir, "cluster.json"), `${JSON.stringify(layout, null, 2)}\n`);
  killLeftovers(dir, layout);

  const members: MemberInfo[] = layout.members.map((m, index) => ({
    name: m.name,
    index,
    host: m.host,
    pgPort: m.pgPort,
    restApiPort: m.restApiPort,
    apiUrl: `http://${hostPort(m.host, m.restApiPort)}`,
    dataDir: join(dir, m.name, "data"),
    patroniLog: join(dir, "logs", `${m.name}.patroni.log`),
    postgresLog: join(dir, "logs", `${m.name}.postgres.log`),
  }));
  const etcd: EtcdInfo[] = layout.etcd.map((e, index) => ({
    name: e.name,
    index,
    host: e.host,
    clientPort: e.clientPort,
    peerPort: e.peerPort,
    clientUrl: `http://${hostPort(e.host, e.clientPort)}`,
    dataDir: join(dir, e.name),
    log: join(dir, "logs", `${e.name}.log`),
  }));
  const byName = (name: string): MemberInfo => {
    const member = members.find((m) => m.name === name);
    if (!member) throw new Error(`no member named ${JSON.stringify(name)} (members: ${members.map((m) => m.name).join(", ")})`);
    return member;
  };
  const configFile = (m: MemberInfo) => join(dir, m.name, "patroni.yml");

  for (const m of members) {
    mkdirSync(join(dir, m.name), { recursive: true });
    writeFileSync(configFile(m), patroniConfig(m, members, etcd, layout, dir, installed.postgresBin, options.trustedNetworks ?? [], etcdApi));
  }
  if (asRoot) {
    // PostgreSQL refuses to run as root, so the members run as `postgres`, which must own
    // everything under dir and be able to reach it (a dir under /root is closed to it).
    execFileSync("chown", ["-R", "postgres:postgres", dir]);
    try {
      execFileSync("runuser", ["-u", "postgres", "--", "test", "-w", dir], { stdio: "ignore" });
    } catch {
      throw new Error(`the postgres user cannot write ${dir}: choose a directory it can reach (under /tmp, say)`);
    }
  }

  const patroni = new Map<string, Running>();
  const etcdRunning = new Map<number, Running>();
  const frozen = new Set<number>();
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => INHERITED.test(k)));

  /** Spawns member i: [wrap…] [runuser -u postgres --] argv, its output appended to `logFile`. */
  const launch = (i: number, role: MemberRole, argv: string[], logFile: string, label: string): Running => {
    const command = [...(options.wrap?.(i, role) ?? []), ...(asRoot ? ["runuser", "-u", "postgres", "--"] : []), ...argv];
    const fd = openSync(logFile, "a");
    writeFileSync(fd, `\n===== ${new Date().toISOString()} started by the harness: ${command.join(" ")}\n`);
    let child: ChildProcess;
    try {
      // A process group of its own (detached): the harness decides when and how each
      // member stops (a terminal's Ctrl-C reaches only us, and stop() runs in order), and
      // a kill of the group takes the wrap prefix and runuser with the member.
      child = spawn(command[0]!, command.slice(1), { cwd: dir, env, detached: true, stdio: ["ignore", fd, fd] });
    } finally {
      closeSync(fd);
    }
    const exited = new Promise<void>((resolveExit) => {
      child.once("exit", (code, sig) => {
        log(`${label} exited (${sig ?? `code ${code}`})`);
        resolveExit();
      });
      child.once("error", (error) => {
        log(`${label} could not start: ${error.message}`);
        resolveExit();
      });
    });
    log(`${label} started (pid ${child.pid})`);
    return { child, exited };
  };

  const recordPids = () => {
    const pids = [...patroni.values(), ...etcdRunning.values()].map((r) => r.child.pid).filter((p) => p !== undefined);
    writeFileSync(join(dir, "run.json"), `${JSON.stringify({ pids }, null, 2)}\n`);
  };

  const spawnEtcd = (e: EtcdInfo, state: "new" | "existing") => {
    const argv = [
      installed.etcd,
      `--name=${e.name}`,
      `--data-dir=${e.dataDir}`,
      `--listen-client-urls=${e.clientUrl}`,
      `--advertise-client-urls=${e.clientUrl}`,
      `--listen-peer-urls=http://${hostPort(e.host, e.peerPort)}`,
      `--initial-advertise-peer-urls=http://${hostPort(e.host, e.peerPort)}`,
      `--initial-cluster=${etcd.map((x) => `${x.name}=http://${hostPort(x.host, x.peerPort)}`).join(",")}`,
      `--initial-cluster-state=${state}`,
      `--initial-cluster-token=${layout.token}`,
      // For Patroni's `etcd:` (v2) client; see PatroniClusterOptions.etcdApi.
      ...(etcdApi === "v2" ? ["--enable-v2=true"] : []),
    ];
    etcdRunning.set(e.index, launch(e.index, "etcd", argv, e.log, e.name));
    recordPids();
  };

  const spawnPatroni = (m: MemberInfo) => {
    patroni.set(m.name, launch(m.index, "postgres", [installed.patroni, configFile(m)], m.patroniLog, m.name));
    recordPids();
  };

  const patroniPid = (m: MemberInfo): number | undefined => {
    const running = patroni.get(m.name);
    return running?.child.pid === undefined ? undefined : memberProcess(running.child.pid, configFile(m));
  };

  // ---- logs, for error messages that explain a CI failure on their own

  const tail = async (file: string, lines: number): Promise<string> => {
    try {
      const handle = await open(file, "r");
      try {
        const { size } = await handle.stat();
        const length = Math.min(size, 64 * 1024);
        const buffer = Buffer.alloc(length);
        await handle.read(buffer, 0, length, size - length);
        return buffer.toString("utf8").split("\n").slice(-lines - 1).join("\n");
      } finally {
        await handle.close();
      }
    } catch {
      return "(no log)";
    }
  };
  const logTails = async (lines = 25, which: ReadonlyArray<"patroni" | "postgres" | "etcd"> = ["patroni", "postgres", "etcd"]) => {
    const files = [
      ...(which.includes("patroni") ? members.map((m) => m.patroniLog) : []),
      ...(which.includes("postgres") ? members.map((m) => m.postgresLog) : []),
      ...(which.includes("etcd") ? etcd.map((e) => e.log) : []),
    ];
    const parts = await Promise.all(files.map(async (f) => `--- ${f} (last ${lines} lines)\n${await tail(f, lines)}`));
    return parts.join("\n");
  };

  /** Polls `probe` until it returns a value; on timeout, throws with what it last saw and the logs. */
  const waitFor = async <T>(
    what: string,
    timeoutMs: number,
    probe: () => Promise<{ value?: T; seen: string }>,
    logs: ReadonlyArray<"patroni" | "postgres" | "etcd"> = ["patroni", "postgres", "etcd"],
  ): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    let seen = "nothing yet";
    for (;;) {
      try {
        const result = await probe();
        if (result.value !== undefined) return result.value;
        seen = result.seen;
      } catch (error) {
        seen = error instanceof Error ? error.message : String(error);
      }
      if (Date.now() >= deadline) {
        throw new Error(`${what}: not within ${timeoutMs} ms. Last seen: ${seen}\n${await logTails(30, logs)}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  // ---- REST

  /** GET a member's Patroni REST API; a frozen Patroni accepts the connection and never answers, so every call has a deadline. */
  const getJson = async (url: string, timeoutMs = 1_500): Promise<{ status: number; body: unknown }> => {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // Not JSON: keep the text.
    }
    return { status: response.status, body };
  };

  const state = async (): Promise<ClusterState> => {
    let answer: { from: MemberInfo; body: { members?: MemberState[] } };
    try {
      // Whichever answers first: each reads the same etcd, and some may be down or frozen.
      answer = await Promise.any(
        members.map(async (m) => {
          const { status, body } = await getJson(`${m.apiUrl}/cluster`);
          if (status !== 200 || typeof body !== "object" || body === null) throw new Error(`${m.name}: HTTP ${status}`);
          return { from: m, body: body as { members?: MemberState[] } };
        }),
      );
    } catch {
      throw new Error("no Patroni REST API answered GET /cluster");
    }
    const reported = answer.body.members ?? [];
    const leader = reported.find((m) => m.role === "leader")?.name;
    let streaming: string[] | undefined;
    if (leader !== undefined) {
      try {
        const { body } = await getJson(`${byName(leader).apiUrl}/patroni`);
        const replication = (body as { replication?: Array<{ application_name?: string; state?: string }> }).replication ?? [];
        streaming = replication.filter((r) => r.state === "streaming").map((r) => r.application_name ?? "");
      } catch {
        streaming = undefined;
      }
    }
    return {
      members: reported,
      leader,
      syncStandbys: reported.filter((m) => m.role === "sync_standby").map((m) => m.name),
      streaming,
      reportedBy: answer.from.name,
    };
  };

  const describe = (s: ClusterState) =>
    `${s.members.map((m) => `${m.name} ${m.role} ${m.state}${m.lag !== undefined ? ` lag ${m.lag}` : ""}${m.timeline !== undefined ? ` tl ${m.timeline}` : ""}`).join("; ")}` +
    `; streaming to [${s.streaming?.join(", ") ?? "?"}] (as ${s.reportedBy} sees it)`;

  const waitHealthy = (timeoutMs = 60_000) =>
    waitFor("the Patroni cluster to be healthy (a leader, every member running and streaming, a sync standby)", timeoutMs, async () => {
      const s = await state();
      const running = (name: string) => ["running", "streaming"].includes(s.members.find((m) => m.name === name)?.state ?? "");
      const healthy =
        s.leader !== undefined &&
        members.every((m) => running(m.name)) &&
        s.syncStandbys.length >= 1 &&
        members.every((m) => m.name === s.leader || (s.streaming ?? []).includes(m.name));
      return { value: healthy ? s : undefined, seen: describe(s) };
    });

  /**
   * A leader in etcd is not yet a primary: it promotes after taking the key. Nor does
   * GET /primary tell (Patroni 3.0.2 answers 200 as soon as it holds the key, before
   * promotion ends); GET /patroni's role does, read from pg_is_in_recovery(): "master"
   * (Patroni 3.0) or "primary" (later versions).
   */
  const waitForLeader = ({ not, timeoutMs = 60_000 }: { not?: string; timeoutMs?: number } = {}) =>
    waitFor(`a leader${not ? ` other than ${not}` : ""} serving as primary`, timeoutMs, async () => {
      const s = await state();
      if (s.leader === undefined || s.leader === not) return { seen: describe(s) };
      const { body } = await getJson(`${byName(s.leader).apiUrl}/patroni`);
      const { role, state: pgState } = body as { role?: string; state?: string };
      const promoted = (role === "master" || role === "primary") && pgState === "running";
      return { value: promoted ? s.leader : undefined, seen: `${describe(s)}; ${s.leader}'s PostgreSQL: ${role} ${pgState}` };
    }, ["patroni", "postgres"]);

  const etcdLeader = async (): Promise<number | undefined> => {
    for (const e of etcd) {
      try {
        const response = await fetch(`${e.clientUrl}/v3/maintenance/status`, { method: "POST", body: "{}", signal: AbortSignal.timeout(1_000) });
        const status = (await response.json()) as { header?: { member_id?: string }; leader?: string };
        if (!status.leader || status.leader === "0") continue;
        if (status.header?.member_id === status.leader) return e.index;
        // Another member leads: ask each which it is (ids are uint64, carried as strings).
        for (const other of etcd) {
          if (other === e) continue;
          try {
            const r = await fetch(`${other.clientUrl}/v3/maintenance/status`, { method: "POST", body: "{}", signal: AbortSignal.timeout(1_000) });
            const s = (await r.json()) as { header?: { member_id?: string } };
            if (s.header?.member_id === status.leader) return other.index;
          } catch {
            // Down: not the leader it names, or not answering.
          }
        }
      } catch {
        // Down or frozen: ask the next.
      }
    }
    return undefined;
  };

  const waitEtcdHealthy = (members: readonly EtcdInfo[], timeoutMs: number) =>
    waitFor(`etcd ${members.map((e) => e.name).join(", ")} to be healthy`, timeoutMs, async () => {
      const answers = await Promise.all(
        members.map(async (e) => {
          try {
            const { body } = await getJson(`${e.clientUrl}/health`, 1_000);
            return { e, ok: (body as { health?: string }).health === "true", text: JSON.stringify(body) };
          } catch (error) {
            return { e, ok: false, text: error instanceof Error ? error.message : String(error) };
          }
        }),
      );
      return { value: answers.every((a) => a.ok) ? true : undefined, seen: answers.map((a) => `${a.e.name}: ${a.text}`).join("; ") };
    }, ["etcd"]);

  // ---- faults

  const waitGone = (pids: readonly number[], what: string) =>
    waitFor(`${what} to be gone`, 10_000, async () => {
      const left = pids.filter(isAlive);
      return { value: left.length === 0 ? true : undefined, seen: `still alive: ${left.join(", ")}` };
    }, []);

  /** SIGKILL Patroni (its whole process group: wrap prefix, runuser) first, so it cannot restart PostgreSQL, then PostgreSQL. */
  const killMemberSync = (m: MemberInfo): number[] => {
    const running = patroni.get(m.name);
    const pids: number[] = [];
    if (running?.child.pid !== undefined) {
      const real = memberProcess(running.child.pid, configFile(m));
      signal(-running.child.pid, "SIGKILL");
      signal(real, "SIGKILL");
      if (real !== undefined) pids.push(real);
    }
    const pg = postgresProcesses(m.dataDir);
    for (const pid of pg) signal(pid, "SIGKILL");
    pids.push(...pg);
    for (const pid of pids) frozen.delete(pid);
    return pids;
  };

  const killEtcdSync = (i: number): number[] => {
    const running = etcdRunning.get(i);
    if (running?.child.pid === undefined) return [];
    const real = memberProcess(running.child.pid, `--data-dir=${etcd[i]!.dataDir}`);
    signal(-running.child.pid, "SIGKILL");
    signal(real, "SIGKILL");
    if (real !== undefined) frozen.delete(real);
    return real === undefined ? [] : [real];
  };

  const killMember = async (name: string) => {
    const m = byName(name);
    const running = patroni.get(name);
    const pids = killMemberSync(m);
    log(`${name}: Patroni and PostgreSQL killed (pids ${pids.join(", ")})`);
    await waitGone(pids, `${name}'s processes`);
    await running?.exited;
    patroni.delete(name);
  };

  const startMember = async (name: string) => {
    const m = byName(name);
    if (patroni.has(name)) throw new Error(`${name}'s Patroni is running already`);
    spawnPatroni(m);
    // Started means its REST API answers; rejoining (pg_rewind, a fresh clone) is waitHealthy's business.
    await waitFor(`${name}'s Patroni REST API`, 30_000, async () => {
      const { status } = await getJson(`${m.apiUrl}/patroni`);
      return { value: true, seen: `HTTP ${status}` };
    }, ["patroni"]);
  };

  const freezePatroni = (name: string) => {
    const pid = patroniPid(byName(name));
    if (pid === undefined) throw new Error(`${name}'s Patroni is not running`);
    signal(pid, "SIGSTOP");
    frozen.add(pid);
    log(`${name}: Patroni frozen (SIGSTOP ${pid}); its PostgreSQL runs on`);
  };
  const thawPatroni = (name: string) => {
    const pid = patroniPid(byName(name));
    signal(pid, "SIGCONT");
    if (pid !== undefined) frozen.delete(pid);
    log(`${name}: Patroni thawed (SIGCONT ${pid})`);
  };
  const freezePostgres = (name: string) => {
    const m = byName(name);
    // The postmaster first, so that it forks nothing new while its children are stopped.
    const pids = postgresProcesses(m.dataDir);
    if (pids.length === 0) throw new Error(`${name}'s PostgreSQL is not running`);
    for (const pid of pids) {
      signal(pid, "SIGSTOP");
      frozen.add(pid);
    }
    log(`${name}: PostgreSQL frozen (SIGSTOP ${pids.join(", ")})`);
  };
  const thawPostgres = (name: string) => {
    const pids = postgresProcesses(byName(name).dataDir);
    for (const pid of pids.reverse()) {
      signal(pid, "SIGCONT");
      frozen.delete(pid);
    }
    log(`${name}: PostgreSQL thawed (SIGCONT ${pids.join(", ")})`);
  };

  const killEtcd = async (i: number) => {
    if (!etcd[i]) throw new Error(`no etcd member ${i} (0..${etcd.length - 1})`);
    const running = etcdRunning.get(i);
    const pids = killEtcdSync(i);
    log(`${etcd[i].name}: killed (pids ${pids.join(", ")})`);
    await waitGone(pids, `${etcd[i].name}`);
    await running?.exited;
    etcdRunning.delete(i);
  };

  const startEtcd = async (i: number) => {
    const e = etcd[i];
    if (!e) throw new Error(`no etcd member ${i} (0..${etcd.length - 1})`);
    if (etcdRunning.has(i)) throw new Error(`${e.name} is running already`);
    spawnEtcd(e, existsSync(join(e.dataDir, "member")) ? "existing" : "new");
    await waitEtcdHealthy([e], 30_000);
  };

  // ---- stopping

  const killAllSync = () => {
    for (const m of members) killMemberSync(m);
    for (const e of etcd) killEtcdSync(e.index);
  };
  // The last resort when the Node process exits without stop(): synchronous, so it runs
  // in an "exit" listener, and SIGKILL, which needs no answer (and ends a SIGSTOPped
  // process too). No member may outlive us holding its ports.
  const onExit = () => {
    killAllSync();
    if (!options.keep) rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", onExit);
  // A signal that would end the process without an "exit" event (SIGTERM, SIGINT, SIGHUP
  // with no handler: a test run stopped, a CI watchdog): when nobody else listens for it,
  // the members go first, then the signal does what it would have done. A program with
  // a handler of its own (hello start stops the cluster itself, gently) is left to it.
  const onSignal = (sig: NodeJS.Signals) => {
    if (process.listenerCount(sig) > 1) return;
    onExit();
    process.removeListener(sig, onSignal);
    process.kill(process.pid, sig);
  };
  const SIGNALS = ["SIGTERM", "SIGINT", "SIGHUP"] as const;
  for (const sig of SIGNALS) process.on(sig, onSignal);

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // Nothing answers a signal while stopped.
    for (const pid of frozen) signal(pid, "SIGCONT");
    frozen.clear();
    if (options.keep) {
      // Data is kept, so shut down as an operator would: Patroni stops PostgreSQL cleanly
      // (replicas first, the leader last, so that nobody takes over meanwhile), then etcd.
      const leader = await state().then((s) => s.leader, () => undefined);
      const order = [...members.filter((m) => m.name !== leader), ...members.filter((m) => m.name === leader)];
      for (const m of order) {
        const pid = patroniPid(m);
        if (pid === undefined) continue;
        signal(pid, "SIGTERM");
        await waitGone([pid, ...postgresProcesses(m.dataDir)], `${m.name} (stopping)`).catch(() => log(`${m.name}: did not stop in time, killing`));
      }
      for (const e of etcd) {
        const running = etcdRunning.get(e.index);
        const pid = running?.child.pid === undefined ? undefined : memberProcess(running.child.pid, `--data-dir=${e.dataDir}`);
        signal(pid, "SIGTERM");
      }
      const etcdPids = etcd.flatMap((e) => {
        const running = etcdRunning.get(e.index);
        const pid = running?.child.pid === undefined ? undefined : memberProcess(running.child.pid, `--data-dir=${e.dataDir}`);
        return pid === undefined ? [] : [pid];
      });
      // etcd's leader tries to hand over its leadership before exiting, which takes a few
      // seconds when its peers are going too.
      await waitGone(etcdPids, "etcd (stopping)").catch(() => log("etcd did not stop in time, killing"));
    }
    // Throwaway data: no need to be gentle. And whatever did not stop above.
    const pids = [...members.flatMap((m) => killMemberSync(m)), ...etcd.flatMap((e) => killEtcdSync(e.index))];
    await waitGone(pids, "the cluster's processes").catch((error: Error) => log(error.message));
    await Promise.all([...patroni.values(), ...etcdRunning.values()].map((r) => r.exited));
    patroni.clear();
    etcdRunning.clear();
    process.removeListener("exit", onExit);
    for (const sig of SIGNALS) process.removeListener(sig, onSignal);
    if (options.keep) rmSync(join(dir, "run.json"), { force: true });
    else rmSync(dir, { recursive: true, force: true });
    log("cluster stopped");
  };

  // ---- start

  const started = Date.now();
  const timeoutMs = options.startTimeoutMs ?? 120_000;
  try {
    for (const e of etcd) spawnEtcd(e, restarting ? "existing" : "new");
    // A new etcd cluster forms only once a majority of its members have met.
    await waitEtcdHealthy(etcd, Math.min(timeoutMs, 30_000));
    // All at once: they race for the initialize key, one runs initdb and the others clone it.
    for (const m of members) spawnPatroni(m);
    await waitHealthy(Math.max(timeoutMs - (Date.now() - started), 10_000));
  } catch (error) {
    await stop().catch(() => {});
    throw error;
  }
  log(`cluster ${restarting ? "restarted" : "bootstrapped"} in ${Date.now() - started} ms`);

  const url =
    `postgresql://postgres@${members.map((m) => hostPort(m.host, m.pgPort)).join(",")}/postgres` + `?target_session_attrs=read-write`;

  return {
    url,
    members,
    etcd,
    timing: layout.timing,
    dir,
    memberUrl: (name) => {
      const m = byName(name);
      return `postgresql://postgres@${hostPort(m.host, m.pgPort)}/postgres`;
    },
    state,
    leader: async () => (await state()).leader,
    etcdLeader,
    waitHealthy,
    waitForLeader,
    killMember,
    startMember,
    freezePatroni,
    thawPatroni,
    freezePostgres,
    thawPostgres,
    killEtcd,
    startEtcd,
    pids: (name) => {
      const m = byName(name);
      return { patroni: patroniPid(m), postmaster: postmasterOf(m.dataDir) };
    },
    logTails: (lines) => logTails(lines),
    stop,
  };
}

/**
 * Names, hosts and ports: those a kept cluster in `dir` was made with (etcd's membership
 * and Patroni's member records name them, so they cannot change), else new ones from the
 * options, fixed ports checked and the others chosen free.
 */
async function decideLayout(dir: string, options: PatroniClusterOptions): Promise<Layout> {
  const file = join(dir, "cluster.json");
  const memberCount = options.members ?? 3;
  const etcdCount = options.etcdMembers ?? 3;
  if (existsSync(file)) {
    const previous = JSON.parse(readFileSync(file, "utf8")) as Layout;
    const hasData = previous.etcd.some((e) => existsSync(join(dir, e.name, "member")));
    if (hasData) {
      const conflicts = [
        options.members !== undefined && options.members !== previous.members.length ? `members ${previous.members.length}` : "",
        options.etcdMembers !== undefined && options.etcdMembers !== previous.etcd.length ? `etcdMembers ${previous.etcd.length}` : "",
        ...(["postgres", "restApi", "etcdClient", "etcdPeer"] as const).map((kind) => {
          const wanted = options.ports?.[kind];
          const had =
            kind === "postgres" ? previous.members.map((m) => m.pgPort)
            : kind === "restApi" ? previous.members.map((m) => m.restApiPort)
            : kind === "etcdClient" ? previous.etcd.map((e) => e.clientPort)
            : previous.etcd.map((e) => e.peerPort);
          return wanted && wanted.some((p, i) => p !== had[i]) ? `ports.${kind} ${had.join(",")}` : "";
        }),
      ].filter(Boolean);
      if (conflicts.length > 0) {
        throw new Error(`${dir} holds a cluster made with ${conflicts.join("; ")}: start it with those, or remove the directory`);
      }
      return previous;
    }
  }
  if (!Number.isInteger(memberCount) || memberCount < 2) {
    throw new Error("members must be at least 2: strict synchronous replication needs a standby to acknowledge every commit");
  }
  if (!Number.isInteger(etcdCount) || etcdCount < 1) throw new Error("etcdMembers must be at least 1");

  const timing: PatroniTiming = { ...DEFAULT_TIMING, ...options.timing };
  if (timing.loopWait + 2 * timing.retryTimeout > timing.ttl) {
    throw new Error(`Patroni requires loop_wait + 2 × retry_timeout ≤ ttl (got ${timing.loopWait} + 2 × ${timing.retryTimeout} > ${timing.ttl})`);
  }
  const hostOf = (i: number, role: MemberRole) =>
    typeof options.host === "function" ? options.host(i, role) : (options.host ?? "127.0.0.1");
  const taken = new Set<number>([
    ...(options.ports?.postgres ?? []),
    ...(options.ports?.restApi ?? []),
    ...(options.ports?.etcdClient ?? []),
    ...(options.ports?.etcdPeer ?? []),
  ]);
  const port = async (fixed: readonly number[] | undefined, i: number, host: string, what: string) => {
    const wanted = fixed?.[i];
    if (wanted === undefined) return pickPort(host, taken);
    const refusal = await bindRefusal(host, wanted);
    if (refusal !== undefined && refusal !== "EADDRNOTAVAIL") throw new Error(`port ${wanted} (${what}) cannot be listened on at ${host}: ${refusal}`);
    return wanted;
  };
  const etcd = [];
  for (let i = 0; i < etcdCount; i++) {
    const host = hostOf(i, "etcd");
    etcd.push({
      name: `etcd${i + 1}`,
      host,
      clientPort: await port(options.ports?.etcdClient, i, host, `etcd${i + 1} client`),
      peerPort: await port(options.ports?.etcdPeer, i, host, `etcd${i + 1} peer`),
    });
  }
  const members = [];
  for (let i = 0; i < memberCount; i++) {
    const host = hostOf(i, "postgres");
    members.push({
      name: `pg${i + 1}`,
      host,
      pgPort: await port(options.ports?.postgres, i, host, `pg${i + 1} PostgreSQL`),
      restApiPort: await port(options.ports?.restApi, i, host, `pg${i + 1} Patroni REST API`),
    });
  }
  return {
    version: 1,
    scope: options.scope ?? "hello-mesh",
    // etcd refuses peers from another cluster that happen to use the same ports.
    token: `hello-mesh-${randomBytes(6).toString("hex")}`,
    timing,
    members,
    etcd,
  };
}

/**
 * A previous run in this dir that ended without stop() (SIGKILLed, a power cut of the
 * dev machine) may have left members running: they would hold the ports and the data
 * directories. Only processes whose command line names this dir are touched.
 */
function killLeftovers(dir: string, layout: Layout): void {
  let pids: number[] = [];
  try {
    pids = (JSON.parse(readFileSync(join(dir, "run.json"), "utf8")) as { pids?: number[] }).pids ?? [];
  } catch {
    return;
  }
  const table = processTable();
  const doomed = new Set<number>();
  // The spawned processes and everything under them that is still about.
  const collect = (pid: number) => {
    if (doomed.has(pid) || !cmdline(pid).includes(dir)) return;
    doomed.add(pid);
    for (const [child, entry] of table) if (entry.ppid === pid) collect(child);
  };
  for (const pid of pids) collect(pid);
  for (const m of layout.members) for (const pid of postgresProcesses(join(dir, m.name, "data"))) doomed.add(pid);
  for (const pid of doomed) signal(pid, "SIGKILL");
}

/**
 * Patroni's configuration for member `m` (JSON, which is YAML: Patroni reads it with
 * yaml.safe_load). Only `bootstrap.dcs` is shared through etcd, and only when the
 * cluster is first made.
 */
function patroniConfig(
  m: MemberInfo,
  members: readonly MemberInfo[],
  etcd: readonly EtcdInfo[],
  layout: Layout,
  dir: string,
  postgresBin: string,
  trustedNetworks: readonly string[],
  etcdApi: "v2" | "v3",
): string {
  const memberDir = join(dir, m.name);
  // A Unix socket path holds at most 107 bytes; a long dir gets no socket (TCP is all we use).
  const socketDir = `${memberDir}/.s.PGSQL.${m.pgPort}`.length <= 100 ? memberDir : "";
  const networks = [...new Set(["127.0.0.1/32", "::1/128", ...members.map((x) => hbaAddress(x.host)), ...trustedNetworks])];
  const config = {
    scope: layout.scope,
    namespace: "/service/",
    name: m.name,
    log: { level: "INFO" },
    restapi: { listen: hostPort(m.host, m.restApiPort), connect_address: hostPort(m.host, m.restApiPort) },
    // Every etcd member is listed, so Patroni moves to another when one is lost.
    [etcdApi === "v3" ? "etcd3" : "etcd"]: { hosts: etcd.map((e) => hostPort(e.host, e.clientPort)) },
    bootstrap: {
      dcs: {
        ttl: layout.timing.ttl,
        loop_wait: layout.timing.loopWait,
        retry_timeout: layout.timing.retryTimeout,
        maximum_lag_on_failover: 1_048_576,
        // An acknowledged commit is on the sync standby too, so losing the primary loses
        // no acknowledged write. Strict: with no standby left, commits wait rather than
        // go on without one (Patroni never turns synchronous replication off).
        synchronous_mode: true,
        synchronous_mode_strict: true,
        synchronous_node_count: 1,
        postgresql: {
          // A primary that was cut off and wrote alone must be rewound to rejoin.
          use_pg_rewind: true,
          use_slots: true,
          parameters: {
            wal_level: "replica",
            hot_standby: "on",
            // pg_rewind needs hint-bit changes in the WAL (or data checksums, which
            // initdb below enables too) and full-page writes (on by default).
            wal_log_hints: "on",
            max_wal_senders: 10,
            max_replication_slots: 10,
            wal_keep_size: "128MB",
            // The faults here are process kills and stops, not power cuts: the kernel
            // keeps what PostgreSQL wrote, so fsync buys nothing but slowness.
            fsync: "off",
            synchronous_commit: "on",
            // A hung (SIGSTOPped) standby keeps its TCP connection open: the primary
            // notices only by these timeouts (60 s by default), and until then a frozen
            // sync standby holds every commit.
            wal_sender_timeout: "10s",
            wal_receiver_timeout: "10s",
          },
        },
      },
      initdb: [{ encoding: "UTF8" }, { locale: "C" }, "data-checksums"],
    },
    postgresql: {
      listen: hostPort(m.host, m.pgPort).replace(/^\[(.*)\]/, "$1"),
      connect_address: hostPort(m.host, m.pgPort),
      data_dir: m.dataDir,
      bin_dir: postgresBin,
      pgpass: join(memberDir, "pgpass"),
      // A member that cannot be rewound (or whose timeline diverged past rewinding) is
      // cloned afresh instead of staying out of the cluster: its data is a copy anyway.
      remove_data_directory_on_rewind_failure: true,
      remove_data_directory_on_diverged_timelines: true,
      authentication: {
        superuser: { username: "postgres" },
        replication: { username: "replicator" },
      },
      parameters: {
        unix_socket_directories: socketDir,
        // The server log in a file of our own, outside the data directory (which
        // pg_basebackup copies and pg_rewind rewrites).
        logging_collector: "on",
        log_directory: join(dir, "logs"),
        log_filename: `${m.name}.postgres.log`,
        log_rotation_age: 0,
        log_rotation_size: 0,
        log_line_prefix: "%m [%p] %q%u@%d ",
      },
      // Throwaway clusters: trust, for every member host (replication, pg_rewind,
      // Patroni's own connections) and for clients on loopback and trustedNetworks.
      pg_hba: [
        "local all all trust",
        "local replication all trust",
        ...networks.flatMap((n) => [`host all all ${n} trust`, `host replication replicator ${n} trust`]),
      ],
    },
    watchdog: { mode: "off" },
    tags: { nofailover: false, noloadbalance: false, clonefrom: false, nosync: false },
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}
