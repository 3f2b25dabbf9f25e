// The benchmark's own helper processes (node-oidc-provider, as the upstream provider
// and as the yardstick; the in-process variant): started with tsx, ready when they
// print one JSON line.

import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

export interface Child<T> {
  readonly process: ChildProcess;
  readonly pid: number;
  readonly info: T;
  stop(): Promise<void>;
}

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Keeps the last lines a child wrote, for the error when it fails. */
export function drain(child: ChildProcess, keep = 30): () => string {
  const lines: string[] = [];
  const take = (chunk: Buffer) => {
    lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    if (lines.length > keep) lines.splice(0, lines.length - keep);
  };
  child.stdout?.on("data", take);
  child.stderr?.on("data", take);
  return () => lines.join("\n");
}

export function stopProcess(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill("SIGKILL"), graceMs);
    child.once("exit", () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

export function startChild<T>(script: string, args: string[], options: { env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {}): Promise<Child<T>> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), "--import", "tsx", `bench/${script}`, ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...options.env },
  });
  return new Promise((resolve, reject) => {
    let buffered = "";
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      const newline = buffered.indexOf("\n");
      if (newline < 0) return;
      child.stdout!.off("data", onData);
      child.off("exit", onExit);
      const tail = drain(child);
      try {
        const info = JSON.parse(buffered.slice(0, newline)) as T;
        resolve({ process: child, pid: child.pid!, info, stop: () => stopProcess(child) });
      } catch {
        reject(new Error(`${script} printed no ready line: ${buffered.slice(0, 500)}\n${tail()}`));
      }
    };
    let stderr = "";
    child.stderr!.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString("utf8")).slice(-4000)));
    const onExit = (code: number | null) => reject(new Error(`${script} exited (${code}) before it was ready:\n${stderr}`));
    child.stdout!.on("data", onData);
    child.once("exit", onExit);
  });
}
