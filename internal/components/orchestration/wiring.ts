// Orchestration's wiring. It serves no mesh API of its own: it is the front door
// (HTTP) and a client of Token and Encryption. Its mesh server carries only operator
// services. It watches Token's and Encryption's health (Encryption's follows Storage's):
// until both serve, its own health is NOT_SERVING, /healthz/ready answers 503 and the
// front door starts no login.

import { WalletKeys } from "./wallet-keys.js";
import { createClient } from "@connectrpc/connect";
import { trustOfBundles } from "../../../mesh/bundle.js";
import { createMeshTransport } from "../../../mesh/client.js";
import { TokenService } from "../../gen/hello/token/v1/token_service_pb.js";
import { EncryptionService } from "../../gen/hello/encryption/v1/encryption_service_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { PEER_CHECK_DEADLINE_MS, PeerHealth, SETTLE_WITHIN_MS, onUnavailable } from "../runtime/peer-health.js";
import { loadLookupKey, loadSecretKey } from "../../protocol/key-files.js";
import { LoginDriver } from "./login-driver.js";
import { startFrontDoor } from "./front-door/front-door.js";
import { MemoryStore } from "./sealed.js";
import { openPostgresSharedStore } from "./postgres-shared-store.js";
import { processMeshMetrics } from "../../observability/metrics/registry.js";
import { type ServiceFactory, peerKeys } from "../runtime/component-services.js";

export const orchestrationService: ServiceFactory<"orchestration"> = async (config, deps) => {
  // Token's and Encryption's CAs as last reloaded: a rotated CA reaches the clients too.
  const trust = trustOfBundles(deps.bundles);
  // One connection per peer, for its service and its health; a call that fails as
  // unavailable makes Orchestration look at its peers' health at once.
  const transport = (target: "token" | "encryption") =>
    createMeshTransport({ target, baseUrl: config.peers[target], credentials: deps.credentials, trust, interceptors: [onUnavailable(() => peers.suspect())] });
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
  const driver = new LoginDriver({
    issuer: config.issuer,
    token,
    encryption: createClient(EncryptionService, transports.encryption),
    lookupKey: loadLookupKey("orchestration", config.keys.lookup),
    tokenKeys,
    walletKeys,
    clientIds: config.clients.map((c) => c.client_id),
  });
  let store;
  if (config.state) store = await openPostgresSharedStore(config.state.url);
  else {
    const memory = new MemoryStore();
    processMeshMetrics().observeState("orchestration", () => memory.stats());
    store = memory;
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
      cookieKey: loadSecretKey("orchestration", config.keys.cookie, "cookie key"),
      store,
      readiness: peers,
    });
  } catch (error) {
    if ("close" in store) await store.close().catch(() => {}); // the error worth reporting is the front door's
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
  return {
    descriptors: [],
    routes: () => {},
    readiness: { peers, services: [] },
    close: async () => {
      peers.close();
      await door.close();
      if ("close" in store) await store.close();
    },
  };
};
