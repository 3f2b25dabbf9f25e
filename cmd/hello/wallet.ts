// hello wallet: the credential wallet's client (docs/wallet-server.md). It holds the
// user's keys in a directory of its own (0700, files 0600): $HELLO_WALLET_HOME, or
// ~/.hello-wallet. Signing in and out, asking who a call is from, and the flows of
// internal/wallet/wallet-client.ts: add (and resume) credentials, list, show, present.

import { TERMINAL_CREDENTIAL_STATUSES } from "../../internal/protocol/wallet-records.js";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { WalletApi, WalletApiError } from "../../internal/wallet/api-client.js";
import { IssuerTrustError, resolveIssuerId } from "../../internal/wallet/issuer-trust.js";
import { KeyStore } from "../../internal/wallet/key-store.js";
import { WalletLoginError, login } from "../../internal/wallet/login.js";
import {
  type AddCredentialsResult,
  type ManageAction,
  type DocumentInput,
  type PersonInput,
  WalletClientError,
  addCredentials,
  credentialStatus,
  deleteCredential,
  listCredentials,
  manageCredential,
  presentCredential,
  refreshCredential,
  transferCredentials,
  resumeCredentials,
  showCredential,
} from "../../internal/wallet/wallet-client.js";

export const WALLET_USAGE = `usage: hello wallet <command> [options]

commands:
  login [--server <url>] [--open] [--ca <pem file>]
                 sign in to hello-mesh as this device's wallet client: prints the address to
                 open in a browser (--open also opens it), waits for the browser to come back
                 to a loopback address, and keeps a DPoP-bound access token
  logout         forget the sign-in (and the wallet keys it pinned); the device's keys stay
  whoami         ask hello-mesh whose sign-in this is, with a DPoP-signed call
  add <issuer> <configuration>... --document-number <n> --family-name <name> --birthdate <YYYY-MM-DD>
      [--document <file> [--media-type <type>]] [--keys <1-10>] [--no-wait]
                 get credentials (e.g. identity_card driving_licence) from an issuer; <issuer>
                 is its id, or dev for the only issuer hello-mesh lists. Your details and any
                 document are sealed for the issuer here; hello-mesh carries them unread.
                 --keys: presentment keys, one credential each (default 1); --no-wait: do not
                 wait for an issuer that is still deciding (then use resume)
  resume <session id> [--document-number <n> --family-name <name> --birthdate <YYYY-MM-DD>]
      [--document <file> [--media-type <type>]] [--no-wait]
                 go on with a session add left waiting, rejected or asking for a document
  transfer <session id> [--keys <1-10>] [--no-wait]
                 move another device's credentials to this one (signed in as the same
                 user): the issuer issues them again, bound to this device's new keys, and
                 the other device's are unlinked; list shows each credential's session
  list           the credentials in the wallet: issuer, type, status, version, session and
                 the claim names each can disclose (never their values)
  show <instance id>
                 one credential's claims, with their values
  present <instance id> --claims <name,...> --audience <verifier> --nonce <nonce> [--key <n>]
                 print a presentation disclosing only those claims, bound to the verifier's
                 audience and nonce with presentment key n (default 0)
  status <instance id>
                 ask the issuer, through hello-mesh, how a credential stands (suspended by
                 the issuer, unlinked, a newer version); hello-mesh's record takes its answer
  refresh <instance id> [--new-keys <1-10>]
                 fetch the issuer's newer version of a credential (status says when there is
                 one), checked as on arrival, bound to the same keys on this device, and its
                 current display data; --new-keys: bound to that many new presentment keys
                 instead, the old ones removed (the issuer is told KEY_ROTATED)
  suspend <instance id> [--reason <text>]
  unsuspend <instance id> [--reason <text>]
  unlink <instance id> [--reason <text>]
  delete <instance id> [--reason <text>]
                 suspend a credential, lift your own suspension (the issuer's stays until
                 the issuer lifts it), or unlink it for good (its keys on this device are
                 removed). This device signs each with the session's key and the issuer
                 checks that: the wallet server alone can do none of it, and only the
                 device that added a credential can act on it. delete unlinks it first if
                 it has not ended, then removes its record from hello-mesh

options:
  --server <url>  hello-mesh's issuer (default: $HELLO_WALLET_SERVER, or http://localhost:9000,
                  what \`hello start\` runs)
  --ca <file>     a CA certificate (PEM) to trust for the server besides the system's
  --home <dir>    where the wallet keeps its keys (default: $HELLO_WALLET_HOME or ~/.hello-wallet);
                  its issuers.json (optional, 0600) pins issuers' keys over what the server lists
`;

