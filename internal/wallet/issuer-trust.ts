// How the Wallet Client decides which issuer it is talking to (docs/wallet-server.md,
// DESIGN §9): the issuer's id, the HPKE-0 key its payloads are sealed to, and the keys
// its credentials must be signed with. These are exactly what Orchestration, which
// carries every call, must not be able to choose: with its own encryption key it could
// read the person's data; with its own signing keys it could hand the user credentials
// of its making (it can encrypt anything to a WEK, whose public half it carries).
//
// So the client takes them from two places only, in this order:
//
// 1. its own configuration, <wallet home>/issuers.json (optional; 0600 and the user's,
//    like every file of the wallet):
//
//      { "issuers": [{ "id", "encryptionKey", "jwks", "credential_configurations"? }] }
//
//    An entry here wins over anything the server says about that issuer.
// 2. a statement Token countersigned, served by GET /wallet/api/issuers as
//    { issuers: [{ issuer, statement }] }: a compact JWS, alg ES256, typ
//    hello-issuer+jwt, signed by a `wallet.` key of the wallet key set the client
//    pinned at its first sign-in (StoredLogin.walletJwks) and by no other key, with
//    { sub: the issuer id, jwk: its HPKE-0 key, jwks: its signing keys,
//      credential_configurations: { <id>: { vct, display? } }, iat, exp } and
//    exp - iat ≤ 3600 s, not expired (30 s of clock skew).
//
// Anything else is refused with an IssuerTrustError, before the client makes a session.

import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { type JSONWebKeySet, type JWK, decodeProtectedHeader, importJWK, jwtVerify } from "jose";
import { z } from "zod";
import { type HpkePublicJwk, HPKE_ALG, thumbprint } from "../s2s/hpke-jwe.js";
import type { WalletApi } from "./api-client.js";
import type { KeyStore } from "./key-store.js";

export const ISSUER_STATEMENT_TYP = "hello-issuer+jwt";
/** The kid prefix of Token's `wallet` purpose keys (the `wallet-access` keys sign access tokens, never statements). */
export const WALLET_KEY_PREFIX = "wallet.";
export const ISSUER_STATEMENT_MAX_LIFETIME_SECONDS = 3600;
const CLOCK_SKEW_SECONDS = 30;
export const LOCAL_ISSUERS_FILE = "issuers.json";
const MAX_LOCAL_FILE_BYTES = 1024 * 1024;

export interface CredentialConfiguration {
  vct: string;
  display?: unknown;
}

export interface TrustedIssuer {
  id: string;
  /** The HPKE-0 key client payloads are sealed to (its kid is the one the issuer's private key has). */
  encryptionKey: HpkePublicJwk;
  /** The ES256 keys the issuer's credentials are signed with, each with its kid. */
  jwks: JSONWebKeySet;
  /**
   * What the issuer offers, by configuration id. Undefined only for a local entry that
   * names none and no statement for the issuer verifies: then the configurations are not
   * checked here (the issuer refuses one it does not offer) and vct is not pinned.
   */
  configurations: Record<string, CredentialConfiguration> | undefined;
  /** Where the keys came from. */
  source: "local" | "statement";
}

/** A refused issuer: the message says why and what to do; it never quotes a key. */
export class IssuerTrustError extends Error {
  override name = "IssuerTrustError";
  constructor(
    message: string,
    readonly issuer: string,
  ) {
    super(message);
  }
}

// --- schemas ------------------------------------------------------------------------

const issuerIdSchema = z.string().min(1).max(2048);
const configurationsSchema = z.record(z.string().min(1).max(256), z.looseObject({ vct: z.string().min(1).max(2048), display: z.unknown().optional() }));
const jwkObject = z.looseObject({ kty: z.string() });

const localFileSchema = z.object({
  issuers: z.array(
    z.looseObject({
      id: issuerIdSchema,
      encryptionKey: jwkObject,
      jwks: z.looseObject({ keys: z.array(jwkObject).min(1).max(32) }),
      credential_configurations: configurationsSchema.optional(),
    }),
  ),
});

export const issuerListSchema = z.looseObject({
  issuers: z.array(z.looseObject({ issuer: issuerIdSchema, statement: z.string().min(1).max(64 * 1024) })).max(256),
});

