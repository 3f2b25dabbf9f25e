// hello serve <component> --config <file>: one component from source, as its custodian
// runs it. The built artifact of a component (`node dist/<component>/main.mjs`) runs
// the same code through cmd/<component>/main.ts.

import { parseArgs } from "node:util";
import { COMPONENTS, type Component, isComponent } from "../../mesh/identity.js";
import type { ServiceFactory } from "../../internal/serve/component-services.js";
import { runComponent } from "../../internal/serve/run-component.js";

/** Each component's wiring, loaded only for the component asked for. */
const WIRING: { [C in Component]: () => Promise<ServiceFactory<C>> } = {
  orchestration: async () => (await import("../../internal/serve/components/orchestration.js")).orchestrationService,
  token: async () => (await import("../../internal/serve/components/token.js")).tokenService,
  encryption: async () => (await import("../../internal/serve/components/encryption.js")).encryptionService,
  storage: async () => (await import("../../internal/serve/components/storage.js")).storageService,
};

export async function runServe(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { config: { type: "string" } } });
  const component = positionals[0];
  if (!component || !isComponent(component) || positionals.length > 1) {
    process.stderr.write(`usage: hello serve <component> --config <file>\n  component: one of ${COMPONENTS.join(", ")}\n`);
    return 2;
  }
  return serveWith(component, values.config === undefined ? [] : ["--config", values.config]);
}

async function serveWith<C extends Component>(component: C, args: string[]): Promise<number> {
  return runComponent(component, await WIRING[component](), args);
}
