// SD-JWT VC (draft-ietf-oauth-sd-jwt-vc): issuance, key-bound presentation and
// verification of the wallet server's credentials, ES256 (P-256) only.
//
//   <issuer JWT>~<disclosure>~…~<disclosure>~<KB-JWT>
//
// The issuer JWT has header {typ: "dc+sd-jwt", alg: "ES256", kid} and carries iss, vct,
// iat, exp, cnf.jwk (the holder's public key), optionally status.status_list, and `_sd`:
// every one of the person's top-level claims is selectively disclosable, nothing nested.
// A presentation keeps only the disclosures the holder chose and ends with a KB-JWT
// ({typ: "kb+jwt", alg: "ES256"}, iat, aud, nonce, sd_hash) signed with cnf.jwk.
//
// The framing (packing, presenting, sd_hash) is @sd-jwt/sd-jwt-vc's SDJwtVcInstance. Its
// verify() is lax in places: it never looks at the header's alg, typ or kid, checks the
// KB-JWT only when given a nonce, never checks the KB-JWT's aud or iat, ignores
// disclosures the payload does not reference, and fetches status_list.uri over the
// network. So verifySdJwtVc checks every rule itself first (on its own parse of the
// string), then runs the library with verifiers bound to the keys it resolved, and
// cross-checks what the library returns. Status is not checked here: it is returned
// (VerifiedSdJwtVc.status) for the caller's Token Status List check.
//
// Every refusal is an SdJwtVcError whose message names the check that failed and never
// a claim's value.

import { KeyObject, createHash, createPrivateKey, createPublicKey, randomBytes, sign as cryptoSign, verify as cryptoVerify } from "node:crypto";
import { isDeepStrictEqual, types as utilTypes } from "node:util";
import { SDJwtVcInstance, type SDJWTVCConfig, type SdJwtVcPayload } from "@sd-jwt/sd-jwt-vc";
import type { CryptoKey, JSONWebKeySet, JWK } from "jose";

export const SD_JWT_VC_TYP = "dc+sd-jwt";
export const KB_JWT_TYP = "kb+jwt";
const ALG = "ES256";
const SD_ALG = "sha-256";
/** Clock skew allowed for iat/nbf (issuer JWT) and iat (KB-JWT) in the future. */
const SKEW_SECONDS = 30;
const DEFAULT_VALIDITY_SECONDS = 365 * 24 * 60 * 60;
const DEFAULT_MAX_KB_AGE_SECONDS = 300;
/** Claim names the issuer JWT uses itself: never a person's claim, never a disclosure's name. */
const RESERVED_NAMES = new Set(["iss", "nbf", "exp", "iat", "cnf", "vct", "vct#integrity", "status", "_sd", "_sd_alg", "..."]);
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** The issuer's ES256 (P-256) signing key and the kid its public key is published under. */
export interface IssuerSigningKey {
  privateKey: CryptoKey | KeyObject;
  kid: string;
}

export interface IssueSdJwtVcInput {
  /** iss: an https URL or an opaque issuer id string. */
  issuer: string;
  /** The credential type, e.g. "urn:hello-mesh:dev:identity-card". */
  vct: string;
  /** The person's claims; every top-level claim is selectively disclosable. */
  claims: Record<string, unknown>;
  /** The holder's public ES256 P-256 JWK: becomes cnf.jwk. */
  holderKey: JWK;
  signingKey: IssuerSigningKey;
  /** Seconds; default now. */
  issuedAt?: number;
  /** Seconds; default issuedAt + 365 days. */
  expiresAt?: number;
  /** Token Status List reference: written as status.status_list {idx, uri}. */
  status?: { idx: number; uri: string };
}

export interface PresentSdJwtVcInput {
  /** What issueSdJwtVc returned. */
  credential: string;
  /** Must be the private half of the credential's cnf.jwk. */
  holderPrivateKey: CryptoKey | KeyObject | JWK;
  /** Top-level claim names to reveal. */
  disclose: string[];
  /** The verifier's audience and nonce. */
  audience: string;
  nonce: string;
  now?: number;
}

