// The account page (docs/transactions.md): the user's wallet as stored and the apps it
// releases to, shown once after a forced fresh sign-in. hello-mesh keeps no session: to
// see it again, sign in again.

import { type SafeHtml, html } from "./html.js";
import { hiddenInputs, page } from "./layout.js";
import { claimLabel } from "./claim-labels.js";

export interface AccountPageInput {
  /** The provider the user signed in with just now. */
  signedInWith: string;
  /** A recovery just now, with the providers of the recovery accounts that proved it: only a link is offered, to sign in with from now on. */
  recoveredWith?: string[];
  /** Each linked account's provider, by name (its issuer when hello-mesh no longer lists it), and whether it is a recovery account. */
  accounts: Array<{ provider: string; recovery?: boolean }>;
  /** How many recovery accounts, at distinct providers, recover the wallet (when it has any). */
  recoveryThreshold?: number;
  claims: Array<{ name: string; value: string | boolean; from?: string }>;
  /** The apps the user released to, by name, and the claims each receives. */
  apps: Array<{ name: string; claims: string[]; clientId?: string }>;
  /** The form that changes what an app receives, confirmed at `provider` (the one the page was signed in with). */
  changeRelease?: { action: string; hidden: Record<string, string>; provider: string };
  /** The transactions done on the wallet, oldest first: which, when, and the provider each concerned. */
  history: Array<{ kind: "link" | "unlink" | "claims" | "release" | "recovery" | "merge" | "threshold"; at: Date; provider: string; app?: string; recovery?: boolean; providers?: string[]; threshold?: number }>;
  /** The recovery threshold's form, when the wallet has recovery accounts at two providers or more: up to `most`, confirmed at a sign-in account's provider. */
  threshold?: TransactionForm & { most: number };
  /** The claims form: each account's provider to take details from. */
  details?: TransactionForm;
  /** The unlink form, when the wallet has more than one account: each account, and the providers of the others to confirm with. */
  unlink?: { action: string; hidden: Record<string, string>; accounts: Array<{ label: string; index: number; confirmWith: Array<{ id: string; name: string }> }> };
  /** The link form: where it posts, its sealed account session, and every provider an account may be linked at (as a sign-in or a recovery account). */
  link: TransactionForm;
  /** The merge form: every provider the other wallet's account may be at. */
  merge?: TransactionForm;
  /** The delete form: the same, with the wallet's providers to confirm with. */
  remove?: TransactionForm;
}

export interface TransactionForm {
  action: string;
  hidden: Record<string, string>;
  providers: Array<{ id: string; name: string }>;
}

