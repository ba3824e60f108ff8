import test from 'ava';
import { Controller, FULL_SYNC_INTERVAL_MS, ranges } from '../../src/sync/controller.js';
import type { Config } from '../../src/core/config.js';
import { memoryLogger } from '../helpers/memory-logger.js';
import type { Snapshot } from '../../src/sync/mapping.js';
import { FakeNft } from '../helpers/fake-nft.js';
import { ApnsProxyError } from '../../src/core/errors.js';
import { renderFullSync, renderRuleset } from '../../src/nft/render.js';
import type { StateFile, StateStore } from '../../src/sync/state.js';
import { FakeClock, ScriptedResolver, fail, nx, ok, TEMPLATE, testConfig } from '../helpers/fixtures.js';

class MemoryStore implements StateStore {
  saved: StateFile | null = null;
  saves = 0;
  failSave = false;
  async load() { return this.saved; }
  async save(s: Snapshot) {
    if (this.failSave) throw new Error('disk full');
    this.saves++;
    this.saved = { version: 2, savedAt: s.at, names: [...s.names.values()], pool: Object.fromEntries(s.pool) };
  }
}

function setup(config: Config = testConfig({ couriers: { first: 1, last: 3 } })) {
  const nft = new FakeNft();
  const clock = new FakeClock();
  const resolver = new ScriptedResolver();
  const store = new MemoryStore();
  const logger = memoryLogger();
  resolver.answers.set(1, ok(['203.0.113.10', '203.0.113.11']));
  resolver.answers.set(2, ok(['203.0.113.12']));
  resolver.answers.set(3, nx);
  const make = () => new Controller({ config, nft, makeResolver: () => resolver, store, clock: clock.now, logger });
  return { nft, clock, resolver, store, logger, make, controller: make() };
}

const elements = (nft: FakeNft) => Object.fromEntries(nft.tables.get('apns_proxy')?.elements ?? []);

