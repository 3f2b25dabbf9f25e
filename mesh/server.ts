// A mesh server: Connect (gRPC, gRPC-Web and Connect protocols) over HTTP/2 + TLS 1.3
// with mandatory client certificates. The handshake accepts only the CAs of the
// custodians whose identities may call this component (policy.ts); every call then
// passes one interceptor that authenticates the certificate's SPIFFE identity against
// the CA of the custodian it names and checks the default-deny table.
//
// Every mesh server also counts, times and logs each call (internal/observability/metrics) and
// serves hello.common.v1.MetricsService, plus GET /metrics for Prometheus scrapers,
// to every custodian's operator: no component has to ask for them.

import http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import type { AddressInfo } from "node:net";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type Interceptor,
  createContextKey,
  createContextValues,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { type Component, type Identity, formatIdentity } from "../internal/protocol/identity.js";
import { type Rule, RULES, authorize, trustedCallerCustodians } from "./policy.js";
import { AuthenticationError, type PeerAuthentication, type TrustStore } from "./trust.js";
import { serverTracing } from "./telemetry.js";
import { type Logger, processLogger } from "../internal/observability/log/logger.js";
import { type MeshMetrics, processMeshMetrics } from "../internal/observability/metrics/registry.js";
import { serverObserver } from "../internal/observability/metrics/rpc-observer.js";
import { METRICS_PATH, metricsRoutes } from "../internal/observability/metrics/metrics-service.js";
import { relabelParseFailures } from "./parse-failures.js";
import { errorMapping } from "./errors.js";
import { metricsScrape } from "./metrics-scrape.js";
import { serverVersionCheck } from "./versions.js";
import { type ProtocolWindow, THIS_RELEASE } from "../internal/protocol/versions.js";
import type { ErrorMapper } from "../internal/protocol/errors.js";

export interface MeshCredentials {
  readonly certPem: string;
  readonly keyPem: string;
}

/** What the handshake and the authentication step concluded about the caller (mesh/trust.ts). */
export type { PeerAuthentication };

/** The verified caller, for handlers: `ctx.values.get(peerKey)`. */
export const peerKey = createContextKey<PeerAuthentication>({
  ok: false,
  reason: "no client certificate was presented",
});

/** The caller's identity inside a handler; authorization has already run. */
export function callerIdentity(values: { get(key: typeof peerKey): PeerAuthentication }): Identity {
  const peer = values.get(peerKey);
  if (!peer.ok) throw new ConnectError(peer.reason, Code.Unauthenticated);
  return peer.identity;
}

/** The single interceptor that enforces the mesh's authentication and policy. */
export function authorization(server: Component, rules: readonly Rule[] = RULES): Interceptor {
  return (next) => async (req) => {
    const peer = req.contextValues.get(peerKey);
    if (!peer.ok) throw new ConnectError(peer.reason, Code.Unauthenticated);
    const decision = authorize(server, peer.identity, `/${req.service.typeName}/${req.method.name}`, rules);
    if (!decision.allowed) throw new ConnectError(decision.reason, Code.PermissionDenied);
    return next(req);
  };
}

export interface MeshServerOptions {
  readonly component: Component;
  readonly credentials: MeshCredentials;
  readonly trust: TrustStore;
  readonly routes: (router: ConnectRouter) => void;
  /** Run after tracing and authorization. */
  readonly interceptors?: readonly Interceptor[];
  /** The component's own errors, as codes (beside the protocol's, internal/protocol/errors.ts). */
  readonly mapError?: ErrorMapper;
  readonly host?: string;
  /** 0 (the default) picks a free port. */
  readonly port?: number;
  readonly rules?: readonly Rule[];
  /**
   * Largest request message accepted, in bytes, after decompression; a larger one is
   * refused with RESOURCE_EXHAUSTED before it is buffered (docs/bad-input.md).
   */
  readonly readMaxBytes?: number;
  /**
   * Called when a connection is refused in the TLS handshake (unknown CA, no client
   * certificate, plaintext, garbage) with an OpenSSL-style reason such as
   * UNABLE_TO_VERIFY_LEAF_SIGNATURE; never request content.
   */
  readonly onHandshakeRefused?: (reason: string) => void;
  /** Where calls are counted and what MetricsService serves. Default: this process's registry. */
  readonly metrics?: MeshMetrics;
  /** The log for one line per call. Default: the process logger (silent until a component sets it). */
  readonly log?: () => Logger;
  /** The protocol versions this server speaks and accepts (mesh/versions.ts). Default: this release's. */
  readonly protocolVersions?: ProtocolWindow;
}

