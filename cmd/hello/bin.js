#!/usr/bin/env node
// The `hello` command. Runs the TypeScript sources through tsx's loader; the
// reproducible per-component artifacts are built separately (`npm run build`).
import { register } from "tsx/esm/api";

register();
const { main } = await import("./main.ts");
process.exitCode = await main(process.argv.slice(2));
