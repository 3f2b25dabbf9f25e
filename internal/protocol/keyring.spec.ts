// Envelope encryption (docs/keyring-rotation.md): a data key per record, wrapped under
// the keyring's current key, both bound to the record's storage key and kind; re-wrap
// moves the data key to the current key without the record.

import { expect } from "chai";
import fc from "fast-check";
import { DecryptionError, Keyring, WRAPPED_KEY_BYTES, generateRecordKey, sealLegacy } from "./keyring.js";
import type { RecordKindName } from "../storage/backend/record-store.js";

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
});
