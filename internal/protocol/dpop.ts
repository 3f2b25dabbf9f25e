// DPoP (RFC 9449): a client proves, request by request, that it holds the private key its
// access token is bound to (cnf.jkt). The native wallet client makes the proofs; Token
// verifies them before it grants any record access, and Orchestration at the HTTP edge.
// Both verify with verifyDpopProof, which makes every check of RFC 9449 §4.3 in one place:
//
//   header   typ dpop+jwt, alg ES256 | EdDSA (so never none, HS256 or RS256), a public
//            jwk of the alg's key type (no d or other private member), no crit, no other
//            key source (jku, x5u, x5c, x5t), a signature that verifies with that jwk
//   payload  jti (16–256 chars), htm (the method, exactly), htu (the URL without query
//            and fragment, normalised), iat (within maxAge back and a little skew ahead),
//            ath (iff an access token came with the proof), nonce (when the server asks
//            for one), the key the access token is bound to, and a jti never spent
//            before for this key.
//
// Written on node:crypto directly, as jws.ts is (and for the same reason: jose goes
// through WebCrypto, which costs more CPU per check on Node 20). Every refusal is a
// DpopError whose reason names the check and carries none of the proof's content.

import {
  type JsonWebKey,
  type KeyObject,
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  randomBytes,
  sign as cryptoSign,
  verify as cryptoVerify,
} from "node:crypto";
import { promisify } from "node:util";
import type { JWK } from "jose";
import { equalsConstantTime } from "./constant-time.js";

export const DPOP_TYP = "dpop+jwt";
export const DPOP_ALGS = ["ES256", "EdDSA"] as const;
export type DpopAlg = (typeof DPOP_ALGS)[number];

/** The longest proof read at all: one larger is refused before it is parsed. */
export const DPOP_MAX_PROOF_LENGTH = 8 * 1024;

/**
 * Every reason verifyDpopProof refuses a proof for, so callers can tell them apart
 * without comparing prose: a nonce problem, say, is answered with `use_dpop_nonce` and a
 * fresh DPoP-Nonce header (RFC 9449 §8), any other with `invalid_dpop_proof`.
 */
export const DPOP_REASONS = {
  notString: "it is not a string",
  tooLarge: `it is larger than ${DPOP_MAX_PROOF_LENGTH} bytes`,
  malformed: "it is not a compact JWS",
  typ: `its typ header is not ${DPOP_TYP}`,
  alg: "its alg is not allowed",
  crit: "it names critical header parameters this verifier does not support",
  noJwk: "its header has no jwk",
  otherKeySource: "its header names a key other than by jwk (jku, x5u, x5c or x5t)",
  privateJwk: "its jwk holds private key material",
  algKeyMismatch: "its alg does not match its jwk's key type",
  invalidJwk: "its jwk is not a valid public key",
  signature: "its signature does not verify",
  jti: "its jti claim is missing or not 16 to 256 characters",
  htm: "its htm claim is not the request's method",
  htu: "its htu claim is not the request's URL",
  iat: "its iat claim is missing or not an integer",
  tooOld: "it was issued too long ago",
  future: "it was issued in the future",
  athMissing: "its ath claim is missing",
  athWrong: "its ath claim is not the hash of the access token",
  athUnexpected: "it has an ath claim but no access token came with it",
  nonceMissing: "its nonce claim is missing",
  nonceWrong: "its nonce claim is not the server's nonce",
  boundKey: "its key is not the key the access token is bound to",
  replayed: "replayed",
} as const;

/** A DPoP proof that failed verification. `reason` names the check: no proof content. */
export class DpopError extends Error {
  override name = "DpopError";
  constructor(readonly reason: string) {
    super(`the DPoP proof is not valid: ${reason}`);
  }
}

/** What a client needs to make proofs: its key pair (private JWK with d) and alg. */
export interface DpopKey {
  privateJwk: JWK;
  publicJwk: JWK;
  alg: "ES256" | "EdDSA";
}

/**
 * What node:crypto needs for each alg, and the JWK the alg requires (RFC 7518 §3.4,
 * RFC 8037): ECDSA signatures are R || S, not DER; Ed25519 hashes internally.
 */
const ALGS: Record<DpopAlg, { digest: string | null; kty: string; crv: string; keyType: string; curve?: string; dsaEncoding?: "ieee-p1363" }> = {
  ES256: { digest: "sha256", kty: "EC", crv: "P-256", keyType: "ec", curve: "prime256v1", dsaEncoding: "ieee-p1363" },
  EdDSA: { digest: null, kty: "OKP", crv: "Ed25519", keyType: "ed25519" },
};

