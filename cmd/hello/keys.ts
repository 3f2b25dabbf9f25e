// hello keys: a custodian rotates its component's signing keys without downtime
// (docs/key-rotation.md). `args` are what follows `hello keys`; the result is the exit
// code (0 done, 1 refused or failed, 2 usage error).

import { type CommandOutput, UsageError, hello, parseCommandLine, runSubcommand } from "../../internal/ops/cli.js";
import { COMPONENTS, isComponent } from "../../internal/protocol/identity.js";
import { loadComponentConfig } from "../../internal/config/component-config.js";
import {
  type KeyLocation,
  type KeyReport,
  SIGNING_COMPONENTS,
  type SigningComponent,
  keyStatus,
  promoteKeys,
  pruneKeys,
  publishKeys,
  rotateKeys,
} from "../../internal/ops/keys/rotation.js";
import { KEY_PURPOSES, type KeyPurpose, type SigningAlg, type SigningKey } from "../../internal/protocol/signing-keys.js";

export const KEYS_USAGE = `usage: hello keys <command> <component> (--config <file> | --keys <file> --bundles <dir>) [options]

commands (component: token or storage, the custodians that sign):
  status <component>
      each signing key: purpose, alg, status, kid, dates, and whether the bundle publishes it
  rotate <component> [--purpose <p>]... [--alg <a>]...
      add a next key (default: one for every purpose and alg) and publish its public half
      in the component's bundle; it signs nothing yet. Give the bundle to the other custodians.
  promote <component> [--purpose <p>]... [--alg <a>]... [--min-published <s>] [--issuer <url>]
      let each next key sign and retire the key it replaces; refused until the next key
      has been published --min-published seconds (default 300 for id-token keys, the JWKS
      max-age; 60 for the others) and while the bundle lacks it. With --issuer, an
      id-token key must also be in the JWKS the front door serves.
  prune <component> [--purpose <p>]... [--alg <a>]... [--compromised <kid>]...
      drop retired keys whose tokens have all expired; record keys are never dropped.
      --compromised drops that retired key now: its unexpired tokens are refused too
  publish <component>
      rewrite the component's bundle from its key file (its CA is kept)

options:
  --config <file>   the component's own configuration: its key file and bundles directory
  --keys <file>     the signing key file (instead of, or overriding, --config)
  --bundles <dir>   the bundles directory where <component>.json is rewritten

purposes: token: session, access, record, key-set, id-token, userinfo; storage: error, receipt
Orchestration and Token share the lookup key, and Encryption keeps a record keyring:
neither is a signing key (docs/key-rotation.md tells how each is rotated).`;

const KEYS_COMMANDS = ["status", "rotate", "promote", "prune", "publish"] as const;

export async function runKeysCommand(args: string[], out: CommandOutput): Promise<number> {
  const commands = Object.fromEntries(KEYS_COMMANDS.map((command) => [command, (rest: string[]) => keys(command, rest, out)]));
  return runSubcommand("keys", KEYS_USAGE, args, out, commands);
}

