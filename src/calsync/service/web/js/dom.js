/* Element helpers. Text from outside (event titles, names, errors) only ever becomes text nodes or
 * attribute values, never markup: `el` sets children as text, and nothing here touches innerHTML. */

export const $ = (sel, root = document) => root.querySelector(sel);

/* el('a', {href, class, text, dataset, onclick}, ...children): attributes are set as values,
 * `on…` keys become listeners, children that are not Nodes become text nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG = 'http://www.w3.org/2000/svg';

export function cameraIcon(title) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 16 12');
  svg.setAttribute('class', 'conf-icon');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', title);
  const body = document.createElementNS(SVG, 'rect');
  for (const [k, v] of Object.entries({ x: 0.5, y: 1.5, width: 10, height: 9, rx: 2 })) body.setAttribute(k, v);
  const lens = document.createElementNS(SVG, 'path');
  lens.setAttribute('d', 'M11.5 5 L15.5 2.5 V9.5 L11.5 7 Z');
  const tip = document.createElementNS(SVG, 'title');
  tip.textContent = title;
  svg.append(tip, body, lens);
  return svg;
}

/* Join links come from remote calendars: only http(s) ones become links. */
export function safeUrl(text) {
  try {
    const url = new URL(text);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
  } catch {
    return null;
  }
}

export function toast(text, kind = 'info', ms = 6000) {
  const node = el('div', { class: `toast ${kind}`, role: kind === 'error' || kind === 'warn' ? 'alert' : 'status' },
    el('span', {}, text), el('button', { type: 'button', class: 'icon-button', 'aria-label': 'dismiss',
      onclick: () => node.remove() }, '×'));
  $('#toasts').append(node);
  setTimeout(() => node.remove(), kind === 'error' || kind === 'warn' ? Math.max(ms, 10000) : ms);
}
