// Express 4 is installed under the npm alias `express4` and ships no types of its own. The suites
// only use the API that 4 and 5 share, so Express 5's types describe it well enough here.
declare module 'express4' {
  import express from 'express';
  export default express;
}
