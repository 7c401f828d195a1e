/* The "live" indicator in the top bar: green while the service answers, "offline" after two failures. */
import { $ } from './dom.js';
import { EVENTS_MS, state } from './state.js';

export function setLive(ok, why) {
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
