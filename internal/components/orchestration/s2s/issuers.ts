// Orchestration's clients of the issuers it is configured with (wallet.issuers): one S2S
// wire client each (wire-client.ts), trusting only that issuer's CA for its server
// certificate and presenting the wallet server's own mTLS certificate.

import type { WalletServerConfig } from "../../../config/component-config.js";
import { WireClient, type WireClientOptions } from "../../../s2s/wire-client.js";
import { readPemFile } from "./pem-files.js";

/** An issuer id that is not in wallet.issuers: the wallet server talks to no other. */
export class UnknownIssuerError extends Error {
  override name = "UnknownIssuerError";
}

/** Tests' knobs of every client (no real sleeping between retries, shorter timeouts). */
export type IssuerClientTuning = Pick<WireClientOptions, "maxRetries" | "sleep" | "random" | "timeoutMs">;

export class IssuerClients {
  readonly #clients = new Map<string, WireClient>();

  /** `certPem`, `keyPem`: the wallet server's certificate and key (wallet.tls). Reads each issuer's CA file now. */
  constructor(config: WalletServerConfig, certPem: string, keyPem: string, tuning: IssuerClientTuning = {}) {
    config.issuers.forEach((issuer, i) => {
      if (this.#clients.has(issuer.id)) throw new Error(`two issuers in wallet.issuers are called ${issuer.id}`);
      this.#clients.set(
        issuer.id,
        new WireClient({
          ...tuning,
          baseUrl: issuer.base_url,
          caPem: readPemFile(issuer.ca, `wallet.issuers[${i}].ca`),
          certPem,
          keyPem,
          ...(issuer.servername !== undefined ? { servername: issuer.servername } : {}),
        }),
      );
    });
  }

  /** The client of `issuerId`; throws UnknownIssuerError for an issuer that is not configured. */
  client(issuerId: string): WireClient {
    const client = this.#clients.get(issuerId);
    if (!client) throw new UnknownIssuerError(`no issuer ${JSON.stringify(issuerId)} is configured (wallet.issuers)`);
    return client;
  }

  /** The configured issuers' ids, in configuration order. */
  ids(): string[] {
    return [...this.#clients.keys()];
  }

  close(): void {
    for (const client of this.#clients.values()) client.close();
  }
}
