// Anomalies of a shown series: windows more than k standard deviations (k = 2) from their baseline.
//
// The baseline of a window is the mean and population standard deviation of the `baseline` complete windows
// just before it (the last hour of minutes, or the last day of hours): a restaurant whose traffic started an
// hour ago is compared with its last hour, not with a quiet night. Two guards keep noise out:
// - the spread is at least `minSpread` (one order for order counts, one average order for sales), so going
//   from 0 to 1 order in a quiet minute is not "more than 2σ" just because the baseline was flat;
// - a window is judged only when at least half its baseline is there and it is complete itself (the current
//   minute or hour is still filling up, and its half-empty value is no dip).
// Pure: numbers in, indices and their baselines out.

/**
 * @param {(number|null)[]} values the series in time order (null: no value)
 * @param {{k?: number, baseline?: number, minSpread?: number, complete?: boolean[]}} options
 *   complete[i] false: window i is still filling up (not judged, not part of any baseline)
 * @returns {{index: number, value: number, mean: number, sd: number}[]} the anomalies, in time order
 */
export function anomalies(values, { k = 2, baseline = 60, minSpread = 0, complete = null } = {}) {
  const usable = values.map((v, i) => typeof v === 'number' && Number.isFinite(v) && (complete == null || complete[i]));
  const found = [];
  const needed = Math.max(3, Math.ceil(baseline / 2));
  for (let i = 0; i < values.length; i += 1) {
    if (!usable[i]) continue;
    let n = 0;
    let sum = 0;
    let squares = 0;
    for (let j = Math.max(0, i - baseline); j < i; j += 1) {
      if (!usable[j]) continue;
      n += 1;
      sum += values[j];
      squares += values[j] * values[j];
    }
    if (n < needed) continue;
    const mean = sum / n;
    const sd = Math.sqrt(Math.max(0, squares / n - mean * mean));
    const spread = Math.max(sd, minSpread);
    if (spread > 0 && Math.abs(values[i] - mean) > k * spread) {
      found.push({ index: i, value: values[i], mean, sd: spread });
    }
  }
  return found;
}

/** The smallest spread worth calling an anomaly for a sum: one average item (total / count), at least 0. */
export function typicalUnit(total, count) {
  return count > 0 && Number.isFinite(total) ? Math.abs(total) / count : 0;
}
