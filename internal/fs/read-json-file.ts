// A JSON file read against its schema, with an error that names the file and says what
// is wrong: not JSON, or which members fail (zod's words). Key files, mesh bundles and
// the deployment record are read this way; configurations have their own, which lists
// every problem (internal/config/errors.ts).

import { readFileSync } from "node:fs";
import { z } from "zod";

/** `file` parsed by `schema`; `what` names it in the error ("mesh bundle", "signing key file"). */
export function readJsonFile<T>(schema: z.ZodType<T>, file: string, what: string): T {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    if (error instanceof SyntaxError) throw new Error(`the ${what} ${file} is not JSON: ${error.message}`);
    throw error;
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new Error(`the ${what} ${file} is invalid: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}
