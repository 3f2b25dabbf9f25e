// The house rules (issue 12): layers that import one way. `npm run lint:imports` checks
// them (CI runs it); a new back-edge fails the build. Bottom to top:
//
//   internal/protocol, internal/gen, internal/fs   the vocabulary: identities, tokens, records, keys
//   internal/s2s                                   the credential wallet's wire (OpenID4VCI server to server):
//                                                  messages, HPKE JWE, statements, mTLS JSON wire, SD-JWT VC
//   internal/observability                         logs, metrics, tracing
//   mesh/                                          mTLS server and client, policy, trust, gRPC services
//   internal/config                                each component's configuration schema
//   internal/components/runtime                    what every component runs on (serve, health, BuildInfo)
//   internal/components/<component>                one component each; none imports another
//   internal/wallet                                the Wallet Client (`hello wallet`): the user's side, so it
//                                                  knows no component, mesh, custodian tool or deployment
//   internal/ops, internal/dev                      custodians' tools and the development deployment:
//                                                  a component only through its wiring
//   cmd/, bench/, test/, scripts/                  anything
//
// Specs sit beside the code they test and may reach for test support and other layers.

const COMPONENT = "(orchestration|token|encryption|storage)";
const PRODUCTION = { pathNot: "(\\.spec\\.ts$|^test/|^bench/|^cmd/|^scripts/)" };

/** A rule that `from` (production code under the path) may not import `to`. */
const forbid = (name, comment, from, to) => ({
  name,
  comment,
  severity: "error",
  from: { path: from, ...PRODUCTION },
  to: { path: to },
});

module.exports = {
  forbidden: [
    forbid("protocol-is-the-bottom", "the protocol's vocabulary imports nothing above it",
      "^internal/protocol/", "^(mesh|internal/(observability|config|components|ops|dev))/"),
    forbid("s2s-is-vocabulary", "the server-to-server wire is vocabulary: it knows no mesh, component or tool",
      "^internal/s2s/", "^(mesh|internal/(observability|config|components|ops|dev))/"),
    forbid("the-wallet-client-is-the-users", "the Wallet Client runs on the user's machine: it speaks only the public wallet API",
      "^internal/wallet/", "^(mesh|internal/(observability|config|components|ops|dev|gen))/"),
    forbid("observability-below-the-mesh", "logs, metrics and tracing know no mesh, component or tool",
      "^internal/observability/", "^(mesh|internal/(config|components|ops|dev))/"),
    forbid("mesh-knows-no-component", "the mesh carries calls; it knows no component, tool or configuration",
      "^mesh/", "^internal/(config|components|ops|dev)/"),
    forbid("config-below-the-components", "configuration schemas know no component",
      "^internal/config/", "^internal/(components|ops|dev)/"),
    forbid("runtime-knows-no-component", "what every component runs on knows none of them",
      "^internal/components/runtime/", `^internal/(components/${COMPONENT}|ops|dev)/`),
    {
      name: "no-component-imports-another",
      comment: "each component is its custodian's alone: no component's code imports another's",
      severity: "error",
      from: { path: `^internal/components/${COMPONENT}/`, ...PRODUCTION },
      to: { path: `^internal/components/${COMPONENT}/`, pathNot: "^internal/components/$1/" },
    },
    forbid("components-below-the-tools", "components know no custodian tool or development deployment",
      `^internal/components/`, "^internal/(ops|dev)/"),
    {
      name: "tools-use-a-component-through-its-wiring",
      comment: "ops and dev reach a component through its wiring (and what its configuration needs), not its insides",
      severity: "error",
      from: { path: "^internal/(ops|dev)/", ...PRODUCTION },
      to: { path: `^internal/components/${COMPONENT}/`, pathNot: `^internal/components/${COMPONENT}/wiring\\.ts$` },
    },
    forbid("production-never-imports-tests", "test support and specs never ship",
      "^(internal|mesh|cmd)/", "(^test/|\\.spec\\.ts$)"),
    {
      name: "no-circular",
      comment: "an import cycle means two modules are one",
      severity: "error",
      from: PRODUCTION,
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^(node_modules|dist)/" },
    parser: "swc",
    tsConfig: { fileName: "tsconfig.json" },
    moduleSystems: ["es6"],
  },
};
