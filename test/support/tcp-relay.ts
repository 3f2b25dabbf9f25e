// A TCP relay in front of a server, for tests that need a peer to die the way a killed
// process does: its kernel resets every connection (RST), and then nothing listens.

import net from "node:net";

export interface TcpRelay {
  /** https://127.0.0.1:<the relay's port> */
  readonly url: string;
  /** What a killed process's kernel does to its connections: RST, while the relay still listens. */
  crash(): void;
  /** Stops listening; connections already made go on. */
  close(): Promise<void>;
  /** A crash for good: stops listening and resets every connection. */
  kill(): Promise<void>;
}

export async function startTcpRelay(target: number): Promise<TcpRelay> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  const crash = () => sockets.forEach((s) => s.resetAndDestroy());
  return {
    url: `https://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    crash,
    close,
    async kill() {
      const closed = close();
      crash();
      await closed;
    },
  };
}
