// chai 6 ships no type declarations (and @types/chai is not installed), so these
// tests use node:assert to keep `tsc --noEmit` clean.
import assert from "node:assert/strict";
import { X509Certificate, createPrivateKey, generateKeyPairSync } from "node:crypto";
import { cp, mkdtemp, readdir, readFile, rm, stat, unlink, writeFile } from "node:fs/promises";
import { once } from "node:events";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import type { AddressInfo } from "node:net";
import forge from "node-forge";

import { COMPONENTS, identityUri } from "../../protocol/identity.js";
import { certificateParts } from "../../../mesh/x509.js";
import { writeBundle } from "../../../mesh/bundle.js";
import { makeTestPki } from "../../../test/support/test-pki.js";
import type { TestPki } from "../../../test/support/test-pki.js";
import { runPkiCommand } from "./cli.js";
import { ensureDevPki } from "./dev-pki.js";
import { loadPem, pkiPaths } from "./layout.js";
import {
  KEY_TYPES,
  createCertificateAuthority,
  describeCertificate,
  issueComponentCertificate,
  issueLeafCertificate,
  issueOperatorCertificate,
  parseSubjectAltName,
} from "./pki.js";
import type { CertificateAndKey } from "./pki.js";

const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

const x509 = (pair: CertificateAndKey) => new X509Certificate(pair.certPem);