const statementPayloadSchema = z.looseObject({
  sub: issuerIdSchema,
  jwk: jwkObject,
  jwks: z.looseObject({ keys: z.array(jwkObject).min(1).max(32) }),
  credential_configurations: configurationsSchema,
  iat: z.number().int(),
  exp: z.number().int(),
});

// --- the keys -----------------------------------------------------------------------

const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/** A public EC P-256 key whose point is on the curve, or a reason it is not. */
async function p256Reason(jwk: Record<string, unknown>): Promise<string | undefined> {
  if (PRIVATE_MEMBERS.some((m) => Object.hasOwn(jwk, m))) return "it holds private key material";
  if (jwk.kty !== "EC" || jwk.crv !== "P-256" || typeof jwk.x !== "string" || typeof jwk.y !== "string") return "it is not an EC P-256 key";
  try {
    await importJWK({ kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y }, "ES256");
  } catch {
    return "it is not a valid P-256 public key";
  }
  return undefined;
}

/** The issuer's HPKE-0 encryption key, as the client seals to it. */
async function encryptionKeyOf(jwk: Record<string, unknown>, issuer: string, where: string): Promise<HpkePublicJwk> {
  const reason = (await p256Reason(jwk)) ?? (jwk.alg !== undefined && jwk.alg !== HPKE_ALG ? `it is for ${String(jwk.alg).slice(0, 20)}, not ${HPKE_ALG}` : undefined);
  if (reason) throw new IssuerTrustError(`${where}: the encryption key of ${issuer} is refused: ${reason}`, issuer);
  const kid = typeof jwk.kid === "string" && jwk.kid !== "" ? jwk.kid : await thumbprint(jwk as JWK);
  return { kty: "EC", crv: "P-256", x: jwk.x as string, y: jwk.y as string, kid, alg: HPKE_ALG, use: "enc" };
}

/** The issuer's credential signing keys: public ES256 keys with distinct kids. */
async function signingKeysOf(keys: Record<string, unknown>[], issuer: string, where: string): Promise<JSONWebKeySet> {
  const out: JWK[] = [];
  for (const [index, jwk] of keys.entries()) {
    const what = `${where}: signing key ${index + 1} of ${issuer} is refused`;
    const reason = await p256Reason(jwk);
    if (reason) throw new IssuerTrustError(`${what}: ${reason}`, issuer);
    if (typeof jwk.kid !== "string" || jwk.kid === "") throw new IssuerTrustError(`${what}: it has no kid`, issuer);
    if (jwk.alg !== undefined && jwk.alg !== "ES256") throw new IssuerTrustError(`${what}: it is not for ES256`, issuer);
    if (jwk.use !== undefined && jwk.use !== "sig") throw new IssuerTrustError(`${what}: it is not for signing`, issuer);
    if (out.some((k) => k.kid === jwk.kid)) throw new IssuerTrustError(`${what}: its kid is used twice`, issuer);
    out.push({ kty: "EC", crv: "P-256", x: jwk.x as string, y: jwk.y as string, kid: jwk.kid, alg: "ES256", use: "sig" });
  }
  return { keys: out };
}

// --- the local configuration --------------------------------------------------------

/**
 * The issuers of <home>/issuers.json, checked; [] when there is no such file. The file
 * must be the user's own and reachable by no one else (the wallet's keys are), and no
 * symbolic link.
 */
