// When the user authenticated at their provider, against what the app asked for
// (OIDC Core §3.1.2.1 max_age and prompt=login). Token and Orchestration apply the
// same rule, each to the OP ID Token it verified itself: only when the app sent
// max_age or prompt=login is a missing or stale auth_time a refusal (login_required).

/** How far the provider's clock and ours may disagree, in seconds. */
export const AUTH_TIME_SKEW_SECONDS = 30;

export interface FreshnessDemand {
  /** The app's max_age in seconds, if it sent one. */
  readonly maxAge?: number | undefined;
  /** The app sent prompt=login: the authentication must come after the login began. */
  readonly promptLogin?: boolean | undefined;
  /** When this login began (epoch milliseconds). */
  readonly started: number;
  /**
   * Who demands it, for the words: an app (the default), or an account session or a
   * transaction of the wallet, which always demand a fresh login.
   */
  readonly demandedBy?: "app" | "account" | "transaction" | undefined;
}

/**
 * Why `authTime` (epoch seconds, or undefined when the provider did not send it) does
 * not meet the app's demand at `now`, or undefined when it does. The words carry no
 * identifier, only the rule that failed.
 */
export function authTimeProblem(authTime: number | undefined, demand: FreshnessDemand, now: Date): string | undefined {
  const nowSeconds = Math.floor(now.getTime() / 1000);
  if (authTime !== undefined && authTime > nowSeconds + AUTH_TIME_SKEW_SECONDS) return "the provider's auth_time is in the future";
  if (demand.maxAge === undefined && !demand.promptLogin) return undefined;
  // An account session or a transaction: the wallet's own demand, in its own words.
  const wallet = demand.demandedBy === "account" ? "account session" : demand.demandedBy === "transaction" ? "transaction" : undefined;
  if (authTime === undefined) {
    return `the provider did not say when the user authenticated (auth_time), and ${wallet ? `${wallet === "account session" ? "an" : "a"} ${wallet} needs a fresh login` : "the app asked for a recent or fresh login"}`;
  }
  if (demand.maxAge !== undefined && nowSeconds - authTime > demand.maxAge + AUTH_TIME_SKEW_SECONDS) {
    return wallet ? `the user did not authenticate at the provider just now, as ${wallet === "account session" ? "an" : "a"} ${wallet} needs` : "the user authenticated at the provider longer ago than the app's max_age allows";
  }
  if (demand.promptLogin && authTime < Math.floor(demand.started / 1000) - AUTH_TIME_SKEW_SECONDS) {
    return wallet
      ? `the user did not authenticate at the provider after this ${wallet} began`
      : "the user did not authenticate at the provider after this login began, as prompt=login asks";
  }
  return undefined;
}

/** The prefix of Token's refusal for a login the app's freshness demand rules out. */
export const LOGIN_REQUIRED = "login required: ";
