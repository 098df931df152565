/**
 * `node:http`, taken as its CommonJS exports.
 *
 * Why not `import … from 'node:http'`: on Node 22 and later, importing `node:http` as an ES module builds its ESM
 * facade, which reads every export once — including the lazy `WebSocket`, `CloseEvent` and `MessageEvent` getters,
 * which load all of undici. That is ~35 ms of a ~150 ms start (measured on Node 24.21) spent on code the sidecar
 * never runs. `process.getBuiltinModule` returns the same module object without the facade. Types still come from
 * `import type … from 'node:http'`, which costs nothing at run time.
 */
export const nodeHttp = process.getBuiltinModule('node:http');
