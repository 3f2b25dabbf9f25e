// The development upstream OpenID Provider: a real OIDC server (node-oidc-provider) that
// `hello start` runs in place of Google and that tests log in to, so that Orchestration
// and Token are exercised with genuine OP ID Tokens (signed, with nonce, aud, iss, exp).
//
// It is deliberately a development tool: in-memory state, a signing key made at start,
// plain HTTP on localhost, passwords in configuration. It behaves like the upstream OPs
// hello relies on in the ways that matter to a relying party: authorization code flow
// only, PKCE S256 required, nonce echoed into the ID Token, `prompt=none` answered with
// `login_required`, and the profile/email claims carried in the ID Token itself.

import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from "jose";
import type { Adapter, AdapterFactory, AdapterPayload, ClientMetadata, Configuration, Provider } from "oidc-provider";
import { esc, pageKit, readBody } from "../html-kit.js";

export interface DevUser {
  sub: string;
  email: string;
  email_verified: boolean;
  name: string;
  given_name?: string;
  family_name?: string;
  picture?: string;
  password: string;
}

export interface DevClient {
  client_id: string;
  /** Absent: a public client (token_endpoint_auth_method "none"); PKCE is required anyway. */
  client_secret?: string;
  redirect_uris: string[];
  /** Default: client_secret_basic when there is a secret, none otherwise. */
  token_endpoint_auth_method?: "client_secret_basic" | "client_secret_post" | "none";
}

export interface DevOpOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Interface to listen on; default 127.0.0.1. */
  host?: string;
  /** Default http://localhost:<port>. */
  issuer?: string;
  clients: DevClient[];
  /** Default DEFAULT_DEV_USERS. */
  users?: DevUser[];
  /** Called with unexpected errors (oidc-provider "server_error" and interaction route failures). Default: silent. */
  onServerError?: (error: Error) => void;
}

export interface DevOp {
  issuer: string;
  /** Where the server actually listens (http://<host>:<port>); the issuer may name another host. */
  url: string;
  jwksUri: string;
  close(): Promise<void>;
}

// Development accounts. Passwords equal the first name so a person running `hello start`
// can sign in without reading code; the login page lists these (and only these) accounts.
export const DEFAULT_DEV_USERS: readonly DevUser[] = Object.freeze([
  {
    sub: "alice-0001",
    email: "alice@example.com",
    email_verified: true,
    name: "Alice Example",
    given_name: "Alice",
    family_name: "Example",
    picture: "https://example.com/avatars/alice.png",
    password: "alice",
  },
  {
    sub: "bob-0002",
    email: "bob@example.com",
    email_verified: true,
    name: "Bob Example",
    given_name: "Bob",
    family_name: "Example",
    password: "bob",
  },
  {
    // An unverified address, for testing how relying parties treat email_verified=false.
    sub: "carol-0003",
    email: "carol@example.net",
    email_verified: false,
    name: "Carol Unverified",
    given_name: "Carol",
    family_name: "Unverified",
    password: "carol",
  },
]);

// The standard OIDC scope-to-claim mapping for the claims a DevUser has.
const SCOPE_CLAIMS = {
  email: ["email", "email_verified"],
  profile: ["name", "given_name", "family_name", "picture"],
} as const;

const TTL = {
  AccessToken: 60 * 60,
  AuthorizationCode: 60,
  IdToken: 60 * 60,
  Interaction: 10 * 60,
  Session: 24 * 60 * 60,
  Grant: 24 * 60 * 60,
} as const;

