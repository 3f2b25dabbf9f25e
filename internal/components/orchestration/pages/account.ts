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
  claims: Array<{ name: string; value: string | boolean }>;
  /** The apps the user released to, by name, and the claims each receives. */
  apps: Array<{ name: string; claims: string[] }>;
  /** The transactions done on the wallet, oldest first: which, when, and the provider each concerned. */
  history: Array<{ kind: "link" | "unlink"; at: Date; provider: string }>;
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
export function accountPage({ signedInWith, providers, claims, apps, history, link, unlink, remove }: AccountPageInput): string {
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
${claims.map((c) => html`<dt>${claimLabel(c.name)}</dt><dd>${value(c.value)}</dd>
`)}</dl>`}
<h2>Apps you sign in to</h2>
${apps.length === 0
  ? html`<p>You have not signed in to an app yet.</p>`
  : html`<ul>
${apps.map((app) => html`<li><strong>${app.name}</strong>: ${app.claims.length === 0 ? "signs you in, and receives nothing else" : html`receives ${app.claims.map((c, i) => html`${i === 0 ? "" : ", "}${claimLabel(c)}`)}`}</li>
`)}</ul>`}
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
  ? html`<p>Nothing yet: no account was linked or unlinked since your wallet was made.</p>`
  : html`<ul>
${history.map((h) => html`<li>${when(h.at)}: ${h.kind === "link" ? "linked" : "unlinked"} an account at ${h.provider}</li>
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
