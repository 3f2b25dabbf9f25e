import { html } from "./html.js";
import { hiddenInputs, page } from "./layout.js";

export interface ChooserPageInput {
  appName: string;
  providers: Array<{ id: string; name: string }>;
  action: string;
  hidden: Record<string, string>;
  loginHint?: string;
  /** Where a user who lost their sign-in accounts recovers the wallet (the account page's chooser). */
  recoverHref?: string;
}

/** The login page: one form, one submit button per upstream provider. */
export function chooserPage({ appName, providers, action, hidden, loginHint, recoverHref }: ChooserPageInput): string {
  return page({
    title: `Sign in to ${appName}`,
    body: html`<h1>Sign in to ${appName}</h1>
${loginHint ? html`<p>Signing in as <strong>${loginHint}</strong></p>` : ""}
<form method="post" action="${action}">
${hiddenInputs(hidden)}
${providers.length === 0 ? html`<p>No sign-in providers are set up yet.</p>` : ""}
<div class="actions">
${providers.map((p) => html`<button class="primary" type="submit" name="provider" value="${p.id}">Continue with ${p.name}</button>
`)}
</div>
</form>
${recoverHref ? html`<p><a href="${recoverHref}">Lost access to the accounts you sign in with? Recover your wallet</a></p>
` : ""}<p class="muted">hello-mesh keeps no login of its own: it always sends you to your provider to sign in.</p>`,
  });
}
