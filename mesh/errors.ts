// One interceptor turns whatever a handler threw into the code that goes on the wire
// (internal/protocol/errors.ts), so no handler maps its own errors. It sits innermost,
// next to the handler, so that tracing, the call's metrics and its log line see the
// mapped code.

import type { Interceptor } from "@connectrpc/connect";
import { type ErrorMapper, toConnectError } from "../internal/protocol/errors.js";

export function errorMapping(mapError?: ErrorMapper): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (error) {
      throw toConnectError(error, mapError);
    }
  };
}
