// The Wallet Client's flows (docs/wallet-server.md, "The wallet API"): getting
// credentials from an issuer through hello-mesh's wallet server, listing them, showing
// one, and presenting one. Every call goes through WalletApi (DPoP-bound); every payload
// the issuer reads is made here, on the user's machine, and sealed to a key the wallet
// server cannot choose (issuer-trust.ts). The server carries ciphertext only.
//
// What this side keeps (KeyStore, 0600 files): the WSK of each session (wsk.<sessionId>),
// the WEK of each credential instance (wek.<instance>), its presentment keys
// (pk.<instance>.<i>), and a small index per session (data session.<sessionId>: issuer,
// configurations, verification, instances). No credential and no personal data is
// stored: the server keeps the issuer's JWE, and only this directory's keys open it.
//
// The wallet server can encrypt anything to a WEK (it carries the public half), so a
// credential is believed only after it is checked here: its issuer JWT signed by a key
// of the trusted issuer, iss that issuer, vct the configuration's, its disclosures all
// referenced by that signed JWT, and cnf.jwk one of this instance's presentment keys.
//
// Errors are WalletClientErrors whose messages say what to do; none holds a claim's
// value or a key.

import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { extname } from "node:path";
import { type JWK, compactVerify, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK } from "jose";
import { z } from "zod";
import { TERMINAL_CREDENTIAL_STATUSES } from "../protocol/wallet-records.js";
import { openCredentials, sealClientPayload, walletEncryptionKeyData } from "../s2s/client-payload.js";
import { generateHpkeKeyPair, publicHpkeJwk, thumbprint } from "../s2s/hpke-jwe.js";
import {
  ITEM_TYPES,
  type JweEncryptedPayload,
  type VerificationStatus,
  jweEncryptedPayloadSchema,
  provisionResponseSchema,
  sessionIdSchema,
  verificationStatusSchema,
} from "../s2s/messages.js";
import { SD_JWT_VC_TYP, SdJwtVcError, inspectSdJwtVc, presentSdJwtVc } from "../s2s/sd-jwt-vc.js";
import { signStatement } from "../s2s/statements.js";
import { type StatusReference, StatusListError, fetchCredentialStatus } from "../s2s/status-list.js";
import { type WalletApi, WalletApiError } from "./api-client.js";
import { type TrustedIssuer, trustedIssuer } from "./issuer-trust.js";
import type { KeyStore } from "./key-store.js";

// --- errors -------------------------------------------------------------------------

export interface WalletClientErrorDetails {
  /** The verification's status when the flow stopped on it (REJECTED, DENIED, EXPIRED). */
  status?: string;
  reasonCode?: string;
  deniedMessage?: string;
  issuer?: string;
  sessionId?: string;
  verificationId?: string;
  /** The HTTP status and errorCode of a refused wallet API call. */
  httpStatus?: number;
  errorCode?: string;
}

/** Every failure of a flow. The message says what to do; it never holds a claim's value or a key. */
export class WalletClientError extends Error {
  override name = "WalletClientError";
  constructor(
    message: string,
    readonly details: WalletClientErrorDetails = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Text from the server or the issuer, made safe for a terminal: no control characters, bounded. */
const clean = (text: string, max = 300): string => {
  const flat = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, " ");
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
};

// --- inputs -------------------------------------------------------------------------

export interface PersonInput {
  documentNumber: string;
  familyName: string;
  /** YYYY-MM-DD. */
  birthdate: string;
}

export interface DocumentInput {
  /** A file to read, or the bytes themselves. */
  path?: string;
  bytes?: Uint8Array;
  /** E.g. application/pdf; from the file's extension when not given. */
  mediaType?: string;
}

export interface WaitOptions {
  /** Between polls of a PENDING verification or credential; default 2000. */
  pollMs?: number;
  /** Polls before giving up (the session stays, to resume); default 150 (5 min at 2 s). */
  maxPolls?: number;
}

interface FlowOptions {
  /** false: stop at the first PENDING and return it (resume later). */
  wait?: WaitOptions | false;
  /** Called with each VerificationStatus the issuer answers. */
  onStatus?: (status: VerificationStatus) => void;
  /** Called with a line of progress for a person to read. */
  onProgress?: (line: string) => void;
  /** Injectable; tests must not really wait. */
  sleep?: (ms: number) => Promise<void>;
}

export interface AddCredentialsInput extends FlowOptions {
  /** The issuer's id (resolve `dev` first: issuer-trust.ts resolveIssuerId). */
  issuer: string;
  configurations: string[];
  person: PersonInput;
  /** The document the issuer may ask for (e.g. proof_of_address). */
  document?: DocumentInput;
  /** Presentment keys per credential instance, 1 to 10 (default 1): one credential is issued for each. */
  presentmentKeys?: number;
}

export interface ResumeInput extends FlowOptions {
  /** Corrected details, for a verification the issuer REJECTED or that asks for them. */
  person?: PersonInput;
  document?: DocumentInput;
}

export interface IssuedInstance {
  id: string;
  configuration: string;
  vct: string;
  credentialVersion: string;
  /** Credentials held: one per presentment key. */
  count: number;
  /** The claims the credential can disclose (names only). */
  claimNames: string[];
  expiresAt?: number;
}

export type AddCredentialsResult =
  | { state: "ISSUED"; issuer: string; sessionId: string; verificationId: string; instances: IssuedInstance[] }
  | {
      state: "PENDING";
      issuer: string;
      sessionId: string;
      verificationId: string;
      /** What is not ready yet. */
      waitingFor: "verification" | "credential";
      /** True when it waited its polls out; false when it was asked not to wait. */
      timedOut: boolean;
      /** What was issued before it stopped. */
      instances: IssuedInstance[];
    };

const MAX_PRESENTMENT_KEYS = 10;
const MAX_CONFIGURATIONS = 16;
const DEFAULT_POLL_MS = 2000;
const DEFAULT_MAX_POLLS = 150;
/** Supplements in one flow before the client stops answering an issuer that keeps asking. */
const MAX_SUPPLEMENTS = 6;
/** The raw document: sealed (base64 in a JWS in a JWE) it must stay under the wallet API's 8 MiB. */
const MAX_DOCUMENT_BYTES = 3 * 1024 * 1024;
const MAX_EVIDENCE_JWE_BYTES = 8 * 1024 * 1024;
const MEDIA_TYPES: Record<string, string> = {
  ".pdf": "application/pdf",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".txt": "text/plain",
  ".json": "application/json",
};
const MEDIA_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/i;

const personSchema = z.object({
  documentNumber: z.string().trim().min(1).max(64),
  familyName: z.string().trim().min(1).max(256),
  birthdate: z.iso.date(),
});

function checkPerson(person: PersonInput | undefined): PersonInput {
  const parsed = personSchema.safeParse(person);
  if (!parsed.success) {
    const fields = [...new Set(parsed.error.issues.map((i) => String(i.path[0] ?? "person")))];
    const flag = (f: string) => `--${f.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    throw new WalletClientError(
      `the person's details are incomplete or invalid (${fields.map(flag).join(", ")}): give --document-number, --family-name and --birthdate YYYY-MM-DD as on the document`,
    );
  }
  return parsed.data;
}

interface LoadedDocument {
  bytes: Buffer;
  mediaType: string;
}

async function loadDocument(document: DocumentInput | undefined): Promise<LoadedDocument | undefined> {
  if (!document) return undefined;
  let bytes: Buffer;
  if (document.bytes) bytes = Buffer.from(document.bytes);
  else if (document.path) {
    let handle;
    try {
      handle = await open(document.path, "r");
    } catch (error) {
      throw new WalletClientError(`cannot read the document ${document.path}: ${(error as NodeJS.ErrnoException).code ?? "unreadable"}`);
    }
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw new WalletClientError(`the document ${document.path} is not a file`);
      if (info.size > MAX_DOCUMENT_BYTES) throw new WalletClientError(`the document ${document.path} is larger than ${MAX_DOCUMENT_BYTES / 1024 / 1024} MiB: send a smaller scan`);
      bytes = await handle.readFile();
    } finally {
      await handle.close();
    }
  } else throw new WalletClientError("a document needs a file (--document <file>)");
  if (bytes.length === 0) throw new WalletClientError("the document is empty");
  if (bytes.length > MAX_DOCUMENT_BYTES) throw new WalletClientError(`the document is larger than ${MAX_DOCUMENT_BYTES / 1024 / 1024} MiB: send a smaller scan`);
  const mediaType = document.mediaType ?? (document.path ? MEDIA_TYPES[extname(document.path).toLowerCase()] : undefined);
  if (!mediaType) throw new WalletClientError("the document's media type is unknown: give --media-type, e.g. application/pdf");
  if (!MEDIA_TYPE.test(mediaType)) throw new WalletClientError("the document's media type must look like type/subtype, e.g. application/pdf");
  return { bytes, mediaType: mediaType.toLowerCase() };
}

