// The restaurant's alerts: its rules' firing and resolved events, newest first (history, then pushed as they come).
import { asOf, busy, field, fill, h } from '../lib/dom.js';

const CONDITIONS = { gt: '>', gte: '≥', lt: '<', lte: '≤' };

function describe(entry, fmt) {
  const value = fmt.decimal(entry.value);
  const window = entry.windowMinutes ? ` over ${fmt.integer(entry.windowMinutes)} min` : '';
  if (entry.anomaly || entry.condition === 'anomaly') return `${entry.metric} ${value}${window}: an anomaly (2σ)`;
  const op = CONDITIONS[entry.condition] ?? entry.condition;
  return `${entry.metric} ${value}${window} (rule: ${op} ${fmt.decimal(entry.threshold)})`;
}

export function render(widget, view, fmt) {
  const list = field(widget, 'list');
  if (!view.entries.length) {
    fill(list, h('li', { class: 'empty' }, view.read ? 'No alerts' : 'No alert since the page opened'));
  } else {
    fill(list, view.entries.map((entry) => h('li', { class: entry.status, dataset: { alert: entry.key, status: entry.status } },
      h('span', {},
        h('span', { class: `badge ${entry.status === 'resolved' ? 'final' : 'firing'}` },
          entry.status === 'resolved' ? 'resolved' : 'firing'),
        ' ', entry.rule ? `${entry.rule}: ` : '', describe(entry, fmt)),
      h('span', { class: 'meta-line' },
        `window ending ${fmt.day(entry.windowEnd)}${entry.reason ? ` · ${String(entry.reason).replaceAll('_', ' ')}` : ''}`))));
  }
  const count = view.entries.length;
  fill(field(widget, 'asof'), asOf(fmt, view.asOf, { note: count === 1 ? '1 event' : `${fmt.integer(count)} events` }));
  busy(widget, false);
}
