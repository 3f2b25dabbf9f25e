// The one place the specs wait for a call to fail (issue 12: no local copies). A call that
// must fail and succeeds fails the test; `what` names it in that failure.

import { expect } from "chai";
import { type Code, ConnectError } from "@connectrpc/connect";
import { InvalidTokenError } from "../../internal/protocol/jws.js";

/** What `call` rejected with, as thrown (a ConnectError, an Error, a child process's exit…). */
export async function rejectionOf(call: Promise<unknown>, what?: string): Promise<unknown> {
  try {
    await call;
  } catch (error) {
    return error;
  }
  return expect.fail(what === undefined ? "the call succeeded" : `${what}: the call succeeded`);
}

/** The ConnectError a call that must fail ended in. */
export async function refusedWith(call: Promise<unknown>, what?: string): Promise<ConnectError> {
  return ConnectError.from(await rejectionOf(call, what));
}

/** The code and message (ConnectError.rawMessage: without Connect's "[code]" prefix) a call that must fail ended in, as the tests of refusals compare it. */
export async function refusal(call: Promise<unknown>, what?: string): Promise<{ code: Code; message: string }> {
  const e = await refusedWith(call, what);
  return { code: e.code, message: e.rawMessage };
}

/** Why a JWS check refused a token: the InvalidTokenError's reason (any other error fails the test). */
export async function invalidTokenReason(call: Promise<unknown>, what?: string): Promise<string> {
  const error = await rejectionOf(call, what);
  expect(error).to.be.instanceOf(InvalidTokenError);
  return (error as InvalidTokenError).reason;
}

// For tests of calls that may go either way (which identities an edge lets through), where
// success is an answer to compare, not a failure.

/** The ConnectError a call ended in, or undefined if it succeeded. */
export async function errorOf(call: Promise<unknown>): Promise<ConnectError | undefined> {
  return call.then(
    () => undefined,
    (error: unknown) => ConnectError.from(error),
  );
}

/** "ok" if the call succeeded, else its gRPC code. */
export async function outcomeOf(call: Promise<unknown>): Promise<Code | "ok"> {
  const error = await errorOf(call);
  return error ? error.code : "ok";
}
