// Fault suite, case 5: somebody edits our map behind the daemon's back (flush, a redirected element,
// a foreign element). Within the next cycles the map is what the daemon applied again, the drift is
// counted, and the repairing cycle is not a "none sync".
import anyTest, { type TestFn } from 'ava';
import type { Lab, LabProcess } from '../../lab/lab.js';
import { FULL, assertMapInvariant, baseConfig, cli, httpGet, mapProblems, metric, newLab, readMap, startRun, stop, waitFor } from './harness.js';

const test = anyTest as TestFn<{ lab: Lab; config: string; daemon: LabProcess; applied: Map<string, string> }>;

test.before(async (t) => {
  const lab = await newLab();
  const config = await baseConfig(lab, { refresh: { schedule: '*/2 * * * * *' } });
  const daemon = await startRun(lab, config, /refresh: 50 fresh/);
  const applied = (await readMap(lab))!;
  t.context = { lab, config, daemon, applied };
});
test.after.always(async (t) => { await stop(t.context.daemon); await t.context.lab?.destroy(); });

const NFT_MAP = ['inet', 'apns_proxy', 'couriers4'];
const CASES: [string, string[][]][] = [
  ['(a) the map flushed', [['flush', 'map', ...NFT_MAP]]],
  ['(b) an element redirected to 198.51.100.10', [
    ['delete', 'element', ...NFT_MAP, '{ 198.18.100.5 . 3 }'],
    ['add', 'element', ...NFT_MAP, '{ 198.18.100.5 . 3 : 198.51.100.10 }'],
  ]],
  ['(c) a foreign element 198.18.100.200 . 0 : 198.51.100.10', [['add', 'element', ...NFT_MAP, '{ 198.18.100.200 . 0 : 198.51.100.10 }']]],
];

for (const [what, commands] of CASES) {
  test.serial(`case 5: drift inside the table, ${what}: repaired within 5 s`, async (t) => {
    const { lab, config, daemon, applied } = t.context;
    t.is(applied.size, FULL);
    if (mapProblems(await readMap(lab), { equals: applied }).length > 0) {
      // an earlier case was not repaired: put the applied map back by hand so this case stands alone
      const elems = [...applied].map(([k, v]) => `${k} : ${v}`).join(', ');
      await lab.exec(lab.ns.router, 'nft', ['-f', '-'], { input: `flush map inet apns_proxy couriers4\nadd element inet apns_proxy couriers4 { ${elems} }\n` });
    }
    const from = daemon.lines.length;
    for (const c of commands) await lab.exec(lab.ns.router, 'nft', c);
    t.true(mapProblems(await readMap(lab), { equals: applied }).length > 0, 'precondition: the tampering changed the map');
    const asked = await cli(lab, config, ['refresh']);
    t.is(asked.exitCode, 0, `apns-proxy refresh: ${asked.stderr}`);
    const repaired = await waitFor(async () => mapProblems(await readMap(lab), { equals: applied }).length === 0, 5000, 250);
    assertMapInvariant(t, await readMap(lab), { equals: applied }, `5 s after ${what}`);
    t.true(repaired);
    const cycle = daemon.lines.slice(from).find((l) => /refresh: \d+ fresh/.test(l));
    t.truthy(cycle, 'a cycle ran');
    t.notRegex(cycle ?? '', /none sync/, `the first cycle after the tampering reported "none sync": ${cycle}`);
    const m = await httpGet(lab, '/metrics');
    const drift = metric(m?.body ?? '', 'apns_proxy_drift_total');
    t.true((drift ?? 0) > 0, `apns_proxy_drift_total is ${String(drift)}`);
  });
}
