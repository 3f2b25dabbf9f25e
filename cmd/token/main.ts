// The entry point of the token artifact (`npm run build` bundles it into
// dist/token/main.mjs): Token's wiring and nothing of the other components'.
//
//   node dist/token/main.mjs --config <file>

import { tokenService } from "../../internal/components/token/wiring.js";
import { runComponent } from "../../internal/components/runtime/run-component.js";

// Exit with the code whatever a library left open: a supervisor must see a failed start.
process.exit(await runComponent("token", tokenService, process.argv.slice(2), "token artifact"));
