/* calsync web page: a calendar over the REST API (/api/v1), plain JS, no build step.
 *
 * Events are loaded per visible range and calendar, and the visible range is polled every few seconds,
 * so changes arriving from a provider show up without a reload. Writes carry If-Match with the event's
 * ETag; a 412 is shown to the person and the event is reloaded, never overwritten. */
(() => {
  'use strict';

  const API = '/api/v1';
  const POLL_MS = 2500;          // sync status (and conflicts when they change)
  const EVENTS_MS = 2000;        // the visible range
  const CALENDARS_MS = 15000;    // calendar list (names, counts)
  const PAGE_LIMIT = 1000;       // events per request
  const MAX_PAGES = 10;          // per calendar and range: bounded
  const PALETTE = ['#3b6fd8', '#d9772b', '#2e9d62', '#9b4dca', '#c2417a', '#1f8f9e', '#8a6d1f'];
  const STATE_ICON = { synced: '✓', pending: '↻', conflict: '!', error: '✕', 'local-only': '•' };
  const STATE_RANK = { conflict: 4, error: 3, pending: 2, 'local-only': 1, synced: 0 };
  const FIELD_ORDER = ['title', 'start', 'end', 'all_day', 'time_zone', 'location', 'description', 'attendees',
    'status', 'conference', 'recurrence', 'original_start'];
  const BOOKKEEPING = new Set(['sequence', 'extra', 'ical_uid']);

  const state = {
    calendars: [],
    calById: new Map(),
    bindings: new Map(),      // binding id -> {calendar, account_id, remote_calendar_id, direction}
    accounts: new Map(),      // account id -> account (from /status)
    hidden: new Set(JSON.parse(localStorage.getItem('calsync.hidden') || '[]')), // calendars switched off
    events: new Map(),        // api event id -> api body (visible range, shown calendars)
    rendered: new Map(),      // api event id -> render key
    fcEvents: new Map(),      // api event id -> [FullCalendar EventApi]
    range: null,
    rangeSeq: 0,
    writeSeq: 0,
    loading: false,
    dragging: false,
    providers: [],
    demo: null,
    status: null,
    conflictCount: -1,
    conflictsShown: '',
    tab: 'calendar',
    dialog: null,              // {mode: 'create'|'edit', original}
    arrival: null,             // a demo change we are waiting to see arrive
    failures: 0,
  };
  const hidden = state.hidden;
  const isShown = (calendarId) => !hidden.has(calendarId);

  const $ = (sel, root = document) => root.querySelector(sel);

  function el(tag, attrs = {}, ...children) {
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
  function cameraIcon(title) {
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
  function safeUrl(text) {
    try {
      const url = new URL(text);
      return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
    } catch {
      return null;
    }
  }

  // --- HTTP -------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, detail) {
      super(describeDetail(status, detail));
      this.status = status;
      this.detail = detail;
    }
  }

  function describeDetail(status, detail) {
    if (Array.isArray(detail)) {
      return detail.map((d) => {
        const loc = (d.loc || []).filter((p) => p !== 'body' && p !== 'query').join('.');
        return loc ? `${loc}: ${d.msg}` : d.msg;
      }).join('; ');
    }
    if (detail && typeof detail === 'object') return detail.msg || JSON.stringify(detail);
    return detail || `the service answered ${status}`;
  }

  async function api(method, path, body, headers = {}) {
    const init = { method, headers: { Accept: 'application/json', ...headers } };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers['Content-Type'] = 'application/json';
    }
    let response;
    try {
      response = await fetch(API + path, init);
    } catch (err) {
      throw new ApiError(0, 'the calsync service cannot be reached');
    }
    let data = null;
    if (response.status !== 204) {
      const text = await response.text();
      try { data = text ? JSON.parse(text) : null; } catch { data = text; }
    }
    if (!response.ok) throw new ApiError(response.status, data && data.detail !== undefined ? data.detail : data);
    return data;
  }

  // --- time helpers -----------------------------------------------------------------------------

  const pad = (n) => String(n).padStart(2, '0');
  const isoUtc = (date) => date.toISOString().replace(/\.\d{3}Z$/, 'Z');
  const localDate = (date) => `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  const localInput = (date) => `${localDate(date)}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
  const addDays = (dateText, days) => {
    const [y, m, d] = dateText.split('-').map(Number);
    const t = new Date(Date.UTC(y, m - 1, d + days));
    return `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`;
  };
  const dateOnly = (text) => typeof text === 'string' && text.length === 10;

  function parseBoundary(text) {
    if (dateOnly(text)) {
      const [y, m, d] = text.split('-').map(Number);
      return new Date(y, m - 1, d);
    }
    return new Date(text);
  }

  const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' });
  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', hour12: false });

  function showWhen(text) {
    if (!text) return '—';
    const date = parseBoundary(text);
    if (Number.isNaN(date.getTime())) return text;
    return dateOnly(text) ? dayFormat.format(date) : `${dayFormat.format(date)}, ${timeFormat.format(date)}`;
  }

  function relative(text, now = Date.now()) {
    if (!text) return '—';
    const t = new Date(text).getTime();
    if (Number.isNaN(t)) return text;
    const s = Math.round((t - now) / 1000);
    const a = Math.abs(s);
    const span = a < 60 ? `${a} s` : a < 3600 ? `${Math.round(a / 60)} min` : a < 86400 ? `${(a / 3600).toFixed(1)} h`
      : `${(a / 86400).toFixed(1)} d`;
    return s < -1 ? `${span} ago` : s > 1 ? `in ${span}` : 'now';
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return '—';
    return relative(new Date(Date.now() - seconds * 1000).toISOString()).replace(' ago', '');
  }

  // Wall-clock arithmetic in an IANA zone, for expanding recurring series the way their zone sees them.
  const zoneFormats = new Map();
  function zoneFormat(zone) {
    if (!zoneFormats.has(zone)) {
      let fmt;
      try {
        fmt = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric',
          day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
      } catch {
        fmt = zoneFormat('UTC');
      }
      zoneFormats.set(zone, fmt);
    }
    return zoneFormats.get(zone);
  }

  function wallClock(ms, zone) {
    const parts = {};
    for (const p of zoneFormat(zone).formatToParts(new Date(ms))) parts[p.type] = Number(p.value);
    return { y: parts.year, m: parts.month, d: parts.day, h: parts.hour % 24, mi: parts.minute, s: parts.second };
  }

  function zonedInstant(w, zone) {
    const guess = Date.UTC(w.y, w.m - 1, w.d, w.h, w.mi, w.s);
    const offset = (ms) => {
      const c = wallClock(ms, zone);
      return Date.UTC(c.y, c.m - 1, c.d, c.h, c.mi, c.s) - Math.floor(ms / 1000) * 1000;
    };
    const first = guess - offset(guess);
    const second = guess - offset(first);
    return second;
  }

  // --- recurring series (RRULE subset: DAILY/WEEKLY/MONTHLY/YEARLY, INTERVAL, COUNT, UNTIL, BYDAY, EXDATE) ---

  const WEEKDAYS = ['SU', 'MO', 'TU', 'WE', 'TH', 'FR', 'SA'];

  function parseRule(lines) {
    let rule = null;
    const exdates = [];
    for (const line of lines || []) {
      const [head, value] = [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1)];
      const name = head.split(';')[0].toUpperCase();
      if (name === 'RRULE' && !rule) {
        rule = {};
        for (const part of value.split(';')) {
          const [k, v] = part.split('=');
          rule[k.toUpperCase()] = v;
        }
      } else if (name === 'EXDATE') {
        for (const v of value.split(',')) exdates.push(parseIcalTime(v, head));
      }
    }
    return rule && { rule, exdates: exdates.filter((t) => t !== null) };
  }

  function parseIcalTime(value, head = '') {
    const m = /^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z)?)?$/.exec(value.trim());
    if (!m) return null;
    const w = { y: +m[1], m: +m[2], d: +m[3], h: +(m[4] || 0), mi: +(m[5] || 0), s: +(m[6] || 0) };
    if (m[7] || !m[4]) return Date.UTC(w.y, w.m - 1, w.d, w.h, w.mi, w.s);
    const tzid = /TZID=([^;:]+)/.exec(head);
    return zonedInstant(w, tzid ? tzid[1] : 'UTC');
  }

  /* Occurrences of a series that overlap [from, to): [{start, end}] as the API writes boundaries. */
  function occurrences(series, from, to, overridden) {
    const parsed = parseRule(series.recurrence);
    if (!parsed) return [{ start: series.start, end: series.end }];
    const { rule, exdates } = parsed;
    const allDay = series.all_day;
    const zone = allDay ? 'UTC' : (series.time_zone || 'UTC');
    const first = allDay ? Date.parse(`${series.start}T00:00:00Z`) : Date.parse(series.start);
    const length = (allDay ? Date.parse(`${series.end}T00:00:00Z`) : Date.parse(series.end)) - first;
    const base = wallClock(first, zone);
    const interval = Math.max(1, parseInt(rule.INTERVAL || '1', 10));
    const count = rule.COUNT ? parseInt(rule.COUNT, 10) : Infinity;
    const until = rule.UNTIL ? parseIcalTime(rule.UNTIL) : Infinity;
    const byday = (rule.BYDAY || '').split(',').filter(Boolean);
    const freq = (rule.FREQ || '').toUpperCase();
    const excluded = new Set(exdates);
    const out = [];
    let seen = 0;

    const emit = (w) => { // false: stop
      const start = zonedInstant({ ...base, y: w.y, m: w.m, d: w.d }, zone);
      if (start < first) return true;
      if (start > until || seen >= count || start >= to) return false;
      seen += 1;
      const key = start;
      if (start + length > from && !excluded.has(key) && !overridden.has(key)) {
        const show = allDay ? (ms) => new Date(ms).toISOString().slice(0, 10) : (ms) => isoUtc(new Date(ms));
        out.push({ start: show(start), end: show(start + length) });
      }
      return true;
    };
    const dayAt = (y, m, d) => {
      const t = new Date(Date.UTC(y, m - 1, d));
      return { y: t.getUTCFullYear(), m: t.getUTCMonth() + 1, d: t.getUTCDate(), dow: t.getUTCDay() };
    };

    for (let step = 0; step < 5000; step += 1) {
      let dates = [];
      if (freq === 'DAILY') {
        dates = [dayAt(base.y, base.m, base.d + step * interval)];
      } else if (freq === 'WEEKLY') {
        const anchor = dayAt(base.y, base.m, base.d);
        const weekStart = dayAt(anchor.y, anchor.m, anchor.d - ((anchor.dow + 6) % 7) + step * 7 * interval);
        const days = byday.length ? byday.map((b) => WEEKDAYS.indexOf(b.slice(-2))).filter((i) => i >= 0)
          : [anchor.dow];
        dates = days.map((dow) => dayAt(weekStart.y, weekStart.m, weekStart.d + ((dow + 6) % 7)))
          .sort((a, b) => Date.UTC(a.y, a.m - 1, a.d) - Date.UTC(b.y, b.m - 1, b.d));
      } else if (freq === 'MONTHLY') {
        const month = dayAt(base.y, base.m + step * interval, 1);
        if (byday.length) {
          for (const b of byday) {
            const n = parseInt(b.slice(0, -2) || '0', 10);
            const dow = WEEKDAYS.indexOf(b.slice(-2));
            const inMonth = [];
            for (let d = 1; d <= 31; d += 1) {
              const day = dayAt(month.y, month.m, d);
              if (day.m !== month.m) break;
              if (day.dow === dow) inMonth.push(day);
            }
            if (n > 0 && inMonth[n - 1]) dates.push(inMonth[n - 1]);
            else if (n < 0 && inMonth[inMonth.length + n]) dates.push(inMonth[inMonth.length + n]);
            else if (n === 0) dates.push(...inMonth);
          }
        } else {
          const day = dayAt(month.y, month.m, base.d);
          if (day.m === month.m) dates.push(day);
        }
        dates.sort((a, b) => a.d - b.d);
      } else if (freq === 'YEARLY') {
        const day = dayAt(base.y + step * interval, base.m, base.d);
        if (day.m === base.m) dates.push(day);
      } else {
        return [{ start: series.start, end: series.end }];
      }
      for (const w of dates) {
        if (!emit(w)) return out;
      }
    }
    return out;
  }

  // --- calendars, bindings, labels --------------------------------------------------------------

  function colourOf(calendarId) {
    const cal = state.calById.get(calendarId);
    if (cal && cal.color) return cal.color;
    const index = state.calendars.findIndex((c) => c.id === calendarId);
    return PALETTE[(index < 0 ? 0 : index) % PALETTE.length];
  }

  function bindingLabel(bindingId) {
    const b = state.bindings.get(bindingId);
    if (!b) return bindingId.slice(0, 8);
    const account = state.accounts.get(b.account_id);
    const who = account ? account.name : b.account_id.slice(0, 8);
    return `${who} · ${b.remote_calendar_id}`;
  }

  function providerName(bindingId) {
    const b = state.bindings.get(bindingId);
    const account = b && state.accounts.get(b.account_id);
    if (!account) return 'remote';
    return account.provider === 'google' ? 'Google' : account.provider;
  }

  async function loadCalendars() {
    const data = await api('GET', '/calendars');
    state.calendars = data.calendars;
    state.calById = new Map(data.calendars.map((c) => [c.id, c]));
    state.bindings = new Map();
    for (const c of data.calendars) {
      for (const b of c.bindings) state.bindings.set(b.id, { ...b, calendar_id: c.id });
    }
    renderCalendarList();
  }

  function renderCalendarList() {
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
    if (on) hidden.delete(calendarId); else hidden.add(calendarId);
    localStorage.setItem('calsync.hidden', JSON.stringify([...hidden]));
    const kept = new Map([...state.events].filter(([, e]) => isShown(e.calendar_id)));
    applyEvents(kept);
    loadRange();
  }

  // --- events on the calendar ------------------------------------------------------------------

  function worstState(event) {
    let worst = null;
    for (const s of event.sync || []) {
      if (worst === null || (STATE_RANK[s.state] || 0) > (STATE_RANK[worst] || 0)) worst = s.state;
    }
    return worst || 'local-only';
  }

  function renderKey(event, exceptions) {
    const parts = [event.etag, event.calendar_id, colourOf(event.calendar_id), JSON.stringify(event.sync)];
    if (event.recurrence) parts.push(exceptions.map((x) => `${x.original_start}:${x.status}`).join(','));
    return parts.join('|');
  }

  function fcInputs(event, exceptionsOf) {
    if (event.status === 'cancelled' || event.deleted) return [];
    const colour = colourOf(event.calendar_id);
    const common = {
      title: event.title || '(no title)',
      allDay: event.all_day,
      backgroundColor: colour,
      borderColor: colour,
      classNames: [`sync-${worstState(event)}`, event.status === 'tentative' ? 'tentative' : ''].filter(Boolean),
      extendedProps: { apiId: event.id },
    };
    if (!event.recurrence) {
      return [{ ...common, id: event.id, start: event.start, end: event.end, editable: true }];
    }
    const range = state.range;
    const overridden = new Set((exceptionsOf(event.id) || []).map((x) => parseBoundary(x.original_start).getTime())
      .filter((t) => !Number.isNaN(t)));
    const from = Date.parse(range.start);
    const to = Date.parse(range.end);
    return occurrences(event, from, to, overridden).map((o) => ({
      ...common, id: `${event.id}@${o.start}`, start: o.start, end: o.end, editable: false,
      classNames: [...common.classNames, 'recurring'],
    }));
  }

  let calendar = null;

  /* Make the calendar show `fresh` (api id -> body), touching only events whose render key changed. */
  function applyEvents(fresh) {
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
        state.fcEvents.set(event.id, fcInputs(event, exceptionsOf).map((input) => calendar.addEvent(input)));
        state.rendered.set(event.id, key);
      }
    });
    checkArrival();
  }

  function removeRendered(id) {
    for (const fc of state.fcEvents.get(id) || []) fc.remove();
    state.fcEvents.delete(id);
    state.rendered.delete(id);
  }

  /* One event changed (our own write, or a reload): show it now, without waiting for the poll. */
  function upsertEvent(body) {
    const fresh = new Map(state.events);
    if (body && !body.deleted && isShown(body.calendar_id)) fresh.set(body.id, body);
    applyEvents(fresh);
  }

  function dropEvent(id) {
    const fresh = new Map(state.events);
    fresh.delete(id);
    applyEvents(fresh);
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

  async function loadRange() {
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
        dataset: { state: s.state, bindingId: s.binding_id },
      }, STATE_ICON[s.state] || '?')));
    const conference = event.conference ? cameraIcon(event.conference.name || 'conference') : null;
    const time = arg.timeText ? el('span', { class: 'ev-time' }, arg.timeText) : null;
    const title = el('span', { class: 'ev-title' }, conference, event.recurrence ? '⟳ ' : '', arg.event.title);
    return { domNodes: [el('div', { class: 'ev' }, el('div', { class: 'ev-top' }, time, badges), title)] };
  }

  function eventDidMount(arg) {
    const event = state.events.get(arg.event.extendedProps.apiId);
    arg.el.dataset.eventId = arg.event.extendedProps.apiId;
    arg.el.dataset.title = arg.event.title;
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

  async function reloadEvent(id) {
    try {
      const body = await api('GET', `/events/${id}`);
      upsertEvent(body);
      return body;
    } catch (err) {
      if (err.status === 404) dropEvent(id);
      return null;
    }
  }

  // --- the event dialog ------------------------------------------------------------------------

  const dialog = () => $('#event-dialog');
  const form = () => $('#event-form');

  function showDialogMessage(text, kind = 'warn') {
    const box = $('#dialog-message');
    box.textContent = text;
    box.className = `dialog-message ${kind}`;
    box.hidden = !text;
  }

  function setTimeInputs(allDay, start, end) {
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

  function readTimes() {
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

  function parseAttendees(text, previous) {
    const known = new Map((previous || []).map((a) => [a.email.toLowerCase(), a]));
    const emails = text.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
    const seen = new Set();
    const out = [];
    for (const email of emails) {
      if (seen.has(email.toLowerCase())) continue;
      seen.add(email.toLowerCase());
      const old = known.get(email.toLowerCase());
      out.push(old ? { email: old.email, name: old.name ?? null, optional: !!old.optional, response: old.response || 'needsAction' }
        : { email, name: null, optional: false, response: 'needsAction' });
    }
    return out;
  }

  const sameAttendees = (a, b) => JSON.stringify((a || []).map((x) => x.email.toLowerCase()))
    === JSON.stringify((b || []).map((x) => x.email.toLowerCase()));

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
      ? `A recurring series (${event.recurrence.join(' ')}): changes apply to every occurrence; the times are those of the first.`
      : event.recurring_event_id ? 'One occurrence of a recurring series, changed on its own.' : '';
    renderConference(event);
    renderSync(event);
  }

  function renderConference(event) {
    const view = $('#conference-view');
    view.replaceChildren();
    const conf = event.conference;
    if (conf) {
      const ours = !!conf.provider;
      view.append(el('div', { class: 'conference', id: 'conference-info' },
        cameraIcon('conference'),
        el('strong', { class: 'conf-provider' }, conf.name || conf.provider || 'Conference'),
        ours ? el('span', { class: 'muted' }, ` (${conf.provider}, managed by calsync)`)
          : el('span', { class: 'muted' }, ' (not made by calsync)'),
        safeUrl(conf.join_url) ? el('a', { href: safeUrl(conf.join_url), target: '_blank', rel: 'noopener noreferrer',
          class: 'join-link' }, 'Join') : null,
        state.dialog.mode === 'edit'
          ? el('button', { type: 'button', class: 'small danger-outline', id: 'conference-remove', onclick: removeConference },
            'Remove conference') : null),
      );
      if (conf.join_url) view.append(el('div', { class: 'conf-url muted small' }, conf.join_url));
      return;
    }
    if (!state.providers.length) {
      view.append(el('span', { class: 'muted' }, 'None. (No conference system is configured for this service.)'));
      return;
    }
    const select = el('select', { id: 'conference-provider', 'aria-label': 'conference provider' },
      state.dialog.mode === 'create' ? el('option', { value: '' }, 'no conference') : null,
      state.providers.map((p) => el('option', { value: p.name }, p.label)));
    view.append(el('div', { class: 'conference' },
      state.dialog.mode === 'edit' ? el('span', { class: 'muted' }, 'None. ') : null,
      select,
      state.dialog.mode === 'edit'
        ? el('button', { type: 'button', class: 'small', id: 'conference-add', onclick: addConference }, 'Add conference')
        : el('span', { class: 'muted small' }, ' created with the event')));
  }

  function renderSync(event) {
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

  function openCreate(info) {
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
    dialog().showModal();
    $('#event-title').focus();
  }

  async function openEdit(id) {
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
    dialog().showModal();
  }

  function closeDialog() {
    state.dialog = null;
    if (dialog().open) dialog().close();
    if (calendar) calendar.unselect();
  }

  function formChanges(original) {
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

  async function addConference() {
    const d = state.dialog;
    const provider = $('#conference-provider').value;
    const button = $('#conference-add');
    button.disabled = true;
    button.textContent = 'Creating…';
    state.writeSeq += 1;
    try {
      const body = await api('POST', `/events/${d.original.id}/conference`, { provider });
      upsertEvent(body);
      if (state.dialog === d) {
        d.original = { ...body };
        renderConference(body);
        renderSync(body);
        showDialogMessage('');
      }
      toast(`Added a ${body.conference ? body.conference.name : provider} meeting to “${body.title}”`, 'ok');
    } catch (err) {
      showDialogMessage(`The conference was not added: ${err.message}`, 'error');
      if (state.dialog === d) renderConference(d.original);
    }
  }

  async function removeConference() {
    const d = state.dialog;
    const button = $('#conference-remove');
    button.disabled = true;
    state.writeSeq += 1;
    try {
      const body = await api('DELETE', `/events/${d.original.id}/conference`, undefined, { 'If-Match': d.original.etag });
      upsertEvent(body);
      if (state.dialog === d) {
        d.original = { ...body };
        renderConference(body);
        renderSync(body);
        showDialogMessage('');
      }
      toast(`Removed the conference from “${body.title}”`, 'ok');
    } catch (err) {
      button.disabled = false;
      await writeFailed(err, 'The conference was not removed');
    }
  }

  // --- conflicts panel -------------------------------------------------------------------------

  function showValue(name, value) {
    if (value === null || value === undefined || value === '') return '—';
    if (name === 'start' || name === 'end' || name === 'original_start') return showWhen(value);
    if (name === 'attendees') return value.length ? value.map((a) => a.email + (a.response && a.response !== 'needsAction' ? ` (${a.response})` : '')).join(', ') : '—';
    if (name === 'conference') return `${value.name || value.provider || 'conference'} ${value.join_url || ''}`.trim();
    if (name === 'all_day') return value ? 'yes' : 'no';
    if (Array.isArray(value)) return value.join(' ');
    if (typeof value === 'object') return JSON.stringify(value);
    return String(value);
  }

  const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

  async function loadConflicts() {
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
      .filter((n) => !sides.every((s) => !s || s[n] === null || s[n] === undefined || (Array.isArray(s[n]) && !s[n].length)));
    const differing = new Set(c.differing_fields || []);
    const title = (c.local && c.local.title) || (c.remote && c.remote.title) || (c.base && c.base.title) || c.event_id;
    const remoteName = providerName(c.binding_id);
    const cell = (side, n) => {
      if (!side) return el('td', { class: 'gone' }, 'deleted');
      const changed = c.base && !same(side[n], c.base[n]);
      return el('td', { class: changed ? 'changed' : '' }, showValue(n, side[n]));
    };
    const rows = ordered.map((n) => el('tr', { class: differing.has(n) ? 'differs' : '', dataset: { field: n } },
      el('th', { scope: 'row' }, n.replace('_', ' ')),
      c.base ? el('td', { class: 'base' }, showValue(n, c.base[n])) : el('td', { class: 'muted' }, '—'),
      cell(c.local, n), cell(c.remote, n)));
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
          ? `The ${remoteName} side of “${title}” changed since it was shown: nothing was kept. Its newest version is shown now; decide again.`
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
        el('h3', {}, title),
        el('span', { class: 'kind' }, c.kind),
        el('span', { class: 'muted' }, `${cal ? cal.name : ''} · ${remoteName} · ${bindingLabel(c.binding_id)}`),
        el('span', { class: 'muted' }, ` · opened ${relative(c.created_at)}`)),
      el('p', { class: 'differs-line' }, 'Differs: ', el('strong', {}, (c.differing_fields || []).join(', ') || 'nothing')),
      el('table', { class: 'sides' },
        el('thead', {}, el('tr', {}, el('th', {}, ''), el('th', {}, 'Base (last agreed)'), el('th', {}, 'Here (local)'),
          el('th', {}, `${remoteName} (remote)`))),
        el('tbody', {}, rows)),
      el('footer', {},
        el('button', { type: 'button', class: 'keep-local', onclick: resolve('local') }, 'Keep local'),
        el('button', { type: 'button', class: 'keep-remote primary', onclick: resolve('remote') },
          `Keep remote (${remoteName})`)));
  }

  function setConflictCount(n) {
    const badge = $('#conflict-count');
    badge.textContent = String(n);
    badge.dataset.count = String(n);
    badge.classList.toggle('hot', n > 0);
  }

  // --- sync health ----------------------------------------------------------------------------

  async function refreshStatus() {
    const status = await api('GET', '/status');
    state.status = status;
    const hadAccounts = state.accounts.size;
    state.accounts = new Map(status.accounts.map((a) => [a.id, a]));
    if (!hadAccounts && state.accounts.size) renderCalendarList();
    renderHealth(status);
    if (status.open_conflicts !== state.conflictCount || state.tab === 'conflicts') {
      state.conflictCount = status.open_conflicts;
      setConflictCount(status.open_conflicts);
      await loadConflicts();
    }
    setLive(true);
  }

  function bindingHealth(b) {
    if (b.last_error || (b.last_sync_status && !['ok', 'skipped'].includes(b.last_sync_status))) return 'error';
    if (b.dirty || b.leased || b.outbox_backlog) return 'busy';
    if (!b.last_sync_at) return 'busy';
    return 'ok';
  }

  function renderHealth(status) {
    const now = Date.now();
    const accountsBad = status.accounts.filter((a) => a.state !== 'ok' || a.backoff_until);
    const bindingStates = status.bindings.map(bindingHealth);
    const worst = accountsBad.length || bindingStates.includes('error') ? 'error'
      : bindingStates.includes('busy') ? 'busy' : 'ok';
    const dot = $('#health-dot');
    dot.className = `dot ${worst}`;
    dot.title = worst === 'ok' ? 'all calendars in sync' : worst === 'busy' ? 'syncing' : 'a calendar or account has a problem';

    const summary = $('#health-summary');
    summary.classList.remove('muted');
    summary.replaceChildren(
      ...status.bindings.map((b) => {
        const cal = state.calById.get(b.calendar_id);
        return el('div', { class: 'health-line', dataset: { bindingId: b.id } },
          el('span', { class: `dot ${bindingHealth(b)}` }),
          el('span', { class: 'health-name' }, cal ? cal.name : b.remote_calendar_id),
          el('span', { class: 'muted small' }, b.last_error ? 'error' : `synced ${relative(b.last_sync_at, now)}`));
      }),
      el('div', { class: 'muted small health-totals' },
        `${status.open_conflicts} open conflict${status.open_conflicts === 1 ? '' : 's'} · `
        + `${status.outbox_backlog} to push · ${status.conference_backlog} conference job${status.conference_backlog === 1 ? '' : 's'}`));

    const cards = el('div', { class: 'cards' },
      card('Accounts', `${status.accounts.length - accountsBad.length}/${status.accounts.length} ok`),
      card('Calendars bound', status.bindings.length),
      card('Open conflicts', status.open_conflicts, status.open_conflicts ? 'warn' : ''),
      card('Local changes to push', status.outbox_backlog),
      card('Conference backlog', status.conference_backlog));

    const bindingRows = status.bindings.map((b) => {
      const cal = state.calById.get(b.calendar_id);
      const account = state.accounts.get(b.account_id);
      const ch = b.channel;
      return el('tr', { class: `health-${bindingHealth(b)}`, dataset: { bindingId: b.id } },
        el('td', {}, el('span', { class: 'swatch', style: `--c: ${colourOf(b.calendar_id)}` }), cal ? cal.name : b.calendar_id),
        el('td', {}, account ? account.name : b.account_id.slice(0, 8)),
        el('td', { class: 'mono' }, b.remote_calendar_id),
        el('td', {}, `${b.direction} · ${b.conflict_policy}`),
        el('td', { title: b.last_sync_at || '' }, `${relative(b.last_sync_at, now)}`,
          b.last_sync_status ? el('span', { class: `pill ${b.last_sync_status === 'ok' ? 'ok' : 'warn'}` }, b.last_sync_status) : null),
        el('td', { title: b.last_success_at || '' }, relative(b.last_success_at, now)),
        el('td', {}, b.has_sync_token ? duration(b.token_age_seconds) : 'no token'),
        el('td', {}, ch ? [`expires ${relative(ch.expiration, now)}`, el('br'),
          el('span', { class: 'muted small' }, `${ch.confirmed ? 'confirmed' : 'unconfirmed'} · ${ch.messages} message${ch.messages === 1 ? '' : 's'}`
            + (ch.last_message_at ? ` · last ${relative(ch.last_message_at, now)}` : ''))] : el('span', { class: 'muted' }, 'none (polling)')),
        el('td', { class: 'num' }, String(b.outbox_backlog), b.dirty ? el('span', { class: 'pill busy' }, 'dirty') : null,
          b.leased ? el('span', { class: 'pill busy' }, 'syncing') : null),
        el('td', {}, relative(b.next_poll_at, now)),
        el('td', { class: b.last_error ? 'error-text' : 'muted' }, b.last_error || '—'));
    });
    const accountRows = status.accounts.map((a) => el('tr', { class: a.state === 'ok' ? '' : 'health-error', dataset: { accountId: a.id } },
      el('td', {}, a.name), el('td', {}, a.provider),
      el('td', {}, el('span', { class: `pill ${a.state === 'ok' ? 'ok' : 'warn'}` }, a.state)),
      el('td', {}, a.backoff_until ? `until ${relative(a.backoff_until, now)}` : '—'),
      el('td', { class: a.last_error ? 'error-text' : 'muted' }, a.last_error || '—')));

    $('#health').replaceChildren(
      cards,
      el('h2', {}, 'Calendars'),
      el('div', { class: 'table-wrap' }, el('table', { class: 'grid', id: 'binding-health' },
        el('thead', {}, el('tr', {}, ['Calendar', 'Account', 'Remote calendar', 'Direction · policy', 'Last sync',
          'Last success', 'Token age', 'Notification channel', 'Backlog', 'Next poll', 'Last error'].map((h) => el('th', {}, h)))),
        el('tbody', {}, bindingRows))),
      el('h2', {}, 'Accounts'),
      el('div', { class: 'table-wrap' }, el('table', { class: 'grid', id: 'account-health' },
        el('thead', {}, el('tr', {}, ['Account', 'Provider', 'State', 'Backoff', 'Last error'].map((h) => el('th', {}, h)))),
        el('tbody', {}, accountRows))),
      el('p', { class: 'muted small' }, `Updated ${timeFormat.format(new Date())} · refreshed every ${POLL_MS / 1000} s`));
  }

  function card(label, value, kind = '') {
    return el('div', { class: `card ${kind}` }, el('div', { class: 'card-value' }, String(value)),
      el('div', { class: 'card-label' }, label));
  }

  function setLive(ok, why) {
    const live = $('#live');
    if (ok) {
      state.failures = 0;
      live.textContent = '● live';
      live.className = 'live ok';
      live.title = `Polling the service every ${EVENTS_MS / 1000} s`;
    } else {
      state.failures += 1;
      if (state.failures < 2) return;
      live.textContent = '● offline';
      live.className = 'live down';
      live.title = why || 'the service does not answer';
    }
  }

  // --- demo control ----------------------------------------------------------------------------

  async function loadDemo() {
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

  function checkArrival() {
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

  // --- toasts and tabs -------------------------------------------------------------------------

  function toast(text, kind = 'info', ms = 6000) {
    const node = el('div', { class: `toast ${kind}`, role: kind === 'error' || kind === 'warn' ? 'alert' : 'status' },
      el('span', {}, text), el('button', { type: 'button', class: 'icon-button', 'aria-label': 'dismiss',
        onclick: () => node.remove() }, '×'));
    $('#toasts').append(node);
    setTimeout(() => node.remove(), kind === 'error' || kind === 'warn' ? Math.max(ms, 10000) : ms);
  }

  function showTab(name) {
    state.tab = name;
    for (const button of document.querySelectorAll('.tabs [role=tab]')) {
      button.setAttribute('aria-selected', String(button.dataset.tab === name));
    }
    for (const panel of document.querySelectorAll('.tab-panel')) panel.hidden = panel.id !== `tab-${name}`;
    if (name === 'calendar' && calendar) { calendar.updateSize(); loadRange(); }
    if (name === 'conflicts') { state.conflictsShown = ''; loadConflicts().catch((err) => toast(err.message, 'error')); }
  }

  // --- start ----------------------------------------------------------------------------------

  function makeCalendar() {
    const narrow = window.matchMedia('(max-width: 700px)').matches;
    calendar = new FullCalendar.Calendar($('#calendar'), {
      initialView: narrow ? 'timeGridDay' : 'timeGridWeek',
      headerToolbar: { left: 'prev,next today', center: 'title', right: 'dayGridMonth,timeGridWeek,timeGridDay' },
      buttonText: { today: 'Today', month: 'Month', week: 'Week', day: 'Day' },
      height: '100%',
      firstDay: 1,
      nowIndicator: true,
      selectable: true,
      selectMirror: true,
      unselectAuto: false,
      editable: true,
      eventResizableFromStart: false,
      dayMaxEvents: true,
      scrollTime: '08:00:00',
      slotDuration: '00:30:00',
      eventTimeFormat: { hour: '2-digit', minute: '2-digit', hour12: false },
      slotLabelFormat: { hour: '2-digit', minute: '2-digit', hour12: false },
      eventDisplay: 'block',
      datesSet(info) {
        state.range = { start: isoUtc(info.start), end: isoUtc(info.end) };
        state.rangeSeq += 1;
        for (const [id, e] of state.events) if (e.recurrence) removeRendered(id); // series expand per range
        loadRange();
      },
      select: openCreate,
      eventClick(info) {
        info.jsEvent.preventDefault();
        openEdit(info.event.extendedProps.apiId);
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
    calendar.render();
  }

  function wire() {
    for (const button of document.querySelectorAll('.tabs [role=tab]')) {
      button.addEventListener('click', () => showTab(button.dataset.tab));
    }
    form().addEventListener('submit', saveDialog);
    for (const b of document.querySelectorAll('#event-dialog [data-action=close]')) b.addEventListener('click', closeDialog);
    $('#event-delete').addEventListener('click', deleteEvent);
    dialog().addEventListener('close', () => { state.dialog = null; if (calendar) calendar.unselect(); });
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

  function poll(fn, ms) {
    let busy = false;
    const tick = async () => {
      if (!busy && !document.hidden) {
        busy = true;
        try { await fn(); } catch (err) { setLive(false, err.message); } finally { busy = false; }
      }
      setTimeout(tick, ms);
    };
    setTimeout(tick, ms);
  }

  async function start() {
    wire();
    try {
      await Promise.all([loadCalendars(), refreshStatus().catch(() => null)]);
      renderCalendarList();
    } catch (err) {
      toast(`The calsync service does not answer: ${err.message}`, 'error');
    }
    api('GET', '/conference-providers').then((d) => { state.providers = d.providers; }).catch(() => null);
    loadDemo();
    makeCalendar();
    poll(() => (state.loading || state.dragging || state.tab !== 'calendar' ? null : loadRange()), EVENTS_MS);
    poll(refreshStatus, POLL_MS);
    poll(loadCalendars, CALENDARS_MS);
    document.addEventListener('visibilitychange', () => { if (!document.hidden) loadRange(); });
  }

  window.calsync = { state, get calendar() { return calendar; }, loadRange, refreshStatus, occurrences };
  document.addEventListener('DOMContentLoaded', start);
})();
