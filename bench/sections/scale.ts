// Scale with devices (and the fallback's memory per connection): one idle TCP connection per device,
// held through each path, and what the router pays for them.
//
//   kernel path  100 000 connections (8 holder processes × 12 500, each from its own source address,
//                to VIPs 198.18.100.1-8; 12 holdd processes on the courier side): conntrack only
//   HAProxy and the fallback: as many as one process can hold under the 20 000 open-file limit
//                (two sockets per connection), measured at USER connections, plus a capacity probe
//
// Router memory per connection is measured two ways:
//   kernel   Σ over /proc/slabinfo caches of Δ(allocated objects) × object size, minus the same for
//            plain routing with the same number of connections (client and courier sockets live in the
//            same kernel and cancel out; what is left is the router's: conntrack, NAT, proxy sockets)
//   userspace Δ RSS of the router's processes (daemon, HAProxy) from idle to holding
import { readFileSync } from 'node:fs';
import { ADDR, type Lab } from '../lib/lab.js';
import { type HoldOpen, Holders, PER_HOLDER, holderArgv } from '../lib/load.js';
import type { Bg } from '../lib/proc.js';
import { sleep } from '../lib/proc.js';
import { type ProcUsage, conntrackCount, conntrackFlush, routerUsage, slabDelta, slabinfo } from '../lib/procfs.js';
import { fmt, median, pass, ratio, table } from '../lib/report.js';
import { BULK_PORT, Daemon, apnsConfig, routerTables, scenario, startHaproxy } from '../lib/router.js';
import { DAEMON_SETTLE_MS, FALLBACK_COURIER, LABEL, LIVE, type Mode } from './hotpath.js';

export interface ScaleOptions {
  readonly runs: number;
  /** connections for the kernel-path scale run (0: skip it) */
  readonly big: number;
  /** connections for the side-by-side of all four paths */
  readonly user: number;
  /** try beyond the per-process limit once for HAProxy and the fallback */
  readonly probe: boolean;
  /** idle time before HAProxy's and the fallback's memory is read */
  readonly settleMs: number;
}

export interface HoldRun {
  readonly mode: Mode;
  readonly attempted: number;
  readonly open: HoldOpen;
  readonly alive: number;
  readonly dropped: number;
  readonly slabBytes: number;      // every slab cache (noisy on a shared machine: shown, not used)
  readonly slabNetBytes: number;   // the caches network state lives in (lib/procfs.ts NET_CACHE)
  readonly settledMs: number;      // how long after opening the memory was read
  readonly slabTop: readonly { name: string; objects: number; bytes: number }[];
  readonly ctDelta: number;
  readonly rssDeltaKb: number;     // router processes, from idle to settled
  readonly rssPeakDeltaKb: number; // router processes, from idle to 3 s after the last connection was up
  readonly procs: readonly { comm: string; rssBeforeKb: number; rssAfterKb: number; fdsAfter: number }[];
}

export interface ScaleData {
  readonly opts: ScaleOptions;
  readonly runs: HoldRun[];
  readonly probes: HoldRun[];
  readonly commands: string[];
  readonly nfConntrackObjsize: number;
  readonly conntrackMax: number;
}

const DSTS: Record<Mode, string[]> = {
  plain: Array.from({ length: 8 }, (_, i) => `${ADDR.courier(i)}:${BULK_PORT}`),
  kernel: Array.from({ length: 8 }, (_, i) => `${ADDR.vip(i + 1)}:${BULK_PORT}`),
  haproxy: [`${ADDR.haproxyVip}:${BULK_PORT}`],
  fallback: [`${ADDR.vip(FALLBACK_COURIER)}:${BULK_PORT}`],
};

const USER_MAXCONN = 9800;  // HAProxy maxconn and fallback.maxConnections: 2 fds per connection under 20 000

