// A raw HTTP/1.1 client, for requests no browser or fetch would send: any method and
// request target, bytes that are not UTF-8, lying or missing lengths, oversized bodies.
// One connection per request ("Connection: close"); the answer is read as it arrives,
// so a server that answers before reading the whole body is still heard.

import net from "node:net";

export interface RawHttpRequest {
  readonly method: string;
  /** The request target exactly as sent: "/authorize?x=%zz", "*", "http://[", … */
  readonly target: string | Buffer;
  readonly headers?: ReadonlyArray<readonly [string, string | Buffer]>;
  readonly body?: Buffer;
  /** Content-Length to declare; default the body's length (none without a body). "chunked" sends it chunked. */
  readonly length?: number | "chunked" | "none";
}

export interface RawHttpAnswer {
  readonly status: number;
  /** Header names in lower case; repeated headers joined with "\n". */
  readonly headers: Record<string, string>;
  readonly body: Buffer;
  readonly text: string;
}

export class NoAnswerError extends Error {
  override name = "NoAnswerError";
}

export function rawHttp(port: number, request: RawHttpRequest, timeoutMs: number): Promise<RawHttpAnswer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let settled = false;
    /** "answered": the whole answer is in; "closed": the server closed (the body may run to the close). */
    const finish = (how: "answered" | "closed" | "timeout") => {
      if (settled) return;
      const answer = parse(Buffer.concat(chunks));
      if (how === "timeout" || !answer || (how === "answered" && !answer.complete)) {
        if (how === "answered") return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        reject(new NoAnswerError(how === "timeout" ? `no complete answer within ${timeoutMs} ms` : "the connection closed without an answer"));
        return;
      }
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(answer.answer);
    };
    const timer = setTimeout(() => finish("timeout"), timeoutMs);
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      finish("answered");
    });
    // A reset after the answer arrived is the server closing a request it did not read.
    socket.on("error", () => {});
    socket.on("close", () => finish("closed"));
    socket.on("connect", () => {
      const body = request.body ?? Buffer.alloc(0);
      const head: Buffer[] = [Buffer.from(`${request.method} `), Buffer.from(request.target), Buffer.from(` HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n`)];
      for (const [name, value] of request.headers ?? []) head.push(Buffer.from(`${name}: `), Buffer.from(value), Buffer.from("\r\n"));
      const length = request.length ?? (request.body ? body.length : "none");
      if (length === "chunked") head.push(Buffer.from("Transfer-Encoding: chunked\r\n"));
      else if (length !== "none") head.push(Buffer.from(`Content-Length: ${length}\r\n`));
      head.push(Buffer.from("\r\n"));
      socket.write(Buffer.concat(head));
      if (length === "chunked") {
        for (let at = 0; at < body.length; at += 64 * 1024) {
          const part = body.subarray(at, at + 64 * 1024);
          socket.write(Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from("\r\n")]));
        }
        socket.write("0\r\n\r\n");
      } else if (body.length > 0) {
        socket.write(body);
      }
    });
  });
}

/** The answer in `bytes`, and whether all of its body has arrived. */
function parse(bytes: Buffer): { answer: RawHttpAnswer; complete: boolean } | undefined {
  const end = bytes.indexOf("\r\n\r\n");
  if (end < 0) return undefined;
  const lines = bytes.subarray(0, end).toString("latin1").split("\r\n");
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "");
  if (!status) return undefined;
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}\n${value}`;
  }
  let rest = bytes.subarray(end + 4);
  let complete: boolean;
  if (headers["transfer-encoding"]?.toLowerCase().includes("chunked")) {
    const decoded: Buffer[] = [];
    complete = false;
    for (;;) {
      const lineEnd = rest.indexOf("\r\n");
      if (lineEnd < 0) break;
      const size = Number.parseInt(rest.subarray(0, lineEnd).toString("latin1"), 16);
      if (Number.isNaN(size)) break;
      if (size === 0) {
        complete = true;
        break;
      }
      if (rest.length < lineEnd + 2 + size + 2) break;
      decoded.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
      rest = rest.subarray(lineEnd + 2 + size + 2);
    }
    rest = Buffer.concat(decoded);
  } else if (headers["content-length"] !== undefined) {
    const length = Number(headers["content-length"]);
    complete = rest.length >= length;
    rest = rest.subarray(0, length);
  } else {
    complete = Number(status[1]) === 304 || Number(status[1]) === 204 || Number(status[1]) < 200;
  }
  return { answer: { status: Number(status[1]), headers, body: rest, text: rest.toString("utf8") }, complete };
}
