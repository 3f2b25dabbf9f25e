// Runs the four components as separate processes, as custodians would, and waits
// until each reports SERVING over the mesh: from source (`hello serve <component>`,
// through tsx; what the end-to-end tests use) or from built artifacts
// (`node dist/<component>/main.mjs`; what `hello start` uses).

import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { COMPONENTS, type Component } from "../protocol/identity.js";
import type { DevDeployment } from "./dev-deployment.js";
import { waitUntilServing } from "./readiness.js";

const BIN = fileURLToPath(new URL("../../cmd/hello/bin.js", import.meta.url));

/**
 * What a component inherits from the environment: only what runs Node and our own
 * settings. Each custodian's secrets are in its own files, and a parent's environment
 * (a CI's database URL, say) must not hand one component another's.
 */
const INHERITED = /^(PATH|HOME|TMPDIR|LANG|LC_[A-Z]+|TZ|NODE_EXTRA_CA_CERTS|HELLO_(LOG_LEVEL|TRACE|SOURCE_REVISION))$/;

function inheritedEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => INHERITED.test(name)));
}

export interface ComponentProcesses {
  readonly children: ReadonlyMap<Component, ChildProcess>;
  /** SIGTERM to each (SIGKILL after 10 s); resolves when all have exited and their output is drained. */
  stop(): Promise<void>;
  /** Resolves when any child exits on its own. */
  readonly exited: Promise<{ component: Component; code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when every component serves; rejects (after stopping them all) if one does not. */
  readonly ready: Promise<void>;
}

export interface ComponentProcessOptions {
  readonly components?: readonly Component[];
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Run each component from its artifact, the file `node` runs (`dist/<component>/main.mjs`),
   * instead of from source. A component without an entry here runs from source.
   */
  readonly artifacts?: Partial<Record<Component, string>>;
  /**
   * The arguments `node` runs for a component, given its configuration file, in place of
   * `hello serve` or its artifact: a test's twisted component (test/support/twisted).
   */
  readonly commands?: Partial<Record<Component, (configFile: string) => string[]>>;
  readonly onSpawn?: (c: Component, child: ChildProcess) => void;
  /** Called as each component first reports SERVING, with the time since spawning. */
  readonly onReady?: (c: Component, elapsedMs: number) => void;
  /** How long each may take to serve; default 60 s. */
  readonly readyTimeoutMs?: number;
}

/** The command line that runs `component`: [file node runs, ...arguments]. */
export function componentCommand(component: Component, configFile: string, artifact?: string): string[] {
  return artifact ? [artifact, "--config", configFile] : [BIN, "serve", component, "--config", configFile];
}

/** Spawns the components at once and returns immediately, so a caller can stop them at any time. */
export function startComponentProcesses(deployment: DevDeployment, options: ComponentProcessOptions = {}): ComponentProcesses {
  const components = options.components ?? COMPONENTS;
  const children = new Map<Component, ChildProcess>();
  /** The end of what each said on stderr, for the report when it exits before serving (start-up errors go there). */
  const stderrTail = new Map<Component, string>();
  let stopping = false;
  let reportExit!: (value: { component: Component; code: number | null; signal: NodeJS.Signals | null }) => void;
  const exited = new Promise<{ component: Component; code: number | null; signal: NodeJS.Signals | null }>((r) => (reportExit = r));

  // Components connect to their peers lazily, so all can start at once.
  for (const component of components) {
    const configFile = deployment.configFiles[component];
    const command = options.commands?.[component]?.(configFile) ?? componentCommand(component, configFile, options.artifacts?.[component]);
    const child = spawn(process.execPath, command, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...inheritedEnv(), ...options.env },
    });
    children.set(component, child);
    child.stderr!.on("data", (chunk: Buffer) => stderrTail.set(component, ((stderrTail.get(component) ?? "") + chunk.toString("utf8")).slice(-2_000)));
    options.onSpawn?.(component, child);
    child.once("exit", (code, signal) => {
      if (!stopping) reportExit({ component, code, signal });
    });
  }
  const waiting = new AbortController();
  const stop = async () => {
    stopping = true;
    waiting.abort();
    await Promise.all([...children.values()].map(stopChild));
  };

  const spawned = performance.now();
  const ready = (async () => {
    const readiness = await Promise.allSettled(
      components.map(async (c) => {
        const { host, port } = deployment.configs[c].listen;
        // A component that exits before it serves (its port taken, a bad config) is
        // reported at once, not after the whole timeout; and whatever answers on its
        // port meanwhile is not it.
        const child = children.get(c)!;
        const gone = new AbortController();
        const onExit = async (code: number | null, signal: NodeJS.Signals | null) => {
          // 'exit' can come before the last of stderr is read.
          if (!child.stderr!.closed) await Promise.race([new Promise((r) => child.stderr!.once("close", r)), new Promise((r) => setTimeout(r, 500))]);
          const said = stderrTail.get(c)?.trim();
          gone.abort(new Error(`exited (${signal ?? `code ${code}`}) before serving${said ? `: ${said}` : ""}`));
        };
        if (child.exitCode !== null || child.signalCode !== null) onExit(child.exitCode, child.signalCode);
        else child.once("exit", onExit);
        try {
          await waitUntilServing(c, `https://${host}:${port}`, deployment.certs, deployment.configs[c].bundles, options.readyTimeoutMs ?? 60_000, AbortSignal.any([waiting.signal, gone.signal]));
        } catch (error) {
          throw gone.signal.aborted ? gone.signal.reason : error;
        } finally {
          child.off("exit", onExit);
        }
        options.onReady?.(c, Math.round(performance.now() - spawned));
      }),
    );
    const failed = components.flatMap((c, i) => {
      const result = readiness[i]!;
      return result.status === "rejected" ? [`${c}: ${(result.reason as Error).message}`] : [];
    });
    if (failed.length > 0) {
      await stop();
      throw new Error(`components did not become ready:\n  ${failed.join("\n  ")}`);
    }
  })();
  return { children, stop, exited, ready };
}

/** Resolves once the child has exited and its last output has been read. */
function stopChild(child: ChildProcess): Promise<void> {
  const drained = child.stdout!.closed && child.stderr!.closed;
  if (drained && (child.exitCode !== null || child.signalCode !== null)) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("close", () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill("SIGTERM");
  });
}
