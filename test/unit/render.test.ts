import { writeFileSync } from 'node:fs';
import test from 'ava';
import { desiredElements, desiredMapping, desiredPorts } from '../../src/sync/mapping.js';
import { elementsFromText } from '../../src/nft/elements.js';
import { diffElements, renderDelta, renderFlush, renderFullSync, renderRuleset } from '../../src/nft/render.js';
import { REPO, TEMPLATE, nx, ok, readRepoFile, testConfig, byCourier } from '../helpers/fixtures.js';

// Small sets so the golden file stays readable: couriers 1..4, sandbox couriers 0..2 (N = 0 at
// broadcast − 1), the bag and provider hosts from the pool, and an operator's UDP set.
const GOLDEN_CONFIG = testConfig({
  couriers: { first: 1, last: 4 }, vipPool: '198.18.102.0/24',
  nameSets: { sandbox: { first: 0, last: 2, vipPrefix: '198.18.101.0/24' }, time: { names: ['time.apple.com'], tcp: [], udp: [123] } },
});

function goldenSnapshot() {
  const results = byCourier([
    [1, ok(['203.0.113.10', '203.0.113.11'])],
    [2, ok(['203.0.113.12', '203.0.113.13', '203.0.113.14'])],
    [3, nx],
    [4, ok(['203.0.113.15'])],
  ]);
  results.set('0-courier.sandbox.push.apple.com', ok(['203.0.113.16']));
  results.set('init.push.apple.com', ok(['203.0.113.17']));
  results.set('time.apple.com', ok(['203.0.113.18']));
  return desiredMapping({ config: GOLDEN_CONFIG, previous: new Map(), results, now: 0 }).snapshot;
}

function goldenElements() {
  return desiredElements(goldenSnapshot());
}

// The golden file is the reviewed shape of what we send the kernel; regenerate with UPDATE_GOLDEN=1.
test('full sync script matches the golden file: per-set ports as vipports elements, commented map elements', (t) => {
  const config = GOLDEN_CONFIG;
  const { text } = renderRuleset(config, TEMPLATE);
  const snapshot = goldenSnapshot();
  const script = renderFullSync(text, config.nft.table, desiredElements(snapshot), [], desiredPorts(config, snapshot));
  if (process.env.UPDATE_GOLDEN) writeFileSync(new URL('test/golden/full-sync.nft', REPO), script);
  t.is(script, readRepoFile('test/golden/full-sync.nft'));
});

test('masquerade and fallback can be switched off; the stamp follows the rules', (t) => {
  const on = renderRuleset(testConfig(), TEMPLATE);
  const off = renderRuleset(testConfig({ nft: { masquerade: false }, fallback: { enabled: false } }), TEMPLATE);
  t.regex(on.text, /masquerade/);
  t.regex(on.text, /tproxy ip to 127\.0\.0\.1:15223 meta mark set 0x2a/);
  t.notRegex(off.text, /masquerade|postrouting/);
  t.notRegex(off.text, /tproxy|chain fallback/);
  t.regex(off.text, /dnat ip to ip daddr \. numgen random mod 8 map @couriers4/);
  t.not(on.stamp, off.stamp);
  t.is(renderRuleset(testConfig(), TEMPLATE).stamp, on.stamp, 'same config, same stamp');
  t.true(on.text.includes(`comment "${on.stamp}"`));
});

test('nft.snat: source NAT to the shared address instead of masquerade (precedence), invalid packets of our flows dropped', (t) => {
  const pair = renderRuleset(testConfig({ nft: { snat: '203.0.113.1' } }), TEMPLATE);
  t.regex(pair.text, /\n\t\tct status dnat ct original ip daddr @vips snat ip to 203\.0\.113\.1\n/);
  t.notRegex(pair.text, /masquerade/, 'snat takes precedence over nft.masquerade (true by default)');
  t.regex(pair.text, /chain pair \{\n\t\ttype filter hook prerouting priority dstnat - 10; policy accept;\n\t\tip daddr @vips ct state invalid drop\n\t\tip daddr 203\.0\.113\.1 ct state invalid drop\n\t\}/);
  const both = renderRuleset(testConfig({ nft: { snat: '203.0.113.1', masquerade: false } }), TEMPLATE);
  t.is(both.text, pair.text.replace(pair.stamp, both.stamp));
  t.not(pair.stamp, renderRuleset(testConfig(), TEMPLATE).stamp);
  const single = renderRuleset(testConfig(), TEMPLATE);
  t.notRegex(single.text, /snat|chain pair|invalid/, 'a single router is unchanged');
});

