// SPIFFE-style identities of the mesh (docs/design.md §2).
//
// Every leaf certificate carries exactly one URI SAN, `spiffe://hello.mesh/<component>`
// or `spiffe://hello.mesh/<component>/operator`. The component named in the SAN is
// also the custodian whose CA must have issued the certificate.

export const COMPONENTS = ["orchestration", "token", "encryption", "storage"] as const;
export type Component = (typeof COMPONENTS)[number];

export const TRUST_DOMAIN = "hello.mesh";

/** Who is calling: a component itself, or its custodian's operator. */
export interface Identity {
  /** The custodian (and so the CA) this identity belongs to. */
  readonly component: Component;
  /** True for `spiffe://hello.mesh/<component>/operator`. */
  readonly operator: boolean;
  /** The URI SAN exactly as written in the certificate. */
  readonly uri: string;
}

export function isComponent(value: string): value is Component {
  return (COMPONENTS as readonly string[]).includes(value);
}

export function identityUri(component: Component, operator = false): string {
  return `spiffe://${TRUST_DOMAIN}/${component}${operator ? "/operator" : ""}`;
}

export function identityOf(component: Component, operator = false): Identity {
  return { component, operator, uri: identityUri(component, operator) };
}

/** Parses a SPIFFE URI of this trust domain, or returns undefined for anything else. */
export function parseIdentityUri(uri: string): Identity | undefined {
  const match = /^spiffe:\/\/hello\.mesh\/([a-z]+)(\/operator)?$/.exec(uri);
  if (!match) return undefined;
  const component = match[1]!;
  if (!isComponent(component)) return undefined;
  return { component, operator: match[2] !== undefined, uri };
}

/** "token" or "token/operator": the short form used in logs, tables and errors. */
export function formatIdentity(identity: Identity): string {
  return identity.operator ? `${identity.component}/operator` : identity.component;
}
