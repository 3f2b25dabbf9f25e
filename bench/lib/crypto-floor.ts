// The crypto floor (variant c): the signing, verification, hashing and encryption one
// login needs, each primitive timed alone with node:crypto on one thread, times how
// often a login does it. No protocol, transport or JSON: what no implementation of
// this protocol can avoid, so floor/mesh says how much of the mesh's time is the
// protocol's cryptography and how much is everything around it.
//
// The counts are read from the code (the file and function doing each is named), for
// the work of the four components only. The upstream provider's signature of its ID
// Token and the app's check of ours are the provider's and the app's work and are
// listed apart. TLS on the mesh is not counted: sessions are long-lived, so there is
// no handshake per login, and its record encryption is a few µs per call.

import {
  type KeyObject,
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  sign,
  verify,
} from "node:crypto";

export type Primitive =
  | "Ed25519 sign"
  | "Ed25519 verify"
  | "RSA-2048 sign (RS256)"
  | "RSA-2048 verify (RS256)"
  | "HMAC-SHA256"
  | "SHA-256"
  | "AES-256-GCM seal"
  | "AES-256-GCM open"
  | "HKDF-SHA256";

/**
 * How many of each one login does, by component. Returning user: CreateSession,
 * AuthorizeSubject, the subject read, AuthorizeUser, the wallet and release reads,
 * MintIdToken, the code and the token endpoint. New user: the same up to the subject
 * read (a miss: Storage signs an Error Token), then CreateUser, two creates,
 * CommitUser, the release read (a miss), the consent page, CreateRelease, one create,
 * MintIdToken, the code and the token endpoint.
 */
export const OPERATIONS: Record<"returning" | "new", Record<Primitive, number>> = {
  returning: {
    // token-service.ts: session signed by CreateSession, AuthorizeSubject, AuthorizeUser (3);
    // access tokens: subject read (1), wallet and release reads (2).
    "Ed25519 sign": 6,
    // token-service.ts: session ×3 (AuthorizeSubject, AuthorizeUser, MintIdToken), subject
    // record ×2 (AuthorizeUser, MintIdToken), release and wallet records (MintIdToken);
    // encryption-service.ts and storage-service.ts: each of 3 access tokens, twice (6);
    // login-driver.ts: subject, wallet and release records (3). 3+2+2+6+3 = 16.
    "Ed25519 verify": 16,
    // token-service.ts MintIdToken: the ID Token and the userinfo JWT.
    "RSA-2048 sign (RS256)": 2,
    // The OP ID Token: upstream-rp.ts (Orchestration's own check) and upstream.ts (Token's).
    "RSA-2048 verify (RS256)": 2,
    // lookup-key.ts: subject, wallet, release hashes by Token and again by Orchestration.
    "HMAC-SHA256": 6,
    // upstream-rp.ts PKCE challenge; sealed.ts code id (issue, redeem) and access token id;
    // client-auth.ts secret comparison (2); token-endpoint.ts PKCE verifier check.
    "SHA-256": 7,
    // sealed.ts: the flow cookie, the code's entry, the access token's entry.
    "AES-256-GCM seal": 3,
    // sealed.ts: the flow cookie and the code's entry; keyring.ts: 3 records.
    "AES-256-GCM open": 5,
    // sealed.ts: the code's key (issue, redeem) and the access token's key.
    "HKDF-SHA256": 3,
  },
  new: {
    // CreateSession 1, AuthorizeSubject 2, Storage's Error Tokens 2, CreateUser 6 (2 records,
    // 3 access tokens, session), Storage's receipts 3, CommitUser 1, CreateRelease 2.
    "Ed25519 sign": 17,
    // AuthorizeSubject 1, subject read 2, CreateUser 2 (session, Error Token), the driver's
    // check of 2 new records 2, wallet and subject creates 4, CommitUser 3 (session, 2
    // receipts), release read 2, CreateRelease 3, the driver's release checks 2, release
    // create 2, MintIdToken 4.
    "Ed25519 verify": 27,
    "RSA-2048 sign (RS256)": 2,
    "RSA-2048 verify (RS256)": 2,
    // Token: subject, wallet, release (CreateUser), release (CreateRelease); Orchestration:
    // subject, wallet, subject, release (new user), release (consent).
    "HMAC-SHA256": 9,
    // PKCE challenge 1; digests of 3 records by Token and by Encryption (6); code and
    // access token ids (3); client secret (2); PKCE verifier (1).
    "SHA-256": 13,
    // flow cookie, consent state, 3 records, code entry, access token entry.
    "AES-256-GCM seal": 7,
    // flow cookie, consent state, code entry (both reads were misses).
    "AES-256-GCM open": 3,
    "HKDF-SHA256": 3,
  },
};

