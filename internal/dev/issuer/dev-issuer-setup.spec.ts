// What `hello start` prepares for its development credential issuer (dev-issuer-setup.ts,
// prepareDevDeployment's devIssuer): made once, secrets 0600, configurations that the
// components' own schemas accept, Token vouching for the issuer's very keys, and the
// certificates fitting together: the wallet server (from Orchestration's derived
// configuration) and the development issuer (from the deployment's options) reach each
// other over mutual TLS, each pinning the other's CA.

import { X509Certificate, createPrivateKey, randomUUID } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { z } from "zod";
import { ComponentConfigSchema, loadAnyComponentConfig } from "../../config/component-config.js";
import { pkiPaths } from "../../ops/pki/layout.js";
import { WALLET_KEYS, loadSigningKeys } from "../../protocol/key-files.js";
import { issuerMetadataSchema } from "../../s2s/messages.js";
import { API_VERSION } from "../../s2s/wire-server.js";
import { MemoryStore } from "../../components/orchestration/sealed.js";
import { type WalletPlumbing, walletPlumbing } from "../../components/orchestration/wiring.js";
import { freePort } from "../../../test/support/free-port.js";
import { loadDevConfig } from "../dev-config.js";
import { type DevDeployment, prepareDevDeployment } from "../dev-deployment.js";
import { devIssuerPaths } from "./dev-issuer-setup.js";
import { type DevIssuer, startDevIssuer } from "./issuer.js";
import { CREDENTIAL_CONFIGURATIONS } from "./registry.js";

