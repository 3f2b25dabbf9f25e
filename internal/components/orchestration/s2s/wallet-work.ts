// The wallet server's background work (docs/wallet-server.md, "Background work"): what
// must reach an issuer, or be asked of one, after the call that started it is gone.
//
//   unlink  a deleted wallet's credential, whose issuer could not be told at the delete
//   event   an /event/notify the issuer did not take (PROVISIONING_SUCCESS,
//           UPDATE_SUCCESS, LIFECYCLE_SUCCESS): a notification must not be lost
//   poll    a verification the issuer left PENDING: its /verification/status, asked
//           with the draft's backoff, so that a lost /verification/notify costs nothing
//
// The queue lives in Orchestration's own shared store (MemoryStore in one process,
// PostgreSQL for replicas), so it survives a restart; every entry is sealed under a key
// derived from Orchestration's cookie key (the store's reader learns no issuer, session
// or instance id). Each entry is worked by one replica at a time: a replica first claims
// the entry's lease (`claim`, atomic across replicas), which expires after LEASE_MS, so an
// entry whose replica died mid-work is taken up again by another, or by the same one
// restarted. Work done is removed (`take`); work that failed is put back, due after an
// exponential backoff, until MAX_ATTEMPTS or its deadline. A poll asks Token for nothing
// itself: what it learns goes through the issuer's notification path, whose Token grant
// reaches one issuer's own session only.

import { createHmac, randomUUID } from "node:crypto";
import { FlowSealer, type ScanningStore } from "../sealed.js";

export type WalletTask =
  | { kind: "unlink"; issuer: string; session_id: string; credential_instance_id: string }
  | { kind: "event"; issuer: string; body: { sessionId: string; credentialInstanceId: string; eventType: string; eventTimestamp: string; eventDetails?: Record<string, unknown> } }
  | { kind: "poll"; issuer: string; session_id: string; verification_id: string };

/** What a handler says of one try: done (remove it), or again (put it back, backing off). A throw is "again" too. */
export type WorkOutcome = "done" | "again";

export interface WalletWorkHandlers {
  unlink(task: Extract<WalletTask, { kind: "unlink" }>): Promise<WorkOutcome>;
  event(task: Extract<WalletTask, { kind: "event" }>): Promise<WorkOutcome>;
  poll(task: Extract<WalletTask, { kind: "poll" }>): Promise<WorkOutcome>;
}

interface Entry {
  task: WalletTask;
  attempts: number;
  /** Epoch ms: not worked before. */
  due: number;
  /** Epoch ms: given up after. */
  deadline: number;
}

const PREFIX = "wallet-work:";
const LEASE_PREFIX = "wallet-lease:";
const PURPOSE = "wallet-work";
/** How long one replica holds an entry while it works it; a replica that died lets go this late. */
export const LEASE_MS = 30_000;
/** Tries before an entry is given up (with the backoff below, about a day). */
export const MAX_ATTEMPTS = 40;
/** How long an entry is kept at most. */
export const WORK_TTL_MS = 7 * 24 * 60 * 60 * 1000;
const FIRST_BACKOFF_MS = 2_000;
const MAX_BACKOFF_MS = 5 * 60_000;
/** Entries looked at per tick. */
const BATCH = 50;

/** The draft's backoff: doubling from 2 s, at most 5 min, with up to a fifth of jitter. */
export function backoffMs(attempts: number, random = Math.random): number {
  const base = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** Math.max(0, attempts - 1));
  return Math.round(base * (1 + random() * 0.2));
}

export interface WalletWorkOptions {
  store: ScanningStore;
  /** Orchestration's cookie key: every replica has the same, so any replica opens any entry. */
  cookieKey: Uint8Array;
  handlers: WalletWorkHandlers;
  now?: () => number;
  /** A failure of one try (its kind), or of the queue itself (no kind): reported, never thrown. */
  onError?: (error: unknown, task?: WalletTask["kind"]) => void;
  onGiveUp?: (task: WalletTask["kind"]) => void;
  /** Tests' seam: awaited once an entry's lease is claimed, before its handler runs. */
  pause?: (point: "work-claimed", task: WalletTask) => Promise<void>;
}

export class WalletWork {
  readonly #sealer: FlowSealer;
  readonly #idKey: Buffer;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;

