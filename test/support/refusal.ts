// What a call that must fail ended in, as the tests of refusals compare it: its gRPC code
// and its message (without Connect's "[code]" prefix). A call that succeeds fails the test.

import { expect } from "chai";
import { type Code, ConnectError } from "@connectrpc/connect";

export async function refusal(call: Promise<unknown>): Promise<{ code: Code; message: string }> {
  try {
    await call;
  } catch (error) {
    const e = ConnectError.from(error);
    return { code: e.code, message: e.rawMessage };
  }
  return expect.fail("the call succeeded");
}
