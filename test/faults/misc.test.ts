// Fault suite, smaller defects: the fallback log flood (case 9), two runs at once (10a), the control
// socket's mode under umask 000 (10b), a 20-hop CNAME chain (10e).
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import anyTest, { type TestFn } from 'ava';
import type { Lab, LabProcess } from '../../lab/lab.js';
import { nodeBin } from '../../lab/lab.js';
import { CLI, TOOL, alive, assertMapInvariant, baseConfig, cli, newLab, readMap, sleep, spawnRun, startRun, stateDir, stop } from './harness.js';

const test = anyTest as TestFn<{ lab: Lab; config: string }>;
const daemons: LabProcess[] = [];

test.before(async (t) => {
  const lab = await newLab();
  t.context = { lab, config: await baseConfig(lab) };
});
test.afterEach.always(async () => { for (const d of daemons.splice(0)) await stop(d); });
test.after.always(async (t) => {
  for (const d of daemons.splice(0)) await stop(d);
  await t.context.lab?.destroy();
});

test.serial('case 9: 2000 connections the fallback rejects: fewer than 50 fallback log lines, one counts the suppressed', async (t) => {
  const { lab } = t.context;
  const config = await baseConfig(lab, { fallback: { enabled: true } }, 'fallback.json');
  const d = await startRun(lab, config, /refresh: 50 fresh/);
  daemons.push(d);
  await d.waitForLine(/running: /, 5000);
  const from = d.lines.length;
  const r = await lab.exec(lab.ns.client, nodeBin(), [TOOL, 'connflood', '198.18.100.55', '5223', '--count', '2000', '--concurrency', '40', '--seconds', '8'], { timeoutMs: 30_000 });
  const flood = JSON.parse(r.stdout.trim().split('\n').pop()!) as { done: number; ms: number; codes: Record<string, number> };
  t.true(flood.done >= 1500, `only ${flood.done} connections made: ${JSON.stringify(flood)}`);
  // the count of what was held back comes with the next line let through or, when the burst ends
  // inside a window, in a summary at the window's end (10 s)
  await d.waitForLine(/fallback.*suppressed/, 12_000, from).catch(() => undefined);
  const lines = d.lines.slice(from).filter((l) => /fallback/.test(l));
  t.true(lines.length < 50, `${lines.length} fallback log lines for ${flood.done} connections in ${flood.ms} ms`);
  t.truthy(lines.find((l) => /suppressed/.test(l) && /\d/.test(l)), `no line says how many were suppressed; first lines: ${lines.slice(0, 3).join(' | ')}`);
});

test.serial('case 10a: two runs started at the same moment: exactly one keeps running, refresh works', async (t) => {
  const { lab, config } = t.context;
  const a = spawnRun(lab, config);
  const b = spawnRun(lab, config);
  daemons.push(a, b);
  await sleep(3000);
  const states = await Promise.all([a, b].map(async (d) => ({ d, alive: await alive(d) })));
  const live = states.filter((s) => s.alive);
  t.is(live.length, 1, `${live.length} runs alive after 3 s`);
  const dead = states.find((s) => !s.alive);
  if (dead) {
    const code = await dead.d.exited;
    t.true(code !== 0, `the second run exited ${String(code)}`);
  }
  const r = await cli(lab, config, ['refresh']);
  t.is(r.exitCode, 0, `apns-proxy refresh: ${r.stderr.slice(-300)}`);
  assertMapInvariant(t, await readMap(lab), { atLeast: 400 });
});

test.serial('case 10b: control.sock is 0600 even under umask 000', async (t) => {
  const { lab, config } = t.context;
  const d = lab.spawn(lab.ns.router, 'sh', ['-c', `umask 000; exec "$0" "$@"`, nodeBin(), CLI, 'run', '--config', config]);
  daemons.push(d);
  await d.waitForLine(/running: /, 15_000);
  const st = await stat(join(stateDir(lab), 'control.sock'));
  t.is((st.mode & 0o777).toString(8), '600', 'control.sock mode');
});

test.serial('case 10e: a 20-hop CNAME chain is reported as E_CNAME_LONG, not E_CNAME_LOOP', async (t) => {
  const { lab, config } = t.context;
  await lab.setScenario({ perCourier: { '7': 'cname-long' } });
  try {
    const r = await cli(lab, config, ['refresh']);
    t.not(r.exitCode, 0, 'courier 7 failed to resolve');
    const s = await cli(lab, config, ['status', '--json']);
    t.is(s.exitCode, 0, s.stderr);
    const c7 = (JSON.parse(s.stdout) as { couriers: { courier: number; note: string }[] }).couriers.find((c) => c.courier === 7);
    t.regex(c7?.note ?? '', /E_CNAME_LONG/, `courier 7's note: ${c7?.note}`);
    t.notRegex(c7?.note ?? '', /E_CNAME_LOOP/);
  } finally {
    await lab.setScenario({});
  }
});