export interface VerifySdJwtVcInput {
  presentation: string;
  /** The issuer's public ES256 keys, by kid. */
  issuerKeys: JSONWebKeySet | ((kid: string) => Promise<JWK | undefined>);
  expectedIssuer: string;
  expectedVct?: string | string[];
  audience: string;
  nonce: string;
  /** Default 300; the KB-JWT's iat must be within it (and not more than 30 s in the future). */
  maxKeyBindingAgeSeconds?: number;
  now?: number;
}

export interface VerifiedSdJwtVc {
  issuer: string;
  vct: string;
  /** The disclosed claims only (never _sd, _sd_alg, cnf, iss, vct, iat, exp, status). */
  claims: Record<string, unknown>;
  holderKey: JWK;
  issuedAt?: number;
  expiresAt?: number;
  status?: { idx: number; uri: string };
}

/** Every refusal to issue, present, verify or inspect. The message names the check; it never holds a claim's value. */
export class SdJwtVcError extends Error {
  override name = "SdJwtVcError";
}

// ---------------------------------------------------------------------------------------
// Primitives: hashing, salts, ES256 over raw R||S, keys.

const sha256 = (data: string | ArrayBuffer | Uint8Array): Buffer =>
  createHash("sha256")
    .update(typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data instanceof ArrayBuffer ? new Uint8Array(data) : data))
    .digest();

/** The library's hasher: SHA-256 and nothing else (a credential naming another _sd_alg is refused before it gets here). */
function hasher(data: string | ArrayBuffer, alg: string): Uint8Array {
  if (alg.toLowerCase() !== SD_ALG) throw new SdJwtVcError(`_sd_alg must be ${SD_ALG}`);
  return new Uint8Array(sha256(data));
}

const saltGenerator = (length: number): string => randomBytes(Math.max(16, length)).toString("base64url");

function signEs256(key: KeyObject, data: string): string {
  return cryptoSign("sha256", Buffer.from(data, "ascii"), { key, dsaEncoding: "ieee-p1363" }).toString("base64url");
}

