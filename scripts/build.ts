// npm run build [-- --out <dir>] [component …]: one reproducible artifact per
// component under dist/, and its SHA-256 digest (docs/builds.md).

import path from "node:path";
import { parseArgs } from "node:util";
import { COMPONENTS, isComponent } from "../internal/protocol/identity.js";
import { buildComponents, pinnedNodeVersion, sourceRevisionOf } from "../internal/ops/build/build.js";

const root = path.resolve(import.meta.dirname, "..");
const { values, positionals } = parseArgs({ allowPositionals: true, options: { out: { type: "string", default: path.join(root, "dist") } } });
const unknown = positionals.filter((c) => !isComponent(c));
if (unknown.length > 0) {
  process.stderr.write(`build: unknown component ${unknown.join(", ")} (one of ${COMPONENTS.join(", ")})\n`);
  process.exit(2);
}
const components = positionals.length > 0 ? positionals.filter(isComponent) : COMPONENTS;
try {
  const artifacts = await buildComponents({ sourceDir: root, outDir: values.out, components });
  const revision = sourceRevisionOf(root);
  process.stdout.write(`Built for Node v${pinnedNodeVersion(root)} (.node-version)${revision ? ` from ${revision}` : ""}:\n\n`);
  process.stdout.write(`  ${"component".padEnd(15)}${"sha256 digest".padEnd(66)}artifact\n`);
  for (const a of artifacts) {
    const size = a.files.reduce((n, f) => n + f.size, 0);
    process.stdout.write(`  ${a.component.padEnd(15)}${a.digest.padEnd(66)}${path.relative(process.cwd(), a.dir) || "."}/ (${a.files.length} file${a.files.length === 1 ? "" : "s"}, ${(size / 1e6).toFixed(1)} MB)\n`);
  }
  process.stdout.write(`\nRun one with: node ${path.relative(process.cwd(), artifacts[0]!.entry)} --config <file>\n`);
} catch (error) {
  process.stderr.write(`build: ${(error as Error).message}\n`);
  process.exit(1);
}
