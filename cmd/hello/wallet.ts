// hello wallet: the credential wallet's client (docs/wallet-server.md). It holds the
// user's keys in a directory of its own (0700, files 0600): $HELLO_WALLET_HOME, or
// ~/.hello-wallet. Built so far: signing in and out, and asking who a call is from.

import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { WalletApi, WalletApiError } from "../../internal/wallet/api-client.js";
import { KeyStore } from "../../internal/wallet/key-store.js";
import { WalletLoginError, login } from "../../internal/wallet/login.js";

export const WALLET_USAGE = `usage: hello wallet <command> [options]

commands:
  login [--server <url>] [--open] [--ca <pem file>]
                 sign in to hello-mesh as this device's wallet client: prints the address to
                 open in a browser (--open also opens it), waits for the browser to come back
                 to a loopback address, and keeps a DPoP-bound access token
  logout         forget the sign-in (and the wallet keys it pinned); the device's keys stay
  whoami         ask hello-mesh whose sign-in this is, with a DPoP-signed call

options:
  --server <url>  hello-mesh's issuer (default: $HELLO_WALLET_SERVER, or http://localhost:9000,
                  what \`hello start\` runs)
  --ca <file>     a CA certificate (PEM) to trust for the server besides the system's
  --home <dir>    where the wallet keeps its keys (default: $HELLO_WALLET_HOME or ~/.hello-wallet)
`;

const DEFAULT_SERVER = "http://localhost:9000";

export async function runWallet(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { server: { type: "string" }, open: { type: "boolean" }, ca: { type: "string" }, home: { type: "string" } },
    });
  } catch (error) {
    process.stderr.write(`hello wallet: ${(error as Error).message}\n${WALLET_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, ...extra] = positionals;
  if (!command || extra.length > 0 || !["login", "logout", "whoami"].includes(command)) {
    process.stderr.write(`hello wallet: ${command ? `unknown command or extra argument "${extra[0] ?? command}"` : "a command is required"}\n${WALLET_USAGE}`);
    return 2;
  }
  const home = values.home ?? process.env.HELLO_WALLET_HOME ?? path.join(os.homedir(), ".hello-wallet");
  const ca = values.ca ? readFileSync(values.ca, "utf8") : undefined;
  try {
    const store = await KeyStore.open(home);
    if (command === "login") {
      const server = values.server ?? process.env.HELLO_WALLET_SERVER ?? DEFAULT_SERVER;
      const saved = await login({
        server,
        store,
        ...(ca ? { ca } : {}),
        // RFC 8252 §7.3 over plain http is for a development server on this machine only.
        allowInsecureHttp: /^http:\/\/(localhost|127\.0\.0\.1|\[::1\])(:|\/|$)/.test(server),
        openUrl: (url) => {
          process.stdout.write(`Open this address in your browser to sign in:\n\n  ${url}\n\nWaiting for the browser to come back…\n`);
          if (values.open) openInBrowser(url);
        },
      });
      process.stdout.write(`Signed in to ${saved.server} until ${new Date(saved.expiresAt * 1000).toISOString()}.\n`);
      return 0;
    }
    if (command === "logout") {
      await store.forgetLogin();
      process.stdout.write("Signed out: the access token and the pinned wallet keys are gone; this device's keys stay.\n");
      return 0;
    }
    const api = await WalletApi.fromStore(store, ca ? { ca } : {});
    const me = await api.call("GET", "/wallet/api/me", z.object({ client_id: z.string(), expires_at: z.number() }));
    process.stdout.write(`Signed in to ${api.server} as the wallet client ${me.client_id}; the access token expires ${new Date(me.expires_at * 1000).toISOString()}.\n`);
    return 0;
  } catch (error) {
    if (error instanceof WalletLoginError || error instanceof WalletApiError || error instanceof Error) {
      process.stderr.write(`hello wallet ${command}: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

/** xdg-open (or open on macOS), detached; failing quietly: the address is printed anyway. */
function openInBrowser(url: string): void {
  const opener = process.platform === "darwin" ? "open" : "xdg-open";
  try {
    const child = spawn(opener, [url], { detached: true, stdio: "ignore" });
    child.on("error", () => {});
    child.unref();
  } catch {
    // the address is on the screen
  }
}
