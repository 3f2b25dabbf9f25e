// Token Status List (draft-ietf-oauth-status-list): how an issuer's credentials show a
// verifier that they were revoked or suspended (docs/wallet-server.md, "Revocation").
//
// A credential names its entry as status.status_list {idx, uri}. The issuer publishes,
// at that uri, a Status List Token: a JWT with header {typ: "statuslist+jwt", alg:
// "ES256", kid} and claims sub (= the uri), iat, exp, ttl and status_list {bits, lst},
// lst being the zlib-compressed, base64url bit array (@sd-jwt/jwt-status-list packs and
// unpacks it). The values used here are the draft's: 0 VALID, 1 INVALID (shown as
// REVOKED), 2 SUSPENDED; any other value is refused as not understood.
//
// A verifier checks, before reading an entry: the typ, alg ES256, a kid among the
// credential issuer's own keys (the list is trusted because the credential's issuer
// signed it, not because of where it was fetched), the signature, sub equal to the uri
// the credential names, iss (when present) equal to the credential's issuer, iat not in
// the future, exp not passed, and the index within the list. Fetching is HTTPS, or HTTP
// to a loopback address only (development issuers, like development OPs, serve plain
// HTTP on localhost), with the draft's media type.

import { StatusList, type BitsPerStatus } from "@sd-jwt/jwt-status-list";
import { type JSONWebKeySet, type JWK, SignJWT, decodeProtectedHeader, jwtVerify } from "jose";
import type { KeyObject } from "node:crypto";
import { type IssuerSigningKey, resolveIssuerKey } from "./sd-jwt-vc.js";

export const STATUS_LIST_TYP = "statuslist+jwt";
export const STATUS_LIST_MEDIA_TYPE = "application/statuslist+jwt";
const ALG = "ES256";
const CLOCK_SKEW_SECONDS = 30;
const MAX_LIST_BYTES = 1024 * 1024;

/** The draft's status values this profile uses. */
export const STATUS_VALUES = { VALID: 0, INVALID: 1, SUSPENDED: 2 } as const;
/** What a verifier (and the wallet, before it presents) makes of an entry. */
export type CredentialListStatus = "VALID" | "REVOKED" | "SUSPENDED";

export class StatusListError extends Error {
  override name = "StatusListError";
}

export interface StatusReference {
  idx: number;
  uri: string;
}

/** A signed Status List Token of `values` (one per index), valid for `validitySeconds` from `issuedAt`. */
export async function signStatusList(input: {
  uri: string;
  issuer: string;
  values: readonly number[];
  bits?: BitsPerStatus;
  signingKey: IssuerSigningKey;
  issuedAt: number;
  validitySeconds: number;
  /** Seconds a verifier may cache the list; default the validity. */
  ttlSeconds?: number;
}): Promise<string> {
  const list = new StatusList([...input.values], input.bits ?? 2);
  return new SignJWT({
    sub: input.uri,
    iss: input.issuer,
    iat: input.issuedAt,
    exp: input.issuedAt + input.validitySeconds,
    ttl: input.ttlSeconds ?? input.validitySeconds,
    status_list: { bits: list.getBitsPerStatus(), lst: list.compressStatusList() },
  })
    .setProtectedHeader({ typ: STATUS_LIST_TYP, alg: ALG, kid: input.signingKey.kid })
    .sign(input.signingKey.privateKey as KeyObject);
}

/**
 * The status of entry `reference.idx` in `token`, after every check in the header
 * comment. `issuerKeys`: the keys of the credential's issuer, as the verifier trusts them.
 */
