// The Encryption component as `hello serve encryption` runs it: the keyring (watched,
// so a rotation needs no restart), the clients of Storage's record service and of its
// key maintenance (the re-wrap job's, with no Access Token), EncryptionService for
// Orchestration, and KeyringAdminService with the re-wrap job for Encryption's own
// operator (docs/keyring-rotation.md). Encryption serves (grpc.health.v1, "" and
// EncryptionService) only while Storage does: it watches Storage's health, so that
// Orchestration, watching Encryption's, sees the whole path (docs/design.md §1).

import { createClient } from "@connectrpc/connect";
import type { ConnectRouter } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import type { Bundle } from "../../../mesh/bundle.js";
import { trustOfBundles } from "../../../mesh/bundle.js";
import { createReplicatedTransport } from "../../../mesh/replicated-transport.js";
import type { Component } from "../../protocol/identity.js";
import type { MeshCredentials } from "../../../mesh/server.js";
import { type EncryptionConfig, peerUrls } from "../../config/component-config.js";
import { EncryptionService } from "../../gen/hello/encryption/v1/encryption_service_pb.js";
import { KeyringAdminService } from "../../gen/hello/encryption/v1/keyring_admin_service_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { PeerHealth, onUnavailable } from "../runtime/peer-health.js";
import { StorageService } from "../../gen/hello/storage/v1/storage_service_pb.js";
import { KeyMaintenanceService } from "../../gen/hello/storage/v1/key_maintenance_service_pb.js";
import type { Logger } from "../../observability/log/logger.js";
import { watchKeyring } from "../../protocol/key-files.js";
import type { VerificationKeys } from "../../protocol/signing-keys.js";
import { encryptionRoutes } from "./encryption-service.js";
import { keyringAdminRoutes } from "./keyring-admin.js";
import { RewrapJob } from "./rewrap-job.js";

export interface EncryptionComponentDeps {
  readonly credentials: MeshCredentials;
  readonly bundles: () => ReadonlyMap<Component, Bundle>;
  readonly log: Logger;
  /** Token's published keys, from Token's mesh bundle. */
  readonly tokenKeys: () => VerificationKeys;
  /** Storage's published keys (its receipts and Error Tokens), from Storage's mesh bundle. */
  readonly storageKeys: () => VerificationKeys;
}

export function encryptionComponent(config: EncryptionConfig, deps: EncryptionComponentDeps) {
  const { log } = deps;
  const watched = watchKeyring("encryption", config.keys.keyring, (reload) => {
    if ("error" in reload) {
      log.error({ err: reload.error }, "the keyring file changed but does not load; keeping the previous keyring");
      return;
    }
    // Key ids are not secret and name no user.
    const before = new Set(reload.previous.keyIds());
    const after = new Set(reload.keyring.keyIds());
    log.info(
      {
        current: reload.keyring.currentKeyId,
        added: [...after].filter((id) => !before.has(id)),
        dropped: [...before].filter((id) => !after.has(id)),
      },
      "reloaded the keyring",
    );
  });
  // One connection to each replica of Storage for its services and its health; calls are
  // spread over the replicas that serve and fail over between them (docs/replicas.md).
  // A call that fails as unavailable makes Encryption look at Storage's health at once.
  const transport = createReplicatedTransport({
    target: "storage",
    baseUrls: peerUrls(config.peers.storage),
    credentials: deps.credentials,
    // Storage's CA as last reloaded: a rotated CA reaches this client too.
    trust: trustOfBundles(deps.bundles),
    // A new trace for each call, linked on our side: no trace id that ties one login's
    // reads together reaches Storage (docs/design.md §2, §5).
    tracing: { newTrace: true },
    interceptors: [onUnavailable(() => storageHealth.suspect())],
    onReplicaState: (url, state, previous) => log.info({ peer: "storage", replica: url, state, previous }, `storage's replica at ${url} is ${state}`),
  });
  const storage = createClient(StorageService, transport);
  const keyMaintenance = createClient(KeyMaintenanceService, transport);
  const storageHealth = new PeerHealth({ peers: [{ name: "storage", health: createClient(Health, transport) }] }).start();
  const job = new RewrapJob({
    keyring: watched.keyring,
    keyMaintenance,
    onFinished: (run) =>
      log.info(
        { state: run.state, target: run.targetKeyId, progress: Object.fromEntries(run.progress), error: run.error },
        "the re-wrap job ended",
      ),
  });
  const descriptors: readonly DescService[] = [EncryptionService, KeyringAdminService];
  return {
    descriptors,
    // The keyring admin's operator calls answer whatever Storage does, so it stays SERVING.
    readiness: { peers: storageHealth, services: [EncryptionService.typeName] },
    routes(router: ConnectRouter) {
      encryptionRoutes({ keyring: watched.keyring, tokenKeys: deps.tokenKeys, storageKeys: deps.storageKeys, storage })(router);
      keyringAdminRoutes({ keyring: watched.keyring, keyMaintenance, job })(router);
    },
    async close() {
      storageHealth.close();
      watched.close();
      await job.stop();
      transport.close();
    },
  };
}
