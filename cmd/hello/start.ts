// hello start: the whole service on one machine, for development. Makes every
// custodian's certificates and keys on first run, derives each component's own
// configuration from one file, builds each component's artifact (dist/<component>/,
// docs/builds.md) and runs each as its own process from it, as a custodian would, and
// writes the deployment record `hello verify` reads (<stateDir>/deployment.json).
// `--source` runs the components from source instead (no build; nothing to verify).

import type { ChildProcess } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { COMPONENTS, type Component } from "../../internal/protocol/identity.js";
import { ConfigError } from "../../internal/config/errors.js";
import { type DevConfig, derivedConfigPath, loadDevConfig } from "../../internal/dev/dev-config.js";
import { upstreamRedirectUri } from "../../internal/config/component-config.js";
import { discoverJwksUris, prepareDevDeployment } from "../../internal/dev/dev-deployment.js";
import { startComponentProcesses } from "../../internal/dev/component-processes.js";
import { type Replica, type ReplicaPlan, addReplicas, replicaDeployment } from "../../internal/dev/replicas.js";
import { type PatroniCluster, type PatroniClusterPorts, startPatroniCluster } from "../../internal/dev/ha/patroni-cluster.js";
import { waitUntilFrontDoorReady } from "../../internal/dev/readiness.js";
import { deploymentRecord, deploymentRecordPath, pidsOf, readDeploymentRecord, writeDeploymentRecord } from "../../internal/dev/deployment-record.js";
import { alive, portRefusal, takenPorts } from "../../internal/dev/ports.js";
import { hello } from "../../internal/ops/cli.js";
import { buildComponents, pinnedNodeVersion } from "../../internal/ops/build/build.js";
import { DEFAULT_DEV_USERS, startDevOp } from "../../internal/dev/devop/dev-op.js";
import { startDemoApp } from "../../internal/dev/demoapp/demo-app.js";
import { type DevIssuer, startDevIssuer } from "../../internal/dev/issuer/issuer.js";
import { DEV_PEOPLE } from "../../internal/dev/issuer/registry.js";

const out = (line: string) => process.stdout.write(`${line}\n`);

/** The checkout this command runs from: what `hello start` builds. */
const CHECKOUT = path.resolve(import.meta.dirname, "../..");

/** The ports of the development OPs `hello start` runs, each for the provider whose issuer is http://localhost:<port>. */
const DEV_OP_SETTINGS = ["upstream", "upstream2"] as const;

export const START_USAGE = `usage: hello start [--config hello.config.json] [--source] [--ha]

  Runs the whole service on this machine, for development: makes every custodian's
  certificates and keys on first run, builds each component's artifact and runs each
  as its own process, with the development OPs (ports.upstream, ports.upstream2) and
  the demo app (ports.demo) when the configuration names them, and the development
  credential issuer (ports.issuer) that Orchestration's wallet server (ports.wallet)
  serves users with. --source runs the components from source (no build; nothing to
  verify). --ha runs every part replicated (docs/availability.md): the records database
  as a PostgreSQL cluster under Patroni (three members, strict synchronous replication,
  three etcd members, kept in <stateDir>/ha), and two processes each of Token,
  Encryption and Storage, on ports.ha and the 42 after it.`;

