// The data module: REST reads and the live stream together (node --test, with fake fetch, EventSource and timers).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { restaurantSource } from '../static/lib/data.js';

const T0 = Date.parse('2026-12-01T12:00:30Z');
const MINUTE = 60_000;
const iso = (moment) => new Date(moment).toISOString();
const minute = (offset) => Math.floor(T0 / MINUTE) * MINUTE + offset * MINUTE;
const STATUSES = ['placed', 'confirmed', 'in_kitchen', 'ready_for_pickup', 'picked_up', 'delivered', 'cancelled'];

class FakeEventSource {
  static last = null;

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    FakeEventSource.last = this;
  }

  push(event, id = '') {
    this.onmessage?.({ data: JSON.stringify(event), lastEventId: id });
  }

  close() {
    this.readyState = 2;
  }
}

function liveBody({ placed = 0, sales = 0, asOf = null } = {}) {
  const today = { start: '2026-12-01T00:00:00+00:00', end: iso(minute(1)), count: 0, as_of: asOf };
  return {
    tenant: 't-a', timezone: 'UTC', now: iso(T0), seam: null,
    funnel: { as_of: asOf, orders: { ...Object.fromEntries(STATUSES.map((s) => [s, 0])), placed }, total: placed },
    couriers_waiting: { as_of: asOf, count: 0, couriers: [], truncated: false },
    ratings: { as_of: asOf, latest: [] },
    sales_today: { ...today, metric: 'gross_sales', value: sales },
    completed_today: { ...today, metric: 'orders_completed', value: 0 },
    prep_time_last_hour: { start: iso(minute(-59)), end: iso(minute(1)), value: null, count: 0, as_of: null },
  };
}

function series(url, freshness = null) {
  const from = Date.parse(url.searchParams.get('from'));
  const to = Date.parse(url.searchParams.get('to'));
  const step = url.searchParams.get('granularity') === '1h' ? 60 * MINUTE : MINUTE;
  const windows = [];
  for (let t = from; t < to; t += step) {
    windows.push({ start: iso(t), end: iso(t + step), group: {}, value: 0, count: 0, layer: 'speed', final: false });
  }
  return { start: iso(from), end: iso(to), seam: null, freshness, windows };
}

function harness(answers = {}) {
  const requests = [];
  const timers = [];
  const changes = [];
  let clock = T0;
  const fetchImpl = async (url) => {
    requests.push(url.pathname);
    assert.equal(url.searchParams.get('tenant'), 't-a');
    const answer = answers[url.pathname];
    const body = typeof answer === 'function' ? answer(url, clock) : answer ?? series(url);
    return { ok: true, json: async () => body, headers: new Map() };
  };
  const source = restaurantSource({
    tenant: 't-a', timeZone: 'UTC', fetchImpl, now: () => clock, origin: 'http://testserver',
    EventSourceImpl: FakeEventSource,
    setTimer: (fn, delay) => timers.push({ fn, at: clock + delay }) - 1,
    clearTimer: (id) => { timers[id] = null; },
    random: () => 0.5,
  });
  const stop = source.subscribe((part, detail) => changes.push(detail ? `${part}:${detail.state}` : part));
  return {
    source, requests, changes, stop, stream: FakeEventSource.last,
    /** Move the clock on and run the timers that fall due (and those they set), in time order. */
    async advance(ms) {
      const until = clock + ms;
      const settle = async () => {
        for (let i = 0; i < 20; i += 1) await new Promise((resolve) => { setImmediate(resolve); });
      };
      await settle();
      for (;;) {
        const due = timers.map((t, id) => [t, id]).filter(([t]) => t && t.at <= until).sort(([a], [b]) => a.at - b.at);
        if (!due.length) break;
        const [timer, id] = due[0];
        timers[id] = null;
        clock = Math.max(clock, timer.at);
        timer.fn(); // not awaited: a task may wait on a later timer
        await settle();
      }
      clock = until;
    },
  };
}

const metric = (name, offset, value, count = 1) => ({ type: 'metric', tenant: 't-a', metric: name,
  window_start: iso(minute(offset)), window_end: iso(minute(offset + 1)), value, count, as_of: iso(T0 + 1000) });

test('one stream, opened for the tenant; events that come before the read are applied to it', async () => {
  const h = harness({ '/v1/live': liveBody({ sales: 40 }) });
  assert.equal(h.stream.url, '/v1/stream?tenant=t-a');
  h.stream.push(metric('gross_sales', 0, 12.5), 'e-1');
  h.stream.push({ type: 'live_order', tenant: 't-a', order_id: 'o-1', status: 'placed', as_of: iso(T0 + 1000) });
  const live = await h.source.live();
  assert.equal(live.sales_today.value, 52.5);
  assert.equal(live.funnel.orders.placed, 1);
  assert.deepEqual(h.requests.sort(), ['/v1/live', '/v1/metrics/gross_sales/series', '/v1/metrics/orders_completed/series']);
  h.stop();
});

