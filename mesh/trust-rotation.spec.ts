// Issue 11, item 6: rotating or revoking a custodian's CA reaches everyone, including
// connections opened before the change and clients that never reconnect on their own.
// The server judges every open connection again on updateTrust; a transport built on a
// trust getter follows it. Real servers and clients over real TLS sockets on localhost.

import { expect } from "chai";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { COMPONENTS, type Component } from "../internal/protocol/identity.js";
import { TrustStore } from "./trust.js";
import { trustOfBundles, type Bundle } from "./bundle.js";
import { type MeshCredentials, type MeshServer, callerIdentity, startMeshServer } from "./server.js";
import { type MeshTransport, createMeshTransport } from "./client.js";
import { formatIdentity } from "../internal/protocol/identity.js";
import { routesFor } from "../test/support/echo-mesh.js";
import { errorOf, outcomeOf } from "../test/support/refusal.js";
import { type TestPki, makeTestPki } from "../test/support/test-pki.js";
import {
  type CertificateAndKey,
  createCertificateAuthority,
  issueComponentCertificate,
} from "../internal/ops/pki/pki.js";
import { TokenService } from "../internal/gen/hello/token/v1/token_service_pb.js";

/**
 * A call in flight: `settled` tells whether it ended before `released` was set, that is
 * while its handler was still waiting (so it was cut, not answered).
 */
function inFlight(call: Promise<unknown>, gate: { entered: Promise<void>; release(): void }) {
  let released = false;
  const settled = errorOf(call).then((error) => ({ error, beforeRelease: !released }));
  return {
    entered: gate.entered,
    /** Lets the handler answer, then waits for the call's end. */
    async release() {
      released = true;
      gate.release();
      return settled;
    },
  };
}

/**
 * A Token server whose handlers record the caller; after `hold()`, the next CreateSession
 * waits in its handler (`entered` resolves) until `release()`: a call in flight, held
 * there for as long as the test needs, without a timer.
 */
interface HeldServer extends MeshServer {
  readonly callers: string[];
  /** Handshakes it refused, by OpenSSL's reason. */
  readonly refused: string[];
  hold(): { entered: Promise<void>; release(): void };
}

async function startTokenServer(credentials: MeshCredentials, trust: TrustStore, port = 0): Promise<HeldServer> {
  const callers: string[] = [];
  const refused: string[] = [];
  let held: { enter(): void; released: Promise<void> } | undefined;
  const server = await startMeshServer({
    component: "token",
    credentials,
    trust,
    port,
    onHandshakeRefused: (reason) => refused.push(reason),
    routes: routesFor(TokenService, async (method, values) => {
      callers.push(formatIdentity(callerIdentity(values)));
      if (method.name !== "CreateSession" || !held) return;
      const { enter, released } = held;
      held = undefined;
      enter();
      await released;
    }),
  });
  return Object.assign(server, {
    callers,
    refused,
    hold() {
      let enter!: () => void;
      let release!: () => void;
      const entered = new Promise<void>((resolve) => (enter = resolve));
      held = { enter, released: new Promise<void>((resolve) => (release = resolve)) };
      return { entered, release };
    },
  });
}