function verifyEs256(key: KeyObject, data: string, signature: string): boolean {
  if (!BASE64URL.test(signature)) return false;
  const raw = Buffer.from(signature, "base64url");
  if (raw.length !== 64) return false;
  try {
    return cryptoVerify("sha256", Buffer.from(data, "ascii"), { key, dsaEncoding: "ieee-p1363" }, raw);
  } catch {
    return false;
  }
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

/** A public EC P-256 JWK, reduced to {kty, crv, x, y}, and its KeyObject; anything else refused naming `what`. */
function p256PublicJwk(jwk: unknown, what: string): { jwk: JWK; key: KeyObject } {
  if (!isRecord(jwk)) throw new SdJwtVcError(`${what} is not a JWK`);
  if ("d" in jwk) throw new SdJwtVcError(`${what} must be a public key (it has "d")`);
  if (jwk.kty !== "EC" || jwk.crv !== "P-256") throw new SdJwtVcError(`${what} must be an EC P-256 key`);
  if (typeof jwk.x !== "string" || typeof jwk.y !== "string" || !BASE64URL.test(jwk.x) || !BASE64URL.test(jwk.y)) {
    throw new SdJwtVcError(`${what} has no valid x and y`);
  }
  const reduced: JWK = { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y };
  let key: KeyObject;
  try {
    key = createPublicKey({ key: reduced, format: "jwk" });
  } catch {
    throw new SdJwtVcError(`${what} is not a valid P-256 public key`);
  }
  // Re-export: the JWK must be canonical (no padding variants, the point on the curve).
  const canonical = key.export({ format: "jwk" });
  if (canonical.x !== reduced.x || canonical.y !== reduced.y) throw new SdJwtVcError(`${what} is not a canonical P-256 public key`);
  return { jwk: reduced, key };
}

/** A private EC P-256 key as a KeyObject, from a KeyObject, CryptoKey or private JWK. */
function p256PrivateKey(input: unknown, what: string): KeyObject {
  let key: KeyObject;
  try {
    if (utilTypes.isKeyObject(input)) key = input as KeyObject;
    else if (utilTypes.isCryptoKey(input)) key = KeyObject.from(input as Parameters<typeof KeyObject.from>[0]);
    else if (isRecord(input) && typeof input.d === "string") key = createPrivateKey({ key: input as JWK, format: "jwk" });
    else throw new SdJwtVcError(`${what} must be a private key (KeyObject, CryptoKey or a JWK with "d")`);
  } catch (err) {
    if (err instanceof SdJwtVcError) throw err;
    throw new SdJwtVcError(`${what} cannot be read as a private key`);
  }
  if (key.type !== "private") throw new SdJwtVcError(`${what} must be a private key`);
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") throw new SdJwtVcError(`${what} must be an EC P-256 key`);
  return key;
}

const publicJwkOf = (privateKey: KeyObject): JWK => {
  const { kty, crv, x, y } = createPublicKey(privateKey).export({ format: "jwk" });
  return { kty, crv, x, y } as JWK;
};

const sameP256Key = (a: JWK, b: JWK): boolean => a.kty === b.kty && a.crv === b.crv && a.x === b.x && a.y === b.y;

/** For error messages: an attacker-chosen string (a kid), quoted and cut short. */
const quote = (value: string): string => JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

// ---------------------------------------------------------------------------------------
// Parsing: this module's own reading of the compact form, before any library sees it.

interface ParsedJwt {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  signingInput: string;
  signature: string;
}

interface ParsedDisclosure {
  encoded: string;
  digest: string;
  name: string;
  value: unknown;
}

interface ParsedSdJwt {
  jwt: ParsedJwt;
  disclosures: ParsedDisclosure[];
  /** The KB-JWT, when the string does not end with "~". */
  kb?: ParsedJwt;
  kbCompact?: string;
  /** Everything up to and including the last "~": what sd_hash covers. */
  withoutKb: string;
}

function decodeJsonPart(part: string, what: string): unknown {
  if (part === "" || !BASE64URL.test(part)) throw new SdJwtVcError(`${what} is not base64url`);
  try {
    return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
  } catch {
    // Never the parser's message: it quotes the input, which may be a claim's value.
    throw new SdJwtVcError(`${what} is not JSON`);
  }
}

function parseJwt(compact: string, what: string): ParsedJwt {
  const parts = compact.split(".");
  if (parts.length !== 3) throw new SdJwtVcError(`${what} is not a compact JWS`);
  const [h, p, signature] = parts as [string, string, string];
  const header = decodeJsonPart(h, `${what}'s header`);
  const payload = decodeJsonPart(p, `${what}'s payload`);
  if (!isRecord(header)) throw new SdJwtVcError(`${what}'s header is not a JSON object`);
  if (!isRecord(payload)) throw new SdJwtVcError(`${what}'s payload is not a JSON object`);
  if (!BASE64URL.test(signature)) throw new SdJwtVcError(`${what}'s signature is not base64url`);
  return { header, payload, signingInput: `${h}.${p}`, signature };
}

function parseDisclosure(encoded: string, index: number): ParsedDisclosure {
  const what = `disclosure ${index + 1}`;
  const decoded = decodeJsonPart(encoded, what);
  if (!Array.isArray(decoded)) throw new SdJwtVcError(`${what} is not a JSON array`);
  if (decoded.length === 2) throw new SdJwtVcError(`${what} is an array-element disclosure, which this profile does not use`);
  if (decoded.length !== 3) throw new SdJwtVcError(`${what} must be [salt, name, value]`);
  const [salt, name, value] = decoded as [unknown, unknown, unknown];
  if (typeof salt !== "string" || salt.length === 0) throw new SdJwtVcError(`${what} has no salt`);
  if (typeof name !== "string") throw new SdJwtVcError(`${what}'s claim name is not a string`);
  return { encoded, digest: sha256(encoded).toString("base64url"), name, value };
}

function parseSdJwt(compact: string, what: string): ParsedSdJwt {
  if (typeof compact !== "string") throw new SdJwtVcError(`${what} is not a string`);
  const parts = compact.split("~");
  if (parts.length < 2) throw new SdJwtVcError(`${what} is not an SD-JWT (no "~")`);
  const jwt = parseJwt(parts[0]!, "the issuer JWT");
  const last = parts[parts.length - 1]!;
  const encodedDisclosures = parts.slice(1, -1);
  if (encodedDisclosures.some((d) => d === "")) throw new SdJwtVcError(`${what} has an empty disclosure`);
  const disclosures = encodedDisclosures.map(parseDisclosure);
  const parsed: ParsedSdJwt = { jwt, disclosures, withoutKb: compact.slice(0, compact.lastIndexOf("~") + 1) };
  if (last !== "") {
    parsed.kb = parseJwt(last, "the KB-JWT");
    parsed.kbCompact = last;
  }
  return parsed;
}

/**
 * The rules between payload and disclosures: SHA-256 digests, each disclosure referenced
 * by the top-level _sd exactly once, no digest or claim name twice, no disclosure for a
 * reserved name or a name the payload already has in the clear.
 */
function checkDisclosures(parsed: ParsedSdJwt): void {
  const { payload } = parsed.jwt;
  if (payload._sd_alg !== undefined && payload._sd_alg !== SD_ALG) throw new SdJwtVcError(`_sd_alg must be ${SD_ALG}`);
  const sd = payload._sd;
  if (sd !== undefined && (!Array.isArray(sd) || !sd.every((d) => typeof d === "string"))) throw new SdJwtVcError("_sd must be an array of digests");
  const referenced = new Set<string>(sd ?? []);
  if (referenced.size !== (sd ?? []).length) throw new SdJwtVcError("_sd lists a digest twice");
  const seenDigests = new Set<string>();
  const seenNames = new Set<string>();
  parsed.disclosures.forEach((d, i) => {
    const what = `disclosure ${i + 1}`;
    if (!referenced.has(d.digest)) throw new SdJwtVcError(`${what} is not referenced by the issuer JWT's _sd`);
    if (seenDigests.has(d.digest)) throw new SdJwtVcError(`${what} is given twice`);
    seenDigests.add(d.digest);
    if (RESERVED_NAMES.has(d.name)) throw new SdJwtVcError(`${what} discloses the reserved claim name ${quote(d.name)}`);
    if (Object.hasOwn(payload, d.name)) throw new SdJwtVcError(`${what} discloses ${quote(d.name)}, which the payload already has`);
    if (seenNames.has(d.name)) throw new SdJwtVcError(`${what} discloses ${quote(d.name)} a second time`);
    seenNames.add(d.name);
  });
}

/** iss, vct and cnf.jwk, shaped; shared by inspect, present and verify. */
function readCore(payload: Record<string, unknown>): { issuer: string; vct: string; holder: { jwk: JWK; key: KeyObject } } {
  if (typeof payload.iss !== "string" || payload.iss === "") throw new SdJwtVcError("iss is missing");
  if (typeof payload.vct !== "string" || payload.vct === "") throw new SdJwtVcError("vct is missing");
  const cnf = payload.cnf;
  if (!isRecord(cnf) || cnf.jwk === undefined) throw new SdJwtVcError("cnf.jwk is missing");
  return { issuer: payload.iss, vct: payload.vct, holder: p256PublicJwk(cnf.jwk, "cnf.jwk") };
}

function readTime(payload: Record<string, unknown>, name: "iat" | "exp" | "nbf", what = "the issuer JWT"): number | undefined {
  const value = payload[name];
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value)) throw new SdJwtVcError(`${what}'s ${name} is not a number`);
  return value;
}

