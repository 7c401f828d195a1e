/* Sync health: the status poll (/status), the Sync health tab, the sidebar summary and the top bar's dot. */
import { PROVIDER_LABEL, accountStateLabel, renderAccounts } from './accounts.js';
import { api } from './api.js';
import { loadConflicts, setConflictCount } from './conflicts.js';
import { $, el } from './dom.js';
import { setLive } from './live.js';
import { renderCalendarList } from './sidebar.js';
import { POLL_MS, colourOf, state } from './state.js';
import { duration, relative, timeFormat } from './time.js';

export async function refreshStatus() {
  const status = await api('GET', '/status');
  state.status = status;
  const hadAccounts = state.accounts.size;
  state.accounts = new Map(status.accounts.map((a) => [a.id, a]));
  if (!hadAccounts && state.accounts.size) renderCalendarList();
  renderAccounts();
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

const HEALTH_WORDS = { ok: 'in sync', busy: 'syncing', error: 'error' };

/* A table whose rows turn into labelled blocks in a narrow box (app.css): each cell names its column. */
function grid(id, headers, rows) {
  for (const row of rows) {
    [...row.children].forEach((cell, i) => { cell.dataset.label = headers[i]; });
  }
  return el('div', { class: 'table-wrap' }, el('table', { class: 'grid stacks', id },
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows)));
}

/* "Google · alice (emulated Google)": which provider and account a binding syncs with. */
function bindingOf(b) {
  const account = state.accounts.get(b.account_id);
  if (!account) return b.account_id.slice(0, 8);
  return `${PROVIDER_LABEL[account.provider] || account.provider} · ${account.name}`;
}

function renderHealth(status) {
  const now = Date.now();
  const accountsBad = status.accounts.filter((a) => a.state !== 'ok' || a.backoff_until);
  const bindingStates = status.bindings.map(bindingHealth);
  const worst = accountsBad.length || bindingStates.includes('error') ? 'error'
    : bindingStates.includes('busy') ? 'busy' : 'ok';
  const dot = $('#health-dot');
  dot.className = `dot ${worst}`;
  dot.title = worst === 'ok' ? 'all calendars in sync'
    : worst === 'busy' ? 'syncing' : 'a calendar or account has a problem';
  dot.setAttribute('aria-label', dot.title);

  const summary = $('#health-summary');
  summary.classList.remove('muted');
  summary.replaceChildren(
    ...status.bindings.map((b) => {
      const cal = state.calById.get(b.calendar_id);
      const health = bindingHealth(b);
      // the words carry the state; the dot only repeats it
      return el('div', { class: 'health-line', dataset: { bindingId: b.id, health } },
        el('span', { class: `dot ${health}`, 'aria-hidden': 'true' }),
        el('span', { class: 'health-name' }, cal ? cal.name : b.remote_calendar_id),
        el('span', { class: 'binding-of' }, bindingOf(b)),
        el('span', { class: 'muted small' }, b.last_error ? `${HEALTH_WORDS.error}: ${b.last_error}`
          : b.last_sync_at ? `${HEALTH_WORDS[health]} · synced ${relative(b.last_sync_at, now)}`
            : HEALTH_WORDS[health]));
    }),
    el('div', { class: 'muted small health-totals' },
      `${status.open_conflicts} open conflict${status.open_conflicts === 1 ? '' : 's'} · `
      + `${status.outbox_backlog} to push · ${status.conference_backlog} `
      + `conference job${status.conference_backlog === 1 ? '' : 's'}`));

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
      el('td', {}, el('span', { class: 'swatch', style: `--c: ${colourOf(b.calendar_id)}` }),
        cal ? cal.name : b.calendar_id),
      el('td', {}, bindingOf(b)),
      el('td', { class: 'mono' }, b.remote_calendar_id),
      el('td', {}, `${b.direction} · ${b.conflict_policy}`),
      el('td', { title: b.last_sync_at || '' }, `${relative(b.last_sync_at, now)}`,
        b.last_sync_status
          ? el('span', { class: `pill ${b.last_sync_status === 'ok' ? 'ok' : 'warn'}` }, b.last_sync_status) : null),
      el('td', { title: b.last_success_at || '' }, relative(b.last_success_at, now)),
      el('td', {}, b.has_sync_token ? duration(b.token_age_seconds) : 'no token'),
      el('td', {}, ch ? [`expires ${relative(ch.expiration, now)}`, el('br'),
        el('span', { class: 'muted small' },
          `${ch.confirmed ? 'confirmed' : 'unconfirmed'} · ${ch.messages} message${ch.messages === 1 ? '' : 's'}`
          + (ch.last_message_at ? ` · last ${relative(ch.last_message_at, now)}` : ''))]
        : el('span', { class: 'muted' }, 'none (polling)')),
      el('td', { class: 'num' }, String(b.outbox_backlog), b.dirty ? el('span', { class: 'pill busy' }, 'dirty') : null,
        b.leased ? el('span', { class: 'pill busy' }, 'syncing') : null),
      el('td', {}, relative(b.next_poll_at, now)),
      el('td', { class: b.last_error ? 'error-text' : 'muted' }, b.last_error || '—'));
  });
  const accountRows = status.accounts.map((a) => el('tr',
    { class: a.state === 'ok' ? '' : 'health-error', dataset: { accountId: a.id } },
    el('td', {}, a.name), el('td', {}, a.provider),
    el('td', {}, el('span', { class: `pill ${a.state === 'ok' ? 'ok' : 'warn'}` }, accountStateLabel(a.state))),
    el('td', {}, a.backoff_until ? `until ${relative(a.backoff_until, now)}` : '—'),
    el('td', { class: a.last_error ? 'error-text' : 'muted' }, a.last_error || '—')));

  $('#health').replaceChildren(
    cards,
    el('h2', {}, 'Calendars'),
    grid('binding-health', ['Calendar', 'Account', 'Remote calendar', 'Direction · policy', 'Last sync',
      'Last success', 'Token age', 'Notification channel', 'Backlog', 'Next poll', 'Last error'], bindingRows),
    el('h2', {}, 'Accounts'),
    grid('account-health', ['Account', 'Provider', 'State', 'Backoff', 'Last error'], accountRows),
    el('p', { class: 'muted small' },
      `Updated ${timeFormat.format(new Date())} · refreshed every ${POLL_MS / 1000} s`));
}

function card(label, value, kind = '') {
  return el('div', { class: `card ${kind}` }, el('div', { class: 'card-value' }, String(value)),
    el('div', { class: 'card-label' }, label));
}
