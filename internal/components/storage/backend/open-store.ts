import { InvalidArgumentError } from "./errors.js";
import { openPGliteStore } from "./pglite-store.js";
import { openPostgresStore } from "./postgres-store.js";
import type { RecordStore } from "./record-store.js";

/**
 * The record store the configuration asks for: PostgreSQL when a postgres:// or
 * postgresql:// URL is given, otherwise PGlite (on disk at `dataDir`; in memory without,
 * which only tests want).
 */
export async function openRecordStore(config: { url?: string; dataDir?: string }): Promise<RecordStore> {
  if (config.url === undefined) {
    return openPGliteStore(config.dataDir === undefined ? {} : { dataDir: config.dataDir });
  }
  // A URL of another scheme is refused rather than ignored: falling back to PGlite would
  // quietly write records somewhere other than where the operator meant.
  if (!/^postgres(ql)?:\/\//i.test(config.url)) {
    throw new InvalidArgumentError("the database URL must start with postgres:// or postgresql://");
  }
  return openPostgresStore({ url: config.url });
}
