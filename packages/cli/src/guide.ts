// The key-handling guide that `till audit` and `till scan` point to, so that each result says why it matters.

/** The guide, in the project's repository. */
export const GUIDE = 'https://github.com/till-keys/till/blob/main/docs/key-hygiene.md';

/** A section of the guide by its anchor (the guide keeps its anchors stable). */
export const guideSection = (anchor: string): string => `${GUIDE}#${anchor}`;
