// Certificates of the mesh (docs/design.md §2): one CA per custodian, and leaves that each
// carry exactly one SPIFFE-style URI SAN naming the component (or its operator).
//
// Everything here is pure: PEM strings in, PEM strings out; files live in layout.ts.
//
// Keys are RSA (the default), P-256 or Ed25519, for CAs and leaves alike, and come from
// Node's native generator. node-forge can neither certify a key that is not RSA nor sign
// with one, so it only encodes the names and extensions (its encoders are the tested
// part of it); the TBSCertificate is assembled here around the SubjectPublicKeyInfo
// that Node exports, and signed with node:crypto. What we read back from a CA (its
// name, its key identifier) comes from its DER through mesh/x509.ts, whatever its key.

import {
  type KeyObject,
  X509Certificate,
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
} from "node:crypto";
import forge from "node-forge";

import { identityUri } from "../../protocol/identity.js";
import type { Component } from "../../protocol/identity.js";
import {
  BIT_STRING,
  GENERALIZED_TIME,
  INTEGER,
  NULL,
  OID,
  SEQUENCE,
  UTC_TIME,
  certificateParts,
  der,
  subjectKeyIdentifier,
  subjectPublicKeyBits,
} from "../../../mesh/x509.js";

/** A certificate and its private key, both PEM (key: unencrypted PKCS#8). */
export interface CertificateAndKey {
  certPem: string;
  keyPem: string;
}

/** The key types `hello pki` makes. A CA must have one of them to sign; a leaf may certify any key Node reads. */
export const KEY_TYPES = ["rsa", "p256", "ed25519"] as const;
export type KeyType = (typeof KEY_TYPES)[number];

export function isKeyType(value: string): value is KeyType {
  return (KEY_TYPES as readonly string[]).includes(value);
}

export interface CertificateAuthorityOptions {
  /** Default 3650 (ten years): a custodian's CA is long-lived; its leaves are not. */
  validityDays?: number;
  commonName?: string;
  /** Certify this existing key instead of generating one (e.g. after an interrupted run). */
  keyPem?: string;
  /** The type of a generated key; default "rsa" (3072 bits). */
  keyType?: KeyType;
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
  /** The type of a generated key; default "rsa" (2048 bits). */
  keyType?: KeyType;
  /**
   * Tests only: extensions appended exactly as given (extnValue's DER), after the
   * regular ones, to build the malformed certificates an attacker would present.
   */
  rawExtensions?: { oid: string; critical?: boolean; value: Buffer }[];
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
  const { publicKey, keyPem } = options.keyPem ? existingKeyPair(options.keyPem) : newKeyPair(options.keyType ?? "rsa", CA_KEY_BITS);
  const name = distinguishedName(options.commonName ?? `hello-mesh ${component} custodian CA`);
  const certPem = signCertificate({
    subject: name,
    issuer: name,
    publicKey,
    validityDays: options.validityDays ?? 3650,
    extensions: [
      // pathLen 0: a custodian's CA signs leaves only, never a sub-CA.
      { name: "basicConstraints", critical: true, cA: true, pathLenConstraint: 0 },
      { name: "keyUsage", critical: true, keyCertSign: true, cRLSign: true },
      keyIdentifierExtension("subjectKeyIdentifier", keyIdentifierOf(publicKey)),
    ],
    signer: createPrivateKey(keyPem),
  });
  return { certPem, keyPem };
}