export async function localIssuers(store: KeyStore): Promise<TrustedIssuer[]> {
  const file = join(store.directory, LOCAL_ISSUERS_FILE);
  let text: string;
  try {
    const handle = await open(file, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw new IssuerTrustError(`the wallet's issuer configuration ${file} is not a file`, "");
      const uid = typeof process.getuid === "function" ? process.getuid() : undefined;
      if (uid !== undefined && info.uid !== uid) {
        throw new IssuerTrustError(`the wallet's issuer configuration ${file} is owned by uid ${info.uid}, not by you: the wallet trusts only its owner's files; run: chown ${uid} ${file}`, "");
      }
      if (uid !== undefined && (info.mode & 0o077) !== 0) {
        const mode = (info.mode & 0o777).toString(8).padStart(4, "0");
        throw new IssuerTrustError(`the wallet's issuer configuration ${file} is accessible by group or others (mode ${mode}); it decides whom the wallet trusts: run: chmod 600 ${file}`, "");
      }
      if (info.size > MAX_LOCAL_FILE_BYTES) throw new IssuerTrustError(`the wallet's issuer configuration ${file} is larger than ${MAX_LOCAL_FILE_BYTES} bytes`, "");
      text = await handle.readFile("utf8");
    } finally {
      await handle.close();
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return [];
    if (code === "ELOOP") throw new IssuerTrustError(`the wallet's issuer configuration ${file} is a symbolic link; the wallet reads only its own files`, "");
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new IssuerTrustError(`the wallet's issuer configuration ${file} is not JSON`, "");
  }
  const parsed = localFileSchema.safeParse(json);
  if (!parsed.success) {
    const paths = [...new Set(parsed.error.issues.map((i) => i.path.join(".") || "(the whole file)"))].join(", ");
    throw new IssuerTrustError(`the wallet's issuer configuration ${file} is not { issuers: [{ id, encryptionKey, jwks, credential_configurations? }] }: see ${paths}`, "");
  }
  const out: TrustedIssuer[] = [];
  for (const entry of parsed.data.issuers) {
    if (out.some((i) => i.id === entry.id)) throw new IssuerTrustError(`the wallet's issuer configuration ${file} lists ${entry.id} twice`, entry.id);
    const where = `the wallet's issuer configuration ${file}`;
    out.push({
      id: entry.id,
      encryptionKey: await encryptionKeyOf(entry.encryptionKey, entry.id, where),
      jwks: await signingKeysOf(entry.jwks.keys, entry.id, where),
      configurations: entry.credential_configurations as Record<string, CredentialConfiguration> | undefined,
      source: "local",
    });
  }
  return out;
}

// --- Token's statements -------------------------------------------------------------

/**
 * Verifies one `hello-issuer+jwt` for `issuerId` against the pinned wallet key set: the
 * header (alg ES256, this typ, a `wallet.` kid of the pinned set), the signature by that
 * key only, sub, the times and lifetime, then the keys it names.
 */
export async function verifyIssuerStatement(
  statement: string,
  pinned: JSONWebKeySet | undefined,
  issuerId: string,
  options: { now?: number } = {},
): Promise<TrustedIssuer> {
  const refuse = (reason: string): never => {
    throw new IssuerTrustError(`the wallet server's statement for ${issuerId} is refused: ${reason}`, issuerId);
  };
  if (!pinned || pinned.keys.length === 0) {
    return refuse("this wallet pinned no wallet keys at sign-in; run hello wallet logout, then hello wallet login");
  }
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    if (statement.split(".").length !== 3) throw new Error();
    header = decodeProtectedHeader(statement);
  } catch {
    return refuse("it is not a compact JWS");
  }
  if (header.alg !== "ES256") refuse("its alg is not ES256");
  if (header.typ !== ISSUER_STATEMENT_TYP) refuse(`its typ is not ${ISSUER_STATEMENT_TYP}`);
  if (header.crit !== undefined) refuse("its header has crit");
  if (["jwk", "jku", "x5c", "x5u"].some((m) => Object.hasOwn(header, m))) refuse("its header names a key of its own");
  const kid = header.kid;
  if (typeof kid !== "string" || !kid.startsWith(WALLET_KEY_PREFIX)) refuse(`its kid is not one of Token's ${WALLET_KEY_PREFIX} keys`);
  const candidates = pinned.keys.filter((k) => k.kid === kid);
  if (candidates.length !== 1) refuse("its kid is not a wallet key this wallet pinned at sign-in (if Token's keys changed, sign in again)");
  const key = candidates[0]!;
  if (key.kty !== "EC" || key.crv !== "P-256" || (key.alg !== undefined && key.alg !== "ES256") || (key.use !== undefined && key.use !== "sig")) {
    refuse("the pinned key with its kid is not an ES256 signing key");
  }

  const now = Math.floor(options.now ?? Date.now() / 1000);
  let payload: unknown;
  try {
    const verificationKey = await importJWK({ kty: "EC", crv: "P-256", x: key.x, y: key.y }, "ES256");
    ({ payload } = await jwtVerify(statement, verificationKey, {
      algorithms: ["ES256"],
      typ: ISSUER_STATEMENT_TYP,
      subject: issuerId,
      requiredClaims: ["iat", "exp", "sub"],
      clockTolerance: CLOCK_SKEW_SECONDS,
      currentDate: new Date(now * 1000),
    }));
  } catch (error) {
    const { code, claim } = error as { code?: string; claim?: string };
    if (code === "ERR_JWS_SIGNATURE_VERIFICATION_FAILED") return refuse("its signature is not the pinned wallet key's (was it altered?)");
    if (code === "ERR_JWT_EXPIRED") return refuse("it has expired");
    if (code === "ERR_JWT_CLAIM_VALIDATION_FAILED" && claim === "sub") return refuse("it is for another issuer (sub)");
    return refuse(`it does not verify (${code ?? "unreadable"}${claim ? `, ${claim}` : ""})`);
  }
  const parsed = statementPayloadSchema.safeParse(payload);
  if (!parsed.success) {
    return refuse(`its claims are not { sub, jwk, jwks, credential_configurations, iat, exp }: see ${[...new Set(parsed.error.issues.map((i) => i.path.join(".")))].join(", ")}`);
  }
  const claims = parsed.data;
  if (claims.sub !== issuerId) refuse("it is for another issuer (sub)");
  if (claims.iat > now + CLOCK_SKEW_SECONDS) refuse("its iat is in the future");
  if (claims.exp <= now - CLOCK_SKEW_SECONDS) refuse("it has expired");
  if (claims.exp <= claims.iat || claims.exp - claims.iat > ISSUER_STATEMENT_MAX_LIFETIME_SECONDS) {
    refuse(`its lifetime must be at most ${ISSUER_STATEMENT_MAX_LIFETIME_SECONDS} s`);
  }
  const where = `the wallet server's statement for ${issuerId}`;
  return {
    id: issuerId,
    encryptionKey: await encryptionKeyOf(claims.jwk, issuerId, where),
    jwks: await signingKeysOf(claims.jwks.keys, issuerId, where),
    configurations: claims.credential_configurations as Record<string, CredentialConfiguration>,
    source: "statement",
  };
}

