// The search behind the leak test: every sensitive value a run of logins saw, each in
// the encodings a careless log line or label would hold it in, looked for in every
// byte the components wrote and every metric they published.

import { Buffer } from "node:buffer";

export type Category =
  | "user claim"
  | "password"
  | "client secret"
  | "key"
  | "token"
  | "token claim"
  | "protocol parameter"
  | "cookie"
  | "mesh message field";

export interface Needle {
  readonly category: Category;
  readonly value: string;
  /** Where the value was seen (for the failure message). */
  readonly source: string;
}

export interface Finding {
  readonly needle: Needle;
  readonly encoding: string;
  readonly haystack: string;
  /** The matching line, cut around the match. */
  readonly excerpt: string;
}

/** Values shorter than this are searched only when they must be (given names, passwords). */
const SHORT = 8;

/** The forms a value can take in text: raw, base64url, base64, hex, URL- and form-encoded, JSON-escaped. */
export function encodings(value: string): Array<{ name: string; text: string }> {
  const bytes = Buffer.from(value, "utf8");
  // A short value (a given name) encoded is a few hex digits or base64 letters, which
  // random trace ids contain by chance: short values are searched as text only.
  const binary = value.length >= SHORT ? [
    { name: "base64url", text: bytes.toString("base64url") },
    { name: "base64", text: bytes.toString("base64").replace(/=+$/, "") },
    { name: "hex", text: bytes.toString("hex") },
  ] : [];
  const forms = [
    { name: "raw", text: value },
    ...binary,
    { name: "url-encoded", text: encodeURIComponent(value) },
    { name: "form-encoded", text: new URLSearchParams({ v: value }).toString().slice(2) },
    { name: "json-escaped", text: JSON.stringify(value).slice(1, -1) },
  ];
  const seen = new Set<string>();
  return forms.filter((f) => !seen.has(f.text) && seen.add(f.text));
}

/**
 * The values to search for. `isPublic` names what is public by design (the issuer,
 * client ids, claim names, component identities), which may appear in logs.
 */
export class NeedleSet {
  readonly #needles = new Map<string, Needle>();
  readonly #isPublic: (value: string) => boolean;

  constructor(isPublic: (value: string) => boolean) {
    this.#isPublic = isPublic;
  }

  /**
   * Adds `value` unless it is public or too short to search without false alarms
   * (`force` for a short value that must still never appear, such as a given name).
   */
  add(category: Category, value: unknown, source: string, force = false): void {
    if (typeof value !== "string") return;
    if (this.#isPublic(value) || this.#needles.has(value)) return;
    if (!force && value.length < SHORT) return;
    this.#needles.set(value, { category, value, source });
    // A compact JWS: its payload, signature and every claim are values too. (Its header
    // names an algorithm, a key id and a type: public.)
    if (/^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(value)) {
      const [, payload, signature] = value.split(".");
      this.add("token", payload, `${source} (payload)`);
      if (signature) this.add("token", signature, `${source} (signature)`);
      try {
        this.addLeaves("token claim", JSON.parse(Buffer.from(payload!, "base64url").toString("utf8")), `${source} claims`);
      } catch {
        // Not JSON inside: the token itself is searched.
      }
    }
  }

  /** Every string inside `value` (objects, arrays, JSON text), recursively. */
  addLeaves(category: Category, value: unknown, source: string): void {
    if (typeof value === "string") {
      this.add(category, value, source);
      if (/^[[{]/.test(value)) {
        try {
          this.addLeaves(category, JSON.parse(value), `${source} (JSON)`);
        } catch {
          // Only looked like JSON.
        }
      }
    } else if (value instanceof Uint8Array) {
      if (value.length >= 16) this.add(category, Buffer.from(value).toString("base64url"), `${source} (bytes)`);
    } else if (Array.isArray(value)) {
      for (const item of value) this.addLeaves(category, item, source);
    } else if (value && typeof value === "object") {
      for (const [key, item] of Object.entries(value)) if (key !== "$typeName") this.addLeaves(category, item, `${source}.${key}`);
    }
  }

  get size(): number {
    return this.#needles.size;
  }

  values(): Needle[] {
    return [...this.#needles.values()];
  }

  byCategory(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const n of this.#needles.values()) counts[n.category] = (counts[n.category] ?? 0) + 1;
    return counts;
  }
}

/**
 * Every needle, in every encoding, in every haystack. Email addresses are matched
 * without regard to case (a log could lower-case one).
 */
export function search(needles: readonly Needle[], haystacks: ReadonlyMap<string, string>): { findings: Finding[]; comparisons: number } {
  const findings: Finding[] = [];
  let comparisons = 0;
  const lowered = new Map([...haystacks].map(([name, text]) => [name, text.toLowerCase()]));
  for (const needle of needles) {
    const caseless = needle.value.includes("@");
    for (const form of encodings(needle.value)) {
      const text = caseless ? form.text.toLowerCase() : form.text;
      for (const [name, haystack] of caseless ? lowered : haystacks) {
        comparisons++;
        const at = haystack.indexOf(text);
        if (at < 0) continue;
        const start = haystack.lastIndexOf("\n", at) + 1;
        const end = haystack.indexOf("\n", at);
        const line = haystacks.get(name)!.slice(start, end < 0 ? undefined : end);
        findings.push({ needle, encoding: form.name, haystack: name, excerpt: line.length > 300 ? `${line.slice(0, 300)}…` : line });
      }
    }
  }
  return { findings, comparisons };
}
