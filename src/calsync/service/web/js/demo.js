/* The demo panel (only when the service runs as `calsync demo`): buttons that change the emulated Google
 * calendar as another client would, and how long each change took to reach this page. */
import { api } from './api.js';
import { $, toast } from './dom.js';
import { state } from './state.js';
import { isoUtc } from './time.js';

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
    result.textContent = `${answer.message}. Waiting for it to arrive…`;
    result.className = 'demo-result small';
    state.arrival = { ...answer, t0: performance.now() };
    checkArrival();
  } catch (err) {
    result.textContent = `The demo change failed: ${err.message}`;
    result.className = 'demo-result small error-text';
  } finally {
    button.disabled = false;
  }
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
  if (!arrived) return;
  const seconds = ((performance.now() - a.t0) / 1000).toFixed(1);
  state.arrival = null;
  const text = a.kind === 'conflict'
    ? `The conflict reached the page after ${seconds} s: see the Conflicts tab.`
    : `Arrived on the page ${seconds} s after the change in Google.`;
  $('#demo-result').textContent = `${a.message}. ${text}`;
  toast(text, 'ok');
}
