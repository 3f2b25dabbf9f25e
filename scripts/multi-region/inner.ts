// The part of scripts/multi-region.ts that runs inside region a's namespace (hm-a): the
// delay switch, the development upstream OP, the database cluster, the components, the
// "browser" that logs people in, the scenarios and the figures. See the header of
// scripts/multi-region.ts for the topology.

import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { decodeJwt } from "jose";
import type { Component } from "../../internal/protocol/identity.js";
import { upstreamRedirectUri } from "../../internal/config/component-config.js";
import { loadDevConfig } from "../../internal/dev/dev-config.js";
import { prepareDevDeployment } from "../../internal/dev/dev-deployment.js";
import { addReplicas } from "../../internal/dev/replicas.js";
import { type DevOp, type DevUser, startDevOp } from "../../internal/dev/devop/dev-op.js";
import { type PatroniCluster, startPatroniCluster } from "../../internal/dev/ha/patroni-cluster.js";
import { waitUntilFrontDoorReady, waitUntilServing } from "../../internal/dev/readiness.js";
import { Browserless, type Page } from "../../test/support/browserless.js";
import { authorizationRequest } from "../../test/support/authorization-request.js";
import { ADDRESS, REGIONS, type Region, type RegionLinks, SUBNET, chooseLinks, nsOf } from "./net.js";
import { type LoginRecord, type ScenarioResult, markdownTable, summarize, textTable } from "./report.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BIN = path.join(ROOT, "cmd/hello/bin.js");

export interface InnerOptions {
  readonly workDir: string;
  readonly logins: number;
  readonly concurrency: number;
  readonly delays: readonly number[];
  /** The round trip at which region b is cut off; undefined: no cut-off scenario. */
  readonly cutRtt: number | undefined;
  /** How the delays are made: netem where the kernel has it (auto), or the user-space switch. */
  readonly network?: "auto" | "netem" | "switch";
}

/** Mesh ports: the same in every region (each region has its own address). */
const PORT = { orchestration: 7100, token: 7101, encryption: 7102, storage: 7103 } as const;
const PUBLIC_PORT = 9000;
const UPSTREAM_PORT = 9001;
/** Database cluster ports: the same on every member (each member has its own address). */
const DB_PORTS = { postgres: [5432, 5432, 5432], restApi: [8008, 8008, 8008], etcdClient: [2379, 2379, 2379], etcdPeer: [2380, 2380, 2380] };

const APP = { client_id: "app-a", secret: "multi-region-app-secret-0123456789", redirect_uri: "https://a.example/callback" };
const UPSTREAM_CLIENT = { id: "hello-mesh", secret: "upstream-secret-0123456789" };

interface ProcessSpec {
  readonly name: string;
  readonly component: Component;
  readonly region: Region;
  readonly configFile: string;
}

const log = (line: string) => process.stdout.write(`${new Date().toISOString().slice(11, 23)} ${line}\n`);

