// TEST SUPPORT ONLY (never imported by a component's entry point; checked by
// internal/ops/build/build.spec.ts): the control file through which a test steers the
// components it runs twisted (test/support/twisted/serve-twisted.ts) — their clock,
// and the misbehaviour of a rogue component — while they run.

import { readFileSync, renameSync, statSync, writeFileSync } from "node:fs";

/** A marker the build test looks for in the artifacts: test powers never ship. */
export const TEST_POWER_MARKER = "hello-mesh-test-power-7f3a";

export interface TwistControl {
  /** Added to every component's clock (Date), in milliseconds. */
  readonly clockOffsetMs?: number;
  /** The rogue Token's misbehaviour per method (test/support/twisted/rogue-token.ts); absent: honest. */
  readonly token?: Readonly<Record<string, string>>;
}

/** Writes the control file whole (a reader sees the old or the new one). */
export function writeControl(file: string, control: TwistControl): void {
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, JSON.stringify({ ...control, marker: TEST_POWER_MARKER }));
  renameSync(temp, file);
}

/**
 * The control as it is on disk now, re-read only when the file changed (its size or
 * modification time), so a caller may ask on every Date.now().
 */
export function controlReader(file: string): () => TwistControl {
  let seen = "";
  let control: TwistControl = {};
  return () => {
    let stamp: string;
    try {
      const stat = statSync(file, { bigint: true });
      stamp = `${stat.mtimeNs}:${stat.size}:${stat.ino}`;
    } catch {
      return control;
    }
    if (stamp !== seen) {
      control = JSON.parse(readFileSync(file, "utf8")) as TwistControl;
      seen = stamp;
    }
    return control;
  };
}
