// What every section of the operations page draws with: tables that scroll on a phone, "unavailable" notes,
// ages and durations in words. Text goes in through textContent only (lib/dom.js's h).
import { h } from '../lib/dom.js';

export { h };

/** The element of `section` that holds `name` (data-field). */
export function slot(section, name = 'body') {
  return section.querySelector(`[data-field="${name}"]`);
}

/** Replace the children of `section`'s slot and mark the section as read. */
export function show(section, children, name = 'body') {
  slot(section, name).replaceChildren(...[children].flat().filter((c) => c != null));
  section.setAttribute('aria-busy', 'false');
}

/** A part (or a source inside one) that could not be read, and why. */
export function unavailable(reason) {
  return h('p', { class: 'widget-error', dataset: { unavailable: 'true' } }, `Unavailable: ${reason || 'no answer'}`);
}

/**
 * A table in a region that scrolls sideways on narrow screens (focusable, so a keyboard can scroll it).
 * `columns`: [{ label, numeric? }]; `rows`: [{ cells: [...], attributes? }].
 */
export function table(caption, columns, rows) {
  const head = h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.numeric ? 'num' : null }, c.label)));
  const body = rows.map(({ cells, attributes = {} }) => h('tr', attributes,
    cells.map((cell, i) => (i === 0
      ? h('th', { scope: 'row' }, cell)
      : h('td', { class: columns[i].numeric ? 'num' : null }, cell)))));
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption },
    h('table', {}, h('caption', { class: 'visually-hidden' }, caption), h('thead', {}, head), h('tbody', {}, body)));
}

/** A list of "term: value" facts. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).flatMap(([term, value, attributes = {}]) => [
    h('dt', {}, term), h('dd', attributes, value)]));
}

/** Seconds in words: "45 s", "12 min", "3 h 05 min", "2 d 4 h" ("–" when unknown). */
export function span(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return '–';
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 90) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${String(minutes % 60).padStart(2, '0')} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** "<span> ago" for an age in seconds. */
export const ago = (seconds) => (seconds == null ? '–' : `${span(seconds)} ago`);

/**
 * A state word with a class for its colour (the word itself carries the meaning). For a run or task (`job`),
 * running is work in progress; for a service, the good state.
 */
export function state(word, { job = false } = {}) {
  const text = String(word ?? 'unknown');
  const lower = text.toLowerCase();
  let kind = 'neutral';
  if (job && lower === 'running') kind = 'busy';
  else if (['running', 'success', 'ok', 'ready'].includes(lower)) kind = 'good';
  else if (['failed', 'fatal', 'backoff', 'exited', 'upstream_failed', 'absent', 'unavailable'].includes(lower)) kind = 'bad';
  else if (['queued', 'starting', 'scheduled', 'up_for_retry', 'restarting', 'deferred'].includes(lower)) kind = 'busy';
  return h('span', { class: `state ${kind}`, dataset: { state: lower } }, text);
}
