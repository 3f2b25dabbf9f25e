// The /wallet page (docs/wallet-server.md): a signed-in user's credentials by issuer and
// type, with their status. Nothing of a credential's contents: the wallet server cannot
// read them (they are the issuer's JWE to the user's device); `hello wallet show` can.

import { html } from "./html.js";
import { page } from "./layout.js";

export interface WalletPageCredential {
  readonly issuer: string;
  /** The credential configuration, and its display name when the issuer gave one. */
  readonly type: string;
  readonly typeName?: string;
  readonly status: string;
  readonly version?: string;
  /** For a credential that has not ended: the sealed reference the unlink form posts (wallet-page.ts). */
  readonly unlink?: string;
}

const STATUS_WORDS: Record<string, string> = {
  IN_PROCESS: "Being issued",
  ACTIVE: "Active",
  SUSPENDED_ISSUER: "Suspended by the issuer",
  SUSPENDED_WALLET: "Suspended by you",
  UNLINKED: "Removed from the device",
  CANCELLED: "Cancelled",
  UNKNOWN: "Unknown",
};

/** `provider`: the provider the user signed in with, where the unlink's own fresh sign-in goes. */
export function walletPage(credentials: readonly WalletPageCredential[], provider?: { id: string; name: string }): string {
  const byIssuer = new Map<string, WalletPageCredential[]>();
  for (const c of credentials) byIssuer.set(c.issuer, [...(byIssuer.get(c.issuer) ?? []), c]);
  const sections = [...byIssuer.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([issuer, held]) => html`<section>
<h2>${issuer}</h2>
<table>
<thead><tr><th scope="col">Credential</th><th scope="col">Status</th><th scope="col">Version</th><th scope="col">Action</th></tr></thead>
<tbody>
${held.map((c) => html`<tr><td>${c.typeName ?? c.type}${c.typeName ? html` <small>(${c.type})</small>` : ""}</td><td>${STATUS_WORDS[c.status] ?? c.status}</td><td>${c.version ?? "—"}</td><td>${c.unlink && provider ? html`<form method="post" action="/wallet/unlink"><input type="hidden" name="credential" value="${c.unlink}"><input type="hidden" name="provider" value="${provider.id}"><button class="danger" type="submit">Unlink, confirming with ${provider.name}</button></form>` : ""}</td></tr>
`)}</tbody>
</table>
</section>
`);
  return page({
    title: "Your credentials",
    body: html`<h1>Your credentials</h1>
<p>The credentials your devices hold, by issuer. Their contents are encrypted to your device: hello-mesh cannot read them, and shows only what it may see, each credential's issuer, type and status. <code>hello wallet list</code> and <code>hello wallet show</code> open them on your device.</p>
${credentials.length === 0 ? html`<p>Your wallet holds no credentials yet. Add one with <code>hello wallet add</code>.</p>` : sections}
${credentials.some((c) => c.unlink) ? html`<p>Lost a device? <strong>Unlink</strong> tells the credential's issuer it is gone from your devices, for good, after you sign in once more. Your device would sign that itself (<code>hello wallet unlink</code>); here hello-mesh sends it as its own, and the issuer records it so.</p>` : ""}
<p><a href="/account">Your account page</a> (you sign in again to see it).</p>`,
  });
}

/** The end of a /wallet page unlink. */
export function walletUnlinkedPage(issuer: string, status: string): string {
  const done = status === "UNLINKED";
  return page({
    title: done ? "Credential unlinked" : "Credential not unlinked",
    body: done
      ? html`<h1>Credential unlinked</h1>
<p>${issuer} was told the credential is gone from your devices, as hello-mesh's own unlink. It cannot be used again; a new one needs a new <code>hello wallet add</code>.</p>
<p><a href="/wallet">Your credentials</a> (you sign in again to see them).</p>`
      : html`<h1>Credential not unlinked</h1>
<p>${issuer} did not unlink it; it is ${STATUS_WORDS[status] ?? status}. Try again later, or from your device with <code>hello wallet unlink</code>.</p>
<p><a href="/wallet">Your credentials</a></p>`,
  });
}
