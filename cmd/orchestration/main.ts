// The entry point of the orchestration artifact (`npm run build` bundles it into
// dist/orchestration/main.mjs): Orchestration's wiring and nothing of the other components'.
//
//   node dist/orchestration/main.mjs --config <file>

import { orchestrationService } from "../../internal/components/orchestration/wiring.js";
import { runComponent } from "../../internal/components/runtime/run-component.js";

// Exit with the code whatever a library left open: a supervisor must see a failed start.
process.exit(await runComponent("orchestration", orchestrationService, process.argv.slice(2), "orchestration artifact"));
