// Router-pair benchmark: `node dist/bench/ha.js [--runs 3] [--connections 10000] [--no-record]`
// as root, after `npm run build`. Each run builds the pair lab (lab/ha.ts: real keepalived and
// conntrackd), holds N device connections through router A, kills A hard (links down, SIGKILL),
// lets B take over, brings A back (a reboot) and lets it take the addresses back (failback).
// Measured per run: failover and failback time as the devices see it (the longest silence between
// two echoes on 8 connections that send a line every 20 ms: last echo before, first echo after),
// takeover time (failure -> B holds both shared addresses), connections lost (a check on all N
// after each switch), conntrackd CPU (utime+stime of both conntrackd) and sync link traffic while
// the N connections open and are synced, and during the failback resync. Medians of the runs go
// into bench/RESULTS.md (section <!-- bench:ha -->).
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { type HaLab, createHaLab, holderCheck, startHolder } from '../lab/ha.js';
import type { LabProcess } from '../lab/lab.js';

const args = process.argv.slice(2);
const opt = (name: string, def: number): number => { const i = args.indexOf(name); return i === -1 ? def : Number(args[i + 1]); };
const RUNS = opt('--runs', 3);
const N = opt('--connections', 10000);
const RECORD = !args.includes('--no-record');
if (!(RUNS >= 1 && RUNS <= 10) || !(N >= 10 && N <= 20000)) { process.stderr.write('bench/ha: --runs 1..10, --connections 10..20000\n'); process.exit(2); }

const TICK = 100;  // USER_HZ
function cpuMs(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / TICK;
  } catch { return 0; }
}
async function syncBytes(ha: HaLab, name: 'a' | 'b'): Promise<number> {
  const r = await ha.lab.exec(ha.ns[name], 'ip', ['-s', '-j', 'link', 'show', 'sync'], { reject: false });
  try {
    const s = (JSON.parse(r.stdout) as { stats64: { rx: { bytes: number }; tx: { bytes: number } } }[])[0]!.stats64;
    return s.tx.bytes;
  } catch { return 0; }
}
const ctCpu = (ha: HaLab) => cpuMs(ha.routers.a.conntrackd?.pid) + cpuMs(ha.routers.b.conntrackd?.pid);
const sync = async (ha: HaLab) => (await syncBytes(ha, 'a')) + (await syncBytes(ha, 'b'));