export function issueLeafCertificate(ca: CertificateAndKey, options: LeafOptions): CertificateAndKey {
  assertUsableCa(ca);
  const caCert = new X509Certificate(ca.certPem);
  const caParts = certificateParts(caCert.raw);
  const { publicKey, keyPem } = options.keyPem ? existingKeyPair(options.keyPem) : newKeyPair(options.keyType ?? "rsa", LEAF_KEY_BITS);

  const altNames = [
    ...options.uris.map((value) => ({ type: SAN_URI, value })),
    ...(options.dnsNames ?? []).map((value) => ({ type: SAN_DNS, value })),
    ...(options.ipAddresses ?? []).map((ip) => ({ type: SAN_IP, ip })),
  ];
  const certPem = signCertificate({
    subject: distinguishedName(options.commonName ?? options.uris[0] ?? options.dnsNames?.[0] ?? "hello-mesh leaf"),
    // The CA's subject byte for byte, as chain building compares it.
    issuer: caParts.subject,
    publicKey,
    validityDays: options.validityDays ?? 825,
    extensions: [
      { name: "basicConstraints", critical: true, cA: false },
      // keyEncipherment is for RSA key transport; an EC or Ed25519 key only signs.
      { name: "keyUsage", critical: true, digitalSignature: true, keyEncipherment: publicKey.asymmetricKeyType === "rsa" },
      // An extension with nothing in it is left out: forge would encode an empty
      // SEQUENCE, which both ExtKeyUsageSyntax and GeneralNames (SIZE 1..MAX) forbid.
      ...(options.server || options.client
        ? [{ name: "extKeyUsage", serverAuth: options.server === true, clientAuth: options.client === true }]
        : []),
      ...(altNames.length > 0 ? [{ name: "subjectAltName", altNames }] : []),
      keyIdentifierExtension("subjectKeyIdentifier", keyIdentifierOf(publicKey)),
      {
        name: "authorityKeyIdentifier",
        keyIdentifier: (subjectKeyIdentifier(caParts) ?? keyIdentifierOf(caCert.publicKey)).toString("binary"),
      },
      ...(options.rawExtensions ?? []).map((e) => ({ id: e.oid, critical: e.critical === true, value: e.value.toString("binary") })),
    ],
    signer: createPrivateKey(ca.keyPem),
  });
  return { certPem, keyPem };
}

