import test from 'ava';
import { courierForVip, courierName, courierNumbers, vipFor } from '../../src/core/couriers.js';
import { courierMatcher } from '../helpers/courier-matcher.js';
import { testConfig } from '../helpers/fixtures.js';

const config = testConfig();

test('N → name → N and N → VIP → N round-trip for every courier', (t) => {
  const match = courierMatcher(config);
  for (const n of courierNumbers(config)) {
    const name = courierName(config.couriers.template, n);
    t.is(name, `${n}-courier.push.apple.com`);
    t.is(match(name), n);
    const vip = vipFor(config, n);
    t.is(vip, `198.18.100.${n}`);
    t.is(courierForVip(config, vip), n);
  }
  t.is(courierNumbers(config).length, 60);
});

const names: [string, number | undefined][] = [
  ['5-courier.push.apple.com', 5],
  ['5-courier.push.apple.com.', 5],
  ['5-COURIER.Push.Apple.COM', 5],
  ['60-courier.push.apple.com', 60],
  ['61-courier.push.apple.com', undefined],   // outside first..last
  ['0-courier.push.apple.com', undefined],
  ['05-courier.push.apple.com', undefined],
  ['255-courier.push.apple.com', undefined],
  ['evil-courier.push.apple.com', undefined],
  ['5-courier.push.apple.com.example', undefined],
  ['5-courier.push.apple.com.example.', undefined],
  ['x5-courier.push.apple.com', undefined],
  ['5-courierXpushXappleXcom', undefined],     // dots are literal, not regex wildcards
  ['5-courier.push.apple.com..', undefined],
  ['courier.push.apple.com', undefined],
  ['', undefined],
];

for (const [name, want] of names) {
  test(`courier name ${JSON.stringify(name)} → ${want ?? 'not a courier'}`, (t) => {
    t.is(courierMatcher(config)(name), want);
  });
}

test('254 is the highest courier even when the range allows it', (t) => {
  const wide = testConfig({ couriers: { first: 1, last: 254 } });
  t.is(courierMatcher(wide)('254-courier.push.apple.com'), 254);
  t.is(courierMatcher(wide)('255-courier.push.apple.com'), undefined);
  t.is(vipFor(wide, 254), '198.18.100.254');
});

test('VIPs outside the prefix or range are not couriers', (t) => {
  t.is(courierForVip(config, '198.18.101.5'), undefined);
  t.is(courierForVip(config, '198.18.100.0'), undefined);
  t.is(courierForVip(config, '198.18.100.61'), undefined);
  t.is(courierForVip(config, '::ffff:198.18.100.7'), 7);
  t.is(courierForVip(config, 'not-an-ip'), undefined);
});

test('a custom template is honoured', (t) => {
  const c = testConfig({ couriers: { template: 'c{n}.example.test', first: 1, last: 9 } });
  t.is(courierName(c.couriers.template, 3), 'c3.example.test');
  t.is(courierMatcher(c)('C3.Example.Test.'), 3);
  t.is(courierMatcher(c)('3-courier.push.apple.com'), undefined);
});
