// A load balancer in front of Orchestration's replicas, for the fault tests: what an
// operator's HTTP load balancer does (docs/replicas.md), no more. Requests go round-robin
// to the replicas; a replica whose connection is refused is skipped for a second, and the
// request goes on to the next one, which is safe because a refused connection carried
// nothing. A replica that fails after it got the request (killed under it) is not asked
// again, since it may have acted: the browser gets a 502 from the balancer, as it would
// from any, and tries again.

import http from "node:http";
import type { AddressInfo } from "node:net";

export interface LoadBalancer {
  readonly port: number;
  /** Requests sent on to another replica because one refused the connection. */
  readonly failovers: number;
  close(): Promise<void>;
}

/** How long a replica that refused a connection is left out. */
const SKIP_MS = 1_000;

export async function startLoadBalancer(port: number, backends: readonly number[]): Promise<LoadBalancer> {
  let turn = 0;
  let failovers = 0;
  const downUntil = new Map<number, number>();
  const server = http.createServer(async (req, res) => {
    // Small bodies (forms, token requests): read whole, so that a refused attempt can be repeated.
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const now = Date.now();
    const order = backends.map((_, i) => backends[(turn + i) % backends.length]!);
    turn++;
    const candidates = [...order.filter((p) => (downUntil.get(p) ?? 0) <= now), ...order.filter((p) => (downUntil.get(p) ?? 0) > now)];
    for (const [i, backend] of candidates.entries()) {
      const outcome = await forward(backend, req, body, res);
      if (outcome !== "refused") return;
      downUntil.set(backend, Date.now() + SKIP_MS);
      if (i < candidates.length - 1) failovers++;
    }
    res.writeHead(502, { "content-type": "text/plain" }).end("no replica of the front door answers\n");
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    get failovers() {
      return failovers;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Sends the request to one replica; "refused" when it could not be reached at all. */
function forward(backend: number, req: http.IncomingMessage, body: Buffer, res: http.ServerResponse): Promise<"done" | "refused"> {
  return new Promise((resolve) => {
    let answered = false;
    const upstream = http.request(
      { host: "127.0.0.1", port: backend, method: req.method, path: req.url, headers: { ...req.headers, "content-length": String(body.length) } },
      (answer) => {
        answered = true;
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        answer.on("end", () => resolve("done"));
        answer.on("error", () => {
          res.destroy();
          resolve("done");
        });
      },
    );
    upstream.on("error", (error: NodeJS.ErrnoException) => {
      if (!answered && error.code === "ECONNREFUSED") return resolve("refused");
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" }).end("the front door's replica failed under this request\n");
      else res.destroy();
      resolve("done");
    });
    upstream.end(body);
  });
}