const DEFAULT_SERVER = "http://localhost:9000";

const PERSON_OPTIONS = ["document-number", "family-name", "birthdate"] as const;
const DOCUMENT_OPTIONS = ["document", "media-type"] as const;
/** Each command: how many positionals it takes (min, max) and which options besides --home and --ca. */
const COMMANDS: Record<string, { positionals: [number, number]; options: readonly string[] }> = {
  login: { positionals: [0, 0], options: ["server", "open"] },
  logout: { positionals: [0, 0], options: [] },
  whoami: { positionals: [0, 0], options: [] },
  add: { positionals: [2, 17], options: [...PERSON_OPTIONS, ...DOCUMENT_OPTIONS, "keys", "no-wait"] },
  resume: { positionals: [1, 1], options: [...PERSON_OPTIONS, ...DOCUMENT_OPTIONS, "no-wait"] },
  transfer: { positionals: [1, 1], options: ["keys", "no-wait"] },
  list: { positionals: [0, 0], options: [] },
  show: { positionals: [1, 1], options: [] },
  present: { positionals: [1, 1], options: ["claims", "audience", "nonce", "key"] },
  status: { positionals: [1, 1], options: [] },
  refresh: { positionals: [1, 1], options: ["new-keys"] },
  suspend: { positionals: [1, 1], options: ["reason"] },
  "unsuspend": { positionals: [1, 1], options: ["reason"] },
  unlink: { positionals: [1, 1], options: ["reason"] },
  delete: { positionals: [1, 1], options: ["reason"] },
};

/** The lifecycle commands and the action each asks the issuer for. */
const MANAGE_COMMANDS: Record<string, ManageAction> = { suspend: "SUSPEND", "unsuspend": "RESUME", unlink: "UNLINK" };

class UsageError extends Error {}

