// What the custodians' commands (hello pki, hello keys, hello keyring) share: one way to
// answer a command line. A usage mistake prints the complaint and the usage text and
// exits 2; a refusal or failure prints `hello <tool> <command>: <why>` and exits 1.

import path from "node:path";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { COMPONENTS, type Component, isComponent } from "../protocol/identity.js";

/** Where a command writes: its results to `log`, its complaints to `error`. */
export interface CommandOutput {
  log(line: string): void;
  error(line: string): void;
}

/** This process's stdout and stderr, a line each. */
export const processOutput: CommandOutput = {
  log: (line) => process.stdout.write(`${line}\n`),
  error: (line) => process.stderr.write(`${line}\n`),
};

/**
 * How to run `hello` again, as this process was run, for hints that run as printed:
 * `hello-mesh` where it was installed under that name (npm install -g <checkout>),
 * otherwise `npx hello` (from the checkout, as the README runs it).
 */
export function hello(): string {
  return path.basename(process.argv[1] ?? "") === "hello-mesh" ? "hello-mesh" : "npx hello";
}

/** A mistake in the command line: answered with the usage text and exit code 2. */
export class UsageError extends Error {}

/** Runs an argument parser (parseArgs is strict: unknown options throw), its complaints as UsageErrors. */
export function usageErrors<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
}

/** A command's options and positional arguments; an unknown option or a missing value is a UsageError. */
export function parseCommandLine<const O extends NonNullable<ParseArgsConfig["options"]>>(args: string[], options: O) {
  return usageErrors(() => parseArgs({ args, options, allowPositionals: true, strict: true }));
}

/** The one positional argument of a command that takes a component: its name, checked. */
export function componentArgument(positionals: string[]): Component {
  const [name, ...extra] = positionals;
  if (name === undefined) throw new UsageError(`a component is required: one of ${COMPONENTS.join(", ")}`);
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
  if (!isComponent(name)) throw new UsageError(`unknown component "${name}": expected one of ${COMPONENTS.join(", ")}`);
  return name;
}

/**
 * Runs one command and answers as every custodian's command does: a UsageError prints
 * `hello <name>: <why>` and `usage` (exit 2); any other error `<failed>: <why>` (exit 1).
 */
export async function answerCommand(
  name: string,
  usage: string,
  out: CommandOutput,
  run: () => Promise<number>,
  failed = `hello ${name}`,
): Promise<number> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof UsageError) {
      out.error(`hello ${name}: ${error.message}\n`);
      out.error(usage);
      return 2;
    }
    out.error(`${failed}: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}

/**
 * Runs `hello <tool> <command> ...`: `commands[command]` with the rest of the arguments,
 * or the usage text for help. `name` says how an error names the command (default
 * `hello <tool> <command>`).
 */
export async function runSubcommand(
  tool: string,
  usage: string,
  args: string[],
  out: CommandOutput,
  commands: Record<string, (rest: string[]) => Promise<number>>,
  name: (command: string, rest: string[]) => string = (command) => `hello ${tool} ${command}`,
): Promise<number> {
  const [command, ...rest] = args;
  if (command === "help" || command === "--help" || command === "-h") {
    out.log(usage);
    return 0;
  }
  const run = command === undefined || !Object.hasOwn(commands, command) ? undefined : commands[command];
  return answerCommand(tool, usage, out, async () => {
    if (!run) throw new UsageError(command === undefined ? `a ${tool} command is required` : `unknown ${tool} command "${command}"`);
    return run(rest);
  }, name(command ?? "", rest));
}
