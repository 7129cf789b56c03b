// The restaurant page's state between reads: REST snapshots with the pushed events (GET /v1/stream) applied.
// Pure: answers and events in, the same shapes the widgets render out (no DOM, no network; node --test runs it).
//
// A snapshot is a read of the API (GET /v1/live, the series); events carry newer versions of what it holds:
// - `metric`: one minute's total of a metric. Totals over minutes (sales and completed orders today, an hour of
//   the 7-day chart) keep each recent minute's value and replace it when its event comes, so a minute sent again
//   is never counted twice. The values those totals held for the recent minutes when they were read come from a
//   1-minute series of the same minutes (the seed), read together with them (see `consistent`).
// - `live_order` / `courier`: one order's or courier's current state. An event whose `as_of` (when the streaming
//   job wrote the row) is not after the snapshot's is already in it. The funnel knows orders only by status
//   counts, so an order it has not seen move yet and that is not new (`placed`) leaves its former status
//   unknown: `apply` says 'unknown' and the caller reads the funnel again (`needsRead`).
// - `alert`: a firing or resolve, merged with the history by its idempotency key.
// Every snapshot replays the newest event of each thing seen since the stream opened (`EventLog`), so events that
// came while a read was on its way are neither lost nor counted twice.

export const MINUTE_MS = 60_000;
export const HOUR_MS = 60 * MINUTE_MS;
/** Minutes of the seed: the push sends a minute's total for 10 minutes after it starts (lakepulse/api/push). */
export const SEED_MINUTES = 15;
/** The couriers /v1/live lists by name (lakepulse/api/live.py MAX_WAITING_LISTED). */
export const MAX_COURIERS_LISTED = 50;
export const MAX_ALERTS = 20;
const MAX_KNOWN = 20_000; // orders and couriers whose latest event is kept for replays
const KEEP_METRIC_MS = 30 * MINUTE_MS; // minutes older than this are never pushed again

/** An RFC 3339 time (or epoch ms) → epoch ms; null for none or nonsense. */
export function ms(value) {
  if (value == null) return null;
  const parsed = typeof value === 'number' ? value : Date.parse(value);
  return Number.isFinite(parsed) ? parsed : null;
}

const later = (a, b) => (a == null ? b : b == null ? a : Math.max(a, b));
const iso = (epochMs) => (epochMs == null ? null : new Date(epochMs).toISOString());
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** Whether an event newer than a snapshot's as-of time (`base`, ms) still has to be applied to it. */
function isNewer(event, base) {
  const at = ms(event.as_of);
  return base == null || at == null || at > base;
}

// --- seeds: what totals held for the recent minutes ----------------------------------------------------------

/** [from, to) of the seed read at `now`: SEED_MINUTES whole minutes, the current one last. */
export function seedBounds(now) {
  const to = Math.floor(now / MINUTE_MS) * MINUTE_MS + MINUTE_MS;
  return { from: to - SEED_MINUTES * MINUTE_MS, to };
}

/** A 1-minute series answer → {from, to, freshness, minutes: Map(start ms → {value, count})}. */
export function seedOf(answer) {
  const minutes = new Map();
  for (const w of answer.windows) minutes.set(ms(w.start), { value: num(w.value) ?? 0, count: w.count ?? 0 });
  const starts = [...minutes.keys()];
  return {
    from: starts.length ? Math.min(...starts) : ms(answer.start),
    to: ms(answer.end),
    freshness: ms(answer.freshness),
    minutes,
  };
}

/**
 * Whether a total read with as-of `baseAsOf` (ms) and a seed read beside it saw the same rows. Both are the newest
 * `updated_at` of the speed rows they read, and every row that still changes belongs to a recent minute (older
 * events are past the streaming watermark), so equal times mean equal rows. No seed row while the total's newest
 * row is older than the seed's minutes also agrees.
 */
export function consistent(baseAsOf, seed) {
  if (baseAsOf === seed.freshness) return true;
  return seed.freshness == null && (baseAsOf == null || baseAsOf < seed.from);
}