/** The issuers the wallet server lists (unverified: only their ids and statements). */
export async function listedIssuers(api: WalletApi): Promise<z.infer<typeof issuerListSchema>["issuers"]> {
  return (await api.call("GET", "/wallet/api/issuers", issuerListSchema)).issuers;
}

/** The issuer's statement from the wallet server, verified; the first listed one that verifies wins. */
async function issuerFromStatements(api: WalletApi, store: KeyStore, issuerId: string, now?: number): Promise<TrustedIssuer> {
  const listed = (await listedIssuers(api)).filter((i) => i.issuer === issuerId);
  if (listed.length === 0) {
    throw new IssuerTrustError(
      `the wallet server lists no issuer ${issuerId}, and ${join(store.directory, LOCAL_ISSUERS_FILE)} names none: check the issuer's id (hello wallet add dev picks the only one listed)`,
      issuerId,
    );
  }
  const pinned = (await store.login())?.walletJwks;
  let first: unknown;
  for (const { statement } of listed) {
    try {
      return await verifyIssuerStatement(statement, pinned, issuerId, now !== undefined ? { now } : {});
    } catch (error) {
      if (!(error instanceof IssuerTrustError)) throw error;
      first ??= error;
    }
  }
  throw first;
}

/**
 * The issuer `issuerId` as the client may trust it: its entry in <home>/issuers.json if
 * there is one, else the wallet server's statement for it, verified against the wallet
 * keys pinned at sign-in. Refuses with an IssuerTrustError.
 */
export async function trustedIssuer(api: WalletApi, store: KeyStore, issuerId: string, options: { now?: number } = {}): Promise<TrustedIssuer> {
  const local = (await localIssuers(store)).find((i) => i.id === issuerId);
  if (local) {
    if (local.configurations !== undefined) return local;
    // The local entry fixes the keys; a verified statement may still tell what is offered.
    try {
      const stated = await issuerFromStatements(api, store, issuerId, options.now);
      return { ...local, configurations: stated.configurations };
    } catch {
      return local;
    }
  }
  return issuerFromStatements(api, store, issuerId, options.now);
}

/** `dev` on the command line: the one issuer the wallet server lists, when it lists exactly one. */
export async function resolveIssuerId(api: WalletApi, given: string): Promise<string> {
  if (given !== "dev") return given;
  const ids = [...new Set((await listedIssuers(api)).map((i) => i.issuer))];
  if (ids.length !== 1) {
    throw new IssuerTrustError(
      ids.length === 0
        ? "the wallet server lists no issuer, so dev names none: give the issuer's id"
        : `the wallet server lists ${ids.length} issuers, so dev is ambiguous: give one of ${ids.join(", ")}`,
      given,
    );
  }
  return ids[0]!;
}
