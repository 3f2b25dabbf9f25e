// GET or POST /userinfo (OIDC Core §5.3.1): the claims of the ID Token the access
// token came with, as JSON or as the JWT Token signed.

import type http from "node:http";
import type { DoorContext, Exchange } from "./context.js";
import { form } from "./http-input.js";
import { OAuthError } from "./oauth-error.js";
import { sendJson } from "./responses.js";

export async function userinfo(door: DoorContext, { req, res, url }: Exchange) {
  const token = await bearerToken(req, url);
  const entry = token ? await door.accessTokens.read(token) : undefined;
  if (!entry) throw new OAuthError("invalid_token", "the access token is invalid or expired");
  if ((req.headers.accept ?? "").includes("application/jwt")) {
    res.writeHead(200, { "content-type": "application/jwt", "cache-control": "no-store" });
    res.end(entry.userinfo_jwt);
    return;
  }
  sendJson(res, 200, entry.userinfo_json);
}

/**
 * The access token of a userinfo request, from exactly one of the places RFC 6750 §2
 * allows: the Authorization header (Bearer, any method), or the `access_token` field of
 * a POST's application/x-www-form-urlencoded body. A POST with the header may have an
 * empty body or a body of another type, which is not read. A token in two places, or
 * in the URL (§2.3, which hello-mesh does not take: URLs end up in logs), is
 * invalid_request. Undefined when there is none.
 */
async function bearerToken(req: http.IncomingMessage, url: URL): Promise<string | undefined> {
  if (url.searchParams.has("access_token")) throw new OAuthError("invalid_request", "send the access token in the Authorization header or a form body, not in the URL");
  const scheme = /^Bearer(?: +(.*))?$/i.exec(req.headers.authorization ?? "");
  const inHeader = scheme ? (scheme[1] ?? "").trim() : undefined;
  const isForm = (req.headers["content-type"] ?? "").startsWith("application/x-www-form-urlencoded");
  if (req.method !== "POST" || !isForm) return inHeader;
  const inBody = (await form(req)).getAll("access_token");
  if (inBody.length > 1) throw new OAuthError("invalid_request", "access_token appears more than once");
  if (inBody.length === 1 && inHeader !== undefined) throw new OAuthError("invalid_request", "the access token was sent in more than one place");
  return inHeader ?? inBody[0];
}