  constructor(private readonly options: WalletWorkOptions) {
    this.#sealer = new FlowSealer(options.cookieKey);
    this.#idKey = createHmac("sha256", Buffer.from(options.cookieKey)).update("hello-mesh wallet work ids v1").digest();
    this.#now = options.now ?? Date.now;
  }

  /**
   * Queues `task`, due after `delayMs`. A poll of one verification is queued once: its
   * key is a keyed hash of the ids, so a second PENDING answer finds it there.
   */
  async enqueue(task: WalletTask, delayMs = 0): Promise<void> {
    const id = task.kind === "poll"
      ? createHmac("sha256", this.#idKey).update(JSON.stringify([task.issuer, task.session_id, task.verification_id])).digest("base64url")
      : randomUUID();
    const key = `${PREFIX}${id}`;
    if (task.kind === "poll" && (await this.options.store.get(key))) return;
    const now = this.#now();
    await this.#put(key, { task, attempts: 0, due: now + delayMs, deadline: now + WORK_TTL_MS });
  }

  /** Works every due entry this replica can claim; resolves with how many it finished. One tick at a time. */
  tick(): Promise<number> {
    this.#running ??= this.#tick().finally(() => (this.#running = undefined));
    return this.#running;
  }

  /** Ticks every `intervalMs` until close(). */
  start(intervalMs: number): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.tick().catch((error) => this.options.onError?.(error)), intervalMs);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => undefined);
  }

  /** The entries queued now (tests and metrics): their kinds and attempts, never their ids. */
  async pending(): Promise<Array<{ kind: WalletTask["kind"]; attempts: number }>> {
    const rows = await this.options.store.scan(PREFIX, 10_000);
    return rows.flatMap(({ value }) => {
      const entry = this.#open(value);
      return entry ? [{ kind: entry.task.kind, attempts: entry.attempts }] : [];
    });
  }

  async #tick(): Promise<number> {
    let finished = 0;
    for (const { key, value } of await this.options.store.scan(PREFIX, BATCH)) {
      // One this replica cannot open (sealed under another cookie key: a replica not yet
      // given a rotated key) is left for the replicas that can; its TTL ends it otherwise.
      const entry = this.#open(value);
      if (!entry || entry.due > this.#now()) continue;
      if (!(await this.options.store.claim(`${LEASE_PREFIX}${key.slice(PREFIX.length)}`, LEASE_MS))) continue;
      // The entry as it is now: another replica may have finished it between the scan and the claim.
      const current = await this.options.store.get(key);
      const fresh = current ? this.#open(current) : undefined;
      if (!fresh || fresh.due > this.#now()) {
        await this.options.store.take(`${LEASE_PREFIX}${key.slice(PREFIX.length)}`);
        continue;
      }
      await this.options.pause?.("work-claimed", fresh.task);
      let outcome: WorkOutcome;
      try {
        outcome = await this.#run(fresh.task);
      } catch (error) {
        this.options.onError?.(error, fresh.task.kind);
        outcome = "again";
      }
      // Let go of the lease (a replica that dies here lets go when it expires).
      await this.options.store.take(`${LEASE_PREFIX}${key.slice(PREFIX.length)}`);
      if (outcome === "done") {
        await this.options.store.take(key);
        finished++;
        continue;
      }
      const attempts = fresh.attempts + 1;
      if (attempts >= MAX_ATTEMPTS || this.#now() >= fresh.deadline) {
        await this.options.store.take(key);
        this.options.onGiveUp?.(fresh.task.kind);
        continue;
      }
      await this.#put(key, { ...fresh, attempts, due: this.#now() + backoffMs(attempts) });
    }
    return finished;
  }

  #run(task: WalletTask): Promise<WorkOutcome> {
    switch (task.kind) {
      case "unlink":
        return this.options.handlers.unlink(task);
      case "event":
        return this.options.handlers.event(task);
      case "poll":
        return this.options.handlers.poll(task);
    }
  }

  async #put(key: string, entry: Entry): Promise<void> {
    const ttlMs = Math.max(1, entry.deadline - this.#now());
    await this.options.store.put(key, Buffer.from(this.#sealer.seal(PURPOSE, entry, Math.ceil(ttlMs / 1000), this.#now()), "ascii"), ttlMs);
  }

  #open(value: Buffer): Entry | undefined {
    return this.#sealer.open<Entry>(PURPOSE, value.toString("ascii"), this.#now());
  }
}
