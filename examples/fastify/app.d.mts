// Types of app.mjs, so that TypeScript code (like test/examples.test.ts) can import the example.
import type { FastifyInstance } from 'fastify';
import type { Till } from '@till/core';

/** Builds the example Fastify app around a Till instance from `createTill()`. */
export declare function createApp(options: { till: Till }): FastifyInstance;
