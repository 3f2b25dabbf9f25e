// The account page (docs/transactions.md): GET /account offers the providers, POST
// /account/provider starts an account session at Token and sends the browser to the
// chosen provider for a forced fresh login (prompt=login, max_age=0), and the provider's
// answer, checked as a login's is (upstream-callback.ts), ends here: the wallet, shown once.
// Nothing is kept: the account session lives in the flow cookie until the answer, then
// sealed in the page's forms, from which each transaction begins (POST /account/delete)
// with a forced fresh login of its own.

import { decodeJwt } from "jose";
import { TransactionKind } from "../../../gen/hello/token/v1/token_service_pb.js";
import {
  type AccountView, AlreadyLinked, type ClaimsState, LoginRequired, MergeRefused, NoRelease, NotLinked, RecoveryAccountOnly, RecoveryRefused, type RecoveryState, UnlinkRefused,
  type UpstreamResult, WalletChanged, WalletDeleted,
} from "../login-driver.js";
import type { UpstreamProvider } from "../../../config/component-config.js";
import { chooserPage } from "../pages/chooser.js";
import { accountPage, claimsPage, detailsTakenPage, linkedPage, mergedPage, thresholdSetPage, noWalletPage, recoveryPage, releaseChangedPage, unlinkedPage, walletDeletedPage } from "../pages/account.js";
import { pageCsp } from "../pages/layout.js";
import type { DoorContext, Exchange } from "./context.js";
import {
  ACCOUNT_FLOW, ACCOUNT_SESSION, type AccountFlow, type AccountSession, CLAIMS_CHOICE, CLAIMS_FLOW, DELETE_FLOW, type TransactionFlow, FLOW_TTL, LINK_FLOW, type LinkFlow, MERGE_FLOW, THRESHOLD_FLOW, type ThresholdFlow,
  RECOVERY_FLOW, RECOVERY_STATE, type RecoveryFlow, RELEASE_FLOW, type ReleaseFlow, UNLINK_FLOW, type UnlinkFlow, goToProvider,
} from "./flows.js";
import { form } from "./http-input.js";
import { WALLET_CLAIMS } from "../../../protocol/claims.js";
import { recoveryThreshold } from "../../../protocol/tokens.js";
import { sendError, sendHtml } from "./responses.js";