export async function runInner(options: InnerOptions): Promise<number> {
  const stopping = new AbortController();
  const onSignal = (sig: string) => {
    log(`${sig}: stopping`);
    stopping.abort(new Error(sig));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const checkStop = () => {
    if (stopping.signal.aborted) throw stopping.signal.reason as Error;
  };

  const dir = options.workDir;
  mkdirSync(path.join(dir, "logs"), { recursive: true });
  let sw: RegionLinks | undefined;
  let devOp: DevOp | undefined;
  let cluster: PatroniCluster | undefined;
  const children = new Map<string, ChildProcess>();
  const killChildrenSync = () => {
    for (const child of children.values()) {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // gone
      }
    }
  };
  process.once("exit", killChildrenSync);
  let failed = false;
  try {
    sw = await chooseLinks(options.network ?? "auto", log);
    await sw.setRoundTrip(0);
    log(`network: ${sw.describe()}`);

    // Accounts at the upstream OP: returning users (logged in once at the start) and new ones.
    const returning = makeUsers("returning", Math.ceil(options.logins / 2));
    const fresh = makeUsers("new", 40 * options.logins);
    let freshTaken = 0;
    const takeNew = () => {
      const user = fresh[freshTaken++];
      if (!user) throw new Error("out of new test accounts");
      return user;
    };

    const issuer = `http://localhost:${PUBLIC_PORT}`;
    // Orchestration accepts a plain-http upstream issuer only on a loopback address
    // (front-door/upstream-rp.ts), so the OP's issuer is http://localhost:9001, which
    // Orchestration (region a, as the OP) reaches. Token replicas fetch its keys at
    // 10.231.0.11:9001 (the jwks_uri given to them below), region b's from afar.
    devOp = await startDevOp({
      host: "0.0.0.0",
      port: UPSTREAM_PORT,
      issuer: `http://localhost:${UPSTREAM_PORT}`,
      clients: [{ client_id: UPSTREAM_CLIENT.id, client_secret: UPSTREAM_CLIENT.secret, redirect_uris: [upstreamRedirectUri(issuer, "dev")] }],
      users: [...returning, ...fresh],
    });
    const jwksUri = new URL(devOp.jwksUri);
    jwksUri.hostname = ADDRESS.a;
    log(`upstream OP (internal/dev/devop): ${devOp.issuer} in region a, keys at ${jwksUri}`);

    // The database: pg1/etcd1 in region a, pg2/etcd2 in b, pg3/etcd3 in c.
    const started = performance.now();
    cluster = await startPatroniCluster({
      dir: path.join(dir, "ha"),
      members: 3,
      etcdMembers: 3,
      host: (i) => ADDRESS[REGIONS[i]!],
      // pg2 and pg3 start 8 s after pg1, so that pg1 wins the race to initialize the
      // cluster and the primary is in region a with the front door (see placePrimary).
      wrap: (i, role) => [
        "ip", "netns", "exec", nsOf(REGIONS[i]!),
        ...(role === "postgres" && i > 0 ? ["sh", "-c", 'sleep 8; exec "$0" "$@"'] : []),
      ],
      ports: DB_PORTS,
      trustedNetworks: [SUBNET],
      scope: "hello-multi-region",
      startTimeoutMs: 180_000,
      log: (line) => log(`database: ${line}`),
    });
    await placePrimary(cluster, "pg1");
    const healthy = await cluster.waitHealthy(120_000);
    log(`database: healthy in ${Math.round(performance.now() - started)} ms; leader ${healthy.leader}, sync standby ${healthy.syncStandbys.join(", ") || "none"}`);
    log(`database: Storage's URL ${cluster.url}`);
    checkStop();

    // The deployment: certificates, keys and configurations, as `hello start` makes them.
    const configFile = path.join(dir, "hello.config.json");
    writeFileSync(
      configFile,
      `${JSON.stringify(
        {
          issuer,
          ports: { public: PUBLIC_PORT, ...PORT, upstream: UPSTREAM_PORT },
          clients: [
            {
              client_id: APP.client_id,
              client_secret: APP.secret,
              redirect_uris: [APP.redirect_uri],
              token_endpoint_auth_method: "client_secret_basic",
              id_token_signed_response_alg: "RS256",
            },
          ],
          providers: [
            { id: "dev", name: "Dev OP", issuer: devOp.issuer, client_id: UPSTREAM_CLIENT.id, client_secret: UPSTREAM_CLIENT.secret, jwks_uri: jwksUri.href },
          ],
          database: cluster.url,
          certificates: "certs",
          stateDir: "state",
        },
        null,
        2,
      )}\n`,
    );
    const prepared = await prepareDevDeployment(loadDevConfig(configFile), { log: (line) => log(`deployment: ${line}`) });
    let spare = 7110;
    const { deployment, replicas } = await addReplicas(prepared, { token: 2, encryption: 2, storage: 2 }, () => spare++);

    // The derived configurations name 127.0.0.1 (internal/dev/dev-config.ts): rewritten here
    // so that each process listens on its region's address and names its peers there.
    const url = (region: Region, component: keyof typeof PORT) => `https://${ADDRESS[region]}:${PORT[component]}`;
    const specs: ProcessSpec[] = [];
    const rewrite = (file: string, component: keyof typeof PORT, region: Region) => {
      const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown> & { listen: { host: string; port: number } };
      config.listen = { ...config.listen, host: ADDRESS[region], port: PORT[component] };
      if (component === "orchestration") config.peers = { token: [url("a", "token"), url("b", "token")], encryption: [url("a", "encryption"), url("b", "encryption")] };
      if (component === "encryption") config.peers = { storage: [url("a", "storage"), url("b", "storage")] };
      writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
    };
    for (const component of ["orchestration", "token", "encryption", "storage"] as const) {
      rewrite(deployment.configFiles[component], component, "a");
      specs.push({ name: component, component, region: "a", configFile: deployment.configFiles[component] });
    }
    for (const replica of replicas) {
      const component = replica.component as Exclude<keyof typeof PORT, "orchestration">;
      rewrite(replica.configFile, component, "b");
      specs.push({ name: `${component}-${replica.number}`, component, region: "b", configFile: replica.configFile });
    }

    const spawnSpec = (spec: ProcessSpec) => {
      const fd = openSync(path.join(dir, "logs", `${spec.name}.log`), "a");
      try {
        const child = spawn("ip", ["netns", "exec", nsOf(spec.region), process.execPath, BIN, "serve", spec.component, "--config", spec.configFile], {
          cwd: ROOT,
          detached: true,
          stdio: ["ignore", fd, fd],
          env: Object.fromEntries(Object.entries(process.env).filter(([k]) => /^(PATH|HOME|TMPDIR|LANG|LC_[A-Z]+|TZ)$/.test(k))),
        });
        child.once("exit", (code, sig) => {
          if (!stoppingChildren) log(`${spec.name} exited (${sig ?? `code ${code}`}); its log: ${path.join(dir, "logs", `${spec.name}.log`)}`);
        });
        children.set(spec.name, child);
      } finally {
        closeSync(fd);
      }
    };
    let stoppingChildren = false;
    const spawnedAt = performance.now();
    for (const spec of specs) spawnSpec(spec);
    await Promise.all(
      specs.map(async (spec) => {
        const c = deployment.configs[spec.component];
        await waitUntilServing(spec.component, `https://${ADDRESS[spec.region]}:${PORT[spec.component]}`, deployment.certs, c.bundles, 180_000, stopping.signal);
        log(`${spec.name} (region ${spec.region}, ${ADDRESS[spec.region]}:${PORT[spec.component]}): serving after ${Math.round(performance.now() - spawnedAt)} ms`);
      }),
    );
    await waitUntilFrontDoorReady(`http://127.0.0.1:${PUBLIC_PORT}`, 60_000, stopping.signal);
    log("front door ready");

    // ---- logins
    const t0 = performance.now();
    const login = (user: DevUser, kind: "new" | "returning") => timedLogin(issuer, user, kind, t0);
    const runLogins = async (n: number, concurrency: number): Promise<LoginRecord[]> => {
      const plan = Array.from({ length: n }, (_, i) => (i % 2 === 0 ? { kind: "new" as const, user: takeNew() } : { kind: "returning" as const, user: returning[((i - 1) / 2) % returning.length]! }));
      const records: LoginRecord[] = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < plan.length) {
            checkStop();
            const item = plan[next++]!;
            records.push(await login(item.user, item.kind));
          }
        }),
      );
      return records;
    };
    const dbState = async () => {
      const s = await cluster!.state().catch(() => undefined);
      return { leader: s?.leader, syncStandbys: s?.syncStandbys ?? [] };
    };

    log(`warm-up: ${returning.length} returning users log in for the first time (round trip 0 ms)`);
    const warm = await Promise.all(returning.map((u) => login(u, "new")));
    const warmFailed = warm.filter((r) => !r.ok);
    if (warmFailed.length > 0) throw new Error(`warm-up logins failed: ${warmFailed.map((r) => r.failure).join("; ")}`);

    const results: ScenarioResult[] = [];
    const report = (r: ScenarioResult) => {
      results.push(r);
      log(`${r.name}: ${r.logins} logins, ${r.failed} failed, median ${r.all?.median ?? "–"} ms, p90 ${r.all?.p90 ?? "–"} ms, max ${r.all?.max ?? "–"} ms; database leader ${r.database.leader}, sync standby ${r.database.syncStandbys.join(",") || "none"}`);
      for (const note of r.notes) log(`  ${note}`);
    };
    for (const rtt of options.delays) {
      checkStop();
      await sw.setRoundTrip(rtt);
      log(`network: ${sw.describe()}`);
      await cluster.waitHealthy(120_000);
      // A few logins at the new delay before measuring (connections, caches).
      await runLogins(2, 1);
      for (const concurrency of [1, options.concurrency]) {
        const database = await dbState();
        const records = await runLogins(options.logins, concurrency);
        report(summarize(`RTT ${rtt} ms, ${concurrency === 1 ? "sequential" : `${concurrency} concurrent`}`, rtt, concurrency, records, database));
      }
    }

    if (options.cutRtt !== undefined) {
      const rtt = options.cutRtt;
      await sw.setRoundTrip(rtt);
      await cluster.waitHealthy(120_000);
      await runLogins(2, 1);
      const before = await dbState();
      log(`region b cut off at round trip ${rtt} ms (database leader ${before.leader}, sync standby ${before.syncStandbys.join(",")})`);
      const cutAt = performance.now();
      await sw.cutOff("b");
      // Logins one after another until five in a row succeed (or three minutes pass).
      const during: LoginRecord[] = [];
      let streak = 0;
      let i = 0;
      while (streak < 5 && performance.now() - cutAt < 180_000) {
        checkStop();
        const record = i % 2 === 0 ? await login(takeNew(), "new") : await login(returning[((i - 1) / 2) % returning.length]!, "returning");
        i++;
        during.push(record);
        streak = record.ok ? streak + 1 : 0;
        if (!record.ok) await new Promise((r) => setTimeout(r, 200));
      }
      const firstOk = during.find((r) => r.ok);
      const lastFailure = [...during].reverse().find((r) => !r.ok);
      const streakStart = during[during.length - streak];
      const since = (r: LoginRecord | undefined) => (r ? Math.round(r.startedAt + t0 - cutAt) : undefined);
      const duringDb = await dbState();
      const notes = [
        `first successful login began ${since(firstOk) ?? "–"} ms after the cut; the last failed one began ${since(lastFailure) ?? "–"} ms after it`,
        `logins succeed again from ${streak >= 5 ? `${since(streakStart)} ms` : "(never, within 180 s)"} after the cut (the start of the first of 5 successes in a row)`,
        `database after the cut: leader ${duringDb.leader}, sync standby ${duringDb.syncStandbys.join(",") || "none"}`,
      ];
      report(summarize(`region b cut off (RTT ${rtt} ms): until failover`, rtt, 1, during, before, notes));
      const after = await runLogins(options.logins, 1);
      report(summarize(`region b cut off (RTT ${rtt} ms): after failover`, rtt, 1, after, await dbState()));

      await sw.reconnect("b");
      const healedAt = performance.now();
      log("region b reconnected; waiting for the database and b's replicas");
      const again = await cluster.waitHealthy(180_000);
      await Promise.all(
        specs.filter((s) => s.region === "b").map((s) => waitUntilServing(s.component, `https://${ADDRESS.b}:${PORT[s.component]}`, deployment.certs, deployment.configs[s.component].bundles, 120_000, stopping.signal)),
      );
      log(`region b back: database healthy (leader ${again.leader}, sync standby ${again.syncStandbys.join(",")}) and b's replicas serving ${Math.round(performance.now() - healedAt)} ms after reconnecting`);
      await new Promise((r) => setTimeout(r, 6_000)); // the callers' next health check (every 5 s while serving, 250 ms while not)
      const back = await runLogins(options.logins, 1);
      report(summarize(`region b reconnected (RTT ${rtt} ms)`, rtt, 1, back, await dbState()));
    }

    // ---- figures
    const date = new Date().toISOString().slice(0, 10);
    const machine = {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? "?",
      kernel: `${os.type()} ${os.release()}`,
      node: process.version,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    };
    const file = path.join(ROOT, "bench/results", `multi-region-${date}.json`);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(
      file,
      `${JSON.stringify(
        {
          date: new Date().toISOString(),
          machine,
          options,
          topology: {
            a: { address: ADDRESS.a, runs: ["orchestration (front door, public 127.0.0.1:9000 in hm-a)", "token", "encryption", "storage", "pg1", "etcd1", "upstream OP", "load generator"] },
            b: { address: ADDRESS.b, runs: ["token-2", "encryption-2", "storage-2", "pg2", "etcd2"] },
            c: { address: ADDRESS.c, runs: ["pg3", "etcd3"] },
          },
          network: "user-space delay switch (scripts/multi-region/delay-switch.py): each region's outgoing frames held RTT/2",
          results,
        },
        null,
        2,
      )}\n`,
    );
    process.stdout.write(`\n${textTable(results)}\n\nMarkdown:\n\n${markdownTable(results)}\n\n`);
    process.stdout.write(`machine: ${machine.cpus} CPUs (${machine.cpuModel}), ${machine.kernel}, Node ${machine.node}\n`);
    process.stdout.write(`figures written to ${file}\n`);

    stoppingChildren = true;
    await stopChildren(children);
  } catch (error) {
    failed = true;
    log(`failed: ${(error as Error).stack ?? String(error)}`);
    if (cluster) log(await cluster.logTails(15).catch(() => ""));
    for (const name of children.keys()) {
      try {
        const text = readFileSync(path.join(dir, "logs", `${name}.log`), "utf8");
        log(`--- ${name} (last lines)\n${text.split("\n").slice(-8).join("\n")}`);
      } catch {
        // no log
      }
    }
  } finally {
    await stopChildren(children).catch(() => {});
    await cluster?.stop().catch((error: Error) => log(`database stop: ${error.message}`));
    await devOp?.close().catch(() => {});
    await sw?.stop().catch(() => {});
    process.removeListener("exit", killChildrenSync);
  }
  return stopping.signal.aborted ? 130 : failed ? 1 : 0;
}

