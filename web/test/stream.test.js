// The page's one EventSource: events, resume and reopening after a close (node --test, with a fake EventSource).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { MAX_RETRY_MS, openStream, retryDelay, streamUrl } from '../static/lib/stream.js';

class FakeEventSource {
  static opened = [];

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.closed = false;
    FakeEventSource.opened.push(this);
  }

  open() {
    this.readyState = 1;
    this.onopen?.();
  }

  send(data, lastEventId = '') {
    this.onmessage?.({ data, lastEventId });
  }

  fail(readyState) {
    this.readyState = readyState;
    this.onerror?.();
  }

  close() {
    this.readyState = 2;
    this.closed = true;
  }
}

function harness() {
  FakeEventSource.opened = [];
  const events = [];
  const states = [];
  const timers = [];
  const stop = openStream('/v1/stream?tenant=t-a', {
    onEvent: (event) => events.push(event),
    onState: (state, detail) => states.push(detail == null ? state : `${state} ${detail}`),
    EventSourceImpl: FakeEventSource,
    setTimer: (fn, delay) => timers.push({ fn, delay }) - 1,
    clearTimer: (id) => { timers[id] = null; },
    random: () => 0.5,
  });
  return { events, states, timers, stop, sources: FakeEventSource.opened };
}

test('events are parsed JSON objects with a type; anything else is ignored', () => {
  const { events, states, sources } = harness();
  assert.equal(sources.length, 1);
  assert.equal(sources[0].url, '/v1/stream?tenant=t-a');
  sources[0].open();
  sources[0].send('{"type":"metric","value":1}', 'e-1');
  sources[0].send('not json', 'e-2');
  sources[0].send('[1,2]', 'e-3');
  sources[0].send('{"value":1}', 'e-4');
  assert.deepEqual(events, [{ type: 'metric', value: 1 }]);
  assert.deepEqual(states, ['connecting', 'live']);
});

test('the browser reconnects a dropped stream itself; a closed one is reopened here from the last event id', () => {
  const { states, timers, sources, stop } = harness();
  sources[0].open();
  sources[0].send('{"type":"metric"}', 'abc-7');
  sources[0].fail(0); // CONNECTING: the browser retries with Last-Event-ID
  assert.equal(sources.length, 1);
  sources[0].fail(2); // CLOSED: an HTTP error
  assert.equal(sources[0].closed, true);
  assert.equal(timers.length, 1);
  assert.equal(timers[0].delay, 750); // 1 s, half of it random
  timers[0].fn();
  assert.equal(sources.length, 2);
  assert.equal(sources[1].url, '/v1/stream?tenant=t-a&last_event_id=abc-7');
  sources[1].fail(2);
  assert.equal(timers[1].delay, 1500); // doubled
  timers[1].fn();
  sources[2].open(); // open again: the next failure starts from 1 s
  sources[2].fail(2);
  assert.equal(timers[2].delay, 750);
  assert.deepEqual(states.slice(0, 5), ['connecting', 'live', 'reconnecting', 'retrying 750', 'connecting']);
  stop();
  assert.equal(timers[2], null);
  assert.equal(states.at(-1), 'closed');
  sources[2].fail(2); // after stop nothing reopens
  assert.equal(timers.length, 3);
});

test('retry delays grow to a cap and the last event id goes into the URL', () => {
  assert.equal(retryDelay(0, () => 1), 1000);
  assert.equal(retryDelay(3, () => 0), 4000);
  assert.equal(retryDelay(40, () => 1), MAX_RETRY_MS);
  assert.equal(streamUrl('/v1/stream?tenant=t-a', null), '/v1/stream?tenant=t-a');
  assert.equal(streamUrl('/v1/stream', 'x-1'), '/v1/stream?last_event_id=x-1');
});

test('without EventSource the page says so and nothing is opened', () => {
  const states = [];
  const stop = openStream('/v1/stream', { onEvent: () => {}, onState: (s) => states.push(s), EventSourceImpl: undefined });
  stop();
  assert.deepEqual(states, ['unsupported']);
});
