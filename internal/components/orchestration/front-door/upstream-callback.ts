// GET /upstream/callback/<provider id>: the user's provider answers the login the front
// door started there. Each provider has its own path (RFC 9700 §4.4 mix-up defence).

import { LoginRequired, RecoveryAccountOnly, type UpstreamResult, WalletDeleted, loginContext } from "../login-driver.js";
import { requestedClaims } from "../../../protocol/claims.js";
import type { AuthorizationRequest } from "./authorization-request.js";
import { issueCode, showConsent } from "./consent.js";
import type { DoorContext, Exchange } from "./context.js";
import {
  ACCOUNT_FLOW, type AccountFlow, CLAIMS_FLOW, DELETE_FLOW, LINK_FLOW, LOGIN_FLOW, type LinkFlow, MERGE_FLOW, THRESHOLD_FLOW, type ThresholdFlow, WALLET_FLOW, WALLET_UNLINK_FLOW, type ProviderLeg, RECOVERY_FLOW, RELEASE_FLOW, type RecoveryFlow,
  type ReleaseFlow, type TransactionFlow, UNLINK_FLOW, type UnlinkFlow, type UpstreamFlow, appRequestOf, flowCookie,
} from "./flows.js";
import { cookies } from "./http-input.js";
import { sendError } from "./responses.js";
import { walletAnswer, walletUnlinkAnswer } from "./wallet-page.js";
import { accountAnswer, claimsAnswer, deleteAnswer, linkAnswer, mergeAnswer, recoveryAnswer, thresholdAnswer, releaseAnswer, unlinkAnswer } from "./account.js";
import type { UpstreamProvider } from "../../../config/component-config.js";

/** An account page sign-in, by the purpose its flow is sealed as: what a failed one leaves undone, and where a verified answer goes. */
interface AccountLeg {
  readonly sealedAs: string;
  readonly nothingDone: string;
  readonly answer: (door: DoorContext, res: Exchange["res"], flow: ProviderLeg, provider: UpstreamProvider, upstream: UpstreamResult) => Promise<void>;
}

/** `answer` for the flow sealed as `sealedAs`, which is its kind of flow (the sealing purpose says so). */
function leg<F extends ProviderLeg>(sealedAs: string, nothingDone: string,
  answer: (door: DoorContext, res: Exchange["res"], flow: F, provider: UpstreamProvider, upstream: UpstreamResult) => Promise<void>): AccountLeg {
  return { sealedAs, nothingDone, answer: (door, res, flow, provider, upstream) => answer(door, res, flow as F, provider, upstream) };
}

const ACCOUNT_LEGS: readonly AccountLeg[] = [
  leg<AccountFlow>(ACCOUNT_FLOW, "", accountAnswer),
  leg<TransactionFlow>(DELETE_FLOW, ", so nothing was deleted", deleteAnswer),
  leg<LinkFlow>(LINK_FLOW, ", so nothing was linked", linkAnswer),
  leg<UnlinkFlow>(UNLINK_FLOW, ", so nothing was unlinked", unlinkAnswer),
  leg<TransactionFlow>(CLAIMS_FLOW, ", so nothing was changed", claimsAnswer),
  leg<ReleaseFlow>(RELEASE_FLOW, ", so nothing was changed", releaseAnswer),
  leg<RecoveryFlow>(RECOVERY_FLOW, ", so your wallet is not recovered", recoveryAnswer),
  leg<TransactionFlow>(MERGE_FLOW, ", so nothing was merged", mergeAnswer),
  leg<ThresholdFlow>(THRESHOLD_FLOW, ", so nothing was changed", thresholdAnswer),
  leg<AccountFlow>(WALLET_FLOW, "", walletAnswer),
  leg<Parameters<typeof walletUnlinkAnswer>[2]>(WALLET_UNLINK_FLOW, ", so nothing was unlinked", walletUnlinkAnswer),
];

/** What a provider may say with prompt=none that goes to the app as is; any other error is access_denied. */
const PASSED_THROUGH = ["login_required", "consent_required", "interaction_required", "account_selection_required"];

/** The answer of `provider` (the one whose callback path it came to). */
export async function upstreamCallback(door: DoorContext, { req, res, url, provider }: Exchange) {
  if (!provider) throw new Error("the upstream callback is routed per provider");
  const sealed = cookies(req)[flowCookie(url.searchParams.get("state") ?? "")];
  // The account page's sign-ins: to see the wallet, or for one of its transactions.
  for (const leg of ACCOUNT_LEGS) {
    const flow = door.sealer.open<ProviderLeg>(leg.sealedAs, sealed);
    if (!flow) continue;
    const retry = "Go back to the account page and sign in again.";
    const upstream = await redeemAnswer(door, res, url, provider, flow, retry, () =>
      sendError(res, 400, "Sign-in failed", `The sign-in at ${provider.name} did not complete${leg.nothingDone}.`, retry));
    return upstream && leg.answer(door, res, flow, provider, upstream);
  }
  // redeemAnswer reaches onError, or returns an answer, only for a flow it found.
  const flow = door.sealer.open<UpstreamFlow>(LOGIN_FLOW, sealed);
  const retry = "Go back to the app and sign in again.";
  const upstream = await redeemAnswer(door, res, url, provider, flow, retry, async (upstreamError) => {
    if (!(await door.rp.errorAnswerIsFrom(provider, url))) {
      return sendError(res, 400, "Sign-in failed", `The answer from ${provider.name} could not be verified.`, retry);
    }
    const error = PASSED_THROUGH.includes(upstreamError) ? upstreamError : "access_denied";
    door.toApp(res, flow!.request, { error, error_description: "the sign-in at your provider did not complete" });
  });
  if (!upstream) return;
  return loginAnswer(door, res, flow!, upstream);
}