/**
 * Makes `wanted` the primary if it is not (a switchover through Patroni's REST API; in
 * synchronous mode Patroni switches over only to the synchronous standby).
 */
async function placePrimary(cluster: PatroniCluster, wanted: string): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const state = await cluster.waitHealthy(120_000);
    if (state.leader === wanted) return;
    const candidate = state.syncStandbys.includes(wanted) ? wanted : state.syncStandbys[0];
    const leader = cluster.members.find((m) => m.name === state.leader)!;
    log(`database: leader ${state.leader}, sync standby ${state.syncStandbys.join(",")}; switching over to ${candidate}`);
    const response = await fetch(`${leader.apiUrl}/switchover`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ leader: state.leader, candidate }),
      signal: AbortSignal.timeout(60_000),
    });
    log(`database: switchover answered ${response.status} ${(await response.text()).trim()}`);
    await cluster.waitForLeader({ not: state.leader!, timeoutMs: 60_000 });
  }
  const state = await cluster.waitHealthy(120_000);
  if (state.leader !== wanted) throw new Error(`could not make ${wanted} the primary (leader ${state.leader})`);
}

async function stopChildren(children: Map<string, ChildProcess>): Promise<void> {
  await Promise.all(
    [...children.values()].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return resolve();
          const kill = setTimeout(() => {
            try {
              process.kill(-child.pid!, "SIGKILL");
            } catch {
              // gone
            }
          }, 10_000);
          child.once("exit", () => {
            clearTimeout(kill);
            resolve();
          });
          try {
            process.kill(-child.pid, "SIGTERM");
          } catch {
            resolve();
          }
        }),
    ),
  );
  children.clear();
}

