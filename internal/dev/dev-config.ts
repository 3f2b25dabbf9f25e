// The development configuration (docs/design.md §6): one file for `hello start`, from which
// each component's own configuration is derived. In production there is no such file:
// each custodian writes and holds only its component's part (component-config.ts).

import path from "node:path";
import { z } from "zod";
import type { Component } from "../protocol/identity.js";
import { type ComponentConfig, UpstreamProviderSchema } from "../config/component-config.js";
import { parseConfigFile } from "../config/errors.js";
import { type DevIssuerPublicKeys, devIssuerId, devIssuerPaths } from "./issuer/dev-issuer-setup.js";
import { CREDENTIAL_CONFIGURATIONS } from "./issuer/registry.js";

const Port = z.number().int().min(1).max(65535);

const ClientSchema = z.strictObject({
  client_id: z.string().min(1).max(255),
  client_secret: z.string().min(16, "client_secret must be at least 16 characters").optional(),
  redirect_uris: z.array(z.url()).min(1, "redirect_uris needs at least one URL"),
  token_endpoint_auth_method: z
    .enum(["client_secret_basic", "client_secret_post", "private_key_jwt", "none"])
    .default("client_secret_basic"),
  id_token_signed_response_alg: z.enum(["RS256", "ES256", "EdDSA"]).default("RS256"),
  /** The client's public keys, for private_key_jwt and signed request objects. */
  jwks: z.strictObject({ keys: z.array(z.looseObject({ kty: z.string() })).min(1) }).optional(),
  client_name: z.string().min(1).optional(),
  /** "native": a loopback redirect URI on any port (RFC 8252 §7.3). */
  application_type: z.enum(["web", "native"]).optional(),
  /** DPoP-bound access tokens (RFC 9449 §5.2): the Wallet Client's (docs/wallet-server.md). */
  dpop_bound_access_tokens: z.boolean().optional(),
});

/** An upstream OP as Orchestration knows it, with default scopes, and its keys for Token. */
const ProviderSchema = UpstreamProviderSchema.extend({
  scopes: z.array(z.string().min(1)).default(["openid", "email", "profile"]),
  /** Where Token fetches the provider's keys; found by discovery at start when absent. */
  jwks_uri: z.url().optional(),
});

