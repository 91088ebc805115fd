// A key's verifications per day by outcome, as stacked SVG bars (attributes only: the CSP allows no inline style).
import { svg } from './dom.js';

export interface UsageDay {
  day: string;
  counts: Record<string, number>;
  total: number;
}

/** Outcomes in stacking order, each with its colour class (app.css). */
const OUTCOMES = [
  'VALID',
  'INSUFFICIENT_SCOPE',
  'RATE_LIMITED',
  'USAGE_EXCEEDED',
  'REVOKED',
  'DISABLED',
  'EXPIRED',
  'NOT_YET_VALID',
  'NOT_FOUND',
  'MALFORMED',
  'BLOCKED',
  'STORE_UNAVAILABLE',
];

export function usageChart(days: readonly UsageDay[]): SVGElement {
  const ordered = [...days].reverse();
  const width = 640;
  const height = 180;
  const pad = 24;
  const max = Math.max(1, ...ordered.map((d) => d.total));
  const bar = (width - pad * 2) / Math.max(1, ordered.length);
  const chart = svg('svg', {
    viewBox: `0 0 ${width} ${height}`,
    class: 'chart',
    role: 'img',
    'aria-label': `Verifications per day by outcome over ${ordered.length} days; most in a day: ${max}`,
  });
  chart.appendChild(svg('text', { x: 2, y: 12, class: 'axis' }, document.createTextNode(String(max))));
  chart.appendChild(svg('line', { x1: pad, y1: height - pad, x2: width - pad, y2: height - pad, class: 'axis-line' }));
  ordered.forEach((d, i) => {
    let y = height - pad;
    for (const outcome of OUTCOMES) {
      const n = d.counts[outcome] ?? 0;
      if (n === 0) continue;
      const h = ((height - pad * 2) * n) / max;
      y -= h;
      const rect = svg('rect', { x: pad + i * bar + 1, y, width: Math.max(1, bar - 2), height: h, class: `o-${outcome.toLowerCase().replace(/_/g, '-')}` });
      rect.appendChild(svg('title', {}, document.createTextNode(`${d.day}: ${n} ${outcome}`)));
      chart.appendChild(rect);
    }
    if (i % Math.ceil(ordered.length / 6) === 0)
      chart.appendChild(svg('text', { x: pad + i * bar, y: height - 6, class: 'axis' }, document.createTextNode(d.day.slice(5))));
  });
  return chart;
}

/** The outcomes the chart shows, for its legend. */
export function legendOutcomes(days: readonly UsageDay[]): string[] {
  return OUTCOMES.filter((o) => days.some((d) => (d.counts[o] ?? 0) > 0));
}
