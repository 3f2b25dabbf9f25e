// Storage (DESIGN.md §3, §7): keeps ciphertext by keyed hash for whoever presents a
// Token-signed Access Token. The storage key, kind and operation come from the
// verified token, never from the request; create, update and delete tokens are spent
// on use; "no record" is answered with a signed Error Token from a linearizable read,
// and a create that relies on one spends its jti too, so one Error Token makes one
// record. Storage keeps each record's digest as written (from the create or update
// token) and signs a receipt {kind, hash, digest, version, the token's jti} for every
// record it writes or returns: Token accepts a record into a session only with one.
//
// Key maintenance (docs/keyring-rotation.md) takes no Access Token, and so never
// carries a ciphertext: Encryption lists and re-wraps wrapped data keys, and Storage's
// own operator counts them and undoes or forgets re-wraps. The mesh policy lets only
// Encryption call StorageService, and only Storage's operator KeyWrappingAdminService.

import { Code, type ConnectRouter, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { RecordKind } from "../../gen/hello/common/v1/record_pb.js";
import {
  KeyUsageSchema,
  RecordKeySchema,
  StorageService,
  StoredRecordSchema,
} from "../../gen/hello/storage/v1/storage_service_pb.js";
import { KeyWrappingAdminService } from "../../gen/hello/storage/v1/key_wrapping_admin_service_pb.js";
import type { KeyUsage, RecordKindName, RecordStore, StoredRow } from "./backend/record-store.js";
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
  RECORD_KIND,
  type ReceiptClaims,
  wrongOperation,
} from "../../protocol/tokens.js";
import { denied, invalidArgument } from "../../protocol/errors.js";

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

const DEFAULT_LIST_PAGE = 100;
/** A record digest: base64url SHA-256, no padding. */
const DIGEST = /^[A-Za-z0-9_-]{43}$/;
const MAX_LIST_PAGE = 1000;

/** An empty bytes field is "absent" on the wire (proto3). */
const optionalBytes = (bytes: Uint8Array) => (bytes.length === 0 ? undefined : bytes);

function kindName(kind: RecordKind): RecordKindName {
  const name = (Object.keys(RECORD_KIND) as RecordKindName[]).find((k) => RECORD_KIND[k] === kind);
  if (!name) throw invalidArgument("kind must be RECORD_KIND_SUBJECT, RECORD_KIND_RELEASE, RECORD_KIND_WALLET or RECORD_KIND_RESERVATION");
  return name;
}

const keyUsage = (usage: KeyUsage) =>
  create(KeyUsageSchema, {
    keyId: usage.keyId,
    records: BigInt(usage.records),
    legacyRecords: BigInt(usage.legacyRecords),
    previousWrappings: BigInt(usage.previousWrappings),
  });

export interface StorageServiceDeps {
  readonly store: RecordStore;
  /** Token's published keys (from Token's mesh bundle); reloaded with the bundle. */
  readonly tokenKeys: () => VerificationKeys;
  readonly errorKey: SigningKey;
  /** Signs receipts for creates: a purpose of its own, apart from Error Tokens. */
  readonly receiptKey: SigningKey;
  readonly now?: () => Date;
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
        const row = await deps.store.create({
          hash: claims.hash,
          kind: claims.kind,
          keyId: req.keyId,
          ...(req.wrappedKey.length > 0 ? { wrappedKey: req.wrappedKey } : {}),
          ciphertext: req.ciphertext,
          digest: claims.digest!,
        });
        return { version: BigInt(row.version), receipt: await receipt("create", claims, claims.digest!, row.version) };
      },
      updateRecord: async (req) => {
        const claims = await authorize(req.accessToken, "update");
        const row = await deps.store.update(claims.hash, claims.kind, Number(req.expectedVersion), {
          keyId: req.keyId,
          ...(req.wrappedKey.length > 0 ? { wrappedKey: req.wrappedKey } : {}),
          ciphertext: req.ciphertext,
          digest: claims.digest!,
        });
        return { version: BigInt(row.version), receipt: await receipt("update", claims, claims.digest!, row.version) };
      },
      deleteRecord: async (req) => {
        const claims = await authorize(req.accessToken, "delete");
        await deps.store.delete(claims.hash, claims.kind);
        return {};
      },
      listRecordKeys: async (req) => {
        const pageSize = req.pageSize === 0 ? DEFAULT_LIST_PAGE : req.pageSize;
        if (pageSize < 1 || pageSize > MAX_LIST_PAGE) throw invalidArgument(`page_size must be 0 (the default, ${DEFAULT_LIST_PAGE}) or 1 to ${MAX_LIST_PAGE}`);
        // The page token is the last hash of the previous page: Encryption learns no more
        // from it than from the page itself (keyed hashes name no user).
        const rows = await deps.store.listKeys(req.keyId, {
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
        const expected = optionalBytes(req.wrappedKey);
        if (!expected) throw invalidArgument("wrapped_key is required: a record sealed before envelope encryption cannot be re-wrapped");
        if (req.version < 1n || req.version > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidArgument("version must be a positive integer");
        await deps.store.rewrapKey(
          req.hash,
          kindName(req.kind),
          { version: Number(req.version), keyId: req.keyId, wrappedKey: expected },
          { keyId: req.newKeyId, wrappedKey: req.newWrappedKey },
        );
        return {};
      },
      countRecordKeys: async () => ({ keys: (await deps.store.countKeys()).map(keyUsage) }),
    }));
    keyWrappingAdminRoutes(deps.store)(router);
  };
}

/** Every service storageRoutes serves (for health and reflection). */
export const STORAGE_SERVICES = [StorageService, KeyWrappingAdminService] as const;

/** Storage's own operator's view of, and undo for, key maintenance. */
export function keyWrappingAdminRoutes(store: RecordStore) {
  return (router: ConnectRouter) => {
    router.service(KeyWrappingAdminService, {
      getKeyUsage: async () => ({ keys: (await store.countKeys()).map(keyUsage) }),
      restorePreviousWrappings: async (req) => ({ restored: BigInt(await store.restorePreviousWrappings(req.keyId)) }),
      forgetPreviousWrappings: async (req) => ({ forgotten: BigInt(await store.forgetPreviousWrappings(req.keyId)) }),
    });
  };
}
