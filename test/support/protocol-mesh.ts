// An end-to-end rig for the protocol: the development upstream OP (oidc-provider), the
// four components as four `hello serve` processes on mutual TLS, and the test playing
// Orchestration with Orchestration's own certificate, lookup key and LoginDriver.

import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type Client, createClient } from "@connectrpc/connect";
import { type JSONWebKeySet, createLocalJWKSet, createRemoteJWKSet, exportJWK, generateKeyPair, jwtVerify } from "jose";
import { COMPONENTS, type Component } from "../../internal/protocol/identity.js";
import { readBundles, trustFromBundles } from "../../mesh/bundle.js";
import { createMeshTransport } from "../../mesh/client.js";
import type { MeshCredentials } from "../../mesh/server.js";
import type { TrustStore } from "../../mesh/trust.js";
import { loadDevConfig } from "../../internal/dev/dev-config.js";
import { upstreamRedirectUri } from "../../internal/config/component-config.js";
import { type DevOp, DEFAULT_DEV_USERS, type DevUser, startDevOp } from "../../internal/dev/devop/dev-op.js";
import { TokenService } from "../../internal/gen/hello/token/v1/token_service_pb.js";
import { EncryptionService } from "../../internal/gen/hello/encryption/v1/encryption_service_pb.js";
import { StorageService } from "../../internal/gen/hello/storage/v1/storage_service_pb.js";
import { type LoginOutcome, LoginDriver, type UpstreamResult, loginContext } from "../../internal/components/orchestration/login-driver.js";
import { pkiPaths } from "../../internal/ops/pki/layout.js";
import { loadLookupKey } from "../../internal/protocol/key-files.js";
import { VerificationKeys } from "../../internal/protocol/signing-keys.js";
import { type ComponentProcesses, startComponentProcesses } from "../../internal/dev/component-processes.js";
import { type DevDeployment, prepareDevDeployment } from "../../internal/dev/dev-deployment.js";
import { type Replica, type ReplicaPlan, addReplicas, replicaDeployment } from "../../internal/dev/replicas.js";
import type { ConfigFor } from "../../internal/config/component-config.js";
import { type LoadBalancer, startLoadBalancer } from "./load-balancer.js";
import { type DevIssuer, startDevIssuer } from "../../internal/dev/issuer/issuer.js";
import { type TestPostgres, startPostgres } from "./postgres-server.js";
import { type DevOpRelyingParty, verifiedLogin } from "./token-harness.js";
import { freePort } from "./free-port.js";
import { Browserless, type Page } from "./browserless.js";
import { type TwistControl, writeControl } from "./twisted/control.js";
import { twistedCommand } from "./twisted/serve-twisted.js";

export const UPSTREAM_CLIENT = { id: "hello-mesh", secret: "upstream-secret-0123456789" };
type AuthMethod = "client_secret_basic" | "client_secret_post" | "private_key_jwt" | "none";
export const APPS: Record<string, { client_id: string; redirect_uri: string; alg: string; auth?: AuthMethod }> = {
  a: { client_id: "app-a", redirect_uri: "https://a.example/callback", alg: "RS256" },
  b: { client_id: "app-b", redirect_uri: "https://b.example/callback", alg: "RS256" },
  es: { client_id: "app-es256", redirect_uri: "https://es.example/callback", alg: "ES256" },
  ed: { client_id: "app-eddsa", redirect_uri: "https://ed.example/callback", alg: "EdDSA" },
  post: { client_id: "app-post", redirect_uri: "https://post.example/callback", alg: "RS256", auth: "client_secret_post" },
  pub: { client_id: "app-public", redirect_uri: "https://public.example/callback", alg: "RS256", auth: "none" },
  jwt: { client_id: "app-jwt", redirect_uri: "https://jwt.example/callback", alg: "RS256", auth: "private_key_jwt" },
};

