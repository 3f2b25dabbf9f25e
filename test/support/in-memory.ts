// A component's routes joined in memory (no sockets), with the same error mapping the
// mesh server gives every component (mesh/errors.ts): for fast specs and the in-process
// benchmark.

import { type ConnectRouter, type Transport, createRouterTransport } from "@connectrpc/connect";
import { errorMapping } from "../../mesh/errors.js";
import type { ErrorMapper } from "../../internal/protocol/errors.js";

export function inMemory(routes: (router: ConnectRouter) => void, mapError?: ErrorMapper): Transport {
  return createRouterTransport(routes, { router: { interceptors: [errorMapping(mapError)] } });
}