/** The component's own leaf: it serves the mesh and calls other components, so both usages. */
export function issueComponentCertificate(
  ca: CertificateAndKey,
  component: Component,
  options: { hostnames?: string[]; keyPem?: string; keyType?: KeyType } = {},
): CertificateAndKey {
  return issueLeafCertificate(ca, {
    keyPem: options.keyPem,
    keyType: options.keyType,
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
  options: { keyPem?: string; keyType?: KeyType } = {},
): CertificateAndKey {
  return issueLeafCertificate(ca, {
    keyPem: options.keyPem,
    keyType: options.keyType,
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

function newKeyPair(type: KeyType, rsaBits: number): { publicKey: KeyObject; keyPem: string } {
  const { publicKey, privateKey } =
    type === "rsa"
      ? generateKeyPairSync("rsa", { modulusLength: rsaBits })
      : type === "p256"
        ? generateKeyPairSync("ec", { namedCurve: "P-256" })
        : generateKeyPairSync("ed25519");
  return { publicKey, keyPem: privateKey.export({ type: "pkcs8", format: "pem" }) as string };
}

function existingKeyPair(keyPem: string): { publicKey: KeyObject; keyPem: string } {
  return { publicKey: createPublicKey(createPrivateKey(keyPem)), keyPem };
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

// --- assembling and signing a certificate (RFC 5280 §4.1) ---------------------------

type ForgeExtension = Record<string, unknown>;

interface CertificateContents {
  /** forge attributes, or the DER of a Name to copy. */
  subject: forge.pki.CertificateField[] | Buffer;
  issuer: forge.pki.CertificateField[] | Buffer;
  publicKey: KeyObject;
  validityDays: number;
  /** In forge's form (forge encodes each). */
  extensions: ForgeExtension[];
  /** The issuer's private key: RSA, P-256 or Ed25519. */
  signer: KeyObject;
}

function signCertificate(contents: CertificateContents): string {
  const algorithm = signatureAlgorithm(contents.signer);
  // forge's certificate object only holds the names and extensions for its encoders.
  const forgeCert = forge.pki.createCertificate();
  forgeCert.setSubject(Buffer.isBuffer(contents.subject) ? [] : contents.subject);
  forgeCert.setIssuer(Buffer.isBuffer(contents.issuer) ? [] : contents.issuer);
  forgeCert.setExtensions(contents.extensions);
  const subject = Buffer.isBuffer(contents.subject) ? contents.subject : forgeDer(forge.pki.distinguishedNameToAsn1(forgeCert.subject));
  const issuer = Buffer.isBuffer(contents.issuer) ? contents.issuer : forgeDer(forge.pki.distinguishedNameToAsn1(forgeCert.issuer));
  // Exported by node-forge 1.x, missing from @types/node-forge.
  const { certificateExtensionsToAsn1 } = forge.pki as unknown as { certificateExtensionsToAsn1(e: unknown[]): forge.asn1.Asn1 };
  const extensions = forgeDer(certificateExtensionsToAsn1(forgeCert.extensions as unknown[]));

  const now = Date.now();
  const tbs = der(
    SEQUENCE,
    der(0xa0, der(INTEGER, Buffer.from([2]))), // [0] version v3
    der(INTEGER, serialNumber()),
    algorithm.identifier,
    issuer,
    der(SEQUENCE, time(new Date(now - BACKDATE_MS)), time(new Date(now + contents.validityDays * DAY_MS))),
    subject,
    contents.publicKey.export({ type: "spki", format: "der" }),
    extensions,
  );
  const certificate = der(SEQUENCE, tbs, algorithm.identifier, der(BIT_STRING, Buffer.from([0]), algorithm.sign(tbs)));
  // Node reads it back: what we made is a certificate OpenSSL accepts.
  return new X509Certificate(certificate).toString();
}

function forgeDer(asn1: forge.asn1.Asn1): Buffer {
  return Buffer.from(forge.asn1.toDer(asn1).getBytes(), "binary");
}

function oid(dotted: string): Buffer {
  return der(OID, Buffer.from(forge.asn1.oidToDer(dotted).getBytes(), "binary"));
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
function time(date: Date): Buffer {
  return date.getUTCFullYear() < 2050
    ? der(UTC_TIME, Buffer.from(forge.asn1.dateToUtcTime(date), "latin1"))
    : der(GENERALIZED_TIME, Buffer.from(forge.asn1.dateToGeneralizedTime(date), "latin1"));
}

/** 16 random bytes, positive: DER INTEGERs are signed, so the first byte must be < 0x80, and non-zero so the encoding stays minimal. */
function serialNumber(): Buffer {
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) || 0x01;
  return serial;
}

/** The AlgorithmIdentifier a CA key signs under, and the signing itself. */
function signatureAlgorithm(key: KeyObject): { identifier: Buffer; sign(data: Buffer): Buffer } {
  switch (key.asymmetricKeyType) {
    case "rsa": // sha256WithRSAEncryption, parameters NULL (RFC 4055 §5)
      return { identifier: der(SEQUENCE, oid("1.2.840.113549.1.1.11"), der(NULL)), sign: (data) => sign("sha256", data, key) };
    case "ec":
      if (key.asymmetricKeyDetails?.namedCurve === "prime256v1") {
        // ecdsa-with-SHA256, parameters absent (RFC 5758 §3.2); the signature is DER Ecdsa-Sig-Value
        return { identifier: der(SEQUENCE, oid("1.2.840.10045.4.3.2")), sign: (data) => sign("sha256", data, { key, dsaEncoding: "der" }) };
      }
      break;
    case "ed25519": // id-Ed25519, parameters absent (RFC 8410 §3)
      return { identifier: der(SEQUENCE, oid("1.3.101.112")), sign: (data) => sign(null, data, key) };
  }
  const curve = key.asymmetricKeyDetails?.namedCurve;
  throw new Error(`a CA key of type ${key.asymmetricKeyType}${curve ? ` (${curve})` : ""} cannot sign here: use ${KEY_TYPES.join(", ")}`);
}

/** RFC 5280 §4.2.1.2 method 1: the SHA-1 of the subjectPublicKey bits. */
function keyIdentifierOf(publicKey: KeyObject): Buffer {
  return createHash("sha1").update(subjectPublicKeyBits(publicKey.export({ type: "spki", format: "der" }))).digest();
}

function keyIdentifierExtension(name: "subjectKeyIdentifier", keyIdentifier: Buffer): ForgeExtension {
  // With its value given, forge does not derive one from an (RSA-only) public key.
  return { name, value: forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.OCTETSTRING, false, keyIdentifier.toString("binary")) };
}

function distinguishedName(commonName: string): forge.pki.CertificateField[] {
  return [
    { shortName: "O", value: ORGANIZATION },
    { shortName: "CN", value: commonName },
  ];
}

/** Node prints names one attribute per line; one line reads better in logs and errors. */
function oneLineName(name: string): string {
  return name.split("\n").filter(Boolean).join(", ");
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
