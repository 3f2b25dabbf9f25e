// hello keyring: rotate Encryption's record keyring without downtime
// (docs/keyring-rotation.md). Encryption's custodian runs status, rotate, rewrap and
// drop with Encryption's configuration and operator certificate; Storage's custodian
// runs `storage usage|restore|forget` with Storage's. Each talks to its own running
// component over the mesh as that custodian's operator; the mesh policy lets no one
// else in. Exit codes: 0 done, 1 refused or failed, 2 usage error.

import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { type CommandOutput, UsageError, hello, parseCommandLine, runSubcommand } from "../../internal/ops/cli.js";
import { type Client, createClient } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { readBundles, trustFromBundles } from "../../mesh/bundle.js";
import { createMeshTransport } from "../../mesh/client.js";
import { type ComponentConfig, loadComponentConfig } from "../../internal/config/component-config.js";
import {
  KeyringAdminService,
  type KeyringStatus,
  RewrapJobState,
} from "../../internal/gen/hello/encryption/v1/keyring_admin_service_pb.js";
import { KeyWrappingAdminService } from "../../internal/gen/hello/storage/v1/key_wrapping_admin_service_pb.js";
import { describeKeyringFile, dropFromKeyringFile, rotateKeyringFile } from "../../internal/components/encryption/keyring-file.js";

export const KEYRING_USAGE = `usage: hello keyring <command> [options]

Encryption's custodian (Encryption's configuration; its operator certificate):
  status --config <encryption.json>
      the keyring, how many records depend on each key, and the re-wrap job
  rotate --config <encryption.json> [--key-id <id>] [--offline]
      add a new random key and make it current; the running Encryption reloads the
      file (no restart) and this waits until it confirms (--offline: do not ask it)
  rewrap --config <encryption.json> [--concurrency <1-16>] [--no-wait]
      move every record's data key to the current key (never reading a record);
      waits, reporting progress, unless --no-wait
  drop <key-id> --config <encryption.json>
      remove an old key from the keyring; refused while any record depends on it

Storage's custodian (Storage's configuration; its operator certificate):
  storage usage --config <storage.json>
      how many records depend on each key, and the undo copies Storage keeps
  storage restore <key-id> --config <storage.json>
      undo a bad re-wrap: records wrapped under <key-id> get back the wrapped key
      they had before their first re-wrap
  storage forget <key-id> --config <storage.json>
      discard the undo copies under an old key, once the re-wrap has proven good

options for every command that reaches a running component:
  --url <https://host:port>      default: the listen address in the configuration
  --operator-cert <file> --operator-key <file>
                                 default: operator.crt and operator.key beside the
                                 component's certificate (hello pki issue <c> --operator)`;

class Refused extends Error {}

const COMMON_OPTIONS = {
  config: { type: "string" },
  url: { type: "string" },
  "operator-cert": { type: "string" },
  "operator-key": { type: "string" },
} as const;

export async function runKeyringCommand(args: string[], out: CommandOutput): Promise<number> {
  return runSubcommand(
    "keyring",
    KEYRING_USAGE,
    args,
    out,
    {
      status: (rest) => status(rest, out),
      rotate: (rest) => rotate(rest, out),
      rewrap: (rest) => rewrap(rest, out),
      drop: (rest) => drop(rest, out),
      storage: (rest) => storage(rest, out),
    },
    (command, rest) => (command === "storage" ? `hello keyring storage ${rest[0] ?? ""}`.trim() : `hello keyring ${command}`),
  );
}

// --- arguments and connections -------------------------------------------------------

type OptionSpec = Record<string, { type: "string" | "boolean"; default?: boolean }>;
type Values = Record<string, string | boolean | undefined>;

function parse(args: string[], options: OptionSpec, positionals: number): { values: Values; positionals: string[] } {
  const parsed = parseCommandLine(args, { ...COMMON_OPTIONS, ...options });
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(positionals === 0 ? `unexpected argument "${parsed.positionals[0]}"` : "a key id is required");
  }
  const values = parsed.values as Values;
  if (typeof values.config !== "string") throw new UsageError("--config <file> (the component's configuration) is required");
  return { values, positionals: parsed.positionals };
}

function configOf<C extends "encryption" | "storage">(values: Values, component: C) {
  return loadComponentConfig(values.config as string, component);
}

