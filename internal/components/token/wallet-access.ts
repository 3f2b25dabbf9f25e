// Token's side of the Wallet Client's access (docs/wallet-server.md, "The Wallet Client
// signs in"): the DPoP-bound wallet access token a DPoP-bound client's login mints, the
// check of every wallet API call (that token and its DPoP proof) before any record
// access, and the signed key set Orchestration serves at /wallet/jwks.
//
// The wallet keys are optional (keys.wallet): without them Token serves logins as
// before and refuses every wallet call with FAILED_PRECONDITION.

import { Code, ConnectError } from "@connectrpc/connect";
import { CompactSign } from "jose";
import type { RegisteredClient } from "../../config/component-config.js";
import { DpopError, memoryDpopReplayCache, verifyDpopProof } from "../../protocol/dpop.js";
import { invalidArgument, outOfOrder } from "../../protocol/errors.js";
import { InvalidTokenError, sign, verify } from "../../protocol/jws.js";
import { type KeyPurpose, type SigningKey, VerificationKeys, WALLET_PURPOSES, activeKey, publicJwk } from "../../protocol/signing-keys.js";
import { WALLET_ACCESS_TOKEN, type WalletAccessClaims } from "../../protocol/tokens.js";

export interface WalletAccessDeps {
  /** Token's wallet keys as last loaded; absent when its configuration names none. */
  readonly walletKeys?: () => readonly SigningKey[];
  readonly clients: ReadonlyMap<string, RegisteredClient>;
  readonly now: () => Date;
}

/** Who a verified wallet call is from. */
export interface WalletCaller {
  uid: string;
  clientId: string;
  jkt: string;
  expiresAt: number;
}

const unauthenticated = (message: string) => new ConnectError(message, Code.Unauthenticated);

export function walletAccess(deps: WalletAccessDeps) {
  // Token keeps no state between calls, so this only stops a proof replayed to this
  // replica; Orchestration keeps the shared one (docs/wallet-server.md).
  const replay = memoryDpopReplayCache({ now: () => Math.floor(deps.now().getTime() / 1000) });
  let cached: { from: readonly SigningKey[]; keys: VerificationKeys } | undefined;

  function walletKeys(): readonly SigningKey[] {
    const keys = deps.walletKeys?.();
    if (!keys || keys.length === 0) throw outOfOrder("Token holds no wallet keys: its custodian has not configured keys.wallet, so the credential wallet is not served");
    return keys;
  }
  const active = (purpose: KeyPurpose) => activeKey(walletKeys(), purpose);
  function verification(): VerificationKeys {
    const current = walletKeys();
    if (cached?.from !== current) cached = { from: current, keys: new VerificationKeys(current.map(publicJwk)) };
    return cached.keys;
  }

  return {
    /** Whether Token serves the wallet: a DPoP-bound client's login is refused up front without it. */
    available: (): boolean => (deps.walletKeys?.() ?? []).some((k) => k.purpose === "wallet-access"),

    /** The login's wallet access token, bound to the session's DPoP key. */
    mintAccessToken(claims: WalletAccessClaims): Promise<string> {
      return sign(WALLET_ACCESS_TOKEN, active("wallet-access"), { ...claims }, { now: deps.now() });
    },

    /**
     * One wallet API call: the access token (signature by a wallet-access key, typ, iss,
     * aud, exp), its client still registered and DPoP-bound, then the proof for this
     * method and URL with `ath` and the token's key. UNAUTHENTICATED names the check.
     */
    async authorizeCall(call: { accessToken: string; dpopProof: string; method: string; url: string }): Promise<WalletCaller> {
      if (!call.accessToken) throw unauthenticated("the wallet access token is missing");
      if (!URL.canParse(call.url) || !/^https?:$/.test(new URL(call.url).protocol)) throw invalidArgument("url must be the request's absolute http(s) URL");
      let claims: WalletAccessClaims & { exp?: number };
      try {
        ({ claims } = await verify<WalletAccessClaims & { exp?: number }>(WALLET_ACCESS_TOKEN, verification(), call.accessToken, "wallet access token", deps.now()));
      } catch (error) {
        if (error instanceof InvalidTokenError) throw unauthenticated(error.message);
        throw error;
      }
      if (typeof claims.sub !== "string" || typeof claims.client_id !== "string" || typeof claims.cnf?.jkt !== "string") {
        throw unauthenticated("the wallet access token lacks sub, client_id or cnf.jkt");
      }
      const client = deps.clients.get(claims.client_id);
      if (!client?.dpop_bound_access_tokens) throw unauthenticated("the wallet access token's client is no longer a registered DPoP-bound client");
      try {
        await verifyDpopProof(call.dpopProof, {
          method: call.method,
          url: call.url,
          accessToken: call.accessToken,
          boundJkt: claims.cnf.jkt,
          replay,
          now: Math.floor(deps.now().getTime() / 1000),
        });
      } catch (error) {
        if (error instanceof DpopError) throw unauthenticated(error.message);
        throw error;
      }
      return { uid: claims.sub, clientId: claims.client_id, jkt: claims.cnf.jkt, expiresAt: claims.exp ?? 0 };
    },

    /** The wallet purposes' public keys, signed with the key-set key (typ "hello-wallet-key-set"). */
    async keySet(keySetKey: SigningKey): Promise<{ jwks: Uint8Array; signature: string }> {
      const keys = walletKeys().filter((k) => WALLET_PURPOSES.includes(k.purpose));
      const jwks = Buffer.from(JSON.stringify({ keys: keys.map(publicJwk) }));
      const jws = await new CompactSign(jwks).setProtectedHeader({ alg: keySetKey.alg, kid: keySetKey.kid, typ: "hello-wallet-key-set" }).sign(keySetKey.privateKey);
      const [header, , signature] = jws.split(".");
      return { jwks, signature: `${header}..${signature}` };
    },
  };
}