/** app-jwt's own key pair: it authenticates with private_key_jwt and signs request objects. */
export const APP_KEY = (async () => {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  return { privateKey, kid: "app-jwt-1", publicJwk: { ...(await exportJWK(publicKey)), kid: "app-jwt-1", alg: "ES256", use: "sig" } };
})();
export const appSecret = (clientId: string) => `${clientId}-secret-0123456789`;

export interface ProtocolMesh {
  readonly devOp: DevOp;
  /** The second provider ("other"), in a mesh started with `secondProvider`. */
  readonly otherOp?: DevOp;
  /** The front door's public URL (the issuer apps see). */
  readonly issuer: string;
  readonly deployment: DevDeployment;
  readonly processes: ComponentProcesses;
  readonly postgres?: TestPostgres;
  /** The replicas started beside the four components (`replicas`), each its own process. */
  readonly replicas: ReadonlyArray<{ readonly replica: Replica; readonly processes: ComponentProcesses }>;
  readonly lookupKey: Buffer;
  readonly trust: TrustStore;
  readonly tokenKeys: () => VerificationKeys;
  /** Clients presenting `as`'s component certificate (default: Orchestration's); `replica` 1 is the second Token. */
  token(as?: Component, replica?: number): Client<typeof TokenService>;
  encryption(as?: Component): Client<typeof EncryptionService>;
  storage(as?: Component): Client<typeof StorageService>;
  readonly driver: LoginDriver;
  /** A fresh upstream login at the dev OP for `nonce`, verified as Orchestration would; `prompt: "login"` for one forced (auth_time). */
  upstreamLogin(user: DevUser, nonce: string, options?: { prompt?: string }): Promise<UpstreamResult>;
  /** The same at the second provider ("other"), in a mesh started with `secondProvider`. */
  otherLogin(user: DevUser, nonce: string, options?: { prompt?: string }): Promise<UpstreamResult>;
  /** A whole login to `app`, consenting to `consent` (default: every claim asked for). */
  login(user: DevUser, app: keyof typeof APPS, consent?: string[]): Promise<LoginOutcome & { kind: "done" } & { claims: Record<string, unknown>; alg: string }>;
  /** Steers a twisted mesh: every component's clock offset, the rogue's twists. */
  control(control: TwistControl): void;
  /** In a mesh started with `credentialWallet`: the development issuer (docs/wallet-server.md). */
  readonly devIssuer?: DevIssuer;
  close(): Promise<void>;
}

export function appRequest(app: keyof typeof APPS, scope = "openid email profile") {
  if (!APPS[app]) throw new Error(`no app ${app}`);
  return {
    clientId: APPS[app]!.client_id,
    redirectUri: APPS[app]!.redirect_uri,
    nonce: randomBytes(12).toString("base64url"),
    scope,
    codeChallenge: createHash("sha256").update(randomBytes(32)).digest("base64url"),
  };
}

/** A client for a demo app at http://localhost:<demoPort>, registered when `demoPort` is given. */
export const DEMO_CLIENT = { client_id: "demo-app", client_name: "Demo App", secret: "demo-app-secret-0123456789" };

/** The Wallet Client as hello.config.json registers it (docs/wallet-server.md). */
export const WALLET_CLIENT = {
  client_id: "hello-wallet",
  redirect_uris: ["http://127.0.0.1/callback", "http://[::1]/callback"],
  token_endpoint_auth_method: "none",
  application_type: "native",
  dpop_bound_access_tokens: true,
  id_token_signed_response_alg: "ES256",
};

