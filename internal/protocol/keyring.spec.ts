// Envelope encryption (docs/keyring-rotation.md): a data key per record, wrapped under
// the keyring's current key, both bound to the record's storage key and kind; re-wrap
// moves the data key to the current key without the record. Records are padded to size
// buckets (format v2), and records sealed before padding (v1) still open.

import { createCipheriv, randomBytes } from "node:crypto";
import { expect } from "chai";
import fc from "fast-check";
import {
  DecryptionError,
  Keyring,
  MAX_SEALED_RECORD_BYTES,
  RECORD_BUCKETS,
  type SealedRecord,
  WRAPPED_KEY_BYTES,
  generateRecordKey,
  sealLegacy,
} from "./keyring.js";
import { lengthPrefixed } from "./lookup-key.js";
import { MAX_RECORD_BYTES } from "../components/encryption/encryption-service.js";
import type { RecordKindName } from "./records.js";

/** AES-256-GCM as the keyring lays it out: nonce || ciphertext || tag. */
function gcm(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  const nonce = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(aad);
  return Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/**
 * An envelope record built here, byte by byte, rather than by the keyring: the formats
 * on disk are pinned by these labels. "hello-record-v1" is how records were sealed
 * before size buckets (the record as it is), "hello-record-v2" padded ones.
 */
function envelope(
  kek: Uint8Array,
  keyId: string,
  body: Uint8Array,
  kind: RecordKindName,
  hash: string,
  label: "hello-record-v1" | "hello-record-v2",
): SealedRecord {
  const dataKey = randomBytes(32);
  return {
    keyId,
    wrappedKey: gcm(kek, dataKey, lengthPrefixed(["hello-record-key-v1", kind, hash, keyId])),
    ciphertext: gcm(dataKey, body, lengthPrefixed([label, kind, hash])),
  };
}

/** ISO/IEC 7816-4 padding of `body` to `size` bytes. */
function padded(body: Uint8Array, size: number): Buffer {
  const out = Buffer.alloc(size);
  out.set(body);
  out[body.length] = 0x80;
  return out;
}

describe("record keyring: envelope encryption and re-wrap", function () {
  const k1 = generateRecordKey();
  const k2 = generateRecordKey();
  const ring1 = new Keyring(new Map([["k1", k1]]), "k1");
  const ring12 = new Keyring(new Map([["k1", k1], ["k2", k2]]), "k2");
  const ring2 = new Keyring(new Map([["k2", k2]]), "k2");
  const text = Buffer.from('{"uid":"u-1"}');

  it("seals each record under its own data key: two seals of one record share no bytes of key or ciphertext", function () {
    const a = ring1.seal(text, "wallet", "h1");
    const b = ring1.seal(text, "wallet", "h1");
    expect(a.keyId).to.equal("k1");
    expect(a.wrappedKey).to.have.length(WRAPPED_KEY_BYTES);
    expect(Buffer.compare(a.wrappedKey, b.wrappedKey)).to.not.equal(0);
    expect(Buffer.compare(a.ciphertext, b.ciphertext)).to.not.equal(0);
    expect(ring1.open(a, "wallet", "h1").toString()).to.equal(text.toString());
    expect(ring1.open(b, "wallet", "h1").toString()).to.equal(text.toString());
  });

  it("a wrapped key moved to another storage key or kind, or relabelled with another key id, does not open", function () {
    const sealed = ring12.seal(text, "subject", "h1");
    const other = ring12.seal(text, "subject", "h2");
    expect(() => ring12.open(sealed, "subject", "h2")).to.throw(DecryptionError, "record key does not authenticate");
    expect(() => ring12.open(sealed, "release", "h1")).to.throw(DecryptionError, "record key does not authenticate");
    // The row keeps its own ciphertext but gets another row's wrapped key: the data key is wrong.
    expect(() => ring12.open({ ...sealed, wrappedKey: other.wrappedKey }, "subject", "h1")).to.throw(DecryptionError);
    // Another row's ciphertext under this row's wrapped key: the record does not open.
    expect(() => ring12.open({ ...sealed, ciphertext: other.ciphertext }, "subject", "h1")).to.throw(
      DecryptionError,
      "the stored record does not authenticate under its key and storage key",
    );
    // Wrapped under k2 but labelled k1 (both held): the key id is in the wrapping's additional data.
    expect(() => ring12.open({ ...sealed, keyId: "k1" }, "subject", "h1")).to.throw(DecryptionError);
    const sameBytes = new Keyring(new Map([["k1", k2], ["k2", k2]]), "k2");
    expect(() => sameBytes.open({ ...sealed, keyId: "k1" }, "subject", "h1")).to.throw(DecryptionError);
    expect(sameBytes.open(sealed, "subject", "h1").toString()).to.equal(text.toString()); // honest twin
  });

  it("a wrapped key and a ciphertext cannot stand in for each other", function () {
    const sealed = ring1.seal(Buffer.alloc(32, 7), "wallet", "h1");
    // A wrapped key presented as a legacy record (no wrapped key), and the other way round.
    expect(() => ring1.open({ keyId: "k1", wrappedKey: new Uint8Array(0), ciphertext: sealed.wrappedKey }, "wallet", "h1")).to.throw(DecryptionError);
    expect(() => ring1.rewrap("wallet", "h1", "k1", sealLegacy(k1, Buffer.alloc(32, 7), "wallet", "h1"))).to.throw(DecryptionError);
  });

  it("re-wrap moves the data key to the current key: the unchanged ciphertext opens under the new wrapping, and without the old key", function () {
    const before = ring1.seal(text, "release", "h1");
    const moved = ring12.rewrap("release", "h1", before.keyId, before.wrappedKey);
    expect(moved.keyId).to.equal("k2");
    expect(Buffer.compare(moved.wrappedKey, before.wrappedKey)).to.not.equal(0);
    const after = { keyId: moved.keyId, wrappedKey: moved.wrappedKey, ciphertext: before.ciphertext };
    expect(ring2.open(after, "release", "h1").toString()).to.equal(text.toString());
    expect(() => ring1.open(after, "release", "h1")).to.throw("the record was sealed with a key this keyring does not hold");
    // Bound to the row it was for.
    expect(() => ring2.open(after, "release", "h2")).to.throw(DecryptionError);
  });

  it("re-wrap refuses a wrapped key Storage names under another storage key, kind or key id, and a legacy record", function () {
    const sealed = ring1.seal(text, "subject", "h1");
    expect(() => ring12.rewrap("subject", "h2", "k1", sealed.wrappedKey)).to.throw(DecryptionError);
    expect(() => ring12.rewrap("wallet", "h1", "k1", sealed.wrappedKey)).to.throw(DecryptionError);
    expect(() => ring12.rewrap("subject", "h1", "k2", sealed.wrappedKey)).to.throw(DecryptionError);
    expect(() => ring12.rewrap("subject", "h1", "k9", sealed.wrappedKey)).to.throw("does not hold");
    expect(() => ring12.rewrap("subject", "h1", "k1", new Uint8Array(0))).to.throw("before envelope encryption");
    expect(ring12.rewrap("subject", "h1", "k1", sealed.wrappedKey).keyId).to.equal("k2"); // honest twin
  });

  it("reads a legacy record, sealed directly under a keyring key, and nothing else under that name", function () {
    const legacy = { keyId: "k1", wrappedKey: new Uint8Array(0), ciphertext: sealLegacy(k1, text, "wallet", "h1") };
    expect(ring12.open(legacy, "wallet", "h1").toString()).to.equal(text.toString());
    expect(() => ring12.open(legacy, "wallet", "h2")).to.throw(DecryptionError);
    // An envelope record stripped of its wrapped key is not a legacy record.
    const sealed = ring1.seal(text, "wallet", "h1");
    expect(() => ring1.open({ ...sealed, wrappedKey: new Uint8Array(0) }, "wallet", "h1")).to.throw(DecryptionError);
  });

  it("tells which key ids a reload would give other key bytes", function () {
    expect(ring1.changedKeys(ring12)).to.deep.equal([]);
    expect(ring12.changedKeys(ring2)).to.deep.equal([]);
    expect(ring1.changedKeys(new Keyring(new Map([["k1", generateRecordKey()]]), "k1"))).to.deep.equal(["k1"]);
  });

  it("property: every record round-trips, and any flipped bit of its wrapped key or ciphertext is refused", function () {
    const kinds: RecordKindName[] = ["subject", "release", "wallet"];
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
        fc.constantFrom(...kinds),
        fc.string({ minLength: 1, maxLength: 64 }),
        fc.nat(),
        fc.boolean(),
        (plaintext, kind, hash, position, inKey) => {
          const sealed = ring12.seal(plaintext, kind, hash);
          expect(Buffer.compare(ring12.open(sealed, kind, hash), plaintext)).to.equal(0);
          const target = Buffer.from(inKey ? sealed.wrappedKey : sealed.ciphertext);
          target[position % target.length]! ^= 1 << position % 8;
          const spoiled = inKey ? { ...sealed, wrappedKey: target } : { ...sealed, ciphertext: target };
          expect(() => ring12.open(spoiled, kind, hash)).to.throw(DecryptionError);
        },
      ),
      { numRuns: 200 },
    );
  });

  describe("size buckets (format v2)", function () {
    it("pads every record so its ciphertext is one of the buckets: 10 and 900 bytes look alike", function () {
      expect(RECORD_BUCKETS).to.deep.equal([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024].map((k) => k * 1024));
      const small = ring1.seal(randomBytes(10), "subject", "h1");
      const large = ring1.seal(randomBytes(900), "subject", "h1");
      expect(small.ciphertext).to.have.length(1024);
      expect(large.ciphertext).to.have.length(1024);
      // Nonce, tag and the 0x80 byte take 29 bytes of a bucket.
      expect(ring1.seal(randomBytes(995), "wallet", "h1").ciphertext).to.have.length(1024);
      expect(ring1.seal(randomBytes(996), "wallet", "h1").ciphertext).to.have.length(2048);
      expect(ring1.seal(new Uint8Array(0), "wallet", "h1").ciphertext).to.have.length(1024);
      expect(ring1.seal(randomBytes(5000), "release", "h1").ciphertext).to.have.length(8192);
      // The wrapped key's length says nothing either.
      expect(small.wrappedKey).to.have.length(WRAPPED_KEY_BYTES);
      expect(large.wrappedKey).to.have.length(WRAPPED_KEY_BYTES);
    });

    it("fits the largest record Encryption accepts into the largest bucket, Storage's 1 MiB, and refuses more than that bucket holds", function () {
      expect(MAX_RECORD_BYTES).to.be.at.most(MAX_SEALED_RECORD_BYTES);
      const largest = ring1.seal(randomBytes(MAX_RECORD_BYTES), "wallet", "h1");
      expect(largest.ciphertext).to.have.length(1024 * 1024);
      const full = randomBytes(MAX_SEALED_RECORD_BYTES);
      const sealed = ring1.seal(full, "wallet", "h1");
      expect(sealed.ciphertext).to.have.length(1024 * 1024);
      expect(Buffer.compare(ring1.open(sealed, "wallet", "h1"), full)).to.equal(0);
      expect(() => ring1.seal(randomBytes(MAX_SEALED_RECORD_BYTES + 1), "wallet", "h1")).to.throw(RangeError);
    });

    it("property: any record round-trips exactly, trailing zeros and 0x80 bytes included, in a bucket-sized ciphertext", function () {
      fc.assert(
        fc.property(
          fc.oneof(
            fc.uint8Array({ maxLength: 3000 }),
            // Bodies that end like padding: the padding must not eat them.
            fc.tuple(fc.uint8Array({ maxLength: 40 }), fc.constantFrom(0x00, 0x80), fc.nat(40)).map(([head, tail, n]) =>
              Uint8Array.from([...head, tail, ...new Array<number>(n).fill(0)]),
            ),
          ),
          (plaintext) => {
            const sealed = ring12.seal(plaintext, "wallet", "h1");
            expect(RECORD_BUCKETS).to.include(sealed.ciphertext.length);
            expect(Buffer.compare(ring12.open(sealed, "wallet", "h1"), plaintext)).to.equal(0);
          },
        ),
        { numRuns: 300 },
      );
    });

    it("still opens records sealed before size buckets (v1), with a wrapped key or without, as they are", function () {
      for (const body of [text, Buffer.alloc(0), padded(text, 1024 - 28)]) {
        // The last one looks padded: a v1 record is never unpadded.
        const v1 = envelope(k1, "k1", body, "release", "h1", "hello-record-v1");
        expect(Buffer.compare(ring12.open(v1, "release", "h1"), body)).to.equal(0);
        expect(() => ring12.open(v1, "release", "h2")).to.throw(DecryptionError);
        expect(() => ring12.open(v1, "wallet", "h1")).to.throw(DecryptionError);
      }
      const legacy = { keyId: "k1", wrappedKey: new Uint8Array(0), ciphertext: sealLegacy(k1, text, "subject", "h1") };
      expect(ring12.open(legacy, "subject", "h1").toString()).to.equal(text.toString());
      // A v1 record's data key re-wraps like any other, and it still opens afterwards.
      const v1 = envelope(k1, "k1", text, "subject", "h1", "hello-record-v1");
      const moved = ring12.rewrap("subject", "h1", "k1", v1.wrappedKey);
      expect(ring2.open({ ...moved, ciphertext: v1.ciphertext }, "subject", "h1").toString()).to.equal(text.toString());
    });

    it("opens a v2 record built outside the keyring, so the format is what the labels say", function () {
      const v2 = envelope(k1, "k1", padded(text, 2048 - 28), "wallet", "h1", "hello-record-v2");
      expect(ring1.open(v2, "wallet", "h1").toString()).to.equal(text.toString());
    });

    it("refuses a v2 record whose padding is malformed, even though it authenticates, rather than read it as v1", function () {
      const bad: Array<[string, Uint8Array]> = [
        ["no 0x80 marker", Buffer.concat([text, Buffer.alloc(100)])],
        ["a nonzero byte after the marker", Buffer.concat([padded(text, 200).subarray(0, 199), Buffer.from([1])])],
        ["only zeros", Buffer.alloc(996)],
        ["an unpadded record under the v2 label", text],
        ["empty", new Uint8Array(0)],
      ];
      for (const [what, body] of bad) {
        const forged = envelope(k1, "k1", body, "wallet", "h1", "hello-record-v2");
        expect(() => ring1.open(forged, "wallet", "h1"), what).to.throw(DecryptionError, "padding is malformed");
      }
    });

    it("refuses a padded record whose padding was tampered with, or that was cut to another bucket", function () {
      const sealed = ring1.seal(text, "wallet", "h1");
      const last = Buffer.from(sealed.ciphertext);
      last[last.length - 17]! ^= 1; // the last byte of the padding, just before the tag
      expect(() => ring1.open({ ...sealed, ciphertext: last }, "wallet", "h1")).to.throw(DecryptionError);
      const marker = Buffer.from(sealed.ciphertext);
      marker[12 + text.length]! ^= 0x80; // the 0x80 byte
      expect(() => ring1.open({ ...sealed, ciphertext: marker }, "wallet", "h1")).to.throw(DecryptionError);
      const cut = Buffer.concat([sealed.ciphertext.subarray(0, 512 - 16), sealed.ciphertext.subarray(sealed.ciphertext.length - 16)]);
      expect(() => ring1.open({ ...sealed, ciphertext: cut }, "wallet", "h1")).to.throw(DecryptionError);
      expect(ring1.open(sealed, "wallet", "h1").toString()).to.equal(text.toString()); // honest twin
    });

    it("a padded record moved to another storage key or kind does not open, with its wrapped key or another row's", function () {
      const sealed = ring12.seal(text, "release", "h1");
      const other = ring12.seal(text, "release", "h2");
      expect(() => ring12.open(sealed, "release", "h2")).to.throw(DecryptionError);
      expect(() => ring12.open(sealed, "wallet", "h1")).to.throw(DecryptionError);
      expect(() => ring12.open({ ...other, ciphertext: sealed.ciphertext }, "release", "h2")).to.throw(DecryptionError);
      expect(() => ring12.open({ ...sealed, ciphertext: other.ciphertext }, "release", "h1")).to.throw(DecryptionError);
    });
  });
});
