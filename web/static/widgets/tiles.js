// The four tiles: sales and completed orders today, average prep time of the last hour, couriers waiting.
import { asOf, busy, field, fill } from '../lib/dom.js';

function setValue(widget, text, raw) {
  const value = field(widget, 'value');
  value.textContent = text;
  value.dataset.raw = raw == null ? '' : String(raw);
}

/** Whether minutes after the seam (the speed layer's) are inside [start, end). */
function provisional(seam, end) {
  return seam == null || Date.parse(seam) < Date.parse(end);
}

export function render(root, live, fmt) {
  // Without a speed-layer update the as-of time is the seam itself: say it once.
  const seamNote = (part) => {
    if (!live.seam) return 'nothing final yet';
    return part.as_of == null ? '' : `final up to ${fmt.time(live.seam)}`;
  };

  const sales = root.querySelector('#w-sales');
  setValue(sales, fmt.money(live.sales_today.value), live.sales_today.value);
  const orders = live.sales_today.count;
  fill(field(sales, 'detail'),
    `${fmt.integer(orders)} ${orders === 1 ? 'order' : 'orders'} since ${fmt.time(live.sales_today.start)}`);
  fill(field(sales, 'asof'), asOf(fmt, live.sales_today.as_of,
    { provisional: provisional(live.seam, live.sales_today.end), note: seamNote(live.sales_today), seam: live.seam }));
  busy(sales, false);

  const completed = root.querySelector('#w-completed');
  setValue(completed, fmt.integer(live.completed_today.value), live.completed_today.value);
  fill(field(completed, 'detail'), `delivered since ${fmt.time(live.completed_today.start)}`);
  fill(field(completed, 'asof'), asOf(fmt, live.completed_today.as_of,
    { provisional: provisional(live.seam, live.completed_today.end), note: seamNote(live.completed_today), seam: live.seam }));
  busy(completed, false);

  const prep = root.querySelector('#w-prep');
  const p = live.prep_time_last_hour;
  setValue(prep, fmt.duration(p.value), p.value);
  const p90 = p.quantiles ? p.quantiles.p90 : null;
  fill(field(prep, 'detail'), p.count ? `${fmt.integer(p.count)} orders · p90 ${fmt.duration(p90)}` : 'no order was ready');
  fill(field(prep, 'asof'), asOf(fmt, p.as_of, { provisional: provisional(live.seam, p.end), seam: live.seam }));
  busy(prep, false);

  const couriers = root.querySelector('#w-couriers-count');
  const waiting = live.couriers_waiting;
  setValue(couriers, fmt.integer(waiting.count), waiting.count);
  const longest = waiting.couriers.length ? waiting.couriers[0].since : null;
  fill(field(couriers, 'detail'), longest
    ? `longest since ${fmt.time(longest)}` : 'none at the restaurant');
  fill(field(couriers, 'asof'), asOf(fmt, waiting.as_of, { provisional: true }));
  busy(couriers, false);
}
