import { walletPage } from "./wallet.js";
import { createHash } from "node:crypto";
import { expect } from "chai";
import { escapeHtml, html, render } from "./html.js";
import { PAGE_CSP, page, pageCsp } from "./layout.js";
import { chooserPage } from "./chooser.js";
import { breakable, consentPage } from "./consent.js";
import { errorPage } from "./error.js";
import { homePage } from "./home.js";
import { accountPage, claimsPage, mergedPage, recoveryPage, thresholdSetPage, detailsTakenPage, linkedPage, noWalletPage, releaseChangedPage, unlinkedPage, walletDeletedPage } from "./account.js";
import { CLAIM_LABELS, claimLabel } from "./claim-labels.js";

const HOSTILE = `<script>alert(1)</script>"'&`;
const ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;";

const chooser = (over: Partial<Parameters<typeof chooserPage>[0]> = {}) =>
  chooserPage({
    appName: "Demo App",
    providers: [{ id: "google", name: "Google" }, { id: "dev", name: "Dev OP" }],
    action: "/authorize/choose",
    hidden: { flow: "sealed-flow", csrf: "t0k3n" },
    ...over,
  });

const consent = (over: Partial<Parameters<typeof consentPage>[0]> = {}) =>
  consentPage({
    appName: "Demo App",
    clientId: "demo-client",
    claims: [
      { name: "name", label: claimLabel("name"), value: "Alice Example" },
      { name: "email", label: claimLabel("email"), value: "alice@example.com" },
      { name: "email_verified", label: claimLabel("email_verified"), value: "Yes" },
    ],
    action: "/consent",
    hidden: { flow: "sealed-flow" },
    ...over,
  });

const error = () => errorPage({ title: "That link has expired", message: "The sign-in took too long.", hint: "Go back to the app and try again." });

const tags = (doc: string, name: string) => doc.match(new RegExp(`<${name}\\b[^>]*>`, "g")) ?? [];
const attr = (tag: string, name: string) => tag.match(new RegExp(`\\s${name}="([^"]*)"`))?.[1];

/** The account page's delete form, as the front door fills it. */
const REMOVE = { action: "/account/delete", hidden: { account: "sealed" }, providers: [{ id: "dev", name: "Dev OP" }] };
const LINK = { action: "/account/link", hidden: { account: "sealed" }, providers: [{ id: "dev", name: "Dev OP" }, { id: "other", name: "Other OP" }] };
const ACTIONS = { link: LINK, remove: REMOVE, history: [] };

