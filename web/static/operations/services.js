// Services: each local program's supervisor state, uptime and pid.
import { h, show, state, span, table, unavailable } from './view.js';

export function render(section, part, fmt) {
  if (!part.available) {
    show(section, unavailable(part.reason));
    return;
  }
  const rows = part.services.map((s) => ({
    attributes: { dataset: { service: s.name, state: s.state } },
    cells: [s.name, state(s.state), s.uptime_s == null ? (s.description || '–') : span(s.uptime_s),
      s.pid == null ? '–' : String(s.pid)],
  }));
  show(section, [
    h('p', { class: 'summary-line' }, `${fmt.integer(part.running)} of ${fmt.integer(part.total)} running (${part.manager})`),
    table('Services and their states', [{ label: 'Service' }, { label: 'State' }, { label: 'Up for' },
      { label: 'PID', numeric: true }], rows),
  ]);
}
