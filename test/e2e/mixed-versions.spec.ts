// Custodians upgrade one at a time (docs/upgrades.md): each component of the previous
// release, taken from this repository's history as it shipped, runs against this
// release's other three, and users log in through the front door (new and returning).
// Then this release's components refuse a caller of a protocol they do not accept,
// each with one clear error, before the call does anything.
//
// The previous release is PREVIOUS_RELEASE, the last commit before protocol versions
// were stated: its components speak protocol 1 and state no version. A release that
// changes the protocol moves this to its own predecessor (docs/upgrades.md says when).

import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "chai";
import { Code, createClient } from "@connectrpc/connect";
import { type ProtocolMesh, USERS, browseToAccount, startProtocolMesh } from "../support/protocol-mesh.js";
import { loginAtFrontDoor } from "../support/app-client.js";
import { refusedWith } from "../support/refusal.js";
import { COMPONENTS, type Component } from "../../internal/protocol/identity.js";
import { OLDEST_PROTOCOL_VERSION, PROTOCOL_REFUSED_HEADER, PROTOCOL_VERSION } from "../../internal/protocol/versions.js";
import { createMeshTransport } from "../../mesh/client.js";
import { operatorCredentials, pkiPaths } from "../../internal/ops/pki/layout.js";
import { BuildInfoService } from "../../internal/gen/hello/common/v1/build_info_pb.js";
import { TokenService } from "../../internal/gen/hello/token/v1/token_service_pb.js";
import { EncryptionService } from "../../internal/gen/hello/encryption/v1/encryption_service_pb.js";
import { StorageService } from "../../internal/gen/hello/storage/v1/storage_service_pb.js";
import type { DevUser } from "../../internal/dev/devop/dev-op.js";

/** The last release before protocol versions were stated (protocol 1, no header). */
const PREVIOUS_RELEASE = "bfe7a25e8363dabf8e99430cd50d87af38be349f";
const checkout = fileURLToPath(new URL("../..", import.meta.url));

/** PREVIOUS_RELEASE's tree in a temporary directory, with its dependencies installed. */
function previousRelease(): { dir: string; bin: string } {
  try {
    execFileSync("git", ["cat-file", "-e", `${PREVIOUS_RELEASE}^{commit}`], { cwd: checkout, stdio: "ignore" });
  } catch {
    throw new Error(`this test runs the previous release from git history, and commit ${PREVIOUS_RELEASE} is not in this clone: fetch the history (git fetch --unshallow)`);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), "hello-previous-release-"));
  execFileSync("sh", ["-c", `git archive ${PREVIOUS_RELEASE} | tar -x -C "${dir}"`], { cwd: checkout, stdio: ["ignore", "ignore", "inherit"] });
  // The same locked dependencies are this checkout's own; others are installed for it.
  if (readFileSync(path.join(dir, "package-lock.json"), "utf8") === readFileSync(path.join(checkout, "package-lock.json"), "utf8")) {
    symlinkSync(path.join(checkout, "node_modules"), path.join(dir, "node_modules"), "dir");
  } else {
    execFileSync("npm", ["ci", "--no-audit", "--no-fund", "--ignore-scripts"], { cwd: dir, stdio: "ignore" });
  }
  const bin = path.join(dir, "cmd", "hello", "bin.js");
  if (!existsSync(bin)) throw new Error(`the previous release has no ${bin}`);
  return { dir, bin };
}

