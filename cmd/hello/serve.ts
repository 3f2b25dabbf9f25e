// hello serve <component> --config <file>: one component from source, as its custodian
// runs it. The built artifact of a component (`node dist/<component>/main.mjs`) runs
// the same code through cmd/<component>/main.ts.

import { parseArgs } from "node:util";
import { COMPONENTS, type Component, isComponent } from "../../internal/protocol/identity.js";
import type { ServiceFactory } from "../../internal/components/runtime/component-services.js";
import { runComponent } from "../../internal/components/runtime/run-component.js";

/** Each component's wiring, loaded only for the component asked for. */
const WIRING: { [C in Component]: () => Promise<ServiceFactory<C>> } = {
  orchestration: async () => (await import("../../internal/components/orchestration/wiring.js")).orchestrationService,
  token: async () => (await import("../../internal/components/token/wiring.js")).tokenService,
  encryption: async () => (await import("../../internal/components/encryption/wiring.js")).encryptionService,
  storage: async () => (await import("../../internal/components/storage/wiring.js")).storageService,
};

export const SERVE_USAGE = `usage: hello serve <component> --config <file>

  Runs one component from source, as its custodian does (the built artifact,
  node dist/<component>/main.mjs --config <file>, runs the same code).
  component: one of ${COMPONENTS.join(", ")}`;

export async function runServe(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: { config: { type: "string" } } });
  } catch (error) {
    process.stderr.write(`hello serve: ${(error as Error).message}\n${SERVE_USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  const component = positionals[0];
  if (!component || !isComponent(component) || positionals.length > 1) {
    const problem =
      component === undefined ? "a component is required"
      : !isComponent(component) ? `unknown component "${component}": expected one of ${COMPONENTS.join(", ")}`
      : `unexpected argument "${positionals[1]}"`;
    process.stderr.write(`hello serve: ${problem}\n${SERVE_USAGE}\n`);
    return 2;
  }
  return serveWith(component, values.config === undefined ? [] : ["--config", values.config]);
}

async function serveWith<C extends Component>(component: C, args: string[]): Promise<number> {
  return runComponent(component, await WIRING[component](), args);
}