/** GET /account: which provider to sign in with. */
export function accountGet(door: DoorContext, { res }: Exchange) {
  sendHtml(res, 200, chooserPage({
    appName: "your wallet",
    providers: door.providers.map((p) => ({ id: p.id, name: p.name })),
    action: "/account/provider",
    hidden: {},
    recoverHref: "/account/recover",
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

/**
 * An account sign-in's answer opened (openAccount): `{ view }` (null: no wallet holds the
 * account), or undefined once the page that says why not was sent. `what`: what the fresh
 * sign-in is for, in the page's words ("your wallet is shown"); `again`: where to go back.
 */
export async function openedAccount(door: DoorContext, res: Exchange["res"], flow: AccountFlow, provider: UpstreamProvider, upstream: UpstreamResult, what: string, again: string) {
  try {
    return { view: await door.driver.openAccount(flow.session, flow.started, upstream) };
  } catch (error) {
    if (error instanceof LoginRequired) {
      sendError(res, 403, "Sign in again", `${provider.name} did not ask you to sign in just now, and ${what} only after a fresh sign-in.`, again);
      return undefined;
    }
    // A delete that had stopped part-way, finished by this sign-in.
    if (error instanceof WalletDeleted) {
      sendHtml(res, 200, walletDeletedPage());
      return undefined;
    }
    if (error instanceof RecoveryAccountOnly) {
      sendError(res, 403, "This account cannot sign in", RECOVERY_ONLY, again);
      return undefined;
    }
    throw error;
  }
}

/** The provider's answer to an account sign-in, verified by the callback: the wallet page. */
export async function accountAnswer(door: DoorContext, res: Exchange["res"], flow: AccountFlow, provider: UpstreamProvider, upstream: UpstreamResult) {
  const opened = await openedAccount(door, res, flow, provider, upstream, "your wallet is shown", AGAIN);
  if (!opened) return;
  const { view } = opened;
  if (!view) return sendHtml(res, 200, noWalletPage(provider.name));
  showAccount(door, res, view, provider);
}

const RECOVERY_ONLY = "The account you signed in with is one of your wallet's recovery accounts: it helps recover the wallet, and cannot sign in alone.";

/**
 * The wallet page, signed in at `provider`, or, after a recovery (`recoveredWith`, the
 * providers that proved it), with nothing to do but link an account to sign in with.
 */
function showAccount(door: DoorContext, res: Exchange["res"], view: AccountView, provider: UpstreamProvider, recoveredWith?: string[]) {
  const nameOf = (iss: string) => door.providers.find((p) => p.issuer === iss)?.name ?? iss;
  // The page's actions begin from the account session, sealed in its forms, for no longer than Token's session lives.
  const account: AccountSession = { session: view.sessionToken, uid: view.uid, subjects: view.wallet.subjects, provider: provider.id, ...(recoveredWith ? { recovered: true } : {}) };
  const sealed = door.sealer.seal(ACCOUNT_SESSION, account, Math.min(FLOW_TTL, secondsLeft(view.sessionToken)));
  // A transaction is confirmed by a sign-in account's fresh login: recovery accounts confirm nothing.
  const signIn = view.wallet.subjects.filter((s) => !s.recovery);
  const linked = door.providers.filter((p) => signIn.some((s) => s.iss === p.issuer));
  const offers = !recoveredWith;
  sendHtml(res, 200, accountPage({
    signedInWith: provider.name,
    ...(recoveredWith ? { recoveredWith: recoveredWith.map(nameOf) } : {}),
    accounts: view.wallet.subjects.map((s) => ({ provider: nameOf(s.iss), ...(s.recovery ? { recovery: true } : {}) })),
    ...(view.wallet.recovery ? { recoveryThreshold: recoveryThreshold(view.wallet) } : {}),
    ...(offers && recoveryProviders(view.wallet.subjects) >= 2
      ? { threshold: { action: "/account/threshold", hidden: { account: sealed }, providers: linked.map((p) => ({ id: p.id, name: p.name })), most: recoveryProviders(view.wallet.subjects) } }
      : {}),
    claims: Object.entries(view.wallet.claims).map(([name, value]) => ({ name, value, ...(view.wallet.sources?.[name] ? { from: nameOf(view.wallet.sources[name]!) } : {}) })),
    ...(offers ? { details: { action: "/account/claims", hidden: { account: sealed }, providers: linked.map((p) => ({ id: p.id, name: p.name })) } } : {}),
    apps: view.releases.map((r) => ({ name: appName(door, r.clientId), claims: [...r.claims], clientId: r.clientId })),
    ...(offers ? { changeRelease: { action: "/account/release", hidden: { account: sealed }, provider: provider.name } } : {}),
    history: (view.wallet.history ?? []).map((h) => ({
      kind: h.kind, at: new Date(h.at * 1000), provider: nameOf(h.iss),
      ...(h.client_id ? { app: appName(door, h.client_id) } : {}), ...(h.recovery ? { recovery: true } : {}), ...(h.issuers ? { providers: h.issuers.map(nameOf) } : {}),
      ...(h.threshold ? { threshold: h.threshold } : {}),
    })),
    link: { action: "/account/link", hidden: { account: sealed }, providers: door.providers.map((p) => ({ id: p.id, name: p.name })) },
    ...(offers && view.wallet.subjects.length > 1 ? { unlink: { action: "/account/unlink", hidden: { account: sealed }, accounts: unlinkable(door, view.wallet.subjects) } } : {}),
    ...(offers ? { merge: { action: "/account/merge", hidden: { account: sealed }, providers: door.providers.map((p) => ({ id: p.id, name: p.name })) } } : {}),
    ...(offers ? { remove: { action: "/account/delete", hidden: { account: sealed }, providers: linked.map((p) => ({ id: p.id, name: p.name })) } } : {}),
  }), pageCsp(door.providers.map((p) => p.issuer)));
}

/** GET /account/recover: the first round of a recovery, which provider's recovery account to sign in with. */
export function accountRecover(door: DoorContext, { res }: Exchange) {
  sendHtml(res, 200, recoveryPage({ proven: [], needed: 0, providers: door.providers.map((p) => ({ id: p.id, name: p.name })), action: "/account/recover/provider", hidden: {} }),
    pageCsp(door.providers.map((p) => p.issuer)));
}

/**
 * POST /account/recover/provider: a recovery's round at Token (the first, or the next
 * one of the recovery sealed in the page's form), then the provider, forced to ask again.
 */
export async function accountRecoverProvider(door: DoorContext, { req, res }: Exchange) {
  const body = await form(req);
  const sealedState = body.get("recovery");
  const state = sealedState ? door.sealer.open<RecoveryState>(RECOVERY_STATE, sealedState) : undefined;
  if (sealedState && !state) return sendError(res, 400, "This page has expired", "The recovery took too long, so your wallet is not recovered.", RECOVER_AGAIN);
  const provider = door.rp.provider(body.get("provider") ?? "");
  if (!provider || state?.proven.includes(provider.issuer)) return sendError(res, 400, "Unknown provider", "Choose one of the providers listed.", RECOVER_AGAIN);
  const started = Date.now();
  const session = state ? await door.driver.nextRecovery(state, provider.id) : await door.driver.startRecovery(provider.id);
  await goToProvider(door, res, provider, started, session, { prompt: "login", max_age: "0" }, RECOVERY_FLOW, state ? { previous: { uid: state.uid, proven: state.proven } } : {});
}

const RECOVER_AGAIN = "Go back to the recovery page and start again.";

/** The provider's answer to a recovery's round: the next round's page, or, at the threshold, the recovered wallet. */
export async function recoveryAnswer(door: DoorContext, res: Exchange["res"], flow: RecoveryFlow, provider: UpstreamProvider, upstream: UpstreamResult) {
  let outcome;
  try {
    outcome = await door.driver.recover(flow.session, flow.started, upstream, flow.previous);
  } catch (error) {
    const nothing = "Your wallet is not recovered";
    if (error instanceof RecoveryRefused) return sendError(res, 403, nothing, `${error.message[0]!.toUpperCase()}${error.message.slice(1)}.`, RECOVER_AGAIN);
    if (error instanceof NotLinked) return sendError(res, 403, nothing, `The ${provider.name} account you signed in with belongs to another wallet than the recovery accounts you signed in with before.`, RECOVER_AGAIN);
    if (refused(res, error, provider, { nothing, needs: "a wallet is recovered", during: "recovering it" })) return;
    throw error;
  }
  if (outcome.kind === "done") return showAccount(door, res, outcome.view, provider, outcome.view.wallet.history?.at(-1)?.issuers ?? [provider.issuer]);
  const { state } = outcome;
  const sealed = door.sealer.seal(RECOVERY_STATE, state, Math.min(FLOW_TTL, secondsLeft(state.sessionToken)));
  const nameOf = (iss: string) => door.providers.find((p) => p.issuer === iss)?.name ?? iss;
  sendHtml(res, 200, recoveryPage({
    proven: state.proven.map(nameOf),
    needed: state.needed,
    providers: door.providers.filter((p) => !state.proven.includes(p.issuer)).map((p) => ({ id: p.id, name: p.name })),
    action: "/account/recover/provider",
    hidden: { recovery: sealed },
  }), pageCsp(door.providers.map((p) => p.issuer)));
}

const AGAIN = "Go back to the account page and sign in again.";
/** A recovered wallet's page offers a link only (Token refuses the rest too). */
const LINK_FIRST = "After a recovery, link an account to sign in with; then sign in with it to do the rest.";

/** An app as the pages name it: its registered name, or its client_id. */
function appName(door: DoorContext, clientId: string): string {
  return door.clients.get(clientId)?.client_name ?? clientId;
}

/** POST /account/release: a release change at Token (claims withdrawn, or the user forgotten), confirmed at the provider the page was signed in with. */
export async function accountRelease(door: DoorContext, { req, res }: Exchange) {
  const body = await form(req);
  const account = accountSession(door, body);
  if (!account) return sendError(res, 400, "This page has expired", "The account page was open too long, so nothing was changed.", AGAIN);
  if (account.recovered) return sendError(res, 400, "Link an account first", LINK_FIRST, AGAIN);
  const clientId = body.get("client") ?? "";
  const provider = door.rp.provider(account.provider ?? "");
  const change = body.get("change");
  if (!door.clients.has(clientId) || !provider || (change !== "withdraw" && change !== "forget")) {
    return sendError(res, 400, "Unknown app", "Choose one of the apps listed.", AGAIN);
  }
  const started = Date.now();
  const session = await door.driver.beginTransaction(account.session, TransactionKind.RELEASE, provider.id, { clientId: clientId });
  const flow = { uid: account.uid, client_id: clientId, ...(change === "withdraw" ? { keep: body.getAll("keep") } : {}) };
  await goToProvider(door, res, provider, started, session, { prompt: "login", max_age: "0" }, RELEASE_FLOW, flow);
}

/** The provider's answer to a release change's confirming sign-in: the change made, or why not. */
export async function releaseAnswer(door: DoorContext, res: Exchange["res"], flow: ReleaseFlow, provider: UpstreamProvider, upstream: UpstreamResult) {
  const app = appName(door, flow.client_id);
  try {
    await door.driver.changeRelease(flow.session, flow.started, upstream, flow.uid, flow.client_id, flow.keep ? { keep: flow.keep } : { forget: true });
  } catch (error) {
    if (error instanceof NoRelease) return sendError(res, 409, "Nothing was changed", `${app} receives nothing from your wallet.`, AGAIN);
    if (refused(res, error, provider, { nothing: "Nothing was changed", needs: "what an app receives changes", during: `changing what ${app} receives` })) return;
    throw error;
  }
  sendHtml(res, 200, releaseChangedPage(app, !flow.keep));
}

/**
 * Each account of the wallet, as the unlink form names it ("your Dev OP account", and
 * its place among that provider's when there are several), with the providers of the
 * wallet's other accounts to confirm with.
 */
function unlinkable(door: DoorContext, subjects: ReadonlyArray<{ iss: string; sub: string; recovery?: true }>) {
  const provider = (iss: string) => door.providers.find((p) => p.issuer === iss);
  return subjects.map((s, i) => {
    const atSame = subjects.filter((o) => o.iss === s.iss && !o.recovery === !s.recovery);
    const name = provider(s.iss)?.name ?? s.iss;
    const kind = s.recovery ? "recovery account" : "account";
    const label = atSame.length > 1 ? `your ${name} ${kind} ${atSame.indexOf(s) + 1}` : `your ${name} ${kind}`;
    // Only a sign-in account confirms: a recovery account's fresh login confirms nothing.
    const others = new Map(subjects.filter((o, j) => j !== i && !o.recovery).flatMap((o) => { const p = provider(o.iss); return p ? [[p.id, { id: p.id, name: p.name }] as const] : []; }));
    return { label, index: i, confirmWith: [...others.values()] };
  });
}

/** How long a Session Token has left (whole seconds, less a margin for the provider's round trip), by its own exp. */
function secondsLeft(sessionToken: string): number {
  const { exp } = decodeJwt(sessionToken);
  return Math.max(0, (exp ?? 0) - Math.floor(Date.now() / 1000) - 30);
}

/** The account page's sealed account session, or undefined when the page was open too long. */
function accountSession(door: DoorContext, body: URLSearchParams): AccountSession | undefined {
  return door.sealer.open<AccountSession>(ACCOUNT_SESSION, body.get("account") ?? undefined);
}

/** POST /account/delete: a delete transaction at Token, then a forced fresh sign-in at a provider of the wallet to confirm it. */
export function accountDelete(door: DoorContext, exchange: Exchange) {
  return beginTransaction(door, exchange, TransactionKind.DELETE, DELETE_FLOW, "nothing was deleted");
}

/** POST /account/claims: a claims transaction at Token, then a forced fresh sign-in at the account to take details from. */
export function accountClaims(door: DoorContext, exchange: Exchange) {
  return beginTransaction(door, exchange, TransactionKind.CLAIMS, CLAIMS_FLOW, "nothing was changed");
}

/** The provider's answer to a claims update's sign-in: the page to choose which of its details to take. */
export async function claimsAnswer(door: DoorContext, res: Exchange["res"], flow: TransactionFlow, provider: UpstreamProvider, upstream: UpstreamResult) {
  let opened;
  try {
    opened = await door.driver.openClaims(flow.session, flow.started, upstream, flow.uid);
  } catch (error) {
    if (refused(res, error, provider, CLAIMS_WORDS)) return;
    throw error;
  }
  const { state, wallet } = opened;
  // email_verified goes with email (takeClaims), so it is not offered alone.
  const claims = WALLET_CLAIMS.filter((name) => name !== "email_verified" && Object.hasOwn(state.offered, name))
    .map((name) => ({ name, offered: state.offered[name]!, ...(Object.hasOwn(wallet.claims, name) ? { now: wallet.claims[name]! } : {}) }));
  const sealed = door.sealer.seal(CLAIMS_CHOICE, state, Math.min(FLOW_TTL, secondsLeft(state.sessionToken)));
  sendHtml(res, 200, claimsPage({ provider: provider.name, claims, action: "/account/claims/update", hidden: { claims_update: sealed } }));
}

/** POST /account/claims/update: the details the user chose, taken into the wallet. */
export async function claimsUpdate(door: DoorContext, { req, res }: Exchange) {
  const body = await form(req);
  const state = door.sealer.open<ClaimsState>(CLAIMS_CHOICE, body.get("claims_update") ?? undefined);
  if (!state) return sendError(res, 400, "This page has expired", "The page was open too long, so nothing was changed.", AGAIN);
  const chosen = body.getAll("claims").filter((name) => name !== "email_verified" && Object.hasOwn(state.offered, name));
  const provider = door.providers.find((p) => p.issuer === state.iss);
  if (chosen.length === 0) return sendError(res, 400, "Nothing was changed", "No detail was checked.", AGAIN);
  try {
    await door.driver.updateClaims(state, chosen);
  } catch (error) {
    if (provider && refused(res, error, provider, CLAIMS_WORDS)) return;
    throw error;
  }
  sendHtml(res, 200, detailsTakenPage(provider?.name ?? state.iss));
}

const CLAIMS_WORDS = { nothing: "Nothing was changed", needs: "details are taken", during: "taking the details" };

/** POST /account/link: a link transaction at Token (of a sign-in account, or a recovery account), then a forced fresh sign-in at the account to link. */
export function accountLink(door: DoorContext, exchange: Exchange) {
  return beginTransaction(door, exchange, TransactionKind.LINK, LINK_FLOW, "nothing was linked", (body) => (body.get("recovery") === "1" ? { recovery: true } : {}));
}

/** POST /account/unlink: an unlink transaction of the chosen account at Token, then a forced fresh sign-in at another account of the wallet. */
export async function accountUnlink(door: DoorContext, { req, res }: Exchange) {
  const body = await form(req);
  const account = accountSession(door, body);
  if (!account) return sendError(res, 400, "This page has expired", "The account page was open too long, so nothing was unlinked.", AGAIN);
  if (account.recovered) return sendError(res, 400, "Link an account first", LINK_FIRST, AGAIN);
  const [index, providerId] = (body.get("unlink") ?? "").split(":");
  const target = account.subjects?.[Number(index)];
  const provider = door.rp.provider(providerId ?? "");
  if (!target || !/^\d+$/.test(index ?? "") || !provider) return sendError(res, 400, "Unknown account", "Choose one of the accounts listed.", AGAIN);
  const started = Date.now();
  const session = await door.driver.beginTransaction(account.session, TransactionKind.UNLINK, provider.id, { unlink: target });
  await goToProvider(door, res, provider, started, session, { prompt: "login", max_age: "0" }, UNLINK_FLOW, { uid: account.uid, target });
}

/** The provider's answer to an unlink's confirming sign-in: the account unlinked, or why not. */
export async function unlinkAnswer(door: DoorContext, res: Exchange["res"], flow: UnlinkFlow, provider: UpstreamProvider, upstream: UpstreamResult) {
  try {
    await door.driver.unlinkSubject(flow.session, flow.started, upstream, flow.uid, flow.target);
  } catch (error) {
    if (error instanceof UnlinkRefused) return sendError(res, 409, "Nothing was unlinked", `${error.message[0]!.toUpperCase()}${error.message.slice(1)}.`, AGAIN);
    if (refused(res, error, provider, { nothing: "Nothing was unlinked", needs: "an account is unlinked", during: "unlinking the account" })) return;
    throw error;
  }
  sendHtml(res, 200, unlinkedPage(door.providers.find((p) => p.issuer === flow.target.iss)?.name ?? flow.target.iss));
}

/** A transaction begun from the account page's sealed account session, and the browser sent to the chosen provider, forced to ask again. */
async function beginTransaction(door: DoorContext, { req, res }: Exchange, kind: TransactionKind, sealedAs: string, nothingDone: string,
  options: (body: URLSearchParams) => { recovery?: true; threshold?: number; invalid?: true } = () => ({})) {
  const body = await form(req);
  const account = accountSession(door, body);
  if (!account) return sendError(res, 400, "This page has expired", `The account page was open too long, so ${nothingDone}.`, AGAIN);
  const provider = door.rp.provider(body.get("provider") ?? "");
  if (!provider) return sendError(res, 400, "Unknown provider", "Choose one of the providers listed.");
  if (account.recovered && kind !== TransactionKind.LINK) return sendError(res, 400, "Link an account first", LINK_FIRST, AGAIN);
  const chosen = options(body);
  if (chosen.invalid) return sendError(res, 400, "Not a threshold", "The threshold is a whole number, 2 or more.", AGAIN);
  const started = Date.now();
  const session = await door.driver.beginTransaction(account.session, kind, provider.id, chosen);
  await goToProvider(door, res, provider, started, session, { prompt: "login", max_age: "0" }, sealedAs, { uid: account.uid, ...chosen });
}

/** The provider's answer to a link's sign-in: the account linked, or why not. */
export async function linkAnswer(door: DoorContext, res: Exchange["res"], flow: LinkFlow, provider: UpstreamProvider, upstream: UpstreamResult) {
  try {
    await door.driver.linkSubject(flow.session, flow.started, upstream, flow.uid, flow.recovery === true);
  } catch (error) {
    if (error instanceof AlreadyLinked) {
      return error.mine
        ? sendError(res, 409, "Already linked", `That ${provider.name} account is linked to your wallet already.`, AGAIN)
        : sendError(res, 409, "Nothing was linked", `That ${provider.name} account belongs to another hello-mesh wallet. An account is never moved from one wallet to another by linking it.`, AGAIN);
    }
    if (refused(res, error, provider, { nothing: "Nothing was linked", needs: "an account is linked", during: "linking the account" })) return;
    throw error;
  }
  sendHtml(res, 200, linkedPage(provider.name, flow.recovery === true));
}

/** How many distinct providers a wallet's recovery accounts are at: the most its threshold can be. */
function recoveryProviders(subjects: ReadonlyArray<{ iss: string; recovery?: true }>): number {
  return new Set(subjects.filter((s) => s.recovery).map((s) => s.iss)).size;
}

/** POST /account/threshold: a recovery threshold change at Token, confirmed by a forced fresh sign-in at a sign-in account of the wallet. */
export function accountThreshold(door: DoorContext, exchange: Exchange) {
  return beginTransaction(door, exchange, TransactionKind.RECOVERY_THRESHOLD, THRESHOLD_FLOW, "nothing was changed", (body) => {
    const threshold = Number(body.get("threshold"));
    return /^\d{1,2}$/.test(body.get("threshold") ?? "") && threshold >= 2 ? { threshold } : { invalid: true };
  });
}

/** The provider's answer to a threshold change's confirming sign-in: the threshold set, or why not. */
export async function thresholdAnswer(door: DoorContext, res: Exchange["res"], flow: ThresholdFlow, provider: UpstreamProvider, upstream: UpstreamResult) {
  try {
    await door.driver.setRecoveryThreshold(flow.session, flow.started, upstream, flow.uid, flow.threshold);
  } catch (error) {
    if (refused(res, error, provider, { nothing: "Nothing was changed", needs: "the recovery threshold changes", during: "changing it" })) return;
    throw error;
  }
  sendHtml(res, 200, thresholdSetPage(flow.threshold));
}

/** POST /account/merge: a merge transaction at Token, then a forced fresh sign-in at an account of the other wallet. */
export function accountMerge(door: DoorContext, exchange: Exchange) {
  return beginTransaction(door, exchange, TransactionKind.MERGE, MERGE_FLOW, "nothing was merged");
}

/** The provider's answer to a merge's sign-in at the other wallet's account: the wallets merged, or why not. */
export async function mergeAnswer(door: DoorContext, res: Exchange["res"], flow: TransactionFlow, provider: UpstreamProvider, upstream: UpstreamResult) {
  try {
    await door.driver.mergeWallets(flow.session, flow.started, upstream, flow.uid);
  } catch (error) {
    if (error instanceof MergeRefused) return sendError(res, 409, "Nothing was merged", `${error.message[0]!.toUpperCase()}${error.message.slice(1)}.`, AGAIN);
    if (refused(res, error, provider, { nothing: "Nothing was merged", needs: "wallets are merged", during: "merging them" })) return;
    throw error;
  }
  sendHtml(res, 200, mergedPage(provider.name));
}

/** The provider's answer to a delete's confirming sign-in: the wallet deleted, or why not. */
export async function deleteAnswer(door: DoorContext, res: Exchange["res"], flow: TransactionFlow, provider: UpstreamProvider, upstream: UpstreamResult) {
  try {
    await door.driver.deleteWallet(flow.session, flow.started, upstream, flow.uid);
  } catch (error) {
    // WalletDeleted among them: already deleted, by a sign-in that finished a delete this one began.
    if (refused(res, error, provider, { nothing: "Nothing was deleted", needs: "a wallet is deleted", during: "deleting it (a sign-in to an app, say)" })) return;
    throw error;
  }
  sendHtml(res, 200, walletDeletedPage());
}

/**
 * The refusals every transaction's answer shares, in the user's words: a sign-in the
 * provider did not force, an account not of this wallet, a wallet that changed meanwhile,
 * and a wallet deleted (its page). False when `error` is none of them.
 */
function refused(res: Exchange["res"], error: unknown, provider: UpstreamProvider, words: { nothing: string; needs: string; during: string }): boolean {
  if (error instanceof LoginRequired) {
    sendError(res, 403, words.nothing, `${provider.name} did not ask you to sign in just now, and ${words.needs} only after a fresh sign-in.`, AGAIN);
  } else if (error instanceof NotLinked) {
    sendError(res, 403, words.nothing, `The ${provider.name} account you signed in with is not linked to this wallet.`, AGAIN);
  } else if (error instanceof WalletChanged) {
    sendError(res, 409, words.nothing, `Your wallet changed while you were ${words.during}.`, AGAIN);
  } else if (error instanceof RecoveryAccountOnly) {
    sendError(res, 403, words.nothing, `The ${provider.name} account you signed in with is a recovery account: it helps recover the wallet, and confirms nothing else.`, AGAIN);
  } else if (error instanceof WalletDeleted) {
    sendHtml(res, 200, walletDeletedPage());
  } else {
    return false;
  }
  return true;
}
