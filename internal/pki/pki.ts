// Certificates of the mesh (DESIGN.md §2): one CA per custodian, and leaves that each
// carry exactly one SPIFFE-style URI SAN naming the component (or its operator).
//
// Everything here is pure: PEM strings in, PEM strings out; files live in layout.ts.
// Key pairs come from Node's native generator (node-forge's pure-JS RSA generation
// costs ~0.4 s a key); forge is used only to assemble and sign the certificates.

import { X509Certificate, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import forge from "node-forge";

import { identityUri } from "../../mesh/identity.js";
import type { Component } from "../../mesh/identity.js";

/** A certificate and its private key, both PEM (key: unencrypted PKCS#8). */
export interface CertificateAndKey {
  certPem: string;
  keyPem: string;
}

export interface CertificateAuthorityOptions {
  /** Default 3650 (ten years): a custodian's CA is long-lived; its leaves are not. */
  validityDays?: number;
  commonName?: string;
  /** Certify this existing key instead of generating one (e.g. after an interrupted run). */
  keyPem?: string;
}

export interface LeafOptions {
  /** URI SANs. The mesh wants exactly one; zero or several are allowed to build bad certs for tests. */
  uris: string[];
  dnsNames?: string[];
  ipAddresses?: string[];
  /** extKeyUsage serverAuth. */
  server?: boolean;
  /** extKeyUsage clientAuth. */
  client?: boolean;
  /** Default 825 days. */
  validityDays?: number;
  commonName?: string;
  /** Certify this existing key instead of generating one. */
  keyPem?: string;
}

export interface CertificateDescription {
  /** Distinguished name, e.g. "O=hello-mesh, CN=hello-mesh token". */
  subject: string;
  issuer: string;
  uris: string[];
  dnsNames: string[];
  ipAddresses: string[];
  notAfter: Date;
  /** SHA-256 fingerprint as Node prints it ("AB:CD:..."). */
  fingerprint256: string;
}

const ORGANIZATION = "hello-mesh";
const CA_KEY_BITS = 3072;
const LEAF_KEY_BITS = 2048;
const DAY_MS = 24 * 60 * 60 * 1000;
// Certificates are valid from an hour ago, so a peer whose clock is a little behind
// does not reject a certificate minted seconds ago.
const BACKDATE_MS = 60 * 60 * 1000;

// GeneralName tags of subjectAltName (RFC 5280 §4.2.1.6).
const SAN_DNS = 2;
const SAN_URI = 6;
const SAN_IP = 7;

export function createCertificateAuthority(
  component: Component,
  options: CertificateAuthorityOptions = {},
): CertificateAndKey {
  const { publicKeyPem, keyPem } = options.keyPem ? existingKeyPair(options.keyPem) : newKeyPair(CA_KEY_BITS);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKeyPem);
  setSerialAndValidity(cert, options.validityDays ?? 3650);
  const name = distinguishedName(options.commonName ?? `hello-mesh ${component} custodian CA`);
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    // pathLen 0: a custodian's CA signs leaves only, never a sub-CA.
    { name: "basicConstraints", critical: true, cA: true, pathLenConstraint: 0 },
    { name: "keyUsage", critical: true, keyCertSign: true, cRLSign: true },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(normalizedPrivateKeyPem(keyPem)), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem };
}

export function issueLeafCertificate(ca: CertificateAndKey, options: LeafOptions): CertificateAndKey {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  assertUsableCa(ca);
  const { publicKeyPem, keyPem } = options.keyPem ? existingKeyPair(options.keyPem) : newKeyPair(LEAF_KEY_BITS);

  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKeyPem);
  setSerialAndValidity(cert, options.validityDays ?? 825);
  cert.setSubject(distinguishedName(options.commonName ?? options.uris[0] ?? options.dnsNames?.[0] ?? "hello-mesh leaf"));
  cert.setIssuer(caCert.subject.attributes);

  const altNames = [
    ...options.uris.map((value) => ({ type: SAN_URI, value })),
    ...(options.dnsNames ?? []).map((value) => ({ type: SAN_DNS, value })),
    ...(options.ipAddresses ?? []).map((ip) => ({ type: SAN_IP, ip })),
  ];
  cert.setExtensions([
    { name: "basicConstraints", critical: true, cA: false },
    { name: "keyUsage", critical: true, digitalSignature: true, keyEncipherment: true },
    // An extension with nothing in it is left out: forge would encode an empty
    // SEQUENCE, which both ExtKeyUsageSyntax and GeneralNames (SIZE 1..MAX) forbid.
    ...(options.server || options.client
      ? [{ name: "extKeyUsage", serverAuth: options.server === true, clientAuth: options.client === true }]
      : []),
    ...(altNames.length > 0 ? [{ name: "subjectAltName", altNames }] : []),
    { name: "subjectKeyIdentifier" },
    { name: "authorityKeyIdentifier", keyIdentifier: subjectKeyIdentifierOf(caCert) },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(normalizedPrivateKeyPem(ca.keyPem)), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem };
}

/** The component's own leaf: it serves the mesh and calls other components, so both usages. */
export function issueComponentCertificate(
  ca: CertificateAndKey,
  component: Component,
  options: { hostnames?: string[]; keyPem?: string } = {},
): CertificateAndKey {
  return issueLeafCertificate(ca, {
    keyPem: options.keyPem,
    uris: [identityUri(component)],
    dnsNames: unique(["localhost", ...(options.hostnames ?? [])]),
    ipAddresses: ["127.0.0.1", "::1"],
    server: true,
    client: true,
    commonName: `hello-mesh ${component}`,
  });
}

