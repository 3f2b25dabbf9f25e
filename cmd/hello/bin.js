#!/usr/bin/env node
// The `hello` command. Runs the TypeScript sources through tsx's loader; the
// reproducible per-component artifacts are built separately (`npm run build`).
import { register } from "tsx/esm/api";

register();
const { main } = await import("./main.ts");
// Exit when the command is done, whatever a library left open: a supervisor must see a
// failed start, and a finished command must not linger.
process.exit(await main(process.argv.slice(2)));
