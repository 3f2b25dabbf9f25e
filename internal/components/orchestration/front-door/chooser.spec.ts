// Several upstream providers: the front door lists them (docs/design.md §6), and
// provider_hint skips the list. Two real OIDC servers play the providers.

import { createHash } from "node:crypto";
import { expect } from "chai";
import { type ProtocolMesh, APPS, USERS, startProtocolMesh } from "../../../../test/support/protocol-mesh.js";
import { Browserless } from "../../../../test/support/browserless.js";

describe("choosing a provider (docs/design.md §6)", function () {
  this.timeout(120_000);
  let mesh: ProtocolMesh;
  before(async () => (mesh = await startProtocolMesh({ database: "pglite", secondProvider: true })));
  after(async () => mesh?.close());

  const authorize = (extra: Record<string, string> = {}) => {
    const url = new URL(`${mesh.issuer}/authorize`);
    url.search = new URLSearchParams({
      response_type: "code", client_id: "app-a", redirect_uri: APPS.a!.redirect_uri, scope: "openid email",
      nonce: "n-0123456789", state: "st", code_challenge: createHash("sha256").update("v".repeat(43)).digest("base64url"),
      code_challenge_method: "S256", ...extra,
    }).toString();
    return url;
  };
  const atApp = (u: URL) => u.origin === new URL(APPS.a!.redirect_uri).origin;

  it("lists the providers, and the one chosen is where the user signs in", async function () {
    const browser = new Browserless();
    const chooser = await browser.go(authorize(), {}, atApp);
    expect(chooser.status).to.equal(200);
    expect(chooser.body).to.include("Continue with Dev OP").and.include("Continue with Other OP");
    // the chooser's CSP lets its form lead to either provider, and on to the app: a user
    // signed in at the provider already goes from the form to the app in one chain of
    // redirects, which form-action governs to its end (Chromium blocks it otherwise:
    // browser.spec.ts, the link)
    const formAction = /form-action ([^;]*)/.exec(chooser.headers.get("content-security-policy") ?? "")![1]!.split(" ");
    expect(formAction).to.include.members(["'self'", new URL(mesh.devOp.issuer).origin, new URL(APPS.a!.redirect_uri).origin]);
    const atOther = await browser.submit(browser.form(chooser, /\/authorize\/provider$/), [["provider", "other"]], atApp);
    expect(atOther.url.origin).to.not.equal(new URL(mesh.devOp.issuer).origin);
    expect(atOther.body).to.include("/interaction/");
    const done = await browser.submit(browser.form(atOther, /\/login$/), [["email", USERS.alice.email], ["password", USERS.alice.password]], atApp);
    const consented = done.body.includes('name="decision"') ? await browser.submit(browser.form(done, /^\/consent$/), [["decision", "allow"]], atApp) : done;
    expect(consented.url.searchParams.get("code")).to.be.a("string");
  });

  it("mix-up (RFC 9700 §4.4): an answer brought to another provider's callback is refused and nothing is redeemed; at its own path it completes", async function () {
    const frontDoor = new URL(mesh.issuer).origin;
    const atCallback = (u: URL) => u.origin === frontDoor && u.pathname.startsWith("/upstream/callback/");
    for (const [started, other] of [["dev", "other"], ["other", "dev"]] as const) {
      const browser = new Browserless();
      const login = await browser.go(authorize({ provider_hint: started }), {}, atCallback);
      const back = await browser.submit(browser.form(login, /\/login$/), [["email", USERS.bob.email], ["password", USERS.bob.password]], atCallback);
      expect(back.url.pathname, "each provider sends the browser to its own path").to.equal(`/upstream/callback/${started}`);
      const misplaced = new URL(back.url);
      misplaced.pathname = `/upstream/callback/${other}`;
      const refused = await browser.go(misplaced, {}, atApp);
      expect(refused.status).to.equal(400);
      expect(refused.body).to.include("did not come from the provider this sign-in was started with");
      expect(refused.url.origin, "no redirect to the app").to.equal(frontDoor);
      // Honest twin: the same answer, at its own provider's path, with the same browser.
      // It completes, so the refusal redeemed nothing (a provider's code works once).
      const done = await browser.go(back.url, {}, atApp);
      const consented = done.body.includes('name="decision"') ? await browser.submit(browser.form(done, /^\/consent$/), [["decision", "allow"]], atApp) : done;
      expect(consented.url.searchParams.get("code"), `${started}: ${consented.status} ${consented.body.slice(0, 200)}`).to.be.a("string");
    }
  });

  it("provider_hint skips the chooser; an unknown hint is invalid_request", async function () {
    const hinted = await new Browserless().go(authorize({ provider_hint: "dev" }), {}, atApp);
    expect(hinted.url.origin).to.equal(new URL(mesh.devOp.url).origin.replace("127.0.0.1", "localhost"));
    const unknown = await new Browserless().go(authorize({ provider_hint: "nowhere" }), {}, atApp);
    expect(unknown.url.searchParams.get("error")).to.equal("invalid_request");
  });

  it("prompt=none with several providers and no hint is interaction_required", async function () {
    const page = await new Browserless().go(authorize({ prompt: "none" }), {}, atApp);
    expect(page.url.searchParams.get("error")).to.equal("interaction_required");
  });
});
