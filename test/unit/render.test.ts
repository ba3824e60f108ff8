import { writeFileSync } from 'node:fs';
import test from 'ava';
import { desiredDirect, desiredElements, desiredMapping, desiredPorts } from '../../src/sync/mapping.js';
import { elementsFromText } from '../../src/nft/elements.js';
import { diffElements, renderDelta, renderFlush, renderFullSync, renderRuleset, upstreamNets } from '../../src/nft/render.js';
import { parseCidr4 } from '../../src/core/net.js';
import { FakeNft } from '../helpers/fake-nft.js';
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
test('full sync script matches the golden file: per-set ports as vipports elements, commented map elements, direct elements', (t) => {
  const config = GOLDEN_CONFIG;
  const { text } = renderRuleset(config, TEMPLATE);
  const snapshot = goldenSnapshot();
  const script = renderFullSync(text, config.nft.table, desiredElements(snapshot), [], desiredPorts(config, snapshot), desiredDirect(config, snapshot));
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

// Every packet the router receives passes the fallback chain: the cheap tests come first (bench/RESULTS.md, hot path).
test('fallback chain: DNATed flows leave on ct status, other addresses after one lookup, before any socket or TPROXY rule', (t) => {
  const chain = /\n\tchain fallback \{\n([\s\S]*?)\n\t\}/.exec(renderRuleset(testConfig(), TEMPLATE).text)?.[1];
  t.is(chain, [
    '\t\ttype filter hook prerouting priority dstnat + 10; policy accept;',
    '\t\tct status dnat accept',
    '\t\tip daddr != @vips accept',
    '\t\tmeta l4proto tcp socket transparent 1 meta mark set 0x2a accept',
    '\t\tmeta l4proto tcp ip daddr . meta l4proto . th dport @vipports tproxy ip to 127.0.0.1:15223 meta mark set 0x2a accept',
  ].join('\n'));
});

test('nft.snat: source NAT to the shared address instead of masquerade (precedence), invalid packets of our flows dropped', (t) => {
  const pair = renderRuleset(testConfig({ nft: { snat: '203.0.113.1' } }), TEMPLATE);
  t.regex(pair.text, /\n\t\tct status dnat ct original ip daddr @vips snat ip to 203\.0\.113\.1\n/);
  t.notRegex(pair.text, /masquerade/, 'snat takes precedence over nft.masquerade (true by default)');
  t.regex(pair.text, /chain pair \{\n\t\ttype filter hook prerouting priority dstnat - 10; policy accept;\n\t\tct state invalid ip daddr @vips drop\n\t\tct state invalid ip daddr 203\.0\.113\.1 drop\n\t\tct state invalid ip daddr \. meta l4proto \. th dport @direct drop\n\t\}/);
  t.regex(pair.text, /\n\t\tct mark & 0x20000000 == 0x20000000 snat ip to 203\.0\.113\.1\n/, 'direct flows: the shared address too');
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
  t.notRegex(a.text, /198\.18\.7|dport \{/);
  t.deepEqual(a.text.split('\n').filter((l) => /\b5223\b/.test(l)), ['\t\tct state new ip daddr @upstream tcp dport 5223 reject with tcp reset'],
    'the one port in the rules: the direct reset (direct.reset5223)');
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
  t.deepEqual(diff, { remove: [], add: [], removePorts: [], addPorts: [], removeVips: [], addVips: [], removeDirect: [], addDirect: [] });
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

test('diff: vipports and direct elements change by identity (address, protocol, port), each once, in address order', (t) => {
  const port = (vip: string, proto: 'tcp' | 'udp', n: number) => ({ vip, proto, port: n });
  const direct = (address: string, proto: 'tcp' | 'udp', n: number) => ({ address, proto, port: n });
  const diff = diffElements(new Map(), new Map(),
    [port('198.18.100.9', 'tcp', 5223), port('198.18.100.10', 'tcp', 443), port('198.18.100.10', 'tcp', 5223)],
    [port('198.18.100.10', 'tcp', 5223), port('198.18.100.10', 'udp', 123), port('198.18.100.10', 'udp', 123), port('198.18.100.9', 'tcp', 5223)],
    [direct('203.0.113.20', 'tcp', 5223), direct('203.0.113.3', 'tcp', 5223)],
    [direct('203.0.113.20', 'tcp', 5223), direct('203.0.113.11', 'tcp', 443), direct('203.0.113.4', 'tcp', 5223), direct('203.0.113.11', 'tcp', 443)]);
  t.deepEqual(diff.removePorts, [port('198.18.100.10', 'tcp', 443)]);
  t.deepEqual(diff.addPorts, [port('198.18.100.10', 'udp', 123)], 'the duplicate is added once');
  t.deepEqual(diff.removeVips, []);
  t.deepEqual(diff.addVips, []);
  t.deepEqual(diff.removeDirect, [direct('203.0.113.3', 'tcp', 5223)]);
  t.deepEqual(diff.addDirect, [direct('203.0.113.4', 'tcp', 5223), direct('203.0.113.11', 'tcp', 443)], 'numeric address order, once each');
  t.is(renderDelta('apns_proxy', diff),
    'delete element inet apns_proxy direct { 203.0.113.3 . tcp . 5223 }\n' +
    'delete element inet apns_proxy vipports { 198.18.100.10 . tcp . 443 }\n' +
    'add element inet apns_proxy vipports { 198.18.100.10 . udp . 123 }\n' +
    'add element inet apns_proxy direct { 203.0.113.4 . tcp . 5223, 203.0.113.11 . tcp . 443 }\n');
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

// Direct courier addresses (issue 12 point 4).
test('direct: the forward chain accepts and marks mapped addresses on their ports, resets 5223 to allowedUpstreamNets; 443 only when asked', (t) => {
  const def = renderRuleset(testConfig(), TEMPLATE).text;
  const chain = (text: string) => /\n\tchain forward \{\n([\s\S]*?)\n\t\}/.exec(text)?.[1];
  t.is(chain(def), [
    '\t\ttype filter hook forward priority filter - 5; policy accept;',
    '\t\tct status dnat accept',
    '\t\tct state established,related accept',
    '\t\tct state new ip daddr . meta l4proto . th dport @direct ct mark set ct mark | 0x20000000 accept',
    '\t\tct state new ip daddr @upstream tcp dport 5223 reject with tcp reset',
  ].join('\n'));
  t.regex(def, /\n\tset direct \{\n\t\ttypeof ip daddr \. meta l4proto \. th dport\n\t\}\n/);
  t.regex(def, /\n\tset upstream \{\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = \{ 203\.0\.113\.0\/24 \}\n\t\}\n/);
  t.regex(def, /\n\t\tct status dnat ct original ip daddr @vips masquerade\n\t\tct mark & 0x20000000 == 0x20000000 masquerade\n/);
  t.notRegex(def, /dport 443 reject/, '443 is not reset by default');
  t.notRegex(def, /\bdrop\b/, 'a single router drops nothing');

  const on443 = renderRuleset(testConfig({ direct: { reset443: true } }), TEMPLATE);
  t.regex(on443.text, /\n\t\tct state new ip daddr @upstream tcp dport 5223 reject with tcp reset\n\t\tct state new ip daddr @upstream tcp dport 443 reject with tcp reset\n\t\}/);
  t.not(on443.stamp, renderRuleset(testConfig(), TEMPLATE).stamp, 'a rule change is a new stamp (full sync)');

  const quiet = renderRuleset(testConfig({ direct: { forward: false, reset5223: false } }), TEMPLATE).text;
  t.is(chain(quiet), [
    '\t\ttype filter hook forward priority filter - 5; policy accept;',
    '\t\tct status dnat accept',
    '\t\tct state established,related accept',
    '\t\tct state new ip daddr . meta l4proto . th dport @direct accept',
  ].join('\n'), 'forward off: mapped addresses are left alone (never reset), not marked');
  t.notRegex(quiet, /ct mark|reject/);

  const marked = renderRuleset(testConfig({ direct: { mark: 0x100 } }), TEMPLATE).text;
  t.regex(marked, /ct mark set ct mark \| 0x100 accept/);
  t.regex(marked, /ct mark & 0x100 == 0x100 masquerade/);
  const noMasq = renderRuleset(testConfig({ nft: { masquerade: false } }), TEMPLATE).text;
  t.notRegex(noMasq, /masquerade|postrouting/, 'nft.masquerade off: direct flows are not source-NATed either');
  t.regex(noMasq, /@direct ct mark set/);
});

test('direct: allowedUpstreamNets become the upstream interval set, each once, none inside another', (t) => {
  const nets = (xs: string[]) => upstreamNets(xs.map((x) => parseCidr4(x) as Exclude<ReturnType<typeof parseCidr4>, string>));
  t.deepEqual(nets(['17.0.0.0/8']), ['17.0.0.0/8']);
  t.deepEqual(nets(['203.0.113.0/24', '17.1.0.0/16', '17.0.0.0/8', '17.0.0.0/8', '198.51.100.0/24']), ['17.0.0.0/8', '198.51.100.0/24', '203.0.113.0/24']);
  const text = renderRuleset(testConfig({ allowedUpstreamNets: ['17.0.0.0/8', '17.128.0.0/9', '203.0.113.0/24'] }), TEMPLATE).text;
  t.regex(text, /elements = \{ 17\.0\.0\.0\/8, 203\.0\.113\.0\/24 \}/);
});

test('direct elements: every programmed address with its set\'s ports, once; none for an absent name', (t) => {
  const snapshot = goldenSnapshot();
  const direct = desiredDirect(GOLDEN_CONFIG, snapshot).map((d) => `${d.address} . ${d.proto} . ${d.port}`);
  t.deepEqual(direct, [
    '203.0.113.10 . tcp . 443', '203.0.113.10 . tcp . 5223', '203.0.113.11 . tcp . 443', '203.0.113.11 . tcp . 5223',
    '203.0.113.12 . tcp . 443', '203.0.113.12 . tcp . 5223', '203.0.113.13 . tcp . 443', '203.0.113.13 . tcp . 5223',
    '203.0.113.14 . tcp . 443', '203.0.113.14 . tcp . 5223', '203.0.113.15 . tcp . 443', '203.0.113.15 . tcp . 5223',
    '203.0.113.16 . tcp . 443', '203.0.113.16 . tcp . 5223',  // sandbox courier 0
    '203.0.113.17 . tcp . 80', '203.0.113.17 . tcp . 443',    // init.push.apple.com: the bag's ports
    '203.0.113.18 . udp . 123',                               // time.apple.com: UDP only
  ]);
  // two names on one address, one port in common: one element per address . protocol . port
  const shared = desiredMapping({ config: GOLDEN_CONFIG, previous: new Map(), results: new Map([
    ['1-courier.push.apple.com', ok(['203.0.113.10'])], ['0-courier.sandbox.push.apple.com', ok(['203.0.113.10'])], ['init.push.apple.com', ok(['203.0.113.10'])],
  ]), now: 0 }).snapshot;
  t.deepEqual(desiredDirect(GOLDEN_CONFIG, shared).map((d) => `${d.address} . ${d.proto} . ${d.port}`),
    ['203.0.113.10 . tcp . 80', '203.0.113.10 . tcp . 443', '203.0.113.10 . tcp . 5223']);
});

test('direct elements in a delta: an address leaves the set with the last name that maps to it, in the same transaction as the map', async (t) => {
  const before = desiredMapping({ config: GOLDEN_CONFIG, previous: new Map(), results: byCourier([[1, ok(['203.0.113.10', '203.0.113.11'])], [2, ok(['203.0.113.11'])]]), now: 0 }).snapshot;
  const after = desiredMapping({ config: GOLDEN_CONFIG, previous: before.names, results: byCourier([[1, ok(['203.0.113.10'])], [2, ok(['203.0.113.12'])]]), now: 1 }).snapshot;
  const diff = diffElements(desiredElements(before), desiredElements(after), desiredPorts(GOLDEN_CONFIG, before), desiredPorts(GOLDEN_CONFIG, after),
    desiredDirect(GOLDEN_CONFIG, before), desiredDirect(GOLDEN_CONFIG, after));
  const delta = renderDelta('apns_proxy', diff);
  const lines = delta.trimEnd().split('\n');
  t.is(lines[0]!.slice(0, 47), 'delete element inet apns_proxy couriers4 { 198.');
  t.deepEqual(lines.slice(1, 3), [
    'delete element inet apns_proxy direct { 203.0.113.11 . tcp . 443, 203.0.113.11 . tcp . 5223 }',
    'add element inet apns_proxy direct { 203.0.113.12 . tcp . 443, 203.0.113.12 . tcp . 5223 }',
  ]);
  t.regex(lines[3]!, /^add element inet apns_proxy couriers4 /);
  t.is(lines.length, 4);
  // FakeNft applies it over the full sync of `before` and holds exactly `after`'s direct elements
  const nft = new FakeNft();
  const { text } = renderRuleset(GOLDEN_CONFIG, TEMPLATE);
  await nft.apply(renderFullSync(text, 'apns_proxy', desiredElements(before), [], desiredPorts(GOLDEN_CONFIG, before), desiredDirect(GOLDEN_CONFIG, before)));
  await nft.apply(delta);
  t.deepEqual((await nft.readTable('apns_proxy'))!.direct!.map((d) => `${d.address} . ${d.proto} . ${d.port}`).sort(),
    desiredDirect(GOLDEN_CONFIG, after).map((d) => `${d.address} . ${d.proto} . ${d.port}`).sort());
  await t.throwsAsync(nft.apply('delete element inet apns_proxy direct { 203.0.113.99 . tcp . 5223 }\n'), { message: /No such file or directory/ }, 'like the kernel: deleting a missing element fails');
});

test('config: the direct section\'s defaults and checks', (t) => {
  t.deepEqual(testConfig().direct, { forward: true, reset5223: true, reset443: false, mark: 0x20000000 });
  t.deepEqual(testConfig({ direct: { reset443: true } }).direct, { forward: true, reset5223: true, reset443: true, mark: 0x20000000 });
  t.throws(() => testConfig({ direct: { reset443: 'yes' } }), { message: /direct\.reset443.*true or false/ });
  t.throws(() => testConfig({ direct: { mark: 0 } }), { message: /direct\.mark.*1\.\.4294967295/ });
  t.throws(() => testConfig({ direct: { dropOthers: true } }), { message: /direct.*unknown key/ });
});
