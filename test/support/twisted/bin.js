#!/usr/bin/env node
// TEST SUPPORT ONLY: runs one component through serve-twisted.ts (TypeScript via tsx).
import { register } from "tsx/esm/api";

register();
const { main } = await import("./serve-twisted.ts");
process.exitCode = await main(process.argv.slice(2));
