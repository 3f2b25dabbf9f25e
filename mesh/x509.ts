// Strict reading of the few parts of an X.509 certificate (RFC 5280) that the mesh
// relies on (and, at the end, the one-line DER writer `hello pki` builds them with): the subjectAltName URIs that carry a peer's identity, and the names, key
// and key identifier `hello pki` needs from a CA. Works on the DER Node hands us
// (`X509Certificate.raw`, `PeerCertificate.raw`), whatever the key type.
//
// Why a reader of our own rather than a library: node-forge parses certificates only
// with RSA keys (it threw on a P-256 peer, and the throw crashed the server), and its
// generic `asn1.fromDer` is BER-lenient (indefinite lengths, non-minimal lengths, no
// high tag numbers, bit strings guessed to hold ASN.1), which is the wrong default for
// input chosen by an attacker. The X.509 libraries that parse every key type (pkijs,
// @peculiar/x509) bring several packages and a WebCrypto engine for what is here a
// walk down five levels of TLVs. So this reads DER and nothing else: definite,
// minimal lengths; low tag numbers; every byte accounted for; and it refuses (throws
// MalformedCertificateError, whose message never quotes the certificate) anything it
// does not expect rather than guessing. OpenSSL has parsed the certificate before us;
// this is the second reader, and it must never be the more forgiving one.

export class MalformedCertificateError extends Error {
  override name = "MalformedCertificateError";
}

/** One DER element: its identifier, its contents and its whole encoding. */
interface Tlv {
  /** The identifier octet: class, constructed bit and tag number (< 31). */
  readonly identifier: number;
  /** 0 universal, 1 application, 2 context-specific, 3 private. */
  readonly cls: number;
  readonly constructed: boolean;
  readonly tag: number;
  readonly contents: Buffer;
  /** The whole element, identifier and length included. */
  readonly der: Buffer;
}

// Identifier octets of the universal types read and written here (X.690 §8.1.2).
export const BOOLEAN = 0x01;
export const INTEGER = 0x02;
export const BIT_STRING = 0x03;
export const OCTET_STRING = 0x04;
export const NULL = 0x05;
export const OID = 0x06;
export const UTC_TIME = 0x17;
export const GENERALIZED_TIME = 0x18;
export const SEQUENCE = 0x30;
const CONTEXT = 2;

/** RFC 5280 §4.2.1.6, 2.5.29.17. */
export const SUBJECT_ALT_NAME = "2.5.29.17";
/** RFC 5280 §4.2.1.2, 2.5.29.14. */
export const SUBJECT_KEY_IDENTIFIER = "2.5.29.14";

/** The SPIFFE ID limit (SPIFFE-ID §2.3): a longer URI is refused before anything reads it. */
export const MAX_URI_BYTES = 2048;

/** GeneralName tags (RFC 5280 §4.2.1.6) and whether each is encoded constructed. */
const GENERAL_NAME_CONSTRUCTED: readonly boolean[] = [
  true, // [0] otherName
  false, // [1] rfc822Name (IA5String)
  false, // [2] dNSName (IA5String)
  true, // [3] x400Address
  true, // [4] directoryName (EXPLICIT Name)
  true, // [5] ediPartyName
  false, // [6] uniformResourceIdentifier (IA5String)
  false, // [7] iPAddress (OCTET STRING)
  false, // [8] registeredID (OBJECT IDENTIFIER)
];
const URI = 6;
const IA5_NAMES = new Set([1, 2, URI]);

function malformed(what: string): never {
  throw new MalformedCertificateError(what);
}

/** Reads the element that starts at `offset`; `buf` is the enclosing contents. */
function readTlv(buf: Buffer, offset: number): { tlv: Tlv; next: number } {
  if (offset + 2 > buf.length) malformed("a truncated element");
  const identifier = buf[offset]!;
  const tag = identifier & 0x1f;
  if (tag === 0x1f) malformed("a high tag number"); // nothing the mesh reads has one
  let position = offset + 2;
  let length = buf[offset + 1]!;
  if (length >= 0x80) {
    const octets = length & 0x7f;
    if (octets === 0) malformed("an indefinite length (BER, not DER)");
    if (octets > 3) malformed("an element longer than 16 MiB");
    if (position + octets > buf.length) malformed("a truncated length");
    if (buf[position] === 0) malformed("a length that is not minimally encoded");
    length = 0;
    for (let i = 0; i < octets; i++) length = length * 256 + buf[position + i]!;
    if (length < 0x80) malformed("a length that is not minimally encoded");
    position += octets;
  }
  if (position + length > buf.length) malformed("a truncated element");
  const end = position + length;
  return {
    tlv: {
      identifier,
      cls: identifier >> 6,
      constructed: (identifier & 0x20) !== 0,
      tag,
      contents: buf.subarray(position, end),
      der: buf.subarray(offset, end),
    },
    next: end,
  };
}

/** `buf` as exactly one element, with nothing after it. */
function readOnly(buf: Buffer, what: string): Tlv {
  const { tlv, next } = readTlv(buf, 0);
  if (next !== buf.length) malformed(`bytes after the ${what}`);
  return tlv;
}

