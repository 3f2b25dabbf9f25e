// Does each component run what this checkout builds (docs/design.md §8)? For every component:
//
//   expected  the digest of a fresh build of the checkout, in a temporary directory;
//   deployed  the digest of the artifact the deployment runs, read from disk by the
//             verifier, after confirming in /proc that the process runs that file, with
//             no Node options or NODE_OPTIONS ahead of it, on the pinned Node, and that
//             it is the process listening on the component's mesh address;
//   reported  what the component's BuildInfo says, asked over the mesh with an
//             operator's certificate (any custodian's operator may ask any component).
//
// The verdict is ok only when all three agree. The reported digest is self-reported,
// so it never vouches for anything alone: it catches a component that is not running
// the file the deployment names (or whose file changed on disk since it started).

import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createClient } from "@connectrpc/connect";
import { COMPONENTS, type Component } from "../../protocol/identity.js";
import { readBundles, trustFromBundles } from "../../../mesh/bundle.js";
import { createMeshTransport } from "../../../mesh/client.js";
import { BuildInfoService, type BuildInfo } from "../../gen/hello/common/v1/build_info_pb.js";
import { operatorCredentials } from "../pki/layout.js";
import { artifactDigest } from "../../components/runtime/buildinfo/artifact-digest.js";
import { buildComponents, pinnedNodeVersion } from "../build/build.js";
import type { DeploymentRecord } from "../../dev/deployment-record.js";
import { inspectProcess } from "./process.js";

export interface BuildRow {
  readonly component: Component;
  readonly expected: string;
  /** "" when it could not be read (see problems). */
  readonly deployed: string;
  /** "" when the component did not answer or reports no artifact (see problems). */
  readonly reported: string;
  readonly problems: readonly string[];
}

export interface BuildsReport {
  readonly node: string;
  readonly rows: readonly BuildRow[];
}

export interface CheckBuildsOptions {
  /** The checkout to rebuild. */
  readonly sourceDir: string;
  readonly deployment: DeploymentRecord;
  /** Whose operator certificate asks BuildInfo (from the deployment's certificates). */
  readonly operator: Component;
}

export async function checkBuilds(options: CheckBuildsOptions): Promise<BuildsReport> {
  const node = pinnedNodeVersion(options.sourceDir);
  const scratch = await mkdtemp(path.join(os.tmpdir(), "hello-verify-"));
  let expected: Map<Component, string>;
  try {
    const built = await buildComponents({ sourceDir: options.sourceDir, outDir: scratch });
    expected = new Map(built.map((a) => [a.component, a.digest]));
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }

  const { deployment } = options;
  const credentials = operatorCredentials(deployment.certs, options.operator);
  const trust = trustFromBundles(readBundles(deployment.bundles, COMPONENTS));

  const rows = await Promise.all(
    COMPONENTS.map(async (component): Promise<BuildRow> => {
      const problems: string[] = [];
      const entry = deployment.components[component];
      const want = expected.get(component)!;

      let deployed = "";
      const proc = await inspectProcess(entry.pid);
      if (!entry.artifact) {
        problems.push(`it runs from source (process ${entry.pid}), not from a built artifact: there is no artifact to verify`);
      } else if (!proc) {
        problems.push(`process ${entry.pid}, which the deployment says runs it, is not running`);
      } else if (proc.script !== path.resolve(entry.artifact)) {
        problems.push(`process ${entry.pid} does not run ${entry.artifact}: its command line is ${JSON.stringify(proc.argv.join(" "))}`);
      } else {
        // The process the record names must be the one answering on the mesh, or an idle
        // honest copy could stand in for a modified build that serves (and lies in BuildInfo).
        const port = Number(new URL(entry.mesh).port);
        if (!proc.listening) problems.push(`cannot read /proc/${entry.pid}/fd to confirm that process ${entry.pid} is the one listening on ${entry.mesh}`);
        else if (!proc.listening.has(port)) problems.push(`process ${entry.pid} does not listen on ${entry.mesh}: another process answers there`);
        if (proc.nodeOptions) problems.push(`process ${entry.pid} has NODE_OPTIONS set, which can load code from outside the artifact`);
        if (proc.nodeVersion !== `v${node}`) problems.push(`process ${entry.pid} runs on Node ${proc.nodeVersion ?? "(unknown)"}, not the pinned v${node}`);
        try {
          deployed = await artifactDigest(path.dirname(entry.artifact));
        } catch (error) {
          problems.push(`cannot read the deployed artifact: ${(error as Error).message}`);
        }
        if (deployed && deployed !== want) {
          problems.push(`the deployed artifact ${path.dirname(entry.artifact)} (${deployed}) is not what this checkout builds (${want})`);
        }
      }

      let reported = "";
      let info: BuildInfo | undefined;
      try {
        const client = createClient(
          BuildInfoService,
          createMeshTransport({ target: component, baseUrl: entry.mesh, credentials, trust, defaultTimeoutMs: 10_000 }),
        );
        info = (await client.getBuildInfo({})).buildInfo;
      } catch (error) {
        problems.push(`BuildInfo at ${entry.mesh} did not answer: ${(error as Error).message}`);
      }
      if (info) {
        reported = info.artifactDigest;
        if (info.component !== component) problems.push(`BuildInfo at ${entry.mesh} says it is ${info.component}`);
        if (!reported) problems.push("BuildInfo reports no artifact digest: the component says it runs from source");
        else if (deployed && reported !== deployed) problems.push(`BuildInfo reports ${reported}, not the deployed artifact's digest`);
        if (info.nodeVersion !== `v${node}`) problems.push(`BuildInfo reports Node ${info.nodeVersion}, not the pinned v${node}`);
      }
      return { component, expected: want, deployed, reported, problems };
    }),
  );
  return { node, rows };
}

/** The table `hello verify` prints: digests shortened to 16 hex digits (the problems name them in full). */
export function formatBuildsTable(report: BuildsReport): string[] {
  const short = (digest: string) => (digest ? digest.slice(0, 16) : "-");
  const line = (cells: string[]) => cells.map((c, i) => (i < cells.length - 1 ? c.padEnd(i === 0 ? 15 : 19) : c)).join("").trimEnd();
  return [
    line(["component", "expected", "deployed", "reported", "verdict"]),
    ...report.rows.map((r) => line([r.component, short(r.expected), short(r.deployed), short(r.reported), r.problems.length === 0 ? "ok" : "FAIL"])),
  ];
}
