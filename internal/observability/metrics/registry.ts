// Prometheus metrics (prom-client), one registry per component process. Every custodian's
// operator may read every component's metrics (seed 000; hello.common.v1.MetricsService
// and GET /metrics on the mesh port), so a label carries only names the code itself
// chose: a component, a full method name, a gRPC code, a fixed route name, an HTTP
// status. Never a user identifier, claim, token, record, path or query (docs/design.md §2).
// That also keeps the number of series bounded: methods are those the router serves,
// routes a fixed list with one "other" for everything else.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** Seconds: a mesh call is a few milliseconds; a front-door request waits for the mesh. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** One kind of entry a component holds in memory: a fixed name, never a key or value. */
export interface StateHeld {
  readonly kind: string;
  readonly entries: number;
  readonly bytes: number;
}

/**
 * One kind of call counted three ways: how many, how many ended in an error (when the
 * kind has errors of its own), and how long each took.
 */
export class CallMetrics<L extends string> {
  readonly requests: Counter<L>;
  readonly errors: Counter<L> | undefined;
  readonly duration: Histogram<L>;

  constructor(
    registry: Registry,
    labelNames: readonly L[],
    help: { requests: [name: string, help: string]; errors?: [name: string, help: string]; duration: [name: string, help: string] },
  ) {
    const registers = [registry];
    this.requests = new Counter<L>({ name: help.requests[0], help: help.requests[1], labelNames, registers });
    this.errors = help.errors && new Counter<L>({ name: help.errors[0], help: help.errors[1], labelNames, registers });
    this.duration = new Histogram<L>({ name: help.duration[0], help: help.duration[1], labelNames, buckets: LATENCY_BUCKETS, registers });
  }

  /** One call ended; `failed` counts it as an error too. */
  observe(labels: Partial<Record<L, string>>, seconds: number, failed = false): void {
    this.requests.inc(labels);
    if (failed) this.errors?.inc(labels);
    this.duration.observe(labels, seconds);
  }
}

/** The metrics one process keeps, and the registry that exposes them. */
export class MeshMetrics {
  readonly registry = new Registry();

  /** Mesh calls this process served, by component, full method name and gRPC code. */
  readonly server = new CallMetrics(this.registry, ["component", "method", "code"], {
    requests: ["hello_mesh_server_requests_total", "Mesh calls served, by component, full method name and gRPC code (ok included)."],
    errors: ["hello_mesh_server_errors_total", "Mesh calls served that ended with a gRPC code other than ok."],
    duration: ["hello_mesh_server_duration_seconds", "Time to serve a mesh call (to the last response message), by component, method and code."],
  });

  /** Mesh calls this process made, by caller identity, target component, method and code. */
  readonly client = new CallMetrics(this.registry, ["component", "target", "method", "code"], {
    requests: ["hello_mesh_client_requests_total", "Mesh calls made to a peer, by calling identity, target component, full method name and gRPC code."],
    errors: ["hello_mesh_client_errors_total", "Mesh calls made to a peer that ended with a gRPC code other than ok."],
    duration: ["hello_mesh_client_duration_seconds", "Time a mesh call to a peer took, as the caller saw it."],
  });

  /** The front door (Orchestration's public HTTP server); its errors are its statuses. */
  readonly http = new CallMetrics(this.registry, ["component", "route", "method", "status"], {
    requests: ["hello_http_requests_total", "Front-door HTTP requests, by fixed route name, HTTP method and status."],
    duration: ["hello_http_request_duration_seconds", "Time to answer a front-door HTTP request, by route, method and status."],
  });

  /**
   * What a component holds in its own memory by design, read at each scrape: for one
   * Orchestration without a shared store, its authorization codes, access tokens and
   * used client-assertion ids, each kept until it expires. It is what a heap cap has to
   * leave room for, and what a leak check has to tell apart from a leak (bench soak).
   */
  #state: { component: string; read: () => ReadonlyArray<StateHeld> } | undefined;
  readonly stateEntries = this.#stateGauge(
    "hello_state_entries",
    "Entries a component holds in its own memory until they expire, by fixed kind name (code, access-token, assertion).",
    "entries",
  );
  readonly stateBytes = this.#stateGauge(
    "hello_state_bytes",
    "Memory those entries take: their keys' and sealed values' bytes and each entry's own overhead (about 470 bytes, measured on Node 20).",
    "bytes",
  );

  /** Publishes `read()` at every scrape as hello_state_entries and hello_state_bytes. */
  observeState(component: string, read: () => ReadonlyArray<StateHeld>): void {
    this.#state = { component, read };
  }

  /** A gauge that publishes one field of what observeState's reader returns, at each scrape. */
  #stateGauge(name: string, help: string, field: "entries" | "bytes"): Gauge<"component" | "kind"> {
    const gauge: Gauge<"component" | "kind"> = new Gauge({
      name,
      help,
      labelNames: ["component", "kind"],
      registers: [this.registry],
      collect: () => {
        gauge.reset();
        if (!this.#state) return;
        for (const held of this.#state.read()) gauge.set({ component: this.#state.component, kind: held.kind }, held[field]);
      },
    });
    return gauge;
  }

  constructor(options: { processMetrics?: boolean } = {}) {
    // Resident memory, CPU, heap, event-loop lag, GC, handles: prom-client's standard set.
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** One scrape, in the Prometheus text exposition format. */
  async exposition(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }
}

let processMetrics: MeshMetrics | undefined;

/** The registry of this process, made on first use (one per component process). */
export function processMeshMetrics(): MeshMetrics {
  return (processMetrics ??= new MeshMetrics());
}
