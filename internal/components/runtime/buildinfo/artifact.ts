// Whether this process runs from a built artifact, and what the build embedded in it.
//
// `npm run build` (internal/ops/build/build.ts) defines __HELLO_ARTIFACT__ in each
// component's bundle; in source mode (tsx) the identifier is never defined. Only facts
// that follow from the source go in here (component, package version, pinned Node):
// never a time, a path or the git revision, or two builds of one source would differ.

import type { Component } from "../../../protocol/identity.js";

export interface ArtifactFacts {
  readonly component: Component;
  /** package.json's version. */
  readonly version: string;
  /** The Node version the artifact is pinned to (.node-version), without the "v". */
  readonly node: string;
}

declare const __HELLO_ARTIFACT__: ArtifactFacts | undefined;

/** Undefined when running from source. */
export const ARTIFACT: ArtifactFacts | undefined = typeof __HELLO_ARTIFACT__ === "undefined" ? undefined : __HELLO_ARTIFACT__;

/**
 * An artifact runs only on the Node version it was built for: the runtime is part of
 * what a digest vouches for (docs/design.md §8), and a custodian who wants another Node
 * changes .node-version, which changes every digest for all to see.
 */
export function pinnedNodeProblem(facts: ArtifactFacts | undefined = ARTIFACT, running = process.version): string | undefined {
  if (!facts || running === `v${facts.node}`) return undefined;
  return (
    `this ${facts.component} artifact is pinned to Node v${facts.node} and this is Node ${running}: ` +
    `run it with Node v${facts.node} (the repository's .node-version), or change .node-version and rebuild (which changes the digest)`
  );
}
