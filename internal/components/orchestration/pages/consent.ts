import { type Interpolation, type SafeHtml, html } from "./html.js";
import { hiddenInputs, page } from "./layout.js";

export interface ConsentPageInput {
  appName: string;
  clientId: string;
  claims: Array<{ name: string; label: string; value: string }>;
  action: string;
  hidden: Record<string, string>;
  /**
   * The user already released these claims to this app (prompt=consent asked to
   * confirm): they are listed, not offered as choices, since the release stands as made.
   */
  alreadyReleased?: boolean;
  /**
   * prompt=consent for an app that has a release: the claims it receives now, which start
   * checked (the others the app asks for start unchecked). The user confirms, or changes it.
   */
  checked?: string[];
}

/**
 * The consent page. Every claim starts checked; an unchecked box is simply
 * absent from the POST, so the handler releases only the names it receives.
 * Values are shown as text only: a picture URL is never loaded.
 */
export function consentPage({ appName, clientId, claims, action, hidden, alreadyReleased, checked }: ConsentPageInput): string {
  if (alreadyReleased) return confirmPage({ appName, clientId, claims, action, hidden });
  const confirming = checked !== undefined;
  const heading = confirming ? `Continue to ${appName}?` : claims.length > 0 ? `${appName} wants to know` : `Sign in to ${appName}`;
  // Ids come from the position, not the claim name, so they are always valid and unique.
  const boxes = claims.map((claim, i) => html`<div class="claim">
<input type="checkbox" id="claim-${i}" name="claims" value="${claim.name}"${!confirming || checked.includes(claim.name) ? html` checked` : ""}>
<label for="claim-${i}">${claim.label}${claim.value ? html` — ${breakable(claim.value)}` : ""}</label>
</div>
`);
  return decisionPage(heading, { action, hidden, clientId }, claims.length > 0
    ? html`${confirming ? html`<p>${appName} asks you to confirm what you share with it. What it receives now is checked: check or uncheck to change it.</p>
` : ""}<fieldset>
<legend>Share with ${appName}</legend>
${boxes}
</fieldset>`
    : confirming
      ? html`<p>${appName} asks you to confirm. It receives only that you signed in.</p>`
      : html`<p>${appName} asks only to sign you in. It will not receive your name, email or other details.</p>`);
}

/** The page around a consent question: the form, its state, Allow and Decline. */
function decisionPage(heading: string, form: Pick<ConsentPageInput, "action" | "hidden" | "clientId">, question: SafeHtml): string {
  return page({
    title: heading,
    body: html`<h1>${heading}</h1>
<form method="post" action="${form.action}">
${hiddenInputs(form.hidden)}
${question}
<div class="actions">
<button class="primary" type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Decline</button>
</div>
</form>
<p class="muted">App ID: ${form.clientId}</p>`,
  });
}

/** prompt=consent for an app the user already shares with: confirm, or decline. */
function confirmPage({ appName, clientId, claims, action, hidden }: ConsentPageInput): string {
  const heading = `Continue to ${appName}?`;
  const list = claims.map((claim) => html`<li>${claim.label}${claim.value ? html` — ${breakable(claim.value)}` : ""}</li>
`);
  return decisionPage(heading, { action, hidden, clientId }, claims.length > 0
    ? html`<p>${appName} asks you to confirm. You already share with it:</p>
<ul>
${list}</ul>`
    : html`<p>${appName} asks you to confirm. It receives only that you signed in.</p>`);
}

/**
 * A value that may break across lines where a reader expects it: after each / . ? & = @
 * of a URL or address (a <wbr> there), never in the middle of a word of it.
 */
export function breakable(value: string): Interpolation[] {
  return value.split(/(?<=[/.?&=@])(?=[^/])/).flatMap((piece, i) => (i === 0 ? [piece] : [html`<wbr>`, piece]));
}
