// Each component's own configuration, held by its custodian (docs/design.md §2). The
// schemas are strict and differ per component, so a component cannot be handed a
// secret that is not its own: Token's configuration has no place for database
// credentials, Encryption's none for a signing key, Orchestration's no Storage peer.
// Paths are relative to the configuration file's directory.

import { isIP } from "node:net";
import path from "node:path";
import { z } from "zod";
import type { Component } from "../protocol/identity.js";
import { ConfigError, parseConfigFile } from "./errors.js";

const Port = z.number().int().min(0).max(65535);
const HttpsUrl = z.url({ protocol: /^https$/ });

/** A peer's mesh address: https://host:port (trust is by its certificate, not its host name). */
const PeerUrl = z.url({ protocol: /^https$/, error: "must be an https:// URL (https://host:port)" });

/** Reports a replica named twice (the same URL once normalised: case, a trailing slash). */
function distinctReplicas(urls: string[], ctx: z.RefinementCtx): void {
  const seen = urls.map((url) => URL.canParse(url) ? new URL(url).href : url);
  seen.forEach((url, i) => {
    const first = seen.indexOf(url);
    if (first < i) ctx.addIssue({ code: "custom", path: [i], message: `the same replica as [${first}] (${urls[first]}): list each replica once` });
  });
}

/**
 * A peer (docs/replicas.md): its one https://host:port, or a list of its replicas',
 * each of them the same component with the same mesh identity. The client spreads its
 * calls over those that serve and fails over between them (mesh/replicated-transport.ts).
 */
export const PeerAddressSchema = z.union(
  [PeerUrl, z.array(PeerUrl).min(1, "a list of replicas needs at least one URL; or give the peer's one URL as a string").superRefine(distinctReplicas)],
  { error: (issue) => (issue.input === undefined ? "required: the peer's https://host:port, or a list of its replicas' URLs" : "must be an https://host:port URL, or a list of them (one per replica of the peer)") },
);
export type PeerAddress = z.infer<typeof PeerAddressSchema>;

/** A peer's replicas' URLs, one or more. */
export function peerUrls(peer: PeerAddress): readonly string[] {
  return typeof peer === "string" ? [peer] : peer;
}

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

/** An app as the front door knows it: how it authenticates at the token endpoint. */
export const FrontDoorClientSchema = z.strictObject({
  client_id: z.string().min(1),
  client_name: z.string().min(1).optional(),
  client_secret: z.string().min(16).optional(),
  redirect_uris: z.array(z.url()).min(1),
  token_endpoint_auth_method: z.enum(["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]),
  jwks: z.strictObject({ keys: z.array(z.looseObject({ kty: z.string() })) }).optional(),
  /** "native": a loopback redirect URI may be used on any port (RFC 8252 §7.3). */
  application_type: z.enum(["web", "native"]).optional(),
  /** The client's access tokens are DPoP-bound (RFC 9449 §5.2): the Wallet Client's. */
  dpop_bound_access_tokens: z.boolean().optional(),
});
export type FrontDoorClient = z.infer<typeof FrontDoorClientSchema>;

/**
 * Where an upstream provider sends the browser back: one path per provider, so that an
 * answer can be checked against the provider its login was started with (a mix-up
 * defence, RFC 9700 §4.4). The redirect URI to register with the provider.
 */
export const UPSTREAM_CALLBACK_PATH = "/upstream/callback/";
export function upstreamRedirectUri(issuer: string, providerId: string): string {
  return `${issuer.replace(/\/$/, "")}${UPSTREAM_CALLBACK_PATH}${providerId}`;
}

/** A provider's id names its callback path, so it must stand in a URL path as it is. */
export const ProviderIdSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,31}$/, "must be 1-32 lowercase letters, digits or dashes, starting with a letter or digit (it names the provider's callback path, /upstream/callback/<id>)");

/** Reports every id that an earlier entry already has, as a duplicate `what` id. */
const uniqueIdsOf = (what: string) => <T extends { id: string }>(items: T[], ctx: z.RefinementCtx) => {
  items.forEach((item, i) => {
    if (items.findIndex((other) => other.id === item.id) < i) ctx.addIssue({ code: "custom", path: [i, "id"], message: `duplicate ${what} id` });
  });
};
const uniqueIds = uniqueIdsOf("provider");

/** An upstream OP the front door is a relying party of. */
export const UpstreamProviderSchema = z.strictObject({
  id: ProviderIdSchema,
  name: z.string().min(1),
  issuer: z.url(),
  client_id: z.string().min(1),
  client_secret: z.string().min(1).optional(),
  scopes: z.array(z.string().min(1)),
});
export type UpstreamProvider = z.infer<typeof UpstreamProviderSchema>;

