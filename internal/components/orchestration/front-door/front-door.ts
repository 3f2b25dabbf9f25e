// The front door (docs/design.md §6): a standard OpenID Provider to apps, on Orchestration.
// Every login goes to the user's own provider (hello-mesh keeps no login session of
// its own) and through the four components; the ID Token reaches the app only through
// the token endpoint.
//
// This file is the request loop: parse the URL, name the route for the observer, look
// it up in the route table (routes.ts, one module per endpoint beside it), and turn
// what a handler throws into a page or, on the back channel, RFC 6749 JSON.

import { answerWalletProblem } from "./wallet-api.js";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { Code, ConnectError } from "@connectrpc/connect";
import { isUnavailable } from "../../../../mesh/transport-errors.js";
import { isVersionRefusal } from "../../../../mesh/versions.js";
import { OTHER_ROUTE, httpObserver } from "../../../observability/metrics/http-observer.js";
import { ProtocolViolation, WalletChanged, isLostCreateRace } from "../login-driver.js";
import { RedirectableError, UntrustedRedirectError } from "./authorization-request.js";
import { type FrontDoorDeps, doorContext } from "./context.js";
import { HSTS, arrivedOverHttps, trustedProxies } from "./forwarded.js";
import { whenReady } from "./health.js";
import { OAuthError } from "./oauth-error.js";
import { type PublicTlsFiles, type PublicTlsReload, loadPublicTls, watchPublicTls } from "./public-tls.js";
import { RETRY_AFTER_SECONDS, answerApp, sendError, sendJson } from "./responses.js";
import { type Route, allowed, findRoute, handlerFor } from "./routes.js";

export type { FrontDoorDeps, FrontDoorReadiness } from "./context.js";

export function frontDoor(deps: FrontDoorDeps): http.RequestListener {
  const door = doorContext(deps);
  const observer = deps.observer ?? httpObserver("orchestration");
  const proxies = trustedProxies(deps.trustedProxies);

  return (req, res) => {
    const observation = observer.begin(req, res);
    // On every answer that travels over HTTPS (browsers ignore it over plain HTTP anyway).
    if (arrivedOverHttps(req, proxies)) res.setHeader("strict-transport-security", HSTS);
    void observation.run(async () => {
      let url: URL;
      try {
        url = new URL(req.url ?? "/", door.issuer);
      } catch {
        // A request target that is no URL at all ("//", "http://[").
        observation.route(OTHER_ROUTE);
        return sendError(res, 400, "Bad request", "The address of this request is not valid.");
      }
      const found = findRoute(url.pathname, door.rp);
      observation.route(found?.route.path ?? OTHER_ROUTE);
      if (!found) return sendError(res, 404, "Not found", "There is no page at this address.");
      const { route, provider } = found;
      const handler = handlerFor(route, req.method);
      if (!handler) return methodNotAllowed(res, route);
      try {
        if (route.loginStep) await whenReady(door);
        await handler(door, { req, res, url, ...(provider ? { provider } : {}) });
      } catch (error) {
        observation.failed(error);
        answerError(res, door.issuer, route, error);
      }
    }).catch(() => {
      // Only if answering failed itself: never an unhandled rejection, which would end the process.
      if (res.headersSent) res.destroy();
      else res.writeHead(500).end();
    });
  };
}

function methodNotAllowed(res: http.ServerResponse, route: Route) {
  const allow = allowed(route);
  if (route.errors) return sendJson(res, 405, { error: "invalid_request", error_description: `this endpoint answers ${allow} only` }, { allow });
  res.setHeader("allow", allow);
  return sendError(res, 405, "Method not allowed", `This address answers ${allow} only.`);
}

