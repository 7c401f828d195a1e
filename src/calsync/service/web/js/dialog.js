/* The event dialog: create (from an empty slot) and edit (from a click on an event), delete with a second
 * click. Saves carry If-Match; a 412 keeps the dialog open with the current version reloaded into it. */
import { api } from './api.js';
import { dropEvent, getCalendar, reloadEvent, upsertEvent } from './calendar.js';
import { renderConference } from './conference.js';
import { renderHistory } from './history.js';
import { $, el, toast } from './dom.js';
import {
  formChanges, parseAttendees, readTimes, renderSync, setTimeInputs, showDialogMessage, wireAllDay,
} from './form.js';
import { colourOf, isShown, state } from './state.js';
import { addDays, isoUtc, localDate, showInZone, viewerZone } from './time.js';

const dialog = () => $('#event-dialog');
let opener = null;  // what had the focus when the dialog opened: it gets it back when the dialog closes
let openerEvent = null;  // the event it belonged to (FullCalendar may have drawn that event anew meanwhile)

/* The dialog is modal (showModal makes the rest of the page inert); Tab and Shift+Tab cycle inside it and
 * closing it gives the focus back to where it was (or to the event it was opened for). */
function showDialog(eventId = null, from = document.activeElement) {
  opener = from && from !== document.body ? from : null;
  const fc = opener && opener.closest('.fc-event[data-event-id]');
  openerEvent = eventId || (fc ? fc.dataset.eventId : null);
  dialog().showModal();
}

function focusables() {
  return [...dialog().querySelectorAll('button, [href], input, select, textarea, [tabindex]:not([tabindex="-1"])')]
    .filter((node) => !node.disabled && !node.closest('[hidden]') && node.getClientRects().length);
}

function trapTab(ev) {
  if (ev.key !== 'Tab') return;
  const nodes = focusables();
  if (!nodes.length) return;
  const first = nodes[0];
  const last = nodes[nodes.length - 1];
  if (ev.shiftKey && (document.activeElement === first || !dialog().contains(document.activeElement))) {
    ev.preventDefault();
    last.focus();
  } else if (!ev.shiftKey && (document.activeElement === last || !dialog().contains(document.activeElement))) {
    ev.preventDefault();
    first.focus();
  }
}

/* The focusable part of an event on the calendar (the event itself, or its title button in the list view). */
function eventControl(eventId) {
  const node = eventId && document.querySelector(`.fc-event[data-event-id="${CSS.escape(eventId)}"]`);
  if (!node) return null;
  return node.matches('a[href], button, [tabindex]') ? node : node.querySelector('a[href], button, [tabindex]');
}

function returnFocus() {
  const eventId = openerEvent;
  const previous = opener;
  openerEvent = null;
  opener = null;
  const target = (previous && previous.isConnected ? previous : null) || eventControl(eventId)
    || document.querySelector('.fc-newEvent-button') || document.body;
  target.focus();
  if (!eventId) return;
  // a save redraws the event a moment later: the focus follows it to its new element
  setTimeout(() => {
    const active = document.activeElement;
    if (!active || active === document.body || !active.isConnected || !active.closest('.fc-event, #event-dialog')) {
      const control = eventControl(eventId);
      if (control) control.focus();
    }
  }, 300);
}

/* The event's own time zone, when it is not the viewer's: its times there (the form shows the viewer's). */
function showZone(event) {
  const note = $('#zone-note');
  const zone = event.time_zone;
  const mine = viewerZone();
  if (event.all_day || !zone || zone === mine || !event.start || !event.end) {
    note.hidden = true;
    note.textContent = '';
    return;
  }
  let there;
  try {
    there = showInZone(event.start, event.end, zone);
  } catch {
    note.hidden = true;
    return;
  }
  note.hidden = false;
  note.textContent = `Times are shown in your time zone (${mine}). This event was made in ${zone}: ${there} there.`;
}

