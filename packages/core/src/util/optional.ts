// Optional peer dependencies (prom-client, @opentelemetry/api), loaded on first use only.
import { createRequire } from 'node:module';
import { tillError } from '../errors.js';
import { installHint } from './install-hint.js';

const loaded = new Map<string, unknown>();

/**
 * `pkg`, required from the application's dependencies the first time it is asked for; a clear
 * MISSING_DEPENDENCY error (with the command that installs it) when it is not installed or fails to load.
 */
export function requireOptional<T>(pkg: string, where: string): T {
  if (loaded.has(pkg)) return loaded.get(pkg) as T;
  let module: T;
  try {
    module = createRequire(import.meta.url)(pkg) as T;
  } catch (cause) {
    const code = (cause as { code?: unknown } | null)?.code;
    const missing = (code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND') && String((cause as Error).message).includes(`'${pkg}'`);
    const why = missing
      ? `${pkg} is not installed: ${installHint(pkg)}`
      : `${pkg} could not be loaded (${cause instanceof Error ? cause.message : String(cause)}): reinstall it with ${installHint(pkg)}`;
    throw tillError('MISSING_DEPENDENCY', where, why, { cause });
  }
  loaded.set(pkg, module);
  return module;
}
