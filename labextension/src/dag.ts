/** Draw the pipeline DAG as SVG: stages as coloured nodes in layers, edges labelled with the variables they carry. */
import { IAnalysis } from './tokens';

const SVG = 'http://www.w3.org/2000/svg';
const W = 130;
const H = 30;
const GAP_X = 40;
const GAP_Y = 46;

function el(name: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) {
    node.setAttribute(k, String(v));
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** Layer of each stage: the longest path from a source (edges and `after:` constraints). */
export function layers(analysis: IAnalysis): Map<string, number> {
  const layer = new Map<string, number>();
  const preds = new Map<string, string[]>();
  for (const s of analysis.stages) {
    preds.set(s.name, [...s.after]);
  }
  for (const e of analysis.edges) {
    preds.get(e.to)?.push(e.from);
  }
  const order = analysis.order.length ? analysis.order : analysis.stages.map(s => s.name);
  for (const name of order) {
    const ps = preds.get(name) ?? [];
    layer.set(name, ps.length ? Math.max(...ps.map(p => (layer.get(p) ?? 0) + 1)) : 0);
  }
  return layer;
}

/** The SVG element for an analysis; `color(name)` gives each stage's colour. */
export function drawDag(analysis: IAnalysis, color: (stage: string) => string): SVGSVGElement {
  const layer = layers(analysis);
  const rows = new Map<number, string[]>();
  for (const s of analysis.stages) {
    const l = layer.get(s.name) ?? 0;
    rows.set(l, [...(rows.get(l) ?? []), s.name]);
  }
  const pos = new Map<string, { x: number; y: number }>();
  let width = W + 20;
  for (const [l, names] of rows) {
    names.forEach((n, i) => pos.set(n, { x: 10 + i * (W + GAP_X), y: 10 + l * (H + GAP_Y) }));
    width = Math.max(width, 10 + names.length * (W + GAP_X));
  }
  const height = 20 + (Math.max(0, ...rows.keys()) + 1) * (H + GAP_Y);
  const svg = el('svg', { width, height, class: 'nb2pipe-dag', viewBox: `0 0 ${width} ${height}` }) as SVGSVGElement;
  const defs = el('defs', {});
  const marker = el('marker', { id: 'nb2pipe-arrow', markerWidth: 8, markerHeight: 8, refX: 7, refY: 4, orient: 'auto' });
  marker.appendChild(el('path', { d: 'M0,0 L8,4 L0,8 z', class: 'nb2pipe-dag-arrow' }));
  defs.appendChild(marker);
  svg.appendChild(defs);
  const links: { from: string; to: string; label: string }[] = analysis.edges.map(e => ({
    from: e.from,
    to: e.to,
    label: e.names.join(', ')
  }));
  for (const s of analysis.stages) {
    for (const a of s.after) {
      if (!links.some(l => l.from === a && l.to === s.name)) {
        links.push({ from: a, to: s.name, label: 'after' });
      }
    }
  }
  for (const link of links) {
    const a = pos.get(link.from);
    const b = pos.get(link.to);
    if (!a || !b) {
      continue;
    }
    const x1 = a.x + W / 2;
    const y1 = a.y + H;
    const x2 = b.x + W / 2;
    const y2 = b.y;
    const g = el('g', { class: 'nb2pipe-dag-edge', 'data-from': link.from, 'data-to': link.to });
    g.appendChild(el('line', { x1, y1, x2, y2, 'marker-end': 'url(#nb2pipe-arrow)' }));
    const label = link.label.length > 28 ? link.label.slice(0, 27) + '…' : link.label;
    const text = el('text', { x: (x1 + x2) / 2 + 4, y: (y1 + y2) / 2 + 4 }, label);
    text.appendChild(el('title', {}, link.label));
    g.appendChild(text);
    svg.appendChild(g);
  }
  for (const s of analysis.stages) {
    const p = pos.get(s.name)!;
    const g = el('g', { class: 'nb2pipe-dag-node', 'data-stage': s.name });
    g.appendChild(el('rect', { x: p.x, y: p.y, width: W, height: H, rx: 6, fill: color(s.name) }));
    g.appendChild(el('text', { x: p.x + W / 2, y: p.y + H / 2 + 4, 'text-anchor': 'middle' }, s.name));
    svg.appendChild(g);
  }
  return svg;
}
