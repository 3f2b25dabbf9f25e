// Generators of bad input for the front door and the mesh (docs/bad-input.md): strings
// of every kind (unicode, lone surrogates, NUL, percent signs, injection classics,
// huge), things that look like tokens (JWS fragments, alg none, re-typed and bit-flipped
// real tokens, huge ones), and protobuf messages of any type, walked from the
// descriptors so that a field or method added to a proto is covered without a change here.

import { createHash } from "node:crypto";
import fc from "fast-check";
import { type DescEnum, type DescField, type DescMessage, ScalarType, create } from "@bufbuild/protobuf";

// --- how long and from where ------------------------------------------------------------

/**
 * fast-check parameters for one property: a fixed seed per property (derived from its
 * name, so a failure reproduces in CI and locally), unless HELLO_FUZZ_SEED says
 * otherwise ("random" for a fresh one each run); HELLO_FUZZ_RUNS overrides the number of
 * runs for longer local fuzzing. fast-check prints the seed and path of a failure;
 * HELLO_FUZZ_REPLAY="<seed>:<path>" (with mocha's -g naming the test) replays exactly it.
 */
export function fuzzParameters<T>(property: string, defaultRuns: number): fc.Parameters<T> {
  const replay = process.env.HELLO_FUZZ_REPLAY;
  if (replay) {
    // "<seed>:<path>" replays one case; "<seed>" alone reruns the whole sequence (state and all).
    const [seed, ...path] = replay.split(":");
    const runs = process.env.HELLO_FUZZ_RUNS ? Number.parseInt(process.env.HELLO_FUZZ_RUNS, 10) : defaultRuns;
    return path.length > 0 ? { seed: Number.parseInt(seed!, 10), path: path.join(":"), endOnFailure: true } : { seed: Number.parseInt(seed!, 10), numRuns: runs };
  }
  const named = createHash("sha256").update(property).digest().readInt32BE(0);
  const env = process.env.HELLO_FUZZ_SEED;
  const base = env === undefined || env === "" ? 0 : env === "random" ? Date.now() : Number.parseInt(env, 10);
  if (Number.isNaN(base)) throw new Error("HELLO_FUZZ_SEED must be an integer or \"random\"");
  const runs = process.env.HELLO_FUZZ_RUNS ? Number.parseInt(process.env.HELLO_FUZZ_RUNS, 10) : defaultRuns;
  if (!(runs > 0)) throw new Error("HELLO_FUZZ_RUNS must be a positive integer");
  return { seed: (named + base) | 0, numRuns: runs };
}

// --- strings -------------------------------------------------------------------------------

/** Marks input that must never come back unescaped in HTML. */
export const HTML_PROBE = "<x-fuzz-probe>";

const SPECIAL_STRINGS = [
  "", " ", "\u0000", "a\u0000b", "%", "%zz", "%E0%A4%A", "%00", "%FF%FE", "+", "&", "=", "&=&=", "#frag",
  "null", "true", "0", "-1", "1e309", "NaN", "Infinity", "[]", "{}", "[1,2", '{"a":', '""', "undefined",
  "__proto__", "constructor", "prototype", "toString", "hasOwnProperty",
  "../../../etc/passwd", "..%2f..%2f", "C:\\Windows\\win.ini", "file:///etc/passwd", "javascript:alert(1)",
  HTML_PROBE, `"><${HTML_PROBE.slice(1)}`, "' OR '1'='1' --", "${7*7}", "{{7*7}}", "%s%s%s%n",
  "\r\nx-injected: 1", "\n", "\t", "\u2028\u2029", "\uFEFF", "\uD800", "\uDFFF", "\u202E", "😀", "é", "e\u0301",
  "9".repeat(400), "openid", "openid openid", " openid ", "code", "S256", "plain", "none", "login", "consent",
  "query", "form_post", "fragment", "select_account", "dev", "dev2",
];

/** Strings of any shape: plain, full unicode with lone surrogates, and the special cases above. */
export function anyString(options: { huge?: boolean } = {}): fc.Arbitrary<string> {
  const arbitraries: Array<fc.WeightedArbitrary<string>> = [
    { arbitrary: fc.string({ maxLength: 40 }), weight: 4 },
    { arbitrary: fc.string({ unit: "binary", maxLength: 40 }), weight: 3 },
    { arbitrary: fc.string({ unit: "grapheme", maxLength: 20 }), weight: 1 },
    { arbitrary: fc.constantFrom(...SPECIAL_STRINGS), weight: 4 },
    { arbitrary: fc.string({ minLength: 200, maxLength: 5000 }), weight: 1 },
  ];
  if (options.huge) arbitraries.push({ arbitrary: hugeString(), weight: 1 });
  return fc.oneof(...arbitraries);
}

