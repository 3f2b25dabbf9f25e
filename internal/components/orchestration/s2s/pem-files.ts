// The wallet server's PEM files, read once at start: a missing or unreadable one stops
// the start, naming the file and the setting that names it.

import { readFileSync } from "node:fs";
import { MissingKeyMaterialError } from "../../../protocol/key-files.js";

export function readPemFile(file: string, setting: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new MissingKeyMaterialError(`the wallet server cannot start: ${file} (${setting}) cannot be read (${code})`, { cause: error });
  }
  if (!text.includes("-----BEGIN ")) throw new MissingKeyMaterialError(`the wallet server cannot start: ${file} (${setting}) is not PEM`);
  return text;
}
