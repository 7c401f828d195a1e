/* The calendar: FullCalendar over the events of the visible range, loaded per calendar and polled, so changes
 * arriving from a provider show up without a reload. Writes carry If-Match with the event's ETag; a 412 is
 * shown to the person and the event is reloaded, never overwritten. Recurring series are expanded by
 * FullCalendar's rrule plugin (recurrence.js spells them for it). */
import { api } from './api.js';
import { $, cameraIcon, el, toast } from './dom.js';
import { recurrenceInput } from './recurrence.js';
import { setLive } from './live.js';
import { STATE_ICON, bindingLabel, colourOf, isShown, state, worstState } from './state.js';
import { addDays, isoUtc, localDate, pageLocale, showWhen } from './time.js';

const PAGE_LIMIT = 1000;       // events per request
const MAX_PAGES = 10;          // per calendar and range: bounded

let calendar = null;
export const getCalendar = () => calendar;

const appliedListeners = [];
/* `fn()` runs each time the calendar has taken a new set of events (state.events). */
export const onEventsApplied = (fn) => appliedListeners.push(fn);

function renderKey(event, exceptions) {
  const parts = [event.etag, event.calendar_id, colourOf(event.calendar_id), JSON.stringify(event.sync)];
  if (event.recurrence) parts.push(exceptions.map((x) => `${x.original_start}:${x.status}`).join(','));
  return parts.join('|');
}

function fcInputs(event, exceptions) {
  if (event.status === 'cancelled' || event.deleted) return [];
  const colour = colourOf(event.calendar_id);
  const common = {
    title: event.title || '(no title)',
    allDay: event.all_day,
    backgroundColor: colour,
    borderColor: colour,
    textColor: textOn(colour),
    classNames: [`sync-${worstState(event)}`, event.status === 'tentative' ? 'tentative' : ''].filter(Boolean),
    extendedProps: { apiId: event.id },
  };
  const recurring = event.recurrence
    ? recurrenceInput(event, exceptions.map((x) => x.original_start).filter(Boolean)) : null;
  if (!recurring) {
    return [{ ...common, id: event.id, start: event.start, end: event.end, editable: true }];
  }
  // one FullCalendar event; the rrule plugin shows its occurrences in whatever range is on screen
  return [{ ...common, id: event.id, ...recurring, editable: false, classNames: [...common.classNames, 'recurring'] }];
}

/* White or near-black text, whichever is easier to read on `colour` (WCAG relative luminance): a calendar's
 * colour is chosen by people and providers, its events' titles must stay readable on it. */
