// Token endpoint client authentication (RFC 6749 §2.3, OIDC Core §9): each client
// authenticates only with the method it registered. Secrets are compared in constant
// time; private_key_jwt assertions are checked for iss = sub = client_id, our token
// endpoint (or issuer) as audience, a short lifetime, and a jti used once.

import { equalsConstantTime } from "../../../protocol/constant-time.js";
import { type JSONWebKeySet, createLocalJWKSet, jwtVerify } from "jose";
import type { FrontDoorClient } from "../../../config/component-config.js";
import type { SharedStore } from "../sealed.js";
import { OAuthError } from "./oauth-error.js";

const ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";


function basicCredentials(header: string | undefined): { id: string; secret: string } | undefined {
  if (!header?.startsWith("Basic ")) return undefined;
  const decoded = Buffer.from(header.slice(6), "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) throw new OAuthError("invalid_client", "the Basic credentials are malformed");
  try {
    // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    return { id: decodeURIComponent(decoded.slice(0, colon).replaceAll("+", " ")), secret: decodeURIComponent(decoded.slice(colon + 1).replaceAll("+", " ")) };
  } catch {
    throw new OAuthError("invalid_client", "the Basic credentials are malformed");
  }
}

export async function authenticateClient(
  clients: ReadonlyMap<string, FrontDoorClient>,
  request: { authorization: string | undefined; body: URLSearchParams },
  context: { issuer: string; tokenEndpoint: string; replay: SharedStore },
): Promise<FrontDoorClient> {
  const basic = basicCredentials(request.authorization);
  const body = request.body;
  const assertion = body.get("client_assertion");
  const methods = [basic && "client_secret_basic", body.has("client_secret") && "client_secret_post", assertion && "private_key_jwt"].filter(Boolean);
  if (methods.length > 1) throw new OAuthError("invalid_request", "use exactly one client authentication method");

  let clientId = basic?.id ?? body.get("client_id") ?? undefined;
  if (assertion && !clientId) {
    // private_key_jwt may name the client only in the assertion's sub.
    try {
      clientId = JSON.parse(Buffer.from(assertion.split(".")[1] ?? "", "base64url").toString()).sub as string;
    } catch {
      throw new OAuthError("invalid_client", "the client assertion is malformed");
    }
  }
  const client = clientId ? clients.get(clientId) : undefined;
  if (!client) throw new OAuthError("invalid_client", "unknown client");
  if (body.get("client_id") && body.get("client_id") !== client.client_id) {
    throw new OAuthError("invalid_request", "client_id does not match the authenticated client");
  }
  const method = methods[0] ?? "none";
  if (method !== client.token_endpoint_auth_method) {
    throw new OAuthError("invalid_client", `this client must authenticate with ${client.token_endpoint_auth_method}`);
  }

  switch (method) {
    case "client_secret_basic":
      if (!equalsConstantTime(basic!.secret, client.client_secret ?? "")) throw new OAuthError("invalid_client", "wrong client secret");
      return client;
    case "client_secret_post":
      if (!equalsConstantTime(body.get("client_secret")!, client.client_secret ?? "")) throw new OAuthError("invalid_client", "wrong client secret");
      return client;
    case "private_key_jwt":
      await checkAssertion(client, body, context);
      return client;
    default:
      return client; // "none": a public client, held to PKCE at the code exchange
  }
}

async function checkAssertion(
  client: FrontDoorClient,
  body: URLSearchParams,
  context: { issuer: string; tokenEndpoint: string; replay: SharedStore },
): Promise<void> {
  if (body.get("client_assertion_type") !== ASSERTION_TYPE) {
    throw new OAuthError("invalid_client", `client_assertion_type must be ${ASSERTION_TYPE}`);
  }
  if (!client.jwks) throw new OAuthError("invalid_client", "this client registered no keys");
  let payload;
  try {
    ({ payload } = await jwtVerify(body.get("client_assertion")!, createLocalJWKSet(client.jwks as JSONWebKeySet), {
      issuer: client.client_id,
      subject: client.client_id,
      audience: [context.tokenEndpoint, context.issuer],
      algorithms: ["RS256", "PS256", "ES256", "EdDSA"],
      requiredClaims: ["exp", "jti"],
      maxTokenAge: "5m",
    }));
  } catch {
    throw new OAuthError("invalid_client", "the client assertion does not verify");
  }
  if (payload.exp! - Math.floor(Date.now() / 1000) > 300) {
    throw new OAuthError("invalid_client", "the client assertion lives longer than 5 minutes");
  }
  const key = `assertion:${client.client_id}:${payload.jti}`;
  // Claimed atomically in the store every replica shares: one use, whichever instance.
  if (!(await context.replay.claim(key, 6 * 60_000))) throw new OAuthError("invalid_client", "the client assertion was already used");
}
