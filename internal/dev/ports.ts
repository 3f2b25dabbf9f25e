// Before `hello start` runs anything: is every port it will listen on free? A port held
// by something else (often a previous run's component that outlived it) would otherwise
// answer the readiness probe in place of this run's own process.

import net from "node:net";

export interface WantedPort {
  /** The setting that names it, as the user would change it: "ports.upstream". */
  readonly setting: string;
  readonly host: string;
  readonly port: number;
}

/** Why `port` cannot be listened on, in words ("port 9001 is taken (EADDRINUSE)"); undefined for another error. */
export function portRefusal(code: string | undefined, port: number): string | undefined {
  if (code === "EADDRINUSE") return `port ${port} is taken (EADDRINUSE)`;
  if (code === "EACCES") return `port ${port} is not allowed (EACCES)`;
  return undefined;
}

/** Those of `wanted` that cannot be listened on now, with the reason (EADDRINUSE, EACCES). */
export async function takenPorts(wanted: readonly WantedPort[]): Promise<Array<WantedPort & { code: string }>> {
  const taken: Array<WantedPort & { code: string }> = [];
  for (const want of wanted) {
    const code = await new Promise<string | undefined>((resolve) => {
      const probe = net.createServer();
      probe.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? "error"));
      probe.listen({ port: want.port, host: want.host, exclusive: true }, () => probe.close(() => resolve(undefined)));
    });
    if (code) taken.push({ ...want, code });
  }
  return taken;
}

/** The processes of `pids` that are alive (a previous run's, by its deployment record). */
export function alive(pids: readonly number[]): number[] {
  return pids.filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === "EPERM";
    }
  });
}
