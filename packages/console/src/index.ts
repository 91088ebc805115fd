// @till/console: an admin JSON API and a web dashboard for a Till's keys, mounted in the app itself.
// This entry is the framework-neutral core over Node's request and response; the mounts are in
// `@till/console/express`, `@till/console/koa` and `@till/console/fastify`.
export { createConsole, ADMIN_SCOPE, READ_SCOPE, type ConsoleOptions, type TillConsole } from './console.js';
export { CONTENT_SECURITY_POLICY } from './static.js';
export { MAX_BODY, type PreparsedBody } from './input.js';
export { githubKeySource, GITHUB_KEYS_URL, type GitHubPublicKey, type SecretScanningOptions } from './secret-scanning.js';