function makeUsers(prefix: string, count: number): DevUser[] {
  const run = randomBytes(3).toString("hex");
  return Array.from({ length: count }, (_, i) => {
    const n = String(i).padStart(4, "0");
    return { sub: `${prefix}-${run}-${n}`, email: `${prefix}${n}.${run}@multi-region.example`, email_verified: true, name: `${prefix} user ${n}`, password: `pw-${n}` };
  });
}

/**
 * One person logging in to the app through the front door with a fresh browser, each
 * step timed: authorize (GET /authorize, to the OP's sign-in form), upstream (the form
 * posted, back through the front door's callback to consent or the app), consent (new
 * users), token (POST /token).
 */
async function timedLogin(issuer: string, user: DevUser, kind: "new" | "returning", t0: number): Promise<LoginRecord> {
  const startedAt = performance.now() - t0;
  const begin = performance.now();
  const steps: Record<string, number> = {};
  let consentShown = false;
  const front = new URL(issuer);
  const fail = (failure: string): LoginRecord => ({ ok: false, kind, startedAt, totalMs: performance.now() - begin, steps, consentShown, failure });
  const timed = async (step: string, run: () => Promise<Page>): Promise<Page> => {
    const s = performance.now();
    const page = await run();
    steps[step] = performance.now() - s;
    if (page.url.origin === front.origin && page.status >= 400) throw new StepFailure(`${step}: front door answered ${page.status}`);
    return page;
  };
  const attempt = async (): Promise<LoginRecord> => {
    const browser = new Browserless();
    const { url, verifier, nonce, atApp } = authorizationRequest(issuer, APP);
    const first = await timed("authorize", () => browser.go(url, {}, atApp));
    let page = await timed("upstream", () => browser.submit(browser.form(first, /\/login$/), [["email", user.email], ["password", user.password]], atApp));
    consentShown = !atApp(page.url);
    if (consentShown) {
      const consentPage = page;
      page = await timed("consent", () => browser.submit(browser.form(consentPage, /^\/consent$/), [["decision", "allow"]], atApp));
    }
    const code = page.url.searchParams.get("code");
    if (!atApp(page.url) || !code) throw new StepFailure(`no code at the app (${page.url.pathname}, ${page.status})`);
    const s = performance.now();
    const response = await fetch(new URL("/token", issuer), {
      method: "POST",
      headers: {
        authorization: `Basic ${Buffer.from(`${APP.client_id}:${APP.secret}`).toString("base64")}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: APP.redirect_uri, code_verifier: verifier }),
      signal: AbortSignal.timeout(30_000),
    });
    const body = await response.text();
    steps.token = performance.now() - s;
    if (!response.ok) throw new StepFailure(`token: ${response.status}`);
    const claims = decodeJwt((JSON.parse(body) as { id_token: string }).id_token);
    if (claims.nonce !== nonce || claims.aud !== APP.client_id) throw new StepFailure("token: the ID Token is not for this request");
    return { ok: true, kind, startedAt, totalMs: performance.now() - begin, steps, consentShown };
  };
  try {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<LoginRecord>((resolve) => {
      timer = setTimeout(() => resolve(fail("no answer within 60 s")), 60_000);
    });
    try {
      return await Promise.race([attempt(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  } catch (error) {
    return fail(error instanceof StepFailure ? error.message : `thrown: ${(error as Error).message}`);
  }
}

class StepFailure extends Error {}