describe("custodians upgrade one at a time: the previous release beside this one", function () {
  this.timeout(180_000);
  let previous: { dir: string; bin: string };
  before(function () {
    this.timeout(300_000);
    previous = previousRelease();
  });
  after(() => previous && rmSync(previous.dir, { recursive: true, force: true }));

  /** A login at app "a" through the front door, as a browser and an openid-client app. */
  async function login(mesh: ProtocolMesh, user: DevUser) {
    const { page, consented, tokens } = await loginAtFrontDoor(mesh.issuer, "a", user);
    expect(tokens, `${page.status} ${page.body.slice(0, 300)}`).to.not.equal(undefined);
    return { consented, sub: tokens!.claims()!.sub, email: tokens!.claims()!.email };
  }

  for (const old of COMPONENTS) {
    describe(`${old} of the previous release, the other three of this one`, function () {
      let mesh: ProtocolMesh;
      before(async function () {
        mesh = await startProtocolMesh({
          database: "pglite",
          processes: { commands: { [old]: (file: string) => [previous.bin, "serve", old, "--config", file] } },
          // The previous release's configuration, as its custodian holds it: this release's
          // Token configuration names the credential wallet's key file (keys.wallet), a member
          // the previous release's strict schema refuses (docs/upgrades.md).
          prepare: async (deployment) => {
            if (old !== "token") return;
            const file = deployment.configFiles.token;
            const config = JSON.parse(readFileSync(file, "utf8")) as { keys: Record<string, string> };
            delete config.keys.wallet;
            writeFileSync(file, JSON.stringify(config));
          },
        });
      });
      after(async () => mesh?.close());

      it("each component runs the release it should: the previous one states no protocol version", async function () {
        for (const component of COMPONENTS) {
          const transport = createMeshTransport({
            target: component,
            baseUrl: `https://127.0.0.1:${mesh.deployment.configs[component].listen.port}`,
            credentials: operatorCredentials(mesh.deployment.certs, component),
            trust: mesh.trust,
          });
          try {
            const { buildInfo } = await createClient(BuildInfoService, transport).getBuildInfo({});
            expect(buildInfo?.protocolVersion, component).to.equal(component === old ? 0 : PROTOCOL_VERSION);
          } finally {
            transport.close();
          }
        }
      });

      it("a new user signs up and logs in again with the same sub, through the mixed mesh", async function () {
        const first = await login(mesh, USERS.alice);
        expect(first.consented).to.equal(true);
        expect(first.email).to.equal(USERS.alice.email);
        const again = await login(mesh, USERS.alice);
        expect(again.consented, "the release made a moment ago serves").to.equal(false);
        expect(again.sub).to.equal(first.sub);
      });

      if (old !== "orchestration") {
        // Protocol 2's account session needs Token's CreateAccountSession: with a Token of
        // protocol 1 (the upgrade order broken) the page is the operators' 502, and logins go on.
        it(`the account page ${old === "token" ? "is the operators' 502 until Token is upgraded" : "works"}`, async function () {
          const { page, askedForPassword } = await browseToAccount(mesh.issuer, USERS.alice);
          if (old === "token") {
            expect(askedForPassword, "refused before the provider").to.equal(false);
            expect(page.status).to.equal(502);
            expect(page.body).to.include("the problem is on hello-mesh&#39;s side");
            return;
          }
          expect(page.body, page.body.slice(0, 300)).to.include("<h1>Your wallet</h1>");
        });
      }
    });
  }

  describe("this release refuses a caller of a protocol it does not accept", function () {
    let mesh: ProtocolMesh;
    before(async function () {
      mesh = await startProtocolMesh({ database: "pglite" });
    });
    after(async () => mesh?.close());

    const edges = [
      { server: "token", caller: "orchestration", call: (t: ReturnType<typeof createMeshTransport>) => createClient(TokenService, t).getKeySet({}) },
      { server: "encryption", caller: "orchestration", call: (t: ReturnType<typeof createMeshTransport>) => createClient(EncryptionService, t).readRecord({}) },
      { server: "storage", caller: "encryption", call: (t: ReturnType<typeof createMeshTransport>) => createClient(StorageService, t).readRecord({}) },
    ] as const;
    for (const edge of edges) {
      it(`${edge.server} refuses ${edge.caller} speaking the next-but-one protocol, with one clear error`, async function () {
        const next = PROTOCOL_VERSION + 2;
        const paths = pkiPaths(mesh.deployment.certs, edge.caller as Component);
        const transport = createMeshTransport({
          target: edge.server as Component,
          baseUrl: `https://127.0.0.1:${mesh.deployment.configs[edge.server as Component].listen.port}`,
          credentials: { certPem: readFileSync(paths.cert, "utf8"), keyPem: readFileSync(paths.key, "utf8") },
          trust: mesh.trust,
          protocolVersions: { speaks: next, oldest: next - 1 },
        });
        try {
          const error = await refusedWith(edge.call(transport));
          expect(error.code).to.equal(Code.FailedPrecondition);
          const accepts = OLDEST_PROTOCOL_VERSION === PROTOCOL_VERSION ? `only protocol ${PROTOCOL_VERSION}` : `protocols ${OLDEST_PROTOCOL_VERSION} to ${PROTOCOL_VERSION}`;
          expect(error.rawMessage).to.equal(
            `the caller ${edge.caller} speaks protocol ${next}, and ${edge.server} accepts ${accepts}: upgrade ${edge.server}, one release at a time (docs/upgrades.md gives the order)`,
          );
          expect(error.metadata.get(PROTOCOL_REFUSED_HEADER)).to.equal(edge.server);
        } finally {
          transport.close();
        }
      });
    }
  });
});