export interface MeshServer {
  readonly component: Component;
  readonly port: number;
  /** https://host:port */
  readonly url: string;
  /**
   * Swap in peers' reloaded CAs without dropping the listener. New handshakes offer the
   * new CAs; every open connection is authenticated again, and one whose client no
   * longer passes (its custodian's CA rotated or removed) is destroyed with its calls.
   */
  updateTrust(trust: TrustStore): void;
  /** Stops accepting, sends GOAWAY to every session, resolves when all are closed. */
  close(): Promise<void>;
}

/**
 * 4 MiB: gRPC's own default, and room for the largest honest message (a record of at
 * most 512 KiB on its way to Encryption, or its 1 MiB ciphertext to Storage, even as
 * Connect JSON with base64) several times over. See docs/bad-input.md.
 */
export const DEFAULT_READ_MAX_BYTES = 4 * 1024 * 1024;

/**
 * Once the answer is complete, a request the client is still sending (refused before it
 * was read: too large, or of a content type no protocol takes) is reset, as RFC 9113
 * §8.1 provides. Otherwise the client goes on sending into a stream nobody reads, the
 * stream stays open, and a graceful close of the server waits for it for ever. Node's
 * compatibility layer ends every response with trailers (for gRPC, the status):
 * "wantTrailers" comes once the last data is out and Node's own listener, registered
 * first, sends them; the reset follows on the next turn, and only if the client has not
 * ended its side (a reset of a finished request would only make its late frames count
 * against the connection). CANCEL rather than NO_ERROR: Node holds a NO_ERROR reset back
 * until the stream's writable side reports finished, and for these streams it stays open.
 */
function endUnreadRequest(req: http2.Http2ServerRequest): void {
  req.stream.once("wantTrailers", () =>
    setImmediate(() => {
      if (!req.stream.destroyed && req.stream.state.remoteClose === 0) req.stream.close(http2.constants.NGHTTP2_CANCEL);
    }),
  );
}

/**
 * The verdict on a connection's client certificate under `trust`. Never throws:
 * whatever the peer presented, the answer is an identity or a reason, and the reason
 * names nothing from the certificate beyond the identity it claims.
 */
function authenticatePeer(
  socket: TLSSocket,
  trust: TrustStore,
  trustedCustodians: readonly Component[],
): PeerAuthentication {
  const refused = (reason: string) => ({ ok: false, reason }) as const;
  try {
    const leaf = socket.getPeerX509Certificate();
    if (!leaf) return refused("no client certificate was presented");
    const identity = trust.authenticate(leaf);
    // The handshake offered only these custodians' CAs; a connection that is judged again
    // after updateTrust is held to the same rule.
    if (!trustedCustodians.includes(identity.component)) {
      return refused(`${formatIdentity(identity)} is not a caller this component accepts`);
    }
    return { ok: true, identity };
  } catch (error) {
    return refused(error instanceof AuthenticationError ? error.message : "the client certificate could not be authenticated");
  }
}

