// The page's live state: pushed events applied to REST reads (node --test; run by tests/unit/test_web_pages.py).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  Alerts, ChartSeries, Couriers, EventLog, Funnel, LiveWidgets, MINUTE_MS, MinuteTotal, NO_SEED, Ratings,
  SEED_MINUTES, consistent, seedBounds, seedOf,
} from '../static/lib/live.js';

const T0 = Date.parse('2026-12-01T12:00:00Z');
const at = (minutes, seconds = 0) => new Date(T0 + minutes * MINUTE_MS + seconds * 1000).toISOString();
const STATUSES = ['placed', 'confirmed', 'in_kitchen', 'ready_for_pickup', 'picked_up', 'delivered', 'cancelled'];

/** A 1-minute series answer over minutes [from, to) (relative to T0), values by minute. */
function minuteSeries(from, to, values = {}, freshness = null) {
  const windows = [];
  for (let m = from; m < to; m += 1) {
    windows.push({ start: at(m), end: at(m + 1), group: {}, value: values[m] ?? 0, count: values[m] ? 1 : 0,
      layer: 'speed', final: false });
  }
  return { start: at(from), end: at(to), freshness, windows };
}

const metric = (name, minute, value, count = 1, asOf = at(minute, 30)) => ({
  type: 'metric', tenant: 't-a', metric: name, window_start: at(minute), window_end: at(minute + 1), value, count,
  as_of: asOf });

test('seeds cover the last SEED_MINUTES whole minutes, the current one last', () => {
  const { from, to } = seedBounds(T0 + 30_000);
  assert.equal(to, T0 + MINUTE_MS);
  assert.equal(to - from, SEED_MINUTES * MINUTE_MS);
});

test('a total and its seed agree when they saw the same newest row, or no row of the seed minutes', () => {
  const seed = seedOf(minuteSeries(-14, 1, { 0: 5 }, at(0, 40)));
  assert.equal(consistent(Date.parse(at(0, 40)), seed), true);
  assert.equal(consistent(Date.parse(at(0, 41)), seed), false);
  const empty = seedOf(minuteSeries(-14, 1));
  assert.equal(consistent(null, empty), true);
  assert.equal(consistent(Date.parse(at(-60)), empty), true); // the total's newest row is older than the seed
  assert.equal(consistent(Date.parse(at(-2)), empty), false); // a row the seed did not see
});

test('sales today: a minute sent again replaces its value, never adds to it', () => {
  // Read at 12:00:30: 100 today, of which minute 11:59 holds 20 and 12:00 holds 5.
  const part = { metric: 'gross_sales', start: at(-12 * 60), end: at(1), value: 100, count: 10, as_of: at(0, 20) };
  const total = new MinuteTotal(part, seedOf(minuteSeries(-14, 1, { [-1]: 20, 0: 5 })));
  assert.equal(total.apply(metric('gross_sales', 0, 12.5, 2)), 'changed');
  assert.equal(total.body().value, 107.5);
  assert.equal(total.body().count, 11);
  assert.equal(total.apply(metric('gross_sales', 0, 12.5, 2)), 'changed'); // the same minute again
  assert.equal(total.body().value, 107.5);
  total.apply(metric('gross_sales', 0, 30, 3));
  assert.equal(total.body().value, 125);
  total.apply(metric('gross_sales', 1, 7)); // a minute after the read: all of it is new
  total.apply(metric('gross_sales', 1, 9));
  assert.equal(total.body().value, 134);
  total.apply(metric('gross_sales', -1, 25)); // a late event in the minute before
  assert.equal(total.body().value, 139);
  assert.equal(total.body().as_of, at(1, 30));
  // Before today, or before the seed (never pushed): not applied.
  assert.equal(total.apply(metric('gross_sales', -13 * 60, 50)), 'same');
  assert.equal(total.apply(metric('gross_sales', -30, 50)), 'same');
  assert.equal(total.body().value, 139);
  // Without a seed nothing pushed can be applied safely: the total stays as read.
  const unseeded = new MinuteTotal(part, NO_SEED);
  assert.equal(unseeded.apply(metric('gross_sales', 1, 7)), 'same');
  assert.equal(unseeded.body().value, 100);
});

const funnelOf = (orders, asOf = at(0)) => ({ as_of: asOf, orders: { ...Object.fromEntries(STATUSES.map((s) => [s, 0])), ...orders } });
const order = (id, status, asOf, extra = {}) => ({ type: 'live_order', tenant: 't-a', order_id: id, status, as_of: asOf, ...extra });