function readStatus(payload: Record<string, unknown>): { idx: number; uri: string } | undefined {
  if (payload.status === undefined) return undefined;
  const list = isRecord(payload.status) ? payload.status.status_list : undefined;
  if (!isRecord(list) || !Number.isSafeInteger(list.idx) || (list.idx as number) < 0 || typeof list.uri !== "string" || list.uri === "") {
    throw new SdJwtVcError("status must be {status_list: {idx, uri}}");
  }
  return { idx: list.idx as number, uri: list.uri };
}

// ---------------------------------------------------------------------------------------
// Issue.

export async function issueSdJwtVc(input: IssueSdJwtVcInput): Promise<string> {
  if (typeof input.issuer !== "string" || input.issuer === "") throw new SdJwtVcError("issuer must be a non-empty string");
  if (typeof input.vct !== "string" || input.vct === "") throw new SdJwtVcError("vct must be a non-empty string");
  if (!isRecord(input.claims)) throw new SdJwtVcError("claims must be an object");
  const names = Object.keys(input.claims);
  const reserved = names.filter((n) => RESERVED_NAMES.has(n));
  if (reserved.length > 0) throw new SdJwtVcError(`claims may not use the reserved names ${reserved.map(quote).join(", ")}`);
  const undefinedClaims = names.filter((n) => input.claims[n] === undefined);
  if (undefinedClaims.length > 0) throw new SdJwtVcError(`claims ${undefinedClaims.map(quote).join(", ")} have no value`);
  const holder = p256PublicJwk(input.holderKey, "holderKey");
  if (typeof input.signingKey?.kid !== "string" || input.signingKey.kid === "") throw new SdJwtVcError("signingKey.kid must be a non-empty string");
  const issuerKey = p256PrivateKey(input.signingKey.privateKey, "signingKey.privateKey");
  const iat = input.issuedAt ?? nowSeconds();
  const exp = input.expiresAt ?? iat + DEFAULT_VALIDITY_SECONDS;
  if (!Number.isSafeInteger(iat) || !Number.isSafeInteger(exp)) throw new SdJwtVcError("issuedAt and expiresAt must be whole seconds");
  if (exp <= iat) throw new SdJwtVcError("expiresAt must be after issuedAt");
  if (input.status !== undefined) readStatus({ status: { status_list: input.status } });

  const payload: SdJwtVcPayload = {
    iss: input.issuer,
    vct: input.vct,
    iat,
    exp,
    cnf: { jwk: holder.jwk },
    ...(input.status ? { status: { status_list: { idx: input.status.idx, uri: input.status.uri } } } : {}),
    ...input.claims,
  };
  const sdjwt = new SDJwtVcInstance({
    hasher,
    hashAlg: SD_ALG,
    saltGenerator,
    signAlg: ALG,
    signer: (data: string) => signEs256(issuerKey, data),
  });
  type Frame = NonNullable<Parameters<typeof sdjwt.issue<SdJwtVcPayload>>[1]>;
  const credential = await sdjwt.issue(payload, { _sd: names } as Frame, { header: { typ: SD_JWT_VC_TYP, kid: input.signingKey.kid } });

  // What the library wrote is read back by this module's own rules.
  const parsed = parseSdJwt(credential, "the issued credential");
  if (parsed.kb || parsed.jwt.header.alg !== ALG || parsed.jwt.header.typ !== SD_JWT_VC_TYP || parsed.jwt.header.kid !== input.signingKey.kid) {
    throw new SdJwtVcError("the issued credential's header is not {alg: ES256, typ: dc+sd-jwt, kid}");
  }
  checkDisclosures(parsed);
  const disclosed = parsed.disclosures.map((d) => d.name).sort();
  if (!isDeepStrictEqual(disclosed, [...names].sort()) || names.some((n) => Object.hasOwn(parsed.jwt.payload, n))) {
    throw new SdJwtVcError("the issued credential does not make every claim selectively disclosable");
  }
  return credential;
}