async function hold(lab: Lab, mode: Mode, n: number, log: (s: string) => void, settleMs: number, timeoutMs = 10000): Promise<HoldRun> {
  await conntrackFlush(lab, lab.ns.r);
  await sleep(1500);
  const ct0 = await conntrackCount(lab, lab.ns.r);
  const u0 = await routerUsage(lab);
  const s0 = slabinfo();
  const h = await Holders.open(lab, DSTS[mode], n, { timeoutMs });
  const opened = Date.now();
  await sleep(3000);
  const uPeak = await routerUsage(lab);
  // APNs connections stay idle for hours: what counts is memory once the proxy has settled. The
  // daemon's V8 heap gives the garbage of the set-up back after ~20-30 s of idleness, and each
  // fallback connection's DNS lookup leaves a UDP conntrack entry that expires after 30 s.
  const settle = mode === 'fallback' ? settleMs : mode === 'haproxy' ? Math.min(settleMs, 10000) : 3000;
  await sleep(Math.max(0, opened + settle - Date.now()));
  const s1 = slabinfo();
  const u1 = await routerUsage(lab);
  const ct1 = await conntrackCount(lab, lab.ns.r);
  const check = await h.check();
  await h.quit();
  const d = slabDelta(s0, s1);
  const procs = u1.procs.map((p: ProcUsage) => ({
    comm: p.comm, rssBeforeKb: u0.procs.find((q) => q.pid === p.pid)?.rssKb ?? 0, rssAfterKb: p.rssKb, fdsAfter: p.fds,
  }));
  const r: HoldRun = {
    mode, attempted: n, open: h.opened, alive: check.alive, dropped: check.dropped,
    slabBytes: d.bytes, slabNetBytes: d.netBytes, slabTop: d.top, settledMs: settle, ctDelta: ct1 - ct0,
    rssDeltaKb: procs.reduce((s, p) => s + p.rssAfterKb - p.rssBeforeKb, 0),
    rssPeakDeltaKb: uPeak.procs.reduce((s, p) => s + p.rssKb - (u0.procs.find((q) => q.pid === p.pid)?.rssKb ?? 0), 0), procs,
  };
  log(`  ${mode.padEnd(8)} ${fmt(n)}: held ${fmt(r.open.held)} (failed ${r.open.failed}${Object.keys(r.open.errors).length ? ' ' + JSON.stringify(r.open.errors) : ''}) in ${fmt(r.open.ms / 1000, 1)} s; alive ${fmt(r.alive)}; net slab Δ ${fmt(d.netBytes / Math.max(1, r.open.held))} B/conn (all caches ${fmt(d.bytes / Math.max(1, r.open.held))}); conntrack Δ ${fmt(r.ctDelta)}; router RSS Δ ${fmt(r.rssDeltaKb)} KiB after ${fmt(settle / 1000)} s (${fmt(r.rssPeakDeltaKb)} KiB at 3 s)`);
  return r;
}