describe("Front door pages (docs/design.md §6)", function () {
  describe("html", function () {
    it("escapes & < > \" ' in text and leaves nested fragments, lists and empty values alone", function () {
      expect(escapeHtml(HOSTILE)).to.equal(ESCAPED);
      const inner = html`<b>${"a&b"}</b>`;
      const out = render(html`<p title="${'"x"'}">${inner}${[html`<i>1</i>`, "<2>"]}${false}${undefined}${null}${3}</p>`);
      expect(out).to.equal('<p title="&quot;x&quot;"><b>a&amp;b</b><i>1</i>&lt;2&gt;3</p>');
    });
  });

  describe("escaping of every interpolated value", function () {
    const pages: Record<string, string> = {
      "chooser (appName)": chooser({ appName: HOSTILE }),
      "chooser (provider name and id)": chooser({ providers: [{ id: HOSTILE, name: HOSTILE }] }),
      "chooser (hidden field and login hint)": chooser({ hidden: { [HOSTILE]: HOSTILE }, loginHint: HOSTILE }),
      "chooser (action)": chooser({ action: HOSTILE }),
      "consent (appName)": consent({ appName: HOSTILE }),
      "consent (appName, no claims)": consent({ appName: HOSTILE, claims: [] }),
      "consent (claim name, label, value)": consent({ claims: [{ name: HOSTILE, label: HOSTILE, value: HOSTILE }] }),
      "consent (client id, hidden field)": consent({ clientId: HOSTILE, hidden: { flow: HOSTILE } }),
      "consent, confirming a release (appName, claim name, value)": consent({ appName: HOSTILE, claims: [{ name: HOSTILE, label: HOSTILE, value: HOSTILE }], checked: [HOSTILE] }),
      "error (title)": errorPage({ title: HOSTILE, message: "m" }),
      "error (message, hint)": errorPage({ title: "t", message: HOSTILE, hint: HOSTILE }),
      "account (provider, linked provider, claim name and value)": accountPage({ signedInWith: HOSTILE, accounts: [{ provider: HOSTILE }], claims: [{ name: HOSTILE, value: HOSTILE }], apps: [{ name: HOSTILE, claims: [HOSTILE] }], ...ACTIONS }),
      "account (delete form's action, hidden field, provider)": accountPage({ signedInWith: "p", accounts: [], claims: [], apps: [], ...ACTIONS, remove: { action: HOSTILE, hidden: { [HOSTILE]: HOSTILE }, providers: [{ id: HOSTILE, name: HOSTILE }] } }),
      "account (link form's action, hidden field, provider; history's provider)": accountPage({
        signedInWith: "p", accounts: [], claims: [], apps: [], ...ACTIONS,
        link: { action: HOSTILE, hidden: { [HOSTILE]: HOSTILE }, providers: [{ id: HOSTILE, name: HOSTILE }] }, history: [{ kind: "link", at: new Date(0), provider: HOSTILE }],
      }),
      "linked (provider)": linkedPage(HOSTILE),
      "unlinked (provider)": unlinkedPage(HOSTILE),
      "claims (provider, values, action, hidden field)": claimsPage({ provider: HOSTILE, claims: [{ name: "name", now: HOSTILE, offered: HOSTILE }], action: HOSTILE, hidden: { [HOSTILE]: HOSTILE } }),
      "details taken (provider)": detailsTakenPage(HOSTILE),
      "release changed (app)": releaseChangedPage(HOSTILE, false),
      "app forgot you (app)": releaseChangedPage(HOSTILE, true),
      "account (the release form's app, claim, provider; history's app)": accountPage({
        signedInWith: "p", accounts: [], claims: [], ...ACTIONS, apps: [{ name: HOSTILE, claims: [HOSTILE], clientId: HOSTILE }],
        changeRelease: { action: HOSTILE, hidden: { [HOSTILE]: HOSTILE }, provider: HOSTILE },
        history: [{ kind: "release", at: new Date(0), provider: HOSTILE, app: HOSTILE }],
      }),
      "account (a claim's source, the details form)": accountPage({
        signedInWith: "p", accounts: [], claims: [{ name: "name", value: "v", from: HOSTILE }], apps: [], ...ACTIONS,
        details: { action: HOSTILE, hidden: { [HOSTILE]: HOSTILE }, providers: [{ id: HOSTILE, name: HOSTILE }] },
      }),
      "account (unlink form's account label, provider)": accountPage({
        signedInWith: "p", accounts: [], claims: [], apps: [], ...ACTIONS,
        unlink: { action: HOSTILE, hidden: { [HOSTILE]: HOSTILE }, accounts: [{ label: HOSTILE, index: 0, confirmWith: [{ id: HOSTILE, name: HOSTILE }] }] },
      }),
      "no wallet (provider)": noWalletPage(HOSTILE),
      "account (recovery accounts; a recovery's providers in the notice and the history)": accountPage({
        signedInWith: "p", recoveredWith: [HOSTILE, HOSTILE], accounts: [{ provider: HOSTILE, recovery: true }], recoveryThreshold: 2, claims: [], apps: [], ...ACTIONS,
        history: [{ kind: "recovery", at: new Date(0), provider: HOSTILE, providers: [HOSTILE, HOSTILE] }, { kind: "link", at: new Date(0), provider: HOSTILE, recovery: true }],
      }),
      "recovery (proven providers, providers, action, hidden field)": recoveryPage({ proven: [HOSTILE], needed: 1, providers: [{ id: HOSTILE, name: HOSTILE }], action: HOSTILE, hidden: { [HOSTILE]: HOSTILE } }),
      "linked as a recovery account (provider)": linkedPage(HOSTILE, true),
      "merged (provider)": mergedPage(HOSTILE),
      "account (the threshold form's action, hidden field, provider; a threshold change in the history)": accountPage({
        signedInWith: "p", accounts: [], recoveryThreshold: 2, claims: [], apps: [], ...ACTIONS,
        threshold: { action: HOSTILE, hidden: { [HOSTILE]: HOSTILE }, providers: [{ id: HOSTILE, name: HOSTILE }], most: 3 },
        history: [{ kind: "threshold", at: new Date(0), provider: HOSTILE, threshold: 3 }],
      }),
      "account (merge form's action, hidden field, provider; a merge in the history)": accountPage({
        signedInWith: "p", accounts: [], claims: [], apps: [], ...ACTIONS,
        merge: { action: HOSTILE, hidden: { [HOSTILE]: HOSTILE }, providers: [{ id: HOSTILE, name: HOSTILE }] }, history: [{ kind: "merge", at: new Date(0), provider: HOSTILE }],
      }),
      "wallet (issuer, type, its display name, status, version)": walletPage([{ issuer: HOSTILE, type: HOSTILE, typeName: HOSTILE, status: HOSTILE, version: HOSTILE }]),
    };
    for (const [name, doc] of Object.entries(pages)) {
      it(`${name}: the raw string is absent and the escaped form present`, function () {
        expect(doc).to.not.include(HOSTILE);
        expect(doc).to.not.include("<script");
        expect(doc).to.include(ESCAPED);
      });
    }
  });

  describe("chooser", function () {
    it("has one POST form with one submit button per provider and the hidden fields", function () {
      const doc = chooser({ loginHint: "alice@example.com" });
      const forms = tags(doc, "form");
      expect(forms).to.have.length(1);
      expect(attr(forms[0]!, "method")).to.equal("post");
      expect(attr(forms[0]!, "action")).to.equal("/authorize/choose");
      const buttons = [...doc.matchAll(/<button\b([^>]*)>([^<]*)<\/button>/g)];
      expect(buttons.map((b) => [attr(b[1]!, "name"), attr(b[1]!, "value"), b[2]])).to.deep.equal([
        ["provider", "google", "Continue with Google"],
        ["provider", "dev", "Continue with Dev OP"],
      ]);
      const hidden = tags(doc, "input").filter((t) => attr(t, "type") === "hidden");
      expect(hidden.map((t) => [attr(t, "name"), attr(t, "value")])).to.deep.equal([["flow", "sealed-flow"], ["csrf", "t0k3n"]]);
      expect(doc).to.include("Sign in to Demo App");
      expect(doc).to.include("alice@example.com");
      expect(doc).to.match(/keeps no login of its own/);
    });
  });

  describe("consent", function () {
    it("has one checked checkbox per claim, each with its own label, inside a fieldset, and both buttons", function () {
      const doc = consent();
      expect(doc).to.include("Demo App wants to know");
      expect(tags(doc, "fieldset")).to.have.length(1);
      expect(tags(doc, "legend")).to.have.length(1);
      const boxes = tags(doc, "input").filter((t) => attr(t, "type") === "checkbox");
      expect(boxes.map((b) => attr(b, "value"))).to.deep.equal(["name", "email", "email_verified"]);
      const labels = [...doc.matchAll(/<label for="([^"]*)">(.*?)<\/label>/g)].map(([, id, text]) => [id, id, text!.replaceAll("<wbr>", "")]);
      const ids = boxes.map((b) => attr(b, "id"));
      expect(new Set(ids).size).to.equal(boxes.length);
      for (const box of boxes) {
        expect(attr(box, "name")).to.equal("claims");
        expect(box).to.match(/\schecked[\s>]/);
      }
      expect(labels.map((l) => l[1])).to.deep.equal(ids);
      expect(labels.map((l) => l[2])).to.deep.equal([
        "Your name — Alice Example",
        "Email address — alice@example.com",
        "Whether your email is verified — Yes",
      ]);
      const buttons = [...doc.matchAll(/<button\b([^>]*)>([^<]*)<\/button>/g)];
      expect(buttons.map((b) => [attr(b[1]!, "name"), attr(b[1]!, "value"), b[2]])).to.deep.equal([
        ["decision", "allow", "Allow"],
        ["decision", "deny", "Decline"],
      ]);
      expect(doc).to.include("demo-client");
      expect(attr(tags(doc, "form")[0]!, "action")).to.equal("/consent");
    });

    it("confirming a release (prompt=consent): what the app receives now starts checked, the rest unchecked", function () {
      const doc = consent({ checked: ["email"] });
      expect(doc).to.include("<h1>Continue to Demo App?</h1>");
      const boxes = tags(doc, "input").filter((t) => attr(t, "type") === "checkbox");
      expect(boxes.map((t) => [attr(t, "value"), /\schecked\b/.test(t)])).to.deep.equal([["name", false], ["email", true], ["email_verified", false]]);
    });

    it("with no claims says the app asks only for a sign-in and shows just the buttons", function () {
      const doc = consent({ claims: [] });
      expect(doc).to.match(/asks only to sign you in/);
      expect(tags(doc, "fieldset")).to.have.length(0);
      expect(tags(doc, "input").filter((t) => attr(t, "type") === "checkbox")).to.have.length(0);
      expect(tags(doc, "button")).to.have.length(2);
    });
  });

  describe("every page", function () {
    const pages: Record<string, string> = {
      chooser: chooser(),
      "chooser with no providers": chooser({ providers: [] }),
      consent: consent(),
      "consent with no claims": consent({ claims: [] }),
      "consent confirming a release, one claim of two checked": consent({ checked: ["email"] }),
      error: error(),
      home: homePage(),
      account: accountPage({
        signedInWith: "Dev OP", accounts: [{ provider: "Dev OP" }], claims: [{ name: "email", value: "a@example.com" }, { name: "email_verified", value: true }],
        apps: [{ name: "Demo App", claims: ["email", "name"] }, { name: "Quiet App", claims: [] }], ...ACTIONS,
        history: [{ kind: "link", at: new Date("2026-12-07T05:20:00Z"), provider: "Other OP" }],
      }),
      "account with no claims and no apps": accountPage({ signedInWith: "Dev OP", accounts: [{ provider: "Dev OP" }], claims: [], apps: [], ...ACTIONS }),
      "account, recovered": accountPage({
        signedInWith: "Other OP", recoveredWith: ["Dev OP", "Other OP"], accounts: [{ provider: "Dev OP" }, { provider: "Dev OP", recovery: true }, { provider: "Other OP", recovery: true }],
        recoveryThreshold: 2, claims: [], apps: [], link: ACTIONS.link,
        history: [{ kind: "recovery", at: new Date(0), provider: "Other OP", providers: ["Dev OP", "Other OP"] }],
      }),
      "recovery, first round": recoveryPage({ proven: [], needed: 0, providers: [{ id: "dev", name: "Dev OP" }], action: "/account/recover/provider", hidden: {} }),
      "recovery, next round": recoveryPage({ proven: ["Dev OP"], needed: 1, providers: [{ id: "other", name: "Other OP" }], action: "/account/recover/provider", hidden: { recovery: "sealed" } }),
      "linked as a recovery account": linkedPage("Other OP", true),
      merged: mergedPage("Other OP"),
      "threshold set": thresholdSetPage(3),
      "account with the threshold form": accountPage({
        signedInWith: "Dev OP", accounts: [{ provider: "Dev OP" }, { provider: "Other OP", recovery: true }, { provider: "Third OP", recovery: true }], recoveryThreshold: 2,
        claims: [], apps: [], ...ACTIONS,
        threshold: { action: "/account/threshold", hidden: { account: "sealed" }, providers: [{ id: "dev", name: "Dev OP" }], most: 2 },
      }),
      "account with the merge form": accountPage({
        signedInWith: "Dev OP", accounts: [{ provider: "Dev OP" }], claims: [], apps: [], ...ACTIONS,
        merge: { action: "/account/merge", hidden: { account: "sealed" }, providers: [{ id: "dev", name: "Dev OP" }] },
        history: [{ kind: "merge", at: new Date(0), provider: "Dev OP" }],
      }),
      linked: linkedPage("Other OP"),
      unlinked: unlinkedPage("Other OP"),
      claims: claimsPage({ provider: "Other OP", claims: [{ name: "name", now: "Alice", offered: "Alice Example" }, { name: "email", offered: "a@example.com" }], action: "/account/claims/update", hidden: { claims_update: "sealed" } }),
      "claims with nothing offered": claimsPage({ provider: "Other OP", claims: [], action: "/account/claims/update", hidden: {} }),
      "details taken": detailsTakenPage("Other OP"),
      "release changed": releaseChangedPage("Demo App", false),
      "app forgot you": releaseChangedPage("Demo App", true),
      "account with release forms": accountPage({
        signedInWith: "Dev OP", accounts: [{ provider: "Dev OP" }], claims: [], ...ACTIONS,
        apps: [{ name: "Demo App", claims: ["email", "name"], clientId: "demo-app" }, { name: "Quiet App", claims: [], clientId: "quiet" }],
        changeRelease: { action: "/account/release", hidden: { account: "sealed" }, provider: "Dev OP" },
        history: [{ kind: "release", at: new Date(0), provider: "Dev OP", app: "Demo App" }],
      }),
      "account with two accounts": accountPage({
        signedInWith: "Dev OP", accounts: [{ provider: "Dev OP" }, { provider: "Other OP", recovery: true }], claims: [], apps: [], ...ACTIONS,
        unlink: { action: "/account/unlink", hidden: { account: "sealed" }, accounts: [
          { label: "your Dev OP account", index: 0, confirmWith: [{ id: "other", name: "Other OP" }] },
          { label: "your Other OP account", index: 1, confirmWith: [{ id: "dev", name: "Dev OP" }] },
        ] },
        history: [{ kind: "link", at: new Date(0), provider: "Other OP" }, { kind: "unlink", at: new Date(60_000), provider: "Other OP" }],
      }),
      "no wallet": noWalletPage("Dev OP"),
      "wallet deleted": walletDeletedPage(),
      "wallet, credentials of two issuers": walletPage([
        { issuer: "urn:example:issuer", type: "identity_card", typeName: "Identity card", status: "ACTIVE", version: "1" },
        { issuer: "urn:example:issuer", type: "driving_licence", status: "IN_PROCESS" },
        { issuer: "urn:example:other-issuer", type: "pid", status: "SUSPENDED_ISSUER", version: "3" },
      ]),
      "wallet, no credentials": walletPage([]),
    };
    for (const [name, doc] of Object.entries(pages)) {
      it(`${name}: is a complete, accessible, self-contained document`, function () {
        expect(doc).to.match(/^<!doctype html>/);
        expect(doc).to.include('<html lang="en">');
        expect(doc).to.match(/<title>[^<]+<\/title>/);
        expect(tags(doc, "h1")).to.have.length(1);
        expect(tags(doc, "main")).to.have.length(1);
        expect(doc).to.include('<meta name="viewport"');
        expect(doc).to.include('<meta name="referrer" content="no-referrer">');
        expect(doc).to.include("prefers-color-scheme:dark");
        expect(doc).to.include(":focus-visible");
        expect(doc.toLowerCase()).to.not.include("<script");
        expect(doc).to.not.match(/\son[a-z]+=/i); // no inline event handlers either
        expect(doc).to.not.match(/https?:\/\//);
        expect(doc).to.not.match(/\b(src|href)\s*=\s*["']?(https?:)?\/\//i);
        expect(doc).to.not.match(/url\(|@import/);
        expect(tags(doc, "style")).to.have.length(1);
        expect(tags(doc, "link")).to.have.length(0);
        expect(tags(doc, "img")).to.have.length(0);
      });

      it(`${name}: PAGE_CSP's style hash is the sha256 of the page's <style>`, function () {
        const style = doc.match(/<style>([\s\S]*?)<\/style>/)![1]!;
        const hash = createHash("sha256").update(style, "utf8").digest("base64");
        expect(PAGE_CSP).to.include(`style-src 'sha256-${hash}'`);
      });
    }
  });

  it("PAGE_CSP allows nothing but that style, and forms to the front door's own origin", function () {
    expect(PAGE_CSP.split("; ").sort()).to.deep.equal([
      "base-uri 'none'",
      "default-src 'none'",
      "form-action 'self'",
      "frame-ancestors 'none'",
      PAGE_CSP.match(/style-src 'sha256-[A-Za-z0-9+/]{43}='/)![0],
    ].sort());
  });

  it("pageCsp admits the origin (or private scheme) a form's redirect goes to, and nothing else changes", function () {
    expect(pageCsp()).to.equal(PAGE_CSP);
    const csp = pageCsp(["https://app.example/cb?x=1", "https://app.example/other", "http://localhost:8123/cb", "com.example.app:/cb"]);
    expect(csp).to.equal(PAGE_CSP.replace("form-action 'self'", "form-action 'self' https://app.example http://localhost:8123 com.example.app:"));
    expect(() => pageCsp(["not a url; script-src *"])).to.throw();
  });

  it("a picture URL or an address breaks only after / . ? & = @ (a <wbr> there), never mid-word, and reads the same", function () {
    const value = "https://pics.example/u/alice-example/photo_2026.png?size=large&v=2";
    const rendered = html`${breakable(value)}`.toString();
    expect(rendered).to.equal("https://<wbr>pics.<wbr>example/<wbr>u/<wbr>alice-example/<wbr>photo_2026.<wbr>png?<wbr>size=<wbr>large&amp;<wbr>v=<wbr>2");
    expect(rendered.replaceAll("<wbr>", "")).to.equal(escapeHtml(value));
    expect(html`${breakable("<b>x</b>")}`.toString()).to.equal("&lt;b&gt;x&lt;/<wbr>b&gt;"); // still escaped
  });

  it("claim labels are human words, and unknown names fall back to themselves", function () {
    expect(claimLabel("email")).to.equal("Email address");
    expect(claimLabel("picture")).to.equal("Profile picture");
    expect(Object.keys(CLAIM_LABELS)).to.include.members(["name", "given_name", "family_name", "email", "email_verified", "picture"]);
    expect(claimLabel("favourite_colour")).to.equal("favourite_colour");
    expect(claimLabel("constructor")).to.equal("constructor");
  });

  it("page() takes only trusted markup for its body, so a plain string cannot reach it unescaped", function () {
    const doc = page({ title: HOSTILE, body: html`<h1>${HOSTILE}</h1>` });
    expect(doc).to.not.include(HOSTILE);
  });
});
