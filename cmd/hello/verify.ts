// hello verify: what any custodian can check against a running deployment. For now,
// that the keys the front door publishes are Token's (DESIGN.md §5); reproducible
// build checks join it with the verification issue.

import { parseArgs } from "node:util";
import { readBundle } from "../../mesh/bundle.js";
import { checkServedKeys } from "../../internal/verify/served-keys.js";

export async function runVerify(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { issuer: { type: "string" }, bundles: { type: "string", default: "certs/bundles" } },
  });
  if (!values.issuer) {
    process.stderr.write("usage: hello verify --issuer <url> [--bundles <dir with token.json>]\n");
    return 2;
  }
  const report = await checkServedKeys(values.issuer, readBundle(values.bundles, "token"));
  process.stdout.write(`jwks_uri      ${report.jwksUri ?? "(none)"}\n`);
  process.stdout.write(`served keys   ${report.served.join(", ") || "(none)"}\n`);
  if (report.problems.length === 0) {
    process.stdout.write("verdict       ok: every served key is Token's\n");
    return 0;
  }
  for (const problem of report.problems) process.stdout.write(`FAIL          orchestration: ${problem}\n`);
  return 1;
}
