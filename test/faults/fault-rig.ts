// A rig for fault tests: the protocol mesh (a real upstream OP, the four components as
// four `hello serve` processes on mutual TLS, PGlite or a PostgreSQL server of its own)
// plus what an operator's bad day is made of — a component killed (SIGKILL or SIGTERM)
// and started again with the same configuration, a component frozen (SIGSTOP/SIGCONT),
// the database stopped and started — and people logging in through the front door
// while it happens. After a fault, `audit()` reads the whole record store with every
// custodian's keys at once (the lookup key, the keyring, Token's public keys), which no
// single custodian can, and reports any user that is half made.

import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { decodeJwt } from "jose";
import type { Component } from "../../internal/protocol/identity.js";
import type { DevUser } from "../../internal/dev/devop/dev-op.js";
import { loadKeyring } from "../../internal/protocol/key-files.js";
import { verify } from "../../internal/protocol/jws.js";
import { releaseHash, subjectHash, walletHash } from "../../internal/protocol/lookup-key.js";
import { RECORD_TYPES, type RecordClaims } from "../../internal/protocol/tokens.js";
import { type ComponentProcesses, startComponentProcesses } from "../../internal/dev/component-processes.js";
import { replicaDeployment } from "../../internal/dev/replicas.js";
import { openRecordStore } from "../../internal/components/storage/backend/open-store.js";
import type { RecordKindName } from "../../internal/protocol/records.js";
import { Browserless, type Page } from "../support/browserless.js";
import { authorizationRequest } from "../support/authorization-request.js";
import { APPS, type ProtocolMesh, appSecret, startProtocolMesh } from "../support/protocol-mesh.js";

/**
 * How long a component may take to serve. Generous: these tests share the machine with
 * others, and PGlite's first start (initdb in WebAssembly) is heavy on a busy CPU. The
 * time a restart takes is reported, not asserted.
 */
const READY_TIMEOUT_MS = 150_000;

export type App = "a" | "b";
export const FAULT_APPS: readonly App[] = ["a", "b"];

/** Test accounts at the upstream OP: `count` people nobody has seen yet. */
export function testUsers(count: number): DevUser[] {
  return Array.from({ length: count }, (_, i) => {
    const n = String(i).padStart(4, "0");
    return { sub: `fault-user-${n}`, email: `user${n}@faults.example`, email_verified: true, name: `Fault User ${n}`, password: `pw-${n}` };
  });
}

/** One request the front door answered with a page of its own (not a redirect onwards). */
export interface FrontDoorAnswer {
  readonly step: "authorize" | "callback" | "consent" | "token";
  readonly status: number;
  /** From sending the request to the full answer, including any redirects that led there. */
  readonly ms: number;
  readonly contentType: string;
  readonly retryAfter: string | null;
  readonly body: string;
}

export type LoginAttempt =
  | { readonly ok: true; readonly user: DevUser; readonly app: App; readonly startedAt: number; readonly endedAt: number; readonly sub: string; readonly consentShown: boolean }
  | { readonly ok: false; readonly user: DevUser; readonly app: App; readonly startedAt: number; readonly endedAt: number; readonly failure: FrontDoorAnswer }
  | { readonly ok: false; readonly user: DevUser; readonly app: App; readonly startedAt: number; readonly endedAt: number; readonly thrown: string };

export interface Audit {
  readonly subjects: number;
  readonly wallets: number;
  readonly releases: number;
  /** Wallets no Subject Record leads to: a creation interrupted before its commit point (unreachable, allowed). */
  readonly unreachableWallets: number;
  /** Every committed user by upstream sub: the user id and, per app, the directed id it sees. */
  readonly users: ReadonlyMap<string, { uid: string; subs: ReadonlyMap<string, string> }>;
  /** What is wrong, if anything (test accounts only, so naming them is fine). */
  readonly problems: readonly string[];
}

