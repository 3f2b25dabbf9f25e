// What a test app does before and after the browser: openid-client, a strict relying
// party, configured for one of the registered test apps with its own client
// authentication, and a fresh authorization request (PKCE verifier, nonce, state).

import * as oidc from "openid-client";
import { APPS, APP_KEY, appSecret, browseToApp } from "./protocol-mesh.js";
import type { DevUser } from "../../internal/dev/devop/dev-op.js";

export type App = keyof typeof APPS;

/** openid-client for `app` at `issuer`, checking ID Token signatures (off by default in the code flow). */
export async function appClient(issuer: string, app: App): Promise<oidc.Configuration> {
  const client = APPS[app]!;
  const key = await APP_KEY;
  const auth =
    client.auth === "none" ? oidc.None()
    : client.auth === "client_secret_post" ? oidc.ClientSecretPost(appSecret(client.client_id))
    : client.auth === "private_key_jwt" ? oidc.PrivateKeyJwt({ key: key.privateKey, kid: key.kid })
    : oidc.ClientSecretBasic(appSecret(client.client_id));
  return oidc.discovery(new URL(issuer), client.client_id, undefined, auth, {
    execute: [oidc.allowInsecureRequests, oidc.enableNonRepudiationChecks],
  });
}

/** A fresh authorization request for `app`: the checks to redeem its code with, its parameters and URL. */
export async function prepareAuthorization(issuer: string, app: App, extra: Record<string, string> = {}) {
  return authorizationRequest(await appClient(issuer, app), APPS[app]!.redirect_uri, extra);
}

/** A fresh authorization request by any openid-client app: new PKCE verifier, nonce and state. */
export async function authorizationRequest(config: oidc.Configuration, redirectUri: string, extra: Record<string, string> = {}) {
  const checks = { pkceCodeVerifier: oidc.randomPKCECodeVerifier(), expectedNonce: oidc.randomNonce(), expectedState: oidc.randomState() };
  const params = {
    redirect_uri: redirectUri,
    scope: "openid email profile",
    code_challenge: await oidc.calculatePKCECodeChallenge(checks.pkceCodeVerifier),
    code_challenge_method: "S256",
    nonce: checks.expectedNonce,
    state: checks.expectedState,
    ...extra,
  };
  return { config, checks, params, url: oidc.buildAuthorizationUrl(config, params) };
}

/**
 * A whole login at the front door, as a person and an openid-client app do it: the page
 * where it ended, whether the consent page came, and the app's tokens if it got there.
 */
export async function loginAtFrontDoor(issuer: string, app: App, user: DevUser, options: Parameters<typeof browseToApp>[3] = {}) {
  const { config, checks, url } = await prepareAuthorization(issuer, app);
  const { page, consented } = await browseToApp(url, app, user, options);
  const atApp = page.url.href.startsWith(APPS[app]!.redirect_uri);
  return { page, consented, config, tokens: atApp ? await oidc.authorizationCodeGrant(config, page.url, checks) : undefined };
}
