// The S2S draft's messages (OpenID4VCI server-to-server, editor's draft -01 at 0b648a5),
// as zod schemas both sides parse with. Objects are loose: unknown members, and the
// `extensions` every object may carry, are kept and ignored (§Extensions), never a
// reason to refuse. Where the draft is inconsistent, docs/wallet-server.md says what we
// chose; the choices are marked here too.

import { z } from "zod";

export const VERIFICATION_STATUSES = ["PENDING", "ADDITIONAL_INFO_REQUIRED", "REJECTED", "APPROVED", "DENIED", "EXPIRED"] as const;
export type VerificationStatusValue = (typeof VERIFICATION_STATUSES)[number];
/** Statuses no later message may move a verification out of. */
export const TERMINAL_STATUSES: ReadonlySet<VerificationStatusValue> = new Set(["APPROVED", "DENIED", "EXPIRED"]);

export const ORIGINS = ["WALLET_CLIENT", "WALLET_SERVER", "ISSUER"] as const;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Identifiers are opaque (§Identifier Model); bounded so a peer cannot make us store megabytes. */
const id = z.string().min(1).max(256);
const extensions = z.record(z.string(), z.unknown()).optional();

export const sessionIdSchema = z.string().regex(UUID, "sessionId must be a UUID");

/** A public JWK as it travels in KeyData: `alg` is required by the draft. */
export const jwkSchema = z.looseObject({ kty: z.string(), alg: z.string().optional(), kid: z.string().optional() });

export const keyDataSchema = z.looseObject({
  keyType: z.string().min(1).max(256),
  // The draft's prose calls it "publicKey"; its schema says client_public_key. We send and read the schema's name.
  client_public_key: jwkSchema,
  attestation: z.unknown().optional(),
  purpose: z.string().max(256).optional(),
  extensions,
});
export type KeyData = z.infer<typeof keyDataSchema>;

/** §Content Reference, profiled: it stands in place of `jwe`. `contentDigest` = base64url SHA-256 of the compact JWE. */
export const contentReferenceFields = {
  downloadUrl: z.url({ protocol: /^https$/ }).max(2048).optional(),
  contentDigest: z.string().regex(/^[A-Za-z0-9_-]{43}$/, "contentDigest must be the base64url SHA-256 of the JWE").optional(),
  contentSize: z.number().int().nonnegative().optional(),
  expiresAt: z.string().optional(),
};

export const jweEncryptedPayloadSchema = z
  .looseObject({
    jwe: z.string().min(1).max(4 * 1024 * 1024).optional(),
    origin: z.enum(ORIGINS),
    purpose: z.string().max(256).optional(),
    extensions,
    ...contentReferenceFields,
  })
  .refine(
    (p) =>
      p.jwe !== undefined
        ? p.downloadUrl === undefined && p.contentDigest === undefined && p.contentSize === undefined && p.expiresAt === undefined
        : p.downloadUrl !== undefined && p.contentDigest !== undefined,
    { message: "a JweEncryptedPayload carries either jwe, or a content reference (downloadUrl with contentDigest), never both" },
  );
export type JweEncryptedPayload = z.infer<typeof jweEncryptedPayloadSchema>;

export const verificationDataItemSchema = z.looseObject({ type: z.string().min(1).max(256), id: id });

export const verificationDataResponseSchema = z.looseObject({
  clientEncryptedPayload: z.array(jweEncryptedPayloadSchema).max(32).optional(),
  serverVerificationDataItem: z.array(verificationDataItemSchema).max(32).optional(),
  additionalAssessments: z.array(z.unknown()).max(32).optional(),
  extensions,
});
export type VerificationDataResponse = z.infer<typeof verificationDataResponseSchema>;

export const verificationDataRequestSchema = z.looseObject({
  verificationDataItems: z.array(z.looseObject({ type: z.string(), id, required: z.boolean().optional() })).min(1),
  deadline: z.string().optional(),
  maxAttempts: z.number().int().positive().optional(),
  extensions,
});
export type VerificationDataRequest = z.infer<typeof verificationDataRequestSchema>;

export const verificationStatusSchema = z
  .looseObject({
    sessionId: sessionIdSchema,
    verificationId: id,
    status: z.enum(VERIFICATION_STATUSES),
    credentialConfigurationIds: z.array(id).optional(),
    authorizedDeviceCount: z.number().int().positive().optional(),
    reasonCode: z.string().max(256).optional(),
    rejectedDetails: z.unknown().optional(),
    deniedMessage: z.string().max(2048).optional(),
    verificationDataRequest: verificationDataRequestSchema.optional(),
    extensions,
  })
  .superRefine((s, ctx) => {
    const need = (field: string, present: boolean) => {
      if (!present) ctx.addIssue({ code: "custom", path: [field], message: `${s.status} requires ${field}` });
    };
    if (s.status === "APPROVED") need("credentialConfigurationIds", (s.credentialConfigurationIds?.length ?? 0) > 0);
    if (s.status === "REJECTED") need("reasonCode", s.reasonCode !== undefined);
    if (s.status === "DENIED") {
      need("reasonCode", s.reasonCode !== undefined);
      need("deniedMessage", s.deniedMessage !== undefined);
    }
    if (s.status === "ADDITIONAL_INFO_REQUIRED") need("verificationDataRequest", s.verificationDataRequest !== undefined);
  });