export async function measureScale(lab: Lab, opts: ScaleOptions, log: (s: string) => void): Promise<ScaleData> {
  const cfg = apnsConfig(lab, 'scale', LIVE, USER_MAXCONN);
  await lab.setScenario(scenario(LIVE));
  const servers: Bg[] = [];
  const maxN = Math.max(opts.big, opts.user * 1.2);
  const nServers = Math.max(2, Math.ceil(maxN / 8500));  // SO_REUSEPORT spreads ~evenly; each stays far below 20 000 fds
  for (let i = 0; i < nServers; i++) servers.push(lab.bg(lab.ns.u, 'holdd', [lab.bin('holdd'), '--port', String(BULK_PORT), '--max-seconds', '3600']));
  await Promise.all(servers.map((s) => s.waitFor(/^listening/, 10000)));
  const runs: HoldRun[] = [];
  const probes: HoldRun[] = [];
  const objsize = slabinfo().get('nf_conntrack')?.objsize ?? NaN;
  const ctMax = Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_max', 'utf8').trim());

  const withHaproxy = async <T>(f: () => Promise<T>): Promise<T> => {
    const hp = await startHaproxy(lab, USER_MAXCONN);  // a fresh process: its RSS starts from idle
    try { return await f(); } finally { await hp.stop(); }
  };
  try {
    for (let round = 1; round <= opts.runs; round++) {
      log(`scale: round ${round}/${opts.runs}`);
      const tables = await routerTables(lab);
      if (tables) throw new Error(`router has nft tables before the plain runs: ${tables}`);
      if (opts.big) runs.push(await hold(lab, 'plain', opts.big, log, opts.settleMs));
      runs.push(await hold(lab, 'plain', opts.user, log, opts.settleMs));
      runs.push(await withHaproxy(() => hold(lab, 'haproxy', opts.user, log, opts.settleMs)));
      const daemon = await Daemon.start(lab, cfg, LIVE, FALLBACK_COURIER, DAEMON_SETTLE_MS);
      try {
        if (opts.big) runs.push(await hold(lab, 'kernel', opts.big, log, opts.settleMs));
        runs.push(await hold(lab, 'kernel', opts.user, log, opts.settleMs));
        runs.push(await hold(lab, 'fallback', opts.user, log, opts.settleMs));
      } finally {
        await daemon.stop(lab);
      }
    }
    if (opts.probe) {
      const n = USER_MAXCONN + 600;
      log(`scale: capacity probe, ${n} connections through HAProxy and the fallback`);
      probes.push(await withHaproxy(() => hold(lab, 'haproxy', n, log, 3000, 5000)));
      const daemon = await Daemon.start(lab, cfg, LIVE, FALLBACK_COURIER);
      try {
        probes.push(await hold(lab, 'fallback', n, log, 3000, 5000));
      } finally {
        await daemon.stop(lab);
      }
    }
  } finally {
    for (const s of servers) await s.stop(3000);
  }
  const commands = [
    `device side, per 12 500 connections: ${holderArgv(lab, 0, ['DST:443'], PER_HOLDER, { parallel: 256, timeoutMs: 10000, maxSeconds: 600 }).join(' ').replace(lab.root + '/', '')} (source 192.0.2.10, .11, ...)`,
    `DST: plain ${DSTS.plain.join(',')}; kernel ${DSTS.kernel.join(',')}; HAProxy ${DSTS.haproxy.join(',')}; fallback ${DSTS.fallback.join(',')}`,
    `courier side: ${nServers} × bench/out/bin/holdd --port ${BULK_PORT} (SO_REUSEPORT; greets with one byte, echoes)`,
    `HAProxy: maxconn ${USER_MAXCONN}, maxpipes 128, ulimit-n 20000, nbthread 2, mode tcp, option splice-request/splice-response; apns-proxy: fallback.maxConnections ${USER_MAXCONN}`,
    `memory: /proc/slabinfo and /proc/PID/status (VmRSS of every router process) before opening and once the connections are up and idle (3 s; HAProxy 10 s; fallback ${fmt(opts.settleMs / 1000)} s, RSS also at 3 s), nf_conntrack_count in the router namespace; conntrack -F between runs`,
  ];
  return { opts, runs, probes, commands, nfConntrackObjsize: objsize, conntrackMax: ctMax };
}

const perConn = (bytes: number, n: number) => (n > 0 ? bytes / n : NaN);

export function stat(d: ScaleData, mode: Mode, n: number) {
  const rs = d.runs.filter((r) => r.mode === mode && r.attempted === n);
  const base = d.runs.filter((r) => r.mode === 'plain' && r.attempted === n);
  const plainSlab = median(base.map((r) => perConn(r.slabNetBytes, r.open.held)));
  return {
    runs: rs,
    held: median(rs.map((r) => r.open.held)),
    alive: Math.min(...rs.map((r) => r.alive)),
    slab: median(rs.map((r) => perConn(r.slabNetBytes, r.open.held))),
    kernelPerConn: median(rs.map((r) => perConn(r.slabNetBytes, r.open.held) - plainSlab)),
    rssPerConn: median(rs.map((r) => perConn(r.rssDeltaKb * 1024, r.open.held))),
    rssPeakPerConn: median(rs.map((r) => perConn(r.rssPeakDeltaKb * 1024, r.open.held))),
    ct: median(rs.map((r) => r.ctDelta / Math.max(1, r.open.held))),
  };
}

