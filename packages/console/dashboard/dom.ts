// Building the page: elements from a tag, attributes and children. Text always goes in as text nodes,
// never as HTML: key names, owners and metadata are whatever a client sent.
export type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | boolean | EventListener | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === 'function') el.addEventListener(name.slice(2).toLowerCase(), value);
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, value);
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

const SVG = 'http://www.w3.org/2000/svg';

export function svg(tag: string, attrs: Record<string, string | number>, ...children: Array<SVGElement | Text>): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  for (const c of children) el.appendChild(c);
  return el;
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

/** A time for people: `2026-03-04 12:30 UTC`, or a dash. */
export function when(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '-';
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** How long ago, roughly. */
export function ago(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** Where a paged table stands: the cursor of the page shown, and those of the pages before it. */
export interface PageState {
  back: Array<string | null>;
  cursor: string | null;
}

/** Fills `pager` with Previous and Next for a paged table; `next` is the cursor the API gave for the next page, if any. */
export function pagerButtons(pager: Element, state: PageState, next: string | undefined, load: () => void): void {
  clear(pager);
  pager.append(
    h(
      'button',
      {
        type: 'button',
        disabled: state.back.length === 0,
        onclick: () => {
          state.cursor = state.back.pop() ?? null;
          load();
        },
      },
      'Previous',
    ),
    h(
      'button',
      {
        type: 'button',
        disabled: next === undefined,
        onclick: () => {
          state.back.push(state.cursor);
          state.cursor = next ?? null;
          load();
        },
      },
      'Next',
    ),
  );
}
