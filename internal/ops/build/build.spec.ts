// Reproducible builds (docs/design.md §8, docs/builds.md): the same source gives the same
// digests wherever it is built; a change to one component's source changes that
// component's digest only; the digest is what `sha256sum` computes over the files;
// an artifact runs only on the Node it is pinned to.

import { execFile, execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { COMPONENTS, type Component } from "../../protocol/identity.js";
import { type BuiltArtifact, buildComponents } from "./build.js";
import { TEST_POWER_MARKER } from "../../../test/support/twisted/control.js";
import { rejectionOf } from "../../../test/support/refusal.js";

const run = promisify(execFile);
const CHECKOUT = path.resolve(import.meta.dirname, "../../..");

/** The checkout's tracked files (as they are on disk), copied to `dir`, with node_modules linked. */
function copyTrackedFiles(dir: string): string {
  const files = execFileSync("git", ["-C", CHECKOUT, "ls-files", "-z"]).toString().split("\0").filter(Boolean);
  for (const file of files) {
    if (!existsSync(path.join(CHECKOUT, file))) continue; // deleted in the working tree
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    cpSync(path.join(CHECKOUT, file), path.join(dir, file));
  }
  symlinkSync(realpathSync(path.join(CHECKOUT, "node_modules")), path.join(dir, "node_modules"));
  return dir;
}

const digests = (artifacts: readonly BuiltArtifact[]) =>
  Object.fromEntries(artifacts.map((a) => [a.component, a.digest])) as Record<Component, string>;

/** Flips the case of the first letter of the first string in a `throw` in `file`: a one-byte change. */
function changeOneByte(sourceDir: string, file: string): () => void {
  const full = path.join(sourceDir, file);
  const before = readFileSync(full, "utf8");
  const match = /throw [^;\n]*?["`]([a-z])/.exec(before);
  if (!match) throw new Error(`no string literal in a throw in ${file}`);
  const at = match.index + match[0].length - 1;
  const after = `${before.slice(0, at)}${before[at]!.toUpperCase()}${before.slice(at + 1)}`;
  expect(Buffer.byteLength(after)).to.equal(Buffer.byteLength(before));
  writeFileSync(full, after);
  return () => writeFileSync(full, before);
}

describe("reproducible builds (npm run build)", function () {
  this.timeout(300_000);
  let scratch: string;
  let a: string;
  let b: string;
  let first: readonly BuiltArtifact[];
  let second: readonly BuiltArtifact[];

  before(async function () {
    scratch = await mkdtemp(path.join(os.tmpdir(), "hello-build-"));
    // Two checkouts of the same source at different places and depths.
    a = copyTrackedFiles(path.join(scratch, "a"));
    b = copyTrackedFiles(path.join(scratch, "somewhere", "else", "entirely", "b"));
    first = await buildComponents({ sourceDir: a, outDir: path.join(a, "dist") });
    second = await buildComponents({ sourceDir: b, outDir: path.join(b, "out") });
  });
  after(async () => scratch && (await rm(scratch, { recursive: true, force: true })));

  it("two builds of the same source in different directories give identical digests", function () {
    expect(first.map((x) => x.component)).to.deep.equal([...COMPONENTS]);
    expect(digests(second)).to.deep.equal(digests(first));
    for (const artifact of first) expect(artifact.digest).to.match(/^[0-9a-f]{64}$/);
    expect(new Set(first.map((x) => x.digest)).size, "each component is its own artifact").to.equal(4);
    const storage = first.find((x) => x.component === "storage")!;
    expect(storage.files.map((f) => f.path)).to.deep.equal(["initdb.wasm", "main.mjs", "pglite.data", "pglite.wasm"]);
    expect(first.find((x) => x.component === "token")!.files.map((f) => f.path)).to.deep.equal(["main.mjs"]);
  });

  it("test powers never ship: no artifact holds test support (test/support), the twisted runner, the rogue Token or the movable clock", function () {
    // What the twisted runner and its parts are known by; each probe is checked to be in
    // the sources, so the search below can fail.
    const probes = [TEST_POWER_MARKER, "HELLO_TEST_CONTROL", "HELLO_TEST_ROGUE", "installShiftedClock", "rogueToken", "test/support/"];
    const sources = ["control.ts", "serve-twisted.ts", "clock.ts", "rogue-token.ts"]
      .map((file) => readFileSync(path.join(a, "test/support/twisted", file), "utf8"))
      .join("\n");
    for (const probe of probes.slice(0, -1)) expect(sources, `the probe ${probe} names something in the sources`).to.include(probe);
    for (const artifact of first) {
      for (const file of artifact.files) {
        const text = readFileSync(path.join(artifact.dir, file.path)).toString("latin1");
        for (const probe of probes) expect(text.includes(probe), `${artifact.component}/${file.path} holds ${probe}`).to.equal(false);
      }
      // Bundles name each module they hold in a comment: the component's own code is there.
      const main = readFileSync(path.join(artifact.dir, "main.mjs"), "utf8");
      expect(main, `${artifact.component}'s artifact names its modules`).to.include(`internal/components/${artifact.component}/wiring.ts`);
    }
  });

  it("the digest is what sha256sum computes over the artifact's files, and the sidecar records it", async function () {
    for (const artifact of first) {
      const { stdout } = await run("sh", ["-c", "find . -type f | sed 's|^\\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum"], { cwd: artifact.dir });
      expect(stdout.split(" ")[0], artifact.component).to.equal(artifact.digest);
      const record = JSON.parse(readFileSync(`${artifact.dir}.build.json`, "utf8")) as { digest: string; sourceRevision: string; node: string };
      expect(record).to.include({ digest: artifact.digest, sourceRevision: "", node: readFileSync(path.join(a, ".node-version"), "utf8").trim() });
    }
  });

  it("the artifacts name no path of the machine that built them", function () {
    for (const artifact of first) {
      const code = readFileSync(artifact.entry, "utf8");
      for (const place of [scratch, CHECKOUT, realpathSync(path.join(CHECKOUT, "node_modules"))]) {
        expect(code.includes(place), `${artifact.component} names ${place}`).to.equal(false);
      }
    }
  });

  const owners: Array<[string, Component]> = [
    ["internal/components/token/checks.ts", "token"],
    ["internal/components/orchestration/front-door/authorization-request.ts", "orchestration"],
    ["internal/components/encryption/encryption-service.ts", "encryption"],
    ["internal/components/storage/storage-service.ts", "storage"],
  ];
  for (const [file, owner] of owners) {
    it(`a one-byte change to ${file} changes the ${owner} digest only`, async function () {
      const restore = changeOneByte(b, file);
      let changed: readonly BuiltArtifact[];
      try {
        changed = await buildComponents({ sourceDir: b, outDir: path.join(b, `out-${owner}`) });
      } finally {
        restore();
      }
      const before = digests(first);
      const after = digests(changed);
      for (const component of COMPONENTS) {
        if (component === owner) expect(after[component], component).to.not.equal(before[component]);
        else expect(after[component], component).to.equal(before[component]);
      }
    });
  }

  it("an artifact refuses to run on a Node other than the one it is pinned to", async function () {
    writeFileSync(path.join(a, ".node-version"), "20.0.0\n");
    let pinned: readonly BuiltArtifact[];
    try {
      pinned = await buildComponents({ sourceDir: a, outDir: path.join(a, "pinned"), components: ["token"] });
    } finally {
      writeFileSync(path.join(a, ".node-version"), readFileSync(path.join(CHECKOUT, ".node-version")));
    }
    expect(pinned[0]!.digest, "the pinned Node is part of the artifact").to.not.equal(digests(first).token);
    const failed = (await rejectionOf(run(process.execPath, [pinned[0]!.entry, "--config", "/nonexistent.json"]))) as {
      code: number;
      stderr: string;
    };
    expect(failed.code).to.equal(1);
    expect(failed.stderr).to.include(`token artifact: this token artifact is pinned to Node v20.0.0 and this is Node ${process.version}`);
  });
});