const signed = (n: number) => (Number.isFinite(n) && n < 0 ? `${fmt(n)} (≈ 0: below idle)` : fmt(n));

export function scaleReport(d: ScaleData): string {
  const out: string[] = ['## Scale with devices', ''];
  out.push(`APNs keeps one idle TCP connection per device: every connection below is opened by \`holder\` (one per device), greeted by the courier side (so the whole path, proxy included, is up), held idle, then echo-checked. ${d.opts.runs} interleaved rounds; medians.`, '');
  out.push('- **router kernel B/conn**: Σ Δ(allocated objects) × object size over the slab caches network state lives in (nf_conntrack, TCP, sock_inode_cache, filp, eventpoll, kmalloc-*, + one dentry and LSM blob per socket inode; filesystem and /proc caches swing by tens of MB on this shared machine and are left out), minus the same for plain routing with the same number of connections: client and courier sockets live in this same kernel and cancel out.');
  out.push('- **userspace RSS B/conn**: Δ VmRSS of every process in the router namespace, from idle to holding. HAProxy is read after 10 s, the fallback daemon after 45 s (its V8 heap returns the garbage of the connection set-up after 20-30 s idle; the "at 3 s" column is the peak right after opening), the rest after 3 s.', '');
  const head = ['path', 'attempted', 'held (median)', 'alive at check (worst)', 'held per run', 'router kernel B/conn', 'userspace RSS B/conn', 'RSS B/conn at 3 s', 'router total B/conn', 'conntrack entries / conn'];
  const row = (mode: Mode, n: number) => {
    const s = stat(d, mode, n);
    const rss = Number.isFinite(s.rssPerConn) ? Math.max(0, s.rssPerConn) : 0;
    return [LABEL[mode], fmt(n), fmt(s.held), fmt(s.alive), s.runs.map((r) => fmt(r.open.held)).join(' / '),
      mode === 'plain' ? `(baseline: ${fmt(s.slab)} for both ends)` : fmt(s.kernelPerConn), signed(s.rssPerConn), signed(s.rssPeakPerConn),
      mode === 'plain' ? '0' : fmt(s.kernelPerConn + rss), fmt(s.ct, 2)];
  };
  if (d.opts.big) {
    const k = stat(d, 'kernel', d.opts.big);
    out.push(`### ${fmt(d.opts.big)} idle connections through the kernel path`, '');
    out.push(table(head, [row('plain', d.opts.big), row('kernel', d.opts.big)]), '');
    const last = k.runs[k.runs.length - 1];
    const daemon = last?.procs.find((p) => p.comm.startsWith('node'));
    out.push(`- Per connection the router keeps one conntrack entry: the \`nf_conntrack\` object is ${fmt(d.nfConntrackObjsize)} B, its NAT extension a kmalloc-128 object; the conntrack hash table is preallocated (nf_conntrack_buckets × 8 B) and does not grow. Largest slab changes in the last kernel run (both ends' sockets included): ${last ? last.slabTop.slice(0, 6).map((t) => `${t.name} ${t.objects >= 0 ? '+' : ''}${fmt(t.objects)}`).join(', ') : 'n/a'}.`);
    out.push(`- Userspace: none. The daemon's RSS went ${daemon ? `${fmt(daemon.rssBeforeKb)} → ${fmt(daemon.rssAfterKb)} KiB` : 'n/a'} while ${fmt(k.held)} connections were held; it holds no socket or state per connection (${daemon ? fmt(daemon.fdsAfter) : '?'} fds).`, '');
    out.push(table(['target (scale)', 'measured', ''], [
      [`hold ${fmt(d.opts.big)} idle connections through the kernel path`, `${fmt(k.held)} held (median), ${fmt(k.alive)} alive at the echo check (worst run)`, pass(k.held >= d.opts.big && k.alive >= d.opts.big)],
      ['≤ 400 bytes per idle connection (kernel path)', `${fmt(k.kernelPerConn)} B kernel + 0 B userspace`, pass(k.kernelPerConn <= 400)],
    ], '---|---|---'), '');
  }
  const n = d.opts.user;
  const k = stat(d, 'kernel', n);
  const h = stat(d, 'haproxy', n);
  const f = stat(d, 'fallback', n);
  const tot = (x: ReturnType<typeof stat>) => x.kernelPerConn + (Number.isFinite(x.rssPerConn) ? Math.max(0, x.rssPerConn) : 0);
  out.push(`### ${fmt(n)} idle connections, every path`, '');
  out.push(`HAProxy and the fallback use two sockets (fds) per connection, so one process under this machine's 20 000 open-file limit can hold at most ~9 990; both are configured for ${fmt(USER_MAXCONN)} (HAProxy maxconn, fallback.maxConnections).`, '');
  out.push(table(head, (['plain', 'kernel', 'haproxy', 'fallback'] as const).map((m) => row(m, n))), '');
  out.push(`Router memory per idle connection: kernel path ${fmt(tot(k))} B, HAProxy ${fmt(tot(h))} B (${ratio(tot(h), tot(k), 1)} the kernel path), fallback ${fmt(tot(f))} B (${ratio(tot(f), tot(k), 1)}). Both proxies pay mostly for their two kernel sockets (a TCP socket with its inode, file and epoll entry is ~3.7 KB here). The fallback's ~3 conntrack entries per connection are the client leg, the courier leg and the UDP entry of its at-connect DNS query (which expires 120 s later).`, '');
  if (d.probes.length) {
    out.push('### Capacity probe (one run each, beyond the configured maximum)', '');
    out.push(table(['path', 'attempted', 'held', 'failed', 'errors', 'router process fds at the end'], d.probes.map((p) => [
      LABEL[p.mode], fmt(p.attempted), fmt(p.open.held), fmt(p.open.failed), Object.entries(p.open.errors).map(([e, c]) => `${e} ${c}`).join(', ') || '-',
      p.procs.map((q) => `${q.comm} ${fmt(q.fdsAfter)}`).join(', '),
    ])), '');
    out.push(`The kernel path has no such per-process ceiling: its limit is nf_conntrack_max (${fmt(d.conntrackMax)} here), at ~${fmt(k.kernelPerConn)} B each.`, '');
  }
  out.push('### Commands', '', '```', ...d.commands, '```', '');
  out.push('<details><summary>every run</summary>', '');
  for (const r of [...d.runs, ...d.probes]) {
    out.push(`- ${r.mode} ${fmt(r.attempted)}: held ${fmt(r.open.held)} in ${fmt(r.open.ms / 1000, 1)} s, failed ${r.open.failed} ${JSON.stringify(r.open.errors)}, alive ${fmt(r.alive)}, dropped ${r.dropped}; net slab Δ ${fmt(r.slabNetBytes / 1024)} KiB (all caches ${fmt(r.slabBytes / 1024)} KiB) after ${fmt(r.settledMs / 1000)} s; conntrack Δ ${fmt(r.ctDelta)}; ${r.procs.map((p) => `${p.comm} RSS ${fmt(p.rssBeforeKb)}→${fmt(p.rssAfterKb)} KiB, ${fmt(p.fdsAfter)} fds`).join('; ') || 'no router process'}; largest: ${r.slabTop.slice(0, 6).map((t) => `${t.name} ${t.objects >= 0 ? '+' : ''}${fmt(t.objects)}×${fmt(t.bytes / (t.objects || 1))} B`).join(', ')}`);
  }
  out.push('', '</details>');
  return out.join('\n');
}
