// What a component reports through hello.common.v1.BuildInfoService. Self-reported,
// so never proof on its own: `hello verify` rebuilds from source and reads the
// deployed artifact itself.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import type { ConnectRouter } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { BuildInfoSchema, BuildInfoService, type BuildInfo } from "../gen/hello/common/v1/build_info_pb.js";
import type { Component } from "../../mesh/identity.js";

const packageJson = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  version: string;
};

function sourceRevision(): string {
  if (process.env.HELLO_SOURCE_REVISION) return process.env.HELLO_SOURCE_REVISION;
  try {
    return execFileSync("git", ["rev-parse", "HEAD"], {
      cwd: new URL("../..", import.meta.url),
      stdio: ["ignore", "pipe", "ignore"],
    })
      .toString()
      .trim();
  } catch {
    return "";
  }
}

export function currentBuildInfo(component: Component): BuildInfo {
  return create(BuildInfoSchema, {
    component,
    version: packageJson.version,
    sourceRevision: sourceRevision(),
    // Running from source (development): there is no artifact to digest yet.
    artifactDigest: process.env.HELLO_ARTIFACT_DIGEST ?? "",
    nodeVersion: process.version,
  });
}

export function buildInfoRoutes(info: BuildInfo) {
  return (router: ConnectRouter) => {
    router.service(BuildInfoService, { getBuildInfo: () => ({ buildInfo: info }) });
  };
}