/** A transaction's time as the page says it: to the minute, in UTC, unambiguous in every locale. */
function when(at: Date): string {
  return `${at.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** The wallet: the providers linked to it, the claims it holds, and what each app receives. */
export function accountPage({ signedInWith, recoveredWith, accounts, recoveryThreshold, threshold, claims, apps, changeRelease, history, details, link, unlink, merge, remove }: AccountPageInput): string {
  const value = (v: string | boolean): SafeHtml | string => (typeof v === "boolean" ? (v ? "yes" : "no") : v);
  const signIn = accounts.filter((a) => !a.recovery);
  const recovery = accounts.filter((a) => a.recovery);
  return page({
    title: "Your wallet",
    body: html`<h1>Your wallet</h1>
${recoveredWith
  ? html`<p><strong>You recovered your wallet just now, with your recovery accounts at ${listed(recoveredWith)}. Link an account to sign in with below: then sign in with it to do anything else here.</strong></p>`
  : html`<p>You signed in with ${signedInWith} just now.</p>`}
<h2>Providers you sign in with</h2>
${signIn.length === 0 ? html`<p>None: link one below.</p>` : html`<ul>
${signIn.map((a) => html`<li>${a.provider}</li>
`)}</ul>`}
<h2>Recovery accounts</h2>
${recovery.length === 0
  ? html`<p>None yet. Recovery accounts cannot sign in; if you lose the accounts you sign in with, ${DEFAULT_THRESHOLD_WORDS} of them at different providers recover your wallet. Link them below.</p>`
  : html`<ul>
${recovery.map((a) => html`<li>${a.provider}</li>
`)}</ul>
<p>A recovery account cannot sign in. If you lose the accounts you sign in with, signing in with ${recoveryThreshold ?? 2} of these, at different providers, recovers your wallet${recovery.length < (recoveryThreshold ?? 2) ? html` (link ${(recoveryThreshold ?? 2) - recovery.length} more for that)` : ""}.</p>`}
${threshold ? html`<form method="post" action="${threshold.action}">
${hiddenInputs(threshold.hidden)}
<label for="threshold">Recovery accounts needed to recover your wallet (2 to ${threshold.most})</label>
<input type="number" id="threshold" name="threshold" min="2" max="${threshold.most}" value="${recoveryThreshold ?? 2}" required>
<div class="actions">
${threshold.providers.map((p) => html`<button type="submit" name="provider" value="${p.id}">Set it, confirming with ${p.name}</button>
`)}</div>
</form>` : ""}
<h2>What your wallet holds</h2>
${claims.length === 0
  ? html`<p>Your wallet holds no details about you.</p>`
  : html`<dl>
${claims.map((c) => html`<dt>${claimLabel(c.name)}</dt><dd>${value(c.value)}${c.from ? html` <span class="muted">(from ${c.from})</span>` : ""}</dd>
`)}</dl>`}
${details ? html`<form method="post" action="${details.action}">
${hiddenInputs(details.hidden)}
<p>Your details changed at a provider, or you prefer another account's? Take them from it, after signing in there again:</p>
<div class="actions">
${details.providers.map((p) => html`<button type="submit" name="provider" value="${p.id}">Take details from your ${p.name} account</button>
`)}</div>
</form>` : ""}
<h2>Apps you sign in to</h2>
${apps.length === 0
  ? html`<p>You have not signed in to an app yet.</p>`
  : html`<ul>
${apps.map((app, a) => html`<li><strong>${app.name}</strong>: ${app.claims.length === 0 ? "signs you in, and receives nothing else" : html`receives ${app.claims.map((c, i) => html`${i === 0 ? "" : ", "}${claimLabel(c)}`)}`}
${changeRelease && app.clientId ? html`<form method="post" action="${changeRelease.action}">
${hiddenInputs({ ...changeRelease.hidden, client: app.clientId })}
${app.claims.length > 0 ? html`<fieldset>
<legend>Keep sharing with ${app.name}</legend>
${app.claims.map((c, i) => html`<div class="claim"><input type="checkbox" id="keep-${a}-${i}" name="keep" value="${c}" checked><label for="keep-${a}-${i}">${claimLabel(c)}</label></div>
`)}</fieldset>
<div class="actions"><button type="submit" name="change" value="withdraw">Stop sharing the unchecked details, confirming with ${changeRelease.provider}</button></div>` : ""}
<div class="actions"><button class="danger" type="submit" name="change" value="forget">Forget me at ${app.name}, confirming with ${changeRelease.provider}</button></div>
</form>` : ""}</li>
`)}</ul>
<p class="muted">An app forgetting you asks for your consent at your next sign-in there, and sees a new user: it cannot tie that sign-in to the ones before.</p>`}
<h2>Link another account</h2>
<p>Sign in with another account, at any of these providers, to sign in to your wallet with it too. The provider asks you to sign in again.</p>
<form method="post" action="${link.action}">
${hiddenInputs(link.hidden)}
<div class="actions">
${link.providers.map((p) => html`<button type="submit" name="provider" value="${p.id}">Link an account at ${p.name}</button>
`)}</div>
</form>
<p>Or link a recovery account: it cannot sign in, and only helps recover your wallet.</p>
<form method="post" action="${link.action}">
${hiddenInputs({ ...link.hidden, recovery: "1" })}
<div class="actions">
${link.providers.map((p) => html`<button type="submit" name="provider" value="${p.id}">Link a recovery account at ${p.name}</button>
`)}</div>
</form>
${unlink ? html`<h2>Unlink an account</h2>
<p>An unlinked account no longer signs in to your wallet. You confirm by signing in again with another account of your wallet.</p>
<form method="post" action="${unlink.action}">
${hiddenInputs(unlink.hidden)}
<div class="actions">
${unlink.accounts.flatMap((a) => a.confirmWith.map((p) => html`<button type="submit" name="unlink" value="${a.index}:${p.id}">Unlink ${a.label}, confirming with ${p.name}</button>
`))}</div>
</form>` : ""}
${merge ? html`<h2>Merge another wallet of yours</h2>
<p>Another account of yours has a hello-mesh wallet of its own? Merge the two: sign in with that account again, and both wallets become one. The older wallet stays; apps you used with both keep seeing you as the one they knew first, and are told the other.</p>
<form method="post" action="${merge.action}">
${hiddenInputs(merge.hidden)}
<div class="actions">
${merge.providers.map((p) => html`<button type="submit" name="provider" value="${p.id}">Merge the wallet of your account at ${p.name}</button>
`)}</div>
</form>` : ""}
<h2>What was done to your wallet</h2>
${history.length === 0
  ? html`<p>Nothing yet: no transaction changed your wallet since it was made.</p>`
  : html`<ul>
${history.map((h) => html`<li>${when(h.at)}: ${h.kind === "release"
  ? html`changed what ${h.app ?? "an app"} receives, confirmed at ${h.provider}`
  : h.kind === "recovery"
  ? html`recovered your wallet with your recovery accounts at ${listed(h.providers ?? [h.provider])}`
  : h.kind === "merge"
  ? html`merged two of your wallets into this one, confirmed at ${h.provider}`
  : h.kind === "threshold"
  ? html`set the recovery accounts needed to ${h.threshold ?? 2}, confirmed at ${h.provider}`
  : html`${h.kind === "link" ? (h.recovery ? "linked a recovery account at" : "linked an account at") : h.kind === "unlink" ? "unlinked an account at" : "took details from your account at"} ${h.provider}`}</li>
`)}</ul>`}
${remove ? html`<h2>Delete your wallet</h2>
<p>Deleting your wallet removes the providers linked to it, the details it holds and what each app receives, for good, and the credentials it holds: each one's issuer is told it is gone (unlinked). Apps keep what they received before; ask them to delete it. If you sign in with hello-mesh again, you start a new wallet, and apps see you as a new user.</p>
<form method="post" action="${remove.action}">
${hiddenInputs(remove.hidden)}
<p>To confirm, sign in again with a provider linked to this wallet:</p>
<div class="actions">
${remove.providers.map((p) => html`<button class="danger" type="submit" name="provider" value="${p.id}">Delete my wallet, confirming with ${p.name}</button>
`)}</div>
</form>` : ""}
<p class="muted">Each detail came from a provider you signed in with. hello-mesh keeps no session: to see this page again, <a href="/account">sign in again</a>.</p>`,
  });
}

const DEFAULT_THRESHOLD_WORDS = "two";

/** "A", "A and B", "A, B and C". */
function listed(names: readonly string[]): string {
  return names.length <= 1 ? (names[0] ?? "") : `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
}

