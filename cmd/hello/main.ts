// hello: run, operate and verify hello-mesh.

import { runPkiCommand } from "../../internal/ops/pki/cli.js";
import { runKeyringCommand } from "./keyring.js";
import { runKeysCommand } from "./keys.js";
import { runMetrics } from "./metrics.js";
import { runServe } from "./serve.js";
import { runStart } from "./start.js";
import { runVerify } from "./verify.js";

const USAGE = `usage: hello <command> [options]

commands:
  start [--config hello.config.json]    build each component, run everything on this machine (development)
  serve <component> --config <file>     run one component as its custodian would
                                        (component: orchestration, token, encryption, storage)
  pki <init-ca|issue|bundle|dev|show>   make custodian CAs, mesh certificates and bundles
  verify [--config hello.config.json]   check that each component runs what this checkout builds,
                                        and that the front door publishes only Token's keys
  keys <status|rotate|promote|prune|publish> <component>
                                        rotate Token's or Storage's signing keys without downtime
  metrics <component> [--as <custodian>] print a component's metrics, read with a custodian's operator certificate
  keyring <status|rotate|rewrap|drop|storage>  rotate Encryption's record keyring without downtime
  help                                  this text
`;

const console_ = {
  log: (line: string) => process.stdout.write(`${line}\n`),
  error: (line: string) => process.stderr.write(`${line}\n`),
};

export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  switch (command) {
    case "start":
      return runStart(rest);
    case "serve":
      return runServe(rest);
    case "pki":
      return runPkiCommand(rest, console_);
    case "verify":
      return runVerify(rest);
    case "keys":
      return runKeysCommand(rest, console_);
    case "metrics":
      return runMetrics(rest);
    case "keyring":
      return runKeyringCommand(rest, console_);
    case "help":
    case "--help":
    case "-h":
      console_.log(USAGE);
      return 0;
    default:
      console_.error(command ? `hello: unknown command "${command}"\n` : "hello: a command is required\n");
      console_.error(USAGE);
      return 2;
  }
}
