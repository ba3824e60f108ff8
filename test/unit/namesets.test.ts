import test from 'ava';
import { type Cidr4, formatIPv4, parseCidr4, parseIPv4 } from '../../src/core/net.js';
import { type NameSet, allocatePool, maxNumber, nameSetProblems, numberForVip, vipForNumber } from '../../src/core/namesets.js';

const cidr = (text: string): Cidr4 => parseCidr4(text) as Cidr4;
const vip = (prefix: string, n: number) => {
  const v = vipForNumber(cidr(prefix), n);
  return v === undefined ? undefined : formatIPv4(v);
};
const numbered = (id: string, prefix: string, first: number, last: number, template = `{n}-${id}.example.test`): NameSet =>
  ({ kind: 'numbered', id, template, first, last, prefix: cidr(prefix), tcp: [5223], udp: [] });
const exact = (id: string, names: string[]): NameSet => ({ kind: 'names', id, names, tcp: [443], udp: [] });

test('N → VIP: N ≥ 1 is network + N (courier 5 stays .5), N = 0 the last usable address; never network or broadcast', (t) => {
  t.is(vip('198.18.100.0/24', 5), '198.18.100.5');
  t.is(vip('198.18.100.0/24', 1), '198.18.100.1');
  t.is(vip('198.18.100.0/24', 254), '198.18.100.254');
  t.is(vip('198.18.100.0/24', 255), undefined, 'the broadcast address');
  t.is(vip('198.18.100.0/24', 0), '198.18.100.254');
  t.is(vip('198.18.104.0/23', 0), '198.18.105.254');
  t.is(vip('198.18.104.0/23', 509), '198.18.105.253', 'a /23 holds couriers 0..509');
  t.is(vip('198.18.104.0/23', 255), '198.18.104.255', 'inside a /23, .255 of the first half is a host address');
  t.is(vip('198.18.104.0/23', 511), undefined);
  t.is(maxNumber(cidr('198.18.104.0/23'), 0), 509);
  t.is(maxNumber(cidr('198.18.100.0/24'), 0), 253);
  t.is(maxNumber(cidr('198.18.100.0/24'), 1), 254);
});

test('VIP → N inverts N → VIP inside the range only', (t) => {
  const set = { prefix: cidr('198.18.104.0/23'), first: 0, last: 509 };
  for (const n of [0, 1, 255, 256, 509]) t.is(numberForVip(set, vipForNumber(set.prefix, n)!), n);
  t.is(numberForVip(set, parseIPv4('198.18.104.0')!), undefined, 'the network address');
  t.is(numberForVip(set, parseIPv4('198.18.105.255')!), undefined, 'the broadcast address');
  t.is(numberForVip(set, parseIPv4('198.18.106.1')!), undefined, 'outside the prefix');
  t.is(numberForVip({ prefix: cidr('198.18.100.0/24'), first: 1, last: 60 }, parseIPv4('198.18.100.61')!), undefined, 'outside the range');
  t.is(numberForVip({ prefix: cidr('198.18.100.0/24'), first: 1, last: 254 }, parseIPv4('198.18.100.254')!), 254, 'without 0, .254 is courier 254');
});

test('pool: stable across add, remove and restart; lowest free address for new names', (t) => {
  const pool = cidr('198.18.102.0/24');
  const first = allocatePool(pool, ['api.push.apple.com', 'init.push.apple.com', 'captive.apple.com'], new Map());
  t.true(first.ok);
  if (!first.ok) return;
  t.deepEqual([...first.assigned], [['api.push.apple.com', '198.18.102.1'], ['init.push.apple.com', '198.18.102.2'], ['captive.apple.com', '198.18.102.3']]);
  // remove one, add one: the others keep theirs, the new one takes the freed lowest address
  const second = allocatePool(pool, ['captive.apple.com', 'api.push.apple.com', 'time.apple.com'], first.assigned);
  if (!second.ok) return t.fail(second.problem);
  t.is(second.assigned.get('api.push.apple.com'), '198.18.102.1');
  t.is(second.assigned.get('captive.apple.com'), '198.18.102.3');
  t.is(second.assigned.get('time.apple.com'), '198.18.102.2');
  // a restart with the persisted map: identical
  const third = allocatePool(pool, ['api.push.apple.com', 'captive.apple.com', 'time.apple.com'], second.assigned);
  if (!third.ok) return t.fail(third.problem);
  t.deepEqual(new Map([...third.assigned].sort()), new Map([...second.assigned].sort()));
  // a remembered VIP outside a new pool is reassigned inside it
  const moved = allocatePool(cidr('198.18.103.0/30'), ['api.push.apple.com'], first.assigned);
  t.deepEqual(moved.ok && [...moved.assigned], [['api.push.apple.com', '198.18.103.1']]);
});

test('pool too small is a problem naming both sizes', (t) => {
  const r = allocatePool(cidr('198.18.102.0/30'), ['a.test', 'b.test', 'c.test'], new Map());
  t.false(r.ok);
  t.regex(!r.ok ? r.problem : '', /pool 198\.18\.102\.0\/30 holds 2 addresses, 3 names need one each/);
});

test('sets that do not fit together: overlapping prefixes, a range too big for its prefix, a name in two sets, a small pool', (t) => {
  t.deepEqual(nameSetProblems([numbered('couriers', '198.18.100.0/24', 0, 200), numbered('sandbox', '198.18.101.0/24', 0, 200), exact('bag', ['init.push.apple.com'])], cidr('198.18.102.0/24')), []);
  const problems = nameSetProblems([
    numbered('couriers', '198.18.100.0/24', 0, 254),
    numbered('sandbox', '198.18.100.128/25', 1, 10),
    exact('bag', ['init.push.apple.com', '3-sandbox.example.test']),
    exact('api', ['init.push.apple.com', 'x.test', 'y.test']),
  ], cidr('198.18.102.0/30'));
  t.true(problems.some((p) => /couriers \(198\.18\.100\.0\/24\) and sandbox \(198\.18\.100\.128\/25\) overlap/.test(p)), problems.join('\n'));
  t.true(problems.some((p) => /couriers: 0\.\.254 does not fit 198\.18\.100\.0\/24 \(at most 0\.\.253/.test(p)), problems.join('\n'));
  t.true(problems.some((p) => /init\.push\.apple\.com is in both bag and api/.test(p)), problems.join('\n'));
  t.true(problems.some((p) => /3-sandbox\.example\.test is in both sandbox and bag/.test(p)), problems.join('\n'));
  t.true(problems.some((p) => /the pool 198\.18\.102\.0\/30 holds 2 addresses, the exact-name sets have 5 names/.test(p)), problems.join('\n'));
  t.deepEqual(nameSetProblems([exact('bag', ['a.test'])], undefined), ['exact-name sets need a pool prefix for their VIPs']);
});