export async function startMeshServer(options: MeshServerOptions): Promise<MeshServer> {
  const rules = options.rules ?? RULES;
  let trust = options.trust;
  const trustedCustodians = trustedCallerCustodians(options.component, rules);

  // Authentication is per TLS connection, so it is done once per socket and cached,
  // stamped with the TrustStore it was done under: after updateTrust no verdict of the
  // old trust is used again (and updateTrust itself re-checks every open session).
  const authenticated = new WeakMap<TLSSocket, { trust: TrustStore; result: PeerAuthentication }>();
  const authenticate = (socket: TLSSocket): PeerAuthentication => {
    const cached = authenticated.get(socket);
    if (cached?.trust === trust) return cached.result;
    const result = authenticatePeer(socket, trust, trustedCustodians);
    authenticated.set(socket, { trust, result });
    return result;
  };

  const metrics = options.metrics ?? processMeshMetrics();
  const peerOf = (req: { contextValues: { get(key: typeof peerKey): PeerAuthentication } }) => {
    const peer = req.contextValues.get(peerKey);
    return peer.ok ? formatIdentity(peer.identity) : undefined;
  };
  const observer = serverObserver(options.component, peerOf, { metrics, ...(options.log ? { log: options.log } : {}) });
  const connectHandler = connectNodeAdapter({
    routes: (router) => {
      options.routes(router);
      metricsRoutes(metrics)(router);
      relabelParseFailures(router);
    },
    // Tracing first, so the observer's log line carries the trace id; the observer
    // before authorization, so refused calls are counted and logged too; the error
    // mapping last, next to the handlers, so all of them see the mapped code. The
    // caller's protocol version is checked once it is known who the caller is.
    interceptors: [
      serverTracing(),
      observer,
      authorization(options.component, rules),
      serverVersionCheck(options.component, options.protocolVersions ?? THIS_RELEASE, (req) => peerOf(req) ?? "unknown"),
      ...(options.interceptors ?? []),
      errorMapping(options.mapError),
    ],
    readMaxBytes: options.readMaxBytes ?? DEFAULT_READ_MAX_BYTES,
    contextValues: (req) => {
      const values = createContextValues();
      const socket = (req as http2.Http2ServerRequest).stream?.session?.socket as TLSSocket | undefined;
      if (socket) values.set(peerKey, authenticate(socket));
      return values;
    },
  });

  const scrape = metricsScrape({
    component: options.component,
    metrics,
    rules,
    authenticate,
    log: options.log ?? processLogger,
  });
  const handler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    if (req.url === METRICS_PATH || req.url.startsWith(`${METRICS_PATH}?`)) {
      scrape(req, res).catch(() => res.headersSent ? res.stream.close() : (res.writeHead(500), res.end()));
      return;
    }
    connectHandler(req, res);
  };

  const tlsOptions = () => ({
    cert: options.credentials.certPem,
    key: options.credentials.keyPem,
    ca: trust.pems(trustedCustodians),
    minVersion: "TLSv1.3" as const,
  });
  const server = http2.createSecureServer(
    {
      ...tlsOptions(),
      requestCert: true,
      rejectUnauthorized: true,
      allowHTTP1: false,
    },
    (req, res) => {
      endUnreadRequest(req);
      handler(req, res);
    },
  );
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  // A failed handshake is the client's problem, not a crash: Node destroys the socket
  // before any HTTP/2 frame is read. We only report it.
  // When the client certificate fails verification, Node destroys the socket itself and
  // leaves the verdict in `authorizationError`; the error it reports is only the reset.
  server.on("tlsClientError", (error: NodeJS.ErrnoException, socket: TLSSocket) =>
    options.onHandshakeRefused?.(String(socket.authorizationError ?? error.code ?? error.message)),
  );

  const host = options.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(":") ? `[${host}]` : host;

  return {
    component: options.component,
    port,
    url: `https://${urlHost}:${port}`,
    updateTrust(next) {
      trust = next;
      server.setSecureContext(tlsOptions());
      // New handshakes now offer only the new CAs; a peer already connected is judged
      // again under the new trust, and its connection is cut if it no longer passes (a
      // rotated or revoked CA reaches callers that never reconnect). Its in-flight calls
      // end with the connection.
      for (const session of sessions) {
        if (!session.destroyed && !authenticate(session.socket as TLSSocket).ok) session.destroy();
      }
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.close();
      });
    },
  };
}
