// The live order funnel: orders now in each status of the event contract.
import { asOf, busy, field, fill, h } from '../lib/dom.js';

export const STATUSES = [
  ['placed', 'Placed'],
  ['confirmed', 'Confirmed'],
  ['in_kitchen', 'In the kitchen'],
  ['ready_for_pickup', 'Ready for pickup'],
  ['picked_up', 'Picked up'],
  ['delivered', 'Delivered'],
  ['cancelled', 'Cancelled'],
];

export function render(widget, funnel, fmt) {
  const largest = Math.max(1, ...STATUSES.map(([key]) => funnel.orders[key] || 0));
  fill(field(widget, 'list'), STATUSES.map(([key, label]) => {
    const count = funnel.orders[key] || 0;
    const bar = h('span', { class: 'bar', 'aria-hidden': 'true' });
    bar.style.width = `${(100 * count) / largest}%`;
    return h('li', { class: key, dataset: { status: key } },
      h('span', { class: 'label' }, label),
      h('span', { class: 'count', dataset: { raw: count } }, fmt.integer(count)),
      h('span', { class: 'track' }, bar));
  }));
  fill(field(widget, 'asof'), asOf(fmt, funnel.as_of, { provisional: true, note: `${fmt.integer(funnel.total)} orders` }));
  busy(widget, false);
}
