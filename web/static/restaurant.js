// The restaurant page: reads its data through lib/data.js once at load (and on Refresh), then follows the live
// stream: each pushed change redraws the widgets it touched (at most once per frame), with no reload and no polling.
import { ApiError, RANGES, restaurantSource } from './lib/data.js';
import { widgetError } from './lib/dom.js';
import { formatter, resolveZone } from './lib/format.js';
import * as alerts from './widgets/alerts.js';
import * as chart from './widgets/chart.js';
import * as couriers from './widgets/couriers.js';
import * as funnel from './widgets/funnel.js';
import * as ratings from './widgets/ratings.js';
import * as tiles from './widgets/tiles.js';
import * as top from './widgets/top.js';

const root = document.getElementById('restaurant');
const tenant = root.dataset.tenant;
const timeZone = resolveZone(root.dataset.timezone);
const fmt = formatter({ timeZone, currency: root.dataset.currency });
const source = restaurantSource({ tenant, timeZone });
const status = document.getElementById('status');
const streamLabel = document.getElementById('stream-state');
const refresh = document.getElementById('refresh');
const params = new URLSearchParams(window.location.search);
let range = RANGES[params.get('range')] ? params.get('range') : '24h';

const LIVE_WIDGETS = ['#w-sales', '#w-completed', '#w-prep', '#w-couriers-count', '#w-funnel', '#w-couriers', '#w-ratings'];

function explain(error) {
  if (error instanceof ApiError) {
    if (error.status === 401) {
      window.location.assign('/'); // the session ended: sign in again
      return 'signed out';
    }
    if (error.status === 429 || error.status === 503) {
      return `temporarily unavailable (${error.message}); try Refresh${error.retryAfter ? ` in ${error.retryAfter} s` : ''}`;
    }
    return error.message;
  }
  return 'could not be read';
}

function drawLive(live) {
  tiles.render(root, live, fmt);
  funnel.render(root.querySelector('#w-funnel'), live.funnel, fmt);
  couriers.render(root.querySelector('#w-couriers'), live, fmt);
  ratings.render(root.querySelector('#w-ratings'), live, fmt);
  document.getElementById('seam-label').textContent = live.seam
    ? `· final (batch layer) up to ${fmt.day(live.seam)}, provisional after`
    : '· every minute so far is provisional (speed layer)';
}

async function loadLive() {
  try {
    drawLive(await source.live());
    return true;
  } catch (error) {
    const message = explain(error);
    for (const selector of LIVE_WIDGETS) widgetError(root.querySelector(selector), message);
    return false;
  }
}

async function loadTop() {
  try {
    top.render(root.querySelector('#w-top'), await source.top(), fmt);
    return true;
  } catch (error) {
    widgetError(root.querySelector('#w-top'), explain(error));
    return false;
  }
}

async function loadSeries() {
  const widget = root.querySelector('#w-chart');
  widget.setAttribute('aria-busy', 'true');
  try {
    chart.render(widget, await source.series(range), fmt, range);
    return true;
  } catch (error) {
    widgetError(widget, explain(error));
    return false;
  }
}

async function loadAlerts() {
  const widget = root.querySelector('#w-alerts');
  try {
    alerts.render(widget, await source.alerts(), fmt);
    return true;
  } catch (error) {
    // Pushed alerts still show; the history could not be read.
    alerts.render(widget, source.alertsView(), fmt);
    widgetError(widget, `the history ${explain(error)}`);
    return false;
  }
}

let loading = null;

async function loadAll() {
  if (loading) return loading; // a reset during a load: that load reads everything anyway
  refresh.disabled = true;
  status.classList.remove('error');
  status.textContent = 'Loading…';
  loading = Promise.all([loadLive(), loadTop(), loadSeries(), loadAlerts()]);
  const results = await loading;
  loading = null;
  const failed = results.filter((ok) => !ok).length;
  status.textContent = failed ? `${failed} of 4 reads failed; the widgets say why` : `Read at ${fmt.clock(new Date())}`;
  status.classList.toggle('error', failed > 0);
  refresh.disabled = false;
  if (!root.dataset.loadedAfterMs) {
    // Navigation to a page with data, for measurements (performance.now() counts from navigation start).
    root.dataset.loadedAfterMs = String(Math.round(performance.now()));
    performance.mark('lakepulse:data');
  }
  root.dataset.loaded = 'true';
  return results;
}

// Pushed changes: each part is drawn at most once per frame, from the state as it is then.
const dirty = new Set();
let frame = null;

function draw() {
  frame = null;
  const parts = [...dirty];
  dirty.clear();
  for (const part of parts) {
    if (part === 'live') {
      const live = source.liveView();
      if (live) drawLive(live);
    } else if (part === 'series') {
      const view = source.chartView();
      if (view) chart.render(root.querySelector('#w-chart'), view, fmt, range);
    } else if (part === 'alerts') {
      alerts.render(root.querySelector('#w-alerts'), source.alertsView(), fmt);
    }
  }
}

function schedule(part) {
  dirty.add(part);
  if (frame == null) {
    // A hidden page draws no frames: draw when it shows again (the state keeps up meanwhile).
    frame = document.hidden ? setTimeout(draw, 1000) : requestAnimationFrame(draw);
  }
}

const STREAM_WORDS = {
  connecting: 'Connecting to live updates…',
  live: 'Live: updates are pushed as they happen',
  reconnecting: 'Live updates interrupted; reconnecting…',
  retrying: 'Live updates interrupted',
  closed: 'Live updates stopped',
  unsupported: 'This browser cannot receive live updates: use Refresh',
};

function streamState({ state, retryMs }) {
  root.dataset.stream = state;
  streamLabel.dataset.state = state;
  streamLabel.textContent = state === 'retrying' && retryMs
    ? `${STREAM_WORDS.retrying}; trying again in ${fmt.integer(Math.ceil(retryMs / 1000))} s`
    : STREAM_WORDS[state] ?? state;
}

function onPush(part, detail) {
  if (part === 'stream') streamState(detail);
  else if (part === 'reset') loadAll();
  else if (part === 'top') loadTop();
  else if (part === 'signed-out') window.location.assign('/');
  else schedule(part);
}

document.getElementById('zone-label').textContent = `Times in ${timeZone}`;
for (const input of root.querySelectorAll('input[name="range"]')) {
  input.checked = input.value === range;
  input.addEventListener('change', async () => {
    range = input.value;
    const url = new URL(window.location.href);
    url.searchParams.set('range', range);
    window.history.replaceState(null, '', url);
    root.dataset.loaded = 'false';
    await loadSeries();
    root.dataset.loaded = 'true';
  });
}
refresh.addEventListener('click', loadAll);
chart.followWidth(root.querySelector('#w-chart'));
// The stream first: what it pushes while the reads are on their way is applied to them when they come.
const stop = source.subscribe(onPush);
window.addEventListener('pagehide', stop, { once: true });
// Back to a page kept in the browser's cache: its stream was closed, so read it all anew.
window.addEventListener('pageshow', (event) => { if (event.persisted) window.location.reload(); });
loadAll();