/** A client of `service` on `config`'s component, as that component's custodian's operator. */
function operatorClient<S extends DescService>(service: S, config: ComponentConfig, values: Values): Client<S> {
  const certDir = path.dirname(config.tls.cert);
  const certFile = (values["operator-cert"] as string | undefined) ?? path.join(certDir, "operator.crt");
  const keyFile = (values["operator-key"] as string | undefined) ?? path.join(certDir, "operator.key");
  for (const file of [certFile, keyFile]) {
    if (!existsSync(file)) {
      throw new Error(`the ${config.component} operator's ${file} is missing: \`hello pki issue ${config.component} --operator\` makes it (or give --operator-cert and --operator-key)`);
    }
  }
  const host = ["0.0.0.0", "::", ""].includes(config.listen.host) ? "127.0.0.1" : config.listen.host;
  const baseUrl = (values.url as string | undefined) ?? `https://${host.includes(":") ? `[${host}]` : host}:${config.listen.port}`;
  return createClient(
    service,
    createMeshTransport({
      target: config.component,
      baseUrl,
      credentials: { certPem: readFileSync(certFile, "utf8"), keyPem: readFileSync(keyFile, "utf8") },
      trust: trustFromBundles(readBundles(config.bundles, [config.component])),
      defaultTimeoutMs: 30_000,
    }),
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// --- Encryption's custodian ------------------------------------------------------------

async function status(args: string[], out: CommandOutput): Promise<number> {
  const { values } = parse(args, {}, 0);
  const admin = operatorClient(KeyringAdminService, configOf(values, "encryption"), values);
  const { status } = await admin.getKeyringStatus({});
  for (const line of describeStatus(status!)) out.log(line);
  return 0;
}

async function rotate(args: string[], out: CommandOutput): Promise<number> {
  const { values } = parse(args, { "key-id": { type: "string" }, offline: { type: "boolean", default: false } }, 0);
  const config = configOf(values, "encryption");
  const admin = values.offline ? undefined : operatorClient(KeyringAdminService, config, values);
  const { keyId, previous } = await rotateKeyringFile(config.keys.keyring, values["key-id"] ? { keyId: values["key-id"] as string } : {});
  out.log(`rotated: ${keyId} is the current key of ${config.keys.keyring} (was ${previous}; it stays, and still unwraps what it wrapped)`);
  if (admin) {
    await waitFor(admin, (s) => s.currentKeyId === keyId, `the running Encryption to load ${keyId}`);
    out.log(`the running Encryption wraps new records under ${keyId}`);
  }
  out.log(`next: ${hello()} keyring rewrap --config ${values.config}, then ${hello()} keyring drop ${previous} --config ${values.config}`);
  return 0;
}

async function rewrap(args: string[], out: CommandOutput): Promise<number> {
  const { values } = parse(args, { concurrency: { type: "string" }, "no-wait": { type: "boolean", default: false } }, 0);
  const concurrency = values.concurrency === undefined ? 0 : Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 0) throw new UsageError("--concurrency must be a whole number from 1 to 16");
  const admin = operatorClient(KeyringAdminService, configOf(values, "encryption"), values);
  let { status } = await admin.runRewrap({ concurrency });
  out.log(`the re-wrap job is running: moving data keys to ${status!.currentKeyId}`);
  if (values["no-wait"]) return 0;
  let last = "";
  while (status!.job!.state === RewrapJobState.RUNNING) {
    // Each status counts the records by key at Storage (a pass over the table): not too often.
    await sleep(1000);
    status = (await admin.getKeyringStatus({})).status;
    const line = progressLine(status!);
    if (line !== last) out.log(line);
    last = line;
  }
  for (const line of describeStatus(status!)) out.log(line);
  const job = status!.job!;
  if (job.state !== RewrapJobState.SUCCEEDED) throw new Refused(`the re-wrap job stopped: ${job.error || RewrapJobState[job.state]}; run it again to resume`);
  const failed = job.progress.reduce((n, p) => n + p.failed, 0n);
  if (failed > 0n) {
    throw new Refused(
      `${failed} records have a wrapped key that does not open for the storage key Storage names (tampered with or corrupt at Storage); they were left as they are: ask Storage's custodian`,
    );
  }
  const left = remaining(status!);
  if (left.movable > 0n) throw new Refused(`${left.movable} records are still under an old key; run the job again`);
  if (left.legacy > 0n) {
    out.log(`${left.legacy} records written before envelope encryption stay under their old key until they are next updated; that key cannot be dropped until then`);
  }
  out.log(`done: every record the job can move is under ${status!.currentKeyId}`);
  return 0;
}

async function drop(args: string[], out: CommandOutput): Promise<number> {
  const { values, positionals } = parse(args, {}, 1);
  const keyId = positionals[0]!;
  const config = configOf(values, "encryption");
  const file = describeKeyringFile(config.keys.keyring);
  if (!file.keyIds.includes(keyId)) throw new Refused(`${config.keys.keyring} holds no key ${keyId}`);
  if (file.current === keyId) throw new Refused(`${keyId} is the current key; rotate first (hello keyring rotate)`);
  const admin = operatorClient(KeyringAdminService, config, values);
  const { status } = await admin.getKeyringStatus({});
  if (status!.usageError) throw new Refused(`cannot tell whether records depend on ${keyId}: ${status!.usageError}`);
  if (status!.currentKeyId !== file.current) {
    throw new Refused(`the running Encryption's current key is ${status!.currentKeyId}, not ${file.current} as in ${config.keys.keyring}: it has not loaded the file; check its log`);
  }
  if (status!.job!.state === RewrapJobState.RUNNING) throw new Refused("the re-wrap job is running; wait for it to end");
  const usage = status!.keys.find((k) => k.keyId === keyId);
  if (usage && usage.records > 0n) {
    const legacy = usage.legacyRecords > 0n ? ` (${usage.legacyRecords} of them written before envelope encryption, which move only when updated)` : "";
    throw new Refused(`refusing to drop ${keyId}: ${usage.records} records depend on it${legacy}; run hello keyring rewrap first`);
  }
  await dropFromKeyringFile(config.keys.keyring, keyId);
  out.log(`dropped ${keyId} from ${config.keys.keyring}`);
  await waitFor(admin, (s) => !s.keyIds.includes(keyId), `the running Encryption to let go of ${keyId}`);
  out.log(`the running Encryption no longer holds ${keyId}`);
  if (usage && usage.previousWrappings > 0n) {
    out.log(
      `Storage still keeps ${usage.previousWrappings} undo copies wrapped under ${keyId}; until its custodian runs \`hello keyring storage forget ${keyId}\`, keep an offline copy of the old keyring (with it, a bad re-wrap can be undone; without it, the copies are useless)`,
    );
  }
  return 0;
}

async function waitFor(admin: Client<typeof KeyringAdminService>, done: (s: KeyringStatus) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (done((await admin.getKeyringStatus({})).status!)) return;
    } catch (error) {
      last = error;
    }
    await sleep(200);
  }
  throw new Refused(
    `timed out waiting for ${what}${last ? ` (${(last as Error).message})` : ""}: the file is written; Encryption reloads it when it sees the change (check its log)`,
  );
}

