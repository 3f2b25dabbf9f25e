// Health for load balancers and orchestrators, and the readiness gate every login step
// passes: no login starts or goes on while a peer it needs does not serve.

import { Code, ConnectError } from "@connectrpc/connect";
import type { DoorContext, Exchange } from "./context.js";
import { RETRY_AFTER_SECONDS, sendJson } from "./responses.js";

/** The gate: throws Unavailable, which the front door answers with the "unavailable" page. */
export async function whenReady(door: DoorContext) {
  if (door.readiness && !(await door.readiness.settle())) throw new ConnectError("a component a login needs is not serving", Code.Unavailable);
}

/** GET /healthz/live (and /health): the process answers. */
export function live(_door: DoorContext, { res }: Exchange) {
  sendJson(res, 200, { status: "ok" });
}

/** GET /healthz/ready: 200 while a login can succeed, else 503 naming the peers that do not serve. */
export async function ready(door: DoorContext, { res }: Exchange) {
  if (!door.readiness || (await door.readiness.settle())) return sendJson(res, 200, { status: "ready" });
  sendJson(res, 503, { status: "not ready", not_serving: door.readiness.notServing() }, { "retry-after": String(RETRY_AFTER_SECONDS) });
}