function fillForm(event, { keepMessage = false } = {}) {
  const creating = state.dialog.mode === 'create';
  if (!keepMessage) showDialogMessage('');
  $('#dialog-title').textContent = creating ? 'New event' : 'Edit event';
  $('#field-calendar').hidden = !creating;
  $('#calendar-line').hidden = creating;
  $('#event-delete').hidden = creating;
  if (creating) {
    const select = $('#event-calendar');
    select.replaceChildren(...state.calendars.filter((c) => isShown(c.id) || c.id === event.calendar_id)
      .map((c) => el('option', { value: c.id, selected: c.id === event.calendar_id }, c.name)));
  } else {
    const cal = state.calById.get(event.calendar_id);
    $('#calendar-line').replaceChildren(el('span', { class: 'swatch', style: `--c: ${colourOf(event.calendar_id)}` }),
      cal ? cal.name : event.calendar_id, el('span', { class: 'muted' }, ` · version ${event.version}`));
  }
  $('#event-title').value = event.title || '';
  $('#event-all-day').checked = !!event.all_day;
  setTimeInputs(!!event.all_day, event.start, event.end);
  $('#event-location').value = event.location || '';
  $('#event-description').value = event.description || '';
  $('#event-attendees').value = (event.attendees || []).map((a) => a.email).join('\n');
  const note = $('#recurring-note');
  note.hidden = !event.recurrence && !event.recurring_event_id;
  note.textContent = event.recurrence
    ? `A recurring series (${event.recurrence.join(' ')}): changes apply to every occurrence; `
      + 'the times are those of the first.'
    : event.recurring_event_id ? 'One occurrence of a recurring series, changed on its own.' : '';
  showZone(event);
  renderConference(event, writeFailed);
  renderSync(event);
  renderHistory(event, { restored: showRestored, failed: writeFailed });
}

/* A version restored from the history: the dialog shows the event's new version. */
function showRestored(body) {
  if (!state.dialog) return;
  state.dialog.original = body;
  fillForm(body);
}

/* An empty slot was picked on the calendar (FullCalendar's `select`). */
export function openCreate(info) {
  const view = info.view.type;
  let start;
  let end;
  let allDay = info.allDay;
  if (allDay && view === 'dayGridMonth' && addDays(localDate(info.start), 1) === localDate(info.end)) {
    start = new Date(info.start); start.setHours(9, 0, 0, 0);
    end = new Date(info.start); end.setHours(10, 0, 0, 0);
    allDay = false;
  } else {
    start = info.start;
    end = info.end;
    if (!allDay && end - start <= 30 * 60000) end = new Date(start.getTime() + 3600000); // a click: one hour
  }
  const firstShown = state.calendars.find((c) => isShown(c.id)) || state.calendars[0];
  if (!firstShown) { toast('There is no calendar to add an event to.', 'error'); return; }
  const draft = {
    calendar_id: firstShown.id, title: '', all_day: allDay, description: '', location: '', attendees: [],
    start: allDay ? localDate(start) : isoUtc(start), end: allDay ? localDate(end) : isoUtc(end), conference: null,
  };
  state.dialog = { mode: 'create', original: draft };
  fillForm(draft);
  showDialog();
  $('#event-title').focus();
}

/* An event was clicked: edit its current version (fetched again, so the ETag is fresh). */
export async function openEdit(id) {
  const from = document.activeElement;  // (a poll may redraw the event while it is fetched)
  let event = state.events.get(id);
  try {
    event = await api('GET', `/events/${id}`);
    upsertEvent(event);
  } catch (err) {
    if (err.status === 404) { dropEvent(id); toast('That event was deleted meanwhile.', 'warn'); return; }
    if (!event) { toast(err.message, 'error'); return; }
  }
  state.dialog = { mode: 'edit', original: event };
  fillForm(event);
  showDialog(id, from);
  $('#event-title').focus();
}

