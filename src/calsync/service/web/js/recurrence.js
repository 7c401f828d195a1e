/* A recurring series from the API as FullCalendar's rrule plugin (vendor/fullcalendar-rrule, on top of
 * vendor/rrule) takes it. The plugin expands the series; this module only re-spells its iCalendar lines
 * in the forms rrule.js reads the way RFC 5545 means them:
 *   - a series in a zone other than UTC starts at `DTSTART;TZID=zone:wall-clock`, so occurrences keep
 *     their wall-clock time in that zone across DST changes (rrule.js hands them back in the browser's
 *     zone, which is the zone FullCalendar shows: timeZone 'local');
 *   - UNTIL, RDATE and EXDATE values are written in the same form as DTSTART (rrule.js compares them as
 *     written, without zones): wall clock in the series' zone, UTC, or a date for all-day series;
 *   - occurrences changed on their own (exceptions, listed by their original start) are excluded too,
 *     as the exception is an event of its own. */

const zoneFormats = new Map();

/* An Intl format for wall-clock parts in `zone`; an unknown zone reads as UTC. */
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

const knownZone = (zone) => {
  try { new Intl.DateTimeFormat('en-US', { timeZone: zone }); return true; } catch { return false; }
};

function wallClock(ms, zone) {
  const parts = {};
  for (const p of zoneFormat(zone).formatToParts(new Date(ms))) parts[p.type] = Number(p.value);
  return { y: parts.year, m: parts.month, d: parts.day, h: parts.hour % 24, mi: parts.minute, s: parts.second };
}

/* The instant a wall-clock time in `zone` names (the later reading of a repeated hour, as before). */
function zonedInstant(w, zone) {
  const guess = Date.UTC(w.y, w.m - 1, w.d, w.h, w.mi, w.s);
  const offset = (ms) => {
    const c = wallClock(ms, zone);
    return Date.UTC(c.y, c.m - 1, c.d, c.h, c.mi, c.s) - Math.floor(ms / 1000) * 1000;
  };
  return guess - offset(guess - offset(guess));
}

const pad = (n, width = 2) => String(n).padStart(width, '0');
const basic = (w) => `${pad(w.y, 4)}${pad(w.m)}${pad(w.d)}T${pad(w.h)}${pad(w.mi)}${pad(w.s)}`;
const extended = (w) => `${pad(w.y, 4)}-${pad(w.m)}-${pad(w.d)}T${pad(w.h)}:${pad(w.mi)}:${pad(w.s)}`;
const utcWall = (ms) => wallClock(ms, 'UTC');

/* An iCalendar DATE or DATE-TIME value: {date: 'YYYYMMDD'} or {wall, utc} (utc: it ended in Z). */
function icalValue(text) {
  const m = /^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z)?)?$/.exec(text.trim().toUpperCase());
  if (!m) return null;
  if (!m[4]) return { date: `${m[1]}${m[2]}${m[3]}` };
  return { wall: { y: +m[1], m: +m[2], d: +m[3], h: +m[4], mi: +m[5], s: +m[6] }, utc: !!m[7] };
}