/** The front door's own certificate (a public CA's, for the issuer's host), its key, and optionally intermediates. */
const PublicTls = z.strictObject({ cert: z.string().min(1), key: z.string().min(1), chain: z.string().min(1).optional() });

/** A trusted proxy: an IPv4 or IPv6 address, or a subnet of them ("10.0.0.0/8", "fd00::/8"). */
const ProxyAddress = z.string().refine((entry) => {
  const [address = "", prefix, extra] = entry.split("/");
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return false;
  return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
}, "must be an IP address or a subnet (address/prefix), e.g. 10.0.0.7 or 10.0.0.0/8");

const LOOPBACK_HOSTS = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;

/**
 * The front door's transport against its issuer. OpenID Connect Discovery 1.0 §3 (and
 * RFC 8414 §2) require an https issuer; http is for development on a loopback address,
 * where nothing crosses a network. An https issuer's front door has TLS of its own
 * (`public.tls`) or stands behind a TLS-terminating proxy (`public.trusted_proxies`,
 * or a proxy it does not read: serve-time warning in the wiring).
 */
function frontDoorTransport(config: { issuer: string; public: { tls?: unknown } }, ctx: z.RefinementCtx) {
  const issuer = issuerScheme(config, ctx);
  if (issuer?.protocol === "http:" && config.public.tls) {
    ctx.addIssue({ code: "custom", path: ["public", "tls"], message: "the front door would serve https, but the issuer is http://: make the issuer https://, or remove public.tls" });
  }
}

/**
 * An issuer apps can use: https://, or http:// on a loopback address for development.
 * Orchestration's and Token's both (Token's is the `iss` of every ID Token it mints).
 */
function issuerScheme(config: { issuer: string }, ctx: z.RefinementCtx): URL | undefined {
  let issuer: URL;
  try {
    issuer = new URL(config.issuer);
  } catch {
    return undefined; // reported by the issuer's own schema
  }
  if (issuer.protocol === "http:" && !LOOPBACK_HOSTS.test(issuer.hostname)) {
    ctx.addIssue({ code: "custom", path: ["issuer"], message: `must be an https:// URL (OpenID Connect Discovery 1.0 §3); http:// is for development on localhost, 127.0.0.1 or [::1] only, not ${issuer.hostname}` });
  }
  if (issuer.protocol !== "http:" && issuer.protocol !== "https:") {
    ctx.addIssue({ code: "custom", path: ["issuer"], message: "must be an https:// URL" });
  }
  return issuer;
}

/**
 * An issuer the wallet server is pinned to (docs/wallet-server.md): the one CA its
 * certificates chain to, both ways. Orchestration calls it trusting no other CA for its
 * server certificate, and its calls to us are known to come from it by that CA alone
 * (wire-server.ts), so the CA must issue to this issuer only: a public CA would let
 * anyone it certifies speak as this issuer.
 */
const WalletIssuerSchema = z.strictObject({
  /** The issuer's id: the `aud` of what the wallet client signs for it, and its name in Token's allow-list. */
  id: z.string().min(1).max(2048),
  /** Where its S2S endpoints are (/verification/*, /credential/*, /event/notify). */
  base_url: HttpsUrl,
  /** Path to the PEM of the CA its certificates (server and client) are issued by. */
  ca: z.string().min(1),
  /** The name to check on its certificate (and to send as SNI) when base_url's host is an IP address. */
  servername: z.string().min(1).optional(),
});

/** Where issuers reach this wallet server: a URL they may call and fetch from, nothing after its path. */
const PublicUrl = HttpsUrl.refine((url) => !url.includes("?") && !url.includes("#"), "must be an https:// URL without a query or fragment");

/**
 * The credential wallet server's S2S side (docs/wallet-server.md): its own listener,
 * since issuers reach it over mutual TLS with a certificate of their own CA, never the
 * mesh's, and never the front door's.
 */
const WalletServerSchema = z.strictObject({
  listen: Listen,
  /**
   * The wallet server's mTLS certificate and key, server AND client: issuers check it
   * when they call us and when we call them. Issued by the orchestration custodian's CA,
   * and without the mesh's identity URI, so that it is no mesh certificate.
   */
  tls: Tls,
  /** How issuers reach this S2S server: their notify callbacks, and evidence downloads (`<public_url>/evidence/<id>`). */
  public_url: PublicUrl,
  /** The issuers it serves users with; Token keeps its own allow-list of them (`issuers` in Token's configuration). */
  issuers: z.array(WalletIssuerSchema).min(1, "a wallet server needs at least one issuer").superRefine(uniqueIdsOf("issuer")),
  /**
   * How often each replica looks at the background work queue (s2s/wallet-work.ts: events
   * an issuer did not take, verifications to poll, deleted wallets' unlinks), in ms; default 2000.
   */
  work_interval_ms: z.number().int().min(100).max(600_000).optional(),
});
export type WalletServerConfig = z.infer<typeof WalletServerSchema>;