const isDpopAlg = (alg: unknown): alg is DpopAlg => typeof alg === "string" && (DPOP_ALGS as readonly string[]).includes(alg);

/** The key in the form node:crypto signs or verifies `alg` with; an error if it is not a key for `alg`. */
function keyFor(alg: DpopAlg, key: KeyObject) {
  const spec = ALGS[alg];
  if (key.asymmetricKeyType !== spec.keyType || (spec.curve !== undefined && key.asymmetricKeyDetails?.namedCurve !== spec.curve)) {
    throw new Error(`this ${key.asymmetricKeyType ?? "secret"} key cannot be used for ${alg}`);
  }
  return spec.dsaEncoding ? { key, dsaEncoding: spec.dsaEncoding } : key;
}

/** The members of a JWK that hold, or are, private or secret key material (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037). */
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/** The members RFC 7638 §3.2 hashes, per key type: all public. */
const THUMBPRINT_MEMBERS: Record<string, readonly string[]> = {
  EC: ["crv", "kty", "x", "y"],
  OKP: ["crv", "kty", "x"],
  RSA: ["e", "kty", "n"],
};

/** A JWK's required public members only (so never d, whatever else the input holds). */
function publicMembers(jwk: JWK): JWK {
  const members = typeof jwk.kty === "string" ? THUMBPRINT_MEMBERS[jwk.kty] : undefined;
  if (members === undefined) throw new Error("a JWK thumbprint needs a public key of type EC, OKP or RSA");
  const out: Record<string, string> = {};
  for (const member of members) {
    const value = (jwk as Record<string, unknown>)[member];
    if (typeof value !== "string" || value.length === 0) throw new Error(`a ${jwk.kty} JWK needs its ${member} member`);
    out[member] = value;
  }
  return out as JWK;
}

/** The RFC 7638 thumbprint (SHA-256, base64url) of a public key: its required public members only. */
export async function jwkThumbprint(jwk: JWK): Promise<string> {
  return thumbprintOf(jwk);
}

function thumbprintOf(jwk: JWK): string {
  // The members in lexicographic order with no whitespace (RFC 7638 §3.3): publicMembers
  // builds them in that order and JSON.stringify keeps it.
  return createHash("sha256").update(JSON.stringify(publicMembers(jwk)), "utf8").digest("base64url");
}

const generate = promisify(generateKeyPair);

/** A fresh key pair for a client instance's proofs. */
export async function generateDpopKey(alg: "ES256" | "EdDSA" = "ES256"): Promise<DpopKey> {
  if (!isDpopAlg(alg)) throw new Error(`DPoP keys are ${DPOP_ALGS.join(" or ")}`);
  const { privateKey } = alg === "ES256" ? await generate("ec", { namedCurve: "P-256" }) : await generate("ed25519");
  const privateJwk = privateKey.export({ format: "jwk" }) as JWK;
  return { privateJwk, publicJwk: publicMembers(privateJwk), alg };
}

/**
 * The URL a proof's htu names, compared as RFC 9449 §4.3 step 9 says: absolute http or
 * https, without query and fragment, and normalised by the WHATWG parser (scheme and host
 * lower-cased, default port dropped, dot segments removed, an empty path as "/").
 * Undefined if it is not such a URL (or names credentials, which no request URL does).
 */
function htuOf(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if ((parsed.protocol !== "https:" && parsed.protocol !== "http:") || parsed.username !== "" || parsed.password !== "") return undefined;
  return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
}

const base64urlJson = (value: unknown) => Buffer.from(JSON.stringify(value), "utf8").toString("base64url");

/** base64url(SHA-256(the access token)): a proof's ath (RFC 9449 §4.2). */
const athOf = (accessToken: string) => createHash("sha256").update(accessToken, "ascii").digest("base64url");

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** Client side: a proof for one request (RFC 9449 §4.2). `accessToken` adds `ath`; `nonce` for a server-provided nonce. */
export async function createDpopProof(
  key: DpopKey,
  request: { method: string; url: string; accessToken?: string; nonce?: string; now?: number },
): Promise<string> {
  if (!isDpopAlg(key.alg)) throw new Error(`DPoP proofs are signed with ${DPOP_ALGS.join(" or ")}`);
  const privateKey = createPrivateKey({ key: key.privateJwk as JsonWebKey, format: "jwk" });
  const signingKey = keyFor(key.alg, privateKey);
  // The header carries the public key of the private key that signs, never publicJwk as
  // given: a DpopKey whose halves do not match is refused here, not by every server.
  const jwk = publicMembers(createPublicKey(privateKey).export({ format: "jwk" }) as JWK);
  if (thumbprintOf(jwk) !== thumbprintOf(key.publicJwk)) throw new Error("this DpopKey's publicJwk is not its privateJwk's public key");
  const htu = htuOf(request.url);
  if (htu === undefined) throw new Error("a DPoP proof is for an absolute http or https URL");

  const payload: Record<string, unknown> = {
    jti: randomBytes(16).toString("base64url"),
    htm: request.method,
    htu,
    iat: Math.floor(request.now ?? nowSeconds()),
  };
  if (request.accessToken !== undefined) payload.ath = athOf(request.accessToken);
  if (request.nonce !== undefined) payload.nonce = request.nonce;
  const input = `${base64urlJson({ typ: DPOP_TYP, alg: key.alg, jwk })}.${base64urlJson(payload)}`;
  const signature = cryptoSign(ALGS[key.alg].digest, Buffer.from(input, "ascii"), signingKey);
  return `${input}.${signature.toString("base64url")}`;
}

