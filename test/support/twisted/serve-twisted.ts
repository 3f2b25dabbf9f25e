// TEST SUPPORT ONLY: runs one component as `hello serve` does, with the real wiring of
// that component, but twisted for a test: its clock shifted (clock.ts) and, when the
// test names it, a rogue version of its service (the real handlers with a malicious
// twist, rogue-token.ts). Tests start it through startComponentProcesses's `commands`
// option (test/support/protocol-mesh.ts). No component's entry point imports this
// directory, so none of it reaches an artifact (internal/ops/build/build.spec.ts checks).
//
//   node test/support/twisted/bin.js <component> --config <file>
//   HELLO_TEST_CONTROL=<control file>  HELLO_TEST_ROGUE=<component,...>

import { fileURLToPath } from "node:url";
import { type Component, isComponent } from "../../../internal/protocol/identity.js";
import type { ServiceFactory } from "../../../internal/components/runtime/component-services.js";
import { runComponent } from "../../../internal/components/runtime/run-component.js";
import { installShiftedClock } from "./clock.js";
import { type TwistControl, controlReader } from "./control.js";

/** The arguments `node` runs to start `component` twisted (for startComponentProcesses's `commands`). */
export function twistedCommand(component: Component, configFile: string): string[] {
  return [fileURLToPath(new URL("./bin.js", import.meta.url)), component, "--config", configFile];
}

export async function main(args: string[]): Promise<number> {
  const [component, ...rest] = args;
  if (!component || !isComponent(component)) {
    process.stderr.write("usage: twisted <component> --config <file>\n");
    return 2;
  }
  const controlFile = process.env.HELLO_TEST_CONTROL;
  const control: () => TwistControl = controlFile ? controlReader(controlFile) : () => ({});
  installShiftedClock(() => control().clockOffsetMs ?? 0);
  const rogue = (process.env.HELLO_TEST_ROGUE ?? "").split(",").includes(component);
  return runComponent(component, await factory(component, rogue, control) as ServiceFactory<typeof component>, rest, `twisted ${component}`);
}

async function factory(component: Component, rogue: boolean, control: () => TwistControl): Promise<ServiceFactory<Component>> {
  switch (component) {
    case "orchestration":
      return (await import("../../../internal/components/orchestration/wiring.js")).orchestrationService as ServiceFactory<Component>;
    case "token": {
      const { tokenService } = await import("../../../internal/components/token/wiring.js");
      if (!rogue) return tokenService as ServiceFactory<Component>;
      const { rogueToken } = await import("./rogue-token.js");
      return rogueToken(tokenService, () => control().token ?? {}) as ServiceFactory<Component>;
    }
    case "encryption":
      return (await import("../../../internal/components/encryption/wiring.js")).encryptionService as ServiceFactory<Component>;
    case "storage":
      return (await import("../../../internal/components/storage/wiring.js")).storageService as ServiceFactory<Component>;
  }
}
