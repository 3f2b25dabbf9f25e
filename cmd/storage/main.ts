// The entry point of the storage artifact (`npm run build` bundles it into
// dist/storage/main.mjs): Storage's wiring and nothing of the other components'.
//
//   node dist/storage/main.mjs --config <file>

import { storageService } from "../../internal/components/storage/wiring.js";
import { runComponent } from "../../internal/components/runtime/run-component.js";

// Exit with the code whatever a library left open: a supervisor must see a failed start.
process.exit(await runComponent("storage", storageService, process.argv.slice(2), "storage artifact"));
