// Storage's key maintenance (docs/keyring-rotation.md): two services, one caller each.
//
//   KeyMaintenanceService     Encryption's re-wrap job: list and re-wrap wrapped data
//                             keys, and count what depends on each keyring key
//   KeyWrappingAdminService   Storage's own operator: the same counts, and undo or
//                             forget re-wraps
//
// Neither takes an Access Token, so neither ever carries a ciphertext: a caller of these
// can move a wrapped key, never read a record. The mesh policy (mesh/policy.ts) gives
// each service a rule of its own, so neither caller reaches the other's.

import type { ConnectRouter } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { RecordKind } from "../../gen/hello/common/v1/record_pb.js";
import {
  KeyMaintenanceService,
  KeyUsageSchema,
  RecordKeySchema,
} from "../../gen/hello/storage/v1/key_maintenance_service_pb.js";
import { KeyWrappingAdminService } from "../../gen/hello/storage/v1/key_wrapping_admin_service_pb.js";
import type { RecordKindName, RecordStore } from "./backend/record-store.js";
import { underDeadlines } from "./backend/deadline.js";
import { RECORD_KIND } from "../../protocol/tokens.js";
import { invalidArgument } from "../../protocol/errors.js";

const DEFAULT_LIST_PAGE = 100;
const MAX_LIST_PAGE = 1000;

/** Every kind of RECORD_KIND, the credential wallet's included, as its proto names it. */
const KIND_CHOICES = Object.values(RECORD_KIND).map((k) => `RECORD_KIND_${RecordKind[k]}`).join(", ");

function kindName(kind: RecordKind): RecordKindName {
  const name = (Object.keys(RECORD_KIND) as RecordKindName[]).find((k) => RECORD_KIND[k] === kind);
  if (!name) throw invalidArgument(`kind must be one of ${KIND_CHOICES}`);
  return name;
}

/** The answer of CountRecordKeys and of GetKeyUsage: one count, whoever asks. */
async function keyUsage(store: RecordStore) {
  const usage = await store.countKeys();
  return {
    keys: usage.map((u) =>
      create(KeyUsageSchema, {
        keyId: u.keyId,
        records: BigInt(u.records),
        legacyRecords: BigInt(u.legacyRecords),
        previousWrappings: BigInt(u.previousWrappings),
      }),
    ),
  };
}

/** hello.storage.v1.KeyMaintenanceService: for Encryption's re-wrap job. */
export function keyMaintenanceRoutes(store: RecordStore) {
  return (router: ConnectRouter) => {
    // Under each call's deadline, as the record calls are: the job shares Storage with logins.
    router.service(KeyMaintenanceService, underDeadlines(KeyMaintenanceService, {
      listRecordKeys: async (req) => {
        const pageSize = req.pageSize === 0 ? DEFAULT_LIST_PAGE : req.pageSize;
        if (pageSize < 1 || pageSize > MAX_LIST_PAGE) throw invalidArgument(`page_size must be 0 (the default, ${DEFAULT_LIST_PAGE}) or 1 to ${MAX_LIST_PAGE}`);
        // The page token is the last hash of the previous page: Encryption learns no more
        // from it than from the page itself (keyed hashes name no user).
        const rows = await store.listKeys(req.keyId, {
          ...(req.pageToken === "" ? {} : { after: req.pageToken }),
          limit: pageSize,
        });
        return {
          records: rows.map((row) =>
            create(RecordKeySchema, {
              hash: row.hash,
              kind: RECORD_KIND[row.kind],
              version: BigInt(row.version),
              keyId: row.keyId,
              ...(row.wrappedKey ? { wrappedKey: row.wrappedKey } : {}),
            }),
          ),
          nextPageToken: rows.length === pageSize ? rows.at(-1)!.hash : "",
        };
      },
      rewrapRecordKey: async (req) => {
        // An empty bytes field is "absent" on the wire (proto3).
        if (req.wrappedKey.length === 0) throw invalidArgument("wrapped_key is required: a record sealed before envelope encryption cannot be re-wrapped");
        if (req.version < 1n || req.version > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidArgument("version must be a positive integer");
        await store.rewrapKey(
          req.hash,
          kindName(req.kind),
          { version: Number(req.version), keyId: req.keyId, wrappedKey: req.wrappedKey },
          { keyId: req.newKeyId, wrappedKey: req.newWrappedKey },
        );
        return {};
      },
      countRecordKeys: () => keyUsage(store),
    }));
  };
}

/** hello.storage.v1.KeyWrappingAdminService: Storage's own operator's view of, and undo for, key maintenance. */
export function keyWrappingAdminRoutes(store: RecordStore) {
  return (router: ConnectRouter) => {
    router.service(KeyWrappingAdminService, {
      getKeyUsage: () => keyUsage(store),
      restorePreviousWrappings: async (req) => ({ restored: BigInt(await store.restorePreviousWrappings(req.keyId)) }),
      forgetPreviousWrappings: async (req) => ({ forgotten: BigInt(await store.forgetPreviousWrappings(req.keyId)) }),
    });
  };
}