export async function startDevOp(options: DevOpOptions): Promise<DevOp> {
  const host = options.host ?? "127.0.0.1";
  const users = options.users ?? DEFAULT_DEV_USERS;
  const usersBySub = new Map(users.map((u) => [u.sub, u]));
  const usersByEmail = new Map(users.map((u) => [u.email.toLowerCase(), u]));
  if (usersBySub.size !== users.length || usersByEmail.size !== users.length) {
    throw new Error("dev OP: user sub and email must be unique");
  }
  const onServerError = options.onServerError ?? (() => {});
  const { default: ProviderClass } = await loadOidcProvider();

  // Listen first: with port 0 the issuer (which names the port) is only known afterwards.
  let handle: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.writeHead(503).end();
  };
  const server = createServer((req, res) => handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const issuer = options.issuer ?? `http://localhost:${port}`;
  if (new URL(issuer).pathname !== "/") {
    server.close();
    throw new Error("dev OP: the issuer must have no path (the provider is served at the root)");
  }

  const configuration: Configuration = {
    clients: options.clients.map(toClientMetadata),
    jwks: { keys: [await generateSigningKey()] },
    // Fresh per start: the in-memory sessions the cookies point to do not survive a restart either.
    // Nothing else is needed for http://localhost: oidc-provider marks its cookies Secure only
    // when the request itself is https (ctx.secure), and no proxy sits in front (proxy=false).
    cookies: { keys: [randomBytes(32).toString("base64url")] },
    adapter: memoryAdapterFactory(),
    findAccount: (_ctx, sub) => {
      const user = usersBySub.get(sub);
      return user && { accountId: user.sub, claims: () => userClaims(user) };
    },
    scopes: ["openid", ...Object.keys(SCOPE_CLAIMS)],
    claims: { openid: ["sub"], email: [...SCOPE_CLAIMS.email], profile: [...SCOPE_CLAIMS.profile] },
    // OIDC Core §5.4 puts scope-requested claims at userinfo only (for response_type=code);
    // Google and most OPs also put them in the ID Token, and hello takes them from the
    // verified OP ID Token, so the dev OP does too.
    conformIdTokenClaims: false,
    responseTypes: ["code"],
    pkce: { required: () => true }, // discovery already advertises S256 only
    allowOmittingSingleRegisteredRedirectUri: false,
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    ttl: { ...TTL },
    // Our own defaults for the hooks whose built-in versions print "you SHOULD change it".
    clientBasedCORS: () => false, // every client redeems codes from its server
    renderError: (ctx, out) => {
      ctx.type = "html";
      ctx.body = page("Sign-in error", `<h1>Sign-in error</h1>${errorList(out)}`);
    },
  };

  let provider: Provider;
  try {
    provider = new ProviderClass(issuer, configuration);
    // oidc-provider validates static clients lazily, at first use; load each now so that a
    // bad redirect_uri fails `hello start` instead of the first login.
    for (const { client_id } of options.clients) await provider.Client.find(client_id);
  } catch (error) {
    server.close();
    // oidc-provider's message is only the error code; the detail is in error_description.
    const detail = (error as { error_description?: unknown }).error_description;
    throw typeof detail === "string" ? new Error(`dev OP configuration: ${detail}`, { cause: error }) : error;
  }
  provider.on("server_error", (_ctx, error) => onServerError(error));
  const providerCallback = provider.callback();
  const interactions = interactionRoutes(provider, usersByEmail, users === DEFAULT_DEV_USERS, onServerError);
  handle = (req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const match = /^\/interaction\/([\w-]+)(?:\/(login|abort))?$/.exec(path);
    if (match?.[1]) {
      void interactions(req, res, match[1], match[2]);
    } else {
      void providerCallback(req, res);
    }
  };

  return {
    issuer,
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    jwksUri: new URL("/jwks", issuer).href,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections(); // fetch keeps connections alive; close() alone would wait for them
      }),
  };
}

// --- interaction pages -------------------------------------------------------------

type InteractionRoute = (req: IncomingMessage, res: ServerResponse, uid: string, action: string | undefined) => Promise<void>;