/** No seed (its read failed): pushed minutes are not applied to the total (it stays as read). */
export const NO_SEED = Object.freeze({ from: Infinity, to: Infinity, freshness: null, minutes: new Map() });

/**
 * The minute values a total was read with, then replaced as events come: `delta` gives what a minute's event
 * adds (its value and count minus what the minute held), or null for a minute older than the seed (unknown).
 */
export class MinuteLedger {
  constructor(seed) {
    this.from = seed.from;
    this.to = seed.to;
    this.minutes = new Map(seed.minutes);
  }

  delta(start, value, count) {
    let held = this.minutes.get(start);
    if (held == null) {
      if (start < this.to) return null; // before the seed (a minute before the seed's is never pushed)
      held = { value: 0, count: 0 }; // after the read: the total did not hold it
    }
    this.minutes.set(start, { value, count });
    for (const key of this.minutes.keys()) {
      if (key < start - KEEP_METRIC_MS) this.minutes.delete(key);
      else break;
    }
    return { value: value - held.value, count: count - held.count };
  }
}

// --- the live widgets (GET /v1/live) --------------------------------------------------------------------------

/** Orders per current status: the snapshot's counts, moved by each order's events. */
export class Funnel {
  constructor(funnel) {
    this.counts = { ...funnel.orders };
    this.base = ms(funnel.as_of);
    this.asOf = this.base;
    this.known = new Map(); // order → the status the counts hold it in
    this.needsRead = null; // as-of (ms) a new read must reach: an order's former status is unknown
  }

  /** Apply a `live_order` event: 'changed', 'same', or 'unknown' (counted in its new status; read again). */
  apply(event) {
    const status = typeof event.status === 'string' ? event.status : null;
    const counted = (s) => s != null && Object.hasOwn(this.counts, s);
    const prior = this.known.get(event.order_id);
    this.known.set(event.order_id, status);
    if (this.known.size > MAX_KNOWN) this.known.delete(this.known.keys().next().value);
    if (!isNewer(event, this.base)) return 'same'; // the snapshot has it
    this.asOf = later(this.asOf, ms(event.as_of));
    if (prior !== undefined) {
      if (prior === status) return 'changed'; // as-of moved
      if (counted(prior)) this.counts[prior] = Math.max(0, this.counts[prior] - 1);
      if (counted(status)) this.counts[status] += 1;
      return 'changed';
    }
    if (counted(status)) this.counts[status] += 1;
    if (status == null || status === 'placed' || !counted(status)) return 'changed'; // a new order
    this.needsRead = later(this.needsRead, ms(event.as_of));
    return 'unknown';
  }

  body() {
    const total = Object.values(this.counts).reduce((sum, n) => sum + n, 0);
    return { as_of: iso(this.asOf), orders: { ...this.counts }, total };
  }
}

/** Couriers waiting at the restaurant: the snapshot lists all of them (unless `truncated`), so an event says
 * exactly whether the count changes. */
export class Couriers {
  constructor(waiting) {
    this.count = waiting.count;
    this.truncated = waiting.truncated;
    this.list = waiting.couriers.map((c) => ({ ...c }));
    this.base = ms(waiting.as_of);
    this.asOf = this.base;
    this.needsRead = null;
  }