/**
 * The checks every provider answer passes, a login's or an account sign-in's: it belongs
 * to `flow` (its state), it comes from the flow's provider, it spends the flow, and its
 * code redeems (the ID Token, state, iss, nonce and PKCE, checked by openid-client). An
 * error answer goes to `onError`. Returns what the provider said, or undefined once the
 * answer's page is sent.
 */
async function redeemAnswer(
  door: DoorContext, res: Exchange["res"], url: URL, provider: UpstreamProvider, flow: ProviderLeg | undefined, retry: string,
  onError: (error: string) => Promise<void> | void,
): Promise<UpstreamResult | undefined> {
  if (!flow || flow.state !== url.searchParams.get("state")) {
    sendError(res, 400, "This sign-in has expired", "We could not find the sign-in this answer belongs to (it took too long, was already completed, or cookies are blocked).", retry);
    return undefined;
  }
  if (flow.provider !== provider.id) {
    // A mix-up (RFC 9700 §4.4): an answer for a sign-in started with another provider.
    // Refused before anything is redeemed, and the flow is left as it was.
    sendError(res, 400, "Sign-in failed", `This answer did not come from the provider this sign-in was started with.`, retry);
    return undefined;
  }
  door.setCookie(res, flowCookie(flow.state), "", 0); // one use
  const upstreamError = url.searchParams.get("error");
  if (upstreamError) {
    await onError(upstreamError);
    return undefined;
  }
  try {
    return await door.rp.redeem(provider, url, { state: flow.state, nonce: flow.upstream_nonce, codeVerifier: flow.verifier });
  } catch {
    // The provider's answer did not verify (its ID Token, state, iss or PKCE): say so,
    // without the details, which are for the operator's logs.
    sendError(res, 400, "Sign-in failed", `The answer from ${provider.name} could not be verified.`, retry);
    return undefined;
  }
}

/** A login's verified answer: on through Token to the app, or to the consent page. */
async function loginAnswer(door: DoorContext, res: Exchange["res"], flow: UpstreamFlow, upstream: UpstreamResult) {
  let outcome;
  try {
    outcome = await door.driver.continue(flow.session, loginContext(appRequestOf(flow.request), flow.started), upstream);
  } catch (error) {
    // The app asked for a recent or fresh login (max_age, prompt=login) and the provider's was not.
    if (error instanceof LoginRequired) return door.toApp(res, flow.request, { error: "login_required", error_description: error.message });
    // The user's wallet was deleted (a delete finished, maybe just now by this sign-in): the next sign-in starts a new one.
    // A recovery account: it only helps recover a wallet, and never signs in.
    if (error instanceof RecoveryAccountOnly) {
      return sendError(res, 403, "This account cannot sign in", "The account you signed in with is one of a hello-mesh wallet's recovery accounts: it helps recover the wallet, and cannot sign in alone.", "Go back to the app and sign in with an account you sign in with.");
    }
    if (error instanceof WalletDeleted) {
      return sendError(res, 410, "Your wallet was deleted", "The hello-mesh wallet of the account you signed in with was deleted, so this sign-in cannot continue.", "Go back to the app and sign in again: you will start a new wallet.");
    }
    throw error;
  }
  if (outcome.kind === "done" && flow.request.prompt?.split(" ").includes("consent")) {
    // OIDC Core §3.1.2.1, for a release from before reservations (reserved on the way, and minted): confirm it as it is.
    const released = JSON.parse(outcome.userinfoJson) as Record<string, string | boolean>;
    const minted = {
      idToken: outcome.idToken, userinfoJson: outcome.userinfoJson, userinfoJwt: outcome.userinfoJwt,
      ...(outcome.walletAccessToken ? { walletAccessToken: outcome.walletAccessToken } : {}),
    };
    return showConsent(door, res, { request: flow.request, offered: Object.keys(released).filter((c) => c !== "sub" && c !== "merged_subs"), minted }, released);
  }
  if (outcome.kind === "done") return issueCode(door, res, flow.request, outcome);
  if (flow.request.prompt === "none") {
    return door.toApp(res, flow.request, { error: "consent_required", error_description: "this app needs the user's consent first" });
  }
  return showConsent(door, res, {
    request: flow.request, login: outcome.state, newUser: outcome.newUser, offered: offeredClaims(flow.request, outcome.wallet.claims),
    ...(outcome.existing ? { existing: outcome.existing } : {}),
  }, outcome.wallet.claims);
}

/** What the app asked for and the user's wallet holds: Token's own rule (claims.ts). */
function offeredClaims(request: AuthorizationRequest, wallet: Record<string, unknown>): string[] {
  return [...requestedClaims(request.scope, request.claims)].filter((c) => Object.hasOwn(wallet, c));
}
