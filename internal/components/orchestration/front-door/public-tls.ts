// The front door's own TLS (issue 18, item 8): the certificate apps and browsers see at
// the issuer, from its custodian's files (any key type Node reads: RSA, P-256,
// Ed25519), TLS 1.2 at least, reloaded when the files change on disk. Nothing here is
// the mesh's: the public certificate is usually a public CA's, for the issuer's host.
//
// A pair is checked before it is served: each file reads and parses, the key is the
// certificate's, the certificate names the issuer's host and has not expired, and
// OpenSSL takes the pair. At start a pair that fails stops the start, naming the file;
// at a reload it is reported and the pair in force stays.

import { X509Certificate, createPrivateKey, type KeyObject } from "node:crypto";
import { readFileSync, watch } from "node:fs";
import { isIP } from "node:net";
import path from "node:path";
import tls from "node:tls";

/** The custodian's files: the leaf (optionally followed by intermediates), its key, and an optional chain file. */
export interface PublicTlsFiles {
  readonly cert: string;
  readonly key: string;
  readonly chain?: string;
}

export class PublicTlsError extends Error {
  override name = "PublicTlsError";
}

/** TLS 1.2 at least (RFC 9325 §3.1.1); Node's defaults choose the ciphers. */
export const PUBLIC_TLS_MIN_VERSION = "TLSv1.2";

/** A checked pair, ready for https.createServer or setSecureContext. */
export interface PublicTlsPair {
  readonly options: tls.SecureContextOptions;
  /** The leaf's SHA-256 fingerprint, as Node prints it ("AB:CD:…"), for the log. */
  readonly fingerprint256: string;
  readonly notAfter: Date;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new PublicTlsError(`the front door's TLS ${what} ${file} cannot be read (${code === "ENOENT" ? "it does not exist" : code})`);
  }
}

function certificatesIn(file: string, what: string): { pem: string; x509: X509Certificate }[] {
  const blocks = readText(file, what).match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new PublicTlsError(`the front door's TLS ${what} ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return blocks.map((pem, i) => {
    try {
      return { pem, x509: new X509Certificate(pem) };
    } catch (error) {
      throw new PublicTlsError(`the front door's TLS ${what} ${file}: certificate ${i + 1} does not parse (${(error as Error).message})`);
    }
  });
}

/** Whether `x509` is valid for `host`, a DNS name or an IP address (without brackets). */
function names(x509: X509Certificate, host: string): boolean {
  return isIP(host) ? x509.checkIP(host) !== undefined : x509.checkHost(host) !== undefined;
}

/**
 * Reads and checks the pair in `files` for an issuer at `issuerHost` (URL.hostname).
 * Throws a PublicTlsError naming the file at fault.
 */
export function loadPublicTls(files: PublicTlsFiles, issuerHost: string, now = new Date()): PublicTlsPair {
  const [leaf, ...bundled] = certificatesIn(files.cert, "certificate");
  const chain = files.chain ? certificatesIn(files.chain, "certificate chain") : [];
  const keyPem = readText(files.key, "key");
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (error) {
    throw new PublicTlsError(`the front door's TLS key ${files.key} is not a private key Node can read (unencrypted PEM: ${(error as Error).message})`);
  }
  if (!leaf!.x509.checkPrivateKey(key)) {
    throw new PublicTlsError(`the front door's TLS certificate ${files.cert} and key ${files.key} are not a pair: the certificate certifies another key`);
  }
  const host = issuerHost.replace(/^\[(.*)\]$/, "$1");
  if (!names(leaf!.x509, host)) {
    throw new PublicTlsError(`the front door's TLS certificate ${files.cert} does not name ${host}, the issuer's host (its names: ${leaf!.x509.subjectAltName ?? leaf!.x509.subject})`);
  }
  const notAfter = new Date(leaf!.x509.validTo);
  if (notAfter <= now) throw new PublicTlsError(`the front door's TLS certificate ${files.cert} expired on ${notAfter.toISOString()}`);
  const options: tls.SecureContextOptions = {
    // The leaf first, then what the cert file bundles, then the chain file: what clients get.
    cert: [leaf!, ...bundled, ...chain].map((c) => c.pem).join("\n"),
    key: keyPem,
    minVersion: PUBLIC_TLS_MIN_VERSION,
  };
  try {
    tls.createSecureContext(options);
  } catch (error) {
    throw new PublicTlsError(`the front door's TLS certificate ${files.cert} and key ${files.key} are refused by TLS: ${(error as Error).message}`);
  }
  return { options, fingerprint256: leaf!.x509.fingerprint256, notAfter };
}

export type PublicTlsReload = { readonly pair: PublicTlsPair } | { readonly error: unknown };

/**
 * Calls `reloaded` with a new checked pair (or why there is none) when any of `files`
 * changes; returns the stop function. It watches the files' directories and, after
 * 200 ms of quiet (a certificate and key written one after the other load together),
 * compares what the files hold with what it last saw: a file renamed over (a careful
 * writer, certbot's symlinks) or a Kubernetes secret volume, which swaps a `..data`
 * symlink and never names the file itself, is seen alike, and other files' changes are not.
 */
export function watchPublicTls(files: PublicTlsFiles, issuerHost: string, reloaded: (outcome: PublicTlsReload) => void): () => void {
  const watched = [files.cert, files.key, ...(files.chain ? [files.chain] : [])];
  const contents = () => watched.map((file) => {
    try {
      return readFileSync(file, "utf8");
    } catch {
      return "";
    }
  }).join("\0");
  let seen = contents();
  let timer: NodeJS.Timeout | undefined;
  const look = () => {
    const now = contents();
    if (now === seen) return;
    seen = now;
    try {
      reloaded({ pair: loadPublicTls(files, issuerHost) });
    } catch (error) {
      reloaded({ error });
    }
  };
  const watchers = [...new Set(watched.map((file) => path.dirname(path.resolve(file))))].map((dir) => {
    const watcher = watch(dir, () => {
      clearTimeout(timer);
      timer = setTimeout(look, 200);
    });
    // A directory that goes away: said once; the pair in force stays until a restart.
    watcher.on("error", (error) => reloaded({ error: new PublicTlsError(`the front door's TLS files can no longer be watched in ${dir} (${error.message}); restart to load new ones`) }));
    return watcher;
  });
  return () => {
    clearTimeout(timer);
    for (const watcher of watchers) watcher.close();
  };
}
