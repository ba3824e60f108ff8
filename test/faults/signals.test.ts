// Fault suite, signals: during start (case 3) and during a refresh, and a reload with a broken
// config (case 13). Whatever the signal, the kernel map keeps last-known-good and only allowed addresses.
import { readFile, writeFile } from 'node:fs/promises';
import anyTest, { type TestFn } from 'ava';
import type { Lab, LabProcess } from '../../lab/lab.js';
import {
  alive, assertDnsAnswers, assertMapInvariant, baseConfig, cli, newLab, primeMap, readMap, sleep, spawnRun, startRun, stop,
} from './harness.js';

const test = anyTest as TestFn<{ lab: Lab; config: string }>;
const SCENARIO = {};
let daemon: LabProcess | undefined;

test.before(async (t) => {
  const lab = await newLab(SCENARIO);
  t.context = { lab, config: await baseConfig(lab, { resolver: { timeoutMs: 2000 } }) };
});
test.afterEach.always(async () => { await stop(daemon); daemon = undefined; });
test.after.always(async (t) => { await stop(daemon); await t.context.lab?.destroy(); });

/**
 * Waits until the process catches SIGHUP (bit 0 of SigCgt in /proc/PID/status): `run` installs its
 * handlers before it loads anything else. Node's own boot (~60 ms) restores default handlers and
 * cannot be covered from inside: the unit's RestartForceExitStatus=SIGHUP covers that window.
 */
async function handlersInstalled(d: LabProcess): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < 5000) {
    const status = await readFile(`/proc/${d.pid}/status`, 'utf8').catch(() => '');
    const cgt = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    if (cgt !== undefined && (BigInt(`0x${cgt}`) & 1n) === 1n) return Date.now() - t0;
    await sleep(2);
  }
  throw new Error(`run has no SIGHUP handler 5 s after spawn: ${d.stderr().slice(-300)}`);
}

test.serial('case 3: SIGHUPs from the moment run catches them (before it loads or logs anything): queued, not fatal', async (t) => {
  const { lab, config } = t.context;
  const lkg = await primeMap(lab, config);
  daemon = spawnRun(lab, config);
  const ms = await handlersInstalled(daemon);
  t.is(daemon.lines.length, 0, `handlers come first, before any log line: ${daemon.lines.join(' | ')}`);
  t.log(`SIGHUP caught ${ms} ms after spawn`);
  const t0 = Date.now();
  for (const at of [0, 80, 180]) {
    await sleep(Math.max(0, at - (Date.now() - t0)));
    daemon.kill('SIGHUP');
  }
  await sleep(3000);
  t.true(await alive(daemon), `run died on an early SIGHUP (exit ${String(await Promise.race([daemon.exited, sleep(10)]))}): ${daemon.stderr().slice(-500)}`);
  t.true(daemon.lines.some((l) => /reload: configuration reloaded/.test(l)), `no "reload: configuration reloaded" line:\n${daemon.lines.join('\n')}`);
  assertMapInvariant(t, await readMap(lab), { atLeast: lkg });
});

test.serial('case 3: SIGTERM during start: exit 0, the map from before intact', async (t) => {
  const { lab, config } = t.context;
  const lkg = await primeMap(lab, config);
  for (const at of [0, 200]) {
    daemon = spawnRun(lab, config);
    await handlersInstalled(daemon);
    await sleep(at);
    daemon.kill('SIGTERM');
    const code = await Promise.race([daemon.exited, sleep(8000).then(() => 'still running' as const)]);
    t.is(code, 0, `SIGTERM ${at} ms after the handlers: exit ${String(code)}; ${daemon.stderr().slice(-300)}`);
    assertMapInvariant(t, await readMap(lab), { atLeast: lkg }, `after SIGTERM at ${at} ms`);
    await stop(daemon);
  }
});

test.serial('case 3: SIGKILL during start: the map intact, nothing outside the allowed net', async (t) => {
  const { lab, config } = t.context;
  const lkg = await primeMap(lab, config);
  for (const at of [30, 150, 300, 450, 600, 800]) {
    daemon = spawnRun(lab, config);
    await sleep(at);
    daemon.kill('SIGKILL');
    await daemon.exited;
    assertMapInvariant(t, await readMap(lab), { atLeast: lkg }, `after SIGKILL at ${at} ms`);
  }
});

test.serial('case 3/13 (held): SIGKILL and SIGTERM during a refresh (upstream slow / changing)', async (t) => {
  const { lab, config } = t.context;
  const lkg = await primeMap(lab, config);
  for (const [i, sig] of (['SIGKILL', 'SIGTERM', 'SIGKILL', 'SIGTERM'] as const).entries()) {
    // alternate: a slow upstream (killed while resolving) and a changed one (killed while programming)
    const slow = i < 2;
    await lab.setScenario(SCENARIO);
    daemon = await startRun(lab, config, /refresh: 50 fresh/);
    await lab.setScenario(slow ? { mode: 'slow', slowMs: 1500 } : { addresses: { '9': ['203.0.113.30', '203.0.113.31', '203.0.113.32'] } });
    const from = daemon.lines.length;
    const refresh = cli(lab, config, ['refresh']);
    await sleep(slow ? 600 : 60 + 40 * i);
    daemon.kill(sig);
    const code = await Promise.race([daemon.exited, sleep(8000).then(() => 'still running' as const)]);
    if (sig === 'SIGTERM') t.is(code, 0, `SIGTERM during a refresh: exit ${String(code)}`);
    await refresh;
    assertMapInvariant(t, await readMap(lab), { atLeast: lkg }, `after ${sig} during a ${slow ? 'slow' : 'changing'} refresh (log: ${daemon.lines.slice(from).join(' | ').slice(0, 300)})`);
    await stop(daemon);
  }
  await lab.setScenario(SCENARIO);
});

test.serial('case 13 (held): SIGHUP with a broken config file keeps the old config', async (t) => {
  const { lab, config } = t.context;
  const lkg = await primeMap(lab, config);
  const original = await readFile(config, 'utf8');
  try {
    daemon = await startRun(lab, config, /refresh: 50 fresh/);
    await daemon.waitForLine(/running: /, 5000);
    for (const broken of ['{"vipPrefix": "198.18.100.0/24", "couriers": {', JSON.stringify({ ...JSON.parse(original), vipPrefix: '198.18.7.0/24', nope: 1 })]) {
      await writeFile(config, broken);
      const from = daemon.lines.length;
      daemon.kill('SIGHUP');
      await daemon.waitForLine(/reload: .*keeping the running configuration/, 5000, from);
      t.true(await alive(daemon), 'the daemon survives a broken config');
      await assertDnsAnswers(t, lab, {}, 'after a broken reload, the old VIP prefix');
      assertMapInvariant(t, await readMap(lab), { equals: lkg }, 'after a broken reload');
    }
  } finally {
    await writeFile(config, original);
  }
});
