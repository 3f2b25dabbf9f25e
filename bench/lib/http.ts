// The benchmark's HTTP client: node:http over a keep-alive agent (no fetch: its
// per-request cost would be charged to the driver and crowd the two cores the
// components need), and a cookie jar per virtual user, as a browser keeps one.

import http from "node:http";

export interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** Every request of one benchmark goes through one keep-alive agent. */
export const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256 });

export function request(
  url: URL,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.body !== undefined) headers["content-length"] = String(Buffer.byteLength(options.body));
    const req = http.request(
      {
        agent,
        // "localhost" is what the issuers say; connect to the IPv4 loopback they listen on.
        host: url.hostname === "localhost" ? "127.0.0.1" : url.hostname,
        port: url.port,
        path: `${url.pathname}${url.search}`,
        method: options.method ?? "GET",
        headers,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`no answer from ${url.origin}${url.pathname} in 30 s`)));
    req.on("error", reject);
    req.end(options.body);
  });
}

/** Cookies per host (whatever the port), as browsers keep them; enough for these flows. */
export class CookieJar {
  readonly #hosts = new Map<string, Map<string, string>>();

  header(url: URL): string | undefined {
    const jar = this.#hosts.get(url.hostname);
    if (!jar || jar.size === 0) return undefined;
    return [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
  }

  store(url: URL, setCookie: string[] | undefined): void {
    for (const line of setCookie ?? []) {
      const [pair = ""] = line.split(";", 1);
      const eq = pair.indexOf("=");
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let jar = this.#hosts.get(url.hostname);
      if (!jar) this.#hosts.set(url.hostname, (jar = new Map()));
      if (value === "" || /max-age=0\b/i.test(line) || /expires=thu, 01 jan 1970/i.test(line)) jar.delete(name);
      else jar.set(name, value);
    }
  }
}

/** A request that carries and keeps the jar's cookies. */
export async function browse(
  jar: CookieJar,
  url: URL,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  const cookie = jar.header(url);
  const reply = await request(url, cookie ? { ...options, headers: { ...options.headers, cookie } } : options);
  jar.store(url, reply.headers["set-cookie"]);
  return reply;
}

/** The Location of a redirect, resolved against the request URL; throws on anything else. */
export function redirected(reply: Reply, from: URL, step: string): URL {
  const location = reply.headers.location;
  if (reply.status < 300 || reply.status >= 400 || !location) {
    // hello-mesh's error pages say what failed in their first paragraph (never user data).
    const said = /<p>([^<]{1,160})/.exec(reply.body)?.[1] ?? reply.body.slice(0, 120);
    throw new StepError(step, `expected a redirect, got ${reply.status} (${said.trim()})`);
  }
  return new URL(location, from);
}

/** A login that went wrong at a named step: the benchmark counts it and goes on. */
export class StepError extends Error {
  constructor(
    readonly step: string,
    detail: string,
  ) {
    super(`${step}: ${detail}`);
    this.name = "StepError";
  }
}
