import { existsSync, readFileSync } from "node:fs";
import type { ComponentConfig } from "../config/component-config.js";
import type { Component } from "../../mesh/identity.js";
import type { MeshCredentials } from "../../mesh/server.js";
import { pkiPaths } from "../pki/layout.js";

/**
 * Production keys are never generated silently (DESIGN.md §2): a component whose
 * certificate or key is missing refuses to start and says how its custodian makes them.
 */
export class MissingKeyMaterialError extends Error {
  override name = "MissingKeyMaterialError";
}

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

/** `component`'s custodian's operator certificate and key, from a certificates directory laid out by `hello pki`. */
export function operatorCredentials(certsDir: string, component: Component): MeshCredentials {
  const paths = pkiPaths(certsDir, component);
  return { certPem: readFileSync(paths.operatorCert, "utf8"), keyPem: readFileSync(paths.operatorKey, "utf8") };
}