/** The custodian's operator: a client only, and bound to no host. */
export function issueOperatorCertificate(
  ca: CertificateAndKey,
  component: Component,
  options: { keyPem?: string } = {},
): CertificateAndKey {
  return issueLeafCertificate(ca, {
    keyPem: options.keyPem,
    uris: [identityUri(component, true)],
    client: true,
    commonName: `hello-mesh ${component} operator`,
  });
}

export function describeCertificate(certPem: string): CertificateDescription {
  const x509 = new X509Certificate(certPem);
  const sans = parseSubjectAltName(x509.subjectAltName ?? "");
  const valuesOf = (type: string) => sans.filter((san) => san.type === type).map((san) => san.value);
  return {
    subject: oneLineName(x509.subject),
    issuer: oneLineName(x509.issuer),
    uris: valuesOf("URI"),
    dnsNames: valuesOf("DNS"),
    ipAddresses: valuesOf("IP Address"),
    notAfter: new Date(x509.validTo),
    fingerprint256: x509.fingerprint256,
  };
}

/**
 * Splits Node's `X509Certificate.subjectAltName` ("DNS:a, URI:b, IP Address:c") into
 * entries. Since CVE-2021-44532 Node writes a value containing a comma, quote or other
 * unsafe character as a JSON string literal (`URI:"spiffe://x,y"`), so a value is either
 * a JSON string or runs up to the next ", ".
 */
export function parseSubjectAltName(text: string): { type: string; value: string }[] {
  const entries: { type: string; value: string }[] = [];
  let rest = text;
  while (rest.length > 0) {
    const colon = rest.indexOf(":");
    if (colon < 0) throw new Error(`unparseable subjectAltName: ${JSON.stringify(text)}`);
    const type = rest.slice(0, colon);
    rest = rest.slice(colon + 1);
    let value: string;
    if (rest.startsWith('"')) {
      const literal = /^"(?:[^"\\]|\\.)*"/.exec(rest);
      if (!literal) throw new Error(`unterminated quoted subjectAltName entry: ${JSON.stringify(text)}`);
      value = JSON.parse(literal[0]) as string;
      rest = rest.slice(literal[0].length);
    } else {
      const end = rest.indexOf(", ");
      value = end < 0 ? rest : rest.slice(0, end);
      rest = end < 0 ? "" : rest.slice(end);
    }
    entries.push({ type, value });
    if (rest.startsWith(", ")) rest = rest.slice(2);
    else if (rest.length > 0) throw new Error(`unparseable subjectAltName: ${JSON.stringify(text)}`);
  }
  return entries;
}

function newKeyPair(modulusLength: number): { publicKeyPem: string; keyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync("rsa", {
    modulusLength,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
  return { publicKeyPem: publicKey, keyPem: privateKey };
}

function existingKeyPair(keyPem: string): { publicKeyPem: string; keyPem: string } {
  const key = createPrivateKey(keyPem);
  // forge signs and certifies RSA keys only.
  if (key.asymmetricKeyType !== "rsa") throw new Error(`expected an RSA private key, got ${key.asymmetricKeyType}`);
  return { publicKeyPem: createPublicKey(key).export({ type: "spki", format: "pem" }) as string, keyPem };
}

/** forge reads PKCS#1 and unencrypted PKCS#8 PEM; round-tripping through Node accepts whatever Node does. */
function normalizedPrivateKeyPem(keyPem: string): string {
  return createPrivateKey(keyPem).export({ type: "pkcs8", format: "pem" }) as string;
}

/** Refuses to sign with something that is not a CA, or with a key that is not the CA's. */
function assertUsableCa(ca: CertificateAndKey): void {
  const x509 = new X509Certificate(ca.certPem);
  if (!x509.ca) throw new Error(`not a CA certificate: ${oneLineName(x509.subject)}`);
  const certKey = x509.publicKey.export({ type: "spki", format: "der" });
  const signingKey = createPublicKey(createPrivateKey(ca.keyPem)).export({ type: "spki", format: "der" });
  if (!certKey.equals(signingKey)) {
    throw new Error(`the CA key does not match the CA certificate (${oneLineName(x509.subject)})`);
  }
}

function setSerialAndValidity(cert: forge.pki.Certificate, validityDays: number): void {
  // 16 random bytes, positive: DER INTEGERs are signed, so the first byte must be
  // < 0x80, and non-zero so the encoding stays minimal.
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) || 0x01;
  cert.serialNumber = serial.toString("hex");
  const now = Date.now();
  cert.validity.notBefore = new Date(now - BACKDATE_MS);
  cert.validity.notAfter = new Date(now + validityDays * DAY_MS);
}

function distinguishedName(commonName: string): forge.pki.CertificateField[] {
  return [
    { shortName: "O", value: ORGANIZATION },
    { shortName: "CN", value: commonName },
  ];
}

/** The CA's subjectKeyIdentifier as a byte string, or (for a CA without one) its RFC 5280 method-1 value. */
function subjectKeyIdentifierOf(caCert: forge.pki.Certificate): string {
  const extension = caCert.getExtension("subjectKeyIdentifier") as { subjectKeyIdentifier?: string } | undefined;
  return extension?.subjectKeyIdentifier
    ? forge.util.hexToBytes(extension.subjectKeyIdentifier)
    : caCert.generateSubjectKeyIdentifier().getBytes();
}

/** Node prints names one attribute per line; one line reads better in logs and errors. */
function oneLineName(name: string): string {
  return name.split("\n").filter(Boolean).join(", ");
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