export async function readStatusList(
  token: string,
  reference: StatusReference,
  expected: { issuer: string; issuerKeys: JSONWebKeySet | ((kid: string) => Promise<JWK | undefined>); now: number },
): Promise<CredentialListStatus> {
  let header;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new StatusListError("the status list is not a JWT");
  }
  if (header.typ !== STATUS_LIST_TYP) throw new StatusListError(`the status list's typ must be ${STATUS_LIST_TYP}`);
  if (header.alg !== ALG) throw new StatusListError(`the status list must be signed with ${ALG}`);
  if (typeof header.kid !== "string" || header.kid === "") throw new StatusListError("the status list names no kid");
  let key: KeyObject;
  try {
    key = await resolveIssuerKey(expected.issuerKeys, header.kid);
  } catch (error) {
    throw new StatusListError(`the status list is not signed by a key of the credential's issuer (${(error as Error).message})`);
  }
  let payload;
  try {
    ({ payload } = await jwtVerify(token, key, {
      algorithms: [ALG],
      typ: STATUS_LIST_TYP,
      subject: reference.uri,
      currentDate: new Date(expected.now * 1000),
      clockTolerance: CLOCK_SKEW_SECONDS,
      requiredClaims: ["sub", "iat", "exp"],
    }));
  } catch (error) {
    throw new StatusListError(`the status list is refused: ${(error as Error).message}`);
  }
  if (payload.iss !== undefined && payload.iss !== expected.issuer) throw new StatusListError("the status list's iss is not the credential's issuer");
  if ((payload.iat as number) > expected.now + CLOCK_SKEW_SECONDS) throw new StatusListError("the status list's iat is in the future");
  const body = payload.status_list as { bits?: unknown; lst?: unknown } | undefined;
  if (typeof body !== "object" || body === null || ![1, 2, 4, 8].includes(body.bits as number) || typeof body.lst !== "string" || body.lst === "") {
    throw new StatusListError("the status list's status_list must be {bits: 1, 2, 4 or 8, lst}");
  }
  let list: StatusList;
  try {
    list = StatusList.decompressStatusList(body.lst, body.bits as BitsPerStatus);
  } catch {
    throw new StatusListError("the status list's lst cannot be decompressed");
  }
  if (!Number.isSafeInteger(reference.idx) || reference.idx < 0 || reference.idx >= list.statusList.length) {
    throw new StatusListError(`the credential's index ${reference.idx} is outside the status list`);
  }
  const value = list.getStatus(reference.idx);
  switch (value) {
    case STATUS_VALUES.VALID:
      return "VALID";
    case STATUS_VALUES.INVALID:
      return "REVOKED";
    case STATUS_VALUES.SUSPENDED:
      return "SUSPENDED";
    default:
      throw new StatusListError(`the status list gives the credential status ${value}, which this profile does not know`);
  }
}

const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);

/** A status list uri this side fetches: https, or http to a loopback host (development issuers). */
export function checkStatusListUri(uri: string): URL {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new StatusListError("the credential's status list uri is not a URL");
  }
  if (url.protocol === "https:" || (url.protocol === "http:" && LOOPBACK_HOSTS.has(url.hostname))) return url;
  throw new StatusListError("the credential's status list uri must be https (or http on a loopback address)");
}

/** Fetches the Status List Token at `reference.uri` and reads the entry (readStatusList). */
export async function fetchCredentialStatus(
  reference: StatusReference,
  expected: Parameters<typeof readStatusList>[2],
  fetcher: (url: string, init: RequestInit) => Promise<Response> = (url, init) => fetch(url, init),
): Promise<CredentialListStatus> {
  const url = checkStatusListUri(reference.uri);
  let response: Response;
  try {
    response = await fetcher(url.href, { headers: { accept: STATUS_LIST_MEDIA_TYPE }, redirect: "error", signal: AbortSignal.timeout(10_000) });
  } catch (error) {
    throw new StatusListError(`the status list at ${url.href} cannot be fetched (${(error as Error).message})`);
  }
  if (response.status !== 200) throw new StatusListError(`the status list at ${url.href} answered ${response.status}`);
  const type = response.headers.get("content-type")?.split(";")[0]?.trim().toLowerCase();
  if (type !== STATUS_LIST_MEDIA_TYPE) throw new StatusListError(`the status list at ${url.href} is not ${STATUS_LIST_MEDIA_TYPE}`);
  const text = await response.text();
  if (text.length > MAX_LIST_BYTES) throw new StatusListError(`the status list at ${url.href} is larger than ${MAX_LIST_BYTES} bytes`);
  return readStatusList(text.trim(), reference, expected);
}
