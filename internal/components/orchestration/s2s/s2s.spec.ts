// The wallet server's S2S plumbing over real mutual TLS on 127.0.0.1: the evidence store
// (issuer scoping, expiry by the store's TTL, the digest), the S2S listener (issuers
// known by their CA, notifications to the handlers with the calling issuer's id,
// evidence only to its issuer) and the issuer clients (each pinned to its issuer's CA).

import { createHash, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { z } from "zod";
import type { WalletServerConfig } from "../../../config/component-config.js";
import { type CertificateAndKey, createCertificateAuthority, issueLeafCertificate } from "../../../ops/pki/pki.js";
import { type EventNotify, type VerificationStatus, credentialStatusResponseSchema } from "../../../s2s/messages.js";
import { ProblemError, problem } from "../../../s2s/problem.js";
import { WireClient, WireError } from "../../../s2s/wire-client.js";
import { API_VERSION, type WireServer, startWireServer } from "../../../s2s/wire-server.js";
import { MemoryStore, type SharedStore } from "../sealed.js";
import { walletPlumbing } from "../wiring.js";
import { EVIDENCE_TTL_SECONDS, EvidenceError, EvidenceStore, MAX_EVIDENCE_BYTES } from "./evidence.js";
import type { S2sHandlers } from "./handlers.js";
import { IssuerClients, UnknownIssuerError } from "./issuers.js";
import { startS2sServer } from "./s2s-server.js";

const ISSUER_A = "https://issuer-a.test";
const ISSUER_B = "https://issuer-b.test";
const PUBLIC_URL = "https://localhost:7104";

const ca = (name: string) => createCertificateAuthority("orchestration", { commonName: name, keyType: "p256" });
const leaf = (issuer: CertificateAndKey, name: string) =>
  issueLeafCertificate(issuer, { uris: [], dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], server: true, client: true, keyType: "p256", commonName: name });

/** A compact JWE's shape (five base64url parts; IV and tag empty, as HPKE-0 makes them). */
const jweOf = (ciphertext: string) => `eyJhbGciOiJIUEtFLTAiLCJraWQiOiJrIn0.${"A".repeat(87)}..${ciphertext}.`;

/** Date.now moved by `ms` while `during` runs. */
async function later<T>(ms: number, during: () => Promise<T>): Promise<T> {
  const real = Date.now;
  const offset = real() + ms;
  const start = real();
  Date.now = () => offset + (real() - start);
  try {
    return await during();
  } finally {
    Date.now = real;
  }
}

