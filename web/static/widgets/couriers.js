// Couriers waiting at the restaurant now, longest waiting first.
import { asOf, busy, field, fill, h } from '../lib/dom.js';

export function render(widget, live, fmt) {
  const waiting = live.couriers_waiting;
  const list = field(widget, 'list');
  const now = Date.parse(live.now);
  if (!waiting.couriers.length) {
    fill(list, h('li', { class: 'empty' }, 'No courier is waiting'));
  } else {
    fill(list, waiting.couriers.map((courier) => {
      const minutes = courier.since ? Math.max(0, Math.round((now - Date.parse(courier.since)) / 60_000)) : null;
      return h('li', { dataset: { courier: courier.courier_id } },
        h('span', {}, `${courier.courier_id}${courier.order_id ? ` for order ${courier.order_id}` : ''}`),
        h('span', { class: 'meta-line' }, minutes == null ? '' : `waiting ${fmt.integer(minutes)} min, since ${fmt.time(courier.since)}`));
    }));
    if (waiting.truncated) list.append(h('li', { class: 'empty' }, `and more (${fmt.integer(waiting.count)} in all)`));
  }
  fill(field(widget, 'asof'), asOf(fmt, waiting.as_of, { provisional: true }));
  busy(widget, false);
}
