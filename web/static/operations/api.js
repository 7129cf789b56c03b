// The operations page's reads and its one write, through the public API (/v1/ops/..., /v1/catalog) like any
// client: the session cookie authenticates them, and a same-origin fetch carries the Origin a cookie POST needs.

export class ApiError extends Error {
  constructor(status, detail, retryAfter = null) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

async function request(path, { method = 'GET', body = undefined } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let detail = '';
    try {
      detail = (await response.json()).detail || '';
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(response.status, detail || response.statusText, response.headers.get('Retry-After'));
  }
  return response.json();
}

/** Every part of the pipeline's state (each with `available`). */
export const overview = () => request('/v1/ops/overview');

/** The metric catalog (names for the backfill form). */
export const catalog = () => request('/v1/catalog');

/** The newest backfill runs. */
export const backfills = () => request('/v1/ops/backfills');

/** One backfill run with its tasks. */
export const backfill = (runId) => request(`/v1/ops/backfills/${encodeURIComponent(runId)}`);

/** Start a backfill of [from, to) (admin only): the run id and where to follow it. */
export const startBackfill = ({ from, to, metrics, reconcile }) =>
  request('/v1/ops/backfills', { method: 'POST', body: { from, to, metrics, reconcile } });

/** An error in words for the page (a 401 sends the browser to sign-in). */
export function explain(error) {
  if (error instanceof ApiError) {
    if (error.status === 401) {
      window.location.assign('/');
      return 'signed out';
    }
    if (error.status === 429 || error.status === 503) {
      return `temporarily unavailable (${error.message})${error.retryAfter ? `; retry in ${error.retryAfter} s` : ''}`;
    }
    return error.message;
  }
  return 'could not be read (network error)';
}
