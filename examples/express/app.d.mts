// Types of app.mjs, so that TypeScript code (like test/examples.test.ts) can import the example.
import type { Express } from 'express';
import type { Till } from '@till/core';

/** Builds the example Express app around a Till instance from `createTill()`. */
export declare function createApp(options: { till: Till }): Express;