function closeDialog() {
  state.dialog = null;
  if (dialog().open) dialog().close();
  const calendar = getCalendar();
  if (calendar) calendar.unselect();
}

async function saveDialog(ev) {
  ev.preventDefault();
  const d = state.dialog;
  if (!d) return;
  let changes;
  try {
    changes = formChanges(d.original);
  } catch (err) {
    showDialogMessage(err.message, 'error');
    return;
  }
  const button = $('#event-save');
  button.disabled = true;
  state.writeSeq += 1;
  try {
    if (d.mode === 'create') {
      const times = readTimes();
      const provider = ($('#conference-provider') || {}).value || '';
      let body = await api('POST', '/events', {
        calendar_id: $('#event-calendar').value, title: $('#event-title').value.trim(), ...times,
        location: $('#event-location').value || null, description: $('#event-description').value || null,
        attendees: parseAttendees($('#event-attendees').value, []),
      });
      upsertEvent(body);
      if (provider) {
        try {
          body = await api('POST', `/events/${body.id}/conference`, { provider });
          upsertEvent(body);
        } catch (err) {
          toast(`The event was created, but its conference was not: ${err.message}`, 'error');
        }
      }
      closeDialog();
      toast(`Created “${body.title}”`, 'ok');
      return;
    }
    if (!Object.keys(changes).length) { closeDialog(); return; }
    const body = await api('PATCH', `/events/${d.original.id}`, changes, { 'If-Match': d.original.etag });
    upsertEvent(body);
    closeDialog();
    toast(`Saved “${body.title}”`, 'ok');
  } catch (err) {
    await writeFailed(err, 'Nothing was saved');
  } finally {
    button.disabled = false;
  }
}

/* A 412 in the dialog: say so, reload the event into the form, keep the dialog open. */
async function writeFailed(err, what) {
  const d = state.dialog;
  if (err.status === 412 && d && d.mode === 'edit') {
    const current = await reloadEvent(d.original.id);
    if (!current) {
      showDialogMessage('This event was deleted somewhere else while you were editing it. ' + what + '.', 'error');
      return;
    }
    d.original = current;
    fillForm(current, { keepMessage: true });
    showDialogMessage(`This event was changed somewhere else while you were editing it (it is now at version `
      + `${current.version}). ${what}: the form now shows the current version, so make your change again.`, 'warn');
    return;
  }
  if (err.status === 404 && d && d.mode === 'edit') {
    dropEvent(d.original.id);
    showDialogMessage(`This event no longer exists. ${what}.`, 'error');
    return;
  }
  showDialogMessage(`${what}: ${err.message}`, 'error');
}

async function deleteEvent() {
  const d = state.dialog;
  if (!d || d.mode !== 'edit') return;
  const button = $('#event-delete');
  if (button.dataset.confirm !== 'yes') {
    button.dataset.confirm = 'yes';
    button.textContent = 'Really delete?';
    setTimeout(() => { button.dataset.confirm = ''; button.textContent = 'Delete'; }, 4000);
    return;
  }
  button.dataset.confirm = '';
  button.textContent = 'Delete';
  state.writeSeq += 1;
  try {
    await api('DELETE', `/events/${d.original.id}`, undefined, { 'If-Match': d.original.etag });
    dropEvent(d.original.id);
    toast(`Deleted “${d.original.title}”`, 'ok');
    closeDialog();
  } catch (err) {
    await writeFailed(err, 'It was not deleted');
  }
}

export function wireDialog() {
  $('#event-form').addEventListener('submit', saveDialog);
  for (const b of document.querySelectorAll('#event-dialog [data-action=close]')) {
    b.addEventListener('click', closeDialog);
  }
  $('#event-delete').addEventListener('click', deleteEvent);
  dialog().addEventListener('keydown', trapTab);
  dialog().addEventListener('close', () => {
    state.dialog = null;
    const calendar = getCalendar();
    if (calendar) calendar.unselect();
    returnFocus();
  });
  wireAllDay();
}
