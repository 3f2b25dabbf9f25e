// The consent page, its POST /consent, and the login's last step: a code back to the app.

import type http from "node:http";
import { claimLabel } from "../pages/claim-labels.js";
import { consentPage } from "../pages/consent.js";
import { pageCsp } from "../pages/layout.js";
import type { AuthorizationRequest } from "./authorization-request.js";
import type { DoorContext, Exchange } from "./context.js";
import { type ConsentFlow, FLOW_TTL } from "./flows.js";
import { form } from "./http-input.js";
import { sendError, sendHtml } from "./responses.js";
import { WalletChanged } from "../login-driver.js";

/** Asks the user which of `flow.offered` to release, showing the values `wallet` holds. */
export function showConsent(door: DoorContext, res: http.ServerResponse, flow: ConsentFlow, wallet: Record<string, string | boolean>) {
  const client = door.clients.get(flow.request.client_id)!;
  // The form leads (by redirect) to the app: CSP form-action must name it.
  sendHtml(res, 200, consentPage({
    appName: client.client_name ?? client.client_id,
    clientId: client.client_id,
    claims: flow.offered.map((name) => ({ name, label: claimLabel(name), value: String(wallet[name]) })),
    action: "/consent",
    hidden: { flow: door.sealer.seal("consent", flow, FLOW_TTL) },
    alreadyReleased: flow.minted !== undefined,
    ...(flow.existing ? { checked: flow.existing.released } : {}),
  }), pageCsp([flow.request.redirect_uri]));
}

/** POST /consent: the user's answer. Only claims the page offered can be released. */
export async function consent(door: DoorContext, { req, res }: Exchange) {
  const body = await form(req);
  const flow = door.sealer.open<ConsentFlow>("consent", body.get("flow") ?? undefined);
  if (!flow) return sendError(res, 400, "This sign-in has expired", "The consent page was open too long.", "Go back to the app and sign in again.");
  if (body.get("decision") !== "allow") {
    return door.toApp(res, flow.request, { error: "access_denied", error_description: "the user declined" });
  }
  if (flow.minted) return issueCode(door, res, flow.request, flow.minted);
  const chosenClaims = body.getAll("claims").filter((c) => flow.offered.includes(c));
  if (flow.existing) {
    // The released claims the app did not ask for this time were not on the page: they stay.
    const kept = flow.existing.released.filter((c) => !flow.offered.includes(c));
    let outcome;
    try {
      outcome = await door.driver.changeConsent(flow.login!, flow.existing.release, [...chosenClaims, ...kept]);
    } catch (error) {
      if (error instanceof WalletChanged) {
        return sendError(res, 409, "Nothing was changed", "Your wallet changed while this page was open (in another tab, say).", "Go back to the app and sign in again.");
      }
      throw error;
    }
    return issueCode(door, res, flow.request, outcome);
  }
  const outcome = await door.driver.consent(flow.login!, chosenClaims, flow.newUser ?? false);
  return issueCode(door, res, flow.request, outcome);
}

/** Stores what the token endpoint will hand out under a new code, and sends the code to the app. */
export async function issueCode(
  door: DoorContext,
  res: http.ServerResponse,
  request: AuthorizationRequest,
  outcome: { idToken: string; userinfoJson: string; userinfoJwt: string; walletAccessToken?: string },
) {
  const code = await door.codes.issue({
    client_id: request.client_id, redirect_uri: request.redirect_uri, code_challenge: request.code_challenge, scope: request.scope,
    id_token: outcome.idToken, userinfo_json: outcome.userinfoJson, userinfo_jwt: outcome.userinfoJwt,
    // A DPoP-bound client's (docs/wallet-server.md): handed out only with a proof of this key.
    ...(outcome.walletAccessToken && request.dpop_jkt ? { wallet_access_token: outcome.walletAccessToken, dpop_jkt: request.dpop_jkt } : {}),
  });
  door.toApp(res, request, { code });
}
