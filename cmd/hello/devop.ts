// hello devop and hello demoapp: the development OP and the demo app that `hello start`
// runs, each on its own, for a deployment of four custodians (docs/deploy.md) that
// wants an upstream provider and an app to log in with. Development tools: in-memory
// state, plain HTTP on localhost, accounts with known passwords.

import { UsageError, answerCommand, hello, parseCommandLine, processOutput } from "../../internal/ops/cli.js";
import { DEFAULT_DEV_USERS, startDevOp } from "../../internal/dev/devop/dev-op.js";
import { portRefusal } from "../../internal/dev/ports.js";
import { startDemoApp } from "../../internal/dev/demoapp/demo-app.js";

export const DEVOP_USAGE = `usage: hello devop --client-id <id> [--client-secret <secret>] --redirect-uri <uri>...
                   [--port 9001] [--host 127.0.0.1] [--issuer <url>]

  Runs the development upstream OP (a real OIDC server, node-oidc-provider) until
  Ctrl-C, with one client: hello-mesh's front door, whose redirect URI is
  <issuer>/upstream/callback/<provider id>. Its issuer is http://localhost:<port>
  unless --issuer says otherwise; its keys are at <issuer>/jwks (Token's configuration
  names both). Accounts: ${DEFAULT_DEV_USERS.map((u) => `${u.email} / ${u.password}`).join(", ")}.
  hello start runs two (ports 9001 and 9003), for what needs two providers (recovery):
  a second is another hello devop, --port 9003, its redirect URI ending in its own
  provider id. Development only: in-memory state, plain HTTP, known passwords.`;

export const DEMOAPP_USAGE = `usage: hello demoapp --issuer <url> --client-id <id> --client-secret <secret> [--port 9002] [--host 127.0.0.1]

  Runs the demo app until Ctrl-C: an OpenID Connect relying party (openid-client) of
  the OpenID Provider at --issuer, authenticating with client_secret_basic. Register it
  there with the redirect URI http://localhost:<port>/callback. Development only.`;

const out = processOutput;

export async function runDevOp(args: string[]): Promise<number> {
  return answerCommand("devop", DEVOP_USAGE, out, async () => {
    const { values, positionals } = parseCommandLine(args, { ...serverOptions("9001"), "redirect-uri": { type: "string", multiple: true } });
    if (positionals.length > 0) throw new UsageError(`unexpected arguments: ${positionals.join(" ")}`);
    const port = portOption(values.port);
    const clientId = values["client-id"];
    const redirectUris = values["redirect-uri"] ?? [];
    if (!clientId) throw new UsageError("--client-id is required: the client hello-mesh's front door is at this OP");
    if (redirectUris.length === 0) throw new UsageError("--redirect-uri is required: <issuer>/upstream/callback/<provider id> of the front door");
    const op = await startDevOp({
      port,
      host: values.host,
      ...(values.issuer ? { issuer: values.issuer } : {}),
      clients: [{ client_id: clientId, ...(values["client-secret"] ? { client_secret: values["client-secret"] } : {}), redirect_uris: redirectUris }],
      onServerError: (error) => out.error(`hello devop: ${error.message}`),
    }).catch((error: unknown) => {
      throw listenError(error, port, "devop");
    });
    out.log(`development OP: issuer ${op.issuer}, jwks_uri ${op.jwksUri}, listening on ${op.url}`);
    out.log(`  accounts: ${DEFAULT_DEV_USERS.map((u) => `${u.email} / ${u.password}`).join(", ")}`);
    out.log("Press Ctrl-C to stop.");
    await untilSignalled();
    await op.close();
    return 0;
  });
}

export async function runDemoApp(args: string[]): Promise<number> {
  return answerCommand("demoapp", DEMOAPP_USAGE, out, async () => {
    const { values, positionals } = parseCommandLine(args, serverOptions("9002"));
    if (positionals.length > 0) throw new UsageError(`unexpected arguments: ${positionals.join(" ")}`);
    const port = portOption(values.port);
    for (const option of ["issuer", "client-id", "client-secret"] as const) {
      if (!values[option]) throw new UsageError(`--${option} is required`);
    }
    const app = await startDemoApp({
      issuer: values.issuer!,
      clientId: values["client-id"]!,
      clientSecret: values["client-secret"]!,
      port,
      host: values.host,
    }).catch((error: unknown) => {
      throw listenError(error, port, "demoapp");
    });
    out.log(`demo app: ${app.url} (redirect_uri ${app.redirectUri}), logging in at ${values.issuer}`);
    out.log(`  ▶ Open ${app.url} and click "Log in with hello-mesh".`);
    out.log("Press Ctrl-C to stop.");
    await untilSignalled();
    await app.close();
    return 0;
  });
}

/** The options both servers take: where they listen, the issuer, and the one client. */
function serverOptions<P extends string>(port: P) {
  return {
    port: { type: "string", default: port },
    host: { type: "string", default: "127.0.0.1" },
    issuer: { type: "string" },
    "client-id": { type: "string" },
    "client-secret": { type: "string" },
  } as const;
}

function portOption(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) > 65535) throw new UsageError(`--port takes a port number, not ${JSON.stringify(value)}`);
  return Number(value);
}

function listenError(error: unknown, port: number, name: string): Error {
  const refusal = portRefusal((error as NodeJS.ErrnoException).code, port);
  if (refusal) return new Error(`${refusal}: stop what holds it, or choose another with --port (see ${hello()} ${name} --help)`);
  return error instanceof Error ? error : new Error(String(error));
}

function untilSignalled(): Promise<void> {
  return new Promise((resolve) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => resolve());
  });
}