// --- wallet API answers ---------------------------------------------------------------

const sessionAnswerSchema = z.looseObject({ sessionId: sessionIdSchema, issuer: z.string().optional() });
const contentReferenceSchema = jweEncryptedPayloadSchema;
const credentialAnswerSchema = z.union([
  z.looseObject({
    status: z.literal("READY"),
    credentialVersion: z.string().min(1).max(256),
    credentials: jweEncryptedPayloadSchema,
    credentialMetadata: z.record(z.string(), z.unknown()).optional(),
  }),
  z.looseObject({ status: z.literal("PENDING"), retryAfter: z.number().nonnegative().optional() }),
]);
const confirmAnswerSchema = z.looseObject({ status: z.string() });
const metadataAnswerSchema = z.looseObject({ credentialMetadata: z.record(z.string(), z.unknown()).optional() });
const heldSchema = z.looseObject({
  issuer: z.string(),
  sessionId: z.string(),
  credentialInstanceId: z.string().min(1).max(256),
  credentialConfigurationId: z.string(),
  status: z.string(),
  credentialVersion: z.string().optional(),
  credentialMetadata: z.record(z.string(), z.unknown()).optional(),
  credentials: jweEncryptedPayloadSchema.optional(),
});
const heldListSchema = z.looseObject({ credentials: z.array(heldSchema) });
type Held = z.infer<typeof heldSchema>;

/** One wallet API call; a refusal becomes a WalletClientError with the server's words. */
async function call<T>(api: WalletApi, method: "GET" | "POST", path: string, schema: z.ZodType<T>, body?: unknown): Promise<T> {
  try {
    return await api.call(method, path, schema, body);
  } catch (error) {
    if (error instanceof WalletApiError) {
      const errorCode = (error.problem as { errorCode?: unknown } | undefined)?.errorCode;
      throw new WalletClientError(clean(error.message, 600), { httpStatus: error.status, ...(typeof errorCode === "string" ? { errorCode } : {}) }, { cause: error });
    }
    throw error;
  }
}

// --- the local index ----------------------------------------------------------------

const sessionIndexSchema = z.looseObject({
  issuer: z.string(),
  sessionId: z.string(),
  configurations: z.array(z.string()),
  presentmentKeys: z.number().int().min(1).max(MAX_PRESENTMENT_KEYS),
  createdAt: z.number().int(),
  verificationId: z.string().optional(),
  status: z.string().optional(),
  instances: z.array(z.looseObject({ id: z.string(), configuration: z.string(), confirmed: z.boolean().optional() })),
  /** A device transfer's session: the session it takes over (its instances are unlinked once this one's credentials are here). */
  transferFrom: z.string().optional(),
});
type SessionIndex = z.infer<typeof sessionIndexSchema>;

const indexName = (sessionId: string) => `session.${sessionId}`;

/** The store name an instance id goes by: itself when it is a safe file name, else its hash. */
export function instanceKeyName(instanceId: string): string {
  return /^[A-Za-z0-9_-]{1,100}$/.test(instanceId) ? instanceId : `h-${createHash("sha256").update(instanceId, "utf8").digest("base64url")}`;
}
const wekName = (instanceId: string) => `wek.${instanceKeyName(instanceId)}`;
const pkPrefix = (instanceId: string) => `pk.${instanceKeyName(instanceId)}.`;
const pkName = (instanceId: string, index: number) => `${pkPrefix(instanceId)}${index}`;
/** A key rotation's new presentment keys, kept until credentials bound to them arrive (refreshCredential). */
const stagedPrefix = (instanceId: string) => `pkn.${instanceKeyName(instanceId)}.`;

// --- keys ---------------------------------------------------------------------------

async function es256KeyPair(): Promise<{ publicJwk: JWK; privateJwk: JWK }> {
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  const pub = await exportJWK(publicKey);
  const priv = await exportJWK(privateKey);
  return { publicJwk: { kty: pub.kty, crv: pub.crv, x: pub.x, y: pub.y }, privateJwk: { kty: priv.kty, crv: priv.crv, x: priv.x, y: priv.y, d: priv.d } };
}

const publicOf = (jwk: JWK): JWK => ({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y });

/** This instance's presentment keys on this device, in order. */
async function presentmentKeys(store: KeyStore, instanceId: string, prefix = pkPrefix(instanceId)): Promise<JWK[]> {
  const names = (await store.listKeys(prefix)).filter((n) => /^\d+$/.test(n.slice(prefix.length)));
  names.sort((a, b) => Number(a.slice(prefix.length)) - Number(b.slice(prefix.length)));
  const keys: JWK[] = [];
  for (const [i, name] of names.entries()) {
    if (name !== `${prefix}${i}`) break; // only the unbroken run 0..n-1
    keys.push((await store.getKey(name))!);
  }
  return keys;
}

// --- checking credentials -----------------------------------------------------------

interface CheckedCredential {
  credential: string;
  vct: string;
  holderThumbprint: string;
  claimNames: string[];
  issuedAt?: number;
  expiresAt?: number;
  /** Its entry in the issuer's Token Status List, if it names one. */
  status?: StatusReference;
}

/**
 * Each credential is the trusted issuer's, of the configuration's vct, bound to one of
 * `holders` (public keys), and they are bound to distinct keys. Its issuer JWT's
 * signature is checked with jose against the issuer's keys; inspectSdJwtVc checks that
 * every disclosure is one the signed JWT references.
 */
async function checkCredentials(issuer: TrustedIssuer, configuration: string, credentials: string[], holders: JWK[]): Promise<CheckedCredential[]> {
  const fail = (reason: string): never => {
    throw new WalletClientError(`a credential for ${configuration} from ${issuer.id} is refused: ${reason}; it was not accepted (the wallet server or the issuer sent something else)`, {
      issuer: issuer.id,
    });
  };
  const holderPrints = await Promise.all(holders.map((h) => thumbprint(h)));
  const expectedVct = issuer.configurations?.[configuration]?.vct;
  const now = Math.floor(Date.now() / 1000);
  const seen = new Set<string>();
  const out: CheckedCredential[] = [];
  for (const credential of credentials) {
    let inspected: ReturnType<typeof inspectSdJwtVc>;
    try {
      inspected = inspectSdJwtVc(credential);
    } catch (error) {
      return fail(error instanceof SdJwtVcError ? error.message : "it is not an SD-JWT VC");
    }
    if (inspected.issuer !== issuer.id) fail("its iss is another issuer");
    if (expectedVct !== undefined && inspected.vct !== expectedVct) fail("its vct is not the configuration's");
    if (inspected.expiresAt !== undefined && inspected.expiresAt <= now) fail("it has expired");
    const holderThumbprint = await thumbprint(inspected.holderKey);
    if (!holderPrints.includes(holderThumbprint)) fail("it is not bound to a presentment key of this wallet (cnf.jwk)");
    if (seen.has(holderThumbprint)) fail("two credentials are bound to the same presentment key");
    seen.add(holderThumbprint);
    await checkIssuerSignature(credential, issuer, fail);
    out.push({
      credential,
      vct: inspected.vct,
      holderThumbprint,
      claimNames: inspected.claimNames,
      ...(inspected.issuedAt !== undefined ? { issuedAt: inspected.issuedAt } : {}),
      ...(inspected.expiresAt !== undefined ? { expiresAt: inspected.expiresAt } : {}),
      ...(inspected.status ? { status: inspected.status } : {}),
    });
  }
  return out;
}

async function checkIssuerSignature(credential: string, issuer: TrustedIssuer, fail: (reason: string) => never): Promise<void> {
  const jwt = credential.split("~", 1)[0]!;
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(jwt);
  } catch {
    return fail("its issuer JWT's header cannot be read");
  }
  if (header.alg !== "ES256") fail("its issuer JWT is not ES256");
  if (header.typ !== SD_JWT_VC_TYP) fail(`its issuer JWT's typ is not ${SD_JWT_VC_TYP}`);
  if (header.crit !== undefined) fail("its issuer JWT's header has crit");
  const keys = issuer.jwks.keys.filter((k) => typeof header.kid === "string" && k.kid === header.kid);
  if (keys.length !== 1) fail("it is signed with a key the issuer is not trusted with (kid)");
  try {
    const key = await importJWK({ kty: "EC", crv: "P-256", x: keys[0]!.x, y: keys[0]!.y }, "ES256");
    await compactVerify(jwt, key, { algorithms: ["ES256"] });
  } catch {
    fail("its issuer JWT's signature does not verify with the issuer's key");
  }
}

