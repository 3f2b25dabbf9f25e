// A login's state between the front door's requests. hello-mesh keeps none of it: it
// travels in the browser, sealed under Orchestration's cookie key, in a cookie while
// the user is at their provider and in a hidden field of the chooser and consent forms.

import type { AppRequest, LoginState } from "../login-driver.js";
import type { AuthorizationRequest } from "./authorization-request.js";

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

/** Sealed as "upstream" in a cookie: a login gone to the user's provider. */
export interface UpstreamFlow extends ProviderLeg {
  request: AuthorizationRequest;
}

/** Sealed as "account-upstream" in a cookie: an account sign-in gone to the user's provider. */
export type AccountFlow = ProviderLeg;

/** Sealed as "consent" in the consent form. */
export interface ConsentFlow {
  request: AuthorizationRequest;
  /** A login waiting for a release (the user chooses claims)... */
  login?: LoginState;
  newUser?: boolean;
  offered: string[];
  /** ...or, for prompt=consent, an ID Token already minted from the existing release. */
  minted?: { idToken: string; userinfoJson: string; userinfoJwt: string };
}

/** The upstream flow's cookie, one per login (named by its state), so parallel logins do not collide. */
export const flowCookie = (state: string) => `hello_flow_${state.slice(0, 16)}`;

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
  };
}
