// The browser step of `hello wallet login` (RFC 8252): the person opens the address the
// command prints, signs in at the development OP (choosing it first where hello-mesh
// offers several), allows hello-mesh's consent page, and the browser comes back to the
// command's loopback address. In real Chromium, or in the browserless stand-in.

import { expect } from "chai";
import type { BrowserContext } from "playwright-core";
import type { DevUser } from "../../internal/dev/devop/dev-op.js";
import { Browserless } from "./browserless.js";

const loopback = (u: URL) => u.hostname === "127.0.0.1" || u.hostname === "[::1]";

/** The step in Chromium: the OP's form by its labels, then Allow. */
export function chromiumWalletStep(browser: BrowserContext, issuer: string, user: DevUser) {
  return async (url: string): Promise<void> => {
    const page = await browser.newPage();
    await page.goto(url);
    await page.getByLabel("Email").fill(user.email);
    await page.getByLabel("Password").fill(user.password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL((u) => u.origin === issuer || loopback(u));
    if (new URL(page.url()).origin === issuer) await page.getByRole("button", { name: "Allow" }).click();
    await page.waitForURL((u) => loopback(u));
    await page.getByText(/close this window/i).waitFor();
    await page.close();
  };
}

/** The step in the browserless stand-in, choosing `provider` on hello-mesh's chooser when it shows one. */
export function browserlessWalletStep(user: DevUser, provider = "dev") {
  return async (url: string): Promise<void> => {
    const browser = new Browserless();
    let page = await browser.go(url, {}, loopback);
    if (/action="\/authorize\/provider"/.test(page.body)) page = await browser.submit(browser.form(page, /^\/authorize\/provider$/), [["provider", provider]], loopback);
    if (!loopback(page.url)) page = await browser.submit(browser.form(page, /\/login$/), [["email", user.email], ["password", user.password]], loopback);
    if (!loopback(page.url)) page = await browser.submit(browser.form(page, /\/consent$/), [["decision", "allow"]], loopback);
    const back = await browser.go(page.url);
    expect(back.body, "the command's loopback page").to.match(/close this window/i);
  };
}