  apply(event) {
    if (!isNewer(event, this.base)) return 'same';
    this.asOf = later(this.asOf, ms(event.as_of));
    const waiting = event.is_waiting === true;
    const i = this.list.findIndex((c) => c.courier_id === event.courier_id);
    if (i >= 0 && waiting) {
      this.list[i] = { courier_id: event.courier_id, order_id: event.order_id ?? null,
        since: event.status_at ?? this.list[i].since };
    } else if (i >= 0) {
      this.list.splice(i, 1);
      this.count = Math.max(0, this.count - 1);
    } else if (this.truncated) {
      this.needsRead = later(this.needsRead, ms(event.as_of)); // perhaps one of those not listed
      return 'unknown';
    } else if (waiting) {
      this.list.push({ courier_id: event.courier_id, order_id: event.order_id ?? null, since: event.status_at ?? null });
      this.count += 1;
    }
    this.list.sort((a, b) => (ms(a.since) ?? 0) - (ms(b.since) ?? 0) || (a.courier_id < b.courier_id ? -1 : 1));
    if (this.list.length > MAX_COURIERS_LISTED) {
      this.list.length = MAX_COURIERS_LISTED;
      this.truncated = true;
    }
    return 'changed';
  }

  body() {
    return { as_of: iso(this.asOf), count: this.count, couriers: this.list.map((c) => ({ ...c })),
      truncated: this.truncated || this.count > this.list.length };
  }
}

/** The latest ratings, newest first: an order's rating replaces its earlier one. */
export class Ratings {
  constructor(ratings, limit) {
    this.limit = limit;
    this.latest = ratings.latest.map((r) => ({ ...r }));
    this.base = ms(ratings.as_of);
    this.asOf = this.base;
  }

  apply(event) {
    if (!isNewer(event, this.base)) return 'same';
    this.asOf = later(this.asOf, ms(event.as_of));
    if (event.rated_at == null) return 'changed';
    const stars = (v) => (num(v) == null ? null : Math.round(v));
    const rating = { order_id: event.order_id, food_rating: stars(event.food_rating),
      delivery_rating: stars(event.delivery_rating), rated_at: event.rated_at };
    this.latest = [rating, ...this.latest.filter((r) => r.order_id !== event.order_id)];
    this.latest.sort((a, b) => (ms(b.rated_at) ?? 0) - (ms(a.rated_at) ?? 0) || (a.order_id < b.order_id ? -1 : 1));
    this.latest.length = Math.min(this.latest.length, this.limit);
    return 'changed';
  }

  body() {
    return { as_of: iso(this.asOf), latest: this.latest.map((r) => ({ ...r })) };
  }
}

/** A total over the minutes of [start, end) (today): the read's value plus each pushed minute's change. */
export class MinuteTotal {
  constructor(part, seed) {
    this.part = { ...part };
    this.start = ms(part.start);
    this.ledger = new MinuteLedger(seed ?? NO_SEED);
    this.asOf = ms(part.as_of);
  }

  apply(event) {
    const start = ms(event.window_start);
    if (start == null || start < this.start) return 'same';
    const change = this.ledger.delta(start, num(event.value) ?? 0, event.count ?? 0);
    if (change == null) return 'same';
    this.part.value = (num(this.part.value) ?? 0) + change.value;
    this.part.count = (this.part.count ?? 0) + change.count;
    this.asOf = later(this.asOf, ms(event.as_of));
    return 'changed';
  }

  body() {
    return { ...this.part, as_of: iso(this.asOf) };
  }
}

/** The metrics of the today tiles: response key → catalog metric (lakepulse/api/live.py WINDOWED). */
export const TODAY_METRICS = { sales_today: 'gross_sales', completed_today: 'orders_completed' };

/** The live widgets' state from one GET /v1/live answer and the seeds of TODAY_METRICS read beside it. */
export class LiveWidgets {
  constructor(body, seeds, { ratings = 10 } = {}) {
    this.body = body;
    this.funnel = new Funnel(body.funnel);
    this.couriers = new Couriers(body.couriers_waiting);
    this.ratings = new Ratings(body.ratings, ratings);
    this.today = {};
    for (const [key, metric] of Object.entries(TODAY_METRICS)) this.today[key] = new MinuteTotal(body[key], seeds[metric]);
  }

