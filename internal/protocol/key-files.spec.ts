// The key files' format (internal/protocol/versions.ts): a file a newer release wrote is
// refused by name, never read as something else; a broken one names the file.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { TOKEN_KEYS, loadKeyring, loadSigningKeys, newKeyringText, newSigningKeysText } from "./key-files.js";

describe("key files: formats", function () {
  let dir: string;
  beforeEach(async () => (dir = await mkdtemp(path.join(os.tmpdir(), "hello-key-files-"))));
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  /** `text` (a new file's JSON) with `format` set, written to a file of its own. */
  async function withFormat(name: string, text: string, format: number | undefined): Promise<string> {
    const file = path.join(dir, name);
    await writeFile(file, JSON.stringify({ ...(format === undefined ? {} : { format }), ...(JSON.parse(text) as object) }));
    return file;
  }

  it("new files state no format (format 1), and format 1 stated reads the same", async function () {
    expect(JSON.parse(newSigningKeysText(TOKEN_KEYS))).to.not.have.property("format");
    expect(JSON.parse(newKeyringText())).to.not.have.property("format");
    const keys = newSigningKeysText(TOKEN_KEYS);
    expect(loadSigningKeys("token", await withFormat("a.json", keys, 1), TOKEN_KEYS).map((k) => k.kid)).to.deep.equal(
      loadSigningKeys("token", await withFormat("b.json", keys, undefined), TOKEN_KEYS).map((k) => k.kid),
    );
    expect(loadKeyring("encryption", await withFormat("k.json", newKeyringText(), 1))).to.be.an("object");
  });

  it("a file of a newer format is refused, naming the file, its format and what to do", async function () {
    const signing = await withFormat("signing-keys.json", newSigningKeysText(TOKEN_KEYS), 2);
    expect(() => loadSigningKeys("token", signing, TOKEN_KEYS)).to.throw(
      `the signing key file ${signing} is invalid: ✖ this signing key file is in format 2, written by a newer release of hello-mesh; this release reads format 1: upgrade it first (docs/upgrades.md)`,
    );
    const keyring = await withFormat("keyring.json", newKeyringText(), 7);
    expect(() => loadKeyring("encryption", keyring)).to.throw(/record keyring .*keyring\.json is invalid: .*this keyring file is in format 7, written by a newer release/);
  });

  it("a file that is not JSON is named", async function () {
    const file = path.join(dir, "signing-keys.json");
    await writeFile(file, "{ keys: [");
    expect(() => loadSigningKeys("token", file, TOKEN_KEYS)).to.throw(`the signing key file ${file} is not JSON`);
  });
});
