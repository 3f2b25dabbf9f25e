// hello: run, operate and verify hello-mesh.

import { processOutput } from "../../internal/ops/cli.js";
import { PKI_USAGE, runPkiCommand } from "../../internal/ops/pki/cli.js";
import { DEMOAPP_USAGE, DEVOP_USAGE, runDemoApp, runDevOp } from "./devop.js";
import { KEYRING_USAGE, runKeyringCommand } from "./keyring.js";
import { KEYS_USAGE, runKeysCommand } from "./keys.js";
import { METRICS_USAGE, runMetrics } from "./metrics.js";
import { SERVE_USAGE, runServe } from "./serve.js";
import { START_USAGE, runStart } from "./start.js";
import { VERIFY_USAGE, runVerify } from "./verify.js";
import { WALLET_USAGE, runWallet } from "./wallet.js";

const USAGE = `usage: hello <command> [options]

commands:
  start [--config hello.config.json]    build each component, run everything on this machine (development)
  serve <component> --config <file>     run one component as its custodian would
                                        (component: orchestration, token, encryption, storage)
  pki <init-ca|issue|bundle|dev|show>   make custodian CAs, mesh certificates and bundles
  verify [--config hello.config.json]   check that each component runs what this checkout builds,
                                        and that the front door publishes only Token's keys
  keys init <component> --config <file>  make a custodian's own keys for production
  keys lookup <new|install|fingerprint> make the lookup key, or install the copy handed over
  keys <status|rotate|promote|prune|publish> <component>
                                        rotate Token's or Storage's signing keys without downtime
  metrics <component> [--as <custodian>] print a component's metrics, read with a custodian's operator certificate
  keyring <status|rotate|rewrap|drop|storage>  rotate Encryption's record keyring without downtime
  devop --client-id <id> --redirect-uri <uri>  run the development upstream OP on its own
  demoapp --issuer <url> --client-id <id> --client-secret <s>  run the demo app on its own
  wallet <login|add|list|show|present|…>  the credential wallet's client (hello wallet --help)
  help                                  this text
`;

const console_ = processOutput;

/** Each command: how it runs, and its usage text (what --help prints). */
const COMMANDS: Record<string, { usage: string; run: (rest: string[]) => Promise<number> }> = {
  start: { usage: START_USAGE, run: runStart },
  serve: { usage: SERVE_USAGE, run: runServe },
  pki: { usage: PKI_USAGE, run: (rest) => runPkiCommand(rest, console_) },
  verify: { usage: VERIFY_USAGE, run: runVerify },
  keys: { usage: KEYS_USAGE, run: (rest) => runKeysCommand(rest, console_) },
  metrics: { usage: METRICS_USAGE, run: runMetrics },
  keyring: { usage: KEYRING_USAGE, run: (rest) => runKeyringCommand(rest, console_) },
  devop: { usage: DEVOP_USAGE, run: runDevOp },
  demoapp: { usage: DEMOAPP_USAGE, run: runDemoApp },
  wallet: { usage: WALLET_USAGE, run: runWallet },
};

export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  if (command === "help" || command === "--help" || command === "-h") {
    console_.log(USAGE);
    return 0;
  }
  const known = command !== undefined && Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (!known) {
    console_.error(command ? `hello: unknown command "${command}"\n` : "hello: a command is required\n");
    console_.error(USAGE);
    return 2;
  }
  // --help anywhere before a "--" (hello keys rotate --help): the command's usage.
  const options = rest.includes("--") ? rest.slice(0, rest.indexOf("--")) : rest;
  if (options.includes("--help") || options.includes("-h")) {
    console_.log(known.usage);
    return 0;
  }
  return known.run(rest);
}