test('the rules are static: ports, prefixes and names live in elements, so the stamp ignores them', (t) => {
  const a = renderRuleset(testConfig({ ports: [5223], vipPrefix: '198.18.7.0/24' }), TEMPLATE);
  const b = renderRuleset(testConfig({ nameSets: { captive: { names: ['captive.apple.com'], tcp: [80, 443] }, bag: { enabled: false } } }), TEMPLATE);
  t.is(a.stamp, b.stamp);
  t.regex(a.text, /ip daddr \. meta l4proto \. th dport @vipports dnat ip to ip daddr \. numgen random mod 8 map @couriers4/);
  t.notRegex(a.text, /198\.18\.7|dport \{|\b5223\b/);
  t.notRegex(a.text, /\{\{|\}\}/, 'no placeholder left');
});

test('per-set ports: each VIP gets its own set\'s TCP and UDP ports, and only those', (t) => {
  const snapshot = goldenSnapshot();
  const ports = desiredPorts(GOLDEN_CONFIG, snapshot).map((p) => `${p.vip} . ${p.proto} . ${p.port}`);
  t.true(ports.includes('198.18.100.1 . tcp . 5223'));
  t.true(ports.includes('198.18.100.3 . tcp . 443'), 'a VIP with no element yet still has its ports (misses reach the fallback)');
  t.true(ports.includes('198.18.101.254 . tcp . 5223'), 'sandbox courier 0: broadcast − 1');
  const vipOf = (name: string) => snapshot.names.get(name)!.vip;
  t.deepEqual(ports.filter((p) => p.startsWith(`${vipOf('init.push.apple.com')} `)), [`${vipOf('init.push.apple.com')} . tcp . 80`, `${vipOf('init.push.apple.com')} . tcp . 443`]);
  t.deepEqual(ports.filter((p) => p.startsWith(`${vipOf('api.push.apple.com')} `)), [`${vipOf('api.push.apple.com')} . tcp . 443`, `${vipOf('api.push.apple.com')} . tcp . 2197`]);
  t.deepEqual(ports.filter((p) => p.startsWith(`${vipOf('time.apple.com')} `)), [`${vipOf('time.apple.com')} . udp . 123`]);
  t.false(ports.some((p) => p.startsWith('198.18.100.') && / (80|2197|123)$/.test(p)), 'couriers get no bag, provider or NTP ports');
});

test('a broken template is an error, not a silent bad ruleset', (t) => {
  t.throws(() => renderRuleset(testConfig(), 'table inet {{tabel}} {}'), { message: /unknown placeholder \{\{tabel\}\}/ });
  t.throws(() => renderRuleset(testConfig(), '@nat\tchain x {}'), { message: /unknown feature tag @nat/ });
});

test('diff: identical maps give no operations and an empty delta', (t) => {
  const el = goldenElements();
  const diff = diffElements(el, new Map(el));
  t.deepEqual(diff, { remove: [], add: [], removePorts: [], addPorts: [], removeVips: [], addVips: [] });
  t.is(renderDelta('apns_proxy', diff), '');
});

test('diff: changed values are deleted and re-added, removed keys deleted, new keys added', (t) => {
  const before = elementsFromText([['198.18.100.1 . 0', '203.0.113.10'], ['198.18.100.1 . 1', '203.0.113.11'], ['198.18.100.2 . 0', '203.0.113.12']]);
  const after = elementsFromText([['198.18.100.1 . 0', '203.0.113.10'], ['198.18.100.1 . 1', '203.0.113.19'], ['198.18.100.3 . 0', '203.0.113.13']]);
  const diff = diffElements(before, after);
  t.deepEqual(diff.remove.map((e) => `${e.vip} . ${e.slot}`), ['198.18.100.1 . 1', '198.18.100.2 . 0']);
  t.deepEqual(diff.add.map((e) => [`${e.vip} . ${e.slot}`, e.address]), [['198.18.100.1 . 1', '203.0.113.19'], ['198.18.100.3 . 0', '203.0.113.13']]);
  t.is(renderDelta('apns_proxy', diff),
    'delete element inet apns_proxy couriers4 { 198.18.100.1 . 1, 198.18.100.2 . 0 }\n' +
    'add element inet apns_proxy couriers4 { 198.18.100.1 . 1 : 203.0.113.19, 198.18.100.3 . 0 : 203.0.113.13 }\n');
});

test('full sync replaces the table atomically and can drop a renamed one', (t) => {
  const script = renderFullSync('table inet t {\n}\n', 't', new Map(), ['old']);
  t.is(script, 'add table inet old\ndelete table inet old\nadd table inet t\ndelete table inet t\ntable inet t {\n}\n');
  t.is(renderFlush('t'), 'add table inet t\ndelete table inet t\n');
});

test('table ownership: our stamped map says ours; a same-named table without it is foreign', async (t) => {
  const { parseTableOwner } = await import('../../src/nft/runner.js');
  const { FakeNft } = await import('../helpers/fake-nft.js');
  const list = (comment?: string) => JSON.stringify({ nftables: [
    { table: { family: 'inet', name: 'filter', handle: 1 } },
    { map: { family: 'inet', name: 'couriers4', table: 'filter', ...(comment ? { comment } : {}) } },
  ] });
  t.is(parseTableOwner(list('apns-proxy 0123456789abcdef'), 'filter'), 'ours');
  t.is(parseTableOwner(list(), 'filter'), 'foreign');
  t.is(parseTableOwner(list('somebody else'), 'filter'), 'foreign');
  t.is(parseTableOwner(JSON.stringify({ nftables: [{ table: { family: 'inet', name: 'filter' } }] }), 'filter'), 'foreign');
  const nft = new FakeNft();
  t.is(await nft.tableOwner('apns_proxy'), 'absent');
  nft.addForeignTable('filter');
  t.is(await nft.tableOwner('filter'), 'foreign');
  const config = testConfig();
  await nft.apply(renderFullSync(renderRuleset(config, TEMPLATE).text, 'apns_proxy', new Map()));
  t.is(await nft.tableOwner('apns_proxy'), 'ours');
});
