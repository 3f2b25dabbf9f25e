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
  /** The delete form: where it posts, its sealed account session, and the wallet's providers to confirm with. */
  remove: { action: string; hidden: Record<string, string>; providers: Array<{ id: string; name: string }> };
}

/** The wallet: the providers linked to it, the claims it holds, and what each app receives. */
export function accountPage({ signedInWith, providers, claims, apps, remove }: AccountPageInput): string {
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
