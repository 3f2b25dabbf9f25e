// What every front-door variant stands on: a real PostgreSQL server, the upstream
// provider (node-oidc-provider, bench/oidc-provider-op.ts), and a development deployment (certificates, keys, the four
// components' configurations) whose Token trusts that provider and whose only app is
// the benchmark's. startMesh runs the four components as `hello serve` processes.

import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import pg from "pg";
import { COMPONENTS } from "../../internal/protocol/identity.js";
import { readBundles, trustFromBundles } from "../../mesh/bundle.js";
import { createMeshTransport } from "../../mesh/client.js";
import { MetricsService } from "../../internal/gen/hello/common/v1/metrics_pb.js";
import { seriesSum } from "../../internal/observability/metrics/exposition.js";
import { operatorCredentials } from "../../internal/ops/pki/layout.js";
import { loadDevConfig } from "../../internal/dev/dev-config.js";
import { upstreamRedirectUri } from "../../internal/config/component-config.js";
import { type ComponentProcesses, startComponentProcesses } from "../../internal/dev/component-processes.js";
import { type DevDeployment, prepareDevDeployment } from "../../internal/dev/dev-deployment.js";
import { freePort } from "../../test/support/free-port.js";
import { type TestPostgres, startPostgres } from "../../test/support/postgres-server.js";
import { type Child, drain, startChild } from "./children.js";
import type { App } from "./logins.js";
import { type Watched, watchPostgres, watchProcess } from "./proc.js";

export const APP = { clientId: "bench-app", clientSecret: "bench-app-secret-0123456789", redirectUri: "https://app.bench.example/callback" };
const UPSTREAM = { clientId: "hello-mesh", clientSecret: "bench-upstream-secret-0123456789" };

export interface Rig {
  readonly dir: string;
  readonly postgres: TestPostgres;
  readonly postgresVersion: string;
  /** A second database on the same server, for the in-process variant. */
  readonly inprocDatabase: string;
  readonly upstream: Child<{ issuer: string; jwksUri: string }>;
  readonly deployment: DevDeployment;
  readonly ports: Record<string, number>;
  readonly meshIssuer: string;
  readonly inprocIssuer: string;
  readonly watchPostgres: Watched;
  readonly watchUpstream: Watched;
  close(): Promise<void>;
}

