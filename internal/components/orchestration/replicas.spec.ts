// Replicas (docs/design.md §8): two Orchestration and two Token instances behind a load
// balancer that sends each login step to the other instance. Orchestration 1 talks to
// Token 1 and Orchestration 2 to Token 2, so every step also changes Token instance:
// a session minted by one Token is continued by the other, flow state sealed by one
// Orchestration is opened by the other, and a code issued by one is redeemed at the
// other — once.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { SignJWT } from "jose";
import * as oidc from "openid-client";
import { COMPONENTS } from "../../protocol/identity.js";
import { type ComponentConfig, upstreamRedirectUri } from "../../config/component-config.js";
import { loadDevConfig } from "../../dev/dev-config.js";
import { type DevOp, type DevUser, startDevOp } from "../../dev/devop/dev-op.js";
import { type ComponentProcesses, startComponentProcesses } from "../../dev/component-processes.js";
import { prepareDevDeployment } from "../../dev/dev-deployment.js";
import { freePort } from "../../../test/support/free-port.js";
import { type TestPostgres, startPostgres } from "../../../test/support/postgres-server.js";
import { APPS, APP_KEY, UPSTREAM_CLIENT, USERS, appSecret, browseToApp } from "../../../test/support/protocol-mesh.js";
import { type RoundRobin, startRoundRobin } from "../../../test/support/round-robin.js";
import { prepareAuthorization } from "../../../test/support/app-client.js";

type App = "a" | "b" | "jwt";
type Orchestration = Extract<ComponentConfig, { component: "orchestration" }>;
type Token = Extract<ComponentConfig, { component: "token" }>;

