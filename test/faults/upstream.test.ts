// Fault suite, case 11 (held): a hostile upstream. CNAME loops, 1000 A records, addresses outside the
// allowed net, replies with a wrong ID or from a wrong port, TC then a closed TCP connection. After the
// refresh the map holds only allowed addresses, bad couriers keep their last-known-good, and DNS
// answers allowed clients throughout.
import anyTest, { type TestFn } from 'ava';
import type { Lab, LabProcess } from '../../lab/lab.js';
import { nodeBin } from '../../lab/lab.js';
import type { Scenario } from '../fixtures/fake-apple.js';
import { TOOL, alive, assertMapInvariant, baseConfig, cli, newLab, readMap, startRun, stop } from './harness.js';

const test = anyTest as TestFn<{ lab: Lab; config: string; daemon: LabProcess }>;

test.before(async (t) => {
  const lab = await newLab();
  const config = await baseConfig(lab);
  const daemon = await startRun(lab, config, /refresh: 50 fresh/);
  t.context = { lab, config, daemon };
});
test.after.always(async (t) => { await stop(t.context.daemon); await t.context.lab?.destroy(); });

const slots = (map: ReadonlyMap<string, string>, n: number) =>
  new Map([...map].filter(([k]) => k.startsWith(`198.18.100.${n} . `)));

const HOSTILE: [string, Scenario, boolean][] = [
  // [what, scenario for courier 3, must courier 3 keep exactly its old addresses?]
  ['a CNAME loop', { perCourier: { '3': 'cname-loop' } }, true],
  ['1000 A records', { perCourier: { '3': 'many-a' } }, false],
  ['addresses outside 203.0.113.0/24 only', { addresses: { '3': ['198.51.100.10', '8.8.8.8'] } }, true],
  ['outside addresses next to an allowed one', { addresses: { '3': ['198.51.100.10', '8.8.8.8', '203.0.113.44'] } }, false],
  ['replies with a wrong ID', { perCourier: { '3': 'wrong-id' } }, true],
  ['replies from a wrong port', { perCourier: { '3': 'wrong-port' } }, true],
  ['TC set, then the TCP connection closed', { perCourier: { '3': 'tc-close' } }, true],
];

for (const [what, scenario, keepsOld] of HOSTILE) {
  test.serial(`case 11 (held): courier 3 gets ${what}: only allowed addresses, last-known-good kept, DNS answers`, async (t) => {
    const { lab, config, daemon } = t.context;
    await lab.setScenario({});
    t.is((await cli(lab, config, ['refresh'])).exitCode, 0, 'a clean refresh first');
    const before = (await readMap(lab))!;
    await lab.setScenario(scenario);
    try {
      const asker = lab.spawn(lab.ns.client, nodeBin(), [TOOL, 'ask', '192.0.2.1', '3-courier.push.apple.com', '--count', '10', '--interval-ms', '200', '--timeout-ms', '1000']);
      const r = await cli(lab, config, ['refresh']);
      await asker.exited;
      const after = await readMap(lab);
      assertMapInvariant(t, after, { atLeast: before }, `after a refresh where courier 3 got ${what} (refresh said: ${r.stdout.trim().split('\n').pop()} ${r.stderr.trim().slice(-200)})`);
      // the hostile answer really reached the resolver: courier 3 is no longer fresh (stale on last-known-good)
      if (keepsOld) t.regex(r.stdout, /49 fresh, 1 stale/, `refresh: ${r.stdout} ${r.stderr}`);
      if (keepsOld) assertMapInvariant(t, slots(after!, 3), { equals: slots(before, 3) }, 'courier 3 keeps its last-known-good');
      const last = [...asker.lines].reverse().find((l) => l.startsWith('{'));
      const results = (JSON.parse(last ?? '{"results":[]}') as { results: { rcode: string; answers: string[] }[] }).results;
      t.is(results.length, 10);
      t.deepEqual(results.filter((x) => x.rcode !== 'NOERROR' || x.answers.join() !== '198.18.100.3'), [], 'DNS answered the VIP throughout');
      t.true(await alive(daemon));
    } finally {
      await lab.setScenario({});
    }
  });
}
