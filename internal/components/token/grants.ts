// What Token mints for Storage and reads back: Access Tokens (grants of one operation on
// one record) and the records themselves (docs/design.md §3). A grant carries no session id,
// so Storage cannot link one login's rows; a create grant carries the digest of the
// record it writes, and, when the create relies on Storage's word that the record is
// absent, that Error Token's jti, which Storage spends.

import { create } from "@bufbuild/protobuf";
import { type AccessGrant, AccessGrantSchema, type RecordWrite, RecordWriteSchema } from "../../gen/hello/token/v1/token_service_pb.js";
import { RecordOperation } from "../../gen/hello/common/v1/record_pb.js";
import type { RecordKindName } from "../../protocol/records.js";
import { newJti, sha256, sign, typOf, verify } from "../../protocol/jws.js";
import { ACCESS_TOKEN, type AccessClaims, type Operation, RECORD_KIND, RECORD_TYPES, RECOVERY_SUBJECT_RECORD, type RecordClaims, type TokenType } from "../../protocol/tokens.js";
import type { OwnKeys } from "./own-keys.js";

const OPERATION: Record<Operation, RecordOperation> = {
  read: RecordOperation.READ,
  create: RecordOperation.CREATE,
  update: RecordOperation.UPDATE,
  delete: RecordOperation.DELETE,
};

export interface Grants {
  /** A read of the record at `hash`; the jti is the session's, to see the read answered. */
  read(kind: RecordKindName, hash: string): Promise<{ jti: string; grant: AccessGrant }>;
  /**
   * A record to write at `hash`, with its single-use create grant; `ejti` when the create
   * relies on an Error Token; `type` signs it as another record type of the kind (a
   * recovery account's Subject Record).
   */
  write<K extends RecordKindName>(kind: K, hash: string, claims: RecordClaims[K], ejti?: string, type?: TokenType): Promise<{ jti: string; digest: string; write: RecordWrite }>;
  /**
   * A record to write over the one at `hash`, with its single-use update grant; with
   * `version`, Storage accepts the update only at that version. `type` signs it as
   * another record type of the kind (the wallet's deletion record).
   */
  update<K extends RecordKindName>(kind: K, hash: string, claims: object, options?: { version?: number; type?: TokenType }): Promise<{ jti: string; digest: string; write: RecordWrite }>;
  /** A create grant at `hash` for a record already signed (another grant's), by its digest. */
  createOf(kind: RecordKindName, hash: string, write: { readonly record: string; readonly digest: string }): Promise<RecordWrite>;
  /** A delete of the record at `hash`. */
  remove(kind: RecordKindName, hash: string): Promise<AccessGrant>;
  /** A record Token signed, verified with Token's own record keys (retired ones too: records never expire). */
  record<K extends RecordKindName>(kind: K, record: string): Promise<RecordClaims[K]>;
  /** A Subject Record of either type: a sign-in account's, or a recovery account's (`recovery`). */
  subject(record: string): Promise<{ subject: RecordClaims["subject"]; recovery: boolean }>;
}

/**
 * The grants that make the reservation at `hash` (of `directedId` at `clientId`) name
 * `uid`, or no one (a tombstone) without it: a read of it, and the record as an update
 * (where a reservation is kept) and as a create (where a release from before
 * reservations left none). Orchestration reads, then uses one of the two.
 */
export async function reservationRewrite(grants: Grants, hash: string, clientId: string, directedId: string, uid?: string) {
  const update = await grants.update("reservation", hash, { client_id: clientId, directed_id: directedId, ...(uid === undefined ? {} : { uid }) });
  return {
    directedId,
    read: (await grants.read("reservation", hash)).grant,
    update: update.write,
    create: await grants.createOf("reservation", hash, { record: update.write.record, digest: update.digest }),
  };
}

export function grants(keys: OwnKeys, now: () => Date): Grants {
  async function grant(op: Operation, kind: RecordKindName, hash: string, extra: Pick<AccessClaims, "digest" | "ejti" | "version"> = {}) {
    const jti = newJti();
    const claims: AccessClaims = { op, kind, hash, ...extra };
    const accessToken = await sign(ACCESS_TOKEN, keys.active("access"), { ...claims }, { jti, now: now() });
    return { jti, grant: create(AccessGrantSchema, { accessToken, hash, kind: RECORD_KIND[kind], operation: OPERATION[op] }) };
  }

  return {
    read: (kind, hash) => grant("read", kind, hash),

    async write(kind, hash, claims, ejti, type) {
      const record = await sign(type ?? RECORD_TYPES[kind], keys.active("record"), { ...claims }, { now: now() });
      const digest = sha256(record);
      const created = await grant("create", kind, hash, { digest, ...(ejti === undefined ? {} : { ejti }) });
      return { jti: created.jti, digest, write: create(RecordWriteSchema, { record, grant: created.grant }) };
    },

    async update(kind, hash, claims, options = {}) {
      const record = await sign(options.type ?? RECORD_TYPES[kind], keys.active("record"), { ...claims }, { now: now() });
      const digest = sha256(record);
      const updated = await grant("update", kind, hash, { digest, ...(options.version === undefined ? {} : { version: options.version }) });
      return { jti: updated.jti, digest, write: create(RecordWriteSchema, { record, grant: updated.grant }) };
    },

    async createOf(kind, hash, { record, digest }) {
      const created = await grant("create", kind, hash, { digest });
      return create(RecordWriteSchema, { record, grant: created.grant });
    },

    remove: async (kind, hash) => (await grant("delete", kind, hash)).grant,

    async record<K extends RecordKindName>(kind: K, record: string) {
      return (await verify<RecordClaims[K]>(RECORD_TYPES[kind], keys.verification(), record, `${kind} record`, now())).claims;
    },

    async subject(record) {
      // The header's typ only chooses which type to verify as; verify checks it with the signature.
      const recovery = typOf(record) === RECOVERY_SUBJECT_RECORD.typ;
      const type = recovery ? RECOVERY_SUBJECT_RECORD : RECORD_TYPES.subject;
      return { subject: (await verify<RecordClaims["subject"]>(type, keys.verification(), record, "subject record", now())).claims, recovery };
    },
  };
}