export async function runStart(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        config: { type: "string", default: "hello.config.json" },
        source: { type: "boolean", default: false },
        ha: { type: "boolean", default: false },
      },
    });
  } catch (error) {
    process.stderr.write(`hello start: ${(error as Error).message}\n${START_USAGE}\n`);
    return 2;
  }
  const { values } = parsed;
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

  // The development upstream OPs, each when a provider names it (two, for what needs two
  // providers: recovery accounts at distinct ones), and the demo app, when a client does.
  const devOps = DEV_OP_SETTINGS.flatMap((setting) => {
    const provider = dev.providers.find((p) => p.issuer.replace(/\/$/, "") === `http://localhost:${dev.ports[setting]}`);
    return provider ? [{ setting, port: dev.ports[setting], provider }] : [];
  });
  const demoClient = dev.clients.find((c) => c.redirect_uris.includes(`http://localhost:${dev.ports.demo}/callback`));
  const also: PortSetting[] = ["wallet", ...devOps.map((d) => d.setting), ...(demoClient?.client_secret ? ["demo" as const] : []), "issuer", "issuerStatus"];
  if (await refuseTakenPorts(dev, values.config, also, values.ha)) return 1;

  let artifacts: Partial<Record<Component, string>> = {};
  if (!values.source) {
    const node = pinnedNodeVersion(CHECKOUT);
    if (process.version !== `v${node}`) {
      process.stderr.write(
        `hello start: the artifacts are pinned to Node v${node} (.node-version) and this is Node ${process.version}. ` +
          "Run it with that Node, or use `hello start --source` to run the components from source.\n",
      );
      return 1;
    }
    let built;
    try {
      built = await buildComponents({ sourceDir: CHECKOUT, outDir: path.join(CHECKOUT, "dist") });
    } catch (error) {
      process.stderr.write(`hello start: the build failed: ${(error as Error).message}\n`);
      return 1;
    }
    out(`Built each component's artifact (Node v${node}):`);
    for (const a of built) out(`  ${a.component.padEnd(15)}${a.digest}  ${path.relative(process.cwd(), a.entry)}`);
    artifacts = Object.fromEntries(built.map((a) => [a.component, a.entry]));
  }

  // The development upstream OPs: real OIDC servers with a login form, the same accounts
  // at each, each its own keys and hello-mesh's client registered with its own callback.
  const running: Array<{ op: Awaited<ReturnType<typeof startDevOp>>; name: string }> = [];
  for (const { setting, port, provider } of devOps) {
    try {
      const op = await startDevOp({
        port,
        clients: [{
          client_id: provider.client_id,
          ...(provider.client_secret ? { client_secret: provider.client_secret } : {}),
          redirect_uris: [upstreamRedirectUri(dev.issuer, provider.id)],
        }],
      });
      running.push({ op, name: provider.name });
    } catch (error) {
      process.stderr.write(`hello start: the development OP ${provider.id} cannot start: ${listenError(error, setting, port, values.config)}\n`);
      await Promise.all(running.map(({ op }) => op.close()));
      return 1;
    }
  }
  // Every other provider must know where to send the browser back: one path each.
  for (const provider of dev.providers) {
    if (!devOps.some((d) => d.provider === provider)) out(`  provider ${provider.id}: its client must be registered with the redirect URI ${upstreamRedirectUri(dev.issuer, provider.id)}`);
  }

  // --ha: the records database is a Patroni cluster of this run's own, started (or started
  // again, with its data) before anything that needs it.
  let cluster: PatroniCluster | undefined;
  if (values.ha) {
    if (dev.database) out(`  --ha runs its own database cluster: the configuration's database URL is not used`);
    const started = performance.now();
    try {
      cluster = await startPatroniCluster({ dir: path.resolve(dev.baseDir, dev.stateDir, "ha"), keep: true, ports: haPorts(dev.ports.ha), log: (line) => out(`${"database".padEnd(13)}│ ${line}`) });
      await cluster.waitHealthy(120_000);
    } catch (error) {
      process.stderr.write(`hello start: the database cluster cannot start: ${(error as Error).message}\n`);
      await cluster?.stop();
      await Promise.all(running.map(({ op }) => op.close()));
      return 1;
    }
    out(`${"database".padEnd(13)}│ ready: a primary and two synchronous-replication standbys under Patroni (${Math.round(performance.now() - started)} ms)`);
  }

  const jwksUris = await discoverJwksUris(dev, (line) => out(`  ${line}; Token will not accept its ID Tokens`));
  const reachable = { ...dev, providers: dev.providers.filter((p) => p.jwks_uri ?? jwksUris[p.id]), ...(cluster ? { database: cluster.url } : {}) };
  const prepared = await prepareDevDeployment(reachable, { log: (line) => out(`  ${line}`), jwksUris, devIssuer: true });
  const { deployment, replicas } = cluster
    ? await addReplicas(prepared, HA_REPLICAS, (component, n) => replicaPort(dev.ports.ha, component, n))
    : { deployment: prepared, replicas: [] as Replica[] };
  const { certs } = deployment;
  out(deployment.createdCertificates ? `Made development CAs and certificates under ${certs}` : `Using the certificates under ${certs}`);

  // The development credential issuer, in this process like the development OPs: the
  // wallet server's issuer (docs/wallet-server.md), deciding a pending verification and
  // finishing an asynchronous issuance after 5 s each.
  let devIssuer: DevIssuer;
  try {
    devIssuer = await startDevIssuer({
      ...deployment.devIssuer!,
      pendingDecisionMs: 5_000,
      asyncIssuanceMs: 5_000,
      onError: (error, what) => out(`${"dev issuer".padEnd(13)}│ ${what}: ${error instanceof Error ? error.message : String(error)}`),
    });
  } catch (error) {
    process.stderr.write(`hello start: the development issuer cannot start: ${listenError(error, "issuer", dev.ports.issuer, values.config)}\n`);
    await Promise.all([...running.map(({ op }) => op.close()), cluster?.stop()]);
    return 1;
  }

  const spawned = performance.now();
  const processes = startComponentProcesses(deployment, {
    artifacts,
    onSpawn: relayLogs,
    onReady: (c, ms) => out(`${c.padEnd(13)}│ ready: grpc.health.v1 reports SERVING (${ms} ms after start)`),
  });
  const replicaProcesses = replicas.map((replica) => {
    const name = `${replica.component}-${replica.number}`;
    return startComponentProcesses(replicaDeployment(deployment, replica), {
      components: [replica.component],
      artifacts,
      onSpawn: (_c, child) => relayLogs(name, child),
      onReady: (_c, ms) => out(`${name.padEnd(13)}│ ready: grpc.health.v1 reports SERVING (${ms} ms after start)`),
    });
  });
  // "Running" only once a login would succeed: the front door's readiness says so.
  const frontDoor = deployment.configs.orchestration as Extract<(typeof deployment.configs)["orchestration"], { component: "orchestration" }>;
  const waiting = new AbortController();
  const ready = Promise.all([processes.ready, ...replicaProcesses.map((p) => p.ready)]).then(async () => {
    await waitUntilFrontDoorReady(`http://${frontDoor.public.host}:${frontDoor.public.port}`, 60_000, waiting.signal);
    out(`${"front door".padEnd(13)}│ ready: /healthz/ready answers 200 (${Math.round(performance.now() - spawned)} ms after start)`);
  });
  const recordFile = deploymentRecordPath(dev);
  let demo: Awaited<ReturnType<typeof startDemoApp>> | undefined;
  let stopping: Promise<void> | undefined;
  const stop = () => {
    if (!stopping) {
      out("\nStopping…");
      waiting.abort();
      stopping = Promise.all([
        processes.stop(), ...replicaProcesses.map((p) => p.stop()), demo?.close(), devIssuer.close(), ...running.map(({ op }) => op.close()), rm(recordFile, { force: true }),
      ])
        // The database last: the components' last statements go through; its data is kept.
        .then(() => cluster?.stop())
        .then(() => undefined);
    }
    return stopping;
  };
  const signalled = new Promise<"stopped">((resolve) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      process.once(signal, () => {
        void stop();
        resolve("stopped");
      });
    }
  });
  const anyExited = Promise.race([
    processes.exited.then((e) => ({ ...e, name: e.component as string, port: dev.ports[e.component] })),
    ...replicaProcesses.map((p, i) => p.exited.then((e) => ({ ...e, name: `${e.component}-${replicas[i]!.number}`, port: replicas[i]!.config.listen.port }))),
  ]);
  const started = await Promise.race([ready.then(() => "ready" as const), signalled, anyExited]).catch(
    (error: unknown) => error as Error,
  );
  if (started instanceof Error) {
    out(started.message);
    await stop();
    return 1;
  }
  if (started !== "ready") {
    if (started !== "stopped") {
      // Its own words are above; its listen address is derived from this file's ports.
      const c = started.component;
      const setting = started.name === c ? `ports.${c}` : `from ports.ha`;
      out(`${started.name} exited during start-up (${started.signal ?? `code ${started.code}`}); its reason is above (it listens on port ${started.port}, ${setting} in ${values.config})`);
    }
    await stop();
    return started === "stopped" ? 0 : 1;
  }

  await writeDeploymentRecord(recordFile, deploymentRecord(deployment, pidsOf(processes.children), artifacts, dev.issuer));

  if (demoClient?.client_secret) {
    try {
      demo = await startDemoApp({
        issuer: dev.issuer,
        clientId: demoClient.client_id,
        clientSecret: demoClient.client_secret,
        port: dev.ports.demo,
        publicUrl: `http://localhost:${dev.ports.demo}`,
      });
    } catch (error) {
      process.stderr.write(`hello start: the demo app cannot start: ${listenError(error, "demo", dev.ports.demo, values.config)}\n`);
      await stop();
      return 1;
    }
  }

  // Asked before the table is printed, so that no log line lands in its middle.
  const clusterState = await cluster?.state().catch(() => undefined);
  out("");
  out(`hello-mesh is running. Each component is its own process${values.source ? " (from source)" : ", from its artifact"}, on mutual TLS:`);
  out("");
  out(`  ${"component".padEnd(15)}${"mesh address".padEnd(28)}identity`);
  for (const component of COMPONENTS) {
    out(`  ${component.padEnd(15)}${`https://127.0.0.1:${dev.ports[component]}`.padEnd(28)}spiffe://hello.mesh/${component}`);
  }
  out("");
  for (const replica of replicas) {
    const name = `${replica.component}-${replica.number}`;
    out(`  ${name.padEnd(15)}${replica.url.padEnd(28)}spiffe://hello.mesh/${replica.component}  (a replica: its own certificate of the ${replica.component} CA)`);
  }
  if (cluster) {
    out("");
    out(`  ${"database member".padEnd(20)}${"PostgreSQL".padEnd(18)}${"Patroni REST API".padEnd(26)}etcd member (client URL)`);
    for (const [i, member] of cluster.members.entries()) {
      const etcd = cluster.etcd[i];
      out(`  ${member.name.padEnd(20)}${`${member.host}:${member.pgPort}`.padEnd(18)}${member.apiUrl.padEnd(26)}${etcd ? `${etcd.name} (${etcd.clientUrl})` : ""}`);
    }
    if (clusterState) out(`  primary now: ${clusterState.leader ?? "none"}; synchronous standby: ${clusterState.syncStandbys.join(", ") || "none"} (Patroni: GET ${cluster.members[0]!.apiUrl}/cluster)`);
    out(`  Storage's database URL: ${cluster.url}`);
    out(`  as three regions (docs/availability.md): a = ${regionOf(cluster, replicas, 0)}; b = ${regionOf(cluster, replicas, 1)}; c = ${regionOf(cluster, replicas, 2)}`);
  }
  out("");
  out(`  certificates and keys: ${certs}/<component>/   peers' bundles: ${path.join(certs, "bundles")}`);
  out(`  component configs:     ${path.dirname(derivedConfigPath(dev, "token"))}`);
  out(`  storage database:      ${cluster ? `the Patroni cluster above, kept in ${cluster.dir}` : dev.database ? "PostgreSQL (from the config's database URL)" : `embedded PGlite in ${path.resolve(dev.baseDir, dev.stateDir, "storage", "pgdata")}`}`);
  out(`  deployment record:     ${recordFile}${values.source ? "" : `   (check it with: ${hello()} verify${values.config === "hello.config.json" ? "" : ` --config ${values.config}`})`}`);
  out(`  front door (issuer):   ${dev.issuer}`);
  const front = dev.issuer.replace(/\/$/, "");
  out(`  account page:          ${front}/account  (a user's wallet, after a fresh sign-in)`);
  out(`  recovery:              ${front}/account/recover  (a lost wallet, with recovery accounts at two distinct providers)`);
  for (const { op, name } of running) out(`  development OP:        ${op.issuer}  (${name})`);
  if (running.length > 0) {
    out(`    accounts${running.length > 1 ? " at each" : ""}: ${DEFAULT_DEV_USERS.map((u) => `${u.email} / ${u.password}`).join(", ")}`);
  }
  out(`  wallet server (S2S):   https://localhost:${dev.ports.wallet}  (issuers call it over mutual TLS)`);
  out(`  development issuer:    ${devIssuer.metadata.issuer}  (credential issuer, mutual TLS; listening on ${devIssuer.url})`);
  out(`  its status list:       ${devIssuer.statusListUri}  (Token Status List, plain HTTP: revoked and suspended credentials)`);
  out("    people (document number, family name, birthdate: outcome):");
  for (const p of DEV_PEOPLE) out(`      ${p.documentNumber}  ${p.familyName.padEnd(9)} ${p.birthdate}: ${p.outcome}${p.asyncIssuance ? " (issued asynchronously)" : ""}`);
  if (demo) {
    out("");
    out(`  ▶ Open ${demo.url.replace("127.0.0.1", "localhost")} and click "Log in with hello-mesh".`);
  }
  out("");
  out("Press Ctrl-C to stop.");

  const ended = await Promise.race([anyExited, signalled]);
  if (ended !== "stopped") {
    out(`${ended.name} exited unexpectedly (${ended.signal ?? `code ${ended.code}`}); stopping the others`);
    await stop();
    return 1;
  }
  await stop();
  return 0;
}

