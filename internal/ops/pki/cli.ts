// `hello pki`: how a custodian makes its CA and certificates (docs/design.md §2).
// `args` are what follows `hello pki`; the result is the process exit code
// (0 done, 1 refused or failed, 2 usage error).

import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { JWK } from "jose";
import { writeBundle } from "../../../mesh/bundle.js";
import { publicJwk, signingKeyFromJwk } from "../../protocol/signing-keys.js";
import { type CommandOutput, UsageError, componentArgument, hello, parseCommandLine, runSubcommand } from "../cli.js";
import { COMPONENTS } from "../../protocol/identity.js";
import { ensureDevPki } from "./dev-pki.js";
import { DEFAULT_PKI_ROOT, isNotFound, loadPem, pkiPaths } from "./layout.js";
import { writeFileAtomic } from "../../fs/write-file-atomic.js";
import {
  type KeyType,
  KEY_TYPES,
  createCertificateAuthority,
  describeCertificate,
  isKeyType,
  issueComponentCertificate,
  issueOperatorCertificate,
} from "./pki.js";

export const PKI_USAGE = `usage: hello pki <command> [options]

commands:
  init-ca <component> [--key-type ${KEY_TYPES.join("|")}] [--dir ${DEFAULT_PKI_ROOT}]
      create the custodian's CA; refuses to replace an existing one
  issue <component> [--operator] [--hostname <name> ...] [--key-type ${KEY_TYPES.join("|")}] [--dir ${DEFAULT_PKI_ROOT}]
      issue the component's certificate (or, with --operator, its operator's) from
      that custodian's CA; an existing one is replaced (rotation)
  dev [--dir ${DEFAULT_PKI_ROOT}] [--hostname <name> ...]
      make whatever is missing of a development PKI for all four custodians
  bundle <component> [--keys <signing-keys.json>] [--dir ${DEFAULT_PKI_ROOT}] [--out <dir>]
      write the component's mesh bundle (its CA and the public half of its signing
      keys, never a private key) to <out>/<component>.json (default <dir>/bundles),
      for the other custodians
  show <file.crt | bundle.json> [--pem]
      describe a certificate, or a mesh bundle's CA; --pem prints it as PEM instead
      (for a TLS client that trusts that custodian, e.g. Prometheus's ca_file)
  help
      this text

components: ${COMPONENTS.join(", ")}
key types: rsa (the default: 3072 bits for a CA, 2048 for a leaf), p256 (ECDSA P-256),
  ed25519; a CA of any of them signs leaves of any of them
files: <dir>/<component>/{ca,<component>,operator}.{crt,key}`;

export async function runPkiCommand(args: string[], out: CommandOutput): Promise<number> {
  return runSubcommand("pki", PKI_USAGE, args, out, {
    "init-ca": (rest) => initCa(rest, out),
    issue: (rest) => issue(rest, out),
    dev: (rest) => dev(rest, out),
    bundle: (rest) => bundle(rest, out),
    show: (rest) => show(rest, out),
  });
}

// The options more than one command takes.
const DIR = { dir: { type: "string", default: DEFAULT_PKI_ROOT } } as const;
const HOSTNAMES = { hostname: { type: "string", multiple: true, default: [] as string[] } } as const;
const KEY_TYPE = { "key-type": { type: "string", default: "rsa" } } as const;

async function initCa(args: string[], out: CommandOutput): Promise<number> {
  const { values, positionals } = parseCommandLine(args, { ...DIR, ...KEY_TYPE });
  const component = componentArgument(positionals);
  const keyType = keyTypeOption(values["key-type"]);
  const paths = pkiPaths(values.dir, component);
  for (const path of [paths.caCert, paths.caKey]) {
    if (await exists(path)) {
      // A new CA would orphan every certificate the old one issued, and peers trust the old one.
      out.error(`hello pki init-ca: refusing to overwrite the existing ${component} CA (${path}); delete it first if you really mean to replace it`);
      return 1;
    }
  }
  const ca = createCertificateAuthority(component, { keyType });
  await writeFileAtomic(paths.caKey, ca.keyPem, { secret: true });
  await writeFileAtomic(paths.caCert, ca.certPem, { secret: false });
  out.log(`created the ${component} CA: ${paths.caCert} (give this to the other custodians) and ${paths.caKey} (keep it secret)`);
  const dir = values.dir === DEFAULT_PKI_ROOT ? "" : ` --dir ${values.dir}`;
  out.log(`next: ${hello()} pki issue ${component}${dir}, and ${hello()} pki issue ${component} --operator${dir}`);
  return 0;
}