function interactionRoutes(
  provider: Provider,
  usersByEmail: Map<string, DevUser>,
  listDefaultAccounts: boolean,
  onServerError: (error: Error) => void,
): InteractionRoute {
  return async (req, res, uid, action) => {
    try {
      let details;
      try {
        details = await provider.interactionDetails(req, res);
      } catch (error) {
        if (error instanceof Error && error.name === "SessionNotFound") {
          return send(res, 400, expiredPage());
        }
        throw error;
      }
      // The interaction cookie is scoped to this path, but check anyway: a page for one
      // interaction must never finish another.
      if (details.uid !== uid) return send(res, 400, expiredPage());
      const prompt = details.prompt.name;
      const clientId = String(details.params.client_id ?? "");

      if (req.method === "GET" && action === undefined) {
        if (prompt === "login") {
          const hint = typeof details.params.login_hint === "string" ? details.params.login_hint : "";
          return send(res, 200, loginPage({ uid, clientId, email: hint, listDefaultAccounts }));
        }
        if (prompt === "consent") {
          // No consent screen at the dev OP: grant exactly what is missing, as a user clicking
          // "Allow" would. (hello's own consent page is what the protocol cares about.)
          const accountId = details.session?.accountId;
          if (!accountId) return send(res, 400, expiredPage());
          const grant = details.grantId
            ? await provider.Grant.find(details.grantId)
            : new provider.Grant({ accountId, clientId });
          if (!grant) return send(res, 400, expiredPage());
          const missing = details.prompt.details;
          grant.addOIDCScope(stringList(missing.missingOIDCScope));
          grant.addOIDCClaims(stringList(missing.missingOIDCClaims));
          const grantId = await grant.save();
          return await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
        }
        return send(res, 400, page("Sign-in error", `<h1>Sign-in error</h1><p>Unsupported prompt.</p>`));
      }

      if (req.method === "POST" && action === "login" && prompt === "login") {
        const form = await readForm(req);
        const email = form.get("email") ?? "";
        const user = usersByEmail.get(email.trim().toLowerCase());
        if (!user || !passwordMatches(form.get("password") ?? "", user.password)) {
          // 401 and the same form again, with the typed email kept and the password cleared.
          return send(res, 401, loginPage({ uid, clientId, email, listDefaultAccounts, failed: true }));
        }
        return await provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
      }

      if (req.method === "POST" && action === "abort") {
        return await provider.interactionFinished(
          req,
          res,
          { error: "access_denied", error_description: "End-User aborted interaction" },
          { mergeWithLastSubmission: false },
        );
      }

      return send(res, 405, page("Not allowed", `<h1>Not allowed</h1>`));
    } catch (error) {
      onServerError(error instanceof Error ? error : new Error(String(error)));
      if (!res.headersSent) send(res, 500, page("Sign-in error", `<h1>Sign-in error</h1><p>Something went wrong.</p>`));
      else res.end();
    }
  };
}

function loginPage(p: { uid: string; clientId: string; email: string; listDefaultAccounts: boolean; failed?: boolean }): string {
  const invalid = p.failed ? ` aria-invalid="true" aria-describedby="login-error"` : "";
  const accounts = p.listDefaultAccounts
    ? `<section aria-labelledby="accounts"><h2 id="accounts">Development accounts</h2><ul>${DEFAULT_DEV_USERS.map(
        (u) => `<li>${esc(u.email)} (password <code>${esc(u.password)}</code>${u.email_verified ? "" : ", email not verified"})</li>`,
      ).join("")}</ul></section>`
    : "";
  return page(
    "Sign in",
    `<h1>Sign in</h1>
<p>to continue to <strong>${esc(p.clientId)}</strong> (development OpenID Provider)</p>
${p.failed ? `<p id="login-error" role="alert" class="error">Wrong email or password.</p>` : ""}
<form id="login" method="post" action="/interaction/${esc(p.uid)}/login">
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required autofocus value="${esc(p.email)}"${invalid}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required${invalid}>
<button type="submit">Sign in</button>
</form>
<form id="abort" method="post" action="/interaction/${esc(p.uid)}/abort"><button type="submit" class="secondary">Cancel</button></form>
${accounts}`,
  );
}

function expiredPage(): string {
  return page(
    "Sign-in expired",
    `<h1>Sign-in expired</h1><p>This sign-in request has expired or was already used. Go back to the application and start again.</p>`,
  );
}

