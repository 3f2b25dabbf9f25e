// Comparing secrets (nonces, client secrets) without the time revealing how much
// of them matched.

import { createHash, timingSafeEqual } from "node:crypto";

/**
 * Whether two strings are equal, in a time that depends on neither's content nor its
 * length: both are hashed first, so a shorter guess takes as long as a right one.
 */
export function equalsConstantTime(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given, "utf8").digest();
  const b = createHash("sha256").update(expected, "utf8").digest();
  return timingSafeEqual(a, b);
}
