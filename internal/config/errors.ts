import { existsSync, readFileSync } from "node:fs";
import type { z } from "zod";

/** A configuration that failed validation, with every problem found, not just the first. */
export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
  ) {
    super(`${file} has ${problems.length} problem${problems.length === 1 ? "" : "s"}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

/** "clients[0].redirect_uris[1]: Invalid URL" lines from a zod error. */
export function formatIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const where = issue.path
      .map((part, i) => (typeof part === "number" ? `[${part}]` : `${i === 0 ? "" : "."}${String(part)}`))
      .join("");
    return `${where || "(top level)"}: ${issue.message}`;
  });
}

/** Reads a JSON configuration file and validates it, with every problem in one ConfigError. */
export function parseConfigFile<S extends z.ZodType>(file: string, schema: S): z.infer<S> {
  if (!existsSync(file)) throw new ConfigError(file, [`${file} does not exist`]);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new ConfigError(file, [`not valid JSON: ${(error as Error).message}`]);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(file, formatIssues(parsed.error));
  return parsed.data;
}
