// Token in memory, for fast specs of Token and of the login driver: its real routes with
// keys made here, a client registry of Token's own, a clock the test holds, and a real
// upstream provider — the development OP (oidc-provider) in this process — for genuine
// OP ID Tokens, which Token verifies against the JWKS it fetches itself.

import { createHash, randomBytes } from "node:crypto";
import { type Client, createClient } from "@connectrpc/connect";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { TokenService } from "../../internal/gen/hello/token/v1/token_service_pb.js";
import type { AllowedProvider, RegisteredClient } from "../../internal/config/component-config.js";
import { DEFAULT_DEV_USERS, type DevOp, type DevUser, startDevOp } from "../../internal/dev/devop/dev-op.js";
import { loginAtDevOp } from "../../internal/dev/devop/headless-login.js";
import { TOKEN_KEYS } from "../../internal/protocol/key-files.js";
import { type SigningKey, VerificationKeys, generateSigningKey, publicJwk } from "../../internal/protocol/signing-keys.js";
import { type TokenServiceDeps, tokenRoutes } from "../../internal/components/token/token-service.js";
import { UpstreamVerifier } from "../../internal/components/token/upstream.js";
import type { UpstreamResult } from "../../internal/components/orchestration/login-driver.js";
import { inMemory } from "./in-memory.js";

/** The public issuer the specs' Token signs app ID Tokens as. */
export const ISSUER = "https://hello.test";
const UPSTREAM = { id: "dev", client_id: "hello-mesh", client_secret: "upstream-secret-0123456789" };
const UPSTREAM_REDIRECT = `${ISSUER}/upstream/callback/dev`;

export const USERS = { alice: DEFAULT_DEV_USERS[0]!, bob: DEFAULT_DEV_USERS[1]!, carol: DEFAULT_DEV_USERS[2]! };

/** Apps in Token's registry: RS256 by default, one that signs request objects (its keys added by the spec). */
export const APPS = {
  a: { client_id: "app-a", redirect_uris: ["https://a.example/callback"], id_token_signed_response_alg: "RS256" },
  b: { client_id: "app-b", redirect_uris: ["https://b.example/callback"], id_token_signed_response_alg: "ES256" },
} as const satisfies Record<string, RegisteredClient>;

/** A clock that moves only when the test moves it. */
export class Clock {
  #t = Date.now();
  readonly now = (): Date => new Date(this.#t);
  /**
   * Sets the clock to the wall clock: call it when a spec starts. mocha loads every file
   * before it runs any, so a clock held from load time lags by minutes in the full suite,
   * and a real provider's `iat` would then be in Token's future.
   */
  sync(): void {
    this.#t = Date.now();
  }
  /** Runs `during` with the clock `ms` ahead, then puts it back. */
  async ahead<T>(ms: number, during: () => Promise<T>): Promise<T> {
    this.#t += ms;
    try {
      return await during();
    } finally {
      this.#t -= ms;
    }
  }
}

/** What CreateSession takes as the app's parameters (max_age aside). */
export interface AuthorizationParameterValues {
  clientId: string;
  redirectUri: string;
  nonce: string;
  scope: string;
  codeChallenge: string;
  claims: string;
  prompt: string;
}

/** An app's authorization request as its parameters: a fresh nonce and PKCE challenge. */
export function appParameters(app: keyof typeof APPS, scope = "openid email profile"): AuthorizationParameterValues {
  return {
    clientId: APPS[app].client_id,
    redirectUri: APPS[app].redirect_uris[0]!,
    nonce: randomBytes(12).toString("base64url"),
    scope,
    codeChallenge: createHash("sha256").update(randomBytes(32)).digest("base64url"),
    claims: "",
    prompt: "",
  };
}

/** Every key Token holds, one per purpose and alg, as a Token custodian makes them. */
export function tokenSigningKeys(): SigningKey[] {
  return TOKEN_KEYS.map((spec) => generateSigningKey(spec.purpose, spec.alg));
}

/** What Orchestration verifies with: the public half of Token's keys, as its mesh bundle publishes them. */
export function publishedKeys(keys: readonly SigningKey[]): VerificationKeys {
  return new VerificationKeys(keys.map(publicJwk));
}

export interface Upstream {
  readonly devOp: DevOp;
  /** Token's allow-list entry for the dev OP. */
  readonly provider: AllowedProvider;
  /** Token's verifier of its OP ID Tokens (one per spec: it caches the JWKS). */
  readonly verifier: UpstreamVerifier;
  /** A fresh login at the OP for `nonce` (`prompt=login` makes it say auth_time), verified as Orchestration does. */
  login(user: DevUser, nonce: string, options?: { prompt?: string }): Promise<UpstreamResult>;
  close(): Promise<void>;
}

/** How a relying party of the dev OP logs in: its client and where the OP sends the browser back. */
export interface DevOpRelyingParty {
  readonly devOp: DevOp;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly redirectUri: string;
  /** The OP's keys, as the relying party fetches them. */
  readonly opKeys: ReturnType<typeof createRemoteJWKSet>;
}

/**
 * A fresh login of `user` at the dev OP for `nonce` (`prompt=login` makes the OP say
 * auth_time), its OP ID Token verified as Orchestration does in step 2. The in-memory
 * Token's upstream and protocol-mesh.ts's upstreamLogin both log in through it.
 */
export async function verifiedLogin(rp: DevOpRelyingParty, user: DevUser, nonce: string, options: { prompt?: string } = {}): Promise<UpstreamResult> {
  const { idToken } = await loginAtDevOp({
    issuer: rp.devOp.issuer,
    clientId: rp.clientId,
    clientSecret: rp.clientSecret,
    redirectUri: rp.redirectUri,
    user: { email: user.email, password: user.password },
    nonce,
    ...(options.prompt === undefined ? {} : { prompt: options.prompt }),
  });
  const { payload } = await jwtVerify(idToken, rp.opKeys, { issuer: rp.devOp.issuer, audience: rp.clientId });
  if (payload.nonce !== nonce) throw new Error("the OP returned another nonce");
  return { idToken, iss: payload.iss!, sub: payload.sub!, claims: payload };
}

export async function startUpstream(users: readonly DevUser[] = DEFAULT_DEV_USERS): Promise<Upstream> {
  const devOp = await startDevOp({
    clients: [{ client_id: UPSTREAM.client_id, client_secret: UPSTREAM.client_secret, redirect_uris: [UPSTREAM_REDIRECT] }],
    users: [...users],
  });
  const provider: AllowedProvider = { id: UPSTREAM.id, issuer: devOp.issuer, jwks_uri: devOp.jwksUri, client_id: UPSTREAM.client_id };
  const rp: DevOpRelyingParty = {
    devOp, clientId: UPSTREAM.client_id, clientSecret: UPSTREAM.client_secret, redirectUri: UPSTREAM_REDIRECT, opKeys: createRemoteJWKSet(new URL(devOp.jwksUri)),
  };
  return {
    devOp,
    provider,
    verifier: new UpstreamVerifier([provider]),
    login: (user, nonce, options) => verifiedLogin(rp, user, nonce, options),
    close: () => devOp.close(),
  };
}

/** Token's real routes in memory (with the mesh's error mapping), as Orchestration's client sees them. */
export function tokenInMemory(deps: TokenServiceDeps): Client<typeof TokenService> {
  return createClient(TokenService, inMemory(tokenRoutes(deps)));
}
