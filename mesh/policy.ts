// The mesh's authorization table (docs/design.md §1): default deny, keyed by full method
// name ("/package.Service/Method"), deciding which verified identity may call what.
//
//   Orchestration -> Token        hello.token.v1.TokenService/*
//   Orchestration -> Encryption   hello.encryption.v1.EncryptionService/*
//   Encryption    -> Storage      hello.storage.v1.StorageService/* (records, each call
//                                 with a Token-signed Access Token) and
//                                 hello.storage.v1.KeyMaintenanceService/* (wrapped data
//                                 keys only, no Access Token: the re-wrap job)
//   along each of these edges:    grpc.health.v1.Health/Check (only: not Watch or List),
//                                 so a caller serves only while what it needs does;
//                                 Encryption reports NOT_SERVING while Storage does, so
//                                 Orchestration sees the whole path
//   <component>/operator -> <component>: health, reflection; keyring admin (Encryption)
//                                 and key-wrapping admin (Storage)
//   any custodian's operator -> any component: BuildInfo, metrics (seed 000)
//
// There is deliberately no other way in: no wildcard over packages, no "admin" role.

import { COMPONENTS, type Component, type Identity, formatIdentity } from "../internal/protocol/identity.js";

/** Who may call a rule's methods, relative to the component serving them. */
export type Caller =
  | { readonly kind: "component"; readonly component: Component }
  /** The serving component's own custodian's operator. */
  | { readonly kind: "own-operator" }
  /** The operator of any of the four custodians. */
  | { readonly kind: "any-operator" };

export interface Rule {
  /** The component that serves these methods. */
  readonly server: Component | "every";
  /** "/pkg.Service/Method" or "/pkg.Service/*". */
  readonly methods: string;
  readonly callers: readonly Caller[];
}

// Health and reflection are for the component's own custodian's operator. Metrics are
// not in this list: seed 000 asks that they be readable by every custodian, so they
// take an "any-operator" rule like BuildInfo (below).
const OPERATOR_SERVICES = ["/grpc.health.v1.Health/*", "/grpc.reflection.v1.ServerReflection/*"];

const HEALTH_CHECK = "/grpc.health.v1.Health/Check";

export const RULES: readonly Rule[] = [
  { server: "token", methods: "/hello.token.v1.TokenService/*", callers: [{ kind: "component", component: "orchestration" }] },
  { server: "encryption", methods: "/hello.encryption.v1.EncryptionService/*", callers: [{ kind: "component", component: "orchestration" }] },
  { server: "storage", methods: "/hello.storage.v1.StorageService/*", callers: [{ kind: "component", component: "encryption" }] },
  // A rule of its own: these calls take no Access Token, so whoever may make them can
  // move (and so destroy) wrapped data keys without any login asking. Only Encryption's
  // re-wrap job; not even Storage's operator, who has KeyWrappingAdminService.
  { server: "storage", methods: "/hello.storage.v1.KeyMaintenanceService/*", callers: [{ kind: "component", component: "encryption" }] },
  // Health along each edge above (docs/design.md §1): Check alone. Watch would hold a stream
  // open per caller, and List names every service a peer serves; neither is needed.
  { server: "token", methods: HEALTH_CHECK, callers: [{ kind: "component", component: "orchestration" }] },
  { server: "encryption", methods: HEALTH_CHECK, callers: [{ kind: "component", component: "orchestration" }] },
  { server: "storage", methods: HEALTH_CHECK, callers: [{ kind: "component", component: "encryption" }] },
  // Keyring rotation (docs/keyring-rotation.md): each custodian's operator runs its own side.
  { server: "encryption", methods: "/hello.encryption.v1.KeyringAdminService/*", callers: [{ kind: "own-operator" }] },
  { server: "storage", methods: "/hello.storage.v1.KeyWrappingAdminService/*", callers: [{ kind: "own-operator" }] },
  ...OPERATOR_SERVICES.map((methods): Rule => ({ server: "every", methods, callers: [{ kind: "own-operator" }] })),
  { server: "every", methods: "/hello.common.v1.BuildInfoService/GetBuildInfo", callers: [{ kind: "any-operator" }] },
  // Also what GET /metrics on the mesh port is authorized as (mesh/server.ts).
  { server: "every", methods: "/hello.common.v1.MetricsService/GetMetrics", callers: [{ kind: "any-operator" }] },
];

function matches(pattern: string, method: string): boolean {
  return pattern.endsWith("/*") ? method.startsWith(pattern.slice(0, -1)) : pattern === method;
}

function callerMatches(caller: Caller, identity: Identity, server: Component): boolean {
  switch (caller.kind) {
    case "component":
      return !identity.operator && identity.component === caller.component;
    case "own-operator":
      return identity.operator && identity.component === server;
    case "any-operator":
      return identity.operator;
  }
}

function rulesFor(server: Component, rules: readonly Rule[]): Rule[] {
  return rules.filter((rule) => rule.server === server || rule.server === "every");
}

export type Decision = { readonly allowed: true } | { readonly allowed: false; readonly reason: string };

/**
 * Decides whether `identity` may call `method` ("/pkg.Service/Method") on `server`.
 * The reason on a refusal names the identity and method, never request content.
 */
export function authorize(
  server: Component,
  identity: Identity,
  method: string,
  rules: readonly Rule[] = RULES,
): Decision {
  const applicable = rulesFor(server, rules).filter((rule) => matches(rule.methods, method));
  if (applicable.some((rule) => rule.callers.some((c) => callerMatches(c, identity, server)))) {
    return { allowed: true };
  }
  return {
    allowed: false,
    reason: `${formatIdentity(identity)} may not call ${method} on ${server}`,
  };
}

/**
 * The custodians whose CAs a server must trust in the TLS handshake: exactly those
 * whose identities some rule lets call it. (Every custodian's operator may call
 * BuildInfo everywhere, so in practice that is all four; the handshake refuses any
 * other CA, and `authorize` narrows per method.)
 */
export function trustedCallerCustodians(server: Component, rules: readonly Rule[] = RULES): Component[] {
  const trusted = new Set<Component>();
  for (const rule of rulesFor(server, rules)) {
    for (const caller of rule.callers) {
      if (caller.kind === "component") trusted.add(caller.component);
      else if (caller.kind === "own-operator") trusted.add(server);
      else for (const c of COMPONENTS) trusted.add(c);
    }
  }
  return COMPONENTS.filter((c) => trusted.has(c));
}
