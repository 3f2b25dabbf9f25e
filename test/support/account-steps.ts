// The steps the transaction specs take through the four processes (test/e2e/link, recovery,
// merge): a provider's forced or ordinary login, an app's whole login, and the account
// page's sign-in, each through the login driver a spec holds.

import type { LoginDriver, UpstreamResult } from "../../internal/components/orchestration/login-driver.js";
import { loginContext } from "../../internal/components/orchestration/login-driver.js";
import type { DevUser } from "../../internal/dev/devop/dev-op.js";
import { type APPS, type ProtocolMesh, appRequest } from "./protocol-mesh.js";

/** The mesh's providers: the development OP, and the second one of a mesh started with `secondProvider`. */
export type Provider = "dev" | "other";

/** A forced login at the provider: prompt=login, so auth_time follows the transaction's start. */
export const FORCED = { prompt: "login" };

/** The steps over `mesh`, with the driver `driver()` returns (a spec may set it in its `before`). */
export function accountSteps(mesh: () => ProtocolMesh, driver: () => LoginDriver) {
  const upstream = (provider: Provider, user: DevUser, nonce: string, options: { prompt?: string } = {}): Promise<UpstreamResult> =>
    provider === "dev" ? mesh().upstreamLogin(user, nonce, options) : mesh().otherLogin(user, nonce, options);

  return {
    upstream,

    /** A login at `app` through `provider`, consenting to every claim: the sub the app gets, whether the user was new, and a merge's merged_subs. */
    async login(provider: Provider, user: DevUser, app: keyof typeof APPS): Promise<{ sub: string; newUser: boolean; merged_subs?: string[] }> {
      const request = appRequest(app);
      const began = Date.now();
      const started = await driver().start(request, provider);
      const first = await driver().continue(started.sessionToken, loginContext(request, began), await upstream(provider, user, started.upstreamNonce));
      const done = first.kind === "consent" ? await driver().consent(first.state, Object.keys(first.wallet.claims), first.newUser) : first;
      const { sub, merged_subs } = JSON.parse(done.userinfoJson) as { sub: string; merged_subs?: string[] };
      return { sub, newUser: done.newUser, ...(merged_subs ? { merged_subs } : {}) };
    },

    /** The account page's sign-in at `provider` as `user`, forced: the wallet's view, or undefined when no wallet holds the account. */
    async openAccount(provider: Provider, user: DevUser) {
      const began = Date.now();
      const account = await driver().startAccount(provider);
      return driver().openAccount(account.sessionToken, began, await upstream(provider, user, account.upstreamNonce, FORCED));
    },
  };
}