test('the funnel counts a new order once and moves an order it has seen', () => {
  const funnel = new Funnel(funnelOf({ placed: 3, delivered: 1 }));
  assert.equal(funnel.apply(order('o-1', 'placed', at(0, 5))), 'changed');
  assert.equal(funnel.apply(order('o-1', 'placed', at(0, 6))), 'changed'); // again: as-of only
  assert.equal(funnel.body().orders.placed, 4);
  assert.equal(funnel.apply(order('o-1', 'confirmed', at(0, 7))), 'changed');
  assert.deepEqual([funnel.body().orders.placed, funnel.body().orders.confirmed, funnel.body().total], [3, 1, 5]);
  assert.equal(funnel.body().as_of, at(0, 7));
});

test('an event the read already holds changes no count, but the next one of that order moves it', () => {
  const funnel = new Funnel(funnelOf({ placed: 2, confirmed: 1 }, at(0, 10)));
  assert.equal(funnel.apply(order('o-2', 'confirmed', at(0, 9))), 'same');
  assert.deepEqual(funnel.body().orders.confirmed, 1);
  funnel.apply(order('o-2', 'in_kitchen', at(0, 20)));
  assert.deepEqual([funnel.body().orders.confirmed, funnel.body().orders.in_kitchen], [0, 1]);
});

test('an older order the funnel has not seen: counted in its new status, and the funnel asks to be read again', () => {
  const funnel = new Funnel(funnelOf({ placed: 2 }));
  assert.equal(funnel.apply(order('o-3', 'confirmed', at(0, 30))), 'unknown');
  assert.equal(funnel.needsRead, Date.parse(at(0, 30)));
  assert.equal(funnel.body().orders.confirmed, 1);
});

test('couriers: an arrival adds one, a departure removes one, exactly while the read listed them all', () => {
  const couriers = new Couriers({ as_of: at(0), count: 1, truncated: false,
    couriers: [{ courier_id: 'c-1', order_id: 'o-1', since: at(-5) }] });
  const courier = (id, waiting, asOf, since = asOf) => ({ type: 'courier', courier_id: id, is_waiting: waiting,
    status_at: since, order_id: 'o-9', as_of: asOf });
  assert.equal(couriers.apply(courier('c-2', true, at(0, 10), at(-6))), 'changed');
  assert.deepEqual(couriers.body().couriers.map((c) => c.courier_id), ['c-2', 'c-1']); // longest waiting first
  assert.equal(couriers.apply(courier('c-3', false, at(0, 11))), 'changed'); // its as-of only
  assert.equal(couriers.body().count, 2);
  assert.equal(couriers.apply(courier('c-1', false, at(0, 12))), 'changed');
  assert.deepEqual([couriers.body().count, couriers.body().couriers.map((c) => c.courier_id)], [1, ['c-2']]);
  assert.equal(couriers.apply(courier('c-2', false, at(-1))), 'same'); // older than the read
  assert.equal(couriers.body().count, 1);
  const many = new Couriers({ as_of: at(0), count: 60, truncated: true, couriers: [] });
  assert.equal(many.apply(courier('c-x', true, at(0, 5))), 'unknown');
});

test('ratings: newest first, an order rated again replaces its rating', () => {
  const ratings = new Ratings({ as_of: at(0), latest: [{ order_id: 'o-1', food_rating: 3, delivery_rating: 3, rated_at: at(-1) }] }, 2);
  ratings.apply(order('o-2', 'delivered', at(0, 5), { rated_at: at(0, 4), food_rating: 5.0, delivery_rating: 4.0 }));
  ratings.apply(order('o-1', 'delivered', at(0, 6), { rated_at: at(0, 6), food_rating: 1, delivery_rating: 2 }));
  ratings.apply(order('o-3', 'delivered', at(0, 3), { rated_at: at(0, 2), food_rating: 4, delivery_rating: 4 }));
  assert.deepEqual(ratings.body().latest.map((r) => [r.order_id, r.food_rating]), [['o-1', 1], ['o-2', 5]]);
});

