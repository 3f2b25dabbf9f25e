// The deadline of the request a statement serves (docs/faults.md). Connect hands Storage
// each call's deadline (connect-timeout-ms or grpc-timeout, passed on by Encryption from Orchestration's) and
// an abort signal that fires when the caller gives up; the service runs each call under
// them, and the backends give no statement longer than what is left. A statement for a
// request that has already given up is not sent at all, so a database that was slow,
// or a Storage that was stalled, does not then work through a backlog nobody waits for.
//
// It travels in AsyncLocalStorage, request-scoped as a trace context is, so that the
// RecordStore interface stays the same for callers without a deadline (tools, tests).

import { AsyncLocalStorage } from "node:async_hooks";
import type { DescService } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { UnavailableError } from "./errors.js";

interface RequestScope {
  /** performance.now() at the deadline, if the caller set one. */
  readonly end: number | undefined;
  readonly signal: AbortSignal | undefined;
}

const requestScope = new AsyncLocalStorage<RequestScope>();

/** Runs `work` with a deadline `timeoutMs` from now (none if undefined), cancelled by `signal`. */
export function withDeadline<T>(timeoutMs: number | undefined, work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  return requestScope.run({ end: timeoutMs === undefined ? undefined : performance.now() + timeoutMs, signal }, work);
}

/**
 * How long the next statement may take: `ceilingMs`, or less if the request's deadline
 * is nearer. Throws UnavailableError if the deadline has passed or the caller has gone.
 */
export function timeLeftForStatement(ceilingMs: number): number {
  const scope = requestScope.getStore();
  if (scope === undefined) return ceilingMs;
  if (scope.signal?.aborted) throw new UnavailableError("the caller gave up before the statement was sent");
  if (scope.end === undefined) return ceilingMs;
  const left = Math.floor(scope.end - performance.now());
  if (left <= 0) throw new UnavailableError("the request's deadline passed before the statement was sent");
  return Math.min(ceilingMs, left);
}

/** `implementation`, each of whose methods runs under its call's deadline and cancellation. */
export function underDeadlines<S extends DescService>(_service: S, implementation: Partial<ServiceImpl<S>>): Partial<ServiceImpl<S>> {
  return Object.fromEntries(
    Object.entries(implementation).map(([name, handler]) => [
      name,
      (request: unknown, context: HandlerContext) =>
        withDeadline(
          context.timeoutMs(),
          () => (handler as (r: unknown, c: HandlerContext) => Promise<unknown>)(request, context),
          context.signal,
        ),
    ]),
  ) as Partial<ServiceImpl<S>>;
}
