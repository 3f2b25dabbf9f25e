// What `hello start` makes for its development Issuer Server (issuer.ts) on first run,
// and how the mesh is pointed at it (docs/wallet-server.md):
//
//   <certs>/issuer/                  the issuer's own custodian, mode 0700
//     ca.crt, ca.key                 its CA (P-256): Orchestration pins it for this issuer
//     issuer.crt, issuer.key         its mTLS leaf, server and client (localhost, 127.0.0.1)
//   <certs>/orchestration/
//     wallet-server.crt, .key        the wallet server's mTLS leaf, server and client, issued
//                                    by the orchestration CA, with no mesh identity URI (so it
//                                    is no mesh certificate): the issuer knows us by that CA
//   <stateDir>/issuer/keys.json      its HPKE-0 key (client payloads are encrypted to it) and
//                                    its ES256 key (credentials are signed with it), 0600
//
// Made only when missing, never overwritten, like the rest of the development PKI
// (dev-pki.ts): an interrupted run resumes, and a leaf that no longer matches its CA
// stops the start with how to begin again. Keys are 0600, and certs/ and .hello/ are
// never committed (.gitignore).

import { X509Certificate, createPrivateKey, generateKeyPairSync } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { type JWK, calculateJwkThumbprint } from "jose";
import { z } from "zod";
import { readJsonFile } from "../../fs/read-json-file.js";
import { writeFileAtomic } from "../../fs/write-file-atomic.js";
import { isNotFound, pkiPaths } from "../../ops/pki/layout.js";
import { type CertificateAndKey, createCertificateAuthority, issueLeafCertificate } from "../../ops/pki/pki.js";
import { WALLET_KEYS, loadSigningKeys } from "../../protocol/key-files.js";
import { publicJwk } from "../../protocol/signing-keys.js";
import { type HpkePublicJwk, generateHpkeKeyPair, publicHpkeJwk } from "../../s2s/hpke-jwe.js";
import type { DevIssuerOptions } from "./issuer.js";

/** The development issuer's name for hello-mesh's wallet server, in its books. */
export const WALLET_SERVER_PEER = "hello-mesh";

/** The development issuer's id (and base URL) on `port`. */
export const devIssuerId = (port: number): string => `https://localhost:${port}`;

export interface DevIssuerPaths {
  /** `<certs>/issuer` */
  dir: string;
  caCert: string;
  caKey: string;
  cert: string;
  key: string;
  /** Orchestration's wallet server leaf: `<certs>/orchestration/wallet-server.{crt,key}`. */
  walletServerCert: string;
  walletServerKey: string;
  /** `<stateDir>/issuer/keys.json` */
  keys: string;
}

/** `certs` and `stateDir` absolute, as deriveComponentConfigs resolves them. */
export function devIssuerPaths(certs: string, stateDir: string): DevIssuerPaths {
  const dir = path.join(certs, "issuer");
  const orchestration = pkiPaths(certs, "orchestration").dir;
  return {
    dir,
    caCert: path.join(dir, "ca.crt"),
    caKey: path.join(dir, "ca.key"),
    cert: path.join(dir, "issuer.crt"),
    key: path.join(dir, "issuer.key"),
    walletServerCert: path.join(orchestration, "wallet-server.crt"),
    walletServerKey: path.join(orchestration, "wallet-server.key"),
    keys: path.join(stateDir, "issuer", "keys.json"),
  };
}

/** The issuer's private keys, as keys.json holds them. */
export interface DevIssuerKeys {
  /** HPKE-0: EC P-256 with d, kid, alg HPKE-0. */
  encryptionKey: JWK;
  /** ES256: EC P-256 with d, kid, alg ES256. */
  signingKey: JWK;
}

/** What anyone may know of them: what Token's allow-list holds. */
export interface DevIssuerPublicKeys {
  encryptionKey: HpkePublicJwk;
  signingKey: JWK;
}