/** A listen error in words that name the setting to change; any other error as it is. */
function listenError(error: unknown, setting: string, port: number, config: string): string {
  const refusal = portRefusal((error as NodeJS.ErrnoException).code, port);
  if (refusal) return `${refusal}; it is ports.${setting} in ${config}`;
  return error instanceof Error ? error.message : String(error);
}

type PortSetting = keyof DevConfig["ports"];

/**
 * Says which of the ports this run needs are held by something else, and whether a
 * previous run's processes are alive, before anything starts; true when any is taken.
 * `also`: the settings of the development OPs and the demo app this run starts.
 */
async function refuseTakenPorts(dev: DevConfig & { baseDir: string }, config: string, also: readonly PortSetting[], ha: boolean): Promise<boolean> {
  const settings: PortSetting[] = ["public", ...COMPONENTS, ...also];
  const taken = await takenPorts([
    ...settings.map((name) => ({ setting: `ports.${name}`, host: "127.0.0.1", port: dev.ports[name] })),
    ...(ha ? allHaPorts(dev.ports.ha).map((port) => ({ setting: `ports.ha (+${port - dev.ports.ha})`, host: "127.0.0.1", port })) : []),
  ]);
  if (taken.length === 0) return false;
  for (const t of taken) {
    process.stderr.write(`hello start: ${portRefusal(t.code, t.port) ?? `port ${t.port} cannot be listened on (${t.code})`}; it is ${t.setting} in ${config}: stop what holds it, or choose another port there\n`);
  }
  const record = deploymentRecordPath(dev);
  if (existsSync(record)) {
    let pids: number[] = [];
    try {
      pids = Object.values(readDeploymentRecord(record).components).map((c) => c.pid);
    } catch {
      // A broken record names no process; the taken ports above are what matters.
    }
    const previous = alive([...new Set(pids)]);
    if (previous.length > 0) {
      process.stderr.write(`hello start: a previous hello start's components are still running (pids ${previous.join(", ")}, from ${record}): stop them first (kill ${previous.join(" ")})\n`);
    }
  }
  return true;
}