describe("a rotated or revoked CA reaches open connections and running clients (issue 11, item 6)", function () {
  this.timeout(60_000);
  let pki: TestPki;
  /** The four custodians' CAs as the shared test PKI has them. */
  let trust: TrustStore;
  /** Orchestration's custodian after rotating to a new CA (P-256), and its reissued leaf. */
  let newOrchestration: { ca: CertificateAndKey; leaf: CertificateAndKey };
  /** The same for Token. */
  let newToken: { ca: CertificateAndKey; leaf: CertificateAndKey };
  const servers: MeshServer[] = [];
  const transports: MeshTransport[] = [];
  const uncaught: unknown[] = [];
  const record = (error: unknown) => uncaught.push(error);

  /** The test PKI's CAs, with some custodians' replaced. */
  const trustWith = (replaced: Partial<Record<Component, string>>) =>
    new TrustStore(new Map(COMPONENTS.map((c) => [c, replaced[c] ?? pki.ca(c).certPem])));
  const tokenClient = (baseUrl: string, credentials: MeshCredentials, clientTrust: TrustStore | (() => TrustStore)) => {
    const transport = createMeshTransport({ target: "token", baseUrl, credentials, trust: clientTrust });
    transports.push(transport);
    return createClient(TokenService, transport);
  };
  const started = async (server: Promise<HeldServer>) => {
    const s = await server;
    servers.push(s);
    return s;
  };

  before(async function () {
    pki = await makeTestPki();
    trust = trustWith({});
    const rotated = (component: Component) => {
      const ca = createCertificateAuthority(component, { keyType: "p256" });
      return { ca, leaf: issueComponentCertificate(ca, component, { keyType: "p256" }) };
    };
    newOrchestration = rotated("orchestration");
    newToken = rotated("token");
    process.prependListener("uncaughtException", record);
  });
  after(() => process.off("uncaughtException", record));
  beforeEach(() => (uncaught.length = 0));
  afterEach(async () => {
    for (const transport of transports.splice(0)) transport.close();
    await Promise.all(servers.splice(0).map((s) => s.close()));
    expect(uncaught.map(String), "uncaught exceptions").to.deep.equal([]);
  });

  /** A Token server and a client following a trust the test sets: one call done, and one held in flight. */
  async function callInFlight() {
    let clientTrust = trust;
    const server = await started(startTokenServer(pki.leaf("token"), trust));
    const client = tokenClient(server.url, pki.leaf("orchestration"), () => clientTrust);
    expect(await outcomeOf(client.createSession({}))).to.equal("ok");
    const held = inFlight(client.createSession({}), server.hold());
    await held.entered;
    return { server, client, held, setTrust: (next: TrustStore) => (clientTrust = next) };
  }

  describe("server: updateTrust judges every open connection again", function () {
    it("a reload that leaves the caller's CA alone keeps its connection, and the call in flight finishes", async function () {
      const { server, client, held } = await callInFlight();
      server.updateTrust(trustWith({ token: newToken.ca.certPem })); // another custodian rotated
      expect(await held.release()).to.deep.equal({ error: undefined, beforeRelease: false });
      expect(await outcomeOf(client.createSession({}))).to.equal("ok");
    });

    it("once the Orchestration CA is rotated out, the old certificate's open connection is cut: its call in flight and the next call on the same client fail, and a certificate from the new CA gets through", async function () {
      const { server, client: old, held } = await callInFlight();
      server.updateTrust(trustWith({ orchestration: newOrchestration.ca.certPem }));
      // The next calls on the same client fail: one may still race onto the connection
      // being cut (refused by its GOAWAY), after which the client reconnects and is refused
      // in the handshake. (In TLS 1.3 the server judges the client's certificate after the
      // client's Finished, so the client only sees its connection reset.)
      expect(await outcomeOf(old.createSession({})), "the next call").to.not.equal("ok");
      expect(await outcomeOf(old.createSession({})), "the one after").to.not.equal("ok");
      expect(server.refused).to.not.be.empty;
      expect(new Set(server.refused)).to.deep.equal(new Set(["UNABLE_TO_VERIFY_LEAF_SIGNATURE"]));
      const cut = await held.release();
      expect(cut.error, "the call in flight").to.be.instanceOf(ConnectError);
      expect(cut.beforeRelease, "cut while its handler still waited").to.equal(true);

      const rotated = tokenClient(server.url, newOrchestration.leaf, trust);
      expect(await outcomeOf(rotated.createSession({}))).to.equal("ok");
      expect(server.callers).to.deep.equal(["orchestration", "orchestration", "orchestration"]); // the first, the one cut off, the new CA's
    });
  });

  describe("client: a transport follows its trust getter", function () {
    it("after Token's custodian rotates its CA and reissues Token's certificate, the same client reaches Token once its trust holds the new CA", async function () {
      let clientTrust = trust;
      const first = await started(startTokenServer(pki.leaf("token"), trust));
      const client = tokenClient(first.url, pki.leaf("orchestration"), () => clientTrust);
      expect(await outcomeOf(client.createSession({}))).to.equal("ok");

      // Token restarts on the same port with its certificate from the new CA.
      await first.close();
      const second = await started(startTokenServer(newToken.leaf, trust, first.port));
      const refused = await errorOf(client.createSession({}));
      expect(refused?.rawMessage, "still trusting the old Token CA").to.equal("unable to verify the first certificate");

      clientTrust = trustWith({ token: newToken.ca.certPem }); // the bundle reload
      expect(await outcomeOf(client.createSession({}))).to.equal("ok");
      expect(second.callers).to.deep.equal(["orchestration"]);
    });

    it("a client whose trust no longer holds the server's CA drops its open connection at once: the call in flight fails, and so does the next", async function () {
      const { server, client, held, setTrust } = await callInFlight();
      setTrust(trustWith({ token: newToken.ca.certPem })); // Token's old CA revoked
      const next = await errorOf(client.createSession({}));
      expect(next?.rawMessage, "the next call").to.equal("self-signed certificate in certificate chain");
      const cut = await held.release();
      expect([cut.error?.code, cut.error?.rawMessage, cut.beforeRelease], "the call in flight").to.deep.equal([
        Code.Unavailable,
        "the server is no longer trusted: its custodian's CA changed",
        true,
      ]);
      expect(server.callers).to.deep.equal(["orchestration", "orchestration"]);
    });

    it("a client whose new trust still authenticates the server (its CA re-certified, same key) lets the call in flight finish and goes on", async function () {
      const { server, client, held, setTrust } = await callInFlight();
      const recertified = createCertificateAuthority("token", { keyPem: pki.ca("token").keyPem });
      expect(recertified.certPem).to.not.equal(pki.ca("token").certPem);
      setTrust(trustWith({ token: recertified.certPem }));
      expect(await outcomeOf(client.createSession({})), "the next call, on a new connection").to.equal("ok");
      expect(await held.release(), "the call in flight").to.deep.equal({ error: undefined, beforeRelease: false });
    });
  });

  it("trustOfBundles makes one TrustStore per bundles object: the same while nothing is reloaded, a new one after", function () {
    const bundlesOf = () => new Map<Component, Bundle>(COMPONENTS.map((c) => [c, { component: c, ca: pki.ca(c).certPem, jwks: { keys: [] } }]));
    let bundles = bundlesOf();
    const current = trustOfBundles(() => bundles);
    const first = current();
    expect(current()).to.equal(first);
    bundles = bundlesOf();
    expect(current()).to.not.equal(first);
    expect(current().ca("token").raw.equals(first.ca("token").raw)).to.equal(true);
  });
});
