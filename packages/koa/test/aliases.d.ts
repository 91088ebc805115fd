// Koa 2 is installed under the npm alias `koa2` and ships no types of its own. The suites only
// use the API that 2 and 3 share, so Koa 3's types describe it well enough here.
declare module 'koa2' {
  import Koa from 'koa';
  export default Koa;
}
