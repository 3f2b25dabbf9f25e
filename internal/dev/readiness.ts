// Readiness as an operator sees it: grpc.health.v1 over the mesh, with the component's
// own operator certificate (only its own custodian's operator may call Health); and as
// a load balancer sees the front door: GET /healthz/ready.

import { createClient } from "@connectrpc/connect";
import type { Component } from "../protocol/identity.js";
import { COMPONENTS } from "../protocol/identity.js";
import { readBundles, trustFromBundles } from "../../mesh/bundle.js";
import { createMeshTransport } from "../../mesh/client.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { operatorCredentials } from "../ops/pki/layout.js";

export async function waitUntilServing(
  component: Component,
  url: string,
  certsDir: string,
  bundlesDir: string,
  timeoutMs = 30_000,
  signal?: AbortSignal,
): Promise<void> {
  const transport = createMeshTransport({
    target: component,
    baseUrl: url,
    credentials: operatorCredentials(certsDir, component),
    trust: trustFromBundles(readBundles(bundlesDir, COMPONENTS)),
    defaultTimeoutMs: 2_000,
  });
  const health = createClient(Health, transport);
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  try {
    while (Date.now() < deadline) {
      if (signal?.aborted) throw new Error("stopped while waiting");
      try {
        const { status } = await health.check({ service: "" }, signal ? { signal } : {});
        if (status === ServingStatus.SERVING) return;
        last = new Error(`health is ${ServingStatus[status]}`);
      } catch (error) {
        last = error;
      }
      await new Promise((r) => setTimeout(r, 150));
    }
    throw new Error(`not serving after ${timeoutMs} ms (${(last as Error)?.message ?? "no answer"})`);
  } finally {
    // Whatever holds the port may accept and never answer: no attempt outlives the wait.
    transport.close();
  }
}

/**
 * Waits until the front door's /healthz/ready answers 200: Token and Encryption (and,
 * behind it, Storage) serve, so a login would succeed. `origin` is where it listens.
 */
export async function waitUntilFrontDoorReady(origin: string, timeoutMs = 60_000, signal?: AbortSignal): Promise<void> {
  const url = new URL("/healthz/ready", origin);
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    if (signal?.aborted) throw new Error("stopped while waiting");
    try {
      const response = await fetch(url, { signal: AbortSignal.any([AbortSignal.timeout(5_000), ...(signal ? [signal] : [])]) });
      if (response.status === 200) return;
      last = `${response.status} ${await response.text()}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the front door was not ready after ${timeoutMs} ms (${url}: ${last})`);
}
