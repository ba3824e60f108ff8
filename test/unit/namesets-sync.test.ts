// Name sets through the controller, the state file and the kernel map: one resolver and one map for
// every set, stable pool VIPs across add/remove/restart, element comments and counters (read back
// from nft's real JSON shapes), new connections that survive full syncs, version 1 state migrated,
// adoption of an unusable state's names from the element comments.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type { Config } from '../../src/core/config.js';
import { parseConfig } from '../../src/core/config.js';
import { Controller } from '../../src/sync/controller.js';
import { createStateStore, parseState } from '../../src/sync/state.js';
import { parseMapJson, parseTableJson } from '../../src/nft/runner.js';
import { statusRows, formatStatus } from '../../src/ops/status.js';
import { Metrics } from '../../src/ops/metrics.js';
import { FakeNft } from '../helpers/fake-nft.js';
import { FakeClock, ScriptedResolver, nx, ok, testConfig } from '../helpers/fixtures.js';
import { memoryLogger } from '../helpers/memory-logger.js';

const withSets = (nameSets: Record<string, unknown>, extra: Record<string, unknown> = {}): Config => testConfig({
  couriers: { first: 1, last: 3 }, vipPool: '198.18.102.0/24',
  nameSets: { sandbox: { enabled: false }, ...nameSets }, ...extra,
});

