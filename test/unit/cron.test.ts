// src/core/cron.ts (parse, next run) and src/cli/scheduler.ts (the setTimeout shell), with fixed
// dates and a fake clock: no sleeps. Dates are built in local time, so the tests hold in any zone;
// the DST tests set TZ themselves (synchronously, restored before they return).
import { execFileSync } from 'node:child_process';
import test from 'ava';
import cron from 'node-cron';
import { CronError, type CronSchedule, nextRun, parseCron } from '../../src/core/cron.js';
import { createScheduler, MAX_WAIT_MS, type Timers } from '../../src/cli/scheduler.js';
import { DEFAULTS } from '../../src/core/config.js';

const at = (y: number, mo: number, d: number, h = 0, mi = 0, s = 0) => new Date(y, mo - 1, d, h, mi, s);
const local = (d: Date | null) => d === null ? null
  : `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
const p2 = (n: number) => String(n).padStart(2, '0');
/** The next `count` runs after `from`, as local wall-clock text. */
function runs(expr: string, from: Date, count = 3): (string | null)[] {
  const s = parseCron(expr);
  const out: (string | null)[] = [];
  let d: Date | null = from;
  for (let i = 0; i < count && d; i++) out.push(local(d = nextRun(s, d)));
  return out;
}
const values = (on: readonly boolean[]) => on.flatMap((x, i) => (x ? [i] : []));
function withTz<T>(tz: string, fn: () => T): T {
  const old = process.env.TZ;
  process.env.TZ = tz;
  try { return fn(); } finally { if (old === undefined) delete process.env.TZ; else process.env.TZ = old; }
}

// ---- parsing: every form ----

const forms: [string, keyof CronSchedule, number[]][] = [
  ['* * * * *', 'minutes', Array.from({ length: 60 }, (_, i) => i)],
  ['* * * * *', 'seconds', [0]],  // 5 fields: second 0
  ['*/20 * * * * *', 'seconds', [0, 20, 40]],
  ['5 * * * *', 'minutes', [5]],
  ['05 * * * *', 'minutes', [5]],
  ['10-13 * * * *', 'minutes', [10, 11, 12, 13]],
  ['*/15 * * * *', 'minutes', [0, 15, 30, 45]],
  ['10-30/10 * * * *', 'minutes', [10, 20, 30]],
  ['1,2,40-42,*/30 * * * *', 'minutes', [0, 1, 2, 30, 40, 41, 42]],
  ['0 22-2 * * *', 'hours', [0, 1, 2, 22, 23]],  // a > b wraps
  ['0 0 */10 * *', 'days', [1, 11, 21, 31]],  // day-of-month * starts at 1
  ['0 0 30-2 * *', 'days', [1, 2, 30, 31]],
  ['0 0 ? * *', 'days', Array.from({ length: 31 }, (_, i) => i + 1)],
  ['0 0 * JAN,mar-May,DECEMBER *', 'months', [1, 3, 4, 5, 12]],
  ['0 0 * */4 *', 'months', [1, 5, 9]],
  ['0 0 * * mon-FRI', 'weekdays', [1, 2, 3, 4, 5]],
  ['0 0 * * Sunday,saturday', 'weekdays', [0, 6]],
  ['0 0 * * 7', 'weekdays', [0]],
  ['0 0 * * 5-7', 'weekdays', [0, 5, 6]],
  ['0 0 * * fri-mon', 'weekdays', [0, 1, 5, 6]],
  ['0 0 * * */2', 'weekdays', [0, 2, 4, 6]],
  ['0 0 * * ?', 'weekdays', [0, 1, 2, 3, 4, 5, 6]],
  ['  0   0  *  * 1 ', 'weekdays', [1]],
  ['@hourly', 'minutes', [0]],
  ['@DAILY', 'hours', [0]],
  ['@weekly', 'weekdays', [0]],
  ['@monthly', 'days', [1]],
  ['@yearly', 'months', [1]],
];
for (const [expr, field, want] of forms) {
  test(`parseCron ${JSON.stringify(expr)}: ${field}`, (t) => {
    t.deepEqual(values(parseCron(expr)[field] as boolean[]), want);
  });
}

const errors: [string, string, string, RegExp][] = [
  ['every minute', 'expression', 'every minute', /expected 5 or 6 fields, got 2/],
  ['', 'expression', '', /got 0/],
  ['* * * * * * *', 'expression', '* * * * * * *', /got 7/],
  ['60 * * * * *', 'second', '60', /60 is outside 0-59/],
  ['60 * * * *', 'minute', '60', /outside 0-59/],
  ['0 24 * * *', 'hour', '24', /outside 0-23/],
  ['0 0 0 * *', 'day of month', '0', /outside 1-31/],
  ['0 0 32 * *', 'day of month', '32', /outside 1-31/],
  ['0 0 * 13 *', 'month', '13', /outside 1-12/],
  ['0 0 * 0 *', 'month', '0', /outside 1-12/],
  ['0 0 * * 8', 'day of week', '8', /outside 0-7/],
  ['50-60 * * * *', 'minute', '50-60', /60 is outside 0-59/],
  ['1,2,x * * * *', 'minute', '1,2,x', /"x" is not a number$/],
  ['0 0 * foo *', 'month', 'foo', /"foo" is not a number or a name/],
  ['0 0 * * mon-foo', 'day of week', 'mon-foo', /"foo" is not a number or a name/],
  ['0 0 * mon *', 'month', 'mon', /is not a number or a name/],  // a weekday name in the month field
  ['*/0 * * * *', 'minute', '*/0', /step must be at least 1/],
  ['5/10 * * * *', 'minute', '5/10', /a step needs \* or a range/],  // node-cron refuses a/n too
  ['*-5 * * * *', 'minute', '*-5', /\* cannot start a range/],
  ['1-2-3 * * * *', 'minute', '1-2-3', /not \*, n, a-b, \*\/n or a-b\/n/],
  ['? * * * *', 'minute', '?', /not \*, n/],  // ? only in the day fields
  ['0 0 L * *', 'day of month', 'L', /L and W are not supported/],
  ['0 0 15W * *', 'day of month', '15W', /L and W are not supported/],
  ['0 0 * * 1#2', 'day of week', '1#2', /# is not supported/],
  ['0 0 31 2 *', 'day of month', '31', /no listed month \(2\) has that day/],
  ['0 0 30,31 feb *', 'day of month', '30,31', /no listed month/],
  ['0 0 31 apr,jun,sep,nov *', 'day of month', '31', /no listed month/],
];
for (const [expr, field, value, why] of errors) {
  test(`parseCron refuses ${JSON.stringify(expr)}`, (t) => {
    const err = t.throws(() => parseCron(expr), { instanceOf: CronError });
    t.is(err?.code, 'E_CRON');
    t.is(err?.field, field);
    t.is(err?.value, value);
    t.true(err!.message.startsWith(`${field} ${JSON.stringify(value)}: `), err?.message);
    t.regex(err!.message, why);
  });
}

test('node-cron agrees on what is valid (L, W and # aside)', (t) => {
  const exprs = [...forms.map(([e]) => e), ...errors.map(([e]) => e).filter((e) => !/[LW#]/.test(e))];
  for (const e of exprs) {
    let ours = true;
    try { parseCron(e); } catch { ours = false; }
    t.is(ours, cron.validate(e), e);
  }
});

// ---- next run ----

test('nextRun is strictly after, on whole seconds', (t) => {
  const s = parseCron('* * * * *');
  t.is(local(nextRun(s, at(2026, 5, 1, 10, 0, 0))), '2026-05-01 10:01:00');
  t.is(local(nextRun(s, new Date(at(2026, 5, 1, 10, 0, 59).getTime() + 999))), '2026-05-01 10:01:00');
  t.is(nextRun(s, at(2026, 5, 1, 10, 0, 0))!.getMilliseconds(), 0);
  t.is(nextRun(s, new Date(Number.NaN)), null);
  t.is(nextRun(s, new Date(8.64e15)), null, 'past the last Date: null, not an endless loop');
});

const edges: [string, string, Date, string[]][] = [
  ['end of minute (seconds field)', '*/20 * * * * *', at(2026, 5, 1, 10, 0, 45), ['2026-05-01 10:01:00', '2026-05-01 10:01:20', '2026-05-01 10:01:40']],
  ['end of hour', '* * * * *', at(2026, 5, 1, 10, 59, 30), ['2026-05-01 11:00:00', '2026-05-01 11:01:00', '2026-05-01 11:02:00']],
  ['end of day', '30 * * * *', at(2026, 5, 1, 23, 45), ['2026-05-02 00:30:00', '2026-05-02 01:30:00', '2026-05-02 02:30:00']],
  ['end of month (30 days)', '0 12 * * *', at(2026, 4, 30, 13), ['2026-05-01 12:00:00', '2026-05-02 12:00:00', '2026-05-03 12:00:00']],
  ['end of year', '0 0 * * *', at(2026, 12, 31, 0, 0, 1), ['2027-01-01 00:00:00', '2027-01-02 00:00:00', '2027-01-03 00:00:00']],
  ['leap day', '0 0 29 2 *', at(2026, 1, 1), ['2028-02-29 00:00:00', '2032-02-29 00:00:00', '2036-02-29 00:00:00']],
  ['leap day over 2100 (not a leap year)', '0 0 29 2 *', at(2096, 3, 1), ['2104-02-29 00:00:00', '2108-02-29 00:00:00', '2112-02-29 00:00:00']],
  ['day 31 skips short months', '0 0 31 * *', at(2026, 1, 31, 1), ['2026-03-31 00:00:00', '2026-05-31 00:00:00', '2026-07-31 00:00:00']],
  ['*/15', '*/15 * * * *', at(2026, 5, 1, 10, 7), ['2026-05-01 10:15:00', '2026-05-01 10:30:00', '2026-05-01 10:45:00']],
  ['lists', '0 0,12 1,15 * *', at(2026, 5, 1, 12), ['2026-05-15 00:00:00', '2026-05-15 12:00:00', '2026-06-01 00:00:00']],
  ['range with a step', '0 9-17/4 * * *', at(2026, 5, 1, 14), ['2026-05-01 17:00:00', '2026-05-02 09:00:00', '2026-05-02 13:00:00']],
  ['wrapping hours', '0 23-1 * * *', at(2026, 5, 1, 2), ['2026-05-01 23:00:00', '2026-05-02 00:00:00', '2026-05-02 01:00:00']],
  ['names', '0 8 * feb mon,WED', at(2026, 1, 1), ['2026-02-02 08:00:00', '2026-02-04 08:00:00', '2026-02-09 08:00:00']],
  ['day-of-week 7 is Sunday', '0 0 * * 7', at(2026, 5, 1), ['2026-05-03 00:00:00', '2026-05-10 00:00:00', '2026-05-17 00:00:00']],
  ['both day fields: AND, as node-cron', '0 0 13 * fri', at(2026, 1, 1), ['2026-02-13 00:00:00', '2026-03-13 00:00:00', '2026-11-13 00:00:00']],
  ['leap day that is a Monday (28 years apart)', '0 0 29 2 1', at(2026, 1, 1), ['2044-02-29 00:00:00', '2072-02-29 00:00:00', '2112-02-29 00:00:00']],
  ['@yearly', '@yearly', at(2026, 1, 1), ['2027-01-01 00:00:00', '2028-01-01 00:00:00', '2029-01-01 00:00:00']],
  ['the default schedule', DEFAULTS.refresh.schedule, at(2026, 12, 31, 23, 58, 10), ['2026-12-31 23:59:00', '2027-01-01 00:00:00', '2027-01-01 00:01:00']],
];
for (const [title, expr, from, want] of edges) {
  test(`nextRun: ${title}`, (t) => {
    t.deepEqual(runs(expr, from), want);
  });
}

test('the default schedule is every minute', (t) => {
  t.is(DEFAULTS.refresh.schedule, '* * * * *');
});

test('an expression that matches nowhere in 400 years: nextRun says null, quickly', (t) => {
  // parseCron refuses what never exists (31 Feb); a schedule that can match nothing is built by hand.
  const never: CronSchedule = { ...parseCron('0 0 * * *'), days: new Array<boolean>(32).fill(false) };
  const started = process.hrtime.bigint();
  t.is(nextRun(never, at(2026, 1, 1)), null);
  t.true(process.hrtime.bigint() - started < 2_000_000_000n, 'bounded');
});

test('DST, spring forward (Europe/Berlin, 2026-03-29 02:00 -> 03:00): the skipped hour has no runs, no endless loop', (t) => {
  withTz('Europe/Berlin', () => {
    t.deepEqual(runs('30 2 * * *', at(2026, 3, 28, 12)), ['2026-03-30 02:30:00', '2026-03-31 02:30:00', '2026-04-01 02:30:00']);
    t.deepEqual(runs('*/30 * * * *', at(2026, 3, 29, 1, 15)), ['2026-03-29 01:30:00', '2026-03-29 03:00:00', '2026-03-29 03:30:00']);
    const r = nextRun(parseCron('0 * * * *'), at(2026, 3, 29, 1, 30))!;
    t.is(r.getTime() - at(2026, 3, 29, 1, 30).getTime(), 30 * 60_000, '03:00 CEST is 30 real minutes after 01:30 CET');
  });
});

test('DST, fall back (Europe/Berlin, 2026-10-25 03:00 -> 02:00): the repeated hour runs in both passes', (t) => {
  withTz('Europe/Berlin', () => {
    const first = at(2026, 10, 25, 1, 59);
    const got = runs('0,30 2 * * *', first, 5);
    t.deepEqual(got, ['2026-10-25 02:00:00', '2026-10-25 02:30:00', '2026-10-25 02:00:00', '2026-10-25 02:30:00', '2026-10-26 02:00:00']);
    // Each a real half hour apart: time never goes backwards.
    const s = parseCron('0,30 2 * * *');
    const a = nextRun(s, first)!, b = nextRun(s, a)!, c = nextRun(s, b)!;
    t.is(b.getTime() - a.getTime(), 30 * 60_000);
    t.is(c.getTime() - b.getTime(), 30 * 60_000);
  });
});

// Differential: node-cron's own next match (the time matcher its scheduler uses) over many
// expressions and start times, in UTC and in a zone with DST (start times away from the changes).
// One child process per zone: node-cron keeps its Intl formatter with the zone of its first use.
const DIFF_EXPRS = [
  '* * * * *', '*/7 * * * *', '0 */5 * * *', '15,45 3-9/2 * * *', '0 0 1,15 * *', '30 6 * * mon-fri',
  '0 0 13 * 5', '0 12 * feb,aug sun', '0 0 29 2 *', '0 0 31 * *', '*/13 */5 * * * *', '0 22-3 * * *',
  '0 0 28-3 * *', '0 0 * * 5-1', '0 0 1-31/3 * *', '0 9 * * 7', '@weekly', '@monthly',
  '10-50/20 8 */2 */3 *', '0 0 * nov-feb *',
];
const DIFF_SCRIPT = `
  import cron from 'node-cron';
  import { nextRun, parseCron } from ${JSON.stringify(new URL('../../src/core/cron.js', import.meta.url).href)};
  const exprs = JSON.parse(process.argv[1]);
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const out = [];
  for (const expr of exprs) {
    const ours = parseCron(expr);
    const task = cron.createTask(expr, () => undefined);
    for (let i = 0; i < 8; i++) {
      // Days 5-25 of a month other than March, October, November: no DST change near.
      const month = [1, 2, 4, 5, 6, 7, 8, 9, 12][Math.floor(rand() * 9)];
      let a = new Date(2026 + Math.floor(rand() * 6), month - 1, 5 + Math.floor(rand() * 20), Math.floor(rand() * 24), Math.floor(rand() * 60), Math.floor(rand() * 60));
      let b = a;
      for (let k = 0; k < 4; k++) {
        const from = a.getTime();
        a = nextRun(ours, a);
        b = task.timeMatcher.getNextMatch(b);
        out.push([expr, from, a.getTime(), b.getTime()]);
      }
    }
    task.destroy();
  }
  process.stdout.write(JSON.stringify(out));
