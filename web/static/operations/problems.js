// Late events per tenant and producer, and dead letters per reason, over the last hour and day.
import { h, show, table, unavailable } from './view.js';

const SHOWN = 10; // rows shown at once; the others behind a disclosure

function counted(section, part, fmt, caption, columns, cells) {
  if (!part.available) {
    show(section, unavailable(part.reason));
    return;
  }
  const heads = [...columns, { label: 'Last hour', numeric: true }, { label: 'Last day', numeric: true }];
  const rows = part.rows.map((row) => ({ attributes: { dataset: { key: cells(row).slice(0, 2).join('|') } },
    cells: [...cells(row), fmt.integer(row.last_hour), fmt.integer(row.last_day)] }));
  show(section, [
    h('p', { class: 'summary-line' }, `${fmt.integer(part.totals.last_hour)} in the last hour, `
      + `${fmt.integer(part.totals.last_day)} in the last day (topic ${part.topic})`),
    part.complete ? null : h('p', { class: 'note' }, 'Still reading the last day of the topic; Refresh for the rest.'),
    rows.length ? table(caption, [...heads], rows.slice(0, SHOWN)) : h('p', { class: 'empty' }, 'none in the last day'),
    rows.length > SHOWN ? h('details', {}, h('summary', {}, `${fmt.integer(rows.length - SHOWN)} more rows`),
      table(`${caption} (more)`, [...heads], rows.slice(SHOWN))) : null,
    part.more_rows ? h('p', { class: 'help' }, `…and ${fmt.integer(part.more_rows)} smaller ones, not listed`) : null,
  ]);
}

export function renderLate(section, part, fmt) {
  counted(section, part, fmt, 'Late events per tenant and producer', [{ label: 'Tenant' }, { label: 'Producer' }],
    (row) => [row.tenant_id, row.source]);
}

export function renderDeadLetters(section, part, fmt) {
  counted(section, part, fmt, 'Dead letters per reason', [{ label: 'Reason' }, { label: 'Refused by' }],
    (row) => [row.reason, row.stage]);
}
