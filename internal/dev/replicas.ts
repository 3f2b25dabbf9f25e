// Replicas for a development deployment (`hello start --ha`, and the fault tests): each
// replica is one more process of the same custodian, with the same configuration and keys
// but a listen port and a mesh certificate of its own, issued by its custodian's CA, with
// the same identity. Its callers name every replica in their `peers` (Orchestration:
// Token's and Encryption's; every Encryption: Storage's), and their mesh clients spread
// calls over them and fail over (mesh/replicated-transport.ts, docs/replicas.md).
//
// Orchestration's replicas also need what docs/replicas.md says: one public address in
// front of them (an HTTP load balancer at the issuer URL, which the caller runs) and a
// shared state database (`state.url`), which the caller gives Orchestration's own
// configuration before calling addReplicas; each replica then gets a public port of its own.

import { readFile, writeFile } from "node:fs/promises";
import { writeFileAtomic } from "../fs/write-file-atomic.js";
import path from "node:path";
import type { Component } from "../protocol/identity.js";
import type { ComponentConfig, ConfigFor } from "../config/component-config.js";
import { issueComponentCertificate } from "../ops/pki/pki.js";
import { isNotFound, pkiPaths } from "../ops/pki/layout.js";
import type { DevDeployment } from "./dev-deployment.js";

/** The components a development deployment can replicate, and how many of each to run in all (at least 1). */
export type ReplicaPlan = Partial<Record<"orchestration" | "token" | "encryption" | "storage", number>>;

export interface Replica {
  readonly component: Component;
  /** 2 for the second process of the component, and so on (the first is the deployment's own). */
  readonly number: number;
  readonly configFile: string;
  readonly config: ComponentConfig;
  /** Where its callers reach it: https://host:port. */
  readonly url: string;
}

export interface ReplicatedDeployment {
  /** The deployment, its Orchestration and Encryption configurations now naming every replica of their peers. */
  readonly deployment: DevDeployment;
  readonly replicas: readonly Replica[];
}

/**
 * Adds the replicas of `plan` to `deployment`: certificates (made once, kept beside the
 * component's own under `<certs>/<component>/replicas/`), configuration files (beside the
 * component's, `<component>-<n>.json`), and the callers' peer lists, rewritten.
 * `port(component, n, "mesh")` gives replica n its listen port; an Orchestration replica
 * also asks for its `"public"` (front-door) port.
 */
export async function addReplicas(
  deployment: DevDeployment,
  plan: ReplicaPlan,
  port: (component: Component, n: number, purpose: "mesh" | "public") => number | Promise<number>,
): Promise<ReplicatedDeployment> {
  const storage = deployment.configs.storage as ConfigFor<"storage">;
  if ((plan.storage ?? 1) > 1 && storage.database.url === undefined) {
    throw new Error("Storage replicas need a PostgreSQL database (a database URL): the embedded PGlite database is one process's alone");
  }
  const orchestrationOwn = deployment.configs.orchestration as ConfigFor<"orchestration">;
  if ((plan.orchestration ?? 1) > 1 && (orchestrationOwn.state === undefined || orchestrationOwn.wallet !== undefined)) {
    throw new Error("Orchestration replicas need a shared state database (state.url) and no wallet server (its S2S port is one process's)");
  }
  const replicas: Replica[] = [];
  for (const component of ["orchestration", "token", "encryption", "storage"] as const) {
    const total = plan[component] ?? 1;
    if (!Number.isInteger(total) || total < 1) throw new Error(`replicas of ${component}: ${total} is not a whole number of processes, at least 1`);
    const own = deployment.configs[component];
    for (let n = 2; n <= total; n++) {
      const tls = await ensureReplicaCertificate(deployment.certs, component, n);
      const config = { ...own, listen: { ...own.listen, port: await port(component, n, "mesh") }, tls } as ComponentConfig;
      if (config.component === "orchestration") config.public = { ...config.public, port: await port(component, n, "public") };
      const configFile = path.join(path.dirname(deployment.configFiles[component]), `${component}-${n}.json`);
      await writeConfig(configFile, config);
      replicas.push({ component, number: n, configFile, config, url: `https://${config.listen.host}:${config.listen.port}` });
    }
  }

  const everyOf = (component: Component) => {
    const own = deployment.configs[component];
    return [`https://${own.listen.host}:${own.listen.port}`, ...replicas.filter((r) => r.component === component).map((r) => r.url)];
  };
  const one = (urls: string[]) => (urls.length === 1 ? urls[0]! : urls);
  // Every Orchestration names every Token and Encryption; every Encryption every Storage.
  const withPeers = (config: ComponentConfig): ComponentConfig => {
    if (config.component === "orchestration") return { ...config, peers: { token: one(everyOf("token")), encryption: one(everyOf("encryption")) } };
    if (config.component === "encryption") return { ...config, peers: { storage: one(everyOf("storage")) } };
    return config;
  };
  const configs = { ...deployment.configs };
  for (const component of ["orchestration", "encryption"] as const) {
    configs[component] = withPeers(deployment.configs[component]);
    await writeConfig(deployment.configFiles[component], configs[component]);
  }
  const rewritten = await Promise.all(
    replicas.map(async (replica) => {
      const config = withPeers(replica.config);
      if (config === replica.config) return replica;
      await writeConfig(replica.configFile, config);
      return { ...replica, config };
    }),
  );
  return { deployment: { ...deployment, configs }, replicas: rewritten };
}

/** A component's configuration file, as dev-deployment.ts writes them. */
const writeConfig = (file: string, config: ComponentConfig) => writeFile(file, `${JSON.stringify(config, null, 2)}\n`);

/** The deployment as startComponentProcesses sees it, with `replica` in its component's place. */
export function replicaDeployment(deployment: DevDeployment, replica: Replica): DevDeployment {
  return {
    ...deployment,
    configs: { ...deployment.configs, [replica.component]: replica.config },
    configFiles: { ...deployment.configFiles, [replica.component]: replica.configFile },
  };
}

/** Replica n's certificate and key (made from its custodian's CA if missing): the paths, as a config's `tls`. */
async function ensureReplicaCertificate(certs: string, component: Component, n: number): Promise<{ cert: string; key: string }> {
  const paths = pkiPaths(certs, component);
  const dir = path.join(paths.dir, "replicas");
  const cert = path.join(dir, `${component}-${n}.crt`);
  const key = path.join(dir, `${component}-${n}.key`);
  try {
    await readFile(cert);
    await readFile(key);
    return { cert, key };
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  const ca = { certPem: await readFile(paths.caCert, "utf8"), keyPem: await readFile(paths.caKey, "utf8") };
  const leaf = issueComponentCertificate(ca, component);
  // As the development PKI writes its pairs: atomically, the key first (0600).
  await writeFileAtomic(key, leaf.keyPem, { secret: true });
  await writeFileAtomic(cert, leaf.certPem, { secret: false });
  return { cert, key };
}