`;
for (const tz of ['UTC', 'America/New_York']) {
  test(`differential against node-cron's next match (${tz})`, (t) => {
    const text = execFileSync(process.execPath, ['--input-type=module', '-e', DIFF_SCRIPT, JSON.stringify(DIFF_EXPRS)],
      { env: { ...process.env, TZ: tz }, cwd: new URL('../../../', import.meta.url).pathname, encoding: 'utf8' });
    const rows = JSON.parse(text) as [string, number, number, number][];
    t.is(rows.length, DIFF_EXPRS.length * 8 * 4);
    t.deepEqual(rows.filter(([, , ours, theirs]) => ours !== theirs), []);
  });
}

// ---- the scheduler shell, on a fake clock ----

class FakeTimers implements Timers {
  pending: { id: number; at: number; fn: () => void }[] = [];
  waits: number[] = [];
  private id = 0;
  private monotonic = 0;
  constructor(public wall: number) {}
  now = () => this.wall;
  setTimeout = (fn: () => void, ms: number) => {
    this.waits.push(ms);
    this.pending.push({ id: ++this.id, at: this.monotonic + ms, fn });
    return this.id;
  };
  clearTimeout = (h: unknown) => { this.pending = this.pending.filter((p) => p.id !== h); };
  /** Lets `ms` pass (wall and monotonic together), firing the timers due. */
  advance(ms: number) {
    const end = this.monotonic + ms;
    for (;;) {
      this.pending.sort((x, y) => x.at - y.at);
      const next = this.pending[0];
      if (!next || next.at > end) break;
      this.pending.shift();
      this.wall += next.at - this.monotonic;
      this.monotonic = next.at;
      next.fn();
    }
    this.wall += end - this.monotonic;
    this.monotonic = end;
  }
}

