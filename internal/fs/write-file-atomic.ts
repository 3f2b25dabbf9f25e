// Every file a custodian keeps (keys, certificates, bundles) is written one way: a
// reader, or a crash, sees the old file or the new one, never half of either, and a
// secret is 0600 from the moment it exists. With `exclusive`, an existing file is never
// replaced: the new one is linked into place, which fails if the name is taken.

import { randomBytes } from "node:crypto";
import { link, mkdir, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

export async function writeFileAtomic(
  path: string,
  text: string,
  options: {
    secret: boolean;
    /** For directories it has to make; 0700 unless told. */
    directoryMode?: number;
    /** Refuse (EEXIST) rather than replace a file already at `path`, even one made meanwhile. */
    exclusive?: boolean;
  },
): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: options.directoryMode ?? 0o700 });
  // A random temporary name: two writers in one process cannot collide.
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    const file = await open(temp, "wx", options.secret ? 0o600 : 0o644);
    try {
      await file.writeFile(text, "utf8");
      await file.sync();
    } finally {
      await file.close();
    }
    if (options.exclusive) {
      await link(temp, path);
      await rm(temp, { force: true });
    } else {
      await rename(temp, path);
    }
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}