  /** Apply one event: 'changed' | 'same' | 'unknown' (a part needs a new read: see `needsRead`). */
  apply(event) {
    if (event.type === 'live_order') {
      const funnel = this.funnel.apply(event);
      const ratings = this.ratings.apply(event);
      return funnel === 'unknown' ? 'unknown' : funnel === 'changed' || ratings === 'changed' ? 'changed' : 'same';
    }
    if (event.type === 'courier') return this.couriers.apply(event);
    if (event.type === 'metric') {
      const key = Object.keys(TODAY_METRICS).find((k) => TODAY_METRICS[k] === event.metric);
      return key ? this.today[key].apply(event) : 'same';
    }
    return 'same';
  }

  /** The as-of (ms) a new read of the funnel or couriers must reach; null when none is needed. */
  get needsRead() {
    return later(this.funnel.needsRead, this.couriers.needsRead);
  }

  /** Take the funnel, couriers and ratings of a new read (the today tiles keep their minutes). */
  reread(body, ratings) {
    this.body = { ...this.body, now: body.now, seam: body.seam, prep_time_last_hour: body.prep_time_last_hour };
    this.funnel = new Funnel(body.funnel);
    this.couriers = new Couriers(body.couriers_waiting);
    this.ratings = new Ratings(body.ratings, ratings);
  }

  /** Take the prep time of a new read. */
  setPrep(body) {
    this.body = { ...this.body, prep_time_last_hour: body.prep_time_last_hour };
  }

  /** The state in GET /v1/live's shape, at `now` (ms). */
  view(now) {
    const view = { ...this.body, now: iso(now), funnel: this.funnel.body(), couriers_waiting: this.couriers.body(),
      ratings: this.ratings.body() };
    for (const [key, total] of Object.entries(this.today)) view[key] = total.body();
    return view;
  }
}

// --- the charts (GET /v1/metrics/{orders_placed,gross_sales}/series) ---------------------------------------------

export const CHART_METRICS = { orders: 'orders_placed', sales: 'gross_sales' };

/** One chart's windows: a pushed minute replaces its window (1-minute windows) or changes its hour's total by
 * what the minute changed (hourly windows, with a seed); new windows are added as time passes. */
export class ChartSeries {
  constructor(answer, stepMs, seed = null) {
    this.answer = { ...answer };
    this.stepMs = stepMs;
    this.windows = answer.windows.map((w) => ({ ...w }));
    this.ledger = stepMs === MINUTE_MS || seed == null ? null : new MinuteLedger(seed);
    this.freshness = ms(answer.freshness);
  }

  /** Add empty windows up to the one holding `now` (ms), dropping as many from the front. */
  roll(now) {
    let changed = false;
    while (this.windows.length && ms(this.windows[this.windows.length - 1].end) <= now) {
      const last = this.windows[this.windows.length - 1];
      const start = ms(last.end);
      this.windows.push({ start: iso(start), end: iso(start + this.stepMs), group: last.group ?? {}, value: 0,
        count: 0, layer: 'speed', final: false });
      this.windows.shift();
      changed = true;
    }
    return changed;
  }

  apply(event) {
    const start = ms(event.window_start);
    if (start == null) return 'same';
    this.roll(start);
    const value = num(event.value) ?? 0;
    const count = event.count ?? 0;
    const window = this.windows.find((w) => ms(w.start) <= start && start < ms(w.end));
    if (window == null) return 'same';
    if (this.ledger == null) {
      if (this.stepMs !== MINUTE_MS) return 'same';
      window.value = value;
      window.count = count;
    } else {
      const change = this.ledger.delta(start, value, count);
      if (change == null) return 'same';
      window.value = (num(window.value) ?? 0) + change.value;
      window.count = (window.count ?? 0) + change.count;
    }
    if (window.sum != null) window.sum = window.value;
    this.freshness = later(this.freshness, ms(event.as_of));
    return 'changed';
  }

  view() {
    return { ...this.answer, freshness: iso(this.freshness), windows: this.windows.map((w) => ({ ...w })) };
  }
}

