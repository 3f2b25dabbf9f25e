// The account page (docs/transactions.md): the user's wallet as stored and the apps it
// releases to, shown once after a forced fresh sign-in. hello-mesh keeps no session: to
// see it again, sign in again.

import { type SafeHtml, html } from "./html.js";
import { hiddenInputs, page } from "./layout.js";
import { claimLabel } from "./claim-labels.js";

export interface AccountPageInput {
  /** The provider the user signed in with just now. */
  signedInWith: string;
  /** Each linked subject's provider, by name (its issuer when hello-mesh no longer lists it). */
  providers: string[];
  claims: Array<{ name: string; value: string | boolean; from?: string }>;
  /** The apps the user released to, by name, and the claims each receives. */
  apps: Array<{ name: string; claims: string[]; clientId?: string }>;
  /** The form that changes what an app receives, confirmed at `provider` (the one the page was signed in with). */
  changeRelease?: { action: string; hidden: Record<string, string>; provider: string };
  /** The transactions done on the wallet, oldest first: which, when, and the provider each concerned. */
  history: Array<{ kind: "link" | "unlink" | "claims" | "release"; at: Date; provider: string; app?: string }>;
  /** The claims form: each account's provider to take details from. */
  details?: TransactionForm;
  /** The unlink form, when the wallet has more than one account: each account, and the providers of the others to confirm with. */
  unlink?: { action: string; hidden: Record<string, string>; accounts: Array<{ label: string; index: number; confirmWith: Array<{ id: string; name: string }> }> };
  /** The link form: where it posts, its sealed account session, and every provider an account may be linked at. */
  link: TransactionForm;
  /** The delete form: the same, with the wallet's providers to confirm with. */
  remove: TransactionForm;
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
export function accountPage({ signedInWith, providers, claims, apps, changeRelease, history, details, link, unlink, remove }: AccountPageInput): string {
  const value = (v: string | boolean): SafeHtml | string => (typeof v === "boolean" ? (v ? "yes" : "no") : v);
  return page({
    title: "Your wallet",
    body: html`<h1>Your wallet</h1>
<p>You signed in with ${signedInWith} just now.</p>
<h2>Providers you sign in with</h2>
<ul>
${providers.map((p) => html`<li>${p}</li>
`)}</ul>
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
${unlink ? html`<h2>Unlink an account</h2>
<p>An unlinked account no longer signs in to your wallet. You confirm by signing in again with another account of your wallet.</p>
<form method="post" action="${unlink.action}">
${hiddenInputs(unlink.hidden)}
<div class="actions">
${unlink.accounts.flatMap((a) => a.confirmWith.map((p) => html`<button type="submit" name="unlink" value="${a.index}:${p.id}">Unlink ${a.label}, confirming with ${p.name}</button>
`))}</div>
</form>` : ""}
<h2>What was done to your wallet</h2>
${history.length === 0
  ? html`<p>Nothing yet: no transaction changed your wallet since it was made.</p>`
  : html`<ul>
${history.map((h) => html`<li>${when(h.at)}: ${h.kind === "release"
  ? html`changed what ${h.app ?? "an app"} receives, confirmed at ${h.provider}`
  : html`${h.kind === "link" ? "linked an account at" : h.kind === "unlink" ? "unlinked an account at" : "took details from your account at"} ${h.provider}`}</li>
`)}</ul>`}
<h2>Delete your wallet</h2>
<p>Deleting your wallet removes the providers linked to it, the details it holds and what each app receives, for good. Apps keep what they received before; ask them to delete it. If you sign in with hello-mesh again, you start a new wallet, and apps see you as a new user.</p>
<form method="post" action="${remove.action}">
${hiddenInputs(remove.hidden)}
<p>To confirm, sign in again with a provider linked to this wallet:</p>
<div class="actions">
${remove.providers.map((p) => html`<button class="danger" type="submit" name="provider" value="${p.id}">Delete my wallet, confirming with ${p.name}</button>
`)}</div>
</form>
<p class="muted">Each detail came from a provider you signed in with. hello-mesh keeps no session: to see this page again, <a href="/account">sign in again</a>.</p>`,
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
export function linkedPage(provider: string): string {
  return page({
    title: "Account linked",
    body: html`<h1>Account linked</h1>
<p>The ${provider} account you signed in with is now linked to your wallet: you can sign in to your apps with it, and they see you as the same person.</p>
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
