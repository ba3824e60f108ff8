// Runs a task on a cron schedule with one setTimeout at a time (replaces node-cron: see src/core/cron.ts).
import { nextRun, parseCron } from '../core/cron.js';
import type { Scheduled, Scheduler } from '../ops/daemon.js';

/** The clock and timer the scheduler uses; tests hand in fakes. */
export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),  // kept referenced, as node-cron's were: the schedule keeps the daemon alive
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

// One wait is at most a minute (well under setTimeout's 2^31-1 ms limit): the wall clock is re-read
// at least that often, so a jump (NTP setting a router's clock after boot, or back) is noticed soon.
export const MAX_WAIT_MS = 60_000;

/**
 * schedule(expr, task): runs task at each time nextRun gives, from the wall clock read at every wake-up.
 * A run whose time has passed (clock jumped forward, event loop blocked) runs once, late; missed runs
 * are not replayed. Throws CronError for a bad expression (config validation has refused those already).
 */
export function createScheduler(timers: Timers = realTimers): Scheduler {
  return (expression: string, task: () => void): Scheduled => {
    const schedule = parseCron(expression);
    let handle: unknown;
    let stopped = false;
    let due = nextRun(schedule, new Date(timers.now()));
    const arm = () => {
      if (stopped || due === null) return;
      handle = timers.setTimeout(wake, Math.min(MAX_WAIT_MS, Math.max(0, due.getTime() - timers.now())));
    };
    const wake = () => {
      if (stopped || due === null) return;
      const now = timers.now();
      // Early (a capped wait, or the clock went back and an earlier time may match): look again from now.
      if (now < due.getTime()) due = nextRun(schedule, new Date(now - 1));
      if (due === null || now < due.getTime()) return arm();
      due = nextRun(schedule, new Date(now));
      arm();  // re-armed before the task runs: a task that throws does not end the schedule
      task();
    };
    arm();
    return {
      stop() {
        stopped = true;
        if (handle !== undefined) timers.clearTimeout(handle);
      },
    };
  };
}
