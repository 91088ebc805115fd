// GitHub's secret-scanning partner endpoint: GitHub posts the tokens matching Till's published key
// pattern that it found in public code; the live Till keys among them are revoked as `leaked`.
//
// The request is trusted only with a valid ECDSA (P-256, SHA-256) signature by one of GitHub's
// published keys over the raw body. A token counts as a Till key only when its secret matches
// (`identify` confirms it): ids are public, so a made-up token naming a real id revokes nothing.
import { createHash, verify } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isTillError, parseKey, type Till } from '@till/core';
import { type PreparsedBody, readRaw } from './input.js';
import { badRequest, ConsoleProblem, sendJson } from './respond.js';

/** Where GitHub publishes the keys it signs secret-scanning alerts with. */
export const GITHUB_KEYS_URL = 'https://api.github.com/meta/public_keys/secret_scanning';

export interface GitHubPublicKey {
  readonly key_identifier: string;
  /** PEM of an ECDSA P-256 public key. */
  readonly key: string;
  readonly is_current?: boolean;
}

export interface SecretScanningOptions {
  /** Where GitHub's public keys come from. Default: `githubKeySource()`, GitHub's published list. */
  publicKeys?: () => Promise<readonly GitHubPublicKey[]>;
  /** How long a fetched key list is kept, in ms. Default 1 hour. */
  cacheTtl?: number;
  /** Who the audit trail says revoked a leaked key. Default `github-secret-scanning`. */
  actor?: string;
}

/** Reads GitHub's published keys (`{ public_keys: [...] }`) from `url`. */
export function githubKeySource(url: string = GITHUB_KEYS_URL): () => Promise<GitHubPublicKey[]> {
  return async () => {
    const res = await fetch(url, { headers: { accept: 'application/json' } });
    if (!res.ok) throw new Error(`GitHub's public keys answered ${res.status}`);
    const body = (await res.json()) as { public_keys?: unknown };
    if (!Array.isArray(body.public_keys)) throw new Error(`GitHub's public keys are not a { public_keys: [...] } document`);
    return body.public_keys.filter(
      (k): k is GitHubPublicKey =>
        k !== null && typeof k === 'object' && typeof (k as GitHubPublicKey).key_identifier === 'string' && typeof (k as GitHubPublicKey).key === 'string',
    );
  };
}

/** Refetched at most this often when a request names a key identifier the cached list lacks (a new GitHub key). */
const REFRESH_AT_MOST_EVERY = 60_000;

/** The key list, cached; an unknown identifier refreshes it, at most once a minute (no refetch per forged request). */
class KeyCache {
  private keys: ReadonlyMap<string, string> | null = null;
  private fetchedAt = Number.NEGATIVE_INFINITY;
  private pending: Promise<void> | null = null;

  constructor(
    private readonly source: () => Promise<readonly GitHubPublicKey[]>,
    private readonly ttl: number,
  ) {}

  async key(identifier: string): Promise<string | null> {
    const age = Date.now() - this.fetchedAt;
    if (this.keys === null || age > this.ttl || (!this.keys.has(identifier) && age > REFRESH_AT_MOST_EVERY)) await this.refresh();
    return this.keys?.get(identifier) ?? null;
  }

  private refresh(): Promise<void> {
    this.pending ??= this.source()
      .then((list) => {
        this.keys = new Map(list.map((k) => [k.key_identifier, k.key]));
        this.fetchedAt = Date.now();
      })
      .finally(() => {
        this.pending = null;
      });
    return this.pending;
  }
}

const unauthorized = (detail: string) => new ConsoleProblem(401, 'SIGNATURE_INVALID', 'Signature not valid', detail);

export interface SecretScanningHandler {
  handle(req: IncomingMessage, res: ServerResponse, body: PreparsedBody | undefined): Promise<void>;
}

export function createSecretScanning(till: Till, options: SecretScanningOptions): SecretScanningHandler {
  const ttl = options.cacheTtl ?? 3_600_000;
  if (!Number.isInteger(ttl) || ttl < 0) throw new TypeError('[till] [console] secretScanning.cacheTtl must be milliseconds (an integer of 0 or more)');
  if (options.publicKeys !== undefined && typeof options.publicKeys !== 'function')
    throw new TypeError('[till] [console] secretScanning.publicKeys must be a function');
  const cache = new KeyCache(options.publicKeys ?? githubKeySource(), ttl);
  const actor = options.actor ?? 'github-secret-scanning';
  return {
    async handle(req, res, body) {
      const identifier = req.headers['github-public-key-identifier'];
      const signature = req.headers['github-public-key-signature'];
      if (typeof identifier !== 'string' || typeof signature !== 'string' || identifier.length > 200 || signature.length > 400) {
        throw unauthorized('Send GITHUB-PUBLIC-KEY-IDENTIFIER and GITHUB-PUBLIC-KEY-SIGNATURE.');
      }
      const raw = await readRaw(req, body);
      let pem: string | null;
      try {
        pem = await cache.key(identifier);
      } catch {
        // GitHub retries a request that did not get a 2xx: better than refusing a real alert.
        throw new ConsoleProblem(503, 'KEYS_UNAVAILABLE', 'Service unavailable', "GitHub's public keys could not be read; retry later.", {
          'retry-after': '30',
        });
      }
      if (pem === null) throw unauthorized('The key identifier is not one of GitHub’s published keys.');
      let valid = false;
      try {
        valid = verify('sha256', Buffer.from(raw, 'utf8'), pem, Buffer.from(signature, 'base64'));
      } catch {
        valid = false;
      }
      if (!valid) throw unauthorized('The signature does not match the body.');
      let matches: unknown;
      try {
        matches = JSON.parse(raw);
      } catch {
        throw badRequest('The body is not valid JSON.');
      }
      if (
        !Array.isArray(matches) ||
        matches.length > 1000 ||
        !matches.every((m) => m !== null && typeof m === 'object' && typeof m.token === 'string' && typeof m.type === 'string')
      ) {
        throw badRequest('The body must be a list of { token, type, url, source }.');
      }
      const answers = [];
      for (const { token, type } of matches as Array<{ token: string; type: string }>) {
        answers.push({
          token_hash: createHash('sha256').update(token).digest('hex'),
          token_type: type,
          label: (await revokeIfLive(till, token, actor)) ? 'true_positive' : 'false_positive',
        });
      }
      sendJson(res, 200, answers);
    },
  };
}

/**
 * Whether a token is a real Till key of this store (its secret confirmed); revokes it and its rotation
 * chain as `leaked` unless it is revoked already. Idempotent: a repeated alert finds it revoked.
 */
async function revokeIfLive(till: Till, token: string, actor: string): Promise<boolean> {
  if (!parseKey(token).ok) return false;
  const identity = await till.keys.identify(token);
  if (identity.match !== 'confirmed') return false;
  if (identity.status === 'revoked') return true;
  try {
    await till.keys.revokeChain(identity.id, { actor, reason: 'leaked' });
  } catch (error) {
    // Deleted in between: no key left to revoke.
    if (isTillError(error, 'KEY_NOT_FOUND')) return false;
    throw error;
  }
  return true;
}
