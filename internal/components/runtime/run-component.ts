// Runs one component until SIGINT/SIGTERM, as its custodian does: from source
// (`hello serve <component> --config <file>`) or from its artifact
// (`node dist/<component>/main.mjs --config <file>`, whose entry is cmd/<component>/main.ts).

import { parseArgs } from "node:util";
import type { Component } from "../../protocol/identity.js";
import { loadComponentConfig } from "../../config/component-config.js";
import { ConfigError } from "../../config/errors.js";
import { createLogger, setProcessLogger } from "../../observability/log/logger.js";
import { initTracing } from "../../observability/tracing.js";
import { pinnedNodeProblem } from "./buildinfo/artifact.js";
import type { ServiceFactory } from "./component-services.js";
import { MissingKeyMaterialError } from "./credentials.js";
import { serveComponent } from "./serve-component.js";

/** Returns the exit code. `usage` is how this component is started, for error messages. */
export async function runComponent<C extends Component>(
  component: C,
  service: ServiceFactory<C>,
  args: string[],
  usage = `hello serve ${component}`,
): Promise<number> {
  const pinned = pinnedNodeProblem();
  if (pinned) {
    process.stderr.write(`${usage}: ${pinned}\n`);
    return 1;
  }
  let values;
  try {
    ({ values } = parseArgs({ args, options: { config: { type: "string" } } }));
  } catch (error) {
    process.stderr.write(`${usage}: ${(error as Error).message}\nusage: ${usage} --config <file>\n`);
    return 2;
  }
  if (!values.config) {
    process.stderr.write(`${usage}: --config <file> is required (the ${component} custodian's configuration)\n`);
    return 2;
  }

  const log = createLogger(component);
  setProcessLogger(log); // the mesh server, mesh clients and front door log through it
  const tracing = initTracing(`hello-${component}`);
  let running;
  try {
    running = await serveComponent(loadComponentConfig(values.config, component), log, service);
  } catch (error) {
    // Start-up errors are about configuration, keys, bundles or the database: the
    // custodian needs the words on stderr, not only a JSON log line.
    process.stderr.write(`${usage}: ${error instanceof Error ? error.message : String(error)}\n`);
    if (!(error instanceof ConfigError || error instanceof MissingKeyMaterialError)) log.fatal({ err: error }, "failed to start");
    await tracing.shutdown();
    return 1;
  }
  log.info({ url: running.server.url }, `${component} is serving on ${running.server.url}`);

  await new Promise<void>((resolve) => {
    // Ctrl-C under `hello start` reaches a component twice: SIGINT from the terminal to
    // the whole process group, and SIGTERM from hello start. One stop, said once.
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, "stopping");
      resolve();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  await running.close();
  await tracing.shutdown();
  log.info("stopped");
  return 0;
}
