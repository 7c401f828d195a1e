/* What the page knows, shared by its modules, and the labels derived from it. */

export const POLL_MS = 2500;          // sync status (and conflicts when they change)
export const EVENTS_MS = 2000;        // the visible range
export const CALENDARS_MS = 15000;    // calendar list (names, counts)
const PALETTE = ['#3b6fd8', '#d9772b', '#2e9d62', '#9b4dca', '#c2417a', '#1f8f9e', '#8a6d1f'];
export const STATE_ICON = { synced: '✓', pending: '↻', conflict: '!', error: '✕', 'local-only': '•' };
const STATE_RANK = { conflict: 4, error: 3, pending: 2, 'local-only': 1, synced: 0 };

export const state = {
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
  narrow: false,            // the window is phone-narrow (calendar.js NARROW)
  autoList: false,          // the list view was picked for a narrow window, not by the person
  providers: [],
  oauthProviders: null,     // the connect flows this server offers (/oauth/providers), once known
  demo: null,
  status: null,
  conflictCount: -1,
  conflictsShown: '',
  tab: 'calendar',
  dialog: null,              // {mode: 'create'|'edit', original}
  arrival: null,             // a demo change we are waiting to see arrive
  failures: 0,
};

export const isShown = (calendarId) => !state.hidden.has(calendarId);

export function setShown(calendarId, on) {
  if (on) state.hidden.delete(calendarId); else state.hidden.add(calendarId);
  localStorage.setItem('calsync.hidden', JSON.stringify([...state.hidden]));
}

export function colourOf(calendarId) {
  const cal = state.calById.get(calendarId);
  if (cal && cal.color) return cal.color;
  const index = state.calendars.findIndex((c) => c.id === calendarId);
  return PALETTE[(index < 0 ? 0 : index) % PALETTE.length];
}

export function bindingLabel(bindingId) {
  const b = state.bindings.get(bindingId);
  if (!b) return bindingId.slice(0, 8);
  const account = state.accounts.get(b.account_id);
  const who = account ? account.name : b.account_id.slice(0, 8);
  return `${who} · ${b.remote_calendar_id}`;
}

export function providerName(bindingId) {
  const b = state.bindings.get(bindingId);
  const account = b && state.accounts.get(b.account_id);
  if (!account) return 'remote';
  return account.provider === 'google' ? 'Google' : account.provider;
}

/* The event's sync state shown on the calendar: the worst over its bindings. */
export function worstState(event) {
  let worst = null;
  for (const s of event.sync || []) {
    if (worst === null || (STATE_RANK[s.state] || 0) > (STATE_RANK[worst] || 0)) worst = s.state;
  }
  return worst || 'local-only';
}
