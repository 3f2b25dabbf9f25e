// The S2S wire (problem.ts, idempotency.ts, wire-server.ts, wire-client.ts) over real
// mutual TLS on 127.0.0.1 with real certificates: a server CA and leaf, two client CAs
// (two peers) with a leaf each, and a CA nobody trusts. Nothing of https is mocked; the
// client's backoff sleeps are recorded instead of slept.

import { randomUUID } from "node:crypto";
import type http from "node:http";
import https from "node:https";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import { z } from "zod";
import { type CertificateAndKey, createCertificateAuthority, issueLeafCertificate } from "../ops/pki/pki.js";
import { type IdempotencyStore, type StoredReply, memoryIdempotencyStore } from "./idempotency.js";
import {
  ProblemError,
  S2S_INVALID_CLIENT_AUTHENTICATION,
  S2S_INVALID_ENCRYPTION,
  invalidClientAuthentication,
  invalidEncryption,
  problem,
  problemSchema,
} from "./problem.js";
import { WireClient, WireError, backoffDelayMs, parseRetryAfter } from "./wire-client.js";
import { API_VERSION, type WireServer, startWireServer, wireRequestHandler } from "./wire-server.js";

interface Pki {
  serverCa: CertificateAndKey;
  server: CertificateAndKey;
  caA: CertificateAndKey;
  clientA: CertificateAndKey;
  caB: CertificateAndKey;
  clientB: CertificateAndKey;
  rogueCa: CertificateAndKey;
  rogueClient: CertificateAndKey;
  /** Rogue CA's server leaf for 127.0.0.1: a server the client must not trust. */
  rogueServer: CertificateAndKey;
}

function makePki(): Pki {
  const ca = (commonName: string) => createCertificateAuthority("orchestration", { commonName, keyType: "p256" });
  const client = (issuer: CertificateAndKey, commonName: string, keyType: "p256" | "rsa" | "ed25519" = "p256") =>
    issueLeafCertificate(issuer, { uris: [], client: true, commonName, keyType });
  const serverCa = ca("s2s test server CA");
  const caA = ca("s2s test wallet A CA");
  const caB = ca("s2s test wallet B CA");
  const rogueCa = ca("s2s test rogue CA");
  const serverLeaf = (issuer: CertificateAndKey) =>
    issueLeafCertificate(issuer, { uris: [], dnsNames: ["s2s.test"], ipAddresses: ["127.0.0.1"], server: true, keyType: "p256", commonName: "s2s.test" });
  return {
    serverCa,
    server: serverLeaf(serverCa),
    caA,
    clientA: client(caA, "wallet A"),
    caB,
    clientB: client(caB, "wallet B"),
    rogueCa,
    rogueClient: client(rogueCa, "rogue"),
    rogueServer: serverLeaf(rogueCa),
  };
}

let pki: Pki;
before(function () {
  this.timeout(10_000);
  pki = makePki();
});

interface Raw {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any;
}

interface RawOptions {
  method?: string;
  path: string;
  /** Replace the defaults (Api-Version, x-request-id, Content-Type); undefined removes one. */
  headers?: Record<string, string | undefined>;
  body?: string | Buffer;
  /** Default clientA; null sends no certificate. */
  client?: CertificateAndKey | null;
  /** Send the body chunked, without Content-Length. */
  chunked?: boolean;
}

/** One request on a fresh connection, with exactly the headers given. */
function raw(port: number, options: RawOptions): Promise<Raw> {
  const client = options.client === undefined ? pki.clientA : options.client;
  const headers: Record<string, string> = {};
  const given = { "api-version": API_VERSION, "x-request-id": randomUUID(), "content-type": "application/json", ...options.headers };
  for (const [name, value] of Object.entries(given)) if (value !== undefined) headers[name] = value;
  if (options.body !== undefined && !options.chunked) headers["content-length"] = String(Buffer.byteLength(options.body));
  return new Promise((resolve, reject) => {
    const request = https.request(
      {
        host: "127.0.0.1",
        port,
        method: options.method ?? "POST",
        path: options.path,
        headers,
        agent: false,
        ca: pki.serverCa.certPem,
        ...(client ? { cert: client.certPem, key: client.keyPem } : {}),
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("error", reject);
        response.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: response.statusCode ?? 0, headers: response.headers, text, json });
        });
      },
    );
    request.on("error", reject);
    if (options.body !== undefined && options.chunked) {
      // Two writes: Node sends a body of unknown length chunked.
      const bytes = Buffer.from(options.body);
      const half = Math.floor(bytes.length / 2);
      request.write(bytes.subarray(0, half));
      request.end(bytes.subarray(half));
    } else request.end(options.body);
  });
}

/** The request must fail (refused handshake), whatever error the client sees. */
async function refused(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error("the request went through");
}

/** Asserts an RFC 9457 problem as the wire sends it, and returns it. */
function expectProblem(answer: Raw, status: number, errorCode: string): z.infer<typeof problemSchema> {
  expect(answer.status, answer.text).to.equal(status);
  expect(answer.headers["content-type"]).to.equal("application/problem+json");
  expect(answer.headers["api-version"]).to.equal("1.0.0");
  expect(answer.headers["api-supported-versions"]).to.equal("1.0.0");
  expect(answer.headers["cache-control"]).to.equal("no-store");
  const parsed = problemSchema.safeParse(answer.json);
  expect(parsed.success, answer.text).to.equal(true);
  const document = parsed.data!;
  expect(document.status).to.equal(status);
  expect(document.type).to.equal("about:blank");
  expect(document.errorCode).to.equal(errorCode);
  expect(document.detail).to.be.a("string").and.not.equal("");
  return document;
}

