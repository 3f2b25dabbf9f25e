#!/usr/bin/env node
// `npm test`: everything the tests need, then the tests. The storage suite runs on a
// real PostgreSQL server and the browser test in real Chromium, so this makes sure
// Debian's postgresql and chromium are present (installing them when we can, as root)
// before mocha starts; the suite itself starts a throwaway PostgreSQL server in a
// temporary directory (or uses HELLO_TEST_DATABASE_URL).

import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";

// `--faults` (npm run test:faults) runs the fault tests instead: components killed and
// restarted, the database restarted, Storage hung, under streams of logins. They take
// minutes, so they have a script of their own, which CI runs too (docs/faults.md). They
// stop and start a PostgreSQL server of their own, so they need the local binaries.
const faults = process.argv.includes("--faults");

function hasPostgresServer() {
  if (process.env.HELLO_TEST_DATABASE_URL && !faults) return true;
  const root = "/usr/lib/postgresql";
  return existsSync(root) && readdirSync(root).some((v) => existsSync(`${root}/${v}/bin/initdb`));
}

function aptInstall(packages) {
  if (process.getuid?.() !== 0) {
    console.error(`npm test needs ${packages.join(", ")}: install with sudo apt-get install -y ${packages.join(" ")}`);
    process.exit(1);
  }
  console.log(`Installing ${packages.join(", ")} from Debian's packages…`);
  execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit" });
  execFileSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...packages], {
    stdio: "inherit",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
}

const missing = [
  ...(hasPostgresServer() ? [] : ["postgresql"]),
  // playwright cannot download a browser here: the tests drive Debian's Chromium.
  ...(existsSync("/usr/bin/chromium") ? [] : ["chromium"]),
];
if (missing.length > 0) aptInstall(missing);

const specs = faults ? ["test/faults/**/*.spec.ts"] : ["{cmd,internal,mesh,test}/**/*.spec.ts", "--ignore", "test/faults/**"];
const result = spawnSync("npx", ["mocha", ...specs, ...process.argv.slice(2).filter((a) => a !== "--faults")], {
  stdio: "inherit",
});
process.exit(result.status ?? 1);