// --- the verification ---------------------------------------------------------------

interface Flow {
  api: WalletApi;
  store: KeyStore;
  issuer: TrustedIssuer;
  sessionId: string;
  wsk: JWK;
  index: SessionIndex;
  person?: PersonInput;
  document?: LoadedDocument;
  /** Whether a REJECTED verification may be answered with `person` (resume with corrected details). */
  answerRejected: boolean;
  pollMs: number;
  maxPolls: number;
  waitAtAll: boolean;
  sleep: (ms: number) => Promise<void>;
  onStatus: (status: VerificationStatus) => void;
  progress: (line: string) => void;
}

function flowOptions(options: FlowOptions): Pick<Flow, "pollMs" | "maxPolls" | "waitAtAll" | "sleep" | "onStatus" | "progress"> {
  const wait = options.wait === false ? undefined : (options.wait ?? {});
  const pollMs = wait?.pollMs ?? DEFAULT_POLL_MS;
  const maxPolls = wait?.maxPolls ?? DEFAULT_MAX_POLLS;
  if (!Number.isFinite(pollMs) || pollMs < 0) throw new WalletClientError("wait.pollMs must be a non-negative number");
  if (!Number.isInteger(maxPolls) || maxPolls < 0) throw new WalletClientError("wait.maxPolls must be a non-negative integer");
  return {
    pollMs,
    maxPolls: wait ? maxPolls : 0,
    waitAtAll: wait !== undefined,
    sleep: options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms))),
    onStatus: options.onStatus ?? (() => {}),
    progress: options.onProgress ?? (() => {}),
  };
}

/** A VerificationStatus from the server, for this session (and verification, once there is one). */
async function verificationCall(flow: Flow, path: string, body: Record<string, unknown>): Promise<VerificationStatus> {
  const status = await call(flow.api, "POST", path, verificationStatusSchema, { issuer: flow.issuer.id, sessionId: flow.sessionId, ...body });
  if (status.sessionId !== flow.sessionId) throw new WalletClientError(`the wallet server answered ${path} for another session; nothing more was sent`, { sessionId: flow.sessionId });
  if (flow.index.verificationId !== undefined && status.verificationId !== flow.index.verificationId) {
    throw new WalletClientError(`the wallet server answered ${path} for another verification; nothing more was sent`, { sessionId: flow.sessionId });
  }
  if (flow.index.verificationId === undefined) flow.index.verificationId = status.verificationId;
  flow.index.status = status.status;
  await flow.store.putData(indexName(flow.sessionId), flow.index);
  flow.onStatus(status);
  return status;
}

const stopDetails = (flow: Flow, status: VerificationStatus): WalletClientErrorDetails => ({
  status: status.status,
  issuer: flow.issuer.id,
  sessionId: flow.sessionId,
  verificationId: status.verificationId,
  ...(status.reasonCode !== undefined ? { reasonCode: clean(status.reasonCode, 64) } : {}),
  ...(status.deniedMessage !== undefined ? { deniedMessage: clean(status.deniedMessage) } : {}),
});

const REJECTION_HINTS: Record<string, string> = {
  DATA_MISMATCH: "the details do not match the issuer's records: check the document number, family name and birthdate against the document",
};

/** Seals what the issuer asks for; a document goes to the wallet server first and travels by reference. */
async function answerRequest(flow: Flow, status: VerificationStatus, person: PersonInput | undefined): Promise<JweEncryptedPayload[]> {
  const items = status.verificationDataRequest?.verificationDataItems ?? [];
  const context = { sessionId: flow.sessionId, verificationId: status.verificationId };
  const payloads: JweEncryptedPayload[] = [];
  for (const item of items) {
    if (item.type === ITEM_TYPES.personData) {
      if (!person) {
        throw new WalletClientError(
          `${flow.issuer.id} asks for the person's details: run hello wallet resume ${flow.sessionId} with --document-number, --family-name and --birthdate`,
          stopDetails(flow, status),
        );
      }
      payloads.push(await sealClientPayload("verificationData", { type: ITEM_TYPES.personData, id: item.id, ...person }, context, flow.wsk, flow.issuer.encryptionKey));
    } else if (item.type === ITEM_TYPES.document) {
      const documentType = clean(typeof item.documentType === "string" ? item.documentType : item.id, 64);
      if (!flow.document) {
        throw new WalletClientError(
          `the issuer asks for a ${documentType} document: pass --document <file> (and --media-type if its extension does not say), then run hello wallet resume ${flow.sessionId}`,
          stopDetails(flow, status),
        );
      }
      const sealed = await sealClientPayload(
        "verificationData",
        { type: ITEM_TYPES.document, id: item.id, documentType, mediaType: flow.document.mediaType, content: flow.document.bytes.toString("base64") },
        context,
        flow.wsk,
        flow.issuer.encryptionKey,
      );
      payloads.push(await uploadEvidence(flow, sealed.jwe!));
      flow.progress(`Sent the ${documentType} document, sealed for ${flow.issuer.id}.`);
    } else if ([ITEM_TYPES.walletAge, ITEM_TYPES.emailVerified, ITEM_TYPES.previousSession].includes(item.type as never)) {
      // The wallet server's own signals: not the client's to send.
    } else if (item.required !== false) {
      throw new WalletClientError(`${flow.issuer.id} asks for ${clean(item.type, 100)}, which this wallet cannot provide`, stopDetails(flow, status));
    }
  }
  if (payloads.length === 0) throw new WalletClientError(`${flow.issuer.id} asks for nothing this wallet can send; the verification cannot go on`, stopDetails(flow, status));
  return payloads;
}

/** POST /wallet/api/evidence: the sealed document to the wallet server; its reference, checked to name exactly these bytes. */
async function uploadEvidence(flow: Flow, jwe: string): Promise<JweEncryptedPayload> {
  if (Buffer.byteLength(jwe, "ascii") > MAX_EVIDENCE_JWE_BYTES) throw new WalletClientError("the sealed document is larger than the wallet server takes (8 MiB): send a smaller scan");
  const reference = await call(flow.api, "POST", "/wallet/api/evidence", contentReferenceSchema, { issuer: flow.issuer.id, sessionId: flow.sessionId, jwe });
  const digest = createHash("sha256").update(jwe, "ascii").digest("base64url");
  if (reference.origin !== "WALLET_CLIENT" || reference.jwe !== undefined || !reference.downloadUrl || reference.contentDigest !== digest) {
    throw new WalletClientError("the wallet server's content reference does not name the document the wallet sealed (origin or contentDigest); nothing was sent to the issuer");
  }
  if (reference.contentSize !== undefined && reference.contentSize !== Buffer.byteLength(jwe, "ascii")) {
    throw new WalletClientError("the wallet server's content reference has another size than the sealed document; nothing was sent to the issuer");
  }
  return reference;
}

/** Drives the verification until APPROVED (returned), PENDING past the polls (returned), or a stop (thrown). */
async function driveVerification(flow: Flow, first: VerificationStatus): Promise<{ status: VerificationStatus; timedOut: boolean }> {
  let status = first;
  let polls = 0;
  let supplements = 0;
  for (;;) {
    switch (status.status) {
      case "APPROVED": {
        flow.progress(`${flow.issuer.id} approved: ${(status.credentialConfigurationIds ?? []).join(", ")}.`);
        return { status, timedOut: false };
      }
      case "DENIED":
      case "EXPIRED": {
        const details = stopDetails(flow, status);
        throw new WalletClientError(
          `${flow.issuer.id} ${status.status === "DENIED" ? "denied" : "let expire"} the verification (${details.reasonCode ?? status.status})${details.deniedMessage ? `: ${details.deniedMessage}` : ""}. It is over; hello wallet add starts a new one.`,
          details,
        );
      }
      case "REJECTED": {
        const details = stopDetails(flow, status);
        if (!(flow.answerRejected && flow.person && status.verificationDataRequest)) {
          const hint = REJECTION_HINTS[details.reasonCode ?? ""] ?? "check the details given";
          throw new WalletClientError(
            `${flow.issuer.id} rejected the verification (${details.reasonCode}): ${hint}; then run hello wallet resume ${flow.sessionId} with the corrected --document-number, --family-name and --birthdate`,
            details,
          );
        }
        flow.answerRejected = false; // one corrected answer per resume
        status = await supplement(flow, status, ++supplements);
        break;
      }
      case "ADDITIONAL_INFO_REQUIRED": {
        status = await supplement(flow, status, ++supplements);
        break;
      }
      case "PENDING": {
        if (polls >= flow.maxPolls) {
          flow.progress(`${flow.issuer.id} has not decided yet.`);
          return { status, timedOut: flow.waitAtAll };
        }
        if (polls === 0) flow.progress(`${flow.issuer.id} is deciding; waiting…`);
        polls++;
        await flow.sleep(flow.pollMs);
        status = await verificationCall(flow, "/wallet/api/status", { verificationId: status.verificationId });
        break;
      }
    }
  }
}