/** The elements inside a constructed element, all of its contents. */
function elementsOf(tlv: Tlv, what: string): Tlv[] {
  if (!tlv.constructed) malformed(`a primitive ${what}`);
  const elements: Tlv[] = [];
  for (let offset = 0; offset < tlv.contents.length; ) {
    const { tlv: element, next } = readTlv(tlv.contents, offset);
    elements.push(element);
    offset = next;
  }
  return elements;
}

function isUniversal(tlv: Tlv | undefined, identifier: number): tlv is Tlv {
  return tlv !== undefined && tlv.identifier === identifier;
}

function isContext(tlv: Tlv | undefined, tag: number, constructed: boolean): tlv is Tlv {
  return tlv !== undefined && tlv.identifier === (0x80 | (constructed ? 0x20 : 0) | tag);
}

function expectUniversal(tlv: Tlv | undefined, identifier: number, what: string): Tlv {
  if (!isUniversal(tlv, identifier)) malformed(`${what} missing or of the wrong type`);
  return tlv;
}

/** A dotted OBJECT IDENTIFIER, minimally encoded. */
function oidOf(tlv: Tlv): string {
  const bytes = tlv.contents;
  if (bytes.length === 0) malformed("an empty object identifier");
  const arcs: number[] = [];
  let value = 0;
  let fresh = true;
  for (const byte of bytes) {
    if (fresh && byte === 0x80) malformed("an object identifier that is not minimally encoded");
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER) malformed("an object identifier arc too large");
    fresh = (byte & 0x80) === 0;
    if (fresh) {
      arcs.push(value);
      value = 0;
    }
  }
  if (!fresh) malformed("a truncated object identifier");
  const first = arcs[0]!;
  const root = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...root, ...arcs.slice(1)].join(".");
}

export interface Extension {
  /** Dotted object identifier, e.g. "2.5.29.17". */
  readonly oid: string;
  readonly critical: boolean;
  /** The contents of extnValue: the DER of the extension's own value. */
  readonly value: Buffer;
}

/** What the mesh reads of a certificate. */
export interface CertificateParts {
  /** DER of the issuer Name, byte for byte. */
  readonly issuer: Buffer;
  /** DER of the subject Name, byte for byte. */
  readonly subject: Buffer;
  /** DER of the SubjectPublicKeyInfo. */
  readonly subjectPublicKeyInfo: Buffer;
  readonly extensions: readonly Extension[];
}

/**
 * Walks Certificate → TBSCertificate → Extensions, checking the shape of every field on
 * the way (RFC 5280 §4.1) and that no extension appears twice (§4.2: "A certificate
 * MUST NOT include more than one instance of a particular extension").
 */
export function certificateParts(der: Uint8Array): CertificateParts {
  const buf = Buffer.isBuffer(der) ? der : Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const certificate = elementsOf(expectUniversal(readOnly(buf, "certificate"), SEQUENCE, "the Certificate"), "Certificate");
  if (certificate.length !== 3) malformed("a Certificate that is not {tbsCertificate, signatureAlgorithm, signature}");
  const tbs = elementsOf(expectUniversal(certificate[0], SEQUENCE, "the TBSCertificate"), "TBSCertificate");
  expectUniversal(certificate[1], SEQUENCE, "the signatureAlgorithm");
  expectUniversal(certificate[2], BIT_STRING, "the signature");

  let next = 0;
  let version = 0; // v1, the DEFAULT
  if (isContext(tbs[0], 0, true)) {
    const [versionInteger, ...rest] = elementsOf(tbs[0], "version");
    expectUniversal(versionInteger, INTEGER, "the version");
    if (rest.length > 0 || versionInteger!.contents.length !== 1 || versionInteger!.contents[0]! > 2) malformed("an unknown version");
    version = versionInteger!.contents[0]!;
    next = 1;
  }
  expectUniversal(tbs[next++], INTEGER, "the serialNumber");
  expectUniversal(tbs[next++], SEQUENCE, "the signature algorithm");
  const issuer = expectUniversal(tbs[next++], SEQUENCE, "the issuer").der;
  expectUniversal(tbs[next++], SEQUENCE, "the validity");
  const subject = expectUniversal(tbs[next++], SEQUENCE, "the subject").der;
  const subjectPublicKeyInfo = expectUniversal(tbs[next++], SEQUENCE, "the subjectPublicKeyInfo").der;
  if (isContext(tbs[next], 1, false)) next++; // issuerUniqueID
  if (isContext(tbs[next], 2, false)) next++; // subjectUniqueID
  let extensions: Extension[] = [];
  if (isContext(tbs[next], 3, true)) {
    if (version !== 2) malformed("extensions in a certificate that is not v3");
    const [sequence, ...rest] = elementsOf(tbs[next]!, "extensions");
    if (rest.length > 0) malformed("more than one Extensions sequence");
    extensions = elementsOf(expectUniversal(sequence, SEQUENCE, "the Extensions"), "Extensions").map(extensionOf);
    if (extensions.length === 0) malformed("an empty Extensions sequence");
    next++;
  }
  if (next !== tbs.length) malformed("unexpected fields in the TBSCertificate");

  const seen = new Set<string>();
  for (const { oid } of extensions) {
    if (seen.has(oid)) malformed(oid === SUBJECT_ALT_NAME ? "two subjectAltName extensions" : "an extension that appears twice");
    seen.add(oid);
  }
  return { issuer, subject, subjectPublicKeyInfo, extensions };
}

