// Rate limiting, log throttling and the client ACL of the DNS server (pure, with a fake clock).
import test from 'ava';
import { ClientAcl } from '../../src/dns/acl.js';
import { TokenBuckets } from '../../src/dns/limits.js';
import { LogLimiter } from '../../src/core/log.js';
import { FakeClock } from '../helpers/fixtures.js';

test('token bucket: a burst of `burst`, then `rate` per second', (t) => {
  const clock = new FakeClock(0);
  const b = new TokenBuckets(10, 10, 100, clock.now);
  const takes = (n: number) => Array.from({ length: n }, () => b.take('192.0.2.2')).filter(Boolean).length;
  t.is(takes(15), 10, 'burst');
  clock.advance(100);
  t.is(takes(5), 1, '100 ms refill one token at 10/s');
  clock.advance(10_000);
  t.is(takes(20), 10, 'never more than burst after a long pause');
  t.true(b.take('192.0.2.3'), 'buckets are per client');
});

test('token bucket: the table is bounded; refilled buckets are forgotten first', (t) => {
  const clock = new FakeClock(0);
  const b = new TokenBuckets(1, 2, 3, clock.now);
  b.take('a');
  b.take('a');
  t.false(b.take('a'), 'a is empty');
  b.take('b');
  b.take('c');
  t.is(b.size, 3);
  b.take('d');  // full: nothing has refilled yet → everything forgotten
  t.is(b.size, 1);
  clock.advance(5000);
  b.take('e');
  b.take('f');
  b.take('g');  // full again: d, e, f refilled and are swept, g is kept
  t.true(b.size <= 3);
});

const badBuckets: [string, number, number, number][] = [['rate 0', 0, 1, 1], ['burst 0', 1, 0, 1], ['maxKeys 0', 1, 1, 0], ['NaN rate', NaN, 1, 1]];
for (const [title, rate, burst, keys] of badBuckets) {
  test(`token bucket: ${title} is rejected, naming the values`, (t) => {
    t.throws(() => new TokenBuckets(rate, burst, keys, () => 0), { instanceOf: RangeError, message: new RegExp(`got ${rate}, ${burst}, ${keys}`) });
  });
}

test('log limiter: n lines per window, then the count of those held back', (t) => {
  const clock = new FakeClock(0);
  const l = new LogLimiter(2, 1000, clock.now);
  t.deepEqual([l.take(), l.take(), l.take(), l.take()], [0, 0, undefined, undefined]);
  clock.advance(999);
  t.is(l.take(), undefined);
  clock.advance(1);
  t.is(l.take(), 3, 'three lines were suppressed');
  t.is(l.take(), 0);
});

const acl: [string, string[], string, boolean][] = [
  ['IPv4 inside', ['192.0.2.0/24'], '192.0.2.2', true],
  ['IPv4 outside', ['192.0.2.0/24'], '198.51.100.2', false],
  ['IPv4 /32', ['192.0.2.7/32'], '192.0.2.7', true],
  ['IPv4-mapped IPv6 from a dual-stack socket', ['192.0.2.0/24'], '::ffff:192.0.2.9', true],
  ['IPv4-mapped outside', ['192.0.2.0/24'], '::ffff:203.0.113.9', false],
  ['IPv6 inside', ['2001:db8::/32'], '2001:db8::53', true],
  ['IPv6 outside', ['2001:db8::/32'], '2001:db9::1', false],
  ['IPv6 link-local with a zone', ['fe80::/10'], 'fe80::1%eth0', true],
  ['IPv4 client against IPv6-only rules', ['2001:db8::/32'], '192.0.2.2', false],
  ['empty list allows nobody', [], '127.0.0.1', false],
  ['default ACL: loopback', ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '127.0.0.0/8'], '127.0.0.1', true],
  ['default ACL: public address', ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '127.0.0.0/8'], '203.0.113.5', false],
  ['not an address', ['0.0.0.0/0'], 'nonsense', false],
];
for (const [title, cidrs, address, want] of acl) {
  test(`acl: ${title}`, (t) => {
    const a = new ClientAcl(cidrs);
    t.is(a.allows(address), want);
    t.is(a.allows(address), want, 'same verdict from the cache');
    t.is(a.allows('0.0.0.1'), cidrs.includes('0.0.0.0/0'), 'another client in between');
    t.is(a.allows(address), want);
  });
}

test('acl: a bad CIDR is rejected naming it', (t) => {
  t.throws(() => new ClientAcl(['nope/8']), { message: /"nope\/8"/ });
});

test('acl: the verdict cache stays bounded under many clients', (t) => {
  const a = new ClientAcl(['10.0.0.0/8']);
  for (let i = 0; i < 20_000; i++) t.is(a.allows(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`), true);
  t.true((a as unknown as { cache: Map<string, boolean> }).cache.size <= 4096);
});

test('LogLimiter.drain hands over the count held back once, for a summary line', (t) => {
  const clock = { t: 0, now: () => clock.t };
  const l = new LogLimiter(1, 1000, clock.now);
  t.is(l.take(), 0);
  t.is(l.take(), undefined);
  t.is(l.take(), undefined);
  t.is(l.drain(), 2);
  t.is(l.drain(), 0);
  clock.t = 1000;
  t.is(l.take(), 0, 'drained lines are not counted again');
});