export async function runWallet(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        server: { type: "string" },
        open: { type: "boolean" },
        ca: { type: "string" },
        home: { type: "string" },
        "document-number": { type: "string" },
        "family-name": { type: "string" },
        birthdate: { type: "string" },
        document: { type: "string" },
        "media-type": { type: "string" },
        keys: { type: "string" },
        "new-keys": { type: "string" },
        "no-wait": { type: "boolean" },
        claims: { type: "string" },
        audience: { type: "string" },
        nonce: { type: "string" },
        key: { type: "string" },
        reason: { type: "string" },
      },
    });
  } catch (error) {
    process.stderr.write(`hello wallet: ${(error as Error).message}\n${WALLET_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  const spec = command ? COMMANDS[command] : undefined;
  if (!command || !spec) {
    process.stderr.write(`hello wallet: ${command ? `unknown command "${command}"` : "a command is required"}\n${WALLET_USAGE}`);
    return 2;
  }
  const [min, max] = spec.positionals;
  const misplaced = Object.keys(values).filter((name) => name !== "home" && name !== "ca" && !spec.options.includes(name));
  if (rest.length < min || rest.length > max || misplaced.length > 0) {
    const why =
      misplaced.length > 0
        ? `--${misplaced[0]} is not an option of ${command}`
        : rest.length > max
          ? `extra argument "${rest[max]}"`
          : `${command} needs ${min === 1 ? "an argument" : `${min} arguments`}`;
    process.stderr.write(`hello wallet: ${why}\n${WALLET_USAGE}`);
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
    if (command === "whoami") {
      const me = await api.call("GET", "/wallet/api/me", z.object({ client_id: z.string(), expires_at: z.number() }));
      process.stdout.write(`Signed in to ${api.server} as the wallet client ${me.client_id}; the access token expires ${new Date(me.expires_at * 1000).toISOString()}.\n`);
      return 0;
    }
    const progress = (line: string) => process.stderr.write(`${line}\n`);
    if (command === "add") {
      const [given, ...configurations] = rest as [string, ...string[]];
      const person = personOf(values, true)!;
      const issuer = await resolveIssuerId(api, given);
      if (issuer !== given) progress(`dev is ${issuer}.`);
      const result = await addCredentials(api, store, {
        issuer,
        configurations,
        person,
        ...documentOf(values),
        ...(values.keys !== undefined ? { presentmentKeys: integerOption(values.keys, "--keys", 1, 10) } : {}),
        ...(values["no-wait"] ? { wait: false as const } : {}),
        onProgress: progress,
      });
      return reportAdded(result);
    }
    if (command === "resume") {
      const person = personOf(values, false);
      const result = await resumeCredentials(api, store, rest[0]!, {
        ...(person ? { person } : {}),
        ...documentOf(values),
        ...(values["no-wait"] ? { wait: false as const } : {}),
        onProgress: progress,
      });
      return reportAdded(result);
    }
    if (command === "transfer") {
      const result = await transferCredentials(api, store, rest[0]!, {
        ...(values.keys !== undefined ? { presentmentKeys: integerOption(values.keys, "--keys", 1, 10) } : {}),
        ...(values["no-wait"] ? { wait: false as const } : {}),
        onProgress: progress,
      });
      return reportAdded(result);
    }
    if (command === "list") {
      const list = await listCredentials(api, store);
      if (list.length === 0) {
        process.stdout.write("The wallet holds no credentials: hello wallet add gets some.\n");
        return 0;
      }
      for (const c of list) {
        const facts = [
          c.status,
          ...(c.version !== undefined ? [`version ${c.version}`] : []),
          ...(c.count > 0 ? [`${c.count} credential${c.count === 1 ? "" : "s"}`] : []),
          ...(c.expiresAt !== undefined ? [`expires ${new Date(c.expiresAt * 1000).toISOString().slice(0, 10)}`] : []),
        ];
        process.stdout.write(`${c.instanceId}\n  ${c.configuration}${c.display ? ` (${c.display})` : ""} from ${c.issuer}: ${facts.join(", ")}\n  session ${c.sessionId}${c.onThisDevice || TERMINAL_CREDENTIAL_STATUSES.has(c.status) ? "" : " (on another device: hello wallet transfer moves it here)"}\n`);
        if (c.verified) process.stdout.write(`  claims: ${c.claimNames.join(", ")}\n`);
        else if (c.note) process.stdout.write(`  not checked: ${c.note}\n`);
      }
      return 0;
    }
    if (command === "show") {
      const shown = await showCredential(api, store, rest[0]!);
      const facts = [
        shown.status,
        ...(shown.version !== undefined ? [`version ${shown.version}`] : []),
        ...(shown.issuedAt !== undefined ? [`issued ${new Date(shown.issuedAt * 1000).toISOString()}`] : []),
        ...(shown.expiresAt !== undefined ? [`expires ${new Date(shown.expiresAt * 1000).toISOString()}`] : []),
        `${shown.keys} presentment key${shown.keys === 1 ? "" : "s"}`,
      ];
      process.stdout.write(`${shown.configuration} from ${shown.issuer} (${shown.vct})\n  ${facts.join(", ")}\n`);
      for (const [name, value] of Object.entries(shown.claims)) process.stdout.write(`  ${name}: ${JSON.stringify(value)}\n`);
      return 0;
    }
    if (command === "status") {
      const s = await credentialStatus(api, rest[0]!, store);
      const since = s.lastStatusChangeTime ? ` since ${s.lastStatusChangeTime}${s.lastStatusChangeReason ? ` (${s.lastStatusChangeReason})` : ""}` : "";
      process.stdout.write(`${s.instanceId} is ${s.issuerStatus} at the issuer${since}; the issuer's version is ${s.issuerVersion}.\n`);
      if (s.status !== s.issuerStatus) process.stdout.write(`hello-mesh's record stays ${s.status}: it had ended.\n`);
      if (s.expiringAt !== undefined) process.stdout.write(`Its credentials on this device expire ${new Date(s.expiringAt * 1000).toISOString()}: the issuer was told.\n`);
      if (s.updateAvailable) process.stdout.write(`A newer version than this wallet's (${s.version}) is available: hello wallet refresh ${s.instanceId}\n`);
      return 0;
    }
    if (command === "refresh") {
      const r = await refreshCredential(api, store, rest[0]!, values["new-keys"] !== undefined ? { newKeys: integerOption(values["new-keys"], "--new-keys", 1, 10) } : {});
      if (r.state === "PENDING") {
        process.stdout.write(`The issuer is still making the new version of ${r.instanceId}: run refresh again later.\n`);
        return 0;
      }
      const change = r.previousVersion === r.version ? `still version ${r.version}` : `version ${r.version} (was ${r.previousVersion ?? "none"})`;
      process.stdout.write(`Refreshed ${r.instanceId}: ${change}, ${r.count} credential${r.count === 1 ? "" : "s"}, checked.${r.displayName ? ` Shown as "${r.displayName}".` : ""}\n`);
      if (r.keysRotated) process.stdout.write(`They are bound to ${r.count} new presentment key${r.count === 1 ? "" : "s"}; the old ones are removed from this device.\n`);
      return 0;
    }
    if (command === "delete") {
      const d = await deleteCredential(api, store, rest[0]!, values.reason);
      process.stdout.write(`Deleted ${d.instanceId}: ${d.unlinked ? "unlinked at the issuer, and " : ""}its record is gone from hello-mesh and its keys from this device.\n`);
      return 0;
    }
    const action = MANAGE_COMMANDS[command];
    if (action) {
      const result = await manageCredential(api, store, rest[0]!, action, values.reason);
      const now = `${result.instanceId} is ${result.status}${result.previousStatus && result.previousStatus !== result.status ? ` (was ${result.previousStatus})` : ""}`;
      if (result.outcome === "FAILED") {
        process.stderr.write(`hello wallet ${command}: the issuer refused: ${result.failureReason ?? "no reason given"}; ${now}.\n`);
        return 1;
      }
      const done = { COMPLETED: "Done", SCHEDULED: "The issuer will finish it later", NO_CHANGE: "Nothing to change" }[result.outcome] ?? result.outcome;
      process.stdout.write(`${done}: ${now}.${result.keysRemoved ? " Its keys on this device are removed." : ""}\n`);
      return 0;
    }
    // present
    const claims = (values.claims ?? "").split(",").map((c) => c.trim()).filter((c) => c !== "");
    if (claims.length === 0) throw new UsageError("present needs --claims, e.g. --claims family_name,age_over_18");
    if (!values.audience) throw new UsageError("present needs the verifier's --audience");
    if (!values.nonce) throw new UsageError("present needs the verifier's --nonce");
    const presentation = await presentCredential(api, store, rest[0]!, {
      claims,
      audience: values.audience,
      nonce: values.nonce,
      ...(values.key !== undefined ? { key: integerOption(values.key, "--key", 0, 9) } : {}),
    });
    process.stdout.write(`${presentation}\n`);
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`hello wallet ${command}: ${error.message}\n${WALLET_USAGE}`);
      return 2;
    }
    if (error instanceof WalletLoginError || error instanceof WalletApiError || error instanceof WalletClientError || error instanceof IssuerTrustError || error instanceof Error) {
      process.stderr.write(`hello wallet ${command}: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

type Values = Record<string, string | boolean | undefined>;

/** The person's details from the flags: all three (required for add), or none. */
function personOf(values: Values, required: boolean): PersonInput | undefined {
  const given = PERSON_OPTIONS.filter((o) => values[o] !== undefined);
  if (given.length === 0 && !required) return undefined;
  if (given.length < PERSON_OPTIONS.length) {
    throw new UsageError(`give all of ${PERSON_OPTIONS.map((o) => `--${o}`).join(", ")} as on the document (missing: ${PERSON_OPTIONS.filter((o) => values[o] === undefined).map((o) => `--${o}`).join(", ")})`);
  }
  return { documentNumber: String(values["document-number"]), familyName: String(values["family-name"]), birthdate: String(values.birthdate) };
}

function documentOf(values: Values): { document?: DocumentInput } {
  if (values["media-type"] !== undefined && values.document === undefined) throw new UsageError("--media-type goes with --document <file>");
  if (values.document === undefined) return {};
  return { document: { path: String(values.document), ...(values["media-type"] !== undefined ? { mediaType: String(values["media-type"]) } : {}) } };
}

function integerOption(value: string, name: string, min: number, max: number): number {
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) throw new UsageError(`${name} must be a whole number from ${min} to ${max}`);
  return Number(value);
}

function reportAdded(result: AddCredentialsResult & { unlinked?: Array<{ instanceId: string; status: string }> }): number {
  const out = process.stdout;
  if (result.instances.length > 0) {
    out.write(`${result.state === "ISSUED" ? "Added" : "So far added"} to the wallet from ${result.issuer} (session ${result.sessionId}):\n`);
    for (const i of result.instances) {
      out.write(`  ${i.configuration}  ${i.id}  ${i.count} credential${i.count === 1 ? "" : "s"}, version ${i.credentialVersion}\n    claims: ${i.claimNames.join(", ")}\n`);
    }
  }
  for (const u of result.unlinked ?? []) out.write(`Unlinked on the other device: ${u.instanceId} is ${u.status}.\n`);
  if (result.state === "ISSUED") {
    out.write("hello wallet show <instance id> shows a credential's claims; hello wallet present makes a presentation.\n");
    return 0;
  }
  const what = result.waitingFor === "verification" ? `${result.issuer} has not decided yet` : `${result.issuer} has not issued every credential yet`;
  out.write(`${what}${result.timedOut ? " (the wallet stopped waiting)" : ""}. Later, run: hello wallet resume ${result.sessionId}\n`);
  return result.timedOut ? 1 : 0;
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
