// Mesh bundles (docs/design.md §2): what custodians exchange out of band. A component's
// bundle holds its custodian's CA certificate and the public JWKS of its internal
// signing keys; never a private key. A component loads its peers' bundles at start
// and again whenever the bundle directory changes on disk; a reload reaches its mesh
// server (MeshServer.updateTrust) and its clients (trustOfBundles) alike.

import { existsSync, watch } from "node:fs";
import { writeFileAtomic } from "../internal/fs/write-file-atomic.js";
import { readJsonFile } from "../internal/fs/read-json-file.js";
import path from "node:path";
import { z } from "zod";
import { COMPONENTS, type Component } from "../internal/protocol/identity.js";
import { TrustStore } from "./trust.js";
import { FILE_FORMAT, fileFormatMember } from "../internal/protocol/versions.js";

const JwkSchema = z.looseObject({ kty: z.string(), kid: z.string() });

export const BundleSchema = z.strictObject({
  /** Absent in format 1, as this release writes it (internal/protocol/versions.ts). */
  format: fileFormatMember("mesh bundle"),
  component: z.enum(COMPONENTS),
  /** PEM CA certificate of this component's custodian. */
  ca: z.string().startsWith("-----BEGIN CERTIFICATE-----"),
  /** Public keys of the component's internal signing keys (Token, Storage). */
  jwks: z.strictObject({ keys: z.array(JwkSchema) }),
});
export type Bundle = z.infer<typeof BundleSchema>;

export function bundlePath(dir: string, component: Component): string {
  return path.join(dir, `${component}.json`);
}

export function readBundle(dir: string, component: Component): Bundle {
  const file = bundlePath(dir, component);
  if (!existsSync(file)) {
    throw new Error(
      `the ${component} mesh bundle ${file} is missing: ask the ${component} custodian for it (\`hello pki bundle ${component}\` makes it)`,
    );
  }
  const bundle = readJsonFile(BundleSchema, file, "mesh bundle");
  if (bundle.component !== component) throw new Error(`the mesh bundle ${file} is for ${bundle.component}, not ${component}`);
  return bundle;
}

export async function writeBundle(dir: string, bundle: Bundle): Promise<string> {
  const file = bundlePath(dir, bundle.component);
  // Format 1 is written without its number, which the releases before it would refuse.
  const { format, ...rest } = bundle;
  const written = format === undefined || format === FILE_FORMAT ? rest : bundle;
  // Public material: readable by all, but still never seen half-written by a watching peer.
  await writeFileAtomic(file, `${JSON.stringify(written, null, 2)}\n`, { secret: false, directoryMode: 0o755 });
  return file;
}

/** Every peer bundle this component needs, by component. */
export function readBundles(dir: string, components: readonly Component[]): Map<Component, Bundle> {
  return new Map(components.map((c) => [c, readBundle(dir, c)]));
}

export function trustFromBundles(bundles: ReadonlyMap<Component, Bundle>): TrustStore {
  return new TrustStore(new Map([...bundles].map(([c, b]) => [c, b.ca])));
}

/**
 * The trust of whatever bundles `bundles()` returns now, for a mesh client that must
 * follow reloads (createMeshTransport takes it as is). One TrustStore per bundles
 * object, so asking before every call costs a lookup, and the transport sees a new
 * object exactly when the bundles were reloaded.
 */
export function trustOfBundles(bundles: () => ReadonlyMap<Component, Bundle>): () => TrustStore {
  const cache = new WeakMap<ReadonlyMap<Component, Bundle>, TrustStore>();
  return () => {
    const current = bundles();
    let trust = cache.get(current);
    if (!trust) cache.set(current, (trust = trustFromBundles(current)));
    return trust;
  };
}

/**
 * Calls `onChange` (debounced) after bundle files in `dir` change. A reload that fails
 * to parse is reported through `onError` and the previous bundles stay in force.
 */
export function watchBundles(
  dir: string,
  components: readonly Component[],
  onChange: (bundles: Map<Component, Bundle>) => void,
  onError: (error: unknown) => void,
): () => void {
  let timer: NodeJS.Timeout | undefined;
  const watcher = watch(dir, () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      try {
        onChange(readBundles(dir, components));
      } catch (error) {
        onError(error);
      }
    }, 200);
  });
  return () => {
    clearTimeout(timer);
    watcher.close();
  };
}