export interface FaultRig {
  readonly mesh: ProtocolMesh;
  readonly users: readonly DevUser[];
  /** `count` accounts no one has used yet. */
  takeUsers(count: number): DevUser[];
  pid(component: Component): number;
  /** Sends `signal` and resolves when the process has exited. */
  kill(component: Component, signal: "SIGKILL" | "SIGTERM"): Promise<void>;
  /** Starts the component again from its configuration; resolves when it serves. */
  restart(component: Component): Promise<void>;
  /** Replica `n` (2, 3, …) of a component started with `replicas`: its process, killed and started again like the component's own. */
  replica(component: Component, n: number): { pid(): number; kill(signal: "SIGKILL" | "SIGTERM"): Promise<void>; restart(): Promise<void>; alive(): boolean };
  freeze(component: Component): void;
  thaw(component: Component): void;
  /** True while the component's current process runs (not exited). */
  alive(component: Component): boolean;
  /** Resident memory of the component's process, in bytes (Linux /proc). */
  rss(component: Component): number;
  /** Everything the component's processes wrote to stdout and stderr. */
  output(component: Component): string;
  /** A person logging in to `app` through the front door with a fresh browser. */
  login(user: DevUser, app: App): Promise<LoginAttempt>;
  /**
   * Everything up to the front door's /upstream/callback/dev: the person has signed in at
   * the provider, and `callback()` delivers the provider's answer to the front door.
   */
  prepareCallback(user: DevUser, app: App): Promise<{ callback(): Promise<FrontDoorAnswer> }>;
  /** Reads and checks the whole record store (PGlite: with Storage stopped for the read). */
  audit(): Promise<Audit>;
  close(): Promise<void>;
}

