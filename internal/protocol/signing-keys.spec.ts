// Rotation status on keys (docs/key-rotation.md): what a key file may say about a key,
// and what a published retirement date means to every verifier.

import { expect } from "chai";
import type { JWK } from "jose";
import { sign, verify } from "./jws.js";
import { invalidTokenReason } from "../../test/support/refusal.js";
import {
  RETIREMENT_GRACE_SECONDS,
  type SigningKey,
  VerificationKeys,
  activeKey,
  generateSigningKey,
  privateJwk,
  publicJwk,
  signingKeyFromJwk,
} from "./signing-keys.js";
import { ACCESS_TOKEN, RECORD_TYPES } from "./tokens.js";

describe("signing keys in rotation", function () {
  const claims = { op: "read", kind: "subject", hash: "h" };
  const retiredAt = new Date("2030-01-01T00:00:00.000Z");
  const retired: SigningKey = { ...generateSigningKey("access"), status: "retired", retired: retiredAt.toISOString() };
  const seconds = (s: number) => new Date(retiredAt.getTime() + s * 1000);
  /** A JWK with some members changed, as a careless hand might edit a key file. */
  const edited = (jwk: JWK, members: Record<string, unknown>) => ({ ...jwk, ...members }) as JWK;

  it("status and dates survive the key file, and only a retired key has a retired date", function () {
    const back = signingKeyFromJwk(privateJwk(retired));
    expect(back).to.include({ kid: retired.kid, status: "retired", retired: retired.retired, created: retired.created });
    expect(() => signingKeyFromJwk(edited(privateJwk(retired), { status: "active" }))).to.throw(/has a retired date but its status is active/);
    expect(() => signingKeyFromJwk(edited(privateJwk(retired), { retired: "last tuesday" }))).to.throw(/retired date is not an ISO 8601 date-time/);
    expect(() => signingKeyFromJwk(edited(privateJwk(retired), { status: "old" }))).to.throw(/unknown status/);
  });

  it("the signer uses the active key only: never next, never retired", function () {
    const active = generateSigningKey("access");
    const next: SigningKey = { ...generateSigningKey("access"), status: "next" };
    expect(activeKey([retired, active, next], "access").kid).to.equal(active.kid);
    expect(() => activeKey([retired, next], "access")).to.throw("no active access key");
  });

  it("a published retired key carries its date; no private part, and an active key carries none", function () {
    const jwk = publicJwk(retired) as Record<string, unknown>;
    expect(jwk.retired).to.equal("2030-01-01T00:00:00.000Z");
    expect(jwk).to.not.have.property("d");
    expect(publicJwk(generateSigningKey("access"))).to.not.have.property("retired");
    const found = new VerificationKeys([jwk]).find("access", retired.kid)!;
    expect(found.retiredAt).to.equal(retiredAt.getTime() / 1000);
    expect(publicJwk(found)).to.deep.equal(jwk);
    expect(() => new VerificationKeys([edited(jwk, { retired: 12 })])).to.throw(/retired date is not an ISO 8601 date-time/);
  });

  it("a retired key verifies what it signed before its retirement (and within the grace), not after", async function () {
    const keys = new VerificationKeys([publicJwk(retired)]);
    for (const s of [-30, 0, RETIREMENT_GRACE_SECONDS]) {
      const token = await sign(ACCESS_TOKEN, retired, claims, { now: seconds(s) });
      await verify(ACCESS_TOKEN, keys, token, "access token", seconds(s + 1));
    }
    const late = await sign(ACCESS_TOKEN, retired, claims, { now: seconds(RETIREMENT_GRACE_SECONDS + 1) });
    const refused = await invalidTokenReason(verify(ACCESS_TOKEN, keys, late, "access token", seconds(RETIREMENT_GRACE_SECONDS + 2)));
    expect(refused).to.equal("it was signed after its key was retired");
  });

  it("records signed before a record key's retirement verify for ever; one minted later with it does not", async function () {
    const recordKey: SigningKey = { ...generateSigningKey("record"), status: "retired", retired: retiredAt.toISOString() };
    const keys = new VerificationKeys([publicJwk(recordKey)]);
    const old = await sign(RECORD_TYPES.subject, recordKey, { op_iss: "i", op_sub: "s", uid: "u" }, { now: seconds(-86400 * 365) });
    await verify(RECORD_TYPES.subject, keys, old, "subject record", seconds(86400 * 3650));
    const forged = await sign(RECORD_TYPES.subject, recordKey, { op_iss: "i", op_sub: "s", uid: "u" }, { now: seconds(3600) });
    const refused = await invalidTokenReason(verify(RECORD_TYPES.subject, keys, forged, "subject record", seconds(3601)));
    expect(refused).to.equal("it was signed after its key was retired");
  });
});
