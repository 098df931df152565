// The image's Node major, read from the repository's Dockerfile, so that the Node-dependent targets are judged
// on the Node the image ships rather than on whichever Node runs the bench. The build stage's `FROM node:NN…`
// line decides (with `ARG NAME=default` expanded, as `docker build` does without --build-arg); a runtime stage
// on another major (distroless `nodejsNN`) is reported as a mismatch rather than silently preferred.
import { readFileSync } from 'node:fs';

/**
 * @typedef {{ major: number, from: string, image: string, runtimeMismatch?: string } | { error: string }} ImageNode
 */

/**
 * `${NAME}`, `${NAME:-default}` and `$NAME` replaced by the ARG defaults seen so far; unknown names by ''.
 * @param {string} text
 * @param {Map<string, string>} args
 */
function expand(text, args) {
  return text.replace(
    /\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)/g,
    (_, braced, fallback, bare) => args.get(braced ?? bare) ?? fallback ?? '',
  );
}

/**
 * The image's Node major from Dockerfile text.
 * @param {string} text
 * @returns {ImageNode}
 */
export function parseImageNode(text) {
  /** @type {Map<string, string>} */
  const args = new Map();
  /** @type {{ major: number, from: string, image: string } | undefined} */
  let build;
  let runtime;
  // Continuation lines joined first: `FROM \` on its own line is legal.
  for (const raw of text.replace(/\\\r?\n/g, ' ').split(/\r?\n/)) {
    const line = raw.trim();
    const arg = /^ARG\s+(\w+)(?:=("[^"]*"|'[^']*'|\S*))?/i.exec(line);
    if (arg) {
      if (arg[2] !== undefined && !args.has(arg[1])) args.set(arg[1], arg[2].replace(/^(["'])(.*)\1$/, '$2'));
      continue;
    }
    const from = /^FROM\s+(?:--\S+\s+)*(\S+)/i.exec(line);
    if (!from) continue;
    const image = expand(from[1], args);
    const node = /^(?:(?:docker\.io\/)?library\/)?node:(\d+)/.exec(image);
    if (node && !build) build = { major: Number(node[1]), from: line, image };
    runtime = { image, major: /^node(?:js)?:?(\d+)/.exec(image.replace(/^.*\//, ''))?.[1] };
  }
  if (!build) return { error: 'no `FROM node:NN…` line' };
  const mismatch =
    runtime?.major !== undefined && Number(runtime.major) !== build.major
      ? `the last stage is ${runtime.image} (Node ${runtime.major})`
      : undefined;
  return { ...build, ...(mismatch ? { runtimeMismatch: mismatch } : {}) };
}

/**
 * The node flags of the Dockerfile's (last) ENTRYPOINT in exec form, `["/nodejs/bin/node", "--flag", …,
 * "/app/dist/main.js"]`: what the image's node runs the sidecar with, so that the bench's sidecars run with it too.
 * @param {string} text
 * @returns {string[] | { error: string }}
 */
export function parseEntrypointNodeFlags(text) {
  const lines = text.replace(/\\\r?\n/g, ' ').split(/\r?\n/);
  const entrypoint = lines
    .map((l) => /^\s*ENTRYPOINT\s+(.*)$/i.exec(l)?.[1])
    .filter((l) => l !== undefined)
    .at(-1);
  if (entrypoint === undefined) return { error: 'no ENTRYPOINT' };
  let argv;
  try {
    argv = JSON.parse(entrypoint);
  } catch {
    return { error: 'the ENTRYPOINT is not in exec form (a JSON array)' };
  }
  if (!Array.isArray(argv) || !/(^|\/)node$/.test(String(argv[0]))) {
    return { error: 'the ENTRYPOINT does not run node' };
  }
  const flags = [];
  for (const arg of argv.slice(1).map(String)) {
    if (!arg.startsWith('-')) break;
    flags.push(arg);
  }
  return flags;
}

/**
 * The OpenSSL configuration the image's node loads: `ENV OPENSSL_CONF=/app/dist/FILE` (the last one), as the
 * path of FILE inside dist/ (`npm run build` puts it there); undefined when the image sets none.
 * @param {string} text
 * @returns {{ distFile: string | undefined } | { error: string }}
 */
export function parseOpensslConf(text) {
  // `ENV OPENSSL_CONF=value` or `ENV OPENSSL_CONF value`, the value maybe quoted; not in a multi-variable ENV.
  const values = [...text.matchAll(/^[ \t]*ENV[ \t]+OPENSSL_CONF(?:=|[ \t]+)(\S+)[ \t]*$/gm)].map((m) => m[1]);
  const value = values.at(-1)?.replace(/^(["'])(.*)\1$/, '$2');
  if (value === undefined) return { distFile: undefined };
  const inDist = /^\/app\/dist\/([\w./-]+)$/.exec(value);
  if (!inDist || inDist[1].split('/').includes('..')) {
    return { error: `ENV OPENSSL_CONF=${value} is not a file under /app/dist/` };
  }
  return { distFile: inDist[1] };
}

/**
 * `parse` over a Dockerfile on disk; `{ error }`, naming the file, when it cannot be read or `parse` says why not.
 * @template T
 * @param {string} file
 * @param {(text: string) => T | { error: string }} parse
 * @returns {T | { error: string }}
 */
function fromDockerfile(file, parse) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { error: `${file}: ${/** @type {Error} */ (err).message}` };
  }
  const parsed = parse(text);
  return parsed && typeof parsed === 'object' && 'error' in parsed ? { error: `${file}: ${parsed.error}` } : parsed;
}

/**
 * The image's Node major from a Dockerfile on disk; `{ error }` when it cannot be read or has no such line.
 * @param {string} file
 * @returns {ImageNode}
 */
export function imageNode(file) {
  return fromDockerfile(file, parseImageNode);
}

/**
 * The node flags of a Dockerfile's ENTRYPOINT on disk; `{ error }` when it cannot be read or has none in exec form.
 * @param {string} file
 * @returns {string[] | { error: string }}
 */
export function imageNodeFlags(file) {
  return fromDockerfile(file, parseEntrypointNodeFlags);
}

/**
 * The image's OpenSSL configuration (parseOpensslConf) from a Dockerfile on disk.
 * @param {string} file
 * @returns {{ distFile: string | undefined } | { error: string }}
 */
export function imageOpensslConf(file) {
  return fromDockerfile(file, parseOpensslConf);
}
