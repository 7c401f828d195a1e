/* The one place the page sends requests to the service (`/api/v1`): JSON in and out, errors as ApiError.
 * The login session's cookie goes by itself (HttpOnly: no script reads it); its CSRF token, read once
 * from GET /api/v1/session, goes with every state-changing request, which the service refuses without. */

const API = '/api/v1';
const READS = new Set(['GET', 'HEAD', 'OPTIONS']);
const CSRF_HEADER = 'X-CSRF-Token';

let session = null;

/** Who is logged in ({user_id, name, is_admin, csrf_token}); fetched once, shared by every caller. */
export function loadSession() {
  if (!session) {
    session = fetch(`${API}/session`, { headers: { Accept: 'application/json' } }).then(async (response) => {
      if (response.status === 401) { window.location.assign('/login'); return null; }
      return response.ok ? response.json() : null;
    }).catch(() => null);
  }
  return session;
}

/** End the login session and go back to the login page. */
export async function logout() {
  const who = await loadSession();
  const headers = who && who.csrf_token ? { [CSRF_HEADER]: who.csrf_token } : {};
  await fetch('/logout', { method: 'POST', headers }).catch(() => null);
  window.location.assign('/login');
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(describeDetail(status, detail));
    this.status = status;
    this.detail = detail;
  }
}

function describeDetail(status, detail) {
  if (Array.isArray(detail)) {
    return detail.map((d) => {
      const loc = (d.loc || []).filter((p) => p !== 'body' && p !== 'query').join('.');
      return loc ? `${loc}: ${d.msg}` : d.msg;
    }).join('; ');
  }
  if (detail && typeof detail === 'object') return detail.msg || JSON.stringify(detail);
  return detail || `the service answered ${status}`;
}

export async function api(method, path, body, headers = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers } };
  if (!READS.has(method)) {
    const who = await loadSession();
    if (who && who.csrf_token) init.headers[CSRF_HEADER] = who.csrf_token;
  }
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (err) {
    throw new ApiError(0, 'the calsync service cannot be reached');
  }
  let data = null;
  if (response.status !== 204) {
    const text = await response.text();
    try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  }
  if (response.status === 401) {
    const who = await loadSession();
    if (who && who.csrf_token) window.location.assign('/login');  // the login session ended
  }
  if (!response.ok) throw new ApiError(response.status, data && data.detail !== undefined ? data.detail : data);
  return data;
}
