// node-oidc-provider (the library the development OP is built on) as an OpenID
// Provider in its own process, in two parts of the benchmark: the yardstick (apps log
// in at it directly) and the mesh's upstream provider (the one OP kind: a real OIDC
// server, not a fake of the protocol). It does the work one complete login needs: an
// authorization request with PKCE S256 and a nonce, a login and a consent (given at
// once by the interaction route, for whoever `login_hint` names: no page is rendered,
// as none is in hello-mesh's returning-user login), the code, and the token exchange
// (client_secret_basic) with an RS256 ID Token carrying the profile and email claims.
//
// Its storage adapter is an indexed in-memory one (the development OP's scans on
// findByUid, which is right for a handful of test logins and wrong for thousands).
//
//   node --import tsx bench/oidc-provider-op.ts --client-id ID --client-secret S --redirect-uri URL [--redirect-uri URL]
// prints one JSON line {"issuer", "jwksUri"} when it listens.

import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { exportJWK, generateKeyPair } from "jose";
import type { Adapter, AdapterPayload, Configuration } from "oidc-provider";

const { values } = parseArgs({
  options: { "client-id": { type: "string" }, "client-secret": { type: "string" }, "redirect-uri": { type: "string", multiple: true } },
});
const clientId = values["client-id"];
const clientSecret = values["client-secret"];
const redirectUris = values["redirect-uri"] ?? [];
if (!clientId || !clientSecret || redirectUris.length === 0) {
  process.stderr.write("usage: oidc-provider-op.ts --client-id ID --client-secret SECRET --redirect-uri URL...\n");
  process.exit(2);
}

// oidc-provider 9 warns once at import that Node 20 is not its preferred runtime.
const warn = console.warn;
console.warn = () => {};
const { default: Provider } = await import("oidc-provider");
console.warn = warn;

let handler: http.RequestListener = (_req, res) => res.writeHead(503).end();
const server = http.createServer((req, res) => handler(req, res));
server.keepAliveTimeout = 60_000;
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

const { privateKey } = await generateKeyPair("RS256", { extractable: true });
const configuration: Configuration = {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    response_types: ["code"],
    grant_types: ["authorization_code"],
    token_endpoint_auth_method: "client_secret_basic",
    id_token_signed_response_alg: "RS256",
  }],
  jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: randomBytes(8).toString("base64url"), alg: "RS256", use: "sig" }] },
  cookies: { keys: [randomBytes(32).toString("base64url")] },
  adapter: memoryAdapter,
  findAccount: (_ctx, sub) => ({
    accountId: sub,
    claims: () => ({ sub, email: `${sub}@bench.example`, email_verified: true, name: `Bench ${sub}`, given_name: "Bench", family_name: sub }),
  }),
  scopes: ["openid", "email", "profile"],
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name", "given_name", "family_name"] },
  // As hello-mesh does: the released claims are in the ID Token.
  conformIdTokenClaims: false,
  responseTypes: ["code"],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  clientBasedCORS: () => false,
  renderError: (ctx, out) => {
    ctx.type = "json";
    ctx.body = out;
  },
};
const provider = new Provider(issuer, configuration);
const callback = provider.callback();

handler = (req, res) => {
  const match = /^\/interaction\/([\w-]+)$/.exec((req.url ?? "").split("?")[0]!);
  if (!match) return void callback(req, res);
  void (async () => {
    // Login and consent in one step, for the account the request's login_hint names.
    const details = await provider.interactionDetails(req, res);
    const accountId = String(details.params.login_hint ?? "");
    if (!/^[\w.-]{1,64}$/.test(accountId)) return void res.writeHead(400).end("login_hint names no account");
    const grant = new provider.Grant({ accountId, clientId: String(details.params.client_id) });
    grant.addOIDCScope(String(details.params.scope));
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: false });
  })().catch((error: unknown) => {
    if (!res.headersSent) res.writeHead(500).end((error as Error).message);
  });
};
process.stdout.write(`${JSON.stringify({ issuer, jwksUri: `${issuer}/jwks` })}\n`);
process.on("SIGTERM", () => server.close(() => process.exit(0)));

// --- an indexed in-memory adapter ----------------------------------------------------

function memoryAdapter(_model: string): Adapter {
  const rows = new Map<string, { payload: AdapterPayload; expires: number }>();
  const byUid = new Map<string, string>();
  const byGrant = new Map<string, Set<string>>();
  const live = (id: string | undefined) => {
    const row = id === undefined ? undefined : rows.get(id);
    if (!row) return undefined;
    if (row.expires > Date.now()) return row.payload;
    drop(id!);
    return undefined;
  };
  const drop = (id: string) => {
    const row = rows.get(id);
    if (!row) return;
    rows.delete(id);
    if (row.payload.uid) byUid.delete(row.payload.uid);
    if (row.payload.grantId) byGrant.get(row.payload.grantId)?.delete(id);
  };
  setInterval(() => {
    const now = Date.now();
    for (const [id, row] of rows) if (row.expires <= now) drop(id);
  }, 10_000).unref();
  return {
    async upsert(id, payload, expiresIn) {
      drop(id);
      rows.set(id, { payload, expires: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
      if (payload.uid) byUid.set(payload.uid, id);
      if (payload.grantId) {
        let set = byGrant.get(payload.grantId);
        if (!set) byGrant.set(payload.grantId, (set = new Set()));
        set.add(id);
      }
    },
    async find(id) {
      return live(id);
    },
    async findByUid(uid) {
      return live(byUid.get(uid));
    },
    async findByUserCode() {
      return undefined;
    },
    async consume(id) {
      const payload = live(id);
      if (payload) payload.consumed = Math.floor(Date.now() / 1000);
    },
    async destroy(id) {
      drop(id);
    },
    async revokeByGrantId(grantId) {
      for (const id of byGrant.get(grantId) ?? []) drop(id);
      byGrant.delete(grantId);
    },
  };
}