// ---------------------------------------------------------------------------------------
// Present.

export async function presentSdJwtVc(input: PresentSdJwtVcInput): Promise<string> {
  if (typeof input.audience !== "string" || input.audience === "") throw new SdJwtVcError("audience must be a non-empty string");
  if (typeof input.nonce !== "string" || input.nonce === "") throw new SdJwtVcError("nonce must be a non-empty string");
  if (!Array.isArray(input.disclose) || !input.disclose.every((n) => typeof n === "string")) throw new SdJwtVcError("disclose must be a list of claim names");
  const parsed = parseSdJwt(input.credential, "the credential");
  if (parsed.kb) throw new SdJwtVcError("the credential already carries a KB-JWT (pass the credential as issued, ending in \"~\")");
  checkDisclosures(parsed);
  const { holder } = readCore(parsed.jwt.payload);

  const holderKey = p256PrivateKey(input.holderPrivateKey, "holderPrivateKey");
  if (!sameP256Key(publicJwkOf(holderKey), holder.jwk)) throw new SdJwtVcError("holderPrivateKey does not match the credential's cnf.jwk");

  const available = new Set(parsed.disclosures.map((d) => d.name));
  const wanted = [...new Set(input.disclose)];
  const unknown = wanted.filter((n) => !available.has(n));
  if (unknown.length > 0) throw new SdJwtVcError(`the credential has no disclosable claims ${unknown.map(quote).join(", ")}`);

  const now = input.now ?? nowSeconds();
  const sdjwt = new SDJwtVcInstance({
    hasher,
    hashAlg: SD_ALG,
    saltGenerator,
    kbSignAlg: ALG,
    kbSigner: (data: string) => signEs256(holderKey, data),
  });
  const frame = Object.fromEntries(wanted.map((n) => [n, true])) as Record<string, boolean>;
  const presentation = await sdjwt.present(input.credential, frame, { kb: { payload: { iat: now, aud: input.audience, nonce: input.nonce } } });

  // Read back: exactly the chosen disclosures, and a KB-JWT over them.
  const out = parseSdJwt(presentation, "the presentation");
  const shown = out.disclosures.map((d) => d.name).sort();
  if (!isDeepStrictEqual(shown, [...wanted].sort())) throw new SdJwtVcError("the presentation does not disclose exactly the chosen claims");
  if (!out.kb || out.kb.payload.sd_hash !== sha256(out.withoutKb).toString("base64url")) throw new SdJwtVcError("the presentation's KB-JWT does not cover it");
  return presentation;
}

