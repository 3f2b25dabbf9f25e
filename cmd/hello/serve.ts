// hello serve <component> --config <file>: one component, as its custodian runs it.

import { parseArgs } from "node:util";
import { COMPONENTS, isComponent } from "../../mesh/identity.js";
import { loadComponentConfig } from "../../internal/config/component-config.js";
import { ConfigError } from "../../internal/config/errors.js";
import { createLogger, setProcessLogger } from "../../internal/log/logger.js";
import { MissingKeyMaterialError } from "../../internal/serve/credentials.js";
import { serveComponent } from "../../internal/serve/serve-component.js";
import { initTracing } from "../../internal/telemetry/tracing.js";

export async function runServe(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { config: { type: "string" } },
  });
  const component = positionals[0];
  if (!component || !isComponent(component) || positionals.length > 1) {
    process.stderr.write(`usage: hello serve <component> --config <file>\n  component: one of ${COMPONENTS.join(", ")}\n`);
    return 2;
  }
  if (!values.config) {
    process.stderr.write(`hello serve ${component}: --config <file> is required (the ${component} custodian's configuration)\n`);
    return 2;
  }

  const log = createLogger(component);
  setProcessLogger(log); // the mesh server, mesh clients and front door log through it
  const tracing = initTracing(`hello-${component}`);
  let running;
  try {
    running = await serveComponent(loadComponentConfig(values.config, component), log);
  } catch (error) {
    // Start-up errors are about configuration, keys, bundles or the database: the
    // custodian needs the words on stderr, not only a JSON log line.
    process.stderr.write(`hello serve ${component}: ${error instanceof Error ? error.message : String(error)}\n`);
    if (!(error instanceof ConfigError || error instanceof MissingKeyMaterialError)) log.fatal({ err: error }, "failed to start");
    return 1;
  }
  log.info({ url: running.server.url }, `${component} is serving on ${running.server.url}`);

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, "stopping");
      resolve();
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  await running.close();
  await tracing.shutdown();
  log.info("stopped");
  return 0;
}
