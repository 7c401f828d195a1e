/* The event dialog's history: the event's kept versions, newest first (GET /events/{id}/history): who
 * made each change (an API key, the web user, the CLI, or a binding with the copy's ETag), when, and each
 * changed field from -> to; a Restore button per earlier version (POST /events/{id}/restore, If-Match).
 * Text from outside (titles, names, authors) only ever becomes text nodes (dom.js's el). */
import { api } from './api.js';
import { upsertEvent } from './calendar.js';
import { $, el, toast } from './dom.js';
import { state } from './state.js';

const LIMIT = 50;
const KIND = {
  created: 'created', updated: 'changed', deleted: 'deleted', undeleted: 'undeleted',
  'conference-changed': 'conference changed', 'conflict-opened': 'conflict opened',
  'conflict-resolved': 'conflict resolved',
};

/* A field's value as a person reads it (attendees by address, lists joined). */
function shown(value) {
  if (value === null || value === undefined || value === '') return '(none)';
  if (Array.isArray(value)) {
    const items = value.map((v) => (v && typeof v === 'object' ? v.email || JSON.stringify(v) : String(v)));
    return items.length ? items.join(', ') : '(none)';
  }
  if (typeof value === 'object') return value.name || value.provider || JSON.stringify(value);
  return String(value);
}

function when(at) {
  const date = at ? new Date(at) : null;
  return date && !Number.isNaN(date.getTime()) ? date.toLocaleString() : '';
}

/* `hooks.restored(body)`: show the event's new version in the dialog; `hooks.failed(err, what)`: the
 * dialog's handling of a refused write (412: the current version reloaded). */
export async function renderHistory(event, hooks) {
  const section = $('#history-section');
  const list = $('#history-list');
  const d = state.dialog;
  if (!section || !list) return;
  if (!d || d.mode !== 'edit') {
    section.hidden = true;
    list.replaceChildren();
    return;
  }
  section.hidden = false;
  list.replaceChildren(el('li', { class: 'muted' }, 'Loading…'));
  let body;
  try {
    body = await api('GET', `/events/${encodeURIComponent(event.id)}/history?limit=${LIMIT}`);
  } catch (err) {
    if (state.dialog === d) list.replaceChildren(el('li', { class: 'muted' }, `The history could not be read: ${err.message}`));
    return;
  }
  if (state.dialog !== d || d.original.id !== event.id) return;
  const restoreOffered = new Set();  // one button a version, on its content change
  list.replaceChildren(...body.entries.map((entry) => {
    const offer = entry.version !== event.version && !entry.kind.startsWith('conflict-')
      && entry.kind !== 'deleted' && !restoreOffered.has(entry.version);
    if (offer) restoreOffered.add(entry.version);
    return entryItem(entry, offer, hooks);
  }));
  if (body.next_cursor) list.append(el('li', { class: 'muted small' }, `Only the newest ${LIMIT} changes are shown.`));
}

function entryItem(entry, offerRestore, hooks) {
  const changes = Object.entries(entry.changes || {}).map(([name, change]) => el('li', { class: 'history-change' },
    el('span', { class: 'history-field' }, name), ': ', el('del', {}, shown(change.from)), ' → ',
    el('ins', {}, shown(change.to))));
  const notes = [];
  if (entry.restored_from) notes.push(`restored from version ${entry.restored_from}`);
  if (!changes.length && entry.fields && entry.fields.length) notes.push(entry.fields.join(', '));
  return el('li', { class: 'history-entry', dataset: { version: String(entry.version), kind: entry.kind } },
    el('div', { class: 'history-head' },
      el('strong', {}, `v${entry.version}`), ' ',
      el('span', { class: 'history-kind' }, KIND[entry.kind] || entry.kind), ' by ',
      el('span', { class: 'history-author' }, entry.author),
      el('span', { class: 'muted small' }, ` · ${when(entry.at)}`),
      entry.remote_etag ? el('span', { class: 'muted small history-etag' }, ` · ETag ${entry.remote_etag}`) : null,
      notes.length ? el('span', { class: 'muted small' }, ` · ${notes.join('; ')}`) : null,
      offerRestore ? el('button', { type: 'button', class: 'small history-restore',
        'aria-label': `Restore version ${entry.version}`,
        onclick: (ev) => restore(entry.version, ev.currentTarget, hooks) }, 'Restore') : null),
    changes.length ? el('ul', { class: 'history-changes small' }, changes) : null);
}

async function restore(version, button, hooks) {
  const d = state.dialog;
  if (!d || d.mode !== 'edit') return;
  const was = d.original.version;
  button.disabled = true;
  state.writeSeq += 1;
  try {
    const body = await api('POST', `/events/${encodeURIComponent(d.original.id)}/restore`, { version },
      { 'If-Match': d.original.etag });
    upsertEvent(body);
    if (state.dialog === d) hooks.restored(body);
    toast(body.version === was ? `Version ${version} is what the event holds already`
      : `Restored version ${version} of “${body.title}” as version ${body.version}`, 'ok');
  } catch (err) {
    button.disabled = false;
    await hooks.failed(err, `Version ${version} was not restored`);
  }
}
