// The wallet server's S2S listener (docs/wallet-server.md): where the configured issuers
// call us over mutual TLS, each known by its own CA (wire-server.ts), on a listener of
// its own, apart from the mesh and the front door.
//
//   POST /verification/notify   a verification's new status    → handlers.verificationNotice
//   POST /event/notify          a credential instance's event  → handlers.event
//   POST /credential/status     this server's view of one of the issuer's instances
//                                                              → handlers.credentialStatus
//   POST /credential/manage     the issuer's own SUSPEND, RESUME or UNLINK
//                                                              → handlers.manage
//   GET  /evidence/<id>         evidence the Wallet Client uploaded for this issuer
//                               (application/jose), for that issuer only
//
// A handler refuses with a ProblemError; any other error is answered 500 with no
// details and reported to onError.

import type { WalletServerConfig } from "../../../config/component-config.js";
import type { IdempotencyStore } from "../../../s2s/idempotency.js";
import { credentialManageRequestSchema, credentialStatusRequestSchema, eventNotifySchema, verificationStatusSchema } from "../../../s2s/messages.js";
import { problem } from "../../../s2s/problem.js";
import { type WireServer, startWireServer } from "../../../s2s/wire-server.js";
import type { EvidenceStore } from "./evidence.js";
import type { S2sHandlers } from "./handlers.js";
import { readPemFile } from "./pem-files.js";

const EVIDENCE_PATH = "/evidence";

export interface S2sServerOptions {
  /** Orchestration's `wallet` section (paths resolved). */
  config: WalletServerConfig;
  handlers: S2sHandlers;
  evidence: EvidenceStore;
  /** Unexpected errors of a handler (the issuer got a 500 internal_error). */
  onError?: (error: unknown, path: string) => void;
  /** Default: one in memory. Replicas behind one public_url need a shared one. */
  idempotency?: IdempotencyStore;
}

export async function startS2sServer(options: S2sServerOptions): Promise<WireServer> {
  const { config, handlers, evidence } = options;
  return startWireServer({
    certPem: readPemFile(config.tls.cert, "wallet.tls.cert"),
    keyPem: readPemFile(config.tls.key, "wallet.tls.key"),
    host: config.listen.host,
    port: config.listen.port,
    peers: config.issuers.map((issuer, i) => ({ id: issuer.id, caPem: readPemFile(issuer.ca, `wallet.issuers[${i}].ca`) })),
    routes: [
      {
        path: "/verification/notify",
        schema: verificationStatusSchema,
        async handle({ peer, body }) {
          await handlers.verificationNotice(peer, body);
          return { body: { sessionId: body.sessionId, verificationId: body.verificationId } };
        },
      },
      {
        path: "/event/notify",
        schema: eventNotifySchema,
        async handle({ peer, body }) {
          await handlers.event(peer, body);
          return { body: { acknowledged: true } };
        },
      },
      {
        path: "/credential/status",
        schema: credentialStatusRequestSchema,
        async handle({ peer, body }) {
          return { body: await handlers.credentialStatus(peer, body) };
        },
      },
      {
        path: "/credential/manage",
        schema: credentialManageRequestSchema,
        async handle({ peer, body }) {
          return { body: await handlers.manage(peer, body) };
        },
      },
    ],
    getRoutes: [
      {
        path: EVIDENCE_PATH,
        prefix: true,
        async handle(peer, path) {
          const jwe = await evidence.get(peer, path.slice(EVIDENCE_PATH.length + 1));
          if (jwe === undefined) throw problem(404, "unknown_evidence", "no evidence with this id belongs to you (it may have expired: ask the wallet client for a new reference)");
          return { body: undefined, text: { contentType: "application/jose", body: jwe } };
        },
      },
    ],
    ...(options.idempotency ? { idempotency: options.idempotency } : {}),
    ...(options.onError ? { onError: options.onError } : {}),
  });
}
