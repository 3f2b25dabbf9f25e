// Versions of what crosses between custodians (docs/upgrades.md). Four custodians never
// upgrade at once, so every format that leaves a component says which version it is,
// and a component that meets a version it does not know refuses it by name instead of
// reading it as something else.
//
// The mesh protocol (the RPCs, and the tokens, receipts and records they carry) has one
// number. Every mesh call states its caller's number in the `hello-protocol` header, and
// every answer the number it is in. A release speaks PROTOCOL_VERSION and accepts peers
// from OLDEST_PROTOCOL_VERSION up to it: one step back, once there are two versions, so
// custodians upgrade one release at a time and in any state of that upgrade every pair
// of peers is at most one step apart. A server answers an older caller it accepts in
// that caller's version. A caller outside the server's window is refused with
// FAILED_PRECONDITION naming both numbers (versionRefusal) before the call does
// anything; an answer in a version outside the caller's window is refused by the caller.
//
// A call without the header comes from a release before versions were stated: those
// releases speak protocol 1. Clients that are not hello-mesh components (grpcurl,
// grpc-health-probe, Prometheus) send none and reach only the services that are not
// versioned (isVersioned).

import { z } from "zod";

/**
 * The protocol this release speaks. The history (docs/upgrades.md):
 *   1  the login, as releases before stated versions spoke it
 *   2  + account sessions: Orchestration calls Token's CreateAccountSession
 */
export const PROTOCOL_VERSION: number = 2;
/** The oldest protocol this release still accepts from a peer: one step back. */
export const OLDEST_PROTOCOL_VERSION: number = 1;

/** The header each mesh call and answer states its protocol version in. */
export const PROTOCOL_HEADER = "hello-protocol";
/**
 * Set on a version refusal (its error metadata): the component that refused. Lets a
 * caller tell "a peer's release does not fit ours" (the operators' fault) from a
 * protocol step out of order (the caller's).
 */
export const PROTOCOL_REFUSED_HEADER = "hello-protocol-refused";

/** What releases before stated versions spoke. */
const UNSTATED = 1;

/** The versions a party speaks and accepts. */
export interface ProtocolWindow {
  readonly speaks: number;
  readonly oldest: number;
}

export const THIS_RELEASE: ProtocolWindow = { speaks: PROTOCOL_VERSION, oldest: OLDEST_PROTOCOL_VERSION };

/** The version a header states: UNSTATED when absent, undefined when it is not a version at all. */
export function statedVersion(header: string | null): number | undefined {
  if (header === null) return UNSTATED;
  if (!/^[1-9][0-9]{0,5}$/.test(header)) return undefined;
  return Number(header);
}

/**
 * Why `peer` (a component, in the `role` of caller or server), stating `header`, cannot
 * be served or believed by `self` under `window`; undefined when it can. The message
 * names both numbers and which custodian must upgrade; it never repeats an unparsable
 * header.
 */
export function versionRefusal(
  header: string | null,
  window: ProtocolWindow,
  self: string,
  peer: { readonly role: "caller" | "server"; readonly name: string },
): string | undefined {
  const who = `the ${peer.role} ${peer.name}`;
  const version = statedVersion(header);
  if (version === undefined) return `${who} states a malformed ${PROTOCOL_HEADER} header: it must be a protocol version number`;
  if (version >= window.oldest && version <= window.speaks) return undefined;
  const accepts = window.oldest === window.speaks ? `only protocol ${window.speaks}` : `protocols ${window.oldest} to ${window.speaks}`;
  const which = header === null ? `protocol ${version} (its release states no version)` : `protocol ${version}`;
  // Whichever is older is the one to upgrade, one release at a time.
  const older = version > window.speaks ? self : peer.name;
  return `${who} speaks ${which}, and ${self} accepts ${accepts}: upgrade ${older}, one release at a time (docs/upgrades.md gives the order)`;
}

/**
 * Whether calls to this service carry the protocol's version: hello-mesh's own services
 * do, except the common ones every operator's tools ask of every component whatever
 * their releases (hello.common.v1: BuildInfoService, which says which versions a
 * component takes, and MetricsService). Standard services (health, reflection) have no
 * hello-mesh version.
 */
export function isVersioned(serviceTypeName: string): boolean {
  return serviceTypeName.startsWith("hello.") && !serviceTypeName.startsWith("hello.common.");
}

/**
 * The format of the JSON files a release writes and reads: mesh bundles (exchanged
 * between custodians), signing key files and Encryption's keyring file. A file states
 * it in a `format` member; one without states format 1, and a release writes none while
 * the format is 1, so that the releases before this member existed (whose readers refuse
 * members they do not know) still read what it writes.
 */
export const FILE_FORMAT = 1;

/** The `format` member of a versioned file: absent or at most FILE_FORMAT, or refused by name. */
export function fileFormatMember(what: string) {
  return z
    .number()
    .int()
    .positive()
    .optional()
    .superRefine((format, ctx) => {
      if (format !== undefined && format > FILE_FORMAT) {
        ctx.addIssue({
          code: "custom",
          message: `this ${what} is in format ${format}, written by a newer release of hello-mesh; this release reads format ${FILE_FORMAT}: upgrade it first (docs/upgrades.md)`,
        });
      }
    });
}