export async function startProtocolMesh(options: {
  /** PGlite, a PostgreSQL server of the test's, or a database the caller runs (a Patroni cluster's URL). */
  database: "pglite" | "postgres" | { readonly url: string };
  demoPort?: number;
  secondProvider?: boolean;
  /** The development OP's accounts (default DEFAULT_DEV_USERS). */
  users?: readonly DevUser[];
  /** Passed to the four `hello serve` processes (e.g. HELLO_LOG_LEVEL), and a hook to read their output. */
  processes?: Parameters<typeof startComponentProcesses>[1];
  /** A PostgreSQL server of this mesh's own, which a test may stop and start (`postgres.server`). */
  ownPostgres?: boolean;
  /** How long each component may take to serve; default startComponentProcesses's. */
  readyTimeoutMs?: number;
  /**
   * Run every component twisted (test/support/twisted): with a clock the test can
   * move (`mesh.control`), and `rogue` components in their rogue version.
   */
  twisted?: { rogue?: readonly Component[] };
  /** A second Token process with the same configuration and keys (`mesh.token(as, 1)`). */
  tokenReplicas?: 1 | 2;
  /**
   * Replicas of the components (internal/dev/replicas.ts): each with its own certificate
   * of its custodian's CA and its own port, named in its callers' peers; Orchestration's
   * behind a load balancer at the issuer's port (test/support/load-balancer.ts).
   */
  replicas?: ReplicaPlan;
  /** With Orchestration replicas: their shared state database (default: one of the test's own PostgreSQL server). */
  orchestrationState?: { readonly url: string };
  /** Register the Wallet Client (`hello-wallet`: native, public, DPoP-bound; docs/wallet-server.md). */
  walletClient?: boolean;
  /**
   * The credential wallet (docs/wallet-server.md): the Wallet Client registered, the
   * development issuer running (its own CA, deciding nothing by itself: the test calls
   * `devIssuer.decide`), and Orchestration's S2S endpoint and Token's allow-list for it.
   */
  credentialWallet?: boolean;
  /** Runs once the deployment (configurations, certificates, keys) exists, before any component starts. */
  prepare?: (deployment: DevDeployment, devOp: DevOp) => Promise<void>;
}): Promise<ProtocolMesh> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "hello-protocol-"));
  const postgres = options.database === "postgres" ? await startPostgres({ ownServer: options.ownPostgres ?? false }) : undefined;
  const ports: Record<string, number> = { public: await freePort() };
  for (const c of COMPONENTS) ports[c] = await freePort();
  if (options.credentialWallet) {
    ports.issuer = await freePort();
    ports.wallet = await freePort();
    ports.issuerStatus = await freePort();
  }
  const issuer = `http://localhost:${ports.public}`;
  // Each provider sends the browser back to its own callback path.
  const upstreamRedirect = upstreamRedirectUri(issuer, "dev");
  const devOp = await startDevOp({
    clients: [{ client_id: UPSTREAM_CLIENT.id, client_secret: UPSTREAM_CLIENT.secret, redirect_uris: [upstreamRedirect] }],
    ...(options.users ? { users: [...options.users] } : {}),
  });
  // A second, independent provider (another real OIDC server), for the chooser.
  const otherOp = options.secondProvider
    ? await startDevOp({ clients: [{ client_id: UPSTREAM_CLIENT.id, client_secret: UPSTREAM_CLIENT.secret, redirect_uris: [upstreamRedirectUri(issuer, "other")] }] })
    : undefined;
  const configFile = path.join(dir, "hello.config.json");
  await writeFile(
    configFile,
    JSON.stringify({
      issuer,
      ports,
      clients: await Promise.all(Object.values(APPS).map(async (app) => ({
        client_id: app.client_id,
        ...(app.auth === "none" || app.auth === "private_key_jwt" ? {} : { client_secret: appSecret(app.client_id) }),
        ...(app.auth === "private_key_jwt" ? { jwks: { keys: [(await APP_KEY).publicJwk] } } : {}),
        redirect_uris: [app.redirect_uri],
        id_token_signed_response_alg: app.alg,
        token_endpoint_auth_method: app.auth ?? "client_secret_basic",
      }))).then((clients) => [...clients, ...(options.walletClient || options.credentialWallet ? [WALLET_CLIENT] : [])]).then((clients) =>
        options.demoPort === undefined
          ? clients
          : [...clients, {
              client_id: DEMO_CLIENT.client_id, client_name: DEMO_CLIENT.client_name, client_secret: DEMO_CLIENT.secret,
              redirect_uris: [`http://localhost:${options.demoPort}/callback`], id_token_signed_response_alg: "RS256",
              token_endpoint_auth_method: "client_secret_basic",
            }],
      ),
      providers: [
        { id: "dev", name: "Dev OP", issuer: devOp.issuer, client_id: UPSTREAM_CLIENT.id, client_secret: UPSTREAM_CLIENT.secret, jwks_uri: devOp.jwksUri },
        ...(otherOp
          ? [{ id: "other", name: "Other OP", issuer: otherOp.issuer, client_id: UPSTREAM_CLIENT.id, client_secret: UPSTREAM_CLIENT.secret, jwks_uri: otherOp.jwksUri }]
          : []),
      ],
      ...(postgres ? { database: postgres.url } : typeof options.database === "object" ? { database: options.database.url } : {}),
      certificates: "certs",
      stateDir: "state",
    }),
  );
  const prepared = await prepareDevDeployment(loadDevConfig(configFile), { devIssuer: options.credentialWallet === true });
  // Orchestration's replicas: each its own public port behind a load balancer at the
  // issuer's, and a state database they share, of Orchestration's custodian's own.
  const frontDoorReplicas = (options.replicas?.orchestration ?? 1) > 1;
  const stateDatabase = frontDoorReplicas && !options.orchestrationState ? await startPostgres() : undefined;
  const stateUrl = options.orchestrationState?.url ?? stateDatabase?.url;
  if (frontDoorReplicas) {
    const own = prepared.configs.orchestration as ConfigFor<"orchestration">;
    prepared.configs.orchestration = { ...own, public: { ...own.public, port: await freePort() }, state: { url: stateUrl! } };
    await writeFile(prepared.configFiles.orchestration, JSON.stringify(prepared.configs.orchestration));
  }
  const { deployment, replicas: replicaPlan } = options.replicas
    ? await addReplicas(prepared, options.replicas, () => freePort())
    : { deployment: prepared, replicas: [] as Replica[] };
  await options.prepare?.(deployment, devOp);
  const devIssuer = deployment.devIssuer ? await startDevIssuer({ ...deployment.devIssuer }) : undefined;
  const controlFile = path.join(dir, "twist-control.json");
  const twisted = options.twisted
    ? {
        commands: Object.fromEntries(COMPONENTS.map((c) => [c, (file: string) => twistedCommand(c, file)])),
        env: { ...options.processes?.env, HELLO_TEST_CONTROL: controlFile, HELLO_TEST_ROGUE: (options.twisted.rogue ?? []).join(",") },
      }
    : {};
  if (options.twisted) writeControl(controlFile, {});
  const processOptions = {
    ...options.processes,
    ...twisted,
    ...(options.readyTimeoutMs ? { readyTimeoutMs: options.readyTimeoutMs } : {}),
  };
  const processes = startComponentProcesses(deployment, processOptions);
  // The second Token: the same configuration and keys on another port, its own process.
  const tokenPorts = [ports.token!];
  let replica: ComponentProcesses | undefined;
  if (options.tokenReplicas === 2) {
    const token2 = { ...deployment.configs.token, listen: { ...deployment.configs.token.listen, port: await freePort() } };
    const file = path.join(dir, "token-2.json");
    await writeFile(file, JSON.stringify(token2));
    tokenPorts.push(token2.listen.port);
    replica = startComponentProcesses(
      { ...deployment, configs: { ...deployment.configs, token: token2 }, configFiles: { ...deployment.configFiles, token: file } },
      { ...processOptions, components: ["token"] },
    );
  }
  const replicas = replicaPlan.map((r) => ({
    replica: r,
    processes: startComponentProcesses(replicaDeployment(deployment, r), { ...processOptions, components: [r.component] }),
  }));
  const stopReplicas = () => Promise.all(replicas.map((r) => r.processes.stop()));
  let balancer: LoadBalancer | undefined;
  try {
    await Promise.all([processes.ready, replica?.ready, ...replicas.map((r) => r.processes.ready)]);
    if (frontDoorReplicas) {
      const publicPorts = [deployment.configs.orchestration, ...replicas.filter((r) => r.replica.component === "orchestration").map((r) => r.replica.config)]
        .map((c) => (c as ConfigFor<"orchestration">).public.port);
      balancer = await startLoadBalancer(ports.public!, publicPorts);
    }
  } catch (error) {
    await Promise.all([processes.stop(), replica?.stop(), stopReplicas(), stateDatabase?.stop()]);
    await devOp.close();
    await otherOp?.close();
    await devIssuer?.close();
    await postgres?.stop();
    throw error;
  }

  const trust = trustFromBundles(readBundles(path.join(deployment.certs, "bundles"), COMPONENTS));
  // Token's bundle as it is on disk now, as Orchestration reloads it (a key rotation publishes anew).
  let tokenBundle = readBundles(path.join(deployment.certs, "bundles"), ["token"]).get("token")!;
  let tokenVerification = new VerificationKeys(tokenBundle.jwks.keys);
  const tokenKeys = () => {
    const now = readBundles(path.join(deployment.certs, "bundles"), ["token"]).get("token")!;
    if (JSON.stringify(now.jwks) !== JSON.stringify(tokenBundle.jwks)) {
      tokenBundle = now;
      tokenVerification = new VerificationKeys(now.jwks.keys);
    }
    return tokenVerification;
  };
  const credentials = (c: Component): MeshCredentials => {
    const p = pkiPaths(deployment.certs, c);
    return { certPem: readFileSync(p.cert, "utf8"), keyPem: readFileSync(p.key, "utf8") };
  };
  const url = (c: Component, replica = 0) => `https://127.0.0.1:${c === "token" ? tokenPorts[replica] : ports[c]}`;
  const transport = (target: Component, as: Component, replica = 0) =>
    createMeshTransport({ target, baseUrl: url(target, replica), credentials: credentials(as), trust });
  const token = (as: Component = "orchestration", replica = 0) => createClient(TokenService, transport("token", as, replica));
  const encryption = (as: Component = "orchestration") => createClient(EncryptionService, transport("encryption", as));
  const storage = (as: Component = "encryption") => createClient(StorageService, transport("storage", as));
  const lookupKey = loadLookupKey("orchestration", path.join(deployment.certs, "orchestration", "keys", "lookup.key"));
  // Every app Token registers, as the running Orchestration serves them.
  const clientIds = [...Object.values(APPS).map((app) => app.client_id), ...(options.demoPort === undefined ? [] : [DEMO_CLIENT.client_id])];
  const driver = new LoginDriver({ issuer, token: token(), encryption: encryption(), lookupKey, tokenKeys, clientIds });
  // Orchestration, as the dev OP's relying party: its login there, with its own check of the
  // OP ID Token (step 2) before Token checks it again.
  const upstreamRp: DevOpRelyingParty = {
    devOp, clientId: UPSTREAM_CLIENT.id, clientSecret: UPSTREAM_CLIENT.secret, redirectUri: upstreamRedirect, opKeys: createRemoteJWKSet(new URL(devOp.jwksUri)),
  };
  const upstreamLogin = (user: DevUser, nonce: string, options: { prompt?: string } = {}): Promise<UpstreamResult> => verifiedLogin(upstreamRp, user, nonce, options);
  const otherLogin = (user: DevUser, nonce: string, options: { prompt?: string } = {}): Promise<UpstreamResult> => {
    if (!otherOp) throw new Error("this mesh was started without a second provider");
    return verifiedLogin({
      devOp: otherOp, clientId: UPSTREAM_CLIENT.id, clientSecret: UPSTREAM_CLIENT.secret, redirectUri: upstreamRedirectUri(issuer, "other"),
      opKeys: createRemoteJWKSet(new URL(otherOp.jwksUri)),
    }, user, nonce, options);
  };

  const login: ProtocolMesh["login"] = async (user, app, consent) => {
    const request = appRequest(app);
    const began = Date.now();
    const started = await driver.start(request, "dev");
    const upstream = await upstreamLogin(user, started.upstreamNonce);
    const first = await driver.continue(started.sessionToken, loginContext(request, began), upstream);
    const outcome =
      first.kind === "consent"
        ? await driver.consent(first.state, consent ?? Object.keys(first.wallet.claims), first.newUser)
        : first;
    const { payload, protectedHeader } = await jwtVerify(outcome.idToken, createLocalKeys(await token().getKeySet({})), {
      issuer,
      audience: request.clientId,
    });
    if (payload.nonce !== request.nonce) throw new Error("the ID Token carries another nonce");
    return { ...outcome, claims: payload, alg: protectedHeader.alg };
  };

  return {
    devOp,
    ...(otherOp ? { otherOp } : {}),
    issuer,
    deployment,
    processes,
    ...(postgres ? { postgres } : {}),
    replicas,
    lookupKey,
    trust,
    tokenKeys,
    token,
    encryption,
    storage,
    driver,
    upstreamLogin,
    otherLogin,
    login,
    control: (control: TwistControl) => {
      if (!options.twisted) throw new Error("this mesh was not started twisted");
      writeControl(controlFile, control);
    },
    ...(devIssuer ? { devIssuer } : {}),
    async close() {
      await balancer?.close();
      await Promise.all([processes.stop(), replica?.stop(), stopReplicas()]);
      await stateDatabase?.stop();
      await devOp.close();
      await otherOp?.close();
      await devIssuer?.close();
      await postgres?.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The app's view: Token's published key set, as Orchestration will serve it. */
function createLocalKeys(keySet: { jwks: Uint8Array }) {
  return createLocalJWKSet(JSON.parse(Buffer.from(keySet.jwks).toString("utf8")) as JSONWebKeySet);
}

export const USERS = {
  alice: DEFAULT_DEV_USERS[0]!,
  bob: DEFAULT_DEV_USERS[1]!,
  /** Never logs in through `login`: tests that need a brand-new subject use her. */
  carol: DEFAULT_DEV_USERS[2]!,
};

/**
 * A person at the browser, from an app's authorization URL to the app's callback: signs
 * in at the development OP if it asks, and answers hello-mesh's consent page if it comes.
 */
export async function browseToApp(
  url: URL,
  app: keyof typeof APPS,
  user: DevUser,
  options: { decision?: "allow" | "deny"; browser?: Browserless } = {},
): Promise<{ page: Page; consented: boolean }> {
  const browser = options.browser ?? new Browserless();
  const callback = new URL(APPS[app]!.redirect_uri);
  const atApp = (u: URL) => u.origin === callback.origin && u.pathname === callback.pathname;
  let page = await browser.go(url, {}, atApp);
  if (!atApp(page.url) && /\/interaction\//.test(page.body)) {
    page = await browser.submit(browser.form(page, /\/login$/), [["email", user.email], ["password", user.password]], atApp);
  }
  const consented = !atApp(page.url) && page.body.includes('name="decision"');
  if (consented) page = await browser.submit(browser.form(page, /^\/consent$/), [["decision", options.decision ?? "allow"]], atApp);
  return { page, consented };
}

/**
 * A person at `issuer`'s account page: the provider chosen (the development OP, "dev"),
 * and its sign-in form filled in as `user` when it asks (it must: prompt=login). The page
 * where it ended, and whether the provider asked for the password.
 */
export async function browseToAccount(issuer: string, user: DevUser, browser = new Browserless()): Promise<{ page: Page; askedForPassword: boolean }> {
  const chooser = await browser.go(new URL("/account", issuer));
  if (chooser.status !== 200) throw new Error(`GET /account answered ${chooser.status}`);
  let page = await browser.submit(browser.form(chooser, /^\/account\/provider$/), [["provider", "dev"]]);
  const askedForPassword = /\/interaction\//.test(page.body);
  if (askedForPassword) page = await browser.submit(browser.form(page, /\/login$/), [["email", user.email], ["password", user.password]]);
  return { page, askedForPassword };
}
