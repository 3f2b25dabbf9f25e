// The benchmark's variant (a): the same protocol with all four components in one
// process, their real handlers wired with Connect's in-memory transport (messages are
// still serialized and every token still signed, verified and sealed; only TLS,
// HTTP/2, the mesh's authorization and tracing interceptors, and the processes are
// gone), driven through the same front door over HTTP. It runs in its own process so
// its CPU and memory are counted apart from the driver's.
//
// It is built here from the handlers, not through internal/serve, so that it stays
// what it measures: the protocol alone. Keys and configuration are the mesh run's own
// (the deployment's derived files); the database is another one on the same server.
//
//   node --import tsx bench/in-process.ts --configs DIR --port N --issuer URL --database URL
// prints one JSON line {"url"} when the front door listens.

import path from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { readBundles } from "../mesh/bundle.js";
import { COMPONENTS } from "../internal/protocol/identity.js";
import { loadComponentConfig } from "../internal/config/component-config.js";
import { EncryptionService } from "../internal/gen/hello/encryption/v1/encryption_service_pb.js";
import { StorageService } from "../internal/gen/hello/storage/v1/storage_service_pb.js";
import { TokenService } from "../internal/gen/hello/token/v1/token_service_pb.js";
import { encryptionRoutes } from "../internal/components/encryption/encryption-service.js";
import { LoginDriver } from "../internal/components/orchestration/login-driver.js";
import { startFrontDoor } from "../internal/components/orchestration/front-door/front-door.js";
import { MemoryStore } from "../internal/components/orchestration/sealed.js";
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
import { storageErrors, storageRoutes } from "../internal/components/storage/storage-service.js";
import { tokenRoutes } from "../internal/components/token/token-service.js";
import { UpstreamVerifier } from "../internal/components/token/upstream.js";
import { inMemory } from "../test/support/in-memory.js";

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
const tokenKeys = new VerificationKeys(bundles.get("token")!.jwks.keys);
const storageKeys = new VerificationKeys(bundles.get("storage")!.jwks.keys);

// Storage
const storageSigning = loadSigningKeys("storage", storage.keys.signing, STORAGE_KEYS);
const newest = (purpose: "error" | "receipt") => storageSigning.filter((k) => k.purpose === purpose).at(-1)!;
const store = await openRecordStore({ url: values.database });
const storageClient = createClient(
  StorageService,
  inMemory(storageRoutes({ store, tokenKeys: () => tokenKeys, errorKey: newest("error"), receiptKey: newest("receipt") }), storageErrors),
);

// Encryption
const keyring = loadKeyring("encryption", encryption.keys.keyring);
const encryptionClient = createClient(
  EncryptionService,
  inMemory(encryptionRoutes({ keyring: () => keyring, tokenKeys: () => tokenKeys, storageKeys: () => storageKeys, storage: storageClient })),
);

// Token
const signing = loadSigningKeys("token", token.keys.signing, TOKEN_KEYS);
const tokenClient = createClient(
  TokenService,
  inMemory(tokenRoutes({
    issuer: values.issuer,
    keys: () => signing,
    storageKeys: () => storageKeys,
    lookupKey: loadLookupKey("token", token.keys.lookup),
    clients: token.clients,
    providers: token.providers,
    upstream: new UpstreamVerifier(token.providers),
  })),
);

// Orchestration
const driver = new LoginDriver({
  issuer: values.issuer,
  token: tokenClient,
  encryption: encryptionClient,
  lookupKey: loadLookupKey("orchestration", orchestration.keys.lookup),
  tokenKeys: () => tokenKeys,
});
const door = await startFrontDoor({
  host: "127.0.0.1",
  port: Number(values.port),
  issuer: values.issuer,
  clients: orchestration.clients,
  providers: orchestration.providers,
  driver,
  token: tokenClient,
  tokenKeys: () => tokenKeys,
  cookieKey: loadSecretKey("orchestration", orchestration.keys.cookie, "cookie key"),
  store: new MemoryStore(),
});
process.stdout.write(`${JSON.stringify({ url: door.url })}\n`);
process.on("SIGTERM", () => {
  void door.close().then(() => store.close()).then(() => process.exit(0));
});
