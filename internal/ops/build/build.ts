// `npm run build`: one artifact per component, reproducibly (docs/design.md §8,
// docs/builds.md).
//
// An artifact is a directory, dist/<component>/: main.mjs (the component's entry,
// cmd/<component>/main.ts, with every dependency bundled by the pinned esbuild) and the
// files a bundled package loads from beside itself (PGlite's WebAssembly and data, for
// Storage). Its digest is the SHA-256 of the manifest of every file in the directory
// (internal/components/runtime/buildinfo/artifact-digest.ts). Nothing in it depends on where or when it
// was built: no timestamps, no absolute paths (inputs are named relative to the
// checkout, symlinks unresolved), no git revision; the revision goes in a sidecar,
// dist/<component>.build.json, outside the digest.

import { execFileSync } from "node:child_process";
import { copyFile, mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { existsSync, readFileSync } from "node:fs";
import { isBuiltin } from "node:module";
import path from "node:path";
import * as esbuild from "esbuild";
import { COMPONENTS, type Component } from "../../protocol/identity.js";
import type { ArtifactFacts } from "../../components/runtime/buildinfo/artifact.js";
import { type ManifestEntry, artifactManifest, manifestDigest } from "../../components/runtime/buildinfo/artifact-digest.js";
import { type BuildRecord, buildRecordPath } from "../../components/runtime/buildinfo/build-record.js";
import { writeFileAtomic } from "../../fs/write-file-atomic.js";

/** The file `node` runs, inside each artifact directory. */
export const ENTRY = "main.mjs";

/**
 * Files a bundled package loads by URL from beside its own module (`new URL(f,
 * import.meta.url)`). Bundled, that URL is the artifact's main.mjs, so they are copied
 * next to it, and the digest covers them like any other file.
 */
const SIDE_FILES = [
  { from: "node_modules/@electric-sql/pglite/dist", files: ["pglite.wasm", "pglite.data", "initdb.wasm"] },
] as const;

/**
 * Node's `require` for the CommonJS packages in the bundle (pg, pino) that require
 * Node's built-ins. It can reach only built-ins: every other module is in the bundle,
 * and the build fails if one is not.
 */
const BANNER = 'import { createRequire as __helloCreateRequire } from "node:module";\nconst require = __helloCreateRequire(import.meta.url);';

export interface BuiltArtifact {
  readonly component: Component;
  /** The artifact directory (what the digest covers). */
  readonly dir: string;
  /** The file to run: `node <entry> --config <file>`. */
  readonly entry: string;
  readonly digest: string;
  readonly files: readonly ManifestEntry[];
}

export interface BuildOptions {
  /** The checkout to build (its cmd/, internal/, mesh/, package.json, .node-version, node_modules). */
  readonly sourceDir: string;
  /** Where dist/<component>/ and dist/<component>.build.json go. */
  readonly outDir: string;
  readonly components?: readonly Component[];
}

/** The Node version the checkout pins (.node-version), e.g. "20.20.2". */
export function pinnedNodeVersion(sourceDir: string): string {
  const file = path.join(sourceDir, ".node-version");
  if (!existsSync(file)) throw new Error(`${file} is missing: it pins the Node version the artifacts run on (e.g. 20.20.2)`);
  const version = readFileSync(file, "utf8").trim().replace(/^v/, "");
  if (!/^\d+\.\d+\.\d+$/.test(version)) throw new Error(`${file} must hold one exact Node version such as 20.20.2, not ${JSON.stringify(version)}`);
  return version;
}

function packageJson(sourceDir: string): { version: string; devDependencies?: Record<string, string> } {
  return JSON.parse(readFileSync(path.join(sourceDir, "package.json"), "utf8")) as { version: string; devDependencies?: Record<string, string> };
}

/** `git rev-parse HEAD`, "-dirty" when tracked files differ from it, "" outside git. For the sidecar only. */
export function sourceRevisionOf(sourceDir: string): string {
  const git = (...args: string[]) =>
    execFileSync("git", ["-C", sourceDir, ...args], { stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
  try {
    if (path.resolve(git("rev-parse", "--show-toplevel")) !== path.resolve(sourceDir)) return "";
    const head = git("rev-parse", "HEAD");
    return git("status", "--porcelain", "--untracked-files=no") === "" ? head : `${head}-dirty`;
  } catch {
    return "";
  }
}

async function bundle(sourceDir: string, component: Component, facts: ArtifactFacts): Promise<{ code: Uint8Array; inputs: string[] }> {
  const result = await esbuild.build({
    absWorkingDir: sourceDir,
    entryPoints: [`cmd/${component}/main.ts`],
    tsconfig: path.join(sourceDir, "tsconfig.json"),
    bundle: true,
    platform: "node",
    format: "esm",
    target: `node${facts.node}`,
    outfile: path.join(sourceDir, "dist", component, ENTRY), // names only: nothing is written
    write: false,
    metafile: true,
    logLevel: "silent",
    // Inputs are named as the checkout names them (node_modules/pg/...), wherever the
    // shared install really lives, so the bundle's path comments are the same anywhere.
    preserveSymlinks: true,
    define: { __HELLO_ARTIFACT__: JSON.stringify(facts) },
    alias: { "pg-native": "./internal/ops/build/pg-native-absent.ts" },
    banner: { js: BANNER },
  });
  const problems: string[] = [];
  const inputs = Object.keys(result.metafile.inputs);
  for (const input of inputs) {
    if (input.startsWith("../") || path.isAbsolute(input)) problems.push(`${input} is outside the checkout`);
  }
  for (const output of Object.values(result.metafile.outputs)) {
    for (const imported of output.imports) {
      if (imported.external && !isBuiltin(imported.path)) problems.push(`${imported.path} is not bundled (an artifact loads no code from outside itself)`);
    }
  }
  if (problems.length > 0) throw new Error(`cannot build ${component}: ${problems.join("; ")}`);
  if (result.outputFiles.length !== 1) throw new Error(`cannot build ${component}: esbuild wrote ${result.outputFiles.length} files, not one`);
  return { code: result.outputFiles[0]!.contents, inputs };
}

export async function buildComponents(options: BuildOptions): Promise<BuiltArtifact[]> {
  const sourceDir = path.resolve(options.sourceDir);
  const outDir = path.resolve(options.outDir);
  const components = options.components ?? COMPONENTS;
  const pkg = packageJson(sourceDir);
  const pinnedEsbuild = pkg.devDependencies?.esbuild;
  if (esbuild.version !== pinnedEsbuild) {
    throw new Error(`the checkout pins esbuild ${pinnedEsbuild ?? "(none)"} but esbuild ${esbuild.version} is installed: the build toolchain is part of what a digest vouches for`);
  }
  const node = pinnedNodeVersion(sourceDir);

  await mkdir(outDir, { recursive: true });
  const staging = await mkdtemp(path.join(outDir, ".build-"));
  try {
    const built = await Promise.all(
      components.map(async (component) => {
        const { code, inputs } = await bundle(sourceDir, component, { component, version: pkg.version, node });
        const dir = path.join(staging, component);
        await mkdir(dir, { recursive: true });
        await writeFile(path.join(dir, ENTRY), code);
        for (const side of SIDE_FILES) {
          if (!inputs.some((input) => input.startsWith(`${side.from}/`))) continue;
          for (const file of side.files) await copyFile(path.join(sourceDir, side.from, file), path.join(dir, file));
        }
        const files = await artifactManifest(dir);
        return { component, files, digest: manifestDigest(files) };
      }),
    );
    // Every component built: only now replace what was there.
    const sourceRevision = sourceRevisionOf(sourceDir);
    const artifacts: BuiltArtifact[] = [];
    for (const { component, files, digest } of built) {
      const dir = path.join(outDir, component);
      await rm(dir, { recursive: true, force: true });
      await rename(path.join(staging, component), dir);
      const record: BuildRecord = { component, digest, entry: ENTRY, sourceRevision, node, esbuild: esbuild.version, files: [...files] };
      await writeFileAtomic(buildRecordPath(dir), `${JSON.stringify(record, null, 2)}\n`, { secret: false });
      artifacts.push({ component, dir, entry: path.join(dir, ENTRY), digest, files });
    }
    return artifacts;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
