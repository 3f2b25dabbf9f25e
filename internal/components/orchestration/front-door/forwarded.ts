// Whether a request reached hello-mesh over HTTPS (issue 18, item 8): over the front
// door's own TLS, or through a TLS-terminating proxy that the configuration names
// (`public.trusted_proxies`) and that says so in `Forwarded: proto=https` (RFC 7239) or
// `X-Forwarded-Proto: https`. Those headers are read from a trusted proxy's connection
// only; from any other peer they change nothing.
//
// What it decides is small on purpose: HSTS on the answer. The front door builds no URL
// from a request (not from Host, X-Forwarded-Host or the scheme): discovery, redirects,
// `iss`, audiences and callback URIs all come from the configured issuer, the cookies'
// Secure attribute from the issuer's scheme, and no client address is used anywhere.

import type http from "node:http";
import { BlockList, isIPv6 } from "node:net";
import type { TLSSocket } from "node:tls";

/**
 * RFC 6797: browsers that have seen it use https for the issuer's host for a year. No
 * includeSubDomains: the issuer's parent domain and its other hosts are not ours to pin.
 */
export const HSTS = "max-age=31536000";

/** The trusted proxies' addresses and subnets ("10.0.0.7", "10.0.0.0/8", "fd00::/8"). */
export function trustedProxies(entries: readonly string[] | undefined): BlockList | undefined {
  if (!entries || entries.length === 0) return undefined;
  const list = new BlockList();
  for (const entry of entries) {
    const [address, prefix] = entry.split("/") as [string, string | undefined];
    const type = isIPv6(address) ? "ipv6" : "ipv4";
    if (prefix === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(prefix), type);
  }
  return list;
}

/** The proto the nearest proxy gave: the last element of the header, as a proxy appends its own. */
function lastProto(header: string | undefined, parse: (element: string) => string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const last = header.split(",").at(-1)!;
  return parse(last)?.trim().replace(/^"(.*)"$/, "$1").toLowerCase();
}

const forwardedProto = (element: string) =>
  element.split(";").map((pair) => pair.trim().split("=")).find(([name]) => name?.toLowerCase() === "proto")?.[1];

/**
 * True when `req` came over TLS: this server's own, or a trusted proxy's that says so.
 * When both headers are present they must both say https.
 */
export function arrivedOverHttps(req: http.IncomingMessage, trusted: BlockList | undefined): boolean {
  if ((req.socket as TLSSocket).encrypted) return true;
  const peer = req.socket.remoteAddress;
  if (!trusted || !peer || !trusted.check(peer, isIPv6(peer) ? "ipv6" : "ipv4")) return false;
  const protos = [
    lastProto(req.headers.forwarded, forwardedProto),
    lastProto(req.headers["x-forwarded-proto"] as string | undefined, (element) => element),
  ].filter((proto) => proto !== undefined);
  return protos.length > 0 && protos.every((proto) => proto === "https");
}
