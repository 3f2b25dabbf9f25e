// A custodian's command run in this process, its output kept: the exit code, what it
// logged and what it complained, each joined into one text.

import type { CommandOutput } from "../../internal/ops/cli.js";

export async function captured(run: (out: CommandOutput) => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  const log: string[] = [];
  const error: string[] = [];
  const code = await run({ log: (line) => log.push(line), error: (line) => error.push(line) });
  return { code, out: log.join("\n"), err: error.join("\n") };
}
