/* The event dialog's form: its times, attendees, sync and message lines, and what a person changed in it. */
import { $, el } from './dom.js';
import { STATE_ICON, bindingLabel, providerName, state } from './state.js';
import { addDays, dateOnly, isoUtc, localDate, localInput, parseBoundary } from './time.js';

export function showDialogMessage(text, kind = 'warn') {
  const box = $('#dialog-message');
  box.textContent = text;
  box.className = `dialog-message ${kind}`;
  box.hidden = !text;
}

/* The event's sync state per binding (read-only). */
export function renderSync(event) {
  const view = $('#sync-view');
  view.replaceChildren();
  if (state.dialog.mode === 'create') {
    view.append(el('span', { class: 'muted' }, 'Queued for every binding of the calendar when you save.'));
    return;
  }
  if (!(event.sync || []).length) view.append(el('span', { class: 'muted' }, 'Not bound to any remote calendar.'));
  for (const s of event.sync || []) {
    view.append(el('div', { class: 'sync-line', dataset: { bindingId: s.binding_id, state: s.state } },
      el('span', { class: `badge state-${s.state}` }, STATE_ICON[s.state] || '?'),
      el('span', { class: 'sync-state' }, s.state),
      el('span', { class: 'muted' }, ` · ${providerName(s.binding_id)} · ${bindingLabel(s.binding_id)}`)));
  }
}

export function setTimeInputs(allDay, start, end) {
  const s = $('#event-start');
  const e = $('#event-end');
  s.type = allDay ? 'date' : 'datetime-local';
  e.type = allDay ? 'date' : 'datetime-local';
  if (allDay) {
    s.value = dateOnly(start) ? start : localDate(parseBoundary(start));
    // the API's all-day end is exclusive; people think of the last day
    const endDay = dateOnly(end) ? end : localDate(parseBoundary(end));
    e.value = addDays(endDay, -1) < s.value ? s.value : addDays(endDay, -1);
  } else {
    s.value = localInput(parseBoundary(start));
    e.value = localInput(parseBoundary(end));
  }
}

/* The all-day box switches the time inputs between dates and times of the same days. */
export function wireAllDay() {
  $('#event-all-day').addEventListener('change', (ev) => {
    const allDay = ev.target.checked;
    const s = $('#event-start').value;
    const e = $('#event-end').value;
    if (allDay) {
      setTimeInputs(true, s.slice(0, 10), addDays(e.slice(0, 10), 1));
    } else {
      const day = s.slice(0, 10);
      setTimeInputs(false, isoUtc(new Date(`${day}T09:00`)), isoUtc(new Date(`${day}T10:00`)));
    }
  });
}

export function readTimes() {
  const allDay = $('#event-all-day').checked;
  const s = $('#event-start').value;
  const e = $('#event-end').value;
  if (!s || !e) throw new Error('start and end are required');
  if (allDay) return { all_day: true, start: s.slice(0, 10), end: addDays(e.slice(0, 10), 1) };
  const start = new Date(s);
  const end = new Date(e);
  if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime())) throw new Error('start or end is not a time');
  return { all_day: false, start: isoUtc(start), end: isoUtc(end) };
}

export function parseAttendees(text, previous) {
  const known = new Map((previous || []).map((a) => [a.email.toLowerCase(), a]));
  const emails = text.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
  const seen = new Set();
  const out = [];
  for (const email of emails) {
    if (seen.has(email.toLowerCase())) continue;
    seen.add(email.toLowerCase());
    const old = known.get(email.toLowerCase());
    out.push(old
      ? { email: old.email, name: old.name ?? null, optional: !!old.optional, response: old.response || 'needsAction' }
      : { email, name: null, optional: false, response: 'needsAction' });
  }
  return out;
}

const sameAttendees = (a, b) => JSON.stringify((a || []).map((x) => x.email.toLowerCase()))
  === JSON.stringify((b || []).map((x) => x.email.toLowerCase()));

/* The fields of the form that differ from `original`, as a PATCH body. */
export function formChanges(original) {
  const changes = {};
  const title = $('#event-title').value.trim();
  if (title !== (original.title || '')) changes.title = title;
  const times = readTimes();
  if (times.all_day !== !!original.all_day) changes.all_day = times.all_day;
  const sameInstant = (a, b) => (dateOnly(a) || dateOnly(b) ? a === b : Date.parse(a) === Date.parse(b));
  if (!sameInstant(times.start, original.start) || changes.all_day !== undefined) changes.start = times.start;
  if (!sameInstant(times.end, original.end) || changes.all_day !== undefined) changes.end = times.end;
  const location = $('#event-location').value;
  if (location !== (original.location || '')) changes.location = location;
  const description = $('#event-description').value;
  if (description !== (original.description || '')) changes.description = description;
  const attendees = parseAttendees($('#event-attendees').value, original.attendees);
  if (!sameAttendees(attendees, original.attendees)) changes.attendees = attendees;
  return changes;
}
