// `hello keys` on a custodian's files, without a running mesh: what each command
// writes, what it refuses and says, and the timing rules it enforces
// (docs/key-rotation.md). The live rotation is rotation.spec.ts.

import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { readBundle, writeBundle } from "../../../mesh/bundle.js";
import { createCertificateAuthority } from "../pki/pki.js";
import { STORAGE_KEYS, TOKEN_KEYS, ensureSigningKeys } from "../../protocol/key-files.js";
import { RETIREMENT_GRACE_SECONDS, publicJwk, signingKeyFromJwk } from "../../protocol/signing-keys.js";
import { runKeysCommand } from "../../../cmd/hello/keys.js";
import { type KeyLocation, SIGNED_LIFETIME_SECONDS, keyStatus, promoteKeys, pruneKeys, rotateKeys } from "./rotation.js";
import { rejectionOf } from "../../../test/support/refusal.js";
import { captured } from "../../../test/support/captured.js";

const run = promisify(execFile);
const BIN = path.resolve(import.meta.dirname, "../../../cmd/hello/bin.js");
const CHECKOUT = path.resolve(import.meta.dirname, "../../..");

describe("hello keys (the custodian's files)", function () {
  this.timeout(60_000);
  let dir: string;
  let storage: KeyLocation;
  let token: KeyLocation;

  /** A custodian's key file and bundle, as `hello pki bundle` leaves them. */
  async function custodian(component: "token" | "storage"): Promise<KeyLocation> {
    const location = { component, keyFile: path.join(dir, component, "signing-keys.json"), bundles: path.join(dir, "bundles") };
    await ensureSigningKeys(location.keyFile, component === "token" ? TOKEN_KEYS : STORAGE_KEYS);
    const keys = JSON.parse(await readFile(location.keyFile, "utf8")) as { keys: object[] };
    await writeBundle(location.bundles, {
      component,
      ca: createCertificateAuthority(component).certPem,
      jwks: { keys: keys.keys.map((k) => publicJwk(signingKeyFromJwk(k))) as never },
    });
    return location;
  }

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "hello-keys-"));
    storage = await custodian("storage");
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  /** Runs `hello keys …` in this process: exit code and what it said. */
  const keys = (...args: string[]) => captured((out) => runKeysCommand(args, out));
  const at = (location: KeyLocation) => ["--keys", location.keyFile, "--bundles", location.bundles];
  const file = (location: KeyLocation) => readFile(location.keyFile, "utf8");
  const bundleKids = (location: KeyLocation) => readBundle(location.bundles, location.component).jwks.keys.map((k) => k.kid);

  it("usage mistakes exit 2 and say what to fix", async function () {
    expect((await keys()).err).to.include("a keys command is required");
    expect(await keys("spin", "storage")).to.include({ code: 2 });
    expect((await keys("status")).err).to.include("a component is required: token or storage");
    expect((await keys("status", "vault", ...at(storage))).err).to.include('unknown component "vault"');
    expect((await keys("rotate", "encryption", ...at(storage))).err).to.include("encryption holds no signing key");
    expect((await keys("rotate", "orchestration", ...at(storage))).err).to.include("see docs/key-rotation.md");
    expect((await keys("status", "storage")).err).to.include("--config <file>, or --keys <file> and --bundles <dir>");
    expect((await keys("rotate", "storage", "--issuer", "https://x", ...at(storage))).err).to.include("rotate takes no --issuer");
    expect((await keys("rotate", "storage", "--purpose", "session", ...at(storage))).err).to.include("storage has no session keys");
    expect((await keys("promote", "storage", "--min-published", "soon", ...at(storage))).code).to.equal(2);
    const missing = await keys("status", "storage", "--keys", path.join(dir, "nope.json"), "--bundles", storage.bundles);
    expect(missing).to.include({ code: 1 });
    expect(missing.err).to.include("there is no storage signing key file at");
  });

  it("rotate adds a next key per purpose and publishes only its public half; a second rotate waits for promote", async function () {
    const rotated = await keys("rotate", "storage", ...at(storage));
    expect(rotated.code, rotated.err).to.equal(0);
    expect(rotated.out).to.match(/added the error EdDSA key error\.\S+ as next/);
    expect(rotated.out).to.match(/added the receipt EdDSA key receipt\.\S+ as next/);
    const status = await keyStatus(storage);
    expect(status.map((k) => `${k.purpose}:${k.status}`)).to.deep.equal(["error:active", "receipt:active", "error:next", "receipt:next"]);
    expect(status.every((k) => k.published)).to.equal(true);
    expect(readBundle(storage.bundles, "storage").jwks.keys.some((k) => "d" in k)).to.equal(false);
    expect((await stat(storage.keyFile)).mode & 0o777).to.equal(0o600);

    const again = await keys("rotate", "storage", "--purpose", "error", ...at(storage));
    expect(again.code).to.equal(1);
    expect(again.err).to.match(/the error EdDSA key error\.\S+ is already next: promote it before rotating again/);
  });

  it("the next steps it prints run as printed, from the checkout (issue 18)", async function () {
    const rotated = await keys("rotate", "storage", ...at(storage));
    const promote = /once each has installed it, (npx hello keys promote .*)$/m.exec(rotated.out)?.[1];
    expect(promote, rotated.out).to.equal(`npx hello keys promote storage --keys ${storage.keyFile} --bundles ${storage.bundles}`);
    // Too soon to promote: what matters is that the command is understood, not a usage error.
    const printed = await run("sh", ["-c", promote!], { cwd: CHECKOUT }).then(() => 0, (e: { code: number; stderr: string }) => e);
    expect(printed, "a usage error").not.to.have.property("code", 2);
    const promoted = await keys("promote", "storage", "--min-published", "0", ...at(storage));
    const prune = /later, (npx hello keys prune .*)$/m.exec(promoted.out)?.[1];
    const { stdout } = await run("sh", ["-c", prune!], { cwd: CHECKOUT });
    expect(stdout).to.match(/kept|nothing to prune/);
  });

  it("promote waits until the next key has been published long enough and changes nothing before", async function () {
    await rotateKeys(storage, { purposes: ["error"] });
    const before = await file(storage);
    const early = await keys("promote", "storage", ...at(storage));
    expect(early.code).to.equal(1);
    expect(early.err).to.match(/the error key error\.\S+ was published \d+ s ago; it may sign from \S+ \(60 s after publication, once every peer has the bundle\)/);
    expect(await file(storage)).to.equal(before);

    const promoted = await keys("promote", "storage", "--min-published", "0", ...at(storage));
    expect(promoted.code, promoted.err).to.equal(0);
    const status = await keyStatus(storage);
    const [old, , next] = status;
    expect(old).to.include({ purpose: "error", status: "retired", published: true });
    expect(next).to.include({ purpose: "error", status: "active", published: true });
    // the bundle tells verifiers when the old key stopped signing
    const published = readBundle(storage.bundles, "storage").jwks.keys.find((k) => k.kid === old!.kid) as { retired?: string };
    expect(published.retired).to.equal(old!.retired);

    expect((await keys("promote", "storage", ...at(storage))).err).to.include("storage has no next key for any purpose: run hello keys rotate storage first");
  });

  it("an ID Token key waits for the JWKS max-age before it signs; promote refuses a key the bundle lacks", async function () {
    token = await custodian("token");
    const created = new Date(Date.now() - 120_000); // published two minutes ago
    await rotateKeys(token, { purposes: ["id-token"], algs: ["ES256"] }, created);
    const tooSoon = (await rejectionOf(promoteKeys(token, { purposes: ["id-token"] }), "promoting too soon")) as Error;
    expect(tooSoon.message).to.match(/published 120 s ago; it may sign from \S+ \(300 s after publication, the JWKS max-age apps may cache it for\)/);

    // The bundle handed to peers lost the key (rewritten from an older key file, say).
    const bundle = readBundle(token.bundles, "token");
    const [next] = (await keyStatus(token)).filter((k) => k.status === "next");
    await writeBundle(token.bundles, { ...bundle, jwks: { keys: bundle.jwks.keys.filter((k) => k.kid !== next!.kid) } });
    expect((await keys("status", "token", ...at(token))).out).to.match(new RegExp(`id-token\\s+ES256\\s+next\\s+${next!.kid.replace(".", "\\.")}\\s+\\S+\\s+NO`));
    const unpublished = (await rejectionOf(promoteKeys(token, { minPublishedSeconds: 0 }), "promoting an unpublished key")) as Error;
    expect(unpublished.message).to.include(`does not publish the next key ${next!.kid}: run hello keys publish token`);
    expect((await keys("publish", "token", ...at(token))).code).to.equal(0);
    expect(bundleKids(token)).to.include(next!.kid);
    await promoteKeys(token, { minPublishedSeconds: 0 });
  });

  it("prune drops a retired key only after its tokens' lifetime (plus grace), and never a record key", async function () {
    token = await custodian("token");
    await rotateKeys(token, { purposes: ["access", "record"] });
    const { retired } = await promoteKeys(token, { minPublishedSeconds: 0 });
    const retiredAt = Date.parse(retired[0]!.retired!);
    const margin = (SIGNED_LIFETIME_SECONDS.access! + 2 * RETIREMENT_GRACE_SECONDS) * 1000;

    const early = await pruneKeys(token, {}, new Date(retiredAt + margin - 1000));
    expect(early.pruned).to.deep.equal([]);
    expect(early.kept.map((k) => [k.key.purpose, k.reason.replace(/\d{4}-.*/, "…")])).to.deep.equal([
      ["access", "its tokens may still be live until …"],
      ["record", "record keys are retired, never deleted: stored records still verify"],
    ]);

    const later = await pruneKeys(token, {}, new Date(retiredAt + margin));
    expect(later.pruned.map((k) => k.purpose)).to.deep.equal(["access"]);
    const kids = (await keyStatus(token)).map((k) => k.kid);
    expect(kids).to.not.include(later.pruned[0]!.kid);
    expect(bundleKids(token)).to.not.include(later.pruned[0]!.kid);

    // Years later, the record key is still there: records signed with it verify.
    const years = await keys("prune", "token", ...at(token));
    expect(years.out).to.include("nothing to prune");
    expect(years.out).to.match(/kept the record EdDSA key record\.\S+: record keys are retired, never deleted/);
    expect((await keyStatus(token)).filter((k) => k.status === "retired").map((k) => k.purpose)).to.deep.equal(["record"]);
  });

  it("prune --compromised drops a retired key at once, but never an active key or a record key", async function () {
    token = await custodian("token");
    await rotateKeys(token, { purposes: ["session", "record"] });
    const { retired, promoted } = await promoteKeys(token, { minPublishedSeconds: 0 });
    const oldSession = retired.find((k) => k.purpose === "session")!.kid;
    const oldRecord = retired.find((k) => k.purpose === "record")!.kid;
    const newSession = promoted.find((k) => k.purpose === "session")!.kid;

    const record = await keys("prune", "token", "--compromised", oldRecord, ...at(token));
    expect(record.code).to.equal(1);
    expect(record.err).to.include(`${oldRecord} is a record key: dropping it would make every record it signed unverifiable`);
    const active = await keys("prune", "token", "--compromised", newSession, ...at(token));
    expect(active.err).to.include(`${newSession} is active: rotate and promote first`);
    expect((await keys("prune", "token", "--compromised", "session.nope", ...at(token))).err).to.include("token holds no key session.nope");

    const dropped = await keys("prune", "token", "--compromised", oldSession, ...at(token));
    expect(dropped.code, dropped.err).to.equal(0);
    expect(dropped.out).to.include(`pruned the session EdDSA key ${oldSession}: what it signed is refused from now on`);
    expect(bundleKids(token)).to.not.include(oldSession);
    expect(bundleKids(token)).to.include(oldRecord);
  });

  it("hello keys status reads a component's own configuration (the bin, as a custodian runs it)", async function () {
    const config = path.join(dir, "storage.json");
    await writeFile(
      config,
      JSON.stringify({
        component: "storage",
        listen: { port: 7103 },
        tls: { cert: "storage.crt", key: "storage.key" },
        bundles: "bundles",
        keys: { signing: "storage/signing-keys.json" },
        database: {},
      }),
    );
    const { stdout } = await run(process.execPath, [BIN, "keys", "status", "storage", "--config", config]);
    expect(stdout).to.include(`storage signing keys in ${storage.keyFile}`);
    expect(stdout).to.match(/error\s+EdDSA\s+active\s+error\.\S+\s+\S+\s+yes\s+signs/);
    const wrong = await run(process.execPath, [BIN, "keys", "status", "token", "--config", config]).then(
      () => expect.fail("accepted another component's configuration"),
      (e: unknown) => e as { code: number; stderr: string },
    );
    expect(wrong.code).to.equal(1);
    expect(wrong.stderr).to.include("this file configures storage, not token");
  });
});
