// Numbers and times for people: Intl in the browser's locale, times in the restaurant's zone.

/** The zone to show: `preferred` if Intl knows it, else the browser's own. */
export function resolveZone(preferred) {
  if (preferred) {
    try {
      new Intl.DateTimeFormat(undefined, { timeZone: preferred });
      return preferred;
    } catch {
      // an unknown zone: fall back below
    }
  }
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

/** Formatters for one page: numbers in `locale`, money in `currency` (none: a plain amount), times in `timeZone`. */
export function formatter({ locale = undefined, timeZone = 'UTC', currency = '' } = {}) {
  const integer = new Intl.NumberFormat(locale, { maximumFractionDigits: 0 });
  const decimal = new Intl.NumberFormat(locale, { maximumFractionDigits: 1 });
  const compact = new Intl.NumberFormat(locale, { notation: 'compact', maximumFractionDigits: 1 });
  let money;
  try {
    money = currency
      ? new Intl.NumberFormat(locale, { style: 'currency', currency })
      : new Intl.NumberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  } catch {
    money = new Intl.NumberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  const time = new Intl.DateTimeFormat(locale, { timeZone, hour: '2-digit', minute: '2-digit' });
  const clock = new Intl.DateTimeFormat(locale, { timeZone, hour: '2-digit', minute: '2-digit', second: '2-digit' });
  const day = new Intl.DateTimeFormat(locale, { timeZone, weekday: 'short', day: 'numeric', month: 'short',
    hour: '2-digit', minute: '2-digit' });
  const toDate = (value) => (value instanceof Date ? value : new Date(value));
  return {
    locale,
    timeZone,
    currency,
    integer: (n) => (n == null ? '–' : integer.format(n)),
    decimal: (n) => (n == null ? '–' : decimal.format(n)),
    compact: (n) => (n == null ? '' : compact.format(n)),
    money: (n) => (n == null ? '–' : money.format(n)),
    /** Seconds as "4 min 05 s" / "45 s". */
    duration(seconds) {
      if (seconds == null) return '–';
      const whole = Math.round(seconds);
      const minutes = Math.floor(whole / 60);
      const rest = whole % 60;
      return minutes > 0 ? `${integer.format(minutes)} min ${String(rest).padStart(2, '0')} s` : `${rest} s`;
    },
    time: (value) => (value == null ? '–' : time.format(toDate(value))),
    clock: (value) => (value == null ? '–' : clock.format(toDate(value))),
    day: (value) => (value == null ? '–' : day.format(toDate(value))),
  };
}
