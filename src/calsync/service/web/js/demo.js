/* The demo panel (only when the service runs as `calsync demo`): buttons that change the emulated Google
 * calendar as another client would, and how long each change took to reach this page. */
import { api } from './api.js';
import { getCalendar } from './calendar.js';
import { $, el, toast } from './dom.js';
import { state } from './state.js';
import { isoUtc, showWhen } from './time.js';

const PATIENCE_MS = 20000;  // after this long without the change on the page, say so (never wait silently)

export async function loadDemo() {
  try {
    state.demo = await api('GET', '/demo');
  } catch {
    state.demo = null;
  }
  const panel = $('#demo-panel');
  panel.hidden = !state.demo;
  if (!state.demo) return;
  for (const button of panel.querySelectorAll('button[data-demo]')) {
    const kind = button.dataset.demo;
    if (state.demo.kinds && state.demo.kinds[kind]) button.title = state.demo.kinds[kind];
    button.addEventListener('click', () => demoChange(kind, button));
  }
}

/* Where a demo change should happen: now, if today is on screen, else in the visible range. */
function demoStart(kind) {
  const now = new Date();
  const range = state.range;
  if (!range) return undefined;
  const from = new Date(range.start);
  const to = new Date(range.end);
  if (now >= from && now < to) {
    if (kind !== 'create') return isoUtc(now);
    const next = new Date(now); next.setMinutes(0, 0, 0); next.setHours(next.getHours() + 1);
    return next < to ? isoUtc(next) : isoUtc(now);
  }
  const noon = new Date(from); noon.setHours(kind === 'create' ? 12 : 0, 0, 0, 0);
  return isoUtc(noon);
}

async function demoChange(kind, button) {
  const result = $('#demo-result');
  button.disabled = true;
  try {
    const answer = await api('POST', '/demo/remote-change', { kind, start: demoStart(kind) });
    result.className = 'demo-result small';
    state.arrival = { ...answer, t0: performance.now() };
    showWaiting();
    checkArrival();
    const arrival = state.arrival;
    setTimeout(() => { if (arrival && state.arrival === arrival) showWaiting(true); }, PATIENCE_MS);
  } catch (err) {
    result.textContent = `The demo change failed: ${err.message}`;
    result.className = 'demo-result small error-text';
  } finally {
    button.disabled = false;
  }
}

function inView(start) {
  const range = state.range;
  if (!range || !start) return true;
  const t = Date.parse(start);
  return t >= Date.parse(range.start) && t < Date.parse(range.end);
}

/* "Waiting for it to arrive…", or, when the changed event lies outside the dates shown, where it is and a
 * button that goes there (the page only watches the dates it shows). */
function showWaiting(late = false) {
  const a = state.arrival;
  if (!a) return;
  const result = $('#demo-result');
  a.outside = !inView(a.start);
  if (!a.outside) {
    result.replaceChildren(`${a.message}. `, late
      ? 'It has not reached this page yet: the sync health tab says why.' : 'Waiting for it to arrive…');
    return;
  }
  const go = el('button', { type: 'button', class: 'small', id: 'demo-go',
    onclick: () => { const calendar = getCalendar(); if (calendar) calendar.gotoDate(new Date(a.start)); } },
  `Go to ${showWhen(a.start)}`);
  result.replaceChildren(`${a.message}. It is on ${showWhen(a.start)}, outside the dates shown here; `
    + 'it shows when you go there. ', go);
}

/* Called whenever the calendar took new events: has the change we wait for arrived? */
export function checkArrival() {
  const a = state.arrival;
  if (!a) return;
  let arrived = false;
  if (a.kind === 'conflict') {
    arrived = [...state.events.values()].some((e) => e.id === a.event_id
      && (e.sync || []).some((s) => s.state === 'conflict'));
  } else if (a.kind === 'move') {
    const e = state.events.get(a.event_id);
    arrived = !!e && Date.parse(e.start) === Date.parse(a.start);
  } else {
    arrived = [...state.events.values()].some((e) => e.title === a.title);
  }
  if (!arrived) {
    if (a.outside !== !inView(a.start)) showWaiting();
    return;
  }
  const seconds = ((performance.now() - a.t0) / 1000).toFixed(1);
  state.arrival = null;
  const text = a.kind === 'conflict'
    ? `The conflict reached the page after ${seconds} s: see the Conflicts tab.`
    : `Arrived on the page ${seconds} s after the change in Google.`;
  $('#demo-result').replaceChildren(`${a.message}. ${text}`);
  toast(text, 'ok');
}
