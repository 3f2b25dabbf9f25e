// The entry point of the encryption artifact (`npm run build` bundles it into
// dist/encryption/main.mjs): Encryption's wiring and nothing of the other components'.
//
//   node dist/encryption/main.mjs --config <file>

import { encryptionService } from "../../internal/components/encryption/wiring.js";
import { runComponent } from "../../internal/components/runtime/run-component.js";

// Exit with the code whatever a library left open: a supervisor must see a failed start.
process.exit(await runComponent("encryption", encryptionService, process.argv.slice(2), "encryption artifact"));
