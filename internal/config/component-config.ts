// Each component's own configuration, held by its custodian (DESIGN.md §2). The
// schemas are strict and differ per component, so a component cannot be handed a
// secret that is not its own: Token's configuration has no place for database
// credentials, Encryption's none for a signing key, Orchestration's no Storage peer.
// Paths are relative to the configuration file's directory.

import path from "node:path";
import { z } from "zod";
import type { Component } from "../../mesh/identity.js";
import { ConfigError, parseConfigFile } from "./errors.js";

const Port = z.number().int().min(0).max(65535);
const HttpsUrl = z.url({ protocol: /^https$/ });

const Listen = z.strictObject({
  host: z.string().min(1).default("127.0.0.1"),
  port: Port,
});

/** This component's mesh certificate and key, issued by its custodian's CA. */
const Tls = z.strictObject({ cert: z.string().min(1), key: z.string().min(1) });

const common = {
  listen: Listen,
  tls: Tls,
  /** Directory of peers' mesh bundles (`<component>.json`). */
  bundles: z.string().min(1),
};

export const OrchestrationConfigSchema = z.strictObject({
  component: z.literal("orchestration"),
  ...common,
  peers: z.strictObject({ token: HttpsUrl, encryption: HttpsUrl }),
});

export const TokenConfigSchema = z.strictObject({
  component: z.literal("token"),
  ...common,
});

export const EncryptionConfigSchema = z.strictObject({
  component: z.literal("encryption"),
  ...common,
  peers: z.strictObject({ storage: HttpsUrl }),
});

export const StorageConfigSchema = z.strictObject({
  component: z.literal("storage"),
  ...common,
  /** A PostgreSQL URL, or an embedded PGlite data directory when absent. */
  database: z.strictObject({
    url: z.string().regex(/^postgres(ql)?:\/\//, "must be a postgres:// or postgresql:// URL").optional(),
    dataDir: z.string().min(1).optional(),
  }),
});

export const ComponentConfigSchema = z.discriminatedUnion("component", [
  OrchestrationConfigSchema,
  TokenConfigSchema,
  EncryptionConfigSchema,
  StorageConfigSchema,
]);

export type OrchestrationConfig = z.infer<typeof OrchestrationConfigSchema>;
export type TokenConfig = z.infer<typeof TokenConfigSchema>;
export type EncryptionConfig = z.infer<typeof EncryptionConfigSchema>;
export type StorageConfig = z.infer<typeof StorageConfigSchema>;
export type ComponentConfig = z.infer<typeof ComponentConfigSchema>;
export type ConfigFor<C extends Component> = Extract<ComponentConfig, { component: C }>;

/** Resolves every path field against `baseDir`. */
function resolvePaths<T extends ComponentConfig>(config: T, baseDir: string): T {
  const resolved = {
    ...config,
    tls: { cert: path.resolve(baseDir, config.tls.cert), key: path.resolve(baseDir, config.tls.key) },
    bundles: path.resolve(baseDir, config.bundles),
  };
  if (resolved.component === "storage" && resolved.database.dataDir) {
    resolved.database = { ...resolved.database, dataDir: path.resolve(baseDir, resolved.database.dataDir) };
  }
  return resolved;
}

/**
 * Loads and validates one component's configuration, reporting every problem at
 * once. `expected` guards against starting a component with another's file.
 */
export function loadComponentConfig<C extends Component>(file: string, expected: C): ConfigFor<C> {
  const config = parseConfigFile(file, ComponentConfigSchema);
  if (config.component !== expected) {
    throw new ConfigError(file, [`component: this file configures ${config.component}, not ${expected}`]);
  }
  return resolvePaths(config, path.dirname(path.resolve(file))) as ConfigFor<C>;
}