function textOn(colour) {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(colour || '');
  if (!m) return '#ffffff';
  const lin = (hex) => {
    const c = parseInt(hex, 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  const lum = 0.2126 * lin(m[1]) + 0.7152 * lin(m[2]) + 0.0722 * lin(m[3]);
  return 1.05 / (lum + 0.05) >= 4.5 ? '#ffffff' : '#1d2330';
}

/* Make the calendar show `fresh` (api id -> body), touching only events whose render key changed. */
export function applyEvents(fresh) {
  const exceptions = new Map();
  for (const e of fresh.values()) {
    if (e.recurring_event_id) {
      if (!exceptions.has(e.recurring_event_id)) exceptions.set(e.recurring_event_id, []);
      exceptions.get(e.recurring_event_id).push(e);
    }
  }
  const exceptionsOf = (id) => exceptions.get(id) || [];
  state.events = fresh; // eventContent reads it while the events are added
  calendar.batchRendering(() => {
    for (const id of [...state.rendered.keys()]) {
      if (!fresh.has(id)) removeRendered(id);
    }
    for (const event of fresh.values()) {
      const key = renderKey(event, exceptionsOf(event.id));
      if (state.rendered.get(event.id) === key) continue;
      removeRendered(event.id);
      state.fcEvents.set(event.id, fcInputs(event, exceptionsOf(event.id)).map((input) => calendar.addEvent(input)));
      state.rendered.set(event.id, key);
    }
  });
  for (const fn of appliedListeners) fn();
}

function removeRendered(id) {
  for (const fc of state.fcEvents.get(id) || []) fc.remove();
  state.fcEvents.delete(id);
  state.rendered.delete(id);
}

/* FullCalendar expands a series for the range on screen when it is added, and again when the view or date
 * changes, but not on every change of range (changeView with a range, setOption('visibleRange') keep the
 * old expansion): series are added again for each new range. */
function expandSeriesAgain() {
  const series = [...state.events.values()].filter((e) => e.recurrence && state.rendered.has(e.id));
  if (!series.length) return;
  for (const e of series) state.rendered.delete(e.id);
  applyEvents(state.events);
}

/* One event changed (our own write, or a reload): show it now, without waiting for the poll. */
export function upsertEvent(body) {
  const fresh = new Map(state.events);
  if (body && !body.deleted && isShown(body.calendar_id)) fresh.set(body.id, body);
  applyEvents(fresh);
}

export function dropEvent(id) {
  const fresh = new Map(state.events);
  fresh.delete(id);
  applyEvents(fresh);
}

export async function reloadEvent(id) {
  try {
    const body = await api('GET', `/events/${id}`);
    upsertEvent(body);
    return body;
  } catch (err) {
    if (err.status === 404) dropEvent(id);
    return null;
  }
}

async function fetchRange(calendarId, range) {
  const out = [];
  let cursor = null;
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const q = new URLSearchParams({ calendar_id: calendarId, start: range.start, end: range.end, limit: PAGE_LIMIT });
    if (cursor) q.set('cursor', cursor);
    const data = await api('GET', `/events?${q}`);
    out.push(...data.events);
    cursor = data.next_cursor;
    if (!cursor) break;
  }
  return out;
}

export async function loadRange() {
  if (!state.range || !calendar) return;
  const range = state.range;
  const rangeSeq = state.rangeSeq;
  const writeSeq = state.writeSeq;
  state.loading = true;
  try {
    const shown = state.calendars.filter((c) => isShown(c.id));
    const lists = await Promise.all(shown.map((c) => fetchRange(c.id, range)));
    if (rangeSeq !== state.rangeSeq || writeSeq !== state.writeSeq || state.dragging) return; // stale answer
    const fresh = new Map();
    for (const e of lists.flat()) fresh.set(e.id, e);
    applyEvents(fresh);
    setLive(true);
  } catch (err) {
    setLive(false, err.message);
  } finally {
    state.loading = false;
  }
}

function eventContent(arg) {
  const event = state.events.get(arg.event.extendedProps.apiId);
  if (!event) return { domNodes: [el('div', { class: 'ev' }, arg.event.title)] };
  const badges = el('span', { class: 'ev-badges' },
    (event.sync || []).map((s) => el('span', {
      class: `badge state-${s.state}`, title: `${bindingLabel(s.binding_id)}: ${s.state}`,
      role: 'img', 'aria-label': `${s.state} (${bindingLabel(s.binding_id)})`,
      dataset: { state: s.state, bindingId: s.binding_id },
    }, STATE_ICON[s.state] || '?')));
  const conference = event.conference ? cameraIcon(event.conference.name || 'conference') : null;
  const time = arg.timeText ? el('span', { class: 'ev-time' }, arg.timeText) : null;
  const repeat = event.recurrence ? el('span', { role: 'img', 'aria-label': 'repeats', title: 'repeats' }, '⟳ ') : null;
  // the list view draws rows, not links: there the title is a button, so the keyboard reaches it (its click
  // reaches FullCalendar's eventClick like any click on the row)
  const name = arg.view.type.startsWith('list')
    ? el('button', { type: 'button', class: 'ev-link' }, arg.event.title) : arg.event.title;
  const title = el('span', { class: 'ev-title' }, conference, repeat, name);
  return { domNodes: [el('div', { class: 'ev' }, el('div', { class: 'ev-top' }, time, badges), title)] };
}

function eventDidMount(arg) {
  const event = state.events.get(arg.event.extendedProps.apiId);
  const fc = arg.event;
  arg.el.dataset.eventId = fc.extendedProps.apiId;
  arg.el.dataset.title = fc.title;
  // this occurrence's times as the API spells them (an all-day end is exclusive)
  arg.el.dataset.start = fc.allDay ? localDate(fc.start) : isoUtc(fc.start);
  if (fc.end) arg.el.dataset.end = fc.allDay ? localDate(fc.end) : isoUtc(fc.end);
  if (event) {
    arg.el.dataset.syncState = worstState(event);
    const lines = [event.title, showWhen(event.start)];
    if (event.location) lines.push(event.location);
    if (event.conference) lines.push(`${event.conference.name || 'Conference'}: ${event.conference.join_url || ''}`);
    for (const s of event.sync || []) lines.push(`${bindingLabel(s.binding_id)}: ${s.state}`);
    arg.el.title = lines.join('\n');
  }
}

/* Drag or resize: a PATCH of the new times with If-Match; a 412 puts the event back and reloads it. */
async function moveEvent(info) {
  const id = info.event.extendedProps.apiId;
  const event = state.events.get(id);
  if (!event) { info.revert(); return; }
  const fc = info.event;
  const changes = {};
  if (fc.allDay) {
    const start = localDate(fc.start);
    changes.start = start;
    changes.end = fc.end ? localDate(fc.end) : addDays(start, 1);
    changes.all_day = true;
  } else {
    const start = fc.start;
    const previous = event.all_day ? 3600000 : Date.parse(event.end) - Date.parse(event.start);
    const end = fc.end || new Date(start.getTime() + previous);
    changes.start = isoUtc(start);
    changes.end = isoUtc(end);
    if (event.all_day) changes.all_day = false;
  }
  state.writeSeq += 1;
  try {
    const body = await api('PATCH', `/events/${id}`, changes, { 'If-Match': event.etag });
    upsertEvent(body);
    toast(`Moved “${body.title}” to ${showWhen(body.start)}`, 'ok');
  } catch (err) {
    info.revert();
    if (err.status === 412) {
      toast(`“${event.title}” was changed somewhere else (it is now at version ${err.detail.version}), so your `
        + 'move was not saved. The calendar now shows the current version; move it again if you still want to.',
      'warn', 12000);
      await reloadEvent(id);
    } else {
      toast(`Could not move “${event.title}”: ${err.message}`, 'error');
    }
  }
}

/* A few repairs of FullCalendar's markup for assistive technology, made again whenever it draws:
 *  - its scrolling areas can hold more than they show: each that does is reachable by keyboard, so the arrow
 *    keys scroll it;
 *  - its chevron icons are role="img" without a name inside buttons that have one: hidden from the tree;
 *  - "+n more" links carry aria-expanded, which needs the role of a button (they act as one);
 *  - month cells are named by their day number alone (aria-labelledby), hiding the events they hold. */
function repairMarkup() {
  const root = $('#calendar');
  if (!root) return;
  for (const node of root.querySelectorAll('.fc-scroller')) {
    // (only when nothing in it takes the focus: a focusable box inside FullCalendar's grid roles is itself a
    // flaw, so a scroller holding events, which are focusable, is reached through them)
    const scrolls = node.scrollHeight > node.clientHeight + 1 || node.scrollWidth > node.clientWidth + 1;
    const needs = scrolls && !node.querySelector('a[href], [tabindex="0"], button');
    if (needs && node.tabIndex !== 0) node.tabIndex = 0;
    if (!needs && node.hasAttribute('tabindex')) node.removeAttribute('tabindex');
  }
  for (const icon of root.querySelectorAll('.fc-icon[role=img]:not([aria-hidden])')) icon.setAttribute('aria-hidden', 'true');
  for (const link of root.querySelectorAll('.fc-more-link:not([role])')) link.setAttribute('role', 'button');
  for (const cell of root.querySelectorAll('td.fc-daygrid-day[aria-labelledby]')) cell.removeAttribute('aria-labelledby');
}

let repairQueued = false;
function queueRepair() {
  if (repairQueued) return;
  repairQueued = true;
  requestAnimationFrame(() => { repairQueued = false; repairMarkup(); });
}

export const NARROW = '(max-width: 700px)';

/* Column headings: "Mon 7/12" where there is room, "M 7" on a phone (seven columns in 360 px); the month's
 * columns are weekdays, not dates ("Mon", "M"). */
function dayHeaders(narrow) {
  const locale = pageLocale();
  const formats = {
    month: new Intl.DateTimeFormat(locale, { weekday: narrow ? 'narrow' : 'short' }),
    day: new Intl.DateTimeFormat(locale, narrow ? { weekday: 'narrow', day: 'numeric' }
      : { weekday: 'short', day: 'numeric', month: 'numeric' }),
  };
  return (arg) => (arg.view.type === 'dayGridMonth' ? formats.month : formats.day).format(arg.date);
}

/* `onSelect(info)`: an empty slot was picked (or New event pressed: info has no jsEvent); `onOpen(apiId)`: an
 * event was clicked or chosen with Enter. */
export function makeCalendar({ onSelect, onOpen }) {
  const narrow = window.matchMedia(NARROW).matches;
  calendar = new FullCalendar.Calendar($('#calendar'), {
    initialView: narrow ? 'listWeek' : 'timeGridWeek',
    headerToolbar: narrow
      ? { left: 'prev,next', center: 'title', right: 'newEvent' }
      : { left: 'prev,next today newEvent', center: 'title', right: 'dayGridMonth,timeGridWeek,timeGridDay,listWeek' },
    footerToolbar: narrow ? { left: 'today', right: 'dayGridMonth,timeGridWeek,timeGridDay,listWeek' } : false,
    customButtons: {
      newEvent: {
        text: 'New event',
        hint: 'New event (at the next full hour)',
        click: () => onSelect(nextHourSlot()),
      },
    },
    buttonText: { today: 'Today', month: 'Month', week: 'Week', day: 'Day', list: 'List' },
    buttonHints: { prev: 'Previous $0', next: 'Next $0', today: 'This $0' },
    locale: pageLocale(),
    dayHeaderContent: dayHeaders(narrow),
    height: '100%',
    firstDay: 1,
    nowIndicator: true,
    selectable: true,
    selectMirror: true,
    unselectAuto: false,
    editable: true,
    eventResizableFromStart: false,
    dayMaxEvents: true,        // month: as many as fit, then "+n more" (a popover)
    moreLinkClick: 'popover',
    slotEventOverlap: false,   // week and day: events side by side, never lying over each other
    eventMaxStack: 3,          // more than three at once: "+n" opens the rest in a popover
    eventInteractive: true,    // every event is a focusable control: Enter opens it
    scrollTime: '08:00:00',
    slotDuration: '00:30:00',
    eventTimeFormat: { hour: '2-digit', minute: '2-digit' },
    slotLabelFormat: { hour: '2-digit', minute: '2-digit' },
    eventDisplay: 'block',
    datesSet(info) {
      state.range = { start: isoUtc(info.start), end: isoUtc(info.end) };
      state.rangeSeq += 1;
      expandSeriesAgain();
      loadRange();
      queueRepair();
    },
    windowResize() {
      queueRepair();
      // crossing the phone width (not any resize: a phone's address bar resizes the window as it scrolls):
      // a window turned narrow gets the list, one turned wide again its week back
      const small = window.matchMedia(NARROW).matches;
      if (small === state.narrow) return;
      state.narrow = small;
      const type = calendar.view.type;
      if (small && type === 'timeGridWeek') { calendar.changeView('listWeek'); state.autoList = true; }
      if (!small && type === 'listWeek' && state.autoList) calendar.changeView('timeGridWeek');
      if (!small) state.autoList = false;
      calendar.setOption('dayHeaderContent', dayHeaders(small));
    },
    select: onSelect,
    eventClick(info) {
      info.jsEvent.preventDefault();
      onOpen(info.event.extendedProps.apiId);
    },
    eventDragStart() { state.dragging = true; },
    eventDragStop() { state.dragging = false; },
    eventResizeStart() { state.dragging = true; },
    eventResizeStop() { state.dragging = false; },
    eventDrop: moveEvent,
    eventResize: moveEvent,
    eventContent,
    eventDidMount,
  });
  state.narrow = narrow;
  state.autoList = narrow;
  calendar.render();
  new MutationObserver(queueRepair).observe($('#calendar'), { childList: true, subtree: true });
  queueRepair();
}

/* A one-hour slot at the next full hour, for New event (where FullCalendar's select gives the picked slot). */
function nextHourSlot() {
  const start = new Date();
  start.setMinutes(0, 0, 0);
  start.setHours(start.getHours() + 1);
  const range = state.range;
  if (range && (start < new Date(range.start) || start >= new Date(range.end))) {
    const first = new Date(range.start);
    start.setTime(first.getTime());
    start.setHours(9, 0, 0, 0);
  }
  return { start, end: new Date(start.getTime() + 3600000), allDay: false, view: calendar.view };
}
