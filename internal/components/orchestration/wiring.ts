// Orchestration's wiring. It serves no mesh API of its own: it is the front door
// (HTTP) and a client of Token and Encryption. Its mesh server carries only operator
// services. It watches Token's and Encryption's health (Encryption's follows Storage's):
// until both serve, its own health is NOT_SERVING, /healthz/ready answers 503 and the
// front door starts no login.
//
// With a `wallet` section it is also the credential wallet server (docs/wallet-server.md):
// clients of the configured issuers, the evidence uploaded for them, and the S2S
// listener the issuers call back on (walletPlumbing, below).

import { WalletKeys } from "./wallet-keys.js";
import { createClient } from "@connectrpc/connect";
import { trustOfBundles } from "../../../mesh/bundle.js";
import { createReplicatedTransport } from "../../../mesh/replicated-transport.js";
import { TokenService } from "../../gen/hello/token/v1/token_service_pb.js";
import { EncryptionService } from "../../gen/hello/encryption/v1/encryption_service_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { PEER_CHECK_DEADLINE_MS, PeerHealth, SETTLE_WITHIN_MS, onUnavailable } from "../runtime/peer-health.js";
import { loadLookupKey, loadSecretKey } from "../../protocol/key-files.js";
import { LoginDriver } from "./login-driver.js";
import { WalletWork } from "./s2s/wallet-work.js";
import { WalletDriver } from "./wallet-driver.js";
import { startFrontDoor } from "./front-door/front-door.js";
import { MemoryStore, type SharedStore } from "./sealed.js";
import { type WalletServerConfig, peerUrls } from "../../config/component-config.js";
import { problem } from "../../s2s/problem.js";
import { EvidenceStore } from "./s2s/evidence.js";
import type { S2sHandlers } from "./s2s/handlers.js";
import { IssuerClients } from "./s2s/issuers.js";
import { readPemFile } from "./s2s/pem-files.js";
import { startS2sServer } from "./s2s/s2s-server.js";
import { openPostgresSharedStore } from "./postgres-shared-store.js";
import { processMeshMetrics } from "../../observability/metrics/registry.js";
import { type ServiceFactory, peerKeys } from "../runtime/component-services.js";

export const orchestrationService: ServiceFactory<"orchestration"> = async (config, deps) => {
  // Token's and Encryption's CAs as last reloaded: a rotated CA reaches the clients too.
  const trust = trustOfBundles(deps.bundles);
  // One connection per replica of each peer, for its service and its health; calls are
  // spread over the replicas that serve and fail over between them (docs/replicas.md).
  // A call that fails as unavailable makes Orchestration look at its peers' health at once.
  const transport = (target: "token" | "encryption") =>
    createReplicatedTransport({
      target,
      baseUrls: peerUrls(config.peers[target]),
      credentials: deps.credentials,
      trust,
      interceptors: [onUnavailable(() => peers.suspect())],
      // Encryption may look at Storage before it answers a Check.
      health: { deadlineMs: 2 * PEER_CHECK_DEADLINE_MS },
      onReplicaState: (url, state, previous) => deps.log.info({ peer: target, replica: url, state, previous }, `${target}'s replica at ${url} is ${state}`),
    });
  const transports = { token: transport("token"), encryption: transport("encryption") };
  const peers = new PeerHealth({
    peers: (["token", "encryption"] as const).map((name) => ({ name, health: createClient(Health, transports[name]) })),
    // Encryption may look at Storage before it answers: room for that look and its own.
    deadlineMs: 2 * PEER_CHECK_DEADLINE_MS,
    settleWithinMs: 2 * SETTLE_WITHIN_MS,
  });
  const token = createClient(TokenService, transports.token);
  const tokenKeys = peerKeys(deps.bundles, "token");
  // Token's credential-wallet keys: fetched from Token, checked against its key-set key (wallet-keys.ts).
  const walletKeys = new WalletKeys(token, tokenKeys);
  const encryption = createClient(EncryptionService, transports.encryption);
  const lookupKey = loadLookupKey("orchestration", config.keys.lookup);
  const driver = new LoginDriver({
    issuer: config.issuer,
    token,
    encryption,
    lookupKey,
    tokenKeys,
    walletKeys,
    clientIds: config.clients.map((c) => c.client_id),
    // A deleted wallet's credentials: each issuer's UNLINK is queued (the background work,
    // made below, sends it within a tick and retries it), so that the delete waits for no issuer.
    unlinkCredential: async (credential) => {
      await work?.enqueue({ kind: "unlink", ...credential });
    },
    onUnlinkFailure: (error) => deps.log.error({ err: error }, "the UNLINK of a deleted wallet's credential could not be queued; the records are deleted all the same"),
  });
  let store;
  if (config.state) store = await openPostgresSharedStore(config.state.url);
  else {
    const memory = new MemoryStore();
    processMeshMetrics().observeState("orchestration", () => memory.stats());
    store = memory;
  }
  let wallet: WalletPlumbing | undefined;
  let work: WalletWork | undefined;
  const cookieKey = loadSecretKey("orchestration", config.keys.cookie, "cookie key");
  // The Wallet Server (wallet-driver.ts): the issuers' notifications go to it, and it calls them back with the plumbing's clients.
  let walletDriver: WalletDriver | undefined;
  const handlers: S2sHandlers = {
    verificationNotice: (issuerId, status) => walletDriver!.verificationNotice(issuerId, status),
    event: (issuerId, event) => walletDriver!.event(issuerId, event),
    credentialStatus: (issuerId, request) => walletDriver!.credentialStatusForIssuer(issuerId, request),
    manage: (issuerId, request) => walletDriver!.manageForIssuer(issuerId, request),
  };
  try {
    if (config.wallet) {
      wallet = await walletPlumbing(config.wallet, store, { handlers, onError: (error, path) => deps.log.error({ err: error, path }, "an S2S call from an issuer failed") });
      const driver = walletDriver = new WalletDriver({ issuer: config.issuer, token, encryption, lookupKey, tokenKeys, walletKeys, issuers: wallet.issuers, work: { enqueue: (task, delayMs) => work!.enqueue(task, delayMs) } });
      work = new WalletWork({
        store,
        cookieKey,
        handlers: driver.workHandlers(),
        onError: (error, kind) => deps.log.warn({ err: error, ...(kind ? { work: kind } : {}) }, kind ? "background wallet work failed; it is tried again later" : "the background wallet work queue could not be read; it is read again at the next tick"),
        onGiveUp: (kind) => deps.log.error({ work: kind }, "background wallet work given up after its last try"),
      });
      work.start(config.wallet.work_interval_ms ?? 2_000);
    }
  } catch (error) {
    if ("close" in store) await store.close().catch(() => {}); // the error worth reporting is the wallet server's
    throw error;
  }
  const { tls, trusted_proxies: trustedProxies } = config.public;
  let door;
  try {
    door = await startFrontDoor({
      host: config.public.host,
      port: config.public.port,
      ...(tls ? { tls } : {}),
      ...(trustedProxies ? { trustedProxies } : {}),
      onTlsReload: (outcome) => {
        if ("pair" in outcome) deps.log.info({ fingerprint256: outcome.pair.fingerprint256, not_after: outcome.pair.notAfter }, "reloaded the front door's TLS certificate");
        else deps.log.error({ err: outcome.error }, "the front door's TLS files changed but do not load; keeping the certificate in force");
      },
      issuer: config.issuer,
      clients: config.clients,
      providers: config.providers,
      driver,
      token,
      tokenKeys,
      walletKeys,
      cookieKey,
      store,
      readiness: peers,
      ...(wallet ? { wallet: { issuers: wallet.issuers, evidence: wallet.evidence } } : {}),
      ...(walletDriver ? { walletDriver } : {}),
    });
  } catch (error) {
    // The error worth reporting is the front door's.
    await work?.close().catch(() => {});
    await wallet?.close().catch(() => {});
    if ("close" in store) await store.close().catch(() => {});
    throw error;
  }
  if (config.issuer.startsWith("https:") && !tls && !trustedProxies) {
    deps.log.warn(
      `the issuer ${config.issuer} is https, but the front door serves plain HTTP on ${door.url} and trusts no proxy: ` +
        "apps reach it only through a TLS-terminating proxy in front of it. Set public.tls to serve HTTPS here, " +
        "or public.trusted_proxies to the proxy's addresses so that its X-Forwarded-Proto counts (README, \"The front door over HTTPS\")",
    );
  }
  peers.start();
  deps.log.info({ url: door.url }, `the front door is open at ${config.issuer} (listening on ${door.url}); it takes logins once Token and Encryption serve`);
  if (wallet) deps.log.info({ url: wallet.url, issuers: wallet.issuers.ids() }, `the wallet server's S2S endpoint is open at ${config.wallet!.public_url} (listening on ${wallet.url}) for ${wallet.issuers.ids().length} issuer(s)`);
  return {
    descriptors: [],
    routes: () => {},
    readiness: { peers, services: [] },
    close: async () => {
      peers.close();
      await door.close();
      await work?.close();
      await wallet?.close();
      if ("close" in store) await store.close();
      transports.token.close();
      transports.encryption.close();
    },
  };
};

