// What a component reports through hello.common.v1.BuildInfoService. Self-reported,
// so never proof on its own: `hello verify` rebuilds from source and reads the
// deployed artifact itself (docs/builds.md).

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { ConnectRouter } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { BuildInfoSchema, BuildInfoService, type BuildInfo } from "../../../gen/hello/common/v1/build_info_pb.js";
import type { Component } from "../../../protocol/identity.js";
import { OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION } from "../../../protocol/versions.js";
import { ARTIFACT } from "./artifact.js";
import { artifactDigest } from "./artifact-digest.js";
import { readBuildRecord } from "./build-record.js";

/** The artifact this process was started from, as it finds it on disk at start. */
export interface RunningArtifact {
  /** The digest of the directory holding the file this code was loaded from. */
  readonly digest: string;
  readonly sourceRevision: string;
}

/** Undefined when running from source. */
export async function describeRunningArtifact(): Promise<RunningArtifact | undefined> {
  if (!ARTIFACT) return undefined;
  // In an artifact every module is the one bundled file, so this is that file.
  const dir = path.dirname(fileURLToPath(import.meta.url));
  const digest = await artifactDigest(dir);
  return {
    digest,
    sourceRevision: process.env.HELLO_SOURCE_REVISION ?? readBuildRecord(dir, digest)?.sourceRevision ?? "",
  };
}

function sourceVersion(): string {
  return (JSON.parse(readFileSync(new URL("../../../../package.json", import.meta.url), "utf8")) as { version: string }).version;
}

function sourceRevision(): string {
  if (process.env.HELLO_SOURCE_REVISION) return process.env.HELLO_SOURCE_REVISION;
  try {
    return execFileSync("git", ["rev-parse", "HEAD"], {
      cwd: new URL("../../../..", import.meta.url),
      stdio: ["ignore", "pipe", "ignore"],
    })
      .toString()
      .trim();
  } catch {
    return "";
  }
}

export function currentBuildInfo(component: Component, artifact?: RunningArtifact): BuildInfo {
  return create(BuildInfoSchema, {
    component,
    version: ARTIFACT?.version ?? sourceVersion(),
    sourceRevision: artifact ? artifact.sourceRevision : sourceRevision(),
    // Running from source (development and tests): there is no artifact to digest.
    artifactDigest: artifact?.digest ?? "",
    nodeVersion: process.version,
    protocolVersion: PROTOCOL_VERSION,
    oldestProtocolVersion: OLDEST_PROTOCOL_VERSION,
  });
}

export function buildInfoRoutes(info: BuildInfo) {
  return (router: ConnectRouter) => {
    router.service(BuildInfoService, { getBuildInfo: () => ({ buildInfo: info }) });
  };
}
