// The re-wrap job (docs/keyring-rotation.md): after a rotation, every record whose data
// key is wrapped under an old keyring key gets the same data key wrapped under the
// current key, so the old key can leave the keyring.
//
// It never sees a record. Storage lists (hash, kind, version, key id, wrapped key) and
// never the ciphertext; the job unwraps with the old key (the wrapping's additional data
// binds it to the hash and kind Storage named, so Storage cannot get a data key moved to
// another row), wraps under the current key, and writes back with compare-and-set on
// everything it read: a concurrent update (which always uses the current key) wins and
// the row is skipped. Nothing it learns is logged; its counts are all it reports.
//
// Stateless, and so resumable: whatever is still wrapped under an old key is listed
// again by the next run. Several Encryption replicas may run it at once; the
// compare-and-set makes the losers skip.

import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { RecordKind } from "../../gen/hello/common/v1/record_pb.js";
import type { KeyMaintenanceService, RecordKey } from "../../gen/hello/storage/v1/key_maintenance_service_pb.js";
import { DecryptionError, type Keyring } from "../../protocol/keyring.js";
import type { RecordKindName } from "../../protocol/records.js";

export type RewrapJobState = "idle" | "running" | "succeeded" | "failed";

export interface RewrapProgress {
  moved: number;
  /** Changed or deleted concurrently: left to the writer, which used the current key. */
  skipped: number;
  /** Wrapped key did not open for the hash and kind Storage named: never written. */
  failed: number;
  /** Sealed before envelope encryption: the job cannot move them. */
  legacy: number;
}

export interface RewrapJobSnapshot {
  readonly state: RewrapJobState;
  readonly startTime?: Date;
  readonly endTime?: Date;
  readonly targetKeyId: string;
  /** By old key id. */
  readonly progress: ReadonlyMap<string, Readonly<RewrapProgress>>;
  /** Why it failed: a gRPC code and Storage's words (which never name a record). */
  readonly error?: string;
}

export interface RewrapJobDeps {
  readonly keyring: () => Keyring;
  /** Storage's key maintenance: the only Storage calls the job makes, none of them with an Access Token. */
  readonly keyMaintenance: Client<typeof KeyMaintenanceService>;
  /** Told when a run ends, with counts only. */
  readonly onFinished?: (snapshot: RewrapJobSnapshot) => void;
  readonly now?: () => Date;
}

export const DEFAULT_CONCURRENCY = 4;
export const MAX_CONCURRENCY = 16;
const PAGE_SIZE = 200;
/** Passes over the old keys: a later pass picks up rows a stale writer put under one. */
const MAX_PASSES = 5;
const RETRIES = 4;

/** Every kind but UNSPECIFIED (`satisfies`: a kind added to the enum and not here does not compile). */
const KIND_NAMES: Partial<Record<RecordKind, RecordKindName>> = {
  [RecordKind.SUBJECT]: "subject",
  [RecordKind.RELEASE]: "release",
  [RecordKind.WALLET]: "wallet",
  [RecordKind.RESERVATION]: "reservation",
  [RecordKind.S2S_SESSION]: "s2s-session",
  [RecordKind.CREDENTIAL]: "credential",
  [RecordKind.HOLDINGS]: "holdings",
} satisfies Record<Exclude<RecordKind, RecordKind.UNSPECIFIED>, RecordKindName>;

export class RewrapJob {
  readonly #deps: RewrapJobDeps;
  #state: RewrapJobState = "idle";
  #startTime?: Date;
  #endTime?: Date;
  #targetKeyId: string;
  #progress = new Map<string, RewrapProgress>();
  #error?: string;
  #run: Promise<void> = Promise.resolve();
  #stopping = false;

  constructor(deps: RewrapJobDeps) {
    this.#deps = deps;
    this.#targetKeyId = deps.keyring().currentKeyId;
  }