test('first refresh is a full sync with every element; a no-change refresh sends nothing', async (t) => {
  const { nft, controller } = setup();
  const r1 = await controller.refresh();
  t.true(r1.ok);
  t.is(r1.sync, 'full');
  t.is(r1.kernel, 'applied');
  t.is(nft.scripts.length, 1);
  t.regex(nft.scripts[0]!, /^add table inet apns_proxy\ndelete table inet apns_proxy\ntable inet apns_proxy \{/);
  t.is(Object.keys(elements(nft)).length, 16);
  t.is(elements(nft)['198.18.100.1 . 7'], '203.0.113.11');
  t.deepEqual(r1.counts, { fresh: 2, stale: 0, absent: 1 });
  t.deepEqual([...nft.tables.get('apns_proxy')!.sets.get('direct')!].sort(),
    ['203.0.113.10 . tcp . 443', '203.0.113.10 . tcp . 5223', '203.0.113.11 . tcp . 443', '203.0.113.11 . tcp . 5223', '203.0.113.12 . tcp . 443', '203.0.113.12 . tcp . 5223'],
    'every mapped address with its set\'s ports; courier 3 (NXDOMAIN) has none');
  t.regex(nft.scripts[0]!, /\nadd element inet apns_proxy direct \{ 203\.0\.113\.10 \. tcp \. 443, 203\.0\.113\.10 \. tcp \. 5223, 203\.0\.113\.11 \. tcp \. 443, /);

  const r2 = await controller.refresh();
  t.true(r2.ok);
  t.is(r2.sync, 'none');
  t.is(r2.kernel, 'unchanged');
  t.is(r2.elementsChanged, 0);
  t.is(nft.scripts.length, 1, 'no transaction at all');
});

test('a change sends only the changed elements', async (t) => {
  const { nft, resolver, controller, logger } = setup();
  await controller.refresh();
  resolver.answers.set(2, ok(['203.0.113.13']));
  const r = await controller.refresh();
  t.is(r.sync, 'delta');
  t.is(r.elementsChanged, 20);  // 8 slots deleted, 8 re-added; the old address's 2 direct elements out, the new one's in
  t.deepEqual(r.changes, ['courier 2: 203.0.113.12 → 203.0.113.13']);
  t.is(nft.scripts[1]!.split('\n').filter(Boolean).length, 4);
  t.notRegex(nft.scripts[1]!, /table inet apns_proxy \{/);
  t.regex(nft.scripts[1]!, /^delete element inet apns_proxy couriers4 \{ 198\.18\.100\.2 \. 0, .*198\.18\.100\.2 \. 7 \}\n/);
  t.regex(nft.scripts[1]!, /\ndelete element inet apns_proxy direct \{ 203\.0\.113\.12 \. tcp \. 443, 203\.0\.113\.12 \. tcp \. 5223 \}\n/);
  t.regex(nft.scripts[1]!, /\nadd element inet apns_proxy direct \{ 203\.0\.113\.13 \. tcp \. 443, 203\.0\.113\.13 \. tcp \. 5223 \}\nadd element inet apns_proxy couriers4 /);
  t.deepEqual([...nft.tables.get('apns_proxy')!.sets.get('direct')!].sort(),
    ['203.0.113.10 . tcp . 443', '203.0.113.10 . tcp . 5223', '203.0.113.11 . tcp . 443', '203.0.113.11 . tcp . 5223', '203.0.113.13 . tcp . 443', '203.0.113.13 . tcp . 5223']);
  t.is(elements(nft)['198.18.100.2 . 3'], '203.0.113.13');
  t.true(logger.lines.includes('info: courier 2: 203.0.113.12 → 203.0.113.13'));
});

test('a failed transaction leaves the kernel untouched, publishes nothing, and forces a full sync', async (t) => {
  const { nft, resolver, controller, store } = setup();
  await controller.refresh();
  const before = structuredClone(elements(nft));
  const published: Snapshot[] = [];
  controller.onGeneration((g) => published.push(g.snapshot));
  const savesBefore = store.saves;

  resolver.answers.set(1, ok(['203.0.113.30']));
  nft.failNext = 'Operation not permitted';
  const r = await controller.refresh();
  t.false(r.ok);
  t.is(r.kernel, 'refused');
  t.regex(r.error!, /Operation not permitted/);
  t.deepEqual(elements(nft), before, 'fake kernel state unchanged');
  t.is(published.length, 0, 'no snapshot published');
  t.is(store.saves, savesBefore, 'state not persisted');
  t.deepEqual(controller.snapshot!.couriers.get(1)!.programmed, ['203.0.113.10', '203.0.113.11']);

  const r2 = await controller.refresh();
  t.true(r2.ok);
  t.is(r2.sync, 'full', 'next sync after a failure is full');
  t.is(elements(nft)['198.18.100.1 . 0'], '203.0.113.30');
  t.is(published.length, 1);
});

test('an element vanished behind our back is found before the delta: the same cycle repairs it with a full sync', async (t) => {
  const { nft, resolver, controller } = setup();
  await controller.refresh();
  nft.tables.get('apns_proxy')!.elements.delete('198.18.100.2 . 0');  // someone edited the map
  resolver.answers.set(2, ok(['203.0.113.14']));
  const r = await controller.refresh();
  t.true(r.ok, r.error);
  t.is(r.sync, 'full');
  t.regex(r.drift!, /1 missing, 0 changed, 0 foreign/);
  t.is(elements(nft)['198.18.100.2 . 0'], '203.0.113.14');
  t.is((await controller.refresh()).sync, 'none');
});

test('upstream failure keeps last-known-good in the kernel and reports the failure', async (t) => {
  const { nft, resolver, controller, logger } = setup();
  await controller.refresh();
  resolver.answers.set(1, fail());
  resolver.answers.set(2, fail('E_SERVFAIL'));
  const r = await controller.refresh();
  t.false(r.ok);
  t.is(r.sync, 'none');
  t.deepEqual(r.failed, [1, 2]);
  t.deepEqual(r.counts, { fresh: 0, stale: 2, absent: 1 });
  t.regex(r.error!, /resolution failed for 2 courier\(s\): E_TIMEOUT for 1; E_SERVFAIL for 2/);
  t.is(elements(nft)['198.18.100.2 . 0'], '203.0.113.12');
  t.true(logger.lines.some((l) => l.startsWith('warn: refresh: resolution failed for 2 courier(s)')));
});

test('daemon start programs last-known-good from state before resolving (full sync, no queries)', async (t) => {
  const first = setup();
  await first.controller.refresh();
  const { store } = first;
  // A new process: empty kernel, the state file from before, upstream silent.
  const nft = new FakeNft();
  const resolver = new ScriptedResolver();
  const controller = new Controller({ config: testConfig({ couriers: { first: 1, last: 3 } }), nft, makeResolver: () => resolver, store, clock: first.clock.now, logger: memoryLogger() });
  const r = await controller.programFromState();
  t.is(r.sync, 'full');
  t.is(resolver.calls, 0);
  t.is(elements(nft)['198.18.100.1 . 1'], '203.0.113.11');
  t.is(controller.snapshot!.couriers.get(1)!.state, 'stale');
});

test('one-shot refresh adopts a kernel map carrying our stamp: no change → no transaction', async (t) => {
  const { nft, make } = setup();
  await make().refresh();
  const oneShot = make();
  await oneShot.loadState();
  await oneShot.adoptKernel();
  const r = await oneShot.refresh();
  t.is(r.sync, 'none');
  t.is(nft.scripts.length, 1);
});

test('one-shot refresh does a full sync when the live rules are not ours or differ', async (t) => {
  const { nft, make } = setup();
  await make().refresh();
  nft.tables.get('apns_proxy')!.stamp = 'apns-proxy 0000';
  const oneShot = make();
  await oneShot.adoptKernel();
  t.is((await oneShot.refresh()).sync, 'full');
});

test('hourly full resync even without changes; it lists the table once before its transaction and keeps the counters', async (t) => {
  const { nft, clock, controller } = setup();
  await controller.refresh();
  clock.advance(FULL_SYNC_INTERVAL_MS - 1);
  t.is((await controller.refresh()).sync, 'none');
  clock.advance(1);
  nft.bump('apns_proxy', '198.18.100.2 . 0', 3);
  const calls = recordCalls(nft);
  t.is((await controller.refresh()).sync, 'full');
  t.deepEqual(calls, ['readTable', 'apply', 'tableHandle'], 'ownership and counters from one listing');
  t.is(controller.connectionOffsets.get('2-courier.push.apple.com'), 3);
});

test('reload with a new table name drops the old table in the same transaction', async (t) => {
  const { nft, controller } = setup();
  await controller.refresh();
  controller.reload(testConfig({ couriers: { first: 1, last: 3 }, nft: { table: 'apns2' } }));
  const r = await controller.refresh();
  t.is(r.sync, 'full');
  t.false(nft.tables.has('apns_proxy'));
  t.is(Object.keys(Object.fromEntries(nft.tables.get('apns2')!.elements)).length, 16);
  t.regex(nft.scripts.at(-1)!, /^add table inet apns_proxy\ndelete table inet apns_proxy\nadd table inet apns2/);
});

test('cycles never overlap: a tick during a cycle is skipped, a requested refresh is queued once', async (t) => {
  const { controller, resolver } = setup();
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  let inFlight = 0;
  let maxInFlight = 0;
  const orig = resolver.resolveMany.bind(resolver);
  resolver.resolveMany = async (names) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    await gate;
    const r = await orig(names);
    inFlight--;
    return r;
  };
  const first = controller.refresh();
  t.is(controller.tick(), null, 'tick skipped while running');
  const q1 = controller.refresh();
  const q2 = controller.refresh();
  t.is(q1, q2, 'requests coalesce into one queued cycle');
  release();
  await Promise.all([first, q1]);
  t.is(maxInFlight, 1);
  t.is(resolver.calls, 6, 'two cycles of three couriers');
});

test('state save failure is reported while the kernel is programmed', async (t) => {
  const { nft, store, controller } = setup();
  store.failSave = true;
  const r = await controller.refresh();
  t.false(r.ok);
  t.regex(r.error!, /kernel programmed but disk full/);
  t.is(Object.keys(elements(nft)).length, 16);
});

test('ranges() compresses courier lists', (t) => {
  t.is(ranges([1, 2, 3, 7, 9, 10]), '1-3,7,9-10');
  t.is(ranges([]), '');
});

class FakeRouting {
  rules = new Set<string>();
  calls: string[] = [];
  failNext = false;
  async ensure(spec: { mark: number; table: number }) {
    this.calls.push(`ensure ${spec.mark}/${spec.table}`);
    if (this.failNext) {
      this.failNext = false;
      throw new Error('RTNETLINK answers: Operation not permitted');
    }
    this.rules.add(`${spec.mark}/${spec.table}`);
  }
  async remove(spec: { mark: number; table: number }) {
    this.calls.push(`remove ${spec.mark}/${spec.table}`);
    this.rules.delete(`${spec.mark}/${spec.table}`);
  }
}

function withRouting(config: Config) {
  const base = setup(config);
  const routing = new FakeRouting();
  const controller = new Controller({ config, nft: base.nft, makeResolver: () => base.resolver, store: base.store, clock: base.clock.now, logger: base.logger, routing });
  return { ...base, routing, controller };
}

test('fallback routing is installed with the ruleset, retried after a failure, re-checked on full syncs', async (t) => {
  const { controller, routing, clock } = withRouting(testConfig({ couriers: { first: 1, last: 3 } }));
  routing.failNext = true;
  const r1 = await controller.refresh();
  t.false(r1.ok);
  t.regex(r1.error!, /fallback routing: RTNETLINK answers: Operation not permitted/);
  const r2 = await controller.refresh();
  t.true(r2.ok, r2.error);
  t.deepEqual([...routing.rules], ['42/42']);
  await controller.refresh();
  t.is(routing.calls.length, 2, 'not re-run when nothing changed');
  clock.advance(FULL_SYNC_INTERVAL_MS);
  await controller.refresh();
  t.is(routing.calls.length, 3, 'full sync re-ensures it');
});

test('reload turning the fallback off removes its routing; moving it moves the rule', async (t) => {
  const config = testConfig({ couriers: { first: 1, last: 3 } });
  const { controller, routing } = withRouting(config);
  await controller.refresh();
  controller.reload(testConfig({ couriers: { first: 1, last: 3 }, fallback: { mark: 7, table: 70 } }));
  await controller.refresh();
  t.deepEqual([...routing.rules], ['7/70']);
  controller.reload(testConfig({ couriers: { first: 1, last: 3 }, fallback: { enabled: false } }));
  await controller.refresh();
  t.deepEqual([...routing.rules], []);
  t.deepEqual(routing.calls, ['ensure 42/42', 'remove 42/42', 'ensure 7/70', 'remove 7/70']);
});

test('a table removed or re-created behind our back (firewall reload) is rewritten on the next cycle', async (t) => {
  const { nft, controller, logger } = setup();
  await controller.refresh();
  nft.tables.delete('apns_proxy');  // `nft flush ruleset` from a firewall reload
  const r = await controller.refresh();
  t.is(r.sync, 'full');
  t.is(Object.keys(elements(nft)).length, 16);
  t.true(logger.lines.some((l) => l === 'warn: refresh: table inet apns_proxy was removed behind our back; full sync repairs it'));
  t.is((await controller.refresh()).sync, 'none', 'steady again once rewritten');
  // re-created from a saved copy of our ruleset (our stamp, no elements): ours, rewritten
  await nft.apply(renderFullSync(renderRuleset(testConfig({ couriers: { first: 1, last: 3 } }), TEMPLATE).text, 'apns_proxy', new Map()));
  t.is((await controller.refresh()).sync, 'full');
  t.is(Object.keys(elements(nft)).length, 16);
  // re-created by somebody else (no stamp): not ours, never replaced
  await nft.apply('add table inet apns_proxy\ndelete table inet apns_proxy\ntable inet apns_proxy {\n}\n');
  const r2 = await controller.refresh();
  t.is(r2.kernel, 'refused');
  t.regex(r2.error!, /^E_NOT_OURS: table inet apns_proxy exists and was not written by apns-proxy/);
  t.is(nft.tables.get('apns_proxy')!.rules, 'table inet apns_proxy {\n}');
});

// ---- nothing lost, nothing of others touched ----

/** A store whose file is unusable (corrupt, wrong version, a directory...): load throws, setAside moves it. */
class UnusableStore extends MemoryStore {
  asideCalls = 0;
  override async load(): Promise<StateFile | null> {
    if (this.saved === null) throw new Error('E_STATE: state.json: not valid JSON');
    return this.saved;
  }
  async setAside() { this.asideCalls++; return '/state/state.json.bad'; }
}

/** A kernel that holds the map a previous run programmed: couriers 1 and 2, our stamp. */
async function previousRun(config = testConfig({ couriers: { first: 1, last: 3 } })) {
  const first = setup(config);
  await first.controller.refresh();
  return first;
}

test('an unusable state file at start: the live map is adopted, never wiped, the file set aside', async (t) => {
  const { nft, clock } = await previousRun();
  const before = structuredClone(elements(nft));
  const store = new UnusableStore();
  const resolver = new ScriptedResolver();
  resolver.fallbackAnswer = fail();  // upstream down
  const logger = memoryLogger();
  const controller = new Controller({ config: testConfig({ couriers: { first: 1, last: 3 } }), nft, makeResolver: () => resolver, store, clock: clock.now, logger });
  const r = await controller.programFromState();
  t.is(r.kernel, 'applied');
  t.deepEqual(elements(nft), before, 'the kernel keeps every element');
  t.is(store.asideCalls, 1);
  t.true(logger.lines.some((l) => /^warn: start: adopted 2 couriers from the live kernel map \(the state file is unusable\)$/.test(l)), logger.lines.join('\n'));
  t.deepEqual(controller.snapshot!.couriers.get(1)!.programmed, ['203.0.113.10', '203.0.113.11']);
  const r2 = await controller.refresh();
  t.false(r2.ok);
  t.deepEqual(elements(nft), before, 'still there after a failed refresh');
  t.deepEqual(store.saved!.names.find((c) => c.n === 1)!.addresses, ['203.0.113.10', '203.0.113.11'], 'what is written knows the adopted addresses');
});

test('no state file and a live map of ours: adopted; a live map that is not ours is ignored', async (t) => {
  const { nft, clock } = await previousRun();
  const fresh = () => new Controller({ config: testConfig({ couriers: { first: 1, last: 3 } }), nft, makeResolver: () => new ScriptedResolver(), store: new MemoryStore(), clock: clock.now, logger: memoryLogger() });
  await fresh().programFromState();
  t.is(Object.keys(elements(nft)).length, 16);
  nft.tables.get('apns_proxy')!.stamp = 'made by hand';
  t.is(await fresh().adoptLiveMap('test'), 0);
});

test('a state file is never overwritten by a snapshot that knows less than it', async (t) => {
  const { store, clock } = await previousRun();
  const savedBefore = structuredClone(store.saved);
  const logger = memoryLogger();
  // the records were lost (simulated): a controller that never loaded them must not replace the file
  const controller = new Controller({ config: testConfig({ couriers: { first: 1, last: 3 } }), nft: new FakeNft(), makeResolver: () => { const r = new ScriptedResolver(); r.fallbackAnswer = fail(); return r; }, store, clock: clock.now, logger });
  (controller as unknown as { persisted: Map<string, unknown> }).persisted = new Map(savedBefore!.names.map((c) => [c.name, c]));
  await controller.refresh();
  t.deepEqual(store.saved, savedBefore);
  t.true(logger.lines.some((l) => /state: not written: it would forget couriers 1-3/.test(l)), logger.lines.join('\n'));
});

test('a read-only or full state dir at start: the kernel is programmed, the start goes on, the report says why', async (t) => {
  const { store, clock } = await previousRun();
  store.failSave = true;
  const nft = new FakeNft();  // a reboot: empty kernel, the state file readable but not writable
  const controller = new Controller({ config: testConfig({ couriers: { first: 1, last: 3 } }), nft, makeResolver: () => new ScriptedResolver(), store, clock: clock.now, logger: memoryLogger() });
  const r = await controller.programFromState();
  t.is(r.kernel, 'applied');
  t.is(r.stateError, 'disk full');
  t.false(r.resolved);
  t.is(Object.keys(elements(nft)).length, 16);
});

test('last-known-good from any origin passes the current allow-list (state file, narrowed reload)', async (t) => {
  const config = testConfig({ couriers: { first: 1, last: 3 } });
  const store = new MemoryStore();
  const lkg = (n: number, addresses: string[]) => ({ n, name: `${n}-courier.push.apple.com`, set: 'couriers', addresses, resolvedAt: Date.UTC(2026, 10, 25, 8, 59), ttl: 60, exists: true, checkedAt: null, error: null, vip: `198.18.100.${n}`, state: 'fresh' as const, programmed: addresses });
  store.saved = { version: 2, savedAt: 0, pool: {}, names: [lkg(1, ['8.8.8.8', '203.0.113.10']), lkg(2, ['127.0.0.1', '198.18.100.7']), lkg(3, ['203.0.113.200'])] };
  const nft = new FakeNft();
  const clock = new FakeClock();
  const resolver = new ScriptedResolver();
  resolver.fallbackAnswer = fail();
  const logger = memoryLogger();
  const controller = new Controller({ config, nft, makeResolver: () => resolver, store, clock: clock.now, logger });
  await controller.programFromState();
  t.deepEqual([...new Set(Object.values(elements(nft)))].sort(), ['203.0.113.10', '203.0.113.200']);
  t.true(logger.lines.some((l) => l === 'warn: courier 2: dropped last-known-good 127.0.0.1,198.18.100.7 (outside allowedUpstreamNets)'));
  // upstream down, then a reload narrows the allowed nets: kept addresses outside them go too
  controller.reload(testConfig({ couriers: { first: 1, last: 3 }, allowedUpstreamNets: ['203.0.113.0/25'] }));
  await controller.refresh();
  t.deepEqual([...new Set(Object.values(elements(nft)))], ['203.0.113.10']);
  t.is(controller.snapshot!.couriers.get(3)!.state, 'absent');
});

test('drift inside the table is repaired in the cycle that finds it: flushed map, changed and foreign elements', async (t) => {
  const { nft, controller } = setup();
  await controller.refresh();
  const good = structuredClone(elements(nft));
  const table = () => nft.tables.get('apns_proxy')!;
  const cases: [string, () => void, RegExp][] = [
    ['flush map', () => table().elements.clear(), /16 missing, 0 changed, 0 foreign/],
    ['changed', () => table().elements.set('198.18.100.1 . 3', '198.51.100.10'), /0 missing, 1 changed, 0 foreign/],
    ['foreign', () => table().elements.set('198.18.100.200 . 0', '198.51.100.10'), /0 missing, 0 changed, 1 foreign/],
  ];
  for (const [what, tamper, why] of cases) {
    tamper();
    const r = await controller.refresh();
    t.is(r.sync, 'full', what);
    t.regex(r.drift ?? '', why, what);
    t.deepEqual(elements(nft), good, what);
    t.is((await controller.refresh()).sync, 'none', `${what}: steady again`);
  }
});

test('forceFullSync (the fallback caught a mapped VIP) rewrites the table and reports drift', async (t) => {
  const { nft, controller } = setup();
  await controller.refresh();
  controller.forceFullSync('the fallback caught a connection to courier 1, which the map should serve');
  const r = await controller.refresh();
  t.is(r.sync, 'full');
  t.regex(r.drift!, /courier 1/);
  t.is(nft.scripts.length, 2);
});

test('a foreign table of our name is never replaced or deleted: at start, on a sync, on reload', async (t) => {
  const nft = new FakeNft();
  nft.addForeignTable('filter', 'table inet filter { chain forward { type filter hook forward priority 0; } }');
  const config = testConfig({ couriers: { first: 1, last: 3 }, nft: { table: 'filter' } });
  const resolver = new ScriptedResolver();
  resolver.answers.set(1, ok(['203.0.113.10']));
  const controller = new Controller({ config, nft, makeResolver: () => resolver, store: new MemoryStore(), clock: new FakeClock().now, logger: memoryLogger() });
  const err = await t.throwsAsync(controller.programFromState());
  t.is((err as { code?: string }).code, 'E_NOT_OURS');
  t.is(nft.scripts.length, 0, 'no transaction at all');
  t.is(nft.tables.get('filter')!.rules, 'table inet filter { chain forward { type filter hook forward priority 0; } }');
  // our table elsewhere; a reload onto the foreign name is refused too, and the old (ours) stays
  const ours = setup();
  await ours.controller.refresh();
  ours.nft.addForeignTable('filter');
  ours.controller.reload(testConfig({ couriers: { first: 1, last: 3 }, nft: { table: 'filter' } }));
  const r = await ours.controller.refresh();
  t.is(r.kernel, 'refused');
  t.true(ours.nft.tables.has('apns_proxy'));
  // a reload away from a table that meanwhile became foreign leaves it alone
  const moved = setup();
  await moved.controller.refresh();
  moved.nft.tables.get('apns_proxy')!.stamp = null;
  moved.controller.reload(testConfig({ couriers: { first: 1, last: 3 }, nft: { table: 'apns2' } }));
  const r2 = await moved.controller.refresh();
  t.true(r2.ok, r2.error);
  t.true(moved.nft.tables.has('apns_proxy'), 'not ours any more: not deleted');
  t.true(moved.nft.tables.has('apns2'));
});

test('a table of our name that nft cannot list whole (sets of other shapes) is judged by its map: foreign, never replaced', async (t) => {
  const { nft, clock, controller } = setup();
  await controller.refresh();
  // somebody else's table under our name, with a vipports set our parser refuses: readTable fails, the map says whose it is
  await nft.apply('add table inet apns_proxy\ndelete table inet apns_proxy\ntable inet apns_proxy {\n}\n');
  nft.readTable = async () => { throw new ApnsProxyError('E_NFT', 'unexpected set element in nft JSON: {"concat":["198.51.100.1",22]}'); };
  const rules = nft.tables.get('apns_proxy')!.rules;
  const scripts = nft.scripts.length;
  const r = await controller.refresh();  // drift check fails to list: full sync, whose ownership check lists again
  t.is(r.kernel, 'refused');
  t.regex(r.error!, /^E_NOT_OURS: table inet apns_proxy exists and was not written by apns-proxy/);
  clock.advance(FULL_SYNC_INTERVAL_MS);
  const hourly = await controller.refresh();
  t.is(hourly.kernel, 'refused', 'the hourly full sync refuses too');
  t.is(nft.scripts.length, scripts, 'no transaction was sent');
  t.is(nft.tables.get('apns_proxy')!.rules, rules);
});

// Drift in the sets: vipports, vips and direct change with the names; upstream is written with the rules.
const setOf = (nft: FakeNft, name: string) => [...nft.tables.get('apns_proxy')!.sets.get(name)!].sort();

test('drift in a set is repaired in the cycle that finds it: an element deleted from vipports, vips, direct or upstream', async (t) => {
  const { nft, controller } = setup();
  await controller.refresh();
  const names = ['vipports', 'vips', 'direct', 'upstream'];
  const good = Object.fromEntries(names.map((n) => [n, setOf(nft, n)]));
  t.true(good.vips!.includes('198.18.100.1'));
  t.deepEqual(good.upstream, ['203.0.113.0/24']);
  const cases: [string, string, RegExp][] = [
    ['vipports', '198.18.100.2 . tcp . 5223', /set vipports differs from what was applied \(1 missing, 0 foreign elements: missing 198\.18\.100\.2 \. tcp \. 5223\)/],
    ['vips', '198.18.100.1', /set vips differs from what was applied \(1 missing, 0 foreign elements: missing 198\.18\.100\.1\)/],
    ['direct', '203.0.113.11 . tcp . 443', /set direct differs from what was applied \(1 missing, 0 foreign elements: missing 203\.0\.113\.11 \. tcp \. 443\)/],
    ['upstream', '203.0.113.0/24', /set upstream differs from allowedUpstreamNets \(holds nothing; want 203\.0\.113\.0\/24\)/],
  ];
  for (const [name, element, why] of cases) {
    t.true(nft.tables.get('apns_proxy')!.sets.get(name)!.delete(element), `precondition: ${name} held ${element}`);
    const scripts = nft.scripts.length;
    const r = await controller.refresh();
    t.true(r.ok, r.error);
    t.is(r.sync, 'full', name);
    t.regex(r.drift ?? '', why, name);
    t.notRegex(r.drift ?? '', /kernel map differs/, `${name}: only the set is named`);
    t.is(nft.scripts.length, scripts + 1, `${name}: one transaction repairs it`);
    for (const n of names) t.deepEqual(setOf(nft, n), good[n], `${name}: ${n} is exactly what was applied`);
    const steady = await controller.refresh();
    t.is(steady.sync, 'none', `${name}: steady again`);
    t.is(steady.drift, undefined);
    t.is(nft.scripts.length, scripts + 1, `${name}: a refresh without change still sends nothing`);
  }
});

test('a foreign element added to direct (or vipports) is drift: the full sync removes it', async (t) => {
  const { nft, controller, logger } = setup();
  await controller.refresh();
  const good = setOf(nft, 'direct');
  const goodPorts = setOf(nft, 'vipports');
  nft.tables.get('apns_proxy')!.sets.get('direct')!.add('198.51.100.99 . tcp . 22');
  nft.tables.get('apns_proxy')!.sets.get('vipports')!.add('198.51.100.250 . tcp . 5223');
  const r = await controller.refresh();
  t.is(r.sync, 'full');
  t.regex(r.drift ?? '', /set vipports differs from what was applied \(0 missing, 1 foreign elements: foreign 198\.51\.100\.250 \. tcp \. 5223\)/);
  t.regex(r.drift ?? '', /set direct differs from what was applied \(0 missing, 1 foreign elements: foreign 198\.51\.100\.99 \. tcp \. 22\)/);
  t.true(logger.lines.some((l) => /^warn: refresh: .*set direct differs.*; full sync repairs it$/.test(l)), 'the warn line names the set');
  t.deepEqual(setOf(nft, 'direct'), good);
  t.deepEqual(setOf(nft, 'vipports'), goodPorts);
  t.is((await controller.refresh()).sync, 'none');
});

/** From now on, the name of every NftRunner method called on this fake, in order. */
function recordCalls(nft: FakeNft): string[] {
  const calls: string[] = [];
  const runner = nft as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const method of ['apply', 'readMap', 'readTable', 'tableHandle', 'tableOwner']) {
    const original = runner[method]!.bind(nft);
    runner[method] = (...args: unknown[]) => { calls.push(method); return original(...args); };
  }
  return calls;
}

test('the drift check reads the kernel once per cycle: one table listing, no other nft call when nothing changed', async (t) => {
  const { nft, controller } = setup();
  await controller.refresh();
  const calls = recordCalls(nft);
  const r = await controller.refresh();
  t.is(r.sync, 'none');
  t.deepEqual(calls, ['readTable']);
});

test('a full sync that repairs drift uses the drift check\'s listing for ownership and counters: one listing before the transaction', async (t) => {
  const { nft, controller } = setup();
  await controller.refresh();
  nft.bump('apns_proxy', '198.18.100.1 . 0', 7);
  nft.tables.get('apns_proxy')!.sets.get('vipports')!.delete('198.18.100.1 . tcp . 443');
  const calls = recordCalls(nft);
  const r = await controller.refresh();
  t.is(r.sync, 'full');
  t.regex(r.drift ?? '', /set vipports differs/);
  t.deepEqual(calls, ['readTable', 'apply', 'tableHandle'], 'no second and third listing of the same table');
  t.is((await controller.refresh()).sync, 'none', 'the handle read after the transaction is the one the next drift check sees');
  t.is(controller.connectionOffsets.get('1-courier.push.apple.com'), 7, 'the 7 connections counted before the full sync are carried over');
});

test('adoptKernel (one-shot refresh) takes map and sets from one listing: an unchanged kernel gets no transaction, a tampered set is repaired', async (t) => {
  const { nft, make } = setup();
  await make().refresh();
  const good = setOf(nft, 'vipports');
  const oneShot = make();
  await oneShot.adoptKernel();
  const r = await oneShot.refresh();
  t.is(r.sync, 'none');
  t.is(nft.scripts.length, 1);
  nft.tables.get('apns_proxy')!.sets.get('vipports')!.delete('198.18.100.1 . tcp . 443');
  const again = make();
  await again.adoptKernel();  // adopts the tampered set as applied: the delta puts the element back
  const r2 = await again.refresh();
  t.is(r2.sync, 'delta');
  t.deepEqual(setOf(nft, 'vipports'), good);
});
