// A few DOM helpers: elements built with textContent only (API strings never become markup).

/** An element with attributes and children (strings become text nodes). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value == null || value === false) continue;
    if (name === 'class') element.className = value;
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child == null) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** The element of a widget that holds `field` (data-field). */
export function field(widget, name) {
  return widget.querySelector(`[data-field="${name}"]`);
}

/** Replace an element's children. */
export function fill(element, ...children) {
  element.replaceChildren(...children.flat().filter((c) => c != null));
}

/** Mark a widget as loaded (or loading). */
export function busy(widget, isBusy) {
  widget.setAttribute('aria-busy', isBusy ? 'true' : 'false');
}

/** Show an error in a widget instead of its numbers. */
export function widgetError(widget, message) {
  busy(widget, false);
  const asof = field(widget, 'asof');
  if (asof) fill(asof, h('span', { class: 'widget-error', role: 'alert' }, message));
}

/**
 * "as of 14:03:12" with a provisional or final badge. Without a speed-layer update (`moment` null) the numbers
 * are the batch layer's, as of the seam (`seam`), if there is one.
 */
export function asOf(fmt, moment, { provisional = null, note = '', seam = null } = {}) {
  let text = 'no data yet';
  if (moment != null) text = `as of ${fmt.clock(moment)}`;
  else if (seam != null) text = `as of ${fmt.time(seam)} (batch layer)`;
  const parts = [text];
  if (note) parts.push(` · ${note}`);
  const badge = provisional == null ? null
    : h('span', { class: provisional ? 'badge' : 'badge final' }, provisional ? 'provisional' : 'final');
  return [h('span', { dataset: { asof: moment ?? seam ?? '' } }, parts.join('')), badge];
}
