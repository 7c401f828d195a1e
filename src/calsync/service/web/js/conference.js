/* The dialog's conference section: the event's meeting (join link only for http(s) URLs), or a choice of
 * conference systems to add one; adding and removing are immediate writes of their own. */
import { api } from './api.js';
import { upsertEvent } from './calendar.js';
import { $, cameraIcon, el, safeUrl, toast } from './dom.js';
import { renderSync, showDialogMessage } from './form.js';
import { state } from './state.js';

/* `failed(err, what)`: the dialog's handling of a refused write (412: reload the event into the form). */
export function renderConference(event, failed) {
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
        ? el('button', { type: 'button', class: 'small danger-outline', id: 'conference-remove',
          onclick: () => removeConference(failed) }, 'Remove conference') : null),
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
      ? el('button', { type: 'button', class: 'small', id: 'conference-add', onclick: () => addConference(failed) },
        'Add conference')
      : el('span', { class: 'muted small' }, ' created with the event')));
}

/* The dialog shows a new version of its event after a conference write. */
function showWritten(d, body, failed) {
  if (state.dialog !== d) return;
  d.original = { ...body };
  renderConference(body, failed);
  renderSync(body);
  showDialogMessage('');
}

async function addConference(failed) {
  const d = state.dialog;
  const provider = $('#conference-provider').value;
  const button = $('#conference-add');
  button.disabled = true;
  button.textContent = 'Creating…';
  state.writeSeq += 1;
  try {
    const body = await api('POST', `/events/${d.original.id}/conference`, { provider });
    upsertEvent(body);
    showWritten(d, body, failed);
    toast(`Added a ${body.conference ? body.conference.name : provider} meeting to “${body.title}”`, 'ok');
  } catch (err) {
    showDialogMessage(`The conference was not added: ${err.message}`, 'error');
    if (state.dialog === d) renderConference(d.original, failed);
  }
}

async function removeConference(failed) {
  const d = state.dialog;
  const button = $('#conference-remove');
  button.disabled = true;
  state.writeSeq += 1;
  try {
    const body = await api('DELETE', `/events/${d.original.id}/conference`, undefined, { 'If-Match': d.original.etag });
    upsertEvent(body);
    showWritten(d, body, failed);
    toast(`Removed the conference from “${body.title}”`, 'ok');
  } catch (err) {
    button.disabled = false;
    await failed(err, 'The conference was not removed');
  }
}
