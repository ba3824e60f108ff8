// The fallback benchmark: the userspace fallback (TPROXY → listener → native relay) next to
// HAProxy and the kernel path, from the same run's hot-path and idle-connection measurements.
import type { Lab } from '../lib/lab.js';
import { iperf, iperfArgv } from '../lib/load.js';
import { routerUsage, usageDelta } from '../lib/procfs.js';
import { fmt, median, pass, ratio, table } from '../lib/report.js';
import { BULK_PORT, Daemon, apnsConfig, scenario, startHaproxy } from '../lib/router.js';
import { FALLBACK_COURIER, type HotData, LABEL, LIVE, type Mode, TARGET, med } from './hotpath.js';
import { type ScaleData, stat } from './scale.js';

export interface AbOptions { readonly rounds: number; readonly seconds: number; readonly only?: 'haproxy' | 'fallback' }
export interface AbRun { readonly gbps: number; readonly cpuS: number; readonly seconds: number; readonly retransmits: number }
export interface AbData { readonly opts: AbOptions; readonly haproxy: AbRun[]; readonly fallback: AbRun[] }

/**
 * One-stream throughput of HAProxy and the fallback under the same netfilter state: both up at once
 * (the daemon's table loaded, so conntrack tracks HAProxy's flows too, as on any router that
 * does NAT or stateful filtering), alternating run by run. The hot-path section measures HAProxy on
 * a router with no table at all (no conntrack): its best case. Also the relay tuning probe
 * (bench/tput-ab.ts).
 */
export async function measureFallbackAb(lab: Lab, opts: AbOptions, log: (s: string) => void): Promise<AbData> {
  const data: AbData = { opts, haproxy: [], fallback: [] };
  const cfg = apnsConfig(lab, 'ab', LIVE);
  await lab.setScenario(scenario(LIVE));
  const haproxy = await startHaproxy(lab);
  try {
    const daemon = await Daemon.start(lab, cfg, LIVE, FALLBACK_COURIER, 3000);
    try {
      for (let round = 0; round < opts.rounds; round++) {
        const order = round % 2 === 0 ? (['haproxy', 'fallback'] as const) : (['fallback', 'haproxy'] as const);
        for (const m of order) {
          if (opts.only !== undefined && opts.only !== m) continue;
          const a = await routerUsage(lab);
          const t0 = performance.now();
          const r = await iperf(lab, TARGET[m], BULK_PORT, opts.seconds);
          const seconds = (performance.now() - t0) / 1000;
          const run = { gbps: r.bps / 1e9, cpuS: usageDelta(a, await routerUsage(lab)).cpuS, seconds, retransmits: r.retransmits };
          data[m].push(run);
          log(`  same-state ${m.padEnd(8)} tput ${fmt(run.gbps, 2)} Gbit/s (router processes: CPU ${fmt(run.cpuS, 2)} s; ${r.retransmits} retransmits)`);
        }
      }
    } finally {
      await daemon.stop(lab);
    }
  } finally {
    await haproxy.stop();
  }
  return data;
}

/** Router CPU seconds per Gbit/s carried, median over runs (lower is cheaper). */
const cpuPerGbit = (runs: readonly AbRun[]) => median(runs.map((r) => r.cpuS / r.seconds / r.gbps));

