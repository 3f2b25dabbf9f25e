// Compact JWE with HPKE (docs/wallet-server.md "Wire profile"): pinned to
// draft-ietf-jose-hpke-encrypt-20, Integrated Encryption, alg `HPKE-0` =
// DHKEM(P-256, HKDF-SHA256) + HKDF-SHA256 + AES-128-GCM, mode_base.
//
//   BASE64URL(protected header) . BASE64URL(encapsulated secret) . "" . BASE64URL(HPKE ciphertext) . ""
//
// The header carries `alg` and the recipient's `kid` and never `enc`, `ek` or `zip`;
// the JWE Initialization Vector and Authentication Tag are empty; HPKE's `info` is
// empty and its `aad` is the ASCII of the encoded protected header, so the header
// cannot be changed without the decryption failing (draft-20 §5, §7.1 step 15).
//
// HPKE itself is @hpke/core's (RFC 9180); this file only frames it as JOSE and refuses
// every other shape. The draft's published example (examples/jwe/HPKE-0-compact.txt)
// is a known-answer test in payloads.spec.ts.

import { CipherSuite, DhkemP256HkdfSha256, HkdfSha256, Aes128Gcm } from "@hpke/core";
import { type JWK, calculateJwkThumbprint } from "jose";

export const HPKE_ALG = "HPKE-0";

/** A public HPKE-0 key as it travels: EC P-256, with its `kid` (the RFC 7638 thumbprint unless set otherwise). */
export interface HpkePublicJwk extends JWK {
  kty: "EC";
  crv: "P-256";
  x: string;
  y: string;
  kid: string;
}

/** Any refusal to decrypt: `reason` is safe to show (it never contains plaintext). */
export class HpkeJweError extends Error {
  override name = "HpkeJweError";
  constructor(readonly reason: string) {
    super(`the JWE cannot be decrypted: ${reason}`);
  }
}

const suite = new CipherSuite({ kem: new DhkemP256HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });

/** The header parameters this profile writes; anything else in a received header is refused. */
const ALLOWED_HEADER = new Set(["alg", "kid", "typ", "cty"]);
/** An uncompressed P-256 point, the only encapsulated secret DHKEM(P-256) makes. */
const ENCAPSULATED_SECRET_BYTES = 65;

function assertP256(jwk: JWK, what: string): void {
  if (jwk.kty !== "EC" || jwk.crv !== "P-256" || typeof jwk.x !== "string" || typeof jwk.y !== "string") {
    throw new HpkeJweError(`${what} is not an EC P-256 key`);
  }
  if (jwk.alg !== undefined && jwk.alg !== HPKE_ALG) throw new HpkeJweError(`${what} is for ${jwk.alg}, not ${HPKE_ALG}`);
}

/** RFC 7638 SHA-256 thumbprint, base64url: the `aud` of a client payload and the default `kid`. */
export function thumbprint(jwk: JWK): Promise<string> {
  return calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } as JWK, "sha256");
}

/** The public half of a key, with exactly the members that travel. */
export async function publicHpkeJwk(jwk: JWK): Promise<HpkePublicJwk> {
  assertP256(jwk, "the key");
  return { kty: "EC", crv: "P-256", x: jwk.x!, y: jwk.y!, kid: jwk.kid ?? (await thumbprint(jwk)), alg: HPKE_ALG, use: "enc" };
}

/** A fresh HPKE-0 key pair as JWKs; the private one also carries the kid. */
export async function generateHpkeKeyPair(): Promise<{ publicJwk: HpkePublicJwk; privateJwk: JWK }> {
  const pair = await suite.kem.generateKeyPair();
  const privateJwk = (await crypto.subtle.exportKey("jwk", pair.privateKey)) as JWK;
  const publicJwk = await publicHpkeJwk(privateJwk);
  return { publicJwk, privateJwk: { kty: "EC", crv: "P-256", x: publicJwk.x, y: publicJwk.y, d: privateJwk.d, kid: publicJwk.kid, alg: HPKE_ALG, use: "enc" } };
}

