// Structured JSON logs (pino), one logger per component. What is logged is chosen at
// each call site: identifiers, claims, tokens and records never are (DESIGN.md §2).

import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(component: string, options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.HELLO_LOG_LEVEL ?? "info",
      base: { component },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? process.stdout,
  );
}
