// GET /jwks: Token's key set. The front door has no key of its own.

import { compactVerify } from "jose";
import { JWKS_MAX_AGE } from "../../../protocol/tokens.js";
import type { DoorContext, Exchange } from "./context.js";

/**
 * Token's key set, byte for byte, once its signature by Token's key-set key checks
 * out. Fetched per request (it is small), so a key Token publishes shows at once;
 * apps may cache it for max-age, which is why a new key stays `next` for longer.
 */
export async function jwks(door: DoorContext, { res }: Exchange) {
  const { jwks, signature } = await door.token.getKeySet({});
  const [header, , sig] = signature.split(".");
  const attached = `${header}.${Buffer.from(jwks).toString("base64url")}.${sig}`;
  await compactVerify(attached, async (h) => {
    const key = door.tokenKeys().find("key-set", h.kid);
    if (!key || h.alg !== key.alg || h.typ !== "hello-key-set") throw new Error("the key set is not signed by Token's key-set key");
    return key.key;
  });
  res.writeHead(200, { "content-type": "application/json", "cache-control": `public, max-age=${JWKS_MAX_AGE}` });
  res.end(Buffer.from(jwks));
}