function errorList(out: { error: string; error_description?: string | undefined }): string {
  const description = out.error_description ? `<dt>Description</dt><dd>${esc(out.error_description)}</dd>` : "";
  return `<dl><dt>Error</dt><dd>${esc(out.error)}</dd>${description}</dl>`;
}

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;max-width:26rem;margin:2rem auto;padding:0 1rem;color:#111}
label{display:block;margin-top:1rem;font-weight:600}input{width:100%;box-sizing:border-box;padding:.5rem;font:inherit}
button{margin-top:1rem;padding:.5rem 1rem;font:inherit;cursor:pointer}.secondary{background:none;border:1px solid #555}
.error{color:#a00;font-weight:600}dt{font-weight:600}`;
const { page, send } = pageKit(STYLE, { titleSuffix: " · dev OP" });

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  if (!(req.headers["content-type"] ?? "").startsWith("application/x-www-form-urlencoded")) return new URLSearchParams();
  return new URLSearchParams(await readBody(req, 16 * 1024, "login form"));
}

function passwordMatches(given: string, expected: string): boolean {
  // Compare digests so the comparison is constant-time whatever the lengths.
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

// --- provider configuration helpers --------------------------------------------------

function toClientMetadata(c: DevClient): ClientMetadata {
  const method = c.token_endpoint_auth_method ?? (c.client_secret ? "client_secret_basic" : "none");
  return {
    client_id: c.client_id,
    ...(c.client_secret ? { client_secret: c.client_secret } : {}),
    redirect_uris: [...c.redirect_uris],
    response_types: ["code"],
    grant_types: ["authorization_code"],
    token_endpoint_auth_method: method,
  };
}

function userClaims(user: DevUser): { sub: string; [claim: string]: unknown } {
  // Every claim the user has; oidc-provider filters them by the granted scopes and claims.
  const { password: _password, ...claims } = user;
  return claims;
}

async function generateSigningKey() {
  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const jwk = await exportJWK(privateKey);
  const { n, e, kty } = jwk;
  return { ...jwk, kid: await calculateJwkThumbprint({ kty, n, e }), alg: "RS256", use: "sig" };
}

// oidc-provider needs a storage adapter; its built-in one prints a warning and is shared by
// every Provider in the process. This one is per dev OP, in memory, with lazy expiry.
export function memoryAdapterFactory(): AdapterFactory {
  const store = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  let writes = 0;
  const live = (key: string): AdapterPayload | undefined => {
    const entry = store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt > Date.now()) return entry.payload;
    store.delete(key);
    return undefined;
  };
  const findBy = (model: string, field: "uid" | "userCode", value: string) => {
    for (const [key, entry] of store) {
      if (key.startsWith(`${model}:`) && entry.payload[field] === value) return live(key);
    }
    return undefined;
  };
  return (model: string): Adapter => ({
    async upsert(id, payload, expiresIn) {
      if (++writes % 256 === 0) for (const key of store.keys()) live(key); // sweep expired entries now and then
      store.set(`${model}:${id}`, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
    },
    async find(id) {
      return live(`${model}:${id}`);
    },
    async findByUid(uid) {
      return findBy(model, "uid", uid);
    },
    async findByUserCode(userCode) {
      return findBy(model, "userCode", userCode);
    },
    async consume(id) {
      const payload = live(`${model}:${id}`);
      if (payload) payload.consumed = Math.floor(Date.now() / 1000);
    },
    async destroy(id) {
      store.delete(`${model}:${id}`);
    },
    async revokeByGrantId(grantId) {
      // This model's entries only: an Interaction carries the grantId too, and a logout that
      // revokes a grant (oidc-provider's, when the user signs in as another account in the
      // middle of an authorization) must not take the authorization's own interaction with it.
      for (const [key, entry] of store) if (key.startsWith(`${model}:`) && entry.payload.grantId === grantId) store.delete(key);
    },
  });
}

// oidc-provider 9 prints "Unsupported runtime. Use Node.js v22.x LTS" once, at import, on
// Node 20 (it runs there; the project's floor is Node 20.19). That line is the only output
// dropped, and only while the module loads; the import is shared so console.warn is
// wrapped at most once.
let oidcProviderModule: Promise<typeof import("oidc-provider")> | undefined;
export function loadOidcProvider(): Promise<typeof import("oidc-provider")> {
  oidcProviderModule ??= (async () => {
    const warn = console.warn;
    console.warn = (...args: unknown[]) => {
      if (typeof args[0] === "string" && args[0].startsWith("oidc-provider WARNING: Unsupported runtime")) return;
      warn.apply(console, args);
    };
    try {
      return await import("oidc-provider");
    } finally {
      console.warn = warn;
    }
  })();
  return oidcProviderModule;
}
