// The operations page: reads /v1/ops/overview once at load and on Refresh (no data polling), draws each part in its
// section, and runs the backfill form (which follows a started run until it ends).
import { formatter, resolveZone } from '../lib/format.js';
import * as api from './api.js';
import * as backfill from './backfill.js';
import * as lags from './lags.js';
import * as pipeline from './pipeline.js';
import * as problems from './problems.js';
import * as reconcile from './reconcile.js';
import * as services from './services.js';
import { show, unavailable } from './view.js';

const root = document.getElementById('operations');
const timeZone = resolveZone('');
const fmt = formatter({ timeZone });
const status = document.getElementById('ops-status');
const refresh = document.getElementById('ops-refresh');
const section = (id) => root.querySelector(`#${id}`);

const SECTIONS = {
  services: (o) => services.render(section('ops-services'), o.services, fmt),
  pipeline: (o) => pipeline.render(section('ops-seam'), o.seam, o.hourly, fmt),
  kafka: (o) => lags.renderKafka(section('ops-kafka'), o.kafka_lags, fmt),
  freshness: (o) => lags.renderFreshness(section('ops-freshness'), o.freshness, fmt),
  archive: (o) => lags.renderArchive(section('ops-archive'), o.archive, fmt),
  reconcile: (o) => reconcile.render(section('ops-reconcile'), o.reconcile, fmt),
  late: (o) => problems.renderLate(section('ops-late'), o.late_events, fmt),
  deadLetters: (o) => problems.renderDeadLetters(section('ops-dlq'), o.dead_letters, fmt),
};
const PARTS = ['services', 'kafka_lags', 'freshness', 'archive', 'hourly', 'seam', 'late_events', 'dead_letters',
  'reconcile'];

async function loadOverview() {
  refresh.disabled = true;
  status.classList.remove('error');
  status.textContent = 'Reading the pipeline…';
  root.dataset.loaded = 'false';
  try {
    const overview = await api.overview();
    for (const [name, draw] of Object.entries(SECTIONS)) {
      try {
        draw(overview);
      } catch (problem) {
        console.warn(`operations: drawing ${name} failed`, problem);
      }
    }
    const down = PARTS.filter((part) => !overview[part]?.available);
    status.textContent = `Read at ${fmt.clock(overview.as_of)}`
      + (down.length ? `; unavailable: ${down.join(', ').replaceAll('_', ' ')}` : '');
    status.classList.toggle('error', down.length > 0);
  } catch (problem) {
    const message = api.explain(problem);
    for (const id of ['ops-services', 'ops-kafka', 'ops-freshness', 'ops-archive', 'ops-reconcile', 'ops-late',
      'ops-dlq']) show(section(id), unavailable(message));
    show(section('ops-seam'), unavailable(message));
    status.textContent = `The overview could not be read: ${message}`;
    status.classList.add('error');
  }
  refresh.disabled = false;
  root.dataset.loaded = 'true';
}

async function loadBackfills(form) {
  try {
    form.showRecent((await api.backfills()).runs);
  } catch (problem) {
    form.recentFailed(api.explain(problem));
  }
}

const form = backfill.setup({
  section: section('ops-backfill'),
  fmt,
  isAdmin: root.dataset.role === 'admin',
  onFinished: () => {
    // The run changed the lake: read the parts it touches, and the run list, once more.
    loadOverview();
    loadBackfills(form);
  },
});

document.getElementById('ops-zone').textContent = `Times in ${timeZone}; the backfill range in UTC.`;
refresh.addEventListener('click', () => {
  loadOverview();
  loadBackfills(form);
});
api.catalog()
  .then((body) => form.setMetrics(body.metrics.map((m) => m.name)))
  .catch((problem) => form.metricsFailed(api.explain(problem)));
loadOverview();
loadBackfills(form);
