// A login's state between the front door's requests. hello-mesh keeps none of it: it
// travels in the browser, sealed under Orchestration's cookie key, in a cookie while
// the user is at their provider and in a hidden field of the chooser and consent forms.

import type { UpstreamProvider } from "../../../config/component-config.js";
import type { AppRequest, LoginState, ReadRelease } from "../login-driver.js";
import type { AuthorizationRequest } from "./authorization-request.js";
import type { DoorContext, Exchange } from "./context.js";
import { redirect } from "./responses.js";

/** How long a login may take, from the app's request to the user's last click (seconds). */
export const FLOW_TTL = 10 * 60;

/** What the front door keeps of a sign-in while the user is at their provider. */
export interface ProviderLeg {
  /** When the login or account session began (epoch ms): a forced authentication must follow it. */
  started: number;
  provider: string;
  /** Token's Session Token. */
  session: string;
  upstream_nonce: string;
  state: string;
  verifier: string;
}

/** The sealing purposes of the flow cookie: a login's, an account sign-in's, a delete's and a link's, never opened as each other. */
export const LOGIN_FLOW = "upstream";
export const ACCOUNT_FLOW = "account-upstream";
export const DELETE_FLOW = "delete-upstream";
export const LINK_FLOW = "link-upstream";
export const UNLINK_FLOW = "unlink-upstream";
export const CLAIMS_FLOW = "claims-upstream";
export const RELEASE_FLOW = "release-upstream";
export const RECOVERY_FLOW = "recovery-upstream";
export const MERGE_FLOW = "merge-upstream";
export const THRESHOLD_FLOW = "threshold-upstream";
/** The /wallet page's fresh sign-in (wallet-page.ts), an account sign-in with another destination. */
export const WALLET_FLOW = "wallet-upstream";
/** The /wallet page's unlink of one credential: its own fresh sign-in (wallet-page.ts). */
export const WALLET_UNLINK_FLOW = "wallet-unlink-upstream";
/** The sealing purpose of the /wallet page's unlink forms: the credential each names. */
export const WALLET_UNLINK_REF = "wallet-unlink-ref";
/** The sealing purpose of the recovery page's form: a recovery between its rounds. */
export const RECOVERY_STATE = "recovery-state";
/** The sealing purpose of the claims page's form: the claims update waiting for the user's choice. */
export const CLAIMS_CHOICE = "claims-choice";
/** The sealing purpose of the account page's forms: the account session its actions begin from. */
export const ACCOUNT_SESSION = "account-session";

/** Sealed as LOGIN_FLOW in a cookie: a login gone to the user's provider. */
export interface UpstreamFlow extends ProviderLeg {
  request: AuthorizationRequest;
}

/** Sealed as ACCOUNT_FLOW in a cookie: an account sign-in gone to the user's provider. */
export type AccountFlow = ProviderLeg;

/** Sealed in a cookie as a transaction's flow (DELETE_FLOW, LINK_FLOW, CLAIMS_FLOW…): its fresh sign-in, gone to the provider. */
export interface TransactionFlow extends ProviderLeg {
  /** The user whose wallet the account page showed: the sign-in must be at one of its subjects. */
  uid: string;
}

/** Sealed as ACCOUNT_SESSION in the account page's forms. */
export interface AccountSession {
  /** Token's account session, at step "user". */
  session: string;
  uid: string;
  /** The wallet's accounts as the page showed them, which an unlink names by position. */
  subjects?: Array<{ iss: string; sub: string }>;
  /** The provider the page was signed in with: a release change is confirmed there. */
  provider?: string;
  /** A recovered wallet's page: only a link begins from it. */
  recovered?: true;
}

/** Sealed as LINK_FLOW in a cookie: a link's sign-in at the account to link, gone to the provider. */
export interface LinkFlow extends TransactionFlow {
  /** Link it as a recovery account. */
  recovery?: true;
}

/** Sealed as RECOVERY_FLOW in a cookie: a recovery's round, gone to the provider. */
export interface RecoveryFlow extends ProviderLeg {
  /** The rounds before this one: the wallet they proved, and their providers. */
  previous?: { uid: string; proven: string[] };
}

/** Sealed as THRESHOLD_FLOW in a cookie: a recovery threshold change's confirming sign-in, gone to the provider. */
export interface ThresholdFlow extends TransactionFlow {
  threshold: number;
}

/** Sealed as RELEASE_FLOW in a cookie: a release change's confirming sign-in, gone to the provider. */
export interface ReleaseFlow extends TransactionFlow {
  client_id: string;
  /** Absent: forget the user at the app. */
  keep?: string[];
}

/** Sealed as UNLINK_FLOW in a cookie: an unlink's confirming sign-in, gone to the provider. */
export interface UnlinkFlow extends TransactionFlow {
  target: { iss: string; sub: string };
}

/** Sealed as "consent" in the consent form. */
export interface ConsentFlow {
  request: AuthorizationRequest;
  /** A login waiting for a release (the user chooses claims)... */
  login?: LoginState;
  newUser?: boolean;
  offered: string[];
  /** ...or, for prompt=consent, the app's release as read, which the user confirms or changes... */
  existing?: { release: ReadRelease; released: string[] };
  /** ...or, for prompt=consent and a release from before reservations, an ID Token already minted from it. */
  minted?: { idToken: string; userinfoJson: string; userinfoJwt: string; walletAccessToken?: string };
}

/** The upstream flow's cookie, one per login (named by its state), so parallel logins do not collide. */
export const flowCookie = (state: string) => `hello_flow_${state.slice(0, 16)}`;

/**
 * Sends the browser to `provider` for the session Token just started at `started`, with
 * `params` for the provider: the leg, with `extra`, sealed as `sealedAs` in the flow's
 * one-use cookie, which its answer's state names (upstream-callback.ts).
 */
export async function goToProvider(
  door: DoorContext, res: Exchange["res"], provider: UpstreamProvider, started: number,
  session: { readonly sessionToken: string; readonly upstreamNonce: string },
  params: { prompt?: string; login_hint?: string; max_age?: string }, sealedAs: string, extra: object = {},
): Promise<void> {
  const upstream = await door.rp.authorizationUrl(provider, session.upstreamNonce, params);
  const leg: ProviderLeg = {
    started, provider: provider.id, session: session.sessionToken, upstream_nonce: session.upstreamNonce,
    state: upstream.state, verifier: upstream.codeVerifier,
  };
  door.setCookie(res, flowCookie(upstream.state), door.sealer.seal(sealedAs, { ...extra, ...leg }, FLOW_TTL), FLOW_TTL);
  redirect(res, upstream.url.toString());
}

/** The app's request as the login driver takes it. */
export function appRequestOf(request: AuthorizationRequest): AppRequest {
  return {
    clientId: request.client_id,
    redirectUri: request.redirect_uri,
    nonce: request.nonce,
    scope: request.scope,
    codeChallenge: request.code_challenge,
    ...(request.claims ? { claims: request.claims } : {}),
    ...(request.prompt ? { prompt: request.prompt } : {}),
    ...(request.max_age !== undefined ? { maxAge: Number(request.max_age) } : {}),
    ...(request.request_object ? { requestObject: request.request_object } : {}),
    ...(request.dpop_jkt ? { dpopJkt: request.dpop_jkt } : {}),
  };
}
