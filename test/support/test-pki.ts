// Certificates for the mesh tests, which play the attacker: the four custodians'
// honest material (written in the layout of internal/ops/pki/layout.ts, as `hello start`
// would) plus the certificates an attacker would try.
//
// Key generation dominates the cost, so one PKI is shared by every spec file of a
// mocha run, and the bad leaves all certify one key.

import { rmSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { COMPONENTS, identityUri } from "../../internal/protocol/identity.js";
import type { Component } from "../../internal/protocol/identity.js";
import { ensureDevPki } from "../../internal/ops/pki/dev-pki.js";
import { pkiPaths } from "../../internal/ops/pki/layout.js";
import { createCertificateAuthority, issueComponentCertificate, issueLeafCertificate } from "../../internal/ops/pki/pki.js";
import type { CertificateAndKey } from "../../internal/ops/pki/pki.js";
import { SEQUENCE, SUBJECT_ALT_NAME, der } from "../../mesh/x509.js";

export interface TestPki {
  /** The directory holding `<component>/{ca,<component>,operator}.{crt,key}`. */
  root: string;
  ca(component: Component): CertificateAndKey;
  /** The component's own leaf: `spiffe://hello.mesh/<component>`, server and client. */
  leaf(component: Component): CertificateAndKey;
  /** Its custodian's operator: `spiffe://hello.mesh/<component>/operator`, client only. */
  operator(component: Component): CertificateAndKey;

  /** A fifth CA that nobody trusts. It copies the Orchestration CA's name, but not its key. */
  rogueCa: CertificateAndKey;
  /** Signed by `rogueCa`, claiming `spiffe://hello.mesh/orchestration`: refused in the handshake. */
  rogue: CertificateAndKey;
  /** Signed by the Token CA, claiming `spiffe://hello.mesh/orchestration`: a trusted CA vouching outside its custodian. */
  impostor: CertificateAndKey;
  /** Signed by the Orchestration CA, with no URI SAN at all (DNS localhost only). */
  noUri: CertificateAndKey;
  /** Signed by the Orchestration CA, with two URI SANs (orchestration and token). */
  twoUris: CertificateAndKey;
  /** Signed by the Orchestration CA, with URI `spiffe://evil.example/orchestration`: another trust domain. */
  foreignDomain: CertificateAndKey;

  /** Removes `root`. For the shared PKI this waits for the end of the process, as other spec files use it too. */
  cleanup(): Promise<void>;
}

let shared: Promise<TestPki> | undefined;

/**
 * Without `dir`: the PKI shared by the whole test run, in a temporary directory
 * removed when the process exits. With `dir`: a fresh PKI there (reusing whatever of
 * the honest material is already in it), removed by `cleanup()`.
 */
export function makeTestPki(dir?: string): Promise<TestPki> {
  if (dir !== undefined) return buildTestPki(dir, false);
  if (shared === undefined) {
    shared = (async () => {
      const root = await mkdtemp(join(tmpdir(), "hello-mesh-test-pki-"));
      // Synchronous: the only kind of work an "exit" listener can do.
      process.once("exit", () => rmSync(root, { recursive: true, force: true }));
      return buildTestPki(root, true);
    })();
    // A failed build is not cached: the next spec file makes a fresh attempt (and reports its own error).
    shared.catch(() => (shared = undefined));
  }
  return shared;
}

async function buildTestPki(root: string, isShared: boolean): Promise<TestPki> {
  await ensureDevPki(root);
  const load = async (certPath: string, keyPath: string): Promise<CertificateAndKey> => ({
    certPem: await readFile(certPath, "utf8"),
    keyPem: await readFile(keyPath, "utf8"),
  });
  const cas = new Map<Component, CertificateAndKey>();
  const leaves = new Map<Component, CertificateAndKey>();
  const operators = new Map<Component, CertificateAndKey>();
  for (const component of COMPONENTS) {
    const paths = pkiPaths(root, component);
    cas.set(component, await load(paths.caCert, paths.caKey));
    leaves.set(component, await load(paths.cert, paths.key));
    operators.set(component, await load(paths.operatorCert, paths.operatorKey));
  }
  const get = (map: Map<Component, CertificateAndKey>, component: Component) => {
    const pair = map.get(component);
    if (!pair) throw new Error(`no test certificate for component ${JSON.stringify(component)}`);
    return pair;
  };

  const orchestrationCa = get(cas, "orchestration");
  const rogueCa = createCertificateAuthority("orchestration");
  // The first bad leaf makes the key; the others certify it (they are never used together).
  const rogue = issueComponentCertificate(rogueCa, "orchestration");
  const badLeaf = (ca: CertificateAndKey, uris: string[]) =>
    issueLeafCertificate(ca, {
      uris,
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1", "::1"],
      server: true,
      client: true,
      keyPem: rogue.keyPem,
    });

  return {
    root,
    ca: (component) => get(cas, component),
    leaf: (component) => get(leaves, component),
    operator: (component) => get(operators, component),
    rogueCa,
    rogue,
    impostor: badLeaf(get(cas, "token"), [identityUri("orchestration")]),
    noUri: badLeaf(orchestrationCa, []),
    twoUris: badLeaf(orchestrationCa, [identityUri("orchestration"), identityUri("token")]),
    foreignDomain: badLeaf(orchestrationCa, ["spiffe://evil.example/orchestration"]),
    cleanup: async () => {
      if (!isShared) await rm(root, { recursive: true, force: true });
    },
  };
}

/**
 * Leaves signed by `ca` whose subjectAltName is broken in one way each, all claiming
 * `claim` somewhere and all certifying `keyPem`: what a peer holding a custodian's CA
 * key could present to crash a server or a client. Each must be refused, by OpenSSL in
 * the handshake or by the mesh's own reader (mesh/x509.ts), and crash nothing.
 */
export function malformedSanCertificates(ca: CertificateAndKey, claim: string, keyPem: string): Record<string, CertificateAndKey> {
  const uri = Buffer.from(claim, "latin1");
  const generalNames = (...names: Buffer[]) => der(SEQUENCE, ...names);
  const uriName = (value: Buffer) => der(0x86, value);
  /** A leaf whose only subjectAltName is `san` as given, or that has `uris` the regular way and `san` as a second one. */
  const leaf = (san: Buffer | undefined, uris: string[] = []) =>
    issueLeafCertificate(ca, {
      uris,
      server: true,
      client: true,
      keyPem,
      commonName: "malformed",
      rawExtensions: san ? [{ oid: SUBJECT_ALT_NAME, value: san }] : [],
    });
  return {
    "two subjectAltName extensions": leaf(generalNames(uriName(Buffer.from(identityUri("token")))), [claim]),
    "a subjectAltName that is not GeneralNames": leaf(generalNames(der(0x0c, uri))), // a UTF8String, not a [6]
    "an empty GeneralNames": leaf(generalNames()),
    "bytes after the GeneralNames": leaf(Buffer.concat([generalNames(uriName(uri)), Buffer.from([0, 0])])),
    "an indefinite-length GeneralNames (BER)": leaf(Buffer.concat([Buffer.from([0x30, 0x80]), uriName(uri), Buffer.from([0, 0])])),
    "a constructed URI entry": leaf(generalNames(der(0xa6, der(0x04, uri)))),
    "a GeneralName tag that does not exist": leaf(generalNames(der(0x89, uri), uriName(uri))),
    "a URI with a byte outside IA5": leaf(generalNames(uriName(Buffer.concat([uri, Buffer.from([0xc3, 0xa9])])))),
    "a URI with a NUL in it": leaf(undefined, [`${claim}\u0000/operator`]),
    "a URI ending in a newline": leaf(undefined, [`${claim}\n`]),
    "an over-long URI": leaf(undefined, [`${claim}/${"a".repeat(3000)}`]),
    "zero URI SANs": issueLeafCertificate(ca, { uris: [], dnsNames: ["localhost"], server: true, client: true, keyPem }),
    "two URI SANs": leaf(undefined, [claim, claim]),
  };
}
