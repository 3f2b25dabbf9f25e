// The kinds of record (docs/design.md §3): part of every storage key, Access Token, receipt
// and additional data, so a token or ciphertext for one kind never serves another.

export type RecordKindName = "subject" | "release" | "wallet" | "reservation";

export const RECORD_KINDS: readonly RecordKindName[] = ["subject", "release", "wallet", "reservation"];
