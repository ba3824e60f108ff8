// Fault suite, what we do not own (case 7) and risky configurations (case 8): refused with exit 2
// before anything is programmed; a foreign table and a foreign route stay byte-identical.
import anyTest, { type TestFn } from 'ava';
import type { Lab } from '../../lab/lab.js';
import { baseConfig, cli, newLab, readMap } from './harness.js';

const test = anyTest as TestFn<{ lab: Lab }>;

test.before(async (t) => { t.context = { lab: await newLab() }; });
test.after.always(async (t) => { await t.context.lab?.destroy(); });

/** Removes whatever a failing run left (our table and policy routing), so cases stay independent. */
async function cleanup(lab: Lab): Promise<void> {
  await lab.exec(lab.ns.router, 'nft', ['delete', 'table', 'inet', 'apns_proxy'], { reject: false });
  await lab.exec(lab.ns.router, 'ip', ['rule', 'del', 'fwmark', '42', 'lookup', '42'], { reject: false });
}

test.serial('case 7: nft.table "filter" (a table we do not own): run, refresh, flush exit 2; the table is byte-identical', async (t) => {
  const { lab } = t.context;
  await lab.exec(lab.ns.router, 'nft', ['-f', '-'], { input: 'table inet filter { chain forward { type filter hook forward priority 0; policy accept; }; }\n' });
  const before = (await lab.exec(lab.ns.router, 'nft', ['list', 'table', 'inet', 'filter'])).stdout;
  const config = await baseConfig(lab, { nft: { table: 'filter' } }, 'filter.json');
  try {
    for (const cmd of ['run', 'refresh', 'flush']) {
      const r = await cli(lab, config, [cmd], 8000);
      t.is(r.exitCode, 2, `${cmd} with nft.table "filter" exited ${r.timedOut ? '(still running after 8 s)' : r.exitCode}: ${r.stderr.slice(-300)}`);
      const now = await lab.exec(lab.ns.router, 'nft', ['list', 'table', 'inet', 'filter'], { reject: false });
      t.is(now.stdout, before, `after ${cmd}: table inet filter changed`);
    }
  } finally {
    await lab.exec(lab.ns.router, 'nft', ['delete', 'table', 'inet', 'filter'], { reject: false });
    await cleanup(lab);
  }
});

test.serial('case 7: a route already in fallback.table 42: run exits 2 and the route stays', async (t) => {
  const { lab } = t.context;
  await lab.exec(lab.ns.router, 'ip', ['route', 'add', '203.0.113.0/24', 'dev', 'r1', 'table', '42']);
  const config = await baseConfig(lab, { fallback: { enabled: true, table: 42 } }, 'route.json');
  try {
    const r = await cli(lab, config, ['run'], 8000);
    t.is(r.exitCode, 2, `run with a foreign route in table 42 exited ${r.timedOut ? '(still running after 8 s)' : r.exitCode}: ${r.stderr.slice(-300)}`);
    const routes = await lab.exec(lab.ns.router, 'ip', ['route', 'show', 'table', '42'], { reject: false });
    t.regex(routes.stdout, /203\.0\.113\.0\/24 dev r1/, `table 42 now: ${routes.stdout}`);
  } finally {
    await lab.exec(lab.ns.router, 'ip', ['route', 'flush', 'table', '42'], { reject: false });
    await cleanup(lab);
  }
});

const RISKY: [string, Record<string, unknown>, string][] = [
  ['vipPrefix overlapping the router interface 192.0.2.0/24', { vipPrefix: '192.0.2.0/24' }, 'vipPrefix'],
  ['allowedUpstreamNets covering the VIPs', { allowedUpstreamNets: ['198.18.0.0/15'] }, 'allowedUpstreamNets'],
  ['allowedUpstreamNets 0.0.0.0/0', { allowedUpstreamNets: ['0.0.0.0/0'] }, 'allowedUpstreamNets'],
  ['upstreamDns pointing at our own dns.listen', { upstreamDns: ['192.0.2.1'], dns: { listen: ['192.0.2.1:53'], allowClients: ['192.0.2.0/24'] } }, 'upstreamDns'],
];

for (const [what, overrides, key] of RISKY) {
  test.serial(`case 8: ${what}: run exits 2 naming ${key}, doctor FAILs it, nothing programmed`, async (t) => {
    const { lab } = t.context;
    const config = await baseConfig(lab, overrides, 'risky.json');
    try {
      const r = await cli(lab, config, ['run'], 6000);
      t.is(r.exitCode, 2, `run exited ${r.timedOut ? '(still running after 6 s)' : r.exitCode}`);
      t.true(r.stderr.includes(key), `run's message does not name ${key}: ${r.stderr.slice(-300)}`);
      t.is(await readMap(lab), null, 'nothing programmed: no table inet apns_proxy');
      const d = await cli(lab, config, ['doctor'], 20_000);
      const fail = d.stdout.split('\n').concat(d.stderr.split('\n')).find((l) => /FAIL/.test(l) && l.includes(key));
      t.truthy(fail, `doctor has no FAIL line naming ${key}:\n${d.stdout.slice(-1200)}`);
    } finally {
      await cleanup(lab);
    }
  });
}