describe("pki", function () {
  let pki: TestPki;
  const temps: string[] = [];
  const tempDir = async () => {
    const dir = await mkdtemp(join(tmpdir(), "hello-mesh-pki-spec-"));
    temps.push(dir);
    return dir;
  };
  /** A copy of the shared test PKI, to damage at will. */
  const copyOfTestPki = async () => {
    const dir = await tempDir();
    await cp(pki.root, dir, { recursive: true });
    return dir;
  };

  before(async function () {
    this.timeout(120_000);
    const started = performance.now();
    pki = await makeTestPki();
    console.log(`      (makeTestPki: ${Math.round(performance.now() - started)} ms)`);
  });
  after(async () => {
    await Promise.all(temps.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  describe("certificates", () => {
    it("a component certificate names exactly its component and verifies only against its own CA", () => {
      for (const component of COMPONENTS) {
        const leaf = x509(pki.leaf(component));
        const described = describeCertificate(pki.leaf(component).certPem);
        assert.deepEqual(described.uris, [identityUri(component)]);
        assert.ok(described.dnsNames.includes("localhost"));
        assert.deepEqual(described.ipAddresses, ["127.0.0.1", "0:0:0:0:0:0:0:1"]);
        assert.deepEqual(leaf.keyUsage, [SERVER_AUTH, CLIENT_AUTH]);
        assert.equal(leaf.ca, false);

        const ownCa = x509(pki.ca(component));
        assert.ok(leaf.checkIssued(ownCa));
        assert.ok(leaf.verify(ownCa.publicKey));
        for (const other of COMPONENTS.filter((c) => c !== component)) {
          const otherCa = x509(pki.ca(other));
          assert.equal(leaf.checkIssued(otherCa), false, `${component} leaf vs ${other} CA`);
          assert.equal(leaf.verify(otherCa.publicKey), false, `${component} leaf vs ${other} CA`);
        }
      }
    });

    it("an operator certificate is a client certificate for the operator identity, bound to no host", () => {
      for (const component of COMPONENTS) {
        const operator = x509(pki.operator(component));
        const described = describeCertificate(pki.operator(component).certPem);
        assert.deepEqual(described.uris, [identityUri(component, true)]);
        assert.deepEqual(described.dnsNames, []);
        assert.deepEqual(described.ipAddresses, []);
        assert.deepEqual(operator.keyUsage, [CLIENT_AUTH]);
        assert.ok(operator.verify(x509(pki.ca(component)).publicKey));
      }
    });

    it("a CA is a self-signed CA:true, pathlen 0, that may only sign certificates and CRLs", () => {
      const ca = x509(pki.ca("token"));
      assert.equal(ca.ca, true);
      assert.ok(ca.checkIssued(ca) && ca.verify(ca.publicKey));
      assert.equal(ca.subject, "O=hello-mesh\nCN=hello-mesh token custodian CA");
      assert.equal(ca.publicKey.asymmetricKeyDetails?.modulusLength, 3072);

      const parsed = forge.pki.certificateFromPem(pki.ca("token").certPem);
      const basic = parsed.getExtension("basicConstraints") as { critical: boolean; cA: boolean; pathLenConstraint?: number };
      assert.deepEqual([basic.critical, basic.cA, basic.pathLenConstraint], [true, true, 0]);
      const usage = parsed.getExtension("keyUsage") as Record<string, boolean>;
      assert.deepEqual(
        [usage.critical, usage.keyCertSign, usage.cRLSign, usage.digitalSignature],
        [true, true, true, false],
      );
      assert.ok(parsed.getExtension("subjectKeyIdentifier"));
    });

    it("a leaf's authorityKeyIdentifier is its CA's subjectKeyIdentifier, and its serial is 16 positive bytes", () => {
      const ski = (forge.pki.certificateFromPem(pki.ca("storage").certPem).getExtension("subjectKeyIdentifier") as {
        subjectKeyIdentifier: string;
      }).subjectKeyIdentifier;
      const aki = forge.pki.certificateFromPem(pki.leaf("storage").certPem).getExtension("authorityKeyIdentifier") as {
        value: string;
      };
      // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] ... }
      const keyIdentifier = (forge.asn1.fromDer(aki.value).value as forge.asn1.Asn1[])[0]!.value as string;
      assert.equal(forge.util.bytesToHex(keyIdentifier), ski);

      for (const pair of [pki.ca("storage"), pki.leaf("storage"), pki.operator("storage")]) {
        const serial = x509(pair).serialNumber;
        assert.equal(serial.length, 32, serial);
        assert.ok(parseInt(serial.slice(0, 2), 16) < 0x80, serial);
      }
    });

    it("issueLeafCertificate writes exactly the URI SANs it is given: none, or several", () => {
      const ca = pki.ca("orchestration");
      const keyPem = pki.rogue.keyPem;
      const none = issueLeafCertificate(ca, { uris: [], dnsNames: ["localhost"], client: true, keyPem });
      assert.deepEqual(describeCertificate(none.certPem).uris, []);
      assert.deepEqual(describeCertificate(none.certPem).dnsNames, ["localhost"]);

      const two = [identityUri("orchestration"), identityUri("token")];
      const several = issueLeafCertificate(ca, { uris: two, client: true, keyPem });
      assert.deepEqual(describeCertificate(several.certPem).uris, two);

      const nothing = issueLeafCertificate(ca, { uris: [], keyPem });
      assert.equal(x509(nothing).subjectAltName, undefined);
      assert.equal(x509(nothing).keyUsage, undefined); // no extKeyUsage at all, rather than an empty one
      assert.deepEqual(describeCertificate(nothing.certPem).uris, []);

      // keyPem: the given key is certified, not a new one.
      assert.ok(x509(several).checkPrivateKey(createPrivateKey(keyPem)));
      assert.equal(several.keyPem, keyPem);
    });

    it("the attacker's certificates are what their names say", () => {
      const orchestrationCa = x509(pki.ca("orchestration"));
      assert.deepEqual(describeCertificate(pki.rogue.certPem).uris, [identityUri("orchestration")]);
      assert.equal(x509(pki.rogue).verify(orchestrationCa.publicKey), false);
      assert.ok(x509(pki.rogue).verify(x509(pki.rogueCa).publicKey));

      assert.deepEqual(describeCertificate(pki.impostor.certPem).uris, [identityUri("orchestration")]);
      assert.ok(x509(pki.impostor).verify(x509(pki.ca("token")).publicKey));
      assert.deepEqual(x509(pki.impostor).keyUsage, [SERVER_AUTH, CLIENT_AUTH]);

      assert.deepEqual(describeCertificate(pki.noUri.certPem).uris, []);
      assert.deepEqual(describeCertificate(pki.twoUris.certPem).uris, [identityUri("orchestration"), identityUri("token")]);
      assert.deepEqual(describeCertificate(pki.foreignDomain.certPem).uris, ["spiffe://evil.example/orchestration"]);
      for (const bad of [pki.noUri, pki.twoUris, pki.foreignDomain]) assert.ok(x509(bad).verify(orchestrationCa.publicKey));
    });

    it("describeCertificate is not fooled by a SAN value that looks like another entry", () => {
      const smuggled = `x, URI:${identityUri("token")}`;
      const leaf = issueLeafCertificate(pki.ca("orchestration"), {
        uris: [identityUri("orchestration")],
        dnsNames: [smuggled],
        keyPem: pki.rogue.keyPem,
      });
      const described = describeCertificate(leaf.certPem);
      assert.deepEqual(described.uris, [identityUri("orchestration")]);
      assert.deepEqual(described.dnsNames, [smuggled]);
      assert.deepEqual(parseSubjectAltName('DNS:"a\\u002cb", URI:spiffe://x'), [
        { type: "DNS", value: "a,b" },
        { type: "URI", value: "spiffe://x" },
      ]);
    });

    it("refuses to sign with a key that is not the CA's, or with a certificate that is not a CA", () => {
      const mismatched = { certPem: pki.ca("orchestration").certPem, keyPem: pki.ca("token").keyPem };
      assert.throws(() => issueLeafCertificate(mismatched, { uris: [], keyPem: pki.rogue.keyPem }), /does not match/);
      assert.throws(() => issueLeafCertificate(pki.leaf("orchestration"), { uris: [], keyPem: pki.rogue.keyPem }), /not a CA/);
    });
  });

  describe("key types", () => {
    const NODE_KEY_TYPE = { rsa: "rsa", p256: "ec", ed25519: "ed25519" } as const;

    it("a CA of each key type (RSA, P-256, Ed25519) issues component and operator leaves of each, which OpenSSL verifies", () => {
      for (const caType of KEY_TYPES) {
        const ca = createCertificateAuthority("encryption", { keyType: caType });
        const caX509 = x509(ca);
        assert.equal(caX509.publicKey.asymmetricKeyType, NODE_KEY_TYPE[caType]);
        assert.ok(caX509.ca && caX509.checkIssued(caX509) && caX509.verify(caX509.publicKey), caType);
        for (const leafType of KEY_TYPES) {
          const label = `${leafType} leaf under a ${caType} CA`;
          for (const leaf of [
            issueComponentCertificate(ca, "encryption", { keyType: leafType }),
            issueOperatorCertificate(ca, "encryption", { keyType: leafType }),
          ]) {
            const cert = x509(leaf);
            assert.equal(cert.publicKey.asymmetricKeyType, NODE_KEY_TYPE[leafType], label);
            assert.ok(cert.checkIssued(caX509) && cert.verify(caX509.publicKey), label);
            assert.ok(cert.checkPrivateKey(createPrivateKey(leaf.keyPem)), label);
            assert.equal(describeCertificate(leaf.certPem).issuer, "O=hello-mesh, CN=hello-mesh encryption custodian CA");
          }
          const described = describeCertificate(issueComponentCertificate(ca, "encryption", { keyType: leafType }).certPem);
          assert.deepEqual(described.uris, [identityUri("encryption")], label);
        }
      }
    });

    it("an EC or Ed25519 leaf may sign but not encipher keys; an RSA leaf may do both", () => {
      const ca = createCertificateAuthority("token", { keyType: "p256" });
      const keyUsage = (pem: string) => {
        // KeyUsage ::= BIT STRING { digitalSignature (0), nonRepudiation (1), keyEncipherment (2), ... }
        const value = certificateParts(new X509Certificate(pem).raw).extensions.find((e) => e.oid === "2.5.29.15")!.value;
        assert.equal(value[0], 0x03); // BIT STRING
        return { digitalSignature: (value[3]! & 0x80) !== 0, keyEncipherment: (value[3]! & 0x20) !== 0 };
      };
      for (const keyType of ["p256", "ed25519"] as const) {
        const usage = keyUsage(issueComponentCertificate(ca, "token", { keyType }).certPem);
        assert.deepEqual([usage.digitalSignature, usage.keyEncipherment], [true, false], keyType);
      }
      const rsa = keyUsage(issueComponentCertificate(ca, "token", { keyType: "rsa" }).certPem);
      assert.deepEqual([rsa.digitalSignature, rsa.keyEncipherment], [true, true]);
    });

    it("refuses to sign with a CA key of another type, naming the ones it can", () => {
      const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey.export({ type: "pkcs8", format: "pem" }) as string;
      assert.throws(() => createCertificateAuthority("token", { keyPem: p384 }), /type ec \(secp384r1\) cannot sign here: use rsa, p256, ed25519/);
    });
  });

  describe("TLS", () => {
    interface Outcome {
      /** The client certificate's subjectaltname as the server saw it, when the handshake succeeded. */
      peerSan?: string;
      /** Why the server refused the client certificate. Node's server sends no alert for this: it just closes. */
      authorizationError?: string;
    }

    /** A server like a mesh component's: its own leaf, and client certificates required from the Orchestration CA. */
    async function handshake(client: CertificateAndKey): Promise<Outcome> {
      const server = tls.createServer({
        cert: pki.leaf("token").certPem,
        key: pki.leaf("token").keyPem,
        ca: pki.ca("orchestration").certPem,
        requestCert: true,
        rejectUnauthorized: true,
      });
      const outcome = new Promise<Outcome>((resolve) => {
        server.once("secureConnection", (socket: tls.TLSSocket) => {
          resolve({ peerSan: socket.getPeerCertificate().subjectaltname });
          socket.end();
        });
        server.once("tlsClientError", (_error, socket) => resolve({ authorizationError: String(socket.authorizationError) }));
      });
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
      const socket = tls.connect({
        host: "127.0.0.1", // checked against the server's IP SAN
        port: (server.address() as AddressInfo).port,
        ca: pki.ca("token").certPem,
        cert: client.certPem,
        key: client.keyPem,
      });
      // The client may or may not hear of the server's refusal; the server's verdict is what counts.
      socket.on("error", () => {});
      try {
        return await outcome;
      } finally {
        socket.destroy();
        server.close();
      }
    }

    it("a server trusting the Orchestration CA accepts the orchestration leaf and sees its URI", async () => {
      const outcome = await handshake(pki.leaf("orchestration"));
      assert.equal(outcome.authorizationError, undefined);
      assert.match(outcome.peerSan ?? "", new RegExp(`URI:${identityUri("orchestration")}(,|$)`));
    });

    it("the handshake fails for a leaf from an unknown CA, even one copying the trusted CA's name", async () => {
      const outcome = await handshake(pki.rogue);
      assert.equal(outcome.peerSan, undefined);
      assert.equal(outcome.authorizationError, "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    });
  });

  describe("ensureDevPki", () => {
    async function snapshot(root: string): Promise<Map<string, { mode: number; content?: string }>> {
      const files = new Map<string, { mode: number; content?: string }>();
      for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
        const path = join(entry.parentPath, entry.name);
        const mode = (await stat(path)).mode & 0o777;
        files.set(path, entry.isDirectory() ? { mode } : { mode, content: await readFile(path, "utf8") });
      }
      return files;
    }

    it("is idempotent: a second run creates nothing and changes nothing; keys are 0600, directories 0700", async () => {
      const before = await snapshot(pki.root);
      const lines: string[] = [];
      assert.deepEqual(await ensureDevPki(pki.root, { log: (line) => lines.push(line) }), { created: false });
      assert.deepEqual(lines, []);
      assert.deepEqual(await snapshot(pki.root), before);

      assert.equal(before.size, COMPONENTS.length * 7); // a directory and six files each
      for (const [path, { mode, content }] of before) {
        if (content === undefined) assert.equal(mode, 0o700, path);
        else if (path.endsWith(".key")) assert.equal(mode, 0o600, path);
      }
    });

    it("makes only what is missing, certifying keys left without certificates", async () => {
      const root = await copyOfTestPki();
      const storage = pkiPaths(root, "storage");
      const orchestration = pkiPaths(root, "orchestration");
      await unlink(storage.caCert);
      await unlink(orchestration.operatorCert);
      const unchanged = await readFile(orchestration.cert, "utf8");

      const lines: string[] = [];
      assert.deepEqual(await ensureDevPki(root, { log: (line) => lines.push(line) }), { created: true });
      assert.equal(lines.length, 2, lines.join("\n"));

      const operator = new X509Certificate(await readFile(orchestration.operatorCert, "utf8"));
      assert.ok(operator.checkPrivateKey(createPrivateKey(await readFile(orchestration.operatorKey, "utf8"))));
      assert.equal(await readFile(orchestration.cert, "utf8"), unchanged);
      // The storage CA was re-certified from its old key, so its existing leaves still verify.
      const storageCa = new X509Certificate(await readFile(storage.caCert, "utf8"));
      assert.ok(new X509Certificate(await readFile(storage.cert, "utf8")).verify(storageCa.publicKey));
      assert.deepEqual(await ensureDevPki(root), { created: false });
    });

    it("refuses leaves that the CA on disk did not issue, telling the user to start over", async () => {
      const root = await copyOfTestPki();
      const orchestration = pkiPaths(root, "orchestration");
      const token = pkiPaths(root, "token");
      await cp(token.caCert, orchestration.caCert);
      await cp(token.caKey, orchestration.caKey);
      await assert.rejects(ensureDevPki(root), /orchestration\.crt was not issued by .*ca\.crt.*delete .*orchestration/);
    });

    it("says how to add a hostname that existing certificates lack", async () => {
      const lines: string[] = [];
      await ensureDevPki(pki.root, { hostnames: ["mesh.internal"], log: (line) => lines.push(line) });
      assert.equal(lines.length, COMPONENTS.length);
      assert.match(lines[0]!, /lacks mesh\.internal.*hello pki issue orchestration --dir .* --hostname mesh\.internal/);
    });
  });

  describe("hello pki", () => {
    function output() {
      const log: string[] = [];
      const error: string[] = [];
      return { log, error, out: { log: (line: string) => log.push(line), error: (line: string) => error.push(line) } };
    }

    it("init-ca creates a CA, and refuses to overwrite it", async function () {
      this.timeout(30_000);
      const dir = await tempDir();
      const first = output();
      assert.equal(await runPkiCommand(["init-ca", "encryption", "--dir", dir], first.out), 0, first.error.join("\n"));
      const paths = pkiPaths(dir, "encryption");
      const caPem = await loadPem(paths.caCert);
      assert.equal(new X509Certificate(caPem).ca, true);
      assert.equal((await stat(paths.caKey)).mode & 0o777, 0o600);

      const second = output();
      assert.equal(await runPkiCommand(["init-ca", "encryption", "--dir", dir], second.out), 1);
      assert.match(second.error.join("\n"), /refusing to overwrite/);
      assert.equal(await loadPem(paths.caCert), caPem);
    });

    it("issue --operator issues the operator certificate from the custodian's CA, and reissuing rotates it", async () => {
      const dir = await copyOfTestPki();
      const paths = pkiPaths(dir, "storage");
      const previous = await loadPem(paths.operatorCert);

      const result = output();
      assert.equal(await runPkiCommand(["issue", "storage", "--operator", "--dir", dir], result.out), 0, result.error.join("\n"));
      assert.match(result.log.join("\n"), /rotated/);
      const operatorPem = await loadPem(paths.operatorCert);
      assert.notEqual(operatorPem, previous);
      assert.deepEqual(describeCertificate(operatorPem).uris, [identityUri("storage", true)]);
      assert.ok(new X509Certificate(operatorPem).verify(x509(pki.ca("storage")).publicKey));
      assert.ok(new X509Certificate(operatorPem).checkPrivateKey(createPrivateKey(await loadPem(paths.operatorKey))));
    });

    it("init-ca and issue --key-type make P-256 and Ed25519 CAs and leaves; rsa stays the default", async () => {
      const dir = await tempDir();
      const run = async (args: string[]) => {
        const result = output();
        assert.equal(await runPkiCommand([...args, "--dir", dir], result.out), 0, result.error.join("\n"));
      };
      await run(["init-ca", "token", "--key-type", "p256"]);
      await run(["issue", "token", "--key-type", "ed25519"]);
      await run(["issue", "token", "--operator"]);
      const paths = pkiPaths(dir, "token");
      const ca = new X509Certificate(await loadPem(paths.caCert));
      const leaf = new X509Certificate(await loadPem(paths.cert));
      const operator = new X509Certificate(await loadPem(paths.operatorCert));
      assert.deepEqual(
        [ca.publicKey.asymmetricKeyDetails?.namedCurve, leaf.publicKey.asymmetricKeyType, operator.publicKey.asymmetricKeyType],
        ["prime256v1", "ed25519", "rsa"],
      );
      assert.ok(leaf.verify(ca.publicKey) && operator.verify(ca.publicKey));
      assert.ok(leaf.checkPrivateKey(createPrivateKey(await loadPem(paths.key))));
    });

    it("an unknown --key-type is a usage error naming the valid ones", async () => {
      for (const args of [["init-ca", "token", "--key-type", "dsa"], ["issue", "token", "--key-type", "P-384"]]) {
        const result = output();
        assert.equal(await runPkiCommand(args, result.out), 2, args.join(" "));
        assert.match(result.error[0]!, /unknown key type ".*": expected one of rsa, p256, ed25519/);
      }
    });

    it("issue without a CA fails naming the missing file and the command that makes it", async () => {
      const result = output();
      const dir = await tempDir();
      assert.equal(await runPkiCommand(["issue", "token", "--dir", dir], result.out), 1);
      assert.match(result.error.join("\n"), /missing .*token\/ca\.crt.*hello pki init-ca token --dir/);
    });

    it("a bad component is a usage error naming the valid ones", async () => {
      const result = output();
      assert.equal(await runPkiCommand(["issue", "tokens"], result.out), 2);
      assert.match(result.error[0]!, /unknown component "tokens": expected one of orchestration, token, encryption, storage/);
      assert.match(result.error.join("\n"), /usage: hello pki/);
    });

    it("unknown commands and options are usage errors; help is not", async () => {
      for (const args of [["frobnicate"], [], ["issue", "token", "--frob"], ["show"], ["dev", "extra"]]) {
        const result = output();
        assert.equal(await runPkiCommand(args, result.out), 2, args.join(" "));
        assert.match(result.error.join("\n"), /usage: hello pki/);
      }
      const help = output();
      assert.equal(await runPkiCommand(["help"], help.out), 0);
      assert.match(help.log.join("\n"), /usage: hello pki/);
    });

    it("show describes a certificate", async () => {
      const result = output();
      const file = pkiPaths(pki.root, "token").cert;
      assert.equal(await runPkiCommand(["show", file], result.out), 0);
      assert.match(result.log.join("\n"), new RegExp(`uris: +${identityUri("token")}\n`));
      assert.match(result.log.join("\n"), /issuer: +O=hello-mesh, CN=hello-mesh token custodian CA/);
    });

    it("show reads a mesh bundle by its CA, and --pem prints that CA for a TLS client's ca_file (issue 18)", async () => {
      const dir = await tempDir();
      const caPem = await readFile(pkiPaths(pki.root, "storage").caCert, "utf8");
      await writeBundle(dir, { component: "storage", ca: caPem, jwks: { keys: [] } });
      const bundle = join(dir, "storage.json");
      const described = output();
      assert.equal(await runPkiCommand(["show", bundle], described.out), 0);
      assert.match(described.log.join("\n"), /subject: +O=hello-mesh, CN=hello-mesh storage custodian CA/);
      const pem = output();
      assert.equal(await runPkiCommand(["show", bundle, "--pem"], pem.out), 0);
      assert.equal(pem.log.join("\n"), caPem.trim());
      assert.equal(new X509Certificate(pem.log.join("\n")).fingerprint256, new X509Certificate(caPem).fingerprint256);
      const junk = join(dir, "junk.json");
      await writeFile(junk, JSON.stringify({ component: "storage" }));
      const refused = output();
      assert.equal(await runPkiCommand(["show", junk, "--pem"], refused.out), 1);
      assert.match(refused.error.join("\n"), /junk\.json is not a mesh bundle: it has no "ca" certificate/);
    });
  });
});
