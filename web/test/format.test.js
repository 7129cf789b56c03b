// Locale formatting and the chart ranges (node --test).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { RANGES, rangeBounds } from '../static/lib/data.js';
import { formatter, resolveZone } from '../static/lib/format.js';

test('money, counts and durations follow the locale and currency', () => {
  const en = formatter({ locale: 'en-US', timeZone: 'Europe/Berlin', currency: 'EUR' });
  assert.equal(en.money(1234.5), '€1,234.50');
  assert.equal(en.integer(12345), '12,345');
  assert.equal(en.duration(425), '7 min 05 s');
  assert.equal(en.duration(45), '45 s');
  const de = formatter({ locale: 'de-DE', timeZone: 'Europe/Berlin', currency: 'EUR' });
  assert.equal(de.money(1234.5).replace(/\s/g, ' '), '1.234,50 €');
  const plain = formatter({ locale: 'en-US', currency: '' });
  assert.equal(plain.money(3), '3.00');
  const bad = formatter({ locale: 'en-US', currency: 'EURO' }); // not a code: Intl refuses it
  assert.equal(bad.money(3), '3.00');
});

test('times are shown in the restaurant zone', () => {
  const fmt = formatter({ locale: 'en-GB', timeZone: 'Asia/Kolkata' });
  assert.equal(fmt.time('2026-03-02T10:00:00Z'), '15:30');
  assert.equal(resolveZone('Not/AZone'), Intl.DateTimeFormat().resolvedOptions().timeZone);
  assert.equal(resolveZone('America/New_York'), 'America/New_York');
});

test('a range ends with the current window and holds whole windows', () => {
  const now = Date.parse('2026-03-02T10:17:42Z');
  assert.deepEqual(rangeBounds('24h', now), { from: '2026-03-01T10:18:00.000Z', to: '2026-03-02T10:18:00.000Z' });
  assert.deepEqual(rangeBounds('7d', now), { from: '2026-02-23T11:00:00.000Z', to: '2026-03-02T11:00:00.000Z' });
  assert.equal(RANGES['24h'].windows, 1440);
});