async function withDir<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'apx-names-'));
  try {
    return await f(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function rig(config: Config, dir: string, nft = new FakeNft()) {
  const resolver = new ScriptedResolver();
  resolver.answers.set(1, ok(['203.0.113.10', '203.0.113.11']));
  resolver.answers.set(2, ok(['203.0.113.12']));
  resolver.answers.set(3, nx);
  resolver.byName.set('init.push.apple.com', ok(['203.0.113.20']));
  resolver.byName.set('api.push.apple.com', ok(['203.0.113.21']));
  const clock = new FakeClock();
  const logger = memoryLogger();
  const make = (c: Config = config) => new Controller({ config: c, nft, makeResolver: () => resolver, store: createStateStore(dir), clock: clock.now, logger });
  return { nft, resolver, clock, logger, make };
}

const poolOf = (c: Controller) => Object.fromEntries(c.snapshot!.pool);

test('config: nameSets merge over the defaults; a set can be turned off, narrowed, added; every set parsed', (t) => {
  const c = parseConfig({
    nameSets: {
      sandbox: { enabled: false },
      provider: { tcp: [443] },
      captive: { names: ['Captive.Apple.com.'], tcp: [80, 443] },
      time: { names: ['time.apple.com'], udp: [123], allowedUpstreamNets: ['17.253.0.0/16'] },
      lab: { template: 'c{n}.couriers.example.test', vipPrefix: '10.100.104.0/23', first: 0, last: 509, tcp: [5223] },
    },
  });
  t.deepEqual(c.sets.map((s) => s.id), ['couriers', 'bag', 'provider', 'captive', 'time', 'lab']);
  t.like(c.sets[0], { kind: 'numbered', template: '{n}-courier.push.apple.com', first: 0, last: 200, tcp: [5223, 443], udp: [] });
  t.like(c.sets[2], { kind: 'names', names: ['api.push.apple.com', 'api.sandbox.push.apple.com', 'api.development.push.apple.com'], tcp: [443] });
  t.like(c.sets[3], { kind: 'names', names: ['captive.apple.com'] });
  t.deepEqual(c.sets[4]!.allowedUpstreamNets?.map((n) => n.text), ['17.253.0.0/16']);
  t.like(c.sets[5], { kind: 'numbered', first: 0, last: 509 });
  t.false(c.nameSets.sandbox!.enabled);
  t.is(c.vipPool.text, '10.100.102.0/24');
  t.deepEqual(parseConfig({}).sets.map((s) => s.id), ['couriers', 'sandbox', 'bag', 'provider']);
});

const bad: [string, Record<string, unknown>, RegExp][] = [
  ['overlapping prefixes (two sets)', { nameSets: { sandbox: { vipPrefix: '10.100.100.128/25', last: 100 } } }, /^config: vipPrefix: couriers \(10\.100\.100\.0\/24\) and sandbox \(10\.100\.100\.128\/25\) overlap/],
  ['a set overlapping the pool', { nameSets: { sandbox: { vipPrefix: '10.100.102.0/24' } } }, /^config: nameSets\.sandbox: sandbox \(10\.100\.102\.0\/24\) and \(the exact-name pool\) \(10\.100\.102\.0\/24\) overlap/],
  ['the pool inside the production prefix', { vipPrefix: '10.100.0.0/16', nameSets: { sandbox: { enabled: false } }, vipPool: '10.100.200.0/24' }, /^config: vipPrefix: couriers \(10\.100\.0\.0\/16\) and \(the exact-name pool\) \(10\.100\.200\.0\/24\) overlap/],
  ['a range that does not fit its prefix', { nameSets: { sandbox: { vipPrefix: '10.100.101.0/25' } } }, /^config: nameSets\.sandbox\.last: does not fit nameSets\.sandbox\.vipPrefix 10\.100\.101\.0\/25: 0\.\.125 at most .*, got 200$/],
  ['the production range does not fit a /23 beyond 509', { vipPrefix: '10.100.104.0/23', couriers: { last: 510 } }, /^config: couriers\.last: does not fit vipPrefix 10\.100\.104\.0\/23: 0\.\.509 at most/],
  ['duplicate names across sets', { nameSets: { captive: { names: ['api.push.apple.com'], tcp: [443] } } }, /^config: nameSets\.provider: api\.push\.apple\.com is in both provider and captive: a name has one VIP/],
  ['a numbered set whose names are another set\'s', { nameSets: { again: { template: '{n}-courier.push.apple.com', vipPrefix: '10.100.103.0/24', tcp: [443] } } }, /is in both couriers and again/],
  ['a pool too small', { vipPool: '10.100.102.0/30' }, /^config: vipPool: the pool 10\.100\.102\.0\/30 holds 2 addresses, the exact-name sets have 6 names, got "10\.100\.102\.0\/30"$/],
  ['a set without ports', { nameSets: { x: { names: ['x.example.test'] } } }, /^config: nameSets\.x\.tcp: must list at least one port/],
  ['names and a template', { nameSets: { x: { names: ['x.example.test'], template: '{n}.example.test', tcp: [1] } } }, /^config: nameSets\.x: has both names/],
  ['a numbered set without a prefix', { nameSets: { x: { template: '{n}.example.test', tcp: [1] } } }, /^config: nameSets\.x: needs either names/],
  ['allowedUpstreamNets widened by a set', { nameSets: { bag: { allowedUpstreamNets: ['18.0.0.0/8'] } } }, /^config: nameSets\.bag\.allowedUpstreamNets\[0\]: must lie inside allowedUpstreamNets/],
  ['allowedUpstreamNets covering the sandbox prefix', { allowedUpstreamNets: ['17.0.0.0/8', '10.100.101.0/24'] }, /^config: allowedUpstreamNets\[1\]: overlaps nameSets\.sandbox\.vipPrefix 10\.100\.101\.0\/24/],
  ['allowedUpstreamNets covering the pool', { allowedUpstreamNets: ['10.100.102.0/23'] }, /^config: allowedUpstreamNets\[0\]: overlaps/],
  ['the production set id', { nameSets: { couriers: { enabled: false } } }, /^config: nameSets\.couriers: is the production couriers' set/],
  ['a bad set id', { nameSets: { 'Bad Id': { names: ['x.example.test'], tcp: [1] } } }, /^config: nameSets\.Bad Id: set ids are a lower-case letter/],
  ['a bad name', { nameSets: { x: { names: ['under_score.example.test'], tcp: [1] } } }, /^config: nameSets\.x\.names\[0\]: must be a DNS name/],
  ['an unknown key in a set', { nameSets: { bag: { port: 80 } } }, /^config: nameSets\.bag\.port: unknown key/],
];
for (const [title, raw, message] of bad) {
  test(`config refuses ${title}`, (t) => {
    t.throws(() => parseConfig(raw), { name: 'ConfigError', message });
  });
}

test('one cycle resolves every name of every set and programs them in one map, each element commented', async (t) => withDir(async (dir) => {
  const { nft, resolver, make } = rig(withSets({}), dir);
  const c = make();
  const r = await c.refresh();
  t.true(r.ok, r.error);
  t.is(resolver.calls, 3);
  t.is(resolver.otherCalls, 6, 'the bag and provider hosts, same resolver, same cycle');
  t.deepEqual(r.sets, { couriers: { fresh: 2, stale: 0, absent: 1 }, bag: { fresh: 1, stale: 0, absent: 2 }, provider: { fresh: 1, stale: 0, absent: 2 } });
  t.deepEqual(r.counts, { fresh: 2, stale: 0, absent: 1 }, 'counts stay the production couriers\'');
  const table = nft.tables.get('apns_proxy')!;
  t.is(table.elements.size, 4 * 8);
  t.is(table.names.get('198.18.102.1 . 3'), 'init.push.apple.com');
  t.is(table.elements.get('198.18.102.1 . 3'), '203.0.113.20');
  t.is(table.names.get('198.18.100.1 . 0'), '1-courier.push.apple.com');
  t.true(table.sets.get('vipports')!.has('198.18.102.1 . tcp . 80'));
  t.true(table.sets.get('vipports')!.has('198.18.102.4 . tcp . 2197'));
  t.false(table.sets.get('vipports')!.has('198.18.100.1 . tcp . 80'));
  t.is(table.sets.get('vips')!.size, 3 + 6);
  t.regex(nft.scripts[0]!, /add element inet apns_proxy couriers4 \{ 198\.18\.100\.1 \. 0 comment "1-courier\.push\.apple\.com" : 203\.0\.113\.10,/);
  const again = await c.refresh();
  t.is(again.sync, 'none', 'nothing changed: nothing sent');
  t.is(nft.scripts.length, 1);
}));

test('pool VIPs are stable across refreshes, restarts, and names added or removed (state file)', async (t) => withDir(async (dir) => {
  const nft = new FakeNft();
  const first = rig(withSets({}), dir, nft);
  const c1 = first.make();
  await c1.refresh();
  const before = poolOf(c1);
  t.deepEqual(before, {
    'init.push.apple.com': '198.18.102.1', 'init-p01st.push.apple.com': '198.18.102.2', 'init.sandbox.push.apple.com': '198.18.102.3',
    'api.push.apple.com': '198.18.102.4', 'api.sandbox.push.apple.com': '198.18.102.5', 'api.development.push.apple.com': '198.18.102.6',
  });
  // restart with a set added before the others and a name removed: nobody else moves
  const changed = withSets({
    aaa: { names: ['captive.apple.com'], tcp: [80, 443] },
    bag: { names: ['init.push.apple.com', 'init.sandbox.push.apple.com'] },
  });
  t.deepEqual(changed.sets.map((s) => s.id), ['couriers', 'bag', 'provider', 'aaa']);
  const second = rig(changed, dir, nft);
  const c2 = second.make();
  await c2.programFromState();
  t.deepEqual(poolOf(c2), {
    'init.push.apple.com': '198.18.102.1', 'init.sandbox.push.apple.com': '198.18.102.3',
    'api.push.apple.com': '198.18.102.4', 'api.sandbox.push.apple.com': '198.18.102.5', 'api.development.push.apple.com': '198.18.102.6',
    'captive.apple.com': '198.18.102.2',
  }, 'the new name takes the lowest free address; the others keep theirs');
  await c2.refresh();
  const state = parseState(JSON.stringify(JSON.parse(await (await import('node:fs/promises')).readFile(join(dir, 'state.json'), 'utf8'))), 'state.json');
  t.is(state.pool['init.sandbox.push.apple.com'], '198.18.102.3');
  t.is(state.pool['captive.apple.com'], '198.18.102.2');
  t.false('init-p01st.push.apple.com' in state.pool);
  // a third start, same config: identical
  const c3 = rig(changed, dir, nft).make();
  await c3.programFromState();
  t.deepEqual(poolOf(c3), poolOf(c2));
  // a reload adding a name keeps every VIP
  c3.reload(withSets({ aaa: { names: ['captive.apple.com', 'time.apple.com'], tcp: [80, 443] }, bag: { names: ['init.push.apple.com', 'init.sandbox.push.apple.com'] } }));
  await c3.refresh();
  t.like(poolOf(c3), { ...poolOf(c2), 'time.apple.com': '198.18.102.7' });
}));

test('new connections per name: element counters plus what re-created elements had counted (full syncs keep the count)', async (t) => withDir(async (dir) => {
  const { nft, resolver, clock, make } = rig(withSets({}), dir);
  const c = make();
  await c.programFromState();
  await c.refresh();
  nft.bump('apns_proxy', '198.18.100.1 . 2', 3);
  nft.bump('apns_proxy', '198.18.102.1 . 0', 2);
  t.is(c.connections(await nft.readMap('apns_proxy')).get('1-courier.push.apple.com'), 3);
  c.forceFullSync('test');
  await c.refresh();  // re-creates every element: kernel counters start again at 0
  t.is(nft.tables.get('apns_proxy')!.packets.get('198.18.100.1 . 2'), 0);
  nft.bump('apns_proxy', '198.18.100.1 . 5', 1);
  let counts = c.connections(await nft.readMap('apns_proxy'));
  t.is(counts.get('1-courier.push.apple.com'), 4);
  t.is(counts.get('init.push.apple.com'), 2);
  // a delta that re-adds a courier's elements (new address) carries their counts too
  resolver.answers.set(1, ok(['203.0.113.30']));
  clock.advance(60_000);
  const r = await c.refresh();
  t.is(r.sync, 'delta');
  counts = c.connections(await nft.readMap('apns_proxy'));
  t.is(counts.get('1-courier.push.apple.com'), 4);
  // status adds the kernel counters to the offsets the state file carries
  const state = await createStateStore(dir).load();
  t.deepEqual(state!.connections, { '1-courier.push.apple.com': 4, 'init.push.apple.com': 2 });
  nft.bump('apns_proxy', '198.18.100.1 . 0', 5);
  const rows = statusRows(withSets({}), state, await nft.readMap('apns_proxy'), clock.now());
  t.like(rows.find((x) => x.name === '1-courier.push.apple.com'), { set: 'couriers', courier: 1, connections: 9 });
  t.like(rows.find((x) => x.name === 'init.push.apple.com'), { set: 'bag', courier: null, vip: '198.18.102.1', connections: 2, state: 'fresh' });
  t.like(rows.find((x) => x.name === 'init-p01st.push.apple.com'), { set: 'bag', connections: 0, state: 'absent', note: 'NXDOMAIN' });
  t.is(statusRows(withSets({}), state, undefined, clock.now())[0]!.connections, null, 'unknown without the kernel map');
  const text = formatStatus(rows);
  t.regex(text, /^COURIER\s+VIP\s+STATE\s+AGE\s+ADDRESSES\s+NOTE\n1\s+198\.18\.100\.1\s+fresh\s+\d+s\s+203\.0\.113\.30\n/);
  t.regex(text, /\nSET\s+NAME\s+VIP\s+STATE\s+AGE\s+CONNS\s+ADDRESSES\s+NOTE\nbag\s+init\.push\.apple\.com\s+198\.18\.102\.1\s+fresh\s+\d+s\s+2\s+203\.0\.113\.20\n/);
  t.regex(text, /\nnew connections since start, couriers: 9 \(1: 9\)\n$/);
  t.regex(formatStatus(rows, true), /^SET\s+NAME\s+VIP\s+STATE\s+AGE\s+CONNS\s+ADDRESSES\s+NOTE\ncouriers\s+1-courier\.push\.apple\.com\s+198\.18\.100\.1\s+fresh\s+\d+s\s+9\s+/);
}));

test('a version 1 state file (couriers by N) is read and migrated to names', async (t) => withDir(async (dir) => {
  const v1 = {
    version: 1, savedAt: 5, couriers: [
      { n: 1, addresses: ['203.0.113.10'], resolvedAt: Date.UTC(2026, 10, 25, 8, 59), ttl: 60, exists: true, checkedAt: null, error: null, vip: '198.18.100.1', state: 'fresh', programmed: ['203.0.113.10'] },
      { n: 3, addresses: [], resolvedAt: Date.UTC(2026, 10, 25, 8, 59), ttl: null, exists: false, checkedAt: null, error: null, vip: '198.18.100.3', state: 'absent', programmed: [] },
    ],
  };
  await writeFile(join(dir, 'state.json'), JSON.stringify(v1));
  const { nft, resolver, logger, make } = rig(withSets({}), dir);
  const c = make();
  await c.programFromState();
  t.is(resolver.calls, 0);
  t.is(nft.tables.get('apns_proxy')!.elements.get('198.18.100.1 . 0'), '203.0.113.10', 'last-known-good of the old file programmed at once');
  t.is(nft.tables.get('apns_proxy')!.names.get('198.18.100.1 . 0'), '1-courier.push.apple.com');
  t.is(c.snapshot!.couriers.get(3)!.exists, false);
  t.true(logger.lines.some((l) => /loaded last-known-good for 1 couriers from state \(version 1, migrated\)/.test(l)), logger.lines.join('\n'));
  const saved = await createStateStore(dir).load();
  t.is(saved!.version, 2);
  t.is(saved!.names.find((x) => x.name === '1-courier.push.apple.com')!.set, 'couriers');
  t.throws(() => parseState(JSON.stringify({ version: 1, couriers: [{ n: 'x' }] }), 'state.json'), { message: /courier entry 0 is malformed/ });
  t.throws(() => parseState(JSON.stringify({ version: 2, names: [{ name: 'Not A Name' }], pool: {} }), 'state.json'), { message: /name entry 0 is malformed/ });
  t.throws(() => parseState(JSON.stringify({ version: 2, names: [], pool: { 'a.example': 7 } }), 'state.json'), { message: /pool entry "a\.example" is malformed/ });
}));

test('an unusable state file: names and pool VIPs come back from the live map\'s element comments', async (t) => withDir(async (dir) => {
  const nft = new FakeNft();
  // a previous run with the pool in another order than a fresh allocation would give
  const earlier = rig(withSets({ bag: { names: ['init.sandbox.push.apple.com', 'init.push.apple.com'] } }), dir, nft);
  await earlier.make().refresh();
  t.is(nft.tables.get('apns_proxy')!.names.get('198.18.102.2 . 0'), 'init.push.apple.com');
  await writeFile(join(dir, 'state.json'), '{ not json');
  const { make, logger, resolver } = rig(withSets({}), dir, nft);
  const c = make();
  await c.programFromState();
  t.is(resolver.calls, 0);
  t.is(c.snapshot!.pool.get('init.push.apple.com'), '198.18.102.2', 'the VIP devices already have, from the comment');
  t.deepEqual(c.snapshot!.names.get('init.push.apple.com')!.programmed, ['203.0.113.20']);
  t.deepEqual(c.snapshot!.couriers.get(1)!.programmed, ['203.0.113.10', '203.0.113.11']);
  t.is(c.snapshot!.pool.get('init-p01st.push.apple.com'), '198.18.102.1', 'a name the map never had takes a free address');
  t.true(logger.lines.some((l) => /adopted 2 couriers and 2 other names from the live kernel map/.test(l)), logger.lines.join('\n'));
}));

test('addresses outside a set\'s own allowedUpstreamNets are never programmed for it', async (t) => withDir(async (dir) => {
  const config = withSets({ provider: { allowedUpstreamNets: ['203.0.113.128/25'] } });
  const { nft, make, logger } = rig(config, dir);
  await make().refresh();
  t.false([...nft.tables.get('apns_proxy')!.names.values()].includes('api.push.apple.com'));
  t.true(logger.lines.some((l) => /api\.push\.apple\.com: ignored 203\.0\.113\.21 \(outside allowedUpstreamNets\)/.test(l)), logger.lines.join('\n'));
}));

test('parseMapJson and parseTableJson read nft 1.0.6\'s real JSON: elements with comment and counter, plain ones, sets', (t) => {
  // captured with `ip netns exec x nft -j list map inet apns_proxy couriers4` (nft 1.0.6, map with counter)
  const map = '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"map": {"family": "inet", "name": "couriers4", "table": "apns_proxy", "type": ["ipv4_addr", "integer"], "handle": 4, "comment": "apns-proxy x", "map": "ipv4_addr", "elem": [[{"elem": {"val": {"concat": ["198.18.100.5", 3]}, "comment": "5-courier.push.apple.com", "counter": {"packets": 7, "bytes": 420}}}, "17.57.145.37"], [{"elem": {"val": {"concat": ["198.18.100.5", 4]}, "comment": "5-courier.push.apple.com", "counter": {"packets": 0, "bytes": 0}}}, "17.57.145.38"]], "stmt": [{"counter": null}]}}]}';
  const m = parseMapJson(map);
  t.is(m.stamp, 'apns-proxy x');
  t.deepEqual([...m.elements.values()], [
    { vip: '198.18.100.5', slot: 3, address: '17.57.145.37', name: '5-courier.push.apple.com', packets: 7 },
    { vip: '198.18.100.5', slot: 4, address: '17.57.145.38', name: '5-courier.push.apple.com', packets: 0 },
  ]);
  // a comment without a counter (a map declared without one), and the plain shape of older versions
  const mixed = '{"nftables": [{"map": {"name": "couriers4", "elem": [[{"elem": {"val": {"concat": ["198.18.100.6", 0]}, "comment": "6-courier.push.apple.com"}}, "203.0.113.1"], [{"concat": ["198.18.100.7", 1]}, "203.0.113.2"]]}}]}';
  t.deepEqual([...parseMapJson(mixed).elements.values()], [
    { vip: '198.18.100.6', slot: 0, address: '203.0.113.1', name: '6-courier.push.apple.com' },
    { vip: '198.18.100.7', slot: 1, address: '203.0.113.2' },
  ]);
  t.throws(() => parseMapJson('{"nftables": [{"map": {"elem": [[{"elem": {"val": "198.18.100.6"}}, "203.0.113.1"]]}}]}'), { message: /unexpected element/ });
  const set = '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "vipports", "table": "apns_proxy", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 5, "elem": [{"concat": ["198.18.100.5", "tcp", 5223]}, {"concat": ["198.18.102.1", "udp", 123]}]}}]}';
  t.deepEqual(parseTableJson(set, 'apns_proxy').ports, [{ vip: '198.18.100.5', proto: 'tcp', port: 5223 }, { vip: '198.18.102.1', proto: 'udp', port: 123 }]);
  t.throws(() => parseTableJson('{"nftables": [{"set": {"table": "apns_proxy", "name": "vipports", "elem": [{"concat": ["198.18.100.5", "sctp", 1]}]}}]}', 'apns_proxy'), { message: /unexpected set element/ });
});

test('metrics: names by set and state; apns_proxy_couriers keeps counting the production couriers', async (t) => withDir(async (dir) => {
  const { make } = rig(withSets({}), dir);
  const c = make();
  const metrics = new Metrics();
  c.onReport((r, g) => metrics.refreshed(r, g));
  await c.refresh();
  const text = await metrics.registry.metrics();
  t.regex(text, /apns_proxy_names\{set="bag",state="fresh"\} 1\n/);
  t.regex(text, /apns_proxy_names\{set="provider",state="absent"\} 2\n/);
  t.regex(text, /apns_proxy_names\{set="couriers",state="fresh"\} 2\n/);
  t.regex(text, /apns_proxy_couriers\{state="fresh"\} 2\n/);
  t.regex(text, /apns_proxy_couriers\{state="absent"\} 1\n/);
}));

test('the fallback finds the name of any VIP of any set, and only on that set\'s ports', async (t) => withDir(async (dir) => {
  const { vipTarget } = await import('../../src/fallback/listener.js');
  const config = withSets({});
  const c = rig(config, dir).make();
  await c.refresh();
  t.deepEqual(vipTarget(config, c.snapshot, '198.18.102.4'), { name: 'api.push.apple.com', set: 'provider', n: null });
  t.deepEqual(vipTarget(config, c.snapshot, '::ffff:198.18.100.2'), { name: '2-courier.push.apple.com', set: 'couriers', n: 2 });
  t.is(vipTarget(config, c.snapshot, '198.18.102.200'), undefined, 'a pool address no name holds');
  t.deepEqual(vipTarget(config, undefined, '198.18.100.3'), { name: '3-courier.push.apple.com', set: 'couriers', n: 3 }, 'before the first snapshot: couriers by their VIP');
  t.is(vipTarget(config, undefined, '198.18.102.1'), undefined, 'pool VIPs are known only from a snapshot');
}));
