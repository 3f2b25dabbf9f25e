// What the credential wallet's specs share (docs/wallet-server.md): the development
// issuer's test people as a wallet client sends them, mTLS certificates for an issuer
// or a wallet server, and ES256 key pairs.

import { type JWK, exportJWK, generateKeyPair } from "jose";
import { DEV_PEOPLE } from "../../internal/dev/issuer/registry.js";
import { type CertificateAndKey, createCertificateAuthority, issueLeafCertificate } from "../../internal/ops/pki/pki.js";

/** A person of the development issuer's registry, as the client's person item names them. */
function details(documentNumber: string) {
  const person = DEV_PEOPLE.find((p) => p.documentNumber === documentNumber);
  if (!person) throw new Error(`no ${documentNumber} in the development issuer's registry`);
  return { documentNumber, familyName: person.familyName, birthdate: person.birthdate };
}
/** APPROVED at once (an identity card and a driving licence). */
export const ADA = details("D-1001");
/** ADDITIONAL_INFO_REQUIRED: a proof of address, then APPROVED. */
export const GRACE = details("D-1002");
/** PENDING, until decided. */
export const ALAN = details("D-1003");
/** DENIED. */
export const MALLORY = details("D-1004");
/** APPROVED, issued asynchronously. */
export const KATHERINE = details("D-1005");

/** A CA for an issuer's or a wallet server's mTLS certificates (P-256, quick to make). */
export const s2sCa = (name: string) => createCertificateAuthority("orchestration", { commonName: name, keyType: "p256" });
/** Its leaf, for server and client use on localhost / 127.0.0.1. */
export const s2sLeaf = (ca: CertificateAndKey, name: string) =>
  issueLeafCertificate(ca, { uris: [], dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], server: true, client: true, keyType: "p256", commonName: name });

/** A fresh ES256 key pair as JWKs, with `kid` on both halves when given. */
export async function es256Pair(kid?: string): Promise<{ publicJwk: JWK; privateJwk: JWK }> {
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), ...(kid ? { kid } : {}) };
  const privateJwk = { ...(await exportJWK(privateKey)), ...(kid ? { kid } : {}) };
  return { publicJwk, privateJwk };
}
