// Where one custodian's PKI material lives on disk.
//
//   <root>/                        default "certs/", mode 0700
//     <component>/                 one directory per custodian, mode 0700
//       ca.crt                     the custodian's CA certificate (shared with peers)
//       ca.key                     its private key (0600; never leaves the custodian)
//       <component>.crt            the component's leaf: spiffe://hello.mesh/<component>
//       <component>.key            (0600)
//       operator.crt               the operator's leaf: spiffe://hello.mesh/<component>/operator
//       operator.key               (0600)
//
// In development (`hello start`) all four custodians share one root; in production
// each custodian holds only its own directory plus its peers' ca.crt.

import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { MeshCredentials } from "../../../mesh/server.js";

import { isComponent } from "../../protocol/identity.js";
import type { Component } from "../../protocol/identity.js";

export const DEFAULT_PKI_ROOT = "certs";

export interface PkiPaths {
  /** `<root>/<component>` */
  dir: string;
  caCert: string;
  caKey: string;
  cert: string;
  key: string;
  operatorCert: string;
  operatorKey: string;
}

export function pkiPaths(root: string, component: Component): PkiPaths {
  const dir = join(root, component);
  return {
    dir,
    caCert: join(dir, "ca.crt"),
    caKey: join(dir, "ca.key"),
    cert: join(dir, `${component}.crt`),
    key: join(dir, `${component}.key`),
    operatorCert: join(dir, "operator.crt"),
    operatorKey: join(dir, "operator.key"),
  };
}

/** Reads a PEM file, failing with the file's name and the command that creates it. */
export async function loadPem(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if (isNotFound(error)) {
      throw new Error(`missing ${path}: ${makerOf(path)}`, { cause: error });
    }
    throw error;
  }
}

export function isNotFound(error: unknown): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === "ENOENT";
}

/** The `hello pki` command that makes the file at `path`, judged by the layout above. */
function makerOf(path: string): string {
  const file = basename(path);
  const component = basename(dirname(path));
  const root = dirname(dirname(path));
  const generic = "create it with `hello pki`, or `hello pki dev` for a development PKI";
  if (!isComponent(component)) return generic;
  const dir = root === DEFAULT_PKI_ROOT ? "" : ` --dir ${root}`;
  const command = {
    "ca.crt": `init-ca ${component}`,
    "ca.key": `init-ca ${component}`,
    [`${component}.crt`]: `issue ${component}`,
    [`${component}.key`]: `issue ${component}`,
    "operator.crt": `issue ${component} --operator`,
    "operator.key": `issue ${component} --operator`,
  }[file];
  return command ? `create it with \`hello pki ${command}${dir}\` (or \`hello pki dev${dir}\` for development)` : generic;
}

/** `component`'s custodian's operator certificate and key, from a certificates directory laid out by `hello pki`. */
export function operatorCredentials(certsDir: string, component: Component): MeshCredentials {
  const paths = pkiPaths(certsDir, component);
  return { certPem: readFileSync(paths.operatorCert, "utf8"), keyPem: readFileSync(paths.operatorKey, "utf8") };
}
