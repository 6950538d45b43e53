/** Tiny DOM helpers for the sidebar (plain DOM keeps the panel light; no framework needed for forms and lists). */

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') {
      node.className = v;
    } else {
      node.setAttribute(k, v);
    }
  }
  for (const c of children) {
    node.append(c);
  }
  return node;
}

export function button(label: string, cls: string, onClick: () => void, title = ''): HTMLButtonElement {
  const b = h('button', { class: `jp-Button nb2pipe-button ${cls}`, type: 'button', title: title || label }, label);
  b.addEventListener('click', onClick);
  return b;
}

export function section(title: string, cls: string): { root: HTMLElement; body: HTMLElement } {
  const body = h('div', { class: 'nb2pipe-section-body' });
  const root = h('section', { class: `nb2pipe-section ${cls}` }, h('h3', {}, title), body);
  return { root, body };
}
