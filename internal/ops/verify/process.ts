// What the verifier reads about a running process from Linux's /proc, not from the
// process: the command line it was started with, its working directory, whether its
// environment injects code (NODE_OPTIONS), and the Node binary it runs.

import { execFile } from "node:child_process";
import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface ProcessView {
  readonly pid: number;
  readonly argv: readonly string[];
  /** argv[1] resolved against the process's working directory: the script node runs. */
  readonly script: string | undefined;
  /** True or false when the environment is readable, undefined when it is not. */
  readonly nodeOptions: boolean | undefined;
  /** `node --version` of the binary the process runs (via /proc/<pid>/exe), or undefined. */
  readonly nodeVersion: string | undefined;
  /** The TCP ports the process itself listens on, or undefined when its descriptors are not readable. */
  readonly listening: ReadonlySet<number> | undefined;
}

/**
 * The TCP ports `pid` listens on: the LISTEN sockets of its network namespace
 * (/proc/<pid>/net/tcp, tcp6) whose inode is one of the process's own descriptors.
 */
function listeningPorts(pid: number): Set<number> | undefined {
  let inodes: Set<string>;
  try {
    inodes = new Set(
      readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
        try {
          const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
          return match ? [match[1]!] : [];
        } catch {
          return []; // closed meanwhile
        }
      }),
    );
  } catch {
    return undefined;
  }
  const ports = new Set<number>();
  for (const table of ["tcp", "tcp6"]) {
    let text = "";
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode; st 0A is LISTEN
      if (fields.length < 10 || fields[3] !== "0A" || !inodes.has(fields[9]!)) continue;
      ports.add(Number.parseInt(fields[1]!.split(":").at(-1)!, 16));
    }
  }
  return ports;
}

/** Undefined when no process has this pid (or this is not Linux). */
export async function inspectProcess(pid: number): Promise<ProcessView | undefined> {
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return undefined;
  }
  if (argv.at(-1) === "") argv.pop();
  if (argv.length === 0) return undefined; // a zombie: exited, not yet reaped
  let script: string | undefined;
  if (argv[1] !== undefined) {
    try {
      script = path.resolve(readlinkSync(`/proc/${pid}/cwd`), argv[1]);
    } catch {
      script = path.isAbsolute(argv[1]) ? argv[1] : undefined;
    }
  }
  let nodeOptions: boolean | undefined;
  try {
    // Only the presence of one variable is looked at: an environment holds secrets.
    nodeOptions = readFileSync(`/proc/${pid}/environ`, "utf8")
      .split("\0")
      .some((entry) => entry.startsWith("NODE_OPTIONS=") && entry.length > "NODE_OPTIONS=".length);
  } catch {
    nodeOptions = undefined;
  }
  let nodeVersion: string | undefined;
  try {
    // /proc/<pid>/exe is the very binary the process runs, even if its file was replaced since.
    nodeVersion = (await run(`/proc/${pid}/exe`, ["--version"], { timeout: 10_000 })).stdout.trim();
  } catch {
    nodeVersion = undefined;
  }
  return { pid, argv, script, nodeOptions, nodeVersion, listening: listeningPorts(pid) };
}
