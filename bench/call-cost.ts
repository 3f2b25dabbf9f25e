// The cost of one empty mesh call through the whole stack (mutual TLS, HTTP/2, Connect,
// the authorization, tracing and metrics interceptors): CPU µs per call (both ends) and
// wall µs per call, one at a time and 32 at a time.
//
//   npm run bench:calls -- [--protocol=connect|grpc|grpc-web] [--tracing] [--split]
//
// --tracing registers the OpenTelemetry provider as every component does. --split runs
// the server in its own process, as in the mesh (its CPU is read from /proc).
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { COMPONENTS } from "../internal/protocol/identity.js";
import { TrustStore } from "../mesh/trust.js";
import { meshClient, startEchoMesh } from "../test/support/echo-mesh.js";
import { makeTestPki } from "../test/support/test-pki.js";
import { TokenService } from "../internal/gen/hello/token/v1/token_service_pb.js";
import { initTracing } from "../internal/observability/tracing.js";

const flag = (name: string) => process.argv.includes(name);
const option = (name: string) => process.argv.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
if (flag("--tracing")) initTracing("bench");

async function meshFrom(dir: string) {
  const pki = await makeTestPki(dir);
  const trust = new TrustStore(new Map(COMPONENTS.map((c) => [c, pki.ca(c).certPem])));
  return { pki, trust };
}

if (option("--serve")) {
  // The server half of --split: an echo mesh, its Token URL on stdout, until stdin closes.
  const { pki, trust } = await meshFrom(option("--serve")!);
  const mesh = await startEchoMesh((c) => pki.leaf(c), trust);
  setInterval(() => (mesh.calls.length = 0), 100);
  process.stdout.write(`${mesh.servers.token.url}\n`);
  process.stdin.resume();
  process.stdin.on("end", () => process.exit(0));
} else {
  const dir = mkdtempSync(path.join(os.tmpdir(), "hello-call-cost-"));
  const { pki, trust } = await meshFrom(dir);
  let url: string;
  let serverCpuUs = () => 0;
  let stop = async () => {};
  if (flag("--split")) {
    const child = spawn(process.execPath, ["--import", "tsx", ...process.argv.slice(1).filter((a) => a !== "--split"), `--serve=${dir}`], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    url = await new Promise<string>((resolve) => child.stdout!.once("data", (d: Buffer) => resolve(d.toString().trim())));
    const ticks = 100; // USER_HZ
    serverCpuUs = () => {
      const fields = readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      return ((Number(fields[11]) + Number(fields[12])) * 1e6) / ticks;
    };
    stop = async () => void child.stdin!.end();
  } else {
    const mesh = await startEchoMesh((c) => pki.leaf(c), trust);
    setInterval(() => (mesh.calls.length = 0), 100).unref();
    url = mesh.servers.token.url;
    stop = () => mesh.close();
  }
  const protocol = (option("--protocol") ?? "connect") as "grpc" | "connect" | "grpc-web";
  const client = meshClient(TokenService, "token", url, pki.leaf("orchestration"), trust, protocol);
  const req = create(TokenService.method.createSession.input, {});

  const run = async (n: number, c: number) => {
    const cpu0 = process.cpuUsage();
    const server0 = serverCpuUs();
    const t0 = performance.now();
    let left = n;
    await Promise.all(Array.from({ length: c }, async () => {
      while (left-- > 0) await client.createSession(req);
    }));
    const cpu = process.cpuUsage(cpu0);
    const wall = (performance.now() - t0) * 1000;
    return { cpuUsPerCall: Math.round((cpu.user + cpu.system + serverCpuUs() - server0) / n), wallUsPerCall: Math.round(wall / n) };
  };
  await run(3000, 8);
  console.log(`protocol ${protocol}${flag("--tracing") ? ", tracing" : ""}${flag("--split") ? ", server in its own process" : ""}`);
  for (const c of [1, 32]) console.log(`  c=${c}`, await run(5000, c));
  await stop();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
