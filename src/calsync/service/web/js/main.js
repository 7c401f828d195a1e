/* calsync web page: a calendar over the REST API (/api/v1), native ES modules, no build step.
 * This module wires the others together and starts the polls. FullCalendar, rrule.js and FullCalendar's
 * rrule plugin are classic scripts loaded before it (globals FullCalendar and rrule; see vendor/). */
import { loadOAuthProviders, takeConnected } from './accounts.js';
import { api, loadSession, logout } from './api.js';
import { getCalendar, loadRange, makeCalendar, onEventsApplied } from './calendar.js';
import { initConflicts, loadConflicts } from './conflicts.js';
import { checkArrival, loadDemo } from './demo.js';
import { openCreate, openEdit, wireDialog } from './dialog.js';
import { toast } from './dom.js';
import { refreshStatus } from './health.js';
import { setLive } from './live.js';
import { loadCalendars, renderCalendarList } from './sidebar.js';
import { CALENDARS_MS, EVENTS_MS, POLL_MS, state } from './state.js';
import { chooseLocale, chosenLocale, pageLocale, viewerZone } from './time.js';

const LOCALES = ['en-GB', 'en-US', 'de-DE', 'fr-FR', 'es-ES', 'ja-JP'];

function showTab(name) {
  state.tab = name;
  for (const button of document.querySelectorAll('.tabs [role=tab]')) {
    button.setAttribute('aria-selected', String(button.dataset.tab === name));
  }
  for (const panel of document.querySelectorAll('.tab-panel')) panel.hidden = panel.id !== `tab-${name}`;
  const calendar = getCalendar();
  if (name === 'calendar' && calendar) { calendar.updateSize(); loadRange(); }
  if (name === 'conflicts') { state.conflictsShown = ''; loadConflicts().catch((err) => toast(err.message, 'error')); }
}

/* Narrow screens fold the sidebar behind the top bar's button (app.css); it says whether it is open. */
function wireSidebar() {
  const toggle = document.getElementById('sidebar-toggle');
  const layout = document.querySelector('.layout');
  toggle.addEventListener('click', () => {
    const open = !layout.classList.contains('sidebar-open');
    layout.classList.toggle('sidebar-open', open);
    toggle.setAttribute('aria-expanded', String(open));
    if (open) document.getElementById('sidebar').scrollIntoView({ block: 'start' });
  });
}

/* The sidebar's Display section: the locale dates are written in (the browser's unless chosen; a reload
 * applies it everywhere) and the time zone everything is shown in (the browser's). */
function wireDisplay() {
  const select = document.getElementById('locale-choice');
  const browser = navigator.language || 'en';
  select.replaceChildren(new Option(`your browser's (${browser})`, ''),
    ...LOCALES.map((code) => new Option(code, code)));
  select.value = chosenLocale();
  select.addEventListener('change', () => { chooseLocale(select.value); window.location.reload(); });
  const example = new Intl.DateTimeFormat(pageLocale(), { dateStyle: 'medium', timeStyle: 'short' }).format(new Date());
  document.getElementById('zone-line').textContent = `Time zone: ${viewerZone()} (your browser's). Now: ${example}.`;
}

/* The view tabs: a click or Enter picks one; the arrow keys move between them (the ARIA tabs pattern). */
function wireTabs() {
  const buttons = [...document.querySelectorAll('.tabs [role=tab]')];
  for (const [i, button] of buttons.entries()) {
    button.addEventListener('click', () => showTab(button.dataset.tab));
    button.addEventListener('keydown', (ev) => {
      const step = ev.key === 'ArrowRight' ? 1 : ev.key === 'ArrowLeft' ? -1 : 0;
      if (!step) return;
      ev.preventDefault();
      const next = buttons[(i + step + buttons.length) % buttons.length];
      next.focus();
      showTab(next.dataset.tab);
    });
  }
}

function wire() {
  wireTabs();
  wireSidebar();
  wireDisplay();
  wireDialog();
  initConflicts({ refreshStatus });
  onEventsApplied(checkArrival);
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

async function showUser() {
  const who = await loadSession();
  const box = document.getElementById('user-box');
  if (!who || !box) return;
  document.getElementById('user-name').textContent = who.name;
  // a login session can end; the tests' open page (no session, no CSRF token) has nothing to log out of
  document.getElementById('logout').hidden = !who.csrf_token;
  box.hidden = false;
}

async function start() {
  wire();
  document.getElementById('logout').addEventListener('click', () => { logout(); });
  showUser();
  takeConnected();
  loadOAuthProviders();
  try {
    await Promise.all([loadCalendars(), refreshStatus().catch(() => null)]);
    renderCalendarList();
  } catch (err) {
    toast(`The calsync service does not answer: ${err.message}`, 'error');
  }
  api('GET', '/conference-providers').then((d) => { state.providers = d.providers; }).catch(() => null);
  loadDemo();
  makeCalendar({ onSelect: openCreate, onOpen: openEdit });
  poll(() => (state.loading || state.dragging || state.tab !== 'calendar' ? null : loadRange()), EVENTS_MS);
  poll(refreshStatus, POLL_MS);
  poll(loadCalendars, CALENDARS_MS);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) loadRange(); });
}

// for the browser tests and a curious person's console
window.calsync = { state, get calendar() { return getCalendar(); }, loadRange, refreshStatus, showTab };
start();
