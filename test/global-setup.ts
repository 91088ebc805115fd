// Makes sure a real Redis answers for the suites: REDIS_URL if it answers, else 127.0.0.1:6379, else one we start.
import type { ChildProcess } from 'node:child_process';
import { redisAnswers } from '@till/testkit/redis-tools';
import { freePort, redisServerBinary, startRedisServer } from '@till/testkit/redis-server';

let started: ChildProcess | undefined;

export async function setup({ provide }: { provide: (key: string, value: unknown) => void }): Promise<void> {
  const candidates = [process.env.REDIS_URL, 'redis://127.0.0.1:6379'].filter((u): u is string => !!u);
  for (const url of candidates) {
    if (await redisAnswers(url)) {
      provide('redisUrl', url);
      return;
    }
  }
  if (!redisServerBinary()) {
    throw new Error(
      'No Redis answers at REDIS_URL or 127.0.0.1:6379 and no redis-server binary was found. ' +
        'Install Redis (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or set REDIS_URL.',
    );
  }
  const port = await freePort();
  started = (await startRedisServer(port)).process;
  provide('redisUrl', `redis://127.0.0.1:${port}`);
}

export async function teardown(): Promise<void> {
  started?.kill('SIGTERM');
}