function remaining(status: KeyringStatus): { movable: bigint; legacy: bigint } {
  let movable = 0n;
  let legacy = 0n;
  for (const key of status.keys) {
    if (key.current || !key.held) continue;
    movable += key.records - key.legacyRecords;
    legacy += key.legacyRecords;
  }
  return { movable, legacy };
}

function progressLine(status: KeyringStatus): string {
  const parts = status.job!.progress.map((p) => {
    const left = status.keys.find((k) => k.keyId === p.keyId);
    const waiting = left ? left.records - left.legacyRecords : 0n;
    return `${p.keyId}: moved ${p.moved}, skipped ${p.skipped}, failed ${p.failed}, ${waiting} remaining`;
  });
  return `  ${RewrapJobState[status.job!.state].toLowerCase()}: ${parts.join("; ") || "listing"}`;
}

function describeStatus(status: KeyringStatus): string[] {
  const yes = (b: boolean) => (b ? "yes" : "-");
  const rows = [["key id", "held", "current", "records", "legacy", "undo copies"]];
  for (const k of status.keys) {
    rows.push([k.keyId, yes(k.held), yes(k.current), `${k.records}`, `${k.legacyRecords}`, `${k.previousWrappings}`]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = [`keyring: current ${status.currentKeyId}; holds ${status.keyIds.join(", ")}`];
  if (status.usageError) lines.push(`record counts unavailable: ${status.usageError}`);
  lines.push(...rows.map((r) => `  ${r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ")}`.trimEnd()));
  const job = status.job!;
  const when = [
    job.startTime ? `started ${timestampDate(job.startTime).toISOString()}` : "",
    job.endTime ? `ended ${timestampDate(job.endTime).toISOString()}` : "",
  ].filter(Boolean);
  lines.push(`re-wrap job: ${RewrapJobState[job.state].toLowerCase()}${when.length ? ` (${when.join(", ")})` : ""}${job.error ? `: ${job.error}` : ""}`);
  for (const p of job.progress) {
    lines.push(`  ${p.keyId} -> ${job.targetKeyId}: moved ${p.moved}, skipped ${p.skipped} (changed meanwhile), failed ${p.failed}, legacy ${p.legacy}`);
  }
  return lines;
}

// --- Storage's custodian ----------------------------------------------------------------

async function storage(args: string[], out: CommandOutput): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case "usage": {
      const { values } = parse(rest, {}, 0);
      const admin = operatorClient(KeyWrappingAdminService, configOf(values, "storage"), values);
      const { keys } = await admin.getKeyUsage({});
      out.log("records by Encryption keyring key:");
      if (keys.length === 0) out.log("  (none)");
      for (const k of keys) {
        out.log(`  ${k.keyId}: ${k.records} records (${k.legacyRecords} legacy), ${k.previousWrappings} undo copies`);
      }
      return 0;
    }
    case "restore": {
      const { values, positionals } = parse(rest, {}, 1);
      const admin = operatorClient(KeyWrappingAdminService, configOf(values, "storage"), values);
      const { restored } = await admin.restorePreviousWrappings({ keyId: positionals[0]! });
      out.log(`restored the earlier wrapped key of ${restored} records that were wrapped under ${positionals[0]}`);
      return 0;
    }
    case "forget": {
      const { values, positionals } = parse(rest, {}, 1);
      const admin = operatorClient(KeyWrappingAdminService, configOf(values, "storage"), values);
      const { forgotten } = await admin.forgetPreviousWrappings({ keyId: positionals[0]! });
      out.log(`discarded ${forgotten} undo copies wrapped under ${positionals[0]}`);
      return 0;
    }
    default:
      throw new UsageError(sub === undefined ? "a storage command is required (usage, restore, forget)" : `unknown storage command "${sub}"`);
  }
}
