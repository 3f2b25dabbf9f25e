// `hello keys init` and `hello keys lookup` on a custodian's files (issue 18): what each
// makes, where, with which mode; what each refuses, naming the file. The four custodians
// end to end are test/e2e/custodians.spec.ts.

import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { runKeysCommand } from "../../../cmd/hello/keys.js";
import { COMPONENTS, type Component } from "../../protocol/identity.js";
import { STORAGE_KEYS, TOKEN_KEYS, loadKeyring, loadLookupKey, loadSecretKey, loadSigningKeys } from "../../protocol/key-files.js";
import { lookupKeyFingerprint } from "./init.js";
import { captured } from "../../../test/support/captured.js";

describe("hello keys init and hello keys lookup (a custodian's own keys)", function () {
  this.timeout(60_000);
  let dir: string;
  beforeEach(async () => (dir = await mkdtemp(path.join(os.tmpdir(), "hello-keys-init-"))));
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  /** Runs `hello keys …` in this process: exit code and what it said. */
  const keys = (...args: string[]) => captured((out) => runKeysCommand(args, out));

  /** A component's configuration in its own directory, as docs/deploy.md writes it. */
  async function config(component: Component): Promise<string> {
    const common = {
      component,
      listen: { host: "127.0.0.1", port: 7100 },
      tls: { cert: `certs/${component}/${component}.crt`, key: `certs/${component}/${component}.key` },
      bundles: "bundles",
    };
    const own = {
      orchestration: {
        peers: { token: "https://127.0.0.1:7101", encryption: "https://127.0.0.1:7102" },
        keys: { lookup: "keys/lookup.key", cookie: "keys/cookie.key" },
        public: { host: "127.0.0.1", port: 9000 },
        issuer: "http://localhost:9000",
        clients: [],
        providers: [],
      },
      token: { issuer: "http://localhost:9000", keys: { signing: "keys/signing-keys.json", lookup: "keys/lookup.key" }, clients: [], providers: [] },
      encryption: { peers: { storage: "https://127.0.0.1:7103" }, keys: { keyring: "keys/keyring.json" } },
      storage: { keys: { signing: "keys/signing-keys.json" }, database: { dataDir: "data" } },
    }[component];
    const file = path.join(dir, component, `${component}.json`);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, JSON.stringify({ ...common, ...own }));
    return file;
  }

  const mode = async (file: string) => (await stat(file)).mode & 0o777;

  it("makes each component's own keys where its configuration names them, 0600, loadable as the component loads them", async function () {
    for (const component of COMPONENTS) {
      const { code, out } = await keys("init", component, "--config", await config(component));
      expect(code, out).to.equal(0);
      expect(out).to.include("next: publish the");
    }
    const at = (c: Component, file: string) => path.join(dir, c, "keys", file);
    expect(loadSigningKeys("token", at("token", "signing-keys.json"), TOKEN_KEYS)).to.have.length(TOKEN_KEYS.length);
    expect(loadSigningKeys("storage", at("storage", "signing-keys.json"), STORAGE_KEYS)).to.have.length(STORAGE_KEYS.length);
    expect(loadKeyring("encryption", at("encryption", "keyring.json")).currentKeyId).to.match(/^k\d{8}$/);
    expect(loadSecretKey("orchestration", at("orchestration", "cookie.key"), "cookie key")).to.have.length(32);
    for (const file of [at("token", "signing-keys.json"), at("storage", "signing-keys.json"), at("encryption", "keyring.json"), at("orchestration", "cookie.key")]) {
      expect(await mode(file), file).to.equal(0o600);
    }
    // The lookup key is not init's: it is made by one holder and handed to the other.
    for (const c of ["orchestration", "token"] as const) {
      await stat(at(c, "lookup.key")).then(
        () => expect.fail(`init made ${c}'s lookup key`),
        () => {},
      );
    }
  });

  it("never replaces a key: a second init is refused, naming the file, and changes nothing", async function () {
    const file = await config("encryption");
    expect((await keys("init", "encryption", "--config", file)).code).to.equal(0);
    const keyring = await readFile(path.join(dir, "encryption", "keys", "keyring.json"), "utf8");
    const again = await keys("init", "encryption", "--config", file);
    expect(again.code).to.equal(1);
    expect(again.err).to.include(path.join(dir, "encryption", "keys", "keyring.json")).and.include("already exists").and.include("hello keyring rotate");
    expect(await readFile(path.join(dir, "encryption", "keys", "keyring.json"), "utf8")).to.equal(keyring);
  });

  it("says what is wrong with the command line: no component, no --config, another component's file", async function () {
    expect((await keys("init")).code).to.equal(2);
    const noConfig = await keys("init", "token");
    expect(noConfig.code).to.equal(2);
    expect(noConfig.err).to.include("--config <file> is required");
    const other = await keys("init", "token", "--config", await config("storage"));
    expect(other.code).to.equal(1);
    expect(other.err).to.include("this file configures storage, not token");
  });

  it("the lookup key: made by one holder, handed over, installed by the other; both print the same fingerprint", async function () {
    const token = await config("token");
    const orchestration = await config("orchestration");
    const handover = path.join(dir, "handover", "lookup.key");
    const made = await keys("lookup", "new", "--config", token, "--out", handover);
    expect(made.code, made.err).to.equal(0);
    const key = loadLookupKey("token", path.join(dir, "token", "keys", "lookup.key"));
    const fingerprint = lookupKeyFingerprint(key);
    expect(fingerprint).to.match(/^[0-9a-f]{4}( [0-9a-f]{4}){4}$/);
    expect(made.out).to.include(`fingerprint: ${fingerprint}`).and.not.include(key.toString("base64url"));
    expect(await mode(handover)).to.equal(0o600);

    const installed = await keys("lookup", "install", handover, "--config", orchestration);
    expect(installed.code, installed.err).to.equal(0);
    expect(installed.out).to.include(`fingerprint: ${fingerprint}`);
    expect(loadLookupKey("orchestration", path.join(dir, "orchestration", "keys", "lookup.key")).equals(key)).to.equal(true);
    expect(await mode(path.join(dir, "orchestration", "keys", "lookup.key"))).to.equal(0o600);
    expect((await keys("lookup", "fingerprint", "--config", orchestration)).out).to.include(fingerprint);
    // Again: the same key is already there; nothing changes.
    expect((await keys("lookup", "install", handover, "--config", orchestration)).out).to.include("already this one");

    // A second new, or another key, never replaces it.
    const twice = await keys("lookup", "new", "--config", token, "--out", path.join(dir, "other.key"));
    expect(twice.code).to.equal(1);
    expect(twice.err).to.include("already exists");
    const other = path.join(dir, "other.key");
    await writeFile(other, `${Buffer.alloc(32, 7).toString("base64url")}\n`, { mode: 0o644 });
    const refused = await keys("lookup", "install", other, "--config", token);
    expect(refused.code).to.equal(1);
    expect(refused.err).to.include("is another key");
    expect(loadLookupKey("token", path.join(dir, "token", "keys", "lookup.key")).equals(key)).to.equal(true);
  });

  it("installs only a lookup key, and only in Orchestration's or Token's directory", async function () {
    const orchestration = await config("orchestration");
    for (const bad of ["short\n", `${Buffer.alloc(33).toString("base64url")}\n`, `${Buffer.alloc(32).toString("base64")}==\n`, "", `{"keys":[]}`]) {
      const file = path.join(dir, "bad.key");
      await writeFile(file, bad);
      const { code, err } = await keys("lookup", "install", file, "--config", orchestration);
      expect(code, bad).to.equal(1);
      expect(err).to.include(file).and.include("32 bytes of base64url");
    }
    const good = path.join(dir, "good.key");
    await writeFile(good, `${Buffer.alloc(32, 1).toString("base64url")}\n`);
    const storage = await keys("lookup", "install", good, "--config", await config("storage"));
    expect(storage.code).to.equal(2);
    expect(storage.err).to.include("only Orchestration's and Token's custodians hold the lookup key");
    const missing = await keys("lookup", "install", path.join(dir, "nowhere.key"), "--config", orchestration);
    expect(missing.code).to.equal(1);
    expect(missing.err).to.include("no such file");
  });
});