describe("hello start's development issuer: certificates, keys and the configurations derived for it", function () {
  this.timeout(60_000);
  let dir: string;
  let configFile: string;
  let ports: Record<string, number>;
  let deployment: DevDeployment;
  let paths: ReturnType<typeof devIssuerPaths>;
  const made: string[] = [];

  before(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-dev-issuer-"));
    ports = {};
    for (const setting of ["public", "orchestration", "token", "encryption", "storage", "issuer", "wallet", "issuerStatus"]) ports[setting] = await freePort();
    configFile = path.join(dir, "hello.config.json");
    await writeFile(configFile, JSON.stringify({ issuer: `http://localhost:${ports.public}`, ports, certificates: "certs", stateDir: "state" }));
    deployment = await prepareDevDeployment(loadDevConfig(configFile), { devIssuer: true, log: (line) => made.push(line) });
    paths = devIssuerPaths(path.join(dir, "certs"), path.join(dir, "state"));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("makes the issuer's CA and leaf, the wallet server's leaf and the issuer's keys, saying so; secrets 0600", function () {
    expect(deployment.createdCertificates).to.equal(true);
    expect(paths.dir).to.equal(path.join(dir, "certs", "issuer"));
    expect(paths.keys).to.equal(path.join(dir, "state", "issuer", "keys.json"));
    for (const file of [paths.caCert, paths.cert, paths.walletServerCert]) expect(statSync(file).mode & 0o777, file).to.equal(0o644);
    for (const file of [paths.caKey, paths.key, paths.walletServerKey, paths.keys]) expect(statSync(file).mode & 0o777, file).to.equal(0o600);
    expect(statSync(paths.dir).mode & 0o777).to.equal(0o700);
    expect(statSync(path.dirname(paths.keys)).mode & 0o777).to.equal(0o700);
    const said = made.join("\n");
    for (const file of [paths.caCert, paths.cert, paths.walletServerCert, paths.keys]) expect(said).to.include(file);
  });

  it("the issuer's leaf and the wallet server's: server and client, localhost and 127.0.0.1, P-256; the wallet server's from the orchestration CA, with no mesh identity", function () {
    const issuerCa = new X509Certificate(readText(paths.caCert));
    const orchestrationCa = new X509Certificate(readText(pkiPaths(path.join(dir, "certs"), "orchestration").caCert));
    expect(issuerCa.ca).to.equal(true);
    for (const [file, ca] of [[paths.cert, issuerCa], [paths.walletServerCert, orchestrationCa]] as const) {
      const leaf = new X509Certificate(readText(file));
      expect(leaf.checkIssued(ca) && leaf.verify(ca.publicKey), `${file} issued by its CA`).to.equal(true);
      expect(leaf.subjectAltName, file).to.equal("DNS:localhost, IP Address:127.0.0.1");
      expect(leaf.keyUsage, file).to.have.members(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
      expect(leaf.publicKey.asymmetricKeyDetails?.namedCurve, file).to.equal("prime256v1");
    }
    expect(issuerCa.publicKey.asymmetricKeyDetails?.namedCurve).to.equal("prime256v1");
  });

  it("the issuer's keys: an HPKE-0 key and an ES256 key with a kid, private, in keys.json", async function () {
    const keys = JSON.parse(await readFile(paths.keys, "utf8")) as Record<string, Record<string, string>>;
    expect(keys.encryptionKey).to.include({ kty: "EC", crv: "P-256", alg: "HPKE-0" });
    expect(keys.signingKey).to.include({ kty: "EC", crv: "P-256", alg: "ES256" });
    for (const key of [keys.encryptionKey!, keys.signingKey!]) {
      expect(key.d).to.match(/^[A-Za-z0-9_-]{43}$/);
      expect(key.kid).to.be.a("string").and.not.equal("");
    }
    expect(deployment.devIssuer!.encryptionKey).to.deep.equal(keys.encryptionKey);
    expect(deployment.devIssuer!.signingKey).to.deep.equal(keys.signingKey);
  });

  it("the derived configurations, as written, are valid against the components' own schemas, and carry the wallet server and the allow-list", function () {
    const orchestration = loadAnyComponentConfig(deployment.configFiles.orchestration);
    const token = loadAnyComponentConfig(deployment.configFiles.token);
    for (const config of Object.values(deployment.configs)) expect(ComponentConfigSchema.safeParse(config).success, config.component).to.equal(true);
    const issuerId = `https://localhost:${ports.issuer}`;
    expect(orchestration.component === "orchestration" && orchestration.wallet).to.deep.equal({
      listen: { host: "127.0.0.1", port: ports.wallet },
      tls: { cert: paths.walletServerCert, key: paths.walletServerKey },
      public_url: `https://localhost:${ports.wallet}`,
      issuers: [{ id: issuerId, base_url: issuerId, ca: paths.caCert, servername: "localhost" }],
    });
    expect(token.component === "token" && token.issuers!.map((i) => [i.id, Object.keys(i.credential_configurations)])).to.deep.equal([
      [issuerId, Object.keys(CREDENTIAL_CONFIGURATIONS)],
    ]);
    const [allowed] = token.component === "token" ? token.issuers! : [];
    expect(allowed!.credential_configurations.identity_card).to.deep.equal({ vct: CREDENTIAL_CONFIGURATIONS.identity_card.vct, display: CREDENTIAL_CONFIGURATIONS.identity_card.display });
    // Nothing private reaches Token's configuration, nor anything of the issuer's to the others.
    const tokenText = readText(deployment.configFiles.token);
    expect(tokenText).to.not.include(deployment.devIssuer!.encryptionKey.d!);
    expect(tokenText).to.not.include(deployment.devIssuer!.signingKey.d!);
    for (const c of ["encryption", "storage"] as const) expect(readText(deployment.configFiles[c])).to.not.include(issuerId);
  });

  it("the development issuer's options: its id, port and certificate; hello-mesh's wallet server its peer, known by the orchestration CA, its attestations checked with Token's public wallet keys only", function () {
    const options = deployment.devIssuer!;
    expect(options.issuerId).to.equal(`https://localhost:${ports.issuer}`);
    expect(options.port).to.equal(ports.issuer);
    expect(options.statusPort).to.equal(ports.issuerStatus);
    expect(options.certPem).to.equal(readText(paths.cert));
    expect(options.keyPem).to.equal(readText(paths.key));
    const [walletServer, ...others] = options.walletServers;
    expect(others).to.deep.equal([]);
    expect(walletServer).to.deep.include({
      id: "hello-mesh",
      caPem: readText(pkiPaths(path.join(dir, "certs"), "orchestration").caCert),
      baseUrl: `https://localhost:${ports.wallet}`,
      servername: "localhost",
      attestationIssuer: `http://localhost:${ports.public}`,
    });
    const token = deployment.configs.token;
    const walletKeys = loadSigningKeys("token", (token as { keys: { wallet: string } }).keys.wallet, WALLET_KEYS);
    const expected = walletKeys.filter((k) => k.purpose === "wallet").map((k) => k.kid);
    expect(expected).to.have.length.greaterThan(0);
    expect(walletServer!.attestationJwks.keys.map((k) => k.kid)).to.deep.equal(expected);
    for (const key of walletServer!.attestationJwks.keys) {
      expect(key).to.not.have.property("d");
      expect(key.alg).to.equal("ES256");
    }
  });

  describe("the running pieces fit: the issuer from these options, the wallet server from Orchestration's derived configuration", function () {
    let issuer: DevIssuer;
    let wallet: WalletPlumbing;
    before(async () => {
      issuer = await startDevIssuer(deployment.devIssuer!);
      const orchestration = loadAnyComponentConfig(deployment.configFiles.orchestration);
      if (orchestration.component !== "orchestration" || !orchestration.wallet) throw new Error("no wallet section");
      wallet = await walletPlumbing(orchestration.wallet, new MemoryStore());
    });
    after(async () => {
      await wallet?.close();
      await issuer?.close();
    });

    it("Token's allow-list holds exactly the keys the running issuer publishes", async function () {
      const token = deployment.configs.token;
      const [allowed] = token.component === "token" ? token.issuers! : [];
      expect(allowed!.id).to.equal(issuer.metadata.issuer);
      expect(allowed!.encryption_key).to.deep.equal(issuer.metadata.encryptionKey);
      expect(allowed!.jwks.keys).to.have.length(1);
      const { use: _use, ...published } = issuer.metadata.jwks.keys[0]!;
      expect(allowed!.jwks.keys[0]).to.deep.include(published);
    });

    it("the wallet server calls the issuer at its base URL, pinning its CA, and the issuer knows it as hello-mesh", async function () {
      const answer = await wallet.issuers.client(issuer.metadata.issuer).get("/.well-known/s2s-issuer", issuerMetadataSchema);
      expect(answer.body).to.deep.equal(issuer.metadata);
    });

    it("the issuer reaches the wallet server at its public URL with its own certificate, and fetches evidence kept for it", async function () {
      const jwe = `eyJhbGciOiJIUEtFLTAifQ.${"B".repeat(87)}..Y2lwaGVy.`;
      const reference = await wallet.evidence.put(issuer.metadata.issuer, randomUUID(), jwe);
      expect(new URL(reference.downloadUrl).origin).to.equal(deployment.devIssuer!.walletServers[0]!.baseUrl);
      const fetched = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const request = https.request(reference.downloadUrl, {
          ca: deployment.devIssuer!.walletServers[0]!.caPem,
          cert: deployment.devIssuer!.certPem,
          key: deployment.devIssuer!.keyPem,
          servername: "localhost",
          agent: false,
          headers: { "Api-Version": API_VERSION, "x-request-id": randomUUID(), accept: "application/jose" },
        }, (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () => resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString("ascii") }));
        });
        request.on("error", reject);
        request.end();
      });
      expect(fetched).to.deep.equal({ status: 200, text: jwe });
      expect(z.string().parse(reference.contentDigest)).to.have.length(43);
    });
  });

  it("made once: a second run makes nothing and changes no file", async function () {
    const files = [paths.caCert, paths.caKey, paths.cert, paths.key, paths.walletServerCert, paths.walletServerKey, paths.keys];
    const before = files.map((file) => [readText(file), statSync(file).mtimeMs]);
    const lines: string[] = [];
    const again = await prepareDevDeployment(loadDevConfig(configFile), { devIssuer: true, log: (line) => lines.push(line) });
    expect(again.createdCertificates).to.equal(false);
    expect(lines).to.deep.equal([]);
    expect(files.map((file) => [readText(file), statSync(file).mtimeMs])).to.deep.equal(before);
    expect(again.configs.token).to.deep.equal(deployment.configs.token);
    expect(again.devIssuer!.encryptionKey).to.deep.equal(deployment.devIssuer!.encryptionKey);
  });

  it("resumes an interrupted run: a missing leaf is issued anew for the key left behind", async function () {
    const key = readText(paths.key);
    await rm(paths.cert);
    const again = await prepareDevDeployment(loadDevConfig(configFile), { devIssuer: true });
    expect(again.createdCertificates).to.equal(true);
    expect(readText(paths.key)).to.equal(key);
    expect(new X509Certificate(readText(paths.cert)).checkPrivateKey(createPrivateKey(key))).to.equal(true);
  });

  it("a leaf that its CA did not issue stops the run, saying how to start over", async function () {
    const leaf = readText(paths.walletServerCert);
    await writeFile(paths.walletServerCert, readText(paths.cert)); // the issuer's leaf where the wallet server's should be
    try {
      const error = await prepareDevDeployment(loadDevConfig(configFile), { devIssuer: true }).then(() => undefined, (e: unknown) => e as Error);
      expect(error?.message).to.include(`${paths.walletServerCert} was not issued by`);
      expect(error?.message).to.include("run again");
    } finally {
      await writeFile(paths.walletServerCert, leaf);
    }
  });

  it("without devIssuer, nothing of the issuer is made or derived: no wallet server takes ports.wallet", async function () {
    const other = await mkdtemp(path.join(os.tmpdir(), "hello-no-issuer-"));
    try {
      const file = path.join(other, "hello.config.json");
      await writeFile(file, JSON.stringify({ issuer: `http://localhost:${ports.public}`, ports, certificates: "certs", stateDir: "state" }));
      const plain = await prepareDevDeployment(loadDevConfig(file));
      expect(plain.devIssuer).to.equal(undefined);
      expect(plain.configs.orchestration).to.not.have.property("wallet");
      expect(plain.configs.token).to.not.have.property("issuers");
      expect(existsSync(path.join(other, "certs", "issuer"))).to.equal(false);
      expect(existsSync(path.join(other, "state", "issuer"))).to.equal(false);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });
});

const readText = (file: string): string => readFileSync(file, "utf8");
