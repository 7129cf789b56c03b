// The backfill form: start a run (admin), then follow it to its end by reading the run's state every few seconds
// while it is queued or running (the progress of one job, not a data feed); nothing is polled otherwise.
import * as api from './api.js';
import { h, show, span, state, table } from './view.js';

const POLL_MS = 3000;
const MAX_POLL_MS = 30000; // after failed reads, back off up to this
const HOUR_MS = 3600_000;

/** "YYYY-MM-DDTHH:00" of a UTC hour, as a datetime-local input holds it. */
function inputValue(ms) {
  return new Date(ms).toISOString().slice(0, 13) + ':00';
}

/** A datetime-local value read as UTC → RFC 3339 (null when empty or malformed). */
function utc(value) {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(value)) return null;
  return `${value.length === 16 ? `${value}:00` : value}Z`;
}

export function setup({ section, fmt, isAdmin, onFinished }) {
  const form = section.querySelector('#backfill-form');
  const from = form.querySelector('#bf-from');
  const to = form.querySelector('#bf-to');
  const submit = form.querySelector('#bf-submit');
  const error = form.querySelector('#bf-error');
  const choices = form.querySelector('[data-field="choices"]');
  const progress = section.querySelector('#bf-progress');
  const field = (name) => progress.querySelector(`[data-field="${name}"]`);
  let following = null; // the run id being followed
  let timer = null;

  // The last whole hour before now, as a default.
  const hour = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;
  from.value = inputValue(hour - HOUR_MS);
  to.value = inputValue(hour);
  from.max = inputValue(hour - HOUR_MS);
  to.max = inputValue(hour);

  if (!isAdmin) {
    submit.disabled = true;
    form.querySelector('#bf-admin-note').hidden = false;
  }

  function showError(message) {
    error.textContent = message;
    error.hidden = !message;
    if (message) error.focus();
  }

  function drawRun(run) {
    progress.hidden = false;
    progress.dataset.state = run.state;
    progress.dataset.run = run.run_id;
    field('run').textContent = run.run_id;
    field('range').textContent = run.range
      ? `${fmt.day(run.range[0])} – ${fmt.day(run.range[1])} · ${run.metrics?.length ? run.metrics.join(', ') : 'every metric'}`
      : '';
    const tasks = run.tasks || [];
    const done = run.progress?.done ?? 0;
    const total = run.progress?.total ?? tasks.length;
    const bar = field('bar');
    bar.max = Math.max(total, 1);
    bar.value = run.state === 'success' ? bar.max : done;
    const took = run.duration_s == null ? '' : ` after ${span(run.duration_s)}`;
    const words = {
      queued: 'Queued: waiting for a free worker…',
      running: `Running${took}: ${done} of ${total} task(s) done…`,
      success: `Succeeded${took}.`,
      failed: `Failed${took}: see the task log in Airflow.`,
    };
    const text = words[run.state] || `State: ${run.state}${took}`;
    if (field('state').textContent !== text) field('state').textContent = text;
    field('tasks').replaceChildren(...tasks.map((t) => h('li', { dataset: { task: t.task_id, state: t.state } },
      h('code', {}, t.task_id), ' ', state(t.state, { job: true }),
      t.duration_s == null ? '' : ` · ${span(t.duration_s)}`,
      t.try_number > 1 ? ` · try ${t.try_number} of ${t.max_tries + 1}` : '')));
    if (run.airflow_url) field('airflow').href = run.airflow_url;
    submit.disabled = !isAdmin || !run.finished;
  }

  async function poll(delay = POLL_MS) {
    timer = null;
    const runId = following;
    if (runId == null) return;
    try {
      const run = await api.backfill(runId);
      if (runId !== following) return;
      drawRun(run);
      if (run.finished) {
        following = null;
        onFinished(run);
        return;
      }
      timer = setTimeout(poll, POLL_MS);
    } catch (problem) {
      if (problem instanceof api.ApiError && problem.status === 404) {
        following = null;
        field('state').textContent = 'This run no longer exists in Airflow.';
        submit.disabled = !isAdmin;
        return;
      }
      field('state').textContent = `Reading the run's state failed (${api.explain(problem)}); trying again…`;
      const next = Math.min(delay * 2, MAX_POLL_MS);
      timer = setTimeout(() => poll(next), next);
    }
  }

  function follow(runId) {
    if (timer != null) clearTimeout(timer);
    following = runId;
    submit.disabled = true;
    poll();
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError('');
    const start = utc(from.value);
    const end = utc(to.value);
    if (!start || !end) {
      showError('Enter both ends of the range (UTC, whole hours).');
      return;
    }
    const metrics = [...choices.querySelectorAll('input:checked')].map((input) => input.value);
    submit.disabled = true;
    try {
      const started = await api.startBackfill({
        from: start, to: end, metrics, reconcile: form.querySelector('#bf-reconcile').checked,
      });
      drawRun({ run_id: started.run_id, state: started.state, range: started.range, metrics: started.metrics,
        tasks: [], finished: false });
      progress.querySelector('#bf-progress-title').focus();
      follow(started.run_id);
    } catch (problem) {
      showError(`The backfill was not started: ${api.explain(problem)}`);
      submit.disabled = !isAdmin || following != null;
    }
  });

  return {
    /** Offer the catalog's metrics as checkboxes. */
    setMetrics(names) {
      choices.replaceChildren(...names.map((name) => h('label', { class: 'choice' },
        h('input', { type: 'checkbox', name: 'metrics', value: name }), ` ${name}`)));
    },
    metricsFailed(message) {
      choices.replaceChildren(h('span', { class: 'widget-error' }, `The catalog could not be read (${message}); `
        + 'the backfill will rebuild every metric.'));
    },
    /** List the recent runs and follow the newest one if it has not ended (e.g. after a reload). */
    showRecent(runs) {
      const rows = runs.map((run) => ({
        attributes: { dataset: { run: run.run_id, state: run.state } },
        cells: [run.range ? `${fmt.day(run.range[0])} – ${fmt.day(run.range[1])}` : run.run_id,
          state(run.state, { job: true }), run.metrics?.length ? run.metrics.join(', ') : 'every metric',
          run.start ? fmt.day(run.start) : '–', span(run.duration_s)],
      }));
      show(section, rows.length ? table('Recent backfill runs', [{ label: 'Range' }, { label: 'State' },
        { label: 'Metrics' }, { label: 'Started' }, { label: 'Took' }], rows)
        : h('p', { class: 'empty' }, 'no backfill has run yet'), 'recent');
      const active = runs.find((run) => !run.finished);
      if (active && following == null) follow(active.run_id);
    },
    recentFailed(message) {
      show(section, h('p', { class: 'widget-error' }, `Unavailable: ${message}`), 'recent');
    },
  };
}
