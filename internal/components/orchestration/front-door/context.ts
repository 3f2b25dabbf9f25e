// What every endpoint of the front door shares: its configuration, the sealer and
// stores that carry a login between requests, the login driver and Token's client, and
// the two answers that depend on the issuer. Built once per front door; each endpoint
// module takes it as the first argument of its handler.

import { WalletKeys } from "../wallet-keys.js";
import type { WalletDriver } from "../wallet-driver.js";
import type http from "node:http";
import type { Client } from "@connectrpc/connect";
import type { FrontDoorClient, UpstreamProvider } from "../../../config/component-config.js";
import type { TokenService } from "../../../gen/hello/token/v1/token_service_pb.js";
import type { VerificationKeys } from "../../../protocol/signing-keys.js";
import type { HttpObserver } from "../../../observability/metrics/http-observer.js";
import type { LoginDriver } from "../login-driver.js";
import type { EvidenceStore } from "../s2s/evidence.js";
import type { IssuerClients } from "../s2s/issuers.js";
import { AuthorizationCodes, FlowSealer, SecretKeyedStore, type SharedStore } from "../sealed.js";
import type { AuthorizationRequest } from "./authorization-request.js";
import { answerApp } from "./responses.js";
import { UpstreamRp } from "./upstream-rp.js";

export interface FrontDoorDeps {
  readonly issuer: string;
  readonly clients: readonly FrontDoorClient[];
  readonly providers: readonly UpstreamProvider[];
  readonly driver: LoginDriver;
  readonly token: Client<typeof TokenService>;
  /** Token's published keys (its mesh bundle): the key set must be signed by its key-set key. */
  readonly tokenKeys: () => VerificationKeys;
  /** Token's credential-wallet keys (docs/wallet-server.md). Absent (tests of the login alone): made from `token` and `tokenKeys`. */
  readonly walletKeys?: WalletKeys;
  /** The Wallet Server (wallet-driver.ts); absent when Orchestration serves no credential wallet (no `wallet` configuration). */
  readonly walletDriver?: WalletDriver;
  readonly cookieKey: Uint8Array;
  /** Shared by Orchestration's replicas: codes, access tokens, used client assertions. */
  readonly store: SharedStore;
  /** Counts, times and logs each request by route name. Default: this process's metrics and log. */
  readonly observer?: HttpObserver;
  /**
   * Whether the peers a login needs (Token, Encryption and, behind it, Storage) serve
   * (internal/components/runtime/peer-health.ts). Until they do, logins get the "unavailable" page
   * and /healthz/ready answers 503. Absent: always ready.
   */
  readonly readiness?: FrontDoorReadiness;
  /**
   * The TLS-terminating proxies (addresses and subnets, public.trusted_proxies) whose
   * Forwarded / X-Forwarded-Proto says whether a request came over HTTPS (forwarded.ts).
   * Absent: no such header is read.
   */
  readonly trustedProxies?: readonly string[];
  /** The credential wallet server's issuer clients and evidence store (Orchestration's `wallet` section). Absent: no wallet server. */
  readonly wallet?: { issuers: IssuerClients; evidence: EvidenceStore };
}

export interface FrontDoorReadiness {
  /** True at once while every peer served at the last look; otherwise from a look begun now. */
  settle(): Promise<boolean>;
  /** The peers that did not serve at the last look. */
  notServing(): readonly string[];
}

const CODE_TTL = 60;

/** An authorization code's entry: what the token endpoint checks and hands out. */
export interface CodeEntry {
  client_id: string;
  redirect_uri: string;
  code_challenge: string;
  scope: string;
  id_token: string;
  userinfo_json: string;
  userinfo_jwt: string;
  /** A DPoP-bound client's code (docs/wallet-server.md): Token's wallet access token, and the DPoP key it is bound to. */
  wallet_access_token?: string;
  dpop_jkt?: string;
}
/** An access token's entry: what userinfo serves. */
export interface AccessEntry {
  client_id: string;
  userinfo_json: string;
  userinfo_jwt: string;
}

export interface DoorContext {
  /** The issuer, without a trailing slash. */
  readonly issuer: string;
  readonly clients: ReadonlyMap<string, FrontDoorClient>;
  readonly providers: readonly UpstreamProvider[];
  readonly rp: UpstreamRp;
  readonly driver: LoginDriver;
  readonly token: Client<typeof TokenService>;
  readonly tokenKeys: () => VerificationKeys;
  readonly walletKeys: WalletKeys;
  readonly walletDriver: WalletDriver | undefined;
  readonly readiness: FrontDoorReadiness | undefined;
  /** The credential wallet server's issuer clients and evidence store, when Orchestration is one. */
  readonly wallet?: { issuers: IssuerClients; evidence: EvidenceStore };
  /** Flow state in cookies and forms, sealed under Orchestration's cookie key. */
  readonly sealer: FlowSealer;
  /** The store Orchestration's replicas share, and the codes and access tokens kept in it. */
  readonly store: SharedStore;
  readonly codes: AuthorizationCodes<CodeEntry>;
  readonly accessTokens: SecretKeyedStore<AccessEntry>;
  /** `path` under the issuer, as discovery and audiences name it. */
  endpoint(path: string): string;
  /** Back to the app: the code or the error, with state and iss (RFC 9207). */
  toApp(res: http.ServerResponse, to: Pick<AuthorizationRequest, "redirect_uri" | "state" | "response_mode">, params: Record<string, string>): void;
  /** A cookie for the front door only: HttpOnly, SameSite=Lax, Secure when the issuer is https. */
  setCookie(res: http.ServerResponse, name: string, value: string, maxAge: number): void;
}

export function doorContext(deps: FrontDoorDeps): DoorContext {
  const issuer = deps.issuer.replace(/\/$/, "");
  const secure = issuer.startsWith("https:");
  return {
    issuer,
    clients: new Map(deps.clients.map((c) => [c.client_id, c])),
    providers: deps.providers,
    rp: new UpstreamRp(deps.providers, issuer),
    driver: deps.driver,
    token: deps.token,
    tokenKeys: deps.tokenKeys,
    walletKeys: deps.walletKeys ?? new WalletKeys(deps.token, deps.tokenKeys),
    walletDriver: deps.walletDriver,
    readiness: deps.readiness,
    ...(deps.wallet ? { wallet: deps.wallet } : {}),
    sealer: new FlowSealer(deps.cookieKey),
    store: deps.store,
    codes: new AuthorizationCodes<CodeEntry>(deps.store, CODE_TTL),
    accessTokens: new SecretKeyedStore<AccessEntry>(deps.store, "access-token"),
    endpoint: (path) => `${issuer}${path}`,
    toApp: (res, to, params) => answerApp(res, issuer, to, params),
    setCookie: (res, name, value, maxAge) =>
      void res.appendHeader("set-cookie", `${name}=${value}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${maxAge}${secure ? "; Secure" : ""}`),
  };
}

/** One request, as a route's handler gets it. */
export interface Exchange {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly url: URL;
  /** On a per-provider path (the upstream callback): the configured provider it names. */
  readonly provider?: UpstreamProvider;
}

export type Handler = (door: DoorContext, exchange: Exchange) => Promise<void> | void;
