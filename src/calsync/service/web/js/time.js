/* Time helpers: the API writes UTC instants (…Z) and all-day dates (YYYY-MM-DD); the page shows local time. */

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

const dayFormat = new Intl.DateTimeFormat(undefined,
  { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' });
export const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', hour12: false });

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