test('the live widgets take each event where it belongs and keep /v1/live\'s shape', () => {
  const body = {
    tenant: 't-a', timezone: 'UTC', now: at(0, 30), seam: null, funnel: funnelOf({}, null),
    couriers_waiting: { as_of: null, count: 0, couriers: [], truncated: false }, ratings: { as_of: null, latest: [] },
    sales_today: { start: at(-720), end: at(1), value: 0, count: 0, as_of: null },
    completed_today: { start: at(-720), end: at(1), value: 0, count: 0, as_of: null },
    prep_time_last_hour: { start: at(-59), end: at(1), value: null, count: 0, as_of: null },
  };
  const seeds = { gross_sales: seedOf(minuteSeries(-14, 1)), orders_completed: seedOf(minuteSeries(-14, 1)) };
  const live = new LiveWidgets(body, seeds);
  assert.equal(live.apply(order('o-1', 'placed', at(0, 31), { amount: 12.5 })), 'changed');
  assert.equal(live.apply(metric('gross_sales', 0, 12.5)), 'changed');
  assert.equal(live.apply(metric('orders_completed', 0, 1)), 'changed');
  assert.equal(live.apply(metric('items_sold', 0, 1)), 'same');
  const view = live.view(T0 + 40_000);
  assert.equal(view.funnel.orders.placed, 1);
  assert.equal(view.sales_today.value, 12.5);
  assert.equal(view.completed_today.value, 1);
  assert.equal(view.now, at(0, 40));
  assert.equal(view.prep_time_last_hour.value, null);
});

test('a 24 h chart: a pushed minute replaces its window; new minutes are added as time passes', () => {
  const series = new ChartSeries(minuteSeries(-1439, 1, { 0: 2 }), MINUTE_MS);
  assert.equal(series.apply(metric('orders_placed', 0, 3, 3)), 'changed');
  assert.equal(series.apply(metric('orders_placed', 0, 3, 3)), 'changed');
  assert.equal(series.view().windows.at(-1).value, 3);
  assert.equal(series.apply(metric('orders_placed', 2, 1)), 'changed'); // two minutes on: the window moved
  const windows = series.view().windows;
  assert.equal(windows.length, 1440);
  assert.deepEqual(windows.slice(-3).map((w) => [Date.parse(w.start), w.value]),
    [[T0, 3], [T0 + MINUTE_MS, 0], [T0 + 2 * MINUTE_MS, 1]]);
  assert.equal(Date.parse(windows[0].start), T0 - 1437 * MINUTE_MS);
  assert.equal(series.roll(T0 + 2 * MINUTE_MS + 5), false);
});

test('a 7-day chart: a pushed minute changes its hour by what the minute changed', () => {
  const hours = { start: at(-2 * 60), end: at(60), freshness: null, windows: [-120, -60, 0].map((m) => (
    { start: at(m), end: at(m + 60), group: {}, value: m === 0 ? 10 : 4, count: 0, final: false })) };
  const series = new ChartSeries(hours, 60 * MINUTE_MS, seedOf(minuteSeries(-14, 1, { [-1]: 3, 0: 7 })));
  series.apply(metric('orders_placed', 0, 8));
  series.apply(metric('orders_placed', 0, 8)); // again: no change
  series.apply(metric('orders_placed', -1, 4)); // the previous hour's last minute
  series.apply(metric('orders_placed', 1, 2));
  assert.deepEqual(series.view().windows.map((w) => w.value), [4, 5, 13]);
});

test('alerts: history and pushed events merged by idempotency key, newest first', () => {
  const history = { events: [
    { idempotency_key: 'r:t-a:1:firing', status: 'firing', metric: 'orders_placed', value: 60, threshold: 50,
      condition: 'gt', window_end: at(-30), rule_name: 'Rush', details: {} },
  ] };
  const alerts = new Alerts(history);
  const pushed = { type: 'alert', tenant: 't-a', id: 'r:t-a:1:resolved', breach_id: 'r:t-a:1', status: 'resolved',
    metric: 'orders_placed', value: 20, threshold: 50, condition: 'gt', window_end: at(-20), reason: 'recovered' };
  assert.equal(alerts.apply(pushed, T0), 'changed');
  assert.equal(alerts.apply(pushed, T0), 'same');
  assert.equal(alerts.apply({ ...pushed, id: 'r:t-a:1:firing', status: 'firing' }, T0), 'same'); // in the history
  assert.deepEqual(alerts.view().entries.map((e) => [e.key, e.status]),
    [['r:t-a:1:resolved', 'resolved'], ['r:t-a:1:firing', 'firing']]);
  assert.equal(alerts.view().asOf, T0);
});

test('the event log keeps the newest event of each thing, in arrival order, and forgets old minutes', () => {
  const log = new EventLog();
  log.add(metric('gross_sales', 0, 1), T0);
  log.add(order('o-1', 'placed', at(0, 1)), T0);
  log.add(metric('gross_sales', 0, 2), T0);
  log.add({ type: 'reset' }, T0);
  assert.deepEqual([...log.of('metric', 'live_order')].map((e) => e.value ?? e.status), [2, 'placed']);
  log.add(metric('gross_sales', 40, 5), T0 + 40 * MINUTE_MS); // minute 0 is now more than 30 minutes old
  assert.deepEqual([...log.of('metric')].map((e) => e.value), [5]);
});
