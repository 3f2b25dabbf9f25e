import { html } from "./html.js";
import { page } from "./layout.js";

/**
 * What the issuer's own address shows a person who opens it: what this is, and where
 * an app's developer finds the configuration. Nothing to sign in to here: sign-in
 * starts at an app.
 */
export function homePage(): string {
  return page({
    title: "hello-mesh",
    body: html`<h1>hello-mesh</h1>
<p>This address is an OpenID Provider: apps send people here to sign in, and nobody signs in at this page.</p>
<p>People who sign in with hello-mesh see what their wallet holds on <a href="/account">the account page</a>, and the credentials their devices hold on <a href="/wallet">the credentials page</a>.</p>
<p>An app's developers find everything an app needs in its <a href="/.well-known/openid-configuration">configuration</a>.</p>`,
  });
}
