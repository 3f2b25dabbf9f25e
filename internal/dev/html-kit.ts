// The development deployment's pages (the development OP's, the demo app's): one small
// kit, so each states only its own style and words. Server-rendered, no script at all;
// the page's one style block is allowed by its hash and nothing else is.

import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

/** Text made safe for HTML content and attribute values. */
export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export interface PageKit {
  page(title: string, body: string): string;
  send(res: ServerResponse, status: number, html: string, setCookie?: string): void;
}

/**
 * Pages in one style. `formAction` names where forms may post: the development OP sets
 * none, as its login form's answer redirects to another origin, and browsers apply
 * form-action to that redirect too.
 */
export function pageKit(style: string, options: { titleSuffix?: string; formAction?: string } = {}): PageKit {
  const csp = [
    "default-src 'none'",
    `style-src 'sha256-${createHash("sha256").update(style).digest("base64")}'`,
    ...(options.formAction ? [`form-action ${options.formAction}`] : []),
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
  return {
    page: (title, body) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}${options.titleSuffix ?? ""}</title><style>${style}</style></head>
<body><main>
${body}
</main></body></html>`,
    send: (res, status, html, setCookie) => {
      res
        .writeHead(status, {
          "content-type": "text/html; charset=utf-8",
          "content-security-policy": csp,
          "cache-control": "no-store",
          "referrer-policy": "no-referrer",
          "x-content-type-options": "nosniff",
          ...(setCookie ? { "set-cookie": setCookie } : {}),
        })
        .end(html);
    },
  };
}

/** A request's body as text, refused past `maxBytes` (`what` names it in the error). */
export async function readBody(req: IncomingMessage, maxBytes: number, what: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new Error(`${what} too large`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}
