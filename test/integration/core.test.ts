// The core end to end: the real `apns-proxy` in a router namespace programs the kernel, and a client
// namespace reaches simulated courier servers through VIPs. Needs root; fails (never skips) without.
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { parseMapJson } from '../../src/nft/runner.js';
import { type Lab, createLab, nodeBin, repoRoot, writeLabConfig } from '../../lab/lab.js';
import { addressByKey } from '../../src/nft/elements.js';

const test = anyTest as TestFn<{ lab: Lab; config: string; stateDir: string }>;
const CLI = join(repoRoot(), 'dist/src/cli.js');

// Courier 5 has three servers, courier 6 one; the rest use the fake's default two addresses each.
const SCENARIO = {
  live: 50,
  addresses: { '5': ['203.0.113.12', '203.0.113.13', '203.0.113.14'], '6': ['203.0.113.20'] },
};

test.before(async (t) => {
  const lab = await createLab({ scenario: SCENARIO });
  const stateDir = join(lab.dir, 'state');
  const config = await writeLabConfig(lab, {
    resolver: { timeoutMs: 300 },
    dns: { listen: [] },
    fallback: { enabled: false },
    refresh: { schedule: '*/2 * * * * *' },  // every 2 s, so the daemon tests do not wait a minute
    log: { level: 'debug' },
  });
  t.context = { lab, config, stateDir };
});

test.after.always(async (t) => {
  await t.context.lab?.destroy();
});

async function cli(t: { context: { lab: Lab; config: string } }, ...args: string[]) {
  return t.context.lab.exec(t.context.lab.ns.router, nodeBin(), [CLI, ...args, '--config', t.context.config], { reject: false, timeoutMs: 30_000 });
}

async function liveMap(lab: Lab) {
  const r = await lab.exec(lab.ns.router, 'nft', ['-j', 'list', 'map', 'inet', 'apns_proxy', 'couriers4'], { reject: false });
  return r.exitCode === 0 ? addressByKey(parseMapJson(r.stdout).elements) : null;
}

function vipsIn(elements: ReadonlyMap<string, string>): Set<number> {
  return new Set([...elements.keys()].map((k) => Number(k.split(' . ')[0]!.split('.')[3])));
}

test.serial('refresh programs every live courier and nothing for NXDOMAIN ones', async (t) => {
  const { lab } = t.context;
  const r = await cli(t, 'refresh');
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stdout, /50 fresh, 0 stale, 10 absent; full sync/);
  const map = (await liveMap(lab))!;
  t.deepEqual([...vipsIn(map)].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i + 1));
  t.is(map.size, 50 * 8);
  t.false([...map.keys()].some((k) => k.startsWith('198.18.100.51 ')), 'courier 51 (NXDOMAIN) has no element');
  t.deepEqual([...new Set([0, 1, 2, 3, 4, 5, 6, 7].map((s) => map.get(`198.18.100.5 . ${s}`)))].sort(), SCENARIO.addresses['5']);
});

test.serial('a second refresh with no change sends no transaction', async (t) => {
  const r = await cli(t, 'refresh');
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stdout, /none sync/);
});

test.serial('a client reaches courier N through PREFIX.N on 5223 and 443, spread over all its addresses', async (t) => {
  const { lab } = t.context;
  for (const port of [5223, 443]) {
    const one = await lab.probe(['connect', '198.18.100.6', String(port)]);
    t.deepEqual(one.hellos, [`203.0.113.20:${port}`]);
  }
  const many = await lab.probe(['connect', '198.18.100.5', '5223', '--count', '64']);
  t.is(many.errors.length, 0, JSON.stringify(many.errors));
  t.deepEqual([...new Set(many.hellos as string[])].sort(), SCENARIO.addresses['5'].map((a) => `${a}:5223`), 'every address of courier 5 answered');
  t.true(lab.courierConnections().some((c) => c.conn === '203.0.113.20:443' && c.peer.startsWith('203.0.113.1:')), 'masqueraded to the router');
});

test.serial('a VIP without a mapping is not forwarded to any courier', async (t) => {
  const { lab } = t.context;
  const before = lab.courierConnections().length;
  const r = await lab.probe(['connect', '198.18.100.51', '5223', '--timeout-ms', '1500']);
  t.is(r.hellos.length, 0);
  t.is(r.errors.length, 1);
  t.is(lab.courierConnections().length, before);
});

