// The benchmark's variant (a): the same protocol with all four components in one
// process, their real handlers wired with Connect's in-memory transport (messages are
// still serialized and every token still signed, verified and sealed; only TLS,
// HTTP/2, the mesh's authorization and tracing interceptors, and the processes are
// gone), driven through the same front door over HTTP. It runs in its own process so
// its CPU and memory are counted apart from the driver's.
//
// It is built from the handlers (test/support/in-process-mesh.ts, the bad-input rig's
// assembly too), not through internal/serve, so that it stays what it measures: the
// protocol alone. Keys and configuration are the mesh run's own (the deployment's
// derived files); the database is another one on the same server.
//
//   node --import tsx bench/in-process.ts --configs DIR --port N --issuer URL --database URL
// prints one JSON line {"url"} when the front door listens.

import path from "node:path";
import { parseArgs } from "node:util";
import { readBundles } from "../mesh/bundle.js";
import { COMPONENTS } from "../internal/protocol/identity.js";
import { loadComponentConfig } from "../internal/config/component-config.js";
import {
  STORAGE_KEYS,
  TOKEN_KEYS,
  loadKeyring,
  loadLookupKey,
  loadSecretKey,
  loadSigningKeys,
} from "../internal/protocol/key-files.js";
import { VerificationKeys } from "../internal/protocol/signing-keys.js";
import { openRecordStore } from "../internal/components/storage/backend/open-store.js";
import { type MeshKeys, inMemoryJoins, startInProcessMesh } from "../test/support/in-process-mesh.js";

const { values } = parseArgs({
  options: {
    configs: { type: "string" },
    port: { type: "string" },
    issuer: { type: "string" },
    database: { type: "string" },
  },
});
if (!values.configs || !values.port || !values.issuer || !values.database) {
  process.stderr.write("usage: in-process.ts --configs DIR --port N --issuer URL --database URL\n");
  process.exit(2);
}
const file = (c: string) => path.join(values.configs!, `${c}.json`);
const orchestration = loadComponentConfig(file("orchestration"), "orchestration");
const token = loadComponentConfig(file("token"), "token");
const encryption = loadComponentConfig(file("encryption"), "encryption");
const storage = loadComponentConfig(file("storage"), "storage");
const bundles = readBundles(token.bundles, COMPONENTS);

const keys: MeshKeys = {
  token: loadSigningKeys("token", token.keys.signing, TOKEN_KEYS),
  storage: loadSigningKeys("storage", storage.keys.signing, STORAGE_KEYS),
  tokenPublished: new VerificationKeys(bundles.get("token")!.jwks.keys),
  storagePublished: new VerificationKeys(bundles.get("storage")!.jwks.keys),
  keyring: loadKeyring("encryption", encryption.keys.keyring),
  // The deployment gives Token and Orchestration the same lookup key; Orchestration's file is read.
  lookup: loadLookupKey("orchestration", orchestration.keys.lookup),
  cookie: loadSecretKey("orchestration", orchestration.keys.cookie, "cookie key"),
};
const store = await openRecordStore({ url: values.database });
const mesh = await startInProcessMesh(
  { issuer: values.issuer, port: Number(values.port), keys, store, orchestration, token },
  inMemoryJoins(),
);
process.stdout.write(`${JSON.stringify({ url: mesh.url })}\n`);
process.on("SIGTERM", () => {
  void mesh.close().then(() => store.close()).then(() => process.exit(0));
});
