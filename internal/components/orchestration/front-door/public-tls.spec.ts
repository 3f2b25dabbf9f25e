// The production front door over HTTPS (issue 18, item 8): its own TLS with a
// certificate from the project's PKI (RSA, P-256 and Ed25519 keys), seen by a strict
// relying party (openid-client without allowInsecureRequests, trusting the test CA
// only), HSTS on every answer, a new certificate served without a restart, a bad pair
// refused at start with its file named; and behind a TLS-terminating proxy, whose
// Forwarded / X-Forwarded-Proto counts only from the addresses the configuration trusts.
// The front doors are the in-process mesh's (real Token, Encryption and Storage).

import { X509Certificate } from "node:crypto";
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from "node:fs/promises";
import https from "node:https";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { expect } from "chai";
import * as oidc from "openid-client";
import { ComponentConfigSchema } from "../../../config/component-config.js";
import { formatIssues } from "../../../config/errors.js";
import { type CertificateAndKey, type KeyType, createCertificateAuthority, issueLeafCertificate } from "../../../ops/pki/pki.js";
import { openPGliteStore } from "../../storage/backend/pglite-store.js";
import type { RecordStore } from "../../storage/backend/record-store.js";
import { freePort } from "../../../../test/support/free-port.js";
import { type InProcessMesh, type InProcessMeshOptions, freshMeshKeys, inMemoryJoins, startInProcessMesh } from "../../../../test/support/in-process-mesh.js";
import { HSTS, arrivedOverHttps, trustedProxies } from "./forwarded.js";
import { PublicTlsError, type PublicTlsReload } from "./public-tls.js";

/** One HTTP(S) answer, read whole. */
interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A request over node:http(s), trusting `ca` only for https; no connection is reused. */
function request(url: string, init: { method?: string; headers?: Record<string, string>; body?: string; ca?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const client = url.startsWith("https:") ? https : http;
    const req = client.request(url, { method: init.method ?? "GET", headers: init.headers ?? {}, agent: false, ...(init.ca ? { ca: init.ca } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(init.body);
  });
}

/** openid-client's fetch, over node:https trusting `ca` only (global fetch would trust the system's CAs). */
function fetchTrusting(ca: string): oidc.CustomFetch {
  return async (url, options) => {
    const body = options.body === undefined || options.body === null ? undefined : String(options.body);
    const answer = await request(url, { method: options.method, headers: options.headers, ca, ...(body === undefined ? {} : { body }) });
    const headers = new Headers();
    for (const [name, value] of Object.entries(answer.headers)) for (const v of [value ?? []].flat()) headers.append(name, v);
    return new Response(answer.body, { status: answer.status, headers });
  };
}

/** The SHA-256 fingerprint of the certificate `port` presents for `servername` in a fresh handshake. */
function servedFingerprint(port: number, ca: string, servername = "localhost"): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ca, servername }, () => {
      const fingerprint = socket.getPeerX509Certificate()!.fingerprint256;
      socket.end();
      resolve(fingerprint);
    });
    socket.on("error", reject);
  });
}