/** Remembers which proofs were spent. */
export interface DpopReplayCache {
  /** Records (jkt, jti) until expiresAt (seconds); false if it was seen before and has not expired. */
  spend(jkt: string, jti: string, expiresAt: number): boolean;
}

/**
 * A replay cache in this process's memory: for one instance, or for tests. It holds at
 * most maxEntries (default 100 000); when full it forgets expired entries first, then the
 * oldest, so under a flood of fresh proofs the oldest could be replayed. Instances that
 * share traffic need a shared cache.
 */
export function memoryDpopReplayCache(options: { maxEntries?: number; now?: () => number } = {}): DpopReplayCache & { readonly size: number } {
  const maxEntries = options.maxEntries ?? 100_000;
  if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new Error("a DPoP replay cache holds at least one entry");
  const now = options.now ?? nowSeconds;
  /** expiresAt by (jkt, jti), oldest spent first. */
  const entries = new Map<string, number>();
  let lastSweep = Number.NEGATIVE_INFINITY;

  const sweep = (t: number) => {
    lastSweep = t;
    for (const [key, expiresAt] of entries) if (expiresAt < t) entries.delete(key);
  };

  return {
    get size() {
      return entries.size;
    },
    spend(jkt, jti, expiresAt) {
      const t = now();
      const key = `${jkt.length}:${jkt}:${jti}`; // length-prefixed: no two pairs share a key
      const seen = entries.get(key);
      if (seen !== undefined && seen >= t) return false;
      entries.delete(key);
      // A full sweep at most once a second, so a flood costs no more than one per second.
      if ((entries.size >= maxEntries && t !== lastSweep) || t - lastSweep >= 60) sweep(t);
      for (const oldest of entries.keys()) {
        if (entries.size < maxEntries) break;
        entries.delete(oldest);
      }
      entries.set(key, expiresAt);
      return true;
    },
  };
}