describe("replicas: two Orchestration and two Token instances (docs/design.md §8)", function () {
  this.timeout(180_000);
  let dir: string;
  let postgres: TestPostgres;
  let devOp: DevOp;
  let balancer: RoundRobin;
  let first: ComponentProcesses;
  let second: ComponentProcesses;
  let issuer: string;
  /** The two Orchestration instances' own front-door URLs (behind the balancer). */
  const instances: string[] = [];

  before(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-replicas-"));
    // Orchestration's replicas share codes and client-assertion jtis in a database of
    // Orchestration's custodian's own (the user records stay in Storage's PGlite).
    postgres = await startPostgres();
    const ports: Record<string, number> = { public: await freePort() };
    for (const c of COMPONENTS) ports[c] = await freePort();
    issuer = `http://localhost:${ports.public}`;
    devOp = await startDevOp({
      clients: [{ client_id: UPSTREAM_CLIENT.id, client_secret: UPSTREAM_CLIENT.secret, redirect_uris: [upstreamRedirectUri(issuer, "dev")] }],
    });
    const apps: App[] = ["a", "b", "jwt"];
    const configFile = path.join(dir, "hello.config.json");
    await writeFile(configFile, JSON.stringify({
      issuer,
      ports,
      clients: await Promise.all(apps.map(async (id) => {
        const app = APPS[id]!;
        return {
          client_id: app.client_id,
          ...(app.auth === "private_key_jwt" ? { jwks: { keys: [(await APP_KEY).publicJwk] } } : { client_secret: appSecret(app.client_id) }),
          redirect_uris: [app.redirect_uri],
          id_token_signed_response_alg: app.alg,
          token_endpoint_auth_method: app.auth ?? "client_secret_basic",
        };
      })),
      providers: [{ id: "dev", name: "Dev OP", issuer: devOp.issuer, client_id: UPSTREAM_CLIENT.id, client_secret: UPSTREAM_CLIENT.secret, jwks_uri: devOp.jwksUri }],
      certificates: "certs",
      stateDir: "state",
    }));
    const deployment = await prepareDevDeployment(loadDevConfig(configFile));

    // Instance 2 of Token: the same configuration and keys, another port.
    const token1 = deployment.configs.token as Token;
    const token2: Token = { ...token1, listen: { ...token1.listen, port: await freePort() } };
    // Each Orchestration instance has its own ports, its own Token, and the shared state.
    const base = deployment.configs.orchestration as Orchestration;
    const orchestration1: Orchestration = {
      ...base,
      public: { ...base.public, port: await freePort() },
      state: { url: postgres.url },
    };
    const orchestration2: Orchestration = {
      ...orchestration1,
      listen: { ...base.listen, port: await freePort() },
      public: { ...base.public, port: await freePort() },
      peers: { ...base.peers, token: `https://127.0.0.1:${token2.listen.port}` },
    };
    const write = async (name: string, config: ComponentConfig) => {
      const file = path.join(dir, `${name}.json`);
      await writeFile(file, JSON.stringify(config));
      return file;
    };
    first = startComponentProcesses({
      ...deployment,
      configs: { ...deployment.configs, orchestration: orchestration1 },
      configFiles: { ...deployment.configFiles, orchestration: await write("orchestration-1", orchestration1) },
    });
    second = startComponentProcesses(
      {
        ...deployment,
        configs: { ...deployment.configs, orchestration: orchestration2, token: token2 },
        configFiles: { ...deployment.configFiles, orchestration: await write("orchestration-2", orchestration2), token: await write("token-2", token2) },
      },
      { components: ["token", "orchestration"] },
    );
    await Promise.all([first.ready, second.ready]);
    for (const o of [orchestration1, orchestration2]) instances.push(`http://127.0.0.1:${o.public.port}`);
    balancer = await startRoundRobin(ports.public!, [orchestration1.public.port, orchestration2.public.port]);
  });

  after(async function () {
    await balancer?.close();
    await Promise.all([first?.stop(), second?.stop()]);
    await devOp?.close();
    await postgres?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A person at the browser, up to the app's callback (the code), through the balancer. */
  async function toCallback(app: App, user: DevUser) {
    const { config, checks, url } = await prepareAuthorization(issuer, app);
    const mark = balancer.steps.length;
    const { page, consented } = await browseToApp(url, app, user);
    const callback = new URL(APPS[app]!.redirect_uri);
    expect(page.url.origin + page.url.pathname, `ended at ${page.url.origin}${page.url.pathname} (${page.status})`).to.equal(callback.origin + callback.pathname);
    return { config, checks, callback: page.url, consented, steps: balancer.steps.slice(mark) };
  }

  /** The token request an app makes, sent to one chosen instance (bypassing the balancer). */
  function redeemAt(instance: string, app: "a" | "b", code: string, verifier: string) {
    const client = APPS[app]!;
    return fetch(`${instance}/token`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        authorization: `Basic ${Buffer.from(`${client.client_id}:${appSecret(client.client_id)}`).toString("base64")}`,
      },
      body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: client.redirect_uri, code_verifier: verifier }),
    });
  }

  it("a new user's login alternates instances at every step and completes", async function () {
    const { config, checks, callback, consented, steps } = await toCallback("a", USERS.alice);
    expect(consented).to.equal(true);
    const tokens = await oidc.authorizationCodeGrant(config, callback, checks);
    expect(tokens.claims()!.email).to.equal(USERS.alice.email);
    const all = [...steps, ...balancer.steps.slice(-1)];
    expect(all.map((s) => s.path)).to.deep.equal(["/authorize", "/upstream/callback/dev", "/consent", "/token"]);
    // each step on the other instance than the step before
    for (let i = 1; i < all.length; i++) expect(all[i]!.backend).to.not.equal(all[i - 1]!.backend);
  });

  it("a returning user, on either instance first, gets the same sub with no consent page", async function () {
    const subs = new Set<string>();
    for (let round = 0; round < 4; round++) {
      const { config, checks, callback, consented, steps } = await toCallback("b", USERS.bob);
      const tokens = await oidc.authorizationCodeGrant(config, callback, checks);
      subs.add(tokens.claims()!.sub);
      if (round > 0) expect(consented).to.equal(false);
      // /authorize starts on instance 1 in some rounds and on instance 2 in others
      expect(new Set(steps.map((s) => s.backend)).size).to.equal(2);
    }
    expect(subs.size).to.equal(1);
  });

  /** What /userinfo at `instance` says to `accessToken`. */
  const userinfoAt = async (instance: string, accessToken: string) =>
    (await fetch(`${instance}/userinfo`, { headers: { authorization: `Bearer ${accessToken}` } })).status;

  it("a code redeemed at one instance cannot be redeemed again at the other, and that attempt revokes the access token", async function () {
    for (const [winner, loser] of [[0, 1], [1, 0]] as const) {
      const { checks, callback } = await toCallback("a", USERS.alice);
      const code = callback.searchParams.get("code")!;
      const ok = await redeemAt(instances[winner]!, "a", code, checks.pkceCodeVerifier);
      expect(ok.status).to.equal(200);
      const tokens = (await ok.json()) as { id_token?: string; access_token: string };
      expect(tokens.id_token).to.be.a("string");
      expect(await userinfoAt(instances[loser]!, tokens.access_token), "the access token, at the other instance").to.equal(200);
      const again = await redeemAt(instances[loser]!, "a", code, checks.pkceCodeVerifier);
      expect(again.status).to.equal(400);
      expect(((await again.json()) as { error: string }).error).to.equal("invalid_grant");
      for (const instance of instances) expect(await userinfoAt(instance, tokens.access_token), "revoked everywhere").to.equal(401);
    }
  });

  it("one code sent to both instances at the same moment is redeemed at most once, and any token it gave is revoked", async function () {
    for (let round = 0; round < 3; round++) {
      const { checks, callback } = await toCallback("a", USERS.alice);
      const code = callback.searchParams.get("code")!;
      const answers = await Promise.all(instances.flatMap((i) => [redeemAt(i, "a", code, checks.pkceCodeVerifier), redeemAt(i, "a", code, checks.pkceCodeVerifier)]));
      const bodies = await Promise.all(answers.map(async (a) => ({ status: a.status, ...((await a.json()) as { error?: string; access_token?: string }) })));
      // The winner hands out its tokens only if no other redemption was seen by then;
      // either way every redemption but one is invalid_grant, and no access token lives.
      expect(bodies.filter((b) => b.status === 200).length).to.be.at.most(1);
      expect(bodies.filter((b) => b.status !== 200).map((b) => `${b.status} ${b.error}`)).to.satisfy((all: string[]) => all.every((x) => x === "400 invalid_grant"));
      for (const { access_token } of bodies) if (access_token) expect(await userinfoAt(instances[0]!, access_token)).to.equal(401);
    }
  });

  it("a private_key_jwt client assertion used at one instance is refused at the other", async function () {
    const key = await APP_KEY;
    const client = APPS.jwt!;
    const now = Math.floor(Date.now() / 1000);
    const assertion = await new SignJWT({ jti: oidc.randomState() })
      .setProtectedHeader({ alg: "ES256", kid: key.kid })
      .setIssuer(client.client_id).setSubject(client.client_id).setAudience(issuer)
      .setIssuedAt(now).setExpirationTime(now + 60)
      .sign(key.privateKey);
    const results: Array<{ status: number; error?: string }> = [];
    for (const instance of instances) {
      const { checks, callback } = await toCallback("jwt", USERS.bob);
      const answer = await fetch(`${instance}/token`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          grant_type: "authorization_code", code: callback.searchParams.get("code")!, redirect_uri: client.redirect_uri,
          code_verifier: checks.pkceCodeVerifier, client_id: client.client_id,
          client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: assertion,
        }),
      });
      results.push({ status: answer.status, ...((await answer.json()) as { error?: string }) });
    }
    expect(results[0]!.status).to.equal(200);
    expect(results[1]).to.deep.include({ status: 401, error: "invalid_client" });
  });

  it("the balancer, not a test shortcut, carried these logins: both instances served steps", function () {
    const served = new Set(balancer.steps.map((s) => s.backend));
    expect([...served].sort()).to.deep.equal([0, 1]);
  });
});
