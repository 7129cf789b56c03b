// Orders and sales over the chosen range (uPlot): provisional windows shaded, anomalies ringed and listed.
import { anomalies, typicalUnit } from '../lib/anomaly.js';
import { RANGES } from '../lib/data.js';
import { asOf, busy, field, fill, h } from '../lib/dom.js';

const HEIGHT = 200;
const COLOURS = { orders: '#1f5fbf', sales: '#1d7a4b', anomaly: '#b00020', provisional: 'rgba(255, 200, 40, 0.22)' };
const charts = new Map(); // field name → uPlot instance, replaced on each render

/** The runs [from, to) of consecutive windows that are not final, in seconds. */
export function provisionalRuns(windows) {
  const runs = [];
  for (const w of windows) {
    if (w.final) continue;
    const start = Date.parse(w.start) / 1000;
    const end = Date.parse(w.end) / 1000;
    const last = runs[runs.length - 1];
    if (last && last[1] === start) last[1] = end;
    else runs.push([start, end]);
  }
  return runs;
}

function shade(runs) {
  return (u) => {
    const { ctx, bbox } = u;
    ctx.save();
    ctx.fillStyle = COLOURS.provisional;
    for (const [from, to] of runs) {
      const left = Math.max(bbox.left, u.valToPos(from, 'x', true));
      const right = Math.min(bbox.left + bbox.width, u.valToPos(to, 'x', true));
      if (right > left) ctx.fillRect(left, bbox.top, right - left, bbox.height);
    }
    ctx.restore();
  };
}

function drawChart(element, name, xs, ys, marks, runs, fmt, money) {
  charts.get(name)?.destroy();
  const show = money ? fmt.money : fmt.integer;
  const opts = {
    width: Math.max(280, element.clientWidth || 600),
    height: HEIGHT,
    tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), fmt.timeZone),
    scales: { x: { time: true } },
    series: [
      {},
      { label: money ? 'Sales' : 'Orders', stroke: COLOURS[name], width: 1.5, value: (u, v) => show(v),
        points: { show: false } },
      { label: 'Anomaly', stroke: COLOURS.anomaly, width: 0, paths: () => null, value: (u, v) => (v == null ? '' : show(v)),
        points: { show: true, size: 10, width: 2, stroke: COLOURS.anomaly, fill: '#ffffff' } },
    ],
    axes: [{}, { values: (u, splits) => splits.map((v) => fmt.compact(v)), size: 56 }],
    hooks: { drawClear: [shade(runs)] },
  };
  const chart = new window.uPlot(opts, [xs, ys, marks], element);
  charts.set(name, chart);
  return chart;
}

function summary(fmt, money, windows, values, found, range) {
  const show = money ? fmt.money : fmt.integer;
  const total = values.reduce((sum, v) => sum + (v ?? 0), 0);
  let peak = -1;
  values.forEach((v, i) => { if (v != null && (peak < 0 || v > values[peak])) peak = i; });
  const finals = windows.filter((w) => w.final).length;
  const label = RANGES[range].label;
  const parts = [`${label[0].toUpperCase()}${label.slice(1)}: ${show(total)} in all`];
  if (peak >= 0 && values[peak] > 0) parts.push(`highest ${show(values[peak])} at ${fmt.day(windows[peak].start)}`);
  parts.push(`${fmt.integer(finals)} of ${fmt.integer(windows.length)} windows final`);
  parts.push(found.length === 1 ? '1 anomaly' : `${fmt.integer(found.length)} anomalies`);
  return `${parts.join('; ')}.`;
}

function anomalyItem(fmt, name, money, windows, anomaly) {
  const show = money ? fmt.money : fmt.integer;
  const band = money ? fmt.money : fmt.decimal;
  const low = Math.max(0, anomaly.mean - 2 * anomaly.sd);
  const high = anomaly.mean + 2 * anomaly.sd;
  return h('li', { dataset: { series: name, start: windows[anomaly.index].start } },
    `${money ? 'Sales' : 'Orders'} ${show(anomaly.value)} at ${fmt.day(windows[anomaly.index].start)}: `
    + `expected ${band(low)}–${band(high)} (baseline mean ${band(anomaly.mean)})`);
}

/** Draw both charts from the series answers `{orders, sales, readAt}`. */
export function render(widget, { orders, sales, readAt }, fmt, range) {
  const items = [];
  const orderCount = orders.windows.reduce((sum, w) => sum + (w.value ?? 0), 0);
  const salesTotal = sales.windows.reduce((sum, w) => sum + (w.value ?? 0), 0);
  // A change smaller than one order (or one average order's amount) is never an anomaly.
  const spreads = { orders: 1, sales: typicalUnit(salesTotal, orderCount) };
  for (const [name, body, money] of [['orders', orders, false], ['sales', sales, true]]) {
    const windows = body.windows;
    const xs = windows.map((w) => Date.parse(w.start) / 1000);
    const values = windows.map((w) => (w.value == null ? null : Number(w.value)));
    const complete = windows.map((w) => Date.parse(w.end) <= readAt);
    const found = anomalies(values, { k: 2, baseline: RANGES[range].baseline, minSpread: spreads[name], complete });
    const marked = new Set(found.map((a) => a.index));
    const marks = values.map((v, i) => (marked.has(i) ? v : null));
    const element = field(widget, name);
    element.dataset.windows = String(windows.length);
    element.dataset.anomalies = String(found.length);
    element.setAttribute('aria-label', `${money ? 'Sales' : 'Orders'} over ${RANGES[range].label}`);
    if (window.uPlot) {
      drawChart(element, name, xs, values, marks, provisionalRuns(windows), fmt, money);
    } else {
      fill(element, h('p', { class: 'widget-error' }, 'Charts need uPlot in web/vendor: run make setup.'));
    }
    fill(field(widget, `${name}-summary`), summary(fmt, money, windows, values, found, range));
    items.push(...found.map((anomaly) => anomalyItem(fmt, name, money, windows, anomaly)));
  }
  const list = field(widget, 'anomalies');
  if (!items.length) {
    fill(list, h('p', { class: 'empty' }, 'No anomalies in the shown range.'));
  } else {
    const details = h('details', {}, h('summary', {}, items.length === 1 ? '1 anomaly' : `${fmt.integer(items.length)} anomalies`),
      h('ul', {}, items));
    details.open = items.length <= 6;
    fill(list, details);
  }
  const seam = orders.seam ? `final up to ${fmt.day(orders.seam)}` : 'nothing final yet';
  const provisional = orders.windows.some((w) => !w.final);
  fill(field(widget, 'asof'), asOf(fmt, orders.freshness, { provisional, note: seam, seam: orders.seam }));
  busy(widget, false);
}

/** Keep the charts as wide as their boxes (phone rotation, window resize): no timers, only resize events. */
export function followWidth(widget) {
  if (!('ResizeObserver' in window)) return;
  const observer = new ResizeObserver(() => {
    for (const [name, chart] of charts) {
      const width = Math.max(280, field(widget, name).clientWidth || 0);
      if (width && Math.abs(width - chart.width) > 2) chart.setSize({ width, height: HEIGHT });
    }
  });
  observer.observe(widget);
}
