// The front door's routes, written once. A route's path is also its `route` metric
// label and log field (docs/observability.md); a path not here is a 404 (label
// "other"), and a method a route does not answer is a 405 naming those it does
// (docs/bad-input.md).

import type { UpstreamProvider } from "../../../config/component-config.js";
import { accountClaims, accountDelete, accountGet, accountLink, accountMerge, accountProvider, accountThreshold, accountRecover, accountRecoverProvider, accountRelease, accountUnlink, claimsUpdate } from "./account.js";
import { authorizeGet, authorizePost, chosenProvider } from "./authorize.js";
import { consent } from "./consent.js";
import type { Handler } from "./context.js";
import { discovery } from "./discovery.js";
import { home } from "./home.js";
import { live, ready } from "./health.js";
import { jwks } from "./jwks.js";
import { tokenEndpoint } from "./token-endpoint.js";
import type { UpstreamRp } from "./upstream-rp.js";
import { upstreamCallback } from "./upstream-callback.js";
import { userinfo } from "./userinfo.js";
import { walletGet, walletProvider, walletUnlink } from "./wallet-page.js";
import {
  walletCancel, walletCredentialConfirm, walletCredentialGet, walletCredentialDelete, walletCredentialManage, walletCredentialReject, walletCredentialStatus,
  walletCredentialMetadata, walletCredentials, walletEvidence, walletInitiate, walletIssuers, walletJwks, walletMe,
  walletProvision, walletSessions, walletStatus, walletSupplement,
} from "./wallet-api.js";

export interface Route {
  /**
   * The path, and the route's label; with `perProvider`, the paths are `<path>/<provider id>`
   * (upstreamRedirectUri in component-config.ts, the redirect URI providers register).
   */
  readonly path: string;
  /** One path per configured provider, all under this route's one label. */
  readonly perProvider?: true;
  /** The methods it answers (GET, POST: nothing else reaches a handler), each with its handler. */
  readonly methods: { readonly GET?: Handler; readonly POST?: Handler };
  /** A login step: it waits for the readiness gate, and shows the "unavailable" page while a peer a login needs does not serve. */
  readonly loginStep?: true;
  /**
   * How its errors are answered: a page for the browser (absent), RFC 6749 §5.2 JSON
   * for an app's back channel ("json"), or that with the RFC 6750 §3 challenge of a
   * protected resource ("bearer").
   */
  readonly errors?: "json" | "bearer" | "problem";
}

