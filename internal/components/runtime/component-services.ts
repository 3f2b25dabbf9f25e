// What every component's wiring provides, and what it is given. Each component's own
// wiring is its own module under `components/` (orchestration.ts, token.ts,
// encryption.ts, storage.ts), imported only by that component's entry point
// (`cmd/<component>/main.ts`), so a component's artifact holds that component's code
// and no other's (docs/builds.md). `hello serve <component>` picks the module at run
// time (cmd/hello/serve.ts).

import type { ConnectRouter } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import type { Component } from "../../protocol/identity.js";
import type { Bundle } from "../../../mesh/bundle.js";
import type { ConfigFor } from "../../config/component-config.js";
import type { MeshCredentials } from "../../../mesh/server.js";
import { VerificationKeys } from "../../protocol/signing-keys.js";
import type { ErrorMapper } from "../../protocol/errors.js";
import type { Logger } from "../../observability/log/logger.js";
import { type KeySpec, watchSigningKeys } from "../../protocol/key-files.js";
import type { PeerHealth } from "./peer-health.js";

export interface ComponentService {
  /** The services this component serves on the mesh (beyond health/reflection/BuildInfo). */
  readonly descriptors: readonly DescService[];
  routes(router: ConnectRouter): void;
  close(): Promise<void>;
  /** The component's own errors, as codes on the wire (the protocol's are mapped for every component). */
  readonly mapError?: ErrorMapper;
  /**
   * When the component serves only while its peers do: its health ("" and `services`)
   * follows `peers` instead of turning SERVING once it listens. Absent: SERVING then.
   */
  readonly readiness?: { readonly peers: PeerHealth; readonly services: readonly string[] };
}

export interface ServiceDeps {
  readonly credentials: MeshCredentials;
  /** The peers' bundles as last loaded from disk. */
  readonly bundles: () => ReadonlyMap<Component, Bundle>;
  readonly log: Logger;
}

/** Builds one component's service from that component's own configuration. */
export type ServiceFactory<C extends Component> = (config: ConfigFor<C>, deps: ServiceDeps) => Promise<ComponentService>;

/** A peer's published public keys, rebuilt only when its bundle changes. */
export function peerKeys(bundles: () => ReadonlyMap<Component, Bundle>, peer: Component): () => VerificationKeys {
  const cache = new WeakMap<Bundle, VerificationKeys>();
  return () => {
    const bundle = bundles().get(peer)!;
    let keys = cache.get(bundle);
    if (!keys) cache.set(bundle, (keys = new VerificationKeys(bundle.jwks.keys)));
    return keys;
  };
}

/**
 * A signing component's keys (Token's, Storage's), reloaded when their file changes
 * (`hello keys`, docs/key-rotation.md), each reload said in the component's log.
 */
export function watchedSigningKeys(component: Component, file: string, required: readonly KeySpec[], log: Logger) {
  return watchSigningKeys(component, file, required, (error) =>
    error
      ? log.error({ err: error }, "the signing key file changed but does not load; keeping the previous keys")
      : log.info("reloaded the signing keys"),
  );
}

/**
 * The rest of a wiring's start, with `opened` already open: if the rest fails, `opened`
 * is closed first, so that nothing it started (a file watcher) keeps a process that
 * failed to start alive.
 */
export async function closingOnFailure<T>(opened: { close(): void }, rest: () => Promise<T>): Promise<T> {
  try {
    return await rest();
  } catch (error) {
    opened.close();
    throw error;
  }
}
