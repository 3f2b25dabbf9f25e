// The README's layout table matches the tree (issue 12): every path a row names exists,
// every file a row names is in that row's folder, and no folder of the code is left
// out. A newcomer follows the table; a stale row sends them nowhere.

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { expect } from "chai";

const CHECKOUT = path.resolve(import.meta.dirname, "../..");

interface Row {
  /** The row's paths: `a/`, `b/{c,d}/` and `cmd/<component>/` spelled out. */
  readonly paths: string[];
  /** The file names (`x.ts`, `x.md`) the row's description names. */
  readonly files: string[];
}

/** The rows of the table under "## Layout". */
export function layoutRows(markdown: string): Row[] {
  const section = markdown.split(/^## Layout$/m)[1]?.split(/^## /m)[0] ?? "";
  const rows: Row[] = [];
  for (const line of section.split("\n")) {
    const cells = /^\| (.+?) \| (.+) \|$/.exec(line);
    if (!cells || cells[1] === "path" || cells[1]!.startsWith("---")) continue;
    const paths = [...cells[1]!.matchAll(/`([^`]+)`/g)].flatMap(([, p]) => expand(p!));
    const files = [...cells[2]!.matchAll(/`([\w.-]+\.(?:ts|md|cjs|json))`/g)].map(([, f]) => f!);
    rows.push({ paths, files });
  }
  return rows;
}

function expand(p: string): string[] {
  const braces = /\{([^}]+)\}/.exec(p);
  if (braces) return braces[1]!.split(",").flatMap((part) => expand(p.replace(braces[0], part)));
  if (p.includes("<component>")) return ["token", "encryption", "storage", "orchestration"].flatMap((c) => expand(p.replace("<component>", c)));
  return [p];
}

/** Every file git tracks under `dir`, relative to the checkout. */
function tracked(dir: string): string[] {
  return execFileSync("git", ["-C", CHECKOUT, "ls-files", "--", dir]).toString().split("\n").filter(Boolean);
}

describe("the README's layout table matches the tree (issue 12)", function () {
  const rows = layoutRows(readFileSync(path.join(CHECKOUT, "README.md"), "utf8"));

  it("reads the table", function () {
    expect(rows.length).to.be.greaterThan(10);
    expect(rows.flatMap((r) => r.paths)).to.include.members(["internal/protocol/", "mesh/", "test/support/", "cmd/token/"]);
  });

  it("every path a row names exists (certs/ aside: hello start makes it)", function () {
    const missing = rows.flatMap((r) => r.paths).filter((p) => p !== "certs/" && !existsSync(path.join(CHECKOUT, p)));
    expect(missing).to.deep.equal([]);
  });

  it("every file a row names is under that row's paths", function () {
    const stale: string[] = [];
    for (const row of rows) {
      const names = new Set(row.paths.flatMap((p) => tracked(p)).map((f) => path.basename(f)));
      for (const file of row.files) if (!names.has(file)) stale.push(`${row.paths.join(", ")}: ${file}`);
    }
    expect(stale).to.deep.equal([]);
  });

  it("no folder of the code is left out: each is a row or inside one", function () {
    const named = rows.flatMap((r) => r.paths).map((p) => p.replace(/\/$/, ""));
    const covered = (dir: string) => named.some((p) => dir === p || dir.startsWith(`${p}/`));
    const folders = ["internal", "internal/components", "test", "."].flatMap((parent) =>
      readdirSync(path.join(CHECKOUT, parent))
        .map((name) => path.posix.join(parent, name))
        .filter((dir) => statSync(path.join(CHECKOUT, dir)).isDirectory() && tracked(dir).length > 0),
    );
    // Folders that only group rows (each of theirs is a row), and CI's own.
    const grouping = new Set(["internal", "internal/components", "test", "cmd", ".ci"]);
    expect(folders.filter((dir) => !grouping.has(dir) && !covered(dir))).to.deep.equal([]);
  });
});
