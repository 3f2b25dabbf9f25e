// End-to-end payloads between the Wallet Client and the Issuer, which the Wallet Server
// carries and cannot read or forge (docs/wallet-server.md):
//
// - client payloads (origin WALLET_CLIENT) are sign-then-encrypt: a WSK-signed statement
//   (statements.ts) whose `aud` is the thumbprint of the issuer key it is then encrypted
//   to with HPKE-0. The issuer decrypts (failure: invalid_encryption), then verifies the
//   signature with the WSK it already holds for the session, the audience against the
//   key that decrypted, the typ, the session and verification or instance, the times
//   and the jti (failure: invalid_client_authentication);
// - a Wallet Encryption Key reaches the issuer only inside a WSK-signed `wek+jwt`
//   statement (our profile closes the draft's WEK-substitution hole), and the issuer
//   encrypts credentials to no other key;
// - credentials (origin ISSUER) are a JSON array of SD-JWT VCs encrypted to that WEK.

import type { JWK } from "jose";
import { type HpkePublicJwk, HpkeJweError, decryptCompact, encryptCompact, thumbprint } from "./hpke-jwe.js";
import { type JweEncryptedPayload, KEY_TYPES, type KeyData } from "./messages.js";
import { invalidClientAuthentication, invalidEncryption } from "./problem.js";
import { type ReplayGuard, StatementError, type StatementKind, signStatement, verifyStatement } from "./statements.js";

export type ClientPayloadKind = Extract<StatementKind, "verificationData" | "presentmentKeys">;

export interface PayloadContext {
  sessionId: string;
  verificationId?: string;
  credentialInstanceId?: string;
}

/** The Wallet Client seals `item` for the issuer whose encryption key is `issuerKey`. */
export async function sealClientPayload(
  kind: ClientPayloadKind,
  item: Record<string, unknown>,
  context: PayloadContext,
  wskPrivate: JWK,
  issuerKey: HpkePublicJwk,
  options: { now?: number; purpose?: string } = {},
): Promise<JweEncryptedPayload> {
  const audience = await thumbprint(issuerKey);
  const jws = await signStatement(kind, { ...context, audience }, item, wskPrivate, { now: options.now });
  // cty "JWT": the plaintext is itself a JWT (RFC 7519 §5.2, nested JWT).
  const jwe = await encryptCompact(jws, issuerKey, { cty: "JWT" });
  return { jwe, origin: "WALLET_CLIENT", ...(options.purpose ? { purpose: options.purpose } : {}) };
}

/**
 * The issuer opens a client payload: `jwe` is the compact JWE (already fetched and
 * digest-checked when it came by reference). Returns the statement's payload.
 */
export async function openClientPayload(
  kind: ClientPayloadKind,
  origin: string,
  jwe: string,
  issuerPrivate: JWK,
  wskPublic: JWK,
  context: PayloadContext,
  options: { replay: { guard: ReplayGuard; scope: string }; now?: number },
): Promise<Record<string, unknown>> {
  if (origin !== "WALLET_CLIENT") throw invalidClientAuthentication("a client payload must have origin WALLET_CLIENT");
  let plaintext: Uint8Array;
  try {
    ({ plaintext } = await decryptCompact(jwe, issuerPrivate));
  } catch (error) {
    if (error instanceof HpkeJweError) throw invalidEncryption(`the payload cannot be decrypted with this issuer's key: ${error.reason}`);
    throw error;
  }
  const audience = await thumbprint(issuerPrivate);
  try {
    return await verifyStatement(kind, Buffer.from(plaintext).toString("utf8"), wskPublic, { ...context, audience }, options);
  } catch (error) {
    if (error instanceof StatementError) throw invalidClientAuthentication(`the client payload is refused: ${error.reason}`);
    throw error;
  }
}

