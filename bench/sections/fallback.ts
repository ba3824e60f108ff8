// Issue 4's bench/fallback: the userspace fallback (TPROXY → listener → native relay) next to
// HAProxy and the kernel path, from the same run's hot-path and idle-connection measurements.
import { fmt, pass, ratio, table } from '../lib/report.js';
import { type HotData, LABEL, type Mode, med } from './hotpath.js';
import { type ScaleData, stat } from './scale.js';

export function fallbackReport(hot: HotData, scale: ScaleData): string {
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
  const targets = [
    ['1-stream throughput ≥ HAProxy', `${fmt(fT, 2)} vs ${fmt(hT, 2)} Gbit/s (${ratio(fT, hT, 3)})`, pass(fT >= hT)],
    ['< 8 KB (8192 B) userspace memory per idle connection', `${fmt(Math.max(0, f.rssPerConn))} B settled, ${fmt(f.rssPeakPerConn)} B at the 3 s peak (HAProxy ${fmt(h.rssPerConn)} B)`, pass(Math.max(0, f.rssPerConn) < 8192 && f.rssPeakPerConn < 8192)],
  ];
  return [
    '## Fallback',
    '',
    `Issue 4's bench/fallback: a courier with no kernel element (courier 50: its elements are deleted from the live map after the daemon's first refresh), so every connection to its VIP is handed by TPROXY to the daemon's transparent listener, which resolves the courier now (one DNS query per connection to the simulated upstream), connects, and passes both sockets to the native relay thread. Same run, same lab as the sections above: rates from "Hot path" (${hot.opts.runs} rounds of ${hot.opts.seconds} s), memory from "Scale with devices" (${fmt(n)} idle connections, ${scale.opts.runs} rounds). Medians.`,
    '',
    table(['path', 'new conn/s', 'keep-alive req/s', '1-stream Gbit/s', `held of ${fmt(n)}`, 'userspace RSS B/conn (settled)', 'RSS B/conn at 3 s', 'router kernel B/conn', 'router total B/conn'], rows),
    '',
    'Userspace RSS: HAProxy read 10 s after the last connection, the fallback daemon 45 s after (V8 gives back the garbage of the set-up; the 3 s column is the peak); a value below idle counts as 0. The kernel path has no per-connection userspace state at all.',
    '',
    `Fallback vs HAProxy: new connections ${ratio(med(hot, 'fallback', 'conn'), med(hot, 'haproxy', 'conn'))}, keep-alive ${ratio(med(hot, 'fallback', 'ka'), med(hot, 'haproxy', 'ka'))}, throughput ${ratio(fT, hT)}, RSS per idle connection at the 3 s peak ${ratio(f.rssPeakPerConn, h.rssPeakPerConn)}.`,
    '',
    table(['target (issue 4)', 'measured', ''], targets, '---|---|---'),
  ].join('\n');
}
