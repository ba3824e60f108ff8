import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { type Snapshot, desiredMapping } from '../../src/sync/mapping.js';
import { parseMapJson } from '../../src/nft/runner.js';
import { type StateFile, createStateStore, parseState } from '../../src/sync/state.js';
import { formatStatus, statusRows } from '../../src/ops/status.js';
import { FakeClock, nx, ok, testConfig, byCourier } from '../helpers/fixtures.js';
import { elementsFromText } from '../../src/nft/elements.js';

const config = testConfig({ couriers: { first: 1, last: 3 }, refresh: { maxStaleSeconds: 3600 } });

const stateOf = (snap: Snapshot): StateFile => ({ version: 2, savedAt: snap.at, names: [...snap.names.values()], pool: Object.fromEntries(snap.pool) });

function snapshotAt(now: number) {
  return desiredMapping({ config, previous: new Map(), results: byCourier([[1, ok(['203.0.113.10', '203.0.113.11'], 20)], [2, nx]]), now }).snapshot;
}

test('state round-trips through an atomic write and leaves no temp file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'apx-state-'));
  try {
    const store = createStateStore(join(dir, 'sub'));
    t.is(await store.load(), null);
    await store.save(snapshotAt(1000));
    const back = await store.load();
    t.is(back!.savedAt, 1000);
    t.deepEqual(back!.names.find((c) => c.n === 1)!.addresses, ['203.0.113.10', '203.0.113.11']);
    t.deepEqual(await readdir(join(dir, 'sub')), ['state.json']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a corrupt state file is E_STATE naming the file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'apx-state-'));
  try {
    await writeFile(join(dir, 'state.json'), '{"version":1,"couriers":[{"n":"five"}]}');
    const err = await t.throwsAsync(createStateStore(dir).load());
    t.is((err as { code?: string }).code, 'E_STATE');
    t.regex(err!.message, /state\.json: courier entry 0 is malformed/);
    t.throws(() => parseState('nope', 'x'), { message: /x: not valid JSON/ });
    t.throws(() => parseState('{"version":2,"couriers":[]}', 'x'), { message: /not an apns-proxy state file version 1/ });
    t.truthy(await readFile(join(dir, 'state.json')));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('status joins state and the live map, with ages and notes', (t) => {
  const clock = new FakeClock();
  const snap = snapshotAt(clock.now());
  clock.advance(90_000);
  const live = { stamp: 'x', elements: elementsFromText([['198.18.100.1 . 0', '203.0.113.10'], ['198.18.100.1 . 1', '203.0.113.11']]) };
  const rows = statusRows(config, stateOf(snap), live, clock.now());
  t.deepEqual(rows[0], { set: 'couriers', name: '1-courier.push.apple.com', courier: 1, connections: null, vip: '198.18.100.1', state: 'fresh', addresses: ['203.0.113.10', '203.0.113.11'], kernel: ['203.0.113.10', '203.0.113.11'], ageSeconds: 90, ttl: 20, note: '' });
  t.is(rows[1]!.state, 'absent');
  t.is(rows[1]!.note, 'NXDOMAIN');
  t.is(rows[2]!.state, 'absent');
  const text = formatStatus(rows);
  t.regex(text, /^COURIER\s+VIP\s+STATE\s+AGE\s+ADDRESSES\s+NOTE\n1\s+198\.18\.100\.1\s+fresh\s+90s\s+203\.0\.113\.10,203\.0\.113\.11\n/);
});

test('status flags a kernel map that disagrees with state, and ages past maxStale show absent', (t) => {
  const clock = new FakeClock();
  const snap = snapshotAt(clock.now());
  clock.advance(3601_000);
  const live = { stamp: 'x', elements: elementsFromText([['198.18.100.1 . 0', '203.0.113.99']]) };
  const rows = statusRows(config, stateOf(snap), live, clock.now());
  t.is(rows[0]!.state, 'absent');
  t.regex(rows[0]!.note, /kernel map differs from state/);
  t.deepEqual(statusRows(config, null, null, 0)[0]!.kernel, []);
  t.is(statusRows(config, null, undefined, 0)[0]!.kernel, null);
});

test('parseMapJson reads nft -j list map output', (t) => {
  const json = '{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"map": {"family": "inet", "name": "couriers4", "table": "apns_proxy", "comment": "apns-proxy abc", "elem": [[{"concat": ["198.18.100.5", 0]}, "203.0.113.12"], [{"concat": ["198.18.100.5", 1]}, "203.0.113.13"]]}}]}';
  const m = parseMapJson(json);
  t.is(m.stamp, 'apns-proxy abc');
  t.deepEqual([...m.elements.values()], [{ vip: '198.18.100.5', slot: 0, address: '203.0.113.12' }, { vip: '198.18.100.5', slot: 1, address: '203.0.113.13' }]);
  t.deepEqual([...parseMapJson('{"nftables":[{"map":{"name":"couriers4"}}]}').elements], []);
  t.throws(() => parseMapJson('{"nftables":[]}'), { message: /no map object/ });
});

test('status names a never-resolved courier\'s error once', (t) => {
  const snap = desiredMapping({ config, previous: new Map(), results: byCourier([[3, { kind: 'error', code: 'E_TIMEOUT', message: 'no reply' }]]), now: 0 }).snapshot;
  const row = statusRows(config, stateOf(snap), null, 0)[2]!;
  t.is(row.note, 'never resolved, E_TIMEOUT: no reply');
});

test('an oversized or non-file state is E_STATE without being read whole; setAside keeps it for the operator', async (t) => {
  const { MAX_STATE_BYTES } = await import('../../src/sync/state.js');
  const { truncate, mkdir, stat } = await import('node:fs/promises');
  const dir = await mkdtemp(join(tmpdir(), 'apx-state-'));
  try {
    const store = createStateStore(dir);
    await writeFile(join(dir, 'state.json'), '');
    await truncate(join(dir, 'state.json'), 300 * 1024 * 1024);  // sparse: costs no disk
    const err = await t.throwsAsync(store.load());
    t.is((err as { code?: string }).code, 'E_STATE');
    t.regex(err!.message, new RegExp(`is 314572800 bytes, more than a state file can be \\(${MAX_STATE_BYTES}\\)`));
    t.is(await store.setAside!(), join(dir, 'state.json.bad'));
    t.is((await stat(join(dir, 'state.json.bad'))).size, 300 * 1024 * 1024);
    t.is(await store.load(), null);
    await mkdir(join(dir, 'state.json'));
    t.regex((await t.throwsAsync(store.load()))!.message, /is not a regular file/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