export interface RecoveryPageInput {
  /** The providers whose recovery accounts proved this recovery so far. */
  proven: string[];
  /** How many more must (0 before the first round: the wallet's threshold is not known yet). */
  needed: number;
  providers: Array<{ id: string; name: string }>;
  action: string;
  hidden: Record<string, string>;
}

/** A recovery's next round: which provider's recovery account to sign in with. */
export function recoveryPage({ proven, needed, providers, action, hidden }: RecoveryPageInput): string {
  return page({
    title: "Recover your wallet",
    body: html`<h1>Recover your wallet</h1>
${proven.length === 0
  ? html`<p>Lost access to the accounts you sign in with? Sign in with your wallet's recovery accounts, one provider after another: enough of them, at different providers, recover your wallet, and you then link an account to sign in with.</p>`
  : html`<p>Your recovery account at ${listed(proven)} is confirmed. Sign in with ${needed === 1 ? "one more recovery account" : `${needed} more recovery accounts`}, each at another provider.</p>`}
<form method="post" action="${action}">
${hiddenInputs(hidden)}
<div class="actions">
${providers.map((p) => html`<button class="primary" type="submit" name="provider" value="${p.id}">Sign in with your recovery account at ${p.name}</button>
`)}</div>
</form>
<p class="muted">Each provider asks you to sign in again. A recovery must be finished within 15 minutes of its start.</p>`,
  });
}

/** The end of a delete: nothing of the wallet is left to show. */
export function walletDeletedPage(): string {
  return page({
    title: "Your wallet is deleted",
    body: html`<h1>Your wallet is deleted</h1>
<p>hello-mesh removed your wallet: the providers linked to it, the details it held, and what each app received from it.</p>
<p>Apps keep what they received before; ask them to delete it. If you sign in with hello-mesh again, you start a new wallet, and apps see you as a new user.</p>`,
  });
}

/** A fresh sign-in whose subject no wallet holds: an account is made by signing in to an app. */
export function noWalletPage(provider: string): string {
  return page({
    title: "No wallet yet",
    body: html`<h1>No wallet yet</h1>
<p>You signed in with ${provider}, and no hello-mesh wallet belongs to that account.</p>
<p>A wallet is made the first time you sign in to an app with hello-mesh. <a href="/account">Sign in with another provider</a>.</p>`,
  });
}

/** The end of a link: the account signs in to this wallet from now on. */
export function linkedPage(provider: string, recovery = false): string {
  return page({
    title: "Account linked",
    body: html`<h1>Account linked</h1>
${recovery
  ? html`<p>The ${provider} account you signed in with is now one of your wallet's recovery accounts: it cannot sign in, and helps recover your wallet if you lose the accounts you sign in with.</p>`
  : html`<p>The ${provider} account you signed in with is now linked to your wallet: you can sign in to your apps with it, and they see you as the same person.</p>`}
<p><a href="/account">Back to your account page</a> (you sign in again to see it).</p>`,
  });
}

/** The end of a recovery threshold change. */
export function thresholdSetPage(threshold: number): string {
  return page({
    title: "Recovery threshold set",
    body: html`<h1>Recovery threshold set</h1>
<p>From now on, signing in with ${threshold} of your recovery accounts, each at another provider, recovers your wallet.</p>
<p><a href="/account">Back to your account page</a> (you sign in again to see it).</p>`,
  });
}

/** The end of a merge: one wallet, both wallets' accounts. */
export function mergedPage(provider: string): string {
  return page({
    title: "Wallets merged",
    body: html`<h1>Wallets merged</h1>
<p>The wallet of the ${provider} account you signed in with and this one are now one wallet: every account of both signs in to it. The older wallet stayed, with its details; apps you used with both see you as the one they knew first.</p>
<p><a href="/account">Back to your account page</a> (you sign in again to see it).</p>`,
  });
}

/** The end of an unlink: the account no longer signs in to this wallet. */
export function unlinkedPage(provider: string): string {
  return page({
    title: "Account unlinked",
    body: html`<h1>Account unlinked</h1>
<p>The ${provider} account is no longer linked to your wallet: signing in with it starts a wallet of its own.</p>
<p><a href="/account">Back to your account page</a> (you sign in again to see it).</p>`,
  });
}

export interface ClaimsPageInput {
  provider: string;
  /** Each claim the account's ID Token offers: the wallet's value now, and the provider's. */
  claims: Array<{ name: string; now?: string | boolean; offered: string | boolean }>;
  action: string;
  hidden: Record<string, string>;
}

/** Which of the provider's details to take into the wallet: each one differing from the wallet's starts checked. */
export function claimsPage({ provider, claims, action, hidden }: ClaimsPageInput): string {
  const shown = (v: string | boolean | undefined): string => (v === undefined ? "nothing" : typeof v === "boolean" ? (v ? "yes" : "no") : v);
  return page({
    title: `Take details from ${provider}`,
    body: html`<h1>Take details from ${provider}</h1>
${claims.length === 0
  ? html`<p>Your ${provider} account gave no details a wallet holds. <a href="/account">Back to your account page</a>.</p>`
  : html`<form method="post" action="${action}">
${hiddenInputs(hidden)}
<fieldset>
<legend>Take into your wallet</legend>
${claims.map((c, i) => html`<div class="claim">
<input type="checkbox" id="claim-${i}" name="claims" value="${c.name}"${c.now === c.offered ? "" : html` checked`}>
<label for="claim-${i}">${claimLabel(c.name)}: ${shown(c.offered)} <span class="muted">(now ${shown(c.now)})</span></label>
</div>
`)}</fieldset>
<div class="actions"><button class="primary" type="submit">Take the details checked</button></div>
</form>`}
<p class="muted">Apps see a change the next time you sign in to them.</p>`,
  });
}

/** The end of a claims update. */
export function detailsTakenPage(provider: string): string {
  return page({
    title: "Details taken",
    body: html`<h1>Details taken</h1>
<p>Your wallet now holds the details you chose from your ${provider} account. Apps see them the next time you sign in to them.</p>
<p><a href="/account">Back to your account page</a> (you sign in again to see it).</p>`,
  });
}

/** The end of a release change. */
export function releaseChangedPage(app: string, forgot: boolean): string {
  return page({
    title: forgot ? `${app} forgot you` : `${app} receives less`,
    body: html`<h1>${forgot ? `${app} forgot you` : `${app} receives less`}</h1>
<p>${forgot
  ? html`hello-mesh no longer tells ${app} anything about you. If you sign in to it again, it asks for your consent and sees a new user.`
  : html`${app} no longer receives the details you unchecked, from its next sign-in on. What it received before, it keeps: ask it to delete that.`}</p>
<p><a href="/account">Back to your account page</a> (you sign in again to see it).</p>`,
  });
}
