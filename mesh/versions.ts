// The mesh protocol's version on the wire (internal/protocol/versions.ts has the rule,
// docs/upgrades.md the upgrade order). A client states its release's version on every
// versioned call and refuses an answer in a version outside its window; a server
// refuses a caller outside its window before the handler runs (stating its own version
// in the refusal), and answers an accepted caller in the caller's version, stating it.

import { Code, ConnectError, type Interceptor, createContextKey } from "@connectrpc/connect";
import {
  PROTOCOL_HEADER,
  PROTOCOL_REFUSED_HEADER,
  PROTOCOL_VERSION,
  type ProtocolWindow,
  isVersioned,
  statedVersion,
  versionRefusal,
} from "../internal/protocol/versions.js";

/** The protocol version the caller stated, for a handler that must answer an older caller in its format. */
export const callerProtocolKey = createContextKey<number>(PROTOCOL_VERSION);

function refusal(message: string, refusedBy: string, window: ProtocolWindow): ConnectError {
  return new ConnectError(message, Code.FailedPrecondition, {
    [PROTOCOL_HEADER]: String(window.speaks),
    [PROTOCOL_REFUSED_HEADER]: refusedBy,
  });
}

/** True if `error` is a refusal of a peer's protocol version (ours or the peer's), not an answer about the call. */
export function isVersionRefusal(error: unknown): error is ConnectError {
  return error instanceof ConnectError && error.code === Code.FailedPrecondition && error.metadata.has(PROTOCOL_REFUSED_HEADER);
}

/**
 * The server's check. `self` names this component; `caller` names the authenticated
 * caller (the interceptor runs after authorization).
 */
export function serverVersionCheck(self: string, window: ProtocolWindow, caller: (req: Parameters<Parameters<Interceptor>[0]>[0]) => string): Interceptor {
  return (next) => async (req) => {
    if (!isVersioned(req.service.typeName)) return next(req);
    const header = req.header.get(PROTOCOL_HEADER);
    const refused = versionRefusal(header, window, self, { role: "caller", name: caller(req) });
    if (refused) throw refusal(refused, self, window);
    // An accepted caller is answered in its own version, and the answer says so.
    const version = statedVersion(header)!;
    req.contextValues.set(callerProtocolKey, version);
    try {
      const res = await next(req);
      res.header.set(PROTOCOL_HEADER, String(version));
      return res;
    } catch (error) {
      if (error instanceof ConnectError) error.metadata.set(PROTOCOL_HEADER, String(version));
      throw error;
    }
  };
}

/**
 * The client's side. `self` names this caller, `target` the server. A server of a release
 * before versions states none and is taken as protocol 1; it did not check ours, so an
 * answer refused here may come from a call that took effect: the upgrade order
 * (docs/upgrades.md) keeps a caller from meeting a server that old.
 */
export function clientVersionCheck(self: string, target: string, window: ProtocolWindow): Interceptor {
  return (next) => async (req) => {
    if (!isVersioned(req.service.typeName)) return next(req);
    req.header.set(PROTOCOL_HEADER, String(window.speaks));
    const res = await next(req);
    const refused = versionRefusal(res.header.get(PROTOCOL_HEADER), window, self, { role: "server", name: target });
    if (refused) throw refusal(refused, self, window);
    return res;
  };
}