describe("the front door over HTTPS (issue 18, item 8)", function () {
  this.timeout(60_000);
  let dir: string;
  let store: RecordStore;
  let ca: CertificateAndKey;
  const leaves = new Map<KeyType, CertificateAndKey>();
  const doors: InProcessMesh[] = [];

  /** A server certificate from the test CA for `names` (DNS names and IP addresses). */
  const serverLeaf = (keyType: KeyType, dnsNames = ["localhost"], ipAddresses = ["127.0.0.1"]) =>
    issueLeafCertificate(ca, { uris: [], dnsNames, ipAddresses, server: true, keyType, commonName: dnsNames[0] ?? "server" });

  /** Writes `pair` as `<name>.crt` and `<name>.key` (through a rename, as a careful writer does). */
  async function writePair(name: string, pair: CertificateAndKey) {
    const files = { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
    for (const [file, text] of [[files.cert, pair.certPem], [files.key, pair.keyPem]] as const) {
      await writeFile(`${file}.tmp`, text);
      await rename(`${file}.tmp`, file);
    }
    return files;
  }

  async function startDoor(issuerOf: (port: number) => string, door: InProcessMeshOptions["door"] = {}) {
    const port = await freePort();
    const mesh = await startInProcessMesh({
      issuer: issuerOf(port),
      port,
      keys: freshMeshKeys(),
      store,
      orchestration: { clients: [{ client_id: "app", redirect_uris: ["https://app.example/cb"], token_endpoint_auth_method: "none" }], providers: [] },
      token: { clients: [{ client_id: "app", redirect_uris: ["https://app.example/cb"], id_token_signed_response_alg: "RS256" }], providers: [] },
      door,
    }, inMemoryJoins());
    doors.push(mesh);
    return { mesh, port, issuer: issuerOf(port) };
  }

  before(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-front-door-tls-"));
    store = await openPGliteStore({});
    ca = createCertificateAuthority("orchestration", { keyType: "p256", commonName: "hello-mesh test public CA" });
    for (const keyType of ["rsa", "p256", "ed25519"] as const) leaves.set(keyType, serverLeaf(keyType));
  });
  after(async function () {
    await Promise.all(doors.map((d) => d.close()));
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe("its own TLS (public.tls)", function () {
    let door: Awaited<ReturnType<typeof startDoor>>;
    const reloads: PublicTlsReload[] = [];
    let files: { cert: string; key: string };

    before(async function () {
      files = await writePair("public", leaves.get("rsa")!);
      door = await startDoor((port) => `https://localhost:${port}`, { tls: files, onTlsReload: (outcome) => reloads.push(outcome) });
    });

    it("a strict relying party discovers it over https, trusting the test CA only; the JWKS is Token's", async function () {
      expect(door.mesh.url).to.match(/^https:/);
      const config = await oidc.discovery(new URL(door.issuer), "app", undefined, oidc.None(), { [oidc.customFetch]: fetchTrusting(ca.certPem) });
      expect(config.serverMetadata().issuer).to.equal(door.issuer);
      expect(config.serverMetadata().jwks_uri).to.equal(`${door.issuer}/jwks`);
      const jwks = await request(`${door.issuer}/jwks`, { ca: ca.certPem });
      expect(jwks.status).to.equal(200);
      expect(JSON.parse(jwks.body).keys).to.have.length.greaterThan(0);
      // and a client that trusts only the system's CAs refuses the test CA's certificate
      const error = await request(`${door.issuer}/.well-known/openid-configuration`).then(() => undefined, (e: NodeJS.ErrnoException) => e);
      expect(error?.code).to.match(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER_CERT/);
    });

    it("HSTS on every answer: pages, JSON, errors, health", async function () {
      const answers = await Promise.all([
        request(`${door.issuer}/.well-known/openid-configuration`, { ca: ca.certPem }),
        request(`${door.issuer}/jwks`, { ca: ca.certPem }),
        request(`${door.issuer}/nowhere`, { ca: ca.certPem }),
        request(`${door.issuer}/token`, { ca: ca.certPem }), // 405
        request(`${door.issuer}/token`, { method: "POST", ca: ca.certPem, headers: { "content-type": "application/x-www-form-urlencoded" }, body: "grant_type=authorization_code&code=x&client_id=app" }),
        request(`${door.issuer}/authorize?client_id=nobody`, { ca: ca.certPem }),
        request(`${door.issuer}/healthz/live`, { ca: ca.certPem }),
      ]);
      expect(answers.map((a) => a.status)).to.deep.equal([200, 200, 404, 405, 400, 400, 200]);
      for (const answer of answers) expect(answer.headers["strict-transport-security"]).to.equal(HSTS);
    });

    it("TLS 1.2 at least: a TLS 1.2 client is served, a TLS 1.1 client refused in the handshake", async function () {
      const handshake = (version: tls.SecureVersion) => new Promise<string>((resolve) => {
        const socket = tls.connect({ host: "127.0.0.1", port: door.port, ca: ca.certPem, servername: "localhost", minVersion: version, maxVersion: version }, () => {
          resolve(socket.getProtocol()!);
          socket.end();
        });
        socket.on("error", (error) => resolve(error.message));
      });
      expect(await handshake("TLSv1.2")).to.equal("TLSv1.2");
      expect(await handshake("TLSv1.1")).to.match(/protocol version/);
    });

    it("a new certificate is served without a restart (RSA, then P-256, then Ed25519); a bad one is logged and the pair in force stays", async function () {
      const expected = (keyType: KeyType) => new X509Certificate(leaves.get(keyType)!.certPem).fingerprint256;
      expect(await servedFingerprint(door.port, ca.certPem)).to.equal(expected("rsa"));
      for (const keyType of ["p256", "ed25519"] as const) {
        const count = reloads.length;
        await writePair("public", leaves.get(keyType)!);
        await until(() => reloads.length > count);
        expect(reloads.at(-1)).to.have.property("pair");
        expect(await servedFingerprint(door.port, ca.certPem)).to.equal(expected(keyType));
        const config = await oidc.discovery(new URL(door.issuer), "app", undefined, oidc.None(), { [oidc.customFetch]: fetchTrusting(ca.certPem) });
        expect(config.serverMetadata().issuer).to.equal(door.issuer);
      }
      // a key that is not the certificate's: reported, naming both files; Ed25519 still served
      const count = reloads.length;
      await writeFile(files.key, leaves.get("rsa")!.keyPem);
      await until(() => reloads.length > count);
      const failed = reloads.at(-1) as { error: Error };
      expect(failed.error).to.be.instanceOf(PublicTlsError);
      expect(failed.error.message).to.include(files.cert).and.include(files.key).and.include("not a pair");
      expect(await servedFingerprint(door.port, ca.certPem)).to.equal(expected("ed25519"));
    });
  });

  it("a Kubernetes secret volume's update (a `..data` symlink swapped, the files never named) is served too", async function () {
    const volume = path.join(dir, "volume");
    await mkdir(volume);
    const version = async (name: string, pair: CertificateAndKey) => {
      await mkdir(path.join(volume, name));
      await writeFile(path.join(volume, name, "tls.crt"), pair.certPem);
      await writeFile(path.join(volume, name, "tls.key"), pair.keyPem);
      await symlink(name, path.join(volume, "..data_tmp"));
      await rename(path.join(volume, "..data_tmp"), path.join(volume, "..data"));
    };
    await version("..v1", leaves.get("p256")!);
    for (const file of ["tls.crt", "tls.key"]) await symlink(path.join("..data", file), path.join(volume, file));
    const reloads: PublicTlsReload[] = [];
    const door = await startDoor((port) => `https://localhost:${port}`, { tls: { cert: path.join(volume, "tls.crt"), key: path.join(volume, "tls.key") }, onTlsReload: (o) => reloads.push(o) });
    const fingerprint = (keyType: KeyType) => new X509Certificate(leaves.get(keyType)!.certPem).fingerprint256;
    expect(await servedFingerprint(door.port, ca.certPem)).to.equal(fingerprint("p256"));
    await version("..v2", leaves.get("ed25519")!);
    await until(() => reloads.length > 0);
    expect(reloads).to.have.length(1);
    expect(await servedFingerprint(door.port, ca.certPem)).to.equal(fingerprint("ed25519"));
  });

  describe("a pair that does not load stops the start, naming the file", function () {
    const refusal = async (door: InProcessMeshOptions["door"], issuer = (port: number) => `https://localhost:${port}`) => {
      const error = await startDoor(issuer, door).then(() => undefined, (e: unknown) => e);
      expect(error).to.be.instanceOf(PublicTlsError);
      return (error as Error).message;
    };

    it("a missing certificate, a certificate that is not one, a key that is not one", async function () {
      const good = await writePair("good", leaves.get("p256")!);
      const nothing = path.join(dir, "nothing.crt");
      expect(await refusal({ tls: { ...good, cert: nothing } })).to.include(nothing).and.include("does not exist");
      const garbage = path.join(dir, "garbage.pem");
      await writeFile(garbage, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n");
      expect(await refusal({ tls: { ...good, cert: garbage } })).to.include(garbage).and.include("does not parse");
      expect(await refusal({ tls: { ...good, key: good.cert } })).to.include(good.cert).and.include("not a private key");
      expect(await refusal({ tls: { ...good, chain: path.join(dir, "no-chain.pem") } })).to.include("no-chain.pem");
    });

    it("a certificate and key that are not a pair, and a certificate for another host", async function () {
      const good = await writePair("good", leaves.get("p256")!);
      const other = await writePair("other", leaves.get("ed25519")!);
      const message = await refusal({ tls: { cert: good.cert, key: other.key } });
      expect(message).to.include(good.cert).and.include(other.key).and.include("not a pair");
      const elsewhere = await writePair("elsewhere", serverLeaf("p256", ["id.example"], []));
      expect(await refusal({ tls: elsewhere })).to.include(elsewhere.cert).and.include("does not name localhost");
    });
  });

  describe("behind a TLS-terminating proxy (public.trusted_proxies)", function () {
    const discovery = (base: string, headers: Record<string, string> = {}) => request(`${base}/.well-known/openid-configuration`, { headers });
    const forwarded = { "x-forwarded-proto": "https", forwarded: "for=192.0.2.1;proto=https;host=evil.example", "x-forwarded-host": "evil.example" };
    const issuer = "https://id.example";

    it("from a trusted address, X-Forwarded-Proto: https or Forwarded: proto=https makes the answer HTTPS's: HSTS", async function () {
      const { mesh } = await startDoor(() => issuer, { trustedProxies: ["10.9.9.9", "127.0.0.0/8"] });
      expect((await discovery(mesh.url, { "x-forwarded-proto": "https" })).headers["strict-transport-security"]).to.equal(HSTS);
      expect((await discovery(mesh.url, { forwarded: "for=192.0.2.1;proto=https" })).headers["strict-transport-security"]).to.equal(HSTS);
      // the nearest proxy's word is the last one; two that disagree are not https
      expect((await discovery(mesh.url, { "x-forwarded-proto": "https, http" })).headers).to.not.have.property("strict-transport-security");
      expect((await discovery(mesh.url, { "x-forwarded-proto": "https", forwarded: "proto=http" })).headers).to.not.have.property("strict-transport-security");
      expect((await discovery(mesh.url)).headers).to.not.have.property("strict-transport-security");
      // nothing is built from the request: the issuer is the configuration's whatever Host or X-Forwarded-Host say
      expect(JSON.parse((await discovery(mesh.url, forwarded)).body).issuer).to.equal(issuer);
    });

    it("from any other peer the same headers change nothing: the same answer as without them", async function () {
      for (const trusted of [undefined, ["10.9.9.9", "192.168.0.0/16", "::1"]]) {
        const { mesh } = await startDoor(() => issuer, trusted ? { trustedProxies: trusted } : {});
        const plain = await discovery(mesh.url);
        const withHeaders = await discovery(mesh.url, forwarded);
        expect(withHeaders.status).to.equal(plain.status);
        expect(withHeaders.body).to.equal(plain.body);
        const { date: _a, ...plainHeaders } = plain.headers;
        const { date: _b, ...otherHeaders } = withHeaders.headers;
        expect(otherHeaders).to.deep.equal(plainHeaders);
        expect(otherHeaders).to.not.have.property("strict-transport-security");
      }
    });

    it("the trust rule reads the connection's address, IPv4-mapped IPv6 included", function () {
      const trusted = trustedProxies(["10.0.0.0/8", "fd00::/8"]);
      const req = (remoteAddress: string, headers: http.IncomingHttpHeaders) => ({ socket: { remoteAddress }, headers }) as unknown as http.IncomingMessage;
      expect(arrivedOverHttps(req("10.1.2.3", { "x-forwarded-proto": "https" }), trusted)).to.equal(true);
      expect(arrivedOverHttps(req("::ffff:10.1.2.3", { "x-forwarded-proto": "HTTPS" }), trusted)).to.equal(true);
      expect(arrivedOverHttps(req("fd12::1", { forwarded: 'for="[fd12::9]";proto="https"' }), trusted)).to.equal(true);
      expect(arrivedOverHttps(req("11.1.2.3", { "x-forwarded-proto": "https" }), trusted)).to.equal(false);
      expect(arrivedOverHttps(req("10.1.2.3", {}), trusted)).to.equal(false);
      expect(arrivedOverHttps(req("10.1.2.3", { "x-forwarded-proto": "https" }), undefined)).to.equal(false);
    });
  });

  describe("Orchestration's configuration (component-config.ts)", function () {
    const orchestration = (issuer: string, pub: Record<string, unknown> = {}) => ({
      component: "orchestration",
      listen: { port: 7100 },
      tls: { cert: "o.crt", key: "o.key" },
      bundles: "bundles",
      peers: { token: "https://127.0.0.1:7101", encryption: "https://127.0.0.1:7102" },
      keys: { lookup: "lookup.key", cookie: "cookie.key" },
      public: { port: 9000, ...pub },
      issuer,
      clients: [],
      providers: [],
    });
    const problems = (config: unknown) => {
      const parsed = ComponentConfigSchema.safeParse(config);
      return parsed.success ? [] : formatIssues(parsed.error);
    };

    it("an http issuer is for a loopback address only; https takes TLS, a proxy, or neither (a warning at start)", function () {
      for (const issuer of ["http://localhost:9000", "http://127.0.0.1:9000", "http://[::1]:9000", "https://id.example", "https://id.example/tenant"]) {
        expect(problems(orchestration(issuer)), issuer).to.deep.equal([]);
      }
      expect(problems(orchestration("http://id.example"))).to.deep.equal([
        "issuer: must be an https:// URL (OpenID Connect Discovery 1.0 §3); http:// is for development on localhost, 127.0.0.1 or [::1] only, not id.example",
      ]);
      expect(problems(orchestration("http://localhost:9000", { tls: { cert: "p.crt", key: "p.key" } }))[0]).to.match(/^public\.tls: .*the issuer is http:\/\//);
      expect(problems(orchestration("https://id.example", { tls: { cert: "p.crt", key: "p.key", chain: "chain.pem" }, trusted_proxies: ["10.0.0.7", "10.1.0.0/16", "fd00::/8"] }))).to.deep.equal([]);
    });

    it("a trusted proxy is an address or a subnet", function () {
      const bad = problems(orchestration("https://id.example", { trusted_proxies: ["proxy.internal", "10.0.0.0/33", "10.0.0.1/8/8", "::1/129"] }));
      expect(bad).to.have.length(4);
      for (const line of bad) expect(line).to.match(/^public\.trusted_proxies\[\d\]: must be an IP address or a subnet/);
      expect(problems(orchestration("https://id.example", { trusted_proxies: [] }))).to.have.length(1);
    });
  });
});

/** Waits for `condition`, polling every 50 ms, for at most 10 s. */
async function until(condition: () => boolean) {
  const end = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
