// Token's credential-wallet keys as Orchestration knows them (docs/wallet-server.md):
// not in Token's mesh bundle (a release that knows no wallet purpose could not read it),
// but fetched with GetWalletKeySet, whose signature by Token's key-set key (from the
// bundle) is checked first. Orchestration serves the set at /wallet/jwks byte for byte,
// and checks every wallet access token Token mints with it before it goes anywhere.

import type { Client } from "@connectrpc/connect";
import { type JWK, compactVerify } from "jose";
import type { TokenService } from "../../gen/hello/token/v1/token_service_pb.js";
import { InvalidTokenError, verify } from "../../protocol/jws.js";
import { VerificationKeys, WALLET_PURPOSES, purposeOfKid } from "../../protocol/signing-keys.js";
import { WALLET_ACCESS_TOKEN, type WalletAccessClaims } from "../../protocol/tokens.js";
import { ProtocolViolation } from "./minted-check.js";

/** How long a fetched set is used before it is fetched again (a new key shows within it). */
const CACHE_MS = 60_000;

export interface WalletKeySet {
  /** The JWKS document exactly as Token signed it. */
  readonly jwks: Uint8Array;
  readonly keys: VerificationKeys;
}

export class WalletKeys {
  #cached: { at: number; set: WalletKeySet } | undefined;

  constructor(
    private readonly token: Client<typeof TokenService>,
    private readonly tokenKeys: () => VerificationKeys,
    private readonly now: () => number = Date.now,
  ) {}

  /** The set, from the cache or from Token; `fresh` skips the cache (an unknown kid). */
  async get(fresh = false): Promise<WalletKeySet> {
    if (!fresh && this.#cached && this.now() - this.#cached.at < CACHE_MS) return this.#cached.set;
    const { jwks, signature } = await this.token.getWalletKeySet({});
    const [header, , sig] = signature.split(".");
    await compactVerify(`${header}.${Buffer.from(jwks).toString("base64url")}.${sig}`, async (h) => {
      const key = this.tokenKeys().find("key-set", h.kid);
      if (!key || h.alg !== key.alg || h.typ !== "hello-wallet-key-set") throw new ProtocolViolation("the wallet key set is not signed by Token's key-set key");
      return key.key;
    });
    const parsed = JSON.parse(Buffer.from(jwks).toString("utf8")) as { keys?: JWK[] };
    const keys = parsed.keys ?? [];
    if (!keys.every((k) => typeof k.kid === "string" && WALLET_PURPOSES.includes(purposeOfKid(k.kid)!))) {
      throw new ProtocolViolation("the wallet key set holds a key of another purpose");
    }
    const set = { jwks, keys: new VerificationKeys(keys) };
    this.#cached = { at: this.now(), set };
    return set;
  }
}

/**
 * Token's wallet access token for a login, checked before it is stored with the code:
 * Token's wallet-access key, its typ, iss, aud and lifetime, and that it names this
 * login's user, app and DPoP key.
 */
export async function checkWalletAccessToken(
  jwt: string,
  expected: { uid: string; clientId: string; jkt: string },
  walletKeys: WalletKeys,
  now = new Date(),
): Promise<void> {
  let claims: WalletAccessClaims;
  try {
    ({ claims } = await verify<WalletAccessClaims>(WALLET_ACCESS_TOKEN, (await walletKeys.get()).keys, jwt, "wallet access token", now).catch(async (error) => {
      // A key Token published a moment ago: fetch the set once more before refusing.
      if (error instanceof InvalidTokenError) return verify<WalletAccessClaims>(WALLET_ACCESS_TOKEN, (await walletKeys.get(true)).keys, jwt, "wallet access token", now);
      throw error;
    }));
  } catch (error) {
    if (error instanceof InvalidTokenError) throw new ProtocolViolation(`Token's wallet access token does not verify: ${error.reason}`);
    throw error;
  }
  if (claims.sub !== expected.uid || claims.client_id !== expected.clientId || claims.cnf?.jkt !== expected.jkt) {
    throw new ProtocolViolation("Token's wallet access token is not for this login's user, app and DPoP key");
  }
}
