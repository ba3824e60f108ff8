// Cron expressions for refresh.schedule: parse once, then compute the next run. Pure: no I/O, no Intl
// (node-cron formatted every tick through Intl.DateTimeFormat, which paged in ~7 MB of ICU data);
// local time comes from Date's getters and setters only.
//
// Accepted (the subset of node-cron 4.6 the daemon needs, with node-cron's meaning):
//   5 fields  minute hour day-of-month month day-of-week, or
//   6 fields  second minute hour day-of-month month day-of-week
//   each field a list a,b,c of: *  n  a-b  */n  a-b/n   (a-b with a > b wraps: hours 22-2 = 22,23,0,1,2)
//   ? as * in day-of-month and day-of-week; month names JAN..DEC and weekday names SUN..SAT, three
//   letters or in full, any case; day-of-week 7 is Sunday; @yearly @annually @monthly @weekly @daily
//   @midnight @hourly.
// Refused, though node-cron takes them: L, W and # (last day, nearest weekday, nth weekday), and a/n
// is refused as node-cron refuses it. Ranges: second, minute 0-59, hour 0-23, day-of-month 1-31,
// month 1-12, day-of-week 0-7; a day-of-month no listed month has (31 in FEB,APR) is refused, like node-cron.
// When both day-of-month and day-of-week are restricted a time must match BOTH (node-cron's
// TimeMatcher.match ANDs them; classic Vixie cron ORs them).
import { ApnsProxyError } from './errors.js';

export interface CronSchedule {
  readonly expression: string;
  // One flag per value, indexed by the value itself (day-of-week 7 is folded into 0).
  readonly seconds: readonly boolean[];
  readonly minutes: readonly boolean[];
  readonly hours: readonly boolean[];
  readonly days: readonly boolean[];
  readonly months: readonly boolean[];
  readonly weekdays: readonly boolean[];
}

/** A bad cron expression: names the field and the offending text. */
export class CronError extends ApnsProxyError {
  readonly field: string;
  readonly value: string;
  constructor(field: string, value: string, problem: string) {
    super('E_CRON', `${field} ${JSON.stringify(value)}: ${problem}`);
    this.name = 'CronError';
    this.field = field;
    this.value = value;
  }
}

interface Field { readonly name: string; readonly min: number; readonly max: number; readonly names?: readonly string[] }
const FIELDS: readonly Field[] = [
  { name: 'second', min: 0, max: 59 },
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'] },
  { name: 'day of week', min: 0, max: 7, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
];
const FULL_NAMES: Record<string, string> = {
  january: 'jan', february: 'feb', march: 'mar', april: 'apr', june: 'jun', july: 'jul', august: 'aug',
  september: 'sep', october: 'oct', november: 'nov', december: 'dec',
  sunday: 'sun', monday: 'mon', tuesday: 'tue', wednesday: 'wed', thursday: 'thu', friday: 'fri', saturday: 'sat',
};
const NICKNAMES: Record<string, string> = {
  '@yearly': '0 0 1 1 *', '@annually': '0 0 1 1 *', '@monthly': '0 0 1 * *', '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *', '@midnight': '0 0 * * *', '@hourly': '0 * * * *',
};
const DAYS_IN_MONTH = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];  // FEB 29: leap years exist

/** Parses a cron expression; throws CronError (code E_CRON) naming the bad field and its text. */
export function parseCron(expression: string): CronSchedule {
  const text = NICKNAMES[expression.trim().toLowerCase()] ?? expression;
  const raw = text.trim().split(/\s+/);
  if (raw.length !== 5 && raw.length !== 6) throw new CronError('expression', expression, `expected 5 or 6 fields, got ${text.trim() === '' ? 0 : raw.length}`);
  const parts = raw.length === 5 ? ['0', ...raw] : raw;
  const [seconds, minutes, hours, days, months, weekdays] = parts.map((p, i) => parseField(p, FIELDS[i]!, i === 3 || i === 5));
  // Day-of-week 7 and 0 are both Sunday.
  weekdays![0] = weekdays![0]! || weekdays![7]!;
  weekdays!.length = 7;
  // A day no listed month has would never match (node-cron refuses it too): say so now, not never.
  if (!months!.some((on, m) => on && days!.some((d, day) => d && day <= DAYS_IN_MONTH[m]!))) {
    throw new CronError('day of month', parts[3]!, `no listed month (${parts[4]}) has that day`);
  }
  return { expression, seconds: seconds!, minutes: minutes!, hours: hours!, days: days!, months: months!, weekdays: weekdays! };
}

