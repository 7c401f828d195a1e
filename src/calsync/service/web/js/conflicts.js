/* The Conflicts tab: each open conflict as base / local / remote side by side, with Keep local / Keep remote. */
import { api } from './api.js';
import { dropEvent, loadRange, reloadEvent } from './calendar.js';
import { $, el, toast } from './dom.js';
import { bindingLabel, providerName, state } from './state.js';
import { relative, showWhen } from './time.js';

const FIELD_ORDER = ['title', 'start', 'end', 'all_day', 'time_zone', 'location', 'description', 'attendees',
  'status', 'conference', 'recurrence', 'original_start'];
const BOOKKEEPING = new Set(['sequence', 'extra', 'ical_uid']);

let refreshStatus = async () => {};
/* `hooks.refreshStatus()`: reloads the sync status after a conflict was resolved (health.js). */
export function initConflicts(hooks) {
  refreshStatus = hooks.refreshStatus;
}

function showValue(name, value) {
  if (value === null || value === undefined || value === '') return '—';
  if (name === 'start' || name === 'end' || name === 'original_start') return showWhen(value);
  if (name === 'attendees') {
    const shown = (a) => a.email + (a.response && a.response !== 'needsAction' ? ` (${a.response})` : '');
    return value.length ? value.map(shown).join(', ') : '—';
  }
  if (name === 'conference') return `${value.name || value.provider || 'conference'} ${value.join_url || ''}`.trim();
  if (name === 'all_day') return value ? 'yes' : 'no';
  if (Array.isArray(value)) return value.join(' ');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

export async function loadConflicts() {
  const data = await api('GET', '/conflicts');
  const key = JSON.stringify(data.conflicts.map((c) => [c.id, c.updated_at]));
  if (key === state.conflictsShown) return;
  state.conflictsShown = key;
  renderConflicts(data.conflicts);
}

function renderConflicts(conflicts) {
  const box = $('#conflicts');
  box.replaceChildren();
  setConflictCount(conflicts.length);
  if (!conflicts.length) {
    box.append(el('p', { class: 'empty' }, 'No open conflicts. Everything agrees.'));
    return;
  }
  for (const c of conflicts) box.append(conflictCard(c));
}

function conflictCard(c) {
  const sides = [c.base, c.local, c.remote];
  const names = new Set();
  for (const side of sides) for (const k of Object.keys(side || {})) if (!BOOKKEEPING.has(k)) names.add(k);
  const ordered = [...FIELD_ORDER.filter((n) => names.has(n)), ...[...names].filter((n) => !FIELD_ORDER.includes(n))]
    .filter((n) => !sides.every((s) => !s || s[n] === null || s[n] === undefined
      || (Array.isArray(s[n]) && !s[n].length)));
  const differing = new Set(c.differing_fields || []);
  const title = (c.local && c.local.title) || (c.remote && c.remote.title) || (c.base && c.base.title) || c.event_id;
  const remoteName = providerName(c.binding_id);
  const labels = ['Base (last agreed)', 'Here (local)', `${remoteName} (remote)`];
  const cell = (side, n, label) => {
    if (!side) return el('td', { class: 'gone', dataset: { label } }, 'deleted');
    const changed = c.base && !same(side[n], c.base[n]);
    // "changed" is said in words too (a colour alone carries nothing for some people)
    return el('td', { class: changed ? 'changed' : '', dataset: { label } },
      changed ? el('span', { class: 'visually-hidden' }, 'changed: ') : null, showValue(n, side[n]));
  };
  const rows = ordered.map((n) => el('tr', { class: differing.has(n) ? 'differs' : '', dataset: { field: n } },
    el('th', { scope: 'row' }, n.replace('_', ' '), differing.has(n) ? el('span', { class: 'differs-mark' }, ' ≠') : null),
    c.base ? el('td', { class: 'base', dataset: { label: labels[0] } }, showValue(n, c.base[n]))
      : el('td', { class: 'muted', dataset: { label: labels[0] } }, '—'),
    cell(c.local, n, labels[1]), cell(c.remote, n, labels[2])));
  const resolve = (keep) => async (ev) => {
    const card = ev.target.closest('.conflict');
    card.querySelectorAll('button').forEach((b) => { b.disabled = true; });
    try {
      // the remote side as shown: if a sync brought a newer one meanwhile, the service refuses (409)
      await api('POST', `/conflicts/${c.id}/resolve`, { keep, remote_etag: c.remote_etag || '' });
      toast(`Kept the ${keep === 'local' ? 'local' : `remote (${remoteName})`} version of “${title}”`, 'ok');
    } catch (err) {
      const changed = err.status === 409 && err.detail && err.detail.conflict;
      const message = changed
        ? `The ${remoteName} side of “${title}” changed since it was shown: nothing was kept. `
          + 'Its newest version is shown now; decide again.'
        : err.status === 409 ? 'That conflict was already resolved.' : `Could not resolve: ${err.message}`;
      toast(message, err.status === 409 ? 'warn' : 'error');
    }
    state.conflictsShown = '';
    state.writeSeq += 1;
    await Promise.allSettled([loadConflicts(), refreshStatus()]);
    const current = await reloadEvent(c.event_id);
    if (!current) dropEvent(c.event_id);
    loadRange();
  };
  const cal = state.calById.get((state.bindings.get(c.binding_id) || {}).calendar_id);
  return el('article', { class: 'conflict', dataset: { conflictId: c.id, eventId: c.event_id } },
    el('header', {},
      el('h2', {}, title),
      el('span', { class: 'kind' }, c.kind),
      el('span', { class: 'muted' }, `${cal ? cal.name : ''} · ${remoteName} · ${bindingLabel(c.binding_id)}`),
      el('span', { class: 'muted' }, ` · opened ${relative(c.created_at)}`)),
    el('p', { class: 'differs-line' }, 'Differs: ',
      el('strong', {}, (c.differing_fields || []).join(', ') || 'nothing')),
    el('table', { class: 'sides' },
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, el('span', { class: 'visually-hidden' }, 'Field')),
        labels.map((label) => el('th', { scope: 'col' }, label)))),
      el('tbody', {}, rows)),
    el('footer', {},
      el('button', { type: 'button', class: 'keep-local', onclick: resolve('local'),
        'aria-label': `Keep local version of “${title}”` }, 'Keep local'),
      el('button', { type: 'button', class: 'keep-remote primary', onclick: resolve('remote'),
        'aria-label': `Keep remote (${remoteName}) version of “${title}”` }, `Keep remote (${remoteName})`)));
}

export function setConflictCount(n) {
  const badge = $('#conflict-count');
  badge.textContent = String(n);
  badge.dataset.count = String(n);
  badge.classList.toggle('hot', n > 0);
}
