// Which redirect URI a client may use (RFC 6749 §3.1.2.3, RFC 8252 §7.3, §8.3).
//
// A web client's redirect URI matches one it registered exactly, character for
// character. A native client (application_type "native") that registered a loopback
// URI, `http://127.0.0.1/...` or `http://[::1]/...`, may use it on any port: the port
// is the one its loopback server got from the operating system at that moment. Only
// the port may differ: the URI without its port must equal the registered one
// character for character (no other spelling of the address, no dot segments, nothing
// a URL parser would normalise away). `localhost` is never a loopback redirect: a name
// can resolve elsewhere, and a listener on it may not be the client's.

/** A loopback URI as written: the address, an optional port, then printable characters only. */
const LOOPBACK = /^http:\/\/(127\.0\.0\.1|\[::1\])(?::([0-9]{1,5}))?([/?][\x21-\x7e]*)?$/;

/** `uri` without its port, if it is a loopback URI with a port in range; undefined otherwise. */
function withoutPort(uri: string): string | undefined {
  const match = LOOPBACK.exec(uri);
  if (!match) return undefined;
  const port = match[2];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535 || port.startsWith("0"))) return undefined;
  return `http://${match[1]}${match[3] ?? ""}`;
}

/** Whether `given` may be used by a client that registered `registered`. */
export function redirectUriMatches(registered: readonly string[], given: string, native: boolean): boolean {
  if (registered.includes(given)) return true;
  if (!native) return false;
  const bare = withoutPort(given);
  // The registered URI is compared as written: one registered with a port matches only itself.
  return bare !== undefined && registered.some((entry) => LOOPBACK.test(entry) && entry === bare);
}
