// A database as an attacker with a copy of it reads it (docs/design.md §5: Storage, or a
// dump of its database, reveals no identifier, claim or email), and a search for a value
// in every encoding a database or a JWS would put it in.

import { execFile } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import type pg from "pg";

const run = promisify(execFile);


/** PostgreSQL's bytea escape output: printable ASCII as is, backslash doubled, the rest \ooo. */
export function byteaEscape(bytes: Buffer): string {
  return [...bytes]
    .map((b) => (b === 0x5c ? "\\\\" : b >= 0x20 && b <= 0x7e ? String.fromCharCode(b) : `\\${b.toString(8).padStart(3, "0")}`))
    .join("");
}

/**
 * The base64 (or base64url) text that `value` produces wherever it sits in a longer byte
 * string: the whole encoding, and for each of the three alignments the run of characters
 * made of the value's bytes alone (the first and last groups also carry neighbours' bits).
 */
function base64Forms(value: Buffer, alphabet: "base64" | "base64url"): string[] {
  const forms = new Set([value.toString(alphabet), value.toString(alphabet).replace(/=+$/, "")]);
  for (let shift = 0; shift < 3; shift++) {
    const encoded = Buffer.concat([Buffer.alloc(shift), value]).toString(alphabet).replace(/=+$/, "");
    const fragment = encoded.slice(shift === 0 ? 0 : 4, Math.floor((shift + value.length) / 3) * 4);
    if (fragment.length >= 8) forms.add(fragment);
  }
  return [...forms];
}

/** Every encoding of `value` searched for, by name. */
function encodings(value: string): Array<[string, string]> {
  const bytes = Buffer.from(value, "utf8");
  const hex = bytes.toString("hex");
  return [
    ["utf-8", value],
    ["hex", hex],
    ["HEX", hex.toUpperCase()],
    ["bytea hex", `\\x${hex}`],
    ["bytea escape", byteaEscape(bytes)],
    ...base64Forms(bytes, "base64").map((f): [string, string] => ["base64", f]),
    ...base64Forms(bytes, "base64url").map((f): [string, string] => ["base64url", f]),
  ];
}

/** The encodings of `value` found in `haystack` (plain text case-insensitively). */
export function findValue(haystack: string, value: string): string[] {
  const lower = haystack.toLowerCase();
  const found = encodings(value)
    .filter(([name, form]) => (name === "utf-8" || name === "bytea escape" ? lower.includes(form.toLowerCase()) : haystack.includes(form)))
    .map(([name]) => name);
  return [...new Set(found)];
}

async function pgDumpBinary(): Promise<string> {
  const root = "/usr/lib/postgresql";
  const versions = readdirSync(root)
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
  for (const v of versions) {
    const bin = path.join(root, v, "bin", "pg_dump");
    if (statSync(bin, { throwIfNoEntry: false })?.isFile()) return bin;
  }
  throw new Error(`no pg_dump under ${root}/*/bin`);
}


/** pg_dump (COPY and INSERT form) and SELECT * of every table in every bytea output: one haystack. */
export async function dumpDatabase(url: string, db: pg.Client): Promise<{ dumps: string[]; haystack: string; tables: string[] }> {
  const pgDump = await pgDumpBinary();
  const dumps: string[] = [];
  for (const extra of [[], ["--column-inserts"]]) {
    const { stdout } = await run(pgDump, ["--no-password", ...extra, "--dbname", url], { maxBuffer: 64 * 1024 * 1024 });
    dumps.push(stdout);
  }
  const { rows: tables } = await db.query<{ name: string }>(
    "SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
  );
  const selected: string[] = [];
  for (const { name } of tables) {
    const { rows } = await db.query<Record<string, unknown>>(`SELECT * FROM ${name}`);
    for (const r of rows) {
      selected.push(Object.values(r).map((v) => (Buffer.isBuffer(v) ? v.toString("latin1") : String(v))).join("\t"));
    }
    for (const output of ["hex", "escape"]) {
      await db.query(`SET bytea_output = '${output}'`);
      const { rows: text } = await db.query<{ t: string }>(`SELECT t::text AS t FROM ${name} t`);
      selected.push(...text.map((r) => r.t));
    }
    await db.query("RESET bytea_output");
  }
  return { dumps, haystack: [...dumps, ...selected].join("\n"), tables: tables.map((t) => t.name) };
}