async function supplement(flow: Flow, status: VerificationStatus, count: number): Promise<VerificationStatus> {
  if (count > MAX_SUPPLEMENTS) throw new WalletClientError(`${flow.issuer.id} asked for more ${MAX_SUPPLEMENTS} times; the wallet stops answering`, stopDetails(flow, status));
  const payloads = await answerRequest(flow, status, flow.person);
  return verificationCall(flow, "/wallet/api/supplement", { verificationId: status.verificationId, clientEncryptedPayload: payloads });
}

// --- the credentials ----------------------------------------------------------------

/** Provision, then each instance: keys, get, check, confirm. Instances confirmed before are skipped. */
async function issueCredentials(
  flow: Flow,
  approved: VerificationStatus,
): Promise<{ instances: IssuedInstance[]; pending: boolean; timedOut: boolean }> {
  const answer = await call(flow.api, "POST", "/wallet/api/provision", provisionResponseSchema, {
    issuer: flow.issuer.id,
    sessionId: flow.sessionId,
    verificationId: approved.verificationId,
  });
  const allowed = new Set(approved.credentialConfigurationIds ?? []);
  const instances: { id: string; configuration: string }[] = [];
  for (const group of answer.credentialInstances) {
    if (!allowed.has(group.credentialConfigurationId) || !flow.index.configurations.includes(group.credentialConfigurationId)) {
      throw new WalletClientError("the wallet server provisioned a credential configuration that was not approved for this session; nothing was accepted");
    }
    for (const id of group.credentialInstanceIds) instances.push({ id, configuration: group.credentialConfigurationId });
  }
  if (instances.length === 0 || instances.length > MAX_CONFIGURATIONS * 4 || new Set(instances.map((i) => i.id)).size !== instances.length) {
    throw new WalletClientError("the wallet server's provisioned instances are not a list of distinct ids; nothing was accepted");
  }
  for (const instance of instances) {
    if (!flow.index.instances.some((i) => i.id === instance.id)) flow.index.instances.push({ ...instance, confirmed: false });
  }
  await flow.store.putData(indexName(flow.sessionId), flow.index);

  const issued: IssuedInstance[] = [];
  for (const instance of instances) {
    if (flow.index.instances.find((i) => i.id === instance.id)?.confirmed) continue;
    const result = await obtainCredential(flow, instance.id, instance.configuration);
    if (result === "PENDING") return { instances: issued, pending: true, timedOut: flow.waitAtAll };
    issued.push(result);
    flow.index.instances.find((i) => i.id === instance.id)!.confirmed = true;
    await flow.store.putData(indexName(flow.sessionId), flow.index);
  }
  return { instances: issued, pending: false, timedOut: false };
}

/** An issuer's credentials as they arrive (first issuance or refresh): opened with the instance's WEK, one per presentment key, each checked against the trusted issuer and its key. */
/**
 * The credentials as `check` opens and checks them; if they fail it, the wallet server is
 * told (it tells the issuer PROVISIONING_FAILURE or UPDATE_FAILURE; best effort, the
 * refusal stands whatever it answers) and the refusal is thrown.
 */
async function checkedOrRejected(api: WalletApi, ref: { issuer: string; sessionId: string; credentialInstanceId: string }, check: () => Promise<CheckedCredential[]>): Promise<CheckedCredential[]> {
  try {
    return await check();
  } catch (error) {
    if (error instanceof WalletClientError) {
      await call(api, "POST", "/wallet/api/credential/reject", z.looseObject({}), { ...ref, reason: "the credentials did not pass the wallet's checks" }).catch(() => undefined);
    }
    throw error;
  }
}

async function openAndCheck(issuer: TrustedIssuer, configuration: string, payload: JweEncryptedPayload, wek: JWK, holders: JWK[]) {
  let credentials: string[];
  try {
    credentials = await openCredentials(payload, wek);
  } catch {
    throw new WalletClientError(`the ${clean(configuration, 64)} credentials cannot be opened with this instance's key: they were not encrypted to it by the issuer`, { issuer: issuer.id });
  }
  if (credentials.length !== holders.length) {
    throw new WalletClientError(`${issuer.id} sent ${credentials.length} ${clean(configuration, 64)} credentials for ${holders.length} presentment keys; none was accepted`);
  }
  return checkCredentials(issuer, configuration, credentials, holders);
}

async function obtainCredential(flow: Flow, instanceId: string, configuration: string): Promise<IssuedInstance | "PENDING"> {
  const wek = await generateHpkeKeyPair();
  await flow.store.putKey(wekName(instanceId), wek.privateJwk);
  const holders: JWK[] = [];
  for (let i = 0; i < flow.index.presentmentKeys; i++) {
    const pair = await es256KeyPair();
    await flow.store.putKey(pkName(instanceId, i), pair.privateJwk);
    holders.push(pair.publicJwk);
  }
  const base = { issuer: flow.issuer.id, sessionId: flow.sessionId, credentialInstanceId: instanceId };
  let polls = 0;
  let answer: z.infer<typeof credentialAnswerSchema>;
  for (let first = true; ; first = false) {
    answer = await call(flow.api, "POST", "/wallet/api/credential/get", credentialAnswerSchema, {
      ...base,
      walletEncryptionKey: await walletEncryptionKeyData(wek.publicJwk, flow.issuer.id, flow.sessionId, flow.wsk),
      // The issuer keeps the presentment keys from the first get; a retry needs none.
      ...(first
        ? {
            clientEncryptedData: await sealClientPayload(
              "presentmentKeys",
              { presentmentKeys: holders },
              { sessionId: flow.sessionId, credentialInstanceId: instanceId },
              flow.wsk,
              flow.issuer.encryptionKey,
            ),
          }
        : {}),
    });
    if (answer.status === "READY") break;
    if (polls >= flow.maxPolls) {
      flow.progress(`${flow.issuer.id} has not issued the ${configuration} credential yet.`);
      return "PENDING";
    }
    if (polls === 0) flow.progress(`${flow.issuer.id} is issuing the ${configuration} credential; waiting…`);
    polls++;
    const retryAfterMs = Math.min(answer.retryAfter ?? 0, 30) * 1000;
    await flow.sleep(Math.max(flow.pollMs, retryAfterMs));
  }

  const checked = await checkedOrRejected(flow.api, base, () => openAndCheck(flow.issuer, configuration, answer.credentials, wek.privateJwk, holders));
  const confirmed = await call(flow.api, "POST", "/wallet/api/credential/confirm", confirmAnswerSchema, base);
  if (confirmed.status !== "ACTIVE") throw new WalletClientError(`the wallet server did not activate the ${configuration} credential (${clean(confirmed.status, 40)})`);
  flow.progress(`Got the ${configuration} credential (${checked.length} for ${checked.length} presentment keys).`);
  const expiries = checked.map((c) => c.expiresAt).filter((e): e is number => e !== undefined);
  return {
    id: instanceId,
    configuration,
    vct: checked[0]!.vct,
    credentialVersion: answer.credentialVersion,
    count: checked.length,
    claimNames: checked[0]!.claimNames,
    ...(expiries.length > 0 ? { expiresAt: Math.min(...expiries) } : {}),
  };
}

async function finish(flow: Flow, status: VerificationStatus, timedOut: boolean): Promise<AddCredentialsResult> {
  const head = { issuer: flow.issuer.id, sessionId: flow.sessionId, verificationId: status.verificationId };
  if (status.status !== "APPROVED") return { state: "PENDING", ...head, waitingFor: "verification", timedOut, instances: [] };
  const issued = await issueCredentials(flow, status);
  if (issued.pending) return { state: "PENDING", ...head, waitingFor: "credential", timedOut: issued.timedOut, instances: issued.instances };
  return { state: "ISSUED", ...head, instances: issued.instances };
}

// --- the flows ----------------------------------------------------------------------

/**
 * Gets credentials of `configurations` from `issuer` for `person`: a session with a new
 * WSK, the verification (sealed details, a document by reference if asked, polling while
 * PENDING), then for each provisioned instance a WEK and presentment keys, the
 * credentials, checked, and the confirmation.
 */
