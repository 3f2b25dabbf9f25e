// What a log line may hold (docs/design.md §2): errors reduced to a fixed set of fields and
// scrubbed of token-, email- and key-shaped text; secret-named fields censored; the
// level of a call's line chosen by who is at fault.

import { Writable } from "node:stream";
import { expect } from "chai";
import { Code, ConnectError } from "@connectrpc/connect";
import { SignJWT, errors as joseErrors, generateSecret, jwtVerify } from "jose";
import { createLogger } from "./logger.js";
import { httpLevel, rpcLevel } from "./request-log.js";
import { safeError, scrub } from "./safe-error.js";
import { rejectionOf } from "../../../test/support/refusal.js";

function capture(level = "debug") {
  const raw: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _e, done) {
      raw.push(...chunk.toString().split("\n").filter(Boolean));
      done();
    },
  });
  return { log: createLogger("token", { level, destination }), raw };
}

describe("logs: no identifier, claim, token or record in a line (docs/design.md §2)", function () {
  it("a jose claim error keeps its type, code and words, not the JWT payload it carries", async function () {
    const key = await generateSecret("HS256");
    const jwt = await new SignJWT({ email: "alice@example.com", sub: "alice-0001" })
      .setProtectedHeader({ alg: "HS256" }).setAudience("app-b").setExpirationTime("1m").sign(key);
    const error = await rejectionOf(jwtVerify(jwt, key, { audience: "app-a" }));
    expect(error).to.be.instanceOf(joseErrors.JWTClaimValidationFailed);
    // Honest twin: the library's own error does carry the payload.
    expect(JSON.stringify((error as joseErrors.JWTClaimValidationFailed).payload)).to.include("alice@example.com");

    const { log, raw } = capture();
    log.warn({ err: error }, "the OP ID Token did not verify");
    const line = JSON.parse(raw[0]!) as { err: Record<string, unknown> };
    expect(line.err).to.include({ type: "JWTClaimValidationFailed", code: "ERR_JWT_CLAIM_VALIDATION_FAILED", message: 'unexpected "aud" claim value' });
    expect(line.err.stack).to.be.a("string");
    expect(raw[0]).not.to.include("alice");
    expect(raw[0]).not.to.include(jwt.split(".")[1]!);
  });

  it("scrubs tokens, email addresses and long opaque values from messages, and keeps prose and paths", function () {
    const jws = "eyJhbGciOiJFUzI1NiJ9.eyJ1aWQiOiIxMjMifQ.MEUCIQDx";
    expect(scrub(`the token ${jws} was refused`)).to.equal("the token [jws] was refused");
    expect(scrub("no user bob.smith+hello@mail.example.org here")).to.equal("no user [email] here");
    expect(scrub("hash q3V1FJ8mT0-pBzXw7_9kLrTgHq2sVu4aYc6dE8fG1hI")).to.equal("hash [redacted]");
    expect(scrub("key dGhpcyBpcyBhIGxvbmcgc2VjcmV0IHZhbHVlIQ+/abc=")).to.equal("key [redacted]");
    const plain = "cannot open /usr/lib/postgresql/15/bin/initdb: the access token grants read, not create";
    expect(scrub(plain)).to.equal(plain);
  });

  it("keeps no property but type, message, code, stack and cause, however an error is decorated", function () {
    const cause = Object.assign(new Error("duplicate key"), { code: "23505", detail: "Key (hash)=(abc) already exists", table: "records" });
    const error = Object.assign(new Error("insert failed", { cause }), { request: { login_hint: "alice@example.com" }, body: "code=xyz" });
    const safe = safeError(error);
    expect(Object.keys(safe).sort()).to.deep.equal(["cause", "message", "stack", "type"]);
    expect(Object.keys(safe.cause!).sort()).to.deep.equal(["code", "message", "stack", "type"]);
    expect(safe.cause!.code).to.equal("23505");
    expect(JSON.stringify(safe)).not.to.match(/alice|xyz|Key \(hash\)/);
    expect(safeError("a string thrown")).to.deep.equal({ type: "string", message: "a value that is not an Error was thrown (not logged)" });
    expect(safeError(new ConnectError("the session expired", Code.Unauthenticated))).to.include({ type: "ConnectError", code: "unauthenticated", message: "the session expired" });
  });

  it("censors fields that only ever hold credentials or user data, should a call site pass one", function () {
    const { log, raw } = capture();
    log.info({ authorization: "Bearer abc123", req: { cookie: "hello_flow=zzz", headers: { x: "1" } }, email: "a@b.example", kept: "route" }, "m");
    const line = JSON.parse(raw[0]!) as Record<string, unknown>;
    expect(line).to.deep.include({ authorization: "[redacted]", email: "[redacted]", kept: "route" });
    expect(line.req).to.deep.equal({ cookie: "[redacted]", headers: "[redacted]" });
  });

  it("chooses the level of a call's line by who is at fault", function () {
    expect(rpcLevel(undefined)).to.equal("debug");
    for (const code of [Code.InvalidArgument, Code.Unauthenticated, Code.PermissionDenied, Code.NotFound, Code.AlreadyExists, Code.FailedPrecondition, Code.Aborted, Code.Canceled]) {
      expect(rpcLevel(code), Code[code]).to.equal("info");
    }
    for (const code of [Code.Internal, Code.Unknown, Code.Unavailable, Code.DeadlineExceeded, Code.DataLoss, Code.Unimplemented]) {
      expect(rpcLevel(code), Code[code]).to.equal("warn");
    }
    expect(httpLevel(400)).to.equal("info");
    expect(httpLevel(503, new ConnectError("down", Code.Unavailable))).to.equal("warn");
    expect(httpLevel(500, new TypeError("bug"))).to.equal("error");
  });
});
