// A small browser stand-in for tests that are about protocol, not rendering: cookies
// per host (as browsers keep them, whatever the port), redirects followed as a browser
// does, and HTML forms read and submitted. The real-browser tests use Chromium.

export interface Page {
  readonly url: URL;
  readonly status: number;
  readonly body: string;
  readonly headers: Headers;
}

export interface Form {
  readonly action: URL;
  readonly fields: Array<[string, string]>;
  readonly checkboxes: Array<{ name: string; value: string; checked: boolean }>;
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", "#39": "'" };
function unescape(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, entity: string) => {
    if (entity.startsWith("#x")) return String.fromCodePoint(Number.parseInt(entity.slice(2), 16));
    if (entity.startsWith("#")) return String.fromCodePoint(Number(entity.slice(1)));
    return ENTITIES[entity.toLowerCase()] ?? whole;
  });
}
const attribute = (tag: string, name: string) => {
  const match = new RegExp(`\\s${name}="([^"]*)"`, "i").exec(tag);
  return match ? unescape(match[1]!) : undefined;
};

export class Browserless {
  readonly #cookies = new Map<string, Map<string, string>>();

  /** Follows redirects until a page, or until a redirect leaves for `stopAt` (an app's callback). */
  async go(url: URL | string, init: RequestInit = {}, stopAt?: (url: URL) => boolean): Promise<Page> {
    let target = new URL(url);
    let request = init;
    for (let hop = 0; hop < 20; hop++) {
      const headers = new Headers(request.headers);
      const cookie = [...(this.#cookies.get(target.hostname) ?? new Map())].map(([k, v]) => `${k}=${v}`).join("; ");
      if (cookie) headers.set("cookie", cookie);
      const response = await fetch(target, { ...request, headers, redirect: "manual" });
      for (const line of response.headers.getSetCookie()) this.#store(target.hostname, line);
      const location = response.headers.get("location");
      if (response.status >= 300 && response.status < 400 && location) {
        await response.body?.cancel();
        const next = new URL(location, target);
        if (stopAt?.(next)) return { url: next, status: response.status, body: "", headers: response.headers };
        target = next;
        request = response.status === 307 || response.status === 308 ? request : {};
        continue;
      }
      return { url: target, status: response.status, body: await response.text(), headers: response.headers };
    }
    throw new Error("too many redirects");
  }

  /** The first form on the page whose action matches. */
  form(page: Page, action: RegExp = /./): Form {
    for (const match of page.body.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
      const target = attribute(match[1]!, "action") ?? page.url.pathname;
      if (!action.test(target)) continue;
      const fields: Array<[string, string]> = [];
      const checkboxes: Form["checkboxes"] = [];
      for (const input of match[2]!.matchAll(/<input\b[^>]*>/gi)) {
        const name = attribute(input[0], "name");
        if (!name) continue;
        const value = attribute(input[0], "value") ?? "";
        if (attribute(input[0], "type") === "checkbox") checkboxes.push({ name, value, checked: /\schecked\b/i.test(input[0]) });
        else fields.push([name, value]);
      }
      return { action: new URL(target, page.url), fields, checkboxes };
    }
    throw new Error(`no form with an action matching ${action} on ${page.url} (status ${page.status})`);
  }

  /** Submits `form` with its hidden fields, the checked boxes (unless overridden) and `extra`. */
  submit(form: Form, extra: Array<[string, string]>, stopAt?: (url: URL) => boolean, checked?: (box: { name: string; value: string }) => boolean): Promise<Page> {
    const body = new URLSearchParams(form.fields);
    for (const box of form.checkboxes) if (checked ? checked(box) : box.checked) body.append(box.name, box.value);
    for (const [k, v] of extra) body.set(k, v);
    return this.go(form.action, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body }, stopAt);
  }

  #store(host: string, line: string): void {
    const [pair = ""] = line.split(";");
    const eq = pair.indexOf("=");
    if (eq <= 0) return;
    const jar = this.#cookies.get(host) ?? new Map<string, string>();
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (/max-age=0\b/i.test(line) || value === "") jar.delete(name);
    else jar.set(name, value);
    this.#cookies.set(host, jar);
  }
}
