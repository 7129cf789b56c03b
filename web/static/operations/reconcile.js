// Reconcile differences: Delta's and Pinot's minute rows per metric over the latest final hour.
import { h, show, table, unavailable } from './view.js';

export function render(section, part, fmt) {
  if (!part.available) {
    show(section, unavailable(part.reason));
    return;
  }
  if (!part.range) {
    show(section, h('p', { class: 'empty' }, part.note));
    return;
  }
  const rows = part.metrics.map((m) => ({
    attributes: { class: m.differs ? 'differs' : null, dataset: { metric: m.metric, differs: String(m.differs) } },
    cells: [m.metric, fmt.integer(m.delta_rows), fmt.integer(m.pinot_rows), fmt.integer(m.delta_count),
      fmt.integer(m.pinot_count),
      m.differs ? `differs: ${m.tenants_differing} tenant(s), e.g. ${m.tenants.join(', ')}` : 'same'],
  }));
  show(section, [
    h('p', { class: 'summary-line' }, `${fmt.day(part.range[0])} – ${fmt.time(part.range[1])}: `,
      h('strong', {}, part.differences ? `${fmt.integer(part.differences)} metric(s) differ` : 'no differences')),
    rows.length ? table('Delta and Pinot per metric', [{ label: 'Metric' }, { label: 'Delta rows', numeric: true },
      { label: 'Pinot rows', numeric: true }, { label: 'Delta count', numeric: true },
      { label: 'Pinot count', numeric: true }, { label: 'Result' }], rows)
      : h('p', { class: 'empty' }, 'no rows in either layer for this hour'),
    h('p', { class: 'help' }, part.note),
  ]);
}
