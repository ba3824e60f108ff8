import test from 'ava';
import { heapCompactor } from '../../src/ops/compact.js';

const MiB = 2 ** 20;

/** A fake heap: `grow` adds committed bytes; gc() brings it back to `live`. */
function fakeHeap(total: number, live: number) {
  const h = { total, live, gcs: 0, now: 0 };
  return {
    h,
    gc: () => { h.gcs++; h.total = h.live; },
    heap: () => ({ heapTotal: h.total }),
    clock: () => h.now,
  };
}

test('the first cycle compacts once and reports before and after', (t) => {
  const f = fakeHeap(20 * MiB, 12 * MiB);
  const compact = heapCompactor({ gc: f.gc, heap: f.heap, clock: f.clock });
  t.deepEqual(compact(), { beforeBytes: 20 * MiB, afterBytes: 12 * MiB });
  t.is(f.h.gcs, 1);
});

test('a steady heap is never collected again; growth past the slack is, once the interval has passed', (t) => {
  const f = fakeHeap(20 * MiB, 12 * MiB);
  const compact = heapCompactor({ gc: f.gc, heap: f.heap, clock: f.clock, slackBytes: 4 * MiB, minIntervalMs: 300_000 });
  compact();
  for (let i = 1; i <= 10; i++) { f.h.now = i * 60_000; f.h.total = 12 * MiB + 3 * MiB; t.is(compact(), undefined); }
  t.is(f.h.gcs, 1, 'growth below the slack: no collection');
  f.h.now = 11 * 60_000; f.h.total = 17 * MiB;
  t.deepEqual(compact(), { beforeBytes: 17 * MiB, afterBytes: 12 * MiB });
  f.h.now += 60_000; f.h.total = 30 * MiB;
  t.is(compact(), undefined, 'within the interval: no second collection');
  f.h.now += 300_000;
  t.truthy(compact());
  t.is(f.h.gcs, 3);
});

test('without gc (node not started with --expose-gc) nothing happens', (t) => {
  const f = fakeHeap(40 * MiB, 12 * MiB);
  const compact = heapCompactor({ gc: undefined, heap: f.heap, clock: f.clock });
  t.is(compact(), undefined);
  t.is(f.h.total, 40 * MiB);
});

test('bad options are refused with the value in the message', (t) => {
  const f = fakeHeap(1, 1);
  t.throws(() => heapCompactor({ gc: f.gc, heap: f.heap, clock: f.clock, slackBytes: -1 }), { message: /slackBytes .* got -1/ });
  t.throws(() => heapCompactor({ gc: f.gc, heap: f.heap, clock: f.clock, minIntervalMs: Number.NaN }), { message: /minIntervalMs .* got NaN/ });
});
