// The /wallet page (docs/wallet-server.md): GET /wallet offers the providers, POST
// /wallet/provider starts an account session at Token and sends the browser to the
// chosen provider for a forced fresh sign-in (prompt=login, max_age=0), as the account
// page does; the provider's answer ends here: the user's credentials by issuer and type,
// with their status (wallet-driver.ts view), shown once. Nothing is kept.

import type { UpstreamProvider } from "../../../config/component-config.js";
import type { UpstreamResult } from "../login-driver.js";
import { chooserPage } from "../pages/chooser.js";
import { noWalletPage } from "../pages/account.js";
import { pageCsp } from "../pages/layout.js";
import { walletPage, walletUnlinkedPage } from "../pages/wallet.js";
import { openedAccount } from "./account.js";
import type { DoorContext, Exchange } from "./context.js";
import { type AccountFlow, FLOW_TTL, WALLET_FLOW, WALLET_UNLINK_FLOW, WALLET_UNLINK_REF, goToProvider } from "./flows.js";
import { form } from "./http-input.js";
import { sendError, sendHtml } from "./responses.js";

const AGAIN = "Go back to /wallet and sign in again.";

/** GET /wallet: which provider to sign in with. */
export function walletGet(door: DoorContext, { res }: Exchange) {
  if (!door.walletDriver) return sendError(res, 404, "No credential wallet here", "This hello-mesh serves no credential wallet.");
  sendHtml(res, 200, chooserPage({
    appName: "your credentials",
    providers: door.providers.map((p) => ({ id: p.id, name: p.name })),
    action: "/wallet/provider",
    hidden: {},
  }), pageCsp(door.providers.map((p) => p.issuer)));
}

/** POST /wallet/provider: an account session at Token, then the provider, forced to ask the user again. */
export async function walletProvider(door: DoorContext, { req, res }: Exchange) {
  const provider = door.rp.provider((await form(req)).get("provider") ?? "");
  if (!provider) return sendError(res, 400, "Unknown provider", "Choose one of the providers listed.");
  const started = Date.now();
  const session = await door.driver.startAccount(provider.id);
  await goToProvider(door, res, provider, started, session, { prompt: "login", max_age: "0" }, WALLET_FLOW);
}

/** The provider's answer: the user's credentials, by issuer and type, with their status. */
export async function walletAnswer(door: DoorContext, res: Exchange["res"], flow: AccountFlow, provider: UpstreamProvider, upstream: UpstreamResult) {
  if (!door.walletDriver) return sendError(res, 404, "No credential wallet here", "This hello-mesh serves no credential wallet.");
  const opened = await openedAccount(door, res, flow, provider, upstream, "your credentials are shown", AGAIN);
  if (!opened) return;
  const { view } = opened;
  if (!view) return sendHtml(res, 200, noWalletPage(provider.name));
  const { credentials } = await door.walletDriver.view(view.sessionToken, view.uid);
  sendHtml(res, 200, walletPage(credentials.map((c) => {
    const display = (c.credentialMetadata?.display as Array<{ name?: unknown }> | undefined)?.[0]?.name;
    const ended = c.status === "UNLINKED" || c.status === "CANCELLED";
    // The unlink form names its credential sealed (the page never shows an instance id), for this user only.
    const ref: UnlinkRef = { uid: view.uid, issuer: c.issuer, sessionId: c.sessionId, credentialInstanceId: c.credentialInstanceId };
    return {
      issuer: c.issuer,
      type: c.credentialConfigurationId,
      ...(typeof display === "string" ? { typeName: display } : {}),
      status: c.status,
      ...(c.credentialVersion ? { version: c.credentialVersion } : {}),
      ...(ended ? {} : { unlink: door.sealer.seal(WALLET_UNLINK_REF, ref, FLOW_TTL) }),
    };
  }), { id: provider.id, name: provider.name }));
}

/** What a /wallet page's unlink form names: the credential, and the user the page was shown to. */
interface UnlinkRef {
  uid: string;
  issuer: string;
  sessionId: string;
  credentialInstanceId: string;
}

/**
 * POST /wallet/unlink: the credential a /wallet page named, confirmed with a fresh
 * sign-in of its own at the provider (prompt=login, max_age=0), as every account
 * transaction is.
 */
export async function walletUnlink(door: DoorContext, { req, res }: Exchange) {
  if (!door.walletDriver) return sendError(res, 404, "No credential wallet here", "This hello-mesh serves no credential wallet.");
  const body = await form(req);
  const ref = door.sealer.open<UnlinkRef>(WALLET_UNLINK_REF, body.get("credential") ?? undefined);
  if (!ref) return sendError(res, 400, "This page has expired", "The credentials page is valid for a few minutes.", AGAIN);
  const provider = door.rp.provider(body.get("provider") ?? "");
  if (!provider) return sendError(res, 400, "Unknown provider", "Choose one of the providers listed.");
  const started = Date.now();
  const session = await door.driver.startAccount(provider.id);
  await goToProvider(door, res, provider, started, session, { prompt: "login", max_age: "0" }, WALLET_UNLINK_FLOW, { unlink: ref });
}

/** The unlink's fresh sign-in is back: the same user as the page's, then the wallet server's own UNLINK. */
export async function walletUnlinkAnswer(door: DoorContext, res: Exchange["res"], flow: AccountFlow & { unlink: UnlinkRef }, provider: UpstreamProvider, upstream: UpstreamResult) {
  if (!door.walletDriver) return sendError(res, 404, "No credential wallet here", "This hello-mesh serves no credential wallet.");
  const opened = await openedAccount(door, res, flow, provider, upstream, "a credential is unlinked", AGAIN);
  if (!opened) return;
  const { view } = opened;
  if (!view) return sendHtml(res, 200, noWalletPage(provider.name));
  // Confirmed at an account of another wallet than the page's: nothing is done.
  if (view.uid !== flow.unlink.uid) return sendError(res, 403, "Not your wallet's account", "You signed in at an account of another wallet than the one whose credentials the page showed.", AGAIN);
  const { issuer, sessionId, credentialInstanceId } = flow.unlink;
  const done = await door.walletDriver.unlinkFromPage(view.sessionToken, view.uid, { issuer, sessionId, credentialInstanceId });
  sendHtml(res, 200, walletUnlinkedPage(issuer, done.status));
}