export async function addCredentials(api: WalletApi, store: KeyStore, input: AddCredentialsInput): Promise<AddCredentialsResult> {
  const person = checkPerson(input.person);
  const configurations = [...new Set(input.configurations)];
  if (configurations.length === 0 || configurations.length > MAX_CONFIGURATIONS || configurations.some((c) => typeof c !== "string" || c === "" || c.length > 256)) {
    throw new WalletClientError(`name 1 to ${MAX_CONFIGURATIONS} credential configurations, e.g. identity_card`);
  }
  const keyCount = input.presentmentKeys ?? 1;
  if (!Number.isInteger(keyCount) || keyCount < 1 || keyCount > MAX_PRESENTMENT_KEYS) {
    throw new WalletClientError(`the number of presentment keys must be 1 to ${MAX_PRESENTMENT_KEYS}`);
  }
  const document = await loadDocument(input.document);
  const options = flowOptions(input);

  // 1. Whom to talk to: refused here, before any session exists, unless the client trusts it.
  const issuer = await trustedIssuer(api, store, input.issuer);
  if (issuer.configurations) {
    const offered = Object.keys(issuer.configurations);
    const unknown = configurations.filter((c) => !offered.includes(c));
    if (unknown.length > 0) {
      throw new WalletClientError(`${issuer.id} does not offer ${unknown.map((c) => clean(c, 64)).join(", ")}: it offers ${offered.join(", ") || "nothing"}`, { issuer: issuer.id });
    }
  }

  // 2. The session and its WSK.
  const flow = await beginSession(api, store, issuer, configurations, keyCount, options, { person, ...(document ? { document } : {}) });
  const { sessionId } = flow;

  // 3. Initiate, with the person's details sealed for the issuer.
  const verificationNonce = await signStatement("nonce", { audience: issuer.id, sessionId }, {}, flow.wsk);
  const payload = await sealClientPayload("verificationData", { type: ITEM_TYPES.personData, id: "person", ...person }, { sessionId }, flow.wsk, issuer.encryptionKey);
  const first = await verificationCall(flow, "/wallet/api/initiate", { credentialConfigurationIds: configurations, verificationNonce, clientEncryptedPayload: [payload] });

  // 4-7.
  const { status, timedOut } = await driveVerification(flow, first);
  return finish(flow, status, timedOut);
}

export interface TransferInput extends FlowOptions {
  /** Presentment keys per credential instance on this device, 1 to 10 (default 1). */
  presentmentKeys?: number;
}

export type TransferResult = AddCredentialsResult & {
  /** The session taken over. */
  from: string;
  /** Its instances, each unlinked at the issuer once this device had its own (only after ISSUED). */
  unlinked: Array<{ instanceId: string; outcome: string; status: string }>;
};

/**
 * A device transfer (docs/wallet-server.md, "Device transfer"): this device, signed in
 * as the same user, takes over another device's session `fromSessionId`. A new session
 * with a new WSK names the old one (Token checks the user's holdings list it, and says so
 * in the WSK attestation); the issuer approves within its device count without asking
 * for the person's details again; this device gets the credentials bound to its own new
 * keys, checked as on arrival; then each of the old session's live instances is unlinked,
 * the action signed by this session's WSK and naming it (the old device's key may be
 * lost with it, and the wallet server alone can sign nothing).
 */
export async function transferCredentials(api: WalletApi, store: KeyStore, fromSessionId: string, input: TransferInput = {}): Promise<TransferResult> {
  if (!sessionIdSchema.safeParse(fromSessionId).success) throw new WalletClientError("a session id is a UUID, as hello wallet list prints it");
  if (await store.getKey(`wsk.${fromSessionId}`)) throw new WalletClientError(`this device holds the session ${fromSessionId}: a transfer moves credentials to another device, signed in there`);
  const keyCount = input.presentmentKeys ?? 1;
  if (!Number.isInteger(keyCount) || keyCount < 1 || keyCount > MAX_PRESENTMENT_KEYS) {
    throw new WalletClientError(`the number of presentment keys must be 1 to ${MAX_PRESENTMENT_KEYS}`);
  }
  const held = (await heldCredentials(api)).filter((h) => h.sessionId === fromSessionId);
  if (held.length === 0) throw new WalletClientError(`the wallet holds no session ${fromSessionId}: hello wallet list shows each credential's session`);
  if (new Set(held.map((h) => h.issuer)).size !== 1) throw new WalletClientError("the wallet server lists that session at more than one issuer; it cannot be transferred");
  const live = held.filter((h) => !TERMINAL_CREDENTIAL_STATUSES.has(h.status));
  if (live.length === 0) throw new WalletClientError(`the session ${fromSessionId} holds no credential that has not ended: nothing to transfer`);
  const configurations = [...new Set(live.map((h) => h.credentialConfigurationId))];
  const options = flowOptions(input);
  const issuer = await trustedIssuer(api, store, held[0]!.issuer);

  const flow = await beginSession(api, store, issuer, configurations, keyCount, options, { transferFrom: fromSessionId });
  const { sessionId } = flow;

  // No details of the person: the issuer knows them from the session taken over.
  const verificationNonce = await signStatement("nonce", { audience: issuer.id, sessionId }, {}, flow.wsk);
  const first = await verificationCall(flow, "/wallet/api/initiate", { credentialConfigurationIds: configurations, verificationNonce });
  const { status, timedOut } = await driveVerification(flow, first);
  const result = await finish(flow, status, timedOut);
  return { ...result, from: fromSessionId, unlinked: result.state === "ISSUED" ? await unlinkTransferred(flow, fromSessionId) : [] };
}

/**
 * A transfer's last step, once its credentials are on this device (at the transfer, or
 * at the resume that finished it): each live instance of the session taken over is
 * unlinked, signed by this session's WSK, which the issuer accepts as its approved
 * transfer's.
 */
async function unlinkTransferred(flow: Flow, fromSessionId: string): Promise<TransferResult["unlinked"]> {
  const live = (await heldCredentials(flow.api)).filter((h) => h.sessionId === fromSessionId && h.issuer === flow.issuer.id && !TERMINAL_CREDENTIAL_STATUSES.has(h.status));
  const unlinked: TransferResult["unlinked"] = [];
  for (const old of live) {
    const authority = await signStatement("action", { audience: flow.issuer.id, sessionId: fromSessionId, credentialInstanceId: old.credentialInstanceId }, { action: "UNLINK" }, flow.wsk);
    const answer = await call(flow.api, "POST", "/wallet/api/credential/manage", manageAnswerSchema, {
      issuer: flow.issuer.id, sessionId: fromSessionId, credentialInstanceId: old.credentialInstanceId, action: "UNLINK", reason: "transferred to another device", authority,
      viaSessionId: flow.sessionId,
    });
    unlinked.push({ instanceId: old.credentialInstanceId, outcome: clean(answer.outcome, 40), status: clean(answer.status, 40) });
  }
  return unlinked;
}

/**
 * A new S2S session at `issuer` with a new WSK (add, and a transfer's session taking over
 * `transferFrom`): the WSK and the session's index kept on this device, and its flow.
 */
async function beginSession(
  api: WalletApi, store: KeyStore, issuer: TrustedIssuer, configurations: string[], keyCount: number, options: ReturnType<typeof flowOptions>,
  extra: { person?: PersonInput; document?: LoadedDocument; transferFrom?: string },
): Promise<Flow> {
  const wsk = await es256KeyPair();
  const session = await call(api, "POST", "/wallet/api/sessions", sessionAnswerSchema, {
    issuer: issuer.id, wsk: { ...wsk.publicJwk, alg: "ES256" }, ...(extra.transferFrom !== undefined ? { transferFrom: extra.transferFrom } : {}),
  });
  if (session.issuer !== undefined && session.issuer !== issuer.id) throw new WalletClientError("the wallet server made the session for another issuer; nothing more was sent");
  const sessionId = session.sessionId;
  await store.putKey(`wsk.${sessionId}`, wsk.privateJwk);
  const index: SessionIndex = {
    issuer: issuer.id, sessionId, configurations, presentmentKeys: keyCount, createdAt: Math.floor(Date.now() / 1000), instances: [],
    ...(extra.transferFrom !== undefined ? { transferFrom: extra.transferFrom } : {}),
  };
  await store.putData(indexName(sessionId), index);
  options.progress(`Session ${sessionId} with ${issuer.id}${extra.transferFrom !== undefined ? `, taking over ${extra.transferFrom}` : ""}.`);
  return {
    api, store, issuer, sessionId, wsk: wsk.privateJwk, index, answerRejected: false, ...options,
    ...(extra.person ? { person: extra.person } : {}), ...(extra.document ? { document: extra.document } : {}),
  };
}