export const DevConfigSchema = z
  .strictObject({
    /** The public URL of the front door (Orchestration). */
    issuer: z.url(),
    ports: z
      .strictObject({
        /** Orchestration's public HTTP port (the issuer's). */
        public: Port.default(9000),
        orchestration: Port.default(7100),
        token: Port.default(7101),
        encryption: Port.default(7102),
        storage: Port.default(7103),
        /** hello start's development upstream OP (a provider whose issuer is http://localhost:<upstream>). */
        upstream: Port.default(9001),
        /** hello start's demo app (the client whose redirect_uri is http://localhost:<demo>/callback). */
        demo: Port.default(9002),
        /**
         * hello start's second development OP (a provider whose issuer is http://localhost:<upstream2>):
         * a second provider, for what needs two (recovery accounts at distinct providers).
         */
        upstream2: Port.default(9003),
        /**
         * hello start's development credential Issuer Server (internal/dev/issuer/), whose
         * issuer id is https://localhost:<issuer>. The settings come in the order they were
         * added, so that a port a new one shares with an older setting is reported at the new one.
         */
        issuer: Port.default(9004),
        /** Orchestration's wallet server: where issuers reach it over mutual TLS (its S2S listener, https://localhost:<wallet>). */
        wallet: Port.default(7104),
        /** Where the development issuer publishes its Token Status List (plain HTTP, http://127.0.0.1:<issuerStatus>/status-lists/1). */
        issuerStatus: Port.default(9005),
        /**
         * `hello start --ha`: the first of the ports its replicas and database cluster listen
         * on, from here to here + 42 (docs/availability.md, "hello start --ha").
         */
        ha: Port.default(7200),
      })
      .prefault({}),
    clients: z.array(ClientSchema).default([]),
    providers: z.array(ProviderSchema).default([]),
    /** A PostgreSQL URL; absent means the embedded PGlite database under stateDir. */
    database: z.string().regex(/^postgres(ql)?:\/\//, "must be a postgres:// or postgresql:// URL").optional(),
    /** Where every custodian's certificates and keys live (one subdirectory each). */
    certificates: z.string().min(1).default("certs"),
    /** Where derived configuration and the embedded database live. */
    stateDir: z.string().min(1).default(".hello"),
  })
  .superRefine((config, ctx) => {
    const seen = new Map<number, string>();
    for (const [name, port] of Object.entries(config.ports)) {
      const other = seen.get(port);
      if (other) ctx.addIssue({ code: "custom", path: ["ports", name], message: `port ${port} is also used by ${other}` });
      seen.set(port, name);
    }
    duplicates(config.clients.map((c) => c.client_id)).forEach((i) =>
      ctx.addIssue({ code: "custom", path: ["clients", i, "client_id"], message: "duplicate client_id" }),
    );
    duplicates(config.providers.map((p) => p.id)).forEach((i) =>
      ctx.addIssue({ code: "custom", path: ["providers", i, "id"], message: "duplicate provider id" }),
    );
    config.clients.forEach((client, i) => {
      const method = client.token_endpoint_auth_method;
      const needsSecret = method === "client_secret_basic" || method === "client_secret_post";
      if (needsSecret && !client.client_secret) {
        ctx.addIssue({ code: "custom", path: ["clients", i, "client_secret"], message: `required for ${method}` });
      }
      if (!needsSecret && client.client_secret) {
        ctx.addIssue({ code: "custom", path: ["clients", i, "client_secret"], message: `must be absent for ${method}` });
      }
      if (method === "private_key_jwt" && !client.jwks) {
        ctx.addIssue({ code: "custom", path: ["clients", i, "jwks"], message: "required for private_key_jwt" });
      }
    });
  });

export type DevConfig = z.infer<typeof DevConfigSchema>;

function duplicates(values: readonly string[]): number[] {
  return values.flatMap((value, i) => (values.indexOf(value) < i ? [i] : []));
}

/** Loads the development file; paths in it are resolved against its directory. */
export function loadDevConfig(file: string): DevConfig & { baseDir: string } {
  return { ...parseConfigFile(file, DevConfigSchema), baseDir: path.dirname(path.resolve(file)) };
}

/** Where the derived per-component files go. */
export function derivedConfigPath(dev: DevConfig & { baseDir: string }, component: Component): string {
  return path.resolve(dev.baseDir, dev.stateDir, "config", `${component}.json`);
}

/**
 * Splits the development file into the four components' own configurations, with
 * absolute paths. Each gets only what its custodian would hold.
 *
 * With `devIssuer` (the development issuer's public keys, made by prepareDevDeployment
 * before this runs), Orchestration is also a wallet server for that issuer
 * (`wallet`, listening on ports.wallet) and Token vouches for it (`issuers`).
 */
export function deriveComponentConfigs(
  dev: DevConfig & { baseDir: string },
  jwksUris: Readonly<Record<string, string>> = {},
  devIssuer?: DevIssuerPublicKeys,
): Record<Component, ComponentConfig> {
  const certs = path.resolve(dev.baseDir, dev.certificates);
  const issuerId = devIssuerId(dev.ports.issuer);
  const issuerPaths = devIssuerPaths(certs, path.resolve(dev.baseDir, dev.stateDir));
  const keys = (c: Component, file: string) => path.join(certs, c, "keys", file);
  const bundles = path.join(certs, "bundles");
  const url = (c: Component) => `https://127.0.0.1:${dev.ports[c]}`;
  const common = (c: Component) => ({
    listen: { host: "127.0.0.1", port: dev.ports[c] },
    tls: { cert: path.join(certs, c, `${c}.crt`), key: path.join(certs, c, `${c}.key`) },
    bundles,
  });
  return {
    orchestration: {
      component: "orchestration",
      ...common("orchestration"),
      peers: { token: url("token"), encryption: url("encryption") },
      keys: { lookup: keys("orchestration", "lookup.key"), cookie: keys("orchestration", "cookie.key") },
      public: { host: "127.0.0.1", port: dev.ports.public },
      issuer: dev.issuer,
      clients: dev.clients.map(({ client_id, client_name, client_secret, redirect_uris, token_endpoint_auth_method, jwks, application_type, dpop_bound_access_tokens }) => ({
        client_id,
        ...(client_name ? { client_name } : {}),
        ...(client_secret ? { client_secret } : {}),
        redirect_uris,
        token_endpoint_auth_method,
        ...(jwks ? { jwks } : {}),
        ...(application_type ? { application_type } : {}),
        ...(dpop_bound_access_tokens ? { dpop_bound_access_tokens } : {}),
      })),
      providers: dev.providers.map(({ id, name, issuer, client_id, client_secret, scopes }) => ({
        id, name, issuer, client_id, ...(client_secret ? { client_secret } : {}), scopes,
      })),
      ...(devIssuer
        ? {
            wallet: {
              listen: { host: "127.0.0.1", port: dev.ports.wallet },
              tls: { cert: issuerPaths.walletServerCert, key: issuerPaths.walletServerKey },
              public_url: `https://localhost:${dev.ports.wallet}`,
              issuers: [{ id: issuerId, base_url: issuerId, ca: issuerPaths.caCert, servername: "localhost" }],
            },
          }
        : {}),
    },
    token: {
      component: "token",
      ...common("token"),
      issuer: dev.issuer,
      keys: { signing: keys("token", "signing-keys.json"), lookup: keys("token", "lookup.key"), wallet: keys("token", "wallet-keys.json") },
      clients: dev.clients.map(({ client_id, client_name, redirect_uris, id_token_signed_response_alg, jwks, application_type, dpop_bound_access_tokens }) => ({
        client_id,
        ...(client_name ? { client_name } : {}),
        redirect_uris,
        id_token_signed_response_alg,
        ...(jwks ? { jwks } : {}),
        ...(application_type ? { application_type } : {}),
        ...(dpop_bound_access_tokens ? { dpop_bound_access_tokens } : {}),
      })),
      providers: dev.providers.map((p) => {
        const jwksUri = p.jwks_uri ?? jwksUris[p.id];
        if (!jwksUri) throw new Error(`provider ${p.id}: no jwks_uri (give one, or let discovery find it)`);
        return { id: p.id, issuer: p.issuer, jwks_uri: jwksUri, client_id: p.client_id };
      }),
      ...(devIssuer
        ? {
            issuers: [{
              id: issuerId,
              encryption_key: { kty: "EC", crv: "P-256", x: devIssuer.encryptionKey.x, y: devIssuer.encryptionKey.y, kid: devIssuer.encryptionKey.kid, alg: "HPKE-0", use: "enc" },
              jwks: { keys: [{ ...devIssuer.signingKey, kty: devIssuer.signingKey.kty! }] },
              credential_configurations: Object.fromEntries(
                Object.entries(CREDENTIAL_CONFIGURATIONS).map(([id, c]) => [id, { vct: c.vct, display: structuredClone(c.display) }]),
              ),
            }],
          }
        : {}),
    },
    encryption: {
      component: "encryption",
      ...common("encryption"),
      peers: { storage: url("storage") },
      keys: { keyring: keys("encryption", "keyring.json") },
    },
    storage: {
      component: "storage",
      ...common("storage"),
      keys: { signing: keys("storage", "signing-keys.json") },
      database: dev.database
        ? { url: dev.database }
        : { dataDir: path.resolve(dev.baseDir, dev.stateDir, "storage", "pgdata") },
    },
  };
}