export async function startFaultRig(options: {
  database: "pglite" | "postgres" | { readonly url: string };
  users: number;
  /** Replicas of the components, each its own process (internal/dev/replicas.ts; Orchestration's behind a load balancer). */
  replicas?: Parameters<typeof startProtocolMesh>[0]["replicas"];
  /** Orchestration's replicas' shared state database (startProtocolMesh's). */
  orchestrationState?: Parameters<typeof startProtocolMesh>[0]["orchestrationState"];
  /** The development issuer and Orchestration's wallet server too (docs/wallet-server.md). */
  credentialWallet?: boolean;
  /** As startProtocolMesh's: changes to the deployment before any component starts. */
  prepare?: Parameters<typeof startProtocolMesh>[0]["prepare"];
}): Promise<FaultRig> {
  const users = testUsers(options.users);
  const mesh = await startProtocolMesh({
    database: options.database, users, ownPostgres: true, readyTimeoutMs: READY_TIMEOUT_MS,
    ...(options.credentialWallet ? { credentialWallet: true } : {}),
    ...(options.prepare ? { prepare: options.prepare } : {}),
    ...(options.replicas ? { replicas: options.replicas } : {}),
    ...(options.orchestrationState ? { orchestrationState: options.orchestrationState } : {}),
  });
  const current = new Map<Component, ChildProcess>(mesh.processes.children);
  /** Each replica's current process, by "component-n". */
  const replicaChildren = new Map<string, ChildProcess>(mesh.replicas.map(({ replica, processes }) => [`${replica.component}-${replica.number}`, processes.children.get(replica.component)!]));
  const restarted: ComponentProcesses[] = [];
  const outputs = new Map<Component, string[]>();
  const capture = (component: Component, child: ChildProcess) => {
    const chunks = outputs.get(component) ?? [];
    outputs.set(component, chunks);
    // Read it all: an unread pipe fills up and stalls the component's logging.
    child.stdout?.on("data", (chunk: Buffer) => chunks.push(chunk.toString("utf8")));
    child.stderr?.on("data", (chunk: Buffer) => chunks.push(chunk.toString("utf8")));
  };
  for (const [component, child] of current) capture(component, child);
  for (const { replica, processes } of mesh.replicas) capture(replica.component, processes.children.get(replica.component)!);

  const child = (component: Component) => current.get(component)!;
  const exited = (c: ChildProcess) =>
    c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => c.once("exit", () => resolve()));

  /** Sends `signal` to a process of the rig's and resolves when it has exited. */
  const killProcess = async (c: ChildProcess, signal: "SIGKILL" | "SIGTERM") => {
    const gone = exited(c);
    c.kill("SIGCONT"); // a frozen process cannot act on SIGTERM
    c.kill(signal);
    await gone;
  };
  /**
   * Starts `component` again as `deployment` configures it; `spawned` learns its process
   * at once (so that the rig names the new one while it starts), and this resolves when it serves.
   */
  const startAgain = async (deployment: ProtocolMesh["deployment"], component: Component, spawned: (c: ChildProcess) => void) => {
    const processes = startComponentProcesses(deployment, { components: [component], onSpawn: capture, readyTimeoutMs: READY_TIMEOUT_MS });
    restarted.push(processes);
    spawned(processes.children.get(component)!);
    await processes.ready;
  };

  const kill: FaultRig["kill"] = (component, signal) => killProcess(child(component), signal);
  const restart: FaultRig["restart"] = (component) => startAgain(mesh.deployment, component, (c) => current.set(component, c));

  const replica: FaultRig["replica"] = (component, n) => {
    const key = `${component}-${n}`;
    const entry = mesh.replicas.find((r) => r.replica.component === component && r.replica.number === n);
    if (!entry) throw new Error(`this rig runs no replica ${n} of ${component}`);
    const proc = () => replicaChildren.get(key)!;
    return {
      pid: () => proc().pid!,
      alive: () => proc().exitCode === null && proc().signalCode === null,
      kill: (signal) => killProcess(proc(), signal),
      restart: () => startAgain(replicaDeployment(mesh.deployment, entry.replica), component, (c) => replicaChildren.set(key, c)),
    };
  };

  const issuer = new URL(mesh.issuer);
  const atFrontDoor = (url: URL) => url.origin === issuer.origin;

  const authorizationRequestFor = (app: App) => authorizationRequest(issuer, APPS[app]!);

  const answer = (step: FrontDoorAnswer["step"], page: Page, ms: number): FrontDoorAnswer => ({
    step,
    status: page.status,
    ms,
    contentType: page.headers.get("content-type") ?? "",
    retryAfter: page.headers.get("retry-after"),
    body: page.body,
  });

  /** Runs one browser step, timed; a page of the front door's own with status >= 400 is a failure. */
  async function step(step: FrontDoorAnswer["step"], run: () => Promise<Page>): Promise<{ page: Page } | { failure: FrontDoorAnswer }> {
    const started = performance.now();
    const page = await run();
    const ms = performance.now() - started;
    if (atFrontDoor(page.url) && page.status >= 400) return { failure: answer(step, page, ms) };
    return { page };
  }

  const login: FaultRig["login"] = async (user, app) => {
    const startedAt = Date.now();
    const failed = (failure: FrontDoorAnswer): LoginAttempt => ({ ok: false, user, app, startedAt, endedAt: Date.now(), failure });
    try {
      const browser = new Browserless();
      const request = authorizationRequestFor(app);
      const first = await step("authorize", () => browser.go(request.url, {}, request.atApp));
      if ("failure" in first) return failed(first.failure);
      const credentials: Array<[string, string]> = [["email", user.email], ["password", user.password]];
      const back = await step("callback", () => browser.submit(browser.form(first.page, /\/login$/), credentials, request.atApp));
      if ("failure" in back) return failed(back.failure);
      let page = back.page;
      const consentShown = !request.atApp(page.url);
      if (consentShown) {
        const consented = await step("consent", () => browser.submit(browser.form(page, /^\/consent$/), [["decision", "allow"]], request.atApp));
        if ("failure" in consented) return failed(consented.failure);
        page = consented.page;
      }
      const code = page.url.searchParams.get("code");
      if (!request.atApp(page.url) || !code) throw new Error(`the login did not come back to the app with a code (${page.url.pathname}, ${page.status})`);
      const started = performance.now();
      const response = await fetch(new URL("/token", issuer), {
        method: "POST",
        headers: {
          authorization: `Basic ${Buffer.from(`${APPS[app]!.client_id}:${appSecret(APPS[app]!.client_id)}`).toString("base64")}`,
          "content-type": "application/x-www-form-urlencoded",
        },
        body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: APPS[app]!.redirect_uri, code_verifier: request.verifier }),
      });
      const body = await response.text();
      if (!response.ok) {
        return failed({ step: "token", status: response.status, ms: performance.now() - started, contentType: response.headers.get("content-type") ?? "", retryAfter: response.headers.get("retry-after"), body });
      }
      const claims = decodeJwt((JSON.parse(body) as { id_token: string }).id_token);
      if (claims.nonce !== request.nonce || claims.aud !== APPS[app]!.client_id || typeof claims.sub !== "string") {
        throw new Error("the ID Token is not for this request");
      }
      return { ok: true, user, app, startedAt, endedAt: Date.now(), sub: claims.sub, consentShown };
    } catch (error) {
      return { ok: false, user, app, startedAt, endedAt: Date.now(), thrown: error instanceof Error ? error.message : String(error) };
    }
  };

  const prepareCallback: FaultRig["prepareCallback"] = async (user, app) => {
    const browser = new Browserless();
    const request = authorizationRequestFor(app);
    const first = await browser.go(request.url, {}, request.atApp);
    const form = browser.form(first, /\/login$/);
    // Sign in at the provider, stopping at the redirect back to the front door.
    const atCallback = (u: URL) => atFrontDoor(u) && u.pathname === "/upstream/callback/dev";
    const back = await browser.submit(form, [["email", user.email], ["password", user.password]], atCallback);
    if (!atCallback(back.url)) throw new Error("the provider did not send the browser back to the front door");
    return {
      async callback() {
        const started = performance.now();
        const page = await browser.go(back.url, {}, request.atApp);
        return answer("callback", page, performance.now() - started);
      },
    };
  };

  const audit: FaultRig["audit"] = async () => {
    const storageConfig = mesh.deployment.configs.storage as Extract<(typeof mesh.deployment.configs)["storage"], { component: "storage" }>;
    const encryptionConfig = mesh.deployment.configs.encryption as Extract<(typeof mesh.deployment.configs)["encryption"], { component: "encryption" }>;
    const embedded = storageConfig.database.url === undefined;
    // PGlite's data directory is Storage's alone while it runs: stop it for the read.
    if (embedded) await kill("storage", "SIGTERM");
    const rows: Array<{ hash: string; kind: RecordKindName; keyId: string; wrappedKey?: Uint8Array; ciphertext: Uint8Array }> = [];
    try {
      const store = await openRecordStore(storageConfig.database);
      try {
        for await (const row of store.scan()) rows.push(row);
      } finally {
        await store.close();
      }
    } finally {
      if (embedded) await restart("storage");
    }
    return auditRows(rows, {
      keyring: loadKeyring("encryption", encryptionConfig.keys.keyring),
      lookupKey: mesh.lookupKey,
      tokenKeys: mesh.tokenKeys(),
    });
  };

  let taken = 0;
  return {
    mesh,
    users,
    takeUsers(count) {
      if (taken + count > users.length) throw new Error("the rig has no more unused test accounts");
      return users.slice(taken, (taken += count));
    },
    pid: (component) => child(component).pid!,
    kill,
    restart,
    replica,
    freeze: (component) => void child(component).kill("SIGSTOP"),
    thaw: (component) => void child(component).kill("SIGCONT"),
    alive: (component) => child(component).exitCode === null && child(component).signalCode === null,
    rss(component) {
      const status = readFileSync(`/proc/${child(component).pid}/status`, "utf8");
      const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status);
      if (!kb) throw new Error("no VmRSS in /proc status");
      return Number(kb[1]) * 1024;
    },
    output: (component) => (outputs.get(component) ?? []).join(""),
    login,
    prepareCallback,
    audit,
    async close() {
      for (const c of [...current.values(), ...replicaChildren.values()]) c.kill("SIGCONT");
      await Promise.all(restarted.map((p) => p.stop()));
      await mesh.close();
    },
  };
}