const P256 = { kty: z.literal("EC"), crv: z.literal("P-256"), x: z.string().min(1), y: z.string().min(1), d: z.string().min(1), kid: z.string().min(1) };
const KeysFile = z.strictObject({
  encryptionKey: z.looseObject({ ...P256, alg: z.literal("HPKE-0") }),
  signingKey: z.looseObject({ ...P256, alg: z.literal("ES256") }),
});

/**
 * Makes whatever is missing of the development issuer's material (the layout above).
 * The development PKI (ensureDevPki) must exist: the wallet server's leaf is issued by
 * the orchestration CA. `created`: a certificate was made.
 */
export async function ensureDevIssuer(
  certs: string,
  stateDir: string,
  options: { log?: (line: string) => void } = {},
): Promise<{ created: boolean; keys: DevIssuerKeys; paths: DevIssuerPaths }> {
  const log = options.log ?? (() => {});
  const paths = devIssuerPaths(certs, stateDir);
  let created = false;

  // The issuer's CA, certifying a key an interrupted run left if there is one.
  let caCertPem = await readIfExists(paths.caCert);
  let caKeyPem = await readIfExists(paths.caKey);
  if (caCertPem === undefined) {
    const ca = createCertificateAuthority("orchestration", { commonName: "hello-mesh development issuer CA", keyType: "p256", keyPem: caKeyPem });
    await writePair(paths.caCert, paths.caKey, ca, caKeyPem === undefined);
    ({ certPem: caCertPem, keyPem: caKeyPem } = ca);
    log(`development issuer: created CA ${paths.caCert}`);
    created = true;
  }
  const issuerCa = { certPem: caCertPem, keyPem: caKeyPem };
  const leaf = (commonName: string) => (ca: CertificateAndKey, keyPem: string | undefined) =>
    issueLeafCertificate(ca, { keyPem, uris: [], dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], server: true, client: true, keyType: "p256", commonName });

  if (await ensureLeaf(paths.cert, paths.key, issuerCa, paths.caCert, leaf("hello-mesh development issuer"), `delete ${paths.dir} and run again to make a fresh set`)) {
    log(`development issuer: issued its certificate ${paths.cert}`);
    created = true;
  }
  const orchestration = pkiPaths(certs, "orchestration");
  const orchestrationCa = { certPem: await readFile(orchestration.caCert, "utf8"), keyPem: await readIfExists(orchestration.caKey) };
  const walletServerLeaf = leaf("hello-mesh wallet server");
  if (await ensureLeaf(paths.walletServerCert, paths.walletServerKey, orchestrationCa, orchestration.caCert, walletServerLeaf, `delete ${paths.walletServerCert} and ${paths.walletServerKey} and run again`)) {
    log(`orchestration: issued the wallet server's certificate ${paths.walletServerCert}`);
    created = true;
  }

  let keys: DevIssuerKeys;
  if (existsSync(paths.keys)) {
    keys = readJsonFile(KeysFile, paths.keys, "development issuer key file") as DevIssuerKeys;
  } else {
    const encryption = await generateHpkeKeyPair();
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const signing = privateKey.export({ format: "jwk" }) as JWK;
    const kid = await calculateJwkThumbprint({ kty: "EC", crv: "P-256", x: signing.x!, y: signing.y! }, "sha256");
    keys = { encryptionKey: encryption.privateJwk, signingKey: { kty: "EC", crv: "P-256", x: signing.x, y: signing.y, d: signing.d, kid, alg: "ES256", use: "sig" } };
    // exclusive: a key file made meanwhile (another start) is never replaced.
    await writeFileAtomic(paths.keys, `${JSON.stringify(keys, null, 2)}\n`, { secret: true, exclusive: true });
    log(`development issuer: made its encryption and signing keys ${paths.keys}`);
  }
  return { created, keys, paths };
}

/** The public halves: the HPKE-0 key as it travels, the signing key without d. */
export async function publicDevIssuerKeys(keys: DevIssuerKeys): Promise<DevIssuerPublicKeys> {
  const { kty, crv, x, y, kid, alg } = keys.signingKey;
  return { encryptionKey: await publicHpkeJwk(keys.encryptionKey), signingKey: { kty, crv, x, y, kid, alg, use: "sig" } };
}

