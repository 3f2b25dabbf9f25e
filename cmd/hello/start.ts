// hello start: the whole service on one machine, for development. Makes the
// development CAs and certificates on first run, derives each component's own
// configuration from one file, and runs each component as its own process, exactly
// as `hello serve` would for a custodian.

import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { COMPONENTS, type Component } from "../../mesh/identity.js";
import { readBundle, writeBundle } from "../../mesh/bundle.js";
import { ConfigError } from "../../internal/config/errors.js";
import { deriveComponentConfigs, derivedConfigPath, loadDevConfig } from "../../internal/config/dev-config.js";
import { ensureDevPki } from "../../internal/pki/dev-pki.js";
import { pkiPaths } from "../../internal/pki/layout.js";
import { waitUntilServing } from "../../internal/serve/readiness.js";

const BIN = fileURLToPath(new URL("./bin.js", import.meta.url));

const out = (line: string) => process.stdout.write(`${line}\n`);

export async function runStart(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: "string", default: "hello.config.json" } } });
  let dev;
  try {
    dev = loadDevConfig(values.config);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`hello start: ${error.message}\n`);
      return 1;
    }
    throw error;
  }

  const certs = path.resolve(dev.baseDir, dev.certificates);
  const { created } = await ensureDevPki(certs, { log: (line) => out(`  ${line}`) });
  out(created ? `Made development CAs and certificates under ${certs}` : `Using the certificates under ${certs}`);

  const configs = deriveComponentConfigs(dev);
  for (const component of COMPONENTS) {
    await writeBundle(configs[component].bundles, {
      component,
      ca: readFileSync(pkiPaths(certs, component).caCert, "utf8"),
      jwks: existingJwks(configs[component].bundles, component),
    });
    const file = derivedConfigPath(dev, component);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, `${JSON.stringify(configs[component], null, 2)}\n`);
  }

  const children = new Map<Component, ChildProcess>();
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    out("\nStopping…");
    await Promise.all([...children.values()].map(stopChild));
    process.exitCode = code;
  };
  process.once("SIGINT", () => void stopAll(0));
  process.once("SIGTERM", () => void stopAll(0));

  // Components connect to their peers lazily, so all four can start at once.
  for (const component of COMPONENTS) {
    const child = spawn(process.execPath, [BIN, "serve", component, "--config", derivedConfigPath(dev, component)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.set(component, child);
    relayLogs(component, child);
    child.once("exit", (code, signal) => {
      if (!stopping) {
        out(`${component} exited unexpectedly (${signal ?? `code ${code}`}); stopping the others`);
        void stopAll(1);
      }
    });
  }
  const readiness = await Promise.allSettled(
    COMPONENTS.map((c) => waitUntilServing(c, `https://127.0.0.1:${dev.ports[c]}`, certs, configs[c].bundles)),
  );
  const failed = COMPONENTS.filter((_, i) => readiness[i]!.status === "rejected");
  if (failed.length > 0 || stopping) {
    for (const c of failed) {
      out(`${c} did not become ready: ${((readiness[COMPONENTS.indexOf(c)] as PromiseRejectedResult).reason as Error).message}`);
    }
    await stopAll(1);
    return 1;
  }

  out("");
  out("hello-mesh is running. Each component is its own process, on mutual TLS:");
  out("");
  out(`  ${"component".padEnd(15)}${"mesh address".padEnd(28)}identity`);
  for (const component of COMPONENTS) {
    out(`  ${component.padEnd(15)}${`https://127.0.0.1:${dev.ports[component]}`.padEnd(28)}spiffe://hello.mesh/${component}`);
  }
  out("");
  out(`  certificates and keys: ${certs}/<component>/   peers' bundles: ${path.join(certs, "bundles")}`);
  out(`  component configs:     ${path.dirname(derivedConfigPath(dev, "token"))}`);
  out(`  storage database:      ${dev.database ? "PostgreSQL (from the config's database URL)" : `embedded PGlite in ${path.resolve(dev.baseDir, dev.stateDir, "storage", "pgdata")}`}`);
  out("");
  out("Press Ctrl-C to stop.");

  await new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (stopping && [...children.values()].every((c) => c.stdout!.closed && (c.exitCode !== null || c.signalCode !== null))) {
        clearInterval(check);
        resolve();
      }
    }, 100);
  });
  return process.exitCode === undefined ? 0 : Number(process.exitCode);
}

/** Keeps the public keys a component already published (rewritten when its keys change). */
function existingJwks(dir: string, component: Component) {
  try {
    return readBundle(dir, component).jwks;
  } catch {
    return { keys: [] };
  }
}

/** Resolves once the child has exited and its last log lines have been relayed. */
function stopChild(child: ChildProcess): Promise<void> {
  const closed = child.stdout!.closed && child.stderr!.closed;
  if (closed && (child.exitCode !== null || child.signalCode !== null)) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("close", () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

/** Prints a child's JSON log lines as "time component level message". */
function relayLogs(component: Component, child: ChildProcess): void {
  const label = component.padEnd(13);
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on("line", (line) => {
      let text = line;
      try {
        const entry = JSON.parse(line) as { time?: string; level?: string; msg?: string; err?: { message?: string } };
        const time = entry.time ? entry.time.slice(11, 19) : "";
        const level = entry.level && entry.level !== "info" ? `${entry.level.toUpperCase()} ` : "";
        text = `${time} ${level}${entry.msg ?? ""}${entry.err?.message ? `: ${entry.err.message}` : ""}`;
      } catch {
        // Not a log line (e.g. a start-up error on stderr): print it as it is.
      }
      out(`${label}│ ${text}`);
    });
  }
}
