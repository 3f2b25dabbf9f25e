// hello.encryption.v1.KeyringAdminService (docs/keyring-rotation.md): for Encryption's
// own custodian's operator only (mesh/policy.ts). The keyring as this process holds it,
// how many records depend on each key (counted by Storage), and the re-wrap job.

import { type Client, Code, type ConnectRouter, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  KeyStatusSchema,
  KeyringAdminService,
  type KeyringStatus,
  KeyringStatusSchema,
  RewrapJobSchema,
  RewrapJobState,
  RewrapProgressSchema,
} from "../../gen/hello/encryption/v1/keyring_admin_service_pb.js";
import type { KeyMaintenanceService } from "../../gen/hello/storage/v1/key_maintenance_service_pb.js";
import type { Keyring } from "../../protocol/keyring.js";

import type { RewrapJob, RewrapJobSnapshot } from "./rewrap-job.js";

export interface KeyringAdminDeps {
  readonly keyring: () => Keyring;
  /** Storage's key maintenance, for the counts (CountRecordKeys). */
  readonly keyMaintenance: Client<typeof KeyMaintenanceService>;
  readonly job: RewrapJob;
}

const JOB_STATES: Record<RewrapJobSnapshot["state"], RewrapJobState> = {
  idle: RewrapJobState.IDLE,
  running: RewrapJobState.RUNNING,
  succeeded: RewrapJobState.SUCCEEDED,
  failed: RewrapJobState.FAILED,
};

export function keyringAdminRoutes(deps: KeyringAdminDeps) {
  async function status(): Promise<KeyringStatus> {
    const keyring = deps.keyring();
    const job = deps.job.snapshot();
    // Without Storage the keyring and the job are still worth reporting; the counts are not
    // guessed, and the CLI refuses to drop a key while they are missing.
    let usageError = "";
    const { keys: usage } = await deps.keyMaintenance.countRecordKeys({}).catch((error: unknown) => {
      const e = ConnectError.from(error);
      usageError = `${Code[e.code]}: storage: ${e.rawMessage}`;
      return { keys: [] };
    });
    const keyIds = [...new Set([...keyring.keyIds(), ...usage.map((u) => u.keyId)])].sort();
    return create(KeyringStatusSchema, {
      currentKeyId: keyring.currentKeyId,
      keyIds: keyring.keyIds(),
      keys: keyIds.map((keyId) => {
        const used = usage.find((u) => u.keyId === keyId);
        return create(KeyStatusSchema, {
          keyId,
          held: keyring.has(keyId),
          current: keyId === keyring.currentKeyId,
          records: used?.records ?? 0n,
          legacyRecords: used?.legacyRecords ?? 0n,
          previousWrappings: used?.previousWrappings ?? 0n,
        });
      }),
      job: create(RewrapJobSchema, {
        state: JOB_STATES[job.state],
        ...(job.startTime ? { startTime: timestampFromDate(job.startTime) } : {}),
        ...(job.endTime ? { endTime: timestampFromDate(job.endTime) } : {}),
        targetKeyId: job.targetKeyId,
        progress: [...job.progress].map(([keyId, p]) =>
          create(RewrapProgressSchema, {
            keyId,
            moved: BigInt(p.moved),
            skipped: BigInt(p.skipped),
            failed: BigInt(p.failed),
            legacy: BigInt(p.legacy),
          }),
        ),
        error: job.error ?? "",
      }),
      usageError,
    });
  }

  return (router: ConnectRouter) => {
    router.service(KeyringAdminService, {
      getKeyringStatus: async () => ({ status: await status() }),
      runRewrap: async (req) => {
        deps.job.start({ concurrency: req.concurrency });
        return { status: await status() };
      },
    });
  };
}