/** Headers that must match between an answer and its replay (Date and connection handling may differ). */
function stableHeaders(headers: http.IncomingHttpHeaders): Record<string, unknown> {
  const { date: _date, connection: _connection, "keep-alive": _keepAlive, ...rest } = headers;
  return rest;
}

function deferred(): { promise: Promise<void>; resolve(): void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const echoSchema = z.object({ n: z.number().int(), note: z.string().optional() });

describe("S2S wire", function () {
  describe("problem documents", () => {
    it("problem() is about:blank with the status text as title, the errorCode and the extensions", () => {
      const error = problem(409, "already_redeemed", "use a new offer", { hint: 1 });
      expect(error).to.be.instanceOf(ProblemError);
      expect(error.problem).to.deep.equal({
        type: "about:blank",
        title: "Conflict",
        status: 409,
        detail: "use a new offer",
        errorCode: "already_redeemed",
        hint: 1,
      });
      expect(error.message).to.equal("409 already_redeemed: use a new offer");
      expect(() => problem(409, "NotSnake", "x")).to.throw(TypeError);
      expect(() => problem(409, "ok_code", "x", { status: 200 })).to.throw(TypeError);
    });

    it("the draft's two types are 422 with their URNs", () => {
      expect(invalidEncryption("encrypt to the current key").problem).to.deep.equal({
        type: S2S_INVALID_ENCRYPTION,
        title: "Invalid encryption",
        status: 422,
        detail: "encrypt to the current key",
      });
      const auth = invalidClientAuthentication("sign the client payload");
      expect(auth.problem.type).to.equal(S2S_INVALID_CLIENT_AUTHENTICATION);
      expect(auth.problem.status).to.equal(422);
      expect(auth.message).to.equal(`422 ${S2S_INVALID_CLIENT_AUTHENTICATION}: sign the client payload`);
    });

    it("problemSchema keeps extensions and refuses a document without its required members", () => {
      const document = { type: "about:blank", title: "Bad Request", status: 400, detail: "d", errorCode: "x", more: [1] };
      expect(problemSchema.parse(document)).to.deep.equal(document);
      expect(problemSchema.safeParse({ type: "about:blank", title: "t", status: 400 }).success).to.equal(false);
      expect(problemSchema.safeParse({ type: "about:blank", title: "t", status: 400.5, detail: "d" }).success).to.equal(false);
      expect(problemSchema.safeParse({ type: "about:blank", title: "t", status: "400", detail: "d" }).success).to.equal(false);
    });
  });

  describe("memory idempotency store", () => {
    const reply = (status: number, body = "{}"): StoredReply => ({ status, headers: { "content-type": "application/json" }, body });

    it("runs once per (peer, id); replays the same body hash, refuses another, and scopes ids per peer", async () => {
      const store = memoryIdempotencyStore();
      let runs = 0;
      const execute = async () => reply(200, String(++runs));
      expect(await store.run("a", "id", "h1", execute)).to.deep.equal({ reply: reply(200, "1"), replayed: false });
      expect(await store.run("a", "id", "h1", execute)).to.deep.equal({ reply: reply(200, "1"), replayed: true });
      expect(await store.run("a", "id", "h2", execute)).to.deep.equal({ conflict: true });
      expect(await store.run("b", "id", "h2", execute)).to.deep.equal({ reply: reply(200, "2"), replayed: false });
      expect(runs).to.equal(2);
    });

    it("keeps no 5xx reply and no failure: the retry runs again", async () => {
      const store = memoryIdempotencyStore();
      let runs = 0;
      expect(await store.run("a", "id", "h", async () => reply(500, String(++runs)))).to.deep.include({ replayed: false });
      let failure: unknown;
      try {
        await store.run("a", "id", "h", async () => {
          runs++;
          throw new Error("boom");
        });
      } catch (error) {
        failure = error;
      }
      expect((failure as Error).message).to.equal("boom");
      expect(await store.run("a", "id", "h", async () => reply(422, String(++runs)))).to.deep.equal({ reply: reply(422, "3"), replayed: false });
      expect(await store.run("a", "id", "h", async () => reply(200, String(++runs)))).to.deep.equal({ reply: reply(422, "3"), replayed: true });
      expect(runs).to.equal(3);
    });

    it("a concurrent duplicate waits for the first and gets its reply", async () => {
      const store = memoryIdempotencyStore();
      const gate = deferred();
      let runs = 0;
      const first = store.run("a", "id", "h", async () => {
        runs++;
        await gate.promise;
        return reply(201, "first");
      });
      const second = store.run("a", "id", "h", async () => reply(200, String(++runs)));
      const conflicting = store.run("a", "id", "other", async () => reply(200, String(++runs)));
      gate.resolve();
      expect(await first).to.deep.equal({ reply: reply(201, "first"), replayed: false });
      expect(await second).to.deep.equal({ reply: reply(201, "first"), replayed: true });
      expect(await conflicting).to.deep.equal({ conflict: true });
      expect(runs).to.equal(1);
    });

    it("forgets a reply after the TTL", async () => {
      let now = 1_000;
      const store = memoryIdempotencyStore({ ttlMs: 100, now: () => now });
      let runs = 0;
      const execute = async () => reply(200, String(++runs));
      await store.run("a", "id", "h", execute);
      now += 99;
      expect(await store.run("a", "id", "h", execute)).to.deep.include({ replayed: true });
      now += 1;
      expect(await store.run("a", "id", "other", execute)).to.deep.equal({ reply: reply(200, "2"), replayed: false });
    });

    it("stays within maxEntries: expired entries go first, then the oldest", async () => {
      let now = 0;
      const store = memoryIdempotencyStore({ ttlMs: 1_000, now: () => now, maxEntries: 3 });
      let runs = 0;
      const execute = async () => reply(200, String(++runs));
      await store.run("a", "old", "h", execute); // expires at 1000
      now = 500;
      await store.run("a", "mid", "h", execute); // expires at 1500
      await store.run("a", "new", "h", execute); // expires at 1500
      now = 1_200; // "old" has expired; "mid" and "new" have not
      await store.run("a", "fourth", "h", execute); // evicts "old" only
      expect(await store.run("a", "mid", "h", execute)).to.deep.include({ replayed: true });
      expect(await store.run("a", "new", "h", execute)).to.deep.include({ replayed: true });
      await store.run("a", "fifth", "h", execute); // full of live entries: evicts the oldest, "mid"
      expect(await store.run("a", "new", "h", execute)).to.deep.include({ replayed: true });
      expect(await store.run("a", "mid", "other", execute)).to.deep.include({ replayed: false });
    });
  });

  describe("server", () => {
    let server: WireServer;
    const calls = new Map<string, number>();
    const count = (key: string) => calls.get(key) ?? 0;
    const bump = (key: string) => {
      calls.set(key, count(key) + 1);
      return count(key);
    };
    const errors: unknown[] = [];
    // The idempotency store, counting the requests that reach it (for the concurrency test).
    const inner = memoryIdempotencyStore();
    let storeRuns = 0;
    let onStoreRun: ((runs: number) => void) | undefined;
    const store: IdempotencyStore = {
      run(peer, requestId, bodyHash, execute) {
        storeRuns++;
        onStoreRun?.(storeRuns);
        return inner.run(peer, requestId, bodyHash, execute);
      },
    };
    let gate = deferred();

    before(async () => {
      server = await startWireServer({
        certPem: pki.server.certPem,
        keyPem: pki.server.keyPem,
        peers: [
          { id: "wallet-a", caPem: pki.caA.certPem },
          { id: "wallet-b", caPem: pki.caB.certPem },
        ],
        idempotency: store,
        maxBodyBytes: 4096,
        rateLimit: (_peer, path) => (path === "/limited" ? 7 : undefined),
        onError: (error) => errors.push(error),
        routes: [
          {
            path: "/echo",
            schema: echoSchema,
            async handle({ peer, requestId, body }) {
              const n = bump(`echo ${peer}`);
              return { status: 201, body: { peer, requestId, n: body.n, call: n }, headers: { "x-call": String(n) } };
            },
          },
          {
            path: "/slow",
            schema: echoSchema,
            async handle({ body }) {
              const n = bump("slow");
              await gate.promise;
              return { body: { n: body.n, call: n } };
            },
          },
          {
            path: "/problem",
            schema: echoSchema,
            async handle() {
              bump("problem");
              throw problem(409, "offer_redeemed", "start again with a new credential offer", { attempt: count("problem") });
            },
          },
          {
            path: "/crash",
            schema: echoSchema,
            async handle() {
              bump("crash");
              throw new Error("connection to db://admin:hunter2@db failed");
            },
          },
          { path: "/limited", schema: echoSchema, handle: async () => ({ body: { ok: true } }) },
        ],
        getRoutes: [
          { path: "/.well-known/s2s-issuer", handle: async (peer) => ({ body: { peer, issuer: "https://issuer.test" } }) },
          {
            path: "/blob",
            prefix: true,
            async handle(peer, path) {
              bump(`blob ${peer}`);
              if (path === "/blob/missing") throw problem(404, "unknown_blob", "no blob with this id belongs to you");
              return { body: undefined, text: { contentType: "application/jose", body: `${peer} ${path}` } };
            },
          },
          { path: "/blob/exact", handle: async (peer, path) => ({ body: { exact: true, peer, path } }) },
        ],
      });
    });
    after(async () => {
      await server?.close();
    });

    const post = (path: string, body: unknown, options: Omit<RawOptions, "path" | "body"> = {}) =>
      raw(server.port, { path, body: JSON.stringify(body), ...options });

    describe("mutual TLS", () => {
      it("refuses a handshake without a client certificate: no endpoint runs", async () => {
        const before = count("echo wallet-a") + count("echo wallet-b");
        await refused(post("/echo", { n: 1 }, { client: null }));
        await refused(raw(server.port, { method: "GET", path: "/.well-known/s2s-issuer", client: null }));
        expect(count("echo wallet-a") + count("echo wallet-b")).to.equal(before);
      });

      it("refuses a client certificate from an unknown CA: no endpoint runs", async () => {
        const before = count("echo wallet-a") + count("echo wallet-b");
        await refused(post("/echo", { n: 1 }, { client: pki.rogueClient }));
        expect(count("echo wallet-a") + count("echo wallet-b")).to.equal(before);
      });

      for (const keyType of ["rsa", "p256", "ed25519"] as const) {
        it(`admits a ${keyType} leaf from a known CA and names its peer`, async () => {
          const leafA = issueLeafCertificate(pki.caA, { uris: [], client: true, keyType, commonName: `wallet A ${keyType}` });
          const leafB = issueLeafCertificate(pki.caB, { uris: [], client: true, keyType, commonName: `wallet B ${keyType}` });
          const a = await post("/echo", { n: 1 }, { client: leafA });
          const b = await post("/echo", { n: 1 }, { client: leafB });
          expect([a.status, a.json.peer]).to.deep.equal([201, "wallet-a"]);
          expect([b.status, b.json.peer]).to.deep.equal([201, "wallet-b"]);
        });
      }

      it("answers 403 unknown_peer when the handshake's CA belongs to no peer (a server trusting more CAs than peers)", async () => {
        const handler = wireRequestHandler({ peers: [{ id: "wallet-a", caPem: pki.caA.certPem }], routes: [{ path: "/echo", schema: echoSchema, handle: async () => ({ body: {} }) }] });
        const loose = https.createServer(
          { cert: pki.server.certPem, key: pki.server.keyPem, ca: [pki.caA.certPem, pki.rogueCa.certPem], requestCert: true, rejectUnauthorized: true },
          handler,
        );
        loose.listen(0, "127.0.0.1");
        await new Promise((resolve) => loose.once("listening", resolve));
        try {
          const port = (loose.address() as AddressInfo).port;
          const answer = await raw(port, { path: "/echo", body: "{}", client: pki.rogueClient });
          expectProblem(answer, 403, "unknown_peer");
          expect((await raw(port, { path: "/echo", body: '{"n":1}' })).status).to.equal(200);
        } finally {
          loose.closeAllConnections();
          await new Promise((resolve) => loose.close(resolve));
        }
      });
    });

    describe("Api-Version", () => {
      it("is required: a missing one is 400 unsupported_api_version naming the supported versions", async () => {
        const answer = await post("/echo", { n: 1 }, { headers: { "api-version": undefined } });
        const document = expectProblem(answer, 400, "unsupported_api_version");
        expect(document.instance).to.match(/^urn:uuid:[0-9a-f-]{36}$/);
      });

      it("2.0.0 (and a malformed one) is 400 unsupported_api_version, on GET routes too", async () => {
        const before = count("echo wallet-a");
        expectProblem(await post("/echo", { n: 1 }, { headers: { "api-version": "2.0.0" } }), 400, "unsupported_api_version");
        expectProblem(await post("/echo", { n: 1 }, { headers: { "api-version": "1" } }), 400, "unsupported_api_version");
        const get = await raw(server.port, { method: "GET", path: "/.well-known/s2s-issuer", headers: { "api-version": "2.0.0" } });
        expectProblem(get, 400, "unsupported_api_version");
        expect(count("echo wallet-a")).to.equal(before);
      });

      it("a valid call's answer carries Api-Version 1.0.0, the supported versions, no-store and the echoed x-request-id", async () => {
        const id = randomUUID();
        const answer = await post("/echo", { n: 5 }, { headers: { "x-request-id": id } });
        expect(answer.status).to.equal(201);
        expect(answer.headers["api-version"]).to.equal("1.0.0");
        expect(answer.headers["api-supported-versions"]).to.equal("1.0.0");
        expect(answer.headers["cache-control"]).to.equal("no-store");
        expect(answer.headers["content-type"]).to.equal("application/json; charset=utf-8");
        expect(answer.headers["x-request-id"]).to.equal(id);
        expect(answer.json).to.deep.include({ peer: "wallet-a", requestId: id, n: 5 });
      });

      it("GET routes need no x-request-id or body, and know the peer", async () => {
        const answer = await raw(server.port, { method: "GET", path: "/.well-known/s2s-issuer", headers: { "x-request-id": undefined, "content-type": undefined } });
        expect(answer.status).to.equal(200);
        expect(answer.json).to.deep.equal({ peer: "wallet-a", issuer: "https://issuer.test" });
        expect(answer.headers["api-version"]).to.equal("1.0.0");
      });
    });

    describe("prefix GET routes", () => {
      const get = (path: string, options: Omit<RawOptions, "path"> = {}) =>
        raw(server.port, { method: "GET", path, headers: { "x-request-id": undefined, "content-type": undefined }, ...options });

      it("answer path/<segment> with the peer and the whole path, as the handler's text", async () => {
        for (const segment of ["abc", "A-z_0-9", "x".repeat(200), "-", "_"]) {
          const answer = await get(`/blob/${segment}`);
          expect(answer.status, segment).to.equal(200);
          expect(answer.headers["content-type"]).to.equal("application/jose");
          expect(answer.headers["api-version"]).to.equal("1.0.0");
          expect(answer.headers["cache-control"]).to.equal("no-store");
          expect(answer.text).to.equal(`wallet-a /blob/${segment}`);
        }
        expect((await get("/blob/abc", { client: pki.clientB })).text).to.equal("wallet-b /blob/abc");
        expect((await get("/blob/abc?x=1")).text, "the query is no part of the path").to.equal("wallet-a /blob/abc");
      });

      it("a handler's problem is the answer (404 for an id that is not the peer's)", async () => {
        expectProblem(await get("/blob/missing"), 404, "unknown_blob");
      });

      it("never the prefix itself, an empty or deeper segment, or one with any other character: 404 not_found, and the handler does not run", async () => {
        const before = count("blob wallet-a");
        for (const path of ["/blob", "/blob/", "/blob//abc", "/blob/a/b", "/blob/a.b", "/blob/..", "/blob/%2e%2e", "/blob/a%2Fb", "/blob/a~b", "/blob/a+b", "/blob/a=", "/blobx/abc", "/x/blob/abc"]) {
          expectProblem(await get(path), 404, "not_found");
        }
        expect(count("blob wallet-a")).to.equal(before);
      });

      it("an exact route at a path under the prefix wins over it; POST under the prefix is 405 with Allow GET", async () => {
        const exact = await get("/blob/exact");
        expect(exact.json).to.deep.equal({ exact: true, peer: "wallet-a", path: "/blob/exact" });
        const posted = await post("/blob/abc", {});
        expectProblem(posted, 405, "method_not_allowed");
        expect(posted.headers.allow).to.equal("GET");
      });

      it("still needs Api-Version, and a client certificate of a peer's CA", async () => {
        const before = count("blob wallet-a");
        expectProblem(await get("/blob/abc", { headers: { "api-version": undefined } }), 400, "unsupported_api_version");
        await refused(get("/blob/abc", { client: pki.rogueClient }));
        await refused(get("/blob/abc", { client: null }));
        expect(count("blob wallet-a")).to.equal(before);
      });

      it("a prefix route must start with / and not end with one, and is not registered twice", () => {
        const routes = (getRoutes: { path: string; prefix?: true }[]) => () =>
          wireRequestHandler({ peers: [{ id: "a", caPem: pki.caA.certPem }], routes: [], getRoutes: getRoutes.map((r) => ({ ...r, handle: async () => ({ body: {} }) })) });
        expect(routes([{ path: "/blob/", prefix: true }])).to.throw(/must start with \/ and not end with one/);
        expect(routes([{ path: "/", prefix: true }])).to.throw(/must start with/);
        expect(routes([{ path: "blob", prefix: true }])).to.throw(/must start with/);
        expect(routes([{ path: "/blob", prefix: true }, { path: "/blob", prefix: true }])).to.throw(/two S2S routes for GET \/blob\/\*/);
        expect(routes([{ path: "/blob", prefix: true }, { path: "/blob" }])).to.not.throw();
      });
    });

    describe("x-request-id", () => {
      it("a missing or malformed one is 400 invalid_request_id, without an instance, and the handler does not run", async () => {
        const before = count("echo wallet-a");
        for (const id of [undefined, "", "not-a-uuid", "1234", randomUUID().replaceAll("-", ""), `${randomUUID()}0`, `{${randomUUID()}}`]) {
          const answer = await post("/echo", { n: 1 }, { headers: { "x-request-id": id } });
          const document = expectProblem(answer, 400, "invalid_request_id");
          expect(document.instance, String(id)).to.equal(undefined);
          expect(answer.headers["x-request-id"]).to.equal(undefined);
        }
        expect(count("echo wallet-a")).to.equal(before);
      });

      it("is case-insensitive: an upper-case UUID is the same request as its lower-case form", async () => {
        const id = randomUUID();
        const first = await post("/echo", { n: 1 }, { headers: { "x-request-id": id.toUpperCase() } });
        const second = await post("/echo", { n: 1 }, { headers: { "x-request-id": id } });
        expect(first.status).to.equal(201);
        expect(first.headers["x-request-id"]).to.equal(id.toUpperCase());
        expect(second.json).to.deep.equal(first.json);
      });
    });

    describe("idempotency", () => {
      it("the same id and body twice: the original answer (status, body, headers), the handler ran once", async () => {
        const id = randomUUID();
        const before = count("echo wallet-a");
        const first = await post("/echo", { n: 7 }, { headers: { "x-request-id": id } });
        const second = await post("/echo", { n: 7 }, { headers: { "x-request-id": id } });
        expect(first.status).to.equal(201);
        expect(second.status).to.equal(201);
        expect(second.text).to.equal(first.text);
        expect(stableHeaders(second.headers)).to.deep.equal(stableHeaders(first.headers));
        expect(first.headers["x-call"]).to.be.a("string");
        expect(count("echo wallet-a")).to.equal(before + 1);
      });

      it("the same id with another body: 422 request_id_reused, the handler does not run again", async () => {
        const id = randomUUID();
        await post("/echo", { n: 1 }, { headers: { "x-request-id": id } });
        const before = count("echo wallet-a");
        // Same JSON value, other bytes: the hash is of the bytes.
        const reused = await raw(server.port, { path: "/echo", body: '{ "n": 1 }', headers: { "x-request-id": id } });
        const document = expectProblem(reused, 422, "request_id_reused");
        expect(document.instance).to.equal(`urn:uuid:${id}`);
        expectProblem(await post("/echo", { n: 2 }, { headers: { "x-request-id": id } }), 422, "request_id_reused");
        expect(count("echo wallet-a")).to.equal(before);
      });

      it("the same id from the other peer is another request", async () => {
        const id = randomUUID();
        const a = await post("/echo", { n: 1 }, { headers: { "x-request-id": id } });
        const b = await post("/echo", { n: 2 }, { headers: { "x-request-id": id }, client: pki.clientB });
        expect([a.status, a.json.peer, a.json.n]).to.deep.equal([201, "wallet-a", 1]);
        expect([b.status, b.json.peer, b.json.n]).to.deep.equal([201, "wallet-b", 2]);
      });

      it("two concurrent duplicates: the handler runs once and both get the same answer", async () => {
        gate = deferred();
        const start = storeRuns;
        // The first is held in its handler until the second has reached the store.
        onStoreRun = (runs) => {
          if (runs === start + 2) gate.resolve();
        };
        const before = count("slow");
        const id = randomUUID();
        try {
          const [first, second] = await Promise.all([
            post("/slow", { n: 3 }, { headers: { "x-request-id": id } }),
            post("/slow", { n: 3 }, { headers: { "x-request-id": id } }),
          ]);
          expect(first.status).to.equal(200);
          expect(second.text).to.equal(first.text);
          expect(stableHeaders(second.headers)).to.deep.equal(stableHeaders(first.headers));
          expect(count("slow")).to.equal(before + 1);
        } finally {
          onStoreRun = undefined;
          gate.resolve();
        }
      });

      it("a handler's ProblemError is answered and replayed identically", async () => {
        const id = randomUUID();
        const first = await post("/problem", { n: 1 }, { headers: { "x-request-id": id } });
        const document = expectProblem(first, 409, "offer_redeemed");
        expect(document).to.deep.include({ title: "Conflict", detail: "start again with a new credential offer", instance: `urn:uuid:${id}` });
        const calls = count("problem");
        const second = await post("/problem", { n: 1 }, { headers: { "x-request-id": id } });
        expect(second.status).to.equal(409);
        expect(second.text).to.equal(first.text);
        expect(stableHeaders(second.headers)).to.deep.equal(stableHeaders(first.headers));
        expect(count("problem")).to.equal(calls);
      });

      it("a thrown Error is 500 internal_error without details, reported to onError, and a retry runs again", async () => {
        const id = randomUUID();
        const before = count("crash");
        const reported = errors.length;
        const first = await post("/crash", { n: 1 }, { headers: { "x-request-id": id } });
        const document = expectProblem(first, 500, "internal_error");
        expect(document.detail).to.equal("the server failed; retry with the same x-request-id");
        expect(first.text).not.to.match(/hunter2|db:/);
        expect(errors.length).to.equal(reported + 1);
        expect((errors.at(-1) as Error).message).to.contain("hunter2");
        const second = await post("/crash", { n: 1 }, { headers: { "x-request-id": id } });
        expectProblem(second, 500, "internal_error");
        expect(count("crash")).to.equal(before + 2);
      });

      it("a request refused before the store (schema) is not remembered: the same id, fixed, runs", async () => {
        const id = randomUUID();
        expectProblem(await post("/echo", { n: "one" }, { headers: { "x-request-id": id } }), 400, "invalid_request");
        const fixed = await post("/echo", { n: 1 }, { headers: { "x-request-id": id } });
        expect(fixed.status).to.equal(201);
      });
    });

    describe("request validation", () => {
      it("bad JSON is 400 invalid_json (and so is invalid UTF-8)", async () => {
        expectProblem(await raw(server.port, { path: "/echo", body: '{"n": 1' }), 400, "invalid_json");
        expectProblem(await raw(server.port, { path: "/echo", body: "" }), 400, "invalid_json");
        expectProblem(await raw(server.port, { path: "/echo", body: Buffer.from([...Buffer.from('{"n":1,"note":"'), 0xff, ...Buffer.from('"}')]) }), 400, "invalid_json");
      });

      it("another Content-Type is 415 unsupported_media_type", async () => {
        for (const type of [undefined, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1"]) {
          expectProblem(await post("/echo", { n: 1 }, { headers: { "content-type": type } }), 415, "unsupported_media_type");
        }
        expect((await post("/echo", { n: 1 }, { headers: { "content-type": "Application/JSON; charset=UTF-8" } })).status).to.equal(201);
      });

      it("a schema failure is 400 invalid_request with validationErrors (paths and messages, no values)", async () => {
        const answer = await post("/echo", { n: "secret-value-123", note: 5, extra: "ignored" });
        const document = expectProblem(answer, 400, "invalid_request");
        const list = document.validationErrors as { path: string; message: string }[];
        expect(list.map((e) => e.path).sort()).to.deep.equal(["/n", "/note"]);
        for (const entry of list) expect(entry.message).to.be.a("string").and.not.equal("");
        expect(answer.text).not.to.contain("secret-value-123");
      });

      it("unknown members are not refused by the wire", async () => {
        expect((await post("/echo", { n: 1, extensions: { future: true } })).status).to.equal(201);
      });

      it("a body over maxBodyBytes is 413 body_too_large, declared or streamed", async () => {
        const big = JSON.stringify({ n: 1, note: "x".repeat(5000) });
        expectProblem(await raw(server.port, { path: "/echo", body: big }), 413, "body_too_large");
        expectProblem(await raw(server.port, { path: "/echo", body: big, chunked: true }), 413, "body_too_large");
      });

      it("an unknown path is 404 not_found; a wrong method is 405 with Allow", async () => {
        expectProblem(await post("/nowhere", { n: 1 }), 404, "not_found");
        const get = await raw(server.port, { method: "GET", path: "/echo" });
        expectProblem(get, 405, "method_not_allowed");
        expect(get.headers.allow).to.equal("POST");
        const postToGet = await post("/.well-known/s2s-issuer", {});
        expectProblem(postToGet, 405, "method_not_allowed");
        expect(postToGet.headers.allow).to.equal("GET");
      });

      it("rate limiting is 429 rate_limited with Retry-After", async () => {
        const answer = await post("/limited", { n: 1 });
        expectProblem(answer, 429, "rate_limited");
        expect(answer.headers["retry-after"]).to.equal("7");
      });
    });
  });

  describe("client", () => {
    let server: https.Server;
    let port: number;
    /** x-request-id of every request the server saw, by path. */
    const seen: { path: string; id: string | undefined }[] = [];
    const idsFor = (path: string) => seen.filter((s) => s.path === path).map((s) => s.id);
    /** How many more times each path answers 429. */
    const limited = new Map<string, number>();
    const flaky = new Map<string, number>();
    const clients: WireClient[] = [];
    const extraServers: https.Server[] = [];

    function client(sleeps: number[], options: Partial<ConstructorParameters<typeof WireClient>[0]> = {}): WireClient {
      const made = new WireClient({
        baseUrl: `https://127.0.0.1:${port}`,
        caPem: pki.serverCa.certPem,
        certPem: pki.clientA.certPem,
        keyPem: pki.clientA.keyPem,
        sleep: async (ms) => {
          sleeps.push(ms);
        },
        random: () => 0.5,
        ...options,
      });
      clients.push(made);
      return made;
    }

    async function listen(created: https.Server): Promise<number> {
      extraServers.push(created);
      created.listen(0, "127.0.0.1");
      await new Promise((resolve) => created.once("listening", resolve));
      return (created.address() as AddressInfo).port;
    }

    before(async () => {
      const handler = wireRequestHandler({
        peers: [{ id: "wallet-a", caPem: pki.caA.certPem }],
        rateLimit: (_peer, path) => {
          const left = limited.get(path) ?? 0;
          if (left <= 0) return undefined;
          limited.set(path, left - 1);
          return 2;
        },
        routes: [
          { path: "/echo", schema: echoSchema, handle: async ({ peer, body, requestId }) => ({ body: { peer, n: body.n, requestId } }) },
          {
            path: "/flaky",
            schema: echoSchema,
            async handle({ requestId, body }) {
              const failures = flaky.get(requestId) ?? 0;
              if (failures > 0) {
                flaky.set(requestId, failures - 1);
                throw new Error("temporarily broken");
              }
              return { body: { n: body.n } };
            },
          },
          {
            path: "/conflict",
            schema: echoSchema,
            handle: async () => {
              throw problem(409, "offer_redeemed", "start again with a new credential offer");
            },
          },
          { path: "/shape", schema: echoSchema, handle: async () => ({ body: { n: "secret-value-123" } }) },
        ],
        getRoutes: [{ path: "/.well-known/s2s-issuer", handle: async (peer) => ({ body: { issuer: "https://issuer.test", peer } }) }],
      });
      server = https.createServer(
        { cert: pki.server.certPem, key: pki.server.keyPem, ca: [pki.caA.certPem], requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.2" },
        (req, res) => {
          seen.push({ path: req.url ?? "", id: req.headers["x-request-id"] as string | undefined });
          handler(req, res);
        },
      );
      port = await listen(server);
    });
    after(async () => {
      for (const made of clients) made.close();
      for (const created of extraServers) {
        created.closeAllConnections();
        await new Promise((resolve) => created.close(resolve));
      }
    });

    it("posts with Api-Version and an x-request-id, and parses the answer with the schema", async () => {
      const answer = await client([]).post("/echo", { n: 4 }, z.object({ peer: z.string(), n: z.number(), requestId: z.string() }));
      expect(answer.status).to.equal(200);
      expect(answer.body).to.deep.equal({ peer: "wallet-a", n: 4, requestId: answer.requestId });
      expect(answer.requestId).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(answer.headers["api-version"]).to.equal("1.0.0");
      const given = randomUUID();
      expect((await client([]).post("/echo", { n: 1 }, z.unknown(), { requestId: given })).requestId).to.equal(given);
      expect(idsFor("/echo").at(-1)).to.equal(given);
    });

    it("gets a GET route", async () => {
      const answer = await client([]).get("/.well-known/s2s-issuer", z.object({ issuer: z.string(), peer: z.string() }));
      expect(answer).to.deep.equal({ status: 200, body: { issuer: "https://issuer.test", peer: "wallet-a" } });
    });

    it("429 twice then 200: succeeds after two sleeps honouring Retry-After and the draft's windows, with one x-request-id", async () => {
      limited.set("/echo", 2);
      const sleeps: number[] = [];
      const before = seen.length;
      const answer = await client(sleeps).post("/echo", { n: 9 }, z.object({ n: z.number() }).loose());
      expect(answer.body.n).to.equal(9);
      // Retry 1: max(Retry-After 2 s, 0 + 0.5 × 1 s) = 2000; retry 2: max(2 s, 1.1 s + 0.5 × 3.9 s) = 3050.
      expect(sleeps).to.deep.equal([2000, 3050]);
      const ids = seen.slice(before).map((s) => s.id);
      expect(ids).to.deep.equal([answer.requestId, answer.requestId, answer.requestId]);
    });

    it("429 four times: a ProblemError 429 after exactly 3 retries", async () => {
      limited.set("/echo", 4);
      const sleeps: number[] = [];
      const before = seen.length;
      let thrown: unknown;
      try {
        await client(sleeps, { random: () => 0 }).post("/echo", { n: 1 }, z.unknown());
      } catch (error) {
        thrown = error;
      }
      expect(thrown).to.be.instanceOf(ProblemError);
      expect((thrown as ProblemError).problem).to.deep.include({ status: 429, errorCode: "rate_limited" });
      expect(sleeps).to.deep.equal([2000, 2000, 5100]);
      const ids = seen.slice(before).map((s) => s.id);
      expect(ids).to.have.length(4);
      expect(new Set(ids).size).to.equal(1);
    });

    it("a 5xx problem is retried with the same x-request-id (the server kept no answer)", async () => {
      const requestId = randomUUID();
      flaky.set(requestId, 1);
      const sleeps: number[] = [];
      const answer = await client(sleeps).post("/flaky", { n: 2 }, z.object({ n: z.number() }), { requestId });
      expect(answer.body).to.deep.equal({ n: 2 });
      expect(sleeps).to.deep.equal([500]);
      expect(idsFor("/flaky").filter((id) => id === requestId)).to.have.length(2);
    });

    it("a 4xx problem is thrown as a ProblemError at once", async () => {
      const sleeps: number[] = [];
      let thrown: unknown;
      try {
        await client(sleeps).post("/conflict", { n: 1 }, z.unknown());
      } catch (error) {
        thrown = error;
      }
      expect(thrown).to.be.instanceOf(ProblemError);
      expect((thrown as ProblemError).problem).to.deep.include({ status: 409, errorCode: "offer_redeemed", type: "about:blank" });
      expect(sleeps).to.deep.equal([]);
    });

    it("an answer that does not match the schema is a WireError naming the path, not the value", async () => {
      let thrown: unknown;
      try {
        await client([]).post("/shape", { n: 1 }, z.object({ n: z.number() }));
      } catch (error) {
        thrown = error;
      }
      expect(thrown).to.be.instanceOf(WireError);
      expect((thrown as WireError).message).to.equal("malformed answer from /shape: /n");
      expect((thrown as WireError).status).to.equal(200);
    });

    it("refuses a server whose certificate is from a CA other than the pinned one", async () => {
      const rogue = https.createServer({ cert: pki.rogueServer.certPem, key: pki.rogueServer.keyPem }, (_req, res) => {
        res.writeHead(200, { "content-type": "application/json", "api-version": "1.0.0" }).end('{"n":1}');
      });
      const roguePort = await listen(rogue);
      const sleeps: number[] = [];
      let thrown: unknown;
      try {
        await client(sleeps, { baseUrl: `https://127.0.0.1:${roguePort}` }).post("/echo", { n: 1 }, z.unknown());
      } catch (error) {
        thrown = error;
      }
      expect(thrown).to.be.instanceOf(WireError);
      expect((thrown as WireError).message).to.match(/UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
      expect(sleeps).to.deep.equal([]);
      // And our own server, reached with the rogue CA pinned, is refused the same way.
      const before = seen.length;
      const pinnedWrong = client([], { caPem: pki.rogueCa.certPem });
      let again: unknown;
      try {
        await pinnedWrong.post("/echo", { n: 1 }, z.unknown());
      } catch (error) {
        again = error;
      }
      expect(again).to.be.instanceOf(WireError);
      expect(seen.length).to.equal(before);
    });

    it("checks the server's name: servername s2s.test passes, another name fails", async () => {
      const ok = await client([], { servername: "s2s.test" }).post("/echo", { n: 1 }, z.object({ n: z.number() }).loose());
      expect(ok.body.n).to.equal(1);
      let thrown: unknown;
      try {
        await client([], { servername: "other.test" }).post("/echo", { n: 1 }, z.unknown());
      } catch (error) {
        thrown = error;
      }
      expect((thrown as WireError).message).to.match(/ERR_TLS_CERT_ALTNAME_INVALID/);
    });

    it("rejects a 200 without Api-Version", async () => {
      const plain = https.createServer({ cert: pki.server.certPem, key: pki.server.keyPem }, (_req, res) => {
        res.writeHead(200, { "content-type": "application/json" }).end('{"n":1}');
      });
      const plainPort = await listen(plain);
      let thrown: unknown;
      try {
        await client([], { baseUrl: `https://127.0.0.1:${plainPort}` }).post("/echo", { n: 1 }, z.object({ n: z.number() }));
      } catch (error) {
        thrown = error;
      }
      expect(thrown).to.be.instanceOf(WireError);
      expect((thrown as WireError).message).to.equal("the peer answered without Api-Version 1.0.0");
    });

    it("a non-problem error answer is a WireError with its status, not retried when 4xx", async () => {
      const plain = https.createServer({ cert: pki.server.certPem, key: pki.server.keyPem }, (_req, res) => {
        res.writeHead(404, { "content-type": "text/html" }).end("<h1>nope</h1>");
      });
      const plainPort = await listen(plain);
      const sleeps: number[] = [];
      let thrown: unknown;
      try {
        await client(sleeps, { baseUrl: `https://127.0.0.1:${plainPort}/prefix` }).post("/echo", { n: 1 }, z.unknown());
      } catch (error) {
        thrown = error;
      }
      expect(thrown).to.be.instanceOf(WireError);
      expect((thrown as WireError).status).to.equal(404);
      expect((thrown as WireError).message).not.to.contain("nope");
      expect(sleeps).to.deep.equal([]);
    });

    it("a refused connection is retried 3 times, then a WireError", async () => {
      const probe = net.createServer();
      probe.listen(0, "127.0.0.1");
      await new Promise((resolve) => probe.once("listening", resolve));
      const closedPort = (probe.address() as AddressInfo).port;
      await new Promise((resolve) => probe.close(resolve));
      const sleeps: number[] = [];
      let thrown: unknown;
      try {
        await client(sleeps, { baseUrl: `https://127.0.0.1:${closedPort}`, random: () => 0.999 }).post("/echo", { n: 1 }, z.unknown());
      } catch (error) {
        thrown = error;
      }
      expect(thrown).to.be.instanceOf(WireError);
      expect((thrown as WireError).message).to.match(/ECONNREFUSED/);
      expect(sleeps).to.deep.equal([999, 4996, 29975]);
    });

    it("an attempt without an answer times out and is retried", async () => {
      const silent = https.createServer({ cert: pki.server.certPem, key: pki.server.keyPem }, () => {});
      let requests = 0;
      silent.on("request", () => requests++);
      const silentPort = await listen(silent);
      const sleeps: number[] = [];
      let thrown: unknown;
      try {
        await client(sleeps, { baseUrl: `https://127.0.0.1:${silentPort}`, timeoutMs: 50, maxRetries: 1 }).post("/echo", { n: 1 }, z.unknown());
      } catch (error) {
        thrown = error;
      }
      expect((thrown as WireError).message).to.match(/ETIMEDOUT/);
      expect(sleeps).to.have.length(1);
      expect(requests).to.equal(2);
    });

    describe("backoffDelayMs", () => {
      it("draws from the draft's windows: 0-1 s, 1.1-5 s, 5.1-30 s", () => {
        expect([1, 2, 3].map((retry) => backoffDelayMs(retry, undefined, () => 0))).to.deep.equal([0, 1100, 5100]);
        expect([1, 2, 3].map((retry) => backoffDelayMs(retry, undefined, () => 0.999))).to.deep.equal([999, 4996, 29975]);
        for (let i = 0; i < 50; i++) {
          const r = Math.random();
          expect(backoffDelayMs(1, undefined, () => r)).to.be.within(0, 1000);
          expect(backoffDelayMs(2, undefined, () => r)).to.be.within(1100, 5000);
          expect(backoffDelayMs(3, undefined, () => r)).to.be.within(5100, 30000);
        }
      });

      it("waits at least Retry-After", () => {
        expect(backoffDelayMs(1, 7, () => 0.999)).to.equal(7000);
        expect(backoffDelayMs(3, 2, () => 0)).to.equal(5100);
        expect(backoffDelayMs(2, 0, () => 0)).to.equal(1100);
        expect(() => backoffDelayMs(0, undefined, () => 0)).to.throw(RangeError);
      });

      it("reads Retry-After as delta-seconds or an HTTP-date", () => {
        const now = Date.parse("2026-01-01T00:00:00Z");
        expect(parseRetryAfter("120", now)).to.equal(120);
        expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:30 GMT", now)).to.equal(30);
        expect(parseRetryAfter("Wed, 31 Dec 2025 23:00:00 GMT", now)).to.equal(0);
        expect(parseRetryAfter("soon", now)).to.equal(undefined);
        expect(parseRetryAfter(undefined, now)).to.equal(undefined);
      });
    });
  });
});