export async function query(url: string, sql: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

export async function startRig(log: (line: string) => void): Promise<Rig> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "hello-bench-"));
  const cleanup: Array<() => Promise<void>> = [() => rm(dir, { recursive: true, force: true })];
  const close = async () => {
    for (const step of cleanup.reverse()) await step().catch(() => {});
  };
  try {
    log("starting PostgreSQL");
    const postgres = await startPostgres({ ownServer: true });
    cleanup.push(() => postgres.stop());
    const postgresVersion = String((await query(postgres.url, "SHOW server_version")).rows[0]?.server_version);
    const inproc = new URL(postgres.url);
    inproc.pathname = "/bench_inproc";
    await query(postgres.url, "CREATE DATABASE bench_inproc");

    const ports: Record<string, number> = { public: await freePort(), inproc: await freePort() };
    for (const c of COMPONENTS) ports[c] = await freePort();
    const meshIssuer = `http://localhost:${ports.public}`;
    const inprocIssuer = `http://localhost:${ports.inproc}`;
    const upstream = await startChild<{ issuer: string; jwksUri: string }>("oidc-provider-op.ts", [
      "--client-id", UPSTREAM.clientId, "--client-secret", UPSTREAM.clientSecret,
      "--redirect-uri", upstreamRedirectUri(meshIssuer, "bench"), "--redirect-uri", upstreamRedirectUri(inprocIssuer, "bench"),
    ]);
    cleanup.push(() => upstream.stop());

    const configFile = path.join(dir, "hello.config.json");
    await writeFile(configFile, JSON.stringify({
      issuer: meshIssuer,
      ports: { public: ports.public, orchestration: ports.orchestration, token: ports.token, encryption: ports.encryption, storage: ports.storage },
      clients: [{
        client_id: APP.clientId, client_secret: APP.clientSecret, redirect_uris: [APP.redirectUri],
        token_endpoint_auth_method: "client_secret_basic", id_token_signed_response_alg: "RS256",
      }],
      providers: [{
        id: "bench", name: "Bench OP", issuer: upstream.info.issuer, client_id: UPSTREAM.clientId,
        client_secret: UPSTREAM.clientSecret, jwks_uri: upstream.info.jwksUri, scopes: ["openid", "email", "profile"],
      }],
      database: postgres.url,
      certificates: "certs",
      stateDir: "state",
    }));
    const deployment = await prepareDevDeployment(loadDevConfig(configFile));
    return {
      dir,
      postgres,
      postgresVersion,
      inprocDatabase: inproc.toString(),
      upstream,
      deployment,
      ports,
      meshIssuer,
      inprocIssuer,
      watchPostgres: watchPostgres("postgres", Number(new URL(postgres.url).port)),
      watchUpstream: watchProcess("upstream OP", upstream.pid),
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

export interface Mesh {
  readonly processes: ComponentProcesses;
  readonly app: App;
  readonly watched: Watched[];
  /** What the components ran from: their built artifacts (as `hello start` runs them), or the source through tsx. */
  readonly from: "artifacts" | "source";
}

type Artifacts = Partial<Record<(typeof COMPONENTS)[number], string>>;
interface BuildModule {
  buildComponents(options: { sourceDir: string; outDir: string }): Promise<Array<{ component: (typeof COMPONENTS)[number]; entry: string }>>;
}

/**
 * Each component's artifact, built into the rig's directory, when this checkout can
 * build them (internal/ops/build, `npm run build`): the benchmark should measure what a
 * custodian runs. Without it, undefined: the components run from source through tsx,
 * which costs the same CPU once loaded but some 40 MB more memory per process.
 */
export async function buildArtifacts(rig: Rig, log: (line: string) => void): Promise<Artifacts | undefined> {
  const specifier = "../../internal/build/build.js"; // a variable: this checkout may not have it
  let build: BuildModule;
  try {
    build = (await import(specifier)) as BuildModule;
  } catch {
    return undefined;
  }
  log("building the components' artifacts");
  const sourceDir = fileURLToPath(new URL("../..", import.meta.url));
  const built = await build.buildComponents({ sourceDir, outDir: path.join(rig.dir, "dist") });
  return Object.fromEntries(built.map((a) => [a.component, a.entry]));
}

/**
 * The four components as processes, ready: from `artifacts` when given, else `hello
 * serve` from source. `env` adds to what they inherit (NODE_OPTIONS for a profile).
 */
export async function startMesh(
  rig: Rig,
  options: { env?: NodeJS.ProcessEnv; artifacts?: Artifacts; heapHook?: boolean } = {},
): Promise<Mesh> {
  const env = { ...options.env };
  if (options.heapHook !== false) {
    // Inert until signalled (liveHeaps): what survives a full collection, for the soak.
    const heapDir = path.join(rig.dir, "heap");
    await mkdir(heapDir, { recursive: true });
    const hook = new URL("./heap-hook.mjs", import.meta.url).href;
    env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ""} --expose-gc --import ${hook}`.trim();
    env.HELLO_HEAP_DIR = heapDir;
  }
  // `artifacts` is an option of startComponentProcesses only where the checkout builds them.
  const spawnOptions = { env, ...(options.artifacts ? { artifacts: options.artifacts } : {}) };
  const processes = startComponentProcesses(rig.deployment, spawnOptions as Parameters<typeof startComponentProcesses>[1]);
  const tails = [...processes.children.values()].map((child) => drain(child));
  try {
    await processes.ready;
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${tails.map((t) => t()).join("\n")}`);
  }
  return {
    processes,
    app: { issuer: rig.meshIssuer, base: rig.meshIssuer, authorizationPath: "/authorize", tokenPath: "/token", ...APP },
    watched: COMPONENTS.map((c) => watchProcess(c, processes.children.get(c)!.pid!)),
    from: options.artifacts ? "artifacts" : "source",
  };
}

/**
 * Each component's live heap (MB) after a full collection, through the heap hook:
 * what a leak would grow, unlike resident memory, which follows V8's growth policy.
 */
export async function liveHeaps(rig: Rig, mesh: Mesh): Promise<Record<string, number>> {
  const asked = Date.now();
  const out: Record<string, number> = {};
  for (const c of COMPONENTS) process.kill(mesh.processes.children.get(c)!.pid!, "SIGUSR2");
  for (const c of COMPONENTS) {
    const file = path.join(rig.dir, "heap", `${mesh.processes.children.get(c)!.pid}.json`);
    for (let i = 0; i < 100; i++) {
      const report = await readFile(file, "utf8").then((t) => JSON.parse(t) as { at: number; heapUsed: number; external: number }, () => undefined);
      if (report && report.at >= asked) {
        out[c] = Math.round(((report.heapUsed + report.external) / 2 ** 20) * 10) / 10;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return out;
}

/**
 * MB that Orchestration holds in memory by design (hello_state_bytes: codes, access
 * tokens for their ten minutes, used assertion ids), read as its operator would, over
 * MetricsService. The soak judges a leak by the live heap net of this.
 */
export async function heldState(rig: Rig): Promise<number> {
  const transport = createMeshTransport({
    target: "orchestration",
    baseUrl: `https://127.0.0.1:${rig.ports.orchestration}`,
    credentials: operatorCredentials(rig.deployment.certs, "orchestration"),
    trust: trustFromBundles(readBundles(path.join(rig.deployment.certs, "bundles"), ["orchestration"])),
  });
  const { exposition } = await createClient(MetricsService, transport).getMetrics({}).finally(() => transport.close());
  return Math.round((seriesSum(exposition, "hello_state_bytes", { component: "orchestration" }) / 2 ** 20) * 10) / 10;
}
