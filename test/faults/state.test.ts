// Fault suite, the state file: unusable at start (case 1), poisoned last-known-good (case 4),
// start-up is not a successful refresh (10c), a huge state file (10d), status with a corrupt one (10f).
// Every start here has upstream DNS silent: the kernel map is the only truth left.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import anyTest, { type TestFn } from 'ava';
import type { Lab, LabProcess } from '../../lab/lab.js';
import {
  FULL, alive, assertDnsAnswers, assertMapInvariant, assertSamplesInvariant, baseConfig, cli, httpGet, metric,
  newLab, primeMap, readMap, sampleMap, sleep, spawnRun, stateDir, stop,
} from './harness.js';

const test = anyTest as TestFn<{ lab: Lab; config: string }>;
// courier 7 and 8 have an address in the upper half of 203.0.113.0/24 (for the narrowing case)
const SCENARIO = { addresses: { '7': ['203.0.113.20', '203.0.113.200'], '8': ['203.0.113.210'] } };
const SILENT = { ...SCENARIO, mode: 'silent' as const };
let daemon: LabProcess | undefined;

test.before(async (t) => {
  const lab = await newLab(SCENARIO);
  t.context = { lab, config: await baseConfig(lab) };
});

test.afterEach.always(async () => {
  await stop(daemon);
  daemon = undefined;
});

test.after.always(async (t) => {
  await stop(daemon);
  await t.context.lab?.destroy();
});

const statePath = (lab: Lab) => join(stateDir(lab), 'state.json');

function couriersWithAddresses(text: string): number {
  // version 2 lists every name (couriers have their N); version 1 listed couriers
  const doc = JSON.parse(text) as { names?: { n?: number | null; addresses?: unknown[] }[]; couriers?: { addresses?: unknown[] }[] };
  const couriers = doc.names?.filter((c) => typeof c.n === 'number') ?? doc.couriers ?? [];
  return couriers.filter((c) => Array.isArray(c.addresses) && c.addresses.length > 0).length;
}

const BAD_STATES: [string, (file: string) => Promise<void>][] = [
  ['corrupt JSON', (f) => writeFile(f, '{"version":1,"couriers":[{"n":1,"addre')],
  ['{}', (f) => writeFile(f, '{}\n')],
  ['a wrong version', async (f) => {
    const doc = JSON.parse(await readFile(f, 'utf8')) as Record<string, unknown>;
    await writeFile(f, JSON.stringify({ ...doc, version: 99 }));
  }],
  ['4 KB of random bytes', (f) => writeFile(f, randomBytes(4096))],
  ['a directory', async (f) => { await rm(f, { force: true }); await mkdir(f); await writeFile(join(f, 'x'), 'x'); }],
];

for (const [what, spoil] of BAD_STATES) {
  test.serial(`case 1: state.json is ${what}, upstream silent: run adopts the live kernel map`, async (t) => {
    const { lab, config } = t.context;
    const lkg = await primeMap(lab, config, SCENARIO);
    const before = couriersWithAddresses(await readFile(statePath(lab), 'utf8'));
    await spoil(statePath(lab));
    await lab.setScenario(SILENT);
    try {
      daemon = spawnRun(lab, config);
      const samples = await sampleMap(lab, 3000);
      assertSamplesInvariant(t, samples, { atLeast: lkg }, 'during the first 3 s');
      t.true(await alive(daemon), `run exited: ${daemon.stderr().slice(-800)}`);
      const adopted = daemon.lines.find((l) => /adopted \d+ couriers? from the live kernel map/.test(l));
      t.truthy(adopted, `no "adopted N couriers from the live kernel map" line; log:\n${daemon.lines.slice(0, 12).join('\n')}`);
      await assertDnsAnswers(t, lab);
      assertMapInvariant(t, await readMap(lab), { atLeast: lkg }, 'after 3 s');
      await stop(daemon);
      daemon = undefined;
      const st = await stat(statePath(lab)).catch(() => null);
      if (st?.isFile()) {
        const text = await readFile(statePath(lab), 'utf8');
        let after = -1;
        try { after = couriersWithAddresses(text); } catch { /* still the corrupt file: not written */ after = Number.POSITIVE_INFINITY; }
        t.true(after >= before, `state.json written afterwards lists ${after} couriers with addresses, fewer than the ${before} before`);
      }
    } finally {
      await rm(statePath(lab), { recursive: true, force: true });
      await lab.setScenario(SCENARIO);
    }
  });
}

