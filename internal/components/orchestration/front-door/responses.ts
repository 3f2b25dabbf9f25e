// The front door's answers: pages for the browser, JSON for apps' back channel, and
// the redirect (or form_post) that takes a code or an error back to the app.

import { createHash } from "node:crypto";
import type http from "node:http";
import { PAGE_CSP, hiddenInputs, page, pageCsp } from "../pages/layout.js";
import { html } from "../pages/html.js";
import { errorPage } from "../pages/error.js";
import type { AuthorizationRequest } from "./authorization-request.js";

/** Retry-After on the "unavailable" page and a 503 /healthz/ready: about how long a component takes to restart. */
export const RETRY_AFTER_SECONDS = 5;

export function sendHtml(res: http.ServerResponse, status: number, html: string, csp = PAGE_CSP) {
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "content-security-policy": csp,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
  });
  res.end(html);
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", pragma: "no-cache", ...headers });
  res.end(typeof body === "string" ? body : JSON.stringify(body));
}

export function sendError(res: http.ServerResponse, status: number, title: string, message: string, hint?: string) {
  sendHtml(res, status, errorPage({ title, message, ...(hint ? { hint } : {}) }));
}

/** A 303 to `location`, which no cache keeps. */
export function redirect(res: http.ServerResponse, location: string) {
  res.writeHead(303, { location, "cache-control": "no-store" });
  res.end();
}

/** Back to the app: the code or the error, with state and iss (RFC 9207). */
export function answerApp(
  res: http.ServerResponse,
  issuer: string,
  to: Pick<AuthorizationRequest, "redirect_uri" | "state" | "response_mode">,
  params: Record<string, string>,
) {
  const all: Record<string, string> = { ...params, ...(to.state ? { state: to.state } : {}), iss: issuer };
  if (to.response_mode === "form_post") {
    // No character here is one the template escapes, so the hash matches what is sent.
    const script = "document.forms[0].submit()";
    const hash = createHash("sha256").update(script).digest("base64");
    const body = html`<form method="post" action="${to.redirect_uri}">${hiddenInputs(all)}<p>Returning you to the app…</p><button type="submit">Continue</button></form><script>${script}</script>`;
    sendHtml(res, 200, page({ title: "Returning to the app", body }), `${pageCsp([to.redirect_uri])}; script-src 'sha256-${hash}'`);
    return;
  }
  const url = new URL(to.redirect_uri);
  for (const [k, v] of Object.entries(all)) url.searchParams.set(k, v);
  redirect(res, url.toString());
}
