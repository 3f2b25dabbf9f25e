// A load balancer for replica tests: a plain HTTP reverse proxy that sends each login
// step to the next Orchestration instance in turn, so a login that starts on one
// instance continues on another. Requests outside the login (discovery, JWKS) take
// their own turn, so they never shift which instance serves the next step.

import http from "node:http";
import type { AddressInfo } from "node:net";

/** The front door's endpoints that carry a login from one step to the next. */
const STEPS = new Set(["/authorize", "/authorize/provider", "/consent", "/token", "/userinfo"]);
const isStep = (path: string) => STEPS.has(path) || path.startsWith("/upstream/callback/");

export interface Served {
  readonly path: string;
  /** Index into the backends list. */
  readonly backend: number;
}

export interface RoundRobin {
  readonly port: number;
  /** Every login step in order, with the instance that served it. */
  readonly steps: Served[];
  close(): Promise<void>;
}

export async function startRoundRobin(port: number, backends: readonly number[]): Promise<RoundRobin> {
  const steps: Served[] = [];
  const turns = { step: 0, other: 0 };
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://proxy").pathname;
    const step = isStep(path);
    const backend = step ? turns.step++ % backends.length : turns.other++ % backends.length;
    if (step) steps.push({ path, backend });
    const upstream = http.request(
      { host: "127.0.0.1", port: backends[backend], method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    steps,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