async function keys(command: (typeof KEYS_COMMANDS)[number], rest: string[], out: CommandOutput): Promise<number> {
  const { values, positionals } = parseCommandLine(rest, {
    config: { type: "string" },
    keys: { type: "string" },
    bundles: { type: "string" },
    purpose: { type: "string", multiple: true },
    alg: { type: "string", multiple: true },
    "min-published": { type: "string" },
    issuer: { type: "string" },
    compromised: { type: "string", multiple: true },
  });
  const location = locate(positionals, values);
  // Where the keys are, as this command was told: for hints that run as printed.
  const where = values.config ? `--config ${values.config}` : `--keys ${location.keyFile} --bundles ${location.bundles}`;
  const selection = {
    ...(values.purpose ? { purposes: values.purpose.map(purpose) } : {}),
    ...(values.alg ? { algs: values.alg.map(alg) } : {}),
  };
  const only = (allowed: string[]) => {
    for (const option of ["purpose", "alg", "min-published", "issuer", "compromised"] as const) {
      if (values[option] !== undefined && !allowed.includes(option)) throw new UsageError(`${command} takes no --${option}`);
    }
  };
  switch (command) {
    case "status":
      only([]);
      return await status(location, out);
    case "publish": {
      only([]);
      out.log(`wrote the ${location.component} mesh bundle ${await publishKeys(location)}: give it to the other custodians`);
      return 0;
    }
    case "rotate": {
      only(["purpose", "alg"]);
      const added = await rotateKeys(location, selection);
      for (const key of added) out.log(`added ${describe(key)} as next: published, signs nothing yet`);
      out.log(
        `next: give ${location.bundles}/${location.component}.json to the other custodians; once each has installed it, ${hello()} keys promote ${location.component} ${where}`,
      );
      return 0;
    }
    case "promote": {
      only(["purpose", "alg", "min-published", "issuer"]);
      const min = values["min-published"];
      if (min !== undefined && !/^\d+$/.test(min)) throw new UsageError("--min-published takes a number of seconds");
      const result = await promoteKeys(location, {
        ...selection,
        ...(min !== undefined ? { minPublishedSeconds: Number(min) } : {}),
        ...(values.issuer ? { issuer: values.issuer } : {}),
      });
      for (const key of result.promoted) out.log(`promoted ${describe(key)}: it signs from now on`);
      for (const key of result.retired) out.log(`retired ${describe(key)}: still published, so what it signed still verifies`);
      out.log(`next: give the rewritten bundle to the other custodians; later, ${hello()} keys prune ${location.component} ${where}`);
      return 0;
    }
    case "prune": {
      only(["purpose", "alg", "compromised"]);
      const compromised = values.compromised ?? [];
      const { pruned, kept } = await pruneKeys(location, { ...selection, compromised });
      for (const key of pruned) {
        out.log(`pruned ${describe(key)}: ${compromised.includes(key.kid) ? "what it signed is refused from now on" : "every token it signed has expired"}`);
      }
      for (const { key, reason } of kept) out.log(`kept ${describe(key)}: ${reason}`);
      if (pruned.length === 0) out.log("nothing to prune");
      else out.log("next: give the rewritten bundle to the other custodians");
      return 0;
    }
  }
}

async function status(location: KeyLocation, out: CommandOutput): Promise<number> {
  const reports = await keyStatus(location);
  out.log(`${location.component} signing keys in ${location.keyFile}, published in ${location.bundles}/${location.component}.json`);
  const rows = [["purpose", "alg", "status", "kid", "created", "published", "note"], ...reports.map(row)];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) out.log(r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd());
  return 0;
}

function row(report: KeyReport): string[] {
  const note =
    report.status === "next"
      ? report.from
        ? `may sign from ${report.from.toISOString()}`
        : "no created date"
      : report.status === "retired"
        ? report.keptForever
          ? `retired ${report.retired ?? "(no date)"}; kept forever (records)`
          : report.from
            ? `retired ${report.retired}; prunable from ${report.from.toISOString()}`
            : "retired (no date): never pruned automatically"
        : "signs";
  return [report.purpose, report.alg, report.status, report.kid, report.created ?? "-", report.published ? "yes" : "NO", note];
}

const describe = (key: SigningKey) => `the ${key.purpose} ${key.alg} key ${key.kid}`;

function locate(
  positionals: string[],
  values: { config?: string | undefined; keys?: string | undefined; bundles?: string | undefined },
): KeyLocation {
  const [name, ...extra] = positionals;
  if (name === undefined) throw new UsageError(`a component is required: ${SIGNING_COMPONENTS.join(" or ")}`);
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
  if (!isComponent(name)) throw new UsageError(`unknown component "${name}": expected one of ${COMPONENTS.join(", ")}`);
  if (!(SIGNING_COMPONENTS as readonly string[]).includes(name)) {
    throw new UsageError(
      name === "encryption"
        ? "encryption holds no signing key: its record keyring is rotated apart (docs/key-rotation.md)"
        : "orchestration holds no signing key: its lookup key is Token's too, see docs/key-rotation.md for its rotation",
    );
  }
  const component = name as SigningComponent;
  let keys = values.keys;
  let bundles = values.bundles;
  if (values.config) {
    const config = loadComponentConfig(values.config, component);
    keys ??= config.keys.signing;
    bundles ??= config.bundles;
  }
  if (!keys || !bundles) throw new UsageError("say where the keys are: --config <file>, or --keys <file> and --bundles <dir>");
  return { component, keyFile: keys, bundles };
}

function purpose(value: string): KeyPurpose {
  if (!(KEY_PURPOSES as readonly string[]).includes(value)) throw new UsageError(`unknown purpose "${value}": one of ${KEY_PURPOSES.join(", ")}`);
  return value as KeyPurpose;
}

function alg(value: string): SigningAlg {
  if (value !== "EdDSA" && value !== "ES256" && value !== "RS256") throw new UsageError(`unknown alg "${value}": EdDSA, ES256 or RS256`);
  return value;
}