test('scheduler: runs at each next run, re-armed each time, until stopped', (t) => {
  const timers = new FakeTimers(at(2026, 5, 1, 10, 0, 30).getTime());
  const ran: string[] = [];
  const job = createScheduler(timers)('* * * * *', () => ran.push(local(new Date(timers.wall))!));
  t.deepEqual(timers.waits, [30_000]);
  timers.advance(29_999);
  t.deepEqual(ran, []);
  timers.advance(1);
  timers.advance(120_000);
  t.deepEqual(ran, ['2026-05-01 10:01:00', '2026-05-01 10:02:00', '2026-05-01 10:03:00']);
  job.stop();
  timers.advance(600_000);
  t.is(ran.length, 3);
  t.is(timers.pending.length, 0);
});

test('scheduler: a far run waits in steps of at most a minute (under the 2^31-1 ms timer limit)', (t) => {
  const timers = new FakeTimers(at(2026, 5, 1, 10, 0, 0).getTime());
  let ran = 0;
  createScheduler(timers)('@monthly', () => ran++);
  timers.advance(at(2026, 6, 1).getTime() - at(2026, 5, 1, 10).getTime() - 1);
  t.is(ran, 0);
  t.true(timers.waits.every((w) => w <= MAX_WAIT_MS && w < 2 ** 31));
  timers.advance(1);
  t.is(ran, 1);
});

