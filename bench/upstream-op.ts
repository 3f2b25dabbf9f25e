// The upstream provider's part in the benchmark, in its own process so that its CPU
// and memory are counted apart from hello-mesh's: a minimal OpenID Provider that logs
// in whoever `login_hint` names at once (no page), and signs OP ID Tokens (RS256, as
// Google does) with a test issuer key made at start and published as a JWKS.
//
// It does what a real provider must for hello-mesh's relying party to accept it:
// discovery, exact redirect_uri, PKCE S256, state returned, the nonce in the ID Token,
// client_secret_basic at the token endpoint, single-use codes that expire.
//
//   node --import tsx bench/upstream-op.ts --client-id ID --client-secret S --redirect-uri URL [--redirect-uri URL]
// prints one JSON line {"issuer", "jwksUri"} when it listens.

import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { SignJWT, exportJWK, generateKeyPair } from "jose";

const { values } = parseArgs({
  options: {
    "client-id": { type: "string" },
    "client-secret": { type: "string" },
    "redirect-uri": { type: "string", multiple: true },
  },
});
const clientId = values["client-id"];
const clientSecret = values["client-secret"];
const redirectUris = new Set(values["redirect-uri"] ?? []);
if (!clientId || !clientSecret || redirectUris.size === 0) {
  process.stderr.write("usage: upstream-op.ts --client-id ID --client-secret SECRET --redirect-uri URL...\n");
  process.exit(2);
}

const CODE_TTL_MS = 60_000;
const ID_TOKEN_TTL_S = 600;

const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
const kid = randomBytes(8).toString("base64url");
const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" }] });

interface Grant {
  sub: string;
  nonce: string;
  challenge: string;
  redirectUri: string;
  expires: number;
}
const codes = new Map<string, Grant>();
setInterval(() => {
  const now = Date.now();
  for (const [code, grant] of codes) if (grant.expires < now) codes.delete(code);
}, 10_000).unref();

const server = http.createServer((req, res) => {
  void handle(req, res).catch((error: unknown) => {
    if (!res.headersSent) json(res, 500, { error: "server_error", error_description: (error as Error).message });
  });
});
server.keepAliveTimeout = 60_000;
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const discovery = JSON.stringify({
  issuer,
  authorization_endpoint: `${issuer}/authorize`,
  token_endpoint: `${issuer}/token`,
  jwks_uri: `${issuer}/jwks`,
  response_types_supported: ["code"],
  subject_types_supported: ["public"],
  id_token_signing_alg_values_supported: ["RS256"],
  token_endpoint_auth_methods_supported: ["client_secret_basic"],
  code_challenge_methods_supported: ["S256"],
  scopes_supported: ["openid", "email", "profile"],
});
process.stdout.write(`${JSON.stringify({ issuer, jwksUri: `${issuer}/jwks` })}\n`);
process.on("SIGTERM", () => server.close(() => process.exit(0)));

async function handle(req: http.IncomingMessage, res: http.ServerResponse) {
  const url = new URL(req.url ?? "/", issuer);
  switch (`${req.method} ${url.pathname}`) {
    case "GET /.well-known/openid-configuration":
      return json(res, 200, discovery);
    case "GET /jwks":
      return json(res, 200, jwks);
    case "GET /authorize":
      return authorize(res, url.searchParams);
    case "POST /token":
      return token(req, res, new URLSearchParams(await body(req)));
    default:
      return json(res, 404, { error: "not_found" });
  }
}

function authorize(res: http.ServerResponse, q: URLSearchParams) {
  const redirectUri = q.get("redirect_uri") ?? "";
  if (q.get("client_id") !== clientId || !redirectUris.has(redirectUri)) {
    return json(res, 400, { error: "invalid_request", error_description: "unknown client_id or redirect_uri" });
  }
  const back = new URL(redirectUri);
  const state = q.get("state");
  if (state) back.searchParams.set("state", state);
  const sub = q.get("login_hint") ?? "";
  const nonce = q.get("nonce") ?? "";
  const challenge = q.get("code_challenge") ?? "";
  if (q.get("response_type") !== "code" || !(q.get("scope") ?? "").split(" ").includes("openid")
    || q.get("code_challenge_method") !== "S256" || !challenge || !nonce || !/^[\w.-]{1,64}$/.test(sub)) {
    back.searchParams.set("error", "invalid_request");
  } else {
    const code = randomBytes(24).toString("base64url");
    codes.set(code, { sub, nonce, challenge, redirectUri, expires: Date.now() + CODE_TTL_MS });
    back.searchParams.set("code", code);
  }
  res.writeHead(303, { location: back.toString(), "cache-control": "no-store" });
  res.end();
}

async function token(req: http.IncomingMessage, res: http.ServerResponse, form: URLSearchParams) {
  const basic = Buffer.from((req.headers.authorization ?? "").replace(/^Basic /, ""), "base64").toString("utf8");
  const colon = basic.indexOf(":");
  const id = decodeURIComponent(basic.slice(0, colon));
  const secret = decodeURIComponent(basic.slice(colon + 1));
  if (colon < 0 || id !== clientId || !same(secret, clientSecret!)) return json(res, 401, { error: "invalid_client" });
  const code = form.get("code") ?? "";
  const grant = codes.get(code);
  codes.delete(code);
  if (form.get("grant_type") !== "authorization_code" || !grant || grant.expires < Date.now()
    || form.get("redirect_uri") !== grant.redirectUri
    || createHash("sha256").update(form.get("code_verifier") ?? "").digest("base64url") !== grant.challenge) {
    return json(res, 400, { error: "invalid_grant" });
  }
  const now = Math.floor(Date.now() / 1000);
  const idToken = await new SignJWT({
    nonce: grant.nonce,
    email: `${grant.sub}@bench.example`,
    email_verified: true,
    name: `Bench ${grant.sub}`,
    given_name: "Bench",
    family_name: grant.sub,
  })
    .setProtectedHeader({ alg: "RS256", kid, typ: "JWT" })
    .setIssuer(issuer)
    .setSubject(grant.sub)
    .setAudience(clientId!)
    .setIssuedAt(now)
    .setExpirationTime(now + ID_TOKEN_TTL_S)
    .sign(privateKey);
  json(res, 200, { access_token: randomBytes(24).toString("base64url"), token_type: "Bearer", expires_in: 3600, id_token: idToken });
}

function same(a: string, b: string): boolean {
  const x = createHash("sha256").update(a).digest();
  const y = createHash("sha256").update(b).digest();
  return timingSafeEqual(x, y);
}

function json(res: http.ServerResponse, status: number, value: unknown) {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(typeof value === "string" ? value : JSON.stringify(value));
}

async function body(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
