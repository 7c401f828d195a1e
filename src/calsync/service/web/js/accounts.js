/* The sidebar's accounts: each account with its provider and state in words, "Connect … account" per
 * provider this server can connect (/api/v1/oauth/providers), "Reconnect" for an account whose grant is
 * gone, and the note after a consent page sends the browser back to `/?connected=<account id>`.
 * Connecting is a navigation to /oauth/<provider>/start: the service keeps the state and PKCE verifier. */
import { api } from './api.js';
import { $, el } from './dom.js';
import { state } from './state.js';

const FLOW_LABEL = { google: 'Google', microsoft: 'Microsoft' };
export const PROVIDER_LABEL = { google: 'Google', graph: 'Microsoft', caldav: 'CalDAV' };
// the words carry the state; the pill's colour only repeats it
const STATE_LABEL = { ok: 'Connected', 'auth-failed': 'Sign-in failed', 'reauth-required': 'Reauthorisation required' };

let shown = '';     // what the list shows now: re-rendered only when it changes, so focus stays put
let connected = null;  // the account a consent page just connected, from ?connected=

export const accountStateLabel = (s) => STATE_LABEL[s] || s;

export async function loadOAuthProviders() {
  try {
    state.oauthProviders = (await api('GET', '/oauth/providers')).providers;
  } catch {
    state.oauthProviders = [];  // an older service: connect from the command line
  }
  renderAccounts();
}

/* Take `?connected=<id>` off the address (a reload must not confirm again); the note is shown once the
 * status names the account. */
export function takeConnected() {
  const url = new URL(window.location.href);
  connected = url.searchParams.get('connected');
  if (connected === null) return;
  url.searchParams.delete('connected');
  window.history.replaceState(window.history.state, '', url.pathname + url.search + url.hash);
}

function startUrl(flow, loginHint) {
  const query = loginHint ? `?${new URLSearchParams({ login_hint: loginHint })}` : '';
  return `/oauth/${encodeURIComponent(flow)}/start${query}`;
}

function go(url) {
  window.location.assign(url);
}

function boundCount(accountId) {
  return ((state.status && state.status.bindings) || []).filter((b) => b.account_id === accountId).length;
}

function accountItem(a, offered) {
  const bad = a.state !== 'ok';
  const bound = boundCount(a.id);
  const lines = [
    el('span', { class: 'account-name' }, a.name),
    el('span', { class: 'cal-meta' }, `${PROVIDER_LABEL[a.provider] || a.provider}`
      + (a.user && a.user !== a.name ? ` · ${a.user}` : '')
      + ` · ${bound ? `${bound} calendar${bound === 1 ? '' : 's'}` : 'no calendar bound yet'}`),
    el('span', { class: 'account-state' },
      el('span', { class: `pill ${bad ? 'warn' : 'ok'}` }, `${bad ? '!' : '✓'} ${accountStateLabel(a.state)}`),
      a.backoff_until ? el('span', { class: 'muted small' }, ' · the provider asked us to wait') : null),
  ];
  if (bad && a.last_error) lines.push(el('span', { class: 'account-error small' }, a.last_error));
  if (bad) {
    if (a.connect && offered.includes(a.connect)) {
      lines.push(el('button', { type: 'button', class: 'small primary', 'aria-label': `Reconnect ${a.name}`,
        onclick: () => go(startUrl(a.connect, a.user)) }, 'Reconnect'));
    } else {
      const how = a.connect ? `calsync account connect ${a.connect}` : 'the calsync command';
      lines.push(el('span', { class: 'muted small' }, `Renew its credentials with ${how}.`));
    }
  }
  return el('li', { class: `account-item${bad ? ' bad' : ''}`, dataset: { accountId: a.id, state: a.state } },
    ...lines);
}

/* Called after each status poll and when the providers are known. */
export function renderAccounts() {
  const accounts = [...state.accounts.values()];
  const offered = state.oauthProviders || [];
  const key = JSON.stringify([accounts, state.oauthProviders, Boolean(state.status),
    accounts.map((a) => boundCount(a.id)), connected]);
  if (key === shown) return;
  shown = key;

  const list = $('#account-list');
  list.replaceChildren(...(accounts.length ? accounts.map((a) => accountItem(a, offered))
    : [el('li', { class: 'muted' }, state.status ? 'No accounts yet.' : 'Loading…')]));
  const buttons = offered.map((flow) => el('button', { type: 'button', onclick: () => go(startUrl(flow)) },
    `Connect ${FLOW_LABEL[flow] || flow} account`));
  if (state.oauthProviders && !offered.length) {
    buttons.push(el('p', { class: 'muted small' },
      'This server has no OAuth client configured: connect accounts with calsync account connect.'));
  }
  $('#connect-buttons').replaceChildren(...buttons);

  const account = connected && state.accounts.get(connected);
  if (account) {
    const note = $('#account-note');
    note.hidden = false;
    note.textContent = `Connected ${account.name} (${PROVIDER_LABEL[account.provider] || account.provider}).`
      + (boundCount(account.id) ? ' Its calendars sync again shortly.'
        : ' Bind one of its calendars with calsync calendar bind.');
    connected = null;
  }
}
