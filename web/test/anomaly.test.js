// The anomaly rule of the charts (node --test; run by tests/unit/test_web_pages.py).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { anomalies, typicalUnit } from '../static/lib/anomaly.js';

const flat = (n, value) => Array.from({ length: n }, () => value);

test('a spike after a flat hour is an anomaly, and nothing else is', () => {
  const values = [...flat(90, 0), 20, ...flat(30, 0)];
  const found = anomalies(values, { baseline: 60, minSpread: 1 });
  assert.deepEqual(found.map((a) => a.index), [90]);
  assert.equal(found[0].value, 20);
  assert.equal(found[0].mean, 0);
  assert.equal(found[0].sd, 1); // the flat baseline's spread, floored at one order
});

test('a dip below the band counts too', () => {
  const values = [...Array.from({ length: 60 }, (_, i) => 10 + (i % 3) - 1), 0];
  assert.deepEqual(anomalies(values, { baseline: 60, minSpread: 1 }).map((a) => a.index), [60]);
});

test('the spread floor keeps single orders in a quiet night from being anomalies', () => {
  const values = flat(120, 0);
  values[70] = 1;
  values[100] = 1;
  assert.deepEqual(anomalies(values, { baseline: 60, minSpread: 1 }), []);
  // without the floor a flat baseline has no spread: any change would be infinitely many σ
  assert.deepEqual(anomalies(values, { baseline: 60, minSpread: 0.1 }).map((a) => a.index), [70, 100]);
});

test('an incomplete window is neither judged nor part of a baseline', () => {
  const values = [...flat(60, 5), 50];
  const complete = values.map((_, i) => i < 60);
  assert.deepEqual(anomalies(values, { baseline: 60, minSpread: 1, complete }), []);
  assert.deepEqual(anomalies(values, { baseline: 60, minSpread: 1 }).map((a) => a.index), [60]);
});

test('windows without half a baseline before them are not judged', () => {
  const values = [0, 0, 0, 100, ...flat(40, 0)];
  assert.deepEqual(anomalies(values, { baseline: 60, minSpread: 1 }), []);
  assert.deepEqual(anomalies(values, { baseline: 6, minSpread: 1 }).map((a) => a.index), [3]);
});

test('2σ is strict: a value exactly on the band edge is not an anomaly', () => {
  // baseline alternating 8 and 12: mean 10, σ 2, band 6..14
  const baseline = Array.from({ length: 20 }, (_, i) => (i % 2 ? 12 : 8));
  assert.deepEqual(anomalies([...baseline, 14], { baseline: 20 }), []);
  assert.deepEqual(anomalies([...baseline, 14.01], { baseline: 20 }).map((a) => a.index), [20]);
});

test('nulls are skipped', () => {
  const values = [...flat(30, null), ...flat(30, 2), null, 30];
  assert.deepEqual(anomalies(values, { baseline: 60, minSpread: 1 }).map((a) => a.index), [61]);
});

test('the typical unit of a sum is its average item', () => {
  assert.equal(typicalUnit(300, 20), 15);
  assert.equal(typicalUnit(0, 0), 0);
});
