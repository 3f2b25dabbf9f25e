// The cost of one empty mesh call through the whole stack (mutual TLS, HTTP/2, Connect,
// the authorization, tracing and metrics interceptors), both ends in this process: CPU
// µs per call and wall µs per call, one at a time and 32 at a time.
//
//   npm run bench:calls -- [--protocol=connect|grpc|grpc-web] [--tracing]
//
// --tracing registers the OpenTelemetry provider as every component does.
import { create } from "@bufbuild/protobuf";
import { COMPONENTS } from "../mesh/identity.js";
import { TrustStore } from "../mesh/trust.js";
import { meshClient, startEchoMesh } from "../mesh/testing/echo-mesh.js";
import { makeTestPki } from "../internal/testing/test-pki.js";
import { TokenService } from "../internal/gen/hello/token/v1/token_service_pb.js";
import { initTracing } from "../internal/telemetry/tracing.js";

if (process.argv.includes("--tracing")) initTracing("bench");
const pki = await makeTestPki();
const trust = new TrustStore(new Map(COMPONENTS.map((c) => [c, pki.ca(c).certPem])));
const mesh = await startEchoMesh((c) => pki.leaf(c), trust);
const protocol = (process.argv.find((a) => a.startsWith("--protocol="))?.slice(11) ?? "grpc") as "grpc" | "connect" | "grpc-web";
const client = meshClient(TokenService, "token", mesh.servers.token.url, pki.leaf("orchestration"), trust, protocol);
const req = create(TokenService.method.createSession.input, {});

async function run(n: number, c: number) {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let left = n;
  await Promise.all(Array.from({ length: c }, async () => {
    while (left-- > 0) { await client.createSession(req); mesh.calls.length = 0; }
  }));
  const cpu = process.cpuUsage(cpu0);
  return { usPerCall: (cpu.user + cpu.system) / n, wallUs: ((performance.now() - t0) * 1000) / n };
}
await run(3000, 8);
for (const c of [1, 32]) console.log(`c=${c}`, await run(5000, c));
await mesh.close();
process.exit(0);
