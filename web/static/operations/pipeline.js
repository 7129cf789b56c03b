// The seam and the hourly runs: where the batch layer's final minutes end, and the last runs that moved it.
import { ago, facts, h, show, span, state, table, unavailable } from './view.js';

function seamFacts(part, fmt) {
  if (!part.available) return unavailable(part.reason);
  if (!part.seam) return h('p', { class: 'empty' }, part.note || 'no seam yet');
  return facts([
    ['Final up to', h('time', { datetime: part.seam, id: 'seam-value', dataset: { raw: part.seam } }, fmt.day(part.seam)),
      { class: 'big' }],
    ['Behind now by', span(part.behind_s)],
    ['Last moved', `${fmt.day(part.advanced_at)} (${ago(part.advanced_ago_s)})`],
    part.range ? ['Over', `${fmt.day(part.range[0])} – ${fmt.time(part.range[1])}`] : null,
  ]);
}

function tasksSummary(run) {
  const tasks = run.tasks || [];
  const done = tasks.filter((t) => t.state === 'success' || t.state === 'skipped').length;
  const failed = tasks.filter((t) => ['failed', 'upstream_failed'].includes(t.state)).map((t) => t.task_id);
  const current = tasks.filter((t) => ['running', 'queued', 'up_for_retry'].includes(t.state)).map((t) => t.task_id);
  const parts = [`${done}/${tasks.length} done`];
  if (current.length) parts.push(`now: ${current.join(', ')}`);
  if (failed.length) parts.push(`failed: ${failed.join(', ')}`);
  return parts.join(' · ');
}

function runsTable(part, fmt) {
  if (!part.available) return unavailable(part.reason);
  const rows = part.runs.map((run) => ({
    attributes: { dataset: { run: run.run_id, state: run.state } },
    cells: [`${fmt.day(run.logical_date || run.queued_at)}${run.run_type === 'scheduled' ? '' : ` (${run.run_type})`}`,
      state(run.state, { job: true }),
      run.start ? fmt.time(run.start) : '–', span(run.duration_s), tasksSummary(run)],
  }));
  return [
    h('p', { class: 'summary-line' },
      `${part.dag}: ${part.paused ? 'paused' : 'scheduled'}`,
      part.next_run ? ` · next run ${fmt.day(part.next_run)}` : '', ' · ',
      h('a', { href: part.airflow_url }, 'in Airflow')),
    rows.length ? table('Last hourly runs', [{ label: 'Run (tick)' }, { label: 'State' }, { label: 'Started' },
      { label: 'Took' }, { label: 'Tasks' }], rows) : h('p', { class: 'empty' }, 'no hourly run yet'),
  ];
}

export function render(section, seam, hourly, fmt) {
  show(section, seamFacts(seam, fmt), 'seam');
  show(section, runsTable(hourly, fmt));
}
