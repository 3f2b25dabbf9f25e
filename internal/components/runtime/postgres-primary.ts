// The primary of a replicated PostgreSQL database, for the components that keep state in
// one: Storage (the records) and Orchestration (its replicas' shared state). A replicated
// database (a Patroni cluster, docs/availability.md) is named the way libpq names one:
// every member in the host part, and `target_session_attrs=read-write`, so that the
// client finds whichever member is the primary now:
//
//   postgresql://postgres@10.0.1.1:5432,10.0.2.1:5432,10.0.3.1:5432/records?target_session_attrs=read-write
//
// node-postgres reads one host only, so the URL is split here into one URL per member,
// with one pool each, and the primary is found by asking (PrimaryPools). Only the primary
// is ever used: a standby may lag, and a read there could answer "no record" for a record
// that exists (docs/design.md §7), so any target_session_attrs but read-write or primary
// is refused as a configuration mistake.

import pg from "pg";

/** One member of the database: how to reach it, and how to name it in messages. */
export interface DatabaseHost {
  /** `host:port` as the URL gave it (no credentials): safe for logs and errors. */
  readonly label: string;
  /** A single-host URL for this member, with the URL's credentials, database and other parameters. */
  readonly url: string;
}

const URL_SHAPE = /^(postgres(?:ql)?:\/\/)((?:[^@/?#]*@)?)([^/?#]*)(.*)$/s;
const ACCEPTED_SESSION_ATTRS = new Set(["read-write", "primary"]);

/**
 * Splits `url` into its members. Throws an Error that says what to fix for a URL with an
 * empty host in its list, or a target_session_attrs that would allow a standby.
 */
export function databaseHosts(url: string): DatabaseHost[] {
  const match = URL_SHAPE.exec(url);
  if (!match) throw new Error("database.url must be a postgres:// or postgresql:// URL");
  const [, scheme, userinfo, hostList, rest] = match as unknown as [string, string, string, string, string];
  const { path, query } = splitQuery(rest);
  const params = new URLSearchParams(query);
  const attrs = params.get("target_session_attrs");
  if (attrs !== null && !ACCEPTED_SESSION_ATTRS.has(attrs)) {
    throw new Error(
      `database.url: target_session_attrs=${attrs} would let Storage use a standby, whose reads may lag; use read-write (or leave it out: Storage always uses the primary)`,
    );
  }
  // node-postgres does not know the parameter; Storage applies it itself.
  params.delete("target_session_attrs");
  const remaining = params.toString();
  const tail = path + (remaining ? `?${remaining}` : "");
  const hosts = hostList === "" ? [""] : hostList.split(",");
  if (hosts.length > 1 && hosts.some((h) => h === "")) {
    throw new Error("database.url names an empty host in its list of hosts: write host:port,host:port with no empty entry");
  }
  const seen = new Set<string>();
  return hosts.map((host) => {
    if (seen.has(host)) throw new Error(`database.url names the host ${host} twice`);
    seen.add(host);
    return { label: host === "" ? "the default host" : host, url: `${scheme}${userinfo}${host}${tail}` };
  });
}

function splitQuery(rest: string): { path: string; query: string } {
  const q = rest.indexOf("?");
  if (q < 0) return { path: rest, query: "" };
  const hash = rest.indexOf("#", q);
  return { path: rest.slice(0, q), query: rest.slice(q + 1, hash < 0 ? undefined : hash) };
}

/** A connection's server is a standby (`pg_is_in_recovery()`), so not the primary. */
export class NotPrimaryError extends Error {}

/** No member of the database is a primary that answers; the message names each member and why. */
export class NoPrimaryError extends Error {}

/** The pool of one member, as PrimaryPools hands it out. */
export interface MemberPool {
  readonly host: DatabaseHost;
  readonly pool: pg.Pool;
}

/**
 * One pg pool per member of the database `url` names, and which of them is the primary.
 * Every new connection is checked (`pg_is_in_recovery()`) before its first use, then
 * given to `onConnect` (a caller's own setup); a standby's is refused with NotPrimaryError.
 *
 * Asked for the primary, it answers the last one found, or, after `suspect`, asks the
 * members at once for a connection and takes the first that is the primary. The member
 * that was just suspected is asked only if no other is the primary: an old primary cut
 * off from its cluster still says it is one, and the new primary is the one to find
 * (docs/availability.md). Pools of other members are kept, idle: a member that is not the
 * primary may be after the next failover.
 */
export class PrimaryPools {
  readonly #members: readonly MemberPool[];
  #current: MemberPool | undefined;
  #suspected: pg.Pool | undefined;
  #finding: Promise<MemberPool> | undefined;

  /**
   * `config`: each member's pool settings (its connectionString is set here); `onConnect`
   * runs on each new connection after the primary check. Throws for a URL that
   * databaseHosts refuses.
   */
  constructor(url: string, config: Omit<pg.PoolConfig, "connectionString" | "onConnect">, onConnect?: (client: pg.ClientBase) => Promise<void>) {
    this.#members = databaseHosts(url).map((host) => {
      const pool = new pg.Pool({
        ...config,
        connectionString: host.url,
        onConnect: async (client: pg.ClientBase) => {
          const { rows } = await client.query<{ standby: boolean }>("SELECT pg_is_in_recovery() AS standby");
          if (rows[0]?.standby !== false) throw new NotPrimaryError(`${host.label} is a standby, not the primary`);
          await onConnect?.(client);
        },
      });
      // An idle pooled connection that dies (server restart, failover, network) emits
      // 'error' on the pool, and an EventEmitter 'error' with no listener crashes the
      // process. The pool has already dropped that connection; the next statement opens
      // a new one, or fails, so there is nothing more to do here.
      pool.on("error", () => {});
      return { host, pool };
    });
  }

  /** The primary's pool: the last one found, or the one found now. Rejects with NoPrimaryError. */
  async primary(): Promise<MemberPool> {
    return this.#current ?? (await this.#find());
  }

  /** A statement on `pool` failed as unavailable: look for the primary before the next one. */
  suspect(pool: pg.Pool): void {
    if (this.#current?.pool !== pool) return;
    this.#current = undefined;
    this.#suspected = pool;
  }

  async close(): Promise<void> {
    await Promise.all(this.#members.map(({ pool }) => pool.end().catch(() => {})));
  }

  #find(): Promise<MemberPool> {
    this.#finding ??= this.#ask().finally(() => (this.#finding = undefined));
    return this.#finding;
  }

  async #ask(): Promise<MemberPool> {
    if (this.#members.length === 1) {
      // One host: its pool checks each connection itself; a first statement finds out.
      return (this.#current = this.#members[0]!);
    }
    const others = this.#members.filter((m) => m.pool !== this.#suspected);
    const last = this.#members.filter((m) => m.pool === this.#suspected);
    const refusals: string[] = [];
    for (const round of [others, last]) {
      if (round.length === 0) continue;
      try {
        const found = await Promise.any(round.map(async (member) => {
          try {
            (await member.pool.connect()).release();
            return member;
          } catch (error) {
            refusals.push(`${member.host.label}: ${whyNotPrimary(error)}`);
            throw error;
          }
        }));
        this.#suspected = undefined;
        return (this.#current = found);
      } catch {
        // None of this round is the primary; the next round, or the error below.
      }
    }
    throw new NoPrimaryError(`no member is a primary that answers (${refusals.join("; ")})`);
  }
}

/**
 * Why a member did not serve as the primary, in words safe to log: a connection's
 * failure names no statement parameter, but only its code or pg's own message is kept.
 */
function whyNotPrimary(error: unknown): string {
  if (error instanceof NotPrimaryError) return "a standby";
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string") return `unreachable (${code})`;
  return error instanceof Error ? error.message : "unreachable";
}
