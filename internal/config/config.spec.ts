import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { COMPONENTS } from "../protocol/identity.js";
import { ConfigError } from "./errors.js";
import { deriveComponentConfigs, loadDevConfig } from "../dev/dev-config.js";
import { ComponentConfigSchema } from "./component-config.js";

describe("configuration (docs/design.md §6)", function () {
  let dir: string;
  before(async () => (dir = await mkdtemp(path.join(os.tmpdir(), "config-"))));
  after(async () => rm(dir, { recursive: true, force: true }));

  async function load(config: unknown) {
    const file = path.join(dir, `hello-${Math.random().toString(36).slice(2)}.json`);
    await writeFile(file, typeof config === "string" ? config : JSON.stringify(config));
    return () => loadDevConfig(file);
  }
  const problemsOf = (fn: () => unknown): readonly string[] => {
    try {
      fn();
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
    return expect.fail("the configuration was accepted");
  };

  it("the committed development file is valid", function () {
    const dev = loadDevConfig(path.resolve(import.meta.dirname, "../../hello.config.json"));
    expect(dev.clients.map((c) => c.client_id)).to.include("demo-app");
  });

  it("the committed development file names hello start's two development OPs: distinct providers at ports.upstream and ports.upstream2 (recovery needs two)", function () {
    const dev = loadDevConfig(path.resolve(import.meta.dirname, "../../hello.config.json"));
    expect([dev.ports.upstream, dev.ports.demo, dev.ports.upstream2]).to.deep.equal([9001, 9002, 9003]);
    const at = (port: number) => dev.providers.filter((p) => p.issuer === `http://localhost:${port}`);
    expect(at(dev.ports.upstream).map((p) => [p.id, p.name])).to.deep.equal([["dev", "Development OP"]]);
    expect(at(dev.ports.upstream2).map((p) => [p.id, p.name])).to.deep.equal([["dev2", "Second development OP"]]);
    expect(at(dev.ports.upstream)[0]!.client_secret).to.not.equal(at(dev.ports.upstream2)[0]!.client_secret);
  });

  it("ports.upstream2 is a port like the others: in range, and never one another setting uses", async function () {
    expect(problemsOf(await load({ issuer: "http://localhost:9000", ports: { upstream2: 70000 } })).join("\n")).to.include("ports.upstream2");
    for (const [setting, port] of [["public", 9003], ["demo", 9003], ["storage", 9003], ["upstream", 9003]] as const) {
      expect(problemsOf(await load({ issuer: "http://localhost:9000", ports: { [setting]: port } })), setting).to.deep.equal([
        `ports.upstream2: port 9003 is also used by ${setting}`,
      ]);
    }
    const moved = (await load({ issuer: "http://localhost:9000", ports: { upstream2: 9004 } }))();
    expect(moved.ports.upstream2).to.equal(9004);
  });

  it("reports every problem at once, each with where it is", async function () {
    const problems = problemsOf(
      await load({
        issuer: "not a url",
        ports: { token: 7101, storage: 7101 },
        clients: [
          { client_id: "a", redirect_uris: [], token_endpoint_auth_method: "client_secret_basic" },
          { client_id: "a", redirect_uris: ["https://a.example/cb"], token_endpoint_auth_method: "none", client_secret: "0123456789abcdef" },
          { client_id: "p", redirect_uris: ["https://p.example/cb"], token_endpoint_auth_method: "private_key_jwt" },
        ],
        providers: [{ id: "Bad Id", name: "x", issuer: "https://op.example", client_id: "c" }],
        database: "mysql://nope",
        surprise: true,
      }),
    );
    const text = problems.join("\n");
    for (const where of [
      "issuer",
      "ports.storage: port 7101 is also used by token",
      "clients[0].redirect_uris",
      "clients[1].client_id: duplicate client_id",
      "clients[1].client_secret: must be absent for none",
      "clients[2].jwks: required for private_key_jwt",
      "providers[0].id",
      "database",
      "surprise",
    ]) {
      expect(text).to.include(where);
    }
  });

  it("Token's issuer, the iss of every ID Token, is https:// or http:// on loopback, as Orchestration's (issue 18)", function () {
    const token = (issuer: string) => ({
      component: "token", listen: { port: 7101 }, tls: { cert: "t.crt", key: "t.key" }, bundles: "bundles",
      issuer, keys: { signing: "s.json", lookup: "l.key" }, clients: [], providers: [],
    });
    for (const issuer of ["https://id.example", "http://localhost:9000", "http://127.0.0.1:9000", "http://[::1]:9000"]) {
      expect(ComponentConfigSchema.safeParse(token(issuer)).success, issuer).to.equal(true);
    }
    for (const issuer of ["http://id.example", "ftp://id.example"]) {
      const parsed = ComponentConfigSchema.safeParse(token(issuer));
      expect(parsed.success, issuer).to.equal(false);
      expect(parsed.error!.issues.map((i) => [i.path.join("."), i.message.slice(0, 23)]), issuer).to.deep.equal([["issuer", "must be an https:// URL"]]);
    }
  });

  it("says so when the file is not JSON, or missing", async function () {
    expect(problemsOf(await load("{ nope"))[0]).to.match(/^not valid JSON/);
    expect(problemsOf(() => loadDevConfig(path.join(dir, "absent.json")))[0]).to.match(/does not exist$/);
  });

  it("gives each component only its own part: the database to Storage alone", async function () {
    const dev = (await load({ issuer: "http://localhost:9000", database: "postgresql://hello:secret@db/hello" }))();
    const configs = deriveComponentConfigs(dev);
    for (const component of COMPONENTS) {
      expect(ComponentConfigSchema.safeParse(configs[component]).success, component).to.equal(true);
      const text = JSON.stringify(configs[component]);
      expect(text.includes("secret@db"), component).to.equal(component === "storage");
    }
    expect(Object.keys((configs.orchestration as { peers: object }).peers)).to.deep.equal(["token", "encryption"]);
    expect(Object.keys((configs.encryption as { peers: object }).peers)).to.deep.equal(["storage"]);
    expect(configs.token).not.to.have.property("peers");
  });

  it("without a database URL, Storage gets the embedded PGlite directory under stateDir", async function () {
    const dev = (await load({ issuer: "http://localhost:9000", stateDir: "state" }))();
    const storage = deriveComponentConfigs(dev).storage as { database: { dataDir?: string; url?: string } };
    expect(storage.database.url).to.equal(undefined);
    expect(storage.database.dataDir).to.equal(path.join(dir, "state", "storage", "pgdata"));
  });

  it("a provider id names its callback path (/upstream/callback/<id>): one that is not path-safe, or is used twice, is refused in every schema", async function () {
    const dev = (await load({ issuer: "http://localhost:9000", providers: [{ id: "dev", name: "Dev", issuer: "http://localhost:9001", client_id: "c", jwks_uri: "http://localhost:9001/jwks" }] }))();
    const configs = deriveComponentConfigs(dev);
    for (const component of ["orchestration", "token"] as const) {
      const config = configs[component] as { providers: Array<{ id: string }> };
      expect(ComponentConfigSchema.safeParse(config).success, `${component} as derived`).to.equal(true);
      for (const id of ["../token", "dev/x", "Dev", "dev?x", "", "a".repeat(33)]) {
        const result = ComponentConfigSchema.safeParse({ ...config, providers: [{ ...config.providers[0]!, id }] });
        expect(result.success, `${component} ${JSON.stringify(id)}`).to.equal(false);
        expect(result.error!.issues[0]!.path).to.deep.equal(["providers", 0, "id"]);
        expect(result.error!.issues[0]!.message).to.include("/upstream/callback/<id>");
      }
      const twice = ComponentConfigSchema.safeParse({ ...config, providers: [config.providers[0], config.providers[0]] });
      expect(twice.error?.issues.map((i) => `${i.path.join(".")}: ${i.message}`)).to.deep.equal(["providers.1.id: duplicate provider id"]);
    }
    expect(problemsOf(await load({ issuer: "http://localhost:9000", providers: [{ id: "my/op", name: "x", issuer: "https://op.example", client_id: "c" }] })).join("\n"))
      .to.include("providers[0].id: must be 1-32 lowercase letters, digits or dashes");
  });
});
