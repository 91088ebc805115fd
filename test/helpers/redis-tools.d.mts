import type { Redis } from 'ioredis';

export function redisAnswers(url: string): Promise<boolean>;
export function deleteNamespace(client: Redis, namespace: string): Promise<void>;
