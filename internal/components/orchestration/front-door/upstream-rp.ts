// The front door as a standard relying party of the user's provider (docs/design.md §4
// step 2), with openid-client: discovery by issuer, code flow with PKCE S256, the
// upstream nonce Token put in the session, and a full check of the OP ID Token.
// Token checks that token again, itself; this check is Orchestration's own.
//
// Mix-up defences (RFC 9700 §4.4, RFC 9207): each provider has its own redirect URI,
// `<issuer>/upstream/callback/<provider id>`, which the front door checks against the
// provider the login was started with before anything is redeemed; and the RFC 9207
// `iss` of every answer is checked where the provider sends it (openid-client requires
// it when the provider's metadata says authorization_response_iss_parameter_supported;
// nothing here turns that off).

import * as oidc from "openid-client";
import { type UpstreamProvider, upstreamRedirectUri } from "../../../config/component-config.js";

export interface UpstreamRedirect {
  readonly url: URL;
  readonly state: string;
  readonly codeVerifier: string;
}

export class UpstreamRp {
  readonly #configs = new Map<string, Promise<oidc.Configuration>>();

  constructor(
    readonly providers: readonly UpstreamProvider[],
    /** The front door's issuer: callbacks are under it. */
    private readonly issuer: string,
  ) {}

  provider(id: string): UpstreamProvider | undefined {
    return this.providers.find((p) => p.id === id);
  }

  /** Discovery once per provider; a failure is retried on the next login, not cached. */
  #config(provider: UpstreamProvider): Promise<oidc.Configuration> {
    let config = this.#configs.get(provider.id);
    if (!config) {
      const issuer = new URL(provider.issuer);
      config = oidc
        .discovery(
          issuer,
          provider.client_id,
          undefined,
          provider.client_secret ? oidc.ClientSecretBasic(provider.client_secret) : oidc.None(),
          // openid-client checks an ID Token's signature only with non-repudiation checks on
          // (by default it trusts TLS to the token endpoint); Orchestration checks it always.
          // Plain http is for a provider on this machine only (the development OP).
          {
            execute: isLoopback(issuer) ? [oidc.enableNonRepudiationChecks, oidc.allowInsecureRequests] : [oidc.enableNonRepudiationChecks],
            timeout: 10,
          },
        )
        .catch((error: unknown) => {
          this.#configs.delete(provider.id);
          throw error;
        });
      this.#configs.set(provider.id, config);
    }
    return config;
  }

  async authorizationUrl(
    provider: UpstreamProvider,
    nonce: string,
    extra: { prompt?: string; login_hint?: string; max_age?: string },
  ): Promise<UpstreamRedirect> {
    const config = await this.#config(provider);
    const codeVerifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const parameters: Record<string, string> = {
      redirect_uri: upstreamRedirectUri(this.issuer, provider.id),
      scope: provider.scopes.join(" "),
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: "S256",
      nonce,
      state,
    };
    for (const [name, value] of Object.entries(extra)) if (value) parameters[name] = value;
    return { url: oidc.buildAuthorizationUrl(config, parameters), state, codeVerifier };
  }

  /**
   * Whether an error answer (no code: nothing to redeem) came from `provider` as far as
   * RFC 9207 can tell: its `iss` is the provider's, or it has none and the provider
   * does not promise one. `redeem` checks the same for every other answer.
   */
  async errorAnswerIsFrom(provider: UpstreamProvider, callback: URL): Promise<boolean> {
    // Its metadata, if this replica cannot have it now, is no reason to believe it.
    const config = await this.#config(provider).catch(() => undefined);
    if (!config) return false;
    const metadata = config.serverMetadata();
    const iss = callback.searchParams.getAll("iss");
    if (iss.length === 0) return metadata.authorization_response_iss_parameter_supported !== true;
    return iss.length === 1 && iss[0] === metadata.issuer;
  }

  /** Redeems the code and verifies the OP ID Token: signature, iss, aud, exp, nonce, state, PKCE. */
  async redeem(provider: UpstreamProvider, callback: URL, expected: { state: string; nonce: string; codeVerifier: string }) {
    const config = await this.#config(provider);
    const tokens = await oidc.authorizationCodeGrant(config, callback, {
      expectedState: expected.state,
      expectedNonce: expected.nonce,
      pkceCodeVerifier: expected.codeVerifier,
      idTokenExpected: true,
    });
    const claims = tokens.claims()!;
    return { idToken: tokens.id_token!, iss: claims.iss, sub: claims.sub, claims: claims as Record<string, unknown> };
  }
}

function isLoopback(url: URL): boolean {
  return url.hostname === "localhost" || url.hostname === "127.0.0.1" || url.hostname === "[::1]";
}
