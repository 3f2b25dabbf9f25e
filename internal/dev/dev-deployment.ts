// What `hello start` does before any component runs, shared with the end-to-end tests
// so they exercise the same path: every custodian's certificates and keys (made only
// if missing), the mesh bundles with each CA and public keys, and each component's own
// configuration file derived from the development file.

import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { COMPONENTS, type Component } from "../protocol/identity.js";
import { writeBundle } from "../../mesh/bundle.js";
import type { ComponentConfig } from "../config/component-config.js";
import { type DevConfig, deriveComponentConfigs, derivedConfigPath } from "./dev-config.js";
import { ensureDevPki } from "../ops/pki/dev-pki.js";
import { pkiPaths } from "../ops/pki/layout.js";
import {
  STORAGE_KEYS,
  TOKEN_KEYS,
  WALLET_KEYS,
  ensureKeyring,
  ensureSecretKey,
  ensureSigningKeys,
  loadSigningKeys,
} from "../protocol/key-files.js";
import { publicJwk } from "../protocol/signing-keys.js";
import { type DevIssuerSetupOptions, devIssuerOptions, ensureDevIssuer, publicDevIssuerKeys } from "./issuer/dev-issuer-setup.js";

export interface DevDeployment {
  readonly certs: string;
  readonly configs: Record<Component, ComponentConfig>;
  readonly configFiles: Record<Component, string>;
  readonly createdCertificates: boolean;
  /**
   * With `devIssuer`: the development issuer's options (its id, port, certificate, keys,
   * and hello-mesh's wallet server as its peer), for startDevIssuer.
   */
  readonly devIssuer?: DevIssuerSetupOptions;
}

/** Finds each provider's jwks_uri by discovery (the development custodian's job). */
export async function discoverJwksUris(dev: DevConfig, log: (line: string) => void): Promise<Record<string, string>> {
  const found: Record<string, string> = {};
  for (const provider of dev.providers) {
    if (provider.jwks_uri) continue;
    const url = `${provider.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(5_000), redirect: "error" });
      const metadata = (await response.json()) as { jwks_uri?: unknown; issuer?: unknown };
      if (metadata.issuer !== provider.issuer || typeof metadata.jwks_uri !== "string") {
        throw new Error("its discovery document names another issuer or no jwks_uri");
      }
      found[provider.id] = metadata.jwks_uri;
    } catch (error) {
      log(`provider ${provider.id}: discovery at ${url} failed (${(error as Error).message})`);
    }
  }
  return found;
}

export async function prepareDevDeployment(
  dev: DevConfig & { baseDir: string },
  options: {
    log?: (line: string) => void;
    jwksUris?: Record<string, string>;
    /**
     * Also the development credential issuer (`hello start` runs it): its certificates
     * and keys (made once), Orchestration's wallet server for it (listening on
     * ports.wallet) and Token's allow-list entry. Off by default, so that a rig that
     * runs no issuer does not have every Orchestration take ports.wallet.
     */
    devIssuer?: boolean;
  } = {},
): Promise<DevDeployment> {
  const log = options.log ?? (() => {});
  const certs = path.resolve(dev.baseDir, dev.certificates);
  const pki = await ensureDevPki(certs, { log });
  // The issuer's keys exist before the configurations are derived: Token's names them.
  const issuer = options.devIssuer ? await ensureDevIssuer(certs, path.resolve(dev.baseDir, dev.stateDir), { log }) : undefined;
  const created = pki.created || issuer?.created === true;
  const configs = deriveComponentConfigs(dev, options.jwksUris ?? {}, issuer && (await publicDevIssuerKeys(issuer.keys)));

  const token = configs.token as Extract<ComponentConfig, { component: "token" }>;
  const storage = configs.storage as Extract<ComponentConfig, { component: "storage" }>;
  const encryption = configs.encryption as Extract<ComponentConfig, { component: "encryption" }>;
  const orchestration = configs.orchestration as Extract<ComponentConfig, { component: "orchestration" }>;
  if (await ensureSigningKeys(token.keys.signing, TOKEN_KEYS)) log(`token: made signing keys ${token.keys.signing}`);
  if (token.keys.wallet && (await ensureSigningKeys(token.keys.wallet, WALLET_KEYS))) log(`token: made the credential wallet's keys ${token.keys.wallet}`);
  if (await ensureSecretKey(token.keys.lookup, [orchestration.keys.lookup])) log("token, orchestration: made the shared lookup key");
  if (await ensureSecretKey(orchestration.keys.cookie)) log("orchestration: made the browser cookie key");
  if (await ensureKeyring(encryption.keys.keyring)) log(`encryption: made the record keyring ${encryption.keys.keyring}`);
  if (await ensureSigningKeys(storage.keys.signing, STORAGE_KEYS)) log(`storage: made the error-token key ${storage.keys.signing}`);

  const publicKeys: Record<Component, object[]> = {
    orchestration: [],
    token: loadSigningKeys("token", token.keys.signing, TOKEN_KEYS).map(publicJwk),
    encryption: [],
    storage: loadSigningKeys("storage", storage.keys.signing, STORAGE_KEYS).map(publicJwk),
  };
  const configFiles = {} as Record<Component, string>;
  for (const component of COMPONENTS) {
    await writeBundle(configs[component].bundles, {
      component,
      ca: readFileSync(pkiPaths(certs, component).caCert, "utf8"),
      jwks: { keys: publicKeys[component] as never },
    });
    const file = derivedConfigPath(dev, component);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, `${JSON.stringify(configs[component], null, 2)}\n`);
    configFiles[component] = file;
  }
  const devIssuer = issuer
    ? devIssuerOptions({
        port: dev.ports.issuer,
        walletPort: dev.ports.wallet,
        statusPort: dev.ports.issuerStatus,
        paths: issuer.paths,
        keys: issuer.keys,
        helloIssuer: dev.issuer,
        orchestrationCa: pkiPaths(certs, "orchestration").caCert,
        tokenWalletKeys: token.keys.wallet!,
      })
    : undefined;
  return { certs, configs, configFiles, createdCertificates: created, ...(devIssuer ? { devIssuer } : {}) };
}
