// What `require("pg-native")` finds inside an artifact. pg loads its optional native
// binding only when asked to (NODE_PG_FORCE_NATIVE, or `pg.native`); hello-mesh uses
// pg's JavaScript client, and an artifact loads no code from outside itself, so the
// binding is absent by construction. The code matches Node's, which pg treats as
// "not installed".

throw Object.assign(
  new Error("pg-native is not part of this artifact: hello-mesh uses pg's JavaScript client (unset NODE_PG_FORCE_NATIVE)"),
  { code: "MODULE_NOT_FOUND" },
);