function parseField(text: string, f: Field, question: boolean): boolean[] {
  const on: boolean[] = new Array<boolean>(f.max + 1).fill(false);
  if (question && text === '?') text = '*';  // node-cron: ? only as a whole day field
  for (const item of text.split(',')) {
    const m = /^(\*|[a-z0-9]+)(?:-([a-z0-9]+))?(?:\/(\d+))?$/i.exec(item);
    const at = item === text ? '' : `"${item}": `;  // which list item, when there are several
    if (!m) throw new CronError(f.name, text, `${at}not *, n, a-b, */n or a-b/n${item.includes('#') ? ' (# is not supported)' : ''}`);
    const [, start, end, stepText] = m;
    if (start === '*' && end !== undefined) throw new CronError(f.name, text, `${at}* cannot start a range`);
    // node-cron takes a/n only as a-b/n or */n.
    if (start !== '*' && end === undefined && stepText !== undefined) throw new CronError(f.name, text, `${at}a step needs * or a range (a-b/n)`);
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!(step >= 1)) throw new CronError(f.name, text, `${at}step must be at least 1`);
    // * is the field's whole range (day-of-week 0-6: 7 would repeat Sunday).
    const top = f.max === 7 ? 6 : f.max;
    const lo = start === '*' ? f.min : value(start!, f, text);
    const hi = start === '*' ? top : end === undefined ? lo : value(end, f, text);
    // A range a-b with a > b wraps past the field's end (node-cron; day-of-week wraps over 0-6).
    const size = top - f.min + 1;
    const span = hi >= lo ? hi - lo : ((hi - lo) % size + size) % size;
    for (let k = 0; k <= span; k += step) {
      const v = lo + k;
      on[hi < lo && v > top ? v - size : v] = true;
    }
  }
  return on;
}

/** A number or (month, day-of-week) name within the field's range. */
function value(token: string, f: Field, text: string): number {
  let n: number;
  if (/^\d+$/.test(token)) n = Number(token);
  else {
    const name = token.toLowerCase();
    const i = f.names?.indexOf(FULL_NAMES[name] ?? name) ?? -1;
    // node-cron's L and W (last day, nearest weekday) are not taken: the daemon's schedule needs neither.
    if (i < 0 && /^(\d*l|\d*w|lw)$/i.test(token)) throw new CronError(f.name, text, `"${token}": L and W are not supported`);
    if (i < 0) throw new CronError(f.name, text, `"${token}" is not a number${f.names ? ' or a name' : ''}`);
    n = f.name === 'month' ? i + 1 : i;
  }
  if (n < f.min || n > f.max) throw new CronError(f.name, text, `${token} is outside ${f.min}-${f.max}`);
  return n;
}

// One Gregorian cycle (400 years, 146097 days, a whole number of weeks): what matches nothing in it
// never will. parseCron already refuses the day/month combinations that never exist.
const SEARCH_YEARS = 400;

/**
 * The first time strictly after `after` (whole seconds, local time) that matches, or null if none
 * does within 400 years. DST: every instant whose local wall clock matches is a run, so a skipped
 * hour (spring) has no runs and a repeated hour (autumn) runs in both passes.
 */
export function nextRun(s: CronSchedule, after: Date): Date | null {
  let t = Math.floor(after.getTime() / 1000) * 1000 + 1000;
  if (!Number.isFinite(t)) return null;
  const lastYear = after.getFullYear() + SEARCH_YEARS;
  const d = new Date(t);
  for (;;) {
    d.setTime(t);
    if (!(d.getFullYear() <= lastYear)) return null;  // also past Date's last day (NaN)
    let next: number;
    if (!s.months[d.getMonth() + 1]) {
      // Local midnight of the 1st of the next month (setters: month lengths and DST are Date's job).
      d.setFullYear(d.getFullYear(), d.getMonth() + 1, 1);
      d.setHours(0, 0, 0, 0);
      next = d.getTime();
    } else if (!s.days[d.getDate()] || !s.weekdays[d.getDay()]) {
      d.setDate(d.getDate() + 1);
      d.setHours(0, 0, 0, 0);
      next = d.getTime();
    } else {
      const h = d.getHours(), m = d.getMinutes(), sec = d.getSeconds();
      // Within a day move in absolute time, one local hour at most: a DST jump is then seen, not skipped.
      const toNextHour = ((60 - m) * 60 - sec) * 1000;
      if (!s.hours[h]) next = t + toNextHour;
      else if (!s.minutes[m]) {
        const nm = firstFrom(s.minutes, m);
        next = nm < 0 ? t + toNextHour : t + ((nm - m) * 60 - sec) * 1000;
      } else if (!s.seconds[sec]) {
        const ns = firstFrom(s.seconds, sec);
        next = ns < 0 ? t + (60 - sec) * 1000 : t + (ns - sec) * 1000;
      } else return new Date(t);
    }
    // Always forward, whatever a setter did around a DST change (no endless loop).
    t = next > t ? next : t + 1000;
  }
}

/** The first set index at or after `from`, or -1. */
function firstFrom(on: readonly boolean[], from: number): number {
  for (let i = from; i < on.length; i++) if (on[i]) return i;
  return -1;
}
