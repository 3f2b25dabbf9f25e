import { createHash } from "node:crypto";
import { html, render, type SafeHtml } from "./html.js";

// Written inside `html` so it is trusted markup (never escaped), and hashed
// below from this very text: the CSP hash cannot drift from the page.
// No url(), no @import, no web fonts: the pages load nothing from anywhere.
const STYLE = html`
:root{color-scheme:light dark;--bg:#f3f4f6;--card:#fff;--text:#1b1d21;--muted:#596170;--line:#d4d8df;--accent:#1d5bd0;--on-accent:#fff;--focus:#1d5bd0;--danger:#b3261e}
@media (prefers-color-scheme:dark){:root{--bg:#111317;--card:#1c1f24;--text:#e8eaed;--muted:#a4abb6;--line:#3a3f48;--accent:#7fa9ff;--on-accent:#0b1220;--focus:#a8c5ff;--danger:#ff8a80}}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;flex-direction:column;align-items:center;padding:2rem 1rem;background:var(--bg);color:var(--text);font:1rem/1.5 system-ui,-apple-system,Segoe UI,Roboto,Helvetica Neue,Arial,sans-serif}
header,main{width:100%;max-width:26rem}
header{margin-bottom:.75rem;padding:0 .25rem;font-weight:700;letter-spacing:.02em;color:var(--muted)}
main{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:1.75rem 1.5rem;box-shadow:0 1px 3px rgb(0 0 0/.08)}
h1{margin:0 0 1rem;font-size:1.375rem;line-height:1.3;overflow-wrap:anywhere}
h2{margin:1.5rem 0 .5rem;font-size:1.0625rem;line-height:1.3}
p{margin:0 0 1rem;overflow-wrap:anywhere}
.muted{color:var(--muted);font-size:.875rem}
fieldset{margin:0 0 1.25rem;padding:.5rem 1rem .75rem;border:1px solid var(--line);border-radius:8px}
legend{padding:0 .25rem;font-weight:600}
.claim{display:flex;gap:.625rem;align-items:flex-start;padding:.375rem 0}
.claim input{flex:none;width:1.125rem;height:1.125rem;margin:.2rem 0 0;accent-color:var(--accent)}
.claim label{overflow-wrap:break-word;min-width:0}
.actions{display:flex;flex-direction:column;gap:.625rem}
form{margin:0 0 1rem}
dt{font-weight:600}
dd{margin:0 0 .75rem;overflow-wrap:anywhere}
button{width:100%;min-height:2.75rem;padding:.625rem 1rem;font:inherit;font-weight:600;color:var(--text);background:var(--card);border:1px solid var(--line);border-radius:8px;cursor:pointer}
button.primary{color:var(--on-accent);background:var(--accent);border-color:var(--accent)}
button.danger{color:var(--danger);border-color:var(--danger)}
button:hover{filter:brightness(.93)}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
`;

const STYLE_HASH = createHash("sha256").update(render(STYLE), "utf8").digest("base64");

/**
 * The Content-Security-Policy for every page: nothing loads, the one inline
 * style is admitted by hash, no scripts at all. form-action is 'self' because
 * the chooser and consent forms post to the front door's own origin.
 */
export const PAGE_CSP = `default-src 'none'; style-src 'sha256-${STYLE_HASH}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`;

/**
 * PAGE_CSP, with form-action widened to the given redirect targets. Chrome and
 * Safari check form-action against every redirect that follows a form
 * submission (w3c/webappsec-csp#8), so a chooser that redirects to the
 * upstream provider, or a consent page that redirects to the app's
 * redirect_uri, must name that destination or the browser stops the flow.
 * An http(s) URL admits its origin; any other scheme (a native app's) admits
 * that scheme.
 */
export function pageCsp(redirectTargets: readonly string[] = []): string {
  const sources = redirectTargets.map((target) => {
    const url = new URL(target);
    return url.origin === "null" ? url.protocol : url.origin;
  });
  return PAGE_CSP.replace("form-action 'self'", ["form-action 'self'", ...new Set(sources)].join(" "));
}

/** The state a form carries back to the front door, as hidden inputs. */
export function hiddenInputs(hidden: Record<string, string>): SafeHtml[] {
  return Object.entries(hidden).map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`);
}

export function page({ title, body }: { title: string; body: SafeHtml }): string {
  return render(html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="color-scheme" content="light dark">
<title>${title} · hello-mesh</title>
<style>${STYLE}</style>
</head>
<body>
<header>hello-mesh</header>
<main>
${body}
</main>
</body>
</html>
`);
}
