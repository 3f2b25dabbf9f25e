// A throwaway PostgreSQL server for tests: the record store's PostgreSQL backend has to
// be tested against the real thing, not PGlite pretending.
//
// With HELLO_TEST_DATABASE_URL set (CI with a service container, say), each call gets a
// fresh database on that server. Otherwise a private server is started from the local
// PostgreSQL binaries in a temporary directory, on a free port of 127.0.0.1, with trust
// authentication and fsync off: fast, and gone when stopped.

import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, rmSync } from "node:fs";
import { chown, mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";

import pg from "pg";
import { freePort } from "./free-port.js";

export interface TestPostgres {
  /** postgresql:// URL of a database that this call alone uses. */
  url: string;
  stop(): Promise<void>;
  /**
   * A private server only (`ownServer`): stops the server process (`pg_ctl stop -m
   * <mode>`), keeping its data, and starts it again on the same port. For fault tests.
   */
  server?: {
    stop(mode: "fast" | "immediate"): Promise<void>;
    start(): Promise<void>;
  };
}

const run = promisify(execFile);

/**
 * A database for one test suite. `ownServer` forces a private server even when
 * HELLO_TEST_DATABASE_URL names a shared one: for tests that stop or freeze it.
 */
export async function startPostgres(options: { ownServer?: boolean } = {}): Promise<TestPostgres> {
  const external = process.env["HELLO_TEST_DATABASE_URL"];
  return external && !options.ownServer ? createScratchDatabase(external) : startPrivateServer();
}

async function createScratchDatabase(serverUrl: string): Promise<TestPostgres> {
  const name = `hello_test_${randomBytes(8).toString("hex")}`;
  // C collation, so that ORDER BY hash is byte order whatever the server's default locale.
  await withClient(serverUrl, (client) =>
    client.query(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'`),
  );
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  let stopped = false;
  return {
    url: url.toString(),
    async stop() {
      if (stopped) return;
      stopped = true;
      // FORCE (PostgreSQL 13+) ends the sessions a test left open rather than failing.
      await withClient(serverUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}

async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function startPrivateServer(): Promise<TestPostgres> {
  const bin = await findPostgresBin();
  const dir = await mkdtemp(join(tmpdir(), "hello-pg-"));
  const dataDir = join(dir, "data");
  const logFile = join(dir, "postgres.log");

  // PostgreSQL refuses to run as root; as root, hand the directory to `postgres` and run
  // the server tools as that user.
  const asRoot = process.getuid?.() === 0;
  const command = (tool: string, args: string[]): [string, string[]] =>
    asRoot ? ["runuser", ["-u", "postgres", "--", join(bin, tool), ...args]] : [join(bin, tool), args];
  // cwd: the tools as `postgres` may not be allowed into the caller's working directory.
  const runTool = (tool: string, args: string[]) => run(...command(tool, args), { cwd: dir });
  const pgCtl = (args: string[]) => runTool("pg_ctl", ["-D", dataDir, ...args]);

  // Stop without waiting: the last resort if the test process exits before stop().
  const stopSync = () => {
    try {
      execFileSync(...command("pg_ctl", ["-D", dataDir, "-m", "immediate", "stop"]), { cwd: dir, stdio: "ignore" });
    } catch {
      // Not running (never started, or already stopped).
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", stopSync);

  try {
    if (asRoot) {
      const [uid, gid] = await Promise.all([idOf("-u"), idOf("-g")]);
      await chown(dir, uid, gid);
    }
    await runTool("initdb", ["-D", dataDir, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"]);

    // The free port is found by binding port 0 and letting it go, so another process can
    // take it before the server does; retrying with a new port covers that race.
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const serverOptions = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
      try {
        await pgCtl(["-w", "-l", logFile, "-o", serverOptions, "start"]);
        break;
      } catch (error) {
        if (attempt === 3) throw error;
      }
    }

    let stopped = false;
    let running = true;
    const serverOptions = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
    return {
      url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
      async stop() {
        if (stopped) return;
        stopped = true;
        process.removeListener("exit", stopSync);
        try {
          if (running) await pgCtl(["-m", "immediate", "-w", "stop"]);
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      },
      server: {
        async stop(mode) {
          running = false;
          await pgCtl(["-m", mode, "-w", "stop"]);
        },
        async start() {
          await pgCtl(["-w", "-l", logFile, "-o", serverOptions, "start"]);
          running = true;
        },
      },
    };
  } catch (error) {
    const log = await readFile(logFile, "utf8").catch(() => "");
    process.removeListener("exit", stopSync);
    stopSync();
    throw new Error(`could not start a test PostgreSQL server: ${errorText(error)}${log ? `\n${log}` : ""}`);
  }
}

/** The directory holding initdb and pg_ctl: Debian's newest, else wherever PATH has them. */
async function findPostgresBin(): Promise<string> {
  const debianRoot = "/usr/lib/postgresql";
  const versions = await readdir(debianRoot).catch((): string[] => []);
  const debianBins = versions
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    .map((v) => join(debianRoot, v, "bin"));
  const pathBins = (process.env["PATH"] ?? "").split(delimiter).filter(Boolean);
  const found = [...debianBins, ...pathBins].find(
    (d) => existsSync(join(d, "initdb")) && existsSync(join(d, "pg_ctl")),
  );
  if (found === undefined) {
    throw new Error(
      "PostgreSQL server binaries not found: install Debian's postgresql package (apt-get install -y postgresql) or set HELLO_TEST_DATABASE_URL",
    );
  }
  return found;
}

async function idOf(flag: "-u" | "-g"): Promise<number> {
  const { stdout } = await run("id", [flag, "postgres"]);
  return Number.parseInt(stdout.trim(), 10);
}

function errorText(error: unknown): string {
  if (error instanceof Error) {
    const stderr = (error as { stderr?: unknown }).stderr;
    return typeof stderr === "string" && stderr.trim() !== "" ? `${error.message}\n${stderr.trim()}` : error.message;
  }
  return String(error);
}
