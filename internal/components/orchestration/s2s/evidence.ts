// Evidence the Wallet Client uploads for one issuer (docs/wallet-server.md, "Content
// Reference"): a sealed client payload too large to travel inline, kept for 10 minutes
// and served, at `<public_url>/evidence/<id>` on the S2S listener, to that issuer only.
// What the wallet server hands the client back is the draft's content reference, which
// the client puts in its payload in place of `jwe`.
//
// The JWE is encrypted to the issuer: the wallet server cannot read it, and keeps it
// the way Orchestration keeps everything in its shared store (sealed.ts): under the
// SHA-256 of its id and sealed under a key derived from the id, so that whoever reads
// the store learns neither which issuer it is for nor where it is downloaded from.

import { createHash, randomBytes } from "node:crypto";
import { SecretKeyedStore, type SharedStore } from "../sealed.js";

/** How long a reference can be fetched. */
export const EVIDENCE_TTL_SECONDS = 10 * 60;
/** The largest JWE kept (the issuer fetches no more either). */
export const MAX_EVIDENCE_BYTES = 8 * 1024 * 1024;

/** Ids are 16 random bytes, base64url: anything else was never issued, and costs no read. */
const ID_FORMAT = /^[A-Za-z0-9_-]{22}$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

export interface ContentReference {
  origin: "WALLET_CLIENT";
  downloadUrl: string;
  /** The base64url SHA-256 of the compact JWE's ASCII bytes. */
  contentDigest: string;
  contentSize: number;
  /** ISO 8601: when the download stops working. */
  expiresAt: string;
}

/** A JWE the store refuses to keep; the message says what to fix. */
export class EvidenceError extends Error {
  override name = "EvidenceError";
}

interface Entry {
  issuer: string;
  jwe: string;
}

export class EvidenceStore {
  readonly #entries: SecretKeyedStore<Entry>;
  readonly #base: string;

  /** `publicUrl`: the wallet server's S2S address as issuers reach it (wallet.public_url). */
  constructor(store: SharedStore, publicUrl: string) {
    this.#entries = new SecretKeyedStore<Entry>(store, "evidence");
    this.#base = publicUrl.replace(/\/+$/, "");
  }

  /** Keeps `jwe` for `issuerId` and says where that issuer fetches it. `sessionId` is the S2S session it belongs to. */
  async put(issuerId: string, sessionId: string, jwe: string): Promise<ContentReference> {
    assertCompactJwe(jwe);
    if (!issuerId) throw new EvidenceError("evidence is kept for an issuer: name one");
    if (!sessionId) throw new EvidenceError("evidence belongs to an S2S session: name it");
    const id = randomBytes(16).toString("base64url");
    const expiresAt = new Date(Date.now() + EVIDENCE_TTL_SECONDS * 1000).toISOString();
    await this.#entries.put(id, { issuer: issuerId, jwe }, EVIDENCE_TTL_SECONDS);
    return {
      origin: "WALLET_CLIENT",
      downloadUrl: `${this.#base}/evidence/${id}`,
      contentDigest: createHash("sha256").update(jwe, "ascii").digest("base64url"),
      contentSize: jwe.length,
      expiresAt,
    };
  }

  /** The JWE under `id`, only for the issuer it was kept for: for any other, as for an unknown or expired id, undefined. */
  async get(issuerId: string, id: string): Promise<string | undefined> {
    if (!ID_FORMAT.test(id)) return undefined;
    const entry = await this.#entries.read(id);
    return entry !== undefined && entry.issuer === issuerId ? entry.jwe : undefined;
  }
}

/** A compact JWE of at most MAX_EVIDENCE_BYTES: five base64url parts, the header and the ciphertext not empty. */
function assertCompactJwe(jwe: unknown): asserts jwe is string {
  if (typeof jwe !== "string") throw new EvidenceError("evidence must be a compact JWE (a string)");
  if (jwe.length > MAX_EVIDENCE_BYTES) throw new EvidenceError(`evidence is limited to ${MAX_EVIDENCE_BYTES} bytes (8 MiB); this JWE has ${jwe.length}`);
  const parts = jwe.split(".");
  if (parts.length !== 5) throw new EvidenceError(`evidence must be a compact JWE: five base64url parts separated by dots, not ${parts.length}`);
  if (!parts.every((part) => BASE64URL.test(part))) throw new EvidenceError("evidence must be a compact JWE: each part base64url (A-Z, a-z, 0-9, - and _)");
  if (parts[0] === "" || parts[3] === "") throw new EvidenceError("evidence must be a compact JWE: its protected header and ciphertext cannot be empty");
}
