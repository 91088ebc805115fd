// Types of revocation-cluster.mjs.
import type { ChildProcess } from 'node:child_process';
import type { Redis } from 'ioredis';

/** Milliseconds on CLOCK_MONOTONIC, comparable between processes of one machine. */
export declare const now: () => number;

export declare function waitForSubscribers(admin: Redis, channel: string, count: number, timeoutMs?: number): Promise<number>;

export declare function killSubscriber(admin: Redis, name: string): Promise<number>;

export interface ClusterOptions {
  redisUrl: string;
  namespace: string;
  count?: number;
  cacheTtl?: number;
  reconnectDelay?: number;
  pingChannel?: string;
  label?: string;
  requestTimeout?: number;
}

export interface ClusterWorker {
  readonly index: number;
  readonly name: string;
  readonly pid: number | undefined;
  readonly child: ChildProcess;
}

export interface Refusal {
  /** When the worker first gave the expected answer (`now()`, CLOCK_MONOTONIC ms). */
  readonly at: number;
  /** Which path saw it first: the onInvalidate listener or the polling loop. */
  readonly via: 'listener' | 'poll';
}

export interface VerifyOptions {
  scopes?: readonly string[];
  scopeMode?: 'all' | 'any';
}

export interface VerifyReply {
  results: Record<string, { code: string; cached: boolean }>;
}

export interface HeardReply {
  ids: Record<string, number>;
  flushes: number;
  lastFlushAt: number | null;
}

/** What each worker request takes, and what it answers. */
export interface Requests {
  keys: { keys: ReadonlyArray<{ id: string; key: string }> };
  verify: { ids: readonly string[]; options?: VerifyOptions | undefined };
  watch: { id: string; expect: string; options?: VerifyOptions | undefined };
  unwatch: { id: string };
  heard: Record<string, never>;
  stats: Record<string, never>;
  time: Record<string, never>;
}

export interface Replies {
  keys: { count: number };
  verify: VerifyReply;
  watch: object;
  unwatch: object;
  heard: HeardReply;
  stats: { hits: number; misses: number; staleHits: number; storeErrors: number };
  time: { at: number };
}

export interface Cluster {
  readonly workers: readonly ClusterWorker[];
  call<T extends keyof Requests>(index: number, type: T, payload?: Requests[T]): Promise<Replies[T]>;
  callAll<T extends keyof Requests>(type: T, payload?: Requests[T]): Promise<Array<Replies[T]>>;
  watch(id: string, expect: string, settings?: { options?: VerifyOptions; timeoutMs?: number }): Promise<{ refusals: Promise<Array<Refusal | null>> }>;
  pings(seq: number, timeoutMs?: number): Promise<Array<number | null>>;
  waitUntilSubscribed(admin: Redis, timeoutMs?: number): Promise<void>;
  clockOffsets(rounds?: number): Promise<Array<{ offset: number; error: number }>>;
  stop(): Promise<void>;
}

export declare function startCluster(options: ClusterOptions): Promise<Cluster>;
