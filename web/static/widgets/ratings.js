// The latest ratings, newest first.
import { asOf, busy, field, fill, h } from '../lib/dom.js';

function stars(n) {
  return n == null ? '–' : '★'.repeat(n) + '☆'.repeat(Math.max(0, 5 - n));
}

export function render(widget, live, fmt) {
  const list = field(widget, 'list');
  const latest = live.ratings.latest;
  if (!latest.length) {
    fill(list, h('li', { class: 'empty' }, 'No ratings yet'));
  } else {
    fill(list, latest.map((rating) => h('li', { dataset: { order: rating.order_id } },
      h('span', {},
        'Food ', h('span', { class: 'stars', 'aria-label': `${rating.food_rating ?? 'no'} of 5` }, stars(rating.food_rating)),
        ' · Delivery ',
        h('span', { class: 'stars', 'aria-label': `${rating.delivery_rating ?? 'no'} of 5` }, stars(rating.delivery_rating))),
      h('span', { class: 'meta-line' }, `order ${rating.order_id} · ${fmt.time(rating.rated_at)}`))));
  }
  fill(field(widget, 'asof'), asOf(fmt, live.ratings.as_of, { provisional: true }));
  busy(widget, false);
}
