// mesh/x509.ts reads what a peer chose to send: it must read the honest certificates of
// every key type exactly, refuse everything that is not strict DER of the expected
// shape, and never throw anything but MalformedCertificateError.

import { X509Certificate } from "node:crypto";
import { expect } from "chai";
import fc from "fast-check";
import { COMPONENTS, identityUri } from "../internal/protocol/identity.js";
import { AuthenticationError, TrustStore } from "./trust.js";
import { MalformedCertificateError, certificateParts, uriSubjectAltNames } from "./x509.js";
import { type TestPki, makeTestPki, malformedSanCertificates } from "../test/support/test-pki.js";
import { KEY_TYPES, createCertificateAuthority, issueComponentCertificate, issueOperatorCertificate } from "../internal/ops/pki/pki.js";

const rawOf = (pem: string) => Buffer.from(new X509Certificate(pem).raw);

/** Why `read` refused, or "read" when it did not. */
function refusal(read: () => unknown): string {
  try {
    read();
    return "read";
  } catch (error) {
    if (!(error instanceof MalformedCertificateError)) throw error;
    return error.message;
  }
}

describe("mesh/x509: strict reading of a peer's certificate", function () {
  let pki: TestPki;
  before(async () => (pki = await makeTestPki()));

  it("reads the one URI SAN of honest certificates of every key type, under CAs of every key type", function () {
    for (const caType of KEY_TYPES) {
      const ca = caType === "rsa" ? pki.ca("storage") : createCertificateAuthority("storage", { keyType: caType });
      for (const keyType of KEY_TYPES) {
        const options = keyType === "rsa" ? { keyPem: pki.rogue.keyPem } : { keyType };
        expect(uriSubjectAltNames(rawOf(issueComponentCertificate(ca, "storage", options).certPem))).to.deep.equal([identityUri("storage")]);
        expect(uriSubjectAltNames(rawOf(issueOperatorCertificate(ca, "storage", options).certPem))).to.deep.equal([identityUri("storage", true)]);
      }
      expect(uriSubjectAltNames(rawOf(ca.certPem)), "a CA has no SAN").to.deep.equal([]);
    }
    expect(uriSubjectAltNames(rawOf(pki.twoUris.certPem))).to.deep.equal([identityUri("orchestration"), identityUri("token")]);
    expect(uriSubjectAltNames(rawOf(pki.noUri.certPem))).to.deep.equal([]);
  });

  it("refuses each malformed subjectAltName with a reason that quotes nothing from the certificate", function () {
    const malformed = malformedSanCertificates(pki.ca("orchestration"), identityUri("orchestration"), pki.rogue.keyPem);
    const reasons = Object.fromEntries(Object.entries(malformed).map(([name, pair]) => [name, refusal(() => uriSubjectAltNames(rawOf(pair.certPem)))]));
    expect(reasons).to.deep.equal({
      "two subjectAltName extensions": "two subjectAltName extensions",
      "a subjectAltName that is not GeneralNames": "a subjectAltName entry that is not a GeneralName",
      "an empty GeneralNames": "an empty subjectAltName",
      "bytes after the GeneralNames": "bytes after the subjectAltName",
      "an indefinite-length GeneralNames (BER)": "an indefinite length (BER, not DER)",
      "a constructed URI entry": "a subjectAltName entry that is not a GeneralName",
      "a GeneralName tag that does not exist": "a subjectAltName entry that is not a GeneralName",
      "a URI with a byte outside IA5": "a subjectAltName entry with a byte outside IA5 (ASCII)",
      "an over-long URI": "a URI SAN longer than 2048 bytes",
      // well-formed: these are the identity rule's to refuse (TrustStore.authenticate)
      "a URI with a NUL in it": "read",
      "a URI ending in a newline": "read",
      "zero URI SANs": "read",
      "two URI SANs": "read",
    });
  });

  it("TrustStore.authenticate turns every one of them into an AuthenticationError", function () {
    const trust = new TrustStore(new Map(COMPONENTS.map((c) => [c, pki.ca(c).certPem])));
    for (const [name, pair] of Object.entries(malformedSanCertificates(pki.ca("orchestration"), identityUri("orchestration"), pki.rogue.keyPem))) {
      expect(() => trust.authenticate(new X509Certificate(pair.certPem)), name).to.throw(AuthenticationError);
    }
  });

  describe("DER, and nothing more lenient", function () {
    let honest: Buffer;
    before(() => (honest = rawOf(pki.leaf("token").certPem)));

    /** The certificate with its outer length (30 82 hh ll) written with a needless leading zero octet. */
    const withPaddedLength = () => Buffer.concat([Buffer.from([0x30, 0x83, 0x00]), honest.subarray(2)]);

    it("refuses trailing bytes, truncation, non-minimal and indefinite lengths", function () {
      expect(refusal(() => certificateParts(honest))).to.equal("read");
      expect(honest.subarray(0, 2)).to.deep.equal(Buffer.from([0x30, 0x82]));
      expect(refusal(() => certificateParts(Buffer.concat([honest, Buffer.from([0])])))).to.equal("bytes after the certificate");
      expect(refusal(() => certificateParts(honest.subarray(0, honest.length - 1)))).to.equal("a truncated element");
      expect(refusal(() => certificateParts(withPaddedLength()))).to.equal("a length that is not minimally encoded");
      expect(refusal(() => certificateParts(Buffer.from([0x30, 0x80, 0x00, 0x00])))).to.equal("an indefinite length (BER, not DER)");
      expect(refusal(() => certificateParts(Buffer.from([0x30, 0x81, 0x05, 1, 2, 3, 4, 5])))).to.equal("a length that is not minimally encoded");
      expect(refusal(() => certificateParts(Buffer.from([0x3f, 0x81, 0x01, 0x00])))).to.equal("a high tag number");
      expect(refusal(() => certificateParts(Buffer.from([0x30, 0x00])))).to.match(/Certificate that is not/);
    });

    it("throws nothing but MalformedCertificateError on any bytes, and on any corruption of a real certificate", function () {
      const readsOrRefuses = (bytes: Uint8Array) => {
        refusal(() => uriSubjectAltNames(bytes)); // rethrows anything else
        return true;
      };
      fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), readsOrRefuses), { numRuns: 2_000 });
      fc.assert(
        fc.property(fc.array(fc.tuple(fc.nat(honest.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), (edits) => {
          const corrupted = Buffer.from(honest);
          for (const [at, byte] of edits) corrupted[at] = byte;
          return readsOrRefuses(corrupted);
        }),
        { numRuns: 2_000 },
      );
    });
  });
});
