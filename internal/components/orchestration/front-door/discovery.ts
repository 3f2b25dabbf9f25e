// GET /.well-known/openid-configuration (OpenID Connect Discovery 1.0 §3): what the
// front door supports, which apps may cache for five minutes.

import { WALLET_CLAIMS } from "../../../protocol/claims.js";
import type { DoorContext, Exchange } from "./context.js";
import { sendJson } from "./responses.js";

export function discovery(door: DoorContext, { res }: Exchange) {
  sendJson(res, 200, {
    issuer: door.issuer,
    authorization_endpoint: door.endpoint("/authorize"),
    token_endpoint: door.endpoint("/token"),
    userinfo_endpoint: door.endpoint("/userinfo"),
    jwks_uri: door.endpoint("/jwks"),
    response_types_supported: ["code"],
    response_modes_supported: ["query", "form_post"],
    grant_types_supported: ["authorization_code"],
    subject_types_supported: ["pairwise"],
    id_token_signing_alg_values_supported: ["RS256", "ES256", "EdDSA"],
    userinfo_signing_alg_values_supported: ["RS256", "ES256", "EdDSA"],
    token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
    token_endpoint_auth_signing_alg_values_supported: ["RS256", "PS256", "ES256", "EdDSA"],
    request_object_signing_alg_values_supported: ["RS256", "PS256", "ES256", "EdDSA"],
    code_challenge_methods_supported: ["S256"],
    scopes_supported: ["openid", "email", "profile"],
    // merged_subs: a merge's (README, "Merged wallets, for apps").
    claims_supported: ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", ...WALLET_CLAIMS, "merged_subs"],
    claims_parameter_supported: true,
    request_parameter_supported: true,
    request_uri_parameter_supported: false,
    authorization_response_iss_parameter_supported: true,
    prompt_values_supported: ["none", "login", "consent"],
    // RFC 9449 §5.1: the Wallet Client's access tokens are DPoP-bound (docs/wallet-server.md).
    dpop_signing_alg_values_supported: ["ES256", "EdDSA"],
  }, { "cache-control": "public, max-age=300" });
}
