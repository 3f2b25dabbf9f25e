// One process per embedded data directory: PGlite does not take PostgreSQL's
// postmaster.pid lock, and two Storage processes on one directory would corrupt it.

import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";

const LOCK_FILE = "hello-storage.pid";

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Takes the directory's lock (replacing one left by a dead process); returns its release. */
export async function lockDirectory(dir: string): Promise<() => Promise<void>> {
  const file = path.join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: "wx" });
      return () => rm(file, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const holder = Number.parseInt(await readFile(file, "utf8").catch(() => ""), 10);
      if (Number.isSafeInteger(holder) && holder > 0 && isAlive(holder)) {
        throw new Error(
          `another process (pid ${holder}) has the embedded database ${dir} open: only one Storage process may use a PGlite data directory (use PostgreSQL to run several)`,
        );
      }
      await rm(file, { force: true }); // left by a process that is gone
    }
  }
  throw new Error(`could not take the lock ${file}: another process keeps taking it`);
}