// ---------------------------------------------------------------------------------------
// Verify.

/** The issuer's key for `kid`, checked (one match, ES256, for signing, a P-256 point); also the status list's (status-list.ts). */
export async function resolveIssuerKey(issuerKeys: VerifySdJwtVcInput["issuerKeys"], kid: string): Promise<KeyObject> {
  let jwk: JWK | undefined;
  if (typeof issuerKeys === "function") {
    try {
      jwk = await issuerKeys(kid);
    } catch {
      throw new SdJwtVcError(`the issuer key lookup failed for kid ${quote(kid)}`);
    }
  } else {
    if (!isRecord(issuerKeys) || !Array.isArray(issuerKeys.keys)) throw new SdJwtVcError("issuerKeys is not a JWK set");
    const matches = issuerKeys.keys.filter((k) => k.kid === kid);
    if (matches.length > 1) throw new SdJwtVcError(`issuerKeys has more than one key with kid ${quote(kid)}`);
    jwk = matches[0];
  }
  if (jwk === undefined) throw new SdJwtVcError(`unknown issuer kid ${quote(kid)}`);
  if (jwk.kid !== undefined && jwk.kid !== kid) throw new SdJwtVcError(`the issuer key found for kid ${quote(kid)} has another kid`);
  if (jwk.alg !== undefined && jwk.alg !== ALG) throw new SdJwtVcError(`the issuer key ${quote(kid)} is not for ${ALG}`);
  if (jwk.use !== undefined && jwk.use !== "sig") throw new SdJwtVcError(`the issuer key ${quote(kid)} is not for signing`);
  return p256PublicJwk(jwk, `the issuer key ${quote(kid)}`).key;
}