/** Takes up a session `add` left PENDING (or REJECTED, with corrected details): its status now, then on as add goes. */
export async function resumeCredentials(api: WalletApi, store: KeyStore, sessionId: string, input: ResumeInput = {}): Promise<AddCredentialsResult & { unlinked?: TransferResult["unlinked"] }> {
  if (!sessionIdSchema.safeParse(sessionId).success) throw new WalletClientError("a session id is a UUID, as hello wallet add printed it");
  const index = await store.getData(indexName(sessionId), sessionIndexSchema);
  const wsk = await store.getKey(`wsk.${sessionId}`);
  if (!index || !wsk) throw new WalletClientError(`this wallet has no session ${sessionId}: hello wallet add starts one`);
  if (index.verificationId === undefined) throw new WalletClientError(`the session ${sessionId} never reached its issuer: hello wallet add starts a new one`);
  const complete = index.instances.length > 0 && index.instances.every((i) => i.confirmed);
  if (complete && index.transferFrom === undefined) {
    throw new WalletClientError(`the session ${sessionId} is complete: hello wallet list shows its credentials`);
  }
  const person = input.person ? checkPerson(input.person) : undefined;
  const document = await loadDocument(input.document);
  const issuer = await trustedIssuer(api, store, index.issuer);
  const flow: Flow = {
    api,
    store,
    issuer,
    sessionId,
    wsk,
    index,
    ...(person ? { person } : {}),
    ...(document ? { document } : {}),
    answerRejected: person !== undefined,
    ...flowOptions(input),
  };
  // A transfer whose credentials are all here, stopped before (or while) the old session's
  // instances were unlinked: only that step is left.
  if (complete) {
    return { state: "ISSUED", issuer: issuer.id, sessionId, verificationId: index.verificationId, instances: [], unlinked: await unlinkTransferred(flow, index.transferFrom!) };
  }
  const current = await verificationCall(flow, "/wallet/api/status", { verificationId: index.verificationId });
  const { status, timedOut } = await driveVerification(flow, current);
  const result = await finish(flow, status, timedOut);
  // A transfer that was still being issued: its last step now.
  if (result.state === "ISSUED" && index.transferFrom !== undefined) return { ...result, unlinked: await unlinkTransferred(flow, index.transferFrom) };
  return result;
}

// --- reading what the wallet holds ----------------------------------------------------

export interface ListedCredential {
  issuer: string;
  sessionId: string;
  instanceId: string;
  configuration: string;
  status: string;
  version?: string;
  /** The issuer's display name of the type, if it gave one. */
  display?: string;
  vct?: string;
  /** Names only: list never shows a value. */
  claimNames: string[];
  /** Credentials held (one per presentment key). */
  count: number;
  expiresAt?: number;
  /** Whether this device has the keys that open it. */
  onThisDevice: boolean;
  /** Whether it was opened and checked against the trusted issuer. */
  verified: boolean;
  /** Why it was not, when it was not. */
  note?: string;
}

interface Opened {
  held: Held;
  issuer: TrustedIssuer;
  checked: CheckedCredential[];
  holders: JWK[];
}

type IssuerCache = Map<string, Promise<TrustedIssuer>>;

const trusted = (api: WalletApi, store: KeyStore, cache: IssuerCache, id: string) => {
  let found = cache.get(id);
  if (!found) cache.set(id, (found = trustedIssuer(api, store, id)));
  return found;
};

/** Decrypts a held credential with this device's WEK and checks it against the trusted issuer and this instance's keys. */
async function openHeld(api: WalletApi, store: KeyStore, held: Held, cache: IssuerCache): Promise<Opened> {
  if (!held.credentials) throw new WalletClientError(`the credential ${held.credentialInstanceId} has no credentials yet (status ${clean(held.status, 40)})`);
  const wek = await store.getKey(wekName(held.credentialInstanceId));
  const holders = (await presentmentKeys(store, held.credentialInstanceId)).map(publicOf);
  if (!wek || holders.length === 0) {
    throw new WalletClientError(`the keys of the credential ${held.credentialInstanceId} are not on this device: it was added from another one`);
  }
  const issuer = await trusted(api, store, cache, held.issuer);
  let credentials: string[];
  try {
    credentials = await openCredentials(held.credentials, wek);
  } catch {
    throw new WalletClientError(`the credential ${held.credentialInstanceId} cannot be opened with this device's key for it`);
  }
  const checked = await checkCredentials(issuer, held.credentialConfigurationId, credentials, holders);
  return { held, issuer, checked, holders };
}

async function heldCredentials(api: WalletApi): Promise<Held[]> {
  return (await call(api, "GET", "/wallet/api/credentials", heldListSchema)).credentials;
}

async function findHeld(api: WalletApi, instanceId: string): Promise<Held> {
  const held = (await heldCredentials(api)).filter((h) => h.credentialInstanceId === instanceId);
  if (held.length === 0) throw new WalletClientError(`the wallet holds no credential ${clean(instanceId, 100)}: hello wallet list shows their ids`);
  if (held.length > 1) throw new WalletClientError(`the wallet server lists the credential ${clean(instanceId, 100)} more than once; it cannot be told apart`);
  return held[0]!;
}

const displayName = (metadata: Record<string, unknown> | undefined): string | undefined => {
  const display = metadata?.display;
  const first = Array.isArray(display) ? (display[0] as { name?: unknown } | undefined) : undefined;
  return typeof first?.name === "string" ? clean(first.name, 100) : undefined;
};

/** What the wallet holds: each credential's issuer, type, status, version and claim names (never a value). */
export async function listCredentials(api: WalletApi, store: KeyStore): Promise<ListedCredential[]> {
  const cache: IssuerCache = new Map();
  const out: ListedCredential[] = [];
  for (const held of await heldCredentials(api)) {
    const display = displayName(held.credentialMetadata);
    const entry: ListedCredential = {
      issuer: clean(held.issuer, 200),
      sessionId: clean(held.sessionId, 100),
      instanceId: clean(held.credentialInstanceId, 256),
      configuration: clean(held.credentialConfigurationId, 100),
      status: clean(held.status, 40),
      ...(held.credentialVersion !== undefined ? { version: clean(held.credentialVersion, 40) } : {}),
      ...(display ? { display } : {}),
      claimNames: [],
      count: 0,
      onThisDevice: (await store.getKey(wekName(held.credentialInstanceId))) !== undefined,
      verified: false,
    };
    if (!held.credentials) entry.note = "no credentials yet";
    else if (!entry.onThisDevice) entry.note = "its keys are on another device";
    else {
      try {
        const { checked } = await openHeld(api, store, held, cache);
        const expiries = checked.map((c) => c.expiresAt).filter((e): e is number => e !== undefined);
        Object.assign(entry, {
          vct: checked[0]?.vct,
          claimNames: [...new Set(checked.flatMap((c) => c.claimNames))],
          count: checked.length,
          verified: true,
          ...(expiries.length > 0 ? { expiresAt: Math.min(...expiries) } : {}),
        });
      } catch (error) {
        if (!(error instanceof Error)) throw error;
        entry.note = clean(error.message);
      }
    }
    out.push(entry);
  }
  return out;
}

export interface ShownCredential {
  issuer: string;
  instanceId: string;
  configuration: string;
  status: string;
  version?: string;
  vct: string;
  issuedAt?: number;
  expiresAt?: number;
  /** The person's claims, disclosed here to the user only. */
  claims: Record<string, unknown>;
  /** Presentment keys on this device (present --key 0..n-1). */
  keys: number;
}

/** The claims of the disclosures of a checked credential (inspectSdJwtVc made sure the signed JWT references each). */
function disclosedClaims(credential: string): Record<string, unknown> {
  const claims: Record<string, unknown> = {};
  for (const part of credential.split("~").slice(1, -1)) {
    const decoded = JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as unknown;
    if (Array.isArray(decoded) && decoded.length === 3 && typeof decoded[1] === "string") claims[decoded[1]] = decoded[2];
  }
  return claims;
}

/** One credential, opened and checked, with its claims' values: for the user's own eyes. */
export async function showCredential(api: WalletApi, store: KeyStore, instanceId: string): Promise<ShownCredential> {
  const { held, issuer, checked, holders } = await openHeld(api, store, await findHeld(api, instanceId), new Map());
  const first = checked[0];
  if (!first) throw new WalletClientError(`the credential ${clean(instanceId, 100)} holds no credentials`);
  return {
    issuer: issuer.id,
    instanceId: held.credentialInstanceId,
    configuration: held.credentialConfigurationId,
    status: clean(held.status, 40),
    ...(held.credentialVersion !== undefined ? { version: clean(held.credentialVersion, 40) } : {}),
    vct: first.vct,
    ...(first.issuedAt !== undefined ? { issuedAt: first.issuedAt } : {}),
    ...(first.expiresAt !== undefined ? { expiresAt: first.expiresAt } : {}),
    claims: disclosedClaims(first.credential),
    keys: holders.length,
  };
}

// --- the user's lifecycle actions -----------------------------------------------------

