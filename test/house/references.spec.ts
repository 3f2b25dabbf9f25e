// No reference in the repository points outside it (issue 18): a fresh clone has no
// ../shared, so the design is docs/design.md, and every relative link in the docs leads
// to a file of this checkout.

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { expect } from "chai";

const CHECKOUT = path.resolve(import.meta.dirname, "../..");
const git = (...args: string[]) => execFileSync("git", ["-C", CHECKOUT, ...args]).toString();

/** Tracked files whose text mentions `pattern` (git grep -E), as "file:line: text". */
function mentions(pattern: string): string[] {
  try {
    return git("grep", "-n", "-E", pattern, "--", ".", ":!test/house/references.spec.ts").split("\n").filter(Boolean);
  } catch {
    return []; // git grep exits 1 when nothing matches
  }
}

describe("no reference in the repository points outside it (issue 18)", function () {
  it("nothing names ../shared or the design contract that stayed outside (DESIGN.md)", function () {
    expect(mentions(String.raw`\.\./shared|DESIGN\.md`)).to.deep.equal([]);
  });

  it("every relative link in the markdown leads to a file or folder of this checkout", function () {
    const broken: string[] = [];
    for (const file of git("ls-files", "*.md").split("\n").filter(Boolean)) {
      const text = readFileSync(path.join(CHECKOUT, file), "utf8");
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target!) || target!.startsWith("#")) continue; // a URL or an anchor
        const resolved = path.resolve(CHECKOUT, path.dirname(file), decodeURIComponent(target!.split("#")[0]!));
        const inside = resolved === CHECKOUT || resolved.startsWith(`${CHECKOUT}${path.sep}`);
        if (!inside || !existsSync(resolved)) broken.push(`${file}: ${target}`);
      }
    }
    expect(broken).to.deep.equal([]);
  });
});
