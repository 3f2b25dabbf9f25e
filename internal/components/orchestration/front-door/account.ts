// The account page (docs/transactions.md): GET /account offers the providers, POST
// /account/provider starts an account session at Token and sends the browser to the
// chosen provider for a forced fresh login (prompt=login, max_age=0), and the provider's
// answer, checked as a login's is (upstream-callback.ts), ends here: the wallet, shown once.
// Nothing is kept: the account session lives in the flow cookie until the answer.

import { LoginRequired, type UpstreamResult } from "../login-driver.js";
import type { UpstreamProvider } from "../../../config/component-config.js";
import { chooserPage } from "../pages/chooser.js";
import { accountPage, noWalletPage } from "../pages/account.js";
import { pageCsp } from "../pages/layout.js";
import type { DoorContext, Exchange } from "./context.js";
import { ACCOUNT_FLOW, type AccountFlow, goToProvider } from "./flows.js";
import { form } from "./http-input.js";
import { sendError, sendHtml } from "./responses.js";

/** GET /account: which provider to sign in with. */
export function accountGet(door: DoorContext, { res }: Exchange) {
  sendHtml(res, 200, chooserPage({
    appName: "your wallet",
    providers: door.providers.map((p) => ({ id: p.id, name: p.name })),
    action: "/account/provider",
    hidden: {},
  }), pageCsp(door.providers.map((p) => p.issuer)));
}

/** POST /account/provider: an account session at Token, then the provider, forced to ask the user again. */
export async function accountProvider(door: DoorContext, { req, res }: Exchange) {
  const provider = door.rp.provider((await form(req)).get("provider") ?? "");
  if (!provider) return sendError(res, 400, "Unknown provider", "Choose one of the providers listed.");
  const started = Date.now();
  const session = await door.driver.startAccount(provider.id);
  await goToProvider(door, res, provider, started, session, { prompt: "login", max_age: "0" }, ACCOUNT_FLOW);
}

/** The provider's answer to an account sign-in, verified by the callback: the wallet page. */
export async function accountAnswer(door: DoorContext, res: Exchange["res"], flow: AccountFlow, provider: UpstreamProvider, upstream: UpstreamResult) {
  let view;
  try {
    view = await door.driver.openAccount(flow.session, flow.started, upstream);
  } catch (error) {
    if (error instanceof LoginRequired) {
      return sendError(res, 403, "Sign in again", `${provider.name} did not ask you to sign in just now, and your wallet is shown only after a fresh sign-in.`, "Go back to the account page and sign in again.");
    }
    throw error;
  }
  if (!view) return sendHtml(res, 200, noWalletPage(provider.name));
  const nameOf = (iss: string) => door.providers.find((p) => p.issuer === iss)?.name ?? iss;
  sendHtml(res, 200, accountPage({
    signedInWith: provider.name,
    providers: view.wallet.subjects.map((s) => nameOf(s.iss)),
    claims: Object.entries(view.wallet.claims).map(([name, value]) => ({ name, value })),
    apps: view.releases.map((r) => ({ name: door.clients.get(r.clientId)?.client_name ?? r.clientId, claims: [...r.claims] })),
  }));
}