/**
 * This device's session of a credential the server lists: its index and WSK, under the
 * issuer and session this device started. A statement's audience is that issuer, never
 * whatever the server lists now.
 */
async function deviceSession(store: KeyStore, held: Held, verb: string): Promise<{ index: SessionIndex; wsk: JWK }> {
  const index = await store.getData(indexName(held.sessionId), sessionIndexSchema);
  const wsk = await store.getKey(`wsk.${held.sessionId}`);
  if (!index || !wsk) {
    throw new WalletClientError(`the credential ${clean(held.credentialInstanceId, 100)} was added from another device: only that device can ${verb} it`);
  }
  if (index.issuer !== held.issuer || index.sessionId !== held.sessionId) {
    throw new WalletClientError("the wallet server lists this credential under another issuer or session than this device started: nothing was sent");
  }
  return { index, wsk };
}

/** A credential's WEK and presentment keys off this device (it ended, or was deleted). */
async function removeInstanceKeys(store: KeyStore, instanceId: string): Promise<void> {
  await store.deleteKey(wekName(instanceId));
  for (const prefix of [pkPrefix(instanceId), stagedPrefix(instanceId)]) for (const name of await store.listKeys(prefix)) await store.deleteKey(name);
}

export type ManageAction = "SUSPEND" | "RESUME" | "UNLINK";

export interface ManageResult {
  instanceId: string;
  action: ManageAction;
  /** The issuer's outcome: COMPLETED, SCHEDULED, FAILED or NO_CHANGE. */
  outcome: string;
  /** The instance's status now, as the wallet server recorded the issuer's answer. */
  status: string;
  previousStatus?: string;
  failureReason?: string;
  /** Whether this device's keys of the credential were removed (an UNLINKED credential keeps none). */
  keysRemoved: boolean;
}

const manageAnswerSchema = z.looseObject({
  outcome: z.enum(["COMPLETED", "SCHEDULED", "FAILED", "NO_CHANGE"]),
  status: z.string().min(1).max(40),
  previousStatus: z.string().max(40).optional(),
  failureReason: z.string().max(256).optional(),
});

/**
 * Suspends, resumes or unlinks a credential with the user's own authority: this device
 * signs a `credential-action+jwt` with the session's WSK for this issuer, session,
 * instance and action (single use, 10 minutes at most); the wallet server carries it to
 * the issuer, which checks it. So only the device that added a credential can act on it.
 * Once an unlink is done, the credential's keys on this device are removed.
 */
export async function manageCredential(api: WalletApi, store: KeyStore, instanceId: string, action: ManageAction, reason?: string): Promise<ManageResult> {
  if (!["SUSPEND", "RESUME", "UNLINK"].includes(action)) throw new WalletClientError("the action is SUSPEND, RESUME or UNLINK");
  if (reason !== undefined && (reason.length === 0 || reason.length > 256)) throw new WalletClientError("a --reason is 1 to 256 characters");
  const held = await findHeld(api, instanceId);
  const { index, wsk } = await deviceSession(store, held, action.toLowerCase());
  const authority = await signStatement("action", { audience: index.issuer, sessionId: held.sessionId, credentialInstanceId: held.credentialInstanceId }, { action }, wsk);
  const answer = await call(api, "POST", "/wallet/api/credential/manage", manageAnswerSchema, {
    issuer: index.issuer,
    sessionId: held.sessionId,
    credentialInstanceId: held.credentialInstanceId,
    action,
    ...(reason !== undefined ? { reason } : {}),
    authority,
  });
  // Keys go only when the user asked to unlink and it is done: no answer to a suspend or
  // resume, whatever it says, removes anything from this device.
  let keysRemoved = false;
  if (action === "UNLINK" && answer.status === "UNLINKED") {
    await removeInstanceKeys(store, held.credentialInstanceId);
    keysRemoved = true;
  }
  return {
    instanceId: held.credentialInstanceId,
    action,
    outcome: answer.outcome,
    status: clean(answer.status, 40),
    ...(answer.previousStatus !== undefined ? { previousStatus: clean(answer.previousStatus, 40) } : {}),
    ...(answer.failureReason !== undefined ? { failureReason: clean(answer.failureReason, 256) } : {}),
    keysRemoved,
  };
}

export interface CredentialStatusResult {
  instanceId: string;
  /** The status the wallet server's record now holds (the issuer's, unless the record had ended). */
  status: string;
  issuerStatus: string;
  issuerVersion: string;
  version?: string;
  /** The issuer holds a newer version than the one this wallet was given. */
  updateAvailable: boolean;
  lastStatusChangeTime?: string;
  lastStatusChangeReason?: string;
  /** When this device's credentials expire, if that is within EXPIRING_WINDOW_SECONDS (the issuer was told: CREDENTIAL_EXPIRING). */
  expiringAt?: number;
}

/** How soon an expiry is "soon": the issuer is told (CREDENTIAL_EXPIRING) within it. */
export const EXPIRING_WINDOW_SECONDS = 30 * 24 * 60 * 60;

const statusAnswerSchema = z.looseObject({
  status: z.string().min(1).max(40),
  issuerStatus: z.string().min(1).max(40),
  issuerVersion: z.string().min(1).max(256),
  credentialVersion: z.string().max(256).optional(),
  updateAvailable: z.boolean(),
  lastStatusChangeTime: z.string().max(64).optional(),
  lastStatusChangeReason: z.string().max(256).optional(),
});

/**
 * Asks the issuer, through the wallet server, for its view of a credential; the wallet
 * server's record takes it. With the device's `store`, the credentials held here are
 * opened to read their expiry: one within EXPIRING_WINDOW_SECONDS is said to the wallet
 * server (`expiringAt`), which tells the issuer CREDENTIAL_EXPIRING (it cannot read an
 * expiry itself).
 */
export async function credentialStatus(api: WalletApi, instanceId: string, store?: KeyStore): Promise<CredentialStatusResult> {
  const held = await findHeld(api, instanceId);
  let expiringAt: number | undefined;
  if (store && held.credentials && !TERMINAL_CREDENTIAL_STATUSES.has(held.status) && (await store.getKey(wekName(held.credentialInstanceId)))) {
    const { checked } = await openHeld(api, store, held, new Map());
    const earliest = Math.min(...checked.map((c) => c.expiresAt ?? Number.POSITIVE_INFINITY));
    if (Number.isFinite(earliest) && earliest - Math.floor(Date.now() / 1000) <= EXPIRING_WINDOW_SECONDS) expiringAt = earliest;
  }
  const answer = await call(api, "POST", "/wallet/api/credential/status", statusAnswerSchema, {
    issuer: held.issuer,
    sessionId: held.sessionId,
    credentialInstanceId: held.credentialInstanceId,
    ...(expiringAt !== undefined ? { expiringAt } : {}),
  });
  return {
    instanceId: held.credentialInstanceId,
    status: clean(answer.status, 40),
    issuerStatus: clean(answer.issuerStatus, 40),
    issuerVersion: clean(answer.issuerVersion, 40),
    ...(answer.credentialVersion !== undefined ? { version: clean(answer.credentialVersion, 40) } : {}),
    updateAvailable: answer.updateAvailable,
    ...(answer.lastStatusChangeTime !== undefined ? { lastStatusChangeTime: clean(answer.lastStatusChangeTime, 64) } : {}),
    ...(answer.lastStatusChangeReason !== undefined ? { lastStatusChangeReason: clean(answer.lastStatusChangeReason, 256) } : {}),
    ...(expiringAt !== undefined ? { expiringAt } : {}),
  };
}

export interface RefreshResult {
  instanceId: string;
  /** READY: the issuer's current version is on this device; PENDING: the issuer is still making it. */
  state: "READY" | "PENDING";
  previousVersion?: string;
  version?: string;
  count?: number;
  /** The display name in the issuer's current display data (DISPLAY_DATA_UPDATED changes it). */
  displayName?: string;
  /** With `newKeys`: the credentials are bound to new presentment keys, the old ones gone from this device (KEY_ROTATED). */
  keysRotated?: boolean;
}

/**
 * Fetches the issuer's current version of a credential (after CREDENTIAL_UPDATE_AVAILABLE,
 * which `status` shows as a newer version): a get with a fresh WEK statement for this
 * device's WEK, and no presentment keys (the issuer keeps those from the first get). The
 * new credentials are opened and checked as on arrival, then confirmed (the wallet server
 * tells the issuer UPDATE_SUCCESS). The display data is refreshed first, with the same
 * statement (/credential/metadata, after DISPLAY_DATA_UPDATED): the wallet server cannot
 * ask for it alone, as the draft wants a WEK statement only this device signs.
 *
 * With `newKeys` (1-10), the device rotates its presentment keys: the get carries the new
 * keys, signed for this instance as on the first get; the credentials must come bound to
 * them; the old keys are removed only then, and the confirm tells the issuer KEY_ROTATED.
 */