/** Encrypts `plaintext` to `recipient` (a public HPKE-0 JWK with a kid). `typ`/`cty` go in the protected header. */
export async function encryptCompact(
  plaintext: Uint8Array | string,
  recipient: JWK,
  header: { typ?: string; cty?: string } = {},
): Promise<string> {
  assertP256(recipient, "the recipient key");
  if (recipient.d !== undefined) throw new HpkeJweError("encrypt to a public key, not a private one");
  const kid = recipient.kid ?? (await thumbprint(recipient));
  const protectedHeader = { alg: HPKE_ALG, kid, ...(header.typ ? { typ: header.typ } : {}), ...(header.cty ? { cty: header.cty } : {}) };
  const encodedHeader = Buffer.from(JSON.stringify(protectedHeader), "utf8").toString("base64url");
  const recipientPublicKey = await suite.kem.importKey("jwk", { kty: "EC", crv: "P-256", x: recipient.x, y: recipient.y }, true);
  const bytes = typeof plaintext === "string" ? Buffer.from(plaintext, "utf8") : plaintext;
  const { ct: ciphertext, enc } = await suite.seal({ recipientPublicKey }, bytes, Buffer.from(encodedHeader, "ascii"));
  return [encodedHeader, Buffer.from(enc).toString("base64url"), "", Buffer.from(ciphertext).toString("base64url"), ""].join(".");
}

/** The protected header of a compact JWE, unverified (to route it, e.g. by `kid`). */
export function jweHeader(jwe: string): Record<string, unknown> {
  const parts = jwe.split(".");
  if (parts.length !== 5) throw new HpkeJweError("a compact JWE has five parts");
  try {
    const header: unknown = JSON.parse(Buffer.from(parts[0]!, "base64url").toString("utf8"));
    if (typeof header !== "object" || header === null || Array.isArray(header)) throw new Error("not an object");
    return header as Record<string, unknown>;
  } catch {
    throw new HpkeJweError("the protected header is not a base64url JSON object");
  }
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/**
 * Decrypts a compact HPKE-0 JWE with the recipient's private JWK, after checking every
 * rule of the profile: alg exactly HPKE-0, no enc/ek/zip/crit or other header, the kid
 * of this key, empty IV and tag, a 65-byte encapsulated secret.
 */
export async function decryptCompact(jwe: string, recipientPrivate: JWK): Promise<{ plaintext: Uint8Array; header: Record<string, unknown> }> {
  if (typeof jwe !== "string") throw new HpkeJweError("the JWE is not a string");
  const header = jweHeader(jwe);
  const [encodedHeader, encodedKey, iv, encodedCiphertext, tag] = jwe.split(".") as [string, string, string, string, string];
  // Canonical base64url only: one payload has one spelling, so a digest or a duplicate
  // check over the JWE string identifies it (unused trailing bits would give it others).
  const canonical = (part: string) => BASE64URL.test(part) && Buffer.from(part, "base64url").toString("base64url") === part;
  if (![encodedHeader, encodedKey, encodedCiphertext].every(canonical)) throw new HpkeJweError("a part is not canonical base64url");
  if (header.alg !== HPKE_ALG) throw new HpkeJweError(`alg must be ${HPKE_ALG}`);
  const unexpected = Object.keys(header).filter((name) => !ALLOWED_HEADER.has(name));
  if (unexpected.length > 0) throw new HpkeJweError(`header parameters not allowed with ${HPKE_ALG} Integrated Encryption: ${unexpected.join(", ")}`);
  if (iv !== "" || tag !== "") throw new HpkeJweError("the IV and tag must be empty for Integrated Encryption");
  assertP256(recipientPrivate, "the recipient key");
  if (typeof recipientPrivate.d !== "string") throw new HpkeJweError("decryption needs the private key");
  const kid = recipientPrivate.kid ?? (await thumbprint(recipientPrivate));
  if (header.kid !== kid) throw new HpkeJweError("the JWE is for another key (kid)");
  const enc = Buffer.from(encodedKey, "base64url");
  if (enc.length !== ENCAPSULATED_SECRET_BYTES) throw new HpkeJweError("the encapsulated secret is not a P-256 point");
  let recipientKey: Awaited<ReturnType<typeof suite.kem.importKey>>;
  try {
    recipientKey = await suite.kem.importKey("jwk", { kty: "EC", crv: "P-256", x: recipientPrivate.x, y: recipientPrivate.y, d: recipientPrivate.d }, false);
  } catch {
    throw new HpkeJweError("the recipient key cannot be imported");
  }
  try {
    const plaintext = await suite.open({ recipientKey, enc }, Buffer.from(encodedCiphertext, "base64url"), Buffer.from(encodedHeader, "ascii"));
    return { plaintext: new Uint8Array(plaintext), header };
  } catch {
    throw new HpkeJweError("decryption failed (wrong key, or the JWE was altered)");
  }
}
