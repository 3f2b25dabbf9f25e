import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { COMPONENTS } from "../protocol/identity.js";
import { ConfigError } from "./errors.js";
import { deriveComponentConfigs, loadDevConfig } from "../dev/dev-config.js";
import { ComponentConfigSchema, loadAnyComponentConfig, peerUrls } from "./component-config.js";

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
    const moved = (await load({ issuer: "http://localhost:9000", ports: { upstream2: 9015 } }))();
    expect(moved.ports.upstream2).to.equal(9015);
  });

  it("ports.issuer (9004), ports.wallet (7104) and ports.issuerStatus (9005): the development issuer, the wallet server's S2S listener and the issuer's status list, ports like the others", async function () {
    const dev = loadDevConfig(path.resolve(import.meta.dirname, "../../hello.config.json"));
    expect([dev.ports.issuer, dev.ports.wallet, dev.ports.issuerStatus]).to.deep.equal([9004, 7104, 9005]);
    const defaults = (await load({ issuer: "http://localhost:9000" }))();
    expect([defaults.ports.issuer, defaults.ports.wallet, defaults.ports.issuerStatus]).to.deep.equal([9004, 7104, 9005]);
    expect(problemsOf(await load({ issuer: "http://localhost:9000", ports: { issuerStatus: 9004 } }))).to.deep.equal(["ports.issuerStatus: port 9004 is also used by issuer"]);
    expect(problemsOf(await load({ issuer: "http://localhost:9000", ports: { wallet: 0 } })).join("\n")).to.include("ports.wallet");
    // A port shared with an older setting is reported at the newer one.
    expect(problemsOf(await load({ issuer: "http://localhost:9000", ports: { upstream2: 9004 } }))).to.deep.equal(["ports.issuer: port 9004 is also used by upstream2"]);
    expect(problemsOf(await load({ issuer: "http://localhost:9000", ports: { storage: 7104 } }))).to.deep.equal(["ports.wallet: port 7104 is also used by storage"]);
    expect(problemsOf(await load({ issuer: "http://localhost:9000", ports: { wallet: 9004 } }))).to.deep.equal(["ports.wallet: port 9004 is also used by issuer"]);
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

  describe("the credential wallet (docs/wallet-server.md): Orchestration's wallet section, Token's issuers", function () {
    const P256 = { x: "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", y: "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" };
    const orchestration = (wallet: unknown) => ({
      component: "orchestration", listen: { port: 7100 }, tls: { cert: "o.crt", key: "o.key" }, bundles: "bundles",
      peers: { token: "https://127.0.0.1:7101", encryption: "https://127.0.0.1:7102" }, keys: { lookup: "l.key", cookie: "c.key" },
      public: { port: 9000 }, issuer: "http://localhost:9000", clients: [], providers: [], wallet,
    });
    const walletIssuer = (id: string, extra: Record<string, unknown> = {}) => ({ id, base_url: "https://issuer.example", ca: "issuer-ca.crt", ...extra });
    const wallet = (issuers: unknown[], extra: Record<string, unknown> = {}) => ({
      listen: { port: 7104 }, tls: { cert: "wallet-server.crt", key: "wallet-server.key" }, public_url: "https://wallet.example", issuers, ...extra,
    });
    const token = (issuers: unknown) => ({
      component: "token", listen: { port: 7101 }, tls: { cert: "t.crt", key: "t.key" }, bundles: "bundles",
      issuer: "http://localhost:9000", keys: { signing: "s.json", lookup: "l.key", wallet: "w.json" }, clients: [], providers: [], issuers,
    });
    const allowed = (id: string, extra: Record<string, unknown> = {}) => ({
      id,
      encryption_key: { kty: "EC", crv: "P-256", ...P256, kid: "enc-1", alg: "HPKE-0", use: "enc" },
      jwks: { keys: [{ kty: "EC", crv: "P-256", ...P256, kid: "sig-1", alg: "ES256", use: "sig" }] },
      credential_configurations: { identity_card: { vct: "urn:example:id", display: [{ name: "ID", locale: "en" }] }, licence: { vct: "urn:example:dl" } },
      ...extra,
    });
    const issuesOf = (config: unknown) => {
      const parsed = ComponentConfigSchema.safeParse(config);
      expect(parsed.success, "the configuration was accepted").to.equal(false);
      return parsed.error!.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
    };

    it("a valid wallet section and issuer allow-list pass, the host defaulting to 127.0.0.1; both are optional", function () {
      const o = ComponentConfigSchema.parse(orchestration(wallet([walletIssuer("https://issuer.example"), walletIssuer("urn:issuer:b", { servername: "issuer-b.internal" })])));
      expect(o.component === "orchestration" && o.wallet?.listen).to.deep.equal({ host: "127.0.0.1", port: 7104 });
      const t = ComponentConfigSchema.parse(token([allowed("https://issuer.example"), allowed("urn:issuer:b")]));
      expect(t.component === "token" && t.issuers?.map((i) => i.id)).to.deep.equal(["https://issuer.example", "urn:issuer:b"]);
      expect(ComponentConfigSchema.safeParse(orchestration(undefined)).success).to.equal(true);
      expect(ComponentConfigSchema.safeParse(token(undefined)).success).to.equal(true);
      expect(ComponentConfigSchema.safeParse(token([])).success, "an empty allow-list: Token vouches for no issuer").to.equal(true);
    });

    it("issuer ids are unique, in both", function () {
      expect(issuesOf(orchestration(wallet([walletIssuer("a"), walletIssuer("b"), walletIssuer("a")])))).to.deep.equal(["wallet.issuers.2.id: duplicate issuer id"]);
      expect(issuesOf(token([allowed("a"), allowed("a")]))).to.deep.equal(["issuers.1.id: duplicate issuer id"]);
    });

    it("a private JWK is refused in Token's allow-list, naming the member", function () {
      const withD = allowed("a", { encryption_key: { ...allowed("a").encryption_key, d: "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI" } });
      expect(issuesOf(token([withD]))).to.deep.equal(["issuers.0.encryption_key.d: a public key is wanted here, and this one holds its private part (d): remove it"]);
      const signingWithD = allowed("a", { jwks: { keys: [{ ...allowed("a").jwks.keys[0], d: "x" }] } });
      expect(issuesOf(token([signingWithD]))).to.deep.equal(["issuers.0.jwks.keys.0.d: a public key is wanted here, and this one holds its private part (d): remove it"]);
      const rsaPrivate = allowed("a", { jwks: { keys: [{ kty: "RSA", n: "AQAB", e: "AQAB", p: "x", q: "y" }] } });
      expect(issuesOf(token([rsaPrivate]))).to.have.members([
        "issuers.0.jwks.keys.0.p: a public key is wanted here, and this one holds its private part (p): remove it",
        "issuers.0.jwks.keys.0.q: a public key is wanted here, and this one holds its private part (q): remove it",
      ]);
    });

    it("the encryption key is an EC P-256 HPKE-0 key with exactly the members of one; an issuer has signing keys and configurations with a vct", function () {
      const key = allowed("a").encryption_key;
      expect(issuesOf(token([allowed("a", { encryption_key: { ...key, crv: "P-384" } })]))[0]).to.match(/^issuers\.0\.encryption_key\.crv: /);
      expect(issuesOf(token([allowed("a", { encryption_key: { ...key, alg: "ECDH-ES" } })]))[0]).to.match(/^issuers\.0\.encryption_key\.alg: /);
      expect(issuesOf(token([allowed("a", { encryption_key: { ...key, x: "short" } })]))).to.deep.equal(["issuers.0.encryption_key.x: must be a P-256 coordinate: 32 bytes of base64url"]);
      expect(issuesOf(token([allowed("a", { encryption_key: { ...key, x5c: ["MII"] } })]))[0]).to.match(/^issuers\.0\.encryption_key: Unrecognized key: "x5c"/);
      expect(issuesOf(token([allowed("a", { jwks: { keys: [] } })]))).to.deep.equal(["issuers.0.jwks.keys: an issuer needs at least one signing key"]);
      expect(issuesOf(token([allowed("a", { credential_configurations: { x: { display: [] } } })]))[0]).to.match(/^issuers\.0\.credential_configurations\.x\.vct: /);
      expect(issuesOf(token([allowed("a", { credential_configurations: { x: { vct: "v", format: "dc+sd-jwt" } } })]))[0]).to.match(/Unrecognized key: "format"/);
    });

    it("an http base_url or public_url is refused: issuers are reached, and reach us, over https only", function () {
      expect(issuesOf(orchestration(wallet([walletIssuer("a", { base_url: "http://issuer.example" })])))[0]).to.match(/^wallet\.issuers\.0\.base_url: /);
      expect(issuesOf(orchestration(wallet([walletIssuer("a")], { public_url: "http://wallet.example" })))[0]).to.match(/^wallet\.public_url: /);
      expect(issuesOf(orchestration(wallet([walletIssuer("a")], { public_url: "https://wallet.example/?x=1" })))).to.deep.equal(["wallet.public_url: must be an https:// URL without a query or fragment"]);
    });

    it("a wallet section names at least one issuer, and nothing it does not know", function () {
      expect(issuesOf(orchestration(wallet([])))).to.deep.equal(["wallet.issuers: a wallet server needs at least one issuer"]);
      expect(issuesOf(orchestration(wallet([walletIssuer("a", { jwks: {} })])))[0]).to.match(/^wallet\.issuers\.0: Unrecognized key: "jwks"/);
      expect(issuesOf(orchestration(wallet([walletIssuer("a")], { tls: { cert: "c" } })))[0]).to.match(/^wallet\.tls\.key: /);
    });

    it("its paths are resolved against the configuration file's directory: wallet.tls and each issuer's CA", async function () {
      const file = path.join(dir, "orchestration-wallet.json");
      await writeFile(file, JSON.stringify(orchestration(wallet([walletIssuer("a"), walletIssuer("b", { ca: "/etc/issuer-b/ca.crt" })]))));
      const loaded = loadAnyComponentConfig(file);
      expect(loaded.component === "orchestration" && loaded.wallet).to.deep.include({
        tls: { cert: path.join(dir, "wallet-server.crt"), key: path.join(dir, "wallet-server.key") },
      });
      expect(loaded.component === "orchestration" && loaded.wallet!.issuers.map((i) => i.ca)).to.deep.equal([path.join(dir, "issuer-ca.crt"), "/etc/issuer-b/ca.crt"]);
      expect(loaded.component === "orchestration" && loaded.wallet!.issuers[0]!.base_url).to.equal("https://issuer.example");
    });

    it("derived for the development issuer only when prepareDevDeployment makes one (deriveComponentConfigs' devIssuer)", async function () {
      const dev = (await load({ issuer: "http://localhost:9000" }))();
      const plain = deriveComponentConfigs(dev);
      expect(plain.orchestration).to.not.have.property("wallet");
      expect(plain.token).to.not.have.property("issuers");
    });
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

  it("a peer is one https://host:port, or a list of its replicas' (docs/replicas.md): at least one, each https, each once", function () {
    const orchestration = (peers: Record<string, unknown>) => ({
      component: "orchestration", listen: { port: 7100 }, tls: { cert: "o.crt", key: "o.key" }, bundles: "bundles",
      peers, keys: { lookup: "l.key", cookie: "c.key" }, public: { port: 9000 }, issuer: "http://localhost:9000", clients: [], providers: [],
    });
    const encryption = (storage: unknown) => ({
      component: "encryption", listen: { port: 7102 }, tls: { cert: "e.crt", key: "e.key" }, bundles: "bundles", peers: { storage }, keys: { keyring: "k.json" },
    });
    const issuesOf = (config: unknown) => {
      const parsed = ComponentConfigSchema.safeParse(config);
      expect(parsed.success, "the configuration was accepted").to.equal(false);
      return parsed.error!.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
    };
    const one = "https://127.0.0.1:7101";
    const replicas = ["https://token-1.internal:7101", "https://token-2.internal:7101", "https://10.0.0.3:7101"];
    for (const [token, storage] of [[one, "https://127.0.0.1:7103"], [replicas, ["https://storage-1:7103", "https://storage-2:7103"]], [[one], ["https://storage-1:7103"]]] as const) {
      const o = ComponentConfigSchema.parse(orchestration({ token, encryption: "https://127.0.0.1:7102" }));
      expect(o.component === "orchestration" && o.peers.token).to.deep.equal(token);
      const e = ComponentConfigSchema.parse(encryption(storage));
      expect(e.component === "encryption" && e.peers.storage).to.deep.equal(storage);
    }
    expect(issuesOf(orchestration({ token: [], encryption: one }))).to.deep.equal([
      "peers.token: a list of replicas needs at least one URL; or give the peer's one URL as a string",
    ]);
    expect(issuesOf(orchestration({ token: [replicas[0], "http://token-2.internal:7101"], encryption: "https://127.0.0.1:7102" }))).to.deep.equal([
      "peers.token.1: must be an https:// URL (https://host:port)",
    ]);
    expect(issuesOf(orchestration({ token: "token.internal:7101", encryption: one }))).to.deep.equal(["peers.token: must be an https:// URL (https://host:port)"]);
    expect(issuesOf(orchestration({ token: [replicas[0], replicas[1], "https://TOKEN-1.internal:7101/"], encryption: one }))).to.deep.equal([
      "peers.token.2: the same replica as [0] (https://token-1.internal:7101): list each replica once",
    ]);
    expect(issuesOf(orchestration({ token: 7101, encryption: one }))).to.deep.equal([
      "peers.token: must be an https://host:port URL, or a list of them (one per replica of the peer)",
    ]);
    expect(issuesOf(orchestration({ token: one }))).to.deep.equal([
      "peers.encryption: required: the peer's https://host:port, or a list of its replicas' URLs",
    ]);
    expect(issuesOf(encryption({ url: "https://storage-1:7103" }))).to.deep.equal([
      "peers.storage: must be an https://host:port URL, or a list of them (one per replica of the peer)",
    ]);
    expect(peerUrls(one)).to.deep.equal([one]);
    expect(peerUrls(replicas)).to.deep.equal(replicas);
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