export async function refreshCredential(api: WalletApi, store: KeyStore, instanceId: string, options: { newKeys?: number } = {}): Promise<RefreshResult> {
  if (options.newKeys !== undefined && (!Number.isInteger(options.newKeys) || options.newKeys < 1 || options.newKeys > MAX_PRESENTMENT_KEYS)) {
    throw new WalletClientError(`the number of presentment keys must be 1 to ${MAX_PRESENTMENT_KEYS}`);
  }
  const held = await findHeld(api, instanceId);
  const { index, wsk } = await deviceSession(store, held, "refresh");
  const wek = await store.getKey(wekName(held.credentialInstanceId));
  const holders = (await presentmentKeys(store, held.credentialInstanceId)).map(publicOf);
  if (!wek || holders.length === 0) {
    throw new WalletClientError(`the keys of the credential ${clean(instanceId, 100)} are not on this device: only the device that added it can refresh it`);
  }
  const issuer = await trustedIssuer(api, store, index.issuer);
  const base = { issuer: index.issuer, sessionId: held.sessionId, credentialInstanceId: held.credentialInstanceId };
  const walletEncryptionKey = await walletEncryptionKeyData(await publicHpkeJwk(wek), index.issuer, held.sessionId, wsk);
  let display: { displayName?: string } = {};
  if (held.credentials) {
    const metadata = await call(api, "POST", "/wallet/api/credential/metadata", metadataAnswerSchema, { ...base, walletEncryptionKey });
    const name = displayName(metadata.credentialMetadata);
    display = name !== undefined ? { displayName: name } : {};
  }
  // A rotation's new keys are kept (staged) before the issuer sees them: if it answers
  // later (202), the next refresh finds them there and waits for credentials bound to them.
  const id = held.credentialInstanceId;
  let staged = (await presentmentKeys(store, id, stagedPrefix(id))).map(publicOf);
  let sendKeys = false;
  if (options.newKeys !== undefined) {
    for (const name of await store.listKeys(stagedPrefix(id))) await store.deleteKey(name);
    staged = [];
    for (let i = 0; i < options.newKeys; i++) {
      const pair = await es256KeyPair();
      await store.putKey(`${stagedPrefix(id)}${i}`, pair.privateJwk);
      staged.push(pair.publicJwk);
    }
    sendKeys = true;
  }
  const rotating = staged.length > 0;
  const answer = await call(api, "POST", "/wallet/api/credential/get", credentialAnswerSchema, {
    ...base,
    walletEncryptionKey,
    ...(sendKeys
      ? { clientEncryptedData: await sealClientPayload("presentmentKeys", { presentmentKeys: staged }, { sessionId: held.sessionId, credentialInstanceId: id }, wsk, issuer.encryptionKey) }
      : {}),
  });
  const previous = held.credentialVersion !== undefined ? { previousVersion: clean(held.credentialVersion, 40) } : {};
  if (answer.status !== "READY") return { instanceId: id, state: "PENDING", ...previous, ...display };
  const checked = await checkedOrRejected(api, base, () => openAndCheck(issuer, held.credentialConfigurationId, answer.credentials, wek, rotating ? staged : holders));
  if (rotating) {
    // The credentials are bound to the new keys: they replace the old ones.
    const fresh = await Promise.all((await store.listKeys(stagedPrefix(id))).sort().map(async (name) => [name, (await store.getKey(name))!] as const));
    for (const name of await store.listKeys(pkPrefix(id))) await store.deleteKey(name);
    for (const [name, jwk] of fresh) await store.putKey(`${pkPrefix(id)}${name.slice(stagedPrefix(id).length)}`, jwk);
    for (const [name] of fresh) await store.deleteKey(name);
  }
  await call(api, "POST", "/wallet/api/credential/confirm", confirmAnswerSchema, { ...base, ...(rotating ? { keysRotated: true } : {}) });
  return {
    instanceId: id, state: "READY", ...previous, version: clean(answer.credentialVersion, 40), count: checked.length, ...display,
    ...(rotating ? { keysRotated: true } : {}),
  };
}

/**
 * Deletes a credential from the wallet: unlinked at the issuer first if it has not ended
 * (signed by this device, as unlink is), then its record deleted at the wallet server and
 * its keys here removed. Only the device that added it can.
 */
export async function deleteCredential(api: WalletApi, store: KeyStore, instanceId: string, reason?: string): Promise<{ instanceId: string; unlinked: boolean }> {
  const held = await findHeld(api, instanceId);
  let unlinked = false;
  if (!TERMINAL_CREDENTIAL_STATUSES.has(held.status)) {
    const result = await manageCredential(api, store, held.credentialInstanceId, "UNLINK", reason);
    if (!TERMINAL_CREDENTIAL_STATUSES.has(result.status)) {
      throw new WalletClientError(`the issuer did not unlink ${clean(instanceId, 100)} (${result.outcome}${result.failureReason ? `: ${result.failureReason}` : ""}), so it stays in the wallet`);
    }
    unlinked = true;
  }
  await call(api, "POST", "/wallet/api/credential/delete", z.looseObject({ deleted: z.literal(true) }), {
    issuer: held.issuer,
    sessionId: held.sessionId,
    credentialInstanceId: held.credentialInstanceId,
  });
  await removeInstanceKeys(store, held.credentialInstanceId);
  return { instanceId: held.credentialInstanceId, unlinked };
}

export interface PresentInput {
  /** The claim names to disclose. */
  claims: string[];
  /** The verifier's audience and nonce (the KB-JWT's aud and nonce). */
  audience: string;
  nonce: string;
  /** Which presentment key (and so which credential) to use; default 0. */
  key?: number;
}

/** A presentation of `claims` from one credential, bound to the verifier's audience and nonce with presentment key `key`. */
export async function presentCredential(api: WalletApi, store: KeyStore, instanceId: string, input: PresentInput): Promise<string> {
  const wanted = [...new Set(input.claims)];
  if (wanted.length === 0 || wanted.some((c) => typeof c !== "string" || c === "")) throw new WalletClientError("name the claims to disclose, e.g. --claims family_name,age_over_18");
  if (typeof input.audience !== "string" || input.audience === "") throw new WalletClientError("give the verifier's --audience");
  if (typeof input.nonce !== "string" || input.nonce === "") throw new WalletClientError("give the verifier's --nonce");
  const keyIndex = input.key ?? 0;
  if (!Number.isInteger(keyIndex) || keyIndex < 0) throw new WalletClientError("--key is a presentment key's number, from 0");

  const { checked, holders, issuer } = await openHeld(api, store, await findHeld(api, instanceId), new Map());
  if (keyIndex >= holders.length) throw new WalletClientError(`this credential has ${holders.length} presentment key${holders.length === 1 ? "" : "s"} on this device: use --key 0 to ${holders.length - 1}`);
  const holderPrivate = (await store.getKey(pkName(instanceId, keyIndex)))!;
  const holderThumbprint = await thumbprint(holders[keyIndex]!);
  const credential = checked.find((c) => c.holderThumbprint === holderThumbprint);
  if (!credential) throw new WalletClientError(`no credential is bound to presentment key ${keyIndex}`);
  const missing = wanted.filter((c) => !credential.claimNames.includes(c));
  if (missing.length > 0) {
    throw new WalletClientError(`the credential has no claim ${missing.map((c) => clean(c, 64)).join(", ")}; it can disclose ${credential.claimNames.join(", ")}`);
  }
  // What a verifier will see in the issuer's status list, checked first: a revoked or
  // suspended credential is not presented, nor one whose status cannot be established
  // (a list that does not verify may be an attacker's).
  if (credential.status) {
    let listed;
    try {
      listed = await fetchCredentialStatus(credential.status, { issuer: issuer.id, issuerKeys: issuer.jwks, now: Math.floor(Date.now() / 1000) });
    } catch (error) {
      if (error instanceof StatusListError) throw new WalletClientError(`the credential's status cannot be checked, so it is not presented: ${error.message}`);
      throw error;
    }
    if (listed !== "VALID") {
      throw new WalletClientError(`the credential is ${listed} in its issuer's status list (${clean(credential.status.uri, 200)}), so a verifier will refuse it; it is not presented`);
    }
  }
  try {
    return await presentSdJwtVc({ credential: credential.credential, holderPrivateKey: holderPrivate, disclose: wanted, audience: input.audience, nonce: input.nonce });
  } catch (error) {
    if (error instanceof SdJwtVcError) throw new WalletClientError(`the presentation cannot be made: ${error.message}`);
    throw error;
  }
}