/** The Wallet Client's KeyData for a WEK: the key and its `wek+jwt` statement for one issuer and session. */
export async function walletEncryptionKeyData(
  wek: HpkePublicJwk,
  issuerId: string,
  sessionId: string,
  wskPrivate: JWK,
  options: { now?: number; lifetime?: number } = {},
): Promise<KeyData> {
  const jwk = { kty: wek.kty, crv: wek.crv, x: wek.x, y: wek.y, kid: wek.kid, alg: "HPKE-0", use: "enc" };
  const jwt = await signStatement("wek", { audience: issuerId, sessionId }, { jwk }, wskPrivate, options);
  return { keyType: KEY_TYPES.encryption, client_public_key: jwk, attestation: { proof_type: "jwt", jwt } };
}

/**
 * The issuer's check of a WEK: it must come in a `wek+jwt` signed by the session's WSK,
 * for this issuer and session, naming exactly the key in `client_public_key`. Returns
 * the one key the issuer may encrypt credentials to.
 */
export async function verifyWalletEncryptionKey(
  keyData: KeyData,
  wskPublic: JWK,
  issuerId: string,
  sessionId: string,
  options: { now?: number } = {},
): Promise<HpkePublicJwk> {
  if (keyData.keyType !== KEY_TYPES.encryption) throw invalidClientAuthentication(`walletEncryptionKey.keyType must be ${KEY_TYPES.encryption}`);
  const attestation = keyData.attestation as { proof_type?: unknown; jwt?: unknown } | undefined;
  if (!attestation || attestation.proof_type !== "jwt" || typeof attestation.jwt !== "string") {
    throw invalidClientAuthentication("walletEncryptionKey needs a wek+jwt statement signed by the wallet signing key in attestation {proof_type: jwt, jwt}");
  }
  let payload: Record<string, unknown>;
  try {
    payload = await verifyStatement("wek", attestation.jwt, wskPublic, { audience: issuerId, sessionId }, options);
  } catch (error) {
    if (error instanceof StatementError) throw invalidClientAuthentication(`the wallet encryption key is refused: ${error.reason}`);
    throw error;
  }
  const signed = payload.jwk as JWK | undefined;
  const offered = keyData.client_public_key as JWK;
  if (typeof signed !== "object" || signed === null || signed.kty !== "EC" || signed.crv !== "P-256" || typeof signed.x !== "string" || typeof signed.y !== "string") {
    throw invalidClientAuthentication("the wek+jwt statement names no EC P-256 key");
  }
  if (offered.kty !== "EC" || offered.crv !== "P-256" || (await thumbprint(signed)) !== (await thumbprint(offered))) {
    throw invalidClientAuthentication("walletEncryptionKey is not the key its wek+jwt statement signs");
  }
  return { kty: "EC", crv: "P-256", x: signed.x, y: signed.y, kid: signed.kid ?? (await thumbprint(signed)), alg: "HPKE-0", use: "enc" };
}

/** The issuer encrypts the credentials (SD-JWT VC strings) to the verified WEK. */
export async function sealCredentials(credentials: string[], wek: HpkePublicJwk): Promise<JweEncryptedPayload> {
  return { jwe: await encryptCompact(JSON.stringify(credentials), wek, { cty: "json" }), origin: "ISSUER" };
}

/** The Wallet Client opens credentials with its WEK private key. */
export async function openCredentials(payload: { jwe?: string; origin: string }, wekPrivate: JWK): Promise<string[]> {
  if (payload.origin !== "ISSUER") throw new Error("credentials must have origin ISSUER");
  if (typeof payload.jwe !== "string") throw new Error("credentials carry no jwe");
  const { plaintext } = await decryptCompact(payload.jwe, wekPrivate);
  const parsed: unknown = JSON.parse(Buffer.from(plaintext).toString("utf8"));
  if (!Array.isArray(parsed) || !parsed.every((c) => typeof c === "string")) throw new Error("the credentials are not a JSON array of strings");
  return parsed;
}
