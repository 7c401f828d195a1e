/* Time helpers: the API writes UTC instants (…Z) and all-day dates (YYYY-MM-DD); the page shows them in the
 * viewer's time zone (the browser's) and formats them for the viewer's locale: the browser's language, or the
 * one chosen in the sidebar's Display section (kept in localStorage as calsync.locale). */

const LOCALE_KEY = 'calsync.locale';

function supported(locale) {
  try { return Intl.DateTimeFormat.supportedLocalesOf([locale]).length > 0; } catch { return false; }
}

/* The locale dates and times are written in: the chosen one, else the browser's. */
export function pageLocale() {
  const chosen = localStorage.getItem(LOCALE_KEY);
  if (chosen && supported(chosen)) return chosen;
  return navigator.language || 'en';
}

export function chooseLocale(locale) {
  if (locale) localStorage.setItem(LOCALE_KEY, locale); else localStorage.removeItem(LOCALE_KEY);
}

export const chosenLocale = () => localStorage.getItem(LOCALE_KEY) || '';

/* The viewer's time zone (the browser's): FullCalendar and every time on the page are in it. */
export const viewerZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

const pad = (n) => String(n).padStart(2, '0');
export const isoUtc = (date) => date.toISOString().replace(/\.\d{3}Z$/, 'Z');
export const localDate = (date) => `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
export const localInput = (date) => `${localDate(date)}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
export const addDays = (dateText, days) => {
  const [y, m, d] = dateText.split('-').map(Number);
  const t = new Date(Date.UTC(y, m - 1, d + days));
  return `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`;
};
export const dateOnly = (text) => typeof text === 'string' && text.length === 10;

export function parseBoundary(text) {
  if (dateOnly(text)) {
    const [y, m, d] = text.split('-').map(Number);
    return new Date(y, m - 1, d);
  }
  return new Date(text);
}

const dayFormat = new Intl.DateTimeFormat(pageLocale(),
  { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' });
export const timeFormat = new Intl.DateTimeFormat(pageLocale(), { hour: '2-digit', minute: '2-digit' });

/* `start`–`end` as a wall clock in `zone` (the event's own zone), e.g. "Tue 8 Dec, 10:00 – 10:30". */
export function showInZone(start, end, zone) {
  const day = new Intl.DateTimeFormat(pageLocale(), { weekday: 'short', day: 'numeric', month: 'short', timeZone: zone });
  const clock = new Intl.DateTimeFormat(pageLocale(), { hour: '2-digit', minute: '2-digit', timeZone: zone });
  const s = new Date(start);
  const e = new Date(end);
  const sameDay = day.format(s) === day.format(e);
  return `${day.format(s)}, ${clock.format(s)} – ${sameDay ? '' : `${day.format(e)}, `}${clock.format(e)}`;
}

export function showWhen(text) {
  if (!text) return '—';
  const date = parseBoundary(text);
  if (Number.isNaN(date.getTime())) return text;
  return dateOnly(text) ? dayFormat.format(date) : `${dayFormat.format(date)}, ${timeFormat.format(date)}`;
}

export function relative(text, now = Date.now()) {
  if (!text) return '—';
  const t = new Date(text).getTime();
  if (Number.isNaN(t)) return text;
  const s = Math.round((t - now) / 1000);
  const a = Math.abs(s);
  const span = a < 60 ? `${a} s` : a < 3600 ? `${Math.round(a / 60)} min` : a < 86400 ? `${(a / 3600).toFixed(1)} h`
    : `${(a / 86400).toFixed(1)} d`;
  return s < -1 ? `${span} ago` : s > 1 ? `in ${span}` : 'now';
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  return relative(new Date(Date.now() - seconds * 1000).toISOString()).replace(' ago', '');
}