export async function verifySdJwtVc(input: VerifySdJwtVcInput): Promise<VerifiedSdJwtVc> {
  if (typeof input.expectedIssuer !== "string" || input.expectedIssuer === "") throw new SdJwtVcError("expectedIssuer must be a non-empty string");
  // A non-empty nonce also matters to the library: it checks the KB-JWT only when given one.
  if (typeof input.audience !== "string" || input.audience === "") throw new SdJwtVcError("audience must be a non-empty string");
  if (typeof input.nonce !== "string" || input.nonce === "") throw new SdJwtVcError("nonce must be a non-empty string");
  const maxAge = input.maxKeyBindingAgeSeconds ?? DEFAULT_MAX_KB_AGE_SECONDS;
  if (typeof maxAge !== "number" || !(maxAge > 0) || !Number.isFinite(maxAge)) throw new SdJwtVcError("maxKeyBindingAgeSeconds must be a positive number");
  const expectedVct = input.expectedVct === undefined ? undefined : [input.expectedVct].flat();
  const now = input.now ?? nowSeconds();

  // 1. The issuer JWT: header, key, signature.
  const parsed = parseSdJwt(input.presentation, "the presentation");
  const { header, payload } = parsed.jwt;
  if (header.alg !== ALG) throw new SdJwtVcError(`the issuer JWT's alg must be ${ALG}`);
  if (header.typ !== SD_JWT_VC_TYP) throw new SdJwtVcError(`the issuer JWT's typ must be ${SD_JWT_VC_TYP}`);
  if (typeof header.kid !== "string" || header.kid === "") throw new SdJwtVcError("the issuer JWT has no kid");
  if (header.crit !== undefined) throw new SdJwtVcError("the issuer JWT's header has crit, which this profile does not understand");
  const issuerKey = await resolveIssuerKey(input.issuerKeys, header.kid);
  if (!verifyEs256(issuerKey, parsed.jwt.signingInput, parsed.jwt.signature)) throw new SdJwtVcError("the issuer JWT's signature does not verify");

  // 2. Its payload.
  const { issuer, vct, holder } = readCore(payload);
  if (issuer !== input.expectedIssuer) throw new SdJwtVcError("iss is not the expected issuer");
  if (expectedVct && !expectedVct.includes(vct)) throw new SdJwtVcError("vct is not an expected credential type");
  const iat = readTime(payload, "iat");
  const exp = readTime(payload, "exp");
  const nbf = readTime(payload, "nbf");
  if (exp !== undefined && exp <= now) throw new SdJwtVcError("the credential has expired (exp)");
  if (nbf !== undefined && nbf > now + SKEW_SECONDS) throw new SdJwtVcError("the credential is not yet valid (nbf)");
  if (iat !== undefined && iat > now + SKEW_SECONDS) throw new SdJwtVcError("the credential's iat is in the future");
  const status = readStatus(payload);

  // 3. The disclosures.
  checkDisclosures(parsed);

  // 4. The KB-JWT.
  const kb = parsed.kb;
  if (!kb) throw new SdJwtVcError("a KB-JWT is required");
  if (kb.header.typ !== KB_JWT_TYP) throw new SdJwtVcError(`the KB-JWT's typ must be ${KB_JWT_TYP}`);
  if (kb.header.alg !== ALG) throw new SdJwtVcError(`the KB-JWT's alg must be ${ALG}`);
  if (kb.header.crit !== undefined) throw new SdJwtVcError("the KB-JWT's header has crit, which this profile does not understand");
  if (!verifyEs256(holder.key, kb.signingInput, kb.signature)) throw new SdJwtVcError("the KB-JWT is not signed by cnf.jwk");
  if (kb.payload.aud !== input.audience) throw new SdJwtVcError("the KB-JWT's aud is not this verifier");
  if (kb.payload.nonce !== input.nonce) throw new SdJwtVcError("the KB-JWT's nonce is not this verifier's");
  const kbIat = readTime(kb.payload, "iat", "the KB-JWT");
  if (kbIat === undefined) throw new SdJwtVcError("the KB-JWT has no iat");
  if (kbIat > now + SKEW_SECONDS) throw new SdJwtVcError("the KB-JWT's iat is in the future");
  if (now - kbIat > maxAge) throw new SdJwtVcError("the KB-JWT is too old (iat)");
  const sdHash = sha256(parsed.withoutKb).toString("base64url");
  if (kb.payload.sd_hash !== sdHash) throw new SdJwtVcError("the KB-JWT's sd_hash does not match the presented SD-JWT");

  // 5. The library, with verifiers bound to the keys resolved above; then what it returns, checked.
  let issuerVerifierCalls = 0;
  let kbVerifierCalls = 0;
  const config: SDJWTVCConfig = {
    hasher,
    hashAlg: SD_ALG,
    verifier: (data: string, signature: string) => {
      issuerVerifierCalls++;
      return verifyEs256(issuerKey, data, signature);
    },
    kbVerifier: (data: string, signature: string) => {
      kbVerifierCalls++;
      return verifyEs256(holder.key, data, signature);
    },
  };
  const sdjwt = new SDJwtVcInstance(config);
  // Its verify() would fetch status_list.uri (a network call per verification); status is returned to the caller instead.
  Object.defineProperty(sdjwt, "verifyStatus", { value: async () => undefined });
  let result: Awaited<ReturnType<SDJwtVcInstance["verify"]>>;
  try {
    result = await sdjwt.verify(input.presentation, { currentDate: now, skewSeconds: SKEW_SECONDS, keyBindingNonce: input.nonce });
  } catch (err) {
    const reason = err instanceof Error && err.name === "SDJWTException" ? `: ${err.message.slice(0, 200)}` : "";
    throw new SdJwtVcError(`the SD-JWT library refused the presentation${reason}`);
  }
  if (issuerVerifierCalls === 0 || kbVerifierCalls === 0 || !result.kb) throw new SdJwtVcError("the SD-JWT library did not check both signatures");
  if (result.kb.payload.sd_hash !== sdHash || result.kb.payload.nonce !== input.nonce || result.kb.payload.aud !== input.audience) {
    throw new SdJwtVcError("the SD-JWT library returned another KB-JWT");
  }
  const libPayload = result.payload as Record<string, unknown>;
  if (libPayload.iss !== issuer || libPayload.vct !== vct) throw new SdJwtVcError("the SD-JWT library returned another iss or vct");

  const claims: Record<string, unknown> = {};
  for (const d of parsed.disclosures) {
    if (!isDeepStrictEqual(libPayload[d.name], d.value)) throw new SdJwtVcError(`the SD-JWT library returned another value for disclosure ${quote(d.name)}`);
    claims[d.name] = d.value;
  }
  const extra = Object.keys(libPayload).filter((n) => !Object.hasOwn(payload, n) && !Object.hasOwn(claims, n));
  if (extra.length > 0) throw new SdJwtVcError("the SD-JWT library returned claims that were not disclosed");

  return {
    issuer,
    vct,
    claims,
    holderKey: holder.jwk,
    ...(iat !== undefined ? { issuedAt: iat } : {}),
    ...(exp !== undefined ? { expiresAt: exp } : {}),
    ...(status ? { status } : {}),
  };
}

// ---------------------------------------------------------------------------------------
// Inspect.

/** Reads the holder (cnf.jwk), vct, iss and the claim names from a credential without verifying: for the wallet's own listing of what it holds. */
export function inspectSdJwtVc(credential: string): {
  issuer: string;
  vct: string;
  holderKey: JWK;
  claimNames: string[];
  issuedAt?: number;
  expiresAt?: number;
  status?: { idx: number; uri: string };
} {
  const parsed = parseSdJwt(credential, "the credential");
  checkDisclosures(parsed);
  const { issuer, vct, holder } = readCore(parsed.jwt.payload);
  const iat = readTime(parsed.jwt.payload, "iat");
  const exp = readTime(parsed.jwt.payload, "exp");
  const status = readStatus(parsed.jwt.payload);
  return {
    issuer,
    vct,
    holderKey: holder.jwk,
    claimNames: parsed.disclosures.map((d) => d.name),
    ...(iat !== undefined ? { issuedAt: iat } : {}),
    ...(exp !== undefined ? { expiresAt: exp } : {}),
    ...(status ? { status } : {}),
  };
}
