// One EventSource on the tenant's live stream (GET /v1/stream; the session cookie authenticates it, same origin).
//
// The browser reconnects a dropped stream by itself (after the server's `retry:` delay), sending the last event's
// id as Last-Event-ID, and the server resumes after it or sends a `reset`. When the stream is closed for good (an
// HTTP error: 401, 403, 503 at the viewer cap, ...) it is opened again here after a growing, jittered pause
// (1 s, 2 s, 4 s ... up to 30 s), with the last id as `last_event_id` (a new EventSource cannot send the header).
// No polling: nothing is requested while the stream is open.

const CLOSED = 2; // EventSource.CLOSED (not defined where there is no EventSource, e.g. node)
export const FIRST_RETRY_MS = 1000;
export const MAX_RETRY_MS = 30_000;

/** The pause before the `attempt`-th reopening (0-based): doubling from FIRST_RETRY_MS, capped, half of it random. */
export function retryDelay(attempt, random = Math.random) {
  const full = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.min(attempt, 16));
  return Math.round(full / 2 + (full / 2) * random());
}

/** `path` with `last_event_id` set (or left out). */
export function streamUrl(path, lastEventId) {
  if (!lastEventId) return path;
  const [base, query = ''] = path.split('?', 2);
  const params = new URLSearchParams(query);
  params.set('last_event_id', lastEventId);
  return `${base}?${params}`;
}

/**
 * Open the stream at `path` and keep it open until the returned function is called.
 * - `onEvent(event)`: each event's parsed JSON (an object with a `type`); anything else is ignored.
 * - `onState(state, detail)`: 'connecting' | 'live' | 'reconnecting' (the browser retries) | 'retrying' (closed;
 *   reopened after `detail` ms) | 'closed' (stopped here) | 'unsupported' (no EventSource: nothing is pushed).
 */
export function openStream(path, { onEvent, onState = () => {}, EventSourceImpl = globalThis.EventSource,
  setTimer = (fn, delay) => setTimeout(fn, delay), clearTimer = (id) => clearTimeout(id), random = Math.random } = {}) {
  let source = null;
  let lastEventId = null;
  let attempt = 0;
  let timer = null;
  let stopped = false;
  if (typeof EventSourceImpl !== 'function') {
    onState('unsupported');
    return () => {};
  }

  function connect() {
    timer = null;
    if (stopped) return;
    onState('connecting');
    const current = new EventSourceImpl(streamUrl(path, lastEventId));
    source = current;
    current.onopen = () => {
      if (current !== source) return;
      attempt = 0;
      onState('live');
    };
    current.onmessage = (message) => {
      if (current !== source) return;
      if (message.lastEventId) lastEventId = message.lastEventId;
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return; // not JSON: not ours
      }
      if (event && typeof event === 'object' && typeof event.type === 'string') onEvent(event);
    };
    current.onerror = () => {
      if (current !== source || stopped) return;
      if (current.readyState === CLOSED) {
        current.close();
        const delay = retryDelay(attempt, random);
        attempt += 1;
        onState('retrying', delay);
        timer = setTimer(connect, delay);
      } else {
        onState('reconnecting');
      }
    };
  }

  connect();
  return () => {
    stopped = true;
    if (timer != null) clearTimer(timer);
    source?.close();
    onState('closed');
  };
}