describe("the wallet server's S2S plumbing (docs/wallet-server.md)", function () {
  this.timeout(20_000);

  describe("EvidenceStore", () => {
    it("keeps a compact JWE for one issuer: a reference at public_url/evidence/<128-bit id>, its digest, size and expiry", async () => {
      const evidence = new EvidenceStore(new MemoryStore(), `${PUBLIC_URL}/`);
      const jwe = jweOf("Y2lwaGVydGV4dA");
      const before = Date.now();
      const reference = await evidence.put(ISSUER_A, randomUUID(), jwe);
      expect(Object.keys(reference).sort()).to.deep.equal(["contentDigest", "contentSize", "downloadUrl", "expiresAt", "origin"]);
      expect(reference.origin).to.equal("WALLET_CLIENT");
      expect(reference.downloadUrl).to.match(new RegExp(`^${PUBLIC_URL}/evidence/[A-Za-z0-9_-]{22}$`));
      expect(reference.contentDigest).to.equal(createHash("sha256").update(Buffer.from(jwe, "ascii")).digest("base64url"));
      expect(reference.contentDigest).to.match(/^[A-Za-z0-9_-]{43}$/);
      expect(reference.contentSize).to.equal(Buffer.byteLength(jwe));
      const expires = Date.parse(reference.expiresAt);
      expect(expires - before).to.be.within(EVIDENCE_TTL_SECONDS * 1000, EVIDENCE_TTL_SECONDS * 1000 + 5_000);
      expect(EVIDENCE_TTL_SECONDS).to.equal(600);
      const id = reference.downloadUrl.split("/").at(-1)!;
      expect(Buffer.from(id, "base64url")).to.have.length(16);
      expect(await evidence.get(ISSUER_A, id)).to.equal(jwe);
      expect(await evidence.get(ISSUER_A, id), "not single use: the issuer may fetch again").to.equal(jwe);
      const other = await evidence.put(ISSUER_A, randomUUID(), jwe);
      expect(other.downloadUrl, "a new id each time").to.not.equal(reference.downloadUrl);
    });

    it("gives it to that issuer only: another issuer, an unknown id and a malformed one get nothing", async () => {
      const evidence = new EvidenceStore(new MemoryStore(), PUBLIC_URL);
      const reference = await evidence.put(ISSUER_A, randomUUID(), jweOf("c2VjcmV0"));
      const id = reference.downloadUrl.split("/").at(-1)!;
      expect(await evidence.get(ISSUER_B, id)).to.equal(undefined);
      expect(await evidence.get("", id)).to.equal(undefined);
      expect(await evidence.get(ISSUER_A, "AAAAAAAAAAAAAAAAAAAAAA")).to.equal(undefined);
      for (const bad of ["", `${id}x`, id.slice(1), "../evidence", `${id.slice(0, 21)}.`]) expect(await evidence.get(ISSUER_A, bad), bad).to.equal(undefined);
      expect(await evidence.get(ISSUER_A, id)).to.not.equal(undefined);
    });

    it("expires with the store's TTL: 10 minutes, then gone for everyone", async () => {
      const store = new MemoryStore();
      const evidence = new EvidenceStore(store, PUBLIC_URL);
      const id = (await evidence.put(ISSUER_A, randomUUID(), jweOf("dHRs"))).downloadUrl.split("/").at(-1)!;
      expect(await later(EVIDENCE_TTL_SECONDS * 1000 - 5_000, () => evidence.get(ISSUER_A, id)), "9m55s on").to.not.equal(undefined);
      expect(await later(EVIDENCE_TTL_SECONDS * 1000 + 1_000, () => evidence.get(ISSUER_A, id)), "10m01s on").to.equal(undefined);
    });

    it("stores nothing readable: the key is the id's hash under evidence:, the entry sealed", async () => {
      const memory = new MemoryStore();
      const written: Array<{ key: string; value: Buffer; ttl: number }> = [];
      const recording: SharedStore = {
        get: (key) => memory.get(key),
        take: (key) => memory.take(key),
        claim: (key, ttl) => memory.claim(key, ttl),
        put: async (key, value, ttl) => {
          written.push({ key, value, ttl });
          await memory.put(key, value, ttl);
        },
      };
      const jwe = jweOf("cmVhZGFibGU");
      const reference = await new EvidenceStore(recording, PUBLIC_URL).put(ISSUER_A, randomUUID(), jwe);
      const id = reference.downloadUrl.split("/").at(-1)!;
      expect(written).to.have.length(1);
      expect(written[0]!.key).to.equal(`evidence:${createHash("sha256").update(id).digest("base64url")}`);
      expect(written[0]!.ttl).to.equal(600_000);
      const stored = written[0]!.value.toString("latin1");
      for (const secret of [id, ISSUER_A, "cmVhZGFibGU"]) expect(stored).to.not.include(secret);
      expect(memory.stats().map((s) => s.kind)).to.deep.equal(["evidence"]);
    });

    it("refuses what is not a compact JWE of at most 8 MiB, saying why", async () => {
      const evidence = new EvidenceStore(new MemoryStore(), PUBLIC_URL);
      const refusal = async (jwe: unknown) => {
        try {
          await evidence.put(ISSUER_A, randomUUID(), jwe as string);
        } catch (error) {
          expect(error).to.be.instanceOf(EvidenceError);
          return (error as Error).message;
        }
        return expect.fail(`accepted ${String(jwe).slice(0, 40)}`);
      };
      expect(await refusal("a.b.c.d")).to.match(/five base64url parts.*not 4/);
      expect(await refusal("a.b.c.d.e.f")).to.match(/not 6/);
      expect(await refusal("eyJ.a.b.c+d.e")).to.match(/each part base64url/);
      expect(await refusal("eyJ.a.b.c d.e")).to.match(/each part base64url/);
      expect(await refusal("eyJ.a.b.cé.e")).to.match(/each part base64url/);
      expect(await refusal("eyJ=.a.b.c.e")).to.match(/each part base64url/);
      expect(await refusal(".a.b.c.")).to.match(/header and ciphertext cannot be empty/);
      expect(await refusal("eyJ.a.b..")).to.match(/header and ciphertext cannot be empty/);
      expect(await refusal(42)).to.match(/a string/);
      const tooBig = jweOf("A".repeat(MAX_EVIDENCE_BYTES));
      expect(await refusal(tooBig)).to.match(/limited to 8388608 bytes \(8 MiB\)/);
      const justRight = jweOf("A".repeat(MAX_EVIDENCE_BYTES - jweOf("").length));
      expect(justRight.length).to.equal(MAX_EVIDENCE_BYTES);
      expect((await evidence.put(ISSUER_A, randomUUID(), justRight)).contentSize).to.equal(MAX_EVIDENCE_BYTES);
    });
  });

  describe("the S2S listener and the issuer clients, over mutual TLS", () => {
    let dir: string;
    const pki = {} as Record<"walletCa" | "wallet" | "caA" | "issuerA" | "caB" | "issuerB" | "rogueCa" | "rogue", CertificateAndKey>;
    const files = {} as Record<"walletCert" | "walletKey" | "caA" | "caB" | "walletCa", string>;
    let config: WalletServerConfig;
    let server: WireServer;
    let evidence: EvidenceStore;
    const received: Array<{ kind: "notice" | "event"; issuer: string; body: VerificationStatus | EventNotify }> = [];
    const handlers: S2sHandlers = {
      async verificationNotice(issuer, status) {
        if (status.verificationId === "not-yours") throw problem(404, "unknown_session", "no session with this id belongs to you");
        received.push({ kind: "notice", issuer, body: status });
      },
      async event(issuer, event) {
        if (event.credentialInstanceId === "crash") throw new Error("the database said db://admin:hunter2@db");
        received.push({ kind: "event", issuer, body: event });
      },
      async credentialStatus(issuer, request) {
        if (request.credentialInstanceId === "not-yours") throw problem(404, "unknown_credential_instance", "no credential instance with this id belongs to you");
        return { currentStatus: "ACTIVE", currentVersion: `1-${issuer}-${request.credentialInstanceId}` };
      },
      async manage(issuer, request) {
        return { sessionId: request.sessionId, credentialInstanceId: `${issuer} ${request.action}`, currentStatus: "ACTIVE", outcome: "SCHEDULED" };
      },
    };
    const errors: unknown[] = [];
    const clients: WireClient[] = [];
    /** An issuer's client of the wallet server: its own leaf, the wallet server's CA pinned. */
    const asIssuer = (leafOf: CertificateAndKey) => {
      const client = new WireClient({ baseUrl: server.url, caPem: pki.walletCa.certPem, ...leafOf, servername: "localhost", maxRetries: 0 });
      clients.push(client);
      return client;
    };

    before(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), "wallet-s2s-"));
      pki.walletCa = ca("test orchestration CA");
      pki.wallet = leaf(pki.walletCa, "wallet server");
      pki.caA = ca("issuer A CA");
      pki.issuerA = leaf(pki.caA, "issuer A");
      pki.caB = ca("issuer B CA");
      pki.issuerB = leaf(pki.caB, "issuer B");
      pki.rogueCa = ca("rogue CA");
      pki.rogue = leaf(pki.rogueCa, "rogue");
      const write = async (name: string, text: string) => {
        const file = path.join(dir, name);
        await writeFile(file, text, { mode: 0o600 });
        return file;
      };
      files.walletCert = await write("wallet-server.crt", pki.wallet.certPem);
      files.walletKey = await write("wallet-server.key", pki.wallet.keyPem);
      files.walletCa = await write("wallet-ca.crt", pki.walletCa.certPem);
      files.caA = await write("issuer-a-ca.crt", pki.caA.certPem);
      files.caB = await write("issuer-b-ca.crt", pki.caB.certPem);
      config = {
        listen: { host: "127.0.0.1", port: 0 },
        tls: { cert: files.walletCert, key: files.walletKey },
        public_url: PUBLIC_URL,
        issuers: [
          { id: ISSUER_A, base_url: "https://127.0.0.1:1", ca: files.caA, servername: "localhost" },
          { id: ISSUER_B, base_url: "https://127.0.0.1:1", ca: files.caB },
        ],
      };
      evidence = new EvidenceStore(new MemoryStore(), PUBLIC_URL);
      server = await startS2sServer({ config, handlers, evidence, onError: (error) => errors.push(error) });
    });
    after(async () => {
      for (const client of clients) client.close();
      await server?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    /** One GET on a fresh connection as `client` (null: no certificate), the way the development issuer fetches evidence. */
    const fetchAs = (client: CertificateAndKey | null, target: string) =>
      new Promise<{ status: number; type: string | undefined; text: string }>((resolve, reject) => {
        const request = https.request(
          new URL(target, server.url),
          {
            method: "GET",
            agent: false,
            ca: pki.walletCa.certPem,
            servername: "localhost",
            ...(client ? { cert: client.certPem, key: client.keyPem } : {}),
            headers: { "Api-Version": API_VERSION, "x-request-id": randomUUID(), accept: "application/jose" },
          },
          (response) => {
            const chunks: Buffer[] = [];
            response.on("data", (chunk: Buffer) => chunks.push(chunk));
            response.on("end", () => resolve({ status: response.statusCode ?? 0, type: response.headers["content-type"], text: Buffer.concat(chunks).toString("utf8") }));
            response.on("error", reject);
          },
        );
        request.on("error", reject);
        request.end();
      });

    const status = (verificationId: string): VerificationStatus => ({ sessionId: randomUUID(), verificationId, status: "PENDING" });
    const echo = z.object({ sessionId: z.string(), verificationId: z.string() });

    it("refuses in the handshake an issuer whose CA is not configured, and one with no certificate: no handler runs", async () => {
      const rogue = new WireClient({ baseUrl: server.url, caPem: pki.walletCa.certPem, ...pki.rogue, servername: "localhost", maxRetries: 0 });
      clients.push(rogue);
      const before = received.length;
      const error = await rogue.post("/verification/notify", status("v-rogue"), echo).then(() => undefined, (e: unknown) => e);
      expect(error).to.be.instanceOf(WireError);
      expect(error).to.not.be.instanceOf(ProblemError); // no answer at all: the handshake failed
      const anonymous = await fetchAs(null, "/evidence/AAAAAAAAAAAAAAAAAAAAAA").then(() => undefined, (e: unknown) => e);
      expect(anonymous).to.be.instanceOf(Error);
      expect(received.length).to.equal(before);
    });

    it("a verification notice reaches the handler with the calling issuer's id, and is answered with its ids", async () => {
      const fromA = status("v-a");
      const answer = await asIssuer(pki.issuerA).post("/verification/notify", fromA, echo);
      expect(answer.status).to.equal(200);
      expect(answer.body).to.deep.equal({ sessionId: fromA.sessionId, verificationId: "v-a" });
      const fromB = { ...status("v-b"), status: "APPROVED", credentialConfigurationIds: ["identity_card"] };
      await asIssuer(pki.issuerB).post("/verification/notify", fromB, echo);
      expect(received.slice(-2)).to.deep.equal([
        { kind: "notice", issuer: ISSUER_A, body: fromA },
        { kind: "notice", issuer: ISSUER_B, body: fromB },
      ]);
    });

    it("an event reaches the handler with the issuer's id and is acknowledged", async () => {
      const event: EventNotify = { sessionId: randomUUID(), credentialInstanceId: "i-1", eventType: "CREDENTIAL_READY", eventTimestamp: new Date().toISOString() };
      const answer = await asIssuer(pki.issuerB).post("/event/notify", event, z.object({ acknowledged: z.literal(true) }));
      expect(answer.body).to.deep.equal({ acknowledged: true });
      expect(received.at(-1)).to.deep.equal({ kind: "event", issuer: ISSUER_B, body: event });
    });

    it("/credential/status and /credential/manage reach their handlers with the calling issuer's id; a refusal is the issuer's 404", async () => {
      const sessionId = randomUUID();
      const answer = await asIssuer(pki.issuerA).post("/credential/status", { sessionId, credentialInstanceId: "i-7" }, credentialStatusResponseSchema);
      expect(answer.body).to.deep.equal({ currentStatus: "ACTIVE", currentVersion: `1-${ISSUER_A}-i-7` });
      const refused = await asIssuer(pki.issuerB).post("/credential/status", { sessionId, credentialInstanceId: "not-yours" }, z.unknown()).then(() => undefined, (e: unknown) => e);
      expect((refused as ProblemError).problem).to.include({ status: 404, errorCode: "unknown_credential_instance" });
      const managed = await asIssuer(pki.issuerB).post("/credential/manage", { sessionId, credentialInstanceId: "i-7", action: "SUSPEND" }, z.looseObject({ credentialInstanceId: z.string(), outcome: z.string() }));
      expect(managed.body).to.include({ credentialInstanceId: `${ISSUER_B} SUSPEND`, outcome: "SCHEDULED" });
    });

    it("a handler's refusal is the issuer's problem; a body off the schema never reaches it; a crash is an opaque 500", async () => {
      const before = received.length;
      const refused = await asIssuer(pki.issuerA).post("/verification/notify", status("not-yours"), echo).then(() => undefined, (e: unknown) => e);
      expect(refused).to.be.instanceOf(ProblemError);
      expect((refused as ProblemError).problem).to.include({ status: 404, errorCode: "unknown_session" });
      const invalid = await asIssuer(pki.issuerA).post("/verification/notify", { ...status("v"), status: "APPROVED" }, echo).then(() => undefined, (e: unknown) => e);
      expect((invalid as ProblemError).problem).to.include({ status: 400, errorCode: "invalid_request" });
      const crash = { sessionId: randomUUID(), credentialInstanceId: "crash", eventType: "CREDENTIAL_READY", eventTimestamp: "now" };
      const failed = await asIssuer(pki.issuerA).post("/event/notify", crash, z.unknown()).then(() => undefined, (e: unknown) => e);
      expect((failed as ProblemError).problem).to.include({ status: 500, errorCode: "internal_error" });
      expect(JSON.stringify((failed as ProblemError).problem)).to.not.include("hunter2");
      expect(errors.map((e) => (e as Error).message)).to.include("the database said db://admin:hunter2@db");
      expect(received.length).to.equal(before);
    });

    it("serves evidence at its downloadUrl's path as application/jose, byte for byte, to its issuer only", async () => {
      const jwe = jweOf("ZXZpZGVuY2U");
      const reference = await evidence.put(ISSUER_A, randomUUID(), jwe);
      const where = new URL(reference.downloadUrl).pathname;
      const got = await fetchAs(pki.issuerA, where);
      expect([got.status, got.type, got.text]).to.deep.equal([200, "application/jose", jwe]);
      expect(createHash("sha256").update(got.text, "ascii").digest("base64url")).to.equal(reference.contentDigest);
      const other = await fetchAs(pki.issuerB, where);
      expect(other.status).to.equal(404);
      expect(JSON.parse(other.text)).to.include({ errorCode: "unknown_evidence" });
      expect(other.text).to.not.include(jwe.split(".")[3]!);
      for (const path of ["/evidence/AAAAAAAAAAAAAAAAAAAAAA", "/evidence/short"]) {
        const unknown = await fetchAs(pki.issuerA, path);
        expect([unknown.status, JSON.parse(unknown.text).errorCode], path).to.deep.equal([404, "unknown_evidence"]);
      }
      for (const path of ["/evidence", "/evidence/", `${where}/x`, `${where}.`]) {
        const nowhere = await fetchAs(pki.issuerA, path);
        expect([nowhere.status, JSON.parse(nowhere.text).errorCode], path).to.deep.equal([404, "not_found"]);
      }
    });

    it("a wallet section whose files cannot be read stops the start, naming the file and the setting", async () => {
      const missing = path.join(dir, "absent.crt");
      const attempt = (changed: Partial<WalletServerConfig>) =>
        startS2sServer({ config: { ...config, ...changed }, handlers, evidence }).then((s) => (void s.close(), undefined), (e: unknown) => (e as Error).message);
      expect(await attempt({ tls: { ...config.tls, cert: missing } })).to.include(`${missing} (wallet.tls.cert) cannot be read (ENOENT)`);
      expect(await attempt({ issuers: [config.issuers[0]!, { ...config.issuers[1]!, ca: missing }] })).to.include(`${missing} (wallet.issuers[1].ca)`);
      expect(() => new IssuerClients({ ...config, issuers: [{ ...config.issuers[0]!, ca: missing }] }, pki.wallet.certPem, pki.wallet.keyPem)).to.throw(/wallet\.issuers\[0\]\.ca/);
    });

    describe("IssuerClients", () => {
      let issuerA: WireServer;
      let impostor: WireServer;
      before(async () => {
        const metadata = (name: string) => ({ path: "/.well-known/s2s-issuer", handle: async (peer: string) => ({ body: { issuer: name, peer } }) });
        // Issuer A, and a server at another address presenting issuer B's certificate (another CA).
        issuerA = await startWireServer({ ...pki.issuerA, peers: [{ id: "hello-mesh", caPem: pki.walletCa.certPem }], routes: [], getRoutes: [metadata(ISSUER_A)] });
        impostor = await startWireServer({ ...pki.issuerB, peers: [{ id: "hello-mesh", caPem: pki.walletCa.certPem }], routes: [], getRoutes: [metadata("impostor")] });
      });
      after(async () => {
        await issuerA?.close();
        await impostor?.close();
      });
      const configured = (baseA: string) =>
        new IssuerClients(
          { ...config, issuers: [{ ...config.issuers[0]!, base_url: baseA }, { ...config.issuers[1]!, base_url: issuerA.url }] },
          pki.wallet.certPem,
          pki.wallet.keyPem,
          { maxRetries: 0 },
        );
      const metadataSchema = z.object({ issuer: z.string(), peer: z.string() });

      it("one client per configured issuer, in order; any other issuer id is refused", () => {
        const clients = configured(issuerA.url);
        try {
          expect(clients.ids()).to.deep.equal([ISSUER_A, ISSUER_B]);
          expect(clients.client(ISSUER_A)).to.be.instanceOf(WireClient);
          expect(clients.client(ISSUER_A)).to.equal(clients.client(ISSUER_A));
          expect(() => clients.client("https://issuer-c.test")).to.throw(UnknownIssuerError, /no issuer "https:\/\/issuer-c\.test" is configured \(wallet\.issuers\)/);
        } finally {
          clients.close();
        }
      });

      it("calls an issuer with the wallet server's certificate, trusting that issuer's CA", async () => {
        const clients = configured(issuerA.url);
        try {
          const answer = await clients.client(ISSUER_A).get("/.well-known/s2s-issuer", metadataSchema);
          expect(answer.body).to.deep.equal({ issuer: ISSUER_A, peer: "hello-mesh" });
        } finally {
          clients.close();
        }
      });

      it("pins each issuer's CA: a server with another CA's certificate (even a configured issuer's) is refused", async () => {
        const clients = configured(impostor.url);
        try {
          const error = await clients.client(ISSUER_A).get("/.well-known/s2s-issuer", metadataSchema).then(() => undefined, (e: unknown) => e);
          expect(error).to.be.instanceOf(WireError);
          expect((error as WireError).message).to.match(/SELF_SIGNED|UNABLE_TO_VERIFY|unable to verify|certificate/i);
          // Issuer B's client trusts only B's CA: issuer A's server is refused to it too.
          const crossed = await clients.client(ISSUER_B).get("/.well-known/s2s-issuer", metadataSchema).then(() => undefined, (e: unknown) => e);
          expect(crossed).to.be.instanceOf(WireError);
        } finally {
          clients.close();
        }
      });
    });

    it("walletPlumbing (wiring): issuer clients, the evidence store and a listener whose notifications find no session until the wallet driver answers them", async () => {
      const plumbing = await walletPlumbing({ ...config, issuers: [{ ...config.issuers[0]!, base_url: "https://127.0.0.1:1" }] }, new MemoryStore());
      try {
        expect(plumbing.issuers.ids()).to.deep.equal([ISSUER_A]);
        const reference = await plumbing.evidence.put(ISSUER_A, randomUUID(), jweOf("cGx1bWJpbmc"));
        expect(reference.downloadUrl.startsWith(`${PUBLIC_URL}/evidence/`)).to.equal(true);
        const client = new WireClient({ baseUrl: plumbing.url, caPem: pki.walletCa.certPem, ...pki.issuerA, servername: "localhost", maxRetries: 0 });
        clients.push(client);
        const refused = await client.post("/verification/notify", status("v"), echo).then(() => undefined, (e: unknown) => e);
        expect((refused as ProblemError).problem).to.include({ status: 404, errorCode: "unknown_session" });
        const event = { sessionId: randomUUID(), credentialInstanceId: "i", eventType: "PROVISIONING_SUCCESS", eventTimestamp: "now" };
        const refusedEvent = await client.post("/event/notify", event, z.unknown()).then(() => undefined, (e: unknown) => e);
        expect((refusedEvent as ProblemError).problem).to.include({ status: 404, errorCode: "unknown_session" });
      } finally {
        await plumbing.close();
      }
      const closed = new WireClient({ baseUrl: plumbing.url, caPem: pki.walletCa.certPem, ...pki.issuerA, servername: "localhost", maxRetries: 0 });
      clients.push(closed);
      const error = await closed.post("/verification/notify", status("v"), echo).then(() => undefined, (e: unknown) => e);
      expect((error as WireError).message).to.include("ECONNREFUSED");
    });
  });
});