/** 64 KiB to 2 MiB: past every parameter limit and most body limits. */
export function hugeString(): fc.Arbitrary<string> {
  return fc
    .tuple(fc.constantFrom(64 * 1024 + 1, 100 * 1024, 1024 * 1024, 2 * 1024 * 1024), fc.constantFrom("A", "%", "é", "\u0000", "a=b&"))
    .map(([bytes, unit]) => unit.repeat(Math.ceil(bytes / Buffer.byteLength(unit))));
}

const b64 = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
const base64url = fc.string({ unit: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), maxLength: 80 });

/**
 * Strings that look like compact JWS (what every token and record field holds): random
 * segments, `alg: none`, real tokens (from `pool`) bit-flipped, truncated, re-typed
 * (another token's header on this one's payload), with segments missing or added, and
 * huge ones.
 */
export function tokenLike(pool: readonly string[] = []): fc.Arbitrary<string> {
  const typs = ["JWT", "hello-session+jwt", "hello-access+jwt", "hello-error+jwt", "hello-receipt+jwt", "hello-wallet-record+jwt", "oauth-authz-req+jwt", 5, null];
  const names = fc.oneof(fc.constantFrom("iss", "aud", "sub", "exp", "iat", "jti", "op", "kind", "hash", "sid", "step", "uid", "client_id", "nonce"), fc.string({ maxLength: 8 }));
  const claims = fc.dictionary(names, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 8 });
  const header = fc.record({
    alg: fc.constantFrom("none", "None", "NONE", "HS256", "EdDSA", "RS256", "ES256", "", 1),
    typ: fc.constantFrom(...typs),
    kid: fc.oneof(base64url, fc.constantFrom("access.x", "session.x", "../../key", "")),
  }, { requiredKeys: ["alg"] });
  const forged = fc.tuple(header, claims, fc.constantFrom("", "sig", "AAAA")).map(([h, c, s]) => `${b64(h)}.${b64(c)}.${s}`);
  const segments = fc.array(base64url, { minLength: 1, maxLength: 6 }).map((parts) => parts.join("."));
  const notJson = fc.tuple(fc.string({ maxLength: 20 }), fc.string({ maxLength: 20 })).map(([h, p]) => `${b64(h)}.${b64(p)}.`);
  const huge = fc.constantFrom(64 * 1024, 1024 * 1024).map((n) => `${b64({ alg: "EdDSA", kid: "access.x" })}.${"A".repeat(n)}.AAAA`);
  const arbitraries: Array<fc.WeightedArbitrary<string>> = [
    { arbitrary: forged, weight: 4 },
    { arbitrary: segments, weight: 2 },
    { arbitrary: notJson, weight: 1 },
    { arbitrary: fc.constantFrom("", ".", "..", "...", "a.b.c", "e30.e30.", "e30..", "eyJhbGciOiJub25lIn0.e30."), weight: 1 },
    { arbitrary: huge, weight: 1 },
  ];
  if (pool.length > 0) {
    const real = fc.constantFrom(...pool);
    arbitraries.push(
      { arbitrary: real, weight: 2 },
      { arbitrary: fc.tuple(real, fc.nat(), fc.nat(5)).map(([t, at, bit]) => flipBit(t, at, bit)), weight: 3 },
      { arbitrary: fc.tuple(real, fc.nat()).map(([t, at]) => t.slice(0, at % (t.length + 1))), weight: 2 },
      { arbitrary: fc.tuple(real, real).map(([a, b]) => `${a.split(".")[0]}.${b.split(".")[1]}.${b.split(".")[2]}`), weight: 2 },
      { arbitrary: fc.tuple(real, header).map(([t, h]) => `${b64(h)}.${t.split(".")[1]}.`), weight: 2 },
      { arbitrary: real.map((t) => `${t}.${t.split(".")[2]}`), weight: 1 },
    );
  }
  return fc.oneof(...arbitraries);
}

/** Flips one bit of one base64url character, keeping it in the alphabet. */
function flipBit(text: string, at: number, bit: number): string {
  if (text.length === 0) return text;
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const i = at % text.length;
  const index = alphabet.indexOf(text[i]!);
  if (index < 0) return text;
  return text.slice(0, i) + alphabet[index ^ (1 << bit)]! + text.slice(i + 1);
}

// --- protobuf messages -------------------------------------------------------------------

export interface MessageOptions {
  /** Strings for fields that hold tokens or records (names ending in token, record, receipt). */
  readonly tokens: fc.Arbitrary<string>;
  /** Allow one huge string or bytes value (MiBs) now and then. */
  readonly huge?: boolean;
  readonly maxDepth?: number;
}

