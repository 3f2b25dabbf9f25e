// Token's own verification of upstream OP ID Tokens (docs/design.md §4 step 3). Nothing
// here comes from Orchestration: the issuer, the JWKS location and the audience are
// Token's allow-list, and Token fetches the keys itself — no redirects (jose fetches
// with redirect: manual and wants a 200), a size cap, a cache, and at most one refetch
// per cooldown when an unknown kid appears.

import { type JWTVerifyGetKey, createRemoteJWKSet, customFetch, jwtVerify } from "jose";
import type { AllowedProvider } from "../../config/component-config.js";
import { InvalidTokenError, describeJoseError } from "../../protocol/jws.js";
import { type WalletClaims, walletClaimsOf } from "../../protocol/claims.js";
import { equalsConstantTime } from "../../protocol/constant-time.js";

export type { WalletClaims };

export const MAX_JWKS_BYTES = 64 * 1024;
const ASYMMETRIC_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];

export interface VerifiedSubject {
  readonly iss: string;
  readonly sub: string;
  readonly claims: WalletClaims;
  /** When the user authenticated at the provider (epoch seconds), if it says. */
  readonly authTime?: number;
}

/** auth_time as the provider sent it: a whole number of seconds, or nothing. */
function authTime(value: unknown): { authTime?: number } {
  if (value === undefined) return {};
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidTokenError("OP ID Token", "its auth_time is not a time in seconds");
  }
  return { authTime: value };
}

/** fetch, but the body may not exceed `limit` bytes. */
function cappedFetch(limit: number): typeof fetch {
  return async (input, init) => {
    const response = await fetch(input, init);
    const declared = Number(response.headers.get("content-length") ?? "0");
    if (declared > limit) throw new Error(`the JWKS is larger than ${limit} bytes`);
    const reader = response.body?.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = reader ? await reader.read() : { done: true, value: undefined };
      if (done) break;
      size += value.length;
      if (size > limit) {
        await reader!.cancel();
        throw new Error(`the JWKS is larger than ${limit} bytes`);
      }
      chunks.push(value);
    }
    return new Response(Buffer.concat(chunks), { status: response.status, headers: response.headers });
  };
}

export class UpstreamVerifier {
  readonly #providers: ReadonlyMap<string, { provider: AllowedProvider; jwks: JWTVerifyGetKey }>;

  constructor(providers: readonly AllowedProvider[], options: { cooldownMs?: number; cacheMaxAgeMs?: number } = {}) {
    this.#providers = new Map(
      providers.map((provider) => [
        provider.id,
        {
          provider,
          jwks: createRemoteJWKSet(new URL(provider.jwks_uri), {
            timeoutDuration: 5_000,
            cooldownDuration: options.cooldownMs ?? 30_000,
            cacheMaxAge: options.cacheMaxAgeMs ?? 10 * 60_000,
            [customFetch]: cappedFetch(MAX_JWKS_BYTES),
          }),
        },
      ]),
    );
  }

  provider(id: string): AllowedProvider | undefined {
    return this.#providers.get(id)?.provider;
  }

  /**
   * Verifies `idToken` as issued by provider `providerId` to us, for the login that
   * began at `loginStarted` with `expectedNonce`.
   */
  async verify(
    providerId: string,
    idToken: string,
    expectedNonce: string,
    loginStarted: Date,
    now: Date = new Date(),
  ): Promise<VerifiedSubject> {
    const entry = this.#providers.get(providerId);
    if (!entry) throw new InvalidTokenError("OP ID Token", "the session's provider is not on Token's allow-list");
    let payload;
    try {
      ({ payload } = await jwtVerify(idToken, entry.jwks, {
        issuer: entry.provider.issuer,
        audience: entry.provider.client_id,
        algorithms: ASYMMETRIC_ALGS,
        requiredClaims: ["iss", "sub", "aud", "exp", "iat", "nonce"],
        maxTokenAge: "10m",
        clockTolerance: 60,
        currentDate: now,
      }));
    } catch (error) {
      throw new InvalidTokenError(
        "OP ID Token",
        describeJoseError(error) ?? `it could not be verified (${error instanceof Error ? error.message : "unknown error"})`,
      );
    }
    if (typeof payload.nonce !== "string" || !equalsConstantTime(payload.nonce, expectedNonce)) {
      throw new InvalidTokenError("OP ID Token", "its nonce is not this session's upstream nonce");
    }
    // Issued for this login, not before it began (with a minute of clock skew).
    if (payload.iat! * 1000 < loginStarted.getTime() - 60_000) {
      throw new InvalidTokenError("OP ID Token", "it was issued before this login began");
    }
    if (Array.isArray(payload.aud) && payload.aud.length > 1 && payload.azp !== entry.provider.client_id) {
      throw new InvalidTokenError("OP ID Token", "it has several audiences and its azp is not our client_id");
    }
    const sub = payload.sub!;
    if (sub.length === 0 || sub.length > 255) throw new InvalidTokenError("OP ID Token", "its sub is empty or too long");
    return { iss: payload.iss!, sub, claims: walletClaimsOf(payload), ...authTime(payload.auth_time) };
  }
}
