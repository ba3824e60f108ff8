import test from 'ava';
import { SLOTS, addressByKey } from '../../src/nft/elements.js';
import { type CourierRecord, desiredElements, desiredMapping, describeChanges } from '../../src/sync/mapping.js';
import type { Resolution } from '../../src/dns/client/resolver.js';
import { FakeClock, byCourier, fail, nx, ok, testConfig } from '../helpers/fixtures.js';

const config = testConfig({ couriers: { first: 1, last: 3 }, refresh: { maxStaleSeconds: 600 } });

function run(previous: ReadonlyMap<number, CourierRecord>, results: [number, Resolution][] | undefined, now: number) {
  return desiredMapping({ config, previous: byCourier(previous), results: results && byCourier(results), now });
}

test('fresh: addresses sorted numerically, de-duplicated, filtered to allowedUpstreamNets with a warning', (t) => {
  const clock = new FakeClock();
  const { snapshot, warnings } = run(new Map(), [[1, ok(['203.0.113.20', '203.0.113.9', '17.1.1.1', '203.0.113.20'])]], clock.now());
  const c1 = snapshot.couriers.get(1)!;
  t.is(c1.state, 'fresh');
  t.deepEqual(c1.addresses, ['203.0.113.9', '203.0.113.20']);
  t.deepEqual(c1.programmed, ['203.0.113.9', '203.0.113.20']);
  t.is(c1.vip, '198.18.100.1');
  t.deepEqual(warnings, ['courier 1: ignored 17.1.1.1 (outside allowedUpstreamNets)']);
  t.is(snapshot.couriers.get(2)!.state, 'absent');  // NXDOMAIN not given: never resolved
});

test('stale keeps last-known-good until maxStaleSeconds, then absent', (t) => {
  const clock = new FakeClock();
  const first = run(new Map(), [[1, ok(['203.0.113.10'])]], clock.now()).snapshot;
  clock.advance(600_000);  // exactly maxStaleSeconds later
  const second = run(first.couriers, [[1, fail()]], clock.now()).snapshot.couriers.get(1)!;
  t.is(second.state, 'stale');
  t.deepEqual(second.programmed, ['203.0.113.10']);
  t.is(second.error, 'E_TIMEOUT: scripted failure');
  t.is(second.resolvedAt, first.couriers.get(1)!.resolvedAt);
  clock.advance(1);
  const third = run(new Map([[1, second]]), [[1, fail()]], clock.now()).snapshot.couriers.get(1)!;
  t.is(third.state, 'absent');
  t.deepEqual(third.programmed, []);
  t.deepEqual(third.addresses, ['203.0.113.10'], 'last-known-good is remembered for the fallback even when too stale to program');
});

test('NXDOMAIN makes a courier absent at once and forgets its addresses', (t) => {
  const clock = new FakeClock();
  const first = run(new Map(), [[2, ok(['203.0.113.10'])]], clock.now()).snapshot;
  const c2 = run(first.couriers, [[2, nx]], clock.now()).snapshot.couriers.get(2)!;
  t.is(c2.state, 'absent');
  t.is(c2.exists, false);
  t.deepEqual(c2.addresses, []);
});

test('an answer entirely outside allowedUpstreamNets is a failure: last-known-good kept', (t) => {
  const clock = new FakeClock();
  const first = run(new Map(), [[3, ok(['203.0.113.10'])]], clock.now()).snapshot;
  clock.advance(1000);
  const { snapshot, warnings } = run(first.couriers, [[3, ok(['198.51.100.10'])]], clock.now());
  const c3 = snapshot.couriers.get(3)!;
  t.is(c3.state, 'stale');
  t.deepEqual(c3.programmed, ['203.0.113.10']);
  t.regex(c3.error!, /^E_NOT_ALLOWED/);
  t.is(warnings.length, 1);
});

test('start-up from state without results: within maxStale → stale, else absent', (t) => {
  const clock = new FakeClock();
  const first = run(new Map(), [[1, ok(['203.0.113.10'])], [2, ok(['203.0.113.11'])]], clock.now()).snapshot;
  clock.advance(300_000);
  const { snapshot } = run(first.couriers, undefined, clock.now());
  t.is(snapshot.couriers.get(1)!.state, 'stale');
  clock.advance(300_001);
  t.is(run(first.couriers, undefined, clock.now()).snapshot.couriers.get(2)!.state, 'absent');
});

test('elements: 8 slots round-robin over sorted addresses; absent couriers have none', (t) => {
  const clock = new FakeClock();
  const { snapshot } = run(new Map(), [[1, ok(['203.0.113.12', '203.0.113.10', '203.0.113.11'])], [2, nx]], clock.now());
  const el = desiredElements(snapshot);
  t.is(el.size, SLOTS);
  t.deepEqual([...addressByKey(el)], [
    ['198.18.100.1 . 0', '203.0.113.10'], ['198.18.100.1 . 1', '203.0.113.11'], ['198.18.100.1 . 2', '203.0.113.12'],
    ['198.18.100.1 . 3', '203.0.113.10'], ['198.18.100.1 . 4', '203.0.113.11'], ['198.18.100.1 . 5', '203.0.113.12'],
    ['198.18.100.1 . 6', '203.0.113.10'], ['198.18.100.1 . 7', '203.0.113.11'],
  ]);
});

test('more than 8 addresses: the first 8 sorted are programmed', (t) => {
  const addrs = Array.from({ length: 10 }, (_, i) => `203.0.113.${20 + i}`);
  const { snapshot } = run(new Map(), [[1, ok(addrs)]], 0);
  t.deepEqual(snapshot.couriers.get(1)!.programmed, addrs.slice(0, 8));
  t.deepEqual(new Set(desiredElements(snapshot).values()).size, 8);
});

test('change lines read like "courier 5: a,b → c"', (t) => {
  const a = run(new Map(), [[1, ok(['203.0.113.1', '203.0.113.2'])], [2, ok(['203.0.113.5'])]], 0).snapshot;
  const b = run(a.couriers, [[1, ok(['203.0.113.3'])], [2, nx], [3, ok(['203.0.113.9'])]], 1).snapshot;
  t.deepEqual(describeChanges(a, b), [
    'courier 1: 203.0.113.1,203.0.113.2 → 203.0.113.3',
    'courier 2: 203.0.113.5 → none (absent: NXDOMAIN)',
    'courier 3: none → 203.0.113.9',
  ]);
  t.deepEqual(describeChanges(b, run(b.couriers, [[1, ok(['203.0.113.3'])], [2, nx], [3, ok(['203.0.113.9'])]], 2).snapshot), []);
});

test('snapshot and its couriers are frozen', (t) => {
  const { snapshot } = run(new Map(), [[1, ok(['203.0.113.1'])]], 0);
  t.true(Object.isFrozen(snapshot));
  t.true(Object.isFrozen(snapshot.couriers.get(1)));
});