export type VerificationStatus = z.infer<typeof verificationStatusSchema>;

export const initiateRequestSchema = z.looseObject({
  sessionId: sessionIdSchema,
  credentialConfigurationIds: z.array(id).min(1).max(16),
  walletSigningKeyData: keyDataSchema,
  verificationNonce: z.string().min(1).max(8192),
  verificationData: verificationDataResponseSchema.optional(),
  supportedVerificationTypes: z.array(z.string()).optional(),
  requestedDeviceCount: z.number().int().min(1).max(16).optional(),
  locale: z.string().max(35).optional(),
  extensions,
});
export type InitiateRequest = z.infer<typeof initiateRequestSchema>;

export const supplementRequestSchema = z.looseObject({
  sessionId: sessionIdSchema,
  verificationId: id,
  // The draft names this field differently from initiate's `verificationData`; we follow it.
  verificationDataPayload: verificationDataResponseSchema,
  extensions,
});
export type SupplementRequest = z.infer<typeof supplementRequestSchema>;

export const verificationRefSchema = z.looseObject({ sessionId: sessionIdSchema, verificationId: id, extensions });
export type VerificationRef = z.infer<typeof verificationRefSchema>;

export const cancelRequestSchema = z.looseObject({
  sessionId: sessionIdSchema,
  verificationId: id,
  reason: z.string().min(1).max(256),
  extensions,
});

export const credentialInstancesSchema = z.array(z.looseObject({ credentialConfigurationId: id, credentialInstanceIds: z.array(id).min(1) }));
/**
 * The provision answer. The draft's example spells the member `CredentialInstances`;
 * we write `credentialInstances` like every other member and read either.
 */
export const provisionResponseSchema = z
  .looseObject({ credentialInstances: credentialInstancesSchema.optional(), CredentialInstances: credentialInstancesSchema.optional(), extensions })
  .transform((r, ctx) => {
    const instances = r.credentialInstances ?? r.CredentialInstances;
    if (!instances) {
      ctx.addIssue({ code: "custom", path: ["credentialInstances"], message: "credentialInstances is required" });
      return z.NEVER;
    }
    const { CredentialInstances: _capitalised, ...rest } = r;
    return { ...rest, credentialInstances: instances };
  });
export type ProvisionResponse = z.infer<typeof provisionResponseSchema>;

export const credentialGetRequestSchema = z.looseObject({
  sessionId: sessionIdSchema,
  credentialInstanceId: id,
  reason: z.string().min(1).max(256),
  walletEncryptionKey: keyDataSchema,
  clientEncryptedData: jweEncryptedPayloadSchema.optional(),
  currentCredentialMetadataVersion: z.string().max(256).optional(),
  extensions,
});
export type CredentialGetRequest = z.infer<typeof credentialGetRequestSchema>;

export const credentialGetResponseSchema = z.looseObject({
  credentialVersion: z.string().min(1).max(256),
  credentials: jweEncryptedPayloadSchema,
  credentialMetadata: z.record(z.string(), z.unknown()).optional(),
  extensions,
});
export type CredentialGetResponse = z.infer<typeof credentialGetResponseSchema>;

/** 202 from an asynchronous get (docs/wallet-server.md): `{ "extensions": { "status": "PENDING" } }` and Retry-After. */
export const credentialPendingSchema = z.looseObject({ extensions: z.looseObject({ status: z.literal("PENDING") }) });

export const credentialMetadataRequestSchema = z.looseObject({
  sessionId: sessionIdSchema,
  credentialInstanceId: id,
  walletEncryptionKey: keyDataSchema,
  credentialMetadataVersion: z.string().max(256).optional(),
  extensions,
});
export const credentialMetadataResponseSchema = z.looseObject({
  credentialMetadata: z.record(z.string(), z.unknown()).optional(),
  credentialVersion: z.string().optional(),
  extensions,
});

export const EVENT_TYPES = [
  "PROVISIONING_SUCCESS",
  "PROVISIONING_FAILURE",
  "LIFECYCLE_SUCCESS",
  "LIFECYCLE_FAILURE",
  "UPDATE_SUCCESS",
  "UPDATE_FAILURE",
  "UPDATE_REMINDER",
  "CREDENTIAL_EXPIRING",
  "KEY_ROTATED",
  "CREDENTIAL_READY",
  "CREDENTIAL_UPDATE_AVAILABLE",
  "DISPLAY_DATA_UPDATED",
] as const;