test.serial('case 4: a last-known-good with addresses outside allowedUpstreamNets is never programmed', async (t) => {
  const { lab, config } = t.context;
  await primeMap(lab, config, SCENARIO);
  const doc = JSON.parse(await readFile(statePath(lab), 'utf8')) as { names: { n: number | null; addresses: string[] }[] };
  const poison: Record<number, string> = { 1: '8.8.8.8', 2: '127.0.0.1', 3: '198.18.100.7' };
  for (const c of doc.names) if (c.n !== null && poison[c.n]) c.addresses = [...c.addresses, poison[c.n]!];
  await writeFile(statePath(lab), JSON.stringify(doc, null, 1));
  await lab.exec(lab.ns.router, 'nft', ['delete', 'table', 'inet', 'apns_proxy']);  // start from state alone
  await lab.setScenario(SILENT);
  try {
    daemon = spawnRun(lab, config);
    const samples = await sampleMap(lab, 3000);
    const nonNull = samples.filter((s) => s !== null);
    t.true(nonNull.length > 0, 'the map was programmed from state');
    assertSamplesInvariant(t, nonNull, { never: Object.values(poison), atLeast: 8 * 47 }, 'programmed from a poisoned state');
  } finally {
    await lab.setScenario(SCENARIO);
  }
});

test.serial('case 4: narrowing allowedUpstreamNets on reload while upstream is silent', async (t) => {
  const { lab, config } = t.context;
  await primeMap(lab, config, SCENARIO);
  const original = await readFile(config, 'utf8');
  try {
    daemon = spawnRun(lab, config);
    await daemon.waitForLine(/running: /, 15_000);  // signal handlers are in place (a SIGHUP before is case 3)
    await daemon.waitForLine(/refresh: 50 fresh/, 15_000);
    t.true([...(await readMap(lab))!.values()].includes('203.0.113.200'), 'precondition: courier 7 has an upper-half address');
    await lab.setScenario(SILENT);
    await writeFile(config, JSON.stringify({ ...JSON.parse(original), allowedUpstreamNets: ['203.0.113.0/25'] }, null, 1));
    const from = daemon.lines.length;
    daemon.kill('SIGHUP');
    await daemon.waitForLine(/reload: configuration reloaded/, 5000, from);
    await daemon.waitForLine(/refresh: \d+ fresh/, 10_000, from);
    assertMapInvariant(t, await readMap(lab), { allowed: ['203.0.113.0/25'] }, 'after narrowing to 203.0.113.0/25');
  } finally {
    await writeFile(config, original);
    await lab.setScenario(SCENARIO);
  }
});

test.serial('case 10c: a restart with upstream silent is not a successful refresh', async (t) => {
  const { lab, config } = t.context;
  await primeMap(lab, config, SCENARIO);
  await lab.setScenario(SILENT);
  try {
    daemon = spawnRun(lab, config);
    await daemon.waitForLine(/refresh: 0 fresh/, 10_000);
    const h = await httpGet(lab, '/healthz');
    t.truthy(h, '/healthz answers');
    t.is((JSON.parse(h!.body) as { lastSuccessfulRefresh: unknown }).lastSuccessfulRefresh, null, `/healthz: ${h!.body}`);
    const m = await httpGet(lab, '/metrics');
    const ts = metric(m!.body, 'apns_proxy_last_refresh_success_timestamp_seconds');
    t.true(ts === undefined || ts === 0, `apns_proxy_last_refresh_success_timestamp_seconds is ${String(ts)}, want 0 or absent`);
  } finally {
    await lab.setScenario(SCENARIO);
  }
});

test.serial('case 10d: a 300 MB state.json: run starts within 5 s, answers DNS, map intact', async (t) => {
  const { lab, config } = t.context;
  const lkg = await primeMap(lab, config, SCENARIO);
  await rm(statePath(lab), { force: true });
  await lab.exec('', 'truncate', ['-s', '300M', statePath(lab)]);
  await lab.setScenario(SILENT);
  try {
    const started = Date.now();
    daemon = spawnRun(lab, config);
    const running = await daemon.waitForLine(/running: /, 5000).then(() => true, (e: Error) => e.message);
    t.is(running, true, `run did not start within 5 s (${Date.now() - started} ms)`);
    await assertDnsAnswers(t, lab);
    assertMapInvariant(t, await readMap(lab), { atLeast: lkg }, 'with a 300 MB state file');
  } finally {
    await rm(statePath(lab), { force: true });
    await lab.setScenario(SCENARIO);
  }
});

test.serial('case 10f: status with a corrupt state.json exits 0 and shows the kernel addresses', async (t) => {
  const { lab, config } = t.context;
  const lkg = await primeMap(lab, config, SCENARIO);
  await writeFile(statePath(lab), 'not json at all');
  const r = await cli(lab, config, ['status']);
  t.is(r.exitCode, 0, `status exited ${r.exitCode}: ${r.stderr.slice(-500)}`);
  const five = [...new Set([0, 1, 2, 3, 4, 5, 6, 7].map((s) => lkg.get(`198.18.100.5 . ${s}`)!))].sort();
  t.regex(r.stdout, new RegExp(`\\n5\\s+198\\.18\\.100\\.5\\s+.*${five.join(',').replace(/\./g, '\\.')}`), `status output:\n${r.stdout.slice(0, 600)}`);
  await sleep(0);
});