/** What --ha replicates: two processes each (Orchestration's replicas need a load balancer, docs/replicas.md). */
const HA_REPLICAS: ReplicaPlan = { token: 2, encryption: 2, storage: 2 };

/** --ha's ports, from ports.ha: its replicas at +1…+3, the cluster's members at +10…+42. */
function replicaPort(base: number, component: Component, n: number): number {
  return base + ["token", "encryption", "storage"].indexOf(component) + 1 + (n - 2) * 3;
}
function haPorts(base: number): PatroniClusterPorts {
  const three = (from: number) => [from, from + 1, from + 2];
  return { postgres: three(base + 10), restApi: three(base + 20), etcdClient: three(base + 30), etcdPeer: three(base + 40) };
}
/** Every port --ha listens on besides the four components' own: its replicas' and the cluster's. */
export function allHaPorts(base: number): number[] {
  const replicas = (["token", "encryption", "storage"] as const).flatMap((c) =>
    Array.from({ length: (HA_REPLICAS[c] ?? 1) - 1 }, (_, i) => replicaPort(base, c, i + 2)));
  const cluster = haPorts(base);
  return [...replicas, ...[cluster.postgres, cluster.restApi, cluster.etcdClient, cluster.etcdPeer].flatMap((p) => p ?? [])];
}

/** The parts --ha would put in region i of three (docs/availability.md): what runs here on one machine, placed as it would be spread. */
function regionOf(cluster: PatroniCluster, replicas: readonly Replica[], i: number): string {
  const parts = [cluster.members[i]?.name, cluster.etcd[i]?.name];
  if (i === 0) parts.push("orchestration", "token", "encryption", "storage");
  else parts.push(...replicas.filter((r) => r.number === i + 1).map((r) => `${r.component}-${r.number}`));
  return parts.filter(Boolean).join(", ");
}

/** Prints a child's JSON log lines as "time component level message". */
function relayLogs(component: string, child: ChildProcess): void {
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
