// The deployment record `hello start` writes (<stateDir>/deployment.json): which
// process runs each component, from which file, where it listens on the mesh. It is how
// `hello verify` finds "the artifact actually deployed" (docs/design.md §8); verify does not
// take it on trust, it checks in /proc that each process runs the file named here.

import { existsSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { COMPONENTS, type Component } from "../protocol/identity.js";
import type { DevConfig } from "./dev-config.js";
import type { DevDeployment } from "./dev-deployment.js";
import { writeFileAtomic } from "../fs/write-file-atomic.js";
import { readJsonFile } from "../fs/read-json-file.js";

const DeployedComponentSchema = z.strictObject({
  pid: z.number().int().positive(),
  /** The file node was started with (dist/<component>/main.mjs); absent when the component runs from source. */
  artifact: z.string().optional(),
  /** The component's mesh address, where any custodian's operator may call BuildInfo. */
  mesh: z.url(),
  config: z.string(),
});

export const DeploymentRecordSchema = z.strictObject({
  /** The front door's public URL. */
  issuer: z.url(),
  /** The development certificates (one directory per custodian, operators' certificates included). */
  certs: z.string(),
  /** The mesh bundles (each custodian's CA and public keys). */
  bundles: z.string(),
  components: z.strictObject(Object.fromEntries(COMPONENTS.map((c) => [c, DeployedComponentSchema])) as Record<Component, typeof DeployedComponentSchema>),
});
export type DeploymentRecord = z.infer<typeof DeploymentRecordSchema>;

export function deploymentRecordPath(dev: DevConfig & { baseDir: string }): string {
  return path.resolve(dev.baseDir, dev.stateDir, "deployment.json");
}

/** What runs where, for `hello verify`: each component's process, the file it was started from, its mesh address. */
export function deploymentRecord(
  deployment: DevDeployment,
  pids: Record<Component, number>,
  artifacts: Partial<Record<Component, string>>,
  issuer: string,
): DeploymentRecord {
  const entry = (c: Component): DeploymentRecord["components"][Component] => {
    const { host, port } = deployment.configs[c].listen;
    const artifact = artifacts[c];
    return {
      pid: pids[c],
      ...(artifact ? { artifact } : {}),
      mesh: `https://${host}:${port}`,
      config: deployment.configFiles[c],
    };
  };
  return {
    issuer,
    certs: deployment.certs,
    bundles: path.join(deployment.certs, "bundles"),
    components: { orchestration: entry("orchestration"), token: entry("token"), encryption: entry("encryption"), storage: entry("storage") },
  };
}

export function pidsOf(children: ReadonlyMap<Component, { readonly pid?: number | undefined }>): Record<Component, number> {
  return Object.fromEntries(COMPONENTS.map((c) => [c, children.get(c)?.pid ?? 0])) as Record<Component, number>;
}

export async function writeDeploymentRecord(file: string, record: DeploymentRecord): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(DeploymentRecordSchema.parse(record), null, 2)}\n`, { secret: false });
}

export function readDeploymentRecord(file: string): DeploymentRecord {
  if (!existsSync(file)) throw new Error(`there is no deployment record at ${file}: \`hello start\` writes it while the components run`);
  return readJsonFile(DeploymentRecordSchema, file, "deployment record");
}
