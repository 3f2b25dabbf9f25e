// hello verify: what any custodian can check against a running deployment
// (docs/design.md §5, §8; docs/builds.md):
//
//   builds  every component runs exactly what this checkout builds (rebuilt here,
//           compared with the artifact each process was started from and with what
//           its BuildInfo reports);
//   keys    the front door publishes Token's key set and no key of its own.
//
// After `hello start`, plain `hello verify` checks both, reading hello.config.json and
// the deployment record hello start wrote. Given --deployment or --issuer alone, it
// checks what those name, and says what it did not check.

import path from "node:path";
import { parseArgs } from "node:util";
import { COMPONENTS, isComponent } from "../../internal/protocol/identity.js";
import { readBundle } from "../../mesh/bundle.js";
import { loadDevConfig } from "../../internal/dev/dev-config.js";
import { ConfigError } from "../../internal/config/errors.js";
import { type DeploymentRecord, deploymentRecordPath, readDeploymentRecord } from "../../internal/dev/deployment-record.js";
import { checkBuilds, formatBuildsTable } from "../../internal/ops/verify/builds.js";
import { checkServedKeys } from "../../internal/ops/verify/served-keys.js";

export const VERIFY_USAGE = `usage: hello verify [--config hello.config.json] [--deployment <file>] [--issuer <url>]
                    [--bundles <dir>] [--source <checkout>] [--as <custodian>]`;

const CHECKOUT = path.resolve(import.meta.dirname, "../..");
const out = (line = "") => process.stdout.write(`${line}\n`);

export async function runVerify(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: "string" },
        deployment: { type: "string" },
        issuer: { type: "string" },
        bundles: { type: "string" },
        source: { type: "string", default: CHECKOUT },
        as: { type: "string", default: "orchestration" },
      },
    }));
  } catch (error) {
    process.stderr.write(`hello verify: ${(error as Error).message}\n${VERIFY_USAGE}\n`);
    return 2;
  }
  if (!isComponent(values.as)) {
    process.stderr.write(`hello verify: --as names a custodian (${COMPONENTS.join(", ")}), not ${JSON.stringify(values.as)}\n`);
    return 2;
  }

  let dev;
  let deployment: DeploymentRecord | undefined;
  try {
    if (values.config || (!values.deployment && !values.issuer)) dev = loadDevConfig(values.config ?? "hello.config.json");
    const recordFile = values.deployment ?? (dev ? deploymentRecordPath(dev) : undefined);
    if (recordFile) deployment = readDeploymentRecord(recordFile);
  } catch (error) {
    process.stderr.write(`hello verify: ${(error as Error).message}${error instanceof ConfigError ? "" : " (is `hello start` running?)"}\n`);
    return 2;
  }
  const issuer = values.issuer ?? dev?.issuer ?? deployment?.issuer;
  const bundles =
    values.bundles ?? deployment?.bundles ?? (dev ? path.resolve(dev.baseDir, dev.certificates, "bundles") : "certs/bundles");

  const failed = new Set<string>();
  if (deployment) {
    out(`Rebuilding every component from ${values.source} into a temporary directory…`);
    let report;
    try {
      report = await checkBuilds({ sourceDir: values.source, deployment, operator: values.as });
    } catch (error) {
      out(`hello verify: cannot check the builds: ${(error as Error).message}`);
      return 1;
    }
    out();
    for (const line of formatBuildsTable(report)) out(line);
    out();
    for (const row of report.rows) {
      for (const problem of row.problems) out(`FAIL          ${row.component}: ${problem}`);
      if (row.problems.length > 0) failed.add(row.component);
    }
    if (failed.size === 0) out(`builds        ok: each component runs what this checkout builds, on Node v${report.node}`);
  } else {
    out("builds        not checked: no deployment record (run `hello start`, or pass --deployment <file>)");
  }

  out();
  if (issuer) {
    let report;
    try {
      report = await checkServedKeys(issuer, readBundle(bundles, "token"));
    } catch (error) {
      report = { jwksUri: undefined, served: [], problems: [`cannot check the published keys: ${(error as Error).message}`] };
    }
    out(`jwks_uri      ${report.jwksUri ?? "(none)"}`);
    out(`served keys   ${report.served.join(", ") || "(none)"}`);
    if (report.problems.length === 0) out("verdict       ok: every served key is Token's");
    for (const problem of report.problems) out(`FAIL          orchestration: ${problem}`);
    if (report.problems.length > 0) failed.add("orchestration");
  } else {
    out("keys          not checked: no issuer (pass --issuer <url>)");
  }

  if (failed.size > 0) {
    out();
    out(`hello verify: FAILED for ${[...failed].join(", ")}`);
    return 1;
  }
  return 0;
}
