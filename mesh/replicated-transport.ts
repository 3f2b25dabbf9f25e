// A mesh client of a replicated peer (docs/replicas.md, "Clients of replicas"): one
// createMeshTransport per replica, each with everything it does per call (trust reload,
// interceptors, metrics, tracing, the version check), and in front of them the choice of
// replica.
//
// - Each replica's health is its own grpc.health.v1 Check (service ""), looked at often
//   while it does not serve, seldom while it does, and at once after a call to it failed
//   as unavailable.
// - A call goes to a replica last seen SERVING, round-robin over those; when none is
//   known to serve, to each in turn.
// - A call that failed before its request could reach the replica (notDelivered, below)
//   goes on to the next replica, within the same deadline. A call that may have reached
//   it is never sent again: a write must not run twice. It fails as it would have with
//   one replica, and that replica is looked at at once.
// - A Check sent through this transport asks every replica and answers SERVING when one
//   serves, so a component's readiness (PeerHealth) follows the peer as a whole.

import { Code, ConnectError, type ContextValues, type Transport, type UnaryResponse } from "@connectrpc/connect";
import type { DescMessage, DescMethodStreaming, DescMethodUnary, MessageInitShape } from "@bufbuild/protobuf";
import { type MeshTransport, type MeshTransportOptions, DEFAULT_CALL_TIMEOUT_MS, createMeshTransport } from "./client.js";
import { AuthenticationError } from "./trust.js";
import { isUnavailable } from "./transport-errors.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../internal/gen/grpc/health/v1/health_pb.js";

/**
 * What the client knows of a replica: "unknown" until its first Check answers;
 * "serving" or "not-serving" as its last Check answered (NOT_SERVING, or any other
 * answer than SERVING); "unreachable" when its last Check or call could not reach it
 * (refused, a failed handshake, no answer within the deadline).
 */
export type ReplicaState = "unknown" | "serving" | "not-serving" | "unreachable";

/** How long a replica's Check may take: a Check is microseconds of work, this bounds a hung replica. */
export const REPLICA_CHECK_DEADLINE_MS = 2_000;
/** How often a replica that does not serve is looked at: one back is used again well within a second. */
export const REPLICA_NOT_SERVING_EVERY_MS = 250;
/** How often a serving replica is looked at (a failed call makes the client look at once). */
export const REPLICA_SERVING_EVERY_MS = 5_000;

export interface ReplicaHealthOptions {
  /** Default REPLICA_CHECK_DEADLINE_MS; more for a peer whose Check may first look at its own peer. */
  readonly deadlineMs?: number;
  /** Default REPLICA_SERVING_EVERY_MS. */
  readonly servingEveryMs?: number;
  /** Default REPLICA_NOT_SERVING_EVERY_MS. */
  readonly notServingEveryMs?: number;
}

export interface ReplicatedTransportOptions extends Omit<MeshTransportOptions, "baseUrl"> {
  /** Each replica's https://host:port, at least one, all distinct. With one: createMeshTransport's transport, as is. */
  readonly baseUrls: readonly string[];
  readonly health?: ReplicaHealthOptions;
  /** Told of each change of a replica's state (for the component's log). */
  readonly onReplicaState?: (url: string, state: ReplicaState, previous: ReplicaState) => void;
  /** Told when a call to `url` failed before it reached that replica and goes on to the next. */
  readonly onFailover?: (url: string, error: ConnectError) => void;
}

/**
 * OpenSSL's verdicts on a server's certificate chain, as Node names them (err.code). Only
 * the client's own check of the server's certificate in the handshake raises them, before
 * the TLS connection is up, so before any HTTP/2 frame is sent.
 */
