// Idempotency of S2S requests by `x-request-id` (the draft's retry rule, as our DESIGN
// profiles it). An id belongs to the mTLS peer that sent it: the same id from another
// peer is another request.
//
// The first request with an id runs; a later one with the same id and the same body
// bytes gets the first one's reply, and one with another body is a conflict. A
// duplicate that arrives while the first still runs waits for it and gets its reply.
// Replies of 5xx are not kept: the server failed, so a retry runs again.

export interface StoredReply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface IdempotencyStore {
  /** Runs `execute` once per (peer, requestId); a later call with the same body hash gets the stored reply; another hash gets "conflict". */
  run(
    peer: string,
    requestId: string,
    bodyHash: string,
    execute: () => Promise<StoredReply>,
  ): Promise<{ reply: StoredReply; replayed: boolean } | { conflict: true }>;
}

export const DEFAULT_IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;
export const DEFAULT_IDEMPOTENCY_MAX_ENTRIES = 100_000;

interface Entry {
  readonly bodyHash: string;
  /** The first request's reply, while it runs and after. */
  readonly reply: Promise<StoredReply>;
  /** Infinity while it runs (an entry in flight never expires), then when the reply is forgotten. */
  expiresAt: number;
}

/** An in-memory store, for one process. Its size is bounded by `maxEntries`. */
export function memoryIdempotencyStore(
  options: { ttlMs?: number; now?: () => number; maxEntries?: number } = {},
): IdempotencyStore {
  const ttlMs = options.ttlMs ?? DEFAULT_IDEMPOTENCY_TTL_MS;
  const now = options.now ?? Date.now;
  const maxEntries = options.maxEntries ?? DEFAULT_IDEMPOTENCY_MAX_ENTRIES;
  if (!(ttlMs > 0)) throw new RangeError("ttlMs must be positive");
  if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError("maxEntries must be a positive integer");

  // Insertion order is the order requests arrived in: the first key is the oldest.
  const entries = new Map<string, Entry>();
  // No sweep for expired entries before this time: the last one found none expiring sooner.
  let nextSweepAt = 0;

  function makeRoom(at: number): void {
    if (entries.size < maxEntries) return;
    if (at >= nextSweepAt) {
      let soonest = Infinity;
      for (const [key, entry] of entries) {
        if (entry.expiresAt <= at) entries.delete(key);
        else soonest = Math.min(soonest, entry.expiresAt);
      }
      nextSweepAt = soonest;
    }
    // Still full of live entries: forget the oldest.
    for (const key of entries.keys()) {
      if (entries.size < maxEntries) break;
      entries.delete(key);
    }
  }

  return {
    async run(peer, requestId, bodyHash, execute) {
      // Everything up to the first await runs at once, so a concurrent duplicate finds this entry.
      const key = JSON.stringify([peer, requestId]);
      const at = now();
      const existing = entries.get(key);
      if (existing && existing.expiresAt > at) {
        if (existing.bodyHash !== bodyHash) return { conflict: true };
        return { reply: await existing.reply, replayed: true };
      }
      if (existing) entries.delete(key);
      makeRoom(at);

      let settle!: { resolve(reply: StoredReply): void; reject(error: unknown): void };
      const reply = new Promise<StoredReply>((resolve, reject) => (settle = { resolve, reject }));
      // Waiters attach their own handlers; this one keeps a failure nobody waits for from being "unhandled".
      reply.catch(() => {});
      const entry: Entry = { bodyHash, reply, expiresAt: Infinity };
      entries.set(key, entry);

      let result: StoredReply;
      try {
        result = await execute();
      } catch (error) {
        if (entries.get(key) === entry) entries.delete(key);
        settle.reject(error);
        throw error;
      }
      if (entries.get(key) === entry) {
        if (result.status >= 500) entries.delete(key);
        else {
          entry.expiresAt = now() + ttlMs;
          nextSweepAt = Math.min(nextSweepAt, entry.expiresAt);
        }
      }
      settle.resolve(result);
      return { reply: result, replayed: false };
    },
  };
}