/** Work outside the mesh, per login: the provider's and the app's. */
export const OUTSIDE: Record<string, Primitive> = {
  "the upstream provider signs its ID Token": "RSA-2048 sign (RS256)",
  "the app verifies hello-mesh's ID Token": "RSA-2048 verify (RS256)",
};

interface Keys {
  ed: { privateKey: KeyObject; publicKey: KeyObject };
  rsa: { privateKey: KeyObject; publicKey: KeyObject };
}

// Typical sizes: a JWS signing input of a session token or record is 0.4-1 KB; sealed
// browser state and records 0.3-3 KB.
const JWS_INPUT = randomBytes(700).toString("base64url");
const SEALED = randomBytes(1024);

/**
 * CPU µs per operation (user + system time of this process, which does nothing else
 * meanwhile), so that other load on the machine does not count, as it does not in the
 * per-login CPU figures it is compared with.
 */
function timeOne(op: () => void, minMs: number): number {
  for (let i = 0; i < 20; i++) op(); // warm
  let n = 0;
  const start = process.cpuUsage();
  let used = 0;
  while (used < minMs * 1000) {
    for (let i = 0; i < 20; i++) op();
    n += 20;
    const { user, system } = process.cpuUsage(start);
    used = user + system;
  }
  return used / n;
}

/** CPU µs per operation of each primitive, on this machine, one thread. */
export function timePrimitives(minMsEach = 300): Record<Primitive, number> {
  const keys: Keys = {
    ed: generateKeyPairSync("ed25519"),
    rsa: generateKeyPairSync("rsa", { modulusLength: 2048 }),
  };
  const data = Buffer.from(JWS_INPUT);
  const edSig = sign(null, data, keys.ed.privateKey);
  const rsaSig = sign("sha256", data, keys.rsa.privateKey);
  const aesKey = randomBytes(32);
  const aad = randomBytes(64);
  const sealOnce = () => {
    const nonce = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", aesKey, nonce).setAAD(aad);
    const body = Buffer.concat([c.update(SEALED), c.final()]);
    return { nonce, body, tag: c.getAuthTag() };
  };
  const sealed = sealOnce();
  const hmacKey = randomBytes(32);
  const hmacInput = randomBytes(96);
  return {
    "Ed25519 sign": timeOne(() => sign(null, data, keys.ed.privateKey), minMsEach),
    "Ed25519 verify": timeOne(() => verify(null, data, keys.ed.publicKey, edSig), minMsEach),
    "RSA-2048 sign (RS256)": timeOne(() => sign("sha256", data, keys.rsa.privateKey), minMsEach),
    "RSA-2048 verify (RS256)": timeOne(() => verify("sha256", data, keys.rsa.publicKey, rsaSig), minMsEach),
    "HMAC-SHA256": timeOne(() => createHmac("sha256", hmacKey).update(hmacInput).digest(), minMsEach),
    "SHA-256": timeOne(() => createHash("sha256").update(data).digest(), minMsEach),
    "AES-256-GCM seal": timeOne(() => sealOnce(), minMsEach),
    "AES-256-GCM open": timeOne(() => {
      const d = createDecipheriv("aes-256-gcm", aesKey, sealed.nonce).setAAD(aad);
      d.setAuthTag(sealed.tag);
      Buffer.concat([d.update(sealed.body), d.final()]);
    }, minMsEach),
    "HKDF-SHA256": timeOne(() => hkdfSync("sha256", hmacKey, Buffer.alloc(0), "hello-mesh code v1", 32), minMsEach),
  };
}

export interface Floor {
  readonly microsecondsPerOp: Record<Primitive, number>;
  /** ms of the four components' cryptography per login. */
  readonly msPerLogin: Record<"returning" | "new", number>;
  readonly breakdownMs: Record<"returning" | "new", Record<Primitive, number>>;
  /** ms per login of the provider's and the app's part, for reference. */
  readonly outsideMs: Record<string, number>;
}

export function cryptoFloor(minMsEach?: number): Floor {
  const us = timePrimitives(minMsEach);
  const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;
  const breakdown = (kind: "returning" | "new") =>
    Object.fromEntries(Object.entries(OPERATIONS[kind]).map(([p, n]) => [p, round((n * us[p as Primitive]) / 1000)])) as Record<Primitive, number>;
  const total = (b: Record<Primitive, number>) => round(Object.values(b).reduce((a, x) => a + x, 0));
  const returning = breakdown("returning");
  const fresh = breakdown("new");
  return {
    microsecondsPerOp: Object.fromEntries(Object.entries(us).map(([p, v]) => [p, round(v, 1)])) as Record<Primitive, number>,
    msPerLogin: { returning: total(returning), new: total(fresh) },
    breakdownMs: { returning, new: fresh },
    outsideMs: Object.fromEntries(Object.entries(OUTSIDE).map(([what, p]) => [what, round(us[p] / 1000)])),
  };
}