export const OrchestrationConfigSchema = z.strictObject({
  component: z.literal("orchestration"),
  ...common,
  /** Token's and Encryption's mesh addresses: each one URL, or a list of its replicas' (docs/replicas.md). */
  peers: z.strictObject({ token: PeerAddressSchema, encryption: PeerAddressSchema }),
  /** The lookup key (shared with Token's custodian only) and the browser cookie key. */
  keys: z.strictObject({ lookup: z.string().min(1), cookie: z.string().min(1) }),
  /** The public front door: where apps and browsers reach hello-mesh (README, "The front door over HTTPS"). */
  public: z.strictObject({
    host: z.string().min(1).default("127.0.0.1"),
    port: Port,
    /** Serve HTTPS with this certificate and key, reloaded when they change. Absent: plain HTTP. */
    tls: PublicTls.optional(),
    /** TLS-terminating proxies whose Forwarded / X-Forwarded-Proto is read (for HSTS); no other peer's is. */
    trusted_proxies: z.array(ProxyAddress).min(1).optional(),
  }),
  issuer: z.url(),
  clients: z.array(FrontDoorClientSchema),
  providers: z.array(UpstreamProviderSchema).superRefine(uniqueIds),
  /**
   * Where replicas share codes and access tokens: a PostgreSQL database of
   * Orchestration's custodian's own (never the records database). Absent: memory, for a
   * single replica.
   */
  state: z.strictObject({ url: z.string().regex(/^postgres(ql)?:\/\//, "must be a postgres:// or postgresql:// URL") }).optional(),
  /** The credential wallet server (docs/wallet-server.md). Absent: Orchestration talks to no issuer. */
  wallet: WalletServerSchema.optional(),
}).superRefine(frontDoorTransport);

/** An app as Token knows it: Token checks every request against this, not Orchestration's word. */
export const RegisteredClientSchema = z.strictObject({
  client_id: z.string().min(1),
  client_name: z.string().min(1).optional(),
  redirect_uris: z.array(z.url()).min(1),
  id_token_signed_response_alg: z.enum(["RS256", "ES256", "EdDSA"]).default("RS256"),
  /** Public keys for the client's signed request objects (JAR). */
  jwks: z.strictObject({ keys: z.array(z.looseObject({ kty: z.string() })) }).optional(),
  /** "native": a loopback redirect URI may be used on any port (RFC 8252 §7.3). */
  application_type: z.enum(["web", "native"]).optional(),
  /**
   * The client's access tokens are DPoP-bound (RFC 9449 §5.2): its authorization
   * requests must carry dpop_jkt, and its login also mints a wallet access token bound
   * to that key (docs/wallet-server.md).
   */
  dpop_bound_access_tokens: z.boolean().optional(),
});
export type RegisteredClient = z.infer<typeof RegisteredClientSchema>;

/** An upstream OP Token accepts ID Tokens from, with where Token itself fetches its keys. */
export const AllowedProviderSchema = z.strictObject({
  /** The same id as in Orchestration's configuration. */
  id: ProviderIdSchema,
  issuer: z.url(),
  jwks_uri: z.url(),
  /** The `aud` this provider issues to us: Token's own expectation, not Orchestration's. */
  client_id: z.string().min(1),
});
export type AllowedProvider = z.infer<typeof AllowedProviderSchema>;

/**
 * What only a private JWK holds (RFC 7518 §6.2.2, §6.3.2, §6.4), each refused by name: a
 * key pasted with its private part is a custodian's mistake worth saying plainly, and
 * Token must never hand an issuer's private key to anyone.
 */
const privateMembersRefused = Object.fromEntries(
  ["d", "p", "q", "dp", "dq", "qi", "oth", "k"].map((member) => [
    member,
    z.never({ error: `a public key is wanted here, and this one holds its private part (${member}): remove it` }).optional(),
  ]),
);
const P256Coordinate = z.string().regex(/^[A-Za-z0-9_-]{43}$/, "must be a P-256 coordinate: 32 bytes of base64url");

/** An issuer's HPKE-0 key (docs/wallet-server.md): what the wallet client encrypts its payloads to. Exactly these members. */
const IssuerEncryptionKey = z.strictObject({
  kty: z.literal("EC"),
  crv: z.literal("P-256"),
  x: P256Coordinate,
  y: P256Coordinate,
  kid: z.string().min(1).optional(),
  alg: z.literal("HPKE-0").optional(),
  use: z.literal("enc").optional(),
  ...privateMembersRefused,
});

/** A public JWK an issuer signs credentials with; loose, as JWKs are (RFC 7517 §4), but never private. */
const IssuerSigningKey = z.looseObject({
  kty: z.string().min(1),
  kid: z.string().min(1).optional(),
  alg: z.string().min(1).optional(),
  ...privateMembersRefused,
});

/**
 * An issuer Token vouches for to wallet clients (the `hello-issuer+jwt` statements of
 * GET /wallet/api/issuers, docs/wallet-server.md): Token's own word on the issuer's
 * keys, so that Orchestration, which carries the statements, cannot swap in a key of its
 * own choosing and read what the client encrypts.
 */
const AllowedIssuerSchema = z.strictObject({
  /** The same id as in Orchestration's `wallet.issuers`. */
  id: z.string().min(1).max(2048),
  /** Its HPKE-0 key: public, EC P-256. */
  encryption_key: IssuerEncryptionKey,
  /** Its credential signing keys, public. */
  jwks: z.strictObject({ keys: z.array(IssuerSigningKey).min(1, "an issuer needs at least one signing key") }),
  /** What it issues, by credential configuration id. */
  credential_configurations: z.record(z.string().min(1), z.strictObject({ vct: z.string().min(1), display: z.unknown().optional() })),
});
export type AllowedIssuer = z.infer<typeof AllowedIssuerSchema>;

export const TokenConfigSchema = z.strictObject({
  component: z.literal("token"),
  ...common,
  /** The public issuer (the front door's URL), the `iss` of app ID Tokens. */
  issuer: z.url(),
  /** `wallet`: the credential wallet's signing keys (docs/wallet-server.md); absent, Token serves no wallet. */
  keys: z.strictObject({ signing: z.string().min(1), lookup: z.string().min(1), wallet: z.string().min(1).optional() }),
  clients: z.array(RegisteredClientSchema),
  providers: z.array(AllowedProviderSchema).superRefine(uniqueIds),
  /** The credential issuers Token vouches for (docs/wallet-server.md). Absent: none. */
  issuers: z.array(AllowedIssuerSchema).superRefine(uniqueIdsOf("issuer")).optional(),
}).superRefine((config, ctx) => void issuerScheme(config, ctx));

export const EncryptionConfigSchema = z.strictObject({
  component: z.literal("encryption"),
  ...common,
  /** Storage's mesh address: one URL, or a list of its replicas' (docs/replicas.md). */
  peers: z.strictObject({ storage: PeerAddressSchema }),
  keys: z.strictObject({ keyring: z.string().min(1) }),
});

export const StorageConfigSchema = z.strictObject({
  component: z.literal("storage"),
  ...common,
  /** The Error Token signing key. */
  keys: z.strictObject({ signing: z.string().min(1) }),
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
  const keys = Object.fromEntries(Object.entries(config.keys).map(([name, file]) => [name, path.resolve(baseDir, file)]));
  const resolved = {
    ...config,
    tls: { cert: path.resolve(baseDir, config.tls.cert), key: path.resolve(baseDir, config.tls.key) },
    bundles: path.resolve(baseDir, config.bundles),
    keys,
  } as T;
  if (resolved.component === "orchestration" && resolved.public.tls) {
    const { cert, key, chain } = resolved.public.tls;
    const tls = { cert: path.resolve(baseDir, cert), key: path.resolve(baseDir, key), ...(chain ? { chain: path.resolve(baseDir, chain) } : {}) };
    resolved.public = { ...resolved.public, tls };
  }
  if (resolved.component === "orchestration" && resolved.wallet) {
    const { tls, issuers } = resolved.wallet;
    resolved.wallet = {
      ...resolved.wallet,
      tls: { cert: path.resolve(baseDir, tls.cert), key: path.resolve(baseDir, tls.key) },
      issuers: issuers.map((issuer) => ({ ...issuer, ca: path.resolve(baseDir, issuer.ca) })),
    };
  }
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
  const config = loadAnyComponentConfig(file);
  if (config.component !== expected) {
    throw new ConfigError(file, [`component: this file configures ${config.component}, not ${expected}`]);
  }
  return config as ConfigFor<C>;
}

/** A component's configuration file, whichever component it configures, with its paths resolved. */
export function loadAnyComponentConfig(file: string): ComponentConfig {
  return resolvePaths(parseConfigFile(file, ComponentConfigSchema), path.dirname(path.resolve(file)));
}
