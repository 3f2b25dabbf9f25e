// The WSK attestation (docs/wallet-server.md): how an issuer knows that the Wallet
// Signing Key in `/verification/initiate` belongs to a signed-in user's client instance
// and was not invented by the Wallet Server. Token — not Orchestration, which hosts the
// Wallet Server — signs it, after verifying the client instance's DPoP proof:
//
//   header  alg ES256 | EdDSA, typ wsk-attestation+jwt, kid (a key of Token's attestation JWKS)
//   claims  iss       the wallet server (hello-mesh's issuer URL)
//           aud       the issuer id
//           sessionId the S2S session
//           jwk       the WSK (public, ES256)
//           cnf.jkt   the RFC 7638 thumbprint of the client instance's DPoP key
//           transferFrom  (a device transfer only) the sessionId of the same user's
//                     session, at this wallet server and issuer, that this one takes
//                     over: Token says so after checking the user's holdings list it
//           iat, exp (≤ 600 s), jti
//
// It travels in `walletSigningKeyData.attestation` as { proof_type: "jwt", jwt }. It
// names no user: the issuer learns a client instance's key, never a hello-mesh user id.

import { type JSONWebKeySet, type JWK, createLocalJWKSet, jwtVerify, SignJWT, type CryptoKey, type KeyObject, calculateJwkThumbprint } from "jose";
import { randomBytes } from "node:crypto";

export const WSK_ATTESTATION_TYP = "wsk-attestation+jwt";
export const WSK_ATTESTATION_MAX_SECONDS = 600;
const ALGORITHMS = ["ES256", "EdDSA"];

export class WskAttestationError extends Error {
  override name = "WskAttestationError";
  constructor(readonly reason: string) {
    super(`the wallet signing key attestation is not valid: ${reason}`);
  }
}

export interface WskAttestationClaims {
  walletServer: string;
  issuerId: string;
  sessionId: string;
  wsk: JWK;
  dpopJkt: string;
  /** A device transfer: the same user's earlier session this one takes over. */
  transferFrom?: string;
}

/** Signs an attestation (Token's side). `alg` must match the key. */
export async function signWskAttestation(
  claims: WskAttestationClaims,
  key: { privateKey: CryptoKey | KeyObject; kid: string; alg: "ES256" | "EdDSA" },
  options: { now?: number; lifetime?: number } = {},
): Promise<string> {
  const iat = Math.floor(options.now ?? Date.now() / 1000);
  const lifetime = Math.min(options.lifetime ?? WSK_ATTESTATION_MAX_SECONDS, WSK_ATTESTATION_MAX_SECONDS);
  const { kty, crv, x, y } = claims.wsk;
  return new SignJWT({ sessionId: claims.sessionId, jwk: { kty, crv, x, y }, cnf: { jkt: claims.dpopJkt }, ...(claims.transferFrom !== undefined ? { transferFrom: claims.transferFrom } : {}) })
    .setProtectedHeader({ alg: key.alg, typ: WSK_ATTESTATION_TYP, kid: key.kid })
    .setIssuer(claims.walletServer)
    .setAudience(claims.issuerId)
    .setIssuedAt(iat)
    .setExpirationTime(iat + lifetime)
    .setJti(randomBytes(16).toString("base64url"))
    .sign(key.privateKey);
}

/**
 * The issuer's check: signed by one of the wallet server's attestation keys, this typ,
 * this wallet server and issuer, this session, naming exactly the WSK in the request.
 * Returns the client instance's DPoP key thumbprint, and the session a device transfer
 * takes over, if the attestation names one.
 */
export async function verifyWskAttestation(
  jwt: unknown,
  jwks: JSONWebKeySet,
  expected: { walletServer: string; issuerId: string; sessionId: string; wsk: JWK },
  options: { now?: number } = {},
): Promise<{ dpopJkt: string; transferFrom?: string }> {
  if (typeof jwt !== "string") throw new WskAttestationError("it is not a compact JWS");
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(jwt, createLocalJWKSet(jwks), {
      algorithms: ALGORITHMS,
      typ: WSK_ATTESTATION_TYP,
      issuer: expected.walletServer,
      audience: expected.issuerId,
      requiredClaims: ["iat", "exp", "jti", "sessionId", "jwk", "cnf"],
      maxTokenAge: WSK_ATTESTATION_MAX_SECONDS + 30,
      clockTolerance: 30,
      ...(options.now !== undefined ? { currentDate: new Date(options.now * 1000) } : {}),
    }));
  } catch (error) {
    const code = (error as { code?: string }).code ?? "ERR_JWS_INVALID";
    throw new WskAttestationError(`it does not verify against the wallet server's attestation keys (${code})`);
  }
  if ((payload.exp as number) - (payload.iat as number) > WSK_ATTESTATION_MAX_SECONDS) throw new WskAttestationError("its lifetime is too long");
  if (payload.sessionId !== expected.sessionId) throw new WskAttestationError("it is for another session");
  const signed = payload.jwk as JWK;
  const cnf = payload.cnf as { jkt?: unknown };
  if (typeof signed !== "object" || signed === null) throw new WskAttestationError("it names no key");
  let same = false;
  try {
    same = (await calculateJwkThumbprint(signed, "sha256")) === (await calculateJwkThumbprint(expected.wsk, "sha256"));
  } catch {
    throw new WskAttestationError("its key cannot be read");
  }
  if (!same) throw new WskAttestationError("it attests another wallet signing key");
  if (typeof cnf !== "object" || cnf === null || typeof cnf.jkt !== "string" || !/^[A-Za-z0-9_-]{43}$/.test(cnf.jkt)) {
    throw new WskAttestationError("cnf.jkt must be a SHA-256 JWK thumbprint");
  }
  if (payload.transferFrom !== undefined && (typeof payload.transferFrom !== "string" || payload.transferFrom === "" || payload.transferFrom === expected.sessionId)) {
    throw new WskAttestationError("transferFrom must name another session");
  }
  return { dpopJkt: cnf.jkt, ...(typeof payload.transferFrom === "string" ? { transferFrom: payload.transferFrom } : {}) };
}