function extensionOf(tlv: Tlv): Extension {
  const fields = elementsOf(expectUniversal(tlv, SEQUENCE, "an Extension"), "Extension");
  const oid = oidOf(expectUniversal(fields[0], OID, "an extension's extnID"));
  let critical = false;
  let next = 1;
  if (isUniversal(fields[1], BOOLEAN)) {
    const value = fields[1].contents;
    if (value.length !== 1 || (value[0] !== 0x00 && value[0] !== 0xff)) malformed("an extension's critical flag is not a DER BOOLEAN");
    critical = value[0] === 0xff;
    next = 2;
  }
  const value = expectUniversal(fields[next], OCTET_STRING, "an extension's extnValue").contents;
  if (fields.length !== next + 1) malformed("unexpected fields in an Extension");
  return { oid, critical, value };
}

/** One entry of a GeneralNames sequence: its tag (6 for a URI) and its contents. */
export interface GeneralName {
  readonly tag: number;
  readonly value: Buffer;
}

/**
 * The certificate's subjectAltName entries, or [] without the extension. Refuses a SAN
 * that is not a DER GeneralNames of at least one entry (RFC 5280 §4.2.1.6), an entry
 * of a tag that GeneralName does not have or of the wrong form, an IA5String (URI,
 * DNS, email) with a byte outside 0x00..0x7f, and a URI longer than MAX_URI_BYTES.
 */
export function subjectAltNames(parts: CertificateParts): GeneralName[] {
  const extension = parts.extensions.find((e) => e.oid === SUBJECT_ALT_NAME);
  if (!extension) return [];
  const sequence = readOnly(extension.value, "subjectAltName");
  if (!isUniversal(sequence, SEQUENCE)) malformed("a subjectAltName that is not a GeneralNames sequence");
  const names = elementsOf(sequence, "GeneralNames").map((name): GeneralName => {
    if (name.cls !== CONTEXT || name.tag >= GENERAL_NAME_CONSTRUCTED.length || name.constructed !== GENERAL_NAME_CONSTRUCTED[name.tag]) {
      malformed("a subjectAltName entry that is not a GeneralName");
    }
    if (IA5_NAMES.has(name.tag) && name.contents.some((byte) => byte > 0x7f)) {
      malformed("a subjectAltName entry with a byte outside IA5 (ASCII)");
    }
    if (name.tag === URI && name.contents.length > MAX_URI_BYTES) malformed(`a URI SAN longer than ${MAX_URI_BYTES} bytes`);
    return { tag: name.tag, value: name.contents };
  });
  if (names.length === 0) malformed("an empty subjectAltName");
  return names;
}

/** The URI entries (GeneralName [6]) of the certificate's subjectAltName, in order. */
export function uriSubjectAltNames(der: Uint8Array): string[] {
  return subjectAltNames(certificateParts(der))
    .filter((name) => name.tag === URI)
    .map((name) => name.value.toString("latin1")); // all bytes < 0x80: ASCII
}

/** The subjectKeyIdentifier extension's key identifier, if the certificate has one. */
export function subjectKeyIdentifier(parts: CertificateParts): Buffer | undefined {
  const extension = parts.extensions.find((e) => e.oid === SUBJECT_KEY_IDENTIFIER);
  return extension ? expectUniversal(readOnly(extension.value, "subjectKeyIdentifier"), OCTET_STRING, "the subjectKeyIdentifier").contents : undefined;
}

/** The subjectPublicKey bits of a SubjectPublicKeyInfo (what RFC 5280 §4.2.1.2 method 1 hashes). */
export function subjectPublicKeyBits(spki: Buffer): Buffer {
  const [algorithm, key, ...rest] = elementsOf(expectUniversal(readOnly(spki, "SubjectPublicKeyInfo"), SEQUENCE, "the SubjectPublicKeyInfo"), "SubjectPublicKeyInfo");
  expectUniversal(algorithm, SEQUENCE, "the key algorithm");
  const bits = expectUniversal(key, BIT_STRING, "the subjectPublicKey").contents;
  if (rest.length > 0 || bits.length < 1 || bits[0] !== 0) malformed("a subjectPublicKey that is not whole bytes");
  return bits.subarray(1);
}

/** Writes one DER element: identifier octet, definite minimal length, contents. */
export function der(identifier: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  const octets: number[] = [];
  for (let rest = body.length; rest > 0; rest = Math.floor(rest / 256)) octets.unshift(rest % 256);
  const length = body.length < 0x80 ? [body.length] : [0x80 | octets.length, ...octets];
  return Buffer.concat([Buffer.from([identifier, ...length]), body]);
}
