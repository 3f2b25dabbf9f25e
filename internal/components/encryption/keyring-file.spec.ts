// The keyring file as `hello keyring` edits it, and as the running Encryption reloads it
// (docs/keyring-rotation.md).

import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { type KeyringReload, ensureKeyring, loadKeyring, watchKeyring } from "../../protocol/key-files.js";
import { generateRecordKey } from "../../protocol/keyring.js";
import { describeKeyringFile, dropFromKeyringFile, rotateKeyringFile } from "./keyring-file.js";
import { rejectionOf } from "../../../test/support/refusal.js";

describe("the keyring file: rotate, drop, and reload without a restart", function () {
  let dir: string;
  let file: string;

  beforeEach(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-keyring-"));
    file = path.join(dir, "keys", "keyring.json");
    await ensureKeyring(file);
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it("rotation adds a fresh key and makes it current, keeping the others, in a 0600 file", async function () {
    const first = describeKeyringFile(file);
    const sealed = loadKeyring("encryption", file).seal(Buffer.from("r"), "wallet", "h");
    const now = new Date("2031-02-03T04:05:06Z");
    const a = await rotateKeyringFile(file, { now });
    expect(a).to.deep.equal({ keyId: "k20310203", previous: first.current });
    const b = await rotateKeyringFile(file, { now });
    expect(b).to.deep.equal({ keyId: "k20310203-2", previous: "k20310203" });
    expect(describeKeyringFile(file)).to.deep.equal({ current: "k20310203-2", keyIds: [first.current, "k20310203", "k20310203-2"] });
    expect((await stat(file)).mode & 0o777).to.equal(0o600);
    // What the first key wrapped still opens.
    expect(loadKeyring("encryption", file).open(sealed, "wallet", "h").toString()).to.equal("r");
    expect(Object.keys(JSON.parse(await readFile(file, "utf8")) as object)).to.deep.equal(["current", "keys"]);
  });

  it("rotation refuses a key id that is taken or malformed, and leaves the file as it was", async function () {
    const before = await readFile(file, "utf8");
    const { current } = describeKeyringFile(file);
    for (const [keyId, message] of [
      [current, "never reused"],
      ["with space", "a key id must be"],
      ["k".repeat(65), "a key id must be"],
      ["", "a key id must be"],
    ] as const) {
      const error = (await rejectionOf(rotateKeyringFile(file, { keyId }), `rotating to ${keyId}`)) as Error;
      expect(error.message).to.include(message);
    }
    expect(await readFile(file, "utf8")).to.equal(before);
  });

  it("drop removes an old key, and refuses the current key or one it does not hold", async function () {
    const { current: old } = describeKeyringFile(file);
    const { keyId } = await rotateKeyringFile(file, { keyId: "k2" });
    const errors = await Promise.all([keyId, "k9"].map((id) => dropFromKeyringFile(file, id).then(() => undefined, (e: unknown) => (e as Error).message)));
    expect(errors).to.deep.equal(["k2 is the current key; rotate to a new key first", "the keyring holds no key k9"]);
    await dropFromKeyringFile(file, old);
    expect(describeKeyringFile(file)).to.deep.equal({ current: "k2", keyIds: ["k2"] });
  });

  it("the running Encryption reloads a rotation and a drop, and keeps its keyring when the file is broken or changes a key's bytes", async function () {
    const reloads: KeyringReload[] = [];
    const watched = watchKeyring("encryption", file, (reload) => reloads.push(reload));
    try {
      const first = watched.keyring().currentKeyId;
      const until = async (check: () => boolean) => {
        for (let i = 0; i < 100 && !check(); i++) await new Promise((r) => setTimeout(r, 50));
        expect(check(), "reloaded in time").to.equal(true);
      };

      await rotateKeyringFile(file, { keyId: "k2" });
      await until(() => watched.keyring().currentKeyId === "k2");
      expect(watched.keyring().keyIds()).to.deep.equal([first, "k2"]);

      const good = await readFile(file, "utf8");
      await writeFile(file, "{ not json");
      await until(() => reloads.some((r) => "error" in r));
      expect(watched.keyring().currentKeyId).to.equal("k2");

      // The same key id with other bytes would make every record under it unreadable.
      const changed = JSON.parse(good) as { current: string; keys: Record<string, string> };
      changed.keys[first] = generateRecordKey().toString("base64url");
      reloads.length = 0;
      await writeFile(file, JSON.stringify(changed));
      await until(() => reloads.length > 0);
      expect(String((reloads[0] as { error: Error }).error.message)).to.include(`gives key ${first} other key bytes`);
      expect(watched.keyring().changedKeys(loadKeyring("encryption", file))).to.deep.equal([first]);

      await writeFile(file, good);
      await dropFromKeyringFile(file, first);
      await until(() => !watched.keyring().has(first));
      expect(watched.keyring().keyIds()).to.deep.equal(["k2"]);
    } finally {
      watched.close();
    }
  });
});
