// The digest of a built artifact: the hex SHA-256 of a manifest of every file in the
// artifact's directory, one line per file, sorted by path, in `sha256sum`'s own format
// ("<hex sha256>  <relative path>\n"). So anyone can recompute it without our code:
//
//   cd dist/token && find . -type f | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum
//
// Used by the build, by the running artifact (BuildInfo) and by `hello verify`; it must
// not import the build toolchain, since the artifacts bundle it.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import path from "node:path";

export interface ManifestEntry {
  /** Relative to the artifact directory, with "/" separators. */
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
}

async function fileSha256(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Every regular file under `dir`, sorted by path; anything else (a symlink, a socket) is refused. */
export async function artifactManifest(dir: string): Promise<ManifestEntry[]> {
  const entries: ManifestEntry[] = [];
  const walk = async (relative: string): Promise<void> => {
    for (const name of await readdir(path.join(dir, relative))) {
      // Plain names only, so the manifest is one unambiguous line per file and the
      // shell line above (xargs splits on spaces; sha256sum escapes "\\") computes it too.
      if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`the artifact ${dir} holds a file named ${JSON.stringify(name)}: names are [A-Za-z0-9._-] only`);
      const rel = relative ? `${relative}/${name}` : name;
      const stat = await lstat(path.join(dir, rel));
      if (stat.isDirectory()) await walk(rel);
      else if (stat.isFile()) entries.push({ path: rel, sha256: await fileSha256(path.join(dir, rel)), size: stat.size });
      else throw new Error(`the artifact ${dir} holds ${rel}, which is not a regular file: an artifact is files only`);
    }
  };
  await walk("");
  if (entries.length === 0) throw new Error(`the artifact directory ${dir} is empty`);
  // Byte order of the (ASCII) paths, as `LC_ALL=C sort` orders them.
  return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export function manifestText(entries: readonly ManifestEntry[]): string {
  return entries.map((e) => `${e.sha256}  ${e.path}\n`).join("");
}

export function manifestDigest(entries: readonly ManifestEntry[]): string {
  return createHash("sha256").update(manifestText(entries)).digest("hex");
}

export async function artifactDigest(dir: string): Promise<string> {
  return manifestDigest(await artifactManifest(dir));
}
