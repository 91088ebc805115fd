// The Koa versions the adapter supports, as installed for its tests (2 under the npm alias `koa2`).
import Koa from 'koa';
import koa2 from 'koa2';

export const KOA_VERSIONS = [
  ['Koa 3', Koa],
  ['Koa 2', koa2],
] as const;
