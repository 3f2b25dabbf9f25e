// Whether the peers a component needs serve, from their own grpc.health.v1 Check along
// the mesh's edges (docs/design.md §1): Encryption watches Storage, Orchestration watches
// Token and Encryption. A component whose peers do not all serve reports NOT_SERVING
// itself (serve-component.ts), and Orchestration's front door takes no logins.
//
// It looks often while some peer does not serve, seldom while all do, at once when a
// call to a peer has failed as "unavailable", and — for a probe or a login that finds
// it not serving — again before answering, so that a peer which has just come back is
// seen at once, not at the next tick.

import { type Client, type Interceptor } from "@connectrpc/connect";
import type { Component } from "../../protocol/identity.js";
import { isUnavailable } from "../../../mesh/transport-errors.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";

/**
 * How long a peer's Check may take; a peer that does not answer within it is not
 * serving. A Check is a few microseconds of work: this is a bound for a hung peer,
 * with room for a machine so busy that a healthy one answers slowly.
 */
export const PEER_CHECK_DEADLINE_MS = 2_000;
/**
 * How long a question asked while not serving waits for its fresh look: a look at a hung
 * peer takes its whole deadline, and a login or probe should not. A look that takes
 * longer goes on; the question is answered "not serving" meanwhile.
 */
export const SETTLE_WITHIN_MS = 1_500;
/** How often to look while some peer does not serve: a peer back is seen well within a second. */
export const NOT_SERVING_EVERY_MS = 250;
/** How often to look while every peer serves (a failed call makes it look at once). */
export const SERVING_EVERY_MS = 5_000;

export interface PeerHealthOptions {
  /** Each peer's Health client (its Check is what the mesh policy allows). */
  readonly peers: ReadonlyArray<{ readonly name: Component; readonly health: Client<typeof Health> }>;
  /** Default PEER_CHECK_DEADLINE_MS. A peer that itself checks a peer needs more. */
  readonly deadlineMs?: number;
  /** Default SETTLE_WITHIN_MS; likewise more for a peer that looks at its own first. */
  readonly settleWithinMs?: number;
}

export type PeerHealthListener = (serving: boolean, notServing: readonly Component[]) => void;

export class PeerHealth {
  readonly #peers: PeerHealthOptions["peers"];
  readonly #deadlineMs: number;
  readonly #settleWithinMs: number;
  /** The peers not known to serve: all of them until the first look. */
  #notServing: readonly Component[];
  readonly #listeners = new Set<PeerHealthListener>();
  /** The look under way, and the one queued to begin after it (for callers who need a look begun after they asked). */
  #running: Promise<void> | undefined;
  #queued: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: PeerHealthOptions) {
    this.#peers = options.peers;
    this.#deadlineMs = options.deadlineMs ?? PEER_CHECK_DEADLINE_MS;
    this.#settleWithinMs = options.settleWithinMs ?? SETTLE_WITHIN_MS;
    this.#notServing = options.peers.map((p) => p.name);
  }

  /** Begins looking; until the first answers, no peer is taken to serve. */
  start(): this {
    void this.#look();
    return this;
  }

  /** True while every peer reported SERVING at the last look. */
  get serving(): boolean {
    return this.#notServing.length === 0;
  }

  /** The peers that did not report SERVING at the last look (or have not been asked yet). */
  notServing(): readonly Component[] {
    return this.#notServing;
  }

  /** Calls `listener` after each change of which peers serve; returns the unsubscribe. */
  onChange(listener: PeerHealthListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Whether every peer serves: at once while they did at the last look; otherwise from
   * a look begun after this call (so never from an answer older than the question), or
   * false if that look has not answered within settleWithinMs.
   */
  async settle(): Promise<boolean> {
    if (this.serving) return true;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#settleWithinMs)));
    try {
      await Promise.race([this.#look(), late]);
    } finally {
      clearTimeout(timer);
    }
    return this.serving;
  }

  /** A call to a peer failed as unavailable: look now rather than at the next tick. */
  suspect(): void {
    if (!this.#closed) void this.#look();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  /** A look that begins now, or right after the one under way; concurrent callers share it. */
  #look(): Promise<void> {
    if (!this.#running) {
      this.#running = this.#checkAll().finally(() => {
        this.#running = undefined;
        this.#schedule();
      });
      return this.#running;
    }
    this.#queued ??= this.#running.then(() => {
      this.#queued = undefined;
      return this.#look();
    });
    return this.#queued;
  }

  async #checkAll(): Promise<void> {
    const serving = await Promise.all(
      this.#peers.map(({ health }) =>
        health.check({ service: "" }, { timeoutMs: this.#deadlineMs }).then(
          ({ status }) => status === ServingStatus.SERVING,
          () => false,
        ),
      ),
    );
    const notServing = this.#peers.filter((_, i) => !serving[i]).map((p) => p.name);
    const changed = notServing.join() !== this.#notServing.join();
    this.#notServing = notServing;
    if (!changed || this.#closed) return;
    for (const listener of this.#listeners) {
      try {
        listener(this.serving, notServing);
      } catch {
        // A listener's failure is its own; the looking goes on.
      }
    }
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    if (this.#closed) return;
    this.#timer = setTimeout(() => void this.#look(), this.serving ? SERVING_EVERY_MS : NOT_SERVING_EVERY_MS);
    this.#timer.unref();
  }
}

/**
 * An interceptor for a peer's transport: a call that fails as unavailable calls
 * `suspect` (PeerHealth.suspect: look at once). Health checks are left out: they are
 * the look itself.
 */
export function onUnavailable(suspect: () => void): Interceptor {
  return (next) => async (request) => {
    try {
      return await next(request);
    } catch (error) {
      if (request.service.typeName !== Health.typeName && isUnavailable(error)) suspect();
      throw error;
    }
  };
}