export const ROUTES: readonly Route[] = [
  { path: "/", methods: { GET: home } },
  { path: "/.well-known/openid-configuration", methods: { GET: discovery } },
  { path: "/jwks", methods: { GET: jwks } },
  { path: "/authorize", methods: { GET: authorizeGet, POST: authorizePost }, loginStep: true },
  { path: "/authorize/provider", methods: { POST: chosenProvider }, loginStep: true },
  { path: "/upstream/callback", perProvider: true, methods: { GET: upstreamCallback }, loginStep: true }, // /upstream/callback/<provider id>
  { path: "/consent", methods: { POST: consent }, loginStep: true },
  { path: "/account", methods: { GET: accountGet } },
  { path: "/account/provider", methods: { POST: accountProvider }, loginStep: true },
  { path: "/account/claims", methods: { POST: accountClaims }, loginStep: true },
  { path: "/account/claims/update", methods: { POST: claimsUpdate }, loginStep: true },
  { path: "/account/release", methods: { POST: accountRelease }, loginStep: true },
  { path: "/account/link", methods: { POST: accountLink }, loginStep: true },
  { path: "/account/unlink", methods: { POST: accountUnlink }, loginStep: true },
  { path: "/account/delete", methods: { POST: accountDelete }, loginStep: true },
  { path: "/account/merge", methods: { POST: accountMerge }, loginStep: true },
  { path: "/account/threshold", methods: { POST: accountThreshold }, loginStep: true },
  { path: "/account/recover", methods: { GET: accountRecover } },
  { path: "/account/recover/provider", methods: { POST: accountRecoverProvider }, loginStep: true },
  { path: "/token", methods: { POST: tokenEndpoint }, errors: "json" },
  { path: "/userinfo", methods: { GET: userinfo, POST: userinfo }, errors: "bearer" },
  // The credential wallet (docs/wallet-server.md): JSON, problems as RFC 9457 documents.
  { path: "/wallet", methods: { GET: walletGet } },
  { path: "/wallet/provider", methods: { POST: walletProvider }, loginStep: true },
  { path: "/wallet/unlink", methods: { POST: walletUnlink }, loginStep: true },
  { path: "/wallet/jwks", methods: { GET: walletJwks }, errors: "problem" },
  { path: "/wallet/api/me", methods: { GET: walletMe }, errors: "problem" },
  { path: "/wallet/api/issuers", methods: { GET: walletIssuers }, errors: "problem" },
  { path: "/wallet/api/sessions", methods: { POST: walletSessions }, errors: "problem" },
  { path: "/wallet/api/initiate", methods: { POST: walletInitiate }, errors: "problem" },
  { path: "/wallet/api/supplement", methods: { POST: walletSupplement }, errors: "problem" },
  { path: "/wallet/api/status", methods: { POST: walletStatus }, errors: "problem" },
  { path: "/wallet/api/cancel", methods: { POST: walletCancel }, errors: "problem" },
  { path: "/wallet/api/evidence", methods: { POST: walletEvidence }, errors: "problem" },
  { path: "/wallet/api/provision", methods: { POST: walletProvision }, errors: "problem" },
  { path: "/wallet/api/credential/get", methods: { POST: walletCredentialGet }, errors: "problem" },
  { path: "/wallet/api/credential/confirm", methods: { POST: walletCredentialConfirm }, errors: "problem" },
  { path: "/wallet/api/credential/metadata", methods: { POST: walletCredentialMetadata }, errors: "problem" },
  { path: "/wallet/api/credential/manage", methods: { POST: walletCredentialManage }, errors: "problem" },
  { path: "/wallet/api/credential/status", methods: { POST: walletCredentialStatus }, errors: "problem" },
  { path: "/wallet/api/credential/delete", methods: { POST: walletCredentialDelete }, errors: "problem" },
  { path: "/wallet/api/credential/reject", methods: { POST: walletCredentialReject }, errors: "problem" },
  { path: "/wallet/api/credentials", methods: { GET: walletCredentials }, errors: "problem" },
  { path: "/health", methods: { GET: live } }, // the name before /healthz/live, kept for whoever probes it
  { path: "/healthz/live", methods: { GET: live } },
  { path: "/healthz/ready", methods: { GET: ready } },
];

const exact = new Map(ROUTES.filter((r) => !r.perProvider).map((r) => [r.path, r]));
const perProvider = ROUTES.filter((r) => r.perProvider);

/** The route of `pathname`, and on a per-provider path the configured provider it names. */
export function findRoute(pathname: string, rp: UpstreamRp): { route: Route; provider?: UpstreamProvider } | undefined {
  const route = exact.get(pathname);
  if (route) return { route };
  for (const route of perProvider) {
    // Under the prefix, only a configured provider's id is a path; anything else is unknown.
    const provider = pathname.startsWith(`${route.path}/`) ? rp.provider(pathname.slice(route.path.length + 1)) : undefined;
    if (provider) return { route, provider };
  }
  return undefined;
}

/** The methods `route` answers, as an Allow header says them. */
export function allowed(route: Route): string {
  return Object.keys(route.methods).join(", ");
}

/** The handler for `method` on `route`, if it answers that method. */
export function handlerFor(route: Route, method: string | undefined): Handler | undefined {
  return method === "GET" || method === "POST" ? route.methods[method] : undefined;
}
