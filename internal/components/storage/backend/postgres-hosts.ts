// The hosts of a PostgreSQL URL. A replicated database (a Patroni cluster, docs/availability.md)
// is named the way libpq names one: every member in the host part, and
// `target_session_attrs=read-write`, so that the client finds whichever member is the
// primary now:
//
//   postgresql://postgres@10.0.1.1:5432,10.0.2.1:5432,10.0.3.1:5432/records?target_session_attrs=read-write
//
// node-postgres reads one host only, so Storage splits the URL here into one URL per
// member and finds the primary itself (postgres-store.ts). Storage only ever uses the
// primary: a standby may lag, and a read there could answer "no record" for a record
// that exists (docs/design.md §7), so any target_session_attrs but read-write or primary
// is refused as a configuration mistake.

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
