// hello keys: a custodian rotates its component's signing keys without downtime
// (docs/key-rotation.md). `args` are what follows `hello keys`; the result is the exit
// code (0 done, 1 refused or failed, 2 usage error).

import { existsSync } from "node:fs";
import path from "node:path";
import { type CommandOutput, UsageError, componentArgument, hello, parseCommandLine, runSubcommand } from "../../internal/ops/cli.js";
import { COMPONENTS, isComponent } from "../../internal/protocol/identity.js";
import { type ComponentConfig, loadAnyComponentConfig, loadComponentConfig } from "../../internal/config/component-config.js";
import {
  type LookupHolder,
  fingerprintOf,
  initKeys,
  installLookupKey,
  lookupKeyFile,
  newLookupKey,
} from "../../internal/ops/keys/init.js";
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

making a custodian's keys (once, for production; never replacing a file; secrets 0600):
  init <component> --config <file>
      make the component's own keys where its configuration names them: token and
      storage their signing keys, encryption its record keyring, orchestration its
      cookie key. The lookup key is made apart: below.
  lookup new --config <own config> --out <file>
      (orchestration's or token's custodian) make the lookup key, install it in your own
      key file, and write the copy for the other holder to <file>, outside your keys
  lookup install <file> --config <own config>
      install the copy the other holder handed over (its format checked, written 0600)
  lookup fingerprint --config <own config>
      print the lookup key's fingerprint; both holders compare it, by voice

rotating signing keys (component: token or storage, the custodians that sign):
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
      rewrite the component's bundle from its key file (its CA is kept; the first
      bundle is made by hello pki bundle)

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
  return runSubcommand("keys", KEYS_USAGE, args, out, {
    ...commands,
    init: (rest) => init(rest, out),
    lookup: (rest) =>
      runSubcommand("keys lookup", KEYS_USAGE, rest, out, {
        new: (more) => lookupNew(more, out),
        install: (more) => lookupInstall(more, out),
        fingerprint: (more) => lookupFingerprint(more, out),
      }),
  });
}

/** A path as a hint shows it: relative to here when it is below here, so that it runs as printed. */
function shown(file: string): string {
  const relative = path.relative(process.cwd(), file);
  return relative && !relative.startsWith("..") && !path.isAbsolute(relative) ? relative : file;
}

/** The certificates directory `hello pki` laid out for this configuration's certificate, if it did. */
function pkiDir(config: ComponentConfig): string {
  const dir = path.dirname(config.tls.cert);
  return path.basename(dir) === config.component ? shown(path.dirname(dir)) : "<your certificates directory>";
}

async function init(args: string[], out: CommandOutput): Promise<number> {
  const { values, positionals } = parseCommandLine(args, { config: { type: "string" } });
  const name = componentArgument(positionals);
  if (!values.config) throw new UsageError("--config <file> is required: the component's own configuration names where its keys go");
  const config = loadComponentConfig(values.config, name);
  for (const key of await initKeys(config)) out.log(`made the ${name} ${key.what} ${shown(key.file)} (0600: keep it secret; it never leaves this custodian)`);
  const signs = config.component === "token" || config.component === "storage";
  const keysOption = signs ? ` --keys ${shown(config.keys.signing)}` : "";
  out.log(`next: publish the ${name} bundle, ${hello()} pki bundle ${name} --dir ${pkiDir(config)}${keysOption} --out ${shown(config.bundles)}, and give it to the other three custodians`);
  if (config.component === "orchestration" || config.component === "token") {
    const other = config.component === "token" ? "orchestration" : "token";
    if (existsSync(config.keys.lookup)) {
      out.log(`the lookup key ${shown(config.keys.lookup)} is already installed (${hello()} keys lookup fingerprint --config ${values.config})`);
    } else {
      out.log(
        `and the lookup key, shared with the ${other} custodian only: one of you makes it (${hello()} keys lookup new --config ${values.config} --out <file to hand over>), the other installs that copy (${hello()} keys lookup install <file> --config <own config>)`,
      );
    }
  }
  if (config.component === "orchestration") out.log("every Orchestration replica needs this same cookie key: copy the file to each, 0600");
  return 0;
}

/** The lookup key's file from --config, which must be Orchestration's or Token's, and the other holder. */
function lookupConfig(values: { config?: string | undefined }): { file: string; other: LookupHolder } {
  if (!values.config) throw new UsageError("--config <file> is required: your own configuration (Orchestration's or Token's) names the lookup key's file");
  const config = loadAnyComponentConfig(values.config);
  if (config.component !== "orchestration" && config.component !== "token") {
    throw new UsageError(`${values.config} configures ${config.component}: only Orchestration's and Token's custodians hold the lookup key`);
  }
  return { file: lookupKeyFile(config), other: config.component === "token" ? "orchestration" : "token" };
}

async function lookupNew(args: string[], out: CommandOutput): Promise<number> {
  const { values, positionals } = parseCommandLine(args, { config: { type: "string" }, out: { type: "string" } });
  if (positionals.length > 0) throw new UsageError(`lookup new takes no arguments, got "${positionals.join(" ")}"`);
  const { file, other } = lookupConfig(values);
  if (!values.out) throw new UsageError("--out <file> is required: where to write the copy you hand to the other holder");
  const { fingerprint } = await newLookupKey(file, values.out);
  out.log(`made the lookup key and installed it in ${shown(file)} (0600)`);
  out.log(`fingerprint: ${fingerprint}`);
  out.log(`wrote the copy for the ${other} custodian to ${shown(values.out)} (0600)`);
  out.log(
    `next: hand ${shown(values.out)} to the ${other} custodian out of band, never in clear (in person on removable media, or encrypted to them, e.g. with age or gpg); they run ${hello()} keys lookup install <file> --config <their ${other} configuration>, and you compare the fingerprint above by voice; then destroy every copy of ${shown(values.out)}`,
  );
  return 0;
}

async function lookupInstall(args: string[], out: CommandOutput): Promise<number> {
  const { values, positionals } = parseCommandLine(args, { config: { type: "string" } });
  const [from, ...extra] = positionals;
  if (from === undefined) throw new UsageError("lookup install takes the file the other custodian handed over");
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
  const { file, other } = lookupConfig(values);
  const { fingerprint, alreadyInstalled, exposed } = await installLookupKey(from, file);
  out.log(alreadyInstalled ? `the lookup key in ${shown(file)} is already this one: nothing to do` : `installed the lookup key in ${shown(file)} (0600)`);
  out.log(`fingerprint: ${fingerprint}`);
  if (exposed) out.log(`warning: ${shown(from)} is readable by others than its owner`);
  out.log(`next: compare the fingerprint with the ${other} custodian's by voice; if it matches, destroy ${shown(from)} and every other copy of it`);
  return 0;
}

async function lookupFingerprint(args: string[], out: CommandOutput): Promise<number> {
  const { values, positionals } = parseCommandLine(args, { config: { type: "string" } });
  if (positionals.length > 0) throw new UsageError(`lookup fingerprint takes no arguments, got "${positionals.join(" ")}"`);
  const { file } = lookupConfig(values);
  out.log(`fingerprint: ${fingerprintOf(file)}  (${shown(file)})`);
  return 0;
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

