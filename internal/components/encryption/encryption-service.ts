// Encryption (docs/design.md §3): seals records on their way to Storage and opens them on
// the way back. It verifies every Access Token itself with Token's public keys (it
// holds no signing key), checks a record to be written against the digest the token
// carries, and derives the additional data from the verified token, never from what
// Storage returns: a ciphertext Storage moved to another row does not open. Whatever
// Storage answers is checked before it is passed on: each receipt (signature, the
// Access Token it answers, kind, hash, and the digest of the record Encryption
// decrypted or sealed) and each Error Token (signature, the read it answers).
// Records use envelope encryption (internal/protocol/keyring.ts): a fresh data key per
// write, wrapped under the keyring's current key.

import { type CallOptions, Code, type Client, type ConnectRouter, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { failedInTransport } from "../../../mesh/transport-errors.js";
import { PROTOCOL_REFUSED_HEADER } from "../../protocol/versions.js";
import { EncryptionService } from "../../gen/hello/encryption/v1/encryption_service_pb.js";
import type { StorageService } from "../../gen/hello/storage/v1/storage_service_pb.js";
import type { Keyring } from "../../protocol/keyring.js";
import { InvalidTokenError, sha256, verify } from "../../protocol/jws.js";
import type { VerificationKeys } from "../../protocol/signing-keys.js";
import {
  ACCESS_TOKEN,
  type AccessClaims,
  ERROR_TOKEN,
  type ErrorClaims,
  type Operation,
  RECEIPT,
  type ReceiptClaims,
  writeOpOf,
  wrongOperation,
} from "../../protocol/tokens.js";
import { denied, invalidArgument } from "../../protocol/errors.js";

export interface EncryptionServiceDeps {
  readonly keyring: () => Keyring;
  /** Token's published keys (from Token's mesh bundle). */
  readonly tokenKeys: () => VerificationKeys;
  /** Storage's published keys (from Storage's mesh bundle): its receipts and Error Tokens. */
  readonly storageKeys: () => VerificationKeys;
  readonly storage: Client<typeof StorageService>;
  readonly now?: () => Date;
}

export const MAX_RECORD_BYTES = 512 * 1024;
/** The most writes of one WriteRecords: Storage's own limit (a batch is one database transaction). */
export const MAX_BATCH_WRITES = 64;

/**
 * Storage gets what is left of our caller's deadline less this, so that Storage's
 * DEADLINE_EXCEEDED reaches our caller before its own deadline does (docs/faults.md).
 */
export const DEADLINE_MARGIN_MS = 250;

/** The caller's deadline and cancellation, passed on to Storage. */
function downstream(ctx: HandlerContext): CallOptions {
  const left = ctx.timeoutMs();
  if (left === undefined) return { signal: ctx.signal };
  if (left <= DEADLINE_MARGIN_MS) throw new ConnectError("the deadline left too little time to call storage", Code.DeadlineExceeded);
  return { timeoutMs: left - DEADLINE_MARGIN_MS, signal: ctx.signal };
}

export function encryptionRoutes(deps: EncryptionServiceDeps) {
  const now = deps.now ?? (() => new Date());

  async function authorize(accessToken: string, op: Operation, record?: string) {
    const { claims } = await verify<AccessClaims>(ACCESS_TOKEN, deps.tokenKeys(), accessToken, "access token", now());
    if (claims.op !== op) throw denied(wrongOperation(claims.op, op));
    if (record !== undefined) {
      if (record.length === 0) throw invalidArgument("record is required");
      if (Buffer.byteLength(record) > MAX_RECORD_BYTES) throw invalidArgument(`record is larger than ${MAX_RECORD_BYTES} bytes`);
      if (claims.digest === undefined || sha256(record) !== claims.digest) {
        throw denied("the record is not the one the access token was issued for");
      }
    }
    return claims;
  }

  /** Storage's receipt must answer this very token with the record we hold. */
  async function checkReceipt(receipt: string, op: ReceiptClaims["op"], claims: AccessClaims & { jti?: string }, digest: string) {
    let answer: ReceiptClaims;
    try {
      answer = (await verify<ReceiptClaims>(RECEIPT, deps.storageKeys(), receipt, "storage's receipt", now())).claims;
    } catch (error) {
      throw new ConnectError(`storage returned a receipt that does not verify (${error instanceof InvalidTokenError ? error.reason : "invalid"})`, Code.DataLoss);
    }
    if (answer.op !== op || answer.kind !== claims.kind || answer.hash !== claims.hash || answer.ajti !== claims.jti || answer.digest !== digest) {
      throw new ConnectError(`storage's ${op} receipt does not answer this access token with this record`, Code.DataLoss);
    }
    return receipt;
  }

  /** Storage's "no record" must answer this very read. */
  async function checkErrorToken(errorToken: string, claims: AccessClaims & { jti?: string }) {
    let answer: ErrorClaims;
    try {
      answer = (await verify<ErrorClaims>(ERROR_TOKEN, deps.storageKeys(), errorToken, "storage's error token", now())).claims;
    } catch (error) {
      throw new ConnectError(`storage returned an error token that does not verify (${error instanceof InvalidTokenError ? error.reason : "invalid"})`, Code.DataLoss);
    }
    if (answer.op !== "read" || answer.kind !== claims.kind || answer.hash !== claims.hash || answer.ajti !== claims.jti) {
      throw new ConnectError("storage's error token does not answer this read", Code.DataLoss);
    }
    return errorToken;
  }

  /**
   * Storage's errors keep their code and words; nothing else from it is trusted. A call
   * that failed in the transport (Storage died under it) is UNAVAILABLE, whatever code
   * the socket's failure got.
   */
  const fromStorage = <T>(call: Promise<T>) =>
    call.catch((error: unknown) => {
      const e = ConnectError.from(error);
      const unavailable = e.code === Code.Unknown || failedInTransport(e);
      // A refusal of our protocol version stays one (mesh/versions.ts): Orchestration tells
      // it apart from a step out of order, as the operators' fault.
      const refusedBy = e.metadata.get(PROTOCOL_REFUSED_HEADER);
      throw new ConnectError(`storage: ${e.rawMessage}`, unavailable ? Code.Unavailable : e.code, refusedBy ? { [PROTOCOL_REFUSED_HEADER]: refusedBy } : undefined);
    });

  return (router: ConnectRouter) => {
    router.service(EncryptionService, {
      readRecord: async (req, ctx) => {
        const claims = await authorize(req.accessToken, "read");
        // Twice at most: a row from before Storage kept digests that another read gave its
        // digest a moment ago is read again, and then has its receipt.
        for (let attempt = 1; ; attempt++) {
          const res = await fromStorage(deps.storage.readRecord({ accessToken: req.accessToken }, downstream(ctx)));
          if (res.result.case === "errorToken") return { result: { case: "errorToken", value: await checkErrorToken(res.result.value, claims) } };
          if (res.result.case !== "record") throw new ConnectError("storage returned neither a record nor an error token", Code.DataLoss);
          const { version } = res.result.value;
          const record = deps.keyring().open(res.result.value, claims.kind, claims.hash).toString("utf8");
          const digest = sha256(record);
          let receipt = res.receipt;
          if (receipt === "") {
            // Written before Storage kept digests: it learns this one, from what we decrypted, once.
            try {
              receipt = (await fromStorage(deps.storage.backfillRecordDigest({ accessToken: req.accessToken, version, digest }, downstream(ctx)))).receipt;
            } catch (error) {
              if (attempt < 2 && error instanceof ConnectError && error.code === Code.Aborted) continue;
              throw error;
            }
          }
          return { result: { case: "record", value: record }, version, receipt: await checkReceipt(receipt, "read", claims, digest) };
        }
      },
      createRecord: async (req, ctx) => {
        const claims = await authorize(req.accessToken, "create", req.record);
        const sealed = deps.keyring().seal(Buffer.from(req.record, "utf8"), claims.kind, claims.hash);
        const { version, receipt } = await fromStorage(deps.storage.createRecord({ accessToken: req.accessToken, ...sealed }, downstream(ctx)));
        return { version, receipt: await checkReceipt(receipt, "create", claims, claims.digest!) };
      },
      updateRecord: async (req, ctx) => {
        const claims = await authorize(req.accessToken, "update", req.record);
        // Re-encryption on write: an update gets a fresh data key, under the current key.
        const sealed = deps.keyring().seal(Buffer.from(req.record, "utf8"), claims.kind, claims.hash);
        const { version, receipt } = await fromStorage(
          deps.storage.updateRecord({ accessToken: req.accessToken, ...sealed, expectedVersion: req.expectedVersion }, downstream(ctx)),
        );
        return { version, receipt: await checkReceipt(receipt, "update", claims, claims.digest!) };
      },
      deleteRecord: async (req, ctx) => {
        await authorize(req.accessToken, "delete");
        await fromStorage(deps.storage.deleteRecord({ accessToken: req.accessToken }, downstream(ctx)));
        return {};
      },
      writeRecords: async (req, ctx) => {
        if (req.writes.length < 1 || req.writes.length > MAX_BATCH_WRITES) throw invalidArgument(`writes must hold 1 to ${MAX_BATCH_WRITES} writes`);
        // Each write checked and sealed as its single call would be; Storage then makes them all, or none.
        const writes = await Promise.all(req.writes.map(async (w, i) => {
          const op = writeOpOf(w.accessToken);
          if (op === undefined) throw denied(`write ${i + 1} of ${req.writes.length}: the access token grants no create, update or delete`);
          const claims = await authorize(w.accessToken, op, op === "delete" ? undefined : w.record);
          if (op === "delete") return { op, claims, write: { accessToken: w.accessToken, expectedVersion: w.expectedVersion } };
          // A fresh data key for each record, under the current key.
          const sealed = deps.keyring().seal(Buffer.from(w.record, "utf8"), claims.kind, claims.hash);
          return { op, claims, write: { accessToken: w.accessToken, ...sealed, expectedVersion: w.expectedVersion } };
        }));
        const { results } = await fromStorage(deps.storage.writeRecords({ writes: writes.map((w) => w.write) }, downstream(ctx)));
        if (results.length !== writes.length) throw new ConnectError("storage answered another number of writes than it was given", Code.DataLoss);
        return {
          results: await Promise.all(writes.map(async ({ op, claims }, i) => {
            const r = results[i]!;
            return op === "delete" ? { version: 0n, receipt: "" } : { version: r.version, receipt: await checkReceipt(r.receipt, op, claims, claims.digest!) };
          })),
        };
      },
    });
  };
}