const INT32 = { min: -0x80000000, max: 0x7fffffff };

function scalarArbitrary(type: ScalarType, field: DescField | undefined, options: MessageOptions, longAsString: boolean): fc.Arbitrary<unknown> {
  switch (type) {
    case ScalarType.STRING:
      return field && /(token|record|receipt|request_object)$/i.test(field.name)
        ? fc.oneof({ arbitrary: options.tokens, weight: 3 }, { arbitrary: anyString({ huge: options.huge ?? false }), weight: 1 })
        : anyString({ huge: options.huge ?? false });
    case ScalarType.BYTES:
      return fc.oneof(
        { arbitrary: fc.uint8Array({ maxLength: 64 }), weight: 5 },
        { arbitrary: fc.constant(new Uint8Array(0)), weight: 1 },
        { arbitrary: fc.constantFrom(1024 * 1024, 5 * 1024 * 1024).map((n) => new Uint8Array(n).fill(7)), weight: options.huge ? 1 : 0 },
      );
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.DOUBLE:
      return fc.double();
    case ScalarType.FLOAT:
      return fc.float();
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return fc.oneof(fc.integer(INT32), fc.constantFrom(0, -1, 1, INT32.min, INT32.max));
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fc.oneof(fc.nat(0xffffffff), fc.constantFrom(0, 1, 0xffffffff));
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64: {
      const arbitrary = fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.constantFrom(0n, -1n, 1n, 2n, -(2n ** 63n), 2n ** 63n - 1n, 2n ** 53n + 1n));
      return longAsString ? arbitrary.map(String) : arbitrary;
    }
    case ScalarType.UINT64:
    case ScalarType.FIXED64: {
      const arbitrary = fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.constantFrom(0n, 1n, 2n ** 64n - 1n, 2n ** 53n + 1n));
      return longAsString ? arbitrary.map(String) : arbitrary;
    }
  }
}

function enumArbitrary(desc: DescEnum): fc.Arbitrary<number> {
  // Known values, and numbers no version of the proto defines (open enums keep them).
  return fc.oneof({ arbitrary: fc.constantFrom(...desc.values.map((v) => v.number)), weight: 3 }, { arbitrary: fc.integer(INT32), weight: 1 });
}

function fieldValue(field: DescField, options: MessageOptions, depth: number): fc.Arbitrary<unknown> {
  switch (field.fieldKind) {
    case "scalar":
      return scalarArbitrary(field.scalar, field, options, field.longAsString);
    case "enum":
      return enumArbitrary(field.enum);
    case "message":
      return messageInit(field.message, options, depth + 1);
    case "list": {
      const item =
        field.listKind === "scalar" ? scalarArbitrary(field.scalar, field, options, field.longAsString)
        : field.listKind === "enum" ? enumArbitrary(field.enum)
        : messageInit(field.message, options, depth + 1);
      return fc.array(item, { maxLength: depth === 0 ? 6 : 2 });
    }
    case "map": {
      const key = scalarArbitrary(field.mapKey, undefined, { ...options, huge: false }, true).map(String);
      const value =
        field.mapKind === "scalar" ? scalarArbitrary(field.scalar, field, options, false)
        : field.mapKind === "enum" ? enumArbitrary(field.enum)
        : messageInit(field.message, options, depth + 1);
      return fc.dictionary(key, value, { maxKeys: 3 });
    }
  }
}

/** An init object for `create(desc, …)`: any subset of fields, any member (or none) of each oneof. */
function messageInit(desc: DescMessage, options: MessageOptions, depth: number): fc.Arbitrary<Record<string, unknown>> {
  if (depth > (options.maxDepth ?? 3)) return fc.constant({});
  const parts: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of desc.fields) {
    if (field.oneof) continue;
    parts[field.localName] = fieldValue(field, options, depth);
  }
  for (const oneof of desc.oneofs) {
    parts[oneof.localName] = fc.oneof(
      fc.constant(undefined),
      ...oneof.fields.map((member) => fieldValue(member, options, depth).map((value) => ({ case: member.localName, value }))),
    );
  }
  return fc.record(parts, { requiredKeys: [] }).map((init) => Object.fromEntries(Object.entries(init).filter(([, v]) => v !== undefined)));
}

/** Any message of type `desc`: every field may be missing, empty, huge or of an unknown enum value. */
export function messageOf(desc: DescMessage, options: MessageOptions): fc.Arbitrary<ReturnType<typeof create>> {
  return messageInit(desc, options, 0).map((init) => create(desc, init as never));
}
