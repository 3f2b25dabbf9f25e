import { readFileSync } from "node:fs";
import { createServer } from "node:net";

// A port handed out here is written into a config and bound later, by another process.
// Until then nothing holds it, so it must not be a port the kernel would give anyone
// else meanwhile: asking the kernel for port 0 gives one from its ephemeral range, the
// same range every other `listen(0)` (the development OP, a demo app) and every outgoing
// connection draws from. A CI run once lost Token's port that way to the development OP
// started a moment later ("wrong version number": TLS spoken to plain HTTP). So ports
// come from below the ephemeral range, chosen at random, bound once to check, and never
// handed out twice by this process.

const FLOOR = 10_000;
const handedOut = new Set<number>();

/** The first port of the kernel's ephemeral range (Linux; 32768 where it cannot be read). */
function ephemeralStart(): number {
  try {
    const [low] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    return low !== undefined && Number.isInteger(low) ? low : 32_768;
  } catch {
    return 32_768;
  }
}

function tryBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** A TCP port on 127.0.0.1 that nothing listens on (just now) and no `listen(0)` will be given. */
export async function freePort(): Promise<number> {
  const ceiling = ephemeralStart();
  if (ceiling - FLOOR < 1_000) throw new Error(`the ephemeral port range starts at ${ceiling}: too low to keep test ports out of it`);
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = FLOOR + Math.floor(Math.random() * (ceiling - FLOOR));
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    if (await tryBind(port)) return port;
  }
  throw new Error(`no free TCP port between ${FLOOR} and ${ceiling}`);
}