/** The wallet server's parts the front door's wallet API uses, and the S2S listener they come with. */
export interface WalletPlumbing {
  /** One S2S client per configured issuer. */
  readonly issuers: IssuerClients;
  /** Evidence uploaded for an issuer, served on the S2S listener. */
  readonly evidence: EvidenceStore;
  /** Where the S2S listener listens (wallet.listen; issuers reach it at wallet.public_url). */
  readonly url: string;
  /** Closes the S2S listener, then the issuer clients. */
  close(): Promise<void>;
}


/** For plumbing without a driver (its specs): no notification names a session this wallet server knows. */
const noSessions: S2sHandlers = {
  verificationNotice: async () => {
    throw problem(404, "unknown_session", "no session with this id belongs to you");
  },
  event: async () => {
    throw problem(404, "unknown_session", "no session with this id belongs to you");
  },
  credentialStatus: async () => {
    throw problem(404, "unknown_session", "no session with this id belongs to you");
  },
  manage: async () => {
    throw problem(404, "unknown_session", "no session with this id belongs to you");
  },
};

/**
 * Starts the wallet server's plumbing from Orchestration's `wallet` section: the issuer
 * clients, the evidence store (in `store`, which the replicas share), and the S2S
 * listener whose notifications go to `handlers`. A file that cannot be read, or a port
 * that cannot be listened on, fails the start with nothing left open.
 */
export async function walletPlumbing(
  config: WalletServerConfig,
  store: SharedStore,
  options: { handlers?: S2sHandlers; onError?: (error: unknown, path: string) => void } = {},
): Promise<WalletPlumbing> {
  const certPem = readPemFile(config.tls.cert, "wallet.tls.cert");
  const keyPem = readPemFile(config.tls.key, "wallet.tls.key");
  const evidence = new EvidenceStore(store, config.public_url);
  const issuers = new IssuerClients(config, certPem, keyPem);
  let server;
  try {
    server = await startS2sServer({ config, handlers: options.handlers ?? noSessions, evidence, ...(options.onError ? { onError: options.onError } : {}) });
  } catch (error) {
    issuers.close();
    throw error;
  }
  return {
    issuers,
    evidence,
    url: server.url,
    close: async () => {
      await server.close();
      issuers.close();
    },
  };
}