test('scheduler: the clock jumps forward (NTP after boot): one late run, then on schedule', (t) => {
  const timers = new FakeTimers(at(1970, 1, 1, 0, 0, 10).getTime());
  const ran: string[] = [];
  createScheduler(timers)('0 * * * *', () => ran.push(local(new Date(timers.wall))!));
  timers.advance(5_000);
  timers.wall = at(2026, 5, 1, 10, 20).getTime();  // the wall clock jumps; timers keep their pace
  timers.advance(60_000);
  t.deepEqual(ran, ['2026-05-01 10:20:55']);  // the 01:00 (1970) run, late, once; missed runs are not replayed
  timers.advance(40 * 60_000);
  t.deepEqual(ran, ['2026-05-01 10:20:55', '2026-05-01 11:00:00']);
});

test('scheduler: the clock jumps back: the earlier times run again from the new clock', (t) => {
  const timers = new FakeTimers(at(2026, 5, 1, 10, 0, 30).getTime());
  const ran: string[] = [];
  createScheduler(timers)('* * * * *', () => ran.push(local(new Date(timers.wall))!));
  timers.wall = at(2026, 5, 1, 9, 0, 30).getTime();
  timers.advance(90_000);
  t.deepEqual(ran, ['2026-05-01 09:01:00', '2026-05-01 09:02:00']);
});

test('scheduler: a task that throws does not end the schedule; a bad expression throws at once', (t) => {
  const timers = new FakeTimers(at(2026, 5, 1, 10, 0, 30).getTime());
  let ran = 0;
  createScheduler(timers)('* * * * *', () => { ran++; throw new Error('boom'); });
  t.throws(() => timers.advance(30_000), { message: 'boom' });
  t.is(timers.pending.length, 1);
  t.throws(() => timers.advance(60_000), { message: 'boom' });
  t.is(ran, 2);
  t.throws(() => createScheduler(timers)('61 * * * *', () => undefined), { instanceOf: CronError });
});