async function issue(args: string[], out: CommandOutput): Promise<number> {
  const { values, positionals } = parseCommandLine(args, { ...DIR, ...HOSTNAMES, ...KEY_TYPE, operator: { type: "boolean", default: false } });
  const component = componentArgument(positionals);
  const keyType = keyTypeOption(values["key-type"]);
  if (values.operator && values.hostname.length > 0) {
    throw new UsageError("--hostname applies to the component certificate; an operator certificate names no host");
  }
  const paths = pkiPaths(values.dir, component);
  const ca = { certPem: await loadPem(paths.caCert), keyPem: await loadPem(paths.caKey) };
  const [certPath, keyPath, leaf] = values.operator
    ? [paths.operatorCert, paths.operatorKey, issueOperatorCertificate(ca, component, { keyType })]
    : [paths.cert, paths.key, issueComponentCertificate(ca, component, { hostnames: values.hostname, keyType })];
  const rotating = await exists(certPath);
  // Key first, as everywhere: each file is replaced atomically, but the pair is not,
  // so a reader in between could see the new key with the old certificate.
  await writeFileAtomic(keyPath, leaf.keyPem, { secret: true });
  await writeFileAtomic(certPath, leaf.certPem, { secret: false });
  const { uris, notAfter } = describeCertificate(leaf.certPem);
  if (rotating) out.log(`rotated: replaced the previous certificate and key at ${certPath} with new ones`);
  out.log(`issued ${certPath} (${uris.join(", ")}, valid until ${notAfter.toISOString()}) and ${keyPath}`);
  return 0;
}

async function dev(args: string[], out: CommandOutput): Promise<number> {
  const { values, positionals } = parseCommandLine(args, { ...DIR, ...HOSTNAMES });
  if (positionals.length > 0) throw new UsageError(`dev takes no arguments, got "${positionals.join(" ")}"`);
  const { created } = await ensureDevPki(values.dir, { hostnames: values.hostname, log: (line) => out.log(line) });
  out.log(created ? `development PKI ready under ${values.dir}` : `development PKI under ${values.dir} is complete; nothing to do`);
  return 0;
}

async function bundle(args: string[], out: CommandOutput): Promise<number> {
  const { values, positionals } = parseCommandLine(args, { ...DIR, keys: { type: "string" }, out: { type: "string" } });
  const component = componentArgument(positionals);
  const ca = await loadPem(pkiPaths(values.dir, component).caCert);
  let keys: object[] = [];
  if (values.keys) {
    const file = JSON.parse(await readFile(values.keys, "utf8")) as { keys?: JWK[] };
    keys = (file.keys ?? []).map((jwk) => publicJwk(signingKeyFromJwk(jwk)));
  }
  const written = await writeBundle(values.out ?? join(values.dir, "bundles"), { component, ca, jwks: { keys: keys as never } });
  out.log(`wrote the ${component} mesh bundle ${written} (${keys.length} public key${keys.length === 1 ? "" : "s"})`);
  return 0;
}

async function show(args: string[], out: CommandOutput): Promise<number> {
  const { values, positionals } = parseCommandLine(args, { pem: { type: "boolean", default: false } });
  const [file, ...extra] = positionals;
  if (file === undefined || extra.length > 0) throw new UsageError("show takes exactly one certificate or mesh bundle file");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if (isNotFound(error)) throw new Error(`no such file: ${file}`, { cause: error });
    throw error;
  }
  // A mesh bundle (<component>.json) is shown by its CA: what a peer or a scraper trusts.
  const pem = text.trimStart().startsWith("{") ? bundleCa(text, file) : text;
  if (values.pem) {
    describeCertificate(pem); // refuses what is not a certificate
    out.log(pem.trim());
    return 0;
  }
  const description = describeCertificate(pem);
  const list = (values: string[]) => values.join(", ") || "(none)";
  out.log(`subject:      ${description.subject}`);
  out.log(`issuer:       ${description.issuer}`);
  out.log(`uris:         ${list(description.uris)}`);
  out.log(`dns names:    ${list(description.dnsNames)}`);
  out.log(`ip addresses: ${list(description.ipAddresses)}`);
  out.log(`not after:    ${description.notAfter.toISOString()}`);
  out.log(`sha256:       ${description.fingerprint256}`);
  return 0;
}

/** The CA certificate of a mesh bundle's text. */
function bundleCa(text: string, file: string): string {
  let bundle: unknown;
  try {
    bundle = JSON.parse(text);
  } catch {
    throw new Error(`${file} is neither a PEM certificate nor a mesh bundle (it is not JSON)`);
  }
  const ca = (bundle as { ca?: unknown }).ca;
  if (typeof ca !== "string") throw new Error(`${file} is not a mesh bundle: it has no "ca" certificate`);
  return ca;
}

function keyTypeOption(value: string): KeyType {
  if (!isKeyType(value)) throw new UsageError(`unknown key type "${value}": expected one of ${KEY_TYPES.join(", ")}`);
  return value;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}
