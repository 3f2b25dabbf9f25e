// The house rules hold, and the tool that checks them catches a forbidden import: one
// added to a scratch copy of the layers fails `depcruise` with the rule's name, and the
// same tree without it passes (.dependency-cruiser.cjs; CI runs `npm run lint:imports`).

import { execFile } from "node:child_process";
import { cpSync, mkdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";

const run = promisify(execFile);
const CHECKOUT = path.resolve(import.meta.dirname, "../..");
const DEPCRUISE = path.join(CHECKOUT, "node_modules", ".bin", "depcruise");

async function cruise(dir: string): Promise<{ code: number; out: string }> {
  try {
    const { stdout } = await run(DEPCRUISE, ["internal", "mesh", "--config", ".dependency-cruiser.cjs", "--output-type", "err"], { cwd: dir });
    return { code: 0, out: stdout };
  } catch (error) {
    const e = error as { code: number; stdout: string };
    return { code: e.code, out: e.stdout };
  }
}

describe("the house rules: layers import one way (issue 12)", function () {
  this.timeout(120_000);
  let dir: string;

  /** A scratch tree with the project's rules and one file per layer. */
  function write(file: string, text: string) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), text);
  }

  before(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-house-"));
    cpSync(path.join(CHECKOUT, ".dependency-cruiser.cjs"), path.join(dir, ".dependency-cruiser.cjs"));
    write("tsconfig.json", JSON.stringify({ compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", strict: true }, include: ["**/*.ts"] }));
    write("internal/protocol/tokens.ts", "export const TYP = 'hello-session+jwt';\n");
    write("mesh/server.ts", "import { TYP } from '../internal/protocol/tokens.js';\nexport const served = TYP;\n");
    write("internal/components/token/token-service.ts", "import { served } from '../../../mesh/server.js';\nexport const minted = served;\n");
    write("internal/components/storage/storage-service.ts", "import { TYP } from '../../protocol/tokens.js';\nexport const kept = TYP;\n");
  });
  after(async () => dir && rm(dir, { recursive: true, force: true }));

  it("this checkout has no forbidden import", async function () {
    const { code, out } = await cruise(CHECKOUT);
    expect(out).to.include("no dependency violations found");
    expect(code).to.equal(0);
  });

  it("downward imports pass; a back-edge into the protocol, or one component into another, fails with the rule's name", async function () {
    expect((await cruise(dir)).code, "the layers as they should be").to.equal(0);

    write("internal/protocol/keys.ts", "import { minted } from '../components/token/token-service.js';\nexport const k = minted;\n");
    const upward = await cruise(dir);
    expect(upward.code).to.not.equal(0);
    expect(upward.out).to.include("protocol-is-the-bottom: internal/protocol/keys.ts → internal/components/token/token-service.ts");
    await rm(path.join(dir, "internal/protocol/keys.ts"));

    write("internal/components/storage/reader.ts", "import { minted } from '../token/token-service.js';\nexport const r = minted;\n");
    const across = await cruise(dir);
    expect(across.out).to.include("no-component-imports-another: internal/components/storage/reader.ts → internal/components/token/token-service.ts");
    await rm(path.join(dir, "internal/components/storage/reader.ts"));

    write("mesh/policy.ts", "import { kept } from '../internal/components/storage/storage-service.js';\nexport const p = kept;\n");
    expect((await cruise(dir)).out).to.include("mesh-knows-no-component: mesh/policy.ts → internal/components/storage/storage-service.ts");
    await rm(path.join(dir, "mesh/policy.ts"));
    expect((await cruise(dir)).code, "and back to a clean tree").to.equal(0);
  });
});
