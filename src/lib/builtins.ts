/**
 * The one module through which src/sidecar and src/lib name Node's built-ins as types. Values come
 * from `process.getBuiltinModule(...)` where they are used: the CommonJS view of a built-in. An ESM
 * import of one builds a namespace of every export, and that loads modules the sidecar never uses:
 * node:http's lazy WebSocket/MessageEvent/CloseEvent exports load Node's internal undici (about
 * 7 MB), node:fs's its promises API, node:util's every helper. biome.json's noRestrictedImports rule
 * (scoped to src/sidecar and src/lib, this file excepted) refuses such imports elsewhere, type-only
 * ones included, so they come from here.
 */
export type {
  IncomingHttpHeaders,
  IncomingMessage,
  RequestOptions,
  Server,
  ServerResponse,
} from "node:http";
export type { ParseArgsOptionDescriptor } from "node:util";
