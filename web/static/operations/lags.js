// Kafka lags (consumer groups, streaming queries, Pinot tables), the speed layer's freshness, the archive's lag.
import { ago, facts, h, show, span, state, table, unavailable } from './view.js';

export function renderKafka(section, part, fmt) {
  if (!part.available) {
    show(section, unavailable(part.reason));
    return;
  }
  const rows = part.consumers.map((c) => ({
    attributes: { dataset: { consumer: c.consumer, kind: c.kind } },
    cells: [c.what && c.kind === 'consumer group' ? [c.consumer, h('br'), h('small', {}, c.what)] : c.consumer,
      c.kind, c.topic, fmt.integer(c.lag)],
  }));
  show(section, [
    h('p', { class: 'summary-line' }, `${fmt.integer(part.total_lag)} records behind in all`),
    table('Kafka consumer lags', [{ label: 'Consumer' }, { label: 'Kind' }, { label: 'Topic' },
      { label: 'Lag (records)', numeric: true }], rows),
    part.unavailable_sources.map((s) => unavailable(`${s.source}: ${s.reason}`)),
  ]);
}

export function renderFreshness(section, part, fmt) {
  if (!part.available) {
    show(section, unavailable(part.reason));
    return;
  }
  const streaming = part.streaming;
  const pinot = part.pinot;
  const children = [];
  if (streaming.available) {
    children.push(facts([
      ['Newest event read by the streaming job', streaming.freshness_s == null ? 'none yet' : ago(streaming.freshness_s),
        { id: 'freshness-value', dataset: { raw: streaming.freshness_s ?? '' } }],
      ['Streaming job', streaming.ready ? state('ready') : state('unavailable')],
      streaming.failed.length ? ['Stopped queries', streaming.failed.join(', ')] : null,
    ]));
    children.push(table('Streaming queries: watermark delay and last progress', [{ label: 'Query' },
      { label: 'Watermark delay', numeric: true }, { label: 'Last progress', numeric: true }],
    streaming.queries.map((q) => ({ cells: [q.query, span(q.watermark_delay_s), ago(q.last_progress_age_s)] }))));
  } else {
    children.push(unavailable(`streaming job: ${streaming.reason}`));
  }
  if (pinot.available) {
    children.push(facts([
      ['Newest minute in Pinot', pinot.newest_minute ? fmt.day(pinot.newest_minute) : 'none in the last day'],
      ['Last written', ago(pinot.newest_update_age_s)],
    ]));
  } else {
    children.push(unavailable(`Pinot: ${pinot.reason}`));
  }
  show(section, children);
}

export function renderArchive(section, part, fmt) {
  if (!part.available) {
    show(section, unavailable(part.reason));
    return;
  }
  show(section, facts([
    ['Connector', [state(part.connector_state), ` ${part.connector} (tasks: ${part.task_states.join(', ') || 'none'})`]],
    ['Records not archived yet', fmt.integer(part.records_behind),
      { id: 'archive-records', dataset: { raw: part.records_behind } }],
    ['Oldest of them', part.records_behind ? (part.lag_s == null ? 'unknown' : span(part.lag_s)) : 'none: caught up'],
    ['Topic', `${part.topic} (group ${part.group})`],
  ]));
}