test.serial('status shows couriers from state and kernel', async (t) => {
  const r = await cli(t, 'status', '--json');
  t.is(r.exitCode, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { kernelTable: string; couriers: { courier: number; state: string; kernel: string[]; note: string }[] };
  t.is(s.kernelTable, 'present');
  const c5 = s.couriers.find((c) => c.courier === 5)!;
  t.is(c5.state, 'fresh');
  t.deepEqual(c5.kernel, SCENARIO.addresses['5']);
  t.is(s.couriers.find((c) => c.courier === 51)!.note, 'NXDOMAIN');
  const text = await cli(t, 'status');
  t.regex(text.stdout, /\n5\s+198\.18\.100\.5\s+fresh\s+\d+s\s+203\.0\.113\.12,203\.0\.113\.13,203\.0\.113\.14\n/);
});

test.serial('upstream DNS silent: refresh fails loudly and keeps last-known-good', async (t) => {
  const { lab } = t.context;
  const before = await liveMap(lab);
  await lab.setScenario({ ...SCENARIO, mode: 'silent' });
  try {
    const r = await cli(t, 'refresh');
    t.is(r.exitCode, 1);
    t.regex(r.stderr, /resolution failed for 60 courier\(s\): E_TIMEOUT for 1-60/);
    t.regex(r.stdout, /0 fresh, 50 stale, 10 absent/);
    t.deepEqual(await liveMap(lab), before);
    const c = await lab.probe(['connect', '198.18.100.6', '5223']);
    t.deepEqual(c.hellos, ['203.0.113.20:5223']);
  } finally {
    await lab.setScenario(SCENARIO);
  }
});

test.serial('an established connection survives a refresh that changes its courier', async (t) => {
  const { lab } = t.context;
  const hold = lab.spawn(lab.ns.client, nodeBin(), [join(repoRoot(), 'dist/test/fixtures/probe.js'), 'hold', '198.18.100.6', '5223']);
  try {
    // the probe prints one JSON line, a hello or an error (e.g. {"error":"ECONNREFUSED"}): judge that line, so a failure says why
    t.regex(await hold.waitForLine(/^\{/, 8000), /"hello":"203\.0\.113\.20/);
    await lab.setScenario({ ...SCENARIO, addresses: { ...SCENARIO.addresses, '6': ['203.0.113.21'] } });
    const r = await cli(t, 'refresh');
    t.is(r.exitCode, 0, r.stderr);
    t.regex(r.stdout, /courier 6: 203\.0\.113\.20 → 203\.0\.113\.21/);
    t.regex(r.stdout, /delta sync \(16 elements\)/);
    hold.write('still-here\n');
    t.regex(await hold.waitForLine(/"echo"/, 5000), /still-here/);
    const fresh = await lab.probe(['connect', '198.18.100.6', '5223']);
    t.deepEqual(fresh.hellos, ['203.0.113.21:5223'], 'new connections follow the new address');
  } finally {
    hold.kill();
    await lab.setScenario(SCENARIO);
    await cli(t, 'refresh');
  }
});

test.serial('the daemon killed with SIGKILL: the kernel keeps forwarding', async (t) => {
  const { lab } = t.context;
  const daemon = lab.spawn(lab.ns.router, nodeBin(), [CLI, 'run', '--config', t.context.config]);
  try {
    await daemon.waitForLine(/refresh: \d+ fresh/, 15_000);
    daemon.kill('SIGKILL');
    await daemon.exited;
    const c = await lab.probe(['connect', '198.18.100.5', '443']);
    t.is(c.hellos.length, 1);
    t.true(SCENARIO.addresses['5'].map((a) => `${a}:443`).includes(c.hellos[0]));
  } finally {
    daemon.kill('SIGKILL');
  }
});

test.serial('run with a state file and an unreachable upstream programs the map from state first', async (t) => {
  const { lab } = t.context;
  t.is((await cli(t, 'flush')).exitCode, 0);
  t.is(await liveMap(lab), null, 'table gone after flush');
  await lab.setScenario({ ...SCENARIO, mode: 'silent' });
  const daemon = lab.spawn(lab.ns.router, nodeBin(), [CLI, 'run', '--config', t.context.config]);
  try {
    await daemon.waitForLine(/loaded last-known-good for 50 couriers/, 10_000);
    await daemon.waitForLine(/refresh: 0 fresh, 50 stale, 10 absent; full sync/, 10_000);
    t.is((await liveMap(lab))!.size, 400);
    const c = await lab.probe(['connect', '198.18.100.6', '5223']);
    t.deepEqual(c.hellos, ['203.0.113.20:5223']);
    // A one-shot refresh while the daemon runs is carried out by the daemon (one writer).
    const r = await cli(t, 'refresh');
    t.is(r.exitCode, 1);
    t.regex(r.stderr, /E_TIMEOUT/);
    await daemon.waitForLine(/resolution failed for 60 courier/, 10_000);
  } finally {
    daemon.kill('SIGTERM');
    t.is(await daemon.exited, 0, daemon.stderr());
    t.regex(daemon.stderr(), /stopped; the kernel map stays in place/);
    t.is((await liveMap(lab))!.size, 400, 'SIGTERM leaves the map in place');
    await lab.setScenario(SCENARIO);
  }
});

test.serial('SIGHUP reloads the configuration; a bad one is refused and the old kept', async (t) => {
  const { lab, config } = t.context;
  const daemon = lab.spawn(lab.ns.router, nodeBin(), [CLI, 'run', '--config', config]);
  const { readFile } = await import('node:fs/promises');
  const original = await readFile(config, 'utf8');
  try {
    await daemon.waitForLine(/refresh: 50 fresh/, 15_000);
    await writeFile(config, JSON.stringify({ ...JSON.parse(original), couriers: { first: 1, last: 999 } }));
    daemon.kill('SIGHUP');
    await daemon.waitForLine(/reload: config: couriers\.last: does not fit vipPrefix 198\.18\.100\.0\/24: 1\.\.254 at most .*, got 999; keeping/, 5000);
    await writeFile(config, JSON.stringify({ ...JSON.parse(original), couriers: { first: 1, last: 10 } }));
    daemon.kill('SIGHUP');
    await daemon.waitForLine(/refresh: 10 fresh, 0 stale, 0 absent; full sync/, 10_000);
    t.is((await liveMap(lab))!.size, 80);
  } finally {
    await writeFile(config, original);
    daemon.kill('SIGTERM');
    await daemon.exited;
  }
});

test.serial('a second run with the same state directory refuses to start and touches nothing', async (t) => {
  const { lab, config } = t.context;
  const daemon = lab.spawn(lab.ns.router, nodeBin(), [CLI, 'run', '--config', config]);
  try {
    await daemon.waitForLine(/refresh: 50 fresh/, 15_000);
    const before = await lab.exec(lab.ns.router, 'nft', ['-j', 'list', 'tables', 'inet']);
    const second = await lab.exec(lab.ns.router, nodeBin(), [CLI, 'run', '--config', config], { reject: false, timeoutMs: 20_000 });
    t.is(second.exitCode, 1);
    t.regex(second.stderr, /apns-proxy: another apns-proxy run is already active \((it answers on .*control\.sock|pid \d+ holds .*run\.lock)\)/);
    t.is((await lab.exec(lab.ns.router, 'nft', ['-j', 'list', 'tables', 'inet'])).stdout, before.stdout, 'no full sync: same table handle');
    const r = await cli(t, 'refresh');
    t.is(r.exitCode, 0, 'the first daemon still owns its control socket');
  } finally {
    daemon.kill('SIGTERM');
    await daemon.exited;
  }
});

test.serial('render needs no root and prints what the kernel accepts', async (t) => {
  const { lab, config } = t.context;
  await chmod(lab.dir, 0o755);  // the unprivileged user must be able to read the config
  const r = await lab.exec(lab.ns.router, 'setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', nodeBin(), CLI, 'render', '--config', config], { reject: false });
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stdout, /^add table inet apns_proxy\ndelete table inet apns_proxy\ntable inet apns_proxy \{/);
  const check = await lab.exec(lab.ns.router, 'nft', ['-c', '-f', '-'], { input: r.stdout, reject: false });
  t.is(check.exitCode, 0, check.stderr);
});

test.serial('bad config: exit 2 with the key and value named', async (t) => {
  const { lab } = t.context;
  const bad = join(lab.dir, 'bad.json');
  await writeFile(bad, JSON.stringify({ vipPrefix: '198.18.100.7/24' }));
  const r = await lab.exec(lab.ns.router, nodeBin(), [CLI, 'refresh', '--config', bad], { reject: false });
  t.is(r.exitCode, 2);
  t.is(r.stderr.trim(), 'apns-proxy: config: vipPrefix: has host bits set after the prefix length, got "198.18.100.7/24"');
});
