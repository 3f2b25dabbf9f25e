// Storage (docs/design.md §3, §7): keeps ciphertext by keyed hash for whoever presents a
// Token-signed Access Token. The storage key, kind and operation come from the
// verified token, never from the request; create, update and delete tokens are spent
// on use; "no record" is answered with a signed Error Token from a linearizable read,
// and a create that relies on one spends its jti too, so one Error Token makes one
// record. Storage keeps each record's digest as written (from the create or update
// token) and signs a receipt {op, kind, hash, digest, version, ajti = the token's jti} for every
// record it writes or returns: Token accepts a record into a session only with one.
//
// Key maintenance (docs/keyring-rotation.md) takes no Access Token, and so never
// carries a ciphertext: it is served by services of its own (key-maintenance.ts), each
// with its own rule in the mesh policy. storageRoutes serves all of Storage.

import { Code, type ConnectRouter, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { StorageService, StoredRecordSchema } from "../../gen/hello/storage/v1/storage_service_pb.js";
import { KeyMaintenanceService } from "../../gen/hello/storage/v1/key_maintenance_service_pb.js";
import { KeyWrappingAdminService } from "../../gen/hello/storage/v1/key_wrapping_admin_service_pb.js";
import { type BatchWrite, MAX_BATCH_WRITES, type RecordStore, type StoredRow } from "./backend/record-store.js";
import { NotFoundError, StorageError, TokenReusedError } from "./backend/errors.js";
import { underDeadlines } from "./backend/deadline.js";
import { sign, verify } from "../../protocol/jws.js";
import type { SigningKey, VerificationKeys } from "../../protocol/signing-keys.js";
import {
  ACCESS_TOKEN,
  type AccessClaims,
  ERROR_TOKEN,
  type Operation,
  RECEIPT,
  type ReceiptClaims,
  writeOpOf,
  wrongOperation,
} from "../../protocol/tokens.js";
import { denied, invalidArgument } from "../../protocol/errors.js";
import { keyMaintenanceRoutes, keyWrappingAdminRoutes } from "./key-maintenance.js";

const STORAGE_CODES: Record<StorageError["code"], Code> = {
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  version_conflict: Code.Aborted,
  token_reused: Code.PermissionDenied,
  invalid_argument: Code.InvalidArgument,
  unavailable: Code.Unavailable,
};

/** The record store's errors as codes on the wire: Storage's own part of the error mapping (mesh/errors.ts). */
export function storageErrors(error: unknown): ConnectError | undefined {
  return error instanceof StorageError ? new ConnectError(error.message, STORAGE_CODES[error.code]) : undefined;
}

/** A record digest: base64url SHA-256, no padding. */
const DIGEST = /^[A-Za-z0-9_-]{43}$/;

export interface StorageServiceDeps {
  readonly store: RecordStore;
  /** Token's published keys (from Token's mesh bundle); reloaded with the bundle. */
  readonly tokenKeys: () => VerificationKeys;
  readonly errorKey: SigningKey;
  /** Signs receipts for creates: a purpose of its own, apart from Error Tokens. */
  readonly receiptKey: SigningKey;
  readonly now?: () => Date;
}

/**
 * What a create or an update writes: the request's key ids and ciphertext, and the
 * digest Token put in the Access Token (authorize() checked it is there).
 */
function content(req: { keyId: string; wrappedKey: Uint8Array; ciphertext: Uint8Array }, claims: AccessClaims) {
  return {
    keyId: req.keyId,
    ...(req.wrappedKey.length > 0 ? { wrappedKey: req.wrappedKey } : {}),
    ciphertext: req.ciphertext,
    digest: claims.digest!,
  };
}

export function storageRoutes(deps: StorageServiceDeps) {
  const now = deps.now ?? (() => new Date());

  /** Verifies the Access Token and that it grants `op`; spends it if it is single use. */
  async function authorize(accessToken: string, op: Operation) {
    const { claims } = await verify<AccessClaims>(ACCESS_TOKEN, deps.tokenKeys(), accessToken, "access token", now());
    if (claims.op !== op) throw denied(wrongOperation(claims.op, op));
    if ((op === "create" || op === "update") && (typeof claims.digest !== "string" || !DIGEST.test(claims.digest))) {
      throw denied(`the access token carries no digest of the record to ${op}`);
    }
    if (op !== "read") await deps.store.spendTokenId(claims.jti!, new Date(claims.exp! * 1000));
    return claims;
  }

  /**
   * A create that relies on an Error Token spends it: Token is stateless and may run as
   * replicas, so this is where "one Error Token, one record" holds. Kept spent for as
   * long as any grant naming it can live: the Error Token was valid when Token minted
   * the grant, and a grant lives at most as long as an Error Token.
   */
  async function spendErrorToken(claims: AccessClaims & { exp?: number }) {
    if (claims.ejti === undefined) return;
    if (typeof claims.ejti !== "string" || claims.ejti.length === 0) throw denied("the access token names no valid error token");
    try {
      await deps.store.spendTokenId(`error:${claims.ejti}`, new Date((claims.exp! + ERROR_TOKEN.maxLifetimeSeconds!) * 1000));
    } catch (error) {
      if (error instanceof TokenReusedError) throw denied("the error token this create relies on was already used");
      throw error;
    }
  }

  /** Token bound the update to the version it read: any other is a lost update. */
  function checkBoundVersion(claims: AccessClaims, expectedVersion: bigint) {
    if (claims.version !== undefined && (!Number.isSafeInteger(claims.version) || BigInt(claims.version) !== expectedVersion)) {
      throw denied("the access token grants this update at another version than expected_version");
    }
  }

  const receipt = (op: ReceiptClaims["op"], claims: AccessClaims & { jti?: string }, digest: string, version: number) =>
    sign(
      RECEIPT,
      deps.receiptKey,
      { op, kind: claims.kind, hash: claims.hash, digest, version, ajti: claims.jti! } satisfies ReceiptClaims,
      { now: now() },
    );

  const stored = (row: StoredRow) =>
    create(StoredRecordSchema, {
      keyId: row.keyId,
      ...(row.wrappedKey ? { wrappedKey: row.wrappedKey } : {}),
      ciphertext: row.ciphertext,
      version: BigInt(row.version),
      createTime: timestampFromDate(row.createTime),
      updateTime: timestampFromDate(row.updateTime),
    });

  return (router: ConnectRouter) => {
    router.service(StorageService, underDeadlines(StorageService, {
      readRecord: async (req) => {
        const claims = await authorize(req.accessToken, "read");
        try {
          const row = await deps.store.read(claims.hash, claims.kind);
          // A row from before Storage kept digests gets its receipt from BackfillRecordDigest.
          return { result: { case: "record", value: stored(row) }, receipt: row.digest === undefined ? "" : await receipt("read", claims, row.digest, row.version) };
        } catch (error) {
          if (!(error instanceof NotFoundError)) throw error;
          const errorToken = await sign(
            ERROR_TOKEN,
            deps.errorKey,
            { op: "read", kind: claims.kind, hash: claims.hash, ajti: claims.jti },
            { now: now() },
          );
          return { result: { case: "errorToken", value: errorToken } };
        }
      },
      backfillRecordDigest: async (req) => {
        const claims = await authorize(req.accessToken, "read");
        if (!DIGEST.test(req.digest)) throw invalidArgument("digest must be the base64url SHA-256 of the record (43 characters)");
        if (req.version < 1n || req.version > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidArgument("version must be a positive integer");
        const row = await deps.store.setLegacyDigest(claims.hash, claims.kind, Number(req.version), req.digest);
        return { receipt: await receipt("read", claims, req.digest, row.version) };
      },
      createRecord: async (req) => {
        const claims = await authorize(req.accessToken, "create");
        await spendErrorToken(claims);
        const row = await deps.store.create({ hash: claims.hash, kind: claims.kind, ...content(req, claims) });
        return { version: BigInt(row.version), receipt: await receipt("create", claims, claims.digest!, row.version) };
      },
      updateRecord: async (req) => {
        const claims = await authorize(req.accessToken, "update");
        checkBoundVersion(claims, req.expectedVersion);
        const row = await deps.store.update(claims.hash, claims.kind, Number(req.expectedVersion), content(req, claims));
        return { version: BigInt(row.version), receipt: await receipt("update", claims, claims.digest!, row.version) };
      },
      deleteRecord: async (req) => {
        const claims = await authorize(req.accessToken, "delete");
        await deps.store.delete(claims.hash, claims.kind);
        return {};
      },
      writeRecords: async (req) => {
        if (req.writes.length < 1 || req.writes.length > MAX_BATCH_WRITES) throw invalidArgument(`writes must hold 1 to ${MAX_BATCH_WRITES} writes`);
        // Each token checked and spent as its single call would, before anything is written.
        const planned: Array<{ claims: AccessClaims & { jti?: string }; write: BatchWrite }> = [];
        for (const [i, w] of req.writes.entries()) {
          const op = writeOpOf(w.accessToken);
          if (op === undefined) throw denied(`write ${i + 1} of ${req.writes.length}: the access token grants no create, update or delete`);
          const claims = await authorize(w.accessToken, op);
          if (op === "create") {
            await spendErrorToken(claims);
            planned.push({ claims, write: { op, row: { hash: claims.hash, kind: claims.kind, ...content(w, claims) } } });
          } else if (op === "update") {
            checkBoundVersion(claims, w.expectedVersion);
            planned.push({ claims, write: { op, hash: claims.hash, kind: claims.kind, expectedVersion: Number(w.expectedVersion), next: content(w, claims) } });
          } else {
            planned.push({ claims, write: { op, hash: claims.hash, kind: claims.kind, ...(w.expectedVersion === 0n ? {} : { expectedVersion: Number(w.expectedVersion) }) } });
          }
        }
        const rows = await deps.store.writeBatch(planned.map((p) => p.write));
        const results = await Promise.all(planned.map(async ({ claims, write }, i) => {
          const row = rows[i];
          if (write.op === "delete" || row === undefined) return { version: 0n, receipt: "" };
          return { version: BigInt(row.version), receipt: await receipt(write.op, claims, claims.digest!, row.version) };
        }));
        return { results };
      },
    }));
    keyMaintenanceRoutes(deps.store)(router);
    keyWrappingAdminRoutes(deps.store)(router);
  };
}

/** Every service storageRoutes serves (for health and reflection). */
export const STORAGE_SERVICES = [StorageService, KeyMaintenanceService, KeyWrappingAdminService] as const;
