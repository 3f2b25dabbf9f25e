// A mesh client: a Connect transport over HTTP/2 + TLS that presents this component's
// certificate and accepts the server only if it proves the expected SPIFFE identity
// with a certificate from that custodian's CA (and no other CA is even offered to the
// handshake). Host names play no part in whom we trust.
//
// The trust may change while the transport lives (a custodian rotates or revokes its
// CA; the component reloads the peers' bundles): see createMeshTransport.

import { X509Certificate } from "node:crypto";
import type { PeerCertificate, TLSSocket } from "node:tls";
import { Code, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import * as http2 from "node:http2";
import { Http2SessionManager, createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { type Component, formatIdentity, identityUri, parseIdentityUri } from "../internal/protocol/identity.js";
import { DEFAULT_READ_MAX_BYTES, type MeshCredentials } from "./server.js";
import { AuthenticationError, type TrustStore, uriSans } from "./trust.js";
import { type ClientTracingOptions, clientTracing } from "./telemetry.js";
import type { MeshMetrics } from "../internal/observability/metrics/registry.js";
import { clientObserver } from "../internal/observability/metrics/rpc-observer.js";
import { clientVersionCheck } from "./versions.js";
import { type ProtocolWindow, THIS_RELEASE } from "../internal/protocol/versions.js";

export type MeshProtocol = "grpc" | "connect" | "grpc-web";

export interface MeshTransportOptions {
  /** The component we expect to reach: its identity is checked in the handshake. */
  readonly target: Component;
  /** https://host:port */
  readonly baseUrl: string;
  readonly credentials: MeshCredentials;
  /**
   * The custodians' CAs. A function is asked again before every call, so that the
   * transport follows reloaded bundles (createMeshTransport); it must return the same
   * object for as long as nothing changed, since a new object means a new trust.
   */
  readonly trust: TrustStore | (() => TrustStore);
  /**
   * Default: the Connect protocol. Servers answer all three; between mesh peers a
   * unary Connect call is cheaper than a gRPC one (no envelope, no trailers frame;
   * the figures: docs/performance.md, `npm run bench:calls`).
   */
  readonly protocol?: MeshProtocol;
  readonly interceptors?: readonly Interceptor[];
  /** Deadline for calls that set none (propagated to the server as grpc-timeout). */
  readonly defaultTimeoutMs?: number;
  /** Where calls are counted. Default: this process's registry. */
  readonly metrics?: MeshMetrics;
  /** How trace context crosses: by default the server continues our trace (mesh/telemetry.ts). */
  readonly tracing?: ClientTracingOptions;
  /** The protocol versions this client speaks and accepts (mesh/versions.ts). Default: this release's. */
  readonly protocolVersions?: ProtocolWindow;
}

/**
 * The identity our own certificate names ("orchestration", "token/operator"): the
 * `component` label of the calls we make. A certificate that names none (a test's
 * deliberately broken one) is "unknown"; the server will refuse it anyway.
 */
function callerLabel(certPem: string): string {
  try {
    const uris = uriSans(new X509Certificate(certPem));
    const identity = uris.length === 1 ? parseIdentityUri(uris[0]!) : undefined;
    return identity ? formatIdentity(identity) : "unknown";
  } catch {
    return "unknown";
  }
}

/**
 * Why `cert` does not prove that the server is `target` under `trust`, or undefined when
 * it does. Never throws: the server chose the certificate.
 */
function serverRefusal(trust: TrustStore, target: Component, cert: X509Certificate): Error | undefined {
  try {
    const identity = trust.authenticate(cert);
    if (identity.uri !== identityUri(target)) {
      return new AuthenticationError(`expected to reach ${target} but the server is ${formatIdentity(identity)}`);
    }
    return undefined;
  } catch (error) {
    return error instanceof AuthenticationError ? error : new AuthenticationError("the server's certificate could not be authenticated");
  }
}

/** Returns an Error (refusing the connection) unless the server is `target` itself. */
export function serverIdentityCheck(trust: TrustStore, target: Component) {
  return (_host: string, cert: PeerCertificate): Error | undefined => {
    try {
      return serverRefusal(trust, target, new X509Certificate(cert.raw));
    } catch {
      return new AuthenticationError("the server's certificate could not be read");
    }
  };
}

/** Whether the server at the other end of `session` is still `target` under `trust`. */
function serverStillTrusted(session: http2.ClientHttp2Session, trust: TrustStore, target: Component): boolean {
  try {
    const cert = (session.socket as TLSSocket).getPeerX509Certificate();
    return cert !== undefined && serverRefusal(trust, target, cert) === undefined;
  } catch {
    return false; // a session already torn down has nothing left to keep
  }
}

export const DEFAULT_CALL_TIMEOUT_MS = 5_000;

/**
 * connect-node 2.1.2's session manager, made safe for peers that shut down gracefully.
 *
 * When a peer sends GOAWAY (NO_ERROR) on a connection without open streams, as a
 * component does on SIGTERM, the manager destroys the session with an error that Node
 * raises only once the socket has closed. If a call arrives in between, the manager
 * moves on to a new connection and removes its listeners first, and the late error is
 * an uncaught exception: the caller crashes. A fault test caught Encryption dying that
 * way when Storage was restarted (connectrpc/connect-es#1768, fix proposed in #1769, not
 * released). Every session this manager hands out keeps one listener of its own, so an
 * error raised after the manager let go of a session goes nowhere. Errors while the
 * manager holds the session still reach it and the calls on it, as before.
 */
export class GoawaySafeSessionManager extends Http2SessionManager {
  readonly #guarded = new WeakSet<http2.Http2Session>();
  /** The sessions it has handed out that have not closed yet. */
  readonly #open = new Set<http2.ClientHttp2Session>();
  #retired: ((session: http2.ClientHttp2Session) => void) | undefined;

  override async request(...args: Parameters<Http2SessionManager["request"]>): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(...args);
    const session = stream.session as http2.ClientHttp2Session | undefined;
    if (session && !this.#guarded.has(session)) {
      this.#guarded.add(session);
      session.on("error", () => {});
      if (!session.closed && !session.destroyed) {
        this.#open.add(session);
        session.once("close", () => this.#open.delete(session));
      }
    }
    // A call already on its way when the manager was retired may have opened a session since.
    if (session && this.#retired) this.#retired(session);
    return stream;
  }

  /**
   * Stops this manager's connections being used for anything new, for a transport that
   * has moved on to a new trust: a connection whose server `stillTrusted` accepts is
   * closed once its calls are done; any other is destroyed at once, failing its calls
   * with UNAVAILABLE. A session opened afterwards for a call that was already on its way
   * is judged the same way.
   */
  retire(stillTrusted: (session: http2.ClientHttp2Session) => boolean): void {
    const untrusted = new ConnectError("the server is no longer trusted: its custodian's CA changed", Code.Unavailable);
    this.#retired = (session) => {
      if (session.closed || session.destroyed) return;
      if (stillTrusted(session)) session.close();
      else session.destroy(untrusted, http2.constants.NGHTTP2_CANCEL);
    };
    for (const session of this.#open) this.#retired(session);
  }
}

/** A mesh transport; `close()` drops its connection (or the attempt to make one) at once. */
export interface MeshTransport extends Transport {
  close(): void;
}

/** Whether both trust the same CA for `target`: the only one a transport to `target` offers and checks. */
function sameCa(a: TrustStore, b: TrustStore, target: Component): boolean {
  return a.has(target) && b.has(target) && a.ca(target).raw.equals(b.ca(target).raw);
}

/**
 * A transport to `target`. With `trust` a function, the transport follows it: before
 * each call it asks for the current TrustStore (one function call and one comparison),
 * and when that holds another CA for `target` it makes a new connection pool whose
 * handshakes offer the new CA and check the new identity rule. The previous pool is
 * retired: its connection is kept for its calls in flight and then closed if the server
 * still authenticates under the new trust, and cut at once (failing those calls) if not,
 * so a rotated or revoked CA reaches a client that never reconnects on its own.
 */
export function createMeshTransport(options: MeshTransportOptions): MeshTransport {
  const currentTrust = typeof options.trust === "function" ? options.trust : ((trust) => () => trust)(options.trust);
  const self = callerLabel(options.credentials.certPem);
  const common = {
    baseUrl: options.baseUrl,
    httpVersion: "2" as const,
    // Tracing first, so the observer's log line carries the call's trace id; the version
    // check inside the observer, so a refused answer is counted as refused.
    interceptors: [
      clientTracing(options.tracing),
      clientObserver(self, options.target, options.metrics ? { metrics: options.metrics } : {}),
      clientVersionCheck(self, options.target, options.protocolVersions ?? THIS_RELEASE),
      ...(options.interceptors ?? []),
    ],
    defaultTimeoutMs: options.defaultTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS,
    // A message the peer would refuse (RESOURCE_EXHAUSTED) is refused here, unsent. Sent,
    // the peer answers before reading it all, and Node's client session keeps counting
    // the unsent rest against its memory limit: one or two such calls and the connection
    // refuses every new stream (ENHANCE_YOUR_CALM). See docs/bad-input.md.
    writeMaxBytes: DEFAULT_READ_MAX_BYTES,
    // Mesh messages are a few KB between nearby peers: gzip (the default offer, which
    // servers take up for responses over 1 KiB) costs zlib work on both ends, on the
    // thread pool, for bytes a data-centre network does not miss. Servers still accept
    // gzip from other clients.
    acceptCompression: [],
  };
  const create = { grpc: createGrpcTransport, connect: createConnectTransport, "grpc-web": createGrpcWebTransport }[options.protocol ?? "connect"];

  const connectTo = (trust: TrustStore) => {
    // Mesh peers are long-lived: keep the session and notice a dead peer quickly.
    const sessionManager = new GoawaySafeSessionManager(
      options.baseUrl,
      { pingIntervalMs: 15_000, pingTimeoutMs: 5_000, idleConnectionTimeoutMs: 60_000 },
      {
        cert: options.credentials.certPem,
        key: options.credentials.keyPem,
        ca: trust.pems([options.target]),
        checkServerIdentity: serverIdentityCheck(trust, options.target),
        minVersion: "TLSv1.3" as const,
      },
    );
    return { trust, sessionManager, transport: create({ ...common, sessionManager }) };
  };
  let current = connectTo(currentTrust());
  /** Pools retired by a trust change whose connections may still be finishing calls. */
  let retired: GoawaySafeSessionManager[] = [];
  const transportNow = (): Transport => {
    const trust = currentTrust();
    if (trust !== current.trust && sameCa(trust, current.trust, options.target)) {
      // Another custodian's bundle changed (a signing-key rotation, say): nothing this
      // transport checks did, so its connection stays.
      current = { ...current, trust };
    } else if (trust !== current.trust) {
      const previous = current;
      current = connectTo(trust);
      previous.sessionManager.retire((session) => serverStillTrusted(session, trust, options.target));
      retired = [...retired.filter((m) => m.state() !== "closed" && m.state() !== "error"), previous.sessionManager];
    }
    return current.transport;
  };
  return {
    unary: (method, signal, timeoutMs, header, input, contextValues) =>
      transportNow().unary(method, signal, timeoutMs, header, input, contextValues),
    stream: (method, signal, timeoutMs, header, input, contextValues) =>
      transportNow().stream(method, signal, timeoutMs, header, input, contextValues),
    // A connection attempt to something that accepts TCP and never answers the handshake
    // has no timeout of its own and keeps the process alive; a short-lived client (a
    // readiness probe, a CLI) closes its transport when done.
    close: () => {
      current.sessionManager.abort();
      for (const manager of retired) manager.abort();
    },
  };
}