async function pulseStop(proc: LabProcess): Promise<{ maxGapMs: number; gapFrom: number; gapTo: number; echoes: number }> {
  const from = proc.lines.length;
  proc.write('pulse stop\n');
  const line = await proc.waitForLine(/^\{"pulse":\{/, 10000, from);
  return (JSON.parse(line) as { pulse: { maxGapMs: number; gapFrom: number; gapTo: number; echoes: number } }).pulse;
}

interface Run {
  held: number; openMs: number; openCpuMs: number; openSyncBytes: number;
  takeoverMs: number; failoverGapMs: number; failoverLost: number; failoverResets: number; failoverSlowestMs: number;
  resynced: number; failbackGapMs: number; failbackLost: number; failbackResets: number; resyncCpuMs: number; resyncBytes: number; resyncMs: number;
}

async function oneRun(i: number): Promise<Run> {
  const ha = await createHaLab({ pair: { failbackDelay: 5 } });
  try {
    await ha.start('a');
    await ha.waitPrimary('a', 15000);
    await ha.start('b');
    await new Promise((r) => setTimeout(r, 1000));
    const cpu0 = ctCpu(ha); const sync0 = await sync(ha); const t0 = Date.now();
    const { proc, held } = await startHolder(ha, N, 40, 120000);
    await ha.waitVipFlows('b', held.held, 60000);
    const openMs = Date.now() - t0;
    const openCpuMs = ctCpu(ha) - cpu0; const openSyncBytes = (await sync(ha)) - sync0;
    const pre = await holderCheck(proc, `pre${i}`, 20000);
    if (pre.ok !== held.held) throw new Error(`bench/ha: before the failure only ${pre.ok} of ${held.held} echo`);

    proc.write('pulse start 20 8\n');
    await new Promise((r) => setTimeout(r, 1000));
    const tk = Date.now();
    await ha.kill('a');
    await ha.waitPrimary('b', 15000);
    const takeover = Date.now() - tk;
    const c1 = await holderCheck(proc, `fo${i}`, 15000);
    await new Promise((r) => setTimeout(r, 1000));
    const g1 = await pulseStop(proc);

    const cpu1 = ctCpu(ha); const sync1 = await sync(ha); const tr = Date.now();
    await ha.revive('a');
    // the resync is not always complete at 10 000 (see RESULTS): record how far it got, go on
    await ha.waitVipFlows('a', held.held, 30000).catch(() => undefined);
    const resynced = await ha.vipFlows('a');
    const resyncMs = Date.now() - tr;
    const resyncCpuMs = ctCpu(ha) - cpu1;  // A's conntrackd is a new process: all of its CPU counts
    const resyncBytes = (await sync(ha)) - sync1;
    proc.write('pulse start 20 8\n');
    await ha.waitPrimary('a', 30000);
    const c2 = await holderCheck(proc, `fb${i}`, 15000);
    await new Promise((r) => setTimeout(r, 1000));
    const g2 = await pulseStop(proc);
    proc.write('quit\n');
    return {
      held: held.held, openMs, openCpuMs, openSyncBytes, takeoverMs: takeover,
      failoverGapMs: g1.maxGapMs, failoverLost: held.held - c1.ok, failoverResets: c1.resets, failoverSlowestMs: c1.maxMs,
      resynced, failbackGapMs: g2.maxGapMs, failbackLost: held.held - c2.ok, failbackResets: c2.resets, resyncCpuMs, resyncBytes, resyncMs,
    };
  } finally {
    await ha.destroy();
  }
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2; };

const runs: Run[] = [];
for (let i = 0; i < RUNS; i++) {
  const r = await oneRun(i);
  process.stdout.write(`run ${i + 1}/${RUNS}: ${JSON.stringify(r)}\n`);
  runs.push(r);
}
const col = (k: keyof Run) => runs.map((r) => r[k]);
const fmt = (k: keyof Run, unit = '', div = 1, digits = 0) => `${(median(col(k)) / div).toFixed(digits)}${unit} (${col(k).map((v) => (v / div).toFixed(digits)).join(' / ')})`;
const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
const section = `<!-- bench:ha -->
## Router pair (failover)

Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC by \`node dist/bench/ha.js --runs ${RUNS} --connections ${N}\` (as root, after \`npm run build\`).

Each run builds the pair lab (\`lab/ha.ts\`: client, two switches, routers A and B with Debian's keepalived and conntrackd rendered from \`contrib/ha\`, advert_int 1, priorities 250/240, failback after preempt_delay 5 s), holds ${N} device connections through A's kernel path, kills A hard (links down, every process SIGKILLed), then brings A back as after a reboot (empty conntrack table) and lets it take the addresses back. Median (runs); machine: ${os.cpus().length} CPU, load ${load} at the end.

| figure | failover (A dies, B takes over) | failback (A returns and takes over) |
|---|---|---|
| devices' silence: last echo before → first echo after (8 connections echoing every 20 ms) | ${fmt('failoverGapMs', ' ms')} | ${fmt('failbackGapMs', ' ms')} |
| takeover: failure → B holds both shared addresses | ${fmt('takeoverMs', ' ms')} | — |
| connections lost (of ${N} held; a line echoed on each within 15 s) | ${fmt('failoverLost')} | ${fmt('failbackLost')} |
| flows in A's table after the resync, before A takes over (of ${N}) | — | ${fmt('resynced')} |
| resets seen by devices | ${fmt('failoverResets')} | ${fmt('failbackResets')} |
| slowest echo of a check on every connection sent right after the takeover | ${fmt('failoverSlowestMs', ' ms')} | — |

| conntrackd at ${N} connections | while they open and sync (A → B) | failback resync (B → A, \`conntrackd -n\`) |
|---|---|---|
| conntrackd CPU, both routers (utime+stime) | ${fmt('openCpuMs', ' ms')} over ${fmt('openMs', ' s', 1000, 1)} | ${fmt('resyncCpuMs', ' ms')} over ${fmt('resyncMs', ' s', 1000, 1)} |
| sync link traffic, both directions | ${fmt('openSyncBytes', ' KiB', 1024)} (${(median(col('openSyncBytes')) / N).toFixed(0)} B per connection) | ${fmt('resyncBytes', ' KiB', 1024)} |

The devices' silence is longer than the takeover: a packet sent into the dead primary is retransmitted by TCP on its backoff schedule (0.2, 0.4, 0.8, 1.6 s …), so the first echo through B waits for the first retransmission after the takeover.

Known gap (open): at 10 000 connections the failback is not yet lossless: a few connections (4-8 of 10 000, about half of them reset) are lost when A takes the addresses back, and the bulk resync B -> A sometimes misses 1-2 flows (the 30 s resync times are runs where it never completed). The failover itself lost none. At 500 connections (test/integration/ha.test.ts) both directions are lossless.
<!-- /bench:ha -->
`;
process.stdout.write(`\n${section}`);
if (RECORD) {
  const file = new URL('../../bench/RESULTS.md', import.meta.url);
  const text = readFileSync(file, 'utf8');
  const a = text.indexOf('<!-- bench:ha -->');
  const b = text.indexOf('<!-- /bench:ha -->');
  writeFileSync(file, a !== -1 && b !== -1 ? text.slice(0, a) + section + text.slice(b + '<!-- /bench:ha -->\n'.length) : `${text.trimEnd()}\n\n${section}`);
  process.stdout.write('recorded in bench/RESULTS.md\n');
}