  /** Starts a run, or joins the one in progress. Returns at once. */
  start(options: { concurrency?: number } = {}): RewrapJobSnapshot {
    const concurrency = options.concurrency || DEFAULT_CONCURRENCY;
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
      throw new ConnectError(`concurrency must be 0 (the default, ${DEFAULT_CONCURRENCY}) or 1 to ${MAX_CONCURRENCY}`, Code.InvalidArgument);
    }
    if (this.#stopping) throw new ConnectError("Encryption is stopping", Code.Unavailable);
    if (this.#state !== "running") {
      const now = this.#deps.now?.() ?? new Date();
      this.#state = "running";
      this.#startTime = now;
      this.#endTime = undefined;
      this.#error = undefined;
      this.#progress = new Map();
      this.#targetKeyId = this.#deps.keyring().currentKeyId;
      this.#run = this.#execute(concurrency).then(
        () => this.#finish("succeeded"),
        (error: unknown) => {
          const e = ConnectError.from(error);
          this.#finish("failed", `${Code[e.code]}: ${e.rawMessage}`);
        },
      );
    }
    return this.snapshot();
  }

  /** Resolves when the run in progress (if any) has ended. */
  settled(): Promise<void> {
    return this.#run;
  }

  /** Ends a run in progress after the rows in flight (the process is stopping); no new run starts. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#run;
  }

  #checkStopping(): void {
    if (this.#stopping) throw new ConnectError("Encryption is stopping; run the job again to resume", Code.Aborted);
  }

  snapshot(): RewrapJobSnapshot {
    return {
      state: this.#state,
      ...(this.#startTime ? { startTime: this.#startTime } : {}),
      ...(this.#endTime ? { endTime: this.#endTime } : {}),
      // While running (or before any run), the key it wraps under now; after a run, the one it ended with.
      targetKeyId: this.#state === "running" || this.#state === "idle" ? this.#deps.keyring().currentKeyId : this.#targetKeyId,
      progress: new Map([...this.#progress].map(([id, p]) => [id, { ...p }])),
      ...(this.#error ? { error: this.#error } : {}),
    };
  }

  #finish(state: "succeeded" | "failed", error?: string): void {
    this.#state = state;
    this.#endTime = this.#deps.now?.() ?? new Date();
    this.#targetKeyId = this.#deps.keyring().currentKeyId;
    if (error !== undefined) this.#error = error;
    this.#deps.onFinished?.(this.snapshot());
  }

  #counts(keyId: string): RewrapProgress {
    let counts = this.#progress.get(keyId);
    if (!counts) this.#progress.set(keyId, (counts = { moved: 0, skipped: 0, failed: 0, legacy: 0 }));
    return counts;
  }

  async #execute(concurrency: number): Promise<void> {
    // Rows already counted as failed or legacy are not counted again in a later pass.
    const failedRows = new Set<string>();
    const legacyCounted = new Set<string>();
    for (let pass = 0; pass < MAX_PASSES; pass++) {
      const keyring = this.#deps.keyring();
      const { keys } = await this.#call(() => this.#deps.keyMaintenance.countRecordKeys({}));
      const old = keys.filter(
        (k) => k.keyId !== keyring.currentKeyId && keyring.has(k.keyId) && k.records > k.legacyRecords,
      );
      let moved = 0;
      for (const { keyId } of old) {
        const counts = this.#counts(keyId);
        let pageToken = "";
        do {
          this.#checkStopping();
          const page = await this.#call(() => this.#deps.keyMaintenance.listRecordKeys({ keyId, pageSize: PAGE_SIZE, pageToken }));
          await forEachLimited(page.records, concurrency, async (row) => {
            this.#checkStopping();
            if (row.wrappedKey.length === 0) {
              if (!legacyCounted.has(keyId)) counts.legacy++;
              return;
            }
            if (failedRows.has(row.hash)) return;
            const outcome = await this.#rewrapOne(row);
            if (outcome === "failed") failedRows.add(row.hash);
            if (outcome === "moved") moved++;
            if (outcome !== "current") counts[outcome]++;
          });
          pageToken = page.nextPageToken;
        } while (pageToken !== "");
        legacyCounted.add(keyId);
      }
      if (moved === 0) return;
    }
  }

  async #rewrapOne(row: RecordKey): Promise<"moved" | "skipped" | "failed" | "current"> {
    const kind = KIND_NAMES[row.kind];
    if (kind === undefined) return "failed";
    const keyring = this.#deps.keyring();
    if (row.keyId === keyring.currentKeyId) return "current";
    let next;
    try {
      next = keyring.rewrap(kind, row.hash, row.keyId, row.wrappedKey);
    } catch (error) {
      if (error instanceof DecryptionError) return "failed";
      throw error;
    }
    try {
      await this.#call(() =>
        this.#deps.keyMaintenance.rewrapRecordKey({
          hash: row.hash,
          kind: row.kind,
          version: row.version,
          keyId: row.keyId,
          wrappedKey: row.wrappedKey,
          newKeyId: next.keyId,
          newWrappedKey: next.wrappedKey,
        }),
      );
      return "moved";
    } catch (error) {
      const code = ConnectError.from(error).code;
      // A concurrent update, delete or re-wrap got there first: it wins.
      if (code === Code.Aborted || code === Code.NotFound) return "skipped";
      throw error;
    }
  }

  /** A Storage call, retried (with backoff) while Storage says it is briefly unable. */
  async #call<T>(call: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (error) {
        const code = ConnectError.from(error).code;
        const transient = code === Code.Unavailable || code === Code.DeadlineExceeded || code === Code.ResourceExhausted;
        if (!transient || attempt >= RETRIES) {
          const e = ConnectError.from(error);
          throw new ConnectError(`storage: ${e.rawMessage}`, e.code);
        }
        await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt));
      }
    }
  }
}

async function forEachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
