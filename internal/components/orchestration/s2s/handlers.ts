// What the wallet server does with an issuer's calls to it (docs/wallet-server.md): a
// verification's new status, a credential instance's event, its own view of an
// instance (/credential/status), and the issuer's own lifecycle action (/credential/manage). The S2S server
// (s2s-server.ts) has checked the caller's mTLS certificate, the Api-Version, the
// x-request-id and the body's schema before either runs, and tells it which configured
// issuer called.

import type { CredentialManageRequest, EventNotify, VerificationStatus } from "../../../s2s/messages.js";

/** The draft's /credential/manage answer, as this server gives it. */
export interface CredentialManageAnswer {
  sessionId: string;
  credentialInstanceId: string;
  currentStatus: string;
  previousStatus?: string;
  outcome: "COMPLETED" | "SCHEDULED" | "FAILED" | "NO_CHANGE";
  failureReason?: string;
}

/** The draft's /credential/status answer, as this server gives it. */
export interface CredentialStatusAnswer {
  currentStatus: string;
  currentVersion: string;
  lastStatusChangeTime?: string;
}

export interface S2sHandlers {
  /**
   * POST /verification/notify from `issuerId`. Throws a ProblemError to refuse: 404
   * unknown_session for a session that is not this issuer's (the same answer as for one
   * that does not exist), and so on.
   */
  verificationNotice(issuerId: string, status: VerificationStatus): Promise<void>;
  /** POST /event/notify from `issuerId`; refuses as verificationNotice does. */
  event(issuerId: string, event: EventNotify): Promise<void>;
  /** POST /credential/status from `issuerId`: this server's view of one of its instances; refuses as verificationNotice does. */
  credentialStatus(issuerId: string, request: { sessionId: string; credentialInstanceId: string }): Promise<CredentialStatusAnswer>;
  /** POST /credential/manage from `issuerId` (its own action): the draft's answer; refuses as verificationNotice does. */
  manage(issuerId: string, request: CredentialManageRequest): Promise<CredentialManageAnswer>;
}