const SERVER_CERTIFICATE_REFUSED = new Set([
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
  "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY",
  "CERT_SIGNATURE_FAILURE",
  "CERT_NOT_YET_VALID",
  "CERT_HAS_EXPIRED",
  "ERROR_IN_CERT_NOT_BEFORE_FIELD",
  "ERROR_IN_CERT_NOT_AFTER_FIELD",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "CERT_CHAIN_TOO_LONG",
  "CERT_REVOKED",
  "INVALID_CA",
  "PATH_LENGTH_EXCEEDED",
  "INVALID_PURPOSE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "HOSTNAME_MISMATCH",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/**
 * TLS alerts by which the server refused the handshake itself (our certificate, the
 * protocol version). A server sends them before it reads any application data, so a
 * request the client may already have written (TLS 1.3 lets it, once its own Finished
 * is out) was never decrypted, let alone run.
 */
const HANDSHAKE_ALERT = /^ERR_SSL_(SSLV3|TLSV1|TLSV13)_ALERT_(BAD_CERTIFICATE|UNSUPPORTED_CERTIFICATE|CERTIFICATE_REVOKED|CERTIFICATE_EXPIRED|CERTIFICATE_UNKNOWN|CERTIFICATE_REQUIRED|UNKNOWN_CA|ACCESS_DENIED|HANDSHAKE_FAILURE|PROTOCOL_VERSION|INSUFFICIENT_SECURITY)$/;

/**
 * True only if `error` proves that the request never reached the peer's application, so
 * sending it to another replica cannot make it run twice. connect-node puts the Node
 * error it saw in `cause` (mesh/transport-errors.ts); these are:
 *
 * - a failure of the `connect` (or name lookup) system call: ECONNREFUSED, EHOSTUNREACH,
 *   ENETUNREACH, ETIMEDOUT while connecting… No TCP connection, so nothing was sent;
 * - the client's refusal of the server in the TLS handshake: OpenSSL's verdict on its
 *   chain (another CA), or the mesh's identity check (mesh/client.ts serverIdentityCheck,
 *   an AuthenticationError: another identity). connect-node opens no stream before the
 *   HTTP/2 session is up, and the session waits for the handshake;
 * - the server's refusal of the handshake (HANDSHAKE_ALERT, above);
 * - the stream refused: RST_STREAM REFUSED_STREAM, which RFC 9113 §8.7 defines as "not
 *   processed at all" (also what nghttp2 gives streams above a GOAWAY's last stream id),
 *   whether connect-node reports the reset code or Node's stream error;
 * - Node refusing to open the stream at all because the session had received GOAWAY
 *   (ERR_HTTP2_GOAWAY_SESSION).
 *
 * Nothing else is: a reset connection (ECONNRESET, EPIPE), a stream reset with another
 * code, a PING timeout, a session cut because the trust changed, a passed deadline or a
 * cancelled call may all come after the server began — or finished — the work. So may
 * any answer of the server, UNAVAILABLE included.
 */
export function notDelivered(error: unknown): boolean {
  if (!(error instanceof ConnectError)) return false;
  if (/^http\/2 stream closed with error code REFUSED_STREAM\b/.test(error.rawMessage)) return true;
  for (let cause: unknown = error.cause, depth = 0; cause instanceof Error && depth < 8; cause = cause.cause, depth++) {
    if (cause instanceof AuthenticationError) return true;
    const { code, syscall } = cause as { code?: unknown; syscall?: unknown };
    if (syscall === "connect" || syscall === "getaddrinfo") return true;
    if (typeof code !== "string") continue;
    if (SERVER_CERTIFICATE_REFUSED.has(code) || HANDSHAKE_ALERT.test(code) || code === "ERR_HTTP2_GOAWAY_SESSION") return true;
    if (code === "ERR_HTTP2_STREAM_ERROR" && /\bNGHTTP2_REFUSED_STREAM\b/.test(cause.message)) return true;
  }
  return false;
}

/** One replica: its transport, its health as last seen, and its looks. */
class Replica {
  state: ReplicaState = "unknown";
  /** When (in the transport's sequence of observations) what `state` says was seen. */
  #seenAt = 0;
  #looking = false;
  #lookAgain = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly url: string,
    readonly transport: MeshTransport,
    private readonly owner: ReplicaSet,
  ) {}

  /** Records what was seen at `seenAt`, unless something seen later is already recorded. */
  observe(seenAt: number, state: ReplicaState): void {
    if (seenAt < this.#seenAt || this.owner.closed) return;
    this.#seenAt = seenAt;
    const previous = this.state;
    this.state = state;
    if (previous !== state) this.owner.changed(this, previous);
  }

  /** Looks now, or right after the look under way (which began before this was asked). */
  look(): void {
    if (this.owner.closed) return;
    if (this.#looking) {
      this.#lookAgain = true;
      return;
    }
    this.#looking = true;
    clearTimeout(this.#timer);
    const seenAt = this.owner.tick();
    const { deadlineMs } = this.owner.health;
    this.transport.unary(Health.method.check, undefined, deadlineMs, undefined, { service: "" }).then(
      (answer) => this.observe(seenAt, answer.message.status === ServingStatus.SERVING ? "serving" : "not-serving"),
      (error) => this.observe(seenAt, stateAfterFailedCheck(error)),
    ).finally(() => {
      this.#looking = false;
      if (this.#lookAgain) {
        this.#lookAgain = false;
        this.look();
      } else this.#schedule();
    });
  }

  close(): void {
    clearTimeout(this.#timer);
    this.transport.close();
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    if (this.owner.closed) return;
    const { servingEveryMs, notServingEveryMs } = this.owner.health;
    this.#timer = setTimeout(() => this.look(), this.state === "serving" ? servingEveryMs : notServingEveryMs);
    this.#timer.unref();
  }
}

/** A Check that failed: the replica could not be reached, or it answered something other than a status. */
function stateAfterFailedCheck(error: unknown): ReplicaState {
  return notDelivered(error) || isUnavailable(error) ? "unreachable" : "not-serving";
}

/** The replicas of one peer and what the transport knows of them. */
class ReplicaSet {
  readonly replicas: readonly Replica[];
  closed = false;
  readonly health: Required<ReplicaHealthOptions>;
  #observations = 0;
  #next = 0;

  constructor(private readonly options: ReplicatedTransportOptions) {
    this.health = {
      deadlineMs: options.health?.deadlineMs ?? REPLICA_CHECK_DEADLINE_MS,
      servingEveryMs: options.health?.servingEveryMs ?? REPLICA_SERVING_EVERY_MS,
      notServingEveryMs: options.health?.notServingEveryMs ?? REPLICA_NOT_SERVING_EVERY_MS,
    };
    const { baseUrls, health: _health, onReplicaState: _onReplicaState, onFailover: _onFailover, ...common } = options;
    this.replicas = baseUrls.map((baseUrl) => new Replica(baseUrl, createMeshTransport({ ...common, baseUrl }), this));
  }

  /** The next number in the order in which the transport learns things. */
  tick(): number {
    return ++this.#observations;
  }

  changed(replica: Replica, previous: ReplicaState): void {
    try {
      this.options.onReplicaState?.(replica.url, replica.state, previous);
    } catch {
      // A listener's failure is its own.
    }
  }

  /**
   * The replicas to try for one call, in order: those serving, round-robin, then those
   * that may have come back since they were last seen (never one that answered
   * NOT_SERVING); when none is known to serve, all of them, round-robin.
   */
  candidates(): Replica[] {
    const turn = this.#next++;
    const rotate = (list: readonly Replica[]) => list.map((_, i) => list[(turn + i) % list.length]!);
    const serving = this.replicas.filter((r) => r.state === "serving");
    if (serving.length === 0) return rotate(this.replicas);
    return [...rotate(serving), ...rotate(this.replicas.filter((r) => r.state === "unknown" || r.state === "unreachable"))];
  }

  /**
   * Runs one call, on the next candidate each time an attempt fails before its request
   * reached the replica, until the deadline (the caller's, or the default) has passed.
   * `replayable` says whether the request can still be sent again (a stream's input not
   * read yet).
   */
  async failover<T>(
    timeoutMs: number | undefined,
    signal: AbortSignal | undefined,
    attempt: (transport: Transport, timeoutMs: number | undefined) => Promise<T>,
    replayable: () => boolean = () => true,
  ): Promise<T> {
    // As connect does: undefined takes the default deadline, zero or less means none.
    const budget = timeoutMs ?? this.options.defaultTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    const deadline = budget > 0 ? Date.now() + budget : undefined;
    const failures: ConnectError[] = [];
    for (const replica of this.candidates()) {
      let left = timeoutMs;
      if (failures.length > 0) {
        if (deadline !== undefined) left = deadline - Date.now();
        if ((left !== undefined && left < 1) || signal?.aborted || this.closed || !replayable()) break;
      }
      try {
        return await attempt(replica.transport, left);
      } catch (error) {
        if (!notDelivered(error)) {
          // It may have reached the replica: never sent again. Look at the replica if it seems gone.
          if (isUnavailable(error)) replica.look();
          throw error;
        }
        const failure = error as ConnectError;
        failures.push(failure);
        replica.observe(this.tick(), "unreachable");
        replica.look();
        try {
          this.options.onFailover?.(replica.url, failure);
        } catch {
          // A listener's failure is its own.
        }
      }
    }
    // Every replica tried failed before the request reached it: the first "unavailable",
    // as a single peer that is down would have answered, else the last failure.
    throw failures.find((f) => f.code === Code.Unavailable) ?? failures.at(-1)!;
  }

  /**
   * A Check through the transport: asked of every replica at once, answered with the
   * first SERVING answer, else an answer of a replica that does not serve, else the
   * failure (as `failover` picks it). Every answer updates that replica's state.
   */
  check<I extends DescMessage, O extends DescMessage>(
    call: (transport: Transport) => Promise<UnaryResponse<I, O>>,
    wholeServer: boolean,
  ): Promise<UnaryResponse<I, O>> {
    const seenAt = this.tick();
    return new Promise((resolve, reject) => {
      let left = this.replicas.length;
      let notServing: UnaryResponse<I, O> | undefined;
      const failures: ConnectError[] = [];
      for (const replica of this.replicas) {
        call(replica.transport)
          .then(
            (answer) => {
              const serving = (answer.message as unknown as { status?: ServingStatus }).status === ServingStatus.SERVING;
              if (wholeServer) replica.observe(seenAt, serving ? "serving" : "not-serving");
              if (serving) resolve(answer);
              else notServing ??= answer;
            },
            (error: unknown) => {
              if (wholeServer) replica.observe(seenAt, stateAfterFailedCheck(error));
              failures.push(ConnectError.from(error));
            },
          )
          .finally(() => {
            if (--left > 0) return;
            if (notServing) resolve(notServing);
            else reject(failures.find((f) => f.code === Code.Unavailable) ?? failures.at(-1)!);
          });
      }
    });
  }

  close(): void {
    this.closed = true;
    for (const replica of this.replicas) replica.close();
  }
}

/**
 * A stream's input that tells whether anything has begun to read it: until then it can
 * be sent again. connect takes an iterator of it as it builds the request, and when an
 * attempt fails it calls that iterator's throw() and return() to clean up; reading
 * begins only once the stream is open. So an attempt's iterator reaches the caller's
 * input only at its first next(): the clean-up of an attempt that never read leaves the
 * input as it was, for the next attempt.
 */
function untouched<T>(input: AsyncIterable<T>): { input: AsyncIterable<T>; touched: () => boolean } {
  let touched = false;
  return {
    input: {
      [Symbol.asyncIterator](): AsyncIterator<T> {
        let iterator: AsyncIterator<T> | undefined;
        return {
          next: (...args) => {
            touched = true;
            iterator ??= input[Symbol.asyncIterator]();
            return iterator.next(...args);
          },
          return: (value) => (iterator?.return ? iterator.return(value) : Promise.resolve({ done: true, value })),
          throw: (error) => (iterator?.throw ? iterator.throw(error) : Promise.resolve({ done: true, value: undefined })),
        };
      },
    },
    touched: () => touched,
  };
}

/** The request headers a transport takes (undici's HeadersInit, which this project's lib does not name). */
type CallHeader = Parameters<Transport["unary"]>[3];

function isHealthCheck(method: { parent: { typeName: string }; name: string }): boolean {
  return method.parent.typeName === Health.typeName && method.name === Health.method.check.name;
}

/**
 * A transport to a replicated peer: `baseUrls` are its replicas, each reached as
 * createMeshTransport reaches a peer (same identity check, trust reload, interceptors,
 * metrics, tracing and version check, per attempt). With one URL it is that transport
 * itself. `close()` closes every replica's connection and stops the health checks.
 */
export function createReplicatedTransport(options: ReplicatedTransportOptions): MeshTransport {
  const urls = options.baseUrls;
  if (urls.length === 0) throw new Error(`a transport to ${options.target} needs at least one replica's URL`);
  if (new Set(urls).size !== urls.length) throw new Error(`the replicas of ${options.target} are named more than once: ${urls.join(", ")}`);
  if (urls.length === 1) {
    const { baseUrls: _baseUrls, health: _health, onReplicaState: _onReplicaState, onFailover: _onFailover, ...common } = options;
    return createMeshTransport({ ...common, baseUrl: urls[0]! });
  }
  const set = new ReplicaSet(options);
  for (const replica of set.replicas) replica.look();
  return {
    unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: CallHeader,
      input: MessageInitShape<I>,
      contextValues?: ContextValues,
    ) {
      if (isHealthCheck(method)) {
        const service = (input as { service?: string }).service ?? "";
        return set.check<I, O>((t) => t.unary(method, signal, timeoutMs, header, input, contextValues), service === "");
      }
      return set.failover(timeoutMs, signal, (t, left) => t.unary(method, signal, left, header, input, contextValues));
    },
    stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: CallHeader,
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ContextValues,
    ) {
      // A stream is sent again only if nothing of its input has been read yet.
      const guarded = untouched(input);
      return set.failover(timeoutMs, signal, (t, left) => t.stream(method, signal, left, header, guarded.input, contextValues), () => !guarded.touched());
    },
    close: () => set.close(),
  };
}
