// A person in a real browser (headless Chromium, driven by playwright-core): the demo
// app, the development OP's login form and hello-mesh's consent page, as a new user
// and then as a returning one. docs/design.md §6 and issue 4's first acceptance point.

import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { type BrowserContext, type Page, chromium } from "playwright-core";
import { type ProtocolMesh, DEMO_CLIENT, USERS, startProtocolMesh } from "../../../../test/support/protocol-mesh.js";
import { freePort } from "../../../../test/support/free-port.js";
import { CHROMIUM, CHROMIUM_ARGS } from "../../../../test/support/chromium.js";
import { startDemoApp } from "../../../dev/demoapp/demo-app.js";
import type { DevUser } from "../../../dev/devop/dev-op.js";


/** The four processes with the demo app, and a Chromium of the person's own: what each describe below starts, and closes. */
async function startPeople(options: Omit<Parameters<typeof startProtocolMesh>[0], "database" | "demoPort">) {
  const demoPort = await freePort();
  const mesh = await startProtocolMesh({ database: "pglite", demoPort, ...options });
  const demo = await startDemoApp({ issuer: mesh.issuer, clientId: DEMO_CLIENT.client_id, clientSecret: DEMO_CLIENT.secret, port: demoPort, publicUrl: `http://localhost:${demoPort}` });
  const profile = await mkdtemp(path.join(os.tmpdir(), "hello-chromium-"));
  const browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  return {
    mesh, demo, browser,
    async close() {
      await browser.close();
      await demo.close();
      await mesh.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

describe("a person logs in with a real browser (docs/design.md §6)", function () {
  this.timeout(180_000);
  let people: Awaited<ReturnType<typeof startPeople>>;
  let mesh: ProtocolMesh;
  let demo: Awaited<ReturnType<typeof startDemoApp>>;
  let browser: BrowserContext;

  before(async function () {
    // Twisted (test/support/twisted): the components' clock can be moved, so a person
    // can take minutes on the consent page without the test waiting them out.
    people = await startPeople({ twisted: {} });
    ({ mesh, demo, browser } = people);
  });
  after(async () => people?.close());

  /** From the demo app's login link through the development OP's form, as `user`, to hello-mesh's consent page. Returns the demo app's URL. */
  async function toConsentPage(page: Page, user: DevUser): Promise<string> {
    const demoUrl = `http://localhost:${new URL(demo.url).port}/`;
    await page.goto(demoUrl);
    await page.getByRole("link", { name: "Log in with hello-mesh" }).click();
    await page.waitForURL((u) => u.port === new URL(mesh.devOp.issuer).port);
    await page.getByLabel("Email").fill(user.email);
    await page.getByLabel("Password").fill(user.password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL((u) => u.origin === mesh.issuer);
    return demoUrl;
  }

  it("a new user signs in at the provider, consents, and the app gets a directed sub; returning, there is no consent page", async function () {
    const page = await browser.newPage();
    const demoUrl = await toConsentPage(page, USERS.alice);

    // hello-mesh's consent page: the app by name, the claims with their values.
    expect(await page.getByRole("heading", { level: 1 }).textContent()).to.include(DEMO_CLIENT.client_name);
    const email = page.getByRole("checkbox", { name: new RegExp(USERS.alice.email) });
    expect(await email.isChecked()).to.equal(true);
    const name = page.getByRole("checkbox", { name: new RegExp(USERS.alice.name) });
    // HELLO_SCREENSHOTS=<dir> keeps a picture of the consent page for a human to look at.
    if (process.env.HELLO_SCREENSHOTS) await page.screenshot({ path: path.join(process.env.HELLO_SCREENSHOTS, "consent.png"), fullPage: true });
    await name.uncheck(); // share the email, not the name
    // keyboard: the Allow button is reachable and works with Enter
    await page.getByRole("button", { name: "Allow" }).focus();
    await page.keyboard.press("Enter");

    // Back at the demo app, with the ID Token's claims.
    await page.waitForURL(demoUrl);
    if (process.env.HELLO_SCREENSHOTS) await page.screenshot({ path: path.join(process.env.HELLO_SCREENSHOTS, "demo-app.png"), fullPage: true });
    const body = (await page.textContent("body"))!;
    expect(body).to.include(USERS.alice.email);
    expect(body).to.not.include(USERS.alice.name);
    const sub = (await page.locator("dt:text-is('sub') + dd").textContent())!.trim();
    expect(sub).to.match(/^[A-Za-z0-9_-]{16,}$/);
    expect(sub).to.not.equal(USERS.alice.sub);

    // Returning user: log out of the demo, log in again. The provider still has a
    // session, hello-mesh has none of its own and asks no consent: the same sub comes back.
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByRole("link", { name: "Log in with hello-mesh" }).click();
    await page.waitForURL(demoUrl);
    expect((await page.locator("dt:text-is('sub') + dd").textContent())!.trim()).to.equal(sub);
    expect(await page.textContent("body")).to.include(USERS.alice.email);
    await page.close();
  });

  it("the account page, by keyboard: the provider asks again though its session is live, then the wallet and what the demo app receives", async function () {
    // Alice's browser from the first test: signed in at the provider, the demo app holding her email only.
    const page = await browser.newPage();
    await page.goto(`${mesh.issuer}/account`);
    await page.getByRole("button", { name: "Continue with Dev OP" }).focus();
    await page.keyboard.press("Enter");
    await page.waitForURL((u) => u.port === new URL(mesh.devOp.issuer).port);
    await page.getByLabel("Email").fill(USERS.alice.email);
    await page.getByLabel("Password").fill(USERS.alice.password);
    await page.getByLabel("Password").press("Enter");
    await page.waitForURL((u) => u.origin === mesh.issuer);
    expect(await page.getByRole("heading", { level: 1 }).textContent()).to.equal("Your wallet");
    if (process.env.HELLO_SCREENSHOTS) await page.screenshot({ path: path.join(process.env.HELLO_SCREENSHOTS, "account.png"), fullPage: true });
    const apps = (await page.getByRole("listitem").filter({ hasText: DEMO_CLIENT.client_name }).textContent())!;
    expect(apps).to.match(/^Demo App: receives .*Email address/);
    expect(apps).to.not.include("Your name");
    expect(await page.textContent("body")).to.include(USERS.alice.email);
    await page.close();
  });

  it("a new user who takes more than a minute on the consent page still signs in (the release is read again on Allow)", async function () {
    // A browser of Bob's own: the provider has no session for him yet.
    const own = await mkdtemp(path.join(os.tmpdir(), "hello-chromium-"));
    const context = await chromium.launchPersistentContext(own, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    try {
      const page = await context.newPage();
      const demoUrl = await toConsentPage(page, USERS.bob);
      expect(await page.getByRole("button", { name: "Allow" }).isVisible()).to.equal(true);

      // Ninety seconds on the consent page, for every component: longer than any Error
      // Token lives (60 s), well within the consent page's 10 minutes.
      mesh.control({ clockOffsetMs: 90_000 });
      await page.getByRole("button", { name: "Allow" }).click();
      await page.waitForURL(demoUrl);
      expect(await page.textContent("body")).to.include(USERS.bob.email);
      expect((await page.locator("dt:text-is('sub') + dd").textContent())!.trim()).to.match(/^[A-Za-z0-9_-]{16,}$/);
    } finally {
      mesh.control({});
      await context.close();
      await rm(own, { recursive: true, force: true });
    }
  });
  it("deleting the wallet through the pages, by keyboard: a fresh sign-in to confirm, then a new user with a new sub at the app", async function () {
    // A browser of Carol's own.
    const own = await mkdtemp(path.join(os.tmpdir(), "hello-chromium-"));
    const context = await chromium.launchPersistentContext(own, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    const subAtDemo = async (page: Page) => (await page.locator("dt:text-is('sub') + dd").textContent())!.trim();
    /** The provider's form, which every account sign-in must show (prompt=login), filled in by keyboard. */
    const signInAgain = async (page: Page) => {
      await page.waitForURL((u) => u.port === new URL(mesh.devOp.issuer).port);
      await page.getByLabel("Email").fill(USERS.carol.email);
      await page.getByLabel("Password").fill(USERS.carol.password);
      await page.getByLabel("Password").press("Enter");
      await page.waitForURL((u) => u.origin === mesh.issuer);
    };
    try {
      const page = await context.newPage();
      const demoUrl = await toConsentPage(page, USERS.carol);
      await page.getByRole("button", { name: "Allow" }).click();
      await page.waitForURL(demoUrl);
      const first = await subAtDemo(page);

      await page.goto(`${mesh.issuer}/account`);
      await page.getByRole("button", { name: "Continue with Dev OP" }).focus();
      await page.keyboard.press("Enter");
      await signInAgain(page);
      expect(await page.getByRole("heading", { level: 1 }).textContent()).to.equal("Your wallet");
      // The delete, by keyboard; the provider asks once more, for the delete itself.
      await page.getByRole("button", { name: "Delete my wallet, confirming with Dev OP" }).focus();
      await page.keyboard.press("Enter");
      await signInAgain(page);
      expect(await page.getByRole("heading", { level: 1 }).textContent()).to.equal("Your wallet is deleted");
      if (process.env.HELLO_SCREENSHOTS) await page.screenshot({ path: path.join(process.env.HELLO_SCREENSHOTS, "deleted.png"), fullPage: true });

      // At the app again: hello-mesh knows her no more, so it asks for consent, and the app sees a new user.
      await page.goto(demoUrl);
      await page.getByRole("button", { name: "Log out" }).click();
      await page.getByRole("link", { name: "Log in with hello-mesh" }).click();
      await page.waitForURL((u) => u.origin === mesh.issuer);
      await page.getByRole("button", { name: "Allow" }).click();
      await page.waitForURL(demoUrl);
      const second = await subAtDemo(page);
      expect(second).to.match(/^[A-Za-z0-9_-]{16,}$/).and.not.equal(first);
    } finally {
      await context.close();
      await rm(own, { recursive: true, force: true });
    }
  });
});

describe("a person links a second provider's account with a real browser (docs/transactions.md)", function () {
  this.timeout(180_000);
  let people: Awaited<ReturnType<typeof startPeople>>;
  let mesh: ProtocolMesh;
  let demo: Awaited<ReturnType<typeof startDemoApp>>;
  let browser: BrowserContext;

  before(async function () {
    people = await startPeople({ secondProvider: true });
    ({ mesh, demo, browser } = people);
  });
  after(async () => people?.close());

  /** The provider's sign-in form (at `op`), filled in as `user` (Alice unless said), by keyboard. */
  async function signInAt(page: Page, op: { issuer: string }, user: DevUser = USERS.alice) {
    await page.waitForURL((u) => u.port === new URL(op.issuer).port);
    await page.getByLabel("Email").fill(user.email);
    await page.getByLabel("Password").fill(user.password);
    await page.getByLabel("Password").press("Enter");
    await page.waitForURL((u) => u.origin === mesh.issuer || u.port === String(new URL(demo.url).port));
  }

  it("from the account page, by keyboard: the other provider asks, the account is linked, and it signs in to the app as the same person", async function () {
    const page = await browser.newPage();
    const demoUrl = `http://localhost:${new URL(demo.url).port}/`;
    // Alice's first sign-in, with the development provider.
    await page.goto(demoUrl);
    await page.getByRole("link", { name: "Log in with hello-mesh" }).click();
    await page.getByRole("button", { name: "Continue with Dev OP" }).click();
    await signInAt(page, mesh.devOp);
    await page.getByRole("button", { name: "Allow" }).click();
    await page.waitForURL(demoUrl);
    const sub = (await page.locator("dt:text-is('sub') + dd").textContent())!.trim();

    // The account page, then the link, each with a forced sign-in.
    await page.goto(`${mesh.issuer}/account`);
    await page.getByRole("button", { name: "Continue with Dev OP" }).click();
    await signInAt(page, mesh.devOp);
    expect(await page.getByRole("heading", { level: 1 }).textContent()).to.equal("Your wallet");
    expect(await page.textContent("body")).to.include("no transaction changed your wallet since it was made");
    await page.getByRole("button", { name: "Link an account at Other OP" }).focus();
    await page.keyboard.press("Enter");
    await signInAt(page, mesh.otherOp!);
    expect(await page.getByRole("heading", { level: 1 }).textContent()).to.equal("Account linked");

    // The account page lists both providers, and the link with its time.
    await page.goto(`${mesh.issuer}/account`);
    await page.getByRole("button", { name: "Continue with Other OP" }).click();
    await signInAt(page, mesh.otherOp!);
    if (process.env.HELLO_SCREENSHOTS) await page.screenshot({ path: path.join(process.env.HELLO_SCREENSHOTS, "linked.png"), fullPage: true });
    const providers = await page.locator("h2:text-is('Providers you sign in with') + ul li").allTextContents();
    expect(providers).to.deep.equal(["Dev OP", "Other OP"]);
    expect(await page.locator("h2:text-is('What was done to your wallet') + ul li").allTextContents()).to.satisfy(
      (items: string[]) => items.length === 1 && /^\d{4}-\d\d-\d\d \d\d:\d\d UTC: linked an account at Other OP$/.test(items[0]!),
    );

    // At the app, with the other provider: the same person, no consent asked.
    await page.goto(demoUrl);
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByRole("link", { name: "Log in with hello-mesh" }).click();
    await page.getByRole("button", { name: "Continue with Other OP" }).click();
    // (The chooser's form-action must let the redirects run on to the app: the provider asks nothing.)
    await page.waitForURL(demoUrl);
    expect((await page.locator("dt:text-is('sub') + dd").textContent())!.trim()).to.equal(sub);
    await page.close();
  });

  it("then, by keyboard: details taken from the other account, and the demo app made to forget her, which then sees a new user", async function () {
    // Alice's browser from the test before: her two accounts linked, the demo app knowing her.
    const page = await browser.newPage();
    const demoUrl = `http://localhost:${new URL(demo.url).port}/`;
    await page.goto(demoUrl);
    const sub = (await page.locator("dt:text-is('sub') + dd").textContent())!.trim();

    await page.goto(`${mesh.issuer}/account`);
    await page.getByRole("button", { name: "Continue with Dev OP" }).click();
    await signInAt(page, mesh.devOp);
    await page.getByRole("button", { name: "Take details from your Other OP account" }).focus();
    await page.keyboard.press("Enter");
    await signInAt(page, mesh.otherOp!);
    expect(await page.getByRole("heading", { level: 1 }).textContent()).to.equal("Take details from Other OP");
    if (process.env.HELLO_SCREENSHOTS) await page.screenshot({ path: path.join(process.env.HELLO_SCREENSHOTS, "claims.png"), fullPage: true });
    // The same values at both providers: nothing starts checked. She takes her name by keyboard.
    const name = page.getByRole("checkbox", { name: /Your name/ });
    expect(await name.isChecked()).to.equal(false);
    await name.focus();
    await page.keyboard.press("Space");
    await page.getByRole("button", { name: "Take the details checked" }).click();
    expect(await page.getByRole("heading", { level: 1 }).textContent()).to.equal("Details taken");

    // The account page says where her name came from, and offers the demo app's release.
    await page.goto(`${mesh.issuer}/account`);
    await page.getByRole("button", { name: "Continue with Dev OP" }).click();
    await signInAt(page, mesh.devOp);
    expect(await page.locator("dt:text-is('Your name') + dd").textContent()).to.include("(from Other OP)");
    await page.getByRole("button", { name: "Forget me at Demo App, confirming with Dev OP" }).focus();
    await page.keyboard.press("Enter");
    await signInAt(page, mesh.devOp);
    expect(await page.getByRole("heading", { level: 1 }).textContent()).to.equal("Demo App forgot you");

    // At the demo app: consent again, and a new sub.
    await page.goto(demoUrl);
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByRole("link", { name: "Log in with hello-mesh" }).click();
    await page.getByRole("button", { name: "Continue with Dev OP" }).click();
    await page.getByRole("button", { name: "Allow" }).click();
    await page.waitForURL(demoUrl);
    expect((await page.locator("dt:text-is('sub') + dd").textContent())!.trim()).to.not.equal(sub);
    await page.close();
  });
  it("then, by keyboard: two recovery accounts linked, the wallet recovered with them, and a new account linked that signs in to the app as her", async function () {
    // Alice's browser from the tests before. Her recovery accounts: Bob's at each provider (accounts she holds too).
    const page = await browser.newPage();
    const demoUrl = `http://localhost:${new URL(demo.url).port}/`;
    await page.goto(demoUrl);
    const sub = (await page.locator("dt:text-is('sub') + dd").textContent())!.trim();
    for (const [name, op] of [["Dev OP", mesh.devOp], ["Other OP", mesh.otherOp!]] as const) {
      await page.goto(`${mesh.issuer}/account`);
      await page.getByRole("button", { name: "Continue with Dev OP" }).click();
      await signInAt(page, mesh.devOp);
      await page.getByRole("button", { name: `Link a recovery account at ${name}`, exact: true }).focus();
      await page.keyboard.press("Enter");
      await signInAt(page, op, USERS.bob);
      expect(await page.getByRole("heading", { level: 1 }).textContent()).to.equal("Account linked");
      expect(await page.textContent("body")).to.include("is now one of your wallet's recovery accounts");
    }

    // She has lost her sign-in accounts: the recovery, one provider after the other, each asking again.
    await page.goto(`${mesh.issuer}/account`);
    await page.getByRole("link", { name: "Lost access to the accounts you sign in with? Recover your wallet" }).focus();
    await page.keyboard.press("Enter");
    // The link navigates: wait for the page it opens, or the heading read races the old page's.
    await page.waitForURL((u) => u.pathname === "/account/recover");
    expect(await page.getByRole("heading", { level: 1 }).textContent()).to.equal("Recover your wallet");
    await page.getByRole("button", { name: "Sign in with your recovery account at Dev OP" }).focus();
    await page.keyboard.press("Enter");
    await signInAt(page, mesh.devOp, USERS.bob);
    expect(await page.textContent("body")).to.include("Your recovery account at Dev OP is confirmed. Sign in with one more recovery account");
    expect(await page.getByRole("button", { name: "Sign in with your recovery account at Dev OP" }).count(), "a provider counts once").to.equal(0);
    await page.getByRole("button", { name: "Sign in with your recovery account at Other OP" }).focus();
    await page.keyboard.press("Enter");
    await signInAt(page, mesh.otherOp!, USERS.bob);
    expect(await page.getByRole("heading", { level: 1 }).textContent()).to.equal("Your wallet");
    expect(await page.textContent("body")).to.include("You recovered your wallet just now, with your recovery accounts at Dev OP and Other OP");
    if (process.env.HELLO_SCREENSHOTS) await page.screenshot({ path: path.join(process.env.HELLO_SCREENSHOTS, "recovered.png"), fullPage: true });
    expect(await page.locator("h2:text-is('Recovery accounts') + ul li").allTextContents()).to.deep.equal(["Dev OP", "Other OP"]);
    expect(await page.getByRole("button", { name: /Delete my wallet/ }).count(), "a recovered page offers a link only").to.equal(0);
    expect((await page.locator("h2:text-is('What was done to your wallet') + ul li").allTextContents()).at(-1)).to.match(
      /UTC: recovered your wallet with your recovery accounts at Dev OP and Other OP$/,
    );

    // A new account to sign in with: Carol's at the other provider, which then signs in to the app as Alice.
    await page.getByRole("button", { name: "Link an account at Other OP", exact: true }).focus();
    await page.keyboard.press("Enter");
    await signInAt(page, mesh.otherOp!, USERS.carol);
    expect(await page.getByRole("heading", { level: 1 }).textContent()).to.equal("Account linked");
    await page.goto(demoUrl);
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByRole("link", { name: "Log in with hello-mesh" }).click();
    await page.getByRole("button", { name: "Continue with Other OP" }).click();
    await page.waitForURL(demoUrl);
    expect((await page.locator("dt:text-is('sub') + dd").textContent())!.trim(), "the same person at the demo app").to.equal(sub);
    await page.close();
  });
});

