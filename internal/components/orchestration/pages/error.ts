import { html } from "./html.js";
import { page } from "./layout.js";

/**
 * What went wrong, in words, and what the user can do next. Callers pass
 * prose, never an Error: a stack trace or internal detail has no place here.
 */
export function errorPage({ title, message, hint }: { title: string; message: string; hint?: string }): string {
  return page({
    title,
    body: html`<h1>${title}</h1>
<p>${message}</p>
${hint ? html`<p class="muted">${hint}</p>` : ""}`,
  });
}