/* How one series spells its times for rrule.js: `kind` is 'date' (all-day), 'utc' or 'zone'. */
function speller(series) {
  const zone = series.time_zone && series.time_zone !== 'UTC' && knownZone(series.time_zone) ? series.time_zone : 'UTC';
  const kind = series.all_day ? 'date' : zone === 'UTC' ? 'utc' : 'zone';
  const first = kind === 'date' ? null : wallClock(Date.parse(series.start), zone);
  /* A value (from UNTIL, RDATE, EXDATE; `tzid` from its line) as a wall clock in the series' form. */
  const wallOf = (value, tzid, endOfDay) => {
    if (value.date) {
      const [y, m, d] = [+value.date.slice(0, 4), +value.date.slice(4, 6), +value.date.slice(6, 8)];
      return endOfDay ? { y, m, d, h: 23, mi: 59, s: 59 } : { ...first, y, m, d };
    }
    const from = value.utc ? 'UTC' : (tzid && knownZone(tzid) ? tzid : zone);
    return from === zone ? value.wall : wallClock(zonedInstant(value.wall, from), zone);
  };
  return {
    kind,
    zone,
    dtstart: kind === 'date' ? `DTSTART:${series.start.replaceAll('-', '')}`
      : kind === 'utc' ? `DTSTART:${basic(first)}Z` : `DTSTART;TZID=${zone}:${basic(first)}`,
    /* UNTIL=… for rrule.js: a date for all-day series, else DTSTART's form (a date means its whole day). */
    until(text) {
      const value = icalValue(text);
      if (!value) return text;
      if (kind === 'date') return value.date || text.slice(0, 8);
      return basic(wallOf(value, null, true)) + (kind === 'utc' ? 'Z' : '');
    },
    /* An RDATE value in the rule text: basic form, like DTSTART. */
    rdate(value, tzid) {
      if (kind === 'date') return value.date || basic(value.wall).slice(0, 8);
      return basic(wallOf(value, tzid, false)) + (kind === 'utc' ? 'Z' : '');
    },
    /* An excluded start for FullCalendar's `exdate`: extended form (FullCalendar parses it first). */
    exdate(value, tzid) {
      if (kind === 'date') {
        const day = value.date || basic(value.wall).slice(0, 8);
        return `${day.slice(0, 4)}-${day.slice(4, 6)}-${day.slice(6, 8)}`;
      }
      return extended(wallOf(value, tzid, false)) + (kind === 'utc' ? 'Z' : '');
    },
  };
}

const lineParts = (line) => {
  const colon = line.indexOf(':');
  const [name, ...params] = line.slice(0, colon).split(';');
  const tzid = params.map((p) => /^TZID=(.+)$/i.exec(p.trim())).find(Boolean);
  return { name: name.trim().toUpperCase(), tzid: tzid ? tzid[1] : null, value: line.slice(colon + 1) };
};

/* FullCalendar's fields for `series` ({rrule, exdate, duration}), or null when it has no rule the page
 * can read (it is then shown once, at its own times). `originalStarts`: its exceptions' original starts. */
export function recurrenceInput(series, originalStarts) {
  const rruleLib = globalThis.rrule;
  const lines = (series.recurrence || []).filter((l) => l.includes(':')).map(lineParts);
  if (!rruleLib || !lines.some((l) => l.name === 'RRULE')) return null;
  try {
    return spelled(series, lines, originalStarts, rruleLib);
  } catch { // a time or rule the page cannot read
    return null;
  }
}

function spelled(series, lines, originalStarts, rruleLib) {
  const spell = speller(series);
  const text = [spell.dtstart];
  const exdate = [];
  for (const { name, tzid, value } of lines) {
    if (name === 'RRULE') {
      text.push(`RRULE:${value.split(';').map((part) => (/^UNTIL=/i.test(part)
        ? `UNTIL=${spell.until(part.slice(6))}` : part)).join(';')}`);
    } else if (name === 'RDATE' || name === 'EXDATE') {
      const values = value.split(',').map(icalValue).filter(Boolean);
      if (name === 'EXDATE') exdate.push(...values.map((v) => spell.exdate(v, tzid)));
      else if (values.length) text.push(`RDATE:${values.map((v) => spell.rdate(v, tzid)).join(',')}`);
    }
  }
  for (const start of originalStarts) {
    if (spell.kind === 'date') exdate.push(start.slice(0, 10));
    else if (!Number.isNaN(Date.parse(start))) {
      exdate.push(spell.exdate({ wall: utcWall(Date.parse(start)), utc: true }, null));
    }
  }
  const rule = text.join('\n');
  rruleLib.rrulestr(rule, { forceset: true }); // what the plugin will parse: a rule it refuses throws here
  const duration = spell.kind === 'date'
    ? { days: Math.round((Date.parse(`${series.end}T00:00:00Z`) - Date.parse(`${series.start}T00:00:00Z`)) / 86400000) }
    : { milliseconds: Date.parse(series.end) - Date.parse(series.start) };
  return { rrule: rule, exdate, duration };
}