export const eventNotifySchema = z.looseObject({
  sessionId: sessionIdSchema,
  credentialInstanceId: id,
  eventType: z.enum(EVENT_TYPES),
  triggeringRequestId: z.string().max(64).optional(),
  eventTimestamp: z.string().min(1).max(64),
  eventDetails: z.record(z.string(), z.unknown()).optional(),
  extensions,
});
export type EventNotify = z.infer<typeof eventNotifySchema>;

export const CREDENTIAL_STATUSES = ["ACTIVE", "SUSPENDED_ISSUER", "SUSPENDED_WALLET", "UNLINKED", "IN_PROCESS", "CANCELLED", "UNKNOWN"] as const;
export const MANAGE_ACTIONS = ["SUSPEND", "RESUME", "UNLINK"] as const;
export const MANAGE_OUTCOMES = ["COMPLETED", "SCHEDULED", "FAILED", "NO_CHANGE"] as const;
/**
 * Our profile's carrier of the user's authority for a lifecycle action (docs/wallet-server.md):
 * the client's `credential-action+jwt`, in the request's extensions (an issuer that does
 * not know it ignores it, as the draft asks of unknown extensions).
 */
export const CLIENT_ACTION_EXTENSION = "urn:hello-mesh:s2s:client-action";
/**
 * A device transfer's UNLINK of the old session's instance (docs/wallet-server.md,
 * "Device transfer"): the new session, whose WSK signed the client action instead of the
 * old session's (which may be lost with the old device). The issuer accepts it only for
 * UNLINK, and only from a session it approved as a transfer of the old one.
 */
export const TRANSFER_SESSION_EXTENSION = "urn:hello-mesh:s2s:transfer-session";

export const credentialManageRequestSchema = z.looseObject({
  sessionId: sessionIdSchema,
  credentialInstanceId: id,
  action: z.enum(MANAGE_ACTIONS),
  reason: z.string().max(256).optional(),
  reasonDetail: z.string().max(2048).optional(),
  timestamp: z.string().max(64).optional(),
  extensions,
});
export type CredentialManageRequest = z.infer<typeof credentialManageRequestSchema>;

export const credentialManageResponseSchema = z.looseObject({
  sessionId: sessionIdSchema,
  credentialInstanceId: id,
  currentStatus: z.enum(CREDENTIAL_STATUSES),
  previousStatus: z.enum(CREDENTIAL_STATUSES).optional(),
  outcome: z.enum(MANAGE_OUTCOMES),
  failureReason: z.string().max(256).optional(),
  extensions,
});

export const credentialStatusRequestSchema = z.looseObject({ sessionId: sessionIdSchema, credentialInstanceId: id, extensions });
export const credentialStatusResponseSchema = z.looseObject({
  currentStatus: z.enum(CREDENTIAL_STATUSES),
  currentVersion: z.string().min(1).max(256),
  lastStatusChangeTime: z.string().max(64).optional(),
  lastStatusChangeReason: z.string().max(256).optional(),
  extensions,
});

/** The answer echoing a verification's ids (notify, cancel). */
export const verificationEchoSchema = z.looseObject({ sessionId: sessionIdSchema, verificationId: id });

/**
 * `GET /.well-known/s2s-issuer` (our profile; the draft's metadata is TODO): who the
 * issuer is, the HPKE-0 key client payloads are encrypted to, the keys its credentials
 * are signed with, and what it issues.
 */
export const issuerMetadataSchema = z.looseObject({
  issuer: z.string().min(1).max(2048),
  encryptionKey: jwkSchema,
  jwks: z.looseObject({ keys: z.array(jwkSchema).min(1) }),
  statusListUri: z.string().optional(),
  apiVersions: z.array(z.string()).min(1),
  credentialConfigurationsSupported: z.record(z.string(), z.looseObject({ format: z.string(), vct: z.string(), display: z.unknown().optional() })),
});
export type IssuerMetadata = z.infer<typeof issuerMetadataSchema>;

/** The item types of our profile (docs/wallet-server.md). */
export const ITEM_TYPES = {
  document: "urn:hello-mesh:s2s:document",
  previousSession: "urn:hello-mesh:s2s:previous-session",
  walletAge: "urn:hello-mesh:s2s:wallet-age",
  emailVerified: "urn:hello-mesh:s2s:email-verified",
  personData: "urn:hello-mesh:s2s:person",
} as const;

export const KEY_TYPES = { signing: "WALLET_SIGNING_KEY", encryption: "WALLET_ENCRYPTION_KEY" } as const;
