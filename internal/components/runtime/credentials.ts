import { existsSync, readFileSync } from "node:fs";
import type { ComponentConfig } from "../../config/component-config.js";
import type { MeshCredentials } from "../../../mesh/server.js";
import { MissingKeyMaterialError } from "../../protocol/key-files.js";

export { MissingKeyMaterialError };

export function loadCredentials(config: ComponentConfig): MeshCredentials {
  const missing = [config.tls.cert, config.tls.key].filter((file) => !existsSync(file));
  if (missing.length > 0) {
    throw new MissingKeyMaterialError(
      `the ${config.component} component cannot start: ${missing.join(" and ")} ${missing.length === 1 ? "is" : "are"} missing. ` +
        `Its custodian issues them with \`hello pki issue ${config.component}\` (and \`hello pki init-ca ${config.component}\` for a new CA); ` +
        "keys are made automatically only by `hello start`, the development mode.",
    );
  }
  return { certPem: readFileSync(config.tls.cert, "utf8"), keyPem: readFileSync(config.tls.key, "utf8") };
}
