// The fallback end to end: couriers the kernel map cannot serve are caught by TPROXY and served by
// the daemon's transparent listener and native relay. Needs root; fails (never skips) without.
import anyTest, { type TestFn } from 'ava';
import { parseMapJson } from '../../src/nft/runner.js';
import { type Lab, type LabProcess, createLab, distPath, nodeBin, writeLabConfig } from '../../lab/lab.js';

const test = anyTest as TestFn<{ lab: Lab; config: string; daemon: LabProcess }>;
const CLI = distPath('src/cli.js');

// Courier 7 is silent when the daemon first resolves; courier 8 only ever answers with an
// address outside allowedUpstreamNets (198.51.100.10 is a live server in the upstream namespace).
const BASE = { live: 50, addresses: { '7': ['203.0.113.40', '203.0.113.41'], '8': ['198.51.100.10'] } };

test.before(async (t) => {
  const lab = await createLab({ scenario: { ...BASE, perCourier: { '7': 'silent' } } });
  const config = await writeLabConfig(lab, {
    resolver: { timeoutMs: 300 },
    dns: { listen: [] },
    refresh: { schedule: '0 0 1 1 *' },  // once a year: only start-up and at-connect refreshes in this test
    fallback: { enabled: true, resolveTimeoutMs: 500 },
    log: { level: 'debug' },
  });
  const daemon = lab.spawn(lab.ns.router, nodeBin(), [CLI, 'run', '--config', config]);
  await daemon.waitForLine(/refresh: 48 fresh, 0 stale, 12 absent/, 15_000);
  await daemon.waitForLine(/fallback: listening/, 5_000);
  t.context = { lab, config, daemon };
});

test.after.always(async (t) => {
  t.context.daemon?.kill('SIGTERM');
  await t.context.daemon?.exited;
  await t.context.lab?.destroy();
});

async function mapKeys(lab: Lab): Promise<string[]> {
  const r = await lab.exec(lab.ns.router, 'nft', ['-j', 'list', 'map', 'inet', 'apns_proxy', 'couriers4']);
  return [...parseMapJson(r.stdout).elements.keys()];
}

const fallbackLines = (d: LabProcess, n: number) => d.lines.filter((l) => new RegExp(`fallback #\\d+: courier ${n} `).test(l));

test.serial('policy routing for TPROXY is installed with the ruleset', async (t) => {
  const { lab } = t.context;
  const rules = await lab.exec(lab.ns.router, 'ip', ['-4', 'rule', 'show']);
  t.regex(rules.stdout, /fwmark 0x2a lookup 42/);
  const routes = await lab.exec(lab.ns.router, 'ip', ['-4', 'route', 'show', 'table', '42']);
  t.regex(routes.stdout, /local default dev lo/);
});

test.serial('an address outside allowedUpstreamNets is never connected to', async (t) => {
  const { lab, daemon } = t.context;
  t.false((await mapKeys(lab)).some((k) => k.startsWith('198.18.100.8 ')));
  const r = await lab.probe(['connect', '198.18.100.8', '5223', '--timeout-ms', '2000']);
  t.is(r.hellos.length, 0);
  t.true(r.errors[0].ms < 1000, `closed after ${r.errors[0].ms} ms`);
  await daemon.waitForLine(/fallback #\d+: courier 8: no address inside allowedUpstreamNets; connection reset/, 2000);
  t.false(lab.courierConnections().some((c) => c.conn.startsWith('198.51.100.10:')), 'never dialled');
});

test.serial('NXDOMAIN courier: the connection is closed within a second', async (t) => {
  const { lab, daemon } = t.context;
  const r = await lab.probe(['connect', '198.18.100.55', '5223', '--timeout-ms', '3000']);
  t.is(r.hellos.length, 0);
  t.is(r.errors[0].code, 'ECONNRESET');
  t.true(r.errors[0].ms < 1000, `closed after ${r.errors[0].ms} ms`);
  await daemon.waitForLine(/fallback #\d+: courier 55: courier does not exist \(NXDOMAIN\); connection reset/, 2000);
});

test.serial('a courier that failed at refresh time is served through userspace once it answers, then the kernel takes over', async (t) => {
  const { lab, daemon } = t.context;
  t.false((await mapKeys(lab)).some((k) => k.startsWith('198.18.100.7 ')), 'no kernel mapping for courier 7');
  await lab.setScenario(BASE);  // courier 7 answers again
  const before = lab.courierConnections().length;
  const r = await lab.probe(['transfer', '198.18.100.7', '5223', '--bytes', String(10 * 1024 * 1024)], 60_000);
  t.true(r.sha256Match, JSON.stringify(r));
  t.is(r.sent, 10 * 1024 * 1024);
  t.is(r.received, 10 * 1024 * 1024);
  t.true(['203.0.113.40:5223', '203.0.113.41:5223'].includes(r.hello));
  const seen = lab.courierConnections().slice(before);
  t.true(seen.some((c) => c.conn === r.hello && c.peer.startsWith('203.0.113.1:')), 'the courier server saw the relayed connection');
  t.is(fallbackLines(daemon, 7).length, 1, 'it went through the fallback');
  t.regex(fallbackLines(daemon, 7)[0]!, /→ 203\.0\.113\.4[01]:5223 \(resolved\)/);

  // The at-connect resolution asked for a refresh: the kernel map now has courier 7.
  await daemon.waitForLine(/courier 7: none → 203\.0\.113\.40,203\.0\.113\.41/, 5000);
  t.true((await mapKeys(lab)).some((k) => k.startsWith('198.18.100.7 ')));
  const next = await lab.probe(['connect', '198.18.100.7', '443', '--count', '5']);
  t.is(next.hellos.length, 5);
  t.is(fallbackLines(daemon, 7).length, 1, 'next connections went through the kernel, not the fallback');
});

test.serial('flush removes the table, the ip rule and the route', async (t) => {
  const { lab, config } = t.context;
  const r = await lab.exec(lab.ns.router, nodeBin(), [CLI, 'flush', '--config', config], { reject: false });
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stdout, /removed table inet apns_proxy and the fallback's policy routing \(fwmark 0x2a table 42\)/);
  t.notRegex((await lab.exec(lab.ns.router, 'ip', ['-4', 'rule', 'show'])).stdout, /fwmark 0x2a/);
  t.is((await lab.exec(lab.ns.router, 'ip', ['-4', 'route', 'show', 'table', '42'])).stdout.trim(), '');
  t.is((await lab.exec(lab.ns.router, 'nft', ['list', 'tables'])).stdout.trim(), '');
  const again = await lab.exec(lab.ns.router, nodeBin(), [CLI, 'flush', '--config', config], { reject: false });
  t.is(again.exitCode, 0, 'flush is idempotent');
});
