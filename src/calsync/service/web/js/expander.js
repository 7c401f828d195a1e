/* The page's own expansion of recurring series (an RRULE subset, as app.js had it): occurrences in a range.
 * Only `occurrences` is used outside. */
import { isoUtc } from './time.js';

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
export function occurrences(series, from, to, overridden) {
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