async function auditRows(
  rows: ReadonlyArray<{ hash: string; kind: RecordKindName; keyId: string; wrappedKey?: Uint8Array; ciphertext: Uint8Array }>,
  keys: { keyring: ReturnType<typeof loadKeyring>; lookupKey: Uint8Array; tokenKeys: ReturnType<ProtocolMesh["tokenKeys"]> },
): Promise<Audit> {
  const problems: string[] = [];
  const subjects: Array<{ hash: string; claims: RecordClaims["subject"] }> = [];
  const wallets = new Map<string, RecordClaims["wallet"]>();
  const releases: Array<{ hash: string; claims: RecordClaims["release"] }> = [];
  for (const row of rows) {
    let claims: RecordClaims[RecordKindName];
    try {
      const record = keys.keyring.open({ keyId: row.keyId, wrappedKey: row.wrappedKey ?? new Uint8Array(), ciphertext: row.ciphertext }, row.kind, row.hash).toString("utf8");
      claims = (await verify<RecordClaims[RecordKindName]>(RECORD_TYPES[row.kind], keys.tokenKeys, record, `${row.kind} record`)).claims;
    } catch (error) {
      problems.push(`a ${row.kind} row does not open or verify: ${(error as Error).message}`);
      continue;
    }
    if (row.kind === "subject") subjects.push({ hash: row.hash, claims: claims as RecordClaims["subject"] });
    else if (row.kind === "release") releases.push({ hash: row.hash, claims: claims as RecordClaims["release"] });
    else if (row.kind === "wallet") {
      const wallet = claims as RecordClaims["wallet"];
      if (row.hash !== walletHash(keys.lookupKey, wallet.uid)) problems.push(`a wallet row is not stored under its user's hash`);
      wallets.set(wallet.uid, wallet);
    }
  }

  const users = new Map<string, { uid: string; subs: Map<string, string> }>();
  const committed = new Map<string, string>(); // uid -> upstream sub
  for (const { hash, claims } of subjects) {
    const who = `${claims.op_iss} ${claims.op_sub}`;
    if (hash !== subjectHash(keys.lookupKey, claims.op_iss, claims.op_sub)) problems.push(`${who}: the Subject Record is not stored under its subject's hash`);
    if (users.has(claims.op_sub)) problems.push(`${who}: two Subject Records for one upstream subject`);
    if (committed.has(claims.uid)) problems.push(`${who}: the user id of another Subject Record`);
    const wallet = wallets.get(claims.uid);
    if (!wallet) problems.push(`${who}: a Subject Record without its Wallet Record`);
    else if (!wallet.subjects.some((s) => s.iss === claims.op_iss && s.sub === claims.op_sub)) {
      problems.push(`${who}: the Wallet Record does not link the subject`);
    }
    users.set(claims.op_sub, { uid: claims.uid, subs: new Map() });
    committed.set(claims.uid, claims.op_sub);
  }
  for (const { hash, claims } of releases) {
    const sub = committed.get(claims.uid);
    if (hash !== releaseHash(keys.lookupKey, claims.uid, claims.client_id)) problems.push(`a Release Record is not stored under its user's and app's hash`);
    if (sub === undefined) {
      problems.push(`a Release Record for a user without a Subject Record`);
      continue;
    }
    users.get(sub)!.subs.set(claims.client_id, claims.directed_id);
  }
  return {
    subjects: subjects.length,
    wallets: wallets.size,
    releases: releases.length,
    unreachableWallets: [...wallets.keys()].filter((uid) => !committed.has(uid)).length,
    users,
    problems,
  };
}