export function fallbackReport(hot: HotData, scale: ScaleData, ab: AbData): string {
  const n = scale.opts.user;
  const modes: Mode[] = ['kernel', 'haproxy', 'fallback'];
  const rows = modes.map((m) => {
    const s = stat(scale, m, n);
    return [
      LABEL[m],
      fmt(med(hot, m, 'conn')), fmt(med(hot, m, 'ka')), fmt(med(hot, m, 'tput'), 2),
      fmt(s.held), m === 'kernel' ? '0' : fmt(Math.max(0, s.rssPerConn)), m === 'kernel' ? '0' : fmt(s.rssPeakPerConn), fmt(s.kernelPerConn),
      fmt(s.kernelPerConn + (m === 'kernel' ? 0 : Math.max(0, s.rssPerConn))),
    ];
  });
  const f = stat(scale, 'fallback', n);
  const h = stat(scale, 'haproxy', n);
  const fT = med(hot, 'fallback', 'tput');
  const hT = med(hot, 'haproxy', 'tput');
  const abF = median(ab.fallback.map((r) => r.gbps));
  const abH = median(ab.haproxy.map((r) => r.gbps));
  const targets = [
    ['1-stream throughput ≥ HAProxy, same router state (conntrack on for both)', `${fmt(abF, 2)} vs ${fmt(abH, 2)} Gbit/s (${ratio(abF, abH, 3)}), median of ${ab.opts.rounds} alternating runs each`, pass(abF >= abH)],
    ['(for reference) vs HAProxy on a router with no netfilter table (hot path above)', `${fmt(fT, 2)} vs ${fmt(hT, 2)} Gbit/s (${ratio(fT, hT, 3)})`, fT >= hT ? 'above' : 'below'],
    ['< 8 KB (8192 B) userspace memory per idle connection', `${fmt(Math.max(0, f.rssPerConn))} B settled, ${fmt(f.rssPeakPerConn)} B at the 3 s peak (HAProxy ${fmt(h.rssPerConn)} B)`, pass(Math.max(0, f.rssPerConn) < 8192 && f.rssPeakPerConn < 8192)],
  ];
  return [
    '## Fallback',
    '',
    `The fallback path: a courier with no kernel element (courier 50: its elements are deleted from the live map after the daemon's first refresh), so every connection to its VIP is handed by TPROXY to the daemon's transparent listener, which resolves the courier now (one DNS query per connection to the simulated upstream), connects, and passes both sockets to the native relay thread. Rates from this run's hot-path measurement of these three paths (${hot.opts.runs} rounds of ${hot.opts.seconds} s), memory from its idle-connection measurement (${fmt(n)} idle connections, ${scale.opts.runs} rounds). Medians.`,
    '',
    table(['path', 'new conn/s', 'keep-alive req/s', '1-stream Gbit/s', `held of ${fmt(n)}`, 'userspace RSS B/conn (settled)', 'RSS B/conn at 3 s', 'router kernel B/conn', 'router total B/conn'], rows),
    '',
    'Userspace RSS: HAProxy read 10 s after the last connection, the fallback daemon 45 s after (V8 gives back the garbage of the set-up; the 3 s column is the peak); a value below idle counts as 0. The kernel path has no per-connection userspace state at all.',
    '',
    `Fallback vs HAProxy: new connections ${ratio(med(hot, 'fallback', 'conn'), med(hot, 'haproxy', 'conn'))}, keep-alive ${ratio(med(hot, 'fallback', 'ka'), med(hot, 'haproxy', 'ka'))}, throughput ${ratio(fT, hT)}, RSS per idle connection at the 3 s peak ${ratio(f.rssPeakPerConn, h.rssPeakPerConn)}.`,
    '',
    '### One stream, same router state',
    '',
    `The hot-path block measures HAProxy on a router with no netfilter table at all, so its flows skip conntrack; the fallback always runs with apns-proxy's table loaded, so both of its legs are tracked. On a real router conntrack is on for NAT and stateful filtering, HAProxy's flows included. Here both run at once in one lab (the daemon up, courier ${FALLBACK_COURIER} on the fallback, HAProxy on ${TARGET.haproxy}), alternating run by run, ${ab.opts.rounds} runs each: \`${iperfArgv('TARGET', BULK_PORT, ab.opts.seconds).join(' ')}\`.`,
    '',
    table(['path', 'Gbit/s (median)', 'runs', 'vs HAProxy', 'router CPU s per Gbit/s carried (median)'], [
      [LABEL.haproxy, fmt(abH, 2), ab.haproxy.map((r) => fmt(r.gbps, 2)).join(' / '), '1.00×', fmt(cpuPerGbit(ab.haproxy), 3)],
      [LABEL.fallback, fmt(abF, 2), ab.fallback.map((r) => fmt(r.gbps, 2)).join(' / '), ratio(abF, abH, 3), fmt(cpuPerGbit(ab.fallback), 3)],
    ]),
    '',
    'Router CPU per Gbit/s: CPU time of the router\'s processes (the daemon or HAProxy, softirq work charged to them included) per second of the run, divided by the throughput.',
    '',
    table(['target (fallback)', 'measured', ''], targets, '---|---|---'),
  ].join('\n');
}
