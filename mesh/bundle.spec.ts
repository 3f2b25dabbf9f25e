// Mesh bundles are exchanged out of band and picked up when they change on disk
// (docs/design.md §2): a custodian can add or rotate a peer's CA without a restart.

import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { Code, createClient } from "@connectrpc/connect";
import { COMPONENTS, type Component } from "../internal/protocol/identity.js";
import { type Bundle, bundlePath, readBundle, readBundles, trustFromBundles, watchBundles, writeBundle } from "./bundle.js";
import { createMeshTransport } from "./client.js";
import { startMeshServer } from "./server.js";
import { TrustStore } from "./trust.js";
import { type TestPki, makeTestPki } from "../test/support/test-pki.js";
import { refusedWith } from "../test/support/refusal.js";
import { TokenService } from "../internal/gen/hello/token/v1/token_service_pb.js";

describe("mesh bundles (docs/design.md §2)", function () {
  let pki: TestPki;
  let dir: string;
  before(async () => (pki = await makeTestPki()));
  beforeEach(async () => (dir = await mkdtemp(path.join(os.tmpdir(), "bundles-"))));
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  const bundleOf = (c: Component, ca = pki.ca(c).certPem): Bundle => ({ component: c, ca, jwks: { keys: [] } });

  it("round-trips and refuses a bundle filed under another component's name", async function () {
    await writeBundle(dir, bundleOf("token"));
    expect(readBundle(dir, "token").ca).to.equal(pki.ca("token").certPem);
    await writeFile(bundlePath(dir, "storage"), JSON.stringify(bundleOf("token")));
    expect(() => readBundle(dir, "storage")).to.throw("is for token, not storage");
  });

  it("a missing bundle names the file and who to ask", function () {
    expect(() => readBundle(dir, "encryption")).to.throw(/encryption mesh bundle .*encryption\.json is missing: ask the encryption custodian/);
  });

  it("refuses a bundle that carries a private key", async function () {
    await writeFile(bundlePath(dir, "token"), JSON.stringify({ ...bundleOf("token"), key: pki.ca("token").keyPem }));
    expect(() => readBundle(dir, "token")).to.throw(/Unrecognized key.*"key"/);
  });

  it("states its format only past format 1, and refuses a bundle of a format newer than this release reads", async function () {
    // Written without a format member, which the releases before it would refuse as unknown.
    await writeBundle(dir, { format: 1, ...bundleOf("token") });
    expect(JSON.parse(await readFile(bundlePath(dir, "token"), "utf8"))).to.not.have.property("format");
    await writeFile(bundlePath(dir, "token"), JSON.stringify({ format: 1, ...bundleOf("token") }));
    expect(readBundle(dir, "token").ca).to.equal(pki.ca("token").certPem);
    await writeFile(bundlePath(dir, "token"), JSON.stringify({ format: 2, ...bundleOf("token") }));
    expect(() => readBundle(dir, "token")).to.throw(
      "this mesh bundle is in format 2, written by a newer release of hello-mesh; this release reads format 1: upgrade it first (docs/upgrades.md)",
    );
  });

  it("a server accepts a peer once that peer's bundle appears on disk, without a restart", async function () {
    // Token starts knowing only its own custodian's CA: Orchestration's handshake fails.
    await writeBundle(dir, bundleOf("token"));
    const server = await startMeshServer({
      component: "token",
      credentials: pki.leaf("token"),
      trust: trustFromBundles(readBundles(dir, ["token"])),
      routes: (router) => router.service(TokenService, { getKeySet: () => ({}) }),
    });
    const reloaded = new Promise<void>((resolve) => {
      const stop = watchBundles(
        dir,
        ["token", "orchestration"],
        (bundles) => {
          server.updateTrust(trustFromBundles(bundles));
          stop();
          resolve();
        },
        () => {},
      );
    });
    const clientTrust = new TrustStore(new Map(COMPONENTS.map((c) => [c, pki.ca(c).certPem])));
    const call = () =>
      createClient(
        TokenService,
        createMeshTransport({ target: "token", baseUrl: server.url, credentials: pki.leaf("orchestration"), trust: clientTrust }),
      ).getKeySet({});
    try {
      const before = await refusedWith(call());
      expect(before.code).to.not.equal(Code.PermissionDenied); // refused before any RPC

      await writeBundle(dir, bundleOf("orchestration"));
      await reloaded;
      await call(); // accepted now
    } finally {
      await server.close();
    }
  });
});
