// The kinds of record (docs/design.md §3): part of every storage key, Access Token, receipt
// and additional data, so a token or ciphertext for one kind never serves another.

export type RecordKindName = "subject" | "release" | "wallet" | "reservation" | "s2s-session" | "credential" | "holdings";

export const RECORD_KINDS: readonly RecordKindName[] = ["subject", "release", "wallet", "reservation", "s2s-session", "credential", "holdings"];

/** The credential wallet's kinds (docs/wallet-server.md): a Storage of an earlier format knows none of them. */
export const WALLET_RECORD_KINDS: readonly RecordKindName[] = ["s2s-session", "credential", "holdings"];
