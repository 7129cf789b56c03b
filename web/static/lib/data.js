// Where the restaurant page's numbers come from: the public metrics API, as any client reads it (the session
// cookie authenticates the page's requests and its stream). The widgets ask this module only.
//
// The page reads each part once over REST (`live`, `top`, `series`, `alerts`) and from then on follows the tenant's
// live stream (GET /v1/stream, one EventSource: lib/stream.js): `subscribe(onChange)` applies each pushed event to
// the state of the last reads (lib/live.js) and says which part changed, and the page draws that part's view
// (`liveView`, `chartView`, `alertsView`). There is no polling loop. A few events cannot be applied from what the
// page holds, and this module reads that part again, once per burst (a pushed `reset`, an order whose former status
// the funnel does not know, the prep time and the top items, which need more than a minute's total). A local
// timer moves the charts on at each minute (no request): the minute that ended is complete, so it is judged.

import {
  Alerts, CHART_METRICS, Charts, EventLog, LiveWidgets, MINUTE_MS, TODAY_METRICS, consistent, ms, seedBounds, seedOf,
} from './live.js';
import { openStream } from './stream.js';

export class ApiError extends Error {
  constructor(status, detail, retryAfter = null) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** The windows a chart shows (24 h of minutes or 7 days of hours, ending with the current window), and how many
 * windows before each one are its anomaly baseline (an hour, a day). */
export const RANGES = {
  '24h': { granularity: '1m', stepMinutes: 1, windows: 24 * 60, baseline: 60, label: 'the last 24 h, per minute' },
  '7d': { granularity: '1h', stepMinutes: 60, windows: 7 * 24, baseline: 24, label: 'the last 7 days, per hour' },
};

/** [from, to) of `range` at `now` (ms): whole windows, the current one last (the API floors to its zone). */
export function rangeBounds(range, now) {
  const { stepMinutes, windows } = RANGES[range];
  const step = stepMinutes * 60_000;
  const end = Math.floor(now / step) * step + step;
  return { from: new Date(end - windows * step).toISOString(), to: new Date(end).toISOString() };
}

// A part read again because of events waits this long first, so that a burst costs one read; the funnel's reads
// again (an order it had not seen move) are also at least REREAD_INTERVAL_MS apart, and spread over a second so
// that a tenant's viewers, who all get the same event, do not all ask at once (the API's answer cache serves
// their identical reads from one computation anyway).
const REREAD_DELAY_MS = 300;
const REREAD_JITTER_MS = 1000;
const REREAD_INTERVAL_MS = 5000;
const REFRESH_DELAY_MS = 1500;
// A read of the funnel that does not yet hold an event's row (the engine indexes it a moment after the push
// sends it) is tried again this many times, after 0.5, 1, 2 s.
const REREAD_TRIES = 4;
// Totals and their seeds read again when they saw different rows (a change between the two reads): at most
// this many reads, each after the API's answer cache (1 s) has let go of the last.
const SEED_TRIES = 3;
const SETTLE_DELAY_MS = 1200;

async function getJson(path, params, fetchImpl, origin) {
  const url = new URL(path, origin);
  for (const [name, value] of Object.entries(params)) {
    if (value != null && value !== '') url.searchParams.set(name, String(value));
  }
  const response = await fetchImpl(url, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
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

const pause = (delay, setTimer) => new Promise((resolve) => { setTimer(resolve, delay); });

/** The zone's calendar day of `moment` (ms), to see when "today" ends. */
function dayOf(moment, timeZone) {
  return new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' })
    .format(new Date(moment));
}

/** The reads and the live state of one restaurant's page, in the restaurant's zone. */
export function restaurantSource({
  tenant, timeZone, ratings = 10, fetchImpl = (...args) => fetch(...args), now = Date.now,
  origin = globalThis.location?.origin, EventSourceImpl = globalThis.EventSource,
  setTimer = (fn, delay) => setTimeout(fn, delay), clearTimer = (id) => clearTimeout(id), random = Math.random,
}) {
  const read = (path, params = {}) => getJson(path, { tenant, ...params }, fetchImpl, origin);
  const log = new EventLog();
  let live = null; // LiveWidgets of the last GET /v1/live
  let charts = null; // Charts of the last series read
  let alerts = new Alerts();
  let onChange = () => {};
  let stopped = false;
  const due = new Map(); // part → timer of a read again that is due
  const running = new Set();
  const again = new Set();
  let tickTimer = null;
  let lastReread = -Infinity;

  /** The 1-minute seeds of `metrics` at `at` (ms): metric → seed. */
  async function readSeeds(metrics, at) {
    const { from, to } = seedBounds(at);
    const answers = await Promise.all(metrics.map((metric) => read(`/v1/metrics/${metric}/series`, {
      timezone: timeZone, granularity: '1m', from: new Date(from).toISOString(), to: new Date(to).toISOString() })));
    return Object.fromEntries(metrics.map((metric, i) => [metric, seedOf(answers[i])]));
  }

  function replay(target, ...types) {
    for (const event of log.of(...types)) target.apply(event, now());
  }

  /** Do `task` after `delay` ms (or `delay()`'s, worked out when it is set), once for a burst of calls: not
   * again while it is due, and once more after it if called while it runs. */
  function once(part, delay, task) {
    if (stopped) return;
    if (running.has(part)) {
      again.add(part);
      return;
    }
    if (due.has(part)) return;
    due.set(part, setTimer(async () => {
      due.delete(part);
      running.add(part);
      try {
        await task();
      } catch {
        // the part keeps what it shows; the next event or Refresh reads it again
      } finally {
        running.delete(part);
        if (again.delete(part)) once(part, delay, task);
      }
    }, typeof delay === 'function' ? delay() : delay));
  }

  function scheduleReread() {
    once('reread', () => Math.max(REREAD_DELAY_MS, lastReread + REREAD_INTERVAL_MS - now())
      + Math.round(REREAD_JITTER_MS * random()), reread);
  }

  /** Read the funnel, couriers and ratings again until the read holds the events the page could not apply. */
  async function reread() {
    if (live?.needsRead == null) return;
    const needed = { funnel: live.funnel.needsRead, couriers: live.couriers.needsRead };
    const holds = (part, at) => at == null || (ms(part.as_of) ?? -Infinity) >= at;
    lastReread = now();
    let body;
    let reached = false;
    for (let attempt = 0; attempt < REREAD_TRIES && !reached; attempt += 1) {
      if (attempt > 0) await pause(500 * 2 ** (attempt - 1), setTimer);
      body = await read('/v1/live', { timezone: timeZone, ratings });
      reached = holds(body.funnel, needed.funnel) && holds(body.couriers_waiting, needed.couriers);
    }
    if (live == null || stopped) return;
    live.reread(body, ratings);
    replay(live, 'live_order', 'courier');
    onChange('live');
    // Events that came during the read may need another; a read that never reached its events is not repeated
    // (the counts stay as applied until the next such event).
    if (reached && live.needsRead != null) scheduleReread();
  }

  async function refreshPrep() {
    const body = await read('/v1/live', { timezone: timeZone, ratings });
    if (live == null || stopped) return;
    live.setPrep(body);
    onChange('live');
  }

  function apply(event) {
    const at = now();
    if (event.type === 'reset') {
      log.clear();
      onChange('reset');
      return;
    }
    if (event.tenant != null && event.tenant !== tenant) return; // never another tenant's (the server says so too)
    log.add(event, at);
    if (event.type === 'alert') {
      if (alerts.apply(event, at) === 'changed') onChange('alerts');
      return;
    }
    if (live != null) {
      const result = live.apply(event);
      if (result !== 'same') onChange('live');
      if (result === 'unknown') scheduleReread();
    }
    if (event.type !== 'metric') return;
    if (charts != null && charts.apply(event) === 'changed') onChange('series');
    if (event.metric === 'prep_time_seconds') once('prep', REFRESH_DELAY_MS, refreshPrep);
    if (event.metric === 'items_sold') once('top', REFRESH_DELAY_MS, async () => onChange('top'));
  }

  /** At each minute: new windows on the charts, the couriers' waiting times, and a new day's totals. */
  function tick() {
    if (stopped) return;
    const at = now();
    if (charts != null) {
      charts.roll(at);
      onChange('series');
    }
    if (live != null) {
      if (dayOf(at, timeZone) !== dayOf(ms(live.body.sales_today.start) ?? at, timeZone)) onChange('reset');
      else onChange('live');
    }
    tickTimer = setTimer(tick, MINUTE_MS - (at % MINUTE_MS) + 250);
  }

  /** GET /v1/live and the seeds of its today tiles, read side by side; `settled` when they saw the same rows. */
  async function readLive() {
    const [body, seeds] = await Promise.all([
      read('/v1/live', { timezone: timeZone, ratings }),
      readSeeds(Object.values(TODAY_METRICS), now()).catch(() => null),
    ]);
    const settled = seeds == null
      || Object.entries(TODAY_METRICS).every(([key, metric]) => consistent(ms(body[key].as_of), seeds[metric]));
    return { body, seeds, settled };
  }

  function useLive({ body, seeds }) {
    live = new LiveWidgets(body, seeds ?? {}, { ratings });
    replay(live, 'live_order', 'courier', 'metric');
    if (live.needsRead != null) scheduleReread();
  }

  /** The orders and sales series of `range` and, for hourly windows, the seeds of their recent minutes. */
  async function readSeries(range) {
    const { granularity, stepMinutes } = RANGES[range];
    const readAt = now();
    const params = { timezone: timeZone, granularity, ...rangeBounds(range, readAt) };
    const hourly = stepMinutes > 1;
    const [orders, sales, seeds] = await Promise.all([
      read(`/v1/metrics/${CHART_METRICS.orders}/series`, params),
      read(`/v1/metrics/${CHART_METRICS.sales}/series`, params),
      hourly ? readSeeds(Object.values(CHART_METRICS), readAt).catch(() => ({})) : Promise.resolve({}),
    ]);
    const answers = { orders, sales };
    const settled = Object.entries(CHART_METRICS).every(([name, metric]) => seeds[metric] == null
      || consistent(ms(answers[name].freshness), seeds[metric]));
    return { range, answers, seeds, readAt, settled };
  }

  function useSeries({ range, answers, seeds }) {
    charts = new Charts(range, RANGES[range].stepMinutes * MINUTE_MS, answers, seeds);
    replay(charts, 'metric');
    charts.roll(now());
  }

  /**
   * Read a total and its seeds again until they saw the same rows (a row written between the two reads), each
   * try after the API's answer cache (1 s) has let go of the last; then draw the part again.
   */
  function settle(part, readPart, usePart, isCurrent) {
    let tries = 0;
    const attempt = async () => {
      tries += 1;
      const answer = await readPart();
      if (stopped || !isCurrent(answer)) return;
      if (answer.settled || tries >= SEED_TRIES) {
        usePart(answer);
        onChange(part);
      } else {
        once(`settle-${part}`, SETTLE_DELAY_MS, attempt);
      }
    };
    once(`settle-${part}`, SETTLE_DELAY_MS, attempt);
  }

  return {
    /** GET /v1/live (with the seeds of the today tiles read beside it): the state, with the events since applied. */
    async live() {
      const answer = await readLive();
      useLive(answer);
      if (!answer.settled) settle('live', readLive, useLive, () => true);
      return live.view(now());
    },
    /** The 5 items sold most over the last hour. */
    top: () => read('/v1/metrics/items_sold/top', { by: 'item_id', n: 5, last: '1h' }),
    /** Orders and sales over `range` (hourly windows with the seeds of their recent minutes). */
    async series(range) {
      const answer = await readSeries(range);
      useSeries(answer);
      if (!answer.settled) settle('series', () => readSeries(range), useSeries, () => charts?.range === range);
      return charts.view(Math.max(answer.readAt, now()));
    },
    /** The tenant's recent alert events (GET /v1/alerts/history) with those pushed since. */
    async alerts() {
      const history = await read('/v1/alerts/history', { limit: 20 });
      alerts = new Alerts(history);
      alerts.asOf = now();
      replay(alerts, 'alert');
      return alerts.view();
    },
    liveView: () => (live == null ? null : live.view(now())),
    chartView: () => (charts == null ? null : charts.view(now())),
    alertsView: () => alerts.view(),
    /**
     * Follow the live stream: `onChange(part, detail)` when pushed data changed a part — 'live', 'series' and
     * 'alerts' (draw its view again), 'top' (read it again), 'reset' (read everything again), 'stream' (the
     * stream's state: detail 'live', 'reconnecting', 'retrying', ...) or 'signed-out'. Returns a function that
     * stops. Events that come before a part's first read are kept and applied to it when it comes.
     */
    subscribe(callback) {
      onChange = callback;
      const path = `/v1/stream?${new URLSearchParams({ tenant })}`;
      const close = openStream(path, {
        onEvent: apply,
        EventSourceImpl,
        setTimer,
        clearTimer,
        onState(state, detail) {
          onChange('stream', { state, retryMs: detail });
          if (state === 'retrying') {
            // Closed by an HTTP error: if the session ended, say so (the page signs in again).
            read('/v1/catalog').catch((error) => {
              if (error instanceof ApiError && error.status === 401) onChange('signed-out');
            });
          }
        },
      });
      tickTimer = setTimer(tick, MINUTE_MS - (now() % MINUTE_MS) + 250);
      return () => {
        stopped = true;
        for (const id of [...due.values(), tickTimer]) if (id != null) clearTimer(id);
        due.clear();
        close();
      };
    },
  };
}
