// GET / : the issuer's own address, opened in a browser, says what it is.

import { homePage } from "../pages/home.js";
import type { DoorContext, Exchange } from "./context.js";
import { sendHtml } from "./responses.js";

export function home(_door: DoorContext, { res }: Exchange) {
  sendHtml(res, 200, homePage());
}
