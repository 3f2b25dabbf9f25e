// RFC 6749 / OIDC error responses. `description` is public and says what to fix; it
// never carries a token, code or secret.

export type OAuthErrorCode =
  | "invalid_request"
  | "invalid_client"
  | "invalid_grant"
  | "unauthorized_client"
  | "unsupported_grant_type"
  | "unsupported_response_type"
  | "invalid_scope"
  | "access_denied"
  | "login_required"
  | "consent_required"
  | "interaction_required"
  | "invalid_request_object"
  | "request_uri_not_supported"
  | "server_error"
  | "temporarily_unavailable"
  | "invalid_token"
  | "invalid_dpop_proof";

export class OAuthError extends Error {
  override name = "OAuthError";
  constructor(
    readonly error: OAuthErrorCode,
    readonly description: string,
    readonly status = error === "invalid_client" || error === "invalid_token" || error === "invalid_dpop_proof" ? 401 : error === "server_error" ? 500 : 400,
  ) {
    super(`${error}: ${description}`);
  }
}
