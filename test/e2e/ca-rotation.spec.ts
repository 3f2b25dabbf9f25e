// Issue 11, item 6, end to end: a custodian rotates its CA in the bundles directory of a
// running deployment, and the components that call it follow without a restart. Two
// `hello serve` processes (Encryption and Storage, the Encryption → Storage edge);
// Storage's custodian makes a new CA, reissues Storage's certificates, restarts Storage
// and publishes the new bundle; the Encryption process that was running all along reaches
// the new Storage (its KeyringAdminService status counts Storage's records through it).

import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { createClient } from "@connectrpc/connect";
import { COMPONENTS } from "../../internal/protocol/identity.js";
import { readBundle, readBundles, trustFromBundles, writeBundle } from "../../mesh/bundle.js";
import { createMeshTransport } from "../../mesh/client.js";
import { loadDevConfig } from "../../internal/dev/dev-config.js";
import { KeyringAdminService } from "../../internal/gen/hello/encryption/v1/keyring_admin_service_pb.js";
import { writeFileAtomic } from "../../internal/fs/write-file-atomic.js";
import { pkiPaths } from "../../internal/ops/pki/layout.js";
import { createCertificateAuthority, issueComponentCertificate, issueOperatorCertificate } from "../../internal/ops/pki/pki.js";
import { freePort } from "../support/free-port.js";
import { type ComponentProcesses, startComponentProcesses } from "../../internal/dev/component-processes.js";
import { operatorCredentials } from "../../internal/ops/pki/layout.js";
import { type DevDeployment, prepareDevDeployment } from "../../internal/dev/dev-deployment.js";

describe("a custodian's CA rotated in a running deployment reaches its callers without a restart", function () {
  this.timeout(180_000);
  let dir: string;
  let deployment: DevDeployment;
  let encryption: ComponentProcesses | undefined;
  let storage: ComponentProcesses | undefined;
  /** Resolves on Encryption's next "reloaded the peers' mesh bundles" log line. */
  let nextReload: () => Promise<void>;

  before(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-ca-rotation-"));
    const ports = { public: await freePort(), orchestration: await freePort(), token: await freePort(), encryption: await freePort(), storage: await freePort() };
    const configFile = path.join(dir, "hello.config.json");
    await writeFile(configFile, JSON.stringify({ issuer: `http://localhost:${ports.public}`, ports, certificates: "certs", stateDir: "state" }));
    deployment = await prepareDevDeployment(loadDevConfig(configFile));

    const reloads: Array<() => void> = [];
    nextReload = () => new Promise<void>((resolve) => reloads.push(resolve));
    const watchLog = (_c: unknown, child: ChildProcess) => {
      let pending = "";
      child.stdout!.on("data", (chunk: Buffer) => {
        const lines = (pending + chunk.toString("utf8")).split("\n");
        pending = lines.pop()!;
        for (const line of lines) if (line.includes("reloaded the peers' mesh bundles")) reloads.splice(0).forEach((r) => r());
      });
    };
    encryption = startComponentProcesses(deployment, { components: ["encryption"], onSpawn: watchLog });
    storage = startComponentProcesses(deployment, { components: ["storage"] });
    await Promise.all([encryption.ready, storage.ready]);
  });
  after(async function () {
    await Promise.all([encryption?.stop(), storage?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Encryption's keyring status, as Encryption's operator asks it: Storage's record counts come through Encryption's client of Storage. */
  async function usageError(): Promise<string> {
    const transport = createMeshTransport({
      target: "encryption",
      baseUrl: `https://127.0.0.1:${deployment.configs.encryption.listen.port}`,
      credentials: operatorCredentials(deployment.certs, "encryption"),
      trust: trustFromBundles(readBundles(deployment.configs.encryption.bundles, COMPONENTS)),
    });
    try {
      const { status } = await createClient(KeyringAdminService, transport).getKeyringStatus({});
      return status!.usageError;
    } finally {
      transport.close();
    }
  }

  it("Storage's custodian rotates its CA: the running Encryption reaches the restarted Storage once the new bundle is published", async function () {
    expect(await usageError(), "before: Encryption reaches Storage").to.equal("");
    const encryptionPid = encryption!.children.get("encryption")!.pid;

    // Storage's custodian: a new CA (P-256), Storage's certificates reissued from it.
    const paths = pkiPaths(deployment.certs, "storage");
    const ca = createCertificateAuthority("storage", { keyType: "p256" });
    const leaf = issueComponentCertificate(ca, "storage", { keyType: "p256" });
    const operator = issueOperatorCertificate(ca, "storage", { keyType: "p256" });
    for (const [file, pem, secret] of [
      [paths.caKey, ca.keyPem, true], [paths.caCert, ca.certPem, false],
      [paths.key, leaf.keyPem, true], [paths.cert, leaf.certPem, false],
      [paths.operatorKey, operator.keyPem, true], [paths.operatorCert, operator.certPem, false],
    ] as const) {
      await writeFileAtomic(file, pem, { secret });
    }
    await storage!.stop();

    // ... publishes the new bundle (same public keys, new CA), and Storage comes back on it.
    const bundles = deployment.configs.encryption.bundles;
    const reloaded = nextReload();
    await writeBundle(bundles, { ...readBundle(bundles, "storage"), ca: ca.certPem });
    await reloaded;
    storage = startComponentProcesses(deployment, { components: ["storage"] });
    await storage.ready;

    expect(await usageError(), "after: the same Encryption reaches the new Storage").to.equal("");
    expect(encryption!.children.get("encryption")!.pid).to.equal(encryptionPid);
    expect(encryption!.children.get("encryption")!.exitCode).to.equal(null);
  });
});
