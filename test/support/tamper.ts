// What anyone without the signing key can do to a JWS: change its claims and keep the old
// signature. The attack specs use it to show a signature covers what they changed.

/** The payload of a compact JWS, decoded (not verified). */
export function claimsOf(jws: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jws.split(".")[1]!, "base64url").toString()) as Record<string, unknown>;
}

/** `jws` with `change` applied to its claims, and its header and signature as they were. */
export function tamper(jws: string, change: (claims: Record<string, unknown>) => void): string {
  const [header, , signature] = jws.split(".");
  const claims = claimsOf(jws);
  change(claims);
  return [header, Buffer.from(JSON.stringify(claims)).toString("base64url"), signature].join(".");
}
