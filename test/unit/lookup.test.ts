import test from 'ava';
import { sharedLookup } from '../../src/fallback/lookup.js';
import type { Resolution } from '../../src/dns/client/resolver.js';
import { FakeClock, fail, ok } from '../helpers/fixtures.js';

test('concurrent and recent lookups of one courier share one query; others and stale ones ask again', async (t) => {
  const clock = new FakeClock();
  const asked: number[] = [];
  let answer: Resolution = ok(['203.0.113.10']);
  const lookup = sharedLookup(async (n: number) => { asked.push(n); return answer; }, clock.now, 1000);
  const [a, b] = await Promise.all([lookup(7, 500), lookup(7, 500)]);
  t.is(a, b);
  t.deepEqual(asked, [7]);
  await lookup(8, 500);
  clock.advance(999);
  await lookup(7, 500);
  t.deepEqual(asked, [7, 8], 'reused within a second');
  clock.advance(1);
  await lookup(7, 500);
  t.deepEqual(asked, [7, 8, 7]);
  answer = fail();
  clock.advance(5000);
  t.is((await lookup(7, 500)).kind, 'error');
  answer = ok(['203.0.113.11']);
  t.deepEqual(await lookup(7, 500), ok(['203.0.113.11']), 'a failure is not reused');
  t.deepEqual(asked, [7, 8, 7, 7, 7]);
});
