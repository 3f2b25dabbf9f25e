// Which user claims exist in hello-mesh, and which an app's request asks for. Token
// and Orchestration must agree on this exactly: the consent page offers what the app
// asked for, and Token refuses to release anything else.

/** Claims a wallet may hold, and only when an OP ID Token Token verified carries them. */
export const WALLET_CLAIMS = ["name", "given_name", "family_name", "email", "email_verified", "picture"] as const;

/** OIDC Core §5.4, in a fixed order (the consent page lists claims in this order). */
const SCOPE_CLAIMS: ReadonlyArray<readonly [scope: string, claims: readonly string[]]> = [
  ["profile", ["name", "given_name", "family_name", "picture"]],
  ["email", ["email", "email_verified"]],
];

/** The claim names an app's request asks for: from its scopes and its `claims` parameter (JSON). */
export function requestedClaims(scope: string, claimsRequest?: string): Set<string> {
  const scopes = scope.split(" ");
  const names = new Set(SCOPE_CLAIMS.filter(([s]) => scopes.includes(s)).flatMap(([, claims]) => claims));
  if (claimsRequest) {
    const parsed = JSON.parse(claimsRequest) as { id_token?: object; userinfo?: object };
    for (const part of [parsed.id_token, parsed.userinfo]) for (const name of Object.keys(part ?? {})) names.add(name);
  }
  return names;
}

/** The claims a wallet holds: name -> value (email_verified a boolean, the rest strings). */
export type WalletClaims = Record<string, string | boolean>;

/** The longest claim value a wallet takes from an OP ID Token. */
export const MAX_CLAIM_LENGTH = 2048;

/**
 * The wallet claims an OP ID Token carries: each of WALLET_CLAIMS that it has with the
 * right type (and not too long). Token takes a new user's wallet from exactly this, and
 * Orchestration checks the wallet Token mints against its own reading of the same
 * token, so the two must never differ.
 */
export function walletClaimsOf(payload: Readonly<Record<string, unknown>>): WalletClaims {
  const claims: WalletClaims = {};
  for (const name of WALLET_CLAIMS) {
    if (!Object.hasOwn(payload, name)) continue;
    const value = payload[name];
    if (name === "email_verified" ? typeof value === "boolean" : typeof value === "string" && value.length <= MAX_CLAIM_LENGTH) {
      claims[name] = value as string | boolean;
    }
  }
  return claims;
}

/**
 * What an app receives: the claims its Release Record lists, with the wallet's values,
 * in the release's order. Token mints ID Tokens and userinfo from this, and
 * Orchestration checks them against it.
 */
export function releasedClaims(release: { readonly claims: readonly string[] }, wallet: { readonly claims: WalletClaims }): WalletClaims {
  const released: WalletClaims = {};
  for (const name of release.claims) if (Object.hasOwn(wallet.claims, name)) released[name] = wallet.claims[name]!;
  return released;
}

/**
 * The wallet's claims with `names` taken from `offered` (an OP ID Token's wallet claims,
 * walletClaimsOf): each one's value, and "email" with its "email_verified" (dropped when
 * the token has none: a verification is the provider's, for its own address). Token
 * mints a claims update from this, and Orchestration checks it against its own reading
 * of the same token. `refused` says why a name cannot be taken.
 */
export function takeClaims(wallet: WalletClaims, offered: WalletClaims, names: readonly string[]): { claims: WalletClaims; taken: string[] } | { refused: string } {
  const claims: WalletClaims = { ...wallet };
  const taken: string[] = [];
  for (const name of new Set(names)) {
    if (name === "email_verified") return { refused: "email_verified is taken with email, not alone" };
    if (!(WALLET_CLAIMS as readonly string[]).includes(name)) return { refused: "a name is not a claim a wallet holds" };
    if (!Object.hasOwn(offered, name)) return { refused: `the provider's ID Token carries no "${name}"` };
    claims[name] = offered[name]!;
    taken.push(name);
    if (name === "email") {
      if (Object.hasOwn(offered, "email_verified")) claims.email_verified = offered.email_verified!;
      else delete claims.email_verified;
      taken.push("email_verified");
    }
  }
  return { claims, taken };
}
