// The best sellers of the last hour.
import { asOf, busy, field, fill, h } from '../lib/dom.js';

export function render(widget, top, fmt) {
  const list = field(widget, 'list');
  if (!top.top.length) {
    fill(list, h('li', { class: 'empty' }, 'No items sold in the last hour'));
  } else {
    fill(list, top.top.map((entry) => h('li', { dataset: { key: entry.key } },
      h('span', { class: 'key' }, entry.key || '(no item id)'), ' · ',
      h('span', { class: 'count', dataset: { raw: entry.value } }, `${fmt.integer(entry.value)} sold`))));
  }
  fill(field(widget, 'asof'), asOf(fmt, top.freshness, {
    provisional: !top.final, seam: top.seam, note: `${fmt.time(top.start)}–${fmt.time(top.end)}` }));
  busy(widget, false);
}