/** What devIssuerOptions sets of an issuer's options: the rest (timers, reporting) is the runner's. */
export type DevIssuerSetupOptions = Pick<DevIssuerOptions, "issuerId" | "port" | "statusPort" | "certPem" | "keyPem" | "walletServers" | "encryptionKey" | "signingKey">;

/**
 * The development issuer's options as `hello start` runs it: on `port`, its certificate
 * and keys, and hello-mesh's wallet server as its one peer, known by the orchestration
 * CA, reached at https://localhost:<walletPort>, its WSK attestations (`iss` hello-mesh's
 * issuer) checked with the public `wallet` keys of Token's wallet key file.
 */
export function devIssuerOptions(setup: {
  port: number;
  walletPort: number;
  /** Where its status list is published (plain HTTP on 127.0.0.1). */
  statusPort: number;
  paths: DevIssuerPaths;
  keys: DevIssuerKeys;
  /** hello-mesh's issuer (the front door's URL). */
  helloIssuer: string;
  /** The orchestration custodian's CA certificate file. */
  orchestrationCa: string;
  /** Token's wallet key file (keys.wallet). */
  tokenWalletKeys: string;
}): DevIssuerSetupOptions {
  const walletKeys = loadSigningKeys("token", setup.tokenWalletKeys, WALLET_KEYS).filter((key) => key.purpose === "wallet");
  return {
    issuerId: devIssuerId(setup.port),
    port: setup.port,
    statusPort: setup.statusPort,
    certPem: readFileText(setup.paths.cert),
    keyPem: readFileText(setup.paths.key),
    encryptionKey: setup.keys.encryptionKey,
    signingKey: setup.keys.signingKey,
    walletServers: [
      {
        id: WALLET_SERVER_PEER,
        caPem: readFileText(setup.orchestrationCa),
        baseUrl: `https://localhost:${setup.walletPort}`,
        servername: "localhost",
        attestationIssuer: setup.helloIssuer,
        attestationJwks: { keys: walletKeys.map((key) => publicJwk(key)) },
      },
    ],
  };
}

/**
 * Makes a leaf if missing (certifying a key an interrupted run left), or checks the one
 * there against its CA and key; true when it made one.
 */
async function ensureLeaf(
  certPath: string,
  keyPath: string,
  ca: { certPem: string; keyPem: string | undefined },
  caPath: string,
  issue: (ca: CertificateAndKey, keyPem: string | undefined) => CertificateAndKey,
  startOver: string,
): Promise<boolean> {
  const certPem = await readIfExists(certPath);
  const keyPem = await readIfExists(keyPath);
  if (certPem !== undefined) {
    if (keyPem === undefined) throw new Error(`${certPath} exists but ${keyPath} is missing; ${startOver}`);
    const x509 = new X509Certificate(certPem);
    const caX509 = new X509Certificate(ca.certPem);
    if (!x509.checkIssued(caX509) || !x509.verify(caX509.publicKey)) throw new Error(`${certPath} was not issued by ${caPath} (the CA changed?); ${startOver}`);
    if (!x509.checkPrivateKey(createPrivateKey(keyPem))) throw new Error(`${keyPath} is not the key of ${certPath}; ${startOver}`);
    return false;
  }
  if (ca.keyPem === undefined) throw new Error(`cannot issue the missing ${certPath}: the key of ${caPath} is missing; ${startOver}`);
  await writePair(certPath, keyPath, issue({ certPem: ca.certPem, keyPem: ca.keyPem }, keyPem), keyPem === undefined);
  return true;
}

/** Key first, so an interruption leaves a key without a certificate, which the next run certifies. */
async function writePair(certPath: string, keyPath: string, pair: CertificateAndKey, writeKey: boolean): Promise<void> {
  if (writeKey) await writeFileAtomic(keyPath, pair.keyPem, { secret: true });
  await writeFileAtomic(certPath, pair.certPem, { secret: false });
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

const readFileText = (file: string): string => readFileSync(file, "utf8");
