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
