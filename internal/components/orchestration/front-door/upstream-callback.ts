// GET /upstream/callback/<provider id>: the user's provider answers the login the front
// door started there. Each provider has its own path (RFC 9700 §4.4 mix-up defence).

import { LoginRequired, loginContext } from "../login-driver.js";
import { requestedClaims } from "../../../protocol/claims.js";
import type { AuthorizationRequest } from "./authorization-request.js";
import { issueCode, showConsent } from "./consent.js";
import type { DoorContext, Exchange } from "./context.js";
import { type AccountFlow, type UpstreamFlow, appRequestOf, flowCookie } from "./flows.js";
import { cookies } from "./http-input.js";
import { sendError } from "./responses.js";
import { ACCOUNT_FLOW, accountAnswer } from "./account.js";
import type { UpstreamProvider } from "../../../config/component-config.js";

/** What a provider may say with prompt=none that goes to the app as is; any other error is access_denied. */
const PASSED_THROUGH = ["login_required", "consent_required", "interaction_required", "account_selection_required"];

/** The answer of `provider` (the one whose callback path it came to). */
export async function upstreamCallback(door: DoorContext, { req, res, url, provider }: Exchange) {
  if (!provider) throw new Error("the upstream callback is routed per provider");
  const state = url.searchParams.get("state") ?? "";
  const name = flowCookie(state);
  const account = door.sealer.open<AccountFlow>(ACCOUNT_FLOW, cookies(req)[name]);
  if (account) return accountCallback(door, { req, res, url, provider }, account);
  const flow = door.sealer.open<UpstreamFlow>("upstream", cookies(req)[name]);
  if (!flow || flow.state !== state) {
    return sendError(res, 400, "This sign-in has expired", "We could not find the sign-in this answer belongs to (it took too long, was already completed, or cookies are blocked).", "Go back to the app and sign in again.");
  }
  if (flow.provider !== provider.id) {
    // A mix-up (RFC 9700 §4.4): an answer for a login started with another provider.
    // Refused before anything is redeemed, and the flow is left as it was.
    return sendError(res, 400, "Sign-in failed", `This answer did not come from the provider this sign-in was started with.`, "Go back to the app and sign in again.");
  }
  door.setCookie(res, name, "", 0); // one use
  const upstreamError = url.searchParams.get("error");
  if (upstreamError) {
    if (!(await door.rp.errorAnswerIsFrom(provider, url))) {
      return sendError(res, 400, "Sign-in failed", `The answer from ${provider.name} could not be verified.`, "Go back to the app and sign in again.");
    }
    const error = PASSED_THROUGH.includes(upstreamError) ? upstreamError : "access_denied";
    return door.toApp(res, flow.request, { error, error_description: "the sign-in at your provider did not complete" });
  }
  let upstream;
  try {
    upstream = await door.rp.redeem(provider, url, { state: flow.state, nonce: flow.upstream_nonce, codeVerifier: flow.verifier });
  } catch {
    // The provider's answer did not verify (its ID Token, state, iss or PKCE): say so,
    // without the details, which are for the operator's logs.
    return sendError(res, 400, "Sign-in failed", `The answer from ${provider.name} could not be verified.`, "Go back to the app and sign in again.");
  }
  let outcome;
  try {
    outcome = await door.driver.continue(flow.session, loginContext(appRequestOf(flow.request), flow.started), upstream);
  } catch (error) {
    // The app asked for a recent or fresh login (max_age, prompt=login) and the provider's was not.
    if (error instanceof LoginRequired) return door.toApp(res, flow.request, { error: "login_required", error_description: error.message });
    throw error;
  }
  if (outcome.kind === "done" && flow.request.prompt?.split(" ").includes("consent")) {
    // OIDC Core §3.1.2.1: ask again, showing what this app already receives.
    const released = JSON.parse(outcome.userinfoJson) as Record<string, string | boolean>;
    const minted = { idToken: outcome.idToken, userinfoJson: outcome.userinfoJson, userinfoJwt: outcome.userinfoJwt };
    return showConsent(door, res, { request: flow.request, offered: Object.keys(released).filter((c) => c !== "sub"), minted }, released);
  }
  if (outcome.kind === "done") return issueCode(door, res, flow.request, outcome);
  if (flow.request.prompt === "none") {
    return door.toApp(res, flow.request, { error: "consent_required", error_description: "this app needs the user's consent first" });
  }
  return showConsent(door, res, { request: flow.request, login: outcome.state, newUser: outcome.newUser, offered: offeredClaims(flow.request, outcome.wallet.claims) }, outcome.wallet.claims);
}

/** An account sign-in's answer: the same checks of the flow and the answer, then the wallet page (account.ts). */
async function accountCallback(door: DoorContext, { res, url, provider }: Exchange & { provider: UpstreamProvider }, flow: AccountFlow) {
  const retry = "Go back to the account page and sign in again.";
  if (flow.state !== url.searchParams.get("state")) return sendError(res, 400, "This sign-in has expired", "We could not find the sign-in this answer belongs to.", retry);
  if (flow.provider !== provider.id) return sendError(res, 400, "Sign-in failed", "This answer did not come from the provider this sign-in was started with.", retry);
  door.setCookie(res, flowCookie(flow.state), "", 0); // one use
  if (url.searchParams.get("error")) return sendError(res, 400, "Sign-in failed", `The sign-in at ${provider.name} did not complete.`, retry);
  let upstream;
  try {
    upstream = await door.rp.redeem(provider, url, { state: flow.state, nonce: flow.upstream_nonce, codeVerifier: flow.verifier });
  } catch {
    return sendError(res, 400, "Sign-in failed", `The answer from ${provider.name} could not be verified.`, retry);
  }
  return accountAnswer(door, res, flow, provider, upstream);
}

/** What the app asked for and the user's wallet holds: Token's own rule (claims.ts). */
function offeredClaims(request: AuthorizationRequest, wallet: Record<string, unknown>): string[] {
  return [...requestedClaims(request.scope, request.claims)].filter((c) => Object.hasOwn(wallet, c));
}