/** Both charts of one range. `seeds` (metric → seed) only for hourly windows. */
export class Charts {
  constructor(range, stepMs, answers, seeds = {}) {
    this.range = range;
    this.series = {};
    for (const [name, metric] of Object.entries(CHART_METRICS)) {
      this.series[name] = new ChartSeries(answers[name], stepMs, seeds[metric] ?? null);
    }
  }

  apply(event) {
    const name = Object.keys(CHART_METRICS).find((n) => CHART_METRICS[n] === event.metric);
    return name ? this.series[name].apply(event) : 'same';
  }

  roll(now) {
    const orders = this.series.orders.roll(now);
    const sales = this.series.sales.roll(now);
    return orders || sales;
  }

  view(now) {
    return { orders: this.series.orders.view(), sales: this.series.sales.view(), readAt: now };
  }
}

// --- alerts ---------------------------------------------------------------------------------------------------

/** A history event (GET /v1/alerts/history) or a pushed `alert` event → one list entry. */
export function alertEntry(event) {
  const pushed = event.type === 'alert';
  return {
    key: pushed ? event.id : event.idempotency_key,
    status: event.status,
    metric: event.metric,
    value: num(event.value),
    threshold: num(event.threshold),
    condition: event.condition,
    windowEnd: event.window_end ?? null,
    rule: pushed ? null : event.rule_name || null,
    reason: pushed ? event.reason ?? null : event.details?.reason ?? null,
    windowMinutes: pushed ? event.window_minutes ?? null : event.details?.window_minutes ?? null,
    anomaly: pushed ? event.anomaly === true : event.condition === 'anomaly',
    pushed,
  };
}

/** The tenant's recent alert events, newest first, each once (by its idempotency key). */
export class Alerts {
  constructor(history = null) {
    this.entries = [];
    this.asOf = null;
    this.read = history != null;
    if (history) for (const event of history.events) this.add(alertEntry(event));
  }

  add(entry) {
    if (!entry.key || this.entries.some((e) => e.key === entry.key)) return false;
    this.entries.push(entry);
    this.entries.sort((a, b) => (ms(b.windowEnd) ?? 0) - (ms(a.windowEnd) ?? 0)
      || (a.status === b.status ? 0 : a.status === 'resolved' ? -1 : 1));
    this.entries.length = Math.min(this.entries.length, MAX_ALERTS);
    return true;
  }

  apply(event, now) {
    if (!this.add(alertEntry(event))) return 'same';
    this.asOf = now;
    return 'changed';
  }

  view() {
    return { entries: this.entries.map((e) => ({ ...e })), asOf: this.asOf, read: this.read };
  }
}

// --- what the stream said since it opened ---------------------------------------------------------------------

/** The newest event of each thing (metric minute, order, courier, alert) since the stream opened, in arrival
 * order per kind, for replaying onto a new read. Bounded: old minutes and the oldest orders, couriers and alerts
 * are forgotten. */
export class EventLog {
  constructor() {
    this.kinds = new Map(); // type → Map(key → event)
  }

  static key(event) {
    switch (event.type) {
      case 'metric': return `${event.metric}|${ms(event.window_start)}`;
      case 'live_order': return event.order_id;
      case 'courier': return event.courier_id;
      case 'alert': return event.id;
      default: return null;
    }
  }

  add(event, now) {
    const key = EventLog.key(event);
    if (key == null) return;
    if (!this.kinds.has(event.type)) this.kinds.set(event.type, new Map());
    const events = this.kinds.get(event.type);
    events.delete(key); // to the end: arrival order
    events.set(key, event);
    // Minutes come roughly in time order, so the old ones are at the front.
    for (const [k, e] of events) {
      const old = e.type === 'metric' && (ms(e.window_start) ?? 0) < now - KEEP_METRIC_MS;
      if (!old && events.size <= MAX_KNOWN) break;
      events.delete(k);
    }
  }

  clear() {
    this.kinds.clear();
  }

  *of(...types) {
    for (const type of types) yield* this.kinds.get(type)?.values() ?? [];
  }
}
