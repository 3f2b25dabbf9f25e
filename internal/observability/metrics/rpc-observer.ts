// Connect interceptors that count, time and log every mesh call, on both ends. They
// read only the method descriptor, the outcome's gRPC code and the clock: never a
// message, header or error text into a label (the error goes to the log line through
// the safe serializer). Wired in by mesh/server.ts and mesh/client.ts, so every
// component has them without asking.

import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { type Logger, processLogger } from "../log/logger.js";
import { activeTraceId, codeName, logRpc } from "../log/request-log.js";
import { type MeshMetrics, processMeshMetrics } from "./registry.js";

/** "hello.token.v1.TokenService/CreateSession": the label and log value for a method. */
export function methodName(service: { typeName: string }, method: { name: string }): string {
  return `${service.typeName}/${method.name}`;
}

export interface ObserverOptions {
  /** Default: this process's registry. */
  readonly metrics?: MeshMetrics;
  /** Read per call, so a logger set after start-up is used. Default: the process logger. */
  readonly log?: () => Logger;
}

type Outcome = { code: Code | undefined; error?: unknown };

function outcomeOf(error: unknown): Outcome {
  return error === undefined ? { code: undefined } : { code: ConnectError.from(error).code, error };
}

/**
 * Runs `report` once when the call ends: at once for a unary call, after the last
 * response message (or the error, or the reader giving up) for a streaming one.
 */
function observeCall(report: (outcome: Outcome) => void): Interceptor {
  return (next) => async (req) => {
    let res;
    try {
      res = await next(req);
    } catch (error) {
      report(outcomeOf(error));
      throw error;
    }
    if (!res.stream) {
      report(outcomeOf(undefined));
      return res;
    }
    const messages = res.message;
    async function* observed() {
      let ended = false;
      try {
        for await (const message of messages) yield message;
        ended = true;
        report(outcomeOf(undefined));
      } catch (error) {
        ended = true;
        report(outcomeOf(error));
        throw error;
      } finally {
        // The reader stopped early (the peer went away): the call was canceled.
        if (!ended) report({ code: Code.Canceled });
      }
    }
    return { ...res, message: observed() };
  };
}

type Request = Parameters<Parameters<Interceptor>[0]>[0];

/** One side's observer: its metrics' labels for a call, and the peer its log line names. */
function observer(
  side: "server" | "client",
  labelsOf: (method: string) => Record<string, string>,
  peerOf: (req: Request) => string | undefined,
  options: ObserverOptions,
): Interceptor {
  // Resolved on first use: a tool that makes a transport and no call keeps no registry.
  const registry = () => options.metrics ?? processMeshMetrics();
  const log = options.log ?? processLogger;
  return (next) => async (req) => {
    const started = performance.now();
    const method = methodName(req.service, req.method);
    const traceId = activeTraceId();
    const peer = peerOf(req);
    const report = ({ code, error }: Outcome) => {
      const seconds = (performance.now() - started) / 1000;
      registry()[side].observe({ ...labelsOf(method), code: codeName(code) }, seconds, code !== undefined);
      logRpc(log(), { side, method, ...(peer ? { peer } : {}), code, durationMs: seconds * 1000, ...(traceId ? { traceId } : {}), error });
    };
    return observeCall(report)(next)(req);
  };
}

/**
 * Server side: requests, errors and latency by component, method and code, and one
 * log line per call. `peerOf` names the verified caller for the log line
 * ("orchestration", "token/operator"); it is not a metric label.
 */
export function serverObserver(component: string, peerOf: (req: Request) => string | undefined, options: ObserverOptions = {}): Interceptor {
  return observer("server", (method) => ({ component, method }), peerOf, options);
}

/** Client side: the same, by calling identity, target component, method and code. */
export function clientObserver(caller: string, target: string, options: ObserverOptions = {}): Interceptor {
  return observer("client", (method) => ({ component: caller, target, method }), () => target, options);
}
