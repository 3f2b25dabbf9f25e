// Storage (DESIGN.md §3, §7): keeps ciphertext by keyed hash for whoever presents a
// Token-signed Access Token. The storage key, kind and operation come from the
// verified token, never from the request; create, update and delete tokens are spent
// on use; "no record" is answered with a signed Error Token from a linearizable read.

import type { ConnectRouter } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { StorageService, StoredRecordSchema } from "../../gen/hello/storage/v1/storage_service_pb.js";
import type { RecordStore, StoredRow } from "../backend/record-store.js";
import { NotFoundError } from "../backend/errors.js";
import { sign, verify } from "../../protocol/jws.js";
import type { SigningKey, VerificationKeys } from "../../protocol/signing-keys.js";
import { ACCESS_TOKEN, type AccessClaims, ERROR_TOKEN, type Operation, RECEIPT, wrongOperation } from "../../protocol/tokens.js";
import { denied, mapped } from "../../protocol/errors.js";

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
    if (op !== "read") await deps.store.spendTokenId(claims.jti!, new Date(claims.exp! * 1000));
    return claims;
  }

  const stored = (row: StoredRow) =>
    create(StoredRecordSchema, {
      keyId: row.keyId,
      ciphertext: row.ciphertext,
      version: BigInt(row.version),
      createTime: timestampFromDate(row.createTime),
      updateTime: timestampFromDate(row.updateTime),
    });

  return (router: ConnectRouter) => {
    router.service(StorageService, {
      readRecord: mapped(async (req) => {
        const claims = await authorize(req.accessToken, "read");
        try {
          return { result: { case: "record", value: stored(await deps.store.read(claims.hash, claims.kind)) } };
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
      }),
      createRecord: mapped(async (req) => {
        const claims = await authorize(req.accessToken, "create");
        const row = await deps.store.create({ hash: claims.hash, kind: claims.kind, keyId: req.keyId, ciphertext: req.ciphertext });
        const receipt = await sign(
          RECEIPT,
          deps.receiptKey,
          { op: "create", kind: claims.kind, hash: claims.hash, ajti: claims.jti },
          { now: now() },
        );
        return { version: BigInt(row.version), receipt };
      }),
      updateRecord: mapped(async (req) => {
        const claims = await authorize(req.accessToken, "update");
        const row = await deps.store.update(claims.hash, claims.kind, Number(req.expectedVersion), {
          keyId: req.keyId,
          ciphertext: req.ciphertext,
        });
        return { version: BigInt(row.version) };
      }),
      deleteRecord: mapped(async (req) => {
        const claims = await authorize(req.accessToken, "delete");
        await deps.store.delete(claims.hash, claims.kind);
        return {};
      }),
    });
  };
}
