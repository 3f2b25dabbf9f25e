// The build record: a sidecar the build writes next to each artifact directory
// (`dist/<component>.build.json`), outside what the digest covers. It says which
// source revision the build came from, which the artifact bytes must not (a revision
// in the bytes would change every digest on every commit). Like BuildInfo it is a
// claim, not a proof: `hello verify` rebuilds instead of believing it.

import { readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { COMPONENTS } from "../../../protocol/identity.js";

export const BuildRecordSchema = z.strictObject({
  component: z.enum(COMPONENTS),
  digest: z.string().regex(/^[0-9a-f]{64}$/),
  /** The file `node` runs, relative to the artifact directory. */
  entry: z.string(),
  /** `git rev-parse HEAD` of the source, with "-dirty" when tracked files differ from it; "" outside git. */
  sourceRevision: z.string(),
  node: z.string(),
  esbuild: z.string(),
  files: z.array(z.strictObject({ path: z.string(), sha256: z.string(), size: z.number() })),
});
export type BuildRecord = z.infer<typeof BuildRecordSchema>;

/** `dist/token` → `dist/token.build.json`. */
export function buildRecordPath(artifactDir: string): string {
  return `${path.resolve(artifactDir)}.build.json`;
}

/** The record for `artifactDir`, if there is one and it describes exactly these bytes. */
export function readBuildRecord(artifactDir: string, digest: string): BuildRecord | undefined {
  try {
    const record = BuildRecordSchema.parse(JSON.parse(readFileSync(buildRecordPath(artifactDir), "utf8")));
    return record.digest === digest ? record : undefined;
  } catch {
    return undefined;
  }
}
