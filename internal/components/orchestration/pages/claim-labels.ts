// Human words for the standard claims a consent page may ask to release.
export const CLAIM_LABELS: Record<string, string> = Object.freeze({
  name: "Your name",
  given_name: "Your first name",
  family_name: "Your last name",
  email: "Email address",
  email_verified: "Whether your email is verified",
  picture: "Profile picture",
});

/** The label for a claim, or its own name when we have no better words. */
export function claimLabel(name: string): string {
  // hasOwn, so names like "constructor" never pick up Object.prototype members.
  return Object.hasOwn(CLAIM_LABELS, name) ? CLAIM_LABELS[name]! : name;
}