test('a pushed minute updates the tile and the chart, never twice; another tenant\'s event is dropped', async () => {
  const h = harness({ '/v1/live': liveBody({ sales: 40 }) });
  await h.source.live();
  await h.source.series('24h');
  h.changes.length = 0;
  h.stream.push(metric('gross_sales', 0, 12.5));
  h.stream.push(metric('gross_sales', 0, 12.5));
  h.stream.push({ ...metric('gross_sales', 0, 999), tenant: 't-b' });
  assert.equal(h.source.liveView().sales_today.value, 52.5);
  assert.equal(h.source.chartView().sales.windows.at(-1).value, 12.5);
  assert.deepEqual(h.changes, ['live', 'series', 'live', 'series']);
  h.stop();
});

test('a total and its seeds that saw different rows are read again, once the answer cache let go', async () => {
  let reads = 0;
  const h = harness({
    '/v1/live': () => { reads += 1; return liveBody({ sales: 40, asOf: iso(T0 - (reads === 1 ? 2000 : 1000)) }); },
    '/v1/metrics/gross_sales/series': (url) => series(url, iso(T0 - 1000)),
    '/v1/metrics/orders_completed/series': (url) => series(url, iso(T0 - 1000)),
  });
  await h.source.live();
  assert.equal(reads, 1); // drawn at once, then read again after the answer cache let go
  h.changes.length = 0;
  await h.advance(1300);
  assert.equal(reads, 2);
  assert.deepEqual(h.changes, ['live']);
  await h.advance(5000);
  assert.equal(reads, 2); // settled
  h.stop();
});

test('an order the funnel cannot place makes one read of /v1/live, after the burst', async () => {
  let rereads = 0;
  let loaded = false;
  const fresh = iso(T0 - 1000); // what the seeds saw too
  const h = harness({
    '/v1/live': (url, clock) => {
      if (!loaded) return liveBody({ placed: 1, asOf: fresh });
      rereads += 1; // a read that holds every row written until now
      return { ...liveBody({ asOf: iso(clock) }),
        funnel: { as_of: iso(clock), orders: { ...liveBody().funnel.orders, confirmed: 1 }, total: 1 } };
    },
    '/v1/metrics/gross_sales/series': (url) => series(url, fresh),
    '/v1/metrics/orders_completed/series': (url) => series(url, fresh),
  });
  await h.source.live();
  loaded = true;
  h.stream.push({ type: 'live_order', tenant: 't-a', order_id: 'o-old', status: 'confirmed', as_of: iso(T0) });
  h.stream.push({ type: 'live_order', tenant: 't-a', order_id: 'o-old2', status: 'confirmed', as_of: iso(T0) });
  assert.equal(h.source.liveView().funnel.total, 3); // counted in the new status, former one unknown
  await h.advance(1000);
  assert.equal(rereads, 1);
  assert.deepEqual(h.source.liveView().funnel.orders.confirmed, 1); // as the new read says
  assert.equal(h.source.liveView().funnel.total, 1);
  // Another such order soon after: read again, but not before 5 s since the last read.
  h.stream.push({ type: 'live_order', tenant: 't-a', order_id: 'o-old3', status: 'confirmed', as_of: iso(T0 + 1000) });
  await h.advance(3000);
  assert.equal(rereads, 1);
  await h.advance(3000);
  assert.equal(rereads, 2);
  h.stop();
});

test('reset asks for every read again; prep time and top items are read again after a burst', async () => {
  const h = harness({ '/v1/live': liveBody(), '/v1/metrics/items_sold/top': { top: [] } });
  await h.source.live();
  h.changes.length = 0;
  h.stream.push({ type: 'reset', tenant: 't-a', reason: 'resume from another process' });
  h.stream.push(metric('items_sold', 0, 2));
  h.stream.push(metric('items_sold', 0, 3));
  h.stream.push(metric('prep_time_seconds', 0, 300));
  const before = h.requests.length;
  await h.advance(2000);
  assert.deepEqual(h.changes, ['reset', 'top', 'live']);
  assert.deepEqual(h.requests.slice(before), ['/v1/live']);
  h.stop();
});

test('at each minute the chart moves on with no request', async () => {
  const h = harness({ '/v1/live': liveBody() });
  await h.source.live();
  await h.source.series('24h');
  const before = h.requests.length;
  const last = Date.parse(h.source.chartView().orders.windows.at(-1).start);
  await h.advance(2 * MINUTE);
  assert.equal(h.requests.length, before);
  assert.equal(Date.parse(h.source.chartView().orders.windows.at(-1).start), last + 2 * MINUTE);
  assert.equal(h.source.chartView().orders.windows.length, 1440);
  h.stop();
});

test('alerts: the history, then pushed alerts; the stream state is reported', async () => {
  const h = harness({ '/v1/alerts/history': { events: [], next_before: null } });
  assert.deepEqual((await h.source.alerts()).entries, []);
  h.stream.onopen();
  h.stream.push({ type: 'alert', tenant: 't-a', id: 'r:t-a:1:firing', status: 'firing', metric: 'orders_placed',
    value: 70, threshold: 50, condition: 'gt', window_end: iso(T0) });
  assert.deepEqual(h.source.alertsView().entries.map((e) => e.key), ['r:t-a:1:firing']);
  assert.deepEqual(h.changes, ['stream:connecting', 'stream:live', 'alerts']);
  h.stop();
});
