// gRPC health checking (grpc.health.v1) for connect-node: the protocol that
// Kubernetes gRPC probes, grpc-health-probe and load balancers speak.
// Protocol: https://github.com/grpc/grpc/blob/master/doc/health-checking.md

import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../internal/gen/grpc/health/v1/health_pb.js";

export { ServingStatus };

export type HealthListener = (service: string, status: ServingStatus) => void;

/**
 * The serving status of each service by fully-qualified name; "" stands for the server
 * as a whole. Nothing is known until set, so a probe fails (NOT_FOUND) until the
 * component has said it is ready.
 */
export class HealthStatus {
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #listeners = new Set<HealthListener>();
  readonly #stopped = new AbortController();

  /** Records a status; listeners hear of it only if it changed. Ignored after shutdown(). */
  set(service: string, status: ServingStatus): void {
    // Once stopping, a late "SERVING" (say, a reconnect finishing during the drain)
    // must not attract new traffic; grpc-go's health server behaves the same way.
    if (this.#stopped.signal.aborted) return;
    this.#update(service, status);
  }

  get(service: string): ServingStatus | undefined {
    return this.#statuses.get(service);
  }

  #refresh: (() => Promise<unknown>) | undefined;

  /**
   * For a component whose status follows its peers' (internal/components/runtime/peer-health.ts):
   * Check calls `refresh` before it answers NOT_SERVING, so that a probe is answered
   * from a fresh look at the peers, not from the last periodic one.
   */
  refreshWith(refresh: () => Promise<unknown>): void {
    this.#refresh = refresh;
  }

  /** What Check answers: looked at again first when NOT_SERVING and a refresh is set. */
  async current(service: string): Promise<ServingStatus | undefined> {
    if (this.get(service) === ServingStatus.NOT_SERVING && this.#refresh && !this.#stopped.signal.aborted) {
      await this.#refresh().catch(() => {});
    }
    return this.get(service);
  }

  /** Every service's status, in the order first set. */
  entries(): IterableIterator<[string, ServingStatus]> {
    return this.#statuses.entries();
  }

  /** Calls `listener` after each change of any service's status; returns the unsubscribe. */
  onChange(listener: HealthListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Marks everything NOT_SERVING for good, ahead of a graceful stop. */
  shutdown(): void {
    for (const service of this.#statuses.keys()) this.#update(service, ServingStatus.NOT_SERVING);
    this.#stopped.abort();
  }

  /** Aborts on shutdown(); Watch streams end then, after sending NOT_SERVING. */
  get stopped(): AbortSignal {
    return this.#stopped.signal;
  }

  #update(service: string, status: ServingStatus): void {
    if (this.#statuses.get(service) === status) return;
    this.#statuses.set(service, status);
    for (const listener of this.#listeners) listener(service, status);
  }
}

/** A fully-qualified protobuf service name, of a length fit for an error message. */
const SERVICE_NAME = /^[A-Za-z_][A-Za-z0-9_.]{0,199}$/;

/** Routes for grpc.health.v1.Health backed by `health`. */
export function healthRoutes(health: HealthStatus): (router: ConnectRouter) => void {
  return (router) => {
    router.service(Health, {
      async check(request) {
        const status = await health.current(request.service);
        if (status === undefined) {
          // The name is repeated back only when it is one: a megabyte of anything would not
          // fit in the grpc-message trailer, and the client would see a broken stream instead.
          const named = SERVICE_NAME.test(request.service) ? `"${request.service}"` : "(not a service name)";
          throw new ConnectError(`unknown service: ${named}`, Code.NotFound);
        }
        return { status };
      },

      list() {
        const statuses: Record<string, { status: ServingStatus }> = {};
        for (const [service, status] of health.entries()) statuses[service] = { status };
        return { statuses };
      },

      // The current status first, then each change. Intermediate statuses may be skipped
      // when changes outpace the client (the protocol only promises the latest). An
      // unknown service is SERVICE_UNKNOWN and the stream stays open, as it may appear
      // later. The stream ends when the client goes away, or after NOT_SERVING is sent
      // on shutdown: HTTP/2 graceful close waits for open streams, so a watcher must
      // not hold the server up.
      async *watch(request, context) {
        let wake = () => {};
        const nudge = () => wake();
        const unsubscribe = health.onChange(nudge);
        context.signal.addEventListener("abort", nudge);
        health.stopped.addEventListener("abort", nudge);
        try {
          let sent: ServingStatus | undefined;
          while (!context.signal.aborted) {
            const status = health.get(request.service) ?? ServingStatus.SERVICE_UNKNOWN;
            if (status !== sent) {
              sent = status;
              yield { status };
            } else if (health.stopped.aborted) {
              return;
            } else {
              // Nothing can change between the checks above and here: no await between.
              await new Promise<void>((resolve) => (wake = resolve));
            }
          }
        } finally {
          unsubscribe();
          context.signal.removeEventListener("abort", nudge);
          health.stopped.removeEventListener("abort", nudge);
        }
      },
    });
  };
}
