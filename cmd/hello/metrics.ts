// hello metrics <component> --as <custodian>: one component's metrics (Prometheus text),
// read over the mesh with a custodian's operator certificate. Every custodian's
// operator may read every component's metrics (seed 000), so --as may name any of the
// four; the mesh refuses component certificates and unknown CAs as for any call.

import { existsSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { COMPONENTS, type Component, isComponent } from "../../internal/protocol/identity.js";
import { readBundles, trustFromBundles } from "../../mesh/bundle.js";
import { createMeshTransport } from "../../mesh/client.js";
import { ConfigError } from "../../internal/config/errors.js";
import { loadDevConfig } from "../../internal/dev/dev-config.js";
import { MetricsService } from "../../internal/gen/hello/common/v1/metrics_pb.js";
import { pkiPaths } from "../../internal/ops/pki/layout.js";
import { operatorCredentials } from "../../internal/ops/pki/layout.js";

export const METRICS_USAGE = `usage: hello metrics <component> [--as <custodian>] [--config hello.config.json]
       hello metrics <component> --as <custodian> --url https://<host>:<port> --certs <dir> [--bundles <dir>]

  Prints <component>'s metrics in the Prometheus text format, read with <custodian>'s
  operator certificate (<certs>/<custodian>/operator.crt; default: <component>'s own
  custodian). With --config (development), the address and certificates come from the
  hello start configuration; otherwise give the mesh address, the certificates
  directory and the directory of the peers' mesh bundles (default <certs>/bundles).
  component, custodian: one of ${COMPONENTS.join(", ")}
`;

export async function runMetrics(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        as: { type: "string" },
        config: { type: "string" },
        url: { type: "string" },
        certs: { type: "string" },
        bundles: { type: "string" },
      },
    });
  } catch (error) {
    process.stderr.write(`hello metrics: ${(error as Error).message}\n${METRICS_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const component = positionals[0];
  const as = values.as ?? component;
  if (!component || !isComponent(component) || positionals.length > 1 || !as || !isComponent(as)) {
    const one = `one of ${COMPONENTS.join(", ")}`;
    const problem =
      component === undefined ? `a component is required: ${one}`
      : !isComponent(component) ? `unknown component "${component}": expected ${one}`
      : positionals.length > 1 ? `unexpected argument "${positionals[1]}"`
      : `--as names a custodian (${one}), not "${as}"`;
    process.stderr.write(`hello metrics: ${problem}\n${METRICS_USAGE}`);
    return 2;
  }

  let url: string;
  let certs: string;
  if (values.url) {
    if (!values.certs) {
      process.stderr.write(`hello metrics: --url needs --certs (the directory holding ${as}/operator.crt)\n`);
      return 2;
    }
    url = values.url;
    certs = path.resolve(values.certs);
  } else {
    try {
      const dev = loadDevConfig(values.config ?? "hello.config.json");
      url = `https://127.0.0.1:${dev.ports[component]}`;
      certs = path.resolve(dev.baseDir, values.certs ?? dev.certificates);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      process.stderr.write(`hello metrics: ${error.message}\n`);
      return 1;
    }
  }

  const operator = pkiPaths(certs, as as Component);
  for (const file of [operator.operatorCert, operator.operatorKey]) {
    if (!existsSync(file)) {
      process.stderr.write(`hello metrics: the ${as} operator's ${file} is missing (\`hello pki issue ${as} --operator\` makes it)\n`);
      return 1;
    }
  }
  let exposition: string;
  try {
    const transport = createMeshTransport({
      target: component,
      baseUrl: url,
      credentials: operatorCredentials(certs, as as Component),
      trust: trustFromBundles(readBundles(values.bundles ?? path.join(certs, "bundles"), [component])),
    });
    ({ exposition } = await createClient(MetricsService, transport).getMetrics({}));
  } catch (error) {
    const reason = error instanceof ConnectError ? `${error.code === Code.Unavailable ? "unreachable" : "refused"}: ${error.rawMessage}` : (error as Error).message;
    process.stderr.write(`hello metrics: could not read ${component}'s metrics at ${url} as ${as}/operator (${reason})\n`);
    return 1;
  }
  process.stdout.write(exposition);
  return 0;
}