function answerError(res: http.ServerResponse, issuer: string, route: Route, error: unknown) {
  if (res.headersSent) return void res.destroy();
  // The wallet API (docs/wallet-server.md): every refusal or failure as an RFC 9457 problem.
  if (route.errors === "problem") return answerWalletProblem(res, error);
  // The rest of an oversized body is not read: the connection ends with the answer.
  if (error instanceof OAuthError && error.status === 413) res.setHeader("connection", "close");
  if (error instanceof RedirectableError) return answerApp(res, issuer, error.request, { error: error.error, error_description: error.description });
  if (error instanceof UntrustedRedirectError) {
    return sendError(res, 400, "This sign-in request is not valid", `${error.message}.`, "Tell the app's developers; hello-mesh will not send you back to an address it does not know.");
  }
  if (error instanceof OAuthError) {
    if (!route.errors) return sendError(res, error.status, "Sign-in failed", error.description);
    const headers: Record<string, string> = {};
    if (error.error === "invalid_client") headers["www-authenticate"] = 'Basic realm="hello-mesh"';
    // RFC 6750 §3: a protected resource names the error in its challenge too.
    if (route.errors === "bearer") headers["www-authenticate"] = `Bearer error="${error.error}", error_description="${error.description.replace(/[^\x20-\x7e]|["\\]/g, "")}"`;
    return sendJson(res, error.status, { error: error.error, error_description: error.description }, headers);
  }
  if (isUnavailable(error)) {
    // A component is down, restarting or too slow (docs/faults.md): nothing the user
    // did, and nothing to show but that. A new sign-in works once it is back.
    res.setHeader("retry-after", String(RETRY_AFTER_SECONDS));
    return sendError(res, 503, "hello-mesh is unavailable right now", "A part of hello-mesh did not answer in time, so this sign-in could not finish.", "Wait a moment, then go back to the app and sign in again.");
  }
  if (isLostCreateRace(error)) return sendError(res, 409, "Please try again", "Another sign-in for your account was completing at the same moment.", "Go back to the app and sign in again.");
  if (error instanceof WalletChanged) return sendError(res, 409, "Please try again", "Your wallet changed while you were signing in (from your account page, say), so nothing was saved.", "Go back to the app and sign in again.");
  // A peer that answered what does not check out, refused a token another component
  // signed (a bundle or key mix-up between custodians), or whose release does not fit
  // ours (an upgrade out of order, docs/upgrades.md): hello-mesh's fault, not the
  // user's, and signing in again fails the same way. The request's log line carries the
  // cause for the operators (ProtocolViolation at error, the peer's code at warn).
  // A peer that does not know a call (UNIMPLEMENTED: its release is older than the
  // upgrade order allows) is the same.
  if (error instanceof ProtocolViolation || isVersionRefusal(error) ||
    (error instanceof ConnectError && (error.code === Code.Unauthenticated || error.code === Code.Unimplemented))) {
    return sendError(res, 502, "Sign-in failed", "hello-mesh could not complete this sign-in safely: the problem is on hello-mesh's side, not yours, and its operators can see why in its logs.", "Signing in again will fail the same way until they fix it: tell the app or hello-mesh's operators.");
  }
  if (error instanceof ConnectError) {
    return sendError(res, 400, "Sign-in failed", "hello-mesh could not complete this sign-in safely.", "Go back to the app and sign in again.");
  }
  return sendError(res, 500, "Something went wrong", "hello-mesh could not complete this request.", "Try again; if it keeps happening, tell the operators.");
}

export interface FrontDoorListen {
  readonly host: string;
  readonly port: number;
  /** Serve HTTPS with these files (public.tls), reloaded when they change; absent: plain HTTP. */
  readonly tls?: PublicTlsFiles;
  /** Told of each reload of the TLS files: the new pair, or why the previous one stays. */
  readonly onTlsReload?: (outcome: PublicTlsReload) => void;
}

export async function startFrontDoor(deps: FrontDoorDeps & FrontDoorListen) {
  const listener = frontDoor(deps);
  // Read and checked before anything listens: a pair that does not load stops the start.
  const issuerHost = new URL(deps.issuer).hostname;
  const first = deps.tls ? loadPublicTls(deps.tls, issuerHost) : undefined;
  const server = first ? https.createServer(first.options, listener) : http.createServer(listener);
  // No proxying here: without this, Node would drop a CONNECT request's connection unanswered.
  server.on("connect", (_req: http.IncomingMessage, socket: Duplex) => {
    const hsts = first ? `Strict-Transport-Security: ${HSTS}\r\n` : "";
    socket.end(`HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, POST\r\n${hsts}Content-Length: 0\r\nConnection: close\r\n\r\n`);
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  // Watched from the pair's first reading on, so that a renewal while the port opens is not missed.
  const stopWatching = deps.tls && server instanceof https.Server
    ? watchPublicTls(deps.tls, issuerHost, (outcome) => {
        // New handshakes get the new pair; open connections keep the one they began with.
        if ("pair" in outcome) server.setSecureContext(outcome.pair.options);
        deps.onTlsReload?.(outcome);
      })
    : () => {};
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(deps.port, deps.host, () => resolve());
    });
  } catch (error) {
    stopWatching();
    throw error;
  }
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${first ? "https" : "http"}://${deps.host}:${port}`,
    port,
    /** The served certificate's SHA-256 fingerprint at start, when the front door serves HTTPS. */
    ...(first ? { fingerprint256: first.fingerprint256 } : {}),
    close: () => new Promise<void>((resolve) => {
      stopWatching();
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
