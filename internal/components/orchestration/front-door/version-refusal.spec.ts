// A peer whose release does not fit this one (an upgrade out of order, docs/upgrades.md)
// is the operators' problem, not the user's: the front door answers 502 with the page
// that says so, never "sign in again". In-process: the real front door and login driver,
// over the real mesh client, to a Token mesh server of a later release that accepts only
// protocol PROTOCOL_VERSION + 1.

import http from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import { createClient } from "@connectrpc/connect";
import { COMPONENTS } from "../../../protocol/identity.js";
import { PROTOCOL_VERSION } from "../../../protocol/versions.js";
import { VerificationKeys } from "../../../protocol/signing-keys.js";
import type { HttpObserver } from "../../../observability/metrics/http-observer.js";
import { TokenService } from "../../../gen/hello/token/v1/token_service_pb.js";
import { EncryptionService } from "../../../gen/hello/encryption/v1/encryption_service_pb.js";
import { TrustStore } from "../../../../mesh/trust.js";
import { type MeshServer, startMeshServer } from "../../../../mesh/server.js";
import { createMeshTransport } from "../../../../mesh/client.js";
import { routesFor } from "../../../../test/support/echo-mesh.js";
import { makeTestPki } from "../../../../test/support/test-pki.js";
import { LoginDriver } from "../login-driver.js";
import { MemoryStore } from "../sealed.js";
import { frontDoor } from "./front-door.js";

describe("the front door when a peer's release does not fit", function () {
  let token: MeshServer;
  let door: http.Server;
  let base: string;
  let reached = 0;

  before(async function () {
    const pki = await makeTestPki();
    const trust = new TrustStore(new Map(COMPONENTS.map((c) => [c, pki.ca(c).certPem])));
    token = await startMeshServer({
      component: "token",
      credentials: pki.leaf("token"),
      trust,
      protocolVersions: { speaks: PROTOCOL_VERSION + 1, oldest: PROTOCOL_VERSION + 1 },
      routes: routesFor(TokenService, () => void reached++),
    });
    const transport = (target: "token" | "encryption") =>
      createMeshTransport({ target, baseUrl: token.url, credentials: pki.leaf("orchestration"), trust });
    const observer: HttpObserver = { begin: () => ({ route: () => {}, failed: () => {}, run: (handler) => handler() }) };
    door = http.createServer(frontDoor({
      issuer: "http://door.test",
      clients: [{ client_id: "app", redirect_uris: ["https://app.example/cb"], token_endpoint_auth_method: "none" }],
      providers: [{ id: "dev", name: "Dev", issuer: "http://127.0.0.1:9/", client_id: "hello", scopes: ["openid"] }],
      driver: new LoginDriver({
        issuer: "http://door.test",
        token: createClient(TokenService, transport("token")),
        encryption: createClient(EncryptionService, transport("encryption")),
        lookupKey: new Uint8Array(32),
        tokenKeys: () => new VerificationKeys([]),
      }),
      token: createClient(TokenService, transport("token")),
      tokenKeys: () => new VerificationKeys([]),
      cookieKey: new Uint8Array(32),
      store: new MemoryStore(),
      observer,
      readiness: { settle: async () => true, notServing: () => [] },
    }));
    await new Promise<void>((resolve) => door.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(door.address() as AddressInfo).port}`;
  });
  after(async function () {
    await new Promise<void>((resolve) => door?.close(() => resolve()));
    await token?.close();
  });

  it("a sign-in Token refuses for our protocol version is a 502 that says it is hello-mesh's side", async function () {
    const url = new URL("/authorize", base);
    for (const [k, v] of Object.entries({
      client_id: "app", redirect_uri: "https://app.example/cb", response_type: "code", scope: "openid", nonce: "n-0123456789",
      code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", code_challenge_method: "S256", state: "s",
    })) url.searchParams.set(k, v);
    const res = await fetch(url, { redirect: "manual" });
    const body = await res.text();
    expect(res.status, body.slice(0, 400)).to.equal(502);
    expect(body).to.include("the problem is on hello-mesh&#39;s side, not yours");
    expect(reached, "Token's handler never ran").to.equal(0);
  });
});
