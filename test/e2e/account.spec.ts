// The account page (issue 13's first step, docs/transactions.md) through the four
// processes: a forced fresh sign-in at the user's provider, then the wallet as stored.
// hello-mesh keeps no session: each visit signs in again.

import { expect } from "chai";
import { APPS, type ProtocolMesh, USERS, browseToAccount, browseToApp, startProtocolMesh } from "../support/protocol-mesh.js";
import { prepareAuthorization } from "../support/app-client.js";
import { Browserless } from "../support/browserless.js";
import type { DevUser } from "../../internal/dev/devop/dev-op.js";

describe("the account page: a fresh sign-in, then the wallet", function () {
  let mesh: ProtocolMesh;
  before(async function () {
    this.timeout(120_000); // four processes and a provider, on a busy machine
    mesh = await startProtocolMesh({ database: "pglite" });
    // Alice has a wallet: she signed in to an app once.
    const { url } = await prepareAuthorization(mesh.issuer, "a");
    await browseToApp(url, "a", USERS.alice);
  });
  after(async () => mesh?.close());

  const signIn = (user: DevUser, browser?: Browserless) => browseToAccount(mesh.issuer, user, browser);

  it("shows the wallet after the provider asked for the password again, though the user was signed in there", async function () {
    const browser = new Browserless();
    // Signed in at the provider already (an app's login in this browser a moment ago):
    // an app's next login goes through without the password...
    await browseToApp((await prepareAuthorization(mesh.issuer, "a")).url, "a", USERS.alice, { browser });
    const callback = new URL(APPS.a!.redirect_uri);
    const again = await browser.go((await prepareAuthorization(mesh.issuer, "a")).url, {}, (u) => u.origin === callback.origin && u.pathname === callback.pathname);
    expect(again.url.pathname, "the provider's own session signed the app in").to.equal(callback.pathname);
    // ...and still the provider asks again: prompt=login, max_age=0.
    const { page, askedForPassword } = await signIn(USERS.alice, browser);
    expect(askedForPassword, "the provider was made to ask again").to.equal(true);
    expect(page.status, page.body.slice(0, 500)).to.equal(200);
    expect(page.body).to.include("<h1>Your wallet</h1>");
    expect(page.body).to.include("You signed in with Dev OP just now.");
    expect(page.body).to.include("<li>Dev OP</li>");
    expect(page.body).to.include(USERS.alice.email);
    expect(page.body).to.include(USERS.alice.name);
    // The one app she signed in to, with what she released to it (the consent page's every box).
    // (each app's entry goes on with the form that changes what it receives)
    expect(page.body).to.match(/<li><strong>app-a<\/strong>: receives [^<]*Email address[^<]*\n<form method="post" action="\/account\/release">/);
    expect(page.body).to.not.include("app-b");
  });

  it("each visit signs in again: the answer's cookie is spent, and a second look needs a new sign-in", async function () {
    const browser = new Browserless();
    const first = await signIn(USERS.alice, browser);
    expect(first.page.body).to.include("<h1>Your wallet</h1>");
    // The provider's answer, replayed, finds no flow: it was one use.
    const replay = await browser.go(first.page.url);
    expect(replay.status).to.equal(400);
    expect(replay.body).to.include("This sign-in has expired");
  });

  it("a subject no wallet holds gets no wallet, and no user is made", async function () {
    const { page } = await signIn(USERS.carol);
    expect(page.status).to.equal(200);
    expect(page.body).to.include("<h1>No wallet yet</h1>");
    // Still none: the account session made no user.
    expect((await signIn(USERS.carol)).page.body).to.include("<h1>No wallet yet</h1>");
  });

  it("the page's actions refuse a form that is not the page's (its sealed state tampered, or naming what the page did not offer), and nothing changes", async function () {
    const browser = new Browserless();
    const { page } = await signIn(USERS.alice, browser);
    const remove = browser.form(page, /^\/account\/delete$/);
    const stay = (u: URL) => u.origin !== new URL(mesh.issuer).origin; // never on to a provider
    const tampered = remove.fields.map(([k, v]): [string, string] => [k, k === "account" ? `${v.slice(0, -4)}AAAA` : v]);
    const cases: Array<[string, Promise<{ status: number; body: string }>, string]> = [
      ["a tampered account session", browser.submit({ ...remove, fields: tampered }, [["provider", "dev"]], stay), "This page has expired"],
      ["a provider the page did not offer", browser.submit(remove, [["provider", "evil"]], stay), "Unknown provider"],
      ["an account the wallet does not have", browser.submit({ ...remove, action: new URL("/account/unlink", mesh.issuer) }, [["unlink", "5:dev"]], stay), "Unknown account"],
      ["an app the page did not list", browser.submit({ ...remove, action: new URL("/account/release", mesh.issuer) }, [["client", "app-evil"], ["change", "forget"]], stay), "Unknown app"],
      ["a change that is none", browser.submit({ ...remove, action: new URL("/account/release", mesh.issuer) }, [["client", APPS.a!.client_id], ["change", "everything"]], stay), "Unknown app"],
      ["a recovery round whose sealed state is not the recovery page's", browser.submit({ ...remove, action: new URL("/account/recover/provider", mesh.issuer), fields: [["recovery", remove.fields.find(([k]) => k === "account")![1]]] }, [["provider", "dev"]], stay), "This page has expired"],
      ["a recovery threshold below 2", browser.submit({ ...remove, action: new URL("/account/threshold", mesh.issuer) }, [["provider", "dev"], ["threshold", "1"]], stay), "Not a threshold"],
      ["a recovery threshold that is not a number", browser.submit({ ...remove, action: new URL("/account/threshold", mesh.issuer) }, [["provider", "dev"], ["threshold", "two"]], stay), "Not a threshold"],
      ["a recovery at a provider the page did not offer", browser.submit({ ...remove, action: new URL("/account/recover/provider", mesh.issuer), fields: [] }, [["provider", "evil"]], stay), "Unknown provider"],
    ];
    for (const [what, answer, title] of cases) {
      const res = await answer;
      expect(res.status, what).to.equal(400);
      expect(res.body, what).to.include(title);
    }
    // Nothing changed: the wallet is as it was, with no history.
    const again = await signIn(USERS.alice);
    expect(again.page.body).to.include("<h1>Your wallet</h1>");
    expect(again.page.body).to.include("no transaction changed your wallet since it was made");
  });

  it("merging through the pages: the merge form asks for a fresh sign-in at the other wallet's account, then one wallet lists both", async function () {
    this.timeout(60_000);
    // Bob's account has a wallet of its own (it signed in to app b); Alice holds it too.
    await browseToApp((await prepareAuthorization(mesh.issuer, "b")).url, "b", USERS.bob);
    const browser = new Browserless();
    const { page } = await signIn(USERS.alice, browser);
    const atProvider = await browser.submit(browser.form(page, /^\/account\/merge$/), [["provider", "dev"]]);
    expect(atProvider.body, "the provider asks for the password").to.match(/<input[^>]*name="password"/);
    let done = await browser.submit(browser.form(atProvider, /\/login$/), [["email", USERS.bob.email], ["password", USERS.bob.password]]);
    // Another account than the provider's session's: it ends that session first, with a form a browser's script submits.
    if (/\/session\/end\/confirm/.test(done.body)) done = await browser.submit(browser.form(done, /\/session\/end\/confirm$/), []);
    expect(done.status, done.body.slice(0, 500)).to.equal(200);
    expect(done.body, done.body.replace(/<style[\s\S]*<\/style>/, "").slice(0, 1500)).to.include("<h1>Wallets merged</h1>");
    // Either account now opens the one wallet, which lists both accounts and the merge, and both apps.
    for (const user of [USERS.alice, USERS.bob]) {
      const after = (await signIn(user)).page.body;
      expect(after.match(/<li>Dev OP<\/li>/g), "two Dev OP accounts").to.have.length(2);
      expect(after).to.match(/UTC: merged two of your wallets into this one, confirmed at Dev OP<\/li>/);
      expect(after).to.include("<strong>app-a</strong>").and.include("<strong>app-b</strong>");
    }
  });
});