/**
 * A compact JWS: three parts of base64url, nothing else (Node's decoder would skip stray
 * characters). The signature may be empty, as an unsecured JWS's is: that is then refused
 * for its alg or its signature, not as garbage.
 */
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** A part decoded as a JSON object, or undefined if it is not one. */
function jsonObject(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A base64url coordinate of `bytes` bytes, in its one canonical spelling. */
function isCoordinate(value: unknown, bytes: number): value is string {
  return typeof value === "string" && /^[A-Za-z0-9_-]+$/.test(value) && Buffer.from(value, "base64url").length === bytes && Buffer.from(value, "base64url").toString("base64url") === value;
}

/** Server side (RFC 9449 §4.3): every check, in one place. Returns the key's thumbprint and the proof's jti. */
export async function verifyDpopProof(
  proof: unknown,
  expected: {
    method: string;
    url: string;
    accessToken?: string;
    boundJkt?: string;
    nonce?: string;
    replay: DpopReplayCache;
    now?: number;
    maxAgeSeconds?: number;
    clockSkewSeconds?: number;
  },
): Promise<{ jkt: string; jti: string; publicJwk: JWK }> {
  const refuse = (reason: string): never => {
    throw new DpopError(reason);
  };
  const expectedHtu = htuOf(expected.url);
  if (expectedHtu === undefined) throw new Error("a DPoP proof is verified against an absolute http or https URL");
  const maxAge = expected.maxAgeSeconds ?? 60;
  const skew = expected.clockSkewSeconds ?? 5;
  const t = expected.now ?? nowSeconds();

  // One compact JWS, of a sane size (RFC 9449 §4.3 steps 1–2).
  if (typeof proof !== "string") return refuse(DPOP_REASONS.notString);
  if (proof.length > DPOP_MAX_PROOF_LENGTH) refuse(DPOP_REASONS.tooLarge);
  if (!COMPACT.test(proof)) refuse(DPOP_REASONS.malformed);
  const [encodedHeader, encodedPayload, encodedSignature] = proof.split(".") as [string, string, string];
  const header = jsonObject(encodedHeader) ?? refuse(DPOP_REASONS.malformed);

  // The header (steps 4–7).
  if (header.typ !== DPOP_TYP) refuse(DPOP_REASONS.typ);
  const alg = header.alg;
  if (!isDpopAlg(alg)) return refuse(DPOP_REASONS.alg);
  // No extension is understood here, so none may be critical (RFC 7515 §4.1.11).
  if (Object.hasOwn(header, "crit")) refuse(DPOP_REASONS.crit);
  if (!Object.hasOwn(header, "jwk")) refuse(DPOP_REASONS.noJwk);
  // The key is the header's jwk and nothing else: no URL to fetch, no certificate to trust.
  if (["jku", "x5u", "x5c", "x5t", "x5t#S256"].some((member) => Object.hasOwn(header, member))) refuse(DPOP_REASONS.otherKeySource);
  const jwk = header.jwk;
  if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk)) return refuse(DPOP_REASONS.invalidJwk);
  const members = jwk as Record<string, unknown>;
  if (PRIVATE_MEMBERS.some((member) => Object.hasOwn(members, member))) refuse(DPOP_REASONS.privateJwk);
  const spec = ALGS[alg];
  if (members.kty !== spec.kty || members.crv !== spec.crv) refuse(DPOP_REASONS.algKeyMismatch);
  if (members.alg !== undefined && members.alg !== alg) refuse(DPOP_REASONS.algKeyMismatch);
  if (!isCoordinate(members.x, 32) || (spec.kty === "EC" && !isCoordinate(members.y, 32))) refuse(DPOP_REASONS.invalidJwk);
  const publicJwk = publicMembers(members as JWK);
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: publicJwk as JsonWebKey, format: "jwk" }); // refuses an EC point off the curve
  } catch {
    return refuse(DPOP_REASONS.invalidJwk);
  }

  // The signature, with that key (step 8).
  let valid = false;
  try {
    valid = cryptoVerify(spec.digest, Buffer.from(`${encodedHeader}.${encodedPayload}`, "ascii"), keyFor(alg, publicKey), Buffer.from(encodedSignature, "base64url"));
  } catch {
    valid = false; // a signature of the wrong length for the key, say
  }
  if (!valid) refuse(DPOP_REASONS.signature);

  // What it says (steps 9–12).
  const payload = jsonObject(encodedPayload) ?? refuse(DPOP_REASONS.malformed);
  const jti = payload.jti;
  if (typeof jti !== "string" || jti.length < 16 || jti.length > 256) return refuse(DPOP_REASONS.jti);
  if (typeof payload.htm !== "string" || payload.htm !== expected.method) refuse(DPOP_REASONS.htm);
  if (typeof payload.htu !== "string" || htuOf(payload.htu) !== expectedHtu) refuse(DPOP_REASONS.htu);
  const iat = payload.iat;
  if (typeof iat !== "number" || !Number.isSafeInteger(iat)) return refuse(DPOP_REASONS.iat);
  if (iat < t - maxAge) refuse(DPOP_REASONS.tooOld);
  if (iat > t + skew) refuse(DPOP_REASONS.future);
  if (expected.accessToken !== undefined) {
    if (typeof payload.ath !== "string") refuse(DPOP_REASONS.athMissing);
    if (!equalsConstantTime(payload.ath as string, athOf(expected.accessToken))) refuse(DPOP_REASONS.athWrong);
  } else if (Object.hasOwn(payload, "ath")) {
    refuse(DPOP_REASONS.athUnexpected);
  }
  if (expected.nonce !== undefined) {
    if (typeof payload.nonce !== "string") refuse(DPOP_REASONS.nonceMissing);
    if (!equalsConstantTime(payload.nonce as string, expected.nonce)) refuse(DPOP_REASONS.nonceWrong);
  }
  const jkt = thumbprintOf(publicJwk);
  if (expected.boundJkt !== undefined && !equalsConstantTime(jkt, expected.boundJkt)) refuse(DPOP_REASONS.boundKey);

  // Last, once every other check passed: a proof is spent once (step 11).
  if (!expected.replay.spend(jkt, jti, iat + maxAge + skew)) refuse(DPOP_REASONS.replayed);
  return { jkt, jti, publicJwk };
}
