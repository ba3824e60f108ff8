// Fault suite, case 5: somebody edits our map behind the daemon's back (flush, a redirected element,
// a foreign element). Within the next cycles the map is what the daemon applied again, the drift is
// counted, and the repair is a sync (not a "none sync" that left the map alone). Cycles run every 2 s,
// so the first cycle logged after the tampering may have read the table before it: the test looks for
// the repairing cycle among those logged, not at the first one.
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
    const driftBefore = metric((await httpGet(lab, '/metrics'))?.body ?? '', 'apns_proxy_drift_total') ?? 0;
    const from = daemon.lines.length;
    for (const c of commands) await lab.exec(lab.ns.router, 'nft', c);
    t.true(mapProblems(await readMap(lab), { equals: applied }).length > 0, 'precondition: the tampering changed the map');
    const asked = await cli(lab, config, ['refresh']);
    t.is(asked.exitCode, 0, `apns-proxy refresh: ${asked.stderr}`);
    const repaired = await waitFor(async () => mapProblems(await readMap(lab), { equals: applied }).length === 0, 5000, 250);
    assertMapInvariant(t, await readMap(lab), { equals: applied }, `5 s after ${what}`);
    t.true(repaired);
    const cycles = daemon.lines.slice(from).filter((l) => /refresh: \d+ fresh/.test(l));
    t.true(cycles.length > 0, 'a cycle ran');
    t.true(cycles.some((l) => !/none sync/.test(l)), `no cycle after the tampering synced: ${cycles.join(' | ')}`);
    const drift = metric((await httpGet(lab, '/metrics'))?.body ?? '', 'apns_proxy_drift_total') ?? 0;
    t.true(drift > driftBefore, `apns_proxy_drift_total went from ${driftBefore} to ${drift}: this drift was not counted`);
  });
}