/** People logging in, `loops` at a time, each loop starting its next login as its last ends. */
export class LoginStream {
  readonly attempts: LoginAttempt[] = [];
  readonly #running: Promise<void>[] = [];
  #stopped = false;
  #next = 0;
  readonly #known: DevUser[] = [];
  readonly #busy = new Set<DevUser>();
  /** Per user and app, the `sub` the app saw: it must never change. */
  readonly subs = new Map<string, string>();
  readonly conflicts: string[] = [];

  constructor(
    private readonly rig: FaultRig,
    private readonly pool: readonly DevUser[],
  ) {}

  start(loops: number): void {
    for (let i = 0; i < loops; i++) this.#running.push(this.#loop(i));
  }

  async stop(): Promise<LoginAttempt[]> {
    this.#stopped = true;
    await Promise.all(this.#running);
    return this.attempts;
  }

  /** Resolves when `predicate` holds for the attempts so far (checked as each ends). */
  async until(predicate: (attempts: readonly LoginAttempt[]) => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.attempts)) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Everyone this stream has tried to log in. */
  get tried(): DevUser[] {
    return this.pool.slice(0, this.#next);
  }

  record(attempt: LoginAttempt): void {
    this.attempts.push(attempt);
    if (!attempt.ok) return;
    const key = `${attempt.user.sub} ${attempt.app}`;
    const seen = this.subs.get(key);
    if (seen === undefined) this.subs.set(key, attempt.sub);
    else if (seen !== attempt.sub) this.conflicts.push(`${key}: the app saw another sub`);
  }

  async #loop(index: number): Promise<void> {
    let turn = index;
    while (!this.#stopped) {
      turn++;
      // Every other login is someone who has logged in before (and is not logging in
      // right now: one person, one browser), the rest new people while any are left.
      const idle = this.#known.filter((u) => !this.#busy.has(u));
      const fresh = this.pool[this.#next];
      const user = (turn % 2 === 0 || !fresh) && idle.length > 0 ? idle[Math.floor(Math.random() * idle.length)]! : fresh;
      if (!user) {
        await new Promise((r) => setTimeout(r, RETRY_PAUSE_MS));
        continue;
      }
      if (user === fresh) this.#next++;
      this.#busy.add(user);
      const app = FAULT_APPS[turn % FAULT_APPS.length]!;
      const attempt = await this.rig.login(user, app);
      this.#busy.delete(user);
      this.record(attempt);
      if (attempt.ok && !this.#known.includes(user)) this.#known.push(user);
      // Someone who got an error page tries again a moment later.
      if (!attempt.ok) await new Promise((r) => setTimeout(r, RETRY_PAUSE_MS));
    }
  }
}

const RETRY_PAUSE_MS = 250;
