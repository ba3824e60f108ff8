// Fault suite, case 2: the state directory full or read-only, at start and while running. The
// daemon keeps running on the kernel map, answers DNS, and says so: a failure counter and
// /healthz "degraded" with stateWritable false. Every mount is undone in after.always.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import type { Lab, LabProcess } from '../../lab/lab.js';
import {
  alive, assertDnsAnswers, assertMapInvariant, baseConfig, cli, httpGet, metric, newLab, primeMap, readMap, sleep, spawnRun, stateDir, stop, waitFor,
} from './harness.js';

const test = anyTest as TestFn<{ lab: Lab; config: string }>;
let daemon: LabProcess | undefined;

test.before(async (t) => {
  const lab = await newLab();
  t.context = { lab, config: await baseConfig(lab) };
});

async function umountAll(lab: Lab): Promise<void> {
  for (let i = 0; i < 5; i++) {
    const r = await lab.exec('', 'umount', [stateDir(lab)], { reject: false });
    if (r.exitCode !== 0) break;  // nothing (more) mounted there
  }
}

test.afterEach.always(async (t) => { await stop(daemon); daemon = undefined; if (t.context.lab) await umountAll(t.context.lab); });
test.after.always(async (t) => {
  await stop(daemon);
  if (t.context.lab) await umountAll(t.context.lab);
  await t.context.lab?.destroy();
});

/** A 64 KB tmpfs over the state dir holding state.json (copied from before). */
async function mountSmall(lab: Lab): Promise<void> {
  const saved = await readFile(`${stateDir(lab)}/state.json`).catch(() => null);
  await lab.exec('', 'mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', stateDir(lab)]);
  if (saved) await writeFile(`${stateDir(lab)}/state.json`, saved);
}

/** Fills the tmpfs: no room left for the next state.json. */
async function fill(lab: Lab): Promise<void> {
  await lab.exec('', 'dd', ['if=/dev/zero', `of=${stateDir(lab)}/filler`, 'bs=4k', 'count=64'], { reject: false });
}

async function remountReadOnly(lab: Lab): Promise<void> {
  await lab.exec('', 'mount', ['-o', 'remount,ro', stateDir(lab)]);
}

async function mountFull(lab: Lab): Promise<void> {
  await mountSmall(lab);
  await fill(lab);
}

async function mountReadOnly(lab: Lab): Promise<void> {
  await mountSmall(lab);
  await remountReadOnly(lab);
}

async function assertDegradedButServing(t: ExecutionContext<any>, lab: Lab, d: LabProcess, lkg: Map<string, string>): Promise<void> {
  t.true(await alive(d), `run exited (${String(await Promise.race([d.exited, sleep(10)]))}): ${d.stderr().slice(-600)}`);
  await assertDnsAnswers(t, lab);
  assertMapInvariant(t, await readMap(lab), { atLeast: lkg });
  const m = await httpGet(lab, '/metrics');
  const failures = metric(m?.body ?? '', 'apns_proxy_state_write_failures_total');
  t.true((failures ?? 0) > 0, `apns_proxy_state_write_failures_total is ${String(failures)}`);
  const h = await httpGet(lab, '/healthz');
  t.is(h?.status, 200, `/healthz: ${JSON.stringify(h)}`);
  t.like(JSON.parse(h?.body ?? '{}'), { status: 'degraded', stateWritable: false }, `/healthz body: ${h?.body}`);
}

for (const [what, mount, turn] of [['full', mountFull, fill], ['read-only', mountReadOnly, remountReadOnly]] as const) {
  test.serial(`case 2: state dir ${what} at start: run keeps running, DNS answers, degraded`, async (t) => {
    const { lab, config } = t.context;
    const lkg = await primeMap(lab, config);
    await lab.setScenario({ addresses: { '9': ['203.0.113.33'] } });  // a change, so there is something to save
    await mount(lab);
    daemon = spawnRun(lab, config);
    await sleep(3000);
    await assertDegradedButServing(t, lab, daemon, lkg);
  });

  test.serial(`case 2: state dir turns ${what} while running: run keeps running, DNS answers, degraded`, async (t) => {
    const { lab, config } = t.context;
    await umountAll(lab);
    await mkdir(stateDir(lab), { recursive: true });
    const lkg = await primeMap(lab, config);
    // The filesystem under the running daemon fills up or goes read-only (its control socket stays reachable).
    await mountSmall(lab);
    daemon = spawnRun(lab, config);
    await daemon.waitForLine(/running: /, 15_000);
    await turn(lab);
    await lab.setScenario({ addresses: { '9': ['203.0.113.34'] } });
    await cli(lab, config, ['refresh']);
    await waitFor(async () => !(await alive(daemon!)) || daemon!.lines.some((l) => /cannot write|state/.test(l) && /error/.test(l)), 3000);
    await assertDegradedButServing(t, lab, daemon, lkg);
  });
}
