// Fault suite, case 5 for the sets: somebody edits vipports, vips or direct behind the daemon's back
// (`nft delete element … vipports` silently stops DNAT for that VIP and port; a foreign element in
// direct forwards traffic we do not own). The next refresh finds it, repairs it with a full sync in
// that same cycle, names the set in its warn line and counts it in apns_proxy_drift_total; the
// refresh after that finds nothing (the real kernel's listing compares equal to what was applied).
import anyTest, { type TestFn } from 'ava';
import type { Lab, LabProcess } from '../../lab/lab.js';
import { FULL, type KSets, assertMapInvariant, baseConfig, cli, httpGet, metric, newLab, readMap, readSets, startRun, stop } from './harness.js';

const test = anyTest as TestFn<{ lab: Lab; config: string; daemon: LabProcess; map: Map<string, string>; sets: KSets }>;

test.before(async (t) => {
  const lab = await newLab();
  const config = await baseConfig(lab);  // no scheduled cycles: only the refreshes this file asks for
  const daemon = await startRun(lab, config, /refresh: 50 fresh/);
  t.context = { lab, config, daemon, map: (await readMap(lab))!, sets: (await readSets(lab))! };
});
test.after.always(async (t) => { await stop(t.context.daemon); await t.context.lab?.destroy(); });

async function drifts(lab: Lab): Promise<number | undefined> {
  return metric((await httpGet(lab, '/metrics'))?.body ?? '', 'apns_proxy_drift_total');
}

test.serial('case 5 (sets): the table as applied is not drift: a refresh sends nothing and counts nothing', async (t) => {
  const { lab, config, map, sets } = t.context;
  t.is(map.size, FULL);
  t.true(sets.vipports.includes('198.18.100.5 . tcp . 5223'), `vipports: ${sets.vipports.slice(0, 4).join(', ')}`);
  t.true(sets.vips.includes('198.18.100.5'));
  t.true(sets.direct.length > 0);
  t.false(sets.direct.some((d) => d.startsWith('198.51.100.')), 'precondition: nothing outside allowedUpstreamNets in direct');
  t.deepEqual(sets.upstream, ['203.0.113.0/24']);
  const before = await drifts(lab);
  const r = await cli(lab, config, ['refresh']);
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stdout, /none sync/);
  t.is(await drifts(lab), before);
});

const NFT_SET = (name: string) => ['inet', 'apns_proxy', name];
const CASES: [string, string, string[][]][] = [
  ['vipports', 'an element deleted (198.18.100.5 . tcp . 5223: no more DNAT there)', [['delete', 'element', ...NFT_SET('vipports'), '{ 198.18.100.5 . tcp . 5223 }']]],
  ['direct', 'a foreign element added (198.51.100.10 . tcp . 5223, outside allowedUpstreamNets)', [['add', 'element', ...NFT_SET('direct'), '{ 198.51.100.10 . tcp . 5223 }']]],
  ['vips', 'an element deleted (198.18.100.5: no more source NAT for it)', [['delete', 'element', ...NFT_SET('vips'), '{ 198.18.100.5 }']]],
];

for (const [set, what, commands] of CASES) {
  test.serial(`case 5 (sets): ${set}, ${what}: the next refresh repairs it with one full sync and counts it`, async (t) => {
    const { lab, config, daemon, map, sets } = t.context;
    t.deepEqual(await readSets(lab), sets, 'precondition: the sets are as applied');
    const before = (await drifts(lab)) ?? 0;
    for (const c of commands) await lab.exec(lab.ns.router, 'nft', c);
    t.notDeepEqual(await readSets(lab), sets, 'precondition: the tampering changed the sets');
    const from = daemon.lines.length;
    const r = await cli(lab, config, ['refresh']);
    t.is(r.exitCode, 0, `apns-proxy refresh: ${r.stderr}`);
    t.regex(r.stdout, /full sync/, 'the cycle that found the drift repaired it');
    t.deepEqual(await readSets(lab), sets, `${set} is exactly what was applied again`);
    assertMapInvariant(t, await readMap(lab), { equals: map }, `the map after the ${set} repair`);
    const warn = daemon.lines.slice(from).find((l) => l.includes(`set ${set} differs from what was applied`));
    t.truthy(warn, `a warn line names the set (log: ${daemon.lines.slice(from).join(' | ').slice(0, 400)})`);
    t.is(await drifts(lab), before + 1, 'apns_proxy_drift_total counted the cycle');
    const again = await cli(lab, config, ['refresh']);
    t.regex(again.stdout, /none sync/, 'repaired: the next refresh sends nothing');
    t.is(await drifts(lab), before + 1);
  });
}
