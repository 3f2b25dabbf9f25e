// The development PKI that `hello start` makes on first run: all four custodians'
// material under one root (see layout.ts). Production custodians use `hello pki
// init-ca` / `issue` instead; nothing here is ever run silently outside `hello start`.
//
// Existing files are never overwritten. Whatever is missing is made, from the CA
// already on disk when there is one, so an interrupted run simply resumes.

import { X509Certificate, createPrivateKey } from "node:crypto";
import { readFile } from "node:fs/promises";

import { COMPONENTS } from "../../protocol/identity.js";
import type { Component } from "../../protocol/identity.js";
import { isNotFound, pkiPaths } from "./layout.js";
import { writeFileAtomic } from "../../fs/write-file-atomic.js";
import {
  createCertificateAuthority,
  describeCertificate,
  issueComponentCertificate,
  issueOperatorCertificate,
} from "./pki.js";
import type { CertificateAndKey } from "./pki.js";

export interface EnsureDevPkiOptions {
  /** Extra DNS names for the component leaves (besides localhost). */
  hostnames?: string[];
  log?: (line: string) => void;
}

export async function ensureDevPki(root: string, options: EnsureDevPkiOptions = {}): Promise<{ created: boolean }> {
  let created = false;
  for (const component of COMPONENTS) {
    if (await ensureCustodian(root, component, options)) created = true;
  }
  return { created };
}

/** Makes what is missing of one custodian's material; returns whether it wrote anything. */
async function ensureCustodian(root: string, component: Component, options: EnsureDevPkiOptions): Promise<boolean> {
  const log = options.log ?? (() => {});
  const paths = pkiPaths(root, component);
  const startOver = `delete ${paths.dir} and run again to make a fresh set`;
  let created = false;

  let caCertPem = await readIfExists(paths.caCert);
  const caKeyPem = await readIfExists(paths.caKey);
  let ca: CertificateAndKey | undefined;
  if (caCertPem === undefined) {
    // Either nothing yet, or a key left by an interrupted run: certify that key, since
    // leaves already issued under it (none, normally) stay valid.
    ca = createCertificateAuthority(component, { keyPem: caKeyPem });
    caCertPem = ca.certPem;
    await writePair(paths.caCert, paths.caKey, ca, caKeyPem === undefined);
    log(`${component}: created CA ${paths.caCert}`);
    created = true;
  } else if (caKeyPem !== undefined) {
    ca = { certPem: caCertPem, keyPem: caKeyPem };
  }
  // else: a CA certificate without its key can still vouch for existing leaves, but
  // cannot issue missing ones; issueMissing says so if it has to.
  const caX509 = new X509Certificate(caCertPem);

  const leaves = [
    {
      label: `${component} certificate`,
      certPath: paths.cert,
      keyPath: paths.key,
      issue: (signer: CertificateAndKey, keyPem: string | undefined) =>
        issueComponentCertificate(signer, component, { hostnames: options.hostnames, keyPem }),
    },
    {
      label: `${component} operator certificate`,
      certPath: paths.operatorCert,
      keyPath: paths.operatorKey,
      issue: (signer: CertificateAndKey, keyPem: string | undefined) =>
        issueOperatorCertificate(signer, component, { keyPem }),
    },
  ];
  for (const leaf of leaves) {
    const certPem = await readIfExists(leaf.certPath);
    const keyPem = await readIfExists(leaf.keyPath);
    if (certPem !== undefined) {
      if (keyPem === undefined) throw new Error(`${leaf.certPath} exists but ${leaf.keyPath} is missing; ${startOver}`);
      const x509 = new X509Certificate(certPem);
      if (!x509.checkIssued(caX509) || !x509.verify(caX509.publicKey)) {
        throw new Error(`${leaf.certPath} was not issued by ${paths.caCert} (the CA changed?); ${startOver}`);
      }
      if (!x509.checkPrivateKey(createPrivateKey(keyPem))) {
        throw new Error(`${leaf.keyPath} is not the key of ${leaf.certPath}; ${startOver}`);
      }
      if (leaf.certPath === paths.cert) hintMissingHostnames(component, root, certPem, options);
      continue;
    }
    if (ca === undefined) {
      throw new Error(`cannot issue the missing ${leaf.certPath}: ${paths.caKey} is missing; ${startOver}`);
    }
    // A key without its certificate is what an interrupted run leaves: certify it.
    await writePair(leaf.certPath, leaf.keyPath, leaf.issue(ca, keyPem), keyPem === undefined);
    log(`${component}: issued ${leaf.label} ${leaf.certPath}`);
    created = true;
  }
  return created;
}

/** Key first, so an interruption leaves a key without a certificate, which the next run certifies. */
async function writePair(certPath: string, keyPath: string, pair: CertificateAndKey, writeKey: boolean): Promise<void> {
  if (writeKey) await writeFileAtomic(keyPath, pair.keyPem, { secret: true });
  await writeFileAtomic(certPath, pair.certPem, { secret: false });
}

/** Existing leaves are kept, so a newly asked-for hostname is not in them: say how to get it. */
function hintMissingHostnames(component: Component, root: string, certPem: string, options: EnsureDevPkiOptions): void {
  const present = new Set(describeCertificate(certPem).dnsNames);
  const missing = (options.hostnames ?? []).filter((hostname) => !present.has(hostname));
  if (missing.length === 0 || !options.log) return;
  const flags = (options.hostnames ?? []).map((hostname) => ` --hostname ${hostname}`).join("");
  options.log(
    `${component}: existing certificate lacks ${missing.join(", ")}; ` +
      `reissue it with \`hello pki issue ${component} --dir ${root}${flags}\``,
  );
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}
