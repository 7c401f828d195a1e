/* The sidebar's calendar list: one switch per local calendar, remembered in localStorage. */
import { api } from './api.js';
import { applyEvents, loadRange } from './calendar.js';
import { $, el } from './dom.js';
import { colourOf, isShown, setShown, state } from './state.js';

export async function loadCalendars() {
  const data = await api('GET', '/calendars');
  state.calendars = data.calendars;
  state.calById = new Map(data.calendars.map((c) => [c.id, c]));
  state.bindings = new Map();
  for (const c of data.calendars) {
    for (const b of c.bindings) state.bindings.set(b.id, { ...b, calendar_id: c.id });
  }
  renderCalendarList();
}

export function renderCalendarList() {
  const list = $('#calendar-list');
  list.replaceChildren();
  if (!state.calendars.length) {
    list.append(el('li', { class: 'muted' }, 'No calendars yet: bind one with `calsync calendar bind`.'));
    return;
  }
  for (const cal of state.calendars) {
    const accounts = [...new Set(cal.bindings.map((b) => (state.accounts.get(b.account_id) || {}).name)
      .filter(Boolean))].join(', ');
    const box = el('input', { type: 'checkbox', checked: isShown(cal.id), 'aria-label': `show ${cal.name}`,
      onchange: (ev) => toggleCalendar(cal.id, ev.target.checked) });
    list.append(el('li', { class: 'calendar-item', dataset: { calendarId: cal.id } },
      el('label', {},
        box,
        el('span', { class: 'swatch', style: `--c: ${colourOf(cal.id)}` }),
        el('span', { class: 'cal-name' }, cal.name,
          el('span', { class: 'cal-meta' }, `${cal.event_count} events${accounts ? ` · ${accounts}` : ''}`)))));
  }
}

function toggleCalendar(calendarId, on) {
  setShown(calendarId, on);
  const kept = new Map([...state.events].filter(([, e]) => isShown(e.calendar_id)));
  applyEvents(kept);
  loadRange();
}
