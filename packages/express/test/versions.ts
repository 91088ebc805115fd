// The Express versions the adapter supports, as installed for its tests (4 under the npm alias `express4`).
import express from 'express';
import express4 from 'express4';

export const EXPRESS_VERSIONS = [
  ['Express 5', express],
  ['Express 4', express4],
] as const;
